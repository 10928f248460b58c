"""One bad event never fails its batch; event times are bounded; partitions never block readers.
Against real PostgreSQL, through the resolved-events handler (the consumer's edge)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import REGISTRY

from cdp.events.v1 import events_pb2
from cdp_profile import repository
from cdp_profile.consumers import ResolvedEventsHandler

from .helpers import T0, WS, incoming, resolved


@dataclass
class Message:
    data: bytes


def rejected(reason):
    return REGISTRY.get_sample_value("cdp_profile_events_rejected_total", {"reason": reason}) or 0


def adjusted(reason):
    return REGISTRY.get_sample_value("cdp_profile_events_adjusted_total", {"reason": reason}) or 0


async def test_bad_events_are_refused_or_clamped_one_by_one_and_the_batch_goes_on(svc):
    good, buyer = str(uuid.uuid4()), str(uuid.uuid4())
    events = [
        resolved(good, "good", 1),
        resolved(buyer, "huge-total", 2, "Order Completed", order_id="O-1", total_minor=1e19),
        resolved(buyer, "huge-quantity", 3, "Order Completed", order_id="O-2", total=1, products=[{"quantity": 1e300}]),
        resolved(buyer, "huge-price", 4, "Order Completed", order_id="O-3", products=[{"price": 1e30}]),
        resolved(buyer, "huge-refund", 5, "Order Refunded", order_id="O-4", amount="99999999999999999"),
        resolved(good, "nul", 6, "Store\x00 Visited", events_pb2.EVENT_TYPE_TRACK, store_id="s\x001"),
        resolved(
            good, "nul-trait", 7, "", events_pb2.EVENT_TYPE_IDENTIFY, {"ci\x00ty": "Hang\x00zhou", "x": "x" * 5000}
        ),
        resolved("not-a-uuid", "bad-person", 8),
        resolved("", "no-person", 9),
        resolved(good, "too-large", 10, blob="x" * 70_000),
    ]
    future = resolved(good, "future", 11)
    future.event.timestamp.FromDatetime(datetime(9999, 12, 31, tzinfo=UTC))
    ancient = resolved(good, "ancient", 12)
    ancient.event.timestamp.FromDatetime(datetime(1900, 1, 1, tzinfo=UTC))
    beyond = resolved(good, "beyond", 13)
    beyond.event.timestamp.seconds = 10**13  # not a time Python (or Postgres) can hold
    events += [future, ancient, beyond]
    before = {
        reason: rejected(reason)
        for reason in ("order_values_out_of_range", "bad_person_id", "no_person_id", "too_large", "too_old", "bad_time")
    }
    before_adjusted = {reason: adjusted(reason) for reason in ("future_time", "nul_removed", "trait_dropped")}

    handler = ResolvedEventsHandler(svc)
    await handler([Message(events_pb2.ResolvedEventBatch(events=events[:7]).SerializeToString()),
                   Message(events_pb2.ResolvedEventBatch(events=events[7:]).SerializeToString())])  # fmt: skip

    async with svc.pool.acquire() as conn:
        stored = {
            r["message_id"]: r
            for r in await conn.fetch("SELECT message_id, event, store_id, event_time, traits FROM events")
        }
        keys = {r["message_id"] for r in await conn.fetch("SELECT message_id FROM event_keys")}
    assert set(stored) == keys == {"good", "nul", "nul-trait", "future"}
    assert stored["nul"]["event"] == "Store Visited" and stored["nul"]["store_id"] == "s1"
    assert stored["nul-trait"]["traits"]["set"] == {"city": "Hangzhou"}
    # A time after its receipt is the receipt (a device clock ahead): no partition in year 9999.
    assert stored["future"]["event_time"] == T0 + timedelta(minutes=11, seconds=1)
    assert {reason: rejected(reason) - count for reason, count in before.items()} == {
        "order_values_out_of_range": 4,
        "bad_person_id": 1,
        "no_person_id": 1,
        "too_large": 1,
        "too_old": 1,
        "bad_time": 1,
    }
    assert {reason: adjusted(reason) - count for reason, count in before_adjusted.items()} == {
        "future_time": 1,
        "nul_removed": 2,
        "trait_dropped": 1,
    }
    view = await svc.get_profile(WS, good)
    assert view.state.event_count == 4 and view.state.traits == {"city": "Hangzhou"}
    assert view.state.last_seen_at == T0 + timedelta(minutes=11, seconds=1)

    # A refused event was not stored: once corrected, the same message id is accepted.
    await svc.record_events([incoming(buyer, "huge-total", 2, "Order Completed", order_id="O-1", total=12)])
    assert (await svc.get_profile(WS, buyer)).state.computed["total_spent_minor"] == 1200


async def test_partitions_are_attached_without_waiting_for_readers_and_old_events_need_none(svc):
    await svc.maintain_partitions(2)
    async with svc.pool.acquire() as conn:
        bound, months = await repository.existing_partitions(conn)
    assert bound is not None
    reader = await svc.pool.acquire()
    creator = await svc.pool.acquire()
    try:
        transaction = reader.transaction()
        await transaction.start()
        await reader.fetch("SELECT 1 FROM events LIMIT 1")  # a reader (a GetProfile, a batch) in flight
        await creator.execute("SET lock_timeout = '2s'")
        future_month = (bound.year + 5, 3)
        await asyncio.wait_for(repository.create_partitions(creator, [future_month]), 10)
        await transaction.rollback()
    finally:
        await svc.pool.release(reader)
        await svc.pool.release(creator)
    async with svc.pool.acquire() as conn:
        _, after = await repository.existing_partitions(conn)
        assert after == months | {future_month}
        # Creating it again (another replica) is harmless.
        await repository.create_partitions(conn, [future_month])

    # Events older than the first monthly partition go to events_history: no partition per month.
    person = str(uuid.uuid4())
    old = [incoming(person, f"old-{i}", -60 * 24 * 400 * i) for i in range(1, 4)]
    await svc.record_events(old)
    async with svc.pool.acquire() as conn:
        _, final = await repository.existing_partitions(conn)
        where = await conn.fetch(
            "SELECT tableoid::regclass::text AS part FROM events WHERE person_id = $1", uuid.UUID(person)
        )
    assert final == after and {r["part"] for r in where} == {"events_history"}
    assert (await svc.get_profile(WS, person)).state.event_count == 3


async def test_creating_a_partition_of_events_with_create_table_partition_of_would_wait(svc):
    """Why partitions are attached: the statement the service used before waits behind a reader."""
    reader = await svc.pool.acquire()
    creator = await svc.pool.acquire()
    try:
        transaction = reader.transaction()
        await transaction.start()
        await reader.fetch("SELECT 1 FROM events LIMIT 1")
        await creator.execute("SET lock_timeout = '200ms'")
        try:
            await creator.execute(
                "CREATE TABLE events_p209901 PARTITION OF events FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')"
            )
            waited = False
        except asyncpg.LockNotAvailableError:
            waited = True
        await transaction.rollback()
    finally:
        await svc.pool.release(reader)
        await svc.pool.release(creator)
    assert waited
