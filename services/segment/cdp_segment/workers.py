"""Background work of the segment service: durable timers, and the periodic RFM recompute."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


class Periodic:
    """Runs ``step`` every ``interval`` seconds (at once again while it reports a full batch)."""

    def __init__(self, name: str, step: Callable[[], Awaitable[bool]], *, interval: float) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            more = False
            try:
                more = await self._step()
            except Exception:  # a database hiccup: try again next round
                log.exception("periodic step failed", worker=self.name)
            if more:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
