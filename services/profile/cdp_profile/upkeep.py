"""Upkeep of stored events: retention of old monthly partitions, and the background pass that
rewrites events stored under older rules of what is personal (see docs/profile.md)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime, timedelta

import asyncpg
import structlog
from google.protobuf import struct_pb2
from prometheus_client import Counter

from cdp_profile import upkeep_repository as sql
from cdp_profile.consumers import CONTEXT_RULES_VERSION, kept_context
from cdp_profile.domain import differs
from cdp_profile.repository import EventRow
from cdp_profile.rules import MIN_EVENT_RETENTION_DAYS, PII_RULES_VERSION, WorkspaceSettings
from cdp_profile.service import ProfileService
from cdp_profile.structs import to_dict
from cdpkit.clock import Clock

log = structlog.get_logger(__name__)

PARTITIONS_DROPPED = Counter(
    "cdp_profile_event_partitions_dropped_total", "Monthly event partitions dropped by the retention job"
)
HISTORY_EVENTS_DELETED = Counter(
    "cdp_profile_history_events_deleted_total", "Events of events_history deleted by the retention job"
)

# events_history is gone through 1,000 pages (8 MiB) per statement.
HISTORY_DELETE_BLOCKS = 1000


class EventRetention:
    """Drops the monthly event partitions wholly older than ``days`` (0: keep every event), one
    replica at a time, without blocking readers or writers; deletes older rows of
    ``events_history`` in small batches. ``event_keys`` stay (see docs/profile.md, Retention)."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, *, days: int) -> None:
        if days and days < MIN_EVENT_RETENTION_DAYS:
            raise ValueError(f"event retention must be 0 (keep) or at least {MIN_EVENT_RETENTION_DAYS} days")
        self._pool = pool
        self._clock = clock
        self.days = days

    def cutoff(self) -> datetime:
        return self._clock.now() - timedelta(days=self.days)

    async def run(self) -> list[str]:
        """One run; returns the partitions dropped (empty when another replica is running it)."""
        if not self.days:
            return []
        cutoff = self.cutoff()
        dropped: list[str] = []
        async with self._pool.acquire() as conn:
            if not await sql.try_lock(conn, sql.RETENTION_LEASE):
                return []
            try:
                for name, attached, pending, estimate in await sql.old_partitions(conn, cutoff):
                    if attached:
                        await sql.detach_partition(conn, name, pending=pending)
                    await sql.drop_table(conn, name)
                    PARTITIONS_DROPPED.inc()
                    dropped.append(name)
                    log.info(
                        "event partition dropped",
                        partition=name,
                        estimated_rows=int(estimate),
                        cutoff=cutoff.isoformat(),
                        retention_days=self.days,
                    )
                deleted = 0
                for first_block in range(0, await sql.history_blocks(conn), HISTORY_DELETE_BLOCKS):
                    count = await sql.delete_history_before(conn, cutoff, first_block, HISTORY_DELETE_BLOCKS)
                    deleted += count
                    HISTORY_EVENTS_DELETED.inc(count)
                if deleted:
                    log.info("old events_history rows deleted", events=deleted, cutoff=cutoff.isoformat())
            finally:
                with contextlib.suppress(Exception):
                    await sql.unlock(conn, sql.RETENTION_LEASE)
        return dropped


EVENTS_REWRITTEN = Counter(
    "cdp_profile_event_pass_events_total",
    "Stored events the PII rewrite pass went through: rewritten, or already current",
    ["outcome"],
)
# What stored events are rewritten to: today's rules of what is personal and of the context kept.
EVENT_RULES = f"pii{PII_RULES_VERSION}-context{CONTEXT_RULES_VERSION}"


class EventRewrite:
    """The background pass that rewrites stored events saved under older rules: traits and
    properties with a personal name at any depth sealed as the consumer now seals them, the
    context reduced to what is kept now, rows of the first format (``legacy``) converted.

    Batches of ``batch`` events in (workspace, message id) order of ``event_keys`` (every monthly
    partition and events_history), one short transaction each that locks only those events (the
    consumer, which only inserts, never waits for it); resumable (the position is committed with
    the batch), idempotent (an event already current is left as it is), one replica at a time
    (the pass row is locked SKIP LOCKED). Progress: ``event_passes``, a log line per batch, the
    metric ``cdp_profile_event_pass_events_total{outcome}``."""

    def __init__(self, service: ProfileService, pool: asyncpg.Pool, *, batch: int) -> None:
        self._service = service
        self._pool = pool
        self._batch = batch
        self._started = False

    async def run(self) -> int:
        """One batch; returns how many events it went through (0: no pass left, or another
        replica holds it)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not self._started:
                await sql.start_event_pass(conn, EVENT_RULES)
                self._started = True
            task = await sql.claim_event_pass(conn)
            if task is None:
                return 0
            keys = await sql.next_event_keys(conn, task, self._batch)
            if not keys:
                examined, rewritten = await sql.advance_event_pass(conn, task.rules, None, examined=0, rewritten=0)
                log.info("stored events current", rules=task.rules, examined=examined, rewritten=rewritten)
                return 0
            rows = await sql.lock_events(conn, keys)
            found = {(r.workspace_id, r.message_id) for r in rows}
            if len(found) < len(keys):  # moved by a merge or split as this batch read them: read again
                rows += await sql.lock_events(conn, [k for k in keys if k not in found])
            changed = []
            for row in rows:
                settings = await self._service.settings_of(conn, row.workspace_id)
                rewritten_row = self.rewritten(row, settings)
                if rewritten_row is not None:
                    changed.append(rewritten_row)
            await sql.rewrite_events(conn, changed)
            examined, rewritten = await sql.advance_event_pass(
                conn, task.rules, keys[-1], examined=len(keys), rewritten=len(changed)
            )
        EVENTS_REWRITTEN.labels("rewritten").inc(len(changed))
        EVENTS_REWRITTEN.labels("current").inc(len(keys) - len(changed))
        log.info(
            "stored events rewritten under the current rules",
            rules=task.rules,
            batch=len(keys),
            rewritten=len(changed),
            examined_total=examined,
            rewritten_total=rewritten,
        )
        return len(keys)

    def rewritten(self, row: EventRow, settings: WorkspaceSettings) -> EventRow | None:
        """The event as the consumer would store it today, or None when it already is."""
        properties, traits, sealed_before = self._service.opened_event(row)
        sealed, stored_properties, plain_traits = ProfileService.personal_parts(
            row.event, row.type, properties, traits, settings
        )
        context = struct_pb2.Struct.FromString(row.context) if row.context else struct_pb2.Struct()
        if row.legacy and row.legacy.get("context"):
            context.update(row.legacy["context"])
        kept = kept_context(context)
        current = (
            row.legacy is None
            and not differs(_canonical(sealed), _canonical(sealed_before))
            and not differs(plain_traits, row.traits)
            and not differs(to_dict(struct_pb2.Struct.FromString(stored_properties)), to_dict(_struct(row.properties)))
            and not differs(to_dict(kept), to_dict(_struct(row.context)))
        )
        if current:
            return None
        return replace(
            row,
            properties=stored_properties,
            context=kept.SerializeToString(),
            traits=plain_traits,
            pii=self._service.seal_event(row.workspace_id, row.message_id, sealed),
            legacy=None,
        )


def _canonical(sealed: dict) -> dict:
    """The sealed part with its property paths in order (a Struct's map is walked in no set order)."""
    if "property_paths" not in sealed:
        return sealed
    return {**sealed, "property_paths": sorted(sealed["property_paths"], key=lambda pair: [str(p) for p in pair[0]])}


def _struct(data: bytes) -> struct_pb2.Struct:
    return struct_pb2.Struct.FromString(data) if data else struct_pb2.Struct()
