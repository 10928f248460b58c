"""Background loops: the scheduler (due instances, scheduled and date triggers) and the sender.

Both poll every ``poll_seconds`` and are woken at once by ``pg_notify`` when an enrolment or a
send step adds work, so a trigger reaches the provider without waiting for a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from cdp_campaign.runner import WAKE_CHANNEL

log = structlog.get_logger(__name__)


class PollingWorker:
    """Runs ``step`` until it reports no work, then sleeps until woken or ``poll_seconds`` pass."""

    def __init__(
        self,
        name: str,
        pool: asyncpg.Pool,
        steps: list[Callable[[], Awaitable[int]]],
        *,
        poll_seconds: float,
        wake_on: str,
    ) -> None:
        self.name = name
        self._pool = pool
        self._steps = steps
        self._poll = poll_seconds
        self._wake_on = wake_on
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        if payload == self._wake_on:
            self._wake.set()

    async def run(self) -> None:
        listener = await self._pool.acquire()
        try:
            await listener.add_listener(WAKE_CHANNEL, self._on_notify)
            backoff = 0.5
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    busy = 0
                    for step in self._steps:
                        busy += await step()
                    backoff = 0.5
                except (asyncpg.PostgresError, OSError) as exc:
                    log.warning("worker step failed, retrying", worker=self.name, error=str(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                if busy:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(WAKE_CHANNEL, self._on_notify)
            await self._pool.release(listener)
