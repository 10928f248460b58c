"""Profile use cases, one transaction each."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError, Message

from cdp.events.v1 import events_pb2
from cdp_profile import domain, repository, upkeep_repository
from cdp_profile.domain import EVENT_KINDS, ORDER_KINDS, Change, NewEvent, Order, ProfileState
from cdp_profile.metrics import BACKGROUND_FAILURES, EVENTS_ADJUSTED
from cdp_profile.repository import EventRow, LedgerRow, Prediction, StoredProfile
from cdp_profile.rules import (
    DEFAULT_SETTINGS,
    PII_RULES_VERSION,
    InvalidRules,
    WorkspaceSettings,
    from_document,
    to_document,
)
from cdp_profile.structs import (
    EVENT_TYPE_VALUES,
    fill_struct,
    find_keys,
    put_dict,
    put_struct,
    set_timestamp,
    timestamp,
    to_dict,
    to_struct,
    without_keys,
)
from cdpkit import inbox, outbox
from cdpkit.bus import PROFILE, BusNames, partition_of
from cdpkit.clock import Clock
from cdpkit.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from cdpkit.pii import PiiVault

log = structlog.get_logger(__name__)

RECENT_EVENTS = 20
IDENTIFIER_CACHE = 200_000
# Segment e-commerce spec events whose `name` property is the product's name, not a person's:
# it is not sealed like the PII trait `name`, and travels with the event (message templates
# read it: "You left {{ event.properties.name }} in your cart").
PRODUCT_EVENTS = frozenset(
    {
        "Product Clicked",
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Product Shared",
        "Product Reviewed",
        "Product Added to Wishlist",
        "Product Removed from Wishlist",
    }
)
OPENED_CACHE = 50_000
RECENT_ORDERS = 10
# The position of identity's stream in stream_positions, and the advisory lock of the one process
# that follows it.
IDENTITY_POSITION = "identity"
IDENTITY_LEASE = 0x70726F67
# Attempts of a consumer batch whose persons a concurrent merge moved (see _Moved).
ATTEMPTS = 3
# A profile whose timer round failed is tried again this much later (not in every round).
TIMER_RETRY = timedelta(minutes=10)


class BadAnnouncement(ValueError):
    """An identity announcement that can never be applied (undecodable, ids that are not UUIDs)."""


def _check_ids(*person_ids: str) -> None:
    for person_id in person_ids:
        try:
            uuid.UUID(person_id)
        except ValueError:
            raise BadAnnouncement(f"{person_id!r} is not a person id") from None


class _Moved(Exception):
    """A person or an order changed hands while this transaction waited for its lock: start again."""


@dataclass
class Incoming:
    """A resolved event as the consumer (or an API call) hands it over, PII still in the clear."""

    workspace_id: str
    message_id: str
    person_id: str
    type: str
    event: str
    properties: struct_pb2.Struct
    context: struct_pb2.Struct
    event_time: datetime
    received_at: datetime
    # {"set": {...}, "set_once": {...}, "unset": [...]} for identify calls and API updates.
    traits: dict[str, Any] | None = None
    identifiers: Sequence[tuple[str, str]] = ()
    channel: str = ""
    store_id: str = ""
    staff_id: str = ""
    source: str = ""
    # The properties as a dict, when the consumer converted them already.
    property_values: dict[str, Any] | None = None
    # What the consumer clamped or dropped (reasons), logged and counted there.
    adjusted: list[str] = field(default_factory=list)


@dataclass
class ProfileView:
    state: ProfileState
    merged_person_ids: tuple[str, ...]
    updated_at: datetime
    requested_person_id: str
    settings: WorkspaceSettings
    windowed: dict[str, Any]
    next_due: datetime | None = None
    prediction: Prediction | None = None
    recent_events: list[tuple[EventRow, struct_pb2.Struct]] = field(default_factory=list)
    recent_orders: list[Order] = field(default_factory=list)


class ProfileService:
    def __init__(
        self, pool: asyncpg.Pool, names: BusNames, vault: PiiVault, clock: Clock, *, reads: asyncpg.Pool | None = None
    ) -> None:
        self._pool = pool
        # GetProfile's one statement (storefronts' hot path): a pool without the reset round trip.
        self._reads = reads or pool
        self._names = names
        self._vault = vault
        self._clock = clock
        self._settings_cache: dict[str, WorkspaceSettings] = {}
        self._partitions: set[tuple[int, int]] = set()
        # Events before this time live in the partition events_history.
        self._history_bound: datetime | None = None
        self._identifier_keys: dict[tuple[str, str, str], str] = {}
        # The PII last opened per profile, with its sealed form: saving it unchanged skips encryption.
        self._opened: dict[tuple[str, str], tuple[dict, bytes]] = {}
        self._pii_pass_done = False

    def now(self) -> datetime:
        return self._clock.now()

    # Settings -----------------------------------------------------------------------------------

    async def _settings(self, conn: asyncpg.Connection, workspace_id: str) -> WorkspaceSettings:
        version = await repository.settings_version(conn, workspace_id)
        cached = self._settings_cache.get(workspace_id)
        if cached is not None and cached.version == version:
            return cached
        settings = DEFAULT_SETTINGS
        if version:
            stored = await repository.load_settings(conn, workspace_id, version)
            assert stored is not None
            settings = from_document(version, stored[0], stored=True)
        self._settings_cache[workspace_id] = settings
        return settings

    async def settings_of(self, conn: asyncpg.Connection, workspace_id: str) -> WorkspaceSettings:
        """The workspace's settings in force (cached per version)."""
        return await self._settings(conn, workspace_id)

    async def get_settings(self, workspace_id: str) -> tuple[WorkspaceSettings, datetime | None]:
        async with self._pool.acquire() as conn:
            settings = await self._settings(conn, workspace_id)
            stored = await repository.load_settings(conn, workspace_id, settings.version) if settings.version else None
        return settings, stored[1] if stored else None

    async def update_settings(
        self, workspace_id: str, changes: Mapping[str, Any], *, etag: str
    ) -> tuple[WorkspaceSettings, datetime]:
        """Store a new version with ``changes`` (top-level keys of the document) and re-evaluate
        every profile of the workspace under it in the background (:meth:`run_reevaluations`; a
        profile's next event re-derives it in full before that, if it comes first)."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._settings(conn, workspace_id)
            if etag and etag.strip('"') != str(current.version):
                raise Aborted(f"the settings changed (now version {current.version}); read them again")
            document = {**to_document(current), **changes}
            try:
                proposed = from_document(current.version + 1, document)
            except InvalidRules as exc:
                raise InvalidArgument(f"settings.{exc.field}", exc.reason) from None
            created = await repository.insert_settings(conn, workspace_id, proposed.version, to_document(proposed))
            if created is None:
                raise Aborted("the settings changed meanwhile; read them again")
            rebuilt = [w.name for w in proposed.windowed_traits if w not in current.windowed_traits]
            await repository.start_reevaluation(conn, workspace_id, proposed.version, rebuilt)
            # segment reads the workspace calendar from this announcement (docs/segment.md)
            await outbox.enqueue(
                conn,
                workspace_id=workspace_id,
                subject=self._names.subject(PROFILE, "settings"),
                message=events_pb2.WorkspaceSettingsChanged(
                    workspace_id=workspace_id, version=proposed.version, time_zone=proposed.time_zone
                ),
                msg_id=f"settings:{workspace_id}:{proposed.version}",
            )
            if proposed.pii_traits - current.pii_traits:  # its stored events are sealed anew in the background
                rules = f"pii_traits/{workspace_id}/v{proposed.version}"
                await upkeep_repository.start_event_pass(conn, rules, workspace_id)
        self._settings_cache[workspace_id] = proposed
        return proposed, created

    # PII ----------------------------------------------------------------------------------------

    def _seal_profile(self, workspace_id: str, state: ProfileState, settings: WorkspaceSettings) -> tuple:
        pii = {k: v for k, v in state.traits.items() if settings.holds_pii(k, v)}
        plain = {k: v for k, v in state.traits.items() if k not in pii}
        opened = self._opened.get((workspace_id, state.person_id))
        if pii and opened is not None and not domain.differs(opened[0], pii):
            sealed = opened[1]  # the same plaintext in the same context: its sealed form is still valid
        else:
            context = f"{workspace_id}/profile/{state.person_id}"
            sealed = self._vault.seal(json.dumps(pii), context=context) if pii else None
        stored = state.with_fields(traits=plain)
        return stored, sealed

    def _open_profile(self, workspace_id: str, stored: StoredProfile) -> ProfileState:
        state = stored.state
        if stored.pii:
            pii = json.loads(self._vault.open(stored.pii, context=f"{workspace_id}/profile/{state.person_id}"))
            state.traits = {**state.traits, **pii}
            if len(self._opened) >= OPENED_CACHE:
                self._opened.clear()
            self._opened[(workspace_id, state.person_id)] = (pii, stored.pii)
        return state

    def _identifier_key(self, workspace_id: str, kind: str, value: str) -> str:
        """Keyed hash of an identifier (a shopper's events repeat theirs: cached)."""
        cache_key = (workspace_id, kind, value)
        key = self._identifier_keys.get(cache_key)
        if key is None:
            digest = self._vault.digest(f"{workspace_id}/{kind}", value)[:16]
            key = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if len(self._identifier_keys) >= IDENTIFIER_CACHE:
                self._identifier_keys.clear()
            self._identifier_keys[cache_key] = key
        return key

    @staticmethod
    def personal_parts(
        event: str,
        type_: str,
        properties: struct_pb2.Struct,
        traits: Mapping[str, Any] | None,
        settings: WorkspaceSettings,
    ) -> tuple[dict[str, Any], bytes, dict[str, Any] | None]:
        """An event's personal data under today's rules (PII-named traits, and properties with a
        PII name at any depth: what is sealed in ``pii``), its properties and traits without it."""
        sealed: dict[str, Any] = {}
        secret = find_keys(properties, settings.is_pii_property)
        if event in PRODUCT_EVENTS and type_ == "track":
            secret = [(path, value) for path, value in secret if path != ("name",)]
        if secret:
            sealed["property_paths"] = [[list(path), value] for path, value in secret]
            stored = without_keys(properties, [path for path, _ in secret]).SerializeToString()
        else:
            stored = properties.SerializeToString()
        plain: dict[str, Any] | None = None
        if traits is not None:
            plain = {"unset": list(traits.get("unset", ()))}
            for part in ("set", "set_once"):
                values = traits.get(part) or {}
                personal = {k: v for k, v in values.items() if settings.holds_pii(k, v)}
                plain[part] = {k: v for k, v in values.items() if k not in personal}
                if personal:
                    sealed[part] = personal
        return sealed, stored, plain

    def seal_event(self, workspace_id: str, message_id: str, sealed: Mapping[str, Any]) -> bytes | None:
        return self._vault.seal(json.dumps(sealed), context=f"{workspace_id}/event/{message_id}") if sealed else None

    def _event_row(self, item: Incoming, settings: WorkspaceSettings) -> EventRow:
        """The stored form of an event: personal data (PII-named traits, and properties with a
        PII name at any depth) sealed in ``pii``, the rest as sent."""
        sealed, properties, traits = self.personal_parts(item.event, item.type, item.properties, item.traits, settings)
        return EventRow(
            workspace_id=item.workspace_id,
            message_id=item.message_id,
            person_id=item.person_id,
            type=item.type,
            event=item.event,
            properties=properties,
            context=item.context.SerializeToString(),
            event_time=item.event_time,
            received_at=item.received_at,
            traits=traits,
            pii=self.seal_event(item.workspace_id, item.message_id, sealed),
            identifiers=tuple(self._identifier_key(item.workspace_id, t, v) for t, v in item.identifiers),
            channel=item.channel,
            store_id=item.store_id,
            staff_id=item.staff_id,
            source=item.source,
        )

    def _sealed(self, row: EventRow) -> dict[str, Any]:
        if not row.pii:
            return {}
        return json.loads(self._vault.open(row.pii, context=f"{row.workspace_id}/event/{row.message_id}"))

    def properties_of(self, row: EventRow) -> struct_pb2.Struct:
        """An event's properties as sent (PII-named ones opened)."""
        properties = struct_pb2.Struct.FromString(row.properties) if row.properties else struct_pb2.Struct()
        if row.legacy:
            properties.update(row.legacy.get("properties") or {})
        sealed = self._sealed(row)
        if sealed.get("properties"):  # rows stored before nested properties were sealed
            properties.update(sealed["properties"])
        for path, value in sealed.get("property_paths", ()):
            put_struct(properties, tuple(path), value)
        return properties

    def opened_event(self, row: EventRow) -> tuple[struct_pb2.Struct, dict[str, Any] | None, dict[str, Any]]:
        """A stored event's properties and identify traits as sent (personal data opened, rows of
        any earlier format), and its sealed part as stored."""
        sealed = self._sealed(row)
        traits = None
        if row.traits is not None or "set" in sealed or "set_once" in sealed:
            plain = row.traits or {}
            traits = {
                "set": {**(plain.get("set") or {}), **sealed.get("set", {})},
                "set_once": {**(plain.get("set_once") or {}), **sealed.get("set_once", {})},
                "unset": list(plain.get("unset") or ()),
            }
        return self.properties_of(row), traits, sealed

    def _new_event(self, row: EventRow) -> NewEvent:
        """The domain's view of a stored event (PII opened), for rebuilds."""
        sealed = self._sealed(row)
        traits = row.traits or {}
        properties = {
            **to_dict(struct_pb2.Struct.FromString(row.properties)),
            **((row.legacy or {}).get("properties") or {}),
            **sealed.get("properties", {}),
        }
        for path, value in sealed.get("property_paths", ()):
            put_dict(properties, tuple(path), value)
        return NewEvent(
            message_id=row.message_id,
            person_id=row.person_id,
            type=row.type,
            event=row.event,
            event_time=row.event_time,
            properties=properties,
            traits={**traits.get("set", {}), **sealed.get("set", {})},
            set_once={**traits.get("set_once", {}), **sealed.get("set_once", {})},
            unset=tuple(traits.get("unset", ())),
            channel=row.channel,
            store_id=row.store_id,
            staff_id=row.staff_id,
            source=row.source,
        )

    # Events in ----------------------------------------------------------------------------------

    async def _ensure_partitions(self, moments: Sequence[datetime]) -> None:
        """Monthly partitions for these times, when missing (rare: the maintenance worker creates
        them ahead of time, times before them go to ``events_history``, times are bounded)."""
        months = {repository.month_of(m) for m in moments if self._history_bound is None or m >= self._history_bound}
        if not months - self._partitions:
            return
        async with self._pool.acquire() as conn:
            await self._load_partitions(conn)
            bound = self._history_bound
            missing = {m for m in months if bound is None or m >= repository.month_of(bound)} - self._partitions
            if missing:
                await repository.create_partitions(conn, missing)
                self._partitions |= missing

    async def _load_partitions(self, conn: asyncpg.Connection) -> None:
        self._history_bound, months = await repository.existing_partitions(conn)
        self._partitions |= months

    async def maintain_partitions(self, months_ahead: int) -> None:
        """The current month, ``months_ahead`` more, and the months since the last partition (the
        service was down): the hot path then never creates one."""
        now = self.now()
        async with self._pool.acquire() as conn:
            await self._load_partitions(conn)
            month = repository.month_of(now)
            if self._partitions:
                month = min(month, _next_month(max(self._partitions)))
            last = repository.month_of(now)
            for _ in range(months_ahead):
                last = _next_month(last)
            floor = repository.month_of(self._history_bound) if self._history_bound else month
            months = set()
            while month <= last:
                if month >= floor:
                    months.add(month)
                month = _next_month(month)
            missing = months - self._partitions
            if missing:
                await repository.create_partitions(conn, missing)
                self._partitions |= missing

    async def record_events(
        self, items: Sequence[Incoming], *, also: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
    ) -> int:
        """Store events once and update their profiles; returns how many events were new.

        ``also`` runs in the same transaction (the bulk import moves its checkpoint with the rows).
        """
        unique: dict[tuple[str, str], Incoming] = {}
        for item in items:
            unique.setdefault((item.workspace_id, item.message_id), item)
        batch = list(unique.values())
        if batch:
            await self._ensure_partitions([i.event_time for i in batch])
        sent_to = [i.person_id for i in batch]

        async def record(conn: asyncpg.Connection) -> int:
            counted = 0
            if batch:
                await self._lock_partitions(conn, [*sent_to, *(i.person_id for i in batch)])
                counted = await self._record(conn, batch)
            if also is not None:
                await also(conn)
            return counted

        try:
            return await self._until_settled(record)
        except asyncpg.CheckViolationError as exc:
            if "no partition of relation" not in str(exc):
                raise
            # A month the retention job dropped meanwhile (a late event older than the
            # retention): this replica's list of partitions was stale. Reloaded, once.
            self._partitions.clear()
            await self._ensure_partitions([i.event_time for i in batch])
            return await self._until_settled(record)

    async def _until_settled(self, body: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        """``body`` in a transaction, started again when a merge moved its persons meanwhile."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await body(conn)
            except _Moved:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _lock_partitions(self, conn: asyncpg.Connection, person_ids: Sequence[str]) -> None:
        """Serialise a consumer batch with a merge or split touching the same persons' partitions.

        Without it, a batch creating the profile of a person that a merge is moving away at that
        moment could commit after the merge and leave a profile under the merged id. A consumer
        batch holds one partition's events (one lock); merges and splits are rare. Advisory locks
        are taken first, in order, before any row lock, so they cannot deadlock with row locks.
        """
        partitions = self._names.partitions
        await repository.lock_partitions(conn, {partition_of(p, partitions) for p in set(person_ids)})

    async def _record(self, conn: asyncpg.Connection, items: list[Incoming]) -> int:
        now = self.now()
        by_workspace: dict[str, list[Incoming]] = defaultdict(list)
        for item in items:
            by_workspace[item.workspace_id].append(item)
        counted = 0
        for workspace_id in sorted(by_workspace):
            settings = await self._settings(conn, workspace_id)
            batch = by_workspace[workspace_id]
            aliases = await repository.survivors(conn, workspace_id, sorted({i.person_id for i in batch}))
            for item in batch:
                item.person_id = aliases.get(item.person_id, item.person_id)
            rows = {(r.message_id): r for r in (self._event_row(i, settings) for i in batch)}
            fresh = await repository.insert_new_events(conn, workspace_id, list(rows.values()))
            if not fresh:
                continue
            stored_properties = {row.message_id: row.properties for row in fresh}
            item_by_id = {i.message_id: i for i in batch}
            events = [self._fresh_event(item_by_id[row.message_id], row, settings) for row in fresh]
            changes = await self._apply(conn, workspace_id, settings, events, now)
            await self._save(conn, workspace_id, settings, changes, now, stored_properties)
            counted += len(fresh)
        return counted

    async def _apply(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        settings: WorkspaceSettings,
        events: list[NewEvent],
        now: datetime,
    ) -> list[tuple[Change, Sequence[str]]]:
        """The changes new events make, their profiles locked (in the caller's transaction).

        An order event changes its order's owner, who may be another person than the event's
        (``domain.order_targets``): owners are locked with the event's persons, in one ordered
        statement. A profile that a merge took away while this waited for its lock (or an order
        that changed hands meanwhile) makes the whole transaction start again (:class:`_Moved`).
        """
        by_person: dict[str, list[NewEvent]] = defaultdict(list)
        for event in events:
            by_person[event.person_id].append(event)
        order_ids = sorted({domain.order_id_of(e) for e in events} - {""})
        targets: dict[str, str] = {}
        if order_ids:
            on_file = await repository.orders_of(conn, workspace_id, [], order_ids)
            targets, _ = domain.order_targets(events, {o.order_id: o for o in on_file})
        persons = sorted(set(by_person) | set(targets.values()))
        current = await repository.lock_profiles(conn, workspace_id, persons)
        missing = [p for p in persons if p not in current]
        if missing and await repository.survivors(conn, workspace_id, missing):
            raise _Moved
        stale = {p for p, stored in current.items() if stored.state.stats.get("settings_version") != settings.version}
        orders: dict[str, Order] = {}
        if order_ids or stale:
            owners = sorted(set(targets.values()) | stale)
            orders = {o.order_id: o for o in await repository.orders_of(conn, workspace_id, owners, order_ids)}
        notes: list[tuple[str, str]] = []
        if order_ids:
            targets, notes = domain.order_targets(events, orders)
            if not set(targets.values()) <= set(persons):
                raise _Moved
        # Order events another person's events bring to an order's owner (one pass: a batch holds
        # hundreds of persons).
        foreign: dict[str, list[NewEvent]] = defaultdict(list)
        for event in events:
            owner = targets.get(event.message_id)
            if owner and owner != event.person_id:
                foreign[owner].append(event)
        order_owners = set(targets.values())
        changes = []
        for person_id in persons:
            stored = current.get(person_id)
            state = self._open_profile(workspace_id, stored) if stored else ProfileState(person_id)
            touches_orders = person_id in order_owners or person_id in stale or stored is None
            change = domain.apply_events(
                state,
                by_person.get(person_id, ()),
                settings,
                now,
                orders if touches_orders else None,
                foreign=foreign.get(person_id, []),
                targets=targets,
                full=person_id in stale or stored is None,
            )
            if change is not None:
                notes += change.notes
                changes.append((change, stored.merged_person_ids if stored else ()))
        for message_id, reason in notes:
            EVENTS_ADJUSTED.labels(reason).inc()
            log.info("order event not applied as sent", workspace=workspace_id, message_id=message_id, reason=reason)
        return changes

    @staticmethod
    def _fresh_event(item: Incoming, row: EventRow, settings: WorkspaceSettings) -> NewEvent:
        traits = item.traits or {}
        # Properties matter to orders and to windowed sums only: other events skip the conversion.
        needed = EVENT_KINDS.get(row.event) in ORDER_KINDS or row.event in settings.summed_events
        return NewEvent(
            message_id=row.message_id,
            person_id=row.person_id,
            type=row.type,
            event=row.event,
            event_time=row.event_time,
            properties=(item.property_values if item.property_values is not None else to_dict(item.properties))
            if needed
            else {},
            traits=traits.get("set") or {},
            set_once=traits.get("set_once") or {},
            unset=tuple(traits.get("unset") or ()),
            channel=row.channel,
            store_id=row.store_id,
            staff_id=row.staff_id,
            source=row.source,
        )

    async def _save(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        settings: WorkspaceSettings,
        changes: Sequence[tuple[Change, Sequence[str]]],
        now: datetime,
        stored_properties: Mapping[str, bytes] | None = None,
    ) -> list[LedgerRow]:
        """Write the changes (profiles, orders, ledger, timers) and announce them, in the caller's transaction."""
        if not changes:
            return []
        rows = []
        for change, merged in changes:
            stored, sealed = self._seal_profile(workspace_id, change.state, settings)
            rows.append((stored, sealed, merged))
        await repository.save_profiles(conn, workspace_id, rows)
        await repository.upsert_orders(conn, workspace_id, [o for c, _ in changes for o in c.orders])
        ledger = await repository.insert_ledger(
            conn, workspace_id, [(c.state.person_id, e) for c, _ in changes for e in c.ledger]
        )
        await repository.set_timers(conn, workspace_id, [(c.state.person_id, c.next_due) for c, _ in changes])
        # A person's changes (non-PII traits, behaviour, orders) are personal data too: sealed at
        # rest in the outbox like identity's, opened by the relay right before publishing.
        await outbox.enqueue_many(
            conn,
            [
                self._announcement(workspace_id, change, settings, now, stored_properties or {})
                for change, _ in changes
                if change.announced
            ],
            sealer=self._vault,
        )
        return ledger

    # Announcements ------------------------------------------------------------------------------

    def snapshot(self, state: ProfileState, settings: WorkspaceSettings) -> events_pb2.ProfileSnapshot:
        snapshot = events_pb2.ProfileSnapshot()
        self._fill_snapshot(snapshot, state, settings)
        return snapshot

    @staticmethod
    def _fill_snapshot(snapshot: events_pb2.ProfileSnapshot, state: ProfileState, settings: WorkspaceSettings) -> None:
        """:meth:`snapshot` written into ``snapshot`` (in place: no copy of its Structs)."""
        personal = sorted(k for k, v in state.traits.items() if settings.holds_pii(k, v))
        # Present even when empty, as when the message was built from its parts.
        snapshot.SetInParent()
        snapshot.traits.SetInParent()
        snapshot.computed.SetInParent()
        fill_struct(snapshot.traits, {k: v for k, v in state.traits.items() if k not in personal})
        snapshot.pii_traits.extend(personal)
        fill_struct(snapshot.computed, state.computed)
        snapshot.lifecycle_stage = state.lifecycle_stage
        snapshot.tier = state.tier
        snapshot.tags.extend(sorted(state.tags))
        consent = snapshot.consent
        for key, value in state.consent.items():
            consent[key] = bool(value["granted"])
        snapshot.points_balance = state.points_balance
        snapshot.currency = settings.currency

    def _announcement(
        self,
        workspace_id: str,
        change: Change,
        settings: WorkspaceSettings,
        now: datetime,
        stored_properties: Mapping[str, bytes],
    ) -> tuple[str, str, str, bytes]:
        state = change.state
        values = {}
        for key, value in change.changed.items():
            if key.startswith("traits.") and settings.holds_pii(key[7:], value):
                value = None if value is None else True  # PII never travels: only whether it is set
            elif isinstance(value, datetime):
                value = domain.iso(value)
            values[key] = value
        message = events_pb2.ProfileChanged(
            workspace_id=workspace_id,
            person_id=state.person_id,
            changed_fields=sorted(change.changed),
            trigger_message_id=change.trigger.message_id if change.trigger else "",
            trigger_event=change.trigger.event if change.trigger else "",
            version=state.version,
        )
        # Filled in place: a message passed to the constructor would be copied.
        message.values.SetInParent()
        fill_struct(message.values, values)
        message.change_time.SetInParent()
        set_timestamp(message.change_time, now)
        self._fill_snapshot(message.snapshot, state, settings)
        for event in change.events:
            fact = message.events.add(
                message_id=event.message_id,
                event=event.event,
                type=EVENT_TYPE_VALUES.get(event.type, 0),
                channel=event.channel,
                store_id=event.store_id,
                staff_id=event.staff_id,
            )
            set_timestamp(fact.event_time, event.event_time)
            # As stored: as sent, without the PII-named properties.
            fact.properties.MergeFromString(stored_properties.get(event.message_id, b""))
        for order in change.orders:
            if order.status != "pending":
                message.orders.append(order_fact(order))
        for transition in change.transitions:
            message.transitions.add(
                kind=transition.kind,
                from_value=transition.from_value,
                to_value=transition.to_value,
                direction=transition.direction,
                cause=transition.cause,
                transition_time=timestamp(transition.at),
            )
        if change.moved is not None:
            message.moved.CopyFrom(change.moved)
        return (
            workspace_id,
            self._names.partitioned(PROFILE, state.person_id),
            f"profile:{workspace_id}:{state.person_id}:{state.version}",
            message.SerializeToString(),
        )

    # Reads --------------------------------------------------------------------------------------

    async def _resolve(self, conn: asyncpg.Connection, workspace_id: str, person_id: str) -> str:
        aliases = await repository.survivors(conn, workspace_id, [person_id])
        return aliases.get(person_id, person_id)

    async def _lock_resolved(
        self, conn: asyncpg.Connection, workspace_id: str, person_id: str
    ) -> tuple[str, StoredProfile | None]:
        """The profile ``person_id`` resolves to, locked. A merge may take that profile away
        while this waits for its lock: the id is then resolved again (to the survivor)."""
        resolved = await self._resolve(conn, workspace_id, person_id)
        for _ in range(ATTEMPTS):
            stored = (await repository.lock_profiles(conn, workspace_id, [resolved])).get(resolved)
            survivor = await self._resolve(conn, workspace_id, resolved) if stored is None else resolved
            if survivor == resolved:
                return resolved, stored
            resolved = survivor
        raise _Moved

    async def get_profile(self, workspace_id: str, person_id: str) -> ProfileView:
        async with self._reads.acquire() as conn:
            found = await repository.read_profile(
                conn, workspace_id, person_id, events=RECENT_EVENTS, orders=RECENT_ORDERS
            )
            if found is None:
                raise NotFound(f"profile {person_id} not found")
            stored, recent, orders, version, prediction = found
            settings = self._settings_cache.get(workspace_id)
            if settings is None or settings.version != version:
                settings = await self._settings(conn, workspace_id)
        state = self._open_profile(workspace_id, stored)
        now = self.now()
        return ProfileView(
            state=state,
            merged_person_ids=stored.merged_person_ids,
            updated_at=stored.updated_at,
            requested_person_id=person_id,
            settings=settings,
            windowed=domain.windowed_values(state, settings, now),
            next_due=domain.next_due(state, settings, now),
            prediction=prediction,
            recent_events=[(row, self.properties_of(row)) for row in recent],
            recent_orders=orders,
        )

    async def list_profile_dates(
        self, workspace_id: str, after: str | None, limit: int
    ) -> list[tuple[str, str | None, datetime | None, int]]:
        async with self._pool.acquire() as conn:
            return await repository.list_profile_dates(conn, workspace_id, after, limit)

    async def list_events(
        self, workspace_id: str, person_id: str, size: int, position: tuple[datetime, str] | None, event: str
    ) -> list[tuple[EventRow, struct_pb2.Struct]]:
        async with self._pool.acquire() as conn:
            person_id = await self._resolve(conn, workspace_id, person_id)
            rows = await repository.list_events(conn, workspace_id, person_id, limit=size, before=position, event=event)
        return [(row, self.properties_of(row)) for row in rows]

    async def list_orders(
        self, workspace_id: str, person_id: str, size: int, position: tuple[datetime, str] | None
    ) -> list[Order]:
        async with self._pool.acquire() as conn:
            person_id = await self._resolve(conn, workspace_id, person_id)
            return await repository.list_orders(conn, workspace_id, person_id, limit=size, before=position)

    async def list_points(
        self, workspace_id: str, person_id: str, size: int, position: tuple[datetime, str] | None
    ) -> list[LedgerRow]:
        async with self._pool.acquire() as conn:
            person_id = await self._resolve(conn, workspace_id, person_id)
            return await repository.list_ledger(conn, workspace_id, person_id, limit=size, before=position)

    # Writes through the API ---------------------------------------------------------------------

    async def _mutate(
        self,
        workspace_id: str,
        person_id: str,
        apply: Callable[[ProfileState, WorkspaceSettings, datetime], Change | None],
        *,
        once: str = "",
    ) -> list[LedgerRow]:
        async with self._pool.acquire() as conn, conn.transaction():
            settings = await self._settings(conn, workspace_id)
            _, stored = await self._lock_resolved(conn, workspace_id, person_id)
            if stored is None:
                raise NotFound(f"profile {person_id} not found")
            # Keyed by the id the request names: a retry after that person was merged away is
            # still a retry.
            if once and not await inbox.first_time(conn, "profile-api", workspace_id, f"{person_id}:{once}"):
                return []  # a retry of a request already applied
            now = self.now()
            change = apply(self._open_profile(workspace_id, stored), settings, now)
            if change is None:
                return []
            return await self._save(conn, workspace_id, settings, [(change, stored.merged_person_ids)], now)

    async def update_traits(
        self,
        workspace_id: str,
        person_id: str,
        *,
        set_: dict,
        set_once: dict,
        unset: list[str],
        source: str,
        request_id: str,
    ) -> None:
        """An identify call made through the API: stored as an event ``api:<person>:<request id>``."""
        now = self.now()
        await self._ensure_partitions([now])

        async def record(conn: asyncpg.Connection) -> None:
            await self._lock_partitions(conn, [person_id])
            resolved, stored = await self._lock_resolved(conn, workspace_id, person_id)
            if stored is None:
                raise NotFound(f"profile {person_id} not found")
            item = Incoming(
                workspace_id=workspace_id,
                message_id=f"api:{person_id}:{request_id}",  # the id named: a retry after a merge is one
                person_id=resolved,
                type="identify",
                event="",
                properties=struct_pb2.Struct(),
                context=to_struct({"source": source}),
                event_time=now,
                received_at=now,
                traits={"set": set_, "set_once": set_once, "unset": unset},
                source=source,
            )
            await self._record(conn, [item])

        await self._until_settled(record)

    async def modify_tags(
        self,
        workspace_id: str,
        person_id: str,
        add: list[tuple[str, datetime | None]],
        remove: list[str],
        source: str,
        request_id: str,
    ) -> None:
        """An expiry in the past is refused (the tag would be added and removed in one call)."""
        for i, (_, expires) in enumerate(add):
            if expires is not None and expires <= self.now():
                raise InvalidArgument(f"add[{i}].expire_time", "must be in the future")
        await self._mutate(
            workspace_id,
            person_id,
            lambda state, settings, now: domain.modify_tags(state, add, remove, source, settings, now),
            once=f"tags:{request_id}",
        )

    async def update_consent(
        self,
        workspace_id: str,
        person_id: str,
        channel: str,
        purpose: str,
        granted: bool,
        source: str,
        statement_time: datetime | None,
        request_id: str = "",
    ) -> None:
        """A consent statement; one dated ahead of now by more than the clock skew allowed is refused
        (it would beat every later withdrawal)."""
        if statement_time is not None and statement_time > self.now() + domain.CONSENT_CLOCK_SKEW:
            raise InvalidArgument("statement_time", "must not be in the future")
        await self._mutate(
            workspace_id,
            person_id,
            lambda state, settings, now: domain.update_consent(
                state, channel, purpose, granted, source, statement_time or now, settings, now
            ),
            once=f"consent:{request_id}" if request_id else "",
        )

    async def unsubscribe(
        self, workspace_id: str, person_id: str, channel: str, source: str, request_id: str = ""
    ) -> None:
        await self._mutate(
            workspace_id,
            person_id,
            lambda state, settings, now: domain.unsubscribe(state, channel, source, now, settings, now),
            once=f"unsubscribe:{request_id}" if request_id else "",
        )

    async def change_points(
        self, workspace_id: str, person_id: str, kind: str, points: int, reference: str, reason: str
    ) -> LedgerRow:
        """Earn, redeem or adjust, idempotent by ``reference``: a retry returns the entry on file; a
        reference used for another change is ``ALREADY_EXISTS``."""
        signed = -points if kind == "redeem" else points

        async def on_file() -> LedgerRow | None:
            async with self._pool.acquire() as conn:
                resolved = await self._resolve(conn, workspace_id, person_id)
                entries = await repository.ledger_entries(conn, workspace_id, resolved, reference)
            if not entries:
                return None
            for row in entries:  # after a merge the same reference may be on file twice (one renamed)
                if (row.entry.kind, row.entry.points) == (kind, signed):
                    return row
            raise AlreadyExists(
                f"reference {reference!r} was used for another change ({entries[0].entry.kind} "
                f"{entries[0].entry.points} points)"
            )

        existing = await on_file()
        if existing is not None:
            return existing

        def apply(state: ProfileState, settings: WorkspaceSettings, now: datetime) -> Change:
            try:
                return domain.change_points(state, kind, points, reference, reason, settings, now)
            except domain.InsufficientPoints as exc:
                raise FailedPrecondition(f"not enough points: {exc}") from None

        try:
            ledger = await self._mutate(workspace_id, person_id, apply)
        except asyncpg.UniqueViolationError:
            # A concurrent call with the same reference won.
            existing = await on_file()
            if existing is None:
                raise
            return existing
        return next(row for row in ledger if row.entry.reference == reference)

    # Time ---------------------------------------------------------------------------------------

    async def run_timers(self, limit: int) -> int:
        """Apply what time alone changes to profiles whose timer is due, up to ``limit`` per
        workspace and round (each workspace with due timers gets its turn); returns how many."""
        now = self.now()
        async with self._pool.acquire() as conn:
            workspaces = await repository.due_workspaces(conn, now)
        done = 0
        for workspace_id in workspaces:
            done += await self._fire_timers(workspace_id, now, limit)
        return done

    async def _fire_timers(self, workspace_id: str, now: datetime, limit: int) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await repository.claim_due_timers(conn, workspace_id, now, limit)
            if not claimed:
                return 0
            settings = await self._settings(conn, workspace_id)
            # Profiles a consumer batch holds are skipped (SKIP LOCKED): it resets their timers itself,
            # or the next round takes them.
            causes = await repository.lock_due_profiles(conn, workspace_id, claimed, now)
            persons = sorted(causes)
            orphans = set(claimed) - set(persons)
            if orphans:
                await repository.delete_orphan_timers(conn, workspace_id, orphans)
            if not persons:
                return 0
            current = await repository.lock_profiles(conn, workspace_id, persons)
            orders = await self._orders_by_person(conn, workspace_id, persons)

            def change_of(person_id: str) -> Change:
                state = self._open_profile(workspace_id, current[person_id])
                return domain.recompute(state, settings, now, orders.get(person_id, []), causes[person_id])

            async def postpone(person_id: str) -> None:
                BACKGROUND_FAILURES.labels("timer").inc()
                await repository.postpone_timer(conn, workspace_id, person_id, now + TIMER_RETRY)

            return await self._save_each(conn, workspace_id, settings, current, change_of, now, postpone)

    async def run_reevaluations(self, limit: int) -> int:
        """Re-evaluate profiles of workspaces whose settings changed, ``limit`` per workspace and
        round, in person order (resumable; each workspace gets its turn); returns how many."""
        async with self._pool.acquire() as conn:
            workspaces = await repository.pending_reevaluations(conn)
        done = 0
        for workspace_id in workspaces:
            done += await self._reevaluate(workspace_id, limit)
        return done

    async def _reevaluate(self, workspace_id: str, limit: int) -> int:
        now = self.now()
        async with self._pool.acquire() as conn, conn.transaction():
            run = await repository.claim_reevaluation(conn, workspace_id)
            if run is None:
                return 0
            settings = await self._settings(conn, workspace_id)
            persons = await repository.profiles_after(conn, workspace_id, run["after_person"], limit)
            if not persons:
                await repository.finish_reevaluation(conn, workspace_id)
                log.info("profiles re-evaluated under new settings", workspace=workspace_id, version=run["version"])
                return 0
            windows = [w for w in settings.windowed_traits if w.name in run["windows"]]
            current = await repository.lock_profiles(conn, workspace_id, persons)
            # An event may have re-derived a profile under these settings first; windows to rebuild
            # are rebuilt for everyone (a rebuild from stored events is exact whatever came before).
            todo = [
                p for p, stored in current.items()
                if windows or stored.state.stats.get("settings_version") != settings.version
            ]  # fmt: skip
            if todo:
                orders = await self._orders_by_person(conn, workspace_id, todo)
                events: dict[str, list[NewEvent]] = defaultdict(list)
                if windows:
                    since = now - timedelta(days=max(w.days for w in windows) + 1)
                    names = sorted({w.event for w in windows})
                    for row in await repository.window_events(conn, workspace_id, todo, names, since):
                        events[row.person_id].append(self._new_event(row))

                def change_of(person_id: str) -> Change:
                    state = self._open_profile(workspace_id, current[person_id])
                    return domain.reevaluate(
                        state, settings, now, orders.get(person_id, []), windows, events.get(person_id, ())
                    )

                async def skip(person_id: str) -> None:
                    BACKGROUND_FAILURES.labels("reevaluation").inc()

                picked = {p: current[p] for p in todo}
                await self._save_each(conn, workspace_id, settings, picked, change_of, now, skip)
            await repository.advance_reevaluation(conn, workspace_id, persons[-1])
            return len(persons)

    async def _orders_by_person(
        self, conn: asyncpg.Connection, workspace_id: str, persons: Sequence[str]
    ) -> dict[str, list[Order]]:
        orders: dict[str, list[Order]] = defaultdict(list)
        for order in await repository.orders_of(conn, workspace_id, persons):
            orders[order.person_id].append(order)
        return orders

    async def _save_each(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        settings: WorkspaceSettings,
        profiles: Mapping[str, StoredProfile],
        change_of: Callable[[str], Change],
        now: datetime,
        on_failure: Callable[[str], Awaitable[None]],
    ) -> int:
        """Save the changes of background work together; if that fails, one by one (a savepoint
        each), so that one profile that cannot be saved (logged, ``on_failure``) stops no other."""
        persons = sorted(profiles)
        try:
            async with conn.transaction():
                changes = [(change_of(p), profiles[p].merged_person_ids) for p in persons]
                await self._save(conn, workspace_id, settings, changes, now)
            return len(persons)
        except Exception as exc:  # noqa: BLE001 - isolated below
            log.warning("saving profiles together failed, one by one now", workspace=workspace_id, error=repr(exc))
        done = 0
        for person_id in persons:
            try:
                async with conn.transaction():
                    change = change_of(person_id)
                    await self._save(
                        conn, workspace_id, settings, [(change, profiles[person_id].merged_person_ids)], now
                    )
                done += 1
            except Exception as exc:  # noqa: BLE001 - logged, counted, left for later
                log.error("profile not saved", workspace=workspace_id, person=person_id, error=repr(exc))
                await on_failure(person_id)
        return done

    # Merges and splits --------------------------------------------------------------------------

    async def identity_position(self) -> int:
        """The stream sequence of identity's last announcement applied (0: none yet)."""
        async with self._pool.acquire() as conn:
            return await repository.stream_position(conn, IDENTITY_POSITION)

    async def apply_identity(self, kind: str, data: bytes, sequence: int) -> bool:
        """Apply identity's announcement number ``sequence`` of its stream, once and in order: the
        position is committed with the change, and an announcement at or before it is skipped
        (False). Kinds other than merges and splits only move the position."""
        async with self._pool.acquire() as conn, conn.transaction():
            if sequence <= await repository.lock_stream_position(conn, IDENTITY_POSITION):
                return False
            try:
                if kind == "persons_merged":
                    await self.apply_merge(events_pb2.PersonsMerged.FromString(data), conn)
                elif kind == "person_split":
                    await self.apply_split(events_pb2.PersonSplit.FromString(data), conn)
            except DecodeError as exc:
                raise BadAnnouncement(f"not a {kind} payload: {exc}") from None
            await repository.set_stream_position(conn, IDENTITY_POSITION, sequence)
        return True

    async def skip_identity(self, sequence: int) -> None:
        """Move the position past an announcement that was dead-lettered."""
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_stream_position(conn, IDENTITY_POSITION)
            await repository.set_stream_position(conn, IDENTITY_POSITION, sequence)

    @contextlib.asynccontextmanager
    async def identity_lease(self) -> AsyncIterator[bool]:
        """True while this process is the one that applies identity's announcements (a session
        advisory lock: released when the process or its connection dies)."""
        async with self._pool.acquire() as conn:
            held = await repository.try_session_lock(conn, IDENTITY_LEASE)
            try:
                yield held
            finally:
                if held:
                    with contextlib.suppress(Exception):
                        await repository.session_unlock(conn, IDENTITY_LEASE)

    async def apply_merge(self, message: events_pb2.PersonsMerged, conn: asyncpg.Connection | None = None) -> bool:
        """Move everything of the merged persons to the survivor (once per merge), in ``conn``'s
        transaction or a new one."""
        if conn is None:
            async with self._pool.acquire() as conn, conn.transaction():
                return await self.apply_merge(message, conn)
        _check_ids(message.survivor_person_id, *message.merged_person_ids)
        workspace_id = message.workspace_id
        await self._lock_partitions(conn, [message.survivor_person_id, *message.merged_person_ids])
        key = f"merged:{message.merge_id or message.trigger_message_id}:{message.survivor_person_id}"
        if not await inbox.first_time(conn, "profile-identity", workspace_id, key):
            return False
        settings = await self._settings(conn, workspace_id)
        survivor = await self._resolve(conn, workspace_id, message.survivor_person_id)
        merged = sorted({p for p in message.merged_person_ids if p and p != survivor})
        if not merged:
            return False
        current = await repository.lock_profiles(conn, workspace_id, sorted([survivor, *merged]))
        await repository.move_events(conn, workspace_id, merged, survivor)
        await repository.move_orders(conn, workspace_id, merged, survivor)
        renamed = await repository.move_ledger(conn, workspace_id, merged, survivor)
        await repository.add_aliases(
            conn, workspace_id, merged, survivor, [current[p].state.version if p in current else 0 for p in merged]
        )
        others = [self._open_profile(workspace_id, current[p]) for p in merged if p in current]
        base_stored = current.get(survivor)
        if base_stored is None and not others:
            return False
        base = self._open_profile(workspace_id, base_stored) if base_stored else ProfileState(survivor)
        now = self.now()
        orders = [o for o in await repository.orders_of(conn, workspace_id, [survivor])]
        change = domain.merge_states(base, others, settings, now, orders, renamed)
        change.moved = events_pb2.FactsMoved(merged_person_ids=merged)
        merged_ids = sorted(
            {*(base_stored.merged_person_ids if base_stored else ()), *merged}
            | {m for p in merged if p in current for m in current[p].merged_person_ids}
        )
        await repository.delete_profiles(conn, workspace_id, merged)
        change.state.version = max([base.version, *(o.version for o in others)]) + 1
        await self._save(conn, workspace_id, settings, [(change, merged_ids)], now)
        log.info("persons merged into profile", workspace=workspace_id, survivor=survivor, merged=len(merged))
        return True

    async def apply_split(self, message: events_pb2.PersonSplit, conn: asyncpg.Connection | None = None) -> bool:
        """``new_person_id`` (with ``moved_person_ids``, ids once merged into it) leaves
        ``person_id``: events resolved from the moved identifiers, their orders and points, and
        what a merge brought from the leaving persons (tags, consent, points) go to it; both are
        recomputed and announced. In ``conn``'s transaction or a new one."""
        if conn is None:
            async with self._pool.acquire() as conn, conn.transaction():
                return await self.apply_split(message, conn)
        _check_ids(message.person_id, message.new_person_id, *message.moved_person_ids)
        workspace_id = message.workspace_id
        original, new_person = message.person_id, message.new_person_id
        leaving = sorted({new_person, *message.moved_person_ids} - {original, ""})
        await self._lock_partitions(conn, [original, *leaving])
        key = f"split:{original}:{new_person}:{message.undone_merge_id}"
        if not await inbox.first_time(conn, "profile-identity", workspace_id, key):
            return False
        settings = await self._settings(conn, workspace_id)
        last_version = await repository.remove_alias(conn, workspace_id, new_person)
        await repository.repoint_aliases(conn, workspace_id, leaving, new_person)
        current = await repository.lock_profiles(conn, workspace_id, sorted([original, new_person]))
        identifiers = [self._identifier_key(workspace_id, i.type, i.value) for i in message.moved_identifiers]
        stored_events, stored_since = await upkeep_repository.stored_events_of(conn, workspace_id, original)
        moved_messages = await repository.move_events_by_identifier(
            conn, workspace_id, original, new_person, identifiers
        )
        moved_orders = (
            await repository.move_orders(conn, workspace_id, [original], new_person, moved_messages)
            if moved_messages
            else []
        )
        original_stored = current.get(original)
        base = self._open_profile(workspace_id, original_stored) if original_stored else ProfileState(original)
        kept, gone = domain.split_holdings(base, leaving, moved_orders)
        references = [lot["ref"] for lot in gone.lots if not lot.get("order")]
        renamed = {}
        if moved_orders or references:
            renamed = await repository.move_ledger(
                conn, workspace_id, [original], new_person, order_ids=moved_orders, references=references
            )
        gone.lots = [{**lot, "ref": renamed.get((original, lot["ref"]), lot["ref"])} for lot in gone.lots]
        now = self.now()
        changes = []
        for person_id, stored, holdings in (
            (original, original_stored, kept),
            (new_person, current.get(new_person), gone),
        ):
            if stored:
                state = self._open_profile(workspace_id, stored)
            else:  # versions go on from those the id had before it was merged away
                state = ProfileState(person_id, version=last_version if person_id == new_person else 0)
            if person_id == new_person and stored:
                holdings = domain.Holdings(state.tags, state.consent, state.points_lots).plus(holdings)
            events = [self._new_event(r) for r in await repository.all_events(conn, workspace_id, person_id)]
            if stored is None and not events and not (holdings.tags or holdings.consent or holdings.lots):
                continue
            orders = await repository.orders_of(conn, workspace_id, [person_id])
            # Events the retention dropped stay with the person who keeps the id (whose they were
            # cannot be told any more).
            dropped = max(0, state.event_count - stored_events) if person_id == original else 0
            change = domain.rebuild(
                state, events, orders, holdings, settings, now, "split",
                dropped_events=dropped, stored_since=stored_since,
            )  # fmt: skip
            change.state.version = state.version + 1
            if person_id == new_person:
                change.moved = events_pb2.FactsMoved(
                    split_from_person_id=original, message_ids=moved_messages, order_ids=moved_orders
                )
                merged_ids = sorted({*(stored.merged_person_ids if stored else ()), *leaving} - {new_person})
            else:
                merged_ids = [m for m in (stored.merged_person_ids if stored else ()) if m not in leaving]
            changes.append((change, merged_ids))
        # Both are announced even when nothing visible changed: projections re-key by `moved`.
        for change, _ in changes:
            if not change.announced:
                change.changed["computed.event_count"] = change.state.computed.get("event_count", 0)
        await self._save(conn, workspace_id, settings, changes, now)
        log.info("person split in profile", workspace=workspace_id, moved_events=len(moved_messages))
        return True

    # Objects ------------------------------------------------------------------------------------

    async def upsert_objects(self, kind: str, workspace_id: str, objects: list[dict]) -> list[dict]:
        """Create or replace objects by id; a change of tags is announced (ObjectTagsChanged)."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await self.upsert_objects_in(conn, kind, workspace_id, objects)

    async def upsert_objects_in(
        self, conn: asyncpg.Connection, kind: str, workspace_id: str, objects: list[dict]
    ) -> list[dict]:
        """:meth:`upsert_objects` in the caller's transaction."""
        key = domain.OBJECT_KINDS[kind][1]
        existing = await repository.get_objects(conn, kind, workspace_id, [o[key] for o in objects], for_update=True)
        announcements = []
        for obj in objects:
            before = existing.get(obj[key])
            version = before["tags_version"] if before else 0
            if sorted(before["tags"] if before else []) != sorted(obj["tags"]):
                version += 1
                announcements.append((obj[key], sorted(obj["tags"]), version))
            obj["tags_version"] = version
        saved = await repository.upsert_objects(conn, kind, workspace_id, objects)
        await self._announce_tags(conn, kind, workspace_id, announcements)
        return saved

    async def _announce_tags(
        self, conn: asyncpg.Connection, kind: str, workspace_id: str, announcements: list[tuple[str, list, int]]
    ) -> None:
        subject = self._names.subject(PROFILE, "objects")
        await outbox.enqueue_many(
            conn,
            [
                (
                    workspace_id,
                    subject,
                    f"objtags:{workspace_id}:{kind}:{object_id}:{version}",
                    events_pb2.ObjectTagsChanged(
                        workspace_id=workspace_id, object_kind=kind, object_id=object_id, tags=tags, version=version
                    ).SerializeToString(),
                )
                for object_id, tags, version in announcements
            ],
        )

    async def get_object(self, kind: str, workspace_id: str, object_id: str) -> dict:
        async with self._pool.acquire() as conn:
            found = (await repository.get_objects(conn, kind, workspace_id, [object_id])).get(object_id)
        if found is None:
            raise NotFound(f"{kind} {object_id} not found")
        return found

    async def update_object(self, kind: str, workspace_id: str, object_id: str, apply: Callable[[dict], dict]) -> dict:
        async with self._pool.acquire() as conn, conn.transaction():
            found = (await repository.get_objects(conn, kind, workspace_id, [object_id], for_update=True)).get(
                object_id
            )
            if found is None:
                raise NotFound(f"{kind} {object_id} not found")
            updated = apply(dict(found))
            announcements = []
            if sorted(updated["tags"]) != sorted(found["tags"]):
                updated["tags_version"] = found["tags_version"] + 1
                announcements.append((object_id, sorted(updated["tags"]), updated["tags_version"]))
            saved = await repository.upsert_objects(conn, kind, workspace_id, [updated])
            await self._announce_tags(conn, kind, workspace_id, announcements)
        return saved[0]

    async def delete_object(self, kind: str, workspace_id: str, object_id: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            found = (await repository.get_objects(conn, kind, workspace_id, [object_id], for_update=True)).get(
                object_id
            )
            if found is None:
                raise NotFound(f"{kind} {object_id} not found")
            await repository.delete_object(conn, kind, workspace_id, object_id)
            if found["tags"]:
                await self._announce_tags(conn, kind, workspace_id, [(object_id, [], found["tags_version"] + 1)])

    async def list_objects(self, kind: str, workspace_id: str, after: str, limit: int) -> list[dict]:
        async with self._pool.acquire() as conn:
            return await repository.list_objects(conn, kind, workspace_id, after, limit)

    # Start-up -----------------------------------------------------------------------------------

    async def reseal_pii(self, limit: int) -> int:
        """One batch of the background pass that seals, under today's rules of what is personal
        (``rules.PII_RULES_VERSION``), the plaintext traits of profiles saved under older rules (or
        before PII was sealed at all); returns how many profiles it went through, 0 once the pass is
        done.
        A profile another transaction holds is skipped: that transaction saves it sealed."""
        if self._pii_pass_done:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            after = await repository.claim_pii_pass(conn, PII_RULES_VERSION)
            if after is None:
                self._pii_pass_done = await repository.pii_pass_finished(conn, PII_RULES_VERSION)
                return 0
            candidates = await repository.profiles_for_pii_pass(conn, after, limit)
            if not candidates:
                await repository.advance_pii_pass(conn, PII_RULES_VERSION, None)
                log.info("profiles sealed under the current PII rules", rules_version=PII_RULES_VERSION)
                self._pii_pass_done = True
                return 0
            plaintext: dict[str, list[str]] = defaultdict(list)
            for workspace_id, person_id, traits in candidates:
                settings = await self._settings(conn, workspace_id)
                if any(settings.holds_pii(k, v) for k, v in traits.items()):
                    plaintext[workspace_id].append(person_id)
            sealed = 0
            for workspace_id, persons in plaintext.items():
                settings = await self._settings(conn, workspace_id)
                for person_id, stored in (await repository.lock_profiles(
                    conn, workspace_id, persons, skip_locked=True
                )).items():  # fmt: skip
                    state, pii = self._seal_profile(workspace_id, self._open_profile(workspace_id, stored), settings)
                    await repository.set_sealed_traits(conn, workspace_id, person_id, state.traits, pii)
                    sealed += 1
            await repository.advance_pii_pass(conn, PII_RULES_VERSION, candidates[-1][:2])
        if sealed:
            log.info("plaintext personal traits sealed", profiles=sealed, rules_version=PII_RULES_VERSION)
        return len(candidates)


def _next_month(month: tuple[int, int]) -> tuple[int, int]:
    year, number = month
    return (year + 1, 1) if number == 12 else (year, number + 1)


def order_lines(order: Order, line_type: type[Message]) -> list:
    """The order's lines as ``line_type`` (events' OrderLineFact, the API's OrderLine: same fields)."""
    return [
        line_type(
            product_id=line.product_id,
            sku=line.sku,
            category=line.category,
            quantity=line.quantity,
            price_minor=line.price_minor,
        )
        for line in order.items
    ]


def order_fact(order: Order) -> events_pb2.OrderFact:
    fact = events_pb2.OrderFact(
        order_id=order.order_id,
        status="completed" if order.status == "partially_refunded" else order.status,
        total_minor=order.net_minor,
        currency=order.currency,
        store_id=order.store_id,
        staff_id=order.staff_id,
        items=order_lines(order, events_pb2.OrderLineFact),
        channel=order.channel,
        refunded_minor=order.refunded_minor,
    )
    if order.order_time:
        set_timestamp(fact.order_time, order.order_time)
    return fact
