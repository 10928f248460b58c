"""JourneyService over gRPC: proto <-> domain, nothing else."""

from __future__ import annotations

import functools
import re

from google.protobuf import empty_pb2, json_format, struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp_campaign import definition as defs
from cdp_campaign import reports
from cdp_campaign.domain import MAX_DEFINITION_BYTES, UPDATABLE, Journey, WorkspaceSettings
from cdp_campaign.service import SETTINGS_FIELDS, JourneyService, library
from cdpkit.errors import InvalidArgument
from cdpkit.fieldmask import requested_paths
from cdpkit.names import RESOURCE_ID, parse, workspace_of

_NAME = "workspaces/{workspace}/journeys/{journey}"
_DELIVERY = "workspaces/{workspace}/journeys/{journey}/deliveries/{delivery}"
_POOL = "workspaces/{workspace}/couponPools/{pool}"
_STATES = {s: campaign_pb2.Journey.State.Value(f"STATE_{s.upper()}") for s in ("draft", "active", "paused", "archived")}
_JOURNEY_OR_ALL = re.compile(r"^(-|[a-z][a-z0-9-]{0,62})$")
_DELIVERY_ID = re.compile(r"^[0-9a-f-]{36}\.[a-z][a-z0-9_-]{0,62}$")


def _ids(name: str, field: str = "name") -> dict[str, str]:
    return parse(name, _NAME, field=field, id_patterns={"journey": RESOURCE_ID})


def _delivery_ids(name: str) -> dict[str, str]:
    return parse(name, _DELIVERY, id_patterns={"journey": RESOURCE_ID, "delivery": _DELIVERY_ID})


def _pool_ids(name: str, field: str = "name") -> dict[str, str]:
    return parse(name, _POOL, field=field, id_patterns={"pool": RESOURCE_ID})


def _ts(message, field: str, value) -> None:
    if value is not None:
        getattr(message, field).FromDatetime(value)


def to_proto(journey: Journey) -> campaign_pb2.Journey:
    definition = struct_pb2.Struct()
    definition.update(journey.definition)
    message = campaign_pb2.Journey(
        name=f"workspaces/{journey.workspace_id}/journeys/{journey.journey_id}",
        display_name=journey.display_name,
        description=journey.description,
        state=_STATES[journey.state],
        definition=definition,
        etag=journey.etag,
        version=journey.version,
    )
    _ts(message, "create_time", journey.created_at)
    _ts(message, "update_time", journey.updated_at)
    _ts(message, "publish_time", journey.published_at)
    return message


def instance_proto(row) -> campaign_pb2.JourneyInstance:
    message = campaign_pb2.JourneyInstance(
        name=f"workspaces/{row['workspace_id']}/journeys/{row['journey_id']}/instances/{row['instance_id']}",
        person_id=row["person_id"],
        journey_version=row["version"],
        trigger_key=row["trigger_key"],
        state=row["state"],
        step_id=row["step_id"],
        variant=row["variant"],
        exit_reason=row["exit_reason"],
        revenue_minor=row["revenue_minor"],
    )
    _ts(message, "enter_time", row["entered_at"])
    _ts(message, "wake_time", row["wake_at"])
    _ts(message, "convert_time", row["converted_at"])
    return message


def delivery_proto(row: dict) -> campaign_pb2.Delivery:
    message = campaign_pb2.Delivery(
        name=f"workspaces/{row['workspace_id']}/journeys/{row['journey_id']}/deliveries/{row['delivery_id']}",
        instance_id=str(row["instance_id"]),
        step_id=row["step_id"],
        variant=row["variant"],
        person_id=row["person_id"],
        channel=row["channel"],
        status=row["status"],
        reason=row["reason"],
        attempts=row["attempts"],
        deferrals=row["deferrals"],
    )
    _ts(message, "create_time", row["created_at"])
    _ts(message, "next_attempt_time", row["next_attempt_at"] if row["status"] == "pending" else None)
    _ts(message, "send_time", row["sent_at"] if row["status"] != "pending" else None)  # not a reservation
    _ts(message, "update_time", row["updated_at"])
    return message


def person_message_proto(row: dict) -> campaign_pb2.PersonMessage:
    attributes = struct_pb2.Struct()
    attributes.update(
        {
            "step_id": row["step_id"],
            "variant": row["variant"],
            "reason": row["reason"],
            "attempts": row["attempts"],
            "deferrals": row["deferrals"],
        }
    )
    journey = f"workspaces/{row['workspace_id']}/journeys/{row['journey_id']}"
    message = campaign_pb2.PersonMessage(
        name=f"{journey}/deliveries/{row['delivery_id']}",
        journey=journey,
        channel=row["channel"],
        state=row["status"],
        attributes=attributes,
    )
    _ts(message, "send_time", row["sent_at"] if row["status"] != "pending" else None)  # not a reservation
    _ts(message, "create_time", row["created_at"])
    return message


def pool_proto(row: dict) -> campaign_pb2.CouponPool:
    message = campaign_pb2.CouponPool(
        name=f"workspaces/{row['workspace_id']}/couponPools/{row['pool_id']}",
        display_name=row["display_name"],
        kind=row["kind"],
        prefix=row["prefix"],
        code_length=row["code_length"],
        total_codes=row["total"],
        issued_codes=row["issued"],
        redeemed_codes=row["redeemed"],
    )
    _ts(message, "create_time", row["created_at"])
    return message


def settings_proto(s: WorkspaceSettings, time_zone: str) -> campaign_pb2.CampaignSettings:
    message = campaign_pb2.CampaignSettings(
        name=f"workspaces/{s.workspace_id}/campaignSettings",
        time_zone=time_zone,
        quiet_hours_start=s.quiet_hours_start,
        quiet_hours_end=s.quiet_hours_end,
        caps=campaign_pb2.FrequencyCaps(per_day=s.cap_per_day, per_week=s.cap_per_week),
        consent_mode=s.consent_mode,
    )
    _ts(message, "update_time", s.updated_at)
    return message


def _definition(message: campaign_pb2.Journey) -> dict:
    return json_format.MessageToDict(message.definition) if message.HasField("definition") else {}


def nul_field(message: Message, prefix: str = "") -> str | None:
    """The first field of ``message`` (at any depth, Struct values included) whose text holds a
    NUL character, which PostgreSQL cannot store: refused at the edge, not an INTERNAL later."""
    if message.DESCRIPTOR.full_name == "google.protobuf.Struct":
        for key, value in message.fields.items():
            found = _nul_in(key, prefix.rstrip(".")) or nul_field(value, f"{prefix}{key}.")
            if found:
                return found
        return None
    if message.DESCRIPTOR.full_name == "google.protobuf.ListValue":
        for i, value in enumerate(message.values):
            found = nul_field(value, f"{prefix.rstrip('.')}[{i}].")
            if found:
                return found
        return None
    if message.DESCRIPTOR.full_name == "google.protobuf.Value":
        kind = message.WhichOneof("kind")
        if kind == "string_value":
            return _nul_in(message.string_value, prefix.rstrip("."))
        if kind in ("struct_value", "list_value"):
            return nul_field(getattr(message, kind), prefix)
        return None
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            for i, text in enumerate(value if repeated else [value]):
                found = _nul_in(text, f"{name}[{i}]" if repeated else name)
                if found:
                    return found
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                items = [(f"{name}.{k}", k, v) for k, v in value.items()]
            else:
                items = [
                    (f"{name}[{i}]" if repeated else name, "", v) for i, v in enumerate(value if repeated else [value])
                ]
            for at, key, item in items:
                found = (_nul_in(key, at) if isinstance(key, str) else None) or (
                    nul_field(item, f"{at}.") if isinstance(item, Message) else _nul_in(str(item), at)
                )
                if found:
                    return found
    return None


def _nul_in(text: str, at: str) -> str | None:
    return at if "\x00" in text else None


def _refusing_nul(servicer_class):
    """Every RPC of the servicer first refuses a request with a NUL anywhere in its text."""
    for name, method in list(vars(servicer_class).items()):
        if name[:1].isupper() and callable(method):

            @functools.wraps(method)
            async def checked(self, request, context, _method=method):
                field = nul_field(request)
                if field:
                    raise InvalidArgument(field, "must not contain a NUL character")
                return await _method(self, request, context)

            setattr(servicer_class, name, checked)
    return servicer_class


@_refusing_nul
class JourneyServicer(campaign_pb2_grpc.JourneyServiceServicer):
    def __init__(self, service: JourneyService) -> None:
        self._service = service

    async def CreateJourney(self, request, context) -> campaign_pb2.Journey:
        workspace_id = workspace_of(request.parent)
        if not request.HasField("journey"):
            raise InvalidArgument("journey", "is required")
        j = request.journey
        document = _definition(j)
        if request.definition_yaml:
            if len(request.definition_yaml) > MAX_DEFINITION_BYTES:
                raise InvalidArgument("definition_yaml", f"at most {MAX_DEFINITION_BYTES} bytes")
            document = defs.canonical(defs.from_text(request.definition_yaml))
        created = await self._service.create(
            Journey(workspace_id, request.journey_id, j.display_name, j.description, document)
        )
        return to_proto(created)

    async def GetJourney(self, request, context) -> campaign_pb2.Journey:
        ids = _ids(request.name)
        return to_proto(await self._service.get(ids["workspace"], ids["journey"]))

    async def ListJourneys(self, request, context) -> campaign_pb2.ListJourneysResponse:
        journeys, token = await self._service.list(workspace_of(request.parent), request.page_size, request.page_token)
        return campaign_pb2.ListJourneysResponse(journeys=[to_proto(j) for j in journeys], next_page_token=token)

    async def UpdateJourney(self, request, context) -> campaign_pb2.Journey:
        j = request.journey
        ids = _ids(j.name, "journey.name")
        changes = Journey(ids["workspace"], ids["journey"], j.display_name, j.description, _definition(j), etag=j.etag)
        return to_proto(await self._service.update(changes, requested_paths(request.update_mask, j, UPDATABLE)))

    async def DeleteJourney(self, request, context) -> empty_pb2.Empty:
        ids = _ids(request.name)
        await self._service.delete(ids["workspace"], ids["journey"], request.etag)
        return empty_pb2.Empty()

    async def PublishJourney(self, request, context) -> campaign_pb2.Journey:
        ids = _ids(request.name)
        return to_proto(await self._service.publish(ids["workspace"], ids["journey"], request.etag))

    async def PauseJourney(self, request, context) -> campaign_pb2.Journey:
        ids = _ids(request.name)
        return to_proto(await self._service.pause(ids["workspace"], ids["journey"], request.etag))

    async def ExportJourney(self, request, context) -> campaign_pb2.ExportJourneyResponse:
        ids = _ids(request.name)
        content, fmt = await self._service.export(ids["workspace"], ids["journey"], request.format)
        return campaign_pb2.ExportJourneyResponse(content=content, format=fmt)

    async def ListJourneyTemplates(self, request, context) -> campaign_pb2.ListJourneyTemplatesResponse:
        workspace_id = workspace_of(request.parent)
        templates = []
        for template_id, document in library():
            definition = struct_pb2.Struct()
            definition.update(document["definition"])
            templates.append(
                campaign_pb2.Journey(
                    name=f"workspaces/{workspace_id}/journeyTemplates/{template_id}",
                    display_name=document["display_name"],
                    description=document.get("description", ""),
                    definition=definition,
                )
            )
        return campaign_pb2.ListJourneyTemplatesResponse(templates=templates)

    async def ListJourneyInstances(self, request, context) -> campaign_pb2.ListJourneyInstancesResponse:
        ids = _ids(request.parent, "parent")
        rows, token = await self._service.list_instances(
            ids["workspace"], ids["journey"], request.person_id, request.page_size, request.page_token
        )
        return campaign_pb2.ListJourneyInstancesResponse(
            instances=[instance_proto(r) for r in rows], next_page_token=token
        )

    async def ListDeliveries(self, request, context) -> campaign_pb2.ListDeliveriesResponse:
        ids = parse(request.parent, _NAME, field="parent", id_patterns={"journey": _JOURNEY_OR_ALL})
        rows, token = await self._service.list_deliveries(
            ids["workspace"], ids["journey"], request.status, request.page_size, request.page_token
        )
        return campaign_pb2.ListDeliveriesResponse(deliveries=[delivery_proto(r) for r in rows], next_page_token=token)

    async def ListPersonMessages(self, request, context) -> campaign_pb2.ListPersonMessagesResponse:
        ids = parse(request.parent, "workspaces/{workspace}/persons/{person}", field="parent")
        rows, token = await self._service.person_messages(
            ids["workspace"], ids["person"], request.page_size, request.page_token
        )
        return campaign_pb2.ListPersonMessagesResponse(
            messages=[person_message_proto(r) for r in rows], next_page_token=token
        )

    async def RetryDelivery(self, request, context) -> campaign_pb2.Delivery:
        ids = _delivery_ids(request.name)
        return delivery_proto(await self._service.retry_delivery(ids["workspace"], ids["journey"], ids["delivery"]))

    async def ReportDeliveryStatus(self, request, context) -> campaign_pb2.Delivery:
        ids = _delivery_ids(request.name)
        row = await self._service.report_status(
            ids["workspace"], ids["journey"], ids["delivery"], request.status, request.reason
        )
        return delivery_proto(row)

    async def GetJourneyReport(self, request, context) -> campaign_pb2.JourneyReport:
        if not request.name.endswith("/report"):
            raise InvalidArgument("name", "must look like workspaces/{workspace}/journeys/{journey}/report")
        ids = _ids(request.name.removesuffix("/report"))
        if request.format not in ("", "csv"):
            raise InvalidArgument("format", "must be csv or empty")
        rows, uplifts, (issued, redeemed) = await self._service.report(ids["workspace"], ids["journey"])
        report = campaign_pb2.JourneyReport(name=request.name, coupons_issued=issued, coupons_redeemed=redeemed)
        for r in rows:
            report.rows.add(
                step_id=r.step_id,
                variant=r.variant,
                entered=r.entered,
                sent=r.sent,
                delivered=r.delivered,
                failed=r.failed,
                suppressed=r.suppressed,
                suppressed_by_reason=r.suppressed_by_reason,
                converted=r.converted,
                revenue_minor=r.revenue_minor,
            )
        for u in uplifts:
            report.uplifts.add(
                variant=u.variant,
                control=u.control,
                conversion_rate=u.conversion_rate,
                control_conversion_rate=u.control_conversion_rate,
                uplift=u.uplift,
                ci_low=u.ci_low,
                ci_high=u.ci_high,
            )
        if request.format == "csv":
            report.csv = reports.to_csv(rows, uplifts)
        report.compute_time.GetCurrentTime()
        return report

    async def CreateCouponPool(self, request, context) -> campaign_pb2.CouponPool:
        workspace_id = workspace_of(request.parent)
        p = request.coupon_pool
        row = await self._service.create_pool(
            workspace_id, request.coupon_pool_id, p.display_name, p.kind, p.prefix, p.code_length
        )
        return pool_proto(row)

    async def GetCouponPool(self, request, context) -> campaign_pb2.CouponPool:
        ids = _pool_ids(request.name)
        return pool_proto(await self._service.get_pool(ids["workspace"], ids["pool"]))

    async def ListCouponPools(self, request, context) -> campaign_pb2.ListCouponPoolsResponse:
        rows, token = await self._service.list_pools(
            workspace_of(request.parent), request.page_size, request.page_token
        )
        return campaign_pb2.ListCouponPoolsResponse(coupon_pools=[pool_proto(r) for r in rows], next_page_token=token)

    async def ImportCouponCodes(self, request, context) -> campaign_pb2.ImportCouponCodesResponse:
        ids = _pool_ids(request.pool, "pool")
        imported, skipped = await self._service.import_codes(ids["workspace"], ids["pool"], list(request.codes))
        return campaign_pb2.ImportCouponCodesResponse(imported=imported, skipped=skipped)

    async def GetCampaignSettings(self, request, context) -> campaign_pb2.CampaignSettings:
        workspace_id = parse(request.name, "workspaces/{workspace}/campaignSettings")["workspace"]
        return settings_proto(*await self._service.get_settings(workspace_id))

    async def UpdateCampaignSettings(self, request, context) -> campaign_pb2.CampaignSettings:
        s = request.settings
        workspace_id = parse(s.name, "workspaces/{workspace}/campaignSettings", field="settings.name")["workspace"]
        changes = WorkspaceSettings(
            workspace_id,
            quiet_hours_start=s.quiet_hours_start,
            quiet_hours_end=s.quiet_hours_end,
            cap_per_day=s.caps.per_day,
            cap_per_week=s.caps.per_week,
            consent_mode=s.consent_mode,
        )
        mask = requested_paths(request.update_mask, s, SETTINGS_FIELDS)
        return settings_proto(*await self._service.update_settings(changes, mask))
