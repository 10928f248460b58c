"""cdpkit.consumer against a real JetStream: ack after the handler, retries, dead letters."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from prometheus_client import REGISTRY

from cdpkit import bus
from cdpkit.bus import DLQ, RAW, ensure_streams
from cdpkit.config import CommonSettings, Secret
from cdpkit.consumer import ConsumerLoop, ConsumerSpec, PermanentError


@dataclasses.dataclass
class Call:
    batch: list[bytes]
    delivered: list[int]
    at: float


class Recorder:
    """A handler that records every call and fails when ``fail(message)`` says so."""

    def __init__(self, fail=lambda message: None, during=None):
        self.calls: list[Call] = []
        self._fail = fail
        self._during = during

    async def __call__(self, messages):
        self.calls.append(
            Call([m.data for m in messages], [m.metadata.num_delivered for m in messages], time.monotonic())
        )
        if self._during is not None:
            await self._during(messages)
        for message in messages:
            error = self._fail(message)
            if error is not None:
                raise error

    def deliveries_of(self, data: bytes) -> list[Call]:
        return [c for c in self.calls if c.batch == [data]]

    def seen(self, data: bytes) -> int:
        return sum(c.batch.count(data) for c in self.calls)

    def seen_count(self) -> int:
        return sum(len(c.batch) for c in self.calls)


def spec(durable: str, **overrides) -> ConsumerSpec:
    fast = dict(
        durable=durable,
        stream=RAW,
        batch_size=10,
        max_deliver=3,
        ack_wait_seconds=5.0,
        backoff_seconds=(0.3, 0.6),
        fetch_timeout_seconds=0.2,
    )
    return ConsumerSpec(**{**fast, **overrides})


@pytest.fixture
async def streams(js, names):
    await ensure_streams(js, names, (RAW, DLQ))


@pytest.fixture
async def start(js, names, streams):
    running: list[tuple[ConsumerLoop, asyncio.Task]] = []

    async def start_loop(consumer_spec: ConsumerSpec, handler, *, js_context=None) -> ConsumerLoop:
        loop = ConsumerLoop(js_context or js, names, consumer_spec, handler)
        await loop.setup()
        running.append((loop, asyncio.create_task(loop.run())))
        return loop

    yield start_loop
    for loop, _task in running:
        loop.stop()
    for _loop, task in running:
        if not task.done():
            await asyncio.wait_for(task, 5)


async def dlq_messages(js, names, durable: str, expected: int, eventually, timeout: float = 8.0):
    stream = names.stream(DLQ)

    async def count() -> bool:
        return (await js.stream_info(stream)).state.messages >= expected

    await eventually(count, timeout)
    messages = [await js.get_msg(stream, seq) for seq in range(1, expected + 1)]
    assert all(m.subject == names.dlq_subject(durable) for m in messages)
    return messages


async def consumer_state(js, names, durable: str):
    return await js.consumer_info(names.stream(RAW), durable)


def metric(consumer: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("cdp_consumer_messages_total", {"consumer": consumer, "outcome": outcome}) or 0.0


async def test_poison_message_in_a_batch_is_isolated_retried_with_backoff_then_dead_lettered(
    js, names, start, eventually
):
    subject = names.subject(RAW, 0)
    await js.publish(subject, b"a")
    await js.publish(subject, b"bad", headers={"Nats-Msg-Id": "orig-1", "X-Trace": "trace-7"})
    await js.publish(subject, b"c")

    def fail(message):
        return ValueError("cannot apply\n  bad row") if message.data == b"bad" else None

    handler = Recorder(fail)
    await start(spec("applier"), handler)
    [dead] = await dlq_messages(js, names, "applier", 1, eventually)

    # The whole batch first, then one by one: the good messages are applied and acked.
    assert handler.calls[0].batch == [b"a", b"bad", b"c"]
    assert [c.batch for c in handler.calls[1:4]] == [[b"a"], [b"bad"], [b"c"]]
    assert handler.seen(b"a") == 2 and handler.seen(b"c") == 2  # never redelivered

    # The poison message: delivered max_deliver times, with the configured growing delays.
    tries = handler.deliveries_of(b"bad")
    assert [c.delivered for c in tries] == [[1], [2], [3]]
    assert tries[1].at - tries[0].at >= 0.3 * 0.9
    assert tries[2].at - tries[1].at >= 0.6 * 0.9
    assert tries[2].at - tries[1].at > tries[1].at - tries[0].at

    # Dead-lettered with the reason and the original headers, then terminated.
    assert dead.data == b"bad"
    headers = dead.headers
    assert headers["Cdp-Dlq-Reason"] == "ValueError: cannot apply bad row"
    assert headers["Cdp-Dlq-Deliveries"] == "3"
    assert headers["Cdp-Dlq-Consumer"] == "applier"
    assert headers["Cdp-Dlq-Stream"] == names.stream(RAW)
    assert headers["Cdp-Dlq-Subject"] == subject
    assert headers["Cdp-Dlq-Stream-Seq"] == "2"
    assert headers["Cdp-Original-Msg-Id"] == "orig-1"
    assert headers["X-Trace"] == "trace-7"

    async def settled() -> bool:
        state = await consumer_state(js, names, "applier")
        return state.num_ack_pending == 0 and state.num_pending == 0

    await eventually(settled)
    await asyncio.sleep(0.7)  # longer than the last backoff: a nak'ed message would be back by now
    assert len(handler.deliveries_of(b"bad")) == 3
    assert metric("applier", "dead_lettered") == 1
    assert metric("applier", "nakked") == 2
    assert metric("applier", "acked") == 2


async def test_permanent_error_is_dead_lettered_at_once(js, names, start, eventually):
    await js.publish(names.subject(RAW, 1), b"undecodable")
    handler = Recorder(lambda m: PermanentError("not a RawEventBatch"))
    await start(spec("decoder", max_deliver=5), handler)
    [dead] = await dlq_messages(js, names, "decoder", 1, eventually)
    assert dead.data == b"undecodable"
    assert dead.headers["Cdp-Dlq-Deliveries"] == "1"
    assert dead.headers["Cdp-Dlq-Reason"] == "PermanentError: not a RawEventBatch"
    await asyncio.sleep(0.5)  # past the first backoff
    assert [c.delivered for c in handler.calls] == [[1]]
    state = await consumer_state(js, names, "decoder")
    assert state.num_ack_pending == 0 and state.num_redelivered == 0


async def test_permanent_error_inside_a_batch_dead_letters_only_that_message(js, names, start, eventually):
    for data in (b"ok-1", b"perm", b"ok-2"):
        await js.publish(names.subject(RAW, 2), data)
    handler = Recorder(lambda m: PermanentError("invalid") if m.data == b"perm" else None)
    await start(spec("mixed"), handler)
    [dead] = await dlq_messages(js, names, "mixed", 1, eventually)
    assert dead.data == b"perm" and dead.headers["Cdp-Dlq-Deliveries"] == "1"

    async def settled() -> bool:
        state = await consumer_state(js, names, "mixed")
        return state.num_ack_pending == 0 and state.num_pending == 0

    await eventually(settled)
    assert handler.seen(b"perm") == 2  # in the batch, then alone
    assert max(d for c in handler.calls for d in c.delivered) == 1


async def test_ack_happens_only_after_the_handler_returned(js, names, start, eventually):
    stream = names.stream(RAW)
    pending_while_handling: list[int] = []

    async def during(messages):
        info = await js.consumer_info(stream, "acker")
        pending_while_handling.append(info.num_ack_pending)

    handler = Recorder(lambda m: RuntimeError("db down") if m.metadata.num_delivered == 1 else None, during=during)
    await js.publish(names.subject(RAW, 3), b"event")
    await start(spec("acker"), handler)

    async def acked() -> bool:
        state = await consumer_state(js, names, "acker")
        return len(handler.calls) == 2 and state.num_ack_pending == 0

    await eventually(acked)
    assert [c.delivered for c in handler.calls] == [[1], [2]]  # the failed first attempt came back
    assert pending_while_handling == [1, 1]  # unacked while the handler ran, both times
    state = await consumer_state(js, names, "acker")
    assert state.delivered.stream_seq == 1 and state.ack_floor.stream_seq == 1
    assert (await js.stream_info(names.stream(DLQ))).state.messages == 0


async def test_message_of_a_crashed_consumer_is_redelivered_after_ack_wait(nats_url, js, names, start, eventually):
    entered = asyncio.Event()

    async def hang(messages):
        entered.set()
        await asyncio.Event().wait()

    crashed_nc = await bus.connect(nats_url, name="doomed")
    doomed = ConsumerLoop(crashed_nc.jetstream(), names, spec("worker", ack_wait_seconds=0.5), hang)
    await doomed.setup()
    await js.publish(names.subject(RAW, 0), b"work")
    task = asyncio.create_task(doomed.run())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()  # the process dies mid-batch: no ack, no nak
    await asyncio.gather(task, return_exceptions=True)
    await crashed_nc.close()

    survivor = Recorder()
    await start(spec("worker", ack_wait_seconds=0.5), survivor)
    await eventually(lambda: len(survivor.calls) == 1)
    assert survivor.calls[0].batch == [b"work"] and survivor.calls[0].delivered == [2]


async def test_filter_subject_limits_the_consumer_to_its_subjects(js, names, start, eventually):
    handler = Recorder()
    await start(spec("partition-1", filter_subject=names.subject(RAW, 1)), handler)
    await js.publish(names.subject(RAW, 0), b"p0")
    await js.publish(names.subject(RAW, 1), b"p1")
    await js.publish(names.subject(RAW, 2), b"p2")
    await eventually(lambda: handler.seen(b"p1") == 1)
    await asyncio.sleep(0.3)
    assert [c.batch for c in handler.calls] == [[b"p1"]]


async def test_setup_again_updates_the_durable_with_tuned_settings(js, names, streams):
    base = spec("tunable")
    settings = CommonSettings(
        database_url=Secret("postgresql://x@127.0.0.1/db"), consumer_ack_wait_seconds=7.0, consumer_max_deliver=9
    )
    tuned = base.tuned(settings)
    assert (tuned.ack_wait_seconds, tuned.max_deliver) == (7.0, 9)
    assert tuned.backoff_seconds == base.backoff_seconds and tuned.durable == "tunable"

    await ConsumerLoop(js, names, base, Recorder()).setup()
    await ConsumerLoop(js, names, tuned, Recorder()).setup()
    info = await js.consumer_info(names.stream(RAW), "tunable")
    assert info.config.ack_wait == 7.0
    assert info.config.max_deliver == -1  # the loop dead-letters; the server must never give up silently
    assert info.config.filter_subject == names.all_subjects(RAW)


async def test_stop_ends_an_idle_run_at_once_without_waiting_for_its_pull_request(js, names, streams, eventually):
    # The pull request would stay open 30 s: stopping must not wait for it.
    loop = ConsumerLoop(js, names, spec("stopper", fetch_timeout_seconds=30.0), Recorder())
    await loop.setup()
    task = asyncio.create_task(loop.run())
    stream = names.stream(RAW)

    async def waiting() -> bool:
        return (await js.consumer_info(stream, "stopper")).num_waiting == 1

    await eventually(waiting)
    started = time.monotonic()
    loop.stop()
    await asyncio.wait_for(task, 3)
    assert time.monotonic() - started < 0.5
    assert (await js.consumer_info(stream, "stopper")).num_waiting == 0  # the server forgot the request
    await js.publish(names.subject(RAW, 0), b"after")
    await asyncio.sleep(0.1)
    assert (await js.consumer_info(stream, "stopper")).num_ack_pending == 0  # delivered to nobody


async def test_stop_during_a_batch_finishes_it_and_hands_nothing_twice_or_loses_anything(
    js, names, streams, eventually
):
    stream = names.stream(RAW)
    release = asyncio.Event()
    holding = asyncio.Event()

    async def slow(messages):
        if not holding.is_set():
            holding.set()
            await release.wait()

    first = Recorder(during=slow)
    loop = ConsumerLoop(js, names, spec("handover", batch_size=5), first)
    await loop.setup()
    task = asyncio.create_task(loop.run())
    for i in range(3):
        await js.publish(names.subject(RAW, 0), f"{i}".encode())
    await asyncio.wait_for(holding.wait(), 5)
    for i in range(3, 9):  # delivered to the loop (its next pull) while the first batch is held
        await js.publish(names.subject(RAW, 0), f"{i}".encode())

    async def delivered_ahead() -> bool:
        return (await js.consumer_info(stream, "handover")).num_ack_pending > 3

    await eventually(delivered_ahead)
    loop.stop()
    await asyncio.sleep(0.1)
    assert not task.done()  # the batch in hand is finished first
    release.set()
    await asyncio.wait_for(task, 5)
    handled_first = [int(d) for c in first.calls for d in c.batch]

    async def all_acked() -> bool:  # the last acks may still be on their way to the server
        return (await js.consumer_info(stream, "handover")).num_ack_pending == 0

    # What was delivered ahead was handled and acked, not left behind (unacked, it would stay
    # pending until the ack wait, far beyond this wait).
    await eventually(all_acked, 2.0)

    for i in range(9, 12):
        await js.publish(names.subject(RAW, 0), f"{i}".encode())
    second = Recorder()
    successor = ConsumerLoop(js, names, spec("handover", batch_size=5), second)
    await successor.setup()
    task = asyncio.create_task(successor.run())
    try:
        await eventually(lambda: len(handled_first) + second.seen_count() >= 12)
        await asyncio.sleep(0.1)
    finally:
        successor.stop()
        await asyncio.wait_for(task, 5)
    handled_second = [int(d) for c in second.calls for d in c.batch]
    assert handled_first + handled_second == list(range(12))  # each once, in order
    assert all(d == 1 for c in first.calls + second.calls for d in c.delivered)


async def test_messages_published_while_running_are_handled_in_order(js, names, start, eventually):
    handler = Recorder()
    await start(spec("orderly"), handler)
    for i in range(30):
        await js.publish(names.subject(RAW, 0), str(i).encode())
    await eventually(lambda: sum(len(c.batch) for c in handler.calls) == 30)
    assert [int(d) for c in handler.calls for d in c.batch] == list(range(30))
    assert all(len(c.batch) <= 10 for c in handler.calls)


async def _trickle(js, names, count: int, gap: float) -> None:
    """Publish ``count`` messages ``gap`` seconds apart, each after the last was stored."""
    for i in range(count):
        await js.publish(names.subject(RAW, 0), str(i).encode())
        await asyncio.sleep(gap)


async def test_without_linger_messages_a_few_ms_apart_are_handled_one_by_one(js, names, start, eventually):
    handler = Recorder()
    await start(spec("eager"), handler)
    await _trickle(js, names, 6, 0.05)
    await eventually(lambda: handler.seen_count() == 6)
    assert handler.calls[0].batch == [b"0"]  # handed over at once, not held for the next
    assert len(handler.calls) >= 3


async def test_linger_gathers_a_trickle_into_one_batch_and_bounds_the_wait(js, names, start, eventually):
    handler = Recorder()
    await start(spec("lingering", linger_seconds=0.5), handler)
    first_sent = time.monotonic()
    await _trickle(js, names, 6, 0.02)
    await eventually(lambda: handler.seen_count() == 6)
    assert [[int(d) for d in c.batch] for c in handler.calls] == [list(range(6))]
    # handed over once the first message had waited the linger, not at a full batch (10)
    waited = handler.calls[0].at - first_sent
    assert 0.45 <= waited < 1.5, waited


async def test_linger_ends_when_the_batch_is_full(js, names, start, eventually):
    handler = Recorder()
    await start(spec("full", linger_seconds=5.0, batch_size=4), handler)
    first_sent = time.monotonic()
    await _trickle(js, names, 8, 0.01)
    await eventually(lambda: handler.seen_count() == 8, 3.0)
    assert [[int(d) for d in c.batch] for c in handler.calls] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert handler.calls[-1].at - first_sent < 2.0  # never waited out the 5 s linger


async def test_stop_ends_a_linger_at_once_and_hands_over_what_came(js, names, start, eventually):
    handler = Recorder()
    loop = await start(spec("stopped-lingering", linger_seconds=30.0), handler)
    await _trickle(js, names, 3, 0.01)
    await asyncio.sleep(0.2)
    assert handler.calls == []  # still lingering
    loop.stop()
    await eventually(lambda: handler.seen_count() == 3, 3.0)
    assert [int(d) for c in handler.calls for d in c.batch] == [0, 1, 2]
    assert (await consumer_state(js, names, "stopped-lingering")).num_ack_pending == 0
