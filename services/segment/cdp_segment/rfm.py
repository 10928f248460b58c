"""The 8-group RFM model, pure Python. The SQL twin (repository._rfm_wanted, used by RFM
recomputes) must agree.

A *customer* is a person whose computed traits hold ``last_order_time`` (an ISO time),
``order_count`` > 0 and ``total_spent_minor`` (numbers): the RFM raw values ProfileChanged
carries. Recency R is the time since the last order, frequency F the order count, monetary M
the total spent. Each is *high* or *low*:

- ``mean``: against the workspace mean of the customers: R high when more recent than the mean
  recency (r < mean), F high when F > mean, M high when M > mean;
- ``quintile``: each scored 1-5 by the quintile cut points of the customers (5 = most recent,
  most frequent, biggest spender); high when the score is at least ``high_score`` (default 4).

The eight groups (重要 = M high, 一般 = M low):

=========  =====  =====  =====
group       R      F      M
=========  =====  =====  =====
重要价值    high   high   high
重要发展    high   low    high
重要保持    low    high   high
重要挽留    low    low    high
一般价值    high   high   low
一般发展    high   low    low
一般保持    low    high   low
一般挽留    low    low    low
=========  =====  =====  =====
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from cdp_segment.rules.memory import END_OF_TIME, as_number, as_time
from cdpkit.errors import InvalidArgument

GROUPS: dict[tuple[bool, bool, bool], str] = {
    (True, True, True): "重要价值",
    (True, False, True): "重要发展",
    (False, True, True): "重要保持",
    (False, False, True): "重要挽留",
    (True, True, False): "一般价值",
    (True, False, False): "一般发展",
    (False, True, False): "一般保持",
    (False, False, False): "一般挽留",
}
# Stable English ids of the groups (built-in segment ids: rfm-important-value ...).
GROUP_IDS = {
    "重要价值": "important-value",
    "重要发展": "important-development",
    "重要保持": "important-retention",
    "重要挽留": "important-recovery",
    "一般价值": "general-value",
    "一般发展": "general-development",
    "一般保持": "general-retention",
    "一般挽留": "general-recovery",
}
METHODS = ("mean", "quintile")
# The timers row (in ``timers``, beside segments' rows) of a person's next recency regroup; no
# segment id has a colon.
RFM_TIMER = "rfm:recency"
_MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class RfmSettings:
    method: str = "mean"
    high_score: int = 4

    def validated(self) -> RfmSettings:
        if self.method not in METHODS:
            raise InvalidArgument("settings.method", "must be mean or quintile")
        if not 2 <= self.high_score <= 5:
            raise InvalidArgument("settings.high_score", "must be between 2 and 5")
        return self


@dataclass(frozen=True)
class RfmThresholds:
    """Mean: one value per dimension; quintile: four ascending cut points per dimension."""

    method: str
    high_score: int
    recency_seconds: tuple[Decimal, ...]
    frequency: tuple[Decimal, ...]
    monetary: tuple[Decimal, ...]
    customers: int
    computed_at: datetime


def raw_values(computed: Mapping[str, Any]) -> tuple[datetime, Decimal, Decimal] | None:
    """(last order time, order count, total spent) of a customer, else None."""
    last = as_time(computed.get("last_order_time"))
    frequency = as_number(computed.get("order_count"))
    monetary = as_number(computed.get("total_spent_minor"))
    if last is None or frequency is None or monetary is None or frequency <= 0:
        return None
    return last, frequency, monetary


def recency_seconds(last: datetime, now: datetime) -> Decimal:
    """Exact to the microsecond, as PostgreSQL's extract(epoch from interval)."""
    return Decimal((now - last) // timedelta(microseconds=1)) * _MICRO


def _high(value: Decimal, cuts: Sequence[Decimal], thresholds: RfmThresholds, *, lower_is_better: bool) -> bool:
    if thresholds.method == "mean":
        return value < cuts[0] if lower_is_better else value > cuts[0]
    better = sum(1 for cut in cuts if (value < cut if lower_is_better else value > cut))
    return 1 + better >= thresholds.high_score


def recency_flip(thresholds: RfmThresholds) -> Decimal:
    """R is high exactly while the recency is below this (the mean, or the quintile cut point
    where the score falls under ``high_score``)."""
    if thresholds.method == "mean":
        return thresholds.recency_seconds[0]
    return sorted(thresholds.recency_seconds)[5 - thresholds.high_score]


def next_regroup(computed: Mapping[str, Any], thresholds: RfmThresholds | None, now: datetime) -> datetime | None:
    """When time alone next moves the person's group (recency crossing from high to low), or
    None; the SQL twin is repository._rfm_wanted."""
    values = raw_values(computed)
    if thresholds is None or values is None or thresholds.customers == 0:
        return None
    flip = recency_flip(thresholds)
    if recency_seconds(values[0], now) >= flip:
        return None  # low already: recency only grows
    try:
        due = values[0] + timedelta(microseconds=int(flip / _MICRO))
    except OverflowError:
        return None
    return due if due < END_OF_TIME else None


def rfm_group(computed: Mapping[str, Any], thresholds: RfmThresholds | None, now: datetime) -> str | None:
    """The person's group under ``thresholds``, or None (no thresholds yet, or not a customer)."""
    values = raw_values(computed)
    if thresholds is None or values is None or thresholds.customers == 0:
        return None
    last, frequency, monetary = values
    key = (
        _high(recency_seconds(last, now), thresholds.recency_seconds, thresholds, lower_is_better=True),
        _high(frequency, thresholds.frequency, thresholds, lower_is_better=False),
        _high(monetary, thresholds.monetary, thresholds, lower_is_better=False),
    )
    return GROUPS[key]
