"""Every customer's value at once: fit both models on the RFM summary, then P(alive), expected
purchases over a horizon, expected spend per purchase and discounted CLV, vectorised.

The purchase quantities depend on (x, t_x, T) only, and customers share them (times are whole
days): they are computed once per distinct triple and spread back, so a million customers cost
what their few hundred thousand distinct histories cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cdp_analytics import bgnbd, gamma_gamma
from cdp_analytics.bgnbd import BgNbdParams
from cdp_analytics.gamma_gamma import GammaGammaParams

WEEKS_PER_MONTH = 52.0 / 12.0
# Fewer customers with a repeat purchase of positive value than this: no spend model (each
# customer's own average stands in for it).
MIN_SPEND_CUSTOMERS = 10


@dataclass(frozen=True)
class Models:
    purchases: BgNbdParams
    # None when the spend model could not be fitted (too few repeat customers, or q <= 1: an
    # infinite population mean).
    spend: GammaGammaParams | None


@dataclass(frozen=True)
class CustomerValues:
    p_alive: np.ndarray
    expected_purchases: np.ndarray
    # Per purchase, in the unit of m_x.
    expected_value: np.ndarray
    clv: np.ndarray


class NotEnoughData(ValueError):
    """The orders cannot identify the models (no customer, or nobody bought twice)."""


def fit(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m_x: np.ndarray) -> Models:
    x = np.asarray(x, float)
    if len(x) == 0:
        raise NotEnoughData("no customer has an order before the calibration end")
    if not (x > 0).any():
        raise NotEnoughData("no customer bought on two different days: repeat buying cannot be estimated")
    purchases = bgnbd.fit(x, t_x, T)
    spend = None
    if int(((x > 0) & (np.asarray(m_x, float) > 0)).sum()) >= MIN_SPEND_CUSTOMERS:
        fitted = gamma_gamma.fit(x, m_x)
        if fitted.q > 1:
            spend = fitted
    return Models(purchases, spend)


def predict(
    models: Models,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    m_x: np.ndarray,
    average_value: np.ndarray,
    *,
    horizon_weeks: float,
    months: int = 12,
    monthly_discount_rate: float = 0.01,
) -> CustomerValues:
    """Predictions for every customer.

    ``m_x`` is the average value of the repeat purchases (Gamma-Gamma's input); ``average_value``
    the average of all purchases, the fallback spend when there is no spend model.
    CLV = Σ over months of E[spend per purchase] × E[purchases in that month] / (1 + d)^month.
    """
    x, t_x, T = (np.asarray(v, float) for v in (x, t_x, T))
    ux, ut, uT, _, inverse = bgnbd.distinct(x, t_x, T)
    params = models.purchases
    alive = bgnbd.probability_alive(params, ux, ut, uT)
    upcoming = bgnbd.expected_purchases(params, horizon_weeks, ux, ut, uT)
    discounted = np.zeros(len(ux))
    previous = np.zeros(len(ux))
    for month in range(1, months + 1):
        cumulative = bgnbd.expected_purchases(params, month * WEEKS_PER_MONTH, ux, ut, uT)
        discounted += (cumulative - previous) / (1 + monthly_discount_rate) ** month
        previous = cumulative
    if models.spend is not None:
        value = gamma_gamma.expected_average_value(models.spend, x, np.asarray(m_x, float))
    else:
        value = np.asarray(average_value, float)
    # Extreme histories can overflow the special functions: such values are left out (0), never NaN.
    upcoming, discounted = (np.where(np.isfinite(v), np.maximum(v, 0.0), 0.0) for v in (upcoming, discounted))
    value = np.where(np.isfinite(value), np.maximum(value, 0.0), 0.0)
    alive = np.where(np.isfinite(alive), np.clip(alive, 0.0, 1.0), 0.0)
    return CustomerValues(
        p_alive=alive[inverse],
        expected_purchases=upcoming[inverse],
        expected_value=value,
        clv=value * discounted[inverse],
    )
