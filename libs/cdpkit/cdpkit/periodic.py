"""A background worker that runs one step every ``interval`` seconds, at once again while the step
reports more work waiting, and survives a failing step (a database hiccup): logged, counted in
``cdp_worker_failures_total{worker}``, tried again after the interval. ``stop()`` ends the wait at
once; a step in progress is finished (a long step can look at :attr:`Periodic.stopping`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import Counter

log = structlog.get_logger(__name__)

FAILURES = Counter("cdp_worker_failures_total", "Rounds of a periodic background worker that failed", ["worker"])


class Periodic:
    """``step()`` returns something true when more work is waiting now (no pause before the next
    round)."""

    def __init__(self, name: str, step: Callable[[], Awaitable[object]], *, interval: float) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._stopping = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            more = False
            try:
                more = bool(await self._step())
            except Exception:
                log.exception("background round failed", worker=self.name)
                FAILURES.labels(self.name).inc()
            if more:
                await asyncio.sleep(0)  # let the rest of the service in between rounds
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
