"""cdpkit.periodic.Periodic: rounds on an interval, at once while there is more, through failures."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time

from prometheus_client import REGISTRY

from cdpkit import periodic
from cdpkit.periodic import Periodic


def failures(worker: str) -> float:
    return REGISTRY.get_sample_value("cdp_worker_failures_total", {"worker": worker}) or 0.0


async def test_rounds_come_an_interval_apart_and_stop_ends_the_wait_at_once():
    rounds: list[float] = []

    async def step() -> None:
        rounds.append(time.monotonic())

    worker = Periodic("paced", step, interval=0.2)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.5)
    stopped = time.monotonic()
    worker.stop()
    await asyncio.wait_for(task, 1)
    assert time.monotonic() - stopped < 0.1  # not waiting out the interval
    assert 2 <= len(rounds) <= 3  # at 0, 0.2 (and 0.4) s
    assert all(0.15 <= b - a < 0.35 for a, b in itertools.pairwise(rounds))


async def test_a_round_that_reports_more_work_is_followed_at_once():
    left = [5]

    async def step() -> bool:
        left[0] -= 1
        return left[0] > 0

    worker = Periodic("draining", step, interval=10.0)
    task = asyncio.create_task(worker.run())
    started = time.monotonic()
    while left[0] > 0 and time.monotonic() - started < 2:  # noqa: ASYNC110 - the worker empties it
        await asyncio.sleep(0.01)
    worker.stop()
    await asyncio.wait_for(task, 1)
    assert left[0] == 0
    assert time.monotonic() - started < 1  # five rounds without the 10 s pause between them


class ExceptionLog:
    """Stands in for the module's logger: what was logged with which exception."""

    def __init__(self) -> None:
        self.logged: list[tuple[str, dict, str]] = []

    def exception(self, event: str, **fields) -> None:
        self.logged.append((event, fields, str(sys.exc_info()[1])))


async def test_a_failing_round_is_counted_reported_and_tried_again_after_the_interval(monkeypatch):
    seen = ExceptionLog()
    monkeypatch.setattr(periodic, "log", seen)
    calls = [0]

    async def step() -> bool:
        calls[0] += 1
        if calls[0] == 1:
            raise ConnectionError("database away")
        return False

    before = failures("flaky")
    worker = Periodic("flaky", step, interval=0.1)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.25)
    worker.stop()
    await asyncio.wait_for(task, 1)
    assert calls[0] >= 2  # alive after the failure
    assert seen.logged == [("background round failed", {"worker": "flaky"}, "database away")]
    assert failures("flaky") == before + 1
