"""Identity resolution throughput and latency at 100k and 1M existing identifiers.

Starts PostgreSQL (durable settings, as `cdp up` does) and NATS on free ports, migrates the
identity schema, loads N existing identifiers (N/3 persons, each with a user_id, an
anonymous_id and a phone stored as keyed hash + AES-GCM) with COPY, then measures:

- throughput: identifiers resolved per second by ``IdentityService.resolve`` (what the raw-event
  consumer calls, one transaction per batch) in batches of 100 events x 3 identifiers, with 2
  concurrent resolvers, for three mixes:
  * known: all 3 identifiers exist (the steady state of returning shoppers; no lock taken),
  * attach: 2 known + 1 new identifier per event (a new device: lock, insert, outbox),
  * new: 3 new identifiers per event (new shoppers: a person created per event);
- single Resolve latency over gRPC (the identity service in its own process): p50 / p99 for a
  known set of 3 and for a set that attaches a new identifier.

    python -m bench identity [--sizes 100000,1000000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc

from bench.report import load_average, machine, print_rows
from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_devstack.infra import NatsServer, PostgresServer, free_port
from cdp_identity import __main__ as identity_main
from cdp_identity.rules import DEFAULT_RULES, Identifier
from cdp_identity.service import IdentityService, ResolveItem
from cdpkit.bus import BusNames
from cdpkit.db import create_pool
from cdpkit.ids import new_id
from cdpkit.migrate import migrate
from cdpkit.pii import PiiVault, new_key

WS = "bench"
WARM_UP = 500  # calls before measuring (connections, caches, the process's first seconds)


def _phone(n: int) -> str:
    return f"+86139{n:08d}"


def _known(n: int) -> tuple[Identifier, ...]:
    return (Identifier("user_id", f"u{n}"), Identifier("anonymous_id", f"a{n}"), Identifier("phone", _phone(n)))


async def _load(dsn: str, service: IdentityService, vault: PiiVault, persons: int) -> None:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "identity"})
    try:
        chunk = 50_000
        for start in range(0, persons, chunk):
            ids = [new_id() for _ in range(start, min(persons, start + chunk))]
            await conn.copy_records_to_table(
                "persons", records=[(WS, pid) for pid in ids], columns=["workspace_id", "person_id"]
            )
            rows = []
            for offset, pid in enumerate(ids):
                n = start + offset
                for identifier in _known(n):
                    key = service.key_of(WS, DEFAULT_RULES, identifier)
                    sealed = vault.seal(identifier.value, context=f"{WS}/phone") if identifier.type == "phone" else None
                    rows.append((WS, key[0], key[1], sealed, pid, pid, f"load-{n}", f"new:{key[0]}@v0"))
            await conn.copy_records_to_table(
                "identifiers",
                records=rows,
                columns=[
                    "workspace_id",
                    "id_type",
                    "id_value",
                    "sealed",
                    "person_id",
                    "origin_person_id",
                    "source_message_id",
                    "rule",
                ],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _throughput(service: IdentityService, persons: int, mix: str, seconds: float, workers: int) -> float:
    counter = iter(range(10**9))
    run = new_id()[-12:]  # fresh new identifiers and message ids on every run
    done = 0
    stop_at = time.perf_counter() + seconds

    def batch() -> list[ResolveItem]:
        items = []
        for _ in range(100):
            k = next(counter)
            n = (k * 7919) % persons
            if mix == "known":
                identifiers = _known(n)
            elif mix == "attach":
                identifiers = (*_known(n)[:2], Identifier("device_id", f"dev-{run}-{k}"))
            else:
                identifiers = (
                    Identifier("user_id", f"new-u{run}-{k}"),
                    Identifier("anonymous_id", f"new-a{run}-{k}"),
                    Identifier("email", f"{run}.{k}@new.example.com"),
                )
            items.append(ResolveItem(WS, identifiers, f"{mix}-{run}-{k}"))
        return items

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await service.resolve(batch())
            done += 300

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.perf_counter() - started)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _latency(port: int, persons: int, calls: int) -> dict[str, tuple[float, float]]:
    results = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        for mix in ("known", "attach"):
            latencies = []
            for k in range(calls + WARM_UP):
                n = (k * 104729 + 17) % persons
                pairs = [(i.type, i.value) for i in _known(n)]
                if mix == "attach":
                    pairs[2] = ("device_id", f"lat-{k}")
                request = identity_pb2.ResolveIdentitiesRequest(
                    parent=f"workspaces/{WS}",
                    sets=[
                        identity_pb2.IdentifierSet(
                            identifiers=[events_pb2.Identifier(type=t, value=v) for t, v in pairs]
                        )
                    ],
                )
                t0 = time.perf_counter()
                await stub.ResolveIdentities(request)
                if k >= WARM_UP:
                    latencies.append((time.perf_counter() - t0) * 1000)
            results[mix] = (statistics.median(latencies), _percentile(latencies, 0.99))
    return results


async def _run_size(dsn: str, nats_url: str, size: int, seconds: float, workers: int) -> list[tuple[str, str]]:
    keys = f"b1:{new_key()}"
    hash_key = new_key()
    vault = PiiVault.from_config(keys, hash_key)
    await migrate(dsn, identity_main.SCHEMA, identity_main.MIGRATIONS)
    pool = await create_pool(dsn, identity_main.SCHEMA, application_name="bench", max_size=workers + 2)
    service = IdentityService(pool, BusNames("bench"), vault)
    persons = size // 3
    t0 = time.perf_counter()
    await _load(dsn, service, vault, persons)
    load_seconds = time.perf_counter() - t0
    rows = [(f"{size:,} identifiers: load (COPY)", f"{load_seconds:.1f} s")]
    for mix in ("known", "attach", "new"):
        rate = await _throughput(service, persons, mix, seconds, workers)
        rows.append((f"{size:,}: resolve, batches of 100 x 3 ids, {mix}, {workers} workers", f"{rate:,.0f} ids/s"))
    await pool.close()

    port = free_port()
    env = {
        **os.environ,
        "CDP_DATABASE_URL": dsn,
        "CDP_NATS_URL": nats_url,
        "CDP_BUS_PREFIX": "bench",
        "CDP_PII_KEYS": keys,
        "CDP_PII_HASH_KEY": hash_key,
        "CDP_IDENTITY_GRPC_PORT": str(port),
        "CDP_IDENTITY_METRICS_PORT": "0",
        "CDP_LOG_LEVEL": "warning",
        "CDP_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-m", "cdp_identity", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    await asyncio.wait_for(channel.channel_ready(), 1)
                break
            except (TimeoutError, grpc.aio.AioRpcError):
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError("identity service did not start") from None
        await asyncio.sleep(3)  # let the service finish starting (consumers, streams, first readiness round)
        latency = await _latency(port, persons, 2000)
    finally:
        process.terminate()
        process.wait(30)
    for mix, (p50, p99) in latency.items():
        rows.append((f"{size:,}: single Resolve over gRPC ({mix} set of 3), p50 / p99", f"{p50:.2f} / {p99:.2f} ms"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench identity")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    args, _ = parser.parse_known_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="cdp-bench-identity-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg", free_port())
        nats_server = NatsServer(Path(tmp) / "nats", free_port(), free_port())
        postgres.start()
        nats_server.start()
        try:
            for n, size in enumerate(int(s) for s in args.sizes.split(",")):
                database = f"identity_{n}"
                postgres.create_database(database)
                rows += asyncio.run(
                    _run_size(postgres.dsn(database), nats_server.url, size, args.seconds, args.workers)
                )
        finally:
            nats_server.stop()
            postgres.stop()
    load = load_average()
    described = f"{machine()}, load average at the end {load}"
    print(f"\nidentity benchmark: {described}")
    print_rows(rows)


if __name__ == "__main__":
    main()
