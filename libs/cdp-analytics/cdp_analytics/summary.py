"""From raw transactions to the RFM summary the models need.

Customer-day aggregation: several transactions of one customer on one calendar day are one
purchase (their amounts add up), as in Fader, Hardie & Lee. Time is in weeks. For each
customer whose first purchase is on or before the calibration end:

- ``x``   repeat purchases: purchase days in the calibration period after the first
- ``t_x`` time of the last purchase, weeks after the first (0 when x = 0)
- ``T``   age: weeks from the first purchase to the end of the calibration period
- ``m_x`` average value of the repeat purchases (0 when x = 0)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np


@dataclass(frozen=True)
class Transaction:
    customer_id: str
    day: date
    amount: float


@dataclass(frozen=True)
class Summary:
    customer_ids: list[str]
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    m_x: np.ndarray

    def __len__(self) -> int:
        return len(self.customer_ids)


def summarise(transactions: Iterable[Transaction], calibration_end: date) -> Summary:
    by_customer: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for transaction in transactions:
        if transaction.day <= calibration_end:
            by_customer[transaction.customer_id][transaction.day] += transaction.amount
    ids, xs, recencies, ages, values = [], [], [], [], []
    for customer_id in sorted(by_customer):
        days = sorted(by_customer[customer_id])
        first = days[0]
        repeats = days[1:]
        ids.append(customer_id)
        xs.append(len(repeats))
        recencies.append((days[-1] - first).days / 7.0)
        ages.append((calibration_end - first).days / 7.0)
        values.append(sum(by_customer[customer_id][d] for d in repeats) / len(repeats) if repeats else 0.0)
    return Summary(ids, np.array(xs, dtype=float), np.array(recencies), np.array(ages), np.array(values))


def holdout_purchases(transactions: Iterable[Transaction], calibration_end: date, holdout_end: date) -> dict[str, int]:
    """Purchase days per customer after the calibration period, up to ``holdout_end``."""
    days: dict[str, set[date]] = defaultdict(set)
    for transaction in transactions:
        if calibration_end < transaction.day <= holdout_end:
            days[transaction.customer_id].add(transaction.day)
    return {customer: len(d) for customer, d in days.items()}
