"""SegmentService over gRPC: proto <-> domain, nothing else."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2

from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_segment.domain import Segment
from cdp_segment.service import SegmentService
from cdpkit.errors import InvalidArgument
from cdpkit.names import RESOURCE_ID, parse, workspace_of

_NAME = "workspaces/{workspace}/segments/{segment}"


def _ids(name: str, field: str = "name") -> dict[str, str]:
    return parse(name, _NAME, field=field, id_patterns={"segment": RESOURCE_ID})


def to_proto(segment: Segment) -> segment_pb2.Segment:
    message = segment_pb2.Segment(
        name=f"workspaces/{segment.workspace_id}/segments/{segment.segment_id}",
        display_name=segment.display_name,
        description=segment.description,
        rule=segment.rule,
        etag=segment.etag,
    )
    message.create_time.FromDatetime(segment.created_at)
    message.update_time.FromDatetime(segment.updated_at)
    return message


class SegmentServicer(segment_pb2_grpc.SegmentServiceServicer):
    def __init__(self, service: SegmentService) -> None:
        self._service = service

    async def CreateSegment(
        self, request: segment_pb2.CreateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.Segment:
        workspace_id = workspace_of(request.parent)
        if not request.HasField("segment"):
            raise InvalidArgument("segment", "is required")
        s = request.segment
        created = await self._service.create(
            Segment(workspace_id, request.segment_id, s.display_name, s.description, s.rule)
        )
        return to_proto(created)

    async def GetSegment(
        self, request: segment_pb2.GetSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.Segment:
        ids = _ids(request.name)
        return to_proto(await self._service.get(ids["workspace"], ids["segment"]))

    async def ListSegments(
        self, request: segment_pb2.ListSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.ListSegmentsResponse:
        segments, token = await self._service.list(workspace_of(request.parent), request.page_size, request.page_token)
        return segment_pb2.ListSegmentsResponse(segments=[to_proto(s) for s in segments], next_page_token=token)

    async def UpdateSegment(
        self, request: segment_pb2.UpdateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.Segment:
        s = request.segment
        ids = _ids(s.name, "segment.name")
        changes = Segment(ids["workspace"], ids["segment"], s.display_name, s.description, s.rule, etag=s.etag)
        return to_proto(await self._service.update(changes, request.update_mask.paths))

    async def DeleteSegment(
        self, request: segment_pb2.DeleteSegmentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        ids = _ids(request.name)
        await self._service.delete(ids["workspace"], ids["segment"], request.etag)
        return empty_pb2.Empty()
