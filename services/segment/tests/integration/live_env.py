"""The live path and the use cases on real PostgreSQL, without NATS or gRPC: for tests that drive
announcements in a chosen order (races, interleavings of partitions and streams)."""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from cdp_segment.__main__ import MIGRATIONS
from cdp_segment.config import SCHEMA
from cdp_segment.domain import PersonSplit, ProfileChange, ProfileState
from cdp_segment.live import LiveService
from cdp_segment.membership import Catalogues, Memberships
from cdp_segment.service import SegmentService
from cdpkit import db
from cdpkit.bus import BusNames
from cdpkit.clock import ManualClock
from cdpkit.migrate import migrate

WS = "shop"
START = datetime(2026, 6, 18, 0, 0, tzinfo=UTC)


def pid() -> str:
    return str(uuid.uuid4())


def change(person: str, version: int, traits: dict | None = None, *, events=(), orders=(), **kw) -> ProfileChange:
    snapshot = ProfileState(traits=traits or {})
    return ProfileChange(WS, person, version, snapshot=snapshot, events=tuple(events), orders=tuple(orders), **kw)


def split(original: str, new_person: str, *moved_person_ids: str) -> PersonSplit:
    return PersonSplit(WS, original, new_person, tuple(moved_person_ids))


@dataclass
class Env:
    pool: asyncpg.Pool
    live: LiveService
    service: SegmentService
    clock: ManualClock

    async def fetch(self, query: str, *args):
        async with self.pool.acquire() as conn:
            return await conn.fetch(query, *args)

    async def members(self, segment_id: str) -> set[str]:
        rows = await self.fetch(
            "SELECT person_id::text AS p FROM memberships WHERE workspace_id = $1 AND segment_id = $2", WS, segment_id
        )
        return {r["p"] for r in rows}

    async def owner(self, table: str, key: str, fact_id: str) -> str | None:
        query = f"SELECT person_id::text AS p FROM {table} WHERE workspace_id = $1 AND {key} = $2"
        rows = await self.fetch(query, WS, fact_id)
        return rows[0]["p"] if rows else None

    async def persons(self) -> set[str]:
        rows = await self.fetch("SELECT person_id::text AS p FROM persons WHERE workspace_id = $1", WS)
        return {r["p"] for r in rows}

    async def survivor(self, person_id: str) -> str | None:
        rows = await self.fetch(
            "SELECT survivor_id::text AS s FROM merged_persons WHERE workspace_id = $1 AND person_id = $2",
            WS,
            person_id,
        )
        return rows[0]["s"] if rows else None


@pytest.fixture
async def env(database_url) -> Env:
    await migrate(database_url, SCHEMA, MIGRATIONS)
    pool = await db.create_pool(
        database_url,
        SCHEMA,
        application_name="segment-live-test",
        max_size=6,
        json_decoder=functools.partial(json.loads, parse_float=Decimal),
    )
    clock = ManualClock(START)
    memberships, catalogues = Memberships(BusNames("t")), Catalogues()
    try:
        yield Env(
            pool,
            LiveService(pool, memberships, catalogues, clock),
            SegmentService(pool, memberships, catalogues, clock),
            clock,
        )
    finally:
        await pool.close()
