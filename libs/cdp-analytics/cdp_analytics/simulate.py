"""Draw customers from the BG/NBD and Gamma-Gamma generative stories (tests, benchmarks)."""

from __future__ import annotations

import numpy as np

from cdp_analytics.summary import Summary


def bgnbd_customers(
    rng: np.random.Generator, n: int, *, r: float, alpha: float, a: float, b: float, T_min: float, T_max: float
) -> Summary:
    """(x, t_x, T) of ``n`` customers observed for T ~ U(T_min, T_max) weeks after a first purchase."""
    lam = rng.gamma(shape=r, scale=1.0 / alpha, size=n)
    drop = rng.beta(a, b, size=n)
    T = rng.uniform(T_min, T_max, size=n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    for i in range(n):
        now = 0.0
        while True:
            now += rng.exponential(1.0 / lam[i]) if lam[i] > 0 else np.inf
            if now > T[i]:
                break
            x[i] += 1
            t_x[i] = now
            if rng.random() < drop[i]:
                break
    return Summary([f"c{i}" for i in range(n)], x, t_x, T, np.zeros(n))


def gamma_gamma_spend(rng: np.random.Generator, x: np.ndarray, *, p: float, q: float, gamma: float) -> np.ndarray:
    """Average value of each customer's x transactions (0 where x = 0)."""
    nu = rng.gamma(shape=q, scale=1.0 / gamma, size=len(x))
    m_x = np.zeros(len(x))
    for i, count in enumerate(x.astype(int)):
        if count > 0:
            m_x[i] = rng.gamma(shape=p, scale=1.0 / nu[i], size=count).mean()
    return m_x


def bgnbd_customers_fast(
    rng: np.random.Generator, n: int, *, r: float, alpha: float, a: float, b: float, T_days_min: int, T_days_max: int
) -> Summary:
    """Vectorised BG/NBD draws for benchmarks (millions of customers), times in whole days as
    real data has them. Given N(T) arrivals of a Poisson process on [0, T], arrival times are
    uniform order statistics; the customer stops after a Geometric(p) number of purchases."""
    lam = rng.gamma(shape=r, scale=1.0 / alpha, size=n)
    drop = rng.beta(a, b, size=n)
    T_days = rng.integers(T_days_min, T_days_max + 1, size=n)
    T = T_days / 7.0
    arrivals = rng.poisson(lam * T)
    before_drop = rng.geometric(drop)  # purchases made, the last of which ends the relationship
    x = np.minimum(arrivals, before_drop).astype(float)
    # t_x: the x-th of `arrivals` uniform order statistics on [0, T]
    fraction = np.where(x > 0, rng.beta(np.maximum(x, 1), np.maximum(arrivals - x, 0) + 1), 0.0)
    t_x_days = np.floor(fraction * T_days)
    return Summary([], x, t_x_days / 7.0, T, np.zeros(n))


def gamma_gamma_spend_fast(rng: np.random.Generator, x: np.ndarray, *, p: float, q: float, gamma: float) -> np.ndarray:
    """Vectorised: the mean of x Gamma(p, ν) draws is Gamma(p·x, ν·x)."""
    nu = rng.gamma(shape=q, scale=1.0 / gamma, size=len(x))
    counts = np.maximum(x, 1)
    m_x = rng.gamma(shape=p * counts, scale=1.0 / (nu * counts))
    return np.where(x > 0, m_x, 0.0)
