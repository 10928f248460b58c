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
from prometheus_client import Counter

from cdp_segment import projection, repository
from cdp_segment.domain import EVERYTHING, Catalogue, ObjectTags, PersonsMerged, ProfileChange, ProfileState
from cdp_segment.membership import Catalogues, Memberships
from cdp_segment.rfm import RfmThresholds, rfm_group
from cdp_segment.rules.data import EventFact, OrderFact
from cdpkit.clock import Clock

STALE = Counter("cdp_segment_stale_profile_changes_total", "ProfileChanged announcements older than the projection")
TIMERS_FIRED = Counter("cdp_segment_timers_fired_total", "Durable timers that fell due and were evaluated")


@dataclass
class _Writes:
    """Projection writes of one batch, made in bulk (flushed before facts move, and at the end)."""

    events: list[tuple[str, EventFact]] = field(default_factory=list)
    orders: list[tuple[str, OrderFact, int]] = field(default_factory=list)
    states: dict[str, tuple[ProfileState, int, str | None]] = field(default_factory=dict)
    # Survivors of announcements for merged-away persons: they need a row.
    persons: set[str] = field(default_factory=set)

    async def flush(self, conn: asyncpg.Connection, workspace_id: str, touched: dict[str, set[str]]) -> None:
        for person_id, name in await projection.add_events(conn, workspace_id, self.events):
            touched[person_id].add(f"events:{name}")
        for person_id in await projection.upsert_orders(conn, workspace_id, self.orders):
            touched[person_id].add("orders")
        await projection.write_states(conn, workspace_id, self.states)
        for person_id in await projection.ensure_persons(conn, workspace_id, self.persons):
            touched[person_id].add(EVERYTHING)
        self.events, self.orders, self.states, self.persons = [], [], {}, set()


class LiveService:
    def __init__(self, pool: asyncpg.Pool, memberships: Memberships, catalogues: Catalogues, clock: Clock) -> None:
        self._pool = pool
        self._memberships = memberships
        self._catalogues = catalogues
        self._clock = clock
        self._pii_names: dict[str, set[str]] = {}

    # ProfileChanged -------------------------------------------------------------------------

    async def apply_profile_changes(self, changes: Sequence[ProfileChange]) -> None:
        now = self._clock.now()
        by_workspace: dict[str, list[ProfileChange]] = defaultdict(list)
        for change in changes:
            by_workspace[change.workspace_id].append(change)
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspaces(conn, list(by_workspace))
            catalogues = await self._catalogues.get(conn, list(by_workspace))
            for workspace_id in sorted(by_workspace):
                catalogue, thresholds = catalogues[workspace_id]
                await self._apply_workspace(conn, workspace_id, by_workspace[workspace_id], catalogue, thresholds, now)

    async def _apply_workspace(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        changes: list[ProfileChange],
        catalogue: Catalogue,
        thresholds: RfmThresholds | None,
        now: datetime,
    ) -> None:
        announced = {c.person_id for c in changes}
        # A split announces the person that leaves (an unmerge brings a merged-away id back): it
        # is itself again, not an alias of the survivor any more.
        returning = sorted({c.person_id for c in changes if c.split_from_person_id})
        if returning:
            await repository.forget_merges(conn, workspace_id, returning)
        survivors = await repository.survivors(conn, workspace_id, sorted(announced))
        involved = announced | set(survivors.values())
        for change in changes:
            involved |= set(change.merged_person_ids)
            if change.split_from_person_id:
                involved.add(change.split_from_person_id)
        await repository.lock_persons(conn, workspace_id, sorted(involved))
        states = await projection.read_states(conn, workspace_id, sorted(involved))
        touched: dict[str, set[str]] = defaultdict(set)
        triggers: dict[str, str] = {}
        pending = _Writes()
        for change in changes:
            person_id = survivors.get(change.person_id, change.person_id)
            fields = touched[person_id]
            if change.trigger_message_id:
                triggers[person_id] = change.trigger_message_id
            merged = [m for m in change.merged_person_ids if m != person_id]
            if merged or change.split_from_person_id:
                await pending.flush(conn, workspace_id, touched)  # facts move as written so far
            if merged and await self._absorb(conn, workspace_id, person_id, merged, now, change.trigger_message_id):
                fields.add(EVERYTHING)
                for gone in merged:
                    states.pop(gone, None)
            if change.split_from_person_id and await projection.move_facts(
                conn,
                workspace_id,
                person_id,
                message_ids=change.moved_message_ids,
                order_ids=change.moved_order_ids,
            ):
                fields.add(EVERYTHING)
                touched[change.split_from_person_id].add(EVERYTHING)
            pending.events += [(person_id, e) for e in change.events]
            pending.orders += [(person_id, o, change.version) for o in change.orders]
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
            state = change.snapshot or before.with_values(change.values)
            group = rfm_group(state.computed, thresholds, now)
            pending.states[person_id] = (state, change.version, group)
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
        await pending.flush(conn, workspace_id, touched)
        starts = {person_id: catalogue.reading(fields) for person_id, fields in touched.items()}
        await self._memberships.evaluate_persons(
            conn,
            workspace_id,
            catalogue,
            starts,
            now=now,
            reason="profile change",
            triggers=triggers,
            known={p: (state, group) for p, (state, _, group) in states.items()},
        )

    async def _remember_pii_names(self, conn: asyncpg.Connection, workspace_id: str, names: set[str]) -> None:
        known = self._pii_names.setdefault(workspace_id, set())
        if names - known:
            await projection.remember_pii_names(conn, workspace_id, names - known)
            known |= names

    async def _absorb(
        self, conn: asyncpg.Connection, workspace_id: str, survivor: str, merged: list[str], now: datetime, trigger: str
    ) -> bool:
        """Merged-away persons leave every segment; their facts move to the survivor. True when
        anything moved or ended (the first time; a replay finds nothing to do)."""
        await repository.record_merge(conn, workspace_id, survivor, merged, now)
        moved = await projection.move_facts(conn, workspace_id, survivor, from_persons=merged)
        dropped = await self._memberships.drop_persons(
            conn, workspace_id, merged, now=now, reason="persons merged", trigger=trigger
        )
        deleted = await projection.delete_persons(conn, workspace_id, merged)
        created = await projection.ensure_persons(conn, workspace_id, [survivor])
        return bool(moved or dropped or deleted or created)

    # PersonsMerged ------------------------------------------------------------------------------

    async def apply_merges(self, merges: Sequence[PersonsMerged]) -> None:
        now = self._clock.now()
        workspaces = sorted({m.workspace_id for m in merges})
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspaces(conn, workspaces)
            catalogues = await self._catalogues.get(conn, workspaces)
            for workspace_id in workspaces:
                catalogue, _ = catalogues[workspace_id]
                mine = [m for m in merges if m.workspace_id == workspace_id]
                involved = {m.survivor_person_id for m in mine} | {p for m in mine for p in m.merged_person_ids}
                await repository.lock_persons(conn, workspace_id, sorted(involved))
                starts: dict[str, set[str]] = {}
                triggers: dict[str, str] = {}
                for merge in mine:
                    survivor = merge.survivor_person_id
                    merged = [p for p in merge.merged_person_ids if p != survivor]
                    if merged and await self._absorb(
                        conn, workspace_id, survivor, merged, now, merge.trigger_message_id
                    ):
                        starts[survivor] = catalogue.reading({EVERYTHING})
                        triggers[survivor] = merge.trigger_message_id
                await self._memberships.evaluate_persons(
                    conn, workspace_id, catalogue, starts, now=now, reason="persons merged", triggers=triggers
                )

    # ObjectTagsChanged --------------------------------------------------------------------------

    async def apply_object_tags(self, updates: Sequence[ObjectTags]) -> None:
        now = self._clock.now()
        workspaces = sorted({u.workspace_id for u in updates})
        async with self._pool.acquire() as conn, conn.transaction():
            # A targeted refresh writes many persons' memberships: the live path waits for it.
            await repository.lock_workspaces(conn, workspaces, exclusive=True)
            catalogues = await self._catalogues.get(conn, workspaces)
            for update in updates:
                catalogue, _ = catalogues[update.workspace_id]
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

    # Timers ---------------------------------------------------------------------------------------

    async def fire_due_timers(self, limit: int = 500) -> int:
        """Evaluate timers that fell due (up to ``limit`` per workspace); how many fired."""
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            workspaces = await repository.due_workspaces(conn, now)
        fired = 0
        for workspace_id in workspaces:
            async with self._pool.acquire() as conn, conn.transaction():
                await repository.lock_workspaces(conn, [workspace_id])
                catalogue, _ = (await self._catalogues.get(conn, [workspace_id]))[workspace_id]
                due = await repository.claim_due_timers(conn, workspace_id, now, limit)
                starts: dict[str, set[str]] = defaultdict(set)
                busy: set[str] = set()
                for row in due:
                    person_id = row["person_id"]
                    if person_id in busy:
                        continue
                    # Never wait for a person while holding timer rows: the live path may hold the
                    # person and wait for those rows. A busy person's timers fire next round.
                    if person_id not in starts and not await repository.try_lock_person(conn, workspace_id, person_id):
                        busy.add(person_id)
                        continue
                    starts[person_id].add(row["segment_id"])
                await repository.delete_timers(conn, workspace_id, [(s, p) for p, ss in starts.items() for s in ss])
                fired += sum(len(s) for s in starts.values())
                await self._memberships.evaluate_persons(
                    conn, workspace_id, catalogue, starts, now=now, reason="time passed"
                )
        TIMERS_FIRED.inc(fired)
        return fired
