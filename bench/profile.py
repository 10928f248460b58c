"""The profile service: mixed events processed per second, and GetProfile latency at 1M profiles.

Starts PostgreSQL (durable settings, as `cdp up` does) and NATS on free ports, migrates the
profile schema, sets a tier programme, points, a tag rule and a windowed trait, then:

- consumer: publishes N resolved events (default 100,000 for 20,000 persons, 100 events per
  JetStream message as identity publishes them, with their identifiers) of a realistic mix:
  product views and adds, pages, checkouts, identifies with PII traits (sealed), orders with
  two lines, refunds, store visits, coupons, message opens. Then starts `python -m cdp_profile
  serve` (its own process, default settings) and measures events stored and applied per second
  from the first stored event to the last (each batch: de-dup, partitions, profiles locked in
  person order, traits, orders, points, tags, tiers, lifecycle, timers, one ProfileChanged per
  changed profile in the outbox, all in one transaction; the outbox relay publishes meanwhile);
- GetProfile: adds profiles up to 1,000,000 rows with COPY (traits, PII sealed, computed, tags),
  then calls GetProfile over gRPC on the same process, one call at a time, for random persons
  (half with events and orders from the consumer run), after a warm-up: p50 / p99.

    python -m bench profile [--events 100000] [--persons 20000] [--profiles 1000000] [--replicas 2]

With --replicas N > 1, the visits mix runs once more on N replicas of the service sharing the
partitions (started first, given 20 s to share them out, then the events are published).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import nats

from bench.report import load_average, machine, print_rows, serving
from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_devstack.infra import NatsServer, PostgresServer, free_port
from cdp_profile import __main__ as profile_main
from cdpkit.bus import RESOLVED, BusNames, ensure_streams, partition_of
from cdpkit.ids import new_id
from cdpkit.migrate import migrate
from cdpkit.pii import PiiVault, new_key

WS = "bench"
PREFIX = "bench"
PARTITIONS = 4
WARM_UP = 500
START = datetime(2026, 5, 1, tzinfo=UTC)
SETTINGS = {
    "tiers": {"by": "spend_365d", "levels": [{"name": "silver", "min": 50000}, {"name": "gold", "min": 300000}]},
    "points": {"per_currency_unit": 1, "expire_after_days": 365},
    "tag_rules": [{"tag": "repurchase", "when": "order_count >= 2"}],
    "windowed_traits": [{"name": "views_30d", "event": "Product Viewed", "days": 30}],
}
MIX = (
    ("Product Viewed", 50),
    ("page", 8),
    ("Product Added", 10),
    ("Checkout Started", 5),
    ("identify", 8),
    ("Order Completed", 7),
    ("Order Refunded", 1),
    ("Store Visited", 4),
    ("Coupon Redeemed", 3),
    ("Message Opened", 4),
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _events(count: int, persons: list[str], sessions: bool, seed: int = 7) -> list[events_pb2.ResolvedEvent]:
    """``sessions``: a shopper's events come in visits of 1 to 8 events in a row (as a storefront
    sends them); else every event is for a random shopper (the worst case: few events per
    profile per batch)."""
    rng = random.Random(seed)
    names = [n for n, weight in MIX for _ in range(weight)]
    orders: list[tuple[int, str]] = []
    out = []
    left, index = 0, 0
    for k in range(count):
        if not sessions or left == 0:
            index = rng.randrange(len(persons))
            left = rng.randint(1, 8)
        left -= 1
        person = persons[index]
        name = rng.choice(names)
        raw = events_pb2.RawEvent(message_id=f"b{seed}-{k}", workspace_id=WS, user_id=f"u{index}")
        raw.timestamp.FromDatetime(START + timedelta(seconds=k * 30))
        raw.received_at.FromDatetime(START + timedelta(seconds=k * 30 + 1))
        raw.context.update({"library": {"name": "analytics.js"}, "page": {"path": "/p"}})
        if name == "identify":
            raw.type = events_pb2.EVENT_TYPE_IDENTIFY
            raw.traits.update(
                {"email": f"u{index}@example.com", "name": f"Shopper {index}", "city": "杭州", "vip_level": index % 5}
            )
        elif name == "page":
            raw.type = events_pb2.EVENT_TYPE_PAGE
            raw.event = "Home"
            raw.properties.update({"path": "/", "title": "Home"})
        else:
            raw.type = events_pb2.EVENT_TYPE_TRACK
            raw.event = name
            if name == "Order Completed":
                order_id = f"o{seed}-{k}"
                orders.append((index, order_id))
                price = rng.choice([99.0, 199.0, 499.5, 1299.0])
                raw.properties.update(
                    {
                        "order_id": order_id,
                        "total": price + 59.0,
                        "currency": "CNY",
                        "store_id": f"s-{index % 50}",
                        "products": [
                            {"product_id": "p-1", "sku": "A-1", "category": "outdoor/poles", "price": price},
                            {"product_id": "p-2", "sku": "B-2", "category": "outdoor/socks", "price": 59.0},
                        ],
                    }
                )
            elif name == "Order Refunded" and orders:
                index, order_id = orders[rng.randrange(len(orders))]
                person = persons[index]
                raw.properties.update({"order_id": order_id, "total": 59.0})
            else:
                raw.properties.update({"sku": f"SKU-{k % 500}", "price": 199.0, "category": "outdoor/poles"})
        resolved = events_pb2.ResolvedEvent(event=raw, person_id=person)
        resolved.identifiers.add(type="user_id", value=f"u{index}")
        out.append(resolved)
    return out


async def _publish(nats_url: str, events: list[events_pb2.ResolvedEvent], run: str) -> None:
    names = BusNames(PREFIX, PARTITIONS)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, names)
        by_partition: dict[int, list] = {}
        for event in events:
            by_partition.setdefault(partition_of(event.person_id, PARTITIONS), []).append(event)
        publishes = []
        for partition, items in by_partition.items():
            for start in range(0, len(items), 100):
                batch = events_pb2.ResolvedEventBatch(events=items[start : start + 100])
                publishes.append(
                    js.publish(
                        names.subject(RESOLVED, partition),
                        batch.SerializeToString(),
                        headers={"Nats-Msg-Id": f"bench:{run}:{partition}:{start}"},
                    )
                )
        for start in range(0, len(publishes), 200):
            await asyncio.gather(*publishes[start : start + 200])
    finally:
        await nc.close()


async def _settings(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        settings = profile_pb2.ProfileSettings(name=f"workspaces/{WS}/profileSettings")
        settings.tiers.update(SETTINGS["tiers"])
        settings.points.update(SETTINGS["points"])
        settings.tag_rules.extend(SETTINGS["tag_rules"])
        settings.windowed_traits.extend(SETTINGS["windowed_traits"])
        await stub.UpdateProfileSettings(profile_pb2.UpdateProfileSettingsRequest(settings=settings))


async def _stored(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM profile.event_keys")
    finally:
        await conn.close()


async def _wait_stored(dsn: str, before: int, expected: int, timeout: float = 900) -> tuple[float, float]:
    """Times of the first and the last event stored after ``before`` (polled every 50 ms)."""
    conn = await asyncpg.connect(dsn)
    try:
        first = None
        deadline = time.perf_counter() + timeout
        while True:
            stored = await conn.fetchval("SELECT count(*) FROM profile.event_keys")
            now = time.perf_counter()
            if stored > before and first is None:
                first = now
            if stored >= expected:
                return first or now, now
            if now > deadline:
                raise RuntimeError(f"only {stored} of {expected} events stored")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def _load_profiles(dsn: str, vault: PiiVault, count: int) -> None:
    """Bulk profiles with the shape the consumer writes, up to ``count`` rows in all."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "profile"})
    try:
        existing = await conn.fetchval("SELECT count(*) FROM profiles")
        now = datetime.now(UTC)
        chunk = 50_000
        for start in range(existing, count, chunk):
            rows = []
            for n in range(start, min(count, start + chunk)):
                person = new_id()
                pii = vault.seal(json.dumps({"email": f"x{n}@example.com"}), context=f"{WS}/profile/{person}")
                computed = {
                    "event_count": 12,
                    "order_count": n % 4,
                    "total_spent_minor": (n % 4) * 25_800,
                    "last_seen_time": "2026-06-01T00:00:00.000000Z",
                    "favourite_channel": "web",
                }
                rows.append(
                    (
                        WS,
                        person,
                        json.dumps({"city": "杭州", "vip_level": n % 5}),
                        pii,
                        json.dumps({"city": ["2026-05-01T00:00:00.000000Z", "", 0]}),
                        12,
                        now,
                        now,
                        json.dumps(computed),
                        "active" if n % 4 else "prospect",
                        json.dumps(
                            {
                                "repurchase": {
                                    "source": "rule:repurchase",
                                    "at": "2026-06-01T00:00:00.000000Z",
                                    "expires": None,
                                }
                            }
                        )
                        if n % 4 >= 2
                        else "{}",
                        1,
                    )
                )
            await conn.copy_records_to_table(
                "profiles",
                records=rows,
                columns=[
                    "workspace_id",
                    "person_id",
                    "traits",
                    "pii",
                    "trait_meta",
                    "event_count",
                    "first_seen_at",
                    "last_seen_at",
                    "computed",
                    "lifecycle_stage",
                    "tags",
                    "version",
                ],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _latency(port: int, persons: list[str], calls: int) -> tuple[float, float]:
    rng = random.Random(11)
    latencies = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        for k in range(calls + WARM_UP):
            name = f"workspaces/{WS}/profiles/{rng.choice(persons)}"
            started = time.perf_counter()
            await stub.GetProfile(profile_pb2.GetProfileRequest(name=name))
            if k >= WARM_UP:
                latencies.append((time.perf_counter() - started) * 1000)
    return statistics.median(latencies), _percentile(latencies, 0.99)


def _serve(dsn: str, nats_url: str, keys: str, hash_key: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "CDP_DATABASE_URL": dsn,
        "CDP_NATS_URL": nats_url,
        "CDP_BUS_PREFIX": PREFIX,
        "CDP_PARTITIONS": str(PARTITIONS),
        "CDP_PII_KEYS": keys,
        "CDP_PII_HASH_KEY": hash_key,
        "CDP_PROFILE_GRPC_PORT": str(port),
        "CDP_PROFILE_METRICS_PORT": "0",
        "CDP_LOG_LEVEL": "warning",
        "CDP_LOG_FORMAT": "json",
    }
    return subprocess.Popen([sys.executable, "-m", "cdp_profile", "serve"], env=env, stdout=subprocess.DEVNULL)


async def _run(
    dsn: str, nats_url: str, events: int, persons: int, profiles: int, replicas: int
) -> list[tuple[str, str]]:
    keys, hash_key = f"b1:{new_key()}", new_key()
    vault = PiiVault.from_config(keys, hash_key)
    await migrate(dsn, profile_main.SCHEMA, profile_main.MIGRATIONS)
    person_ids = [new_id() for _ in range(persons)]
    rows: list[tuple[str, str]] = []

    # Settings first (through the API), with the consumer idle: nothing is published yet.
    port = free_port()
    process = _serve(dsn, nats_url, keys, hash_key, port)
    try:
        await serving(port, process)
        await _settings(port)
    finally:
        process.terminate()
        process.wait(30)
    runs = [(True, 1), (False, 1)] + ([(True, replicas)] if replicas > 1 else [])
    for sessions, count in runs:
        workload = _events(events, person_ids, sessions, seed=7 + len(rows))
        run = f"{int(sessions)}-{count}"
        before = await _stored(dsn)
        processes = []
        try:
            if count == 1:
                # Everything published first, then one replica starts on the backlog.
                await _publish(nats_url, workload, run)
                processes.append(_serve(dsn, nats_url, keys, hash_key, port))
            else:
                # Replicas started first and given time to share the partitions out (leases), then the load.
                processes = [_serve(dsn, nats_url, keys, hash_key, free_port()) for _ in range(count)]
                await asyncio.sleep(20)
                await _publish(nats_url, workload, run)
            first, last = await _wait_stored(dsn, before, before + events)
            load_during = os.getloadavg()[0]
            rate = events / (last - first) if last > first else float("nan")
            mix = "visits of 1-8 events per shopper" if sessions else "every event a random shopper"
            who = "1 replica" if count == 1 else f"{count} replicas"
            rows.append(
                (f"consumer, {who}: {events:,} mixed events, {persons:,} persons, {mix}", f"{rate:,.0f} events/s")
            )
            rows.append(("  1-minute load average right after that run", f"{load_during:.2f}"))
            await asyncio.sleep(2)
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)

    t0 = time.perf_counter()
    await _load_profiles(dsn, vault, profiles)
    rows.append((f"load to {profiles:,} profiles (COPY)", f"{time.perf_counter() - t0:.1f} s"))
    conn = await asyncpg.connect(dsn)
    try:
        bulk = [
            str(r["person_id"])
            for r in await conn.fetch("SELECT person_id FROM profile.profiles TABLESAMPLE SYSTEM (1) LIMIT 20000")
        ]
        total = await conn.fetchval("SELECT count(*) FROM profile.profiles")
        consumer_persons = [
            str(r["person_id"]) for r in await conn.fetch("SELECT DISTINCT person_id FROM profile.event_keys")
        ]
    finally:
        await conn.close()
    process = _serve(dsn, nats_url, keys, hash_key, port)
    try:
        await serving(port, process)
        await asyncio.sleep(3)
        with_events = [p for p in person_ids if p in set(consumer_persons)]
        p50, p99 = await _latency(port, with_events + bulk[: len(with_events)], 5000)
    finally:
        process.terminate()
        process.wait(30)
    rows.append((f"GetProfile over gRPC at {total:,} profiles, warm, p50 / p99", f"{p50:.2f} / {p99:.2f} ms"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench profile")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--replicas", type=int, default=2, help="also run the visits mix on this many replicas")
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="cdp-bench-profile-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg", free_port())
        nats_server = NatsServer(Path(tmp) / "nats", free_port(), free_port())
        postgres.start()
        nats_server.start()
        try:
            postgres.create_database("profile_bench")
            rows = asyncio.run(
                _run(
                    postgres.dsn("profile_bench"),
                    nats_server.url,
                    args.events,
                    args.persons,
                    args.profiles,
                    args.replicas,
                )
            )
        finally:
            nats_server.stop()
            postgres.stop()
    load = load_average()
    described = f"{machine()}, load average at the end {load}"
    print(f"\nprofile benchmark: {described}")
    print_rows(rows)


if __name__ == "__main__":
    main()
