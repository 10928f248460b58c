"""Identity use cases, one transaction each."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import structlog
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from cdp.events.v1 import events_pb2
from cdp_identity import graph, repository
from cdp_identity.domain import GraphState, Outcome, PersonView, Resolver, needs_write, resolve_read_only
from cdp_identity.matching import Attributes, blocking_keys, score
from cdp_identity.repository import Key
from cdp_identity.rules import (
    DEFAULT_RULES,
    MAX_IDENTIFIERS_PER_SET,
    Identifier,
    InvalidIdentifier,
    InvalidRules,
    Rules,
    apply_update,
    from_document,
    normalise,
    to_document,
)
from cdpkit import outbox
from cdpkit.bus import IDENTITY, BusNames
from cdpkit.clock import Clock, SystemClock
from cdpkit.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from cdpkit.ids import new_id
from cdpkit.logs import mask_value
from cdpkit.names import UUID
from cdpkit.pii import PiiVault

log = structlog.get_logger(__name__)

MERGES = Counter("cdp_identity_merges_total", "Persons merged by resolution or accepted suggestions", ["kind"])
CONFLICTS = Counter("cdp_identity_conflicts_total", "Merges or links refused by a rule", ["kind"])
QUARANTINES = Counter("cdp_identity_quarantines_total", "Persons quarantined by a guardrail")
SPLITS = Counter("cdp_identity_splits_total", "Persons split by an unmerge or an identifier removal", ["cause"])

RETRIES = Counter("cdp_identity_resolve_retries_total", "Resolve transactions started over after losing a race")
RESEALED = Counter("cdp_identity_resealed_total", "Sealed values re-sealed under the active PII key", ["table"])

HISTORY_LIMIT = 100
MAX_ATTEMPTS = 5
LOCKING_MODES = ("rows", "workspace")


class _LostRace(Exception):
    """Another transaction changed what this one read; roll back and start over."""


class MessageIdReused(ValueError):
    """An API set reuses a message id that was resolved with other identifiers."""

    def __init__(self, message_id: str) -> None:
        super().__init__(message_id)
        self.message_id = message_id


@dataclass(frozen=True)
class ResolveItem:
    """One identifier set to resolve, with the message it came from (None: an API call without one).

    ``identifiers`` may be empty (an event without a usable identifier): it resolves to nobody,
    and is journaled like any other.
    """

    workspace_id: str
    identifiers: tuple[Identifier, ...]
    message_id: str | None = None
    # Names, birth date, address, phone from identify traits, for match suggestions.
    attributes: Attributes | None = None
    # (type, raw value) the event carried but that were refused (invalid, blocked): journaled
    # sealed, so a dry run of rules that accept them sees them.
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass
class PersonDetails:
    row: repository.PersonRow
    identifiers: list[tuple[Identifier, repository.IdentifierRow]]
    merged_person_ids: list[str]
    history: list[tuple[repository.MergeRow, Identifier, Identifier]]
    requested_person_id: str = ""


@dataclass
class RulesInfo:
    rules: Rules
    comment: str = ""
    update_time: datetime | None = None


@dataclass
class SplitResult:
    persons: list[PersonDetails]
    undone_merge_ids: list[str]
    merge: tuple[repository.MergeRow, Identifier, Identifier] | None = None


@dataclass
class DryRunReport:
    current_version: int
    events_replayed: int
    truncated: bool
    current: dict = field(default_factory=dict)
    proposed: dict = field(default_factory=dict)
    differences: list[tuple[str, str, Identifier, Identifier, str]] = field(default_factory=list)
    truncation_reason: str = ""
    days_replayed: int = 0
    oldest_event_time: datetime | None = None


@dataclass(frozen=True)
class Journaled:
    """One journaled resolution, as a dry run replays it."""

    message_id: str
    identifiers: list[Identifier]
    # Raw values refused at the time (invalid, blocked): other rules may accept them.
    refused: list[Identifier]
    at: datetime


def _timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _pb(identifier: Identifier) -> events_pb2.Identifier:
    return events_pb2.Identifier(type=identifier.type, value=identifier.value)


class IdentityService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        names: BusNames,
        vault: PiiVault,
        *,
        new_person_id: Callable[[], str] = new_id,
        journal_days: int = 30,
        locking: str = "rows",
        clock: Clock | None = None,
    ) -> None:
        if locking not in LOCKING_MODES:
            raise ValueError(f"locking must be one of {LOCKING_MODES}")
        self._locking = locking
        self._pool = pool
        self._names = names
        self._vault = vault
        self._new_id = new_person_id
        self._journal_days = journal_days
        # Every time the resolver decides on (windows, link times, journal, retention) comes from here.
        self._clock = clock or SystemClock()
        self._rules_cache: dict[str, Rules] = {}

    # PII --------------------------------------------------------------------------------------

    def key_of(self, workspace_id: str, rules: Rules, identifier: Identifier) -> Key:
        kind = rules.types.get(identifier.type)
        if kind is not None and kind.pii:
            digest = self._vault.digest(f"{workspace_id}/{identifier.type}", identifier.value)
            return identifier.type, "h:" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
        return identifier.type, identifier.value

    def _seal(self, workspace_id: str, rules: Rules, identifier: Identifier) -> bytes | None:
        kind = rules.types.get(identifier.type)
        if kind is None or not kind.pii:
            return None
        return self._vault.seal(identifier.value, context=f"{workspace_id}/{identifier.type}")

    def display(self, workspace_id: str, key: Key, sealed: bytes | None) -> Identifier:
        if sealed is None:
            return Identifier(*key)
        return Identifier(key[0], self._vault.open(sealed, context=f"{workspace_id}/{key[0]}"))

    # Rules ------------------------------------------------------------------------------------

    async def _rules(self, conn: asyncpg.Connection, workspace_id: str) -> Rules:
        version = await repository.rules_version(conn, workspace_id)
        cached = self._rules_cache.get(workspace_id)
        if cached is not None and cached.version == version:
            return cached
        rules = await self._rules_at(conn, workspace_id, version)
        self._rules_cache[workspace_id] = rules
        return rules

    async def _rules_at(self, conn: asyncpg.Connection, workspace_id: str, version: int) -> Rules:
        if version == 0:
            return DEFAULT_RULES
        stored = await repository.load_rules(conn, workspace_id, version)
        if stored is None:
            raise NotFound(f"rules version {version} not found")
        return from_document(version, stored[0])

    async def get_rules(self, workspace_id: str, version: int = 0) -> RulesInfo:
        if version < 0:
            raise InvalidArgument("version", "must not be negative")
        async with self._pool.acquire() as conn:
            version = version or await repository.rules_version(conn, workspace_id)
            if version == 0:
                return RulesInfo(DEFAULT_RULES, "built-in defaults")
            stored = await repository.load_rules(conn, workspace_id, version)
        if stored is None:
            raise NotFound(f"rules version {version} not found")
        return RulesInfo(from_document(version, stored[0]), stored[1], stored[2])

    async def update_rules(self, workspace_id: str, change: dict, *, etag: str, comment: str) -> RulesInfo:
        """``change``: keyword arguments of :func:`rules.apply_update`."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._rules_at(conn, workspace_id, await repository.rules_version(conn, workspace_id))
            if etag and etag.strip('"') != str(current.version):
                raise Aborted(f"the rules changed (now version {current.version}); read them again")
            try:
                proposed = apply_update(current, **change)
            except InvalidRules as exc:
                raise InvalidArgument(f"rules.{exc.field}", exc.reason) from None
            created = await repository.insert_rules(
                conn, workspace_id, proposed.version, to_document(proposed), comment[:1000]
            )
            if created is None:
                raise Aborted("the rules changed concurrently; read them again")
        self._rules_cache.pop(workspace_id, None)
        log.info("identity rules updated", workspace=workspace_id, version=proposed.version)
        return RulesInfo(proposed, comment, created)

    # Resolution ---------------------------------------------------------------------------------

    async def resolve(self, items: Sequence[ResolveItem], *, strict_replays: bool = False) -> list[Outcome]:
        """Resolve every item in one transaction; outcomes come back in input order.

        A message id already journaled is a replay, answered read-only; with ``strict_replays``
        (API calls) one journaled with other identifiers raises :class:`MessageIdReused`.

        Row locking (default): a batch that lost a race (another transaction linked one of its
        new identifiers first, or moved one of its persons) starts over; after a few attempts it
        takes the workspace lock exclusively, which settles the graph. Only a first match profile
        created concurrently by a lock-free batch can still make it start over then.
        """
        by_workspace: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            by_workspace.setdefault(item.workspace_id, []).append(index)
        for attempt in range(2 * MAX_ATTEMPTS):
            exclusive = self._locking == "workspace" or attempt >= MAX_ATTEMPTS - 1
            outcomes: list[Outcome | None] = [None] * len(items)
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    wrote = False
                    # Workspaces in sorted order: two batches never wait on each other in a cycle.
                    for workspace_id in sorted(by_workspace):
                        indexes = by_workspace[workspace_id]
                        resolved, changed = await self._resolve_workspace(
                            conn, workspace_id, [items[i] for i in indexes], exclusive=exclusive, strict=strict_replays
                        )
                        wrote = wrote or changed
                        for index, outcome in zip(indexes, resolved, strict=True):
                            outcomes[index] = outcome
                    if not wrote:
                        # Only journal rows were written: losing the last few on a machine crash
                        # costs nothing (a replay then resolves the same way); skip the WAL flush wait.
                        await conn.execute("SET LOCAL synchronous_commit TO off")
                return outcomes  # type: ignore[return-value]
            except _LostRace:
                RETRIES.inc()
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise RuntimeError(f"resolution lost {2 * MAX_ATTEMPTS} races in a row")

    async def _load_state(
        self, conn: asyncpg.Connection, workspace_id: str, keys: dict[Identifier, Key], *, with_persons: bool
    ) -> GraphState:
        found = await repository.owners(conn, workspace_id, set(keys.values()))
        state = GraphState()
        for identifier, key in keys.items():
            if key not in found:
                continue
            person, home = found[key]
            if person is None:
                state.blocked.add(identifier)
            else:
                state.owners[identifier] = person
                state.homes[identifier] = home or person
        if with_persons:
            person_ids = sorted(set(state.owners.values()))
            rows, links = await repository.person_links(conn, workspace_id, person_ids)
            for person_id in person_ids:
                row = rows[person_id]
                status = "quarantined" if row.status == "quarantined" else "active"
                state.persons[person_id] = PersonView(person_id, status, row.merge_count, links[person_id])
            state.separated = await repository.separations(conn, workspace_id, person_ids)
        return state

    async def _resolve_workspace(
        self, conn: asyncpg.Connection, workspace_id: str, items: list[ResolveItem], *, exclusive: bool, strict: bool
    ) -> tuple[list[Outcome], bool]:
        """Outcomes in input order, and whether anything but journal rows was written."""
        rules = await self._rules(conn, workspace_id)
        keys = {i: self.key_of(workspace_id, rules, i) for item in items for i in item.identifiers}
        # API sets without a message id get one of their own (merge log, journal).
        message_ids = [item.message_id or f"api:{new_id()}" for item in items]
        replayed = await repository.journal_seen(conn, workspace_id, [i.message_id for i in items if i.message_id])
        if strict and replayed:
            await self._check_replays(conn, workspace_id, [i for i in items if i.message_id in replayed])
        fresh = [n for n, item in enumerate(items) if item.message_id not in replayed]
        state = await self._load_state(conn, workspace_id, keys, with_persons=False)
        outcomes: list[Outcome | None] = [None] * len(items)
        moves: list[tuple[str, str]] = []
        wrote = any(needs_write(state, items[n].identifiers) for n in fresh)
        if wrote:
            # Changes ahead. Batches that change nothing never lock anything.
            if exclusive:
                await repository.lock_workspace_links(conn, workspace_id)
                state = await self._load_state(conn, workspace_id, keys, with_persons=True)
            else:
                # Lock the persons seen (in id order), then read again what others committed; a
                # person that appeared in between is locked without waiting, or we start over.
                await repository.lock_workspace_shared(conn, workspace_id)
                seen = set(state.owners.values())
                await repository.lock_persons(conn, workspace_id, sorted(seen), wait=True)
                state = await self._load_state(conn, workspace_id, keys, with_persons=True)
                extra = set(state.owners.values()) - seen
                if extra and not await repository.lock_persons(conn, workspace_id, sorted(extra), wait=False):
                    raise _LostRace
                if extra:
                    state = await self._load_state(conn, workspace_id, keys, with_persons=True)
                    if set(state.owners.values()) - seen - extra:
                        raise _LostRace
            resolver = Resolver(state, self._new_id, rules, now=self._clock.now)
            for n in fresh:
                if items[n].identifiers:
                    outcomes[n] = resolver.resolve(items[n].identifiers, message_ids[n])
            resolved = [(items[n], outcomes[n]) for n in fresh if outcomes[n] is not None]
            await self._persist(conn, workspace_id, rules, keys, resolved, state)
            moves = [(m.merged, state.live(m.merged)) for _, outcome in resolved for m in outcome.merges]
        for n, item in enumerate(items):
            if outcomes[n] is None:
                outcomes[n] = Outcome(
                    resolve_read_only(state, item.identifiers, rules) or "",
                    False,
                    skipped=[(i, "removed and blocked by an operator") for i in item.identifiers if i in state.blocked],
                    replayed=item.message_id in replayed,
                )
        if self._journal_days:
            journal = [
                (message_ids[n], outcomes[n].person_id or None, self._seal_set(workspace_id, items[n])) for n in fresh
            ]
            await repository.insert_journal(conn, workspace_id, sorted(journal), self._clock.now())
        attributes: dict[str, Attributes] = {}
        for n in fresh:
            item, outcome = items[n], outcomes[n]
            if item.attributes is not None and not item.attributes.empty() and outcome.person_id:
                person = state.live(outcome.person_id)  # a later set of the batch may have merged it
                attributes[person] = attributes.get(person, Attributes()).merged_with(item.attributes)
        profiled = await self._update_match_profiles(conn, workspace_id, moves, attributes)
        return outcomes, wrote or profiled  # type: ignore[return-value]

    # Match attributes and suggestions ------------------------------------------------------------------

    def _open_attributes(self, workspace_id: str, sealed: bytes) -> Attributes:
        return Attributes.from_dict(json.loads(self._vault.open(sealed, context=f"{workspace_id}/match")))

    def _seal_attributes(self, workspace_id: str, attributes: Attributes) -> bytes:
        return self._vault.seal(json.dumps(attributes.to_dict()), context=f"{workspace_id}/match")

    async def _update_match_profiles(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        moves: Sequence[tuple[str, str]],
        events: dict[str, Attributes],
    ) -> bool:
        """Survivors take the attributes they lack from the persons merged into them (their own
        values win), then the events' attributes (newer values win); merged persons are retired.

        Lock order, the same in every transaction that touches matching (resolution, unmerge,
        accepting a suggestion, the suggester): match profiles, in person order and in one
        statement, before any match key or suggestion. A profile row that appeared since it was
        locked (a concurrent first profile of the same person) makes the batch start over.
        """
        involved = sorted({p for move in moves for p in move} | set(events))
        if not involved:
            return False
        locked = await repository.lock_match_profiles(conn, workspace_id, involved)
        stored = {p: self._open_attributes(workspace_id, sealed) for p, sealed in locked.items()}
        wanted: dict[str, Attributes] = {}
        for merged, survivor in moves:
            if merged in stored:
                wanted[survivor] = stored[merged].merged_with(
                    wanted.get(survivor) or stored.get(survivor, Attributes())
                )
        for person, attributes in events.items():
            wanted[person] = (wanted.get(person) or stored.get(person, Attributes())).merged_with(attributes)
        changed = sorted(
            (p, self._seal_attributes(workspace_id, a))
            for p, a in wanted.items()
            if a != stored.get(p) and not a.empty()
        )
        await repository.update_match_profiles(conn, workspace_id, [c for c in changed if c[0] in stored])
        new = [c for c in changed if c[0] not in stored]
        if await repository.insert_match_profiles(conn, workspace_id, new) != len(new):
            raise _LostRace
        await repository.retire_match_persons(conn, workspace_id, sorted({m for m, _ in moves}))
        return bool(changed)

    def _block_key(self, workspace_id: str, key: str) -> str:
        digest = self._vault.digest(f"{workspace_id}/match", key)
        return base64.urlsafe_b64encode(digest[:18]).decode()

    async def suggest(self, batch: int = 500, max_block: int = 100) -> int:
        """Match persons whose attributes changed; returns the number of new suggestions.

        One transaction per workspace: the profiles it takes (``SKIP LOCKED``) are all it holds
        while it waits on suggestion rows, so it never waits in a cycle with a resolver.
        """
        created = 0
        async with self._pool.acquire() as conn:
            workspaces = await repository.dirty_workspaces(conn)
        for workspace_id in workspaces:
            async with self._pool.acquire() as conn, conn.transaction():
                rows = await repository.dirty_match_profiles(conn, workspace_id, batch)
                if rows:
                    created += await self._suggest_workspace(conn, workspace_id, rows, max_block)
        return created

    async def _suggest_workspace(self, conn: asyncpg.Connection, workspace_id: str, group: list, max_block: int) -> int:
        rules = await self._rules(conn, workspace_id)
        # First every person's keys, then the candidates: two new persons of one batch meet.
        mine: dict[str, tuple[Attributes, list[str]]] = {}
        for row in group:
            person_id = row["person_id"]
            attributes = self._open_attributes(workspace_id, row["attributes"])
            active = row["status"] != "merged" and rules.matching.enabled
            keys = [self._block_key(workspace_id, k) for k in blocking_keys(attributes)] if active else []
            await repository.replace_match_keys(conn, workspace_id, person_id, keys)
            if keys:
                mine[person_id] = (attributes, keys)
        members = await repository.block_members(
            conn, workspace_id, sorted({k for _, keys in mine.values() for k in keys}), max_block
        )
        candidates = {
            person_id: sorted({p for k in keys for p in members.get(k, ())} - {person_id})
            for person_id, (_, keys) in mine.items()
        }
        others = sorted({p for c in candidates.values() for p in c} - set(mine))
        stored = await repository.match_profiles(conn, workspace_id, others)
        known = {p: a for p, (a, _) in mine.items()}
        known.update({p: self._open_attributes(workspace_id, b) for p, b in stored.items()})
        separated = await repository.separations(conn, workspace_id, sorted(set(mine) | set(others)))
        suggestions: dict[tuple[str, str], tuple[float, list]] = {}
        for person_id, found in candidates.items():
            for other in found:
                pair = (min(person_id, other), max(person_id, other))
                if pair in suggestions or frozenset(pair) in separated or other not in known:
                    continue
                total, comparisons = score(known[pair[0]], known[pair[1]])
                if total >= rules.matching.threshold:
                    shown = [{"field": c.field, "level": c.level, "weight": c.weight} for c in comparisons]
                    suggestions[pair] = (total, shown)
        created = await repository.insert_suggestions(
            conn, workspace_id, [(new_id(), a, b, t, c) for (a, b), (t, c) in suggestions.items()]
        )
        await repository.clear_dirty(conn, workspace_id, [r["person_id"] for r in group])
        return created

    async def list_suggestions(
        self, workspace_id: str, *, state: str, after: tuple[datetime, str] | None, limit: int
    ) -> list[repository.SuggestionRow]:
        async with self._pool.acquire() as conn:
            return await repository.list_suggestions(conn, workspace_id, state=state, after=after, limit=limit)

    async def reject_suggestion(self, workspace_id: str, suggestion_id: str) -> repository.SuggestionRow:
        if not UUID.match(suggestion_id):
            raise NotFound(f"suggestion {suggestion_id} not found")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await repository.get_suggestion(conn, workspace_id, suggestion_id, for_update=True)
            if row is None:
                raise NotFound(f"suggestion {suggestion_id} not found")
            if row.state not in ("pending", "rejected"):
                raise FailedPrecondition(f"the suggestion is {row.state}")
            if row.state == "pending":
                await repository.decide_suggestion(conn, workspace_id, suggestion_id, "rejected", None)
            return await repository.get_suggestion(conn, workspace_id, suggestion_id)

    async def accept_suggestion(
        self, workspace_id: str, suggestion_id: str
    ) -> tuple[repository.SuggestionRow, tuple[repository.MergeRow, Identifier, Identifier], PersonDetails]:
        if not UUID.match(suggestion_id):
            raise NotFound(f"suggestion {suggestion_id} not found")
        async with self._pool.acquire() as conn, conn.transaction():
            accepted = await self._accept(conn, workspace_id, suggestion_id)
        if accepted is None:  # committed: the suggestion is marked obsolete
            raise FailedPrecondition("one of the persons was merged since; the suggestion is obsolete")
        return accepted

    async def _accept(
        self, conn: asyncpg.Connection, workspace_id: str, suggestion_id: str
    ) -> tuple[repository.SuggestionRow, tuple[repository.MergeRow, Identifier, Identifier], PersonDetails] | None:
        await repository.lock_workspace_links(conn, workspace_id)
        row = await repository.get_suggestion(conn, workspace_id, suggestion_id)
        if row is None:
            raise NotFound(f"suggestion {suggestion_id} not found")
        # Match profiles before the suggestion row: the order of _update_match_profiles.
        await repository.lock_match_profiles(conn, workspace_id, [row.person_a, row.person_b])
        row = await repository.get_suggestion(conn, workspace_id, suggestion_id, for_update=True)
        if row.state != "pending":
            raise FailedPrecondition(f"the suggestion is {row.state}")
        persons, links = await repository.person_links(conn, workspace_id, [row.person_a, row.person_b])
        if any(p not in persons or persons[p].status == "merged" for p in (row.person_a, row.person_b)):
            await repository.decide_suggestion(conn, workspace_id, suggestion_id, "obsolete", None)
            return None
        rules = await self._rules(conn, workspace_id)
        views = [
            PersonView(p, persons[p].status, persons[p].merge_count, links[p]) for p in (row.person_a, row.person_b)
        ]
        separated = await repository.separations(conn, workspace_id, [row.person_a, row.person_b])
        resolver = Resolver(GraphState(separated=separated), self._new_id, rules, now=self._clock.now)
        problem = resolver.merge_problem(*views)
        if problem:
            raise FailedPrecondition(f"cannot merge: {problem}")
        survivor, merged = row.person_a, row.person_b  # person_a < person_b: the lower id survives
        held = {}
        for p in (survivor, merged):
            rows = await repository.identifiers_of(conn, workspace_id, p)
            held[p] = sorted(rows, key=lambda r: rules.rank(Identifier(*r.key)))
        if not held[survivor] or not held[merged]:
            raise FailedPrecondition("cannot merge a person without identifiers")
        anchor, bridge = held[survivor][0], held[merged][0]
        merge_id = new_id()
        await repository.apply_merges(conn, workspace_id, [(merged, survivor)])
        merge = repository.MergeRow(
            merge_id=merge_id,
            survivor_id=survivor,
            merged_id=merged,
            anchor=anchor.key,
            anchor_sealed=anchor.sealed,
            bridge=bridge.key,
            bridge_sealed=bridge.sealed,
            message_id=f"suggestion:{suggestion_id}",
            rule=f"suggestion:score {row.score:.1f}@v{rules.version}",
            rule_version=rules.version,
            kind="suggestion",
        )
        await repository.insert_merges(conn, workspace_id, [merge])
        merge_count = views[0].merge_count + views[1].merge_count + 1
        await repository.update_persons(conn, workspace_id, [(survivor, persons[survivor].status, merge_count, None)])
        await self._update_match_profiles(conn, workspace_id, [(merged, survivor)], {})
        await repository.decide_suggestion(conn, workspace_id, suggestion_id, "accepted", merge_id)
        event = events_pb2.PersonsMerged(
            workspace_id=workspace_id,
            survivor_person_id=survivor,
            merged_person_ids=[merged],
            bridging_identifier=_pb(self.display(workspace_id, bridge.key, bridge.sealed)),
            rule=merge.rule,
            trigger_message_id=merge.message_id,
            merge_id=merge_id,
            merge_time=_timestamp(self._clock.now()),
        )
        await outbox.enqueue(
            conn,
            workspace_id=workspace_id,
            subject=self._names.subject(IDENTITY, "persons_merged"),
            message=event,
            msg_id=f"merged:{merge_id}",
            sealer=self._vault,
        )
        MERGES.labels("suggestion").inc()
        log.info("suggestion accepted", workspace=workspace_id, survivor=survivor, merged=merged)
        decided = await repository.get_suggestion(conn, workspace_id, suggestion_id)
        stored_merge = await repository.get_merge(conn, workspace_id, merge_id)
        person = await self._details(conn, workspace_id, survivor)
        return decided, self._merge_view(workspace_id, stored_merge), person

    def _seal_set(self, workspace_id: str, item: ResolveItem) -> bytes:
        journaled = {"i": [[i.type, i.value] for i in item.identifiers]}
        if item.rejected:
            journaled["r"] = [list(r) for r in item.rejected]
        return self._vault.seal(json.dumps(journaled, separators=(",", ":")), context=f"{workspace_id}/journal")

    def _open_set(self, workspace_id: str, sealed: bytes) -> tuple[list[Identifier], list[Identifier]]:
        """Journaled (identifiers, refused raw values); rows written before 0005 hold a plain list."""
        journaled = json.loads(self._vault.open(sealed, context=f"{workspace_id}/journal"))
        if isinstance(journaled, list):
            journaled = {"i": journaled}
        return [Identifier(*i) for i in journaled["i"]], [Identifier(*r) for r in journaled.get("r", ())]

    async def _check_replays(self, conn: asyncpg.Connection, workspace_id: str, items: list[ResolveItem]) -> None:
        journaled = await repository.journal_identifiers(conn, workspace_id, [i.message_id for i in items])
        for item in items:
            if set(self._open_set(workspace_id, journaled[item.message_id])[0]) != set(item.identifiers):
                raise MessageIdReused(item.message_id)

    async def _persist(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        rules: Rules,
        keys: dict[Identifier, Key],
        resolved: list[tuple[ResolveItem, Outcome]],
        state: GraphState,
    ) -> None:
        def key(identifier: Identifier) -> Key:
            return keys.get(identifier) or self.key_of(workspace_id, rules, identifier)

        created = [o.person_id for _, o in resolved if o.created]
        await repository.insert_persons(conn, workspace_id, created)
        links = [
            repository.NewLink(
                key=key(link.identifier),
                sealed=self._seal(workspace_id, rules, link.identifier),
                person_id=link.person_id,
                anchor=key(link.anchor) if link.anchor else None,
                message_id=link.message_id,
                home=link.home,
                rule=link.rule,
            )
            for _, outcome in resolved
            for link in outcome.links
        ]
        if await repository.insert_links(conn, workspace_id, links, self._clock.now()) != len(links):
            raise _LostRace  # another transaction linked one of these identifiers first

        merges = [m for _, o in resolved for m in o.merges]
        moves = [(m.merged, state.live(m.merged)) for m in merges]
        await repository.apply_merges(conn, workspace_id, moves)
        await repository.insert_merges(
            conn,
            workspace_id,
            [
                repository.MergeRow(
                    merge_id=m.merge_id,
                    survivor_id=m.survivor,
                    merged_id=m.merged,
                    anchor=key(m.anchor),
                    anchor_sealed=self._seal(workspace_id, rules, m.anchor),
                    bridge=key(m.bridge),
                    bridge_sealed=self._seal(workspace_id, rules, m.bridge),
                    message_id=m.message_id,
                    rule=m.rule,
                    rule_version=rules.version,
                    kind="auto",
                )
                for m in merges
            ],
        )
        quarantined = {p: r for _, o in resolved for p, r in o.quarantined}
        touched = {link.person_id for link in links} | {m.survivor for m in merges} | set(quarantined)
        touched = {p for p in touched if p not in state.merged_into}
        await repository.update_persons(
            conn,
            workspace_id,
            [(p, state.persons[p].status, state.persons[p].merge_count, quarantined.get(p)) for p in sorted(touched)],
        )
        conflict_rows = []
        for item, outcome in resolved:
            for c in outcome.conflicts:
                conflict_id = new_id()
                conflict_rows.append(
                    repository.ConflictRow(
                        conflict_id=conflict_id,
                        kind=c.kind,
                        key=key(c.identifier),
                        sealed=self._seal(workspace_id, rules, c.identifier),
                        person_id=state.live(c.person_id) if c.person_id else None,
                        other_person_id=c.other_person_id,
                        message_id=item.message_id or f"api:{conflict_id}",
                        detail=c.detail,
                        rule_version=rules.version,
                    )
                )
        inserted = set(await repository.insert_conflicts(conn, workspace_id, conflict_rows, self._clock.now()))
        # Announcements, in the outbox of this transaction.
        now = _timestamp(self._clock.now())
        rows: list[tuple[str, str, str, bytes]] = []

        def announce(kind: str, msg_id: str, message: Message) -> None:
            rows.append((workspace_id, self._names.subject(IDENTITY, kind), msg_id, message.SerializeToString()))

        for item, outcome in resolved:
            message_id = item.message_id or ""
            if outcome.created:
                announce(
                    "person_created",
                    f"person-created:{outcome.person_id}",
                    events_pb2.PersonCreated(
                        workspace_id=workspace_id,
                        person_id=outcome.person_id,
                        identifiers=[_pb(i) for i in outcome.attached],
                        trigger_message_id=message_id,
                        create_time=now,
                    ),
                )
            elif outcome.links:
                announce(
                    "identifiers_linked",
                    f"linked:{workspace_id}:{outcome.person_id}:{message_id or new_id()}",
                    events_pb2.IdentifiersLinked(
                        workspace_id=workspace_id,
                        person_id=outcome.person_id,
                        identifiers=[_pb(i) for i in outcome.attached],
                        trigger_message_id=message_id,
                        rule=outcome.links[0].rule,
                        link_time=now,
                    ),
                )
            for m in outcome.merges:
                announce(
                    "persons_merged",
                    f"merged:{m.merge_id}",
                    events_pb2.PersonsMerged(
                        workspace_id=workspace_id,
                        survivor_person_id=m.survivor,
                        merged_person_ids=[m.merged],
                        bridging_identifier=_pb(m.bridge),
                        rule=m.rule,
                        trigger_message_id=message_id,
                        merge_id=m.merge_id,
                        merge_time=now,
                    ),
                )
                MERGES.labels("auto").inc()
                log.info(
                    "persons merged",
                    workspace=workspace_id,
                    survivor=m.survivor,
                    merged=m.merged,
                    rule=m.rule,
                    message_id=message_id,
                )
            for person_id, reason in outcome.quarantined:
                announce(
                    "person_quarantined",
                    f"quarantined:{workspace_id}:{person_id}:{message_id or new_id()}",
                    events_pb2.PersonQuarantined(
                        workspace_id=workspace_id,
                        person_id=person_id,
                        reason=reason,
                        trigger_message_id=message_id,
                        quarantine_time=now,
                    ),
                )
                QUARANTINES.inc()
                log.warning("person quarantined", workspace=workspace_id, person_id=person_id, reason=reason)
        for row, (identifier, kind) in zip(
            conflict_rows, [(c.identifier, c.kind) for _, o in resolved for c in o.conflicts], strict=True
        ):
            if row.conflict_id not in inserted:
                continue
            CONFLICTS.labels(kind).inc()
            announce(
                "conflict",
                f"conflict:{row.conflict_id}",
                events_pb2.IdentityConflict(
                    workspace_id=workspace_id,
                    conflict_id=row.conflict_id,
                    kind=kind,
                    identifier=_pb(identifier),
                    person_id=row.person_id or "",
                    other_person_id=row.other_person_id or "",
                    trigger_message_id=row.message_id,
                    detail=row.detail,
                    conflict_time=now,
                ),
            )
        await outbox.enqueue_many(conn, rows, sealer=self._vault)

    async def resolve_sets(
        self, workspace_id: str, sets: Sequence[tuple[Sequence[tuple[str, str]], str]]
    ) -> list[Outcome]:
        """API form: validate every (type, value) pair first, then resolve."""
        async with self._pool.acquire() as conn:
            rules = await self._rules(conn, workspace_id)
        items = []
        seen: dict[str, tuple[int, set[Identifier]]] = {}
        for n, (pairs, message_id) in enumerate(sets):
            if len(pairs) > MAX_IDENTIFIERS_PER_SET:
                raise InvalidArgument(
                    f"sets[{n}].identifiers", f"at most {MAX_IDENTIFIERS_PER_SET} identifiers per set"
                )
            identifiers = []
            for m, (type_, value) in enumerate(pairs):
                try:
                    identifiers.append(normalise(rules, type_, value))
                except InvalidIdentifier as exc:
                    raise InvalidArgument(f"sets[{n}].identifiers[{m}]", exc.reason) from None
            if not identifiers:
                raise InvalidArgument(f"sets[{n}].identifiers", "must hold at least one identifier")
            if len(identifiers) > MAX_IDENTIFIERS_PER_SET:
                raise InvalidArgument(
                    f"sets[{n}].identifiers", f"at most {MAX_IDENTIFIERS_PER_SET} identifiers per set"
                )
            if len(message_id) > 200:
                raise InvalidArgument(f"sets[{n}].message_id", "longer than 200 characters")
            earlier = seen.setdefault(message_id, (n, set(identifiers))) if message_id else None
            if earlier is not None and earlier[1] != set(identifiers):
                raise InvalidArgument(f"sets[{n}].message_id", f"sets[{earlier[0]}] has it with other identifiers")
            items.append(ResolveItem(workspace_id, tuple(identifiers), message_id or None))
        try:
            return await self.resolve(items, strict_replays=True)
        except MessageIdReused as exc:
            n = next(n for n, (_, message_id) in enumerate(sets) if message_id == exc.message_id)
            raise InvalidArgument(
                f"sets[{n}].message_id", "was resolved before with other identifiers; use a new message id"
            ) from None

    async def rules_for(self, workspace_id: str) -> Rules:
        async with self._pool.acquire() as conn:
            return await self._rules(conn, workspace_id)

    # Reads --------------------------------------------------------------------------------------

    async def lookup(self, workspace_id: str, type_: str, value: str) -> PersonDetails:
        async with self._pool.acquire() as conn:
            rules = await self._rules(conn, workspace_id)
            try:
                identifier = normalise(rules, type_, value)
            except InvalidIdentifier as exc:
                raise InvalidArgument(f"identifier_{exc.field}", exc.reason) from None
            key = self.key_of(workspace_id, rules, identifier)
            owner = (await repository.owners(conn, workspace_id, [key])).get(key, (None, None))[0]
            if owner is None:
                raise NotFound("no person holds this identifier")
            return await self._details(conn, workspace_id, owner)

    async def get_person(self, workspace_id: str, person_id: str) -> PersonDetails:
        if not UUID.match(person_id):
            raise NotFound(f"person {person_id} not found")
        async with self._pool.acquire() as conn:
            return await self._details(conn, workspace_id, person_id)

    async def _details(self, conn: asyncpg.Connection, workspace_id: str, person_id: str) -> PersonDetails:
        row = await repository.get_person(conn, workspace_id, person_id)
        if row is None:
            raise NotFound(f"person {person_id} not found")
        requested = ""
        if row.status == "merged" and row.merged_into:
            requested = person_id
            row = await repository.get_person(conn, workspace_id, row.merged_into)
            if row is None:
                raise NotFound(f"person {person_id} not found")
        identifiers = await repository.identifiers_of(conn, workspace_id, row.person_id)
        merged = await repository.merged_persons(conn, workspace_id, row.person_id)
        history = await repository.merges_involving(
            conn, workspace_id, [row.person_id, *merged], active_only=False, limit=HISTORY_LIMIT
        )
        return PersonDetails(
            row=row,
            identifiers=[(self.display(workspace_id, i.key, i.sealed), i) for i in identifiers],
            merged_person_ids=merged,
            history=[self._merge_view(workspace_id, m) for m in history],
            requested_person_id=requested,
        )

    def _merge_view(
        self, workspace_id: str, m: repository.MergeRow
    ) -> tuple[repository.MergeRow, Identifier, Identifier]:
        return (
            m,
            self.display(workspace_id, m.anchor, m.anchor_sealed),
            self.display(workspace_id, m.bridge, m.bridge_sealed),
        )

    async def list_merges(
        self, workspace_id: str, *, person_id: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[repository.MergeRow, Identifier, Identifier]]:
        if person_id and not UUID.match(person_id):
            raise InvalidArgument("person_id", "must be a person id (UUID)")
        async with self._pool.acquire() as conn:
            rows = await repository.list_merges(
                conn, workspace_id, person_id=person_id or None, after=after, limit=limit
            )
        return [self._merge_view(workspace_id, m) for m in rows]

    async def list_conflicts(
        self, workspace_id: str, *, person_id: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[repository.ConflictRow, Identifier]]:
        if person_id and not UUID.match(person_id):
            raise InvalidArgument("person_id", "must be a person id (UUID)")
        async with self._pool.acquire() as conn:
            rows = await repository.list_conflicts(
                conn, workspace_id, person_id=person_id or None, after=after, limit=limit
            )
        return [(r, self.display(workspace_id, r.key, r.sealed)) for r in rows]

    # Unmerge and removal ------------------------------------------------------------------------------

    async def unmerge(self, workspace_id: str, merge_id: str, reason: str) -> SplitResult:
        if not UUID.match(merge_id):
            raise NotFound(f"merge {merge_id} not found")
        reason = reason.strip()[:500] or "unmerged by an operator"
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspace_links(conn, workspace_id)
            merge = await repository.get_merge(conn, workspace_id, merge_id)
            if merge is None:
                raise NotFound(f"merge {merge_id} not found")
            if merge.undone_at is not None:
                raise FailedPrecondition(f"merge {merge_id} was already undone ({merge.undo_reason})")
            anchor = await repository.identifier(conn, workspace_id, merge.anchor)
            bridge = await repository.identifier(conn, workspace_id, merge.bridge)
            if anchor is None or bridge is None or anchor.person_id is None or anchor.person_id != bridge.person_id:
                raise FailedPrecondition("the identifiers of this merge are no longer held by one person")
            edge = graph.MergeEdge(
                merge.merge_id, merge.anchor, merge.bridge, merge.survivor_id, merge.merged_id, merge.created_at
            )
            result = await self._split(
                conn, workspace_id, anchor.person_id, undo=edge, remove=None, reason=reason, cause="unmerge"
            )
            merge = await repository.get_merge(conn, workspace_id, merge_id)
            result.merge = self._merge_view(workspace_id, merge)
        return result

    async def release_person(self, workspace_id: str, person_id: str, reason: str) -> PersonDetails:
        if not UUID.match(person_id):
            raise NotFound(f"person {person_id} not found")
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspace_links(conn, workspace_id)
            person = await repository.get_person(conn, workspace_id, person_id)
            if person is None:
                raise NotFound(f"person {person_id} not found")
            if person.status != "quarantined":
                raise FailedPrecondition(f"person {person_id} is not quarantined")
            await repository.release_person(conn, workspace_id, person_id)
            # The operator's free text may name the shopper: it is not logged.
            log.info("person released from quarantine", workspace=workspace_id, person_id=person_id)
            return await self._details(conn, workspace_id, person_id)

    async def remove_identifier(
        self, workspace_id: str, person_id: str, type_: str, value: str, *, block: bool, reason: str
    ) -> SplitResult:
        if not UUID.match(person_id):
            raise NotFound(f"person {person_id} not found")
        reason = reason.strip()[:500] or "removed by an operator"
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspace_links(conn, workspace_id)
            rules = await self._rules(conn, workspace_id)
            try:
                identifier = normalise(rules, type_, value)
            except InvalidIdentifier as exc:
                raise InvalidArgument(f"identifier.{exc.field}", exc.reason) from None
            key = self.key_of(workspace_id, rules, identifier)
            person = await repository.get_person(conn, workspace_id, person_id)
            if person is None:
                raise NotFound(f"person {person_id} not found")
            holder = person.merged_into if person.status == "merged" and person.merged_into else person_id
            row = await repository.identifier(conn, workspace_id, key)
            if row is None or row.person_id != holder:
                raise NotFound("the person does not hold this identifier")
            # Downstream hears of every removal, split or not (PersonSplit follows for a split).
            removal_id = new_id()
            await outbox.enqueue(
                conn,
                workspace_id=workspace_id,
                subject=self._names.subject(IDENTITY, "identifiers_removed"),
                message=events_pb2.IdentifiersRemoved(
                    workspace_id=workspace_id,
                    person_id=holder,
                    identifiers=[_pb(identifier)],
                    blocked=block,
                    reason=reason,
                    remove_time=_timestamp(self._clock.now()),
                ),
                msg_id=f"removed:{workspace_id}:{removal_id}",
                sealer=self._vault,
            )
            result = await self._split(
                conn, workspace_id, holder, undo=None, remove=key, reason=reason, cause="removal"
            )
            if block:
                await repository.block_identifier(conn, workspace_id, key, reason)
            else:
                await repository.delete_identifier(conn, workspace_id, key)
            await repository.insert_removal(conn, workspace_id, removal_id, holder, key, row.sealed, block, reason)
            log.info("identifier removed", workspace=workspace_id, person_id=holder, type=type_, blocked=block)
            # The response shows the persons without the removed identifier.
            result.persons = [await self._details(conn, workspace_id, p.row.person_id) for p in result.persons]
        return result

    async def unblock_identifier(self, workspace_id: str, type_: str, value: str) -> tuple[Identifier, str]:
        """The value, normalised, and why it had been blocked."""
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspace_links(conn, workspace_id)
            rules = await self._rules(conn, workspace_id)
            try:
                identifier = normalise(rules, type_, value)
            except InvalidIdentifier as exc:
                raise InvalidArgument(f"identifier.{exc.field}", exc.reason) from None
            reason = await repository.unblock_identifier(
                conn, workspace_id, self.key_of(workspace_id, rules, identifier)
            )
        if reason is None:
            raise NotFound("this value is not blocked")
        log.info("identifier unblocked", workspace=workspace_id, type=type_)
        return identifier, reason

    async def _split(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        person_id: str,
        *,
        undo: graph.MergeEdge | None,
        remove: Key | None,
        reason: str,
        cause: str,
    ) -> SplitResult:
        rules = await self._rules(conn, workspace_id)
        rows = await repository.identifiers_of(conn, workspace_id, person_id)
        sealed = {r.key: r.sealed for r in rows}
        nodes = [
            graph.Node(
                r.key, r.anchor, r.message_id, r.origin_person_id or person_id, r.linked_at, rules.priority(r.key[0])
            )
            for r in rows
        ]
        members = [person_id, *await repository.merged_persons(conn, workspace_id, person_id)]
        merges = await repository.merges_involving(conn, workspace_id, members, active_only=True)
        edges = [
            graph.MergeEdge(m.merge_id, m.anchor, m.bridge, m.survivor_id, m.merged_id, m.created_at) for m in merges
        ]
        split = graph.recompute(nodes, edges, person=person_id, new_id=self._new_id, undo=undo, remove=remove)
        await repository.mark_merges_undone(conn, workspace_id, split.undone_merges, reason)
        await repository.reassign(
            conn, workspace_id, split.owners, split.merged_into, split.merge_counts, split.rehomed, split.created
        )
        # Split persons are matched again (the restored one too); their old suggestions are stale.
        await repository.mark_match_dirty(conn, workspace_id, sorted(split.owners))
        await repository.obsolete_suggestions(conn, workspace_id, sorted(split.owners))
        # The person split keeps its id (and its events downstream); every other owner is announced.
        keep = person_id if person_id in split.owners else next(iter(split.owners), person_id)
        if undo is not None:
            a, b = split.owner_of(undo.anchor), split.owner_of(undo.bridge)
            if a and b and a != b:
                await repository.insert_separations(conn, workspace_id, [(a, b, undo.merge_id)])
        now = _timestamp(self._clock.now())
        rows_out: list[tuple[str, str, str, bytes]] = []
        for owner, keys in split.owners.items():
            if owner == keep:
                continue
            SPLITS.labels(cause).inc()
            event = events_pb2.PersonSplit(
                workspace_id=workspace_id,
                person_id=keep,
                new_person_id=owner,
                moved_identifiers=[_pb(self.display(workspace_id, k, sealed.get(k))) for k in keys],
                undone_merge_id=undo.merge_id
                if undo is not None
                else (split.undone_merges[0] if split.undone_merges else ""),
                reason=reason,
                split_time=now,
                # Ids merged into the person before that now resolve to the new one.
                moved_person_ids=sorted(
                    h for h, o in split.merged_into.items() if o == owner and h not in split.created
                ),
            )
            rows_out.append(
                (
                    workspace_id,
                    self._names.subject(IDENTITY, "person_split"),
                    f"split:{workspace_id}:{keep}:{owner}:{new_id()}",
                    event.SerializeToString(),
                )
            )
            log.info("person split", workspace=workspace_id, person_id=keep, new_person_id=owner, cause=cause)
        await outbox.enqueue_many(conn, rows_out, sealer=self._vault)
        order = [keep, *[p for p in split.owners if p != keep]]
        persons = [await self._details(conn, workspace_id, p) for p in order if p in split.owners or p == keep]
        return SplitResult(persons=persons, undone_merge_ids=split.undone_merges)

    # Dry run ------------------------------------------------------------------------------------------

    async def dry_run(self, workspace_id: str, change: dict, *, days: int, max_events: int) -> DryRunReport:
        days = days or 7
        max_events = max_events or 100_000
        if not 1 <= days <= 90:
            raise InvalidArgument("days", "must be between 1 and 90")
        if not 1 <= max_events <= 1_000_000:
            raise InvalidArgument("max_events", "must be between 1 and 1000000")
        covered = min(days, self._journal_days)
        async with self._pool.acquire() as conn:
            current = await self._rules_at(conn, workspace_id, await repository.rules_version(conn, workspace_id))
            try:
                proposed = apply_update(current, **change)
            except InvalidRules as exc:
                raise InvalidArgument(f"rules.{exc.field}", exc.reason) from None
            rows = (
                await repository.journal_window(conn, workspace_id, covered, max_events + 1, self._clock.now())
                if covered
                else []
            )
        reasons = []
        if covered < days:
            reasons.append(
                f"the journal keeps {self._journal_days} days of resolutions (CDP_IDENTITY_JOURNAL_DAYS), {days} asked"
            )
        if len(rows) > max_events:
            reasons.append(f"more than {max_events} resolutions in the window: the oldest {max_events} replayed")
        events = [
            Journaled(r["message_id"], *self._open_set(workspace_id, r["identifiers"]), r["resolved_at"])
            for r in rows[:max_events]
        ]
        report = await asyncio.to_thread(_compare, events, current, proposed)
        report.current_version = current.version
        report.truncated = bool(reasons)
        report.truncation_reason = "; ".join(reasons)
        report.days_replayed = covered
        report.oldest_event_time = events[0].at if events else None
        report.differences = [
            (side, mid, _masked(current, a), _masked(current, b), rule) for side, mid, a, b, rule in report.differences
        ]
        return report


def _masked(rules: Rules, identifier: Identifier) -> Identifier:
    kind = rules.types.get(identifier.type)
    if kind is not None and kind.pii:
        return Identifier(identifier.type, str(mask_value(identifier.value)))
    return identifier


def _simulate(events: list[Journaled], rules: Rules) -> tuple[dict, dict]:
    """Replay journaled resolutions from an empty graph, each at the time it happened.

    A merge is keyed by its message and the groups of the event's identifiers it joined (which
    persons held what), not by the identifiers the resolver logged as anchor and bridge: a
    priority change picks other anchors without changing what merges.
    """
    counter = iter(range(1, 1 << 62))
    state = GraphState()
    moment = [events[0].at if events else datetime.now(UTC)]
    resolver = Resolver(state, lambda: f"{next(counter):020d}", rules, now=lambda: moment[0])
    merges: dict[tuple[str, frozenset], tuple[Identifier, Identifier, str]] = {}
    merge_count = conflicts = 0
    for event in events:
        moment[0] = event.at
        usable: dict[Identifier, None] = {}
        for identifier in (*event.identifiers, *event.refused):
            try:
                usable.setdefault(normalise(rules, identifier.type, identifier.value))
            except InvalidIdentifier:
                continue
        if not usable:
            continue
        held: dict[str, set[Identifier]] = {}
        for identifier in usable:
            owner = state.owner(identifier)
            if owner is not None:
                held.setdefault(owner, set()).add(identifier)
        outcome = resolver.resolve(usable, event.message_id)
        conflicts += len(outcome.conflicts)
        if outcome.merges:
            merge_count += len(outcome.merges)
            joined = {outcome.person_id, *(m.merged for m in outcome.merges)}
            groups = frozenset(frozenset(ids) for person, ids in held.items() if person in joined)
            first = outcome.merges[0]
            merges[(event.message_id, groups)] = (first.anchor, first.bridge, first.rule)
    persons = sum(1 for p in state.persons if p not in state.merged_into)
    return merges, {"merges": merge_count, "conflicts": conflicts, "persons": persons}


def _compare(events: list[Journaled], current: Rules, proposed: Rules) -> DryRunReport:
    now_merges, now_stats = _simulate(events, current)
    new_merges, new_stats = _simulate(events, proposed)
    differences = []
    for side, ours, theirs in (("current", now_merges, new_merges), ("proposed", new_merges, now_merges)):
        for key_, (anchor, bridge, rule) in ours.items():
            if key_ not in theirs and len(differences) < 1000:
                differences.append((side, key_[0], anchor, bridge, rule))
    return DryRunReport(0, len(events), False, now_stats, new_stats, differences)


# Key rotation ------------------------------------------------------------------------------------------


async def reseal(pool: asyncpg.Pool, vault: PiiVault, *, batch: int = 500, stop: Callable[[], bool] = bool) -> int:
    """Re-seal every value sealed under an older key with the active one (``CDP_PII_KEYS``' first),
    a batch per transaction, so the old keys can be dropped afterwards; returns how many."""
    done = 0
    for sealed in repository.SEALED_COLUMNS:
        while not stop():
            async with pool.acquire() as conn, conn.transaction():
                rows = await repository.sealed_under_other_keys(conn, sealed, vault.active_key_id, batch)
                values = [
                    vault.seal_bytes(vault.open_bytes(r["sealed"], context=r["context"]), context=r["context"])
                    for r in rows
                ]
                await repository.replace_sealed(conn, sealed, rows, values)
            RESEALED.labels(sealed.table).inc(len(rows))
            done += len(rows)
            if len(rows) < batch:
                break
    if done:
        log.info("PII re-sealed under the active key", rows=done, key_id=vault.active_key_id)
    return done


# Legacy plaintext PII ----------------------------------------------------------------------------------


async def convert_plaintext_pii(pool: asyncpg.Pool, service: IdentityService, batch: int = 500) -> int:
    """Rewrite identifiers stored in plaintext before migration 0002 (phone, email) as hash + sealed."""
    converted = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await repository.plaintext_pii_rows(conn, ["phone", "email"], batch)
            if not rows:
                return converted
            for r in rows:
                workspace_id, type_ = r["workspace_id"], r["id_type"]
                rules = await service._rules(conn, workspace_id)
                try:
                    identifier = normalise(rules, type_, r["id_value"])
                except InvalidIdentifier as exc:
                    log.warning("legacy identifier dropped", workspace=workspace_id, type=type_, reason=exc.reason)
                    await repository.convert_pii_row(conn, workspace_id, type_, r["id_value"], None, None)
                    continue
                key = service.key_of(workspace_id, rules, identifier)[1]
                sealed = service._seal(workspace_id, rules, identifier)
                if await repository.convert_pii_row(conn, workspace_id, type_, r["id_value"], key, sealed):
                    converted += 1
                else:
                    log.warning(
                        "legacy identifier dropped: already held in normalised form", workspace=workspace_id, type=type_
                    )
