"""Background work of the identity service: pruning (journal, conflicts) and match suggestions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import structlog

from cdp_identity import repository
from cdpkit.clock import Clock

log = structlog.get_logger(__name__)


class Maintenance:
    """Every ``interval`` seconds: deletes journal entries older than ``journal_days`` and
    conflicts older than ``conflict_days`` (by the service's clock), and re-seals PII sealed under
    an older key (``reseal``: a rotated-out key can be dropped once it has run)."""

    name = "identity-maintenance"

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        journal_days: int,
        conflict_days: int,
        clock: Clock,
        reseal: Callable[..., Awaitable[int]] | None = None,
        interval: float = 600.0,
    ) -> None:
        self._pool = pool
        self._reseal = reseal
        self._journal_days = journal_days
        self._conflict_days = conflict_days
        self._clock = clock
        self._interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run_once(self) -> None:
        now = self._clock.now()
        prunes = [(repository.prune_conflicts, now - timedelta(days=self._conflict_days))]
        if self._journal_days:
            prunes.append((repository.prune_journal, now - timedelta(days=self._journal_days)))
        async with self._pool.acquire() as conn:
            for prune, before in prunes:
                while await prune(conn, before) > 0:
                    if self._stopping.is_set():
                        return
        if self._reseal is not None:
            await self._reseal(stop=self._stopping.is_set)

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)


class Suggester:
    """Matches persons whose attributes changed, every ``interval`` seconds."""

    name = "identity-suggester"

    def __init__(self, service, *, interval: float) -> None:
        self._service = service
        self._interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            created = await self._service.suggest()
            if created:
                log.info("match suggestions created", count=created)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
