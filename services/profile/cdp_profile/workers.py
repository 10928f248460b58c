"""Background work of the profile service: profile timers and event partitions."""

from __future__ import annotations

from prometheus_client import Counter

from cdp_profile.service import ProfileService
from cdp_profile.upkeep import EventRetention, EventRewrite
from cdpkit.periodic import Periodic

TIMERS_FIRED = Counter("cdp_profile_timers_fired_total", "Profiles re-evaluated because their timer was due")


class TimerWorker(Periodic):
    """Applies what time alone changes (lifecycle stages, tag and points expiry, windows, rolling
    spend) to profiles whose durable timer is due, new settings to every profile, and today's PII
    rules to profiles and stored events saved under older ones, ``batch`` at a time per
    workspace; several replicas share the work (rows locked with SKIP LOCKED)."""

    def __init__(
        self, service: ProfileService, *, batch: int, interval: float, event_rewrite: EventRewrite | None = None
    ) -> None:
        super().__init__("profile-timers", self.run_once, interval=interval)
        self._service = service
        self._event_rewrite = event_rewrite
        self._batch = batch

    async def run_once(self) -> bool:
        """One round; true when it did anything (more may be due: no pause before the next)."""
        done = await self._service.run_timers(self._batch)
        done += await self._service.run_reevaluations(self._batch)
        sealed = await self._service.reseal_pii(self._batch)
        if self._event_rewrite is not None:
            sealed += await self._event_rewrite.run()
        if done:
            TIMERS_FIRED.inc(done)
        return bool(done or sealed)


class PartitionMaintenance(Periodic):
    """Creates the monthly event partitions ahead of time (hourly), so the hot path never waits on
    DDL, and drops those older than the retention (one replica at a time)."""

    def __init__(
        self,
        service: ProfileService,
        *,
        months_ahead: int,
        retention: EventRetention | None = None,
        interval: float = 3600.0,
    ) -> None:
        super().__init__("profile-partitions", self.run_once, interval=interval)
        self._service = service
        self._months_ahead = months_ahead
        self._retention = retention

    async def run_once(self) -> None:
        await self._service.maintain_partitions(self._months_ahead)
        if self._retention is not None:
            await self._retention.run()
