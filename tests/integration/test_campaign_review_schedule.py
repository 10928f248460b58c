"""A recurring broadcast after downtime, with the real segment service."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from cdp.campaign.v1 import campaign_pb2
from cdp_campaign import runner as runner_module

from .campaign_harness import WS, eventually


async def test_a_recurring_broadcast_skips_the_runs_missed_while_down(start_campaign):
    c = await start_campaign()
    await c.create_segment("newsletter", "traits.newsletter = true")
    reader = await c.person(email="reader@example.com", newsletter=True)
    await eventually(lambda: c.is_member("newsletter", reader), what="the member")
    mail = {"channel": "email", "template": {"subject": "News", "body": "."}}
    daily = {"segment_id": "newsletter", "start": "2026-06-18T11:00", "every": "1d"}  # Shanghai
    await c.journey("daily", {"trigger": {"schedule": daily}, "steps": [{"id": "m", "send": mail}]})
    # Down from before the first run for three days: back at 11:30 on the fourth day.
    c.clock.set(datetime(2026, 6, 21, 3, 30, tzinfo=UTC))
    await c.tick()
    assert [(i.person_id, i.trigger_key) for i in await c.instances("daily")] == [
        (reader, "run:2026-06-18T03:00:00+00:00")
    ]
    journey = await c.runtime.pool.fetchval("SELECT next_run_at FROM journeys WHERE journey_id = 'daily'")
    assert journey == datetime(2026, 6, 22, 3, 0, tzinfo=UTC)  # the next slot after now
    c.clock.advance(timedelta(days=1))
    await c.tick()
    assert len(await c.instances("daily")) == 2


async def test_a_broadcast_page_is_read_with_no_transaction_open_and_enrols_once(start_campaign):
    """ListSegmentMembers (the real segment) is called with no lock on the journey and no
    transaction open; two schedulers reading the same page at once enrol each member once."""
    c = await start_campaign()
    await c.create_segment("newsletter", "traits.newsletter = true")
    readers = [await c.person(email=f"r{n}@example.com", newsletter=True) for n in range(3)]
    for reader in readers:
        await eventually(lambda r=reader: c.is_member("newsletter", r), what="the members")
    runner = c.runtime.runner
    for worker in c.runtime.workers:  # the schedulers are driven by hand below
        if getattr(worker, "name", "") == "campaign-scheduler":
            worker.stop()
    segment_list_members = runner._segment.list_members
    both_reading, one_check_at_a_time = asyncio.Barrier(2), asyncio.Lock()
    seen_during_calls = []

    async def list_members(*args, **kwargs):
        with contextlib.suppress(TimeoutError):  # both schedulers looked at the run before either applies it
            await asyncio.wait_for(both_reading.wait(), timeout=5)
        async with one_check_at_a_time, c.runtime.pool.acquire() as conn, conn.transaction():
            # The row is free, and no other transaction holds any lock on the journeys table (a
            # transaction that read it would, until it ends).
            free = await conn.fetchval("SELECT true FROM journeys WHERE journey_id = 'once' FOR UPDATE NOWAIT")
            others = await conn.fetchval(
                """SELECT count(*) FROM pg_locks l JOIN pg_class t ON t.oid = l.relation
                   WHERE t.relname = 'journeys' AND l.pid <> pg_backend_pid()"""
            )
        seen_during_calls.append((free, others))
        return await segment_list_members(*args, **kwargs)

    runner._segment.list_members = list_members
    mail = {"channel": "email", "template": {"subject": "News", "body": "."}}
    once = {"segment_id": "newsletter", "start": "2026-06-18T09:30"}  # Shanghai: half an hour ago
    await c.journey("once", {"trigger": {"schedule": once}, "steps": [{"id": "m", "send": mail}]})
    await asyncio.gather(runner.run_due_journeys(), runner.run_due_journeys())
    assert seen_during_calls == [(True, 0), (True, 0)]  # the journey row free, no transaction open
    instances = await c.instances("once")
    assert sorted(i.person_id for i in instances) == sorted(readers)
    assert {i.trigger_key for i in instances} == {"run:2026-06-18T01:30:00+00:00"}
    assert await c.runtime.pool.fetchval("SELECT next_run_at FROM journeys WHERE journey_id = 'once'") is None


async def test_publishing_a_date_journey_backfills_the_dates_of_existing_profiles(start_campaign, monkeypatch):
    """Profiles that existed before campaign consumed their announcements (their person_dates
    rows are removed here, as for a campaign deployed later) get their birthday trigger: the
    publish reads profile's ListProfileDates page by page (resumable, idempotent), then runs."""
    c = await start_campaign()
    monkeypatch.setattr(runner_module, "DATES_PAGE", 2)
    born_today = [await c.person(email=f"b{n}@example.com", birthday="1990-06-18") for n in range(2)]
    later = await c.person(email="later@example.com", birthday="1985-12-01")
    await c.person(email="none@example.com")

    async def dated():
        return await c.runtime.pool.fetchval("SELECT count(*) FROM person_dates") == 3

    await eventually(dated, what="the projection from profile's announcements")
    await c.runtime.pool.execute("DELETE FROM person_dates")
    runner = c.runtime.runner
    for worker in c.runtime.workers:  # the scheduler is driven by hand below
        if getattr(worker, "name", "") == "campaign-scheduler":
            worker.stop()
    mail = {"channel": "email", "template": {"subject": "Happy birthday", "body": "."}}
    bday = {"trigger": {"date": {"attribute": "birthday", "at": "10:30"}}, "steps": [{"id": "m", "send": mail}]}
    await c.journey("bday", bday)

    async def run_state():
        return await c.runtime.pool.fetchrow("SELECT next_run_at, run_key, run_cursor FROM journeys")

    assert await runner.run_due_journeys() == 1  # the first page: two profiles with dates
    first = await run_state()
    assert (first["run_key"], first["next_run_at"]) == ("backfill", c.clock.now()) and first["run_cursor"]
    assert await c.runtime.pool.fetchval("SELECT count(*) FROM person_dates") == 2
    assert await runner.run_due_journeys() == 1  # the last page; the first run is scheduled
    assert tuple(await run_state()) == (datetime(2026, 6, 18, 2, 30, tzinfo=UTC), "", "")
    rows = await c.runtime.pool.fetch("SELECT person_id, birthday_month_day FROM person_dates")
    assert {r["person_id"]: r["birthday_month_day"] for r in rows} == {
        **dict.fromkeys(born_today, "06-18"),
        later: "12-01",
    }
    # Publishing again backfills again: nothing changes, nobody is doubled.
    await c.stub.PublishJourney(campaign_pb2.PublishJourneyRequest(name=f"workspaces/{WS}/journeys/bday"))
    while (await run_state())["run_key"] == "backfill":
        await runner.run_due_journeys()
    assert await c.runtime.pool.fetchval("SELECT count(*) FROM person_dates") == 3
    c.clock.set(datetime(2026, 6, 18, 2, 30, tzinfo=UTC))  # 10:30 in Shanghai
    await runner.run_due_journeys()
    instances = await c.instances("bday")
    assert sorted(i.person_id for i in instances) == sorted(born_today)
