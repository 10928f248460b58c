"""Customer value across services, in this process on real PostgreSQL, NATS and gRPC sockets:
identity resolves the bulk import's customers, profile imports, fits and predicts, segment
selects on the predicted churn risk.

- CDNOW_sample through the bulk import gives the published BG/NBD and Gamma-Gamma parameters
  when the profile service fits them from its own database, calibration ending 1997-09-30;
- CDNOW_master through ``python -m cdp_profile import``, killed and resumed, is imported once
  and processed end to end;
- bad rows go to the reject file with their reasons, a finished import run again changes nothing;
- predictions reach GetProfile, and a segment on churn risk selects exactly the customers whose
  profile says so, live.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path

import asyncpg
import grpc
import orjson
import pytest
from cdp_analytics import summary, value
from google.protobuf import field_mask_pb2

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_identity import __main__ as identity_main
from cdp_profile import __main__ as profile_main
from cdp_profile.bootstrap import open_importer
from cdp_segment import __main__ as segment_main
from cdpkit.config import load

DATASETS = Path(next(iter(find_spec("lifetimes").submodule_search_locations))) / "datasets"
CDNOW_SAMPLE = DATASETS / "CDNOW_sample.txt"
PROFILE_ENV = {
    "CDP_PROFILE_PREDICTION_INTERVAL_SECONDS": "0",  # on request only: the tests say when
    "CDP_PROFILE_PREDICTION_POLL_SECONDS": "0.1",
    "CDP_PROFILE_TIMER_INTERVAL_SECONDS": "0.1",
    # The horizon of Fader, Hardie & Lee's worked example.
    "CDP_PROFILE_PREDICTION_HORIZON_WEEKS": "39",
}


class Stack:
    def __init__(self, env, identity, profile, db) -> None:
        self.env, self.identity, self.profile, self.db = env, identity, profile, db

    async def settings(self, workspace: str, **document) -> None:
        settings = profile_pb2.ProfileSettings(name=f"workspaces/{workspace}/profileSettings", **document)
        await self.profile.UpdateProfileSettings(
            profile_pb2.UpdateProfileSettingsRequest(
                settings=settings, update_mask=field_mask_pb2.FieldMask(paths=list(document))
            )
        )

    async def person(self, workspace: str, kind: str, value: str) -> str:
        request = identity_pb2.LookupPersonRequest(
            parent=f"workspaces/{workspace}", identifier_type=kind, identifier_value=value
        )
        return (await self.identity.LookupPerson(request)).person_id

    async def recompute(self, workspace: str, calibration_end: str = "") -> profile_pb2.PredictionJob:
        job = await self.profile.RecomputePredictions(
            profile_pb2.RecomputePredictionsRequest(
                parent=f"workspaces/{workspace}", calibration_end_date=calibration_end
            )
        )
        done = (profile_pb2.PredictionJob.STATE_SUCCEEDED, profile_pb2.PredictionJob.STATE_FAILED)
        request = profile_pb2.GetPredictionJobRequest(name=job.name)
        job = await eventually(lambda: self.profile.GetPredictionJob(request), lambda j: j.state in done, timeout=120)
        assert job.state == profile_pb2.PredictionJob.STATE_SUCCEEDED, job.error
        return job


async def eventually(fetch, predicate, *, timeout=30.0, what="condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await fetch()
        if predicate(got):
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met in {timeout} s; last: {got}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def stack(run_service, service_env):
    identity = await run_service(identity_main, identity_main.Settings)
    profile = await run_service(profile_main, profile_main.Settings, **PROFILE_ENV)
    env = {
        **service_env,
        **PROFILE_ENV,
        "CDP_PROFILE_IDENTITY_TARGET": f"127.0.0.1:{identity.grpc_port}",
        "CDP_PROFILE_GRPC_PORT": "0",
        "CDP_PROFILE_METRICS_PORT": "0",
    }
    db = await asyncpg.connect(service_env["CDP_DATABASE_URL"], server_settings={"search_path": "profile"})
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{identity.grpc_port}") as identity_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{profile.grpc_port}") as profile_channel,
        ):
            yield Stack(
                env,
                identity_pb2_grpc.IdentityServiceStub(identity_channel),
                profile_pb2_grpc.ProfileServiceStub(profile_channel),
                db,
            )
    finally:
        await db.close()


async def test_cdnow_sample_imported_gives_the_published_parameters(stack, tmp_path):
    s = stack
    await s.settings("cdnow", currency="USD", time_zone="America/New_York")
    settings = load(profile_main.Settings, s.env)
    reject_file = tmp_path / "rejects.jsonl"
    async with open_importer(settings) as importer:
        summary = await importer.run(
            workspace_id="cdnow", kind="orders", fmt="cdnow", path=CDNOW_SAMPLE, reject_path=reject_file
        )
    assert (summary.outcome, summary.lines, summary.applied, summary.rejected) == ("done", 6919, 6919, 0)
    assert not reject_file.exists()
    person = await s.person("cdnow", "user_id", "00004")
    first = await s.profile.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/cdnow/profiles/{person}"))
    assert first.computed["order_count"] == 4 and first.computed["total_spent_minor"] == 2933 + 2973 + 1496 + 2648
    assert first.computed["first_order_time"] == "1997-01-01T05:00:00.000000Z"  # midnight in New York

    # Fitted by the profile service from its database: Fader, Hardie & Lee (2005), Fader & Hardie (2013).
    job = await s.recompute("cdnow", "1997-09-30")
    assert job.customers == 2357
    model = await s.profile.GetValueModel(profile_pb2.GetValueModelRequest(name="workspaces/cdnow/valueModels/latest"))
    bg, gg = model.bgnbd, model.gamma_gamma
    assert (round(bg.r, 3), round(bg.alpha, 3), round(bg.a, 3), round(bg.b, 3)) == (0.243, 4.414, 0.793, 2.426)
    assert round(bg.log_likelihood, 1) == -9582.4
    assert (round(gg.p, 2), round(gg.q, 2), round(gg.gamma, 2)) == (6.25, 3.74, 15.44)
    assert (model.customers, model.repeat_customers, gg.customers) == (2357, 946, 946)
    assert model.calibration_end_date == "1997-09-30" and model.currency == "USD"

    # The paper's worked example is customer 00004 (x = 2, t_x = 30.43, T = 38.86): 1.226
    # expected purchases in the next 39 weeks.
    got = await s.profile.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/cdnow/profiles/{person}"))
    assert got.predictions.model_version == model.name and got.predictions.horizon_weeks == 39
    assert round(got.predictions.expected_purchases, 3) == 1.226
    assert got.computed["expected_purchases_39w"] == round(got.predictions.expected_purchases, 4)
    assert 0 < got.predictions.p_alive < 1 and got.predictions.churn_risk == pytest.approx(1 - got.predictions.p_alive)
    assert got.computed["p_alive"] == round(got.predictions.p_alive, 4)

    # Run again: a finished import changes nothing.
    async with open_importer(settings) as importer:
        again = await importer.run(workspace_id="cdnow", kind="orders", fmt="cdnow", path=CDNOW_SAMPLE)
    assert again.outcome == "already done" and again.applied == 6919
    assert await s.db.fetchval("SELECT count(*) FROM events") == 6919


def cdnow_master_summary():
    """The models fitted on CDNOW_master in Python, straight from the file (calibration 1997-09-30)."""
    transactions = []
    for line in (DATASETS / "CDNOW_master.txt").read_text().splitlines()[1:]:
        customer, day, _cds, dollars = line.split()
        amount = round(float(dollars) * 100)
        transactions.append(summary.Transaction(customer, date(int(day[:4]), int(day[4:6]), int(day[6:])), amount))
    data = summary.summarise(transactions, date(1997, 9, 30))
    return value.fit(data.x, data.t_x, data.T, data.m_x / 100), len(transactions)


async def test_cdnow_master_through_the_command_killed_resumed_and_processed_end_to_end(stack, tmp_path):
    """All 69,659 transactions (23,570 customers) through `python -m cdp_profile import`, killed
    (SIGKILL) after a seventh of the file and run again: every transaction once; then the
    service fits the models from its database to what Python fits from the file, and every
    announcement is published."""
    s = stack
    await s.settings("cdnow", currency="USD", time_zone="America/New_York")
    master = DATASETS / "CDNOW_master.txt"
    command = [sys.executable, "-m", "cdp_profile", "import", str(master), "--workspace", "cdnow"]
    command += ["--kind", "orders", "--format", "cdnow", "--no-progress"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CDP_")}, **s.env, "CDP_LOG_LEVEL": "warning"}
    log = (tmp_path / "import.log").open("wb")
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        through = await eventually(
            lambda: s.db.fetchval("SELECT coalesce(max(staged_through), 0) FROM imports"),
            lambda n: n >= 10_000 or process.returncode is not None,
            timeout=120,
        )
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
        await process.wait()
        log.close()
    assert through < 69_660, "the import finished before it could be interrupted"
    state = await s.db.fetchrow("SELECT state, rows_applied FROM imports")
    assert state["state"] == "running" and state["rows_applied"] < 69_659

    resumed = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.PIPE)
    output = (await resumed.communicate())[0].decode()
    assert resumed.returncode == 0 and "69,660 lines, 69,659 applied, 0 rejected" in output, output
    counts = await s.db.fetchrow(
        """SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM orders) AS orders,
                  (SELECT count(*) FROM profiles) AS profiles, (SELECT count(*) FROM import_rows) AS staged"""
    )
    assert dict(counts) == {"events": 69_659, "orders": 69_659, "profiles": 23_570, "staged": 0}

    job = await s.recompute("cdnow", "1997-09-30")
    expected, transactions = cdnow_master_summary()
    assert transactions == 69_659 and job.customers == 23_570 and job.announced == 23_570
    model = await s.profile.GetValueModel(profile_pb2.GetValueModelRequest(name="workspaces/cdnow/valueModels/latest"))
    bg, gg = model.bgnbd, model.gamma_gamma
    purchases, spend = expected.purchases, expected.spend
    assert (bg.r, bg.alpha, bg.a, bg.b, bg.log_likelihood) == pytest.approx(
        (purchases.r, purchases.alpha, purchases.a, purchases.b, purchases.log_likelihood), rel=1e-6
    )
    assert (gg.p, gg.q, gg.gamma) == pytest.approx((spend.p, spend.q, spend.gamma), rel=1e-4)
    await eventually(lambda: s.db.fetchval("SELECT count(*) FROM outbox"), lambda n: n == 0, timeout=120)


CUSTOMERS = """customer_id,email,name,city,vip_level,updated_at
c-1,Li.Lei@Example.com,李雷,杭州,3,2026-05-01T08:00:00Z
c-2,hanmeimei@example.com,韩梅梅,上海,1,
,nobody@example.com,无名,北京,0,
c-3,not-an-email,王,北京,0,
c-4,x@example.com,张,深圳,2,last tuesday
"""

PRODUCTS = """product_id,sku,name,category,price,currency,tags,colour
p-pole,POLE-1,Trekking pole,outdoor/poles,199.00,CNY,bestseller|outdoor,black
p-boot,BOOT-1,Hiking boot,outdoor/shoes,899.50,CNY,outdoor,brown
p-bad,BAD-1,Bad tags,outdoor,10,CNY,no spaces allowed,red
p-neg,NEG-1,Negative,outdoor,-5,CNY,,
"""


def jsonl(*rows) -> str:
    return "".join((row if isinstance(row, str) else orjson.dumps(row).decode()) + "\n" for row in rows)


async def test_every_kind_with_bad_rows_rejected_and_a_rerun_that_changes_nothing(stack, tmp_path):
    s = stack
    settings = load(profile_main.Settings, s.env)
    files = {
        "customers": tmp_path / "customers.csv",
        "products": tmp_path / "products.csv",
        "stores": tmp_path / "stores.jsonl",
        "orders": tmp_path / "orders.jsonl",
        "lines": tmp_path / "order_lines.csv",
    }
    files["customers"].write_text(CUSTOMERS)
    files["products"].write_text(PRODUCTS)
    files["stores"].write_text(
        jsonl(
            {"store_id": "s-hz", "name": "西湖店", "city": "杭州西湖区", "tags": ["flagship"]},
            {"store_id": "s-sh", "name": "浦东店", "city": "上海", "address": "浦东新区世纪大道 1 号"},
            {"store_id": "bad id!", "name": "?"},
            "{not json",
        )
    )
    files["orders"].write_bytes(
        jsonl(
            {
                "order_id": "A-1", "customer_id": "c-1", "order_time": "2026-05-02T10:00:00+08:00",
                "store_id": "s-hz", "channel": "pos",
                "items": [{"product_id": "p-pole", "sku": "POLE-1", "category": "outdoor/poles", "price": "199.00"}],
            },
            {"order_id": "A-2", "customer_id": "c-1", "order_time": "2026-05-20", "total": "899.50",
             "items": [{"product_id": "p-boot", "quantity": 1, "price": 899.5}]},
            {"order_id": "A-3", "customer_id": "c-2", "order_time": "2026-05-03T09:00:00Z", "total": "-1"},
            {"order_id": "A-4", "customer_id": "c-2", "order_time": "yesterday", "total": "10"},
            {"order_id": "A-5", "customer_id": "c-9", "order_time": "2026-05-04", "total": "59", "currency": "usd"},
        ).encode()
        + b'{"order_id": "A-6", "customer_id": "\xff\xfe"}\n'
    )  # fmt: skip
    files["lines"].write_text(
        "order_id,customer_id,order_time,currency,product_id,sku,category,quantity,price\n"
        "B-1,c-2,2026-05-10T12:00:00+08:00,CNY,p-pole,POLE-1,outdoor/poles,2,199.00\n"
        "B-1,,,,p-boot,BOOT-1,outdoor/shoes,1,899.50\n"
        "B-2,c-2,2026-05-11,CNY,p-pole,POLE-1,outdoor/poles,1,199\n"
        "B-2,c-1,2026-05-11,CNY,p-boot,BOOT-1,outdoor/shoes,1,899.5\n"
        "B-3,c-2,2026-05-12,CNY,p-pole,POLE-1,outdoor/poles,1\n"
    )

    results = {}
    async with open_importer(settings, chunk=2) as importer:
        for name, kind, fmt in (
            ("customers", "customers", "csv"),
            ("products", "products", "csv"),
            ("stores", "stores", "jsonl"),
            ("orders", "orders", "jsonl"),
            ("lines", "orders", "csv"),
        ):
            results[name] = await importer.run(
                workspace_id="shop", kind=kind, fmt=fmt, path=files[name], reject_path=tmp_path / f"{name}.rejects"
            )

    def rejected(name):
        return [
            (r["line"], r["reason"]) for r in map(orjson.loads, (tmp_path / f"{name}.rejects").read_text().splitlines())
        ]

    assert {n: (r.applied, r.rejected) for n, r in results.items()} == {
        "customers": (2, 3),
        "products": (2, 2),
        "stores": (2, 2),
        "orders": (3, 3),
        "lines": (1, 2),
    }
    customers = rejected("customers")
    assert [line for line, _ in customers] == [4, 5, 6]
    assert customers[0][1].startswith("customer_id: is required")
    assert customers[1][1].startswith("identity:") and "email" in customers[1][1]  # nothing but an invalid email?
    assert customers[2][1] == "updated_at: 'last tuesday' is not a date or time"
    assert [r for _, r in rejected("products")] == [
        "tags: 'no spaces allowed' is not a tag (1-63 letters, digits, _ - : .)",
        "price: must be a non-negative amount",
    ]
    assert [line for line, _ in rejected("stores")] == [3, 4]
    assert [r for _, r in rejected("orders")] == [
        "total: must be a non-negative amount",
        "order_time: 'yesterday' is not a date or time",
        "not UTF-8",
    ]
    assert rejected("lines") == [(4, "line 5: the rows of order B-2 disagree"), (6, "8 columns, the header has 9")]
    raw = orjson.loads((tmp_path / "orders.rejects").read_text().splitlines()[0])["row"]
    assert '"order_id":"A-3"' in raw.replace(" ", "")  # the row as it was, for fixing and re-importing

    # One person per customer, found by the customer id and by the email alike.
    li = await s.person("shop", "user_id", "c-1")
    assert await s.person("shop", "email", "li.lei@example.com") == li
    profile = await s.profile.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/shop/profiles/{li}"))
    assert profile.traits["name"] == "李雷" and profile.traits["email"] == "Li.Lei@Example.com"
    assert profile.traits["vip_level"] == "3" and profile.computed["region_code"] == "330100"
    assert profile.computed["order_count"] == 2 and profile.computed["total_spent_minor"] == 19900 + 89950
    assert profile.computed["favourite_store"] == "s-hz" and "repurchase" in [t.tag for t in profile.tags]
    assert [e.event for e in profile.recent_events][-1] == ""  # the identify, first (by the rows' updated_at)
    han = await s.person("shop", "user_id", "c-2")
    orders = await s.profile.ListProfileOrders(
        profile_pb2.ListProfileOrdersRequest(parent=f"workspaces/shop/profiles/{han}")
    )
    b1 = next(o for o in orders.orders if o.order_id == "B-1")
    assert [(i.product_id, i.quantity, i.price_minor) for i in b1.items] == [("p-pole", 2, 19900), ("p-boot", 1, 89950)]
    assert b1.total_minor == 2 * 19900 + 89950
    assert {o.order_id for o in orders.orders} == {"B-1"}
    nine = await s.person("shop", "user_id", "c-9")  # an order's customer unknown so far: a new person
    nine_orders = await s.profile.ListProfileOrders(
        profile_pb2.ListProfileOrdersRequest(parent=f"workspaces/shop/profiles/{nine}")
    )
    assert [(o.order_id, o.currency, o.total_minor) for o in nine_orders.orders] == [("A-5", "USD", 5900)]
    pole = await s.profile.GetProduct(profile_pb2.GetProductRequest(name="workspaces/shop/products/p-pole"))
    assert (pole.price_minor, list(pole.tags), pole.attributes["colour"]) == (19900, ["bestseller", "outdoor"], "black")
    store = await s.profile.GetStore(profile_pb2.GetStoreRequest(name="workspaces/shop/stores/s-hz"))
    assert store.region_code == "330106" and list(store.tags) == ["flagship"]

    # Every file again: finished imports, nothing changes (no event, no announcement, no version).
    before = await s.db.fetchrow("SELECT (SELECT count(*) FROM events) e, (SELECT sum(version) FROM profiles) v")
    async with open_importer(settings) as importer:
        for name, kind, fmt in (("customers", "customers", "csv"), ("orders", "orders", "jsonl")):
            again = await importer.run(workspace_id="shop", kind=kind, fmt=fmt, path=files[name])
            assert again.outcome == "already done" and again.rejected == results[name].rejected
    after = await s.db.fetchrow("SELECT (SELECT count(*) FROM events) e, (SELECT sum(version) FROM profiles) v")
    assert dict(after) == dict(before)


async def test_a_segment_on_churn_risk_selects_the_customers_the_profiles_say(stack, run_service, tmp_path):
    """Real profile and segment services, real NATS between them: the predictions announced by
    profile reach segment's projection, and `computed.churn_risk > 0.6` selects exactly the
    customers whose profile holds such a churn risk; an ordinary change later keeps them."""
    s = stack
    segment = await run_service(segment_main, segment_main.Settings)
    today = datetime.now(UTC).date()
    rows = []
    # 60 customers: the first 20 bought every few weeks until recently, the next 20 bought a few
    # times long ago, the last 20 bought once.
    for n in range(60):
        customer = f"k-{n:02d}"
        if n < 20:
            days = [400 - 30 * k for k in range(13)] + [5 + n % 7]
        elif n < 40:
            days = [600, 560, 520, 480 - n]
        else:
            days = [200 + 5 * n]
        for k, ago in enumerate(days):
            when = (today - timedelta(days=ago)).isoformat()
            rows.append({"order_id": f"{customer}-{k}", "customer_id": customer, "order_time": when, "total": 50 + n})
    path = tmp_path / "orders.jsonl"
    path.write_text(jsonl(*rows))
    settings = load(profile_main.Settings, s.env)
    async with open_importer(settings) as importer:
        summary = await importer.run(workspace_id="shop", kind="orders", fmt="jsonl", path=path)
    assert summary.applied == len(rows)
    await s.recompute("shop")

    persons = {f"k-{n:02d}": await s.person("shop", "user_id", f"k-{n:02d}") for n in range(60)}

    async def at_risk() -> set[str]:
        found = set()
        for person in persons.values():
            got = await s.profile.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/shop/profiles/{person}"))
            # Segments read what was announced: the prediction as of its last material move
            # (CDP_PROFILE_PREDICTION_MIN_CHANGE, 0.05 of P(alive)).
            assert abs(got.computed["churn_risk"] - got.predictions.churn_risk) < 0.05 + 1e-4
            if got.computed["churn_risk"] > 0.6:
                found.add(person)
        return found

    risky = await at_risk()
    assert 10 <= len(risky) <= 50, "the data should put customers on both sides of the threshold"
    assert not risky & {persons[f"k-{n:02d}"] for n in range(20)}  # the regulars are not at risk

    async with grpc.aio.insecure_channel(f"127.0.0.1:{segment.grpc_port}") as channel:
        stub = segment_pb2_grpc.SegmentServiceStub(channel)
        created = await stub.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                parent="workspaces/shop",
                segment_id="churn-risk",
                segment=segment_pb2.Segment(display_name="At risk", rule="computed.churn_risk > 0.6"),
            )
        )

        async def members() -> set[str]:
            listed = await stub.ListSegmentMembers(
                segment_pb2.ListSegmentMembersRequest(parent=created.name, page_size=1000)
            )
            return {m.person_id for m in listed.members}

        await eventually(members, lambda m: m == risky, timeout=60, what="segment members = the risky customers")

        # A new order of a risky customer: its ProfileChanged snapshot carries the predictions
        # (computed traits), so the projection keeps them and the customer stays a member until
        # the next recompute.
        someone = sorted(risky)[0]
        customer = next(c for c, p in persons.items() if p == someone)
        later = tmp_path / "later.jsonl"
        row = {"order_id": "late-1", "customer_id": customer, "order_time": datetime.now(UTC).isoformat(), "total": 9}
        later.write_text(jsonl(row))
        async with open_importer(settings) as importer:
            await importer.run(workspace_id="shop", kind="orders", fmt="jsonl", path=later)
        both = "computed.churn_risk > 0.6 and computed.last_order_time within last 1d"

        async def estimate() -> int:
            answer = await stub.EstimateSegment(segment_pb2.EstimateSegmentRequest(parent="workspaces/shop", rule=both))
            return answer.count

        await eventually(estimate, lambda n: n == 1, timeout=30, what="the projection holds the order and the risk")
        check = await stub.CheckMembership(segment_pb2.CheckMembershipRequest(parent=created.name, person_id=someone))
        assert check.member

        # The next recompute sees the order (churn risk 0: just bought); membership follows, live.
        await s.recompute("shop")
        now_risky = await at_risk()
        assert someone not in now_risky
        await eventually(members, lambda m: m == now_risky, timeout=60, what="segment members follow the recompute")
