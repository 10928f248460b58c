"""The BG/NBD model (Fader, Hardie & Lee, "Counting your customers the easy way", 2005).

While alive, a customer buys as a Poisson process with rate λ ~ Gamma(r, α); after each
purchase they drop out with probability p ~ Beta(a, b). Fitted by maximum likelihood on the
(x, t_x, T) summary; identical summaries are grouped, so the cost grows with the number of
distinct summaries, not customers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, hyp2f1


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    customers: int

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray) -> float:
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    a4 = np.where(
        repeat,
        np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return float(np.sum(weights * (a1 + a2 + np.logaddexp(a3, a4))))


def log_likelihood_gradient(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray
) -> tuple[float, np.ndarray]:
    """The log-likelihood and its gradient in (r, α, a, b), in one pass over the data."""
    r, alpha, a, b = params
    repeat = x > 0
    log_alpha_T, log_alpha_t_x = np.log(alpha + T), np.log(alpha + t_x)
    b_x_1 = np.where(repeat, b + x - 1, 1.0)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * log_alpha_T
    a4 = np.where(repeat, np.log(a) - np.log(b_x_1) - (r + x) * log_alpha_t_x, -np.inf)
    both = np.logaddexp(a3, a4)
    # d logaddexp(a3, a4) = w3 da3 + w4 da4.
    w4 = np.where(repeat, np.exp(a4 - both), 0.0)
    w3 = 1.0 - w4
    psi_a_b_x = digamma(a + b + x)
    gradient = np.array(
        [
            np.sum(weights * (digamma(r + x) - digamma(r) + np.log(alpha) - w3 * log_alpha_T - w4 * log_alpha_t_x)),
            np.sum(weights * (r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + t_x)))),
            np.sum(weights * (digamma(a + b) - psi_a_b_x + w4 / a)),
            np.sum(weights * (digamma(a + b) + digamma(b + x) - digamma(b) - psi_a_b_x - w4 / b_x_1)),
        ]
    )
    return float(np.sum(weights * (a1 + a2 + both))), gradient


def distinct(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, ...]:
    """The distinct (x, t_x, T) summaries, sorted: (x, t_x, T, how many customers have each, and
    for each customer the index of theirs). A lexicographic sort of the three columns: three
    times faster than ``np.unique(..., axis=0)`` on a million customers."""
    order = np.lexsort((T, t_x, x))
    xs, ts, Ts = x[order], t_x[order], T[order]
    first = np.empty(len(x), bool)
    first[:1] = True
    first[1:] = (xs[1:] != xs[:-1]) | (ts[1:] != ts[:-1]) | (Ts[1:] != Ts[:-1])
    starts = np.flatnonzero(first)
    inverse = np.empty(len(x), np.intp)
    inverse[order] = np.cumsum(first) - 1
    return xs[starts], ts[starts], Ts[starts], np.diff(np.append(starts, len(x))).astype(float), inverse


def fit(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, *, initial: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
) -> BgNbdParams:
    """Maximum-likelihood parameters (optimised on their logarithms, so they stay positive)."""
    gx, gt, gT, weights, _ = distinct(np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float))

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        value, gradient = log_likelihood_gradient(params, gx, gt, gT, weights)
        return -value, -gradient * params  # d/d log p = p d/dp

    start = np.log(np.asarray(initial, float))
    # Quasi-Newton on the log-parameters, boxed so a flat likelihood cannot run off to infinity;
    # the analytic gradient costs one pass where finite differences cost five.
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
    r, alpha, a, b = np.exp(result.x)
    return BgNbdParams(float(r), float(alpha), float(a), float(b), -float(result.fun), int(weights.sum()))


def probability_alive(params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    ratio = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return 1.0 / (1.0 + ratio)


def expected_purchases(params: BgNbdParams, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[purchases in the next ``t`` weeks | x, t_x, T] (equation 10 of the paper)."""
    x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    denominator = 1 + np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    return numerator / denominator


def expected_purchases_new_customer(params: BgNbdParams, t: float) -> float:
    """E[X(t)] for a customer just acquired (equation 9)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hyp = hyp2f1(r, b, a + b - 1, t / (alpha + t))
    return float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp))
