"""The retention of stored events, against real PostgreSQL with a manual clock: monthly
partitions wholly older than the retention are detached (without blocking readers) and dropped,
one replica at a time; what derived values need stays; a replay of a dropped event still counts
once; a late event for a dropped month is stored."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cdp.events.v1 import events_pb2
from cdp_profile import upkeep_repository
from cdp_profile.config import Settings
from cdp_profile.upkeep import PARTITIONS_DROPPED, EventRetention
from cdpkit.config import ConfigError, load

from .helpers import T0, WS, incoming

# Years ahead of the wall clock whenever the suite runs: months after it get monthly partitions.
YEAR = max(2029, datetime.now(UTC).year + 3)
NOW = datetime(YEAR, 6, 15, 12, tzinfo=UTC)


def at(moment: datetime) -> int:
    """``incoming``'s minutes for an event at ``moment``."""
    return int((moment - T0).total_seconds() // 60)


async def tables(svc):
    async with svc.pool.acquire() as conn:
        return {
            r["relname"]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'events'::regclass"
            )
        }


async def stored(svc, *message_ids):
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT message_id FROM events WHERE message_id = ANY($1::text[])", list(message_ids))
    return {r["message_id"] for r in rows}


async def test_old_months_are_dropped_without_blocking_readers_and_what_is_derived_stays(svc, service_env):
    svc.clock.set(NOW)
    person = str(uuid.uuid4())
    events = {
        "history": datetime(2026, 6, 1, tzinfo=UTC),  # before the first monthly partition
        "old": datetime(YEAR - 2, 3, 10, tzinfo=UTC),
        "edge": datetime(YEAR - 1, 5, 20, tzinfo=UTC),  # the cut-off (NOW - 400 days) falls in its month: kept
        "recent": datetime(YEAR, 6, 1, tzinfo=UTC),
    }
    await svc.record_events(
        [incoming(person, message_id, at(moment), "Order Completed" if message_id == "old" else "Product Viewed",
                  **({"order_id": "O-old", "total": 10, "currency": "CNY"} if message_id == "old" else {}))
         for message_id, moment in events.items()]
    )  # fmt: skip
    before = (await svc.get_profile(WS, person)).state
    assert before.event_count == 4 and {
        f"events_p{YEAR - 2}03",
        f"events_p{YEAR - 1}05",
        f"events_p{YEAR}06",
    } <= await tables(svc)

    retention = EventRetention(svc.pool, svc.clock, days=400)
    dropped_before = PARTITIONS_DROPPED._value.get()
    async with svc.pool.acquire() as reader, svc.pool.acquire() as other:
        # A long reader of events: the detach waits for it, and meanwhile nobody waits for the detach.
        await reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert await reader.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", WS) == 4
        run = asyncio.create_task(retention.run())
        await asyncio.sleep(0.5)
        assert not run.done()  # waiting for the open reader
        assert await other.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", WS, timeout=2) >= 3
        await svc.record_events([incoming(person, "during", at(NOW - timedelta(days=1)))])  # writers go on too
        await reader.execute("COMMIT")
        dropped = await asyncio.wait_for(run, 30)

    assert dropped == [f"events_p{YEAR - 2}03"] and PARTITIONS_DROPPED._value.get() == dropped_before + 1
    assert f"events_p{YEAR - 2}03" not in await tables(svc) and f"events_p{YEAR - 1}05" in await tables(svc)
    assert await stored(svc, *events, "during") == {"edge", "recent", "during"}
    # Derived values and orders stay: counters, the order (predictions and order history read orders).
    after = (await svc.get_profile(WS, person)).state
    assert after.event_count == 5 and after.first_seen_at == before.first_seen_at
    assert after.computed["order_count"] == 1 and after.computed["total_spent_minor"] == 1000
    # event_keys stay: a replay of a dropped event does not count again...
    await svc.record_events([incoming(person, "old", at(events["old"]), "Product Viewed")])
    assert (await svc.get_profile(WS, person)).state.event_count == 5
    # ...and a late event for the dropped month is stored (its partition made again; this replica's
    # list of partitions still had it), until the next run drops it.
    await svc.record_events([incoming(person, "late", at(datetime(YEAR - 2, 3, 12, tzinfo=UTC)))])
    assert await stored(svc, "late") == {"late"} and (await svc.get_profile(WS, person)).state.event_count == 6
    assert await retention.run() == [f"events_p{YEAR - 2}03"]


async def test_one_replica_at_a_time_and_a_run_interrupted_after_its_detach_is_completed(svc):
    svc.clock.set(NOW)
    person = str(uuid.uuid4())
    await svc.record_events([incoming(person, "old", at(datetime(YEAR - 2, 1, 5, tzinfo=UTC)))])
    retention = EventRetention(svc.pool, svc.clock, days=400)
    async with svc.pool.acquire() as conn:
        assert await upkeep_repository.try_lock(conn, upkeep_repository.RETENTION_LEASE)
        assert await retention.run() == []  # another replica is at it
        await upkeep_repository.unlock(conn, upkeep_repository.RETENTION_LEASE)
        # A run that detached and then died before dropping: the next one drops the table.
        await conn.execute(f"ALTER TABLE events DETACH PARTITION events_p{YEAR - 2}01")
    assert await retention.run() == [f"events_p{YEAR - 2}01"]
    async with svc.pool.acquire() as conn:
        assert await conn.fetchval(f"SELECT to_regclass('events_p{YEAR - 2}01')") is None


def test_the_retention_cannot_be_set_below_what_windows_read(service_env):
    with pytest.raises(ConfigError, match="CDP_PROFILE_EVENT_RETENTION_DAYS"):
        load(Settings, {**service_env, "CDP_PROFILE_EVENT_RETENTION_DAYS": "366"})
    assert load(Settings, {**service_env, "CDP_PROFILE_EVENT_RETENTION_DAYS": "0"}).event_retention_days == 0
    assert load(Settings, service_env).event_retention_days == 730
    with pytest.raises(ValueError):
        EventRetention(None, None, days=30)  # type: ignore[arg-type]


async def test_a_split_after_the_retention_leaves_what_dropped_events_said_with_the_person_keeping_the_id(svc):
    """A split replays the persons' stored events; what only dropped events said (a trait, the
    count, the first-seen time) cannot be replayed, and stays with the person keeping the id."""
    svc.clock.set(NOW)
    person, leaving = str(uuid.uuid4()), str(uuid.uuid4())
    identify, user, device = events_pb2.EVENT_TYPE_IDENTIFY, [("user_id", "u-1")], [("anonymous_id", "a-2")]
    first = datetime(YEAR - 2, 3, 10, tzinfo=UTC)
    await svc.record_events(
        [
            incoming(person, "old-identify", at(first), "", type_=identify, traits={"plan": "gold"}, identifiers=user),
            incoming(person, "old-view", at(datetime(YEAR - 2, 3, 11, tzinfo=UTC)), identifiers=user),
            incoming(person, "mine", at(datetime(YEAR, 6, 1, tzinfo=UTC)), identifiers=user),
            incoming(
                person,
                "theirs",
                at(datetime(YEAR, 6, 2, tzinfo=UTC)),
                "",
                type_=identify,
                traits={"city": "Hangzhou"},
                identifiers=device,
            ),
        ]
    )
    assert await EventRetention(svc.pool, svc.clock, days=400).run() == [f"events_p{YEAR - 2}03"]
    split = events_pb2.PersonSplit(
        workspace_id=WS,
        person_id=person,
        new_person_id=leaving,
        moved_identifiers=[events_pb2.Identifier(type="anonymous_id", value="a-2")],
    )
    assert await svc.apply_split(split)
    kept, gone = (await svc.get_profile(WS, person)).state, (await svc.get_profile(WS, leaving)).state
    assert kept.traits == {"plan": "gold"} and kept.event_count == 3 and kept.first_seen_at == first
    assert gone.traits == {"city": "Hangzhou"} and gone.event_count == 1
