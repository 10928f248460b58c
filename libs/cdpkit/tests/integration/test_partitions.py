"""Partitioned consumers on a real NATS JetStream: leases, rebalancing, hand-over, take-over, order."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace

import nats

from cdpkit.bus import RAW, BusNames, ensure_streams
from cdpkit.consumer import ConsumerSpec
from cdpkit.partitions import PartitionedConsumer, bucket_name

PARTITIONS = 4
LEASE = 1.5  # seconds: heartbeats every 0.5 s
ACK_WAIT = 4.0  # longer than the lease, as in production (30 s vs 10 s)


class Recorder:
    """A handler that records (member, subject, key, seq) and can be told to hang (a crash mid-batch)."""

    def __init__(self, member: str, seen: list, hang_on: set[bytes] | None = None) -> None:
        self.member = member
        self.seen = seen
        self.hang_on = hang_on or set()

    async def __call__(self, messages):
        for message in messages:
            if message.data in self.hang_on:
                await asyncio.Event().wait()  # never returns: this replica "dies" holding the batch
        for message in messages:
            key, seq = message.data.decode().split(":")
            self.seen.append((self.member, message.subject, key, int(seq)))


def spec() -> ConsumerSpec:
    return ConsumerSpec(
        durable="test-raw",
        stream=RAW,
        batch_size=5,
        ack_wait_seconds=ACK_WAIT,
        partitioned=True,
        lease_seconds=LEASE,
        fetch_timeout_seconds=0.3,
    )


async def eventually(condition, timeout: float = 15.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class Replica:
    def __init__(self, nc, names: BusNames, member: str, seen: list, hang_on=None) -> None:
        self.nc = nc
        self.consumer = PartitionedConsumer(
            nc.jetstream(), names, spec(), Recorder(member, seen, hang_on), member_id=member
        )
        self.task = asyncio.create_task(self.consumer.run())

    @property
    def partitions(self) -> list[int]:
        return self.consumer.partitions

    async def stop(self) -> None:
        self.consumer.stop()
        await asyncio.wait_for(self.task, 20)


async def publish(js, names: BusNames, keys: list[str], start: int, count: int) -> None:
    """``count`` messages per key, each key always on the partition of its hash (as the gateway does)."""
    for seq in range(start, start + count):
        for key in keys:
            await js.publish(names.partitioned(RAW, key), f"{key}:{seq}".encode())


def per_key(seen) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for _member, _subject, key, seq in seen:
        out[key].append(seq)
    return out


async def test_replicas_share_partitions_and_keep_each_key_in_order(nats_url, bus_prefix):
    names = BusNames(bus_prefix, PARTITIONS)
    admin = await nats.connect(nats_url)
    js = admin.jetstream()
    await ensure_streams(js, names)
    keys = [f"user-{i}" for i in range(12)]
    seen: list = []
    connections = [await nats.connect(nats_url) for _ in range(2)]
    try:
        a = Replica(connections[0], names, "a", seen)
        await eventually(lambda: a.partitions == [0, 1, 2, 3], what="a alone to hold every partition")
        await publish(js, names, keys, 0, 10)

        b = Replica(connections[1], names, "b", seen)
        await eventually(
            lambda: len(a.partitions) == 2 and len(b.partitions) == 2, what="a and b to hold two partitions each"
        )
        assert sorted(a.partitions + b.partitions) == [0, 1, 2, 3]
        await publish(js, names, keys, 10, 10)
        await eventually(lambda: len(seen) == 20 * len(keys), what="every message")

        # Each key in order, exactly once, although two replicas consumed and partitions moved.
        assert per_key(seen) == {key: list(range(20)) for key in keys}
        # Both replicas did work, each only on the partitions it held at the time.
        assert {member for member, *_ in seen} == {"a", "b"}
        for _member, subject, key, _seq in seen:
            assert subject == names.partitioned(RAW, key)
        after_b_joined = [(m, s) for m, s, _k, seq in seen if seq >= 10]
        for member, subject in after_b_joined:
            holder = a if member == "a" else b
            assert int(subject.rsplit(".", 1)[1]) in holder.partitions

        # Graceful stop hands b's partitions back to a at once (no lease expiry needed).
        await b.stop()
        await eventually(lambda: a.partitions == [0, 1, 2, 3], timeout=LEASE * 2, what="a to take b's partitions")
        await publish(js, names, keys, 20, 5)
        await eventually(lambda: len(seen) == 25 * len(keys), what="the last messages")
        assert per_key(seen) == {key: list(range(25)) for key in keys}
        await a.stop()

        kv = await js.key_value(bucket_name(names, "test-raw"))
        left = await kv.keys() if await _has_keys(kv) else []
        assert left == [], "a graceful stop leaves no lease and no membership behind"
    finally:
        for nc in connections:
            await nc.close()
        await admin.close()


async def _has_keys(kv) -> bool:
    try:
        await kv.keys()
    except nats.js.errors.NoKeysError:
        return False
    return True


async def test_a_dead_replicas_partitions_are_taken_over_and_its_batch_comes_first(nats_url, bus_prefix):
    names = BusNames(bus_prefix, PARTITIONS)
    admin = await nats.connect(nats_url)
    js = admin.jetstream()
    await ensure_streams(js, names)
    seen: list = []
    doomed_nc = await nats.connect(nats_url)
    survivor_nc = await nats.connect(nats_url)
    try:
        key = "shopper-1"
        poison = f"{key}:0".encode()
        doomed = Replica(doomed_nc, names, "doomed", seen, hang_on={poison})
        await eventually(lambda: doomed.partitions == [0, 1, 2, 3], what="the doomed replica to hold everything")
        await publish(js, names, [key], 0, 1)  # fetched by doomed, which hangs on it: never acked
        await asyncio.sleep(0.5)

        # The process dies: no release, no ack, its connection just goes away.
        doomed.task.cancel()
        await doomed_nc.close()
        survivor = Replica(survivor_nc, names, "survivor", seen)
        await publish(js, names, [key], 1, 3)  # newer events of the same shopper

        # The leases expire (TTL), the survivor takes every partition...
        await eventually(lambda: survivor.partitions == [0, 1, 2, 3], timeout=LEASE * 4, what="take-over")
        # ...and applies the dead replica's unacked message before the newer ones of that key.
        await eventually(lambda: len(seen) == 4, timeout=ACK_WAIT * 4, what="the four events")
        assert per_key(seen) == {key: [0, 1, 2, 3]}
        assert {member for member, *_ in seen} == {"survivor"}
        await survivor.stop()
    finally:
        await survivor_nc.close()
        if not doomed_nc.is_closed:
            await doomed_nc.close()
        await admin.close()


class CallRecorder:
    """Records the partitions of each handler call; the first call waits until released."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.seen: list = []
        self.release = asyncio.Event()

    async def __call__(self, messages):
        self.calls.append([message.subject for message in messages])
        if len(self.calls) == 1:
            await self.release.wait()
        for message in messages:
            key, seq = message.data.decode().split(":")
            self.seen.append(("a", message.subject, key, int(seq)))


async def _calls_of_one_replica(nats_url, bus_prefix, *, coalesce: bool) -> CallRecorder:
    names = BusNames(bus_prefix, PARTITIONS)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, names)
    keys = [f"user-{i}" for i in range(12)]  # every partition has some
    recorder = CallRecorder()
    consumer = PartitionedConsumer(js, names, replace(spec(), coalesce=coalesce), recorder, member_id="a")
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: consumer.partitions == [0, 1, 2, 3], what="one replica to hold every partition")
        await js.publish(names.partitioned(RAW, keys[0]), f"{keys[0]}:0".encode())
        await eventually(lambda: len(recorder.calls) == 1, what="the first call")
        await publish(js, names, keys[1:], 0, 1)  # while the first call runs, every partition gets some
        await asyncio.sleep(1.0)  # the partitions' loops fetch them and hand them in
        recorder.release.set()
        await publish(js, names, keys, 1, 3)
        await eventually(lambda: len(recorder.seen) == 4 * len(keys), what="every message")
        assert per_key(recorder.seen) == {key: list(range(4)) for key in keys}  # in order, once
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 20)
        await nc.close()
    return recorder


async def test_a_coalescing_replica_applies_its_partitions_batches_together(nats_url, bus_prefix):
    recorder = await _calls_of_one_replica(nats_url, bus_prefix, coalesce=True)
    # What the other partitions handed in while the first call ran went in one call.
    names = BusNames(bus_prefix, PARTITIONS)
    busy = names.partitioned(RAW, "user-0")
    others = {names.partitioned(RAW, f"user-{i}") for i in range(1, 12)} - {busy}
    assert len(others) >= 2
    assert set(recorder.calls[1]) == others, recorder.calls[:3]


async def test_without_coalescing_each_call_holds_one_partition(nats_url, bus_prefix):
    recorder = await _calls_of_one_replica(nats_url, bus_prefix, coalesce=False)
    assert all(len(set(subjects)) == 1 for subjects in recorder.calls), recorder.calls
