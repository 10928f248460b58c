"""Upkeep of stored events: retention of old monthly partitions, and the background pass that
rewrites events stored under older rules of what is personal (see docs/profile.md)."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

import asyncpg
import structlog
from prometheus_client import Counter

from cdp_profile import upkeep_repository as sql
from cdp_profile.rules import MIN_EVENT_RETENTION_DAYS
from cdpkit.clock import Clock

log = structlog.get_logger(__name__)

PARTITIONS_DROPPED = Counter(
    "cdp_profile_event_partitions_dropped_total", "Monthly event partitions dropped by the retention job"
)
HISTORY_EVENTS_DELETED = Counter(
    "cdp_profile_history_events_deleted_total", "Events of events_history deleted by the retention job"
)

HISTORY_DELETE_BATCH = 5000


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
                while count := await sql.delete_history_before(conn, cutoff, HISTORY_DELETE_BATCH):
                    deleted += count
                    HISTORY_EVENTS_DELETED.inc(count)
                if deleted:
                    log.info("old events_history rows deleted", events=deleted, cutoff=cutoff.isoformat())
            finally:
                with contextlib.suppress(Exception):
                    await sql.unlock(conn, sql.RETENTION_LEASE)
        return dropped
