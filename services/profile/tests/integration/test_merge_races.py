"""Writes to a person whose profile a merge takes away while they wait for its lock, against real
PostgreSQL: they land on the survivor, never under the merged-away id nor as NOT_FOUND."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from cdp.events.v1 import events_pb2
from cdpkit.bus import partition_of

from .helpers import WS, incoming


def person_in_partition_apart(svc, *others):
    """A person id whose event partition (advisory lock) is not that of ``others``."""
    taken = {partition_of(o, svc._names.partitions) for o in others}
    while True:
        person = str(uuid.uuid4())
        if partition_of(person, svc._names.partitions) not in taken:
            return person


async def waiting_for_locks(svc, count):
    for _ in range(400):
        async with svc.pool.acquire() as conn:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        if waiting >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{count} transactions never waited for a lock")


async def test_writes_to_an_alias_while_its_survivor_is_merged_away_land_on_the_new_survivor(svc):
    s, t = str(uuid.uuid4()), str(uuid.uuid4())
    x = person_in_partition_apart(svc, s, t)
    for person in (s, t, x):
        await svc.record_events([incoming(person, f"v-{person}", 1)])
    merge = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=s, merged_person_ids=[x], merge_id="m0")
    assert await svc.apply_merge(merge)

    # S's row is held so that the merge of S into T and then writes to X (now S) queue behind it.
    async with svc.pool.acquire() as holder:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM profiles WHERE person_id = $1 FOR UPDATE", uuid.UUID(s))
        merge = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=t, merged_person_ids=[s], merge_id="m1")
        merging = asyncio.create_task(svc.apply_merge(merge))
        await waiting_for_locks(svc, 1)
        writes = [
            asyncio.create_task(svc.record_events([incoming(x, "late", 5)])),
            asyncio.create_task(svc.modify_tags(WS, x, [("vip", None)], [], "crm", "r1")),
            asyncio.create_task(
                svc.update_traits(WS, x, set_={"plan": "gold"}, set_once={}, unset=[], source="crm", request_id="r2")
            ),
        ]
        await waiting_for_locks(svc, 4)
        await hold.commit()
    assert await merging
    assert await writes[0] == 1
    await asyncio.gather(*writes[1:])

    view = await svc.get_profile(WS, x)
    assert view.state.person_id == t
    assert view.state.event_count == 5  # s, t, x, late, and the identify of UpdateProfileTraits
    assert "vip" in view.state.tags and view.state.traits["plan"] == "gold"
    async with svc.pool.acquire() as conn:
        left_behind = await conn.fetch(
            "SELECT person_id FROM profiles WHERE person_id = ANY($1::uuid[])", [uuid.UUID(s), uuid.UUID(x)]
        )
        stray_events = await conn.fetchval("SELECT count(*) FROM events WHERE person_id <> $1", uuid.UUID(t))
    assert left_behind == [] and stray_events == 0


async def test_api_retries_after_the_person_was_merged_away_are_still_retries(svc):
    s, x = str(uuid.uuid4()), str(uuid.uuid4())
    for person in (s, x):
        await svc.record_events([incoming(person, f"v-{person}", 1)])

    async def requests():
        await svc.modify_tags(WS, x, [("vip", None)], [], "crm", "t1")
        await svc.update_consent(WS, x, "sms", "", True, "crm", None, "c1")
        await svc.update_traits(WS, x, set_={"plan": "gold"}, set_once={}, unset=[], source="crm", request_id="u1")

    await requests()
    merge = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=s, merged_person_ids=[x], merge_id="m")
    assert await svc.apply_merge(merge)
    merged = await svc.get_profile(WS, s)
    svc.clock.advance(timedelta(minutes=5))  # a retried consent would otherwise be a newer statement
    await svc.unsubscribe(WS, s, "sms", "link", "o1")
    withdrawn = await svc.get_profile(WS, s)

    await requests()  # retried through the merged-away id
    again = await svc.get_profile(WS, s)
    assert again.state.version == withdrawn.state.version == merged.state.version + 1
    assert again.state.event_count == merged.state.event_count == 3
    assert again.state.consent["sms"]["granted"] is False
