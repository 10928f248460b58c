"""The models reproduce the published CDNOW results and recover known parameters."""

from __future__ import annotations

from datetime import date, datetime
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from cdp_analytics import bgnbd, gamma_gamma, simulate, summary
from cdp_analytics.clv import customer_lifetime_value

CDNOW = Path(next(iter(find_spec("lifetimes").submodule_search_locations))) / "datasets" / "CDNOW_sample.txt"


def cdnow_transactions() -> list[summary.Transaction]:
    rows = []
    for line in CDNOW.read_text().splitlines():
        customer, _id, day, _quantity, amount = line.split()
        rows.append(summary.Transaction(customer, datetime.strptime(day, "%Y%m%d").date(), float(amount)))
    return rows


@pytest.fixture(scope="module")
def cdnow() -> summary.Summary:
    return summary.summarise(cdnow_transactions(), calibration_end=date(1997, 9, 30))


def test_cdnow_summary_matches_the_paper(cdnow):
    assert len(cdnow) == 2357
    assert int(cdnow.x.sum()) == 2457  # repeat purchases in the 39-week calibration period
    assert int((cdnow.x > 0).sum()) == 946


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow):
    params = bgnbd.fit(cdnow.x, cdnow.t_x, cdnow.T)
    assert round(params.r, 3) == 0.243
    assert round(params.alpha, 3) == 4.414
    assert round(params.a, 3) == 0.793
    assert round(params.b, 3) == 2.426
    assert round(params.log_likelihood, 1) == -9582.4


def test_gamma_gamma_reproduces_fader_hardie_2013(cdnow):
    params = gamma_gamma.fit(cdnow.x, cdnow.m_x)
    assert params.customers == 946
    assert round(params.p, 2) == 6.25
    assert round(params.q, 2) == 3.74
    assert round(params.gamma, 2) == 15.44


@pytest.mark.parametrize("at", [(0.243, 4.414, 0.793, 2.426), (1.5, 0.8, 3.0, 0.6)])
def test_bgnbd_gradient_is_the_log_likelihoods(cdnow, at):
    """The fit follows the analytic gradient: it must be the log-likelihood's (central differences)."""
    x, t_x, T = cdnow.x.astype(float), cdnow.t_x, cdnow.T
    weights = np.ones(len(x))
    params = np.array(at)
    value, gradient = bgnbd.log_likelihood_gradient(params, x, t_x, T, weights)
    assert value == pytest.approx(bgnbd.log_likelihood(params, x, t_x, T, weights), rel=1e-12)
    for i in range(4):
        step = np.zeros(4)
        step[i] = 1e-6 * params[i]
        slope = (
            bgnbd.log_likelihood(params + step, x, t_x, T, weights)
            - bgnbd.log_likelihood(params - step, x, t_x, T, weights)
        ) / (2 * step[i])
        assert gradient[i] == pytest.approx(slope, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("at", [(6.25, 3.74, 15.44), (1.2, 8.0, 3.0)])
def test_gamma_gamma_gradient_is_the_log_likelihoods(cdnow, at):
    keep = (cdnow.x > 0) & (cdnow.m_x > 0)
    x, m_x = cdnow.x[keep].astype(float), cdnow.m_x[keep]
    params = np.array(at)
    value, gradient = gamma_gamma.log_likelihood_gradient(params, x, np.log(x), np.log(m_x), x * m_x)
    assert value == pytest.approx(gamma_gamma.log_likelihood(params, x, m_x), rel=1e-12)
    for i in range(3):
        step = np.zeros(3)
        step[i] = 1e-6 * params[i]
        slope = (
            gamma_gamma.log_likelihood(params + step, x, m_x) - gamma_gamma.log_likelihood(params - step, x, m_x)
        ) / (2 * step[i])
        assert gradient[i] == pytest.approx(slope, rel=1e-4, abs=1e-3)


def test_distinct_summaries_group_and_spread_back():
    x, t_x, T = np.array([2.0, 0, 2, 2, 0]), np.array([3.0, 0, 3, 1, 0]), np.array([9.0, 5, 9, 9, 7])
    ux, ut, uT, counts, inverse = bgnbd.distinct(x, t_x, T)
    assert list(zip(ux, ut, uT, counts, strict=True)) == [(0, 0, 5, 1), (0, 0, 7, 1), (2, 1, 9, 1), (2, 3, 9, 2)]
    assert (ux[inverse] == x).all() and (ut[inverse] == t_x).all() and (uT[inverse] == T).all()


def test_predictions_of_the_paper_example(cdnow):
    params = bgnbd.fit(cdnow.x, cdnow.t_x, cdnow.T)
    # Fader, Hardie & Lee (2005), section 5: a customer with x=2, t_x=30.43, T=38.86.
    expected = bgnbd.expected_purchases(params, 39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert expected[0] == pytest.approx(1.226, abs=0.001)
    # No repeat purchase yet: certainly alive under BG/NBD; a long silence lowers P(alive).
    alive = bgnbd.probability_alive(
        params, np.array([0.0, 5.0, 5.0]), np.array([0.0, 35.0, 5.0]), np.array([38.0, 38.0, 38.0])
    )
    assert alive[0] == 1.0
    assert alive[1] > 0.8 > alive[2]


def test_gamma_gamma_shrinks_towards_the_population_mean(cdnow):
    params = gamma_gamma.fit(cdnow.x, cdnow.m_x)
    population_mean = params.p * params.gamma / (params.q - 1)
    one, many = gamma_gamma.expected_average_value(params, np.array([1.0, 20.0]), np.array([100.0, 100.0]))
    assert population_mean < one < many < 100.0


def test_clv_is_discounted_and_grows_with_the_horizon(cdnow):
    purchases = bgnbd.fit(cdnow.x, cdnow.t_x, cdnow.T)
    spend = gamma_gamma.fit(cdnow.x, cdnow.m_x)
    args = (np.array([4.0]), np.array([36.0]), np.array([38.0]), np.array([40.0]))
    year = customer_lifetime_value(purchases, spend, *args, months=12, monthly_discount_rate=0.01)
    undiscounted = customer_lifetime_value(purchases, spend, *args, months=12, monthly_discount_rate=0.0)
    two_years = customer_lifetime_value(purchases, spend, *args, months=24, monthly_discount_rate=0.01)
    assert 0 < year[0] < undiscounted[0] < two_years[0] * 1.5
    assert two_years[0] > year[0]


# Stated tolerances (docs/benchmarks.md): over five seeds, 20,000 simulated BG/NBD customers
# gave r and alpha within 3 %, a and b within 7 %; 60,000 Gamma-Gamma customers gave p and
# gamma within 5 % (they trade off along a ridge), q within 1 %, the mean spend within 0.5 %.
TRUE_BGNBD = {"r": 0.5, "alpha": 6.0, "a": 0.7, "b": 3.0}
BGNBD_TOLERANCE = {"r": 0.05, "alpha": 0.05, "a": 0.10, "b": 0.10}


def test_bgnbd_recovers_simulated_parameters():
    rng = np.random.default_rng(20261123)
    data = simulate.bgnbd_customers(rng, 20_000, **TRUE_BGNBD, T_min=30, T_max=78)
    fitted = bgnbd.fit(data.x, data.t_x, data.T).as_dict()
    for name, true in TRUE_BGNBD.items():
        assert fitted[name] == pytest.approx(true, rel=BGNBD_TOLERANCE[name]), (name, fitted)


def test_gamma_gamma_recovers_simulated_parameters():
    rng = np.random.default_rng(7)
    x = rng.integers(1, 8, size=60_000).astype(float)
    m_x = simulate.gamma_gamma_spend(rng, x, p=6.0, q=4.0, gamma=15.0)
    fitted = gamma_gamma.fit(x, m_x)
    assert fitted.p == pytest.approx(6.0, rel=0.10)
    assert fitted.q == pytest.approx(4.0, rel=0.05)
    assert fitted.gamma == pytest.approx(15.0, rel=0.10)
    assert fitted.p * fitted.gamma / (fitted.q - 1) == pytest.approx(6.0 * 15.0 / 3.0, rel=0.02)
