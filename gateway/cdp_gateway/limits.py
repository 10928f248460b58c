"""Per-key rate limits: a token bucket per key, in each gateway replica.

A key's budget (``rate_limit_per_second`` of the key, else the default of its kind) is for the
whole fleet and is split evenly between the replicas: each enforces ``rate / replicas``
(``CDP_GATEWAY_REPLICAS``). That keeps the hot path free of network round trips (no shared
counter per request) at the price of precision: a client whose connections all land on one
replica gets ``1 / replicas`` of its budget there. docs/gateway.md explains the choice.

Write keys pay one token per event (a 500-event batch costs 500), secret keys one per request.
The bucket holds ``burst_seconds`` of rate. A request is admitted when the bucket holds its
cost; a request costing more than the whole bucket (a big batch on a small limit) is admitted
when the bucket is full and overdraws it, so it is never refused forever. A refused request
is told how long to wait (``Retry-After``) and costs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from cdp_gateway.keys import WRITE, Principal
from cdpkit.errors import ResourceExhausted


class TokenBucket:
    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def take(self, cost: float, now: float) -> float:
        """0 when admitted (tokens taken), else the seconds until the request would be admitted."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        needed = min(cost, self.capacity)
        if self.tokens >= needed:
            self.tokens -= cost
            return 0.0
        return (needed - self.tokens) / self.rate if self.rate > 0 else math.inf


class RateLimiter:
    def __init__(
        self,
        *,
        write_rate: float,
        secret_rate: float,
        burst_seconds: float = 2.0,
        replicas: int = 1,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._defaults = {WRITE: write_rate, "secret": secret_rate}
        self._burst = burst_seconds
        self._replicas = max(1, replicas)
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def rate_of(self, principal: Principal) -> float:
        """This replica's share of the key's rate; 0 means unlimited."""
        rate = principal.rate_limit or self._defaults.get(principal.kind, 0)
        return rate / self._replicas

    def take(self, principal: Principal, cost: float = 1.0) -> None:
        """Admit ``cost`` tokens for the key or raise ResourceExhausted with ``retry_after``."""
        rate = self.rate_of(principal)
        if rate <= 0:
            return
        now = self._clock()
        key = (principal.workspace_id, principal.key_id)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            if len(self._buckets) >= self._max_keys:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[key] = TokenBucket(rate, max(rate * self._burst, 1.0), now)
        wait = bucket.take(cost, now)
        if wait:
            unit = "events" if principal.kind == WRITE else "requests"
            raise ResourceExhausted(
                f"rate limit of key {principal.key_id} exceeded ({rate * self._replicas:g} {unit}/s); "
                f"retry in {math.ceil(wait)} s",
                retry_after=wait,
            )
