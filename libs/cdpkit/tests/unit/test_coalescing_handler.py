"""CoalescingHandler: the batches of a replica's partition loops handed in at the same moment
become one handler call; failures stay with the batch that causes them."""

from __future__ import annotations

import asyncio

import pytest

from cdpkit.consumer import CoalescingHandler, PermanentError


class Recorder:
    """A handler that records each call's messages; the first call waits until released, so
    that the test can hand in more batches while it runs."""

    def __init__(self, poison: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.poison = poison
        self.started_second = asyncio.Event()
        self.release_second: asyncio.Event | None = None  # set: the second call waits for it too

    async def __call__(self, messages) -> None:
        self.calls.append(list(messages))
        if len(self.calls) == 1:
            await self.release.wait()
        if len(self.calls) == 2:
            self.started_second.set()
            if self.release_second is not None:
                await self.release_second.wait()
        if self.poison in messages:
            raise PermanentError(f"{self.poison} is poison")


async def _hand_in(handler: CoalescingHandler, *batches: list[str]) -> list[asyncio.Task]:
    tasks = []
    for batch in batches:
        tasks.append(asyncio.create_task(handler(batch)))
        await asyncio.sleep(0)  # each reaches the handler before the next, as loops would
    return tasks


async def test_batches_handed_in_while_a_call_runs_go_together_in_order():
    recorder = Recorder()
    handler = CoalescingHandler(recorder, limit=20)
    first = await _hand_in(handler, ["p0-1"])
    rest = await _hand_in(handler, ["p1-1", "p1-2"], ["p2-1"], ["p3-1"])
    assert recorder.calls == [["p0-1"]]  # the others wait for the running call
    recorder.release.set()
    await asyncio.gather(*first, *rest)
    assert recorder.calls == [["p0-1"], ["p1-1", "p1-2", "p2-1", "p3-1"]]


async def test_a_lone_batch_is_handled_at_once():
    recorder = Recorder()
    recorder.release.set()
    handler = CoalescingHandler(recorder, limit=20)
    await asyncio.wait_for(handler(["only"]), 1)
    assert recorder.calls == [["only"]]


async def test_the_limit_holds_and_a_batch_is_never_split():
    recorder = Recorder()
    handler = CoalescingHandler(recorder, limit=3)
    tasks = await _hand_in(handler, ["a"], ["b1", "b2"], ["c1", "c2"], ["d"], ["e1", "e2", "e3", "e4"])
    recorder.release.set()
    await asyncio.gather(*tasks)
    assert recorder.calls == [["a"], ["b1", "b2"], ["c1", "c2", "d"], ["e1", "e2", "e3", "e4"]]


async def test_a_failure_reaches_only_the_batch_that_fails_alone():
    recorder = Recorder(poison="bad")
    handler = CoalescingHandler(recorder, limit=20)
    tasks = await _hand_in(handler, ["first"], ["good-1", "good-2"], ["bad"], ["good-3"])
    recorder.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] is None and results[1] is None and results[3] is None
    assert isinstance(results[2], PermanentError)
    # the combined call failed, then each batch ran alone
    assert recorder.calls == [
        ["first"],
        ["good-1", "good-2", "bad", "good-3"],
        ["good-1", "good-2"],
        ["bad"],
        ["good-3"],
    ]


async def test_a_lone_failing_batch_fails_its_caller_once():
    recorder = Recorder(poison="bad")
    recorder.release.set()
    handler = CoalescingHandler(recorder, limit=20)
    with pytest.raises(PermanentError):
        await handler(["bad"])
    assert recorder.calls == [["bad"]]


async def test_a_cancelled_loop_does_not_take_the_others_batches_with_it():
    recorder = Recorder()
    recorder.release_second = asyncio.Event()
    handler = CoalescingHandler(recorder, limit=20)
    first = await _hand_in(handler, ["p0"])
    second, third = await _hand_in(handler, ["p1"], ["p2"])
    recorder.release.set()
    await first[0]
    # p1's loop drives the call holding p1 and p2; it is cancelled (a stop) while the call runs
    await asyncio.wait_for(recorder.started_second.wait(), 1)
    second.cancel()
    await asyncio.sleep(0.01)
    assert not third.done()
    recorder.release_second.set()
    await asyncio.wait_for(third, 1)  # p2 is handled all the same
    with pytest.raises(asyncio.CancelledError):
        await second
    assert recorder.calls == [["p0"], ["p1", "p2"]]
