"""One bad value never fails a batch: dates near the year 9999, NUL characters, NaN and huge
numbers are stored (adjusted where PostgreSQL cannot hold them) next to the rest of the batch,
and both evaluators and both timer computations agree on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cdp.events.v1 import events_pb2
from cdp_segment.consumers import decode_profile_changed
from cdp_segment.domain import Segment
from cdp_segment.rules import memory, sql, syntax

from .live_env import START, WS, pid

RULES = {
    "recent": "traits.d within last 30d",
    "lapsed": "traits.d more than 30d ago",
    "noted": 'event("Viewed", within 30d, where note = "a\ufffdb")',
    "big": "traits.n > 1000000",
    "scored": "traits.score exists",
}


def announcement(person_id: str, *, traits: dict, events=()) -> bytes:
    message = events_pb2.ProfileChanged(workspace_id=WS, person_id=person_id, version=1)
    message.snapshot.traits.update(traits)
    for message_id, when, properties in events:
        fact = message.events.add(message_id=message_id, event="Viewed")
        if isinstance(when, datetime):
            fact.event_time.FromDatetime(when)
        else:
            fact.event_time.seconds = when
        fact.properties.update(properties)
    return message.SerializeToString()


async def timers(env, segment_id: str) -> dict[str, datetime]:
    rows = await env.fetch(
        "SELECT person_id::text AS p, due_at FROM timers WHERE workspace_id = $1 AND segment_id = $2", WS, segment_id
    )
    return {r["p"]: r["due_at"] for r in rows}


async def test_a_batch_with_bad_values_applies_whole_and_the_evaluators_agree_on_it(env):
    for segment_id, rule in RULES.items():
        await env.service.create(Segment(WS, segment_id, segment_id, "", rule))
    far, nul, nan, normal = pid(), pid(), pid(), pid()
    batch = [
        announcement(far, traits={"d": "9999-12-20"}, events=[("m-far", datetime(9999, 12, 31, 12, tzinfo=UTC), {})]),
        announcement(nul, traits={"d": "9999-12-31T23:00-05:00"}, events=[("m-nul", START, {"note": "a\x00b"})]),
        announcement(nan, traits={"score": float("nan"), "n": 1.7976931348623157e308}),
        announcement(normal, traits={"d": (START - timedelta(days=40)).strftime("%Y-%m-%d")}),
        announcement(pid(), traits={}, events=[("m-10000", 253402300800, {})]),  # an event time past 9999: skipped
    ]
    await env.live.apply_profile_changes([decode_profile_changed(b) for b in batch])
    assert len(await env.persons()) == 5
    assert {s: await env.members(s) for s in RULES} == {
        "recent": set(),
        "lapsed": {normal},
        "noted": {nul},
        "big": {nan},
        "scored": set(),
    }
    async with env.pool.acquire() as conn:
        for segment_id, rule in RULES.items():
            query, params = sql.members_query(syntax.parse(rule), WS, env.clock.now())
            assert {str(r["person_id"]) for r in await conn.fetch(query, *params)} == await env.members(segment_id)
    # Timers: the live path's (rules.timing) and a refresh's (rules.sql.edges_query) agree, and an
    # edge past the year 9999 is never set. The date-only "9999-12-20" is midnight in the
    # workspace time zone (none announced: CDP_SEGMENT_TIME_ZONE, Asia/Shanghai).
    await env.service.create(Segment(WS, "recent-refreshed", "r", "", RULES["recent"]))
    await env.service.create(Segment(WS, "noted-refreshed", "n", "", RULES["noted"]))
    assert (
        await timers(env, "recent")
        == await timers(env, "recent-refreshed")
        == {far: datetime(9999, 12, 19, 16, tzinfo=UTC)}
    )
    assert await timers(env, "noted") == await timers(env, "noted-refreshed")
    assert (await timers(env, "noted"))[nul] == START + timedelta(days=30)


# Text PostgreSQL and Python could read differently: a date with an offset is midnight at that
# offset; an instant written with an offset across a day or year boundary; nanoseconds.
TIME_TEXTS = (
    "2026-05-19+08:00",
    "2026-05-19-05:00",
    "2026-05-19Z",
    "2026-05-19",
    "2026-05-19T00:00+14:00",
    "1000-01-01+14:00",
    "9999-12-31-05:00",
    "9999-12-31T23:59:59.999999Z",
    "2026-03-20T12:00:00.000000900Z",
    "2026-02-29+08:00",
)


async def test_time_texts_read_the_same_in_postgres_and_python(env):
    async with env.pool.acquire() as conn:
        stored = {t: await conn.fetchval("SELECT try_timestamptz($1)", t) for t in TIME_TEXTS}
    assert stored == {t: memory.as_time(t) for t in TIME_TEXTS}
    assert stored["2026-05-19+08:00"] == datetime(2026, 5, 18, 16, tzinfo=UTC)


async def test_date_only_texts_are_midnight_in_the_workspace_zone_in_postgres_and_python(env):
    zones = ("UTC", "Asia/Shanghai", "America/New_York", "Pacific/Kiritimati", "Asia/Kathmandu")
    texts = (
        *TIME_TEXTS,
        "2026-05-19T00:00",
        "0001-01-01",
        "9999-12-31",
        "1000-01-01",
        "2026-03-08",
        "2026-11-01",
        "2026-02-30",
    )
    async with env.pool.acquire() as conn:
        stored = {(t, z): await conn.fetchval("SELECT try_timestamptz($1, $2)", t, z) for t in texts for z in zones}
    assert stored == {(t, z): memory.as_time(t, ZoneInfo(z)) for t in texts for z in zones}
    assert stored["2026-05-19", "Asia/Shanghai"] == datetime(2026, 5, 18, 16, tzinfo=UTC)
    # a date and time without a zone stays UTC
    assert {stored["2026-05-19T00:00", z] for z in zones} == {datetime(2026, 5, 19, tzinfo=UTC)}
    assert stored["9999-12-31", "America/New_York"] == datetime(9999, 12, 31, 5, tzinfo=UTC)
    assert stored["0001-01-01", "UTC"] is None  # not the 1000-9999 shape either side reads


async def test_a_date_with_an_offset_is_midnight_there_for_the_live_path_and_sql(env):
    # The review's case: at 2026-06-18 00:00 UTC, "2026-05-19+08:00" is 2026-05-18 16:00 UTC,
    # more than 30 days ago; read as 08:00 UTC it would not be.
    await env.service.create(Segment(WS, "lapsed", "lapsed", "", RULES["lapsed"]))
    person = pid()
    await env.live.apply_profile_changes(
        [decode_profile_changed(announcement(person, traits={"d": "2026-05-19+08:00"}))]
    )
    assert await env.members("lapsed") == {person}
    await env.service.create(Segment(WS, "lapsed-refreshed", "l", "", RULES["lapsed"]))
    assert await env.members("lapsed-refreshed") == {person}
