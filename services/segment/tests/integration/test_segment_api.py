"""Segment definitions CRUD over real gRPC and PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_segment import __main__ as segment_main


@pytest.fixture
async def stub(run_service):
    runtime = await run_service(segment_main, segment_main.Settings, CDP_CONSUMER_LEASE_SECONDS="2")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield segment_pb2_grpc.SegmentServiceStub(channel)


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
