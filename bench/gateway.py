"""The gateway alone: HTTP ingest against a raw JetStream publish loop, and Customer 360 latency.

Starts PostgreSQL and NATS (as `cdp up` does) and the gateway process only, then measures on the
same machine, in the same run:

- raw: a nats-py loop publishing 100-event RawEventBatch chunks (the gateway's own message
  format and chunking) with ``Nats-Msg-Id``, 16 in flight, each acknowledged by JetStream:
  the ceiling of what any Python front end could forward;
- ingest: POST /v1/batch with 100 Segment-shape events per request, 16 concurrent keep-alive
  clients, each answer only after JetStream stored the events; and its ratio to raw.

Then it starts identity, profile, segment and campaign, loads a few hundred persons, and
measures GET /v1/workspaces/demo/persons/{id}/customer360 (four parts in parallel; two of them
answer "not implemented" until issues 5 and 6) sequentially: p50 / p99.

    python -m bench gateway [--events 100000] [--concurrency 16] [--persons 200] [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import nats

from bench.report import machine, print_rows
from cdp.events.v1 import events_pb2
from cdp_devstack.infra import free_port
from cdp_devstack.stack import Ports, Stack
from cdpkit.bus import RAW, BusNames, ensure_streams

CHUNK = 100


def _ports() -> Ports:
    names = ["postgres", "nats", "nats_monitor", "gateway_http", "gateway_grpc", "identity", "profile", "segment"]
    return Ports(**{n: free_port() for n in [*names, "campaign"]}, metrics_base=0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _message(batch: int, i: int, users: int) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "userId": f"user-{(batch * CHUNK + i) % users}",
        "anonymousId": f"anon-{(batch * CHUNK + i) % users}",
        "messageId": f"m-{batch}-{i}",
        "timestamp": "2026-06-18T10:00:00.000Z",
        "properties": {"sku": f"SKU-{i % 50}", "price": 1999, "currency": "CNY", "category": "outdoor"},
        "context": {"library": {"name": "bench", "version": "1"}, "ip": "10.0.0.1"},
    }


async def _raw_loop(nats_url: str, events: int, concurrency: int) -> float:
    """events/s of a plain nats-py JetStream publish loop: 100-event chunks, acked."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    names = BusNames("benchraw")
    await ensure_streams(js, names, (RAW,))
    template = events_pb2.RawEvent(workspace_id="demo", type=events_pb2.EVENT_TYPE_TRACK, event="Product Viewed")
    template.properties.update({"sku": "SKU-1", "price": 1999, "currency": "CNY", "category": "outdoor"})
    template.context.update({"library": {"name": "bench", "version": "1"}, "ip": "10.0.0.1"})
    chunks = events // CHUNK
    payloads = []
    for c in range(chunks):
        batch = events_pb2.RawEventBatch()
        for i in range(CHUNK):
            event = batch.events.add()
            event.CopyFrom(template)
            event.message_id, event.user_id = f"r-{c}-{i}", f"user-{i}"
        payloads.append(batch.SerializeToString())
    queue = iter(range(chunks))

    async def worker() -> None:
        for c in queue:
            await js.publish(names.subject(RAW, c % 4), payloads[c], headers={"Nats-Msg-Id": f"raw-{c}"})

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    await js.delete_stream(names.stream(RAW))
    await nc.close()
    return chunks * CHUNK / seconds


async def _http_ingest(base: str, write_key: str, events: int, concurrency: int, users: int) -> float:
    auth = {"Authorization": aiohttp.encode_basic_auth(write_key, ""), "Content-Type": "application/json"}
    bodies = [
        json.dumps({"batch": [_message(b, i, users) for i in range(CHUNK)], "sentAt": "2026-06-18T10:00:01Z"}).encode()
        for b in range(events // CHUNK)
    ]
    queue = iter(bodies)

    async def client(http: aiohttp.ClientSession) -> None:
        for body in queue:
            async with http.post("/v1/batch", data=body, headers=auth) as response:
                if response.status != 200:
                    raise RuntimeError(f"{response.status}: {await response.text()}")
                await response.read()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as http:
        async with http.post("/v1/batch", data=bodies[0], headers=auth) as warm:  # key cache, connections
            assert warm.status == 200, await warm.text()
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return (len(bodies) - 1) * CHUNK / seconds if len(bodies) > 1 else 0.0


async def _purge_raw(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    await nc.jetstream().purge_stream(BusNames("cdp").stream(RAW))
    await nc.close()


async def _customer360(base: str, write_key: str, secret_key: str, persons: int, calls: int) -> list[float]:
    writer = {"Authorization": aiohttp.encode_basic_auth(write_key, "")}
    reader = {"Authorization": f"Bearer {secret_key}"}
    async with aiohttp.ClientSession(base_url=base) as http:
        batch = [
            message
            for p in range(persons)
            for message in (
                {"type": "identify", "userId": f"p360-{p}", "traits": {"email": f"p{p}@shop.io", "tier": "gold"}},
                {"type": "track", "userId": f"p360-{p}", "event": "Order Completed", "properties": {"total": 100 * p}},
            )
        ]
        for start in range(0, len(batch), 500):
            async with http.post("/v1/batch", json={"batch": batch[start : start + 500]}, headers=writer) as r:
                assert r.status == 200, await r.text()
        ids: list[str] = []
        deadline = time.monotonic() + 120
        while len(ids) < persons and time.monotonic() < deadline:
            p = len(ids)
            params = {"identifierType": "user_id", "identifierValue": f"p360-{p}"}
            async with http.get("/v1/workspaces/demo/persons:lookup", params=params, headers=reader) as r:
                if r.status == 200:
                    ids.append((await r.json())["personId"])
                else:
                    await asyncio.sleep(0.1)
        for person in ids:  # every profile is stored before measuring
            while True:
                async with http.get(f"/v1/workspaces/demo/profiles/{person}", headers=reader) as r:
                    if r.status == 200 or time.monotonic() > deadline:
                        break
                await asyncio.sleep(0.1)
        latencies = []
        for call in range(calls):
            url = f"/v1/workspaces/demo/persons/{ids[call % len(ids)]}/customer360"
            t0 = time.perf_counter()
            async with http.get(url, headers=reader) as r:
                body = await r.read()
                assert r.status == 200, body
            latencies.append((time.perf_counter() - t0) * 1000)
        states = {p["part"]: p["state"] for p in json.loads(body)["parts"]}
        assert states["PART_PROFILE"] == states["PART_IDENTITIES"] == "STATE_OK", states
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench gateway")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--persons", type=int, default=200)
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternate raw and HTTP this many times; medians")
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="cdp-bench-") as tmp:
        log = open(Path(tmp) / "stack.log", "w")  # noqa: SIM115
        stack = Stack(Path(tmp) / "state", _ports(), log=log, extra_env={"CDP_LOG_LEVEL": "warning"})
        try:
            stack.start_infrastructure()
            stack.run_gateway_admin("create-workspace", "demo")
            write_key = stack.run_gateway_admin(
                "create-key", "demo", "--kind", "write", "--rate-limit", "10000000"
            ).split()[1]
            secret_key = stack.run_gateway_admin(
                "create-key", "demo", "--kind", "secret", "--scopes", "read", "--rate-limit", "10000000"
            ).split()[1]
            stack.start_component("gateway")
            stack.wait_serving(("gateway",))
            base = f"http://127.0.0.1:{stack.ports.gateway_http}"
            raw_rates, http_rates = [], []
            for _ in range(args.rounds):
                raw_rates.append(asyncio.run(_raw_loop(stack.nats_url, args.events, args.concurrency)))
                http_rates.append(asyncio.run(_http_ingest(base, write_key, args.events, args.concurrency, args.users)))
            asyncio.run(_purge_raw(stack.nats_url))  # the services need not digest the ingest rounds
            for name in ("identity", "profile", "segment", "campaign"):
                stack.start_component(name)
            stack.wait_serving()
            latencies = asyncio.run(_customer360(base, write_key, secret_key, args.persons, args.calls))
        finally:
            stack.stop()
            log.close()
    raw, http = statistics.median(raw_rates), statistics.median(http_rates)
    rows = [
        ("raw nats-py JetStream loop, 100-event chunks, acked (median)", f"{raw:,.0f} events/s"),
        ("HTTP /v1/batch ingest (100 events/request), acked after JetStream (median)", f"{http:,.0f} events/s"),
        ("  ratio HTTP / raw", f"{http / raw:.2f}"),
        (
            "  all rounds raw | HTTP",
            " ".join(f"{r:,.0f}" for r in raw_rates) + " | " + " ".join(f"{h:,.0f}" for h in http_rates),
        ),
        (
            "Customer 360 via HTTP, p50 / p99",
            f"{statistics.median(latencies):.2f} / {_percentile(latencies, 0.99):.2f} ms",
        ),
    ]
    print(
        f"\ngateway benchmark: {args.events:,} events x {args.rounds} rounds, {args.concurrency} concurrent; "
        f"{args.calls:,} Customer 360 calls over {args.persons} persons; "
        f"{machine()}"
    )
    print_rows(rows)


if __name__ == "__main__":
    main()
