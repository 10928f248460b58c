"""The thin slice on the local stack: HTTP ingest, end-to-end processing, profile reads.

Starts PostgreSQL (durable settings, as `cdp up` does), NATS and all five components on free
ports, then measures:

- ingest: events/s accepted by POST /v1/batch (100 events per batch, 8 concurrent clients),
  each answer only after JetStream stored the events;
- pipeline: events/s from the first request until profile stored every event
  (gateway -> identity -> profile, including identity resolution and profile updates);
- GetProfile latency over HTTP through the gateway and over gRPC straight to profile.

    python -m bench slice [--events 20000] [--users 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import grpc

from bench.report import machine, print_rows
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_devstack.infra import free_port
from cdp_devstack.stack import Ports, Stack


def _ports() -> Ports:
    names = [
        "postgres",
        "nats",
        "nats_monitor",
        "gateway_http",
        "gateway_grpc",
        "identity",
        "profile",
        "segment",
        "campaign",
    ]
    return Ports(**{n: free_port() for n in names}, metrics_base=0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(events: int, users: int, stack: Stack, write_key: str, secret_key: str) -> list[tuple[str, str]]:
    base = f"http://127.0.0.1:{stack.ports.gateway_http}"
    auth = {"Authorization": aiohttp.encode_basic_auth(write_key, "")}
    batches = [
        {
            "batch": [
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "userId": f"user-{(b * 100 + i) % users}",
                    "messageId": f"m-{b}-{i}",
                    "properties": {"sku": f"SKU-{i % 50}", "price": 1999},
                }
                for i in range(100)
            ]
        }
        for b in range(events // 100)
    ]
    queue: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            async with http.post("/v1/batch", json=batch, headers=auth) as response:
                assert response.status == 200, await response.text()

    conn = await asyncpg.connect(stack.database_url)
    async with aiohttp.ClientSession(base_url=base, connector=aiohttp.TCPConnector(limit=16)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(8)))
        ingest_seconds = time.perf_counter() - started
        while await conn.fetchval("SELECT count(*) FROM profile.events") < events:  # noqa: ASYNC110 - polling a table
            await asyncio.sleep(0.05)
        pipeline_seconds = time.perf_counter() - started

        person = await conn.fetchval("SELECT person_id::text FROM profile.profiles LIMIT 1")
        reader = {"Authorization": f"Bearer {secret_key}"}
        url = f"/v1/workspaces/demo/profiles/{person}"
        http_latency = []
        for _ in range(1000):
            t0 = time.perf_counter()
            async with http.get(url, headers=reader) as response:
                await response.read()
                assert response.status == 200
            http_latency.append((time.perf_counter() - t0) * 1000)
    await conn.close()

    grpc_latency = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.profile}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        request = profile_pb2.GetProfileRequest(name=f"workspaces/demo/profiles/{person}")
        for _ in range(1000):
            t0 = time.perf_counter()
            await stub.GetProfile(request)
            grpc_latency.append((time.perf_counter() - t0) * 1000)

    return [
        ("HTTP /v1/batch ingest, acked after JetStream", f"{events / ingest_seconds:,.0f} events/s"),
        ("pipeline: request -> stored in profile", f"{events / pipeline_seconds:,.0f} events/s"),
        (
            "GetProfile via gateway HTTP, p50 / p99",
            f"{statistics.median(http_latency):.2f} / {_percentile(http_latency, 0.99):.2f} ms",
        ),
        (
            "GetProfile gRPC direct, p50 / p99",
            f"{statistics.median(grpc_latency):.2f} / {_percentile(grpc_latency, 0.99):.2f} ms",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench slice")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="cdp-bench-") as tmp:
        log = open(Path(tmp) / "stack.log", "w")  # noqa: SIM115
        stack = Stack(Path(tmp) / "state", _ports(), log=log, extra_env={"CDP_LOG_LEVEL": "warning"})
        try:
            stack.start_infrastructure()
            stack.start_components()
            stack.run_gateway_admin(
                "dev-workspace", "demo", "--write-key-file", f"{tmp}/wk", "--secret-key-file", f"{tmp}/sk"
            )
            stack.wait_serving()
            rows = asyncio.run(
                _run(
                    args.events,
                    args.users,
                    stack,
                    Path(f"{tmp}/wk").read_text().strip(),
                    Path(f"{tmp}/sk").read_text().strip(),
                )
            )
        finally:
            stack.stop()
            log.close()
    print(f"\nslice benchmark: {args.events:,} events, {args.users:,} users; {machine()}")
    print_rows(rows)


if __name__ == "__main__":
    main()
