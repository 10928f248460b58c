"""Token buckets per key and the messageId seen-set, with a controlled clock."""

from __future__ import annotations

import pytest

from cdp.events.v1 import events_pb2
from cdp_gateway.dedup import SeenMessages
from cdp_gateway.keys import SECRET, WRITE, Principal
from cdp_gateway.limits import RateLimiter
from cdpkit.errors import ResourceExhausted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def writer(rate: int = 0, key: str = "k1", workspace: str = "shop") -> Principal:
    return Principal(workspace, key, WRITE, frozenset(), rate)


def limiter(clock, **kwargs) -> RateLimiter:
    return RateLimiter(write_rate=kwargs.pop("write_rate", 100), secret_rate=10, burst_seconds=2, clock=clock, **kwargs)


def test_bucket_admits_its_capacity_then_refuses_with_the_wait():
    clock = Clock()
    limits = limiter(clock)
    limits.take(writer(), 150)
    limits.take(writer(), 50)  # 200 = 2 s of 100/s
    with pytest.raises(ResourceExhausted) as refused:
        limits.take(writer(), 30)
    assert refused.value.retry_after == pytest.approx(0.3)
    clock.now += 0.31
    limits.take(writer(), 30)


def test_a_refused_request_costs_nothing_and_refill_is_capped():
    clock = Clock()
    limits = limiter(clock)
    limits.take(writer(), 190)
    for _ in range(5):
        with pytest.raises(ResourceExhausted):
            limits.take(writer(), 20)
    clock.now += 0.11
    limits.take(writer(), 20)  # 10 + 11 refilled
    clock.now += 3600
    limits.take(writer(), 200)  # refilled to the capacity, not beyond
    with pytest.raises(ResourceExhausted):
        limits.take(writer(), 1)


def test_a_batch_larger_than_the_bucket_passes_when_full_and_overdraws():
    clock = Clock()
    limits = limiter(clock)
    limits.take(writer(), 500)  # 2.5x the bucket: admitted because the bucket is full
    with pytest.raises(ResourceExhausted) as refused:
        limits.take(writer(), 1)
    assert refused.value.retry_after == pytest.approx(3.01)  # from -300 back to +1 at 100/s
    clock.now += 4.9  # -300 + 490 = 190: not full, so the big batch waits
    with pytest.raises(ResourceExhausted) as refused:
        limits.take(writer(), 500)
    assert refused.value.retry_after == pytest.approx(0.1)
    clock.now += 0.1
    limits.take(writer(), 500)


def test_keys_have_their_own_buckets_and_rates():
    clock = Clock()
    limits = limiter(clock)
    limits.take(writer(key="a"), 200)
    limits.take(writer(key="b"), 200)
    limits.take(writer(key="a", workspace="other"), 200)
    limits.take(writer(rate=1000, key="c"), 2000)  # its own rate from the key
    secret = Principal("shop", "s1", SECRET, frozenset({"read"}))
    for _ in range(20):  # 10 requests/s, 2 s
        limits.take(secret)
    with pytest.raises(ResourceExhausted, match="10 requests/s"):
        limits.take(secret)


def test_replicas_split_the_budget_and_zero_means_unlimited():
    clock = Clock()
    limits = limiter(clock, replicas=4)
    assert limits.rate_of(writer()) == 25
    limits.take(writer(), 50)
    with pytest.raises(ResourceExhausted, match=r"\(100 events/s\)"):  # the message names the fleet rate
        limits.take(writer(), 1)
    unlimited = limiter(clock, write_rate=0)
    for _ in range(100):
        unlimited.take(writer(), 10_000)


def events(*ids: str, workspace: str = "shop") -> list[events_pb2.RawEvent]:
    return [events_pb2.RawEvent(workspace_id=workspace, message_id=m) for m in ids]


def ids(found) -> list[str]:
    return [e.message_id for e in found]


def test_seen_ids_are_dropped_only_after_they_were_remembered():
    seen = SeenMessages(ttl=60, max_entries=100, clock=Clock())
    assert ids(seen.fresh(events("a", "b", "a"))) == ["a", "b"]  # a repeat inside one request
    assert ids(seen.fresh(events("a", "b"))) == ["a", "b"]  # not remembered yet: publish failed
    seen.remember(events("a", "b"))
    assert ids(seen.fresh(events("a", "c", "b", "d"))) == ["c", "d"]
    assert ids(seen.fresh(events("a", workspace="other"))) == ["a"]
    assert seen.dropped == 3


def test_seen_ids_expire_and_the_set_is_bounded():
    clock = Clock()
    seen = SeenMessages(ttl=60, max_entries=3, clock=clock)
    seen.remember(events("a", "b"))
    clock.now += 30
    seen.remember(events("c"))
    clock.now += 31  # a and b expired, c has 29 s left
    assert ids(seen.fresh(events("a", "b", "c"))) == ["a", "b"]
    seen.remember(events("d", "e", "f"))  # c is expired-or-evicted first, then the oldest
    assert len(seen) == 3
    assert ids(seen.fresh(events("c", "d", "e", "f"))) == ["c"]


def test_a_zero_sized_set_disables_deduplication():
    seen = SeenMessages(max_entries=0)
    seen.remember(events("a"))
    assert ids(seen.fresh(events("a", "a"))) == ["a", "a"]
