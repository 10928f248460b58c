"""Background work of the identity service: pruning (journal, conflicts) and match suggestions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import structlog

from cdp_identity import repository
from cdpkit.clock import Clock
from cdpkit.periodic import Periodic

log = structlog.get_logger(__name__)


class Maintenance(Periodic):
    """Every ``interval`` seconds: deletes journal entries older than ``journal_days`` and
    conflicts older than ``conflict_days`` (by the service's clock), and re-seals PII sealed under
    an older key (``reseal``: a rotated-out key can be dropped once it has run)."""

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
        super().__init__("identity-maintenance", self.run_once, interval=interval)
        self._pool = pool
        self._reseal = reseal
        self._journal_days = journal_days
        self._conflict_days = conflict_days
        self._clock = clock

    async def run_once(self) -> None:
        now = self._clock.now()
        prunes = [(repository.prune_conflicts, now - timedelta(days=self._conflict_days))]
        if self._journal_days:
            prunes.append((repository.prune_journal, now - timedelta(days=self._journal_days)))
        async with self._pool.acquire() as conn:
            for prune, before in prunes:
                while await prune(conn, before) > 0:
                    if self.stopping:
                        return
        if self._reseal is not None:
            await self._reseal(stop=lambda: self.stopping)


class Suggester(Periodic):
    """Matches persons whose attributes changed, every ``interval`` seconds."""

    def __init__(self, service, *, interval: float) -> None:
        super().__init__("identity-suggester", self.suggest_once, interval=interval)
        self._service = service

    async def suggest_once(self) -> None:
        created = await self._service.suggest()
        if created:
            log.info("match suggestions created", count=created)
