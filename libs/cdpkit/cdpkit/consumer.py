"""Durable JetStream pull consumers with at-least-once, idempotent processing.

The loop fetches a batch, hands it to the handler (which applies it in one database
transaction and must be idempotent), and acks every message only after the handler returned,
i.e. after commit. When a batch fails, its messages are retried one by one so that one poison
message cannot hold the others back: a failing message is nak'ed with a growing delay and,
after ``max_deliver`` attempts (or at once for a :class:`PermanentError`), published to the
dead-letter subject ``{prefix}.dlq.{durable}`` with the reason in headers, then terminated.

Fetching: the loop keeps one pull request for ``batch_size`` messages open on an inbox of its
own (expiring after ``fetch_timeout_seconds``), hands the handler whatever has arrived as soon as
one message is there, and asks again as soon as a request is used up or has expired, before the
handler runs, so that the next batch travels while this one is applied. A lone message is
handled at once unless the spec sets ``linger_seconds``: then a batch that is not full waits for
more until its oldest message has been in for that long (as Kafka's ``linger.ms``), trading that
much latency at low rates for fewer, larger transactions.

Stopping: :meth:`ConsumerLoop.stop` wakes a loop waiting for messages at once (it does not wait
for the pull request to expire); a batch being handled is finished and acked first. Then the
loop drops its interest in the inbox (the server forgets the open request), makes one round trip
so that everything the server sent before is in, and handles those messages too, in order: a stop
leaves nothing delivered and unacked behind (the next owner of a partition would wait out an ack
wait for it) and hands nothing to the handler twice.

On a partitioned stream (``{prefix}.raw.N`` ...) a spec made with :meth:`ConsumerSpec.tuned`
is *partitioned*: the loop then runs one durable consumer per partition (``{durable}-p{N}``)
for the partitions this replica holds a lease on, and replicas share the partitions out among
themselves (:mod:`cdpkit.partitions`). One partition is only ever consumed by one replica, one
batch at a time, so the events of one key (a person) are applied in order however many
replicas run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DEFAULT_PREFIX, AckPolicy, ConsumerConfig, DeliverPolicy

from cdpkit.bus import BusNames, StreamSpec, connection_of
from cdpkit.config import CommonSettings
from cdpkit.metrics import CONSUMER_BATCH_SECONDS, CONSUMER_MESSAGES

log = structlog.get_logger(__name__)

Handler = Callable[[Sequence[Msg]], Awaitable[None]]
# How long past its expiry a pull request's "expired" status may take to arrive before it counts as lost.
_EXPIRY_GRACE_SECONDS = 0.5
# The longest a batch waits for the rest of a burst that JetStream said was on its way.
_BURST_WAIT_SECONDS = 0.005


class PermanentError(Exception):
    """This message can never be processed (undecodable, invalid): dead-letter it now."""


@dataclass(frozen=True)
class ConsumerSpec:
    durable: str
    stream: StreamSpec
    # A subject filter under the stream; None means every subject of the stream.
    filter_subject: str | None = None
    batch_size: int = 20
    max_deliver: int = 5
    ack_wait_seconds: float = 30.0
    backoff_seconds: tuple[float, ...] = (0.5, 2.0, 10.0, 30.0)
    fetch_timeout_seconds: float = 1.0
    # A batch that is not full waits for more until its oldest message has been in this long.
    linger_seconds: float = 0.0
    # One durable per partition, partitions leased among replicas (see cdpkit.partitions).
    partitioned: bool = False
    lease_seconds: float = 10.0
    # Partitioned: the batches the replica's partitions bring at the same moment go to the handler
    # together (CoalescingHandler). Worth it where a batch's cost is mostly per transaction.
    coalesce: bool = False

    def tuned(self, settings: CommonSettings) -> ConsumerSpec:
        """This spec with the operator's settings; partitioned when its stream is (and no filter is set)."""
        return replace(
            self,
            ack_wait_seconds=settings.consumer_ack_wait_seconds,
            max_deliver=settings.consumer_max_deliver,
            partitioned=self.stream.partitioned and self.filter_subject is None,
            lease_seconds=settings.consumer_lease_seconds,
        )


def _header_safe(text: str, limit: int = 1000) -> str:
    return " ".join(text.split())[:limit]


class _Puller:
    """Pull requests for one durable consumer on an inbox of our own, and the messages they bring.

    Messages are queued by the subscription's callback; at most one request is open at a time
    (``batch_size`` messages, expiring after ``expires`` seconds).
    """

    def __init__(
        self, nc: NATS, stream: str, durable: str, batch_size: int, expires: float, linger: float = 0.0
    ) -> None:
        self._nc = nc
        self._subject = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._request = json.dumps({"batch": batch_size, "expires": int(expires * 1e9)}).encode()
        self._batch_size = batch_size
        self._expires = expires
        self._linger = linger
        self._inbox = nc.new_inbox()
        self._sub = None
        self._queue: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._outstanding = 0  # messages the open request may still bring
        self._deadline = 0.0  # when the open request expires (event loop time)
        self._oldest = 0.0  # when the oldest queued message came in (event loop time)
        self.durable = durable

    async def open(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def _on_message(self, msg: Msg) -> None:
        if not msg.reply and msg.headers and "Status" in msg.headers:
            status = msg.headers["Status"]
            if status != "100":  # 100 = idle heartbeat; 408 = expired, 409 = ended (leader change...)
                self._outstanding = 0
                if status == "409":
                    log.info("pull request ended", durable=self.durable, reason=msg.headers.get("Description"))
        else:
            if not self._queue:
                self._oldest = asyncio.get_running_loop().time()
            self._queue.append(msg)
            self._outstanding -= 1
        self._arrived.set()

    def wake(self) -> None:
        self._arrived.set()

    async def next_batch(self, stopping: asyncio.Event) -> list[Msg]:
        """Wait for a message (or a stop), then take what has arrived, up to the batch size."""
        loop = asyncio.get_running_loop()
        while not self._queue:
            await self._ask()
            self._arrived.clear()
            if self._queue:
                break
            if stopping.is_set():
                return []
            if not await self._arrival_by(self._deadline + _EXPIRY_GRACE_SECONDS):
                self._outstanding = 0  # its expiry never came (lost in a reconnect): ask again
        await self._rest_of_burst()
        if self._linger:
            await self._linger_for_more(stopping)
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._batch_size))]
        if self._queue:  # left over from a full batch: their linger counts from now (arrivals not kept)
            self._oldest = loop.time()
        if not stopping.is_set():
            await self._ask()  # the next batch travels while this one is handled
        return batch

    async def _rest_of_burst(self) -> None:
        """Let in the messages already stored behind the last one (each delivery says how many
        wait); a lone message goes at once."""
        deadline = None
        while len(self._queue) < self._batch_size and self._outstanding > 0:
            if not self._queue[-1].metadata.num_pending:
                return
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + _BURST_WAIT_SECONDS
            self._arrived.clear()
            if not await self._arrival_by(deadline):
                return

    async def _linger_for_more(self, stopping: asyncio.Event) -> None:
        """Wait until the batch is full, its oldest message has waited ``linger`` seconds, or a stop."""
        deadline = self._oldest + self._linger
        while len(self._queue) < self._batch_size and not stopping.is_set():
            self._arrived.clear()
            await self._ask()  # the open request may be used up
            if len(self._queue) >= self._batch_size:
                return
            if not await self._arrival_by(deadline):
                return

    async def _arrival_by(self, deadline: float) -> bool:
        """Wait for a delivery (``_arrived`` cleared by the caller) until ``deadline`` (event loop
        time); false when it passed first."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._arrived.wait()
        except TimeoutError:
            return False
        return True

    async def _ask(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._outstanding > 0 and now < self._deadline + _EXPIRY_GRACE_SECONDS:
            return
        self._outstanding = self._batch_size
        self._deadline = now + self._expires
        await self._nc.publish(self._subject, self._request, reply=self._inbox)

    async def close(self) -> list[Msg]:
        """Stop the deliveries; returns the messages delivered but not taken yet."""
        if self._sub is not None:
            try:
                # Unsubscribe, then a round trip: everything the server sent before it is queued.
                await asyncio.wait_for(self._sub.drain(), 2.0)
            except Exception:  # noqa: BLE001 - the connection may be closing: drop the interest at least
                with contextlib.suppress(Exception):
                    await self._sub.unsubscribe()
            self._sub = None
        leftovers = list(self._queue)
        self._queue.clear()
        return leftovers


@dataclass
class _Part:
    messages: Sequence[Msg]
    done: asyncio.Future[None]


class CoalescingHandler:
    """One handler call for the batches that several loops of a replica hand in at the same moment.

    A replica holding several partitions runs one loop per partition; at a moderate rate each
    brings a batch of one or two messages, and each batch paid a whole transaction (its
    statements, its commit's WAL flush), its statements interleaved on the event loop with the
    other loops' work while PostgreSQL kept its transaction open. Here the calls run one at a
    time, and the batches handed in while one runs go together in the next (up to ``limit``
    messages; a batch is never split): the same work in fewer, shorter transactions. Each loop
    still has one batch in flight at a time, so a partition's messages are still applied in order.
    The price: no two batches of the replica overlap, so a slow one holds up the others, and a
    handler whose batches are mostly PostgreSQL work loses the overlap (segment's live path at 1M
    persons applied half as many updates a second; two calls at a time lost the latency gain:
    docs/benchmarks.md). Consumers opt in (``ConsumerSpec.coalesce``).

    A combined call that fails is run again batch by batch, so each loop learns of a failure
    only if its own batch fails alone (and then retries it message by message as usual).
    """

    def __init__(self, handler: Handler, limit: int) -> None:
        self._handler = handler
        self._limit = limit
        self._waiting: deque[_Part] = deque()
        self._turn = asyncio.Lock()

    async def __call__(self, messages: Sequence[Msg]) -> None:
        part = _Part(messages, asyncio.get_running_loop().create_future())
        self._waiting.append(part)
        while part in self._waiting:  # else taken by a call before (still running if its driver was cancelled)
            async with self._turn:
                if part not in self._waiting:
                    break
                parts = [self._waiting.popleft()]
                taken = len(parts[0].messages)
                while self._waiting and taken + len(self._waiting[0].messages) <= self._limit:
                    taken += len(self._waiting[0].messages)
                    parts.append(self._waiting.popleft())
                # Shielded: a loop cancelled meanwhile must not take the others' batches with it.
                await asyncio.shield(asyncio.ensure_future(self._run(parts)))
        await part.done

    async def _run(self, parts: list[_Part]) -> None:
        try:
            await self._handler([message for part in parts for message in part.messages])
        except Exception as exc:  # noqa: BLE001 - attributed to the batch that fails alone
            if len(parts) == 1:
                parts[0].done.set_exception(exc)
                return
            for part in parts:
                try:
                    await self._handler(part.messages)
                except Exception as alone:  # noqa: BLE001
                    part.done.set_exception(alone)
                else:
                    part.done.set_result(None)
            return
        for part in parts:
            part.done.set_result(None)


class ConsumerLoop:
    """Runs one durable pull consumer until :meth:`stop` is called.

    With a partitioned spec it runs a :class:`cdpkit.partitions.PartitionedConsumer` instead,
    which starts one ``ConsumerLoop`` per leased partition (``partition=N``).
    """

    def __init__(
        self,
        js: JetStreamContext,
        names: BusNames,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        partition: int | None = None,
    ) -> None:
        self._js = js
        self._names = names
        self._spec = spec
        self._handler = handler
        self._partition = partition
        self._stopping = asyncio.Event()
        self._puller: _Puller | None = None
        self._group = None
        self._hold_seconds = 0.0
        # The logical name (metrics, logs, dead-letter subject) is the same for every partition.
        self.name = spec.durable
        self.durable = spec.durable if partition is None else f"{spec.durable}-p{partition}"
        self._acked = CONSUMER_MESSAGES.labels(self.name, "acked")
        self._batch_seconds = CONSUMER_BATCH_SECONDS.labels(self.name)

    async def setup(self) -> None:
        """Create (or update) the durable consumer and open the inbox its messages come to."""
        stream = self._names.stream(self._spec.stream)
        if self._partition is not None:
            filter_subject = self._names.subject(self._spec.stream, self._partition)
        else:
            filter_subject = self._spec.filter_subject or self._names.all_subjects(self._spec.stream)
        config = ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._spec.ack_wait_seconds,
            # We dead-letter ourselves after max_deliver; the server must never silently give up.
            max_deliver=-1,
            max_ack_pending=max(1000, self._spec.batch_size * 20),
            filter_subject=filter_subject,
        )
        info = await self._js.add_consumer(stream, config)
        if self._partition is not None and info.num_ack_pending:
            # A replica that held this partition died with messages in flight. JetStream hands
            # them out again first once their ack wait ends; fetching before that would apply
            # newer events of the same persons ahead of them. So wait out one ack wait.
            self._hold_seconds = self._spec.ack_wait_seconds
            log.info(
                "partition taken over with messages in flight, waiting for their redelivery",
                consumer=self.name,
                partition=self._partition,
                in_flight=info.num_ack_pending,
                wait_seconds=self._hold_seconds,
            )
        self._puller = _Puller(
            connection_of(self._js),
            stream,
            self.durable,
            self._spec.batch_size,
            self._spec.fetch_timeout_seconds,
            self._spec.linger_seconds,
        )
        await self._puller.open()

    @property
    def spec(self) -> ConsumerSpec:
        return self._spec

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
        if self._puller is not None:
            self._puller.wake()
        if self._group is not None:
            self._group.stop()

    async def run(self) -> None:
        if self._spec.partitioned and self._partition is None:
            from cdpkit.partitions import PartitionedConsumer  # the group runs ConsumerLoops itself

            if self._group is None:
                self._group = PartitionedConsumer(self._js, self._names, self._spec, self._handler)
            if self._stopping.is_set():
                self._group.stop()
            await self._group.run()
            return
        if self._puller is None:
            await self.setup()
        puller = self._puller
        assert puller is not None
        try:
            if self._hold_seconds:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._hold_seconds)
                self._hold_seconds = 0.0
            log.info("consumer started", consumer=self.name, durable=self.durable)
            while not self._stopping.is_set():
                try:
                    messages = await puller.next_batch(self._stopping)
                except nats.errors.ConnectionClosedError:
                    break
                except Exception as exc:  # noqa: BLE001 - keep consuming through NATS hiccups
                    log.warning("fetch failed", consumer=self.name, error=str(exc))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
                    continue
                if messages:
                    await self.process(messages)
        finally:
            self._puller = None
            await self._finish(puller)

    async def _finish(self, puller: _Puller) -> None:
        """Stop the deliveries, then handle what was delivered before that (so nothing stays
        pending for the next owner of this consumer, who would otherwise wait out an ack wait)."""
        leftovers = await puller.close()
        task = asyncio.current_task()
        if leftovers and not (task is not None and task.cancelling()):
            try:
                for start in range(0, len(leftovers), self._spec.batch_size):
                    await self.process(leftovers[start : start + self._spec.batch_size])
            except nats.errors.Error as exc:  # the connection is closing: JetStream redelivers them
                log.warning("delivered messages left unacked at stop", consumer=self.name, error=str(exc))
        log.info("consumer stopped", consumer=self.name, durable=self.durable, handled_at_stop=len(leftovers))

    async def process(self, messages: Sequence[Msg]) -> None:
        started = time.perf_counter()
        try:
            await self._handler(messages)
        except Exception as exc:  # noqa: BLE001 - isolate the failing message below
            if len(messages) == 1:
                await self._fail(messages[0], exc)
            else:
                log.warning("batch failed, retrying one by one", consumer=self.name, size=len(messages), error=str(exc))
                for message in messages:
                    await self._process_one(message)
        else:
            for message in messages:
                await message.ack()
            self._acked.inc(len(messages))
        self._batch_seconds.observe(time.perf_counter() - started)

    async def _process_one(self, message: Msg) -> None:
        try:
            await self._handler([message])
        except Exception as exc:  # noqa: BLE001
            await self._fail(message, exc)
        else:
            await message.ack()
            self._acked.inc()

    async def _fail(self, message: Msg, exc: Exception) -> None:
        deliveries = message.metadata.num_delivered
        permanent = isinstance(exc, PermanentError)
        if permanent or deliveries >= self._spec.max_deliver:
            await self._dead_letter(message, exc, deliveries)
            return
        delay = self._spec.backoff_seconds[min(deliveries - 1, len(self._spec.backoff_seconds) - 1)]
        log.warning(
            "message failed, will retry",
            consumer=self.name,
            subject=message.subject,
            deliveries=deliveries,
            retry_in=delay,
            error=f"{type(exc).__name__}: {exc}",
        )
        await message.nak(delay=delay)
        CONSUMER_MESSAGES.labels(self.name, "nakked").inc()

    async def _dead_letter(self, message: Msg, exc: Exception, deliveries: int) -> None:
        meta = message.metadata
        reason = _header_safe(f"{type(exc).__name__}: {exc}")
        headers = {
            "Nats-Msg-Id": f"{meta.stream}:{meta.sequence.stream}",
            "Cdp-Dlq-Reason": reason,
            "Cdp-Dlq-Consumer": self.name,
            "Cdp-Dlq-Stream": meta.stream,
            "Cdp-Dlq-Subject": message.subject,
            "Cdp-Dlq-Deliveries": str(deliveries),
            "Cdp-Dlq-Stream-Seq": str(meta.sequence.stream),
        }
        for key, value in (message.headers or {}).items():
            if key == "Nats-Msg-Id":
                headers["Cdp-Original-Msg-Id"] = value
            elif not key.startswith("Nats-"):
                headers.setdefault(key, value)
        await self._js.publish(self._names.dlq_subject(self.name), message.data, headers=headers)
        await message.term()
        CONSUMER_MESSAGES.labels(self.name, "dead_lettered").inc()
        log.error(
            "message dead-lettered",
            consumer=self.name,
            subject=message.subject,
            deliveries=deliveries,
            reason=reason,
        )
