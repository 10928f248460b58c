"""Campaign delivery: sends per second through the dev sink, and trigger -> send latency.

Starts PostgreSQL (durable settings) and NATS on free ports, the campaign service as its own
process (e-mail through the dev sink: a JSONL file), and a stand-in for the profile service's
GetProfile (real gRPC, in this process: campaign's own throughput is measured, not profile's;
the whole chain is bench/slice's). A journey "event Checkout Started -> send an e-mail" is
published, quiet hours are off. Then:

- burst: N trigger events (one per person) are published at once as profile announces them
  (ProfileChanged with the event, on {prefix}.profile.N); the figure is sends per second from the
  first publish to the N-th line in the sink (consumer, enrolment, scheduler, send-time checks
  with a GetProfile each, template, sink, outbox);
- latency: triggers at a steady rate; for each, the time from its publish to its line in the sink
  (the sink stamps ``written_at``), p50 / p99.

    python -m bench campaign [--burst 5000] [--rate 20] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import nats
from google.protobuf import struct_pb2

from bench.report import cpu_seconds, load_average, machine, print_rows
from cdp.campaign.v1 import campaign_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_devstack.infra import NatsServer, PostgresServer, free_port
from cdpkit.bus import BusNames
from tests.e2e.campaign_kit import no_quiet_hours, publish_journey, publish_profile_event

WS = "bench"
JOURNEY = {
    "trigger": {"event": {"name": "Checkout Started"}},
    "reentry": {"mode": "always"},
    "steps": [
        {
            "id": "mail",
            "send": {
                "channel": "email",
                "template": {"subject": "Your cart, {{ traits.first_name }}", "body": "Order {{ event.properties.n }}"},
            },
        }
    ],
}


class _Profiles(profile_pb2_grpc.ProfileServiceServicer):
    """GetProfile of every bench person: an e-mail, a first name, e-mail consent granted."""

    async def GetProfile(self, request, context):
        person = request.name.rsplit("/", 1)[1]
        traits = struct_pb2.Struct()
        traits.update({"email": f"{person}@example.com", "first_name": "Li"})
        profile = profile_pb2.Profile(name=request.name, person_id=person, traits=traits)
        profile.consents.add(channel="email", granted=True, source="api")
        return profile


async def _profile_server() -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(_Profiles(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def _wait_lines(path: Path, count: int, timeout: float = 300.0) -> None:
    """Poll the sink file (another process writes it) until it has ``count`` lines; counting
    newlines keeps the poll cheap (the bench shares the 2 cores with what it measures)."""
    deadline = time.monotonic() + timeout
    while _count(path) < count and time.monotonic() < deadline:  # noqa: ASYNC110 - a file, not an event
        await asyncio.sleep(0.05)


async def _wait_serving(port: int) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + 60
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        while time.monotonic() < deadline:
            try:
                answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("campaign did not become SERVING")


async def _run(dsn: str, nats_url: str, tmp: Path, burst: int, rate: float, seconds: float) -> list[tuple[str, str]]:
    profiles, target = await _profile_server()
    persons = [f"person-{n:06d}" for n in range(burst)]
    sink = tmp / "sink.jsonl"
    port = free_port()
    prefix = "bench"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update(
        {
            "CDP_DATABASE_URL": dsn,
            "CDP_NATS_URL": nats_url,
            "CDP_BUS_PREFIX": prefix,
            "CDP_CAMPAIGN_GRPC_PORT": str(port),
            "CDP_CAMPAIGN_METRICS_PORT": "0",
            "CDP_CAMPAIGN_PROFILE_TARGET": target,
            "CDP_CAMPAIGN_SEGMENT_TARGET": target,
            "CDP_CAMPAIGN_SINK_PATH": str(sink),
            "CDP_LOG_LEVEL": "warning",
            "CDP_LOG_FORMAT": "json",
        }
    )
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-m", "cdp_campaign", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    nc = await nats.connect(nats_url)
    try:
        await _wait_serving(port)
        await no_quiet_hours(f"127.0.0.1:{port}", WS)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await publish_journey(campaign_pb2_grpc.JourneyServiceStub(channel), WS, "bench", JOURNEY)
        await asyncio.sleep(3)  # the consumers hold their partition leases and the journey cache is fresh
        js = nc.jetstream()
        names = BusNames(prefix, 4)

        # Warm-up: 200 sends, not measured.
        for n in range(200):
            await publish_profile_event(js, names, WS, persons[n % burst], "Checkout Started", f"warm-{n}", n=n)
        await _wait_lines(sink, 200)

        # Burst.
        cpu_before = cpu_seconds(process.pid)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                publish_profile_event(js, names, WS, p, "Checkout Started", f"burst-{p}", n=n)
                for n, p in enumerate(persons)
            )
        )
        published = time.perf_counter() - started
        await _wait_lines(sink, 200 + burst)
        burst_seconds = time.perf_counter() - started
        burst_cpu = cpu_seconds(process.pid) - cpu_before

        # Latency at a steady rate.
        sent_at: dict[str, float] = {}
        count = int(rate * seconds)
        for n in range(count):
            message_id = f"steady-{n}"
            sent_at[message_id] = time.time()
            await publish_profile_event(js, names, WS, persons[n % burst], "Checkout Started", message_id, n=n)
            await asyncio.sleep(max(0.0, 1 / rate - 0.001))
        await _wait_lines(sink, 200 + burst + count, timeout=60)
        latencies = []
        for line in _lines(sink)[200 + burst :]:
            message_id = f"steady-{int(float(line['body'].split()[-1]))}"  # Struct numbers are doubles
            latencies.append((line["written_at"] - sent_at[message_id]) * 1000)
    finally:
        await nc.close()
        process.terminate()
        process.wait(30)
        await profiles.stop(0)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        (f"burst: {burst:,} triggers published (one JetStream message each)", f"{published:.2f} s"),
        (f"burst: {burst:,} e-mails in the dev sink, end to end", f"{burst_seconds:.2f} s"),
        ("burst: sends per second (trigger -> sink)", f"{burst / burst_seconds:,.0f} /s"),
        ("burst: campaign process CPU per send (user + system)", f"{burst_cpu / burst * 1000:.2f} ms"),
        (
            f"steady {rate:g} triggers/s for {seconds:g} s: trigger -> send p50 / p99",
            f"{statistics.median(latencies):.0f} / {p99:.0f} ms ({len(latencies)} sends)",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench campaign")
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args, _ = parser.parse_known_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="cdp-bench-campaign-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg", free_port())
        nats_server = NatsServer(Path(tmp) / "nats", free_port(), free_port())
        postgres.start()
        nats_server.start()
        try:
            postgres.create_database("campaign")
            rows = asyncio.run(
                _run(postgres.dsn("campaign"), nats_server.url, Path(tmp), args.burst, args.rate, args.seconds)
            )
        finally:
            nats_server.stop()
            postgres.stop()
    load = load_average()
    described = f"{machine()}, load average before {load_before}, after {load}"
    print(f"\ncampaign benchmark: {described}")
    print_rows(rows)


if __name__ == "__main__":
    main()
