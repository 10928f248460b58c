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
from scipy.special import gammaln, hyp2f1


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


def _grouped(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, ...]:
    keys = np.stack([x, t_x, T], axis=1)
    unique, counts = np.unique(keys, axis=0, return_counts=True)
    return unique[:, 0], unique[:, 1], unique[:, 2], counts.astype(float)


def fit(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, *, initial: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
) -> BgNbdParams:
    """Maximum-likelihood parameters (optimised on their logarithms, so they stay positive)."""
    gx, gt, gT, weights = _grouped(np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float))

    def objective(log_params: np.ndarray) -> float:
        return -log_likelihood(np.exp(log_params), gx, gt, gT, weights)

    start = np.log(np.asarray(initial, float))
    # Quasi-Newton on the log-parameters, boxed so a flat likelihood cannot run off to infinity.
    result = minimize(objective, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
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
