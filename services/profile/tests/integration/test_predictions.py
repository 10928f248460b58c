"""Customer-value predictions against real PostgreSQL, NATS JetStream and gRPC over a socket: the
service's own recompute (SQL customer-day aggregation, fit, predictions, storage, announcements)
gives exactly what cdp_analytics gives on the same transactions in Python."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import grpc
import nats
import numpy as np
import pytest
from cdp_analytics import summary, value
from google.protobuf import field_mask_pb2, timestamp_pb2

from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile import __main__ as profile_main
from cdp_profile import predictions, value_repository
from cdp_profile.bootstrap import bootstrap
from cdpkit.bus import PROFILE, RESOLVED, BusNames
from cdpkit.clock import ManualClock
from cdpkit.config import load
from cdpkit.migrate import migrate

WS = "shop"
ZONE = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 6, 18)
NOW = datetime(2026, 6, 18, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai


def purchase_history(customers: int, seed: int = 11) -> dict[str, list[tuple[date, float]]]:
    """BG/NBD customers (r=0.6, α=8, a=0.6, b=2.5) acquired over the last year, with Gamma spend;
    some buy twice on one day (one purchase for the models)."""
    rng = np.random.default_rng(seed)
    history: dict[str, list[tuple[date, float]]] = {}
    for _ in range(customers):
        person = str(uuid.uuid4())
        rate, drop = rng.gamma(0.6, 1 / 8.0), rng.beta(0.6, 2.5)
        spend = rng.gamma(4.0, 15.0)
        first = TODAY - timedelta(days=int(rng.integers(20, 365)))
        days, week = [first], 0.0
        while True:
            week += rng.exponential(1 / rate)
            if week * 7 > (TODAY - first).days:
                break
            day = first + timedelta(days=int(week * 7))
            days.append(day)
            if rng.random() < drop:
                break
        purchases = [(d, round(float(rng.gamma(6.0, spend / 6.0)) + 1, 2)) for d in days]
        if rng.random() < 0.1:
            purchases.append((days[-1], 9.90))  # a second order that day
        history[person] = purchases
    return history


def order_event(person: str, order_id: str, day: date, total: float) -> events_pb2.ResolvedEvent:
    raw = events_pb2.RawEvent(message_id=f"m-{order_id}", workspace_id=WS, type=events_pb2.EVENT_TYPE_TRACK)
    raw.event = "Order Completed"
    moment = datetime(day.year, day.month, day.day, 10, 0, tzinfo=ZONE)
    raw.timestamp.FromDatetime(moment)
    raw.received_at.FromDatetime(moment)
    raw.properties.update({"order_id": order_id, "total": total, "currency": "CNY"})
    return events_pb2.ResolvedEvent(event=raw, person_id=person)


def cancel_event(person: str, order_id: str, day: date) -> events_pb2.ResolvedEvent:
    raw = events_pb2.RawEvent(message_id=f"c-{order_id}", workspace_id=WS, type=events_pb2.EVENT_TYPE_TRACK)
    raw.event = "Order Cancelled"
    raw.timestamp.FromDatetime(datetime(day.year, day.month, day.day, 11, 0, tzinfo=ZONE))
    raw.properties.update({"order_id": order_id})
    return events_pb2.ResolvedEvent(event=raw, person_id=person)


@pytest.fixture
async def stack(service_env, nats_url):
    env = {
        **service_env,
        "CDP_PROFILE_GRPC_PORT": "0",
        "CDP_PROFILE_METRICS_PORT": "0",
        "CDP_PROFILE_TIMER_INTERVAL_SECONDS": "0.05",
        "CDP_PROFILE_PREDICTION_POLL_SECONDS": "0.05",
        "CDP_PROFILE_PREDICTION_INTERVAL_SECONDS": "0",
        "CDP_PROFILE_PREDICTION_ANNOUNCE_BATCH": "70",
    }
    settings = load(profile_main.Settings, env)
    await migrate(settings.database_url.get(), profile_main.SCHEMA, profile_main.MIGRATIONS)
    clock = ManualClock(NOW)
    runtime = await bootstrap(settings, clock=clock)
    await runtime.start()
    nc = await nats.connect(nats_url)
    names = BusNames(service_env["CDP_BUS_PREFIX"])
    db = await asyncpg.connect(service_env["CDP_DATABASE_URL"], server_settings={"search_path": "profile"})
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            yield profile_pb2_grpc.ProfileServiceStub(channel), nc.jetstream(), names, db, clock
    finally:
        await db.close()
        await nc.close()
        await runtime.stop()


async def load_history(js, names, db, history) -> None:
    count = 0
    for person, purchases in history.items():
        events = [order_event(person, f"{person[:8]}-{n}", day, total) for n, (day, total) in enumerate(purchases)]
        count += len(events)
        batch = events_pb2.ResolvedEventBatch(events=events)
        await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString())
    await wait(lambda: db.fetchval("SELECT count(*) FROM orders"), lambda n: n == count, "orders stored")


async def wait(fetch, predicate, what, timeout=60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await fetch()
        if predicate(got):
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: never; last {got}")
        await asyncio.sleep(0.05)


async def prediction_announcements(subscription, count: int, timeout: float = 30.0) -> list:
    """The next ``count`` ProfileChanged that announce predictions (values only, no snapshot)."""
    found = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(found) < count:
        message = await subscription.next_msg(timeout=max(0.1, deadline - asyncio.get_running_loop().time()))
        change = events_pb2.ProfileChanged.FromString(message.data)
        if not change.HasField("snapshot") and "computed.p_alive" in change.changed_fields:
            found.append(change)
    return found


async def finished(stub, job: profile_pb2.PredictionJob) -> profile_pb2.PredictionJob:
    done = (profile_pb2.PredictionJob.STATE_SUCCEEDED, profile_pb2.PredictionJob.STATE_FAILED)
    request = profile_pb2.GetPredictionJobRequest(name=job.name)
    return await wait(lambda: stub.GetPredictionJob(request), lambda j: j.state in done, f"job {job.name}")


def expected_values(history, calibration_end: date):
    transactions = [summary.Transaction(p, d, amount) for p, purchases in history.items() for d, amount in purchases]
    data = summary.summarise(transactions, calibration_end)
    totals = defaultdict(float)
    for t in transactions:
        if t.day <= calibration_end:
            totals[t.customer_id] += t.amount
    average = np.array([totals[c] for c in data.customer_ids]) / (data.x + 1)
    models = value.fit(data.x, data.t_x, data.T, data.m_x)
    values = value.predict(models, data.x, data.t_x, data.T, data.m_x, average, horizon_weeks=12)
    return models, {c: i for i, c in enumerate(data.customer_ids)}, values


async def test_recompute_matches_the_models_on_the_same_transactions_and_announces_what_moved(stack):
    stub, js, names, db, clock = stack
    history = purchase_history(300)
    # One order cancelled: it counts nowhere, for the models neither.
    cancelled_person = next(p for p, purchases in history.items() if len(purchases) >= 3)
    dropped = history[cancelled_person].pop(1)
    await load_history(js, names, db, {**history, cancelled_person: [*history[cancelled_person], dropped]})
    order_id = f"{cancelled_person[:8]}-{len(history[cancelled_person])}"
    batch = events_pb2.ResolvedEventBatch(events=[cancel_event(cancelled_person, order_id, dropped[0])])
    await js.publish(names.partitioned(RESOLVED, cancelled_person), batch.SerializeToString())
    await wait(lambda: db.fetchval("SELECT count(*) FROM orders WHERE cancelled"), lambda n: n == 1, "order cancelled")
    changes = await js.subscribe(names.all_subjects(PROFILE), stream=names.stream(PROFILE))

    parent = f"workspaces/{WS}"
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.RecomputePredictions(
            profile_pb2.RecomputePredictionsRequest(parent=parent, calibration_end_date="June")
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "calibration_end_date" in bad.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetValueModel(profile_pb2.GetValueModelRequest(name=f"{parent}/valueModels/latest"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    request = profile_pb2.RecomputePredictionsRequest(parent=parent, request_id="nightly-1")
    job = await stub.RecomputePredictions(request)
    assert job.name == f"{parent}/predictionJobs/nightly-1" and job.origin == "api"
    assert (await stub.RecomputePredictions(request)).name == job.name  # a retry: the same job
    job = await finished(stub, job)
    assert job.state == profile_pb2.PredictionJob.STATE_SUCCEEDED, job.error
    assert job.customers == len(history) and job.announced == len(history)
    assert set(job.phase_seconds) == {"read", "fit", "predict", "write", "announce"}

    models, index, values = expected_values(history, TODAY)
    model = await stub.GetValueModel(profile_pb2.GetValueModelRequest(name=f"{parent}/valueModels/latest"))
    assert model.name == job.value_model == f"{parent}/valueModels/1"
    assert model.calibration_end_date == "2026-06-18" and model.customers == len(history)
    assert model.repeat_customers == sum(len({d for d, _ in purchases}) > 1 for purchases in history.values())
    fitted = (model.bgnbd.r, model.bgnbd.alpha, model.bgnbd.a, model.bgnbd.b, model.bgnbd.log_likelihood)
    purchases = models.purchases
    expected = (purchases.r, purchases.alpha, purchases.a, purchases.b, purchases.log_likelihood)
    assert fitted == pytest.approx(expected, rel=1e-6)
    # Spend sums in minor units here, in floats there: the same optimum to the optimiser's tolerance
    # (the likelihood is flat along the p-q-γ ridge: q differed by 1.1e-4 relative in one run).
    assert (model.gamma_gamma.p, model.gamma_gamma.q, model.gamma_gamma.gamma) == pytest.approx(
        (models.spend.p, models.spend.q, models.spend.gamma), rel=1e-3
    )

    for person in [*list(history)[:25], cancelled_person]:
        got = await stub.GetProfile(profile_pb2.GetProfileRequest(name=f"{parent}/profiles/{person}"))
        i = index[person]
        p = got.predictions
        assert p.p_alive == pytest.approx(values.p_alive[i], rel=1e-9)
        assert p.churn_risk == pytest.approx(1 - values.p_alive[i], rel=1e-9)
        assert p.expected_purchases == pytest.approx(values.expected_purchases[i], rel=1e-9)
        assert p.horizon_weeks == 12 and p.model_version == model.name
        assert p.expected_order_value_minor == pytest.approx(values.expected_value[i] * 100, rel=1e-4, abs=1)
        assert p.predicted_clv_minor == pytest.approx(values.clv[i] * 100, rel=1e-4, abs=1)
        # The computed traits segments and templates read: what was announced.
        assert got.computed["p_alive"] == round(values.p_alive[i], 4)
        assert got.computed["churn_risk"] == round(1 - values.p_alive[i], 4)
        assert got.computed["expected_purchases_12w"] == round(values.expected_purchases[i], 4)
        assert got.computed["predicted_clv_minor"] == p.predicted_clv_minor

    # One ProfileChanged per customer, through the outbox: values of the changed fields, no snapshot.
    announced = await prediction_announcements(changes, len(history))
    assert {a.person_id for a in announced} == set(history)
    first = announced[0]
    assert list(first.changed_fields) == [
        "computed.churn_risk", "computed.expected_order_value_minor", "computed.expected_purchases_12w",
        "computed.p_alive", "computed.predicted_clv_minor",
    ]  # fmt: skip
    profile = await stub.GetProfile(profile_pb2.GetProfileRequest(name=f"{parent}/profiles/{first.person_id}"))
    assert first.version == profile.version

    # The same data again: nothing moved, nothing announced; the new model replaces the old.
    again = await finished(
        stub, await stub.RecomputePredictions(profile_pb2.RecomputePredictionsRequest(parent=parent))
    )
    assert again.state == profile_pb2.PredictionJob.STATE_SUCCEEDED and again.announced == 0
    assert await db.fetchval("SELECT count(DISTINCT model_id) FROM predictions") == 1

    # A week later with no new order: P(alive) falls for the lapsed, and only those whose
    # P(alive) (or a value) moved materially from what was announced are announced.
    clock.set(NOW + timedelta(days=7))
    later = await finished(
        stub, await stub.RecomputePredictions(profile_pb2.RecomputePredictionsRequest(parent=parent))
    )
    _, later_index, later_values = expected_values(history, TODAY + timedelta(days=7))
    moved = sum(
        abs(later_values.p_alive[later_index[c]] - values.p_alive[index[c]]) >= 0.05
        or abs(later_values.expected_purchases[later_index[c]] - values.expected_purchases[index[c]])
        >= max(0.05 * values.expected_purchases[index[c]], 0.01)
        or abs(round(later_values.clv[later_index[c]] * 100) - round(values.clv[index[c]] * 100))
        >= max(0.05 * round(values.clv[index[c]] * 100), 100)
        or abs(round(later_values.expected_value[later_index[c]] * 100) - round(values.expected_value[index[c]] * 100))
        >= max(0.05 * round(values.expected_value[index[c]] * 100), 100)
        for c in history
    )
    assert 0 < later.announced == moved < len(history)
    listed = await stub.ListValueModels(profile_pb2.ListValueModelsRequest(parent=parent, page_size=2))
    assert [m.name for m in listed.value_models] == [f"{parent}/valueModels/3", f"{parent}/valueModels/2"]
    rest = await stub.ListValueModels(
        profile_pb2.ListValueModelsRequest(parent=parent, page_token=listed.next_page_token)
    )
    assert [m.name for m in rest.value_models] == [f"{parent}/valueModels/1"] and not rest.next_page_token
    jobs = await stub.ListPredictionJobs(profile_pb2.ListPredictionJobsRequest(parent=parent))
    assert jobs.jobs[0].name == later.name and len(jobs.jobs) == 3
    assert f"{parent}/predictionJobs/nightly-1" in [j.name for j in jobs.jobs]


async def test_tag_rules_on_churn_risk_and_the_schedule(service_env, nats_url):
    """A tag rule reading churn_risk follows the predictions (through the timers); the schedule
    recomputes every workspace with enough customers once per interval of the clock."""
    env = {
        **service_env,
        "CDP_PROFILE_GRPC_PORT": "0",
        "CDP_PROFILE_METRICS_PORT": "0",
        "CDP_PROFILE_TIMER_INTERVAL_SECONDS": "0.05",
        "CDP_PROFILE_PREDICTION_POLL_SECONDS": "0.05",
        "CDP_PROFILE_PREDICTION_INTERVAL_SECONDS": "86400",
        "CDP_PROFILE_PREDICTION_MIN_CUSTOMERS": "150",
    }
    settings = load(profile_main.Settings, env)
    await migrate(settings.database_url.get(), profile_main.SCHEMA, profile_main.MIGRATIONS)
    clock = ManualClock(NOW)
    runtime = await bootstrap(settings, clock=clock)
    await runtime.start()
    nc = await nats.connect(nats_url)
    db = await asyncpg.connect(service_env["CDP_DATABASE_URL"], server_settings={"search_path": "profile"})
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            names = BusNames(service_env["CDP_BUS_PREFIX"])
            rules = profile_pb2.ProfileSettings(name=f"workspaces/{WS}/profileSettings")
            rules.tag_rules.extend([{"tag": "at-risk", "when": "churn_risk > 0.7"}])
            await stub.UpdateProfileSettings(
                profile_pb2.UpdateProfileSettingsRequest(
                    settings=rules, update_mask=field_mask_pb2.FieldMask(paths=["tag_rules"])
                )
            )
            history = purchase_history(150, seed=5)
            await load_history(nc.jetstream(), names, db, history)
            parent = f"workspaces/{WS}"

            async def jobs():
                return (await stub.ListPredictionJobs(profile_pb2.ListPredictionJobsRequest(parent=parent))).jobs

            done = profile_pb2.PredictionJob.STATE_SUCCEEDED
            first = await wait(jobs, lambda js: js and all(j.state == done for j in js), "a scheduled job")
            assert [j.origin for j in first] == ["schedule"]
            # The rule tags follow the announced churn risk.
            await wait(
                lambda: db.fetchval(
                    """SELECT count(*) FILTER (WHERE (computed->>'churn_risk')::float8 > 0.7) = count(*) FILTER
                              (WHERE tags ? 'at-risk') AND count(*) FILTER (WHERE tags ? 'at-risk') > 0
                       FROM profiles"""
                ),
                lambda ok: ok,
                "rule tags on churn risk",
            )
            # Nothing more until the interval has passed on the clock; then once more.
            await asyncio.sleep(0.3)
            assert len(await jobs()) == 1
            clock.advance(timedelta(days=1))
            second = await wait(jobs, lambda js: len(js) == 2 and js[0].state == done, "the next scheduled job")
            assert second[0].customers == len(history) and second[0].origin == "schedule"
    finally:
        await db.close()
        await nc.close()
        await runtime.stop()


async def test_announcement_lanes_go_in_person_order_one_transaction_at_a_time_and_resume(svc):
    """The announcing statements against real PostgreSQL: an interrupted batch changes nothing
    and leaves its lane's cursor where it was; a second transaction on the same lane waits for
    the first and goes on after it (nothing twice); a row without a profile is passed over; the
    old horizon's trait is removed; a lane with nothing left is deleted. A recompute after an
    interrupted announcement marks the rows after the cursor again, and those only (with the
    values they were to announce), and splits its marked rows into lanes."""
    pool, ws = svc.pool, "announce"
    a, b, c, gone, d = sorted(uuid.uuid4() for _ in range(5))
    names = predictions.prediction_names(12)
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO profiles (workspace_id, person_id, computed, version) VALUES ($1, $2, $3, 3)",
            [(ws, p, {"order_count": 2, "expected_purchases_8w": 0.5}) for p in (a, b, c, d)],
        )
        await conn.executemany(
            """INSERT INTO predictions (workspace_id, person_id, model_id, p_alive, expected_purchases,
                   expected_order_value_minor, predicted_clv_minor, announced_p_alive, announced_expected_purchases,
                   announced_order_value_minor, announced_clv_minor, announce)
               VALUES ($1, $2, 1, $3, $4, 5000, 9000, $3, $4, 5000, 9000, $5)""",
            [(ws, p, 0.123456, 1.987654, p != d) for p in (a, b, c, gone, d)],
        )
        await conn.execute("INSERT INTO prediction_announce_lanes (workspace_id, model_id, lane) VALUES ($1, 1, 0)", ws)

        async def versions() -> dict:
            rows = await conn.fetch("SELECT person_id, version FROM profiles WHERE workspace_id = $1", ws)
            return {r["person_id"]: r["version"] for r in rows}

        cursor = "SELECT after FROM prediction_announce_lanes WHERE workspace_id = $1 AND model_id = 1 AND lane = 0"
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                claimed, _ = await value_repository.announce_next(conn, ws, 1, 0, 10, names, ["expected_purchases_8w"])
                assert claimed == 4
                raise RuntimeError("interrupted before the outbox")
        assert set((await versions()).values()) == {3}
        assert str(await conn.fetchval(cursor, ws)) == value_repository.NO_PERSON_BEFORE

    async with pool.acquire() as first, pool.acquire() as second:
        async with first.transaction():
            claimed_first, changed_first = await value_repository.announce_next(
                first, ws, 1, 0, 2, names, ["expected_purchases_8w"]
            )

            async def next_batch():
                async with second.transaction():
                    return await value_repository.announce_next(second, ws, 1, 0, 2, names, ["expected_purchases_8w"])

            waiting = asyncio.create_task(next_batch())
            await asyncio.sleep(0.3)
            assert not waiting.done(), "the second transaction did not wait for the lane"
        claimed_second, changed_second = await waiting
    assert claimed_first == claimed_second == 2
    values = (0.1235, 0.8765, 1.9877, 5000, 9000)
    assert changed_first == [(str(a), 4, values), (str(b), 4, values)]
    assert changed_second == [(str(c), 4, values)]  # `gone` has no profile
    async with pool.acquire() as conn:
        assert await conn.fetchval(cursor, ws) == gone
        assert await versions() == {a: 4, b: 4, c: 4, d: 3}
        computed = await conn.fetchval(
            "SELECT computed FROM profiles WHERE workspace_id = $1 AND person_id = $2", ws, c
        )
        assert computed == {
            "order_count": 2, "p_alive": 0.1235, "churn_risk": 0.8765, "expected_purchases_12w": 1.9877,
            "expected_order_value_minor": 5000, "predicted_clv_minor": 9000,
        }  # fmt: skip
        async with conn.transaction():
            assert await value_repository.announce_next(conn, ws, 1, 0, 10, names, []) == (0, [])
        assert await value_repository.announce_lanes(conn, ws, 1) == []
        assert await value_repository.announce_next(conn, ws, 1, 0, 10, names, []) == (0, [])

        # Interrupted after a and b: the next recompute (nothing moved) marks c and d again.
        await conn.execute("UPDATE predictions SET announce = true WHERE workspace_id = $1", ws)
        await conn.execute(
            "INSERT INTO prediction_announce_lanes (workspace_id, model_id, lane, after) VALUES ($1, 1, 0, $2)", ws, b
        )
        fresh = {
            "person_id": np.array([p.bytes for p in (a, b, c, d)], dtype="V16"),
            "p_alive": np.full(4, 0.13),
            "expected_purchases": np.full(4, 1.99),
            "expected_order_value_minor": np.full(4, 5001),
            "predicted_clv_minor": np.full(4, 9001),
        }
        async with conn.transaction():
            marked, removed = await value_repository.write_predictions(
                conn, ws, 2, 1, fresh, min_change=0.05, announce_all=False, lanes=2
            )
        assert marked == 2 and removed == [str(gone)]
        rows = await conn.fetch(
            """SELECT person_id, announce, announced_p_alive FROM predictions WHERE workspace_id = $1
               ORDER BY person_id""",
            ws,
        )
        assert [(r["person_id"], r["announce"], r["announced_p_alive"]) for r in rows] == [
            (a, False, 0.123456), (b, False, 0.123456), (c, True, 0.123456), (d, True, 0.123456),
        ]  # fmt: skip
        lanes = await conn.fetch(
            """SELECT model_id, lane, after, through FROM prediction_announce_lanes
               WHERE workspace_id = $1 ORDER BY lane""",
            ws,
        )
        nil, last = uuid.UUID(value_repository.NO_PERSON_BEFORE), uuid.UUID(value_repository.NO_PERSON_AFTER)
        assert [tuple(r) for r in lanes] == [(2, 0, nil, c), (2, 1, c, last)]


def test_announcement_payloads_built_in_parts_are_the_whole_message():
    names = (*predictions.prediction_names(12), "expected_purchases_8w")
    change_time = timestamp_pb2.Timestamp(seconds=1_780_000_000, nanos=5)
    changed = [("p-1", 7, (0.5, 0.5, 1.25, 300, 900, None)), ("p-2", 2, (0.5, 0.5, 1.25, 300, 900, None))]
    bus_names = BusNames("t")
    built = list(predictions.changed_messages("shop", names, changed, change_time, bus_names))
    for (person, version, values), (got_person, got_version, subject, payload) in zip(changed, built, strict=True):
        whole = events_pb2.ProfileChanged(
            workspace_id="shop", person_id=person, version=version, change_time=change_time,
            changed_fields=sorted(f"computed.{n}" for n in names),
        )  # fmt: skip
        for name, v in zip(names, values, strict=True):
            if v is None:
                whole.values.fields[f"computed.{name}"].null_value = 0
            else:
                whole.values.fields[f"computed.{name}"].number_value = v
        assert events_pb2.ProfileChanged.FromString(payload) == whole
        assert (got_person, got_version) == (person, version) and subject.startswith("t.")
