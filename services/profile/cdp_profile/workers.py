"""Background work of the profile service: profile timers and event partitions."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import Counter

from cdp_profile.service import ProfileService

log = structlog.get_logger(__name__)

TIMERS_FIRED = Counter("cdp_profile_timers_fired_total", "Profiles re-evaluated because their timer was due")


class TimerWorker:
    """Applies what time alone changes (lifecycle stages, tag and points expiry, windows, rolling
    spend) to profiles whose durable timer is due, and new settings to every profile, ``batch`` at
    a time per workspace; several replicas share the work (rows locked with SKIP LOCKED)."""

    name = "profile-timers"

    def __init__(self, service: ProfileService, *, batch: int, interval: float) -> None:
        self._service = service
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
            except Exception:  # database down: keep the worker alive, try again
                log.exception("timer round failed")
                done = 0
            if done:
                TIMERS_FIRED.inc(done)
                continue  # more may be due: no pause while there is work
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)


class PartitionMaintenance:
    """Creates the monthly event partitions ahead of time (hourly), so the hot path never waits on DDL."""

    name = "profile-partitions"

    def __init__(self, service: ProfileService, *, months_ahead: int, interval: float = 3600.0) -> None:
        self._service = service
        self._months_ahead = months_ahead
        self._interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            await self._service.maintain_partitions(self._months_ahead)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
