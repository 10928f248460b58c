"""Partitioned consumers: replicas share a stream's partitions, each partition in order.

Subjects of the event streams are partitioned by a hash of their key (``{prefix}.raw.N`` by
anonymous/user id, ``{prefix}.resolved.N`` and ``{prefix}.profile.N`` by person id). Every
partition has its own durable consumer (``{durable}-p{N}``), and at any moment at most one
replica of a service consumes it, one batch at a time, so the events of one key are applied
in the order they were published however many replicas run.

Who consumes what is settled in a NATS KV bucket per consumer (``{PREFIX}_LEASES_{durable}``,
its TTL = ``CDP_CONSUMER_LEASE_SECONDS``):

- every replica heartbeats ``m.{member}`` every third of the TTL; the live members are the
  keys that have not expired;
- every replica computes the same balanced assignment of partitions to the live members
  (:func:`assign`: rendezvous hashing capped at each member's fair share, so that a member
  joining or leaving moves few partitions);
- a replica consumes a partition only while it holds the lease ``p.{N}`` (created atomically,
  renewed with compare-and-set on its revision). It releases a partition the assignment gives
  to someone else only after its current batch is acked; the new owner gets the lease on its
  next heartbeat. A replica that dies stops renewing; its leases expire after the TTL, and the
  new owner waits for the dead one's unacked messages to be redelivered (one ack wait) before
  fetching anything newer (see ``ConsumerLoop.setup``).

The leases live in NATS, next to the consumers they guard: a replica cut off from NATS can
neither renew a lease nor fetch nor ack, so it cannot keep consuming a partition it lost.
A replica that cannot renew for two thirds of the TTL stops its partitions by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from cdpkit.bus import BusNames
from cdpkit.metrics import CONSUMER_PARTITIONS

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_instances = itertools.count()


def assign(partitions: int, members: Sequence[str]) -> dict[str, list[int]]:
    """A balanced, deterministic assignment of ``range(partitions)`` to ``members``.

    Every partition goes to exactly one member; member loads differ by at most one; the result
    depends only on the set of members (every replica computes the same); and adding or
    removing a member moves only a few partitions (rendezvous hashing, each member capped
    at its fair share).
    """
    unique = sorted(set(members))
    if not unique:
        return {}
    base, extra = divmod(partitions, len(unique))
    owned: dict[str, list[int]] = {member: [] for member in unique}
    for partition in range(partitions):
        ranked = sorted(unique, key=lambda member: _score(partition, member), reverse=True)
        for member in ranked:
            load = len(owned[member])
            if load < base or (load == base and extra > 0):
                if load == base:
                    extra -= 1  # this member takes one of the partitions - members * base left over
                owned[member].append(partition)
                break
    return owned


def _score(partition: int, member: str) -> int:
    digest = hashlib.blake2b(f"{partition}:{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def default_member_id() -> str:
    """``{hostname}-{pid}-{n}``: unique among live processes, and stable across restarts of a
    container (same pod name, PID 1), so a restarted replica takes its own leases back at once."""
    return f"{socket.gethostname()}-{os.getpid()}-{next(_instances)}"


def bucket_name(names: BusNames, durable: str) -> str:
    return _UNSAFE.sub("_", f"{names.stream_prefix}_LEASES_{durable}")


@dataclass
class _Lease:
    partition: int
    revision: int
    renewed_at: float
    loop: object  # ConsumerLoop
    task: asyncio.Task[None]
    releasing: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PartitionedConsumer:
    """Consumes the partitions of one stream that this replica holds leases on (a Worker)."""

    def __init__(
        self,
        js: JetStreamContext,
        names: BusNames,
        spec,  # cdpkit.consumer.ConsumerSpec (partitioned)
        handler,
        *,
        member_id: str | None = None,
    ) -> None:
        self._js = js
        self._names = names
        self._spec = spec
        from cdpkit.consumer import CoalescingHandler  # consumer imports this module lazily too

        # The partitions held here may share one handler: what they bring at once, one call.
        self._handler = CoalescingHandler(handler, spec.batch_size) if spec.coalesce else handler
        self.member = _UNSAFE.sub("_", member_id or default_member_id())
        self.name = spec.durable
        self._ttl = spec.lease_seconds
        self._interval = spec.lease_seconds / 3
        self._kv: KeyValue | None = None
        self._leases: dict[int, _Lease] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    # What this replica holds (for tests and metrics)

    @property
    def partitions(self) -> list[int]:
        return sorted(p for p, lease in self._leases.items() if lease.releasing is None)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        self._kv = await self._bucket()
        log.info(
            "partitioned consumer started", consumer=self.name, member=self.member, partitions=self._names.partitions
        )
        try:
            while not self._stopping.is_set():
                try:
                    await self._tick()
                except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                    log.warning("partition leases not renewed", consumer=self.name, error=str(exc))
                self._drop_stale()
                self._publish_metric()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
        finally:
            await self._leave()

    # One heartbeat: announce ourselves, renew, release what is no longer ours, claim what is

    async def _tick(self) -> None:
        kv = self._kv
        assert kv is not None
        await kv.put(f"m.{self.member}", str(time.time()).encode())
        members = await self._members()
        members.add(self.member)
        desired = set(assign(self._names.partitions, sorted(members)).get(self.member, []))
        for partition, lease in list(self._leases.items()):
            if not await self._renew(lease):
                continue
            if partition not in desired and lease.releasing is None:
                lease.releasing = asyncio.create_task(self._release(lease), name=f"{self.name}-release-{partition}")
        for partition in sorted(desired - set(self._leases)):
            if self._stopping.is_set():
                return
            await self._acquire(partition)

    async def _members(self) -> set[str]:
        assert self._kv is not None
        try:
            keys = await self._kv.keys()
        except nats.js.errors.NoKeysError:
            return set()
        return {key[2:] for key in keys if key.startswith("m.")}

    async def _renew(self, lease: _Lease) -> bool:
        assert self._kv is not None
        async with lease.lock:
            if self._leases.get(lease.partition) is not lease:
                return False  # released or lost meanwhile
            try:
                lease.revision = await self._kv.update(
                    f"p.{lease.partition}", self.member.encode(), last=lease.revision
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                # It expired and someone else holds it now: stop at once, release nothing.
                log.warning("partition lease lost", consumer=self.name, partition=lease.partition, member=self.member)
                self._forget(lease)
                return False
            lease.renewed_at = time.monotonic()
            return True

    async def _acquire(self, partition: int) -> None:
        assert self._kv is not None
        key = f"p.{partition}"
        try:
            revision = await self._kv.create(key, self.member.encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            try:
                entry = await self._kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return  # expired in between: next heartbeat
            if (entry.value or b"").decode() != self.member:
                return  # someone else's until they release it or it expires
            # Ours from before a restart of this same member: take it back.
            try:
                revision = await self._kv.update(key, self.member.encode(), last=entry.revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                return
        from cdpkit.consumer import ConsumerLoop

        spec = replace(self._spec, partitioned=False)
        loop = ConsumerLoop(self._js, self._names, spec, self._handler, partition=partition)
        task = asyncio.create_task(self._run_partition(loop, partition), name=f"{self.name}-p{partition}")
        self._leases[partition] = _Lease(partition, revision, time.monotonic(), loop, task)
        log.info("partition acquired", consumer=self.name, partition=partition, member=self.member)

    async def _run_partition(self, loop, partition: int) -> None:
        delay = 0.5
        while True:
            try:
                await loop.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("partition consumer crashed, restarting", consumer=self.name, partition=partition)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                if loop.stopping:
                    return

    async def _stop_loop(self, lease: _Lease) -> None:
        lease.loop.stop()
        try:
            # The current batch finishes and is acked; bounded by the ack wait (after which
            # JetStream would redeliver anyway).
            await asyncio.wait_for(asyncio.shield(lease.task), timeout=self._spec.ack_wait_seconds)
        except TimeoutError:
            lease.task.cancel()
        except Exception:  # noqa: BLE001 - the loop's own failure is logged by it
            pass

    async def _release(self, lease: _Lease) -> None:
        """Hand a partition over: finish the batch, then delete the lease so the new owner can take it."""
        await self._stop_loop(lease)
        async with lease.lock:
            if self._leases.get(lease.partition) is not lease:
                return
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
                assert self._kv is not None
                await self._kv.delete(f"p.{lease.partition}", last=lease.revision)
            del self._leases[lease.partition]
        log.info("partition released", consumer=self.name, partition=lease.partition, member=self.member)

    def _forget(self, lease: _Lease) -> None:
        self._leases.pop(lease.partition, None)
        lease.loop.stop()

    def _drop_stale(self) -> None:
        """Stop partitions whose lease could not be renewed for 2/3 of the TTL: they may be another's soon."""
        limit = self._ttl * 2 / 3
        now = time.monotonic()
        for lease in list(self._leases.values()):
            if now - lease.renewed_at > limit:
                log.warning("partition lease stale, stopping it", consumer=self.name, partition=lease.partition)
                self._forget(lease)

    def _publish_metric(self) -> None:
        CONSUMER_PARTITIONS.labels(self.name).set(len(self.partitions))

    async def _leave(self) -> None:
        """Graceful stop: finish every batch, release every lease, leave the group."""
        for lease in list(self._leases.values()):
            if lease.releasing is None:
                lease.releasing = asyncio.create_task(self._release(lease))
        releasing = [lease.releasing for lease in self._leases.values() if lease.releasing is not None]
        if releasing:
            await asyncio.gather(*releasing, return_exceptions=True)
        if self._kv is not None:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
                await self._kv.delete(f"m.{self.member}")
        self._leases.clear()
        CONSUMER_PARTITIONS.labels(self.name).set(0)
        log.info("partitioned consumer stopped", consumer=self.name, member=self.member)

    async def _bucket(self) -> KeyValue:
        name = bucket_name(self._names, self.name)
        config = KeyValueConfig(
            bucket=name, history=1, ttl=self._ttl, storage=StorageType.FILE, replicas=self._names.replicas
        )
        try:
            return await self._js.create_key_value(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # exists with another configuration (another TTL)
                raise
            info = await self._js.stream_info(f"KV_{name}")
            await self._js.update_stream(replace(info.config, max_age=self._ttl, num_replicas=self._names.replicas))
            return await self._js.key_value(name)
