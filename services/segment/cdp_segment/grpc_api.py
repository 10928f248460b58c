"""SegmentService over gRPC: proto <-> domain, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, tzinfo

import grpc
from cdp_analytics.crosssell import AssociationRule
from google.protobuf import empty_pb2, json_format, struct_pb2, timestamp_pb2

from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_segment import rfm
from cdp_segment.domain import UPDATABLE, Segment, parse_rule
from cdp_segment.projection import jsonable
from cdp_segment.rules import codec, syntax
from cdp_segment.rules.ast import Node
from cdp_segment.rules.validate import RuleError
from cdp_segment.service import CoPurchase, RfmReport, SegmentService
from cdpkit.errors import InvalidArgument
from cdpkit.fieldmask import requested_paths
from cdpkit.names import RESOURCE_ID, parse, workspace_of

_NAME = "workspaces/{workspace}/segments/{segment}"


def _ids(name: str, field: str = "name") -> dict[str, str]:
    return parse(name, _NAME, field=field, id_patterns={"segment": RESOURCE_ID})


def _timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _struct(values: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(jsonable(values), struct)
    return struct


def to_proto(segment: Segment, member_count: int = 0) -> segment_pb2.Segment:
    return segment_pb2.Segment(
        name=f"workspaces/{segment.workspace_id}/segments/{segment.segment_id}",
        display_name=segment.display_name,
        description=segment.description,
        rule=segment.rule,
        condition=codec.to_proto(segment.node),
        etag=segment.etag,
        create_time=_timestamp(segment.created_at),
        update_time=_timestamp(segment.updated_at),
        version=segment.version,
        builtin=segment.builtin,
        member_count=member_count,
    )


def _rule_text(segment: segment_pb2.Segment, zone: tzinfo) -> tuple[str, str]:
    """(rule as text, the field it came from) of a Segment: ``rule`` or ``condition``; both only
    when they say the same (a Segment read with GetSegment carries both)."""
    if not segment.HasField("condition"):
        return segment.rule, "segment.rule"
    try:
        text = syntax.render(codec.from_proto(segment.condition), zone)
    except RuleError as exc:
        raise InvalidArgument("segment.condition", str(exc)) from None
    if segment.rule.strip() and parse_rule(segment.rule, "segment.rule", zone) != syntax.parse(text):
        raise InvalidArgument("segment.condition", "rule and condition say different things: give one of them")
    return text, "segment.condition"


def _rule(message, zone: tzinfo) -> tuple[Node, str]:
    """(rule, field name) of an Estimate/Preview request: exactly one of rule and condition."""
    if message.rule.strip() and message.HasField("condition"):
        raise InvalidArgument("rule", "give rule or condition, not both")
    if message.HasField("condition"):
        try:
            return codec.from_proto(message.condition), "condition"
        except RuleError as exc:
            raise InvalidArgument("condition", str(exc)) from None
    if not message.rule.strip():
        raise InvalidArgument("rule", "is required (or give condition)")
    return parse_rule(message.rule, "rule", zone), "rule"


def _rfm_report(workspace_id: str, report: RfmReport) -> segment_pb2.RfmReport:
    message = segment_pb2.RfmReport(
        name=f"workspaces/{workspace_id}/rfmReport",
        settings=segment_pb2.RfmSettings(
            name=f"workspaces/{workspace_id}/rfmSettings",
            method=report.settings.method,
            high_score=report.settings.high_score,
        ),
        groups=[
            segment_pb2.RfmGroupCount(group=group, count=count, segment_id=f"rfm-{rfm.GROUP_IDS[group]}")
            for group, count in report.counts.items()
        ],
        persons=report.persons,
    )
    t = report.thresholds
    if t is not None:
        message.thresholds.CopyFrom(
            segment_pb2.RfmThresholds(
                recency_seconds=[float(v) for v in t.recency_seconds],
                frequency=[float(v) for v in t.frequency],
                monetary=[float(v) for v in t.monetary],
                customers=t.customers,
                compute_time=_timestamp(t.computed_at),
            )
        )
    return message


def _co_purchase(message: segment_pb2.CoPurchaseFilter) -> CoPurchase:
    return CoPurchase(
        min_together=message.min_together or 2,
        min_confidence=message.min_confidence,
        min_lift=message.min_lift or 1.0,
        window_days=message.window_days,
    )


def _companions(requested: int, default: int, maximum: int) -> int:
    if not 0 <= requested <= maximum:
        raise InvalidArgument("max_companions", f"must be between 1 and {maximum} (0 means {default})")
    return requested or default


def _companion(rule: AssociationRule) -> segment_pb2.ProductCompanion:
    return segment_pb2.ProductCompanion(
        sku=rule.consequent,
        together=rule.together,
        support=rule.support,
        confidence=rule.confidence,
        lift=rule.lift,
    )


class SegmentServicer(segment_pb2_grpc.SegmentServiceServicer):
    def __init__(self, service: SegmentService) -> None:
        self._service = service

    # Definitions ----------------------------------------------------------------------------

    async def CreateSegment(
        self, request: segment_pb2.CreateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.Segment:
        workspace_id = workspace_of(request.parent)
        if not request.HasField("segment"):
            raise InvalidArgument("segment", "is required")
        s = request.segment
        rule, rule_field = _rule_text(s, await self._service.time_zone(workspace_id))
        segment = Segment(workspace_id, request.segment_id, s.display_name, s.description, rule)
        return to_proto(await self._service.create(segment, rule_field))

    async def GetSegment(
        self, request: segment_pb2.GetSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.Segment:
        ids = _ids(request.name)
        segment, members = await self._service.get(ids["workspace"], ids["segment"])
        return to_proto(segment, members)

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
        asked = requested_paths(request.update_mask, s, UPDATABLE | {"condition"})
        paths = ["rule" if p == "condition" else p for p in asked]
        rule, rule_field = (
            _rule_text(s, await self._service.time_zone(ids["workspace"])) if "rule" in paths else ("", "segment.rule")
        )
        changes = Segment(ids["workspace"], ids["segment"], s.display_name, s.description, rule, etag=s.etag)
        return to_proto(await self._service.update(changes, paths, rule_field))

    async def DeleteSegment(
        self, request: segment_pb2.DeleteSegmentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        ids = _ids(request.name)
        await self._service.delete(ids["workspace"], ids["segment"], request.etag)
        return empty_pb2.Empty()

    async def ListSegmentVersions(
        self, request: segment_pb2.ListSegmentVersionsRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.ListSegmentVersionsResponse:
        ids = _ids(request.parent, "parent")
        versions, token = await self._service.list_versions(
            ids["workspace"], ids["segment"], request.page_size, request.page_token
        )
        return segment_pb2.ListSegmentVersionsResponse(
            versions=[
                segment_pb2.SegmentVersion(version=v, rule=rule, create_time=_timestamp(at)) for v, rule, at in versions
            ],
            next_page_token=token,
        )

    # Rules without saving -------------------------------------------------------------------

    async def EstimateSegment(
        self, request: segment_pb2.EstimateSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.EstimateSegmentResponse:
        workspace_id = workspace_of(request.parent)
        node, field = _rule(request, await self._service.time_zone(workspace_id))
        return segment_pb2.EstimateSegmentResponse(count=await self._service.estimate(workspace_id, node, field))

    async def PreviewSegment(
        self, request: segment_pb2.PreviewSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.PreviewSegmentResponse:
        workspace_id = workspace_of(request.parent)
        node, field = _rule(request, await self._service.time_zone(workspace_id))
        total, rows = await self._service.preview(workspace_id, node, field, request.sample_size)
        return segment_pb2.PreviewSegmentResponse(
            total_count=total,
            persons=[
                segment_pb2.PersonPreview(
                    person_id=r.person_id,
                    lifecycle_stage=r.lifecycle_stage or "",
                    tier=r.tier or "",
                    rfm_group=r.rfm_group or "",
                    tags=r.tags,
                    points_balance=r.points_balance or 0,
                    traits=_struct(r.traits),
                    computed=_struct(r.computed),
                )
                for r in rows
            ],
        )

    # Membership reads -----------------------------------------------------------------------

    async def ListSegmentMembers(
        self, request: segment_pb2.ListSegmentMembersRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.ListSegmentMembersResponse:
        ids = _ids(request.parent, "parent")
        members, token, version = await self._service.list_members(
            ids["workspace"], ids["segment"], request.page_size, request.page_token
        )
        return segment_pb2.ListSegmentMembersResponse(
            members=[segment_pb2.SegmentMember(person_id=m.person_id, enter_time=_timestamp(m.since)) for m in members],
            next_page_token=token,
            segment_version=version,
        )

    async def CheckMembership(
        self, request: segment_pb2.CheckMembershipRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.CheckMembershipResponse:
        ids = _ids(request.parent, "parent")
        check = await self._service.check(ids["workspace"], ids["segment"], request.person_id)
        return segment_pb2.CheckMembershipResponse(
            member=check.member,
            enter_time=_timestamp(check.since),
            segment_version=check.version,
            person_id=check.person_id,
        )

    async def ListPersonSegments(
        self, request: segment_pb2.ListPersonSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.ListPersonSegmentsResponse:
        workspace_id = workspace_of(request.parent)
        person_id, segments, token = await self._service.person_segments(
            workspace_id, request.person_id, request.page_size, request.page_token
        )
        return segment_pb2.ListPersonSegmentsResponse(
            segments=[f"workspaces/{workspace_id}/segments/{s}" for s, _ in segments],
            enter_times=[_timestamp(since) for _, since in segments],
            person_id=person_id,
            next_page_token=token,
        )

    async def ListPersonMemberships(
        self, request: segment_pb2.ListPersonMembershipsRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.ListPersonMembershipsResponse:
        ids = parse(request.parent, "workspaces/{workspace}/persons/{person}", field="parent")
        found, token = await self._service.person_memberships(
            ids["workspace"], ids["person"], request.page_size, request.page_token
        )
        return segment_pb2.ListPersonMembershipsResponse(
            memberships=[
                segment_pb2.PersonMembership(
                    segment=f"workspaces/{ids['workspace']}/segments/{segment_id}",
                    display_name=name,
                    enter_time=_timestamp(since),
                )
                for segment_id, name, since in found
            ],
            next_page_token=token,
        )

    async def ListMembershipChanges(
        self, request: segment_pb2.ListMembershipChangesRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.ListMembershipChangesResponse:
        ids = _ids(request.parent, "parent")
        entries, token = await self._service.history(
            ids["workspace"], ids["segment"], request.person_id, request.page_size, request.page_token
        )
        return segment_pb2.ListMembershipChangesResponse(
            changes=[
                segment_pb2.MembershipChange(
                    person_id=e.person_id,
                    entered=e.entered,
                    reason=e.reason,
                    segment_version=e.segment_version,
                    change_time=_timestamp(e.change_time),
                    trigger_message_id=e.trigger_message_id,
                )
                for e in entries
            ],
            next_page_token=token,
        )

    # Export ---------------------------------------------------------------------------------

    async def ExportSegmentMembers(
        self, request: segment_pb2.ExportSegmentMembersRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.ExportSegmentMembersResponse:
        ids = _ids(request.parent, "parent")
        text, token, rows, version = await self._service.export_page(
            ids["workspace"], ids["segment"], request.columns, request.page_size, request.page_token
        )
        return segment_pb2.ExportSegmentMembersResponse(
            csv=text, row_count=rows, next_page_token=token, segment_version=version
        )

    async def StreamSegmentMembers(
        self, request: segment_pb2.StreamSegmentMembersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[segment_pb2.StreamSegmentMembersResponse]:
        ids = _ids(request.parent, "parent")
        async for text, version in self._service.export_stream(ids["workspace"], ids["segment"], request.columns):
            yield segment_pb2.StreamSegmentMembersResponse(csv=text, segment_version=version)

    # Cross-sell ---------------------------------------------------------------------------------

    async def ListProductCompanions(
        self, request: segment_pb2.ListProductCompanionsRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.ListProductCompanionsResponse:
        workspace_id = workspace_of(request.parent)
        rules, baskets, with_product, computed = await self._service.companions(
            workspace_id, request.sku, _co_purchase(request.filter), _companions(request.max_companions, 10, 50)
        )
        response = segment_pb2.ListProductCompanionsResponse(
            companions=[_companion(r) for r in rules], baskets=baskets, baskets_with_product=with_product
        )
        response.compute_time.FromDatetime(computed)
        return response

    async def BuildCrossSellSegment(
        self, request: segment_pb2.BuildCrossSellSegmentRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.BuildCrossSellSegmentResponse:
        workspace_id = workspace_of(request.parent)
        segment, rules = await self._service.build_cross_sell(
            workspace_id,
            request.segment_id,
            request.sku,
            _co_purchase(request.filter),
            _companions(request.max_companions, 3, 20),
            request.bought_within_days,
        )
        return segment_pb2.BuildCrossSellSegmentResponse(
            segment=to_proto(segment), companions=[_companion(r) for r in rules]
        )

    # Built-ins and RFM ----------------------------------------------------------------------

    async def CreateBuiltinSegments(
        self, request: segment_pb2.CreateBuiltinSegmentsRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.CreateBuiltinSegmentsResponse:
        segments = await self._service.create_builtins(workspace_of(request.parent), request.kind)
        return segment_pb2.CreateBuiltinSegmentsResponse(segments=[to_proto(s) for s in segments])

    async def GetRfmReport(
        self, request: segment_pb2.GetRfmReportRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.RfmReport:
        workspace_id = parse(request.name, "workspaces/{workspace}/rfmReport")["workspace"]
        return _rfm_report(workspace_id, await self._service.rfm_report(workspace_id))

    async def UpdateRfmSettings(
        self, request: segment_pb2.UpdateRfmSettingsRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.RfmReport:
        s = request.settings
        workspace_id = parse(s.name, "workspaces/{workspace}/rfmSettings", field="settings.name")["workspace"]
        settings = rfm.RfmSettings(s.method or "mean", s.high_score or 4)
        return _rfm_report(workspace_id, await self._service.update_rfm_settings(workspace_id, settings))

    async def RecomputeRfm(
        self, request: segment_pb2.RecomputeRfmRequest, context: grpc.aio.ServicerContext
    ) -> segment_pb2.RfmReport:
        workspace_id = parse(request.name, "workspaces/{workspace}/rfmReport")["workspace"]
        return _rfm_report(workspace_id, await self._service.recompute_rfm(workspace_id))
