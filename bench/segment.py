"""Segment service: Estimate over 1M profiles, live updates per second, ProfileChanged -> entered
latency at a fixed rate.

Starts PostgreSQL (durable settings, as `cdp up` does) and NATS on free ports, migrates the
segment schema, loads N persons into the projection with COPY (traits, computed traits, tier,
lifecycle stage, tags; ~1.5 orders with line items and ~2 events per person over 400 days), and
runs the segment service in its own process (its real consumers, outbox relay and gRPC). Then:

- Estimate: EstimateSegment over gRPC for 3-condition rules (fields only; with an order window;
  with an event window); the first call and the median of the next five;
- Create: CreateSegment of a 3-condition rule, i.e. the full SQL refresh that writes every member,
  its history row and its SegmentMembershipChanged outbox row;
- RFM: RecomputeRfm (thresholds and every person's group);
- live updates: ProfileChanged announcements (a snapshot change and one new event each, for
  existing persons) published as fast as JetStream takes them; updates per second until the
  segment-profile consumers have acked them all, with 20 segments defined;
- latency: ProfileChanged published at a fixed rate (250, 500 and 1,000/s by default) for
  existing persons, each carrying a new event that makes its person enter a segment (the state
  as it is); time from publish to the SegmentMembershipChanged announcement arriving on NATS
  (so: consumer, evaluation, commit, outbox relay, publish). A message never seen counts as
  infinitely late in the percentiles (reported "lost"), not left out;
- timer burst: N persons (10,000) whose timers all fall due at the same instant (a trait that
  makes them enter "traits.bench_due more than 1d ago" then); the lag from that instant to each
  SegmentMembershipChanged on NATS (timer worker polling every 1 s, 500 timers a round).

    python -m bench segment [--persons 1000000] [--updates 20000] [--rates 250,500,1000] [--seconds 20]
                            [--replicas 1] [--burst 10000] [--statements] [--no-fsync] [--no-vacuum]
                            [--pg-setting NAME=VALUE ...] [--variant NAME=VALUE[,NAME=VALUE] ...] [--rounds 1]

``--variant`` runs the live measures (full-speed updates, then the latency runs) once per set of
service settings, restarting the service between them, on the same loaded data; ``--rounds N``
repeats them with the variants interleaved (an A/B on one machine at one time).

Before it measures, the projection is settled as in production (untimed, stated in the output):
VACUUM (ANALYZE) of the loaded tables after the COPY; after the segments' creation the outbox is
truncated (their first announcements are not what is measured) and the membership tables
vacuumed, then a CHECKPOINT. ``--no-vacuum`` skips both (the outbox DELETEd instead).

The live rows also give the service process's CPU time per announcement (less noisy than
wall-clock on a shared machine); ``--statements`` prints the SQL statements per announcement of
the first latency run (pg_stat_statements); ``CDP_BENCH_PROFILE=<file>`` records py-spy samples
of the service over the live phases.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import nats
from prometheus_client.parser import text_string_to_metric_families

from bench.report import cpu_seconds, load_average, machine, print_rows, serving, setting, settings
from cdp.events.v1 import events_pb2
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_devstack.infra import NatsServer, PostgresServer, free_port
from cdp_segment import __main__ as segment_main
from cdpkit import collector
from cdpkit.bus import PROFILE, SEGMENT, BusNames, ensure_streams
from cdpkit.migrate import migrate

WS = "bench"
PREFIX = "bench"
NOW = datetime.now(UTC).replace(microsecond=0)
CITIES = ["上海", "北京", "杭州", "深圳", "广州", "成都", "南京", "武汉", "西安", "重庆"]
TIERS = [None, "silver", "gold", "platinum"]
STAGES = ["prospect", "new", "active", "loyal", "dormant", "churned"]
EVENTS = ["Product Viewed", "Store Visited", "Added to Cart"]
ESTIMATES = {
    "fields": 'tier in ["gold", "platinum"] and computed.total_spent_minor >= 100000 and traits.city = "上海"',
    "fields + order window": (
        'tier in ["gold", "platinum"] and traits.city = "上海"'
        ' and orders.count(within 90d, store.tag = "flagship") >= 1'
    ),
    "fields + event window": (
        'lifecycle_stage in ["active", "loyal"] and computed.order_count >= 2'
        ' and not event("Store Visited", within 180d)'
    ),
}
LIVE_SEGMENTS = [
    'tier = "gold"',
    'tier in ["gold", "platinum"] and computed.total_spent_minor >= 100000',
    'traits.city = "上海" and lifecycle_stage = "active"',
    'event("Product Viewed", within 7d) >= 3',
    'event("Added to Cart", within 1d) and not event("Order Completed", within 1d)',
    'not event("Store Visited", within 180d) and orders.count() >= 1',
    "orders.sum(within 365d) >= 500000",
    'orders.count(within 90d, store.tag = "flagship") >= 1',
    'tags contains "vip"',
    'traits.age between 18 and 30 and traits.city in ["北京", "上海"]',
    'consent.sms = true and lifecycle_stage = "dormant"',
    "points_balance >= 1000",
    "computed.last_order_time more than 90d ago and computed.order_count >= 2",
    'rfm_group = "重要挽留"',
    'event("Bench Trigger", within 30d)',
    'segment("live-0") and segment("live-8")',
    'lifecycle_stage = "churned" and tags contains "vip"',
    "orders.avg() >= 20000",
    'tier = "platinum" or computed.order_count >= 5',
    'event("Product Viewed", where sku = "SKU-1") and not event("Added to Cart")',
]


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _load(dsn: str, persons: int, rng: random.Random) -> list[str]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "segment"})
    ids: list[str] = []
    try:
        for kind, store in [("store", f"s{n}") for n in range(50)]:
            await conn.execute(
                "INSERT INTO object_tags (workspace_id, object_kind, object_id, tag) VALUES ($1, $2, $3, $4)",
                WS,
                kind,
                store,
                "flagship" if int(store[1:]) % 5 == 0 else "mall",
            )
        chunk = 50_000
        order_no = 0
        for start in range(0, persons, chunk):
            people, orders, items, events = [], [], [], []
            for _ in range(start, min(persons, start + chunk)):
                pid = str(uuid.uuid4())
                ids.append(pid)
                count = rng.choice([0, 0, 1, 1, 1, 2, 2, 3, 4])
                total, last = 0, None
                for _ in range(count):
                    order_no += 1
                    when = NOW - timedelta(days=rng.uniform(0, 400))
                    amount = rng.randint(1000, 200000)
                    total += amount
                    last = max(last or when, when)
                    oid = f"o{order_no}"
                    orders.append((WS, oid, pid, "completed", amount, "CNY", f"s{rng.randrange(50)}", "", when, 1, pid))
                    for line in range(rng.randint(1, 2)):
                        items.append((WS, oid, line, f"SKU-{rng.randrange(200)}", "outdoor", f"p{rng.randrange(200)}"))
                for _ in range(rng.choice([0, 1, 2, 3, 4])):
                    events.append(
                        (
                            WS,
                            uuid.uuid4().hex,
                            pid,
                            rng.choice(EVENTS),
                            json.dumps({"sku": f"SKU-{rng.randrange(200)}"}),
                            NOW - timedelta(days=rng.uniform(0, 400)),
                        )
                    )
                computed = {"order_count": count, "total_spent_minor": total}
                if last:
                    computed["last_order_time"] = _iso(last)
                people.append(
                    (
                        WS,
                        pid,
                        json.dumps({"city": rng.choice(CITIES), "age": rng.randint(16, 70)}, ensure_ascii=False),
                        json.dumps(computed),
                        rng.choice(STAGES),
                        rng.choice(TIERS),
                        ["vip"] if rng.random() < 0.05 else [],
                        json.dumps({"sms": rng.random() < 0.5}),
                        1,
                        rng.randint(0, 5000),
                    )
                )
            await conn.copy_records_to_table(
                "persons",
                records=people,
                columns=[
                    "workspace_id",
                    "person_id",
                    "traits",
                    "computed",
                    "lifecycle_stage",
                    "tier",
                    "tags",
                    "consent",
                    "profile_version",
                    "points_balance",
                ],
            )
            await conn.copy_records_to_table(
                "person_orders",
                records=orders,
                columns=[
                    "workspace_id",
                    "order_id",
                    "person_id",
                    "status",
                    "total_minor",
                    "currency",
                    "store_id",
                    "staff_id",
                    "order_time",
                    "profile_version",
                    "writer",
                ],
            )
            await conn.copy_records_to_table(
                "order_items",
                records=items,
                columns=["workspace_id", "order_id", "line_no", "sku", "category", "product_id"],
            )
            await conn.copy_records_to_table(
                "person_events",
                records=events,
                columns=["workspace_id", "message_id", "person_id", "name", "properties", "event_time"],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return ids


def _start_service(
    dsn: str, nats_url: str, port: int, metrics_port: int = 0, settings: dict[str, str] | None = None
) -> subprocess.Popen:
    env = {
        **os.environ,
        "CDP_DATABASE_URL": dsn,
        "CDP_NATS_URL": nats_url,
        "CDP_BUS_PREFIX": PREFIX,
        "CDP_SEGMENT_GRPC_PORT": str(port),
        "CDP_SEGMENT_METRICS_PORT": str(metrics_port),
        "CDP_SEGMENT_RFM_INTERVAL_SECONDS": "0",
        "CDP_LOG_LEVEL": "warning",
        "CDP_LOG_FORMAT": "json",
    }
    env.update(settings or {})
    return subprocess.Popen([sys.executable, "-m", "cdp_segment", "serve"], env=env, stdout=subprocess.DEVNULL)


async def _ready(port: int, process: subprocess.Popen) -> None:
    await serving(port, process, timeout=120)
    await asyncio.sleep(3)  # consumers, partition leases, the first readiness round


def _snapshot(row: asyncpg.Record, tier: str | None) -> events_pb2.ProfileSnapshot:
    """The person's current state as the profile would announce it, with ``tier``."""
    snap = events_pb2.ProfileSnapshot(
        lifecycle_stage=row["lifecycle_stage"] or "",
        tier=tier or "",
        tags=list(row["tags"]),
        consent=json.loads(row["consent"]),
        points_balance=row["points_balance"] or 0,
        currency="CNY",
    )
    snap.traits.update(json.loads(row["traits"]))
    snap.computed.update(json.loads(row["computed"]))
    return snap


def _change(row: asyncpg.Record, version: int, event: str, tier: str | None) -> events_pb2.ProfileChanged:
    """One new event, and the state as it is but for the tier."""
    changed = [f"events:{event}"] + (["tier"] if tier != row["tier"] else [])
    message = events_pb2.ProfileChanged(
        workspace_id=WS,
        person_id=str(row["person_id"]),
        version=version,
        changed_fields=changed,
        trigger_message_id=uuid.uuid4().hex,
    )
    fact = message.events.add(message_id=message.trigger_message_id, event=event)
    fact.event_time.FromDatetime(datetime.now(UTC))
    message.snapshot.CopyFrom(_snapshot(row, tier))
    return message


async def _states(dsn: str, ids: list[str]) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "segment"})
    try:
        return await conn.fetch(
            """SELECT person_id, traits::text, computed::text, consent::text, lifecycle_stage, tier, tags,
                      points_balance FROM persons WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
            WS,
            ids,
        )
    finally:
        await conn.close()


async def _consumer_pending(js, names: BusNames) -> int:
    pending = 0
    for partition in range(names.partitions):
        info = await js.consumer_info(names.stream(PROFILE), f"segment-profile-p{partition}")
        pending += info.num_pending + info.num_ack_pending
    return pending


async def _publish_and_wait(js, names: BusNames, messages: list[tuple[str, events_pb2.ProfileChanged]]) -> None:
    """Publish (person id, announcement) pairs 500 at a time; return once the consumers acked all."""
    for chunk in range(0, len(messages), 500):
        await asyncio.gather(
            *(
                js.publish(
                    names.partitioned(PROFILE, p), m.SerializeToString(), headers={"Nats-Msg-Id": m.trigger_message_id}
                )
                for p, m in messages[chunk : chunk + 500]
            )
        )
    while await _consumer_pending(js, names):  # noqa: ASYNC110 - polling the server's counters
        await asyncio.sleep(0.05)


async def _live_updates(js, names: BusNames, rows: list[asyncpg.Record]) -> float:
    """Updates applied per second: a new event and a tier change each; publish them all, wait until
    every one is acked."""
    messages = [
        (str(r["person_id"]), _change(r, 10, "Product Viewed", "silver" if r["tier"] == "gold" else "gold"))
        for r in rows
    ]
    started = time.perf_counter()
    await _publish_and_wait(js, names, messages)
    return len(messages) / (time.perf_counter() - started)


class _Pauses:
    """This process's own garbage-collection pauses while measuring (a pause here delays the
    publisher and the timestamps of what arrives: it would show as service latency)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __enter__(self) -> _Pauses:
        self._callback = collector.watch(lambda _generation, seconds: self.seconds.append(seconds))
        return self

    def __exit__(self, *_exc) -> None:
        gc.callbacks.remove(self._callback)


@dataclass
class _LatencyRun:
    p50: float
    p99: float
    lost: int
    achieved: int
    late_publish_ms: float  # the furthest behind schedule a publish went out
    bench_gc: list[float]  # this process's GC pauses, seconds
    worst: list[tuple[float, float]]  # (seconds into the run the message was sent, its latency ms)


async def _latency(js, nc, names: BusNames, rows: list[asyncpg.Record], rate: float, seconds: float) -> _LatencyRun:
    """p50 / p99 ms from publishing a ProfileChanged (a new "Bench Trigger" event, the state as it
    is) to receiving the SegmentMembershipChanged of the person entering segment "trigger"."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []
    late = 0.0

    async def on_change(msg) -> None:
        change = events_pb2.SegmentMembershipChanged.FromString(msg.data)
        if change.segment_id == "trigger" and change.person_id in sent:
            at = sent.pop(change.person_id)
            latencies.append((time.perf_counter() - at) * 1000)
            timeline.append((at - started, latencies[-1]))

    sub = await nc.subscribe(names.subject(SEGMENT, "membership"), cb=on_change)
    messages = [(str(r["person_id"]), _change(r, 1000, "Bench Trigger", r["tier"])) for r in rows]
    total = len(messages)
    with _Pauses() as pauses:
        started = time.perf_counter()
        for n, (person_id, message) in enumerate(messages):
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[person_id] = time.perf_counter()
            late = max(late, sent[person_id] - due)
            await js.publish(
                names.partitioned(PROFILE, person_id),
                message.SerializeToString(),
                headers={"Nats-Msg-Id": message.trigger_message_id},
            )
        achieved = total / (time.perf_counter() - started)
        deadline = time.perf_counter() + 30
        while sent and time.perf_counter() < deadline:  # noqa: ASYNC110 - the callback empties it
            await asyncio.sleep(0.05)
    await sub.unsubscribe()
    p50, p99 = _percentiles(latencies, len(sent), (50, 99))
    # The slowest message of each of the slowest seconds: a tail made of one stall or spread out.
    slowest: dict[int, tuple[float, float]] = {}
    for at, ms in timeline:
        if ms > slowest.get(int(at), (0.0, 0.0))[1]:
            slowest[int(at)] = (at, ms)
    worst = sorted(slowest.values(), key=lambda pair: -pair[1])[:4]
    return _LatencyRun(p50, p99, len(sent), round(achieved), late * 1000, pauses.seconds, worst)


def _scrape(port: int) -> dict[tuple[str, str], float]:
    """The service's /metrics samples of interest: {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("cdp_gc_pause_seconds", "cdp_consumer_batch_seconds"):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[(sample.name, labels)] = sample.value
    return samples


def _service_pauses(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> str:
    """The service's GC pauses and slow consumer batches between two scrapes."""

    def delta(name: str, labels: str) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    parts = []
    for generation in range(3):
        count = delta("cdp_gc_pause_seconds_count", f"generation={generation}")
        total = delta("cdp_gc_pause_seconds_sum", f"generation={generation}")
        if count:
            parts.append(f"gen{generation} GC {count:.0f}x {total * 1000:.0f} ms")
    batches = delta("cdp_consumer_batch_seconds_count", "consumer=segment-profile")
    fast = delta("cdp_consumer_batch_seconds_bucket", "consumer=segment-profile,le=0.1")
    parts.append(f"{batches:.0f} consumer batches, {batches - fast:.0f} over 100 ms")
    return "; ".join(parts)


_STATEMENTS = """SELECT calls, total_exec_time, max_exec_time, shared_blks_read,
                        regexp_replace(query, '\\s+', ' ', 'g') AS query
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                WHERE d.datname = current_database() ORDER BY calls DESC"""
_VACUUMS = """SELECT relname, autovacuum_count + autoanalyze_count AS autos FROM pg_stat_user_tables
               WHERE schemaname = 'segment'"""


def _print_statements(stats: list[asyncpg.Record], announcements: int) -> None:
    """Statements the service ran during a latency run, per announcement (bench's own included)."""
    total = sum(r["calls"] for r in stats)
    print(f"\nSQL statements during the first latency run: {total / announcements:.2f} per announcement")
    print("  calls, ms per announcement, max ms of one call, blocks read from outside shared buffers per call")
    for r in stats[:40]:
        print(
            f"{r['calls'] / announcements:7.3f} {r['total_exec_time'] / announcements:7.3f} ms"
            f" {r['max_exec_time']:8.1f} {r['shared_blks_read'] / max(1, r['calls']):7.1f}  {r['query'][:150]}"
        )


def _percentiles(seen: list[float], lost: int, which: tuple[int, ...]) -> list[float]:
    """Percentiles over every message sent: one never seen counts as infinitely late (so a p99
    is never computed over the survivors only)."""
    ordered = sorted(seen) + [float("inf")] * lost
    return [ordered[min(len(ordered) - 1, len(ordered) * p // 100)] for p in which]


def _ms(value: float) -> str:
    return "lost" if value == float("inf") else f"{value:.0f}"


async def _timer_burst(js, nc, names: BusNames, rows: list[asyncpg.Record], lead: float) -> tuple[list[float], int]:
    """Lag of the timers of ``rows`` persons all due at the same instant: each gets a trait that
    makes it enter segment "due" (traits.bench_due more than 1d ago) exactly ``lead`` seconds
    from now. Per person, ms from that instant to its SegmentMembershipChanged on NATS."""
    edge = time.time() + lead
    due = datetime.fromtimestamp(edge, UTC) - timedelta(days=1)
    arrived: dict[str, float] = {}

    async def on_change(msg) -> None:
        change = events_pb2.SegmentMembershipChanged.FromString(msg.data)
        if change.segment_id == "due" and change.change == events_pb2.SegmentMembershipChanged.CHANGE_ENTERED:
            arrived.setdefault(change.person_id, time.time())

    sub = await nc.subscribe(names.subject(SEGMENT, "membership"), cb=on_change)
    messages = []
    for row in rows:
        message = _change(row, 2000, "Product Viewed", row["tier"])
        message.snapshot.traits["bench_due"] = due.isoformat(timespec="microseconds")
        message.changed_fields.append("traits.bench_due")
        messages.append((str(row["person_id"]), message))
    await _publish_and_wait(js, names, messages)
    if time.time() >= edge:
        raise RuntimeError(f"the burst's announcements took longer than the {lead:.0f} s lead: raise it")
    deadline = edge + 120
    while len(arrived) < len(rows) and time.time() < deadline:  # noqa: ASYNC110 - the callback fills it
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    return [(t - edge) * 1000 for t in arrived.values()], len(rows) - len(arrived)


async def _live_rows(js, names, dsn, process, updates, args, label: str) -> list[tuple[str, str]]:
    """Full-speed live updates: the rate, and the service's CPU per update."""
    cpu = cpu_seconds(process.pid)
    rate = await _live_updates(js, names, updates)
    conn = await asyncpg.connect(dsn)
    while await conn.fetchval("SELECT count(*) FROM segment.outbox"):  # noqa: ASYNC110 - polling a table
        await asyncio.sleep(0.5)
    await conn.close()
    cpu = cpu_seconds(process.pid) - cpu
    return [
        (
            f"live updates (an event + a tier change each), {len(LIVE_SEGMENTS) + 1} segments,"
            f" {args.replicas} replica(s), applied per second{label}",
            f"{rate:,.0f} /s",
        ),
        (
            "  service CPU per live update (applied and its changes relayed; first replica)",
            f"{cpu / len(updates) * 1000:.2f} ms",
        ),
    ]


async def _latency_rows(
    js, nc, names, dsn, process, metrics_port, triggers, rate: float, args, label: str
) -> list[tuple[str, str]]:
    """One latency run at ``rate``: p50 / p99 and what explains its tail."""
    if args.statements:
        conn = await asyncpg.connect(dsn)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
        vacuums = dict(await conn.fetch(_VACUUMS))
    cpu, scraped = cpu_seconds(process.pid), await asyncio.to_thread(_scrape, metrics_port)
    run = await _latency(js, nc, names, triggers, rate, args.seconds)
    cpu = cpu_seconds(process.pid) - cpu
    pauses = _service_pauses(scraped, await asyncio.to_thread(_scrape, metrics_port))
    if args.statements:
        _print_statements(await conn.fetch(_STATEMENTS), len(triggers))
        autos = [r["relname"] for r in await conn.fetch(_VACUUMS) if r["autos"] != vacuums.get(r["relname"])]
        print(f"autovacuum / autoanalyze during it: {', '.join(autos) or 'none'}")
        await conn.close()
        args.statements = False
    while await _consumer_pending(js, names):  # noqa: ASYNC110 - polling the server's counters
        await asyncio.sleep(0.1)
    return [
        (
            f"ProfileChanged -> entered announced, at {run.achieved:,} /s for {args.seconds:.0f} s{label}: p50 / p99",
            f"{_ms(run.p50)} / {_ms(run.p99)} ms (load average {os.getloadavg()[0]:.1f};"
            f" service CPU {cpu / len(triggers) * 1000:.2f} ms per announcement)"
            + (f" ({run.lost} not seen within 30 s, counted as lost)" if run.lost else ""),
        ),
        ("  service: GC pauses; consumer batches", pauses),
        (
            "  bench: GC pauses; publish furthest behind schedule",
            f"{len(run.bench_gc)}x, longest {max(run.bench_gc, default=0) * 1000:.0f} ms; {run.late_publish_ms:.0f} ms",
        ),
        (
            "  slowest seconds: sent at (s) -> latency",
            ", ".join(f"{at:.1f} s -> {ms:.0f} ms" for at, ms in run.worst),
        ),
    ]


async def _run(dsn: str, nats_url: str, args) -> list[tuple[str, str]]:
    rng = random.Random(20260618)
    await migrate(dsn, segment_main.SCHEMA, segment_main.MIGRATIONS)
    t0 = time.perf_counter()
    ids = await _load(dsn, args.persons, rng)
    rows = [(f"load {args.persons:,} persons (+ orders, lines, events) with COPY", f"{time.perf_counter() - t0:.1f} s")]
    conn = await asyncpg.connect(dsn)
    counts = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM segment.person_orders) AS orders,
                  (SELECT count(*) FROM segment.person_events) AS events"""
    )
    await conn.close()
    rows.append(("  projection rows: orders / events", f"{counts['orders']:,} / {counts['events']:,}"))
    if not args.no_vacuum:
        # Right after a bulk COPY the tables have no hint bits and no visibility map, and autovacuum
        # races what follows; production's projection is settled ("what the day does").
        t0 = time.perf_counter()
        conn = await asyncpg.connect(dsn)
        await conn.execute(
            "VACUUM (ANALYZE) segment.persons, segment.person_orders, segment.order_items,"
            " segment.person_events, segment.object_tags"
        )
        await conn.close()
        rows.append(
            (
                "  then VACUUM (ANALYZE) of the loaded tables (untimed above and below)",
                f"{time.perf_counter() - t0:.1f} s",
            )
        )

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    names = BusNames(PREFIX)
    await ensure_streams(js, names)
    port, metrics_port = free_port(), free_port()
    process = _start_service(dsn, nats_url, port, metrics_port)
    # More replicas share the partitions (leases); they serve gRPC on ports of their own.
    replicas = [_start_service(dsn, nats_url, free_port()) for _ in range(args.replicas - 1)]
    profiler = None
    try:
        await _ready(port, process)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = segment_pb2_grpc.SegmentServiceStub(channel)
            for label, rule in ESTIMATES.items():
                timings, count = [], 0
                for _ in range(6):
                    t = time.perf_counter()
                    response = await stub.EstimateSegment(
                        segment_pb2.EstimateSegmentRequest(parent=f"workspaces/{WS}", rule=rule), timeout=120
                    )
                    timings.append(time.perf_counter() - t)
                    count = response.count
                rows.append(
                    (
                        f"Estimate, 3 conditions ({label}), first / median of next 5",
                        f"{timings[0]:.2f} / {statistics.median(timings[1:]):.2f} s ({count:,} persons)",
                    )
                )
            t = time.perf_counter()
            created = await stub.CreateSegment(
                segment_pb2.CreateSegmentRequest(
                    parent=f"workspaces/{WS}",
                    segment_id="created",
                    segment=segment_pb2.Segment(display_name="bench", rule=ESTIMATES["fields + order window"]),
                ),
                timeout=600,
            )
            got = await stub.GetSegment(segment_pb2.GetSegmentRequest(name=created.name))
            rows.append(
                (
                    "CreateSegment (full SQL refresh: members, history, outbox)",
                    f"{time.perf_counter() - t:.2f} s ({got.member_count:,} members)",
                )
            )
            t = time.perf_counter()
            report = await stub.RecomputeRfm(
                segment_pb2.RecomputeRfmRequest(name=f"workspaces/{WS}/rfmReport"), timeout=600
            )
            rows.append(
                (
                    "RecomputeRfm (thresholds + every person's group)",
                    f"{time.perf_counter() - t:.2f} s ({report.thresholds.customers:,} customers)",
                )
            )
            await stub.DeleteSegment(segment_pb2.DeleteSegmentRequest(name=created.name), timeout=600)
            t = time.perf_counter()
            for n, rule in enumerate(LIVE_SEGMENTS):
                await stub.CreateSegment(
                    segment_pb2.CreateSegmentRequest(
                        parent=f"workspaces/{WS}",
                        segment_id=f"live-{n}",
                        segment=segment_pb2.Segment(display_name=f"live {n}", rule=rule),
                    ),
                    timeout=600,
                )
            await stub.CreateSegment(
                segment_pb2.CreateSegmentRequest(
                    parent=f"workspaces/{WS}",
                    segment_id="trigger",
                    segment=segment_pb2.Segment(display_name="trigger", rule='event("Bench Trigger", within 1d)'),
                ),
                timeout=600,
            )
            created_seconds = time.perf_counter() - t
            members = 0
            for n in range(len(LIVE_SEGMENTS)):
                got = await stub.GetSegment(segment_pb2.GetSegmentRequest(name=f"workspaces/{WS}/segments/live-{n}"))
                members += got.member_count
            rows.append(
                (
                    f"CreateSegment x {len(LIVE_SEGMENTS) + 1} (the live-update segments), in total",
                    f"{created_seconds:.1f} s ({members:,} memberships)",
                )
            )
        # The first refreshes announced every member of the 21 segments (millions of outbox rows at
        # 1M persons); relaying them is not what is measured here, so they are dropped.
        conn = await asyncpg.connect(dsn)
        if args.no_vacuum:
            await conn.execute("DELETE FROM segment.outbox")
        else:
            # Settled as in production, where the memberships were written long ago: no millions of
            # dead outbox rows and no fresh membership tables for autovacuum to work through during
            # the live runs (untimed, stated).
            t0 = time.perf_counter()
            await conn.execute("TRUNCATE segment.outbox")
            await conn.execute(
                "VACUUM (ANALYZE) segment.memberships, segment.membership_history, segment.timers, segment.persons"
            )
            await conn.execute("CHECKPOINT")
            rows.append(
                (
                    "  then TRUNCATE outbox, VACUUM (ANALYZE) memberships, history, timers, persons; CHECKPOINT"
                    " (untimed)",
                    f"{time.perf_counter() - t0:.1f} s",
                )
            )
        await conn.close()
        rng.shuffle(ids)
        # What the bench holds by now (a million ids, the loaded rows) out of its collector's
        # walks: a full collection over them stopped publisher and subscriber for ~100 ms, which
        # showed as service latency.
        collector.freeze()
        if os.environ.get("CDP_BENCH_PROFILE"):  # py-spy samples of the live path (dev aid)
            profiler = subprocess.Popen(  # noqa: ASYNC220
                [
                    str(Path(sys.executable).with_name("py-spy")),
                    "record",
                    "--pid",
                    str(process.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "100",
                    "-o",
                    os.environ["CDP_BENCH_PROFILE"],
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        variants = args.variant or [None]
        current = None  # the variant the service runs with; None: as started
        used = 0
        for _round, variant in itertools.product(range(args.rounds), variants):
            if variant != current:  # the service again, with this variant's settings (A/B on the same data)
                process.terminate()
                process.wait(30)
                process = _start_service(dsn, nats_url, port, metrics_port, variant)
                await _ready(port, process)
                current = variant
            label = f" [{', '.join(f'{k}={v}' for k, v in variant.items())}]" if variant else ""
            updates = await _states(dsn, ids[used : used + args.updates])
            used += args.updates
            rows += await _live_rows(js, names, dsn, process, updates, args, label)
            for rate in (float(r) for r in args.rates.split(",")):
                count = int(rate * args.seconds)
                triggers = await _states(dsn, ids[used : used + count])
                used += count
                rows += await _latency_rows(js, nc, names, dsn, process, metrics_port, triggers, rate, args, label)
        if args.burst:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await segment_pb2_grpc.SegmentServiceStub(channel).CreateSegment(
                    segment_pb2.CreateSegmentRequest(
                        parent=f"workspaces/{WS}",
                        segment_id="due",
                        segment=segment_pb2.Segment(display_name="due", rule="traits.bench_due more than 1d ago"),
                    ),
                    timeout=600,
                )
            burst = await _states(dsn, ids[used : used + args.burst])
            lags, lost = await _timer_burst(js, nc, names, burst, lead=15 + args.burst / 500)
            p50, p99, worst = _percentiles(lags, lost, (50, 99, 100))
            rows.append(
                (
                    f"timers: {len(burst):,} persons due at the same instant, lag to entered announced:"
                    " p50 / p99 / last",
                    f"{_ms(p50)} / {_ms(p99)} / {_ms(worst)} ms (poll {1.0:.0f} s;"
                    f" load average {os.getloadavg()[0]:.1f})" + (f" ({lost} not seen within 120 s)" if lost else ""),
                )
            )
    finally:
        for running in (process, *replicas):
            running.terminate()
        for running in (process, *replicas):
            running.wait(30)
        if profiler is not None:
            profiler.wait(30)
        await nc.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench segment")
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--rates", default="250,500,1000", help="announcements per second, one run each")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--variant",
        action="append",
        type=settings,
        default=[],
        metavar="NAME=VALUE[,NAME=VALUE]",
        help="service settings for the live measures, e.g. CDP_SEGMENT_CONSUMER_COALESCE=true (repeatable: the"
        " live updates and latency runs once per variant, the service restarted between them, on the same data)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="the live measures this many times (variants interleaved)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="segment service processes")
    parser.add_argument("--burst", type=int, default=10_000, help="persons whose timers fall due at once (0: skip)")
    parser.add_argument(
        "--statements", action="store_true", help="print the SQL statements per announcement of the first latency run"
    )
    parser.add_argument(
        "--no-fsync", action="store_true", help="PostgreSQL without fsync (to see what the disk costs; not durable)"
    )
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="no VACUUM (ANALYZE) after the load and the segments' creation (as before 2026-12-02)",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        type=setting,
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for the run (ALTER SYSTEM), e.g. plan_cache_mode=force_custom_plan",
    )
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="cdp-bench-segment-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg", free_port(), fast=args.no_fsync)
        nats_server = NatsServer(Path(tmp) / "nats", free_port(), free_port())
        postgres.start()
        pg_settings = list(args.pg_setting)
        if args.statements:  # counted per announcement with pg_stat_statements (loaded at start)
            pg_settings.append(("shared_preload_libraries", "pg_stat_statements"))
        if pg_settings:
            for name, value in pg_settings:
                postgres.psql(f"ALTER SYSTEM SET {name} = '{value}'")
            postgres.stop()
            postgres.start()
        nats_server.start()
        load_before = load_average()
        try:
            postgres.create_database("segment_bench")
            rows = asyncio.run(_run(postgres.dsn("segment_bench"), nats_server.url, args))
        finally:
            nats_server.stop()
            postgres.stop()
    load = load_average()
    print(
        f"\nsegment benchmark{' (PostgreSQL without fsync)' if args.no_fsync else ''}"
        f"{''.join(f' ({name}={value})' for name, value in args.pg_setting)}: {machine()},"
        f" load average before {load_before}, at the end {load}"
    )
    print_rows(rows)


if __name__ == "__main__":
    main()
