"""The SQL evaluator and the in-memory evaluator agree on every rule and every person.

Hypothesis draws random rules (nested AND/OR/NOT over every kind of condition) and random
people (traits of every JSON type, events, orders with items at tagged stores, memberships);
the people go into the real projection tables in PostgreSQL; the rule's SQL query must select
exactly the people the in-memory evaluator admits, reading each person back from the database;
and the SQL twin of ``timing.next_change`` (the timers of a full refresh) must give every
person the same next change instant as the in-memory one.
"""

from __future__ import annotations

import functools
import json
import os
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cdp_segment import projection
from cdp_segment.__main__ import MIGRATIONS
from cdp_segment.config import SCHEMA
from cdp_segment.domain import ProfileState
from cdp_segment.rules import memory, sql, timing
from cdpkit import db
from cdpkit.migrate import migrate

from ..rule_strategies import NOW, fresh_workspace, people, rules, workspaces

STATE_FIELDS = ("traits", "pii_traits", "computed", "lifecycle_stage", "tier", "tags", "consent", "points_balance")


@pytest.fixture
async def pool(database_url):
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await db.create_pool(
        database_url,
        SCHEMA,
        application_name="agreement-test",
        json_decoder=functools.partial(json.loads, parse_float=Decimal),
    )
    yield pool
    await pool.close()


async def load(pool, workspace_id, persons, workspace_facts):
    async with pool.acquire() as conn, conn.transaction():
        await projection.write_states(
            conn,
            workspace_id,
            {
                p.person_id: (
                    ProfileState(*(getattr(p, f) for f in STATE_FIELDS)),
                    1,
                    p.rfm_group,
                )
                for p in persons
            },
        )
        await conn.executemany(
            "INSERT INTO memberships (workspace_id, segment_id, person_id, since) VALUES ($1, $2, $3, now())",
            [(workspace_id, s, p.person_id) for p in persons for s in p.memberships],
        )
        await projection.add_events(conn, workspace_id, [(p.person_id, e) for p in persons for e in p.events])
        await projection.write_orders(
            conn,
            workspace_id,
            [projection.OrderWrite(p.person_id, p.person_id, o, 1) for p in persons for o in p.orders],
        )
        for (kind, object_id), tags in workspace_facts.object_tags.items():
            await projection.set_object_tags(conn, workspace_id, kind, object_id, tags)


@settings(
    max_examples=int(os.environ.get("CDP_AGREEMENT_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rule=rules, persons=st.lists(people, min_size=3, max_size=6, unique_by=lambda p: p.person_id), tags=workspaces)
async def test_sql_and_memory_evaluators_agree(pool, rule, persons, tags):
    workspace_id = fresh_workspace()
    await load(pool, workspace_id, persons, tags)
    query, params = sql.members_query(rule, workspace_id, NOW)
    async with pool.acquire() as conn:
        selected = {str(r["person_id"]) for r in await conn.fetch(query, *params)}
        edges_sql = sql.edges_query(rule, workspace_id, NOW)
        edges = {}
        if edges_sql is not None:
            edges = {str(r["person_id"]): r["due_at"] for r in await conn.fetch(edges_sql[0], *edges_sql[1])}
        admitted, next_changes = set(), {}
        read_back = await projection.read_persons(conn, workspace_id, [p.person_id for p in persons])
        for person in persons:
            stored = read_back[person.person_id]
            facts = await projection.read_object_tags(conn, workspace_id, stored)
            if memory.evaluate(rule, stored, facts, NOW):
                admitted.add(person.person_id)
            edge = timing.next_change(rule, stored, facts, NOW)
            if edge is not None:
                next_changes[person.person_id] = edge
        count_query, count_params = sql.count_query(rule, workspace_id, NOW)
        assert await conn.fetchval(count_query, *count_params) == len(selected)
    event("some but not all selected" if 0 < len(selected) < len(persons) else "all or none selected")
    assert selected == admitted
    assert edges == next_changes
