"""Every customer's value at once (cdp_analytics.value) equals the per-customer formulas."""

from __future__ import annotations

import numpy as np
import pytest
from cdp_analytics import bgnbd, gamma_gamma, simulate, value
from cdp_analytics.clv import customer_lifetime_value


@pytest.fixture(scope="module")
def customers():
    rng = np.random.default_rng(5)
    people = simulate.bgnbd_customers_fast(rng, 5_000, r=0.5, alpha=6.0, a=0.7, b=3.0, T_days_min=30, T_days_max=400)
    m_x = simulate.gamma_gamma_spend_fast(rng, people.x, p=6.0, q=4.0, gamma=15.0)
    average = np.where(people.x > 0, m_x, rng.gamma(6.0, 5.0, size=len(m_x)))
    return people, m_x, average


def test_predictions_are_the_papers_formulas_for_each_customer(customers):
    people, m_x, average = customers
    models = value.fit(people.x, people.t_x, people.T, m_x)
    assert models.spend is not None
    got = value.predict(models, people.x, people.t_x, people.T, m_x, average, horizon_weeks=12, months=6)
    purchases = models.purchases
    assert got.p_alive == pytest.approx(bgnbd.probability_alive(purchases, people.x, people.t_x, people.T))
    assert got.expected_purchases == pytest.approx(
        bgnbd.expected_purchases(purchases, 12, people.x, people.t_x, people.T)
    )
    assert got.expected_value == pytest.approx(gamma_gamma.expected_average_value(models.spend, people.x, m_x))
    clv = customer_lifetime_value(purchases, models.spend, people.x, people.t_x, people.T, m_x, months=6)
    assert got.clv == pytest.approx(clv)
    assert ((got.p_alive >= 0) & (got.p_alive <= 1)).all() and (got.clv >= 0).all()


def test_without_a_spend_model_each_customer_s_own_average_stands_in(customers):
    people, m_x, average = customers
    only_purchases = value.Models(bgnbd.fit(people.x, people.t_x, people.T), None)
    got = value.predict(only_purchases, people.x, people.t_x, people.T, m_x, average, horizon_weeks=4, months=1)
    assert got.expected_value == pytest.approx(average)
    first_month = bgnbd.expected_purchases(only_purchases.purchases, 52 / 12, people.x, people.t_x, people.T)
    assert got.clv == pytest.approx(average * first_month / 1.01)
    # Too few repeat customers with a value: no spend model is fitted.
    few = np.where(np.arange(len(m_x)) < 5, m_x, 0.0)
    assert value.fit(people.x, people.t_x, people.T, few).spend is None


def test_data_that_cannot_identify_the_models_is_refused():
    with pytest.raises(value.NotEnoughData, match="no customer"):
        value.fit(np.array([]), np.array([]), np.array([]), np.array([]))
    with pytest.raises(value.NotEnoughData, match="two different days"):
        value.fit(np.zeros(3), np.zeros(3), np.array([5.0, 6.0, 7.0]), np.zeros(3))
