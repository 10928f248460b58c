"""What the live path costs does not grow with what it does not need: old events outside every
window are not read (review 14); tags no rule reads are written without stalling it (review 15)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cdp_segment import projection, repository
from cdp_segment.domain import Catalogue, Definition, ObjectTags, Segment
from cdp_segment.rules import syntax
from cdp_segment.rules.data import EventFact

from .live_env import START, WS, change, pid

RULE = 'event("Viewed", within 7d) and not event("Bought", between 2026-06-01 and 2026-06-19)'


async def test_only_events_inside_the_rules_windows_are_read(env):
    person = pid()
    old = [EventFact("Viewed", START - timedelta(days=30 + n), {}, f"old-{n}") for n in range(300)]
    recent = [EventFact("Viewed", START - timedelta(days=1), {}, "recent"), EventFact("Other", START, {}, "o")]
    bought = [EventFact("Bought", START - timedelta(days=d), {}, f"b-{d}") for d in (2, 40)]
    await env.service.create(Segment(WS, "viewers", "v", "", RULE))
    await env.live.apply_profile_changes([change(person, 1, events=[*old, *recent, *bought])])
    assert await env.members("viewers") == set()  # bought within the promotion
    catalogue = Catalogue([Definition.of("viewers", 1, syntax.parse(RULE))])
    events, _ = catalogue.needs({"viewers"}, START)
    async with env.pool.acquire() as conn:
        read = await projection.read_persons(conn, WS, [person], events=events)
    assert sorted(e.message_id for e in read[person].events) == ["b-2", "recent"]


async def test_tags_no_rule_reads_do_not_wait_for_the_live_path(env):
    """A bulk retag of products no rule asks about never waits for (or stalls) the live path;
    store tags that a rule reads wait for it (their refresh holds the workspace exclusively)."""
    await env.service.create(Segment(WS, "low", "low", "", 'order.store.tag = "low-performing"'))
    async with env.pool.acquire() as live, live.transaction():
        await repository.lock_workspaces(live, [WS])  # a live-path batch in flight
        products = [ObjectTags(WS, "product", f"p{n}", frozenset({"sale"}), 1) for n in range(50)]
        await asyncio.wait_for(env.live.apply_object_tags(products), timeout=5)
        stores = asyncio.ensure_future(env.live.apply_object_tags([ObjectTags(WS, "store", "s1", frozenset({"x"}), 1)]))
        await asyncio.sleep(0.5)
        assert not stores.done()
    await asyncio.wait_for(stores, timeout=5)
    rows = await env.fetch("SELECT count(*) AS n FROM object_tags WHERE workspace_id = $1", WS)
    assert rows[0]["n"] == 51


async def test_a_timer_worker_locks_no_timer_row_of_a_person_it_does_not_hold(env, monkeypatch):
    """The live path holds P and writes P's timers while a timer worker is mid-round: the worker
    must not hold P's due timer rows (it never waits for P; P is left for the next round)."""
    await env.service.create(Segment(WS, "recent", "recent", "", "traits.d within last 1d"))
    held, other = pid(), pid()
    day = (START - timedelta(hours=12)).isoformat()
    await env.live.apply_profile_changes([change(held, 1, {"d": day}), change(other, 1, {"d": day})])
    env.clock.set(START + timedelta(hours=12))  # both timers due
    entered, release = asyncio.Event(), asyncio.Event()
    evaluate = env.live._memberships.evaluate_persons

    async def slow_evaluate(*args, **kwargs):
        entered.set()
        await release.wait()
        return await evaluate(*args, **kwargs)

    monkeypatch.setattr(env.live._memberships, "evaluate_persons", slow_evaluate)
    worker = None
    try:
        async with env.pool.acquire() as live, live.transaction():
            await repository.lock_persons(live, WS, [held])  # the live path holds this person
            worker = asyncio.ensure_future(env.live.fire_due_timers())
            await asyncio.wait_for(entered.wait(), 5)
            # the live path writes the person's timer while the worker's round is open
            await live.execute(
                "UPDATE timers SET due_at = due_at WHERE workspace_id = $1 AND person_id = $2::uuid",
                WS,
                held,
                timeout=3,
            )
    finally:
        release.set()
    assert await asyncio.wait_for(worker, 5) == 1  # the other person's timer; the held one waits
    assert await env.members("recent") == {held}


async def test_timers_given_twice_for_a_pair_keep_the_last(env):
    """The batch's timers go out in one statement: a pair given twice (two announcements of one
    person in a batch) keeps the last, whether a due time or a drop."""
    person = pid()
    first, last = START + timedelta(days=1), START + timedelta(days=2)
    async with env.pool.acquire() as conn, conn.transaction():
        await repository.set_timers(conn, WS, [("a", person, first), ("b", person, first), ("c", person, None)])
        await repository.set_timers(
            conn, WS, [("a", person, first), ("a", person, last), ("b", person, last), ("b", person, None)]
        )
    rows = await env.fetch(
        "SELECT segment_id, due_at FROM timers WHERE workspace_id = $1 AND person_id = $2", WS, person
    )
    assert {(r["segment_id"], r["due_at"]) for r in rows} == {("a", last)}
