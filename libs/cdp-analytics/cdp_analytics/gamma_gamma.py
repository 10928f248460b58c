"""The Gamma-Gamma spend model (Fader & Hardie, "The Gamma-Gamma Model of Monetary Value", 2013).

A customer's transaction values are Gamma(p, ν) around their own mean, with ν ~ Gamma(q, γ)
across customers. Fitted on customers with repeat purchases, from (x, m_x): number of repeat
transactions and their average value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln


@dataclass(frozen=True)
class GammaGammaParams:
    p: float
    q: float
    gamma: float
    log_likelihood: float
    customers: int


def log_likelihood(params: np.ndarray, x: np.ndarray, m_x: np.ndarray) -> float:
    p, q, gamma = params
    px = p * x
    return float(
        np.sum(
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * np.log(m_x)
            + px * np.log(x)
            - (px + q) * np.log(gamma + x * m_x)
        )
    )


def fit(x: np.ndarray, m_x: np.ndarray, *, initial: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> GammaGammaParams:
    x, m_x = np.asarray(x, float), np.asarray(m_x, float)
    keep = (x > 0) & (m_x > 0)
    x, m_x = x[keep], m_x[keep]

    def objective(log_params: np.ndarray) -> float:
        return -log_likelihood(np.exp(log_params), x, m_x)

    start = np.log(np.asarray(initial, float))
    # Quasi-Newton on the log-parameters, boxed so a flat likelihood cannot run off to infinity.
    result = minimize(objective, start, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 3)
    p, q, gamma = np.exp(result.x)
    return GammaGammaParams(float(p), float(q), float(gamma), -float(result.fun), int(keep.sum()))


def expected_average_value(params: GammaGammaParams, x: np.ndarray, m_x: np.ndarray) -> np.ndarray:
    """E[M | x, m_x]: a weighted mix of the population mean and the customer's own average."""
    x, m_x = np.asarray(x, float), np.asarray(m_x, float)
    p, q, gamma = params.p, params.q, params.gamma
    return (p * (gamma + x * m_x)) / (p * x + q - 1)
