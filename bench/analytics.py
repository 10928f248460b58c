"""Customer-value models: our fit beside `lifetimes` on CDNOW, and a 1M-customer recompute.

    python -m bench analytics [--customers 1000000]

1. CDNOW_sample (from the lifetimes wheel): BG/NBD and Gamma-Gamma fitted by cdp_analytics and
   by lifetimes in the same run: parameters, log-likelihood and time.
2. Recompute for N simulated customers (times in whole days, like real data): fit BG/NBD and
   Gamma-Gamma, then P(alive), churn risk, expected purchases in 12 weeks, expected average
   value and 12-month CLV for everyone. Data generation is not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date, datetime
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from cdp_analytics import bgnbd, gamma_gamma, simulate, summary
from cdp_analytics.clv import customer_lifetime_value


def _cdnow() -> summary.Summary:
    path = Path(next(iter(find_spec("lifetimes").submodule_search_locations))) / "datasets" / "CDNOW_sample.txt"
    rows = [line.split() for line in path.read_text().splitlines()]
    transactions = [summary.Transaction(r[0], datetime.strptime(r[2], "%Y%m%d").date(), float(r[4])) for r in rows]
    return summary.summarise(transactions, date(1997, 9, 30))


def _timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench analytics")
    parser.add_argument("--customers", type=int, default=1_000_000)
    args, _ = parser.parse_known_args()
    rows: list[tuple[str, str, str]] = []

    data = _cdnow()
    ours, ours_s = _timed(lambda: bgnbd.fit(data.x, data.t_x, data.T))
    ours_gg, ours_gg_s = _timed(lambda: gamma_gamma.fit(data.x, data.m_x))
    rows.append(
        (
            "CDNOW BG/NBD, cdp_analytics",
            f"r={ours.r:.3f} α={ours.alpha:.3f} a={ours.a:.3f} b={ours.b:.3f} LL={ours.log_likelihood:.1f}",
            f"{ours_s * 1000:.0f} ms",
        )
    )
    rows.append(
        (
            "CDNOW Gamma-Gamma, cdp_analytics",
            f"p={ours_gg.p:.2f} q={ours_gg.q:.2f} γ={ours_gg.gamma:.2f}",
            f"{ours_gg_s * 1000:.0f} ms",
        )
    )
    try:
        from lifetimes import BetaGeoFitter, GammaGammaFitter

        theirs, theirs_s = _timed(lambda: BetaGeoFitter().fit(data.x, data.t_x, data.T))
        p = theirs.params_
        rows.append(
            (
                "CDNOW BG/NBD, lifetimes",
                f"r={p['r']:.3f} α={p['alpha']:.3f} a={p['a']:.3f} b={p['b']:.3f}",
                f"{theirs_s * 1000:.0f} ms",
            )
        )
        keep = data.x > 0
        theirs_gg, theirs_gg_s = _timed(lambda: GammaGammaFitter().fit(data.x[keep], data.m_x[keep]))
        g = theirs_gg.params_
        rows.append(
            (
                "CDNOW Gamma-Gamma, lifetimes",
                f"p={g['p']:.2f} q={g['q']:.2f} γ={g['v']:.2f}",
                f"{theirs_gg_s * 1000:.0f} ms",
            )
        )
    except ImportError as exc:  # lifetimes is a benchmark-only dependency
        rows.append(("lifetimes", f"not installed ({exc})", "-"))

    rng = np.random.default_rng(1)
    n = args.customers
    people = simulate.bgnbd_customers_fast(rng, n, r=0.5, alpha=6.0, a=0.7, b=3.0, T_days_min=30, T_days_max=730)
    m_x = simulate.gamma_gamma_spend_fast(rng, people.x, p=6.0, q=4.0, gamma=15.0)
    started = time.perf_counter()
    fitted = bgnbd.fit(people.x, people.t_x, people.T)
    fit_s = time.perf_counter() - started
    spend = gamma_gamma.fit(people.x, m_x)
    fit_gg_s = time.perf_counter() - started - fit_s
    alive = bgnbd.probability_alive(fitted, people.x, people.t_x, people.T)
    churn = 1 - alive
    upcoming = bgnbd.expected_purchases(fitted, 12, people.x, people.t_x, people.T)
    value = gamma_gamma.expected_average_value(spend, people.x, m_x)
    clv = customer_lifetime_value(fitted, spend, people.x, people.t_x, people.T, m_x, months=12)
    total_s = time.perf_counter() - started
    assert (
        np.isfinite(clv).all() and np.isfinite(churn).all() and np.isfinite(upcoming).all() and np.isfinite(value).all()
    )
    rows.append(
        (
            f"recompute {n:,} customers: fit BG/NBD",
            f"r={fitted.r:.3f} α={fitted.alpha:.2f} a={fitted.a:.3f} b={fitted.b:.2f} (true 0.5, 6, 0.7, 3)",
            f"{fit_s:.1f} s",
        )
    )
    rows.append(
        (
            "  fit Gamma-Gamma",
            f"p={spend.p:.2f} q={spend.q:.2f} γ={spend.gamma:.2f} (true 6, 4, 15)",
            f"{fit_gg_s:.1f} s",
        )
    )
    rows.append(
        (
            "  + P(alive), churn, E[purchases 12w], E[value], 12-month CLV for all",
            f"mean CLV {clv.mean():.1f}",
            f"{total_s:.1f} s total",
        )
    )

    print(f"\nanalytics benchmark; {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
