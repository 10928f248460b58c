"""Customer value: our fit beside `lifetimes` on CDNOW, the models for 1M customers, the profile
service's recompute for 1M customers through PostgreSQL, and CDNOW_master imported end to end.

    python -m bench analytics [--customers 1000000] [--skip-master]

1. CDNOW_sample (from the lifetimes wheel): BG/NBD and Gamma-Gamma fitted by cdp_analytics and
   by lifetimes in the same run: parameters, log-likelihood and time.
2. The models alone for N simulated customers (times in whole days, like real data): fit both,
   then P(alive), churn risk, expected purchases in 12 weeks, expected average value and
   12-month CLV for everyone. Data generation is not timed.
3. The profile service's recompute for N customers, through PostgreSQL (durable settings, as
   `cdp up` runs it): N profiles and their orders (the same simulation, amounts in fen) are
   COPYed in (not timed), then a recompute job runs the way the worker runs it: read (SQL
   customer-day aggregation, binary COPY out), fit, predict, write (binary COPY in, the model's
   rows, the previous model's dropped), announce (the profiles' computed traits and versions, one
   ProfileChanged per moved prediction in the outbox). The first run announces everybody; a
   second, a day later, only what moved by CDP_PROFILE_PREDICTION_MIN_CHANGE (before it, not
   timed: the outbox emptied as the relay would, VACUUM ANALYZE as autovacuum would). The
   server runs with max_wal_size 8GB (CDP_BENCH_MAX_WAL_SIZE); each run prints its WAL volume,
   full-page images, checkpoints and CPU seconds (this process, the PostgreSQL server).
4. CDNOW_master end to end (69,659 transactions, 23,570 customers): identity and profile as
   processes on NATS and PostgreSQL, `python -m cdp_profile import --format cdnow`, then a
   recompute over gRPC, until the outbox is drained (every announcement published).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path

import asyncpg
import grpc
import numpy as np
from cdp_analytics import bgnbd, gamma_gamma, simulate, summary
from cdp_analytics.clv import customer_lifetime_value

from bench.report import load_average, machine, postgres_cpu, serving
from cdp.identity.v1 import identity_pb2  # noqa: F401 - the stubs load with the profile ones
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_devstack.infra import NatsServer, PostgresServer, free_port
from cdp_profile import __main__ as profile_main
from cdp_profile.predictions import PredictionService, PredictionSettings
from cdp_profile.service import ProfileService
from cdpkit.bus import BusNames
from cdpkit.clock import ManualClock
from cdpkit.db import create_pool
from cdpkit.ids import uuid7
from cdpkit.migrate import migrate
from cdpkit.pii import PiiVault, new_key

WS = "bench"
MAX_WAL_SIZE = os.environ.get("CDP_BENCH_MAX_WAL_SIZE", "8GB")
CALIBRATION_END = date(2026, 6, 1)


DATASETS = Path(next(iter(find_spec("lifetimes").submodule_search_locations))) / "datasets"


def _cdnow() -> summary.Summary:
    path = DATASETS / "CDNOW_sample.txt"
    rows = [line.split() for line in path.read_text().splitlines()]
    transactions = [summary.Transaction(r[0], datetime.strptime(r[2], "%Y%m%d").date(), float(r[4])) for r in rows]
    return summary.summarise(transactions, date(1997, 9, 30))


def _timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench analytics")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--skip-master", action="store_true", help="skip CDNOW_master end to end")
    args, _ = parser.parse_known_args()
    rows: list[tuple[str, str, str]] = []

    data = _cdnow()
    ours, ours_s = _timed(lambda: bgnbd.fit(data.x, data.t_x, data.T))
    ours_gg, ours_gg_s = _timed(lambda: gamma_gamma.fit(data.x, data.m_x))
    rows.append(
        (
            "CDNOW BG/NBD, cdp_analytics",
            f"r={ours.r:.3f} α={ours.alpha:.3f} a={ours.a:.3f} b={ours.b:.3f} LL={ours.log_likelihood:.1f}",
            f"{ours_s * 1000:.0f} ms",
        )
    )
    rows.append(
        (
            "CDNOW Gamma-Gamma, cdp_analytics",
            f"p={ours_gg.p:.2f} q={ours_gg.q:.2f} γ={ours_gg.gamma:.2f}",
            f"{ours_gg_s * 1000:.0f} ms",
        )
    )
    try:
        from lifetimes import BetaGeoFitter, GammaGammaFitter

        theirs, theirs_s = _timed(lambda: BetaGeoFitter().fit(data.x, data.t_x, data.T))
        p = theirs.params_
        rows.append(
            (
                "CDNOW BG/NBD, lifetimes",
                f"r={p['r']:.3f} α={p['alpha']:.3f} a={p['a']:.3f} b={p['b']:.3f}",
                f"{theirs_s * 1000:.0f} ms",
            )
        )
        keep = data.x > 0
        theirs_gg, theirs_gg_s = _timed(lambda: GammaGammaFitter().fit(data.x[keep], data.m_x[keep]))
        g = theirs_gg.params_
        rows.append(
            (
                "CDNOW Gamma-Gamma, lifetimes",
                f"p={g['p']:.2f} q={g['q']:.2f} γ={g['v']:.2f}",
                f"{theirs_gg_s * 1000:.0f} ms",
            )
        )
    except ImportError as exc:  # lifetimes is a benchmark-only dependency
        rows.append(("lifetimes", f"not installed ({exc})", "-"))

    rng = np.random.default_rng(1)
    n = args.customers
    people = simulate.bgnbd_customers_fast(rng, n, r=0.5, alpha=6.0, a=0.7, b=3.0, T_days_min=30, T_days_max=730)
    m_x = simulate.gamma_gamma_spend_fast(rng, people.x, p=6.0, q=4.0, gamma=15.0)
    started = time.perf_counter()
    fitted = bgnbd.fit(people.x, people.t_x, people.T)
    fit_s = time.perf_counter() - started
    spend = gamma_gamma.fit(people.x, m_x)
    fit_gg_s = time.perf_counter() - started - fit_s
    alive = bgnbd.probability_alive(fitted, people.x, people.t_x, people.T)
    churn = 1 - alive
    upcoming = bgnbd.expected_purchases(fitted, 12, people.x, people.t_x, people.T)
    value = gamma_gamma.expected_average_value(spend, people.x, m_x)
    clv = customer_lifetime_value(fitted, spend, people.x, people.t_x, people.T, m_x, months=12)
    total_s = time.perf_counter() - started
    assert (
        np.isfinite(clv).all() and np.isfinite(churn).all() and np.isfinite(upcoming).all() and np.isfinite(value).all()
    )
    rows.append(
        (
            f"recompute {n:,} customers: fit BG/NBD",
            f"r={fitted.r:.3f} α={fitted.alpha:.2f} a={fitted.a:.3f} b={fitted.b:.2f} (true 0.5, 6, 0.7, 3)",
            f"{fit_s:.1f} s",
        )
    )
    rows.append(
        (
            "  fit Gamma-Gamma",
            f"p={spend.p:.2f} q={spend.q:.2f} γ={spend.gamma:.2f} (true 6, 4, 15)",
            f"{fit_gg_s:.1f} s",
        )
    )
    rows.append(
        (
            "  + P(alive), churn, E[purchases 12w], E[value], 12-month CLV for all",
            f"mean CLV {clv.mean():.1f}",
            f"{total_s:.1f} s total",
        )
    )

    with tempfile.TemporaryDirectory(prefix="cdp-bench-analytics-") as tmp:
        postgres = PostgresServer(Path(tmp) / "pg", free_port())
        postgres.start()
        try:
            # A first fit writes about 2 GB of WAL: with the default 1 GB between checkpoints it
            # checkpoints 6-7 times, and every page touched after each one goes to the WAL whole
            # again (data checksums: hint bits too). docs/operations.md recommends this size.
            postgres.psql(f"ALTER SYSTEM SET max_wal_size = '{MAX_WAL_SIZE}'")
            postgres.psql("SELECT pg_reload_conf()")
            postgres.create_database("recompute")
            rows += asyncio.run(_recompute(postgres.dsn("recompute"), n, postgres.process.pid))
            if not args.skip_master:
                nats_server = NatsServer(Path(tmp) / "nats", free_port(), free_port())
                nats_server.start()
                try:
                    postgres.create_database("master")
                    rows += asyncio.run(_master(postgres.dsn("master"), nats_server.url, Path(tmp)))
                finally:
                    nats_server.stop()
        finally:
            postgres.stop()

    print(f"\nanalytics benchmark: {machine()}, load average at the end {load_average()}")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def _load() -> str:
    return f"load average {load_average()}"


def _histories(n: int) -> tuple[list[uuid.UUID], list[tuple[uuid.UUID, datetime, int]]]:
    """N BG/NBD customers (r=0.5, α=6, a=0.7, b=3) acquired over two years, Gamma-Gamma spend:
    their orders as (person, time, amount in fen)."""
    rng = np.random.default_rng(3)
    people = simulate.bgnbd_customers_fast(rng, n, r=0.5, alpha=6.0, a=0.7, b=3.0, T_days_min=30, T_days_max=730)
    spend = simulate.gamma_gamma_spend_fast(rng, np.maximum(people.x, 1), p=6.0, q=4.0, gamma=15.0)
    age = np.rint(people.T * 7).astype(int)
    last = np.rint(people.t_x * 7).astype(int)
    repeats = people.x.astype(int)
    end = datetime(CALIBRATION_END.year, CALIBRATION_END.month, CALIBRATION_END.day, 2, tzinfo=UTC)
    # Person ids as identity makes them (UUIDv7, time-ordered): profiles are created in about
    # person order, so the rows of a batch of persons share pages. CDP_BENCH_RANDOM_PERSONS=1:
    # random UUIDs (rows of a batch on as many pages: the worst case for announcing).
    random_persons = os.environ.get("CDP_BENCH_RANDOM_PERSONS") == "1"
    persons = [uuid.uuid4() if random_persons else uuid7() for _ in range(n)]
    orders = []
    for i in range(n):
        first = end - timedelta(days=int(age[i]))
        amount = max(100, int(spend[i] * 100))
        orders.append((persons[i], first, amount))
        if repeats[i] and last[i] >= 1:  # repeats within the first day are the same purchase day
            days = [int(last[i])]
            if repeats[i] > 1 and last[i] > 1:
                days += rng.choice(np.arange(1, last[i]), size=min(repeats[i] - 1, last[i] - 1), replace=False).tolist()
            orders += [(persons[i], first + timedelta(days=day, hours=3), amount) for day in days]
    return persons, orders


async def _recompute(dsn: str, n: int, postgres_pid: int) -> list[tuple[str, str, str]]:
    await migrate(dsn, profile_main.SCHEMA, profile_main.MIGRATIONS)
    persons, orders = _histories(n)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "profile"})
    try:
        started = time.perf_counter()
        computed = {"event_count": 12, "order_count": 2, "total_spent_minor": 25800, "favourite_channel": "web"}
        computed = json.dumps({**computed, "last_seen_time": "2026-05-30T00:00:00.000000Z", "region_code": "330106"})
        traits = json.dumps({"city": "杭州", "vip_level": 2, "gender": "f"})
        await conn.copy_records_to_table(
            "profiles",
            records=[(WS, p, traits, computed, "active", 3) for p in persons],
            columns=["workspace_id", "person_id", "traits", "computed", "lifecycle_stage", "version"],
        )
        await conn.copy_records_to_table(
            "orders",
            records=[(WS, f"o{k}", p, "completed", "CNY", amount, when) for k, (p, when, amount) in enumerate(orders)],
            columns=["workspace_id", "order_id", "person_id", "status", "currency", "total_minor", "order_time"],
        )
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")  # the load's dirty pages written out before the jobs, not during them
        loaded = time.perf_counter() - started
    finally:
        await conn.close()
    pool = await create_pool(dsn, profile_main.SCHEMA, application_name="bench-recompute", max_size=2)
    clock = ManualClock(datetime(2026, 6, 1, 12, tzinfo=UTC))
    vault = PiiVault.from_config(f"b1:{new_key()}", new_key())
    names = BusNames(WS)
    profiles = ProfileService(pool, names, vault, clock)
    service = PredictionService(pool, names, clock, profiles.settings_of, PredictionSettings(announce_batch=5000))
    rows = [
        (
            f"recompute through PostgreSQL: {n:,} profiles, {len(orders):,} orders (COPY, not timed)",
            "",
            f"{loaded:.0f} s",
        )
    ]
    try:
        for run, label in ((1, "first fit: everyone announced"), (2, "a day later: what moved")):
            if run == 2:
                clock.advance(timedelta(days=1))
                # What a day does, not timed: the relay publishes and deletes the outbox rows,
                # autovacuum cleans up after the first fit (else it runs during this one).
                async with pool.acquire() as conn:
                    await conn.execute("DELETE FROM outbox")
                    await conn.execute("VACUUM ANALYZE")
            job = await service.request(WS, f"bench-{run}", None)
            before = await _postgres_counters(pool)
            cpu = time.process_time(), postgres_cpu(postgres_pid)
            started = time.perf_counter()
            await service.run_next()
            total = time.perf_counter() - started
            python_cpu, pg_cpu = time.process_time() - cpu[0], postgres_cpu(postgres_pid) - cpu[1]
            load = _load()
            wal, full_pages, checkpoints = (b - a for a, b in zip(before, await _postgres_counters(pool), strict=True))
            job = await service.get_job(WS, job.job_id)
            assert job.state == "succeeded", job.error
            phases = ", ".join(f"{k} {v:.1f}" for k, v in job.timings.items())
            rows.append(
                (
                    f"  {label}",
                    f"{job.customers:,} customers, {job.announced:,} announced; {phases} s; WAL {wal / 2**20:,.0f} MB "
                    f"({full_pages:,} full-page images), {checkpoints} checkpoints; CPU Python {python_cpu:.1f} s, "
                    f"PostgreSQL {pg_cpu:.1f} s; {load}",
                    f"{total:.1f} s",
                )
            )
        model = await service.get_model(WS, None)
        rows.append(
            (
                "  fitted from the database",
                f"r={model.bgnbd_r:.3f} α={model.bgnbd_alpha:.2f} a={model.bgnbd_a:.3f} b={model.bgnbd_b:.2f} "
                f"p={model.gg_p:.2f} q={model.gg_q:.2f} γ={model.gg_gamma:.2f} (true 0.5, 6, 0.7, 3; 6, 4, 15)",
                "",
            )
        )
    finally:
        await pool.close()
    return rows


async def _postgres_counters(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """WAL bytes written, full-page images, checkpoints: cumulative, for differences."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8,
                      (SELECT wal_fpi FROM pg_stat_wal), (SELECT num_timed + num_requested FROM pg_stat_checkpointer)"""
        )
    return tuple(row)


def _serve(component: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", f"cdp_{component}", "serve"], env=env, stdout=subprocess.DEVNULL)


async def _master(dsn: str, nats_url: str, tmp: Path) -> list[tuple[str, str, str]]:
    keys, hash_key = f"b1:{new_key()}", new_key()
    identity_port, profile_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDP_")},
        "CDP_DATABASE_URL": dsn,
        "CDP_NATS_URL": nats_url,
        "CDP_BUS_PREFIX": "master",
        "CDP_PII_KEYS": keys,
        "CDP_PII_HASH_KEY": hash_key,
        "CDP_IDENTITY_GRPC_PORT": str(identity_port),
        "CDP_IDENTITY_METRICS_PORT": "0",
        "CDP_PROFILE_GRPC_PORT": str(profile_port),
        "CDP_PROFILE_METRICS_PORT": "0",
        "CDP_PROFILE_IDENTITY_TARGET": f"127.0.0.1:{identity_port}",
        "CDP_PROFILE_PREDICTION_INTERVAL_SECONDS": "0",
        "CDP_PROFILE_PREDICTION_POLL_SECONDS": "0.2",
        "CDP_LOG_LEVEL": "warning",
        "CDP_LOG_FORMAT": "json",
    }
    services = [_serve("identity", env), _serve("profile", env)]
    rows = []
    try:
        await serving(identity_port, services[0])
        await serving(profile_port, services[1])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{profile_port}") as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            settings = profile_pb2.ProfileSettings(name="workspaces/cdnow/profileSettings", currency="USD")
            settings.time_zone = "America/New_York"
            await stub.UpdateProfileSettings(
                profile_pb2.UpdateProfileSettingsRequest(
                    settings=settings, update_mask={"paths": ["currency", "time_zone"]}
                )
            )
            master = DATASETS / "CDNOW_master.txt"
            command = [sys.executable, "-m", "cdp_profile", "import", str(master), "--workspace", "cdnow"]
            command += ["--kind", "orders", "--format", "cdnow", "--no-progress"]
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            output = (await process.communicate())[0].decode()
            if process.returncode:
                raise RuntimeError(f"the import failed: {output}")
            imported = time.perf_counter() - started
            load = _load()
            rows.append(
                (
                    "CDNOW_master end to end: python -m cdp_profile import",
                    output.strip().splitlines()[-1] + f"; {load}",
                    f"{imported:.1f} s",
                )
            )
            started = time.perf_counter()
            job = await stub.RecomputePredictions(
                profile_pb2.RecomputePredictionsRequest(parent="workspaces/cdnow", calibration_end_date="1997-09-30")
            )
            finished = (profile_pb2.PredictionJob.STATE_SUCCEEDED, profile_pb2.PredictionJob.STATE_FAILED)
            while job.state not in finished:
                await asyncio.sleep(0.2)
                job = await stub.GetPredictionJob(profile_pb2.GetPredictionJobRequest(name=job.name))
            conn = await asyncpg.connect(dsn, server_settings={"search_path": "profile"})
            try:
                while await conn.fetchval("SELECT count(*) FROM outbox"):  # noqa: ASYNC110 - polling another process
                    await asyncio.sleep(0.2)
                counts = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM profiles) p, (SELECT count(*) FROM orders) o, "
                    "(SELECT count(*) FROM predictions) r"
                )
            finally:
                await conn.close()
            drained = time.perf_counter() - started
            model = await stub.GetValueModel(
                profile_pb2.GetValueModelRequest(name="workspaces/cdnow/valueModels/latest")
            )
            bg, gg = model.bgnbd, model.gamma_gamma
            rows.append(
                (
                    "  recompute (calibration to 1997-09-30) until every announcement is published",
                    f"{counts['p']:,} profiles, {counts['o']:,} orders, {counts['r']:,} predictions, "
                    f"{job.announced:,} announced; r={bg.r:.3f} α={bg.alpha:.3f} a={bg.a:.3f} b={bg.b:.3f} "
                    f"LL={bg.log_likelihood:.1f} p={gg.p:.2f} q={gg.q:.2f} γ={gg.gamma:.2f}; {_load()}",
                    f"{drained:.1f} s",
                )
            )
    finally:
        for process in services:
            process.terminate()
            process.wait(30)
    return rows


if __name__ == "__main__":
    main()
