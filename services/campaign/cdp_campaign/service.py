"""Journey definition use cases, one transaction each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import asyncpg

from cdp_campaign import repository
from cdp_campaign.domain import UPDATABLE, Journey
from cdpkit.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from cdpkit.fieldmask import paths_to_update
from cdpkit.ids import uuid7
from cdpkit.names import RESOURCE_ID
from cdpkit.pagination import decode_token, encode_token, page_size


def _new_etag() -> str:
    return uuid7().hex[-16:]


class JourneyService:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, journey: Journey) -> Journey:
        if journey.journey_id and not RESOURCE_ID.match(journey.journey_id):
            raise InvalidArgument("journey_id", "must match [a-z][a-z0-9-]{0,62}")
        journey = replace(
            journey, journey_id=journey.journey_id or f"jny-{uuid7().hex[-20:]}", state="draft", etag=_new_etag()
        ).validated()
        async with self._pool.acquire() as conn:
            stored = await repository.insert(conn, journey)
        if stored is None:
            raise AlreadyExists(f"journey {journey.journey_id} already exists")
        return stored

    async def get(self, workspace_id: str, journey_id: str) -> Journey:
        async with self._pool.acquire() as conn:
            journey = await repository.get(conn, workspace_id, journey_id)
        if journey is None:
            raise NotFound(f"journey {journey_id} not found")
        return journey

    async def _current(self, conn: asyncpg.Connection, workspace_id: str, journey_id: str, etag: str) -> Journey:
        current = await repository.get(conn, workspace_id, journey_id, for_update=True)
        if current is None:
            raise NotFound(f"journey {journey_id} not found")
        if etag and etag != current.etag:
            raise Aborted("journey was changed by someone else: read it again")
        return current

    async def update(self, changes: Journey, mask: Iterable[str]) -> Journey:
        paths = paths_to_update(mask, UPDATABLE)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._current(conn, changes.workspace_id, changes.journey_id, changes.etag)
            if current.state == "archived":
                raise FailedPrecondition("an archived journey cannot change")
            updated = current.updated_with(changes, paths)
            return await repository.update(conn, replace(updated, etag=_new_etag()))

    async def delete(self, workspace_id: str, journey_id: str, etag: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await self._current(conn, workspace_id, journey_id, etag)
            await repository.delete(conn, workspace_id, journey_id)

    async def list(self, workspace_id: str, requested_size: int, token: str) -> tuple[list[Journey], str]:
        size = page_size(requested_size)
        position = decode_token(token, scope=workspace_id)
        async with self._pool.acquire() as conn:
            rows = await repository.list_page(
                conn, workspace_id, after=position["after"] if position else "", limit=size + 1
            )
        if len(rows) <= size:
            return rows, ""
        rows = rows[:size]
        return rows, encode_token({"after": rows[-1].journey_id}, scope=workspace_id)
