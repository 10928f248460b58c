"""Identity use cases, one transaction each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.events.v1 import events_pb2
from cdp_identity import repository
from cdp_identity.domain import Decision, Identifier, InvalidIdentifier, Resolver, normalise
from cdpkit import outbox
from cdpkit.bus import IDENTITY, BusNames
from cdpkit.errors import InvalidArgument, NotFound
from cdpkit.ids import new_id
from cdpkit.names import UUID

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ResolveItem:
    """One identifier set to resolve, with the message it came from (None for API calls)."""

    workspace_id: str
    identifiers: tuple[Identifier, ...]
    message_id: str | None = None


class IdentityService:
    def __init__(self, pool: asyncpg.Pool, names: BusNames, new_person_id: Callable[[], str] = new_id) -> None:
        self._pool = pool
        self._names = names
        self._new_person_id = new_person_id

    async def resolve(self, items: Sequence[ResolveItem]) -> list[Decision]:
        """Resolve every item in one transaction; decisions come back in input order."""
        decisions: list[Decision | None] = [None] * len(items)
        by_workspace: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            by_workspace.setdefault(item.workspace_id, []).append(index)
        async with self._pool.acquire() as conn, conn.transaction():
            for workspace_id in sorted(by_workspace):
                indexes = by_workspace[workspace_id]
                resolved = await self._resolve_workspace(conn, workspace_id, [items[i] for i in indexes])
                for index, decision in zip(indexes, resolved, strict=True):
                    decisions[index] = decision
        return decisions  # type: ignore[return-value]

    async def _resolve_workspace(
        self, conn: asyncpg.Connection, workspace_id: str, items: list[ResolveItem]
    ) -> list[Decision]:
        wanted = {i for item in items for i in item.identifiers}
        owners = await repository.owners(conn, workspace_id, wanted)
        if len(owners) < len(wanted):
            # New links ahead: serialise with concurrent resolvers, then read again what they committed.
            await repository.lock_workspace_links(conn, workspace_id)
            owners = await repository.owners(conn, workspace_id, wanted)
        resolver = Resolver(owners, self._new_person_id)
        decisions = [resolver.resolve(item.identifiers) for item in items]

        created = [d.person_id for d in decisions if d.created]
        await repository.insert_persons(conn, workspace_id, created)
        await repository.insert_identifiers(
            conn,
            workspace_id,
            [(i, d.person_id, item.message_id) for d, item in zip(decisions, items, strict=True) for i in d.attach],
        )
        await repository.touch_persons(
            conn, workspace_id, sorted({d.person_id for d in decisions if d.attach and not d.created})
        )
        now = Timestamp()
        now.GetCurrentTime()
        rows = []
        for decision, item in zip(decisions, items, strict=True):
            if decision.created:
                event = events_pb2.PersonCreated(
                    workspace_id=workspace_id,
                    person_id=decision.person_id,
                    identifiers=[events_pb2.Identifier(type=i.type, value=i.value) for i in decision.attach],
                    trigger_message_id=item.message_id or "",
                    create_time=now,
                )
                subject = self._names.subject(IDENTITY, "person_created")
                rows.append((workspace_id, subject, f"person-created:{decision.person_id}", event.SerializeToString()))
        await outbox.enqueue_many(conn, rows)
        return decisions

    async def resolve_sets(self, workspace_id: str, sets: Sequence[Sequence[tuple[str, str]]]) -> list[Decision]:
        """API form: validate (type, value) pairs, then resolve."""
        items = []
        for n, pairs in enumerate(sets):
            identifiers = []
            for m, (type_, value) in enumerate(pairs):
                try:
                    identifiers.append(normalise(type_, value))
                except InvalidIdentifier as exc:
                    raise InvalidArgument(f"sets[{n}].identifiers[{m}]", exc.reason) from None
            if not identifiers:
                raise InvalidArgument(f"sets[{n}].identifiers", "must hold at least one identifier")
            items.append(ResolveItem(workspace_id, tuple(identifiers)))
        return await self.resolve(items)

    async def lookup(self, workspace_id: str, type_: str, value: str) -> repository.PersonRecord:
        try:
            identifier = normalise(type_, value)
        except InvalidIdentifier as exc:
            field = "identifier_type" if exc.reason == "unknown identifier type" else "identifier_value"
            raise InvalidArgument(field, exc.reason) from None
        async with self._pool.acquire() as conn:
            owner = (await repository.owners(conn, workspace_id, [identifier])).get(identifier)
            person = await repository.get_person(conn, workspace_id, owner) if owner else None
        if person is None:
            raise NotFound("no person holds this identifier")
        return person

    async def get_person(self, workspace_id: str, person_id: str) -> repository.PersonRecord:
        if not UUID.match(person_id):
            raise NotFound(f"person {person_id} not found")
        async with self._pool.acquire() as conn:
            person = await repository.get_person(conn, workspace_id, person_id)
        if person is None:
            raise NotFound(f"person {person_id} not found")
        return person
