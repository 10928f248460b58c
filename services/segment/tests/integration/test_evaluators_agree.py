"""The SQL evaluator and the in-memory evaluator agree on every rule and every person.

Hypothesis draws random rules (nested AND/OR/NOT over every kind of condition) and random
people (traits of every JSON type, dates in every zone and shape, NULs, NaN, huge numbers,
events and orders on window edges, orders with items at tagged stores, memberships) and a
workspace time zone (where date-only values without an offset start) and a "now". Each
person travels as the live path receives it: a ProfileChanged message, decoded by the consumer.
The decoded facts go into the real projection tables in PostgreSQL. Then:

- the rule's SQL query selects exactly the people the in-memory evaluator admits, both when it
  evaluates the decoded announcement (what the live path holds) and the person read back from
  the database with only the events the rule can need (what a timer or a later change reads);
- the SQL twin of ``timing.next_change`` (the timers of a full refresh) gives every person the
  same next change instant as the in-memory one.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cdp.events.v1 import events_pb2
from cdp_segment import projection
from cdp_segment.__main__ import MIGRATIONS
from cdp_segment.config import SCHEMA
from cdp_segment.consumers import decode_profile_changed
from cdp_segment.domain import ProfileChange
from cdp_segment.rules import memory, sql, timing
from cdp_segment.rules.ast import event_lookback
from cdp_segment.rules.data import PersonFacts
from cdpkit import db
from cdpkit.migrate import migrate

from ..rule_strategies import fresh_workspace, nows, people, rules, workspaces


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


def _json(value):
    """A generated JSON value as a Struct holds it (numbers are doubles)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def announcement(workspace_id: str, person: PersonFacts) -> bytes:
    """The person as profile announces it."""
    message = events_pb2.ProfileChanged(workspace_id=workspace_id, person_id=person.person_id, version=1)
    snap = message.snapshot
    snap.traits.update({k: _json(v) for k, v in person.traits.items()})
    snap.computed.update({k: _json(v) for k, v in person.computed.items()})
    snap.pii_traits.extend(sorted(person.pii_traits))
    snap.lifecycle_stage = person.lifecycle_stage or ""
    snap.tier = person.tier or ""
    snap.tags.extend(sorted(person.tags))
    snap.consent.update(person.consent)
    snap.points_balance = person.points_balance or 0
    snap.currency = person.currency
    for e in person.events:
        fact = message.events.add(message_id=e.message_id, event=e.name)
        fact.event_time.FromDatetime(e.time)
        fact.properties.update({k: _json(v) for k, v in e.properties.items()})
    for o in person.orders:
        fact = message.orders.add(
            order_id=o.order_id,
            status=o.status,
            total_minor=o.total_minor,
            store_id=o.store_id,
            staff_id=o.staff_id,
            currency=o.currency,
        )
        fact.order_time.FromDatetime(o.time)
        for item in o.items:
            fact.items.add(sku=item.sku, category=item.category, product_id=item.product_id)
    return message.SerializeToString()


def as_live(change: ProfileChange, person: PersonFacts) -> PersonFacts:
    """What the live path evaluates: the decoded snapshot and facts (plus the RFM group and
    memberships, which are the segment service's own)."""
    s = change.snapshot
    return PersonFacts(
        change.person_id,
        traits=dict(s.traits),
        computed=dict(s.computed),
        lifecycle_stage=s.lifecycle_stage,
        tier=s.tier,
        rfm_group=person.rfm_group,
        tags=s.tags,
        consent=dict(s.consent),
        points_balance=s.points_balance,
        pii_traits=s.pii_traits,
        events=list(change.events),
        orders=list(change.orders),
        memberships=person.memberships,
        currency=s.currency,
    )


async def load(pool, workspace_id, persons, changes, workspace_facts):
    async with pool.acquire() as conn, conn.transaction():
        await projection.write_states(
            conn,
            workspace_id,
            {c.person_id: (c.snapshot, c.version, p.rfm_group) for p, c in zip(persons, changes, strict=True)},
        )
        await conn.executemany(
            "INSERT INTO memberships (workspace_id, segment_id, person_id, since) VALUES ($1, $2, $3, now())",
            [(workspace_id, s, p.person_id) for p in persons for s in p.memberships],
        )
        await projection.add_events(conn, workspace_id, [(c.person_id, e) for c in changes for e in c.events])
        await projection.write_orders(
            conn,
            workspace_id,
            [projection.OrderWrite(c.person_id, c.person_id, o, c.version) for c in changes for o in c.orders],
        )
        for (kind, object_id), tags in workspace_facts.object_tags.items():
            await projection.set_object_tags(conn, workspace_id, kind, object_id, tags)


@settings(
    max_examples=int(os.environ.get("CDP_AGREEMENT_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rule=rules,
    persons=st.lists(people, min_size=3, max_size=6, unique_by=lambda p: p.person_id),
    tags=workspaces,
    now=nows,
)
async def test_sql_and_memory_evaluators_agree(pool, rule, persons, tags, now):
    workspace_id = fresh_workspace()
    changes = [decode_profile_changed(announcement(workspace_id, p)) for p in persons]
    await load(pool, workspace_id, persons, changes, tags)
    zone = tags.zone.key
    query, params = sql.members_query(rule, workspace_id, now, zone=zone)
    async with pool.acquire() as conn:
        selected = {str(r["person_id"]) for r in await conn.fetch(query, *params)}
        edges_sql = sql.edges_query(rule, workspace_id, now, zone=zone)
        edges = {}
        if edges_sql is not None:
            edges = {str(r["person_id"]): r["due_at"] for r in await conn.fetch(edges_sql[0], *edges_sql[1])}
        # as the live path and the timers read them: only the events the rule can need
        read_back = await projection.read_persons(
            conn, workspace_id, [p.person_id for p in persons], events=event_lookback(rule, now)
        )
        live = {c.person_id: as_live(c, p) for p, c in zip(persons, changes, strict=True)}
        for held in (live, read_back):
            admitted, next_changes = set(), {}
            for person_id, person in held.items():
                facts = replace(await projection.read_object_tags(conn, workspace_id, person), zone=tags.zone)
                if memory.evaluate(rule, person, facts, now):
                    admitted.add(person_id)
                edge = timing.next_change(rule, person, facts, now)
                if edge is not None:
                    next_changes[person_id] = edge
            assert selected == admitted, "live" if held is live else "read back"
            assert edges == next_changes, "live" if held is live else "read back"
        count_query, count_params = sql.count_query(rule, workspace_id, now, zone)
        assert await conn.fetchval(count_query, *count_params) == len(selected)
    event("some but not all selected" if 0 < len(selected) < len(persons) else "all or none selected")
