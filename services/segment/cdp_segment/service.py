"""Segment use cases, one transaction each: definitions (versioned, refreshed in full on every
rule change), reads of memberships, estimates and previews, exports, RFM and built-ins."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from cdp_analytics import crosssell
from cdp_analytics.crosssell import AssociationRule, CoPurchaseCounts

from cdp_segment import projection, repository
from cdp_segment.domain import (
    DEFAULT_PII_TRAITS,
    UPDATABLE,
    Catalogue,
    Definition,
    Segment,
    check_references,
    cross_sell_rule,
    cross_sell_segment_id,
    dependants_of,
)
from cdp_segment.membership import Catalogues, Memberships
from cdp_segment.rfm import GROUP_IDS, GROUPS, RfmSettings, RfmThresholds
from cdp_segment.rules import sql
from cdp_segment.rules.ast import EventCond, FieldCond, Node, Op, referenced_segments
from cdp_segment.rules.ast import walk as walk_rule
from cdp_segment.rules.validate import MAX_DAYS
from cdpkit.clock import Clock
from cdpkit.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from cdpkit.fieldmask import paths_to_update
from cdpkit.ids import uuid7
from cdpkit.names import RESOURCE_ID, UUID
from cdpkit.pagination import decode_token, encode_token, page_size

MAX_PREVIEW = 100
# Longer than a recompute of a large workspace takes; a crashed holder's lease lapses after it.
RFM_LEASE = timedelta(minutes=15)
# RFM slices regrouped at once (one connection each)
RFM_WORKERS = 2
MAX_EXPORT_PAGE = 10_000
EXPORT_CHUNK_ROWS = 5_000
EXPORT_COLUMNS = ("lifecycle_stage", "tier", "rfm_group", "points_balance")
LIFECYCLE_STAGES = ("prospect", "new", "active", "loyal", "dormant", "churned")
LIFECYCLE_NAMES = {
    "prospect": "Prospects",
    "new": "New customers (first purchase)",
    "active": "Active customers",
    "loyal": "Loyal customers",
    "dormant": "Dormant customers",
    "churned": "Churned customers",
}


def _new_etag() -> str:
    return uuid7().hex[-16:]


def _position(token: str, scope: str, key: str) -> Any:
    """The keyset position of a page token of ours. The fingerprint ties a token to its request,
    not its contents: a position of the wrong type is refused like any other bad token."""
    position = decode_token(token, scope=scope)
    if position is None:
        return None
    value = position.get(key)
    if _POSITION_KINDS[key](value):
        return value
    raise InvalidArgument("page_token", "is not a token this API issued")


_POSITION_KINDS = {
    # a segment id (segments, memberships) or a person id (members, export)
    "after": lambda v: isinstance(v, str) and "\x00" not in v,
    # a version or a history row id
    "before": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63,
}


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection);
# numbers (-5, +1.5e3) are safe and stay numbers.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?([eE][-+]?\d+)?")


def _cell(value: object) -> object:
    """A CSV cell: a value that a spreadsheet would run as a formula is prefixed with '."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _person(person_id: str, field: str = "person_id") -> str:
    if not UUID.match(person_id):
        raise InvalidArgument(field, "must be a person id (a UUID)")
    return person_id


@dataclass(frozen=True)
class CoPurchase:
    """Which co-purchases count (cdp_analytics.crosssell thresholds)."""

    min_together: int = 2
    min_confidence: float = 0.0
    min_lift: float = 1.0
    window_days: int = 0

    def validated(self) -> CoPurchase:
        if not 1 <= self.min_together <= 1_000_000:
            raise InvalidArgument("filter.min_together", "must be between 1 and 1,000,000")
        if not 0 <= self.min_confidence <= 1:
            raise InvalidArgument("filter.min_confidence", "must be between 0 and 1")
        if not 0 <= self.min_lift <= 1_000_000:
            raise InvalidArgument("filter.min_lift", "must not be negative")
        if not 0 <= self.window_days <= MAX_DAYS:
            raise InvalidArgument("filter.window_days", f"must be between 0 and {MAX_DAYS}")
        return self


@dataclass(frozen=True)
class Member:
    person_id: str
    since: datetime


@dataclass(frozen=True)
class Check:
    member: bool
    since: datetime | None
    version: int
    person_id: str


@dataclass(frozen=True)
class PreviewRow:
    person_id: str
    lifecycle_stage: str | None
    tier: str | None
    rfm_group: str | None
    tags: list[str]
    points_balance: int | None
    traits: dict
    computed: dict


@dataclass(frozen=True)
class HistoryEntry:
    person_id: str
    entered: bool
    reason: str
    segment_version: int
    change_time: datetime
    trigger_message_id: str


@dataclass(frozen=True)
class RfmReport:
    settings: RfmSettings
    thresholds: RfmThresholds | None
    counts: dict[str, int]
    persons: int


class SegmentService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        memberships: Memberships,
        catalogues: Catalogues,
        clock: Clock,
        *,
        co_purchase_interval: float = 3600.0,
    ) -> None:
        self._pool = pool
        self._memberships = memberships
        self._catalogues = catalogues
        self._clock = clock
        self._replica = uuid7().hex  # holder of this replica's RFM leases
        # Seconds the stored co-purchase counts stay current; 0: every request mines the orders.
        self._co_purchase_interval = co_purchase_interval

    # Definitions --------------------------------------------------------------------------------

    async def _check_rule(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        node: Node,
        others: Iterable[Segment],
        field: str,
        own: str = "",
    ) -> Node:
        """References exist and make no cycle through ``own`` (the segment being saved, if any);
        no personal data asked about."""
        check_references(own, node, {s.segment_id: s.node for s in others}, field)
        await self._check_pii(conn, workspace_id, node, field)
        return node

    async def _check_pii(self, conn: asyncpg.Connection, workspace_id: str, node: Node, field: str) -> None:
        pii = DEFAULT_PII_TRAITS | await projection.pii_names(conn, workspace_id)
        for leaf in walk_rule(node):
            if (
                isinstance(leaf, FieldCond)
                and leaf.field.startswith("traits.")
                and leaf.op is not Op.EXISTS
                and leaf.field[7:] in pii
            ):
                raise InvalidArgument(
                    field, f"{leaf.field} is personal data held by the profile service: only 'exists' can be asked"
                )
            if isinstance(leaf, EventCond):
                for prop in (f.prop for f in leaf.filters if f.prop in pii):
                    # profile removes such properties from the events it announces: never true
                    raise InvalidArgument(
                        field, f"event property {prop!r} is named like personal data: events carry no such property"
                    )

    async def _catalogue(self, conn: asyncpg.Connection, workspace_id: str) -> Catalogue:
        # Not Catalogues.get: this transaction's rules are not committed yet, and that cache is
        # keyed by a generation number another transaction could reach with other rules.
        segments = await repository.all_segments(conn, workspace_id)
        zone = await self._catalogues.time_zone(conn, workspace_id)
        return Catalogue((Definition.of(s.segment_id, s.version, s.node) for s in segments), zone)

    async def time_zone(self, workspace_id: str) -> ZoneInfo:
        """The workspace's calendar: where dates written without an offset in a rule are."""
        async with self._pool.acquire() as conn:
            return ZoneInfo(await self._catalogues.time_zone(conn, workspace_id))

    async def create(self, segment: Segment, rule_field: str = "segment.rule") -> Segment:
        """``rule_field``: where the rule came from (segment.rule or segment.condition), for errors."""
        if segment.segment_id and not RESOURCE_ID.match(segment.segment_id):
            raise InvalidArgument("segment_id", "must match [a-z][a-z0-9-]{0,62}")
        segment = replace(
            segment, segment_id=segment.segment_id or f"seg-{uuid7().hex[-20:]}", etag=_new_etag()
        ).validated(rule_field, await self.time_zone(segment.workspace_id))
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspaces(conn, [segment.workspace_id], exclusive=True)
            others = await repository.all_segments(conn, segment.workspace_id)
            if any(s.segment_id == segment.segment_id for s in others):
                raise AlreadyExists(f"segment {segment.segment_id} already exists")
            node = await self._check_rule(
                conn, segment.workspace_id, segment.node, others, rule_field, segment.segment_id
            )
            stored = await repository.insert(conn, segment, now)
            if stored is None:  # pragma: no cover - the exclusive lock rules this out
                raise AlreadyExists(f"segment {segment.segment_id} already exists")
            await repository.add_version(conn, stored, now)
            await repository.bump_generation(conn, stored.workspace_id)
            definition = Definition.of(stored.segment_id, stored.version, node)
            zone = await self._catalogues.time_zone(conn, stored.workspace_id)
            await self._memberships.refresh(
                conn, stored.workspace_id, definition, now=now, reason="rule v1 refresh", time_zone=zone
            )
        return stored

    async def get(self, workspace_id: str, segment_id: str) -> tuple[Segment, int]:
        """The segment and its number of members."""
        async with self._pool.acquire() as conn:
            segment = await repository.get(conn, workspace_id, segment_id)
            if segment is None:
                raise NotFound(f"segment {segment_id} not found")
            return segment, await repository.count_members(conn, workspace_id, segment_id)

    async def update(self, changes: Segment, mask: Iterable[str], rule_field: str = "segment.rule") -> Segment:
        """Change the fields in ``mask`` ("*": all; none: nothing changes)."""
        paths = paths_to_update(mask, UPDATABLE)
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspaces(conn, [changes.workspace_id], exclusive=True)
            current = await repository.get(conn, changes.workspace_id, changes.segment_id, for_update=True)
            if current is None:
                raise NotFound(f"segment {changes.segment_id} not found")
            if changes.etag and changes.etag != current.etag:
                raise Aborted("segment was changed by someone else: read it again")
            if not paths:
                return current
            zone = ZoneInfo(await self._catalogues.time_zone(conn, changes.workspace_id))
            updated = current.updated_with(changes, paths, rule_field, zone)
            rule_changed = updated.rule != current.rule
            if rule_changed:
                others = [
                    s
                    for s in await repository.all_segments(conn, current.workspace_id)
                    if s.segment_id != current.segment_id
                ]
                await self._check_rule(conn, updated.workspace_id, updated.node, others, rule_field, updated.segment_id)
                updated = replace(updated, version=current.version + 1)
            stored = await repository.update(conn, replace(updated, etag=_new_etag()), now)
            if rule_changed:
                await repository.add_version(conn, stored, now)
                await repository.bump_generation(conn, stored.workspace_id)
                await self._refresh_with_dependants(conn, stored, now)
            return stored

    async def _refresh_with_dependants(self, conn: asyncpg.Connection, segment: Segment, now: datetime) -> None:
        catalogue = await self._catalogue(conn, segment.workspace_id)
        definition = catalogue.by_id[segment.segment_id]
        reason = f"rule v{segment.version} refresh"
        changed = await self._memberships.refresh(
            conn, segment.workspace_id, definition, now=now, reason=reason, time_zone=catalogue.time_zone
        )
        if changed:
            references = {d.segment_id: d.references for d in catalogue.by_id.values()}
            await self._memberships.refresh_all(
                conn,
                segment.workspace_id,
                catalogue,
                dependants_of(references, [segment.segment_id]),
                now=now,
                reason=f"segment {segment.segment_id} v{segment.version} refresh",
                follow=False,
            )

    async def delete(self, workspace_id: str, segment_id: str, etag: str) -> None:
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspaces(conn, [workspace_id], exclusive=True)
            current = await repository.get(conn, workspace_id, segment_id, for_update=True)
            if current is None:
                raise NotFound(f"segment {segment_id} not found")
            if etag and etag != current.etag:
                raise Aborted("segment was changed by someone else: read it again")
            users = sorted(
                s.segment_id
                for s in await repository.all_segments(conn, workspace_id)
                if segment_id in referenced_segments(s.node) and s.segment_id != segment_id
            )
            if users:
                raise FailedPrecondition(f"segment {segment_id} is used by {', '.join(users)}: change them first")
            await self._memberships.end_segment(conn, current, now=now, reason="segment deleted")
            await repository.delete(conn, workspace_id, segment_id)
            await repository.bump_generation(conn, workspace_id)

    async def list(self, workspace_id: str, requested_size: int, token: str) -> tuple[list[Segment], str]:
        size = page_size(requested_size)
        after = _position(token, workspace_id, "after")
        async with self._pool.acquire() as conn:
            rows = await repository.list_page(conn, workspace_id, after=after or "", limit=size + 1)
        if len(rows) <= size:
            return rows, ""
        rows = rows[:size]
        return rows, encode_token({"after": rows[-1].segment_id}, scope=workspace_id)

    async def list_versions(
        self, workspace_id: str, segment_id: str, requested_size: int, token: str
    ) -> tuple[list[tuple[int, str, datetime]], str]:
        size = page_size(requested_size)
        scope = f"{workspace_id}/{segment_id}/versions"
        before = _position(token, scope, "before")
        async with self._pool.acquire() as conn:
            if await repository.get(conn, workspace_id, segment_id) is None:
                raise NotFound(f"segment {segment_id} not found")
            rows = await repository.list_versions(
                conn, workspace_id, segment_id, before=min(before or 2**31 - 1, 2**31 - 1), limit=size + 1
            )
        versions = [(r["version"], r["rule"], r["created_at"]) for r in rows[:size]]
        next_token = encode_token({"before": versions[-1][0]}, scope=scope) if len(rows) > size else ""
        return versions, next_token

    # Rules without saving -----------------------------------------------------------------------

    async def estimate(self, workspace_id: str, node: Node, field: str) -> int:
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            await self._check_rule(conn, workspace_id, node, await repository.all_segments(conn, workspace_id), field)
            zone = await self._catalogues.time_zone(conn, workspace_id)
            query, params = sql.count_query(node, workspace_id, now, zone)
            return await conn.fetchval(query, *params)

    async def preview(self, workspace_id: str, node: Node, field: str, size: int) -> tuple[int, list[PreviewRow]]:
        """How many match now, and a random sample of them (at most MAX_PREVIEW)."""
        if size < 0:
            raise InvalidArgument("sample_size", "must not be negative")
        size = min(size or 10, MAX_PREVIEW)
        now = self._clock.now()
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            await self._check_rule(conn, workspace_id, node, await repository.all_segments(conn, workspace_id), field)
            zone = await self._catalogues.time_zone(conn, workspace_id)
            query, params = sql.members_query(node, workspace_id, now, zone=zone)
            rows = await conn.fetch(
                f"""WITH matched AS ({query}) SELECT p.*, (SELECT count(*) FROM matched) AS total
                    FROM persons p JOIN (SELECT person_id FROM matched ORDER BY random() LIMIT {size}) AS s
                      ON p.workspace_id = $1 AND p.person_id = s.person_id""",
                *params,
            )
            total = rows[0]["total"] if rows else 0
        return total, [
            PreviewRow(
                str(r["person_id"]),
                r["lifecycle_stage"],
                r["tier"],
                r["rfm_group"],
                list(r["tags"]),
                r["points_balance"],
                r["traits"],
                r["computed"],
            )
            for r in sorted(rows, key=lambda r: str(r["person_id"]))
        ]

    # Membership reads -------------------------------------------------------------------------

    async def _segment(self, conn: asyncpg.Connection, workspace_id: str, segment_id: str) -> Segment:
        segment = await repository.get(conn, workspace_id, segment_id)
        if segment is None:
            raise NotFound(f"segment {segment_id} not found")
        return segment

    async def list_members(
        self, workspace_id: str, segment_id: str, requested_size: int, token: str
    ) -> tuple[list[Member], str, int]:
        size = page_size(requested_size)
        scope = f"{workspace_id}/{segment_id}/members"
        after = _position(token, scope, "after")
        if after is not None:
            _person(after, "page_token")
        async with self._pool.acquire() as conn:
            segment = await self._segment(conn, workspace_id, segment_id)
            rows = await repository.members_page(conn, workspace_id, segment_id, after=after, limit=size + 1)
        members = [Member(str(r["person_id"]), r["since"]) for r in rows[:size]]
        next_token = encode_token({"after": members[-1].person_id}, scope=scope) if len(rows) > size else ""
        return members, next_token, segment.version

    async def check(self, workspace_id: str, segment_id: str, person_id: str) -> Check:
        _person(person_id)
        async with self._pool.acquire() as conn:
            segment = await self._segment(conn, workspace_id, segment_id)
            person_id = (await repository.survivors(conn, workspace_id, [person_id])).get(person_id, person_id)
            row = await repository.membership(conn, workspace_id, segment_id, person_id)
        return Check(row is not None, row["since"] if row else None, segment.version, person_id)

    async def person_segments(
        self, workspace_id: str, person_id: str, requested_size: int = 0, token: str = ""
    ) -> tuple[str, list[tuple[str, datetime]], str]:
        """The person (a merged-away id answers with its survivor), a page of its segments (by
        segment id) and the next page's token."""
        _person(person_id)
        person_id, rows, next_token = await self._memberships_page(
            workspace_id, person_id, "segments", requested_size, token
        )
        return person_id, [(segment_id, since) for segment_id, _, since in rows], next_token

    async def person_memberships(
        self, workspace_id: str, person_id: str, requested_size: int, token: str
    ) -> tuple[list[tuple[str, str, datetime]], str]:
        """(segment id, display name, since) of the person's memberships, by segment id."""
        _person(person_id, "parent")
        _, rows, next_token = await self._memberships_page(
            workspace_id, person_id, "memberships", requested_size, token
        )
        return rows, next_token

    async def _memberships_page(
        self, workspace_id: str, person_id: str, kind: str, requested_size: int, token: str
    ) -> tuple[str, list[tuple[str, str, datetime]], str]:
        size = page_size(requested_size)
        scope = f"{workspace_id}/{person_id}/{kind}"
        after = _position(token, scope, "after")
        async with self._pool.acquire() as conn:
            person_id = (await repository.survivors(conn, workspace_id, [person_id])).get(person_id, person_id)
            rows = await repository.memberships_page(conn, workspace_id, person_id, after=after or "", limit=size + 1)
        found = [(r["segment_id"], r["display_name"], r["since"]) for r in rows[:size]]
        next_token = encode_token({"after": found[-1][0]}, scope=scope) if len(rows) > size else ""
        return person_id, found, next_token

    async def history(
        self, workspace_id: str, segment_id: str, person_id: str, requested_size: int, token: str
    ) -> tuple[list[HistoryEntry], str]:
        if person_id:
            _person(person_id)
        size = page_size(requested_size)
        scope = f"{workspace_id}/{segment_id}/history/{person_id}"
        before = _position(token, scope, "before")
        async with self._pool.acquire() as conn:
            await self._segment(conn, workspace_id, segment_id)
            persons = None
            if person_id:  # a merged-away id: its own history and its survivor's
                persons = sorted(
                    {person_id, (await repository.survivors(conn, workspace_id, [person_id])).get(person_id, person_id)}
                )
            rows = await repository.history_page(
                conn, workspace_id, segment_id, person_ids=persons, before=before, limit=size + 1
            )
        entries = [
            HistoryEntry(
                str(r["person_id"]),
                r["entered"],
                r["reason"],
                r["segment_version"],
                r["change_time"],
                r["trigger_message_id"],
            )
            for r in rows[:size]
        ]
        next_token = encode_token({"before": rows[size - 1]["id"]}, scope=scope) if len(rows) > size else ""
        return entries, next_token

    # Export ------------------------------------------------------------------------------------

    @staticmethod
    def _export_columns(columns: Iterable[str]) -> list[str]:
        columns = list(columns)
        for column in columns:
            if column not in EXPORT_COLUMNS and not (
                column.startswith(("traits.", "computed.")) and len(column.split(".", 1)[1]) > 0
            ):
                raise InvalidArgument(
                    "columns", f"unknown column {column!r}: use {', '.join(EXPORT_COLUMNS)}, traits.<k>, computed.<k>"
                )
        if len(columns) > 50 or len(set(columns)) != len(columns):
            raise InvalidArgument("columns", "at most 50 distinct columns")
        return columns

    @staticmethod
    def _export_select(columns: list[str]) -> tuple[str, list[str]]:
        """SELECT list over memberships m LEFT JOIN persons p, and its parameters (from $5)."""
        parts, params = ["m.person_id::text", "m.since"], []
        for column in columns:
            if column in EXPORT_COLUMNS:
                parts.append(f"p.{column}::text")
            else:
                source, key = column.split(".", 1)
                params.append(key)
                parts.append(f"p.{source} ->> ${4 + len(params)}")
        return ", ".join(parts), params

    @staticmethod
    def _csv(rows: Iterable[Iterable[object]]) -> str:
        buffer = io.StringIO()
        # RFC 4180 line ends: a CR or LF inside a value is then always quoted (with "\n" alone, a
        # bare CR went out unquoted and split the row).
        writer = csv.writer(buffer, lineterminator="\r\n")
        for row in rows:
            writer.writerow([_cell(v) for v in row])
        return buffer.getvalue()

    async def _export_rows(
        self,
        conn: asyncpg.Connection,
        workspace_id: str,
        segment_id: str,
        columns: list[str],
        after: str | None,
        limit: int,
    ) -> list[asyncpg.Record]:
        select, params = self._export_select(columns)
        return await conn.fetch(
            f"""SELECT {select} FROM memberships m
                LEFT JOIN persons p ON p.workspace_id = m.workspace_id AND p.person_id = m.person_id
                WHERE m.workspace_id = $1 AND m.segment_id = $2 AND ($3::uuid IS NULL OR m.person_id > $3::uuid)
                ORDER BY m.person_id LIMIT $4""",
            workspace_id,
            segment_id,
            after,
            limit,
            *params,
        )

    async def export_page(
        self, workspace_id: str, segment_id: str, columns: Iterable[str], requested_size: int, token: str
    ) -> tuple[str, str, int, int]:
        """One page of the member list as CSV (the first page starts with the header row):
        (csv, next token, rows, segment version)."""
        columns = self._export_columns(columns)
        size = page_size(requested_size, default=MAX_EXPORT_PAGE, maximum=MAX_EXPORT_PAGE)
        scope = f"{workspace_id}/{segment_id}/export/{','.join(columns)}"
        after = _position(token, scope, "after")
        if after is not None:
            _person(after, "page_token")
        async with self._pool.acquire() as conn:
            segment = await self._segment(conn, workspace_id, segment_id)
            rows = await self._export_rows(conn, workspace_id, segment_id, columns, after, size + 1)
        body = [tuple(r.values()) for r in rows[:size]]
        text = self._csv(([["person_id", "enter_time", *columns]] if not token else []) + body)
        next_token = encode_token({"after": body[-1][0]}, scope=scope) if len(rows) > size else ""
        return text, next_token, len(body), segment.version

    async def export_stream(
        self, workspace_id: str, segment_id: str, columns: Iterable[str]
    ) -> AsyncIterator[tuple[str, int]]:
        """The whole member list as CSV chunks (header first), from one consistent snapshot; the
        segment version comes with the first chunk."""
        columns = self._export_columns(columns)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            segment = await self._segment(conn, workspace_id, segment_id)
            yield self._csv([["person_id", "enter_time", *columns]]), segment.version
            after = None
            while True:
                rows = await self._export_rows(conn, workspace_id, segment_id, columns, after, EXPORT_CHUNK_ROWS)
                if not rows:
                    return
                yield self._csv(tuple(r.values()) for r in rows), segment.version
                after = rows[-1][0]

    # RFM ---------------------------------------------------------------------------------------

    async def rfm_report(self, workspace_id: str) -> RfmReport:
        async with self._pool.acquire() as conn:
            settings = await repository.rfm_settings(conn, workspace_id)
            thresholds = await repository.rfm_thresholds(conn, workspace_id)
            counts = await repository.rfm_counts(conn, workspace_id)
        return RfmReport(
            settings,
            thresholds,
            {group: counts.get(group, 0) for group in GROUPS.values()},
            sum(counts.values()),
        )

    async def update_rfm_settings(self, workspace_id: str, settings: RfmSettings) -> RfmReport:
        settings = settings.validated()
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.save_rfm_settings(conn, workspace_id, settings, self._clock.now())
        return await self.recompute_rfm(workspace_id)

    async def recompute_rfm(self, workspace_id: str) -> RfmReport:
        """New thresholds from the workspace's customers now; every person regrouped; segments that
        read rfm_group refreshed for the persons whose group moved.

        The threshold scan runs without locks. The thresholds are stored under the workspace lock
        held exclusively for that one short transaction: live batches in flight (grouping under
        the old thresholds) finish first, every later one groups (and sets recency timers) under
        the new. Only then are the persons whose stored group or recency timer differs looked for
        (so none changed in between is missed), and regrouped, re-timed and refreshed a slice at
        a time, each slice under its persons' locks only, so the live path is never held up for
        the whole workspace. A crash between slices leaves the rest for the next recompute.
        """
        now = self._clock.now()
        async with self._pool.acquire() as conn:
            settings = await repository.rfm_settings(conn, workspace_id)
            thresholds = await repository.compute_rfm_thresholds(conn, workspace_id, settings, now)
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspaces(conn, [workspace_id], exclusive=True)
            await repository.save_rfm_thresholds(conn, workspace_id, thresholds)
            await repository.bump_generation(conn, workspace_id)
        async with self._pool.acquire() as conn:
            # whose group or recency timer is not yet what the new thresholds make it
            candidates = sorted(await repository.rfm_moves(conn, workspace_id, thresholds, now))
        slices = iter(range(0, len(candidates), repository.RFM_SLICE))

        async def work_off() -> None:
            for start in slices:
                await self._regroup_slice(
                    workspace_id, thresholds, now, candidates[start : start + repository.RFM_SLICE]
                )

        # Slices hold disjoint persons (each its own, taken in key order), so they run side by
        # side: the writes are PostgreSQL's work, and a slice a core halves the wall time.
        async with asyncio.TaskGroup() as group:
            for _ in range(RFM_WORKERS):
                group.create_task(work_off())
        return await self.rfm_report(workspace_id)

    async def _regroup_slice(
        self, workspace_id: str, thresholds: RfmThresholds, now: datetime, persons: list[str]
    ) -> None:
        """Regroup and re-time these persons under their locks; refresh the segments that read
        rfm_group for those whose group moved."""
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.lock_workspaces(conn, [workspace_id])
            await repository.lock_persons(conn, workspace_id, persons)
            moved = await repository.regroup_and_time_rfm(conn, workspace_id, thresholds, now, persons)
            if not moved:
                return
            catalogue, _ = (await self._catalogues.get(conn, [workspace_id]))[workspace_id]
            readers = catalogue.reading({"rfm_group"})
            if readers:
                await self._memberships.refresh_all(
                    conn, workspace_id, catalogue, sorted(readers), now=now, reason="rfm recompute", persons=moved
                )

    async def recompute_stale_rfm(self, max_age_seconds: float) -> int:
        """Recompute RFM for every workspace whose thresholds are older than ``max_age_seconds``
        and whose lease this replica gets (every replica runs this); how many it recomputed."""
        done = 0
        async with self._pool.acquire() as conn:
            workspaces = await repository.workspaces_with_persons(conn)
        for workspace_id in workspaces:
            now = self._clock.now()
            async with self._pool.acquire() as conn:
                if not await self._rfm_stale(conn, workspace_id, now, max_age_seconds):
                    continue
                if not await repository.claim_rfm_lease(conn, workspace_id, self._replica, now, now + RFM_LEASE):
                    continue  # another replica is on it
                # it may have finished just before we claimed
                stale = await self._rfm_stale(conn, workspace_id, now, max_age_seconds)
            try:
                if stale:
                    await self.recompute_rfm(workspace_id)
                    done += 1
            finally:
                async with self._pool.acquire() as conn:
                    await repository.release_rfm_lease(conn, workspace_id, self._replica)
        return done

    @staticmethod
    async def _rfm_stale(conn: asyncpg.Connection, workspace_id: str, now: datetime, max_age_seconds: float) -> bool:
        thresholds = await repository.rfm_thresholds(conn, workspace_id)
        return thresholds is None or (now - thresholds.computed_at).total_seconds() >= max_age_seconds

    # Built-ins ------------------------------------------------------------------------------

    async def companions(
        self, workspace_id: str, sku: str, co: CoPurchase, limit: int
    ) -> tuple[list[AssociationRule], int, int, datetime]:
        """Association rules sku -> companion over the completed orders (cdp_analytics.crosssell):
        (rules, baskets, baskets holding the sku, when the counts were made)."""
        if not sku.strip():
            raise InvalidArgument("sku", "is required")
        co = co.validated()
        counts, computed = await self._co_purchase_counts(workspace_id, sku, co.window_days)
        found = crosssell.companions(
            counts,
            sku,
            limit=limit,
            min_together=co.min_together,
            min_confidence=co.min_confidence,
            min_lift=co.min_lift,
        )
        return found, counts.baskets, counts.products.get(sku, 0), computed

    async def _co_purchase_counts(
        self, workspace_id: str, sku: str, window_days: int
    ) -> tuple[CoPurchaseCounts, datetime]:
        """The counts around ``sku``: the stored ones (computed now when there are none yet),
        or, for a window of days or with no schedule, mined now from every order."""
        if window_days or not self._co_purchase_interval:
            since = self._clock.now() - timedelta(days=window_days) if window_days else None
            counts = CoPurchaseCounts()
            async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                async for basket in repository.baskets(conn, workspace_id, since):
                    counts.add(basket)
            return counts, self._clock.now()
        async with self._pool.acquire() as conn:
            run = await repository.co_purchase_run(conn, workspace_id)
        if run is None:
            await self.refresh_co_purchases(workspace_id)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            baskets, computed = await repository.co_purchase_run(conn, workspace_id)
            rows = await repository.co_purchases_of(conn, workspace_id, sku)
        counts = CoPurchaseCounts(baskets=baskets)
        for companion, together, alone in rows:
            if companion:
                counts.pairs[tuple(sorted((sku, companion)))] = together
                counts.products[companion] = alone
            else:
                counts.products[sku] = together
        return counts, computed

    async def refresh_co_purchases(self, workspace_id: str) -> int:
        """Recount the workspace's co-purchases now; returns the baskets counted."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await repository.refresh_co_purchases(
                conn, workspace_id, self._clock.now(), crosssell.MAX_BASKET_PRODUCTS
            )

    async def refresh_stale_co_purchases(self) -> int:
        """Recount every workspace whose counts are older than the interval; returns how many."""
        before = self._clock.now() - timedelta(seconds=self._co_purchase_interval)
        async with self._pool.acquire() as conn:
            stale = await repository.stale_co_purchases(conn, before)
        for workspace_id in stale:
            await self.refresh_co_purchases(workspace_id)
        return len(stale)

    async def build_cross_sell(
        self, workspace_id: str, segment_id: str, sku: str, co: CoPurchase, limit: int, bought_within_days: int
    ) -> tuple[Segment, list[AssociationRule]]:
        """Bought ``sku`` and none of its usual companions: created, or re-mined when it exists."""
        if not 0 <= bought_within_days <= MAX_DAYS:
            raise InvalidArgument("bought_within_days", f"must be between 0 and {MAX_DAYS}")
        segment_id = segment_id or cross_sell_segment_id(sku)
        if not RESOURCE_ID.match(segment_id):
            raise InvalidArgument("segment_id", "must match [a-z][a-z0-9-]{0,62}")
        rules, _, with_product, _ = await self.companions(workspace_id, sku, co, limit)
        if not rules:
            raise FailedPrecondition(
                f"no product is bought with {sku} often enough ({with_product} orders hold it): nothing to cross-sell"
            )
        rule = cross_sell_rule(sku, [r.consequent for r in rules], bought_within_days)
        description = f"Bought {sku}, none of its usual companions: " + ", ".join(
            f"{r.consequent} (lift {r.lift:.2f}, confidence {r.confidence:.0%})" for r in rules
        )
        name = f"Cross-sell: bought {sku}"[:200]
        try:
            created = await self.create(
                Segment(workspace_id, segment_id, name, description[:2000], rule, builtin="cross_sell")
            )
            return created, rules
        except AlreadyExists:
            existing, _ = await self.get(workspace_id, segment_id)
        if existing.builtin != "cross_sell":
            raise FailedPrecondition(f"segment {segment_id} exists and is not a cross-sell segment")
        changes = Segment(workspace_id, segment_id, name, description[:2000], rule)
        return await self.update(changes, ["rule", "description"]), rules

    async def create_builtins(self, workspace_id: str, kind: str) -> list[Segment]:
        """The built-in segments of a kind (created when missing; existing ones are kept)."""
        if kind == "rfm":
            wanted = [
                (f"rfm-{GROUP_IDS[group]}", f"RFM {group}", f'rfm_group = "{group}"') for group in GROUPS.values()
            ]
        elif kind == "lifecycle":
            wanted = [
                (f"lifecycle-{stage}", LIFECYCLE_NAMES[stage], f'lifecycle_stage = "{stage}"')
                for stage in LIFECYCLE_STAGES
            ]
        else:
            raise InvalidArgument("kind", "must be rfm or lifecycle (cross-sell audiences: BuildCrossSellSegment)")
        segments = []
        for segment_id, name, rule in wanted:
            try:
                segments.append(
                    await self.create(Segment(workspace_id, segment_id, name, "Built-in segment.", rule, builtin=kind))
                )
            except AlreadyExists:
                segments.append((await self.get(workspace_id, segment_id))[0])
        return segments
