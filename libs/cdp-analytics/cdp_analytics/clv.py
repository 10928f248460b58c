"""Discounted customer lifetime value from BG/NBD purchases and Gamma-Gamma spend."""

from __future__ import annotations

import numpy as np

from cdp_analytics.bgnbd import BgNbdParams, expected_purchases
from cdp_analytics.gamma_gamma import GammaGammaParams, expected_average_value


def customer_lifetime_value(
    purchases: BgNbdParams,
    spend: GammaGammaParams,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    m_x: np.ndarray,
    *,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
) -> np.ndarray:
    """Σ over months of E[spend per purchase] × E[purchases in that month] / (1 + d)^month.

    Time is in weeks (a month is 52/12 weeks); ``monthly_discount_rate`` 0.01 is about 12.7 %
    a year.
    """
    value = expected_average_value(spend, x, m_x)
    weeks_per_month = 52.0 / 12.0
    total = np.zeros_like(np.asarray(x, float))
    previous = np.zeros_like(total)
    for month in range(1, months + 1):
        cumulative = expected_purchases(purchases, month * weeks_per_month, x, t_x, T)
        total += value * (cumulative - previous) / (1 + monthly_discount_rate) ** month
        previous = cumulative
    return total
