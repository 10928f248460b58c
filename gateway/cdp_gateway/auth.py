"""Authentication: key -> principal, with a short-lived cache in front of the database; and the
key administration use cases (create, read, list, rotate, revoke) shared by the API and the CLI.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime

import asyncpg

from cdp_gateway import keys, repository
from cdp_gateway.keys import KeyRecord, Principal
from cdpkit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from cdpkit.ids import uuid7
from cdpkit.names import RESOURCE_ID, WORKSPACE_ID

MAX_GRACE_SECONDS = 7 * 24 * 3600
MAX_RATE_LIMIT = 10_000_000

# Called after a key changed (rotated, revoked) so that other replicas drop it from their cache.
KeyChanged = Callable[[str, str], Awaitable[None]]


class KeyStore:
    """Authenticates keys. Results (including "no such key") are cached for ``ttl`` seconds; a
    rotation or revocation is announced (``on_change``) so that every replica drops the key from
    its cache at once, and the TTL bounds the delay if an announcement is lost."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl: float = 30.0,
        max_entries: int = 100_000,
        on_change: KeyChanged | None = None,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._max = max_entries
        self._cache: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()
        self.on_change = on_change

    async def authenticate(self, key: str | None) -> Principal:
        if not key:
            raise Unauthenticated("an API key is required (Authorization: Basic <write key>: or Bearer <secret key>)")
        digest = keys.digest(key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            async with self._pool.acquire() as conn:
                principal = await repository.principal_by_hash(conn, digest)
            self._cache[digest] = (now + self._ttl, principal)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        if principal is None:
            raise Unauthenticated("invalid or revoked API key")
        return principal

    async def authenticate_writer(self, key: str | None) -> Principal:
        principal = await self.authenticate(key)
        if principal.kind != keys.WRITE and not principal.may("write"):
            raise PermissionDenied("this key may not send events")
        return principal

    def forget(self) -> None:
        self._cache.clear()

    def evict(self, workspace_id: str, key_id: str) -> None:
        """Drop every cached lookup that resolved to this key (its current and old secrets)."""
        for digest, (_, principal) in list(self._cache.items()):
            if principal is not None and principal.key_id == key_id and principal.workspace_id == workspace_id:
                del self._cache[digest]

    async def _changed(self, workspace_id: str, key_id: str) -> None:
        self.evict(workspace_id, key_id)
        if self.on_change is not None:
            await self.on_change(workspace_id, key_id)

    # Administration: the ApiKeyService use cases and the admin command.

    async def create_workspace(self, workspace_id: str, display_name: str = "") -> None:
        if not WORKSPACE_ID.match(workspace_id):
            raise InvalidArgument("workspace_id", "must match [a-z][a-z0-9-]{1,62}")
        async with self._pool.acquire() as conn:
            if not await repository.create_workspace(conn, workspace_id, display_name or workspace_id):
                raise AlreadyExists(f"workspace {workspace_id} already exists")

    async def create_key(
        self,
        workspace_id: str,
        kind: str,
        scopes: frozenset[str] = frozenset(),
        *,
        key_id: str = "",
        display_name: str = "",
        rate_limit: int = 0,
    ) -> tuple[str, str]:
        """A new key for ``workspace_id``: (key_id, key). The key is shown once, never stored."""
        record, key = await self.create_key_record(
            workspace_id, kind, scopes, key_id=key_id, display_name=display_name, rate_limit=rate_limit
        )
        return record.key_id, key

    async def create_key_record(
        self,
        workspace_id: str,
        kind: str,
        scopes: frozenset[str] = frozenset(),
        *,
        key_id: str = "",
        display_name: str = "",
        rate_limit: int = 0,
    ) -> tuple[KeyRecord, str]:
        if kind not in (keys.WRITE, keys.SECRET):
            raise InvalidArgument("api_key.kind", "must be KIND_WRITE or KIND_SECRET")
        unknown = scopes - keys.SCOPES
        if unknown:
            raise InvalidArgument("api_key.scopes", f"unknown scopes {sorted(unknown)}; use read, write, admin")
        if kind == keys.WRITE and scopes:
            raise InvalidArgument("api_key.scopes", "write keys take no scopes")
        if kind == keys.SECRET and not scopes:
            raise InvalidArgument("api_key.scopes", "a secret key needs at least one of read, write, admin")
        if key_id and not RESOURCE_ID.match(key_id):
            raise InvalidArgument("api_key_id", "must match [a-z][a-z0-9-]{0,62}")
        if not 0 <= rate_limit <= MAX_RATE_LIMIT:
            raise InvalidArgument("api_key.rate_limit_per_second", f"must be between 0 and {MAX_RATE_LIMIT}")
        if len(display_name) > 200:
            raise InvalidArgument("api_key.display_name", "at most 200 characters")
        key = keys.generate(kind)
        async with self._pool.acquire() as conn:
            if not await repository.workspace_exists(conn, workspace_id):
                raise NotFound(f"workspace {workspace_id} not found")
            record = await repository.insert_key(
                conn,
                key_id=key_id or f"key-{uuid7().hex[-16:]}",
                workspace_id=workspace_id,
                kind=kind,
                scopes=sorted(scopes),
                key_hash=keys.digest(key),
                hint=keys.hint(key),
                display_name=display_name,
                rate_limit=rate_limit,
            )
        if record is None:
            raise AlreadyExists(f"key {key_id} already exists in workspace {workspace_id}")
        return record, key

    async def get_key(self, workspace_id: str, key_id: str) -> KeyRecord:
        async with self._pool.acquire() as conn:
            record = await repository.get_key(conn, workspace_id, key_id)
        if record is None:
            raise NotFound(f"key workspaces/{workspace_id}/apiKeys/{key_id} not found")
        return record

    async def list_keys(
        self, workspace_id: str, *, after: tuple[datetime, str] | None, limit: int, show_revoked: bool
    ) -> list[KeyRecord]:
        async with self._pool.acquire() as conn:
            return await repository.list_keys(conn, workspace_id, after=after, limit=limit, show_revoked=show_revoked)

    async def rotate_key(self, workspace_id: str, key_id: str, *, grace_seconds: float = 0.0) -> tuple[KeyRecord, str]:
        if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
            raise InvalidArgument("grace_period", "must be between 0 and 7 days")
        current = await self.get_key(workspace_id, key_id)
        if current.revoked_at is not None:
            raise NotFound(f"key workspaces/{workspace_id}/apiKeys/{key_id} is revoked")
        key = keys.generate(current.kind)
        async with self._pool.acquire() as conn:
            record = await repository.rotate_key(
                conn, workspace_id, key_id, key_hash=keys.digest(key), hint=keys.hint(key), grace_seconds=grace_seconds
            )
        if record is None:  # revoked meanwhile
            raise NotFound(f"key workspaces/{workspace_id}/apiKeys/{key_id} is revoked")
        await self._changed(workspace_id, key_id)
        return record, key

    async def revoke_key(self, workspace_id: str, key_id: str) -> KeyRecord:
        async with self._pool.acquire() as conn:
            record = await repository.revoke_key(conn, workspace_id, key_id)
        if record is None:
            raise NotFound(f"key workspaces/{workspace_id}/apiKeys/{key_id} not found")
        await self._changed(workspace_id, key_id)
        return record

    async def key_is_active(self, key: str, workspace_id: str) -> bool:
        async with self._pool.acquire() as conn:
            principal = await repository.principal_by_hash(conn, keys.digest(key))
        return principal is not None and principal.workspace_id == workspace_id
