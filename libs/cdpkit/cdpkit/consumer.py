"""Durable JetStream pull consumers with at-least-once, idempotent processing.

The loop fetches a batch, hands it to the handler (which applies it in one database
transaction and must be idempotent), and acks every message only after the handler returned,
i.e. after commit. When a batch fails, its messages are retried one by one so that one poison
message cannot hold the others back: a failing message is nak'ed with a growing delay and,
after ``max_deliver`` attempts (or at once for a :class:`PermanentError`), published to the
dead-letter subject ``{prefix}.dlq.{durable}`` with the reason in headers, then terminated.

On a partitioned stream (``{prefix}.raw.N`` ...) a spec made with :meth:`ConsumerSpec.tuned`
is *partitioned*: the loop then runs one durable consumer per partition (``{durable}-p{N}``)
for the partitions this replica holds a lease on, and replicas share the partitions out among
themselves (:mod:`cdpkit.partitions`). One partition is only ever consumed by one replica, one
batch at a time, so the events of one key (a person) are applied in order however many
replicas run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from cdpkit.bus import BusNames, StreamSpec
from cdpkit.config import CommonSettings
from cdpkit.metrics import CONSUMER_BATCH_SECONDS, CONSUMER_MESSAGES

log = structlog.get_logger(__name__)

Handler = Callable[[Sequence[Msg]], Awaitable[None]]
# How long a batch waits for messages beyond the first (those already stored come at once).
_MORE_TIMEOUT_SECONDS = 0.005


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
    # One durable per partition, partitions leased among replicas (see cdpkit.partitions).
    partitioned: bool = False
    lease_seconds: float = 10.0

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
        self._sub: JetStreamContext.PullSubscription | None = None
        self._group = None
        self._hold_seconds = 0.0
        # The logical name (metrics, logs, dead-letter subject) is the same for every partition.
        self.name = spec.durable
        self.durable = spec.durable if partition is None else f"{spec.durable}-p{partition}"

    async def setup(self) -> None:
        """Create (or update) the durable consumer and bind a pull subscription to it."""
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
        self._sub = await self._js.pull_subscribe_bind(durable=self.durable, stream=stream)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()
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
        if self._sub is None:
            await self.setup()
        assert self._sub is not None
        if self._hold_seconds:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self._hold_seconds)
            except TimeoutError:
                pass
            self._hold_seconds = 0.0
        log.info("consumer started", consumer=self.name, durable=self.durable)
        while not self._stopping.is_set():
            try:
                messages = await self._next_batch()
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.ConnectionClosedError:
                break
            except Exception as exc:  # noqa: BLE001 - keep consuming through NATS hiccups
                log.warning("fetch failed", consumer=self.name, error=str(exc))
                await asyncio.sleep(1)
                continue
            await self.process(messages)
        # Without this, draining the connection waits for the pending pull request to expire.
        try:
            await self._sub.unsubscribe()
        except Exception:  # noqa: BLE001 - the connection may already be closing
            pass
        self._sub = None
        log.info("consumer stopped", consumer=self.name, durable=self.durable)

    async def _next_batch(self) -> list[Msg]:
        """Wait for one message, then take whatever else is already there (up to the batch size).

        nats-py's ``fetch(n)`` on an idle consumer sends a lingering pull for n messages and holds
        the first one until n have arrived or the timeout passes: at a trickle, every message would
        wait up to ``fetch_timeout_seconds``. Asking for one first, then for the rest without
        lingering (a short timeout), keeps a lone message's wait to a round trip.
        """
        messages = await self._sub.fetch(1, timeout=self._spec.fetch_timeout_seconds)
        if self._spec.batch_size > 1:
            try:
                messages += await self._sub.fetch(self._spec.batch_size - 1, timeout=_MORE_TIMEOUT_SECONDS)
            except (TimeoutError, nats.errors.TimeoutError):
                pass
        return messages

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
            CONSUMER_MESSAGES.labels(self.name, "acked").inc(len(messages))
        CONSUMER_BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    async def _process_one(self, message: Msg) -> None:
        try:
            await self._handler([message])
        except Exception as exc:  # noqa: BLE001
            await self._fail(message, exc)
        else:
            await message.ack()
            CONSUMER_MESSAGES.labels(self.name, "acked").inc()

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
