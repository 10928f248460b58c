"""Membership changes inside a caller's transaction: evaluate (in memory or in SQL), write the
memberships, their history, timers, and the SegmentMembershipChanged announcements (outbox).

Used by the live path (consumers, timers) and by the use cases that refresh (rule edits, RFM
recomputes, object tag changes), so that every entry and exit is written the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg
import structlog
from prometheus_client import Counter

from cdp.events.v1 import events_pb2
from cdp_segment import projection, repository
from cdp_segment.config import DEFAULT_TIME_ZONE
from cdp_segment.domain import Catalogue, Definition, MembershipChange, ProfileState, Segment
from cdp_segment.rfm import RfmThresholds
from cdp_segment.rules import sql, syntax
from cdp_segment.rules.data import WorkspaceFacts
from cdp_segment.rules.validate import RuleError
from cdpkit import outbox
from cdpkit.bus import SEGMENT, BusNames
from cdpkit.ids import new_id

log = structlog.get_logger(__name__)

CHANGES = Counter("cdp_segment_membership_changes_total", "Segment entries and exits", ["change", "reason"])
# Outbox and history rows are written in slices of this many (a refresh may change millions).
SLICE = 10_000


class Memberships:
    def __init__(self, names: BusNames) -> None:
        self._subject = names.subject(SEGMENT, "membership")
        # Outbox message ids: unique per process start, then a counter (cheaper than a UUID each).
        prefix = new_id()
        self._ids = (f"{prefix}-{n}" for n in itertools.count())

    async def record(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        changes: Sequence[MembershipChange],
        *,
        now: datetime,
        reason: str,
        triggers: Mapping[str, str] | None = None,
        applied: bool = False,
        timers: Sequence[tuple[str, str, datetime | None]] = (),
    ) -> None:
        """Write changes (unless ``applied`` already), their history and their announcements, and
        set ``timers`` (segment id, person id, due or None): one statement a slice.
        ``triggers``: person id -> the message that caused the change."""
        triggers = triggers or {}
        for start in range(0, max(len(changes), 1), SLICE):  # once at least: the timers
            part = changes[start : start + SLICE]
            trigger_ids = [triggers.get(c.person_id, "") for c in part]
            rows = []
            for change, trigger in zip(part, trigger_ids, strict=True):
                message = events_pb2.SegmentMembershipChanged(
                    workspace_id=workspace_id,
                    segment_id=change.segment_id,
                    person_id=change.person_id,
                    change=events_pb2.SegmentMembershipChanged.CHANGE_ENTERED
                    if change.entered
                    else events_pb2.SegmentMembershipChanged.CHANGE_EXITED,
                    reason=reason,
                    segment_version=change.segment_version,
                    trigger_message_id=trigger,
                )
                message.change_time.FromDatetime(now)
                rows.append((workspace_id, self._subject, next(self._ids), message.SerializeToString()))
            await repository.record_changes(
                conn,
                workspace_id,
                part,
                now=now,
                reason=reason,
                triggers=trigger_ids,
                applied=applied,
                timers=timers if start == 0 else (),
                announce=lambda first, rows=rows: outbox.enqueue_many_sql(rows, first=first),
            )
        for change in changes:
            CHANGES.labels("entered" if change.entered else "exited", reason.split(" ")[0]).inc()

    async def evaluate_persons(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        catalogue: Catalogue,
        starts: Mapping[str, set[str]],
        *,
        now: datetime,
        reason: str,
        triggers: Mapping[str, str] | None = None,
        known: Mapping[str, tuple[ProfileState, str | None]] | None = None,
        timers: Sequence[tuple[str, str, datetime | None]] = (),
    ) -> list[MembershipChange]:
        """Evaluate, in memory, the given segments (and, on a change, their dependants) for each
        person (``starts``: person id -> segment ids); the caller holds the persons' locks.
        ``known``: persons' (state, RFM group) the caller has just written (not read again).
        ``timers``: (segment id, person id, due) the caller sets too, written with the
        evaluation's own (one statement)."""
        timers = list(timers)
        starts = {p: s for p, s in starts.items() if s}
        if not starts or not len(catalogue):
            await repository.set_timers(conn, workspace_id, timers)
            return []
        events, orders = catalogue.needs(set().union(*starts.values()), now)
        persons = await projection.read_persons(
            conn, workspace_id, list(starts), events=events, orders=orders, known=known
        )
        facts = await projection.read_object_tags(conn, workspace_id, *persons.values()) if orders else None
        changes: list[MembershipChange] = []
        for person_id, person in persons.items():
            outcome = catalogue.evaluate(person, facts or WorkspaceFacts(), now, starts[person_id])
            changes += outcome.changes
            timers += [(segment_id, person_id, due) for segment_id, due in outcome.timers.items()]
        await self.record(conn, workspace_id, changes, now=now, reason=reason, triggers=triggers, timers=timers)
        return changes

    async def refresh(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        definition: Definition,
        *,
        now: datetime,
        reason: str,
        time_zone: str,
        persons: Sequence[str] | None = None,
    ) -> list[MembershipChange]:
        """Bring one segment's memberships (of all persons, or of ``persons``) in line with its rule
        with the SQL evaluator, and its timers with the SQL twin of timing.next_change. The caller
        holds the workspace lock exclusively."""
        scope = None if persons is None else list(persons)
        query, params = sql.diff_query(definition.node, workspace_id, now, definition.segment_id, scope, time_zone)
        rows = await conn.fetch(query, *params, timeout=repository.WORKSPACE_SCAN_TIMEOUT)
        changes = [
            MembershipChange(definition.segment_id, definition.version, r["person_id"], r["entered"]) for r in rows
        ]
        await self.record(conn, workspace_id, changes, now=now, reason=reason, applied=True)
        await repository.clear_timers(conn, workspace_id, definition.segment_id, scope)
        edges = sql.edges_query(definition.node, workspace_id, now, scope, time_zone) if definition.windowed else None
        if edges is not None:
            await repository.insert_timers(conn, workspace_id, definition.segment_id, edges)
        return changes

    async def refresh_all(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        catalogue: Catalogue,
        segment_ids: Sequence[str],
        *,
        now: datetime,
        reason: str,
        persons: Sequence[str] | None = None,
        follow: bool = True,
    ) -> dict[str, list[MembershipChange]]:
        """Refresh segments in dependency order; with ``follow``, also the dependants of every
        segment whose membership changed."""
        pending = set(segment_ids)
        changed: dict[str, list[MembershipChange]] = {}
        for definition in catalogue.order:
            if definition.segment_id not in pending:
                continue
            changes = await self.refresh(
                conn, workspace_id, definition, now=now, reason=reason, time_zone=catalogue.time_zone, persons=persons
            )
            changed[definition.segment_id] = changes
            if changes and follow:
                pending |= catalogue.with_dependants([definition.segment_id])
        return changed

    async def end_segment(
        self, conn: asyncpg.Connection, segment: Segment, *, now: datetime, reason: str
    ) -> list[MembershipChange]:
        """Every member leaves (the segment is deleted): exits announced."""
        rows = await repository.drop_segment_memberships(conn, segment.workspace_id, segment.segment_id)
        changes = [MembershipChange(segment.segment_id, segment.version, r["person_id"], False) for r in rows]
        await self.record(conn, segment.workspace_id, changes, now=now, reason=reason, applied=True)
        return changes

    async def drop_persons(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        person_ids: Sequence[str],
        *,
        now: datetime,
        reason: str,
        trigger: str = "",
    ) -> list[MembershipChange]:
        """Every membership of these persons ends (merged away): exits announced, timers dropped."""
        rows = await repository.drop_memberships(conn, workspace_id, person_ids)
        versions = await repository.segment_versions(conn, workspace_id)
        changes = [
            MembershipChange(r["segment_id"], versions.get(r["segment_id"], 0), r["person_id"], False) for r in rows
        ]
        triggers = {c.person_id: trigger for c in changes}
        await self.record(conn, workspace_id, changes, now=now, reason=reason, triggers=triggers, applied=True)
        await repository.delete_person_timers(conn, workspace_id, person_ids)
        return changes


class Catalogues:
    """Parsed rules, time zone and RFM thresholds per workspace, reloaded when the workspace's
    generation moves (every rule change, time zone change and RFM recompute bumps it in the same
    transaction). ``fallback_zone``: the zone of a workspace profile has announced none for
    (CDP_SEGMENT_TIME_ZONE)."""

    def __init__(self, fallback_zone: str = DEFAULT_TIME_ZONE) -> None:
        self.fallback_zone = fallback_zone
        self._cached: dict[str, tuple[int, Catalogue, RfmThresholds | None]] = {}

    async def time_zone(self, conn: asyncpg.Connection, workspace_id: str) -> str:
        """The workspace time zone now (announced by profile, else the fallback)."""
        return await repository.time_zone(conn, workspace_id) or self.fallback_zone

    async def get(
        self, conn: asyncpg.Connection, workspace_ids: Sequence[str]
    ) -> dict[str, tuple[Catalogue, RfmThresholds | None]]:
        generations = await repository.generations(conn, workspace_ids)
        found = {}
        for workspace_id in set(workspace_ids):
            generation = generations.get(workspace_id, 0)
            cached = self._cached.get(workspace_id)
            if cached is None or cached[0] != generation:
                thresholds = await repository.rfm_thresholds(conn, workspace_id)
                cached = (generation, await self.load(conn, workspace_id), thresholds)
                self._cached[workspace_id] = cached
            found[workspace_id] = cached[1:]
        return found

    async def load(self, conn: asyncpg.Connection, workspace_id: str) -> Catalogue:
        """The workspace's catalogue as this transaction sees it (not cached)."""
        definitions = []
        for row in await repository.rules_of(conn, workspace_id):
            try:
                node = syntax.parse(row["rule"], checked=False)
            except RuleError as exc:  # stored rules were validated; never expected
                log.error("stored rule does not parse", segment=row["segment_id"], error=str(exc))
                continue
            definitions.append(Definition.of(row["segment_id"], row["version"], node))
        return Catalogue(definitions, await self.time_zone(conn, workspace_id))
