"""Segment definitions over real gRPC and PostgreSQL: CRUD, paging, and bad input answered with
INVALID_ARGUMENT naming the field, never INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from cdp.segment.v1 import condition_pb2, segment_pb2
from cdpkit.pagination import encode_token


@pytest.fixture
def stub(segment):
    """The running service of harness.py (the one every API test of this service uses)."""
    return segment.stub


async def create(stub, segment_id="", name="Repeat buyers", rule="orders.count() >= 2", parent="workspaces/shop"):
    return await stub.CreateSegment(
        segment_pb2.CreateSegmentRequest(
            parent=parent, segment_id=segment_id, segment=segment_pb2.Segment(display_name=name, rule=rule)
        )
    )


async def test_create_get_update_delete(stub):
    created = await create(stub, "repeat-buyers")
    assert created.name == "workspaces/shop/segments/repeat-buyers"
    assert created.etag and created.create_time.seconds > 0
    assert await stub.GetSegment(segment_pb2.GetSegmentRequest(name=created.name)) == created

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await create(stub, "repeat-buyers")  # a retried create with the same id
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS

    updated = await stub.UpdateSegment(
        segment_pb2.UpdateSegmentRequest(
            segment=segment_pb2.Segment(name=created.name, rule="orders.count() >= 3", display_name="ignored"),
            update_mask=field_mask_pb2.FieldMask(paths=["rule"]),
        )
    )
    assert updated.rule == "orders.count() >= 3" and updated.display_name == "Repeat buyers"
    assert updated.etag != created.etag

    with pytest.raises(grpc.aio.AioRpcError) as error:  # stale etag
        await stub.DeleteSegment(segment_pb2.DeleteSegmentRequest(name=created.name, etag=created.etag))
    assert error.value.code() == grpc.StatusCode.ABORTED
    await stub.DeleteSegment(segment_pb2.DeleteSegmentRequest(name=created.name, etag=updated.etag))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetSegment(segment_pb2.GetSegmentRequest(name=created.name))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_pages_and_isolation(stub):
    for i in range(5):
        await create(stub, f"s{i}")
    await create(stub, "other", parent="workspaces/elsewhere")
    names, token = [], ""
    while True:
        page = await stub.ListSegments(
            segment_pb2.ListSegmentsRequest(parent="workspaces/shop", page_size=2, page_token=token)
        )
        names += [s.name.rsplit("/", 1)[1] for s in page.segments]
        token = page.next_page_token
        if not token:
            break
    assert names == ["s0", "s1", "s2", "s3", "s4"]
    first = await stub.ListSegments(segment_pb2.ListSegmentsRequest(parent="workspaces/shop", page_size=2))
    with pytest.raises(grpc.aio.AioRpcError) as error:  # a token is bound to the request that issued it
        await stub.ListSegments(
            segment_pb2.ListSegmentsRequest(parent="workspaces/elsewhere", page_token=first.next_page_token)
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "different request" in error.value.details()


BAD_INPUT = [
    ({"name": ""}, "segment.display_name"),
    ({"rule": "  "}, "segment.rule"),
    ({"rule": "orders.count >= 2"}, "segment.rule"),
    ({"segment_id": "Bad_Id"}, "segment_id"),
    ({"parent": "workspaces/UPPER"}, "parent"),
]


async def test_bad_input_is_rejected_with_the_field(stub):
    for kwargs, field in BAD_INPUT:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await create(stub, **kwargs)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details().startswith(f"{field}:"), (kwargs, error.value.details())
    listed = await stub.ListSegments(segment_pb2.ListSegmentsRequest(parent="workspaces/shop"))
    assert list(listed.segments) == []  # nothing was created


async def test_update_mask_rejects_unknown_fields(stub):
    created = await create(stub, "masked")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.UpdateSegment(
            segment_pb2.UpdateSegmentRequest(
                segment=segment_pb2.Segment(name=created.name), update_mask=field_mask_pb2.FieldMask(paths=["etag"])
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("update_mask:")


async def invalid(call) -> str:
    """The details of the INVALID_ARGUMENT ``call`` must fail with."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    return error.value.details()


def in_lists(lists: int, values: int) -> condition_pb2.Condition:
    """``lists`` conditions ``traits.k<n> in [...values...]``, all of them."""
    condition = condition_pb2.Condition()
    for n in range(lists):
        field = condition.all_of.conditions.add().field
        field.field, field.op = f"traits.k{n}", condition_pb2.OPERATOR_IN
        field.values.extend(struct_pb2.Value(string_value=f"v{i}") for i in range(values))
    return condition


async def test_bad_rules_are_invalid_arguments_never_internal(stub):
    for rule in ('traits.a = "\\q"', 'traits.a = "two\nlines"', 'traits.a = "\\u0000"'):
        assert (await invalid(create(stub, rule=rule))).startswith("segment.rule:")
    assert (await invalid(create(stub, name="a\x00b"))).startswith("segment.display_name:")
    # 40 lists of 1,000 values: once 40,000 query parameters (PostgreSQL takes 32,767)
    estimate = await stub.EstimateSegment(
        segment_pb2.EstimateSegmentRequest(parent="workspaces/shop", condition=in_lists(40, 1000))
    )
    assert estimate.count == 0
    # event filters count as conditions (at most 500)
    condition = condition_pb2.Condition()
    event = condition.event
    event.name, event.count_op, event.count = "Viewed", condition_pb2.OPERATOR_GTE, 1
    for n in range(501):
        event.filters.add(property=f"p{n}", op=condition_pb2.OPERATOR_EXISTS)
    details = await invalid(
        stub.EstimateSegment(segment_pb2.EstimateSegmentRequest(parent="workspaces/shop", condition=condition))
    )
    assert details.startswith("condition:") and "500" in details
    details = await invalid(
        stub.UpdateRfmSettings(
            segment_pb2.UpdateRfmSettingsRequest(
                settings=segment_pb2.RfmSettings(name="workspaces/shop/rfmSettings", method="median")
            )
        )
    )
    assert details.startswith("settings.method:")


async def test_crafted_page_tokens_are_invalid_arguments(stub):
    created = await create(stub, "paged")
    parent = created.name
    calls = [
        stub.ListSegments(
            segment_pb2.ListSegmentsRequest(
                parent="workspaces/shop", page_token=encode_token({"after": 5}, scope="shop")
            )
        ),
        stub.ListSegmentMembers(
            segment_pb2.ListSegmentMembersRequest(
                parent=parent, page_token=encode_token({"after": "zz"}, scope="shop/paged/members")
            )
        ),
        stub.ListSegmentVersions(
            segment_pb2.ListSegmentVersionsRequest(
                parent=parent, page_token=encode_token({"before": "x"}, scope="shop/paged/versions")
            )
        ),
        stub.ListMembershipChanges(
            segment_pb2.ListMembershipChangesRequest(
                parent=parent, page_token=encode_token({"before": 2**64}, scope="shop/paged/history/")
            )
        ),
        stub.ExportSegmentMembers(
            segment_pb2.ExportSegmentMembersRequest(
                parent=parent, page_token=encode_token({"after": None}, scope="shop/paged/export/")
            )
        ),
    ]
    for call in calls:
        assert (await invalid(call)).startswith("page_token:")


async def test_updates_change_what_the_mask_or_the_request_names(stub):
    created = await stub.CreateSegment(
        segment_pb2.CreateSegmentRequest(
            parent="workspaces/shop",
            segment_id="vips",
            segment=segment_pb2.Segment(display_name="VIPs", description="gold and up", rule='tier = "gold"'),
        )
    )
    # AIP-134: no mask means the populated fields: only the display name changes
    renamed = await stub.UpdateSegment(
        segment_pb2.UpdateSegmentRequest(segment=segment_pb2.Segment(name=created.name, display_name="Top"))
    )
    assert (renamed.display_name, renamed.description, renamed.rule, renamed.version) == (
        "Top",
        "gold and up",
        'tier = "gold"',
        1,
    )
    # a Segment as GetSegment answers it (rule and condition both set) goes back unchanged
    fetched = await stub.GetSegment(segment_pb2.GetSegmentRequest(name=created.name))
    fetched.description = "gold only"
    again = await stub.UpdateSegment(segment_pb2.UpdateSegmentRequest(segment=fetched))
    assert (again.description, again.rule, again.version) == ("gold only", 'tier = "gold"', 1)
    # rule and condition that disagree are refused (create and update), naming condition
    other = segment_pb2.Segment(display_name="x", rule='tier = "gold"', condition=fetched.condition)
    other.condition.field.values[0].string_value = "silver"
    details = await invalid(
        stub.CreateSegment(segment_pb2.CreateSegmentRequest(parent="workspaces/shop", segment=other))
    )
    assert details.startswith("segment.condition:")
    other.name = created.name
    details = await invalid(stub.UpdateSegment(segment_pb2.UpdateSegmentRequest(segment=other)))
    assert details.startswith("segment.condition:")
    # a rule given as a condition: its errors name segment.condition
    personal = segment_pb2.Segment(display_name="x", condition=fetched.condition)
    personal.condition.field.field = "traits.phone"
    details = await invalid(
        stub.CreateSegment(segment_pb2.CreateSegmentRequest(parent="workspaces/shop", segment=personal))
    )
    assert details.startswith("segment.condition:") and "personal data" in details
