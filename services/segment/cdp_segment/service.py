"""Segment definition use cases, one transaction each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import asyncpg

from cdp_segment import repository
from cdp_segment.domain import UPDATABLE, Segment
from cdpkit.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from cdpkit.fieldmask import paths_to_update
from cdpkit.ids import uuid7
from cdpkit.names import RESOURCE_ID
from cdpkit.pagination import decode_token, encode_token, page_size


def _new_etag() -> str:
    return uuid7().hex[-16:]


class SegmentService:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, segment: Segment) -> Segment:
        if segment.segment_id and not RESOURCE_ID.match(segment.segment_id):
            raise InvalidArgument("segment_id", "must match [a-z][a-z0-9-]{0,62}")
        segment = replace(
            segment, segment_id=segment.segment_id or f"seg-{uuid7().hex[-20:]}", etag=_new_etag()
        ).validated()
        async with self._pool.acquire() as conn:
            stored = await repository.insert(conn, segment)
        if stored is None:
            raise AlreadyExists(f"segment {segment.segment_id} already exists")
        return stored

    async def get(self, workspace_id: str, segment_id: str) -> Segment:
        async with self._pool.acquire() as conn:
            segment = await repository.get(conn, workspace_id, segment_id)
        if segment is None:
            raise NotFound(f"segment {segment_id} not found")
        return segment

    async def update(self, changes: Segment, mask: Iterable[str]) -> Segment:
        paths = paths_to_update(mask, UPDATABLE)
        async with self._pool.acquire() as conn, conn.transaction():
            current = await repository.get(conn, changes.workspace_id, changes.segment_id, for_update=True)
            if current is None:
                raise NotFound(f"segment {changes.segment_id} not found")
            if changes.etag and changes.etag != current.etag:
                raise Aborted("segment was changed by someone else: read it again")
            updated = current.updated_with(changes, paths)
            return await repository.update(conn, replace(updated, etag=_new_etag()))

    async def delete(self, workspace_id: str, segment_id: str, etag: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await repository.get(conn, workspace_id, segment_id, for_update=True)
            if current is None:
                raise NotFound(f"segment {segment_id} not found")
            if etag and etag != current.etag:
                raise Aborted("segment was changed by someone else: read it again")
            await repository.delete(conn, workspace_id, segment_id)

    async def list(self, workspace_id: str, requested_size: int, token: str) -> tuple[list[Segment], str]:
        size = page_size(requested_size)
        position = decode_token(token, scope=workspace_id)
        async with self._pool.acquire() as conn:
            rows = await repository.list_page(
                conn, workspace_id, after=position["after"] if position else "", limit=size + 1
            )
        if len(rows) <= size:
            return rows, ""
        rows = rows[:size]
        return rows, encode_token({"after": rows[-1].segment_id}, scope=workspace_id)
