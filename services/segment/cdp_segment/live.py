"""The live path: announcements in, memberships out. One transaction per consumer batch.

- ProfileChanged: store new events and orders (once), apply the snapshot when its version is
  newer, re-key moved facts (merges and splits), then re-evaluate, in memory, only the segments
  whose rules read what changed.
- PersonsMerged: the merged-away persons leave every segment at once (reason "persons merged");
  their facts move to the survivor, which is re-evaluated against every segment.
- ObjectTagsChanged: a targeted SQL refresh of the segments whose order filters read that kind of
  tag, for the persons whose orders touch the object.
- Timers: due (segment, person) timers are evaluated when they fall due (reason "time passed").

Idempotent throughout: a redelivered announcement adds no event or order, finds its version
stale, and so changes no membership.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog
from prometheus_client import Counter

from cdp_segment import projection, repository
from cdp_segment.domain import (
    DEFAULT_PII_TRAITS,
    EVERYTHING,
    Catalogue,
    ObjectTags,
    PersonsMerged,
    PersonSplit,
    ProfileChange,
    ProfileState,
    WorkspaceZone,
)
from cdp_segment.membership import Catalogues, Memberships
from cdp_segment.rfm import RFM_TIMER, RfmThresholds, next_regroup, rfm_group
from cdp_segment.rules.data import EventFact
from cdpkit.clock import Clock

log = structlog.get_logger(__name__)

LOCK_RESTARTS = Counter(
    "cdp_segment_lock_restarts_total", "Batches started over because a merge or split moved their persons meanwhile"
)
STALE = Counter("cdp_segment_stale_profile_changes_total", "ProfileChanged announcements older than the projection")
TIMERS_FIRED = Counter("cdp_segment_timers_fired_total", "Durable timers that fell due and were evaluated")


# A batch whose persons changed hands (a merge committed) while it waited for their locks starts
# over with the new set this many times before it just takes the extra locks too.
LOCK_ATTEMPTS = 3


class _LocksMoved(Exception):
    """The persons a batch must hold changed while it waited for them: start the batch over."""


@dataclass
class _Writes:
    """Projection writes of one batch, made in bulk (flushed before facts move, and at the end)."""

    events: list[tuple[str, EventFact]] = field(default_factory=list)
    orders: list[projection.OrderWrite] = field(default_factory=list)
    states: dict[str, tuple[ProfileState, int, str | None]] = field(default_factory=dict)
    # Survivors of announcements for merged-away persons: they need a row.
    persons: set[str] = field(default_factory=set)
    # (RFM_TIMER, person, next recency regroup or None) of the states written
    rfm_timers: list[tuple[str, str, datetime | None]] = field(default_factory=list)

    async def flush(
        self, conn: asyncpg.Connection, workspace_id: str, touched: dict[str, set[str]], *, timers: bool = True
    ) -> None:
        """Write what is pending; the RFM timers too unless not ``timers`` (the caller writes them)."""
        for person_id, name in await projection.add_events(conn, workspace_id, self.events):
            touched[person_id].add(f"events:{name}")
        for person_id in await projection.write_orders(conn, workspace_id, self.orders):
            touched[person_id].add("orders")
        await projection.write_states(conn, workspace_id, self.states)
        if timers:
            await repository.set_timers(conn, workspace_id, self.rfm_timers)
            self.rfm_timers = []
        for person_id in await projection.ensure_persons(conn, workspace_id, self.persons):
            touched[person_id].add(EVERYTHING)
        self.events, self.orders, self.states, self.persons = [], [], {}, set()


@dataclass
class _Scope:
    """What a batch of one workspace holds: the persons locked, and merged-away id -> survivor;
    ``merged_away``: those locked that were merged away when last looked at under the locks."""

    locked: set[str]
    survivors: dict[str, str]
    merged_away: set[str] = field(default_factory=set)

    def resolve(self, person_id: str) -> str:
        return self.survivors.get(person_id, person_id)


class LiveService:
    def __init__(self, pool: asyncpg.Pool, memberships: Memberships, catalogues: Catalogues, clock: Clock) -> None:
        self._pool = pool
        self._memberships = memberships
        self._catalogues = catalogues
        self._clock = clock
        self._pii_names: dict[str, set[str]] = {}

    async def _in_transaction(self, workspaces: Sequence[str], apply) -> None:
        """Run ``apply(conn, catalogues, strict)`` in one transaction holding the workspaces'
        locks shared; start over (a fresh transaction, so no lock is held out of order) when the
        persons it must hold changed while it waited for them."""
        for attempt in range(LOCK_ATTEMPTS):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await repository.lock_workspaces(conn, workspaces)
                    catalogues = await self._catalogues.get(conn, workspaces)
                    await apply(conn, catalogues, attempt < LOCK_ATTEMPTS - 1)
                return
            except _LocksMoved:
                LOCK_RESTARTS.inc()

    @staticmethod
    async def _lock(
        conn: asyncpg.Connection,
        workspace_id: str,
        named: set[str],
        *,
        strict: bool,
        split_off: frozenset[str] = frozenset(),
        message_ids: Sequence[str] = (),
        order_ids: Sequence[str] = (),
    ) -> _Scope:
        """Lock the persons ``named``, their survivors (when merged away) and the persons the
        facts with these ids belong or were claimed for; then look again, under the locks: a merge
        or a split may have committed while this waited. ``split_off``: ids announced as split
        off, persons of their own again."""
        locked: set[str] = set()
        while True:
            wanted, survivors, merged_away = await repository.lock_scope(
                conn,
                workspace_id,
                named,
                split_off=split_off,
                message_ids=message_ids,
                order_ids=order_ids,
                locked=locked,
                lock=not (locked and strict),  # strict: start over rather than lock out of order
            )
            if wanted <= locked:
                return _Scope(locked, survivors, merged_away)
            if locked and strict:
                raise _LocksMoved
            locked |= wanted

    # ProfileChanged -------------------------------------------------------------------------

    async def apply_profile_changes(self, changes: Sequence[ProfileChange]) -> None:
        now = self._clock.now()
        by_workspace: dict[str, list[ProfileChange]] = defaultdict(list)
        for change in changes:
            by_workspace[change.workspace_id].append(change)

        async def apply(conn, catalogues, strict):
            for workspace_id in sorted(by_workspace):
                catalogue, thresholds = catalogues[workspace_id]
                await self._apply_workspace(
                    conn, workspace_id, by_workspace[workspace_id], catalogue, thresholds, now, strict
                )

        await self._in_transaction(list(by_workspace), apply)

    async def _apply_workspace(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        changes: list[ProfileChange],
        catalogue: Catalogue,
        thresholds: RfmThresholds | None,
        now: datetime,
        strict: bool,
    ) -> None:
        split_off = frozenset(c.person_id for c in changes if c.split_from_person_id)
        named = {c.person_id for c in changes} | {m for c in changes for m in c.merged_person_ids}
        named |= {c.split_from_person_id for c in changes if c.split_from_person_id}
        message_ids = [e.message_id for c in changes for e in c.events] + [
            m for c in changes for m in c.moved_message_ids
        ]
        order_ids = [o.order_id for c in changes for o in c.orders] + [o for c in changes for o in c.moved_order_ids]
        # the facts the batch writes or moves: their owners, and whom splits claimed them for, are locked too
        scope = await self._lock(
            conn, workspace_id, named, strict=strict, split_off=split_off, message_ids=message_ids, order_ids=order_ids
        )
        for person_id in sorted(split_off):
            # Announced as split off (an unmerge): a person of its own again, whatever order
            # identity's PersonSplit comes in.
            await repository.record_split(conn, workspace_id, person_id, (), now)
        states = await projection.read_states(conn, workspace_id, sorted(scope.locked))
        touched: dict[str, set[str]] = defaultdict(set)
        triggers: dict[str, str] = {}
        pending = _Writes()
        pii_names: frozenset[str] | None = None
        for change in changes:
            person_id = scope.resolve(change.person_id)
            fields = touched[person_id]
            if change.trigger_message_id:
                triggers[person_id] = change.trigger_message_id
            merged = [m for m in change.merged_person_ids if m != person_id]
            if merged or change.split_from_person_id:
                await pending.flush(conn, workspace_id, touched)  # facts move as written so far
            if merged:
                absorbed, _ = await self._absorb(
                    conn,
                    workspace_id,
                    person_id,
                    merged,
                    scope,
                    now=now,
                    trigger=change.trigger_message_id,
                    version=change.version,
                )
                if absorbed:
                    fields.add(EVERYTHING)
                for gone in merged:
                    states.pop(gone, None)
                    touched.pop(gone, None)
            if change.split_from_person_id:
                losers = await projection.split_facts(
                    conn,
                    workspace_id,
                    person_id,
                    change.version,
                    message_ids=change.moved_message_ids,
                    order_ids=change.moved_order_ids,
                )
                if losers:
                    fields.add(EVERYTHING)
                for loser in losers:
                    touched[loser].add(EVERYTHING)
            pending.events += [(person_id, e) for e in change.events]
            pending.orders += [
                projection.OrderWrite(change.person_id, person_id, o, change.version) for o in change.orders
            ]
            if person_id != change.person_id:
                # Announced for a person merged away since: its facts go to the survivor; its state
                # is the survivor's business (the profile announces the merged state).
                pending.persons.add(person_id)
                continue
            stored = states.get(person_id)
            if stored is not None and change.version <= stored[1]:
                STALE.inc()
                continue
            before = stored[0] if stored is not None else ProfileState()
            if change.snapshot is not None:
                state = change.snapshot
            else:
                if pii_names is None:  # read once per batch, and only for announcements without a snapshot
                    pii_names = DEFAULT_PII_TRAITS | frozenset(await projection.pii_names(conn, workspace_id))
                state = before.with_values(change.values, pii_names)
            group = rfm_group(state.computed, thresholds, now)
            pending.states[person_id] = (state, change.version, group)
            pending.rfm_timers.append((RFM_TIMER, person_id, next_regroup(state.computed, thresholds, now)))
            if stored is None:
                fields.add(EVERYTHING)  # new to the projection: any rule may admit it
            else:
                fields |= before.changed_fields(state) | set(change.changed_fields)
                if group != stored[2]:
                    fields.add("rfm_group")
            states[person_id] = (state, change.version, group)
        await self._remember_pii_names(
            conn, workspace_id, set().union(*(s.pii_traits for s, _, _ in pending.states.values()))
        )
        await pending.flush(conn, workspace_id, touched, timers=False)  # written with the evaluation's
        if (
            split_off
            or any(c.merged_person_ids for c in changes)
            or scope.merged_away
            or not touched.keys() <= scope.locked
        ):
            gone = await repository.survivors(conn, workspace_id, touched)
        else:  # none of them merged away when looked at under their locks, and a merge takes them
            gone = {}
        starts = {p: catalogue.reading(fields) for p, fields in touched.items() if p not in gone}
        unlocked = set(starts) - scope.locked
        if unlocked:  # cannot happen: every person whose facts the batch writes was locked above
            log.error("persons evaluated without their lock", persons=sorted(unlocked))
            if strict:
                raise _LocksMoved
        await self._memberships.evaluate_persons(
            conn,
            workspace_id,
            catalogue,
            starts,
            now=now,
            reason="profile change",
            triggers=triggers,
            known={p: (state, group) for p, (state, _, group) in states.items()},
            timers=pending.rfm_timers,
        )

    async def _remember_pii_names(self, conn: asyncpg.Connection, workspace_id: str, names: set[str]) -> None:
        known = self._pii_names.setdefault(workspace_id, set())
        if names - known:
            await projection.remember_pii_names(conn, workspace_id, names - known)
            known |= names

    async def absorb(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        survivor: str,
        merged: Sequence[str],
        *,
        now: datetime,
        trigger: str = "",
        version: int = 0,
    ) -> tuple[bool, str]:
        """Merge ``merged`` into ``survivor`` (or into the person it was merged into since); the
        caller holds the persons' locks. (anything changed, the survivor merged into)."""
        survivors = await repository.survivors(conn, workspace_id, [survivor])
        scope = _Scope(set(), survivors)
        return await self._absorb(
            conn, workspace_id, scope.resolve(survivor), merged, scope, now=now, trigger=trigger, version=version
        )

    async def _absorb(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        survivor: str,
        merged: Sequence[str],
        scope: _Scope,
        *,
        now: datetime,
        trigger: str,
        version: int,
    ) -> tuple[bool, str]:
        """Merged-away persons leave every segment; their facts move to the survivor. (True when
        anything moved or ended (the first time; a replay finds nothing to do), the survivor)."""
        survivor = scope.resolve(survivor)
        merged = sorted({m for m in merged if m != survivor})
        if not merged:
            return False, survivor
        await repository.record_merge(conn, workspace_id, survivor, merged, now)
        moved = await projection.merge_facts(conn, workspace_id, survivor, merged, version)
        dropped = await self._memberships.drop_persons(
            conn, workspace_id, merged, now=now, reason="persons merged", trigger=trigger
        )
        deleted = await projection.delete_persons(conn, workspace_id, merged)
        created = await projection.ensure_persons(conn, workspace_id, [survivor])
        for person_id in merged:
            scope.survivors[person_id] = survivor
        return bool(moved or dropped or deleted or created), survivor

    # PersonsMerged and PersonSplit ---------------------------------------------------------------

    async def apply_identity(self, messages: Sequence[PersonsMerged | PersonSplit]) -> None:
        """Identity's merges and splits, in the order given."""
        now = self._clock.now()
        workspaces = sorted({m.workspace_id for m in messages})

        async def apply(conn, catalogues, strict):
            for workspace_id in workspaces:
                catalogue, _ = catalogues[workspace_id]
                mine = [m for m in messages if m.workspace_id == workspace_id]
                named = {p for m in mine for p in m.person_ids}
                scope = await self._lock(conn, workspace_id, named, strict=strict)
                starts: dict[str, set[str]] = {}
                triggers: dict[str, str] = {}
                for message in mine:
                    if isinstance(message, PersonSplit):
                        await repository.record_split(
                            conn, workspace_id, message.new_person_id, message.moved_person_ids, now
                        )
                        scope.survivors.pop(message.new_person_id, None)
                        for moved in message.moved_person_ids:
                            scope.survivors[moved] = message.new_person_id
                        continue
                    absorbed, survivor = await self._absorb(
                        conn,
                        workspace_id,
                        message.survivor_person_id,
                        message.merged_person_ids,
                        scope,
                        now=now,
                        trigger=message.trigger_message_id,
                        version=0,
                    )
                    if absorbed:
                        starts[survivor] = catalogue.reading({EVERYTHING})
                        triggers[survivor] = message.trigger_message_id
                gone = await repository.survivors(conn, workspace_id, starts)
                starts = {p: s for p, s in starts.items() if p not in gone}
                await self._memberships.evaluate_persons(
                    conn, workspace_id, catalogue, starts, now=now, reason="persons merged", triggers=triggers
                )

        await self._in_transaction(workspaces, apply)

    # ObjectTagsChanged --------------------------------------------------------------------------

    async def apply_object_tags(self, updates: Sequence[ObjectTags]) -> None:
        """One transaction per workspace (a redelivered batch skips what was applied: versions)."""
        now = self._clock.now()
        for workspace_id in sorted({u.workspace_id for u in updates}):
            batch = [u for u in updates if u.workspace_id == workspace_id]
            if not await self._apply_object_tags(workspace_id, batch, now, exclusive=False):
                await self._apply_object_tags(workspace_id, batch, now, exclusive=True)

    async def _apply_object_tags(
        self, workspace_id: str, updates: Sequence[ObjectTags], now: datetime, *, exclusive: bool
    ) -> bool:
        """Apply the updates; False (nothing written) when a segment reads these kinds of tags and
        the workspace lock is only shared. A targeted refresh writes many persons' memberships: the
        live path waits for it; tags no rule reads are written beside the live path."""
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspaces(conn, [workspace_id], exclusive=exclusive)
            catalogue, _ = (await self._catalogues.get(conn, [workspace_id]))[workspace_id]
            read = any(catalogue.reading({f"object_tags:{u.kind}"}) for u in updates)
            if read and not exclusive:
                return False  # rules cannot change while the lock is held: the answer stands
            for update in updates:
                ws, kind, object_id = update.workspace_id, update.kind, update.object_id
                if not await projection.claim_object_version(conn, ws, kind, object_id, update.version):
                    continue
                if not await projection.set_object_tags(conn, ws, kind, object_id, update.tags):
                    continue
                segments = catalogue.reading({f"object_tags:{kind}"})
                if not segments:
                    continue
                persons = await projection.persons_touching(conn, ws, kind, object_id)
                if persons:
                    await self._memberships.refresh_all(
                        conn, ws, catalogue, sorted(segments), now=now, reason="object tags changed", persons=persons
                    )
        return True

    # Workspace time zones -------------------------------------------------------------------------

    async def apply_time_zones(self, updates: Sequence[WorkspaceZone]) -> None:
        """Profile announced new settings: when a workspace's time zone moves, every segment whose
        answer depends on it is refreshed in full and the diff announced (reason "time zone
        refresh", as a rule edit's); one transaction per workspace, the workspace locked
        exclusively. An older settings version or a redelivery changes nothing."""
        now = self._clock.now()
        for workspace_id in sorted({u.workspace_id for u in updates}):
            newest = max((u for u in updates if u.workspace_id == workspace_id), key=lambda u: u.version)
            async with self._pool.acquire() as conn, conn.transaction():
                await repository.lock_workspaces(conn, [workspace_id], exclusive=True)
                before = await self._catalogues.time_zone(conn, workspace_id)
                if not await repository.store_time_zone(conn, workspace_id, newest.time_zone, newest.version):
                    continue
                if newest.time_zone == before:
                    continue
                await repository.bump_generation(conn, workspace_id)
                catalogue = await self._catalogues.load(conn, workspace_id)
                changed = await self._memberships.refresh_all(
                    conn, workspace_id, catalogue, catalogue.calendar(), now=now, reason="time zone refresh"
                )
                log.info(
                    "workspace time zone changed",
                    workspace=workspace_id,
                    time_zone=newest.time_zone,
                    previous=before,
                    segments=len(changed),
                    changes=sum(len(c) for c in changed.values()),
                )

    # Timers ---------------------------------------------------------------------------------------

    @staticmethod
    async def _regroup(
        conn: asyncpg.Connection, workspace_id: str, thresholds: RfmThresholds | None, persons: list[str], now: datetime
    ) -> list[str]:
        """Regroup persons whose RFM timer fell due and set their next one; those whose group moved."""
        moved = await repository.regroup_rfm(conn, workspace_id, thresholds, now, persons) if thresholds else []
        states = await projection.read_states(conn, workspace_id, persons)
        await repository.set_timers(
            conn,
            workspace_id,
            [(RFM_TIMER, p, next_regroup(states[p][0].computed, thresholds, now)) for p in persons if p in states],
        )
        return moved

    async def fire_due_timers(self, limit: int = 500) -> int:
        """Evaluate timers that fell due (up to ``limit`` per workspace); how many fired."""
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            workspaces = await repository.due_workspaces(conn, now)
        fired = 0
        for workspace_id in workspaces:
            async with self._pool.acquire() as conn, conn.transaction():
                await repository.lock_workspaces(conn, [workspace_id])
                catalogue, thresholds = (await self._catalogues.get(conn, [workspace_id]))[workspace_id]
                due = await repository.due_timers(conn, workspace_id, now, limit)
                # Every writer of a person's timer rows holds the person's lock (or the workspace
                # exclusively), so a worker touches timer rows only of persons it has locked: two
                # workers never wait on each other's rows. A busy person's timers fire next round.
                mine = [
                    p
                    for p in dict.fromkeys(row["person_id"] for row in due)
                    if await repository.try_lock_person(conn, workspace_id, p)
                ]
                starts: dict[str, set[str]] = defaultdict(set)
                for segment_id, person_id in await repository.take_due_timers(conn, workspace_id, now, mine):
                    starts[person_id].add(segment_id)
                fired += sum(len(s) for s in starts.values())
                regrouped = sorted(p for p, ss in starts.items() if RFM_TIMER in ss)
                if regrouped:
                    # recency crossed its threshold: the person's RFM group, then who reads it
                    for person_id in await self._regroup(conn, workspace_id, thresholds, regrouped, now):
                        starts[person_id] |= catalogue.reading({"rfm_group"})
                starts = {p: ss - {RFM_TIMER} for p, ss in starts.items()}
                await self._memberships.evaluate_persons(
                    conn, workspace_id, catalogue, starts, now=now, reason="time passed"
                )
        TIMERS_FIRED.inc(fired)
        return fired
