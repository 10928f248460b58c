"""The runtime kit: outbox relay and consumer loop throughput, consumer latency, stop times.

Starts PostgreSQL (durable settings, as `cdp up` does) and NATS on free ports, then:

- relay: N outbox rows (default 20,000; ~1.2 KB payloads, 4 partition subjects, as profile's
  ProfileChanged) enqueued with the relays stopped, then 1 or 2 relays, each in its own process
  with its own pool and NATS connection, drain them; rows per second from "go" to an empty outbox
  with every message stored. Also 1 relay on sealed rows (AES-GCM, opened before publishing).
  After each run the stream is read back: every row stored once, in row order per subject.
  Also 1 relay with atomic batches forced (they are used by default on replicated streams only).
- relay latency: 200 transactions/s committing 1 or 5 rows each (a relay in this process):
  commit -> the message seen by a NATS subscriber.
- consumer: M messages (default 20,000, 300 bytes) stored on the 4 partitions first, then a
  ConsumerLoop drains them with a handler that only counts (the loop's own cost: fetch, hand
  over, ack); one durable over all partitions (batch 20), and the partitioned form services use
  (one durable per partition, leases). Messages per second from the first handled to the last.
- latency: 400 messages published one by one at 200/s while a loop waits; publish -> handler.
- stop: `ServiceRuntime.stop()` of the profile and the segment service, idle, started in this
  process after their partitioned consumers hold every partition.

    python -m bench kit [--rows 20000] [--messages 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nats
from google.protobuf import wrappers_pb2
from nats.js.api import AckPolicy, ConsumerConfig

from bench.report import load_average, machine, print_rows
from cdp_devstack.infra import NatsServer, PostgresServer, free_port
from cdpkit import db, logs
from cdpkit.bus import PROFILE, RAW, BusNames, ensure_streams
from cdpkit.consumer import ConsumerLoop, ConsumerSpec
from cdpkit.migrate import migrate
from cdpkit.outbox import OutboxRelay, enqueue_many
from cdpkit.pii import PiiVault, new_key

SCHEMA = "kitbench"
PARTITIONS = 4
FILLER = "x" * 1200


def _payload(i: int) -> bytes:
    return wrappers_pb2.StringValue(value=f"{i}:{FILLER}").SerializeToString()


# ------------------------------------------------------------------ relay (worker processes)


def _relay(pool, js, *, atomic: bool = False, **kwargs) -> OutboxRelay:
    # Only when asked: the code before atomic batches (measured for comparison) has no such option.
    if atomic:
        kwargs["atomic"] = True
    return OutboxRelay(pool, js, schema=SCHEMA, **kwargs)


async def _relay_worker(dsn: str, nats_url: str, keys: str | None, atomic: bool) -> None:
    """One relay process: connects, says "ready", relays after "go", stops on "stop"."""
    pool = await db.create_pool(dsn, SCHEMA, application_name="kit-bench-relay")
    nc = await nats.connect(nats_url)
    sealer = PiiVault.from_config(keys, new_key()) if keys else None
    relay = _relay(pool, nc.jetstream(), sealer=sealer, atomic=atomic)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    assert (await reader.readline()).strip() == b"go"
    cpu = time.process_time()
    task = asyncio.create_task(relay.run())
    assert (await reader.readline()).strip() == b"stop"
    relay.stop()
    await task
    print(json.dumps({"cpu": time.process_time() - cpu}), flush=True)
    await nc.close()
    await pool.close()


async def _enqueue(pool, names: BusNames, rows: int, sealer) -> None:
    async with pool.acquire() as conn:
        for start in range(0, rows, 1000):
            batch = [
                ("bench", names.subject(PROFILE, i % PARTITIONS), f"row-{i}", _payload(i))
                for i in range(start, min(rows, start + 1000))
            ]
            async with conn.transaction():
                await enqueue_many(conn, batch, sealer=sealer)


async def _read_back(js, stream: str, expected: int) -> tuple[int, bool]:
    """Messages stored, and whether every subject holds its rows in row order."""
    sub = await js.pull_subscribe(">", stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE))
    per_subject: dict[str, list[int]] = defaultdict(list)
    seen = 0
    try:
        while seen < expected:
            try:
                messages = await sub.fetch(1000, timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for message in messages:
                value = wrappers_pb2.StringValue.FromString(message.data).value
                per_subject[message.subject].append(int(value.split(":", 1)[0]))
                seen += 1
    finally:
        await sub.unsubscribe()
    ordered = all(values == sorted(values) for values in per_subject.values())
    return seen, ordered


async def _relay_run(
    dsn: str, nats_url: str, rows: int, relays: int, sealed: bool, run: str, atomic: bool = False
) -> tuple[str, str]:
    what = f"relay, {relays} relay{'s' if relays > 1 else ''}{', sealed rows' if sealed else ''}"
    what += f"{', atomic batches forced' if atomic else ''}: {rows:,} rows"
    if atomic and "atomic" not in inspect.signature(OutboxRelay).parameters:
        return what, "n/a (no atomic batches in this code)"
    prefix = f"kb{run}"
    names = BusNames(prefix, PARTITIONS)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, names, (PROFILE,))
    keys = f"k1:{new_key()}" if sealed else None
    pool = await db.create_pool(dsn, SCHEMA, application_name="kit-bench")
    try:
        await _enqueue(pool, names, rows, PiiVault.from_config(keys, new_key()) if keys else None)
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.kit",
                "--relay-worker",
                dsn,
                nats_url,
                keys or "",
                "1" if atomic else "",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(relays)
        ]
        for worker in workers:
            assert (await worker.stdout.readline()).strip() == b"ready"
        started = time.perf_counter()
        for worker in workers:
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        stream = names.stream(PROFILE)
        while True:
            async with pool.acquire() as conn:
                left = await conn.fetchval("SELECT count(*) FROM outbox")
            if left == 0 and (await js.stream_info(stream)).state.messages >= rows:
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        cpu = 0.0
        for worker in workers:
            worker.stdin.write(b"stop\n")
            await worker.stdin.drain()
            cpu += json.loads(await worker.stdout.readline())["cpu"]
            await worker.wait()
        stored, ordered = await _read_back(js, stream, rows)
        await js.delete_stream(stream)
    finally:
        await pool.close()
        await nc.close()
    check = "in order per subject" if ordered and stored == rows else f"CHECK FAILED: {stored} stored, order {ordered}"
    value = f"{rows / elapsed:,.0f} rows/s ({elapsed:.2f} s, relay CPU {cpu / rows * 1e6:.0f} µs/row, {check})"
    return what, value


async def _relay_latency_run(
    dsn: str, nats_url: str, rate: float, per_commit: int, count: int, run: str, atomic: bool = False
) -> tuple[str, str]:
    """``per_commit`` rows per transaction, ``rate`` transactions per second; commit -> message seen
    on NATS (the relay in this process)."""
    what = f"relay: {rate:g} commits/s of {per_commit} row{'s' if per_commit > 1 else ''}"
    what += f"{', atomic batches forced' if atomic else ''}, commit -> on NATS p50 / p99"
    if atomic and "atomic" not in inspect.signature(OutboxRelay).parameters:
        return what, "n/a (no atomic batches in this code)"
    names = BusNames(f"kr{run}", PARTITIONS)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, names, (PROFILE,))
    pool = await db.create_pool(dsn, SCHEMA, application_name="kit-bench-latency")
    latencies: list[float] = []
    done = asyncio.Event()

    async def seen(msg) -> None:
        latencies.append((time.perf_counter() - float(wrappers_pb2.StringValue.FromString(msg.data).value)) * 1000)
        if len(latencies) >= count * per_commit:
            done.set()

    sub = await nc.subscribe(names.all_subjects(PROFILE), cb=seen)
    relay = _relay(pool, js, atomic=atomic)
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(0.3)
        for i in range(count):
            async with pool.acquire() as conn, conn.transaction():
                payload = wrappers_pb2.StringValue(value=repr(time.perf_counter())).SerializeToString()
                rows = [
                    ("bench", names.subject(PROFILE, (i * per_commit + j) % PARTITIONS), f"lat-{i}-{j}", payload)
                    for j in range(per_commit)
                ]
                await enqueue_many(conn, rows)
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        relay.stop()
        await task
        await sub.unsubscribe()
        await js.delete_stream(names.stream(PROFILE))
        await pool.close()
        await nc.close()
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return what, f"{statistics.median(lat):.1f} / {p99:.1f} ms"


# ------------------------------------------------------------------ consumer loop


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()
        self.expected = 0
        self.latencies: list[float] = []

    async def __call__(self, messages) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first = now
        self.count += len(messages)
        self.last = now
        for message in messages:
            if message.headers and "Sent-At" in message.headers:
                self.latencies.append((now - float(message.headers["Sent-At"])) * 1000)
        if self.count >= self.expected:
            self.done.set()


async def _store_messages(js, names: BusNames, count: int) -> None:
    body = b"y" * 300
    for start in range(0, count, 500):
        futures = [
            js.publish(names.subject(RAW, i % PARTITIONS), body, headers={"Nats-Msg-Id": f"m{i}"})
            for i in range(start, min(count, start + 500))
        ]
        await asyncio.gather(*futures)


async def _consumer_run(nats_url: str, messages: int, partitioned: bool, run: str) -> tuple[str, str]:
    names = BusNames(f"kc{run}", PARTITIONS)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, names, (RAW,))
    await _store_messages(js, names, messages)
    handler = _Counter()
    handler.expected = messages
    spec = ConsumerSpec(durable="bench", stream=RAW, batch_size=20, partitioned=partitioned, lease_seconds=3.0)
    loop = ConsumerLoop(js, names, spec, handler)
    cpu = time.process_time()
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(handler.done.wait(), 300)
    finally:
        cpu = time.process_time() - cpu
        loop.stop()
        await asyncio.wait_for(task, 30)
        await js.delete_stream(names.stream(RAW))
        await nc.close()
    elapsed = handler.last - handler.first
    form = "partitioned (4 durables, leases)" if partitioned else "one durable"
    return (
        f"consumer loop, {form}, batch 20: {messages:,} stored messages",
        f"{messages / elapsed:,.0f} msgs/s (bench process CPU {cpu / messages * 1e6:.0f} µs/msg)",
    )


async def _latency_run(nats_url: str, rate: float, count: int, run: str) -> tuple[str, str]:
    names = BusNames(f"kl{run}", PARTITIONS)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, names, (RAW,))
    handler = _Counter()
    handler.expected = count
    loop = ConsumerLoop(js, names, ConsumerSpec(durable="lat", stream=RAW, batch_size=20), handler)
    await loop.setup()
    task = asyncio.create_task(loop.run())
    publisher = await nats.connect(nats_url)
    try:
        await asyncio.sleep(0.5)
        pjs = publisher.jetstream()
        for i in range(count):
            await pjs.publish(names.subject(RAW, i % PARTITIONS), b"z", headers={"Sent-At": repr(time.perf_counter())})
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(handler.done.wait(), 30)
    finally:
        loop.stop()
        await asyncio.wait_for(task, 30)
        await publisher.close()
        await js.delete_stream(names.stream(RAW))
        await nc.close()
    lat = sorted(handler.latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return (
        f"consumer loop, one durable: {rate:g} msgs/s, publish -> handler p50 / p99",
        f"{statistics.median(lat):.1f} / {p99:.1f} ms",
    )


# ------------------------------------------------------------------ service stop


async def _stop_run(dsn: str, nats_url: str, service: str, run: str) -> tuple[str, str]:
    from cdpkit.config import load

    if service == "profile":
        from cdp_profile import __main__ as main_module
    else:
        from cdp_segment import __main__ as main_module
    env = {
        "CDP_DATABASE_URL": dsn,
        "CDP_NATS_URL": nats_url,
        "CDP_BUS_PREFIX": f"ks{run}{service}",
        "CDP_PII_KEYS": f"k1:{new_key()}",
        "CDP_PII_HASH_KEY": new_key(),
        f"CDP_{service.upper()}_GRPC_PORT": "0",
        f"CDP_{service.upper()}_METRICS_PORT": "0",
        "CDP_LOG_LEVEL": "warning",
        "CDP_LOG_FORMAT": "json",
    }
    settings = load(main_module.Settings, env)
    await migrate(dsn, main_module.SCHEMA, main_module.MIGRATIONS)
    runtime = await main_module.bootstrap(settings)
    await runtime.start()
    deadline = time.monotonic() + 30
    groups = [w._group for w in runtime.workers if getattr(w, "_group", None) is not None]
    while time.monotonic() < deadline:
        groups = [w._group for w in runtime.workers if getattr(w, "_group", None) is not None]
        if groups and all(len(g.partitions) == g._names.partitions for g in groups):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # idle: every loop waiting in a fetch
    started = time.perf_counter()
    await runtime.stop()
    return f"{service} service: ServiceRuntime.stop(), idle", f"{(time.perf_counter() - started) * 1000:,.0f} ms"


# ------------------------------------------------------------------ main


async def _run(dsn: str, nats_url: str, rows: int, messages: int, rounds: int) -> list[tuple[str, str]]:
    empty = Path(tempfile.mkdtemp(prefix="kit-bench-migrations-"))
    await migrate(dsn, SCHEMA, empty)
    out: list[tuple[str, str]] = []
    for r in range(rounds):
        tag = f"{r}"
        out.append((f"round {r + 1}: load average (1 min) at its start", f"{os.getloadavg()[0]:.2f}"))
        out.append(await _relay_run(dsn, nats_url, rows, 1, False, f"{tag}a"))
        out.append(await _relay_run(dsn, nats_url, rows, 2, False, f"{tag}b"))
        out.append(await _relay_run(dsn, nats_url, rows, 1, True, f"{tag}c"))
        out.append(await _relay_run(dsn, nats_url, rows, 1, False, f"{tag}d", atomic=True))
        out.append(await _relay_latency_run(dsn, nats_url, 200, 1, 400, f"{tag}a"))
        out.append(await _relay_latency_run(dsn, nats_url, 200, 5, 400, f"{tag}b"))
        out.append(await _relay_latency_run(dsn, nats_url, 200, 5, 400, f"{tag}c", atomic=True))
        out.append(await _consumer_run(nats_url, messages, False, f"{tag}a"))
        out.append(await _consumer_run(nats_url, messages, True, f"{tag}b"))
        out.append(await _latency_run(nats_url, 200, 400, tag))
        out.append(await _stop_run(dsn, nats_url, "profile", tag))
        out.append(await _stop_run(dsn, nats_url, "segment", tag))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench kit")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--relay-worker", nargs=4, metavar=("DSN", "NATS", "KEYS", "ATOMIC"))
    args, _ = parser.parse_known_args()
    if args.relay_worker:
        dsn, nats_url, keys, atomic = args.relay_worker
        asyncio.run(_relay_worker(dsn, nats_url, keys or None, bool(atomic)))
        return
    logs.configure("bench", level="warning", fmt="json", stream=sys.stderr)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="cdp-bench-kit-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg", free_port())
        nats_server = NatsServer(Path(tmp) / "nats", free_port(), free_port())
        postgres.start()
        nats_server.start()
        try:
            postgres.create_database("kit")
            rows = asyncio.run(_run(postgres.dsn("kit"), nats_server.url, args.rows, args.messages, args.rounds))
        finally:
            nats_server.stop()
            postgres.stop()
    load = load_average()
    described = f"{machine()}, load average before {load_before}, after {load}"
    print(f"\nkit benchmark: {described}")
    print_rows(rows)


if __name__ == "__main__":
    main()
