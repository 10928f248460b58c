"""Authentication: key -> principal, with a short-lived cache in front of the database."""

from __future__ import annotations

import time
from collections import OrderedDict

import asyncpg

from cdp_gateway import keys, repository
from cdp_gateway.keys import Principal
from cdpkit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from cdpkit.ids import uuid7
from cdpkit.names import WORKSPACE_ID


class KeyStore:
    """Authenticates keys. Results (including "no such key") are cached for ``ttl`` seconds, so
    a revocation takes effect within ``ttl`` on every gateway replica."""

    def __init__(self, pool: asyncpg.Pool, *, ttl: float = 30.0, max_entries: int = 100_000) -> None:
        self._pool = pool
        self._ttl = ttl
        self._max = max_entries
        self._cache: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()

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

    # Administration (used by the admin command; the API arrives with issue 7).

    async def create_workspace(self, workspace_id: str, display_name: str = "") -> None:
        if not WORKSPACE_ID.match(workspace_id):
            raise InvalidArgument("workspace_id", "must match [a-z][a-z0-9-]{1,62}")
        async with self._pool.acquire() as conn:
            if not await repository.create_workspace(conn, workspace_id, display_name or workspace_id):
                raise AlreadyExists(f"workspace {workspace_id} already exists")

    async def create_key(self, workspace_id: str, kind: str, scopes: frozenset[str] = frozenset()) -> tuple[str, str]:
        """A new key for ``workspace_id``: (key_id, key). The key is shown once, never stored."""
        if kind not in (keys.WRITE, keys.SECRET):
            raise InvalidArgument("kind", "must be write or secret")
        unknown = scopes - keys.SCOPES
        if unknown:
            raise InvalidArgument("scopes", f"unknown scopes {sorted(unknown)}")
        key = keys.generate(kind)
        key_id = f"key_{uuid7().hex[-16:]}"
        async with self._pool.acquire() as conn:
            if not await repository.workspace_exists(conn, workspace_id):
                raise NotFound(f"workspace {workspace_id} not found")
            await repository.insert_key(
                conn,
                key_id=key_id,
                workspace_id=workspace_id,
                kind=kind,
                scopes=sorted(scopes),
                key_hash=keys.digest(key),
                hint=keys.hint(key),
            )
        return key_id, key

    async def key_is_active(self, key: str, workspace_id: str) -> bool:
        async with self._pool.acquire() as conn:
            principal = await repository.principal_by_hash(conn, keys.digest(key))
        return principal is not None and principal.workspace_id == workspace_id
