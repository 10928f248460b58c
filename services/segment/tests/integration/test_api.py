"""The SegmentService API over real gRPC: versioned rule edits with full refreshes and their
membership diff, segment-of-segment references, estimates, previews, member reads, exports,
built-in segments and RFM."""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cdp.segment.v1 import condition_pb2, segment_pb2
from cdp_segment import rfm
from cdp_segment.rfm import RfmThresholds
from cdpkit.pagination import encode_token

from .harness import START, WS, order_fact, person, snapshot

PARENT = f"workspaces/{WS}"
RULE = field_mask_pb2.FieldMask(paths=["rule"])


def name(segment_id: str) -> str:
    return f"{PARENT}/segments/{segment_id}"


async def spenders(segment, *totals: int) -> list[str]:
    """One person per total, each with one order of that total; waits until all are projected."""
    ids = []
    for n, total in enumerate(totals):
        ids.append(person())
        await segment.profile(ids[-1], 1, snapshot(tier="gold"), orders=[order_fact(f"o-{n}", START, total)])
    for _ in range(100):
        rows = await segment.sql("SELECT count(*) AS n FROM persons")
        if rows[0]["n"] == len(ids):
            return ids
        import asyncio

        await asyncio.sleep(0.05)
    raise AssertionError("profiles not projected")


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


async def test_a_rule_edit_versions_refreshes_and_announces_the_diff(segment):
    big, small = await spenders(segment, 15000, 5000)
    created = await segment.create("spenders", "orders.sum() >= 10000")
    assert created.version == 1 and created.rule == "orders.sum() >= 10000"
    assert created.condition.order.aggregate == condition_pb2.OrderCondition.AGGREGATE_SUM
    [first] = await segment.changes(1)
    assert (first.person_id, first.entered, first.reason, first.version) == (big, True, "rule v1 refresh", 1)

    updated = await segment.stub.UpdateSegment(
        segment_pb2.UpdateSegmentRequest(
            segment=segment_pb2.Segment(name=name("spenders"), rule="orders.sum()>=4000 and orders.sum() < 12000"),
            update_mask=field_mask_pb2.FieldMask(paths=["rule"]),
        )
    )
    assert updated.version == 2 and updated.rule == "orders.sum() >= 4000 and orders.sum() < 12000"
    changes = await segment.changes(2)
    assert {(c.person_id, c.entered, c.reason, c.version) for c in changes} == {
        (big, False, "rule v2 refresh", 2),
        (small, True, "rule v2 refresh", 2),
    }
    renamed = await segment.stub.UpdateSegment(
        segment_pb2.UpdateSegmentRequest(
            segment=segment_pb2.Segment(name=name("spenders"), display_name="Mid spenders"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        )
    )
    assert renamed.version == 2  # not a rule change: no new version, no refresh
    await segment.quiet(0.3)
    versions = await segment.stub.ListSegmentVersions(
        segment_pb2.ListSegmentVersionsRequest(parent=name("spenders"), page_size=1)
    )
    assert [v.version for v in versions.versions] == [2] and versions.next_page_token
    older = await segment.stub.ListSegmentVersions(
        segment_pb2.ListSegmentVersionsRequest(parent=name("spenders"), page_token=versions.next_page_token)
    )
    assert [(v.version, v.rule) for v in older.versions] == [(1, "orders.sum() >= 10000")]

    # Rules given as a Condition work the same way.
    by_condition = await segment.stub.UpdateSegment(
        segment_pb2.UpdateSegmentRequest(
            segment=segment_pb2.Segment(name=name("spenders"), condition=created.condition),
            update_mask=field_mask_pb2.FieldMask(paths=["condition"]),
        )
    )
    assert by_condition.version == 3 and by_condition.rule == "orders.sum() >= 10000"
    assert len(await segment.changes(2)) == 2

    error = await rpc_error(
        segment.stub.UpdateSegment(
            segment_pb2.UpdateSegmentRequest(
                segment=segment_pb2.Segment(name=name("spenders"), rule="orders.sum( >= 1"), update_mask=RULE
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("segment.rule: line 1, column 13: expected")


async def test_segment_references_cycles_dependants_and_deletes(segment):
    await segment.create("big", "orders.sum() >= 10000")
    await segment.create("big-gold", 'segment("big") and tier = "gold"')
    for rule in ('segment("big-gold")', 'segment("big")'):
        error = await rpc_error(
            segment.stub.UpdateSegment(
                segment_pb2.UpdateSegmentRequest(
                    segment=segment_pb2.Segment(name=name("big"), rule=rule), update_mask=RULE
                )
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "cycle" in error.details()
    error = await rpc_error(segment.create("ghost", 'segment("nope")'))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and 'segment("nope") does not exist' in error.details()

    # Live: an order makes the person big, and so big-gold (the dependant) follows at once.
    buyer = person()
    await segment.profile(buyer, 1, snapshot(tier="gold"), orders=[order_fact("o-1", START, 6000)])
    await segment.quiet(0.4)
    await segment.profile(buyer, 2, snapshot(tier="gold"), orders=[order_fact("o-2", START, 6000)])
    changes = await segment.changes(2)
    assert {(c.segment_id, c.entered) for c in changes} == {("big", True), ("big-gold", True)}
    # A refresh of big refreshes big-gold after it.
    await segment.stub.UpdateSegment(
        segment_pb2.UpdateSegmentRequest(
            segment=segment_pb2.Segment(name=name("big"), rule="orders.sum() >= 50000"), update_mask=RULE
        )
    )
    changes = await segment.changes(2)
    assert {(c.segment_id, c.entered, c.reason) for c in changes} == {
        ("big", False, "rule v2 refresh"),
        ("big-gold", False, "segment big v2 refresh"),
    }

    error = await rpc_error(segment.stub.DeleteSegment(segment_pb2.DeleteSegmentRequest(name=name("big"))))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "big-gold" in error.details()
    await segment.stub.UpdateSegment(
        segment_pb2.UpdateSegmentRequest(
            segment=segment_pb2.Segment(name=name("big"), rule="orders.count() >= 1"), update_mask=RULE
        )
    )
    assert {c.segment_id for c in await segment.changes(2)} == {"big", "big-gold"}
    await segment.stub.DeleteSegment(segment_pb2.DeleteSegmentRequest(name=name("big-gold")))
    [left] = await segment.changes(1)
    assert (left.segment_id, left.person_id, left.entered, left.reason) == ("big-gold", buyer, False, "segment deleted")


async def test_estimate_preview_members_exports(segment):
    ids = await spenders(segment, *range(1000, 8000, 1000))  # 7 persons
    await segment.create("over-3k", "orders.sum() > 3000")
    members = {p for p, total in zip(ids, range(1000, 8000, 1000), strict=True) if total > 3000}
    assert len(await segment.changes(4)) == 4

    estimate = await segment.stub.EstimateSegment(
        segment_pb2.EstimateSegmentRequest(parent=PARENT, rule='orders.sum() > 3000 and tier = "gold"')
    )
    assert estimate.count == 4
    by_condition = await segment.stub.EstimateSegment(
        segment_pb2.EstimateSegmentRequest(
            parent=PARENT,
            condition=condition_pb2.Condition(segment=condition_pb2.MembershipCondition(segment_id="over-3k")),
        )
    )
    assert by_condition.count == 4
    error = await rpc_error(
        segment.stub.EstimateSegment(segment_pb2.EstimateSegmentRequest(parent=PARENT, rule="tier = "))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        error.details()
        == "rule: line 1, column 8: expected a value (a string, a number, true or false), found end of rule"
    )

    preview = await segment.stub.PreviewSegment(
        segment_pb2.PreviewSegmentRequest(parent=PARENT, rule="orders.sum() > 3000", sample_size=2)
    )
    assert preview.total_count == 4 and len(preview.persons) == 2
    assert {p.person_id for p in preview.persons} <= members and all(p.tier == "gold" for p in preview.persons)

    assert await segment.members("over-3k") == members
    page = await segment.stub.ListSegmentMembers(
        segment_pb2.ListSegmentMembersRequest(parent=name("over-3k"), page_size=3)
    )
    assert len(page.members) == 3 and page.next_page_token and page.segment_version == 1

    listed = await segment.stub.ListPersonSegments(
        segment_pb2.ListPersonSegmentsRequest(parent=PARENT, person_id=sorted(members)[0])
    )
    assert list(listed.segments) == [name("over-3k")] and len(listed.enter_times) == 1
    memberships = await segment.stub.ListPersonMemberships(
        segment_pb2.ListPersonMembershipsRequest(parent=f"{PARENT}/persons/{sorted(members)[0]}")
    )
    assert [(m.segment, m.display_name) for m in memberships.memberships] == [(name("over-3k"), "Segment")]
    got = await segment.stub.GetSegment(segment_pb2.GetSegmentRequest(name=name("over-3k")))
    assert got.member_count == 4

    # Export: pages of CSV (through the gateway too), and one gRPC stream; same rows.
    text, token = "", ""
    while True:
        response = await segment.stub.ExportSegmentMembers(
            segment_pb2.ExportSegmentMembersRequest(
                parent=name("over-3k"), columns=["tier", "computed.nothing"], page_size=3, page_token=token
            )
        )
        text += response.csv
        token = response.next_page_token
        if not token:
            break
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["person_id", "enter_time", "tier", "computed.nothing"]
    assert {r[0] for r in rows[1:]} == members and all(r[2] == "gold" and r[3] == "" for r in rows[1:])
    streamed = "".join(
        [
            chunk.csv
            async for chunk in segment.stub.StreamSegmentMembers(
                segment_pb2.StreamSegmentMembersRequest(parent=name("over-3k"), columns=["tier", "computed.nothing"])
            )
        ]
    )
    assert streamed == text
    error = await rpc_error(
        segment.stub.ExportSegmentMembers(
            segment_pb2.ExportSegmentMembersRequest(parent=name("over-3k"), columns=["x"])
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("columns:")
    error = await rpc_error(
        segment.stub.CheckMembership(segment_pb2.CheckMembershipRequest(parent=name("over-3k"), person_id="nobody"))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await rpc_error(
        segment.stub.ListSegmentMembers(segment_pb2.ListSegmentMembersRequest(parent=name("missing")))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_lifecycle_builtins(segment):
    dormant, active = person(), person()
    await segment.profile(dormant, 1, snapshot(lifecycle="dormant"))
    await segment.profile(active, 1, snapshot(lifecycle="active"))
    await spenders(segment)  # let both land
    response = await segment.stub.CreateBuiltinSegments(
        segment_pb2.CreateBuiltinSegmentsRequest(parent=PARENT, kind="lifecycle")
    )
    assert [s.name.rsplit("/", 1)[1] for s in response.segments] == [
        f"lifecycle-{s}" for s in ("prospect", "new", "active", "loyal", "dormant", "churned")
    ]
    assert all(s.builtin == "lifecycle" for s in response.segments)
    assert {(c.segment_id, c.person_id) for c in await segment.changes(2)} == {
        ("lifecycle-dormant", dormant),
        ("lifecycle-active", active),
    }
    again = await segment.stub.CreateBuiltinSegments(
        segment_pb2.CreateBuiltinSegmentsRequest(parent=PARENT, kind="lifecycle")
    )
    assert [s.etag for s in again.segments] == [s.etag for s in response.segments]  # kept, not recreated
    # The profile moves the person on: the lifecycle segments follow live.
    await segment.profile(dormant, 2, snapshot(lifecycle="active"), changed=("lifecycle_stage",))
    assert {(c.segment_id, c.entered) for c in await segment.changes(2)} == {
        ("lifecycle-active", True),
        ("lifecycle-dormant", False),
    }
    error = await rpc_error(
        segment.stub.CreateBuiltinSegments(segment_pb2.CreateBuiltinSegmentsRequest(parent=PARENT, kind="nope"))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def _customer(rng: random.Random) -> dict:
    last = START - timedelta(days=rng.randint(0, 400), seconds=rng.randint(0, 86399))
    count = rng.randint(1, 8)
    return {
        "last_order_time": last.isoformat().replace("+00:00", "Z"),
        "order_count": count,
        "total_spent_minor": count * rng.randint(1000, 50000),
    }


async def test_rfm_groups_report_settings_and_live_updates(segment):
    empty = await segment.stub.RecomputeRfm(segment_pb2.RecomputeRfmRequest(name="workspaces/empty/rfmReport"))
    assert empty.thresholds.customers == 0 and list(empty.thresholds.frequency) == []
    assert sum(g.count for g in empty.groups) == 0
    rng = random.Random(7)
    customers = {person(): _customer(rng) for _ in range(40)}
    prospect = person()
    for person_id, computed in customers.items():
        await segment.profile(person_id, 1, snapshot(computed=computed))
    await segment.profile(prospect, 1, snapshot(computed={"order_count": 0}))
    for _ in range(100):
        if (await segment.sql("SELECT count(*) AS n FROM persons"))[0]["n"] == 41:
            break
        import asyncio

        await asyncio.sleep(0.05)
    await segment.stub.CreateBuiltinSegments(segment_pb2.CreateBuiltinSegmentsRequest(parent=PARENT, kind="rfm"))

    for method in ("mean", "quintile"):
        report = await segment.stub.UpdateRfmSettings(
            segment_pb2.UpdateRfmSettingsRequest(
                settings=segment_pb2.RfmSettings(name=f"{PARENT}/rfmSettings", method=method, high_score=4)
            )
        )
        assert report.settings.method == method and report.thresholds.customers == 40
        assert len(report.thresholds.frequency) == (1 if method == "mean" else 4)
        assert [g.group for g in report.groups] == list(rfm.GROUPS.values())
        assert sum(g.count for g in report.groups) == 40 and report.persons == 41
        # The SQL grouping agrees with the Python model the live path uses.
        stored = await segment.sql("SELECT * FROM rfm_thresholds WHERE workspace_id = $1", WS)
        thresholds = RfmThresholds(
            method,
            4,
            *(tuple(Decimal(v) for v in stored[0][k]) for k in ("recency_seconds", "frequency", "monetary")),
            40,
            stored[0]["computed_at"],
        )
        rows = await segment.sql("SELECT person_id::text AS p, rfm_group FROM persons")
        now = segment.clock.now()
        assert {r["p"]: r["rfm_group"] for r in rows} == {
            **{p: rfm.rfm_group(c, thresholds, now) for p, c in customers.items()},
            prospect: None,
        }
        for group in report.groups:
            assert len(await segment.members(group.segment_id)) == group.count
        while not segment._changes.empty():
            segment._changes.get_nowait()

    # Live: a first order makes the prospect a customer with a group at once.
    await segment.profile(
        prospect,
        2,
        snapshot(computed={"last_order_time": now.isoformat(), "order_count": 9, "total_spent_minor": 10_000_000}),
        changed=("computed.order_count",),
    )
    [entered] = await segment.changes(1)
    assert (entered.person_id, entered.segment_id, entered.entered) == (prospect, "rfm-important-value", True)
    error = await rpc_error(
        segment.stub.UpdateRfmSettings(
            segment_pb2.UpdateRfmSettingsRequest(
                settings=segment_pb2.RfmSettings(name=f"{PARENT}/rfmSettings", method="median")
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    report = await segment.stub.GetRfmReport(segment_pb2.GetRfmReportRequest(name=f"{PARENT}/rfmReport"))
    assert report.settings.method == "quintile" and sum(g.count for g in report.groups) == 41
    assert report.thresholds.compute_time.ToDatetime(UTC) == datetime(2026, 6, 18, 12, tzinfo=UTC)


async def test_a_persons_segments_come_in_pages(segment):
    gold = person()
    await segment.profile(gold, 1, snapshot(tier="gold"))
    ids = ["gold-a", "gold-b", "gold-c", "gold-d", "gold-e"]
    for segment_id in ids:
        await segment.create(segment_id, 'tier = "gold"')
    assert len(await segment.changes(len(ids))) == len(ids)

    listed, token, pages = [], "", 0
    while True:
        page = await segment.stub.ListPersonSegments(
            segment_pb2.ListPersonSegmentsRequest(parent=PARENT, person_id=gold, page_size=2, page_token=token)
        )
        assert len(page.segments) == len(page.enter_times) <= 2 and page.person_id == gold
        listed += page.segments
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert (listed, pages) == ([name(s) for s in ids], 3)
    whole = await segment.stub.ListPersonSegments(segment_pb2.ListPersonSegmentsRequest(parent=PARENT, person_id=gold))
    assert list(whole.segments) == [name(s) for s in ids] and not whole.next_page_token

    # a token is bound to its person; a forged position or a negative size is refused, naming the field
    first = await segment.stub.ListPersonSegments(
        segment_pb2.ListPersonSegmentsRequest(parent=PARENT, person_id=gold, page_size=1)
    )
    forged = encode_token({"after": 7}, scope=f"{WS}/{gold}/segments")
    for request, field in [
        (
            segment_pb2.ListPersonSegmentsRequest(parent=PARENT, person_id=person(), page_token=first.next_page_token),
            "page_token",
        ),
        (segment_pb2.ListPersonSegmentsRequest(parent=PARENT, person_id=gold, page_token=forged), "page_token"),
        (segment_pb2.ListPersonSegmentsRequest(parent=PARENT, person_id=gold, page_token="not-a-token"), "page_token"),
        (segment_pb2.ListPersonSegmentsRequest(parent=PARENT, person_id=gold, page_size=-1), "page_size"),
    ]:
        error = await rpc_error(segment.stub.ListPersonSegments(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(f"{field}:")
