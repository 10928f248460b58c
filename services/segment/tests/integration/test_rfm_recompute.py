"""RFM recomputes: no person changed meanwhile keeps a group under the old thresholds; one
replica at a time recomputes a workspace (review 11)."""

from __future__ import annotations

from datetime import timedelta

from cdp_segment import repository, service
from cdp_segment.domain import ProfileChange, ProfileState, Segment
from cdp_segment.rfm import RFM_TIMER, next_regroup, rfm_group

from .live_env import START, WS, pid


def change(person: str, computed: dict) -> ProfileChange:
    return ProfileChange(WS, person, 1, snapshot=ProfileState(computed=computed))


def customer(days_ago: int, orders: int, spent: int) -> dict:
    return {
        "last_order_time": (START - timedelta(days=days_ago)).isoformat(),
        "order_count": orders,
        "total_spent_minor": spent,
    }


async def customers(env, *values: dict) -> list[str]:
    ids = [pid() for _ in values]
    await env.live.apply_profile_changes([change(p, v) for p, v in zip(ids, values, strict=True)])
    return ids


async def group_of(env, person: str) -> str | None:
    rows = await env.fetch("SELECT rfm_group FROM persons WHERE workspace_id = $1 AND person_id = $2::uuid", WS, person)
    return rows[0]["rfm_group"]


async def test_a_person_changed_during_a_recompute_is_grouped_under_the_new_thresholds(env, monkeypatch):
    await customers(env, customer(5, 5, 90000), customer(200, 1, 1000), customer(40, 2, 20000))
    late = pid()
    late_values = customer(1, 9, 500000)
    scan = repository.rfm_moves

    async def scan_then_a_live_change(*args, **kwargs):
        found = await scan(*args, **kwargs)
        await env.live.apply_profile_changes([change(late, late_values)])
        return found

    monkeypatch.setattr(repository, "rfm_moves", scan_then_a_live_change)
    await env.service.recompute_rfm(WS)
    async with env.pool.acquire() as conn:
        thresholds = await repository.rfm_thresholds(conn, WS)
    assert await group_of(env, late) == rfm_group(late_values, thresholds, START) == "重要价值"


async def test_one_replica_recomputes_a_workspace_at_a_time(env):
    await customers(env, customer(5, 5, 90000), customer(200, 1, 1000))
    async with env.pool.acquire() as conn:  # another replica is recomputing
        assert await repository.claim_rfm_lease(conn, WS, "other", START, START + service.RFM_LEASE)
    assert await env.service.recompute_stale_rfm(3600) == 0
    async with env.pool.acquire() as conn:
        assert await repository.rfm_thresholds(conn, WS) is None
    env.clock.set(START + service.RFM_LEASE)  # the other replica died: its lease lapses
    assert await env.service.recompute_stale_rfm(3600) == 1
    assert await env.service.recompute_stale_rfm(3600) == 0  # fresh now
    assert await env.fetch("SELECT * FROM rfm_leases") == []


async def rfm_timers(env) -> dict[str, object]:
    rows = await env.fetch(
        "SELECT person_id::text AS p, due_at FROM timers WHERE workspace_id = $1 AND segment_id = $2", WS, RFM_TIMER
    )
    return {r["p"]: r["due_at"] for r in rows}


async def test_recency_crossing_its_threshold_regroups_at_that_instant(env):
    values = [customer(5, 5, 90000), customer(200, 1, 1000), customer(40, 2, 20000), customer(1, 9, 500000)]
    ids = await customers(env, *values)
    await env.service.recompute_rfm(WS)
    async with env.pool.acquire() as conn:
        thresholds = await repository.rfm_thresholds(conn, WS)
    # the recompute's timers (SQL) are rfm.next_regroup's
    expected = {p: next_regroup(v, thresholds, START) for p, v in zip(ids, values, strict=True)}
    assert await rfm_timers(env) == {p: due for p, due in expected.items() if due is not None}
    await env.service.create(Segment(WS, "vip", "vip", "", 'rfm_group = "重要价值"'))
    star = ids[3]
    assert star in await env.members("vip")
    # a change through the live path sets the same timer
    await env.live.apply_profile_changes([ProfileChange(WS, star, 2, snapshot=ProfileState(computed=values[3]))])
    due = (await rfm_timers(env))[star]
    assert due == expected[star]

    env.clock.set(due - timedelta(microseconds=1))
    await env.live.fire_due_timers()
    assert star in await env.members("vip")
    env.clock.set(due)
    assert await env.live.fire_due_timers() >= 1
    assert star not in await env.members("vip")
    assert await group_of(env, star) == "重要保持"  # R low now; F and M still high
    entries, _ = await env.service.history(WS, "vip", star, 0, "")
    assert (entries[0].entered, entries[0].reason) == (False, "time passed")
    assert star not in await rfm_timers(env)  # recency only grows: nothing more to wait for
