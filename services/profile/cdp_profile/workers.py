"""Background work of the profile service: profile timers and event partitions."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import Counter

from cdp_profile.metrics import BACKGROUND_FAILURES
from cdp_profile.service import ProfileService
from cdp_profile.upkeep import EventRetention, EventRewrite

log = structlog.get_logger(__name__)

TIMERS_FIRED = Counter("cdp_profile_timers_fired_total", "Profiles re-evaluated because their timer was due")


class TimerWorker:
    """Applies what time alone changes (lifecycle stages, tag and points expiry, windows, rolling
    spend) to profiles whose durable timer is due, new settings to every profile, and today's PII
    rules to profiles and stored events saved under older ones, ``batch`` at a time per
    workspace; several replicas share the work (rows locked with SKIP LOCKED)."""

    name = "profile-timers"

    def __init__(
        self, service: ProfileService, *, batch: int, interval: float, event_rewrite: EventRewrite | None = None
    ) -> None:
        self._service = service
        self._event_rewrite = event_rewrite
        self._batch = batch
        self._interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                done = await self._service.run_timers(self._batch)
                done += await self._service.run_reevaluations(self._batch)
                sealed = await self._service.reseal_pii(self._batch)
                if self._event_rewrite is not None:
                    sealed += await self._event_rewrite.run()
            except Exception:  # database down: keep the worker alive, try again
                log.exception("timer round failed")
                done = sealed = 0
            if done:
                TIMERS_FIRED.inc(done)
            if done or sealed:
                continue  # more may be due: no pause while there is work
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)


class PartitionMaintenance:
    """Creates the monthly event partitions ahead of time (hourly), so the hot path never waits on
    DDL, and drops those older than the retention (one replica at a time)."""

    name = "profile-partitions"

    def __init__(
        self,
        service: ProfileService,
        *,
        months_ahead: int,
        retention: EventRetention | None = None,
        interval: float = 3600.0,
    ) -> None:
        self._service = service
        self._months_ahead = months_ahead
        self._retention = retention
        self._interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._service.maintain_partitions(self._months_ahead)
                if self._retention is not None:
                    await self._retention.run()
            except Exception:  # database down: keep the worker alive, try again next round
                log.exception("partition maintenance failed")
                BACKGROUND_FAILURES.labels("partitions").inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
