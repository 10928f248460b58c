"""Segment through the whole pipeline: raw event -> identity -> profile -> segment -> entered.

bench/segment.py measures from ProfileChanged; this one measures what a storefront sees. It
starts PostgreSQL (durable settings, as `cdp up` does), NATS, and identity, profile and segment
as processes of the local stack (tools/devstack), then:

- population: N shoppers (``--persons``), one "Product Viewed" each, published as the gateway
  publishes raw events (cdp_gateway.publisher: RawEventBatch chunks on the partitioned raw
  subjects, a chunk Nats-Msg-Id); waits until segment's projection holds every person;
- segment "trigger" = ``event("Bench Trigger", within 1d)``;
- latency: at a fixed rate (``--rates``, one run each for ``--seconds``), one raw "Bench
  Trigger" event per request (as one POST /v1/batch of one event publishes it) for a shopper
  who exists and is not a member yet; the time from the publish call to the
  SegmentMembershipChanged(entered) of that event (matched by its trigger_message_id) arriving
  on NATS: identity's resolution, profile's update and announcement (outbox relay), segment's
  evaluation and announcement (outbox relay). A message never seen within 30 s counts as
  infinitely late in the percentiles ("lost"), not left out. The part up to profile's
  ProfileChanged on NATS is printed too (the rest is segment's).

    python -m bench segment_pipeline [--persons 20000] [--rates 250,500,1000] [--seconds 10]

The issue's target: p99 < 250 ms at 1,000 events/s. CPU seconds per event of each service
process are printed too (less noisy than wall-clock on a shared machine), and the transactions
PostgreSQL committed per event (pg_stat_database, read after 11 s of quiet so that idle backends
have reported theirs; less what the services commit per second with no events, measured once
before the runs): the consumers take whatever is pending when they are ready, so at a low rate
each event is a batch of its own and costs several transactions; PostgreSQL's CPU follows the
transactions, not the events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import nats

from bench.report import cpu_seconds, load_average, machine, postgres_cpu, print_rows, setting
from bench.segment import _ms, _percentiles
from cdp.events.v1 import events_pb2
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_devstack.infra import free_port
from cdp_devstack.stack import Ports, Stack
from cdp_gateway.publisher import EventPublisher
from cdpkit import collector
from cdpkit.bus import PROFILE, RESOLVED, SEGMENT, BusNames, ensure_streams

WS = "bench"
SERVICES = ("identity", "profile", "segment")
TRIGGER = "Bench Trigger"


def _ports() -> Ports:
    names = ["postgres", "nats", "nats_monitor", "gateway_http", "gateway_grpc", *SERVICES, "campaign"]
    return Ports(**{n: free_port() for n in names}, metrics_base=0)


def _raw(user: int, event: str) -> events_pb2.RawEvent:
    """A track event as the gateway accepts it (workspace and received_at stamped)."""
    raw = events_pb2.RawEvent(
        message_id=uuid.uuid4().hex,
        workspace_id=WS,
        type=events_pb2.EVENT_TYPE_TRACK,
        event=event,
        user_id=f"shopper-{user}",
    )
    now = datetime.now(UTC)
    raw.timestamp.FromDatetime(now)
    raw.received_at.FromDatetime(now)
    raw.properties.update({"sku": f"SKU-{user % 200}"})
    return raw


def _cpu_now(stack: Stack, pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each service, of PostgreSQL and of NATS, and of this process."""
    return {
        **{s: cpu_seconds(pids[s]) for s in SERVICES},
        "postgres": postgres_cpu(stack.postgres.process.pid),
        "nats": cpu_seconds(stack.nats.process.pid),
        "bench": time.process_time(),
    }


async def _populate(publisher: EventPublisher, dsn: str, persons: int) -> float:
    """Every shopper's first event, through the pipeline; seconds until segment holds them all."""
    started = time.perf_counter()
    for start in range(0, persons, 1000):
        await publisher.publish([_raw(u, "Product Viewed") for u in range(start, min(persons, start + 1000))])
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 600
        while await conn.fetchval("SELECT count(*) FROM segment.persons WHERE workspace_id = $1", WS) < persons:
            if time.monotonic() > deadline:
                raise RuntimeError("the population did not reach segment within 10 minutes")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def _settled_commits(conn: asyncpg.Connection) -> tuple[int, float]:
    """Transactions PostgreSQL has committed so far, once the backends that went idle have
    reported theirs (an idle backend flushes its statistics within 10 s), and when."""
    await asyncio.sleep(11)
    count = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return count, time.monotonic()


async def _latency(
    publisher: EventPublisher, nc, names: BusNames, users: range, rate: float, with_hops: bool
) -> tuple[list[float], list[float], list[float], int, int]:
    """Per trigger event, ms from its publish to segment's entered announcement, to identity's
    resolved event and to profile's ProfileChanged on NATS; how many were never seen entering;
    the rate achieved."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    profiled: list[float] = []
    resolved: list[float] = []

    async def on_resolved(msg) -> None:
        for item in events_pb2.ResolvedEventBatch.FromString(msg.data).events:
            published = sent.get(item.event.message_id)
            if published is not None:
                resolved.append((time.perf_counter() - published) * 1000)

    async def on_profile(msg) -> None:
        if not msg.subject.rsplit(".", 1)[-1].isdigit():  # objects, settings
            return
        change = events_pb2.ProfileChanged.FromString(msg.data)
        published = sent.get(change.trigger_message_id)
        if published is not None:
            profiled.append((time.perf_counter() - published) * 1000)

    async def on_change(msg) -> None:
        change = events_pb2.SegmentMembershipChanged.FromString(msg.data)
        if change.segment_id == "trigger" and change.change == events_pb2.SegmentMembershipChanged.CHANGE_ENTERED:
            published = sent.pop(change.trigger_message_id, None)
            if published is not None:
                latencies.append((time.perf_counter() - published) * 1000)

    sub = await nc.subscribe(names.subject(SEGMENT, "membership"), cb=on_change)
    hops = []
    if with_hops:  # what the bench decodes for them costs CPU the pipeline shares: optional
        hops = [
            await nc.subscribe(names.subject(PROFILE, "*"), cb=on_profile),
            await nc.subscribe(names.subject(RESOLVED, "*"), cb=on_resolved),
        ]
    pending: set[asyncio.Task] = set()
    started = time.perf_counter()
    for n, user in enumerate(users):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = _raw(user, TRIGGER)
        sent[event.message_id] = time.perf_counter()
        # requests overlap as a gateway's do: the next one does not wait for this one's ack
        task = asyncio.create_task(publisher.publish([event]))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    achieved = len(users) / (time.perf_counter() - started)
    deadline = time.perf_counter() + 30
    while sent and time.perf_counter() < deadline:  # noqa: ASYNC110 - the callback empties it
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    for hop in hops:
        await hop.unsubscribe()
    return latencies, resolved, profiled, len(sent), round(achieved)


async def _run(stack: Stack, args) -> list[tuple[str, str]]:
    rates = [float(r) for r in args.rates.split(",")]
    needed = args.persons
    wanted = sum(int(r * args.seconds) for r in rates)
    if wanted > needed:
        raise SystemExit(f"--persons {needed} is fewer than the {wanted} triggers the runs need: raise it")
    nc = await nats.connect(stack.nats_url)
    names = BusNames(stack.bus_prefix, args.partitions)
    await ensure_streams(nc.jetstream(), names)
    publisher = EventPublisher(nc.jetstream(), names)
    pids = stack.pids()
    rows: list[tuple[str, str]] = []
    stats = await asyncpg.connect(stack.database_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.ports.segment}") as channel:
            await segment_pb2_grpc.SegmentServiceStub(channel).CreateSegment(
                segment_pb2.CreateSegmentRequest(
                    parent=f"workspaces/{WS}",
                    segment_id="trigger",
                    segment=segment_pb2.Segment(display_name="trigger", rule=f'event("{TRIGGER}", within 1d)'),
                ),
                timeout=60,
            )
        seconds = await _populate(publisher, stack.database_url, args.persons)
        rows.append(
            (
                f"population: {args.persons:,} shoppers' first event, raw -> segment projection",
                f"{seconds:.1f} s ({args.persons / seconds:,.0f} events/s)",
            )
        )
        settled = await _settled_commits(stats)  # also lets the population's tail settle
        # The services' own rounds (readiness, pollers) commit while nothing happens: per second.
        quiet = await _settled_commits(stats)
        background = (quiet[0] - settled[0]) / (quiet[1] - settled[1])
        rows.append(("PostgreSQL transactions committed per second with no events", f"{background:.0f}"))
        settled = quiet
        collector.freeze()  # the bench's own heap out of its collector's walks (bench/segment.py)
        used = 0
        for rate in rates:
            users = range(used, used + int(rate * args.seconds))
            used = users.stop
            cpu = _cpu_now(stack, pids)
            latencies, resolved, profiled, lost, achieved = await _latency(
                publisher, nc, names, users, rate, not args.no_hops
            )
            per_event = {s: (spent - cpu[s]) / len(users) * 1000 for s, spent in _cpu_now(stack, pids).items()}
            p50, p99 = _percentiles(latencies, lost, (50, 99))
            rows.append(
                (
                    f"raw event -> entered announced (identity, profile, segment), at {achieved:,} /s"
                    f" for {args.seconds:.0f} s: p50 / p99",
                    f"{_ms(p50)} / {_ms(p99)} ms (load average {os.getloadavg()[0]:.1f})"
                    + (f" ({lost} not seen within 30 s, counted as lost)" if lost else ""),
                )
            )
            for label, hop in (("identity's resolved event", resolved), ("profile's ProfileChanged", profiled)):
                if args.no_hops:
                    break
                p50, p99 = _percentiles(hop, len(users) - len(hop), (50, 99))
                rows.append((f"  of which raw event -> {label} on NATS: p50 / p99", f"{_ms(p50)} / {_ms(p99)} ms"))
            rows.append(
                (
                    "  CPU per event: identity / profile / segment; PostgreSQL / NATS / this bench",
                    " / ".join(f"{per_event[s]:.2f}" for s in SERVICES)
                    + "; "
                    + " / ".join(f"{per_event[s]:.2f}" for s in ("postgres", "nats", "bench"))
                    + " ms",
                )
            )
            before, settled = settled, await _settled_commits(stats)
            committed = settled[0] - before[0] - background * (settled[1] - before[1])
            rows.append(
                ("  PostgreSQL transactions committed per event (less the quiet rate)", f"{committed / len(users):.2f}")
            )
    finally:
        await stats.close()
        await nc.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench segment_pipeline")
    parser.add_argument("--persons", type=int, default=20_000, help="shoppers (each triggers at most once)")
    parser.add_argument("--rates", default="250,500,1000", help="raw events per second, one run each")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions of the event subjects (CDP_PARTITIONS), default 4"
    )
    parser.add_argument(
        "--no-hops", action="store_true", help="end to end only: no subscriptions to the resolved and profile subjects"
    )
    parser.add_argument(
        "--service-env",
        action="append",
        type=setting,
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every service, e.g. CDP_SEGMENT_CONSUMER_LINGER_MS=25 (repeatable)",
    )
    args, _ = parser.parse_known_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="cdp-bench-pipeline-") as tmp:
        log = open(Path(tmp) / "stack.log", "w")  # noqa: SIM115
        stack = Stack(
            Path(tmp) / "state",
            _ports(),
            bus_prefix="bench",
            log=log,
            extra_env={
                "CDP_LOG_LEVEL": "warning",
                "CDP_PARTITIONS": str(args.partitions),
                **dict(args.service_env),
            },
        )
        try:
            stack.start_infrastructure()
            for name in SERVICES:
                stack.start_component(name)
            stack.wait_serving(SERVICES, timeout=120)
            rows = asyncio.run(_run(stack, args))
        finally:
            stack.stop()
            log.close()
    print(
        f"\nsegment pipeline benchmark (raw event -> identity -> profile -> segment): {machine()},"
        f" load average before {load_before}, at the end {load_average()}"
        + "".join(f" ({name}={value})" for name, value in args.service_env)
    )
    print_rows(rows)


if __name__ == "__main__":
    main()
