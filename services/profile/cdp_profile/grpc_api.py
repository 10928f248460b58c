"""ProfileService over gRPC: proto <-> domain, validation at the edge, nothing else."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf import empty_pb2, struct_pb2

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile.domain import (
    MAX_TRAIT_BYTES,
    MAX_TRAIT_KEY,
    MAX_TRAITS,
    OBJECT_ID,
    OBJECT_KINDS,
    Order,
    from_iso,
    without_nul,
)
from cdp_profile.predictions import JOB_ID, PredictionService, parse_date
from cdp_profile.regions import region_code
from cdp_profile.repository import EventRow, LedgerRow
from cdp_profile.rules import TAG, to_document
from cdp_profile.service import ProfileService, ProfileView, order_lines
from cdp_profile.structs import EVENT_TYPE_VALUES, set_timestamp, to_dict, to_struct
from cdp_profile.value_repository import JobRow, ValueModelRow
from cdpkit.errors import InvalidArgument
from cdpkit.fieldmask import paths_to_update, requested_paths
from cdpkit.names import UUID, parse, workspace_of
from cdpkit.pagination import decode_token, encode_token, page_size

_PROFILE_NAME = "workspaces/{workspace}/profiles/{profile}"
_SETTINGS_NAME = "workspaces/{workspace}/profileSettings"
MODEL_ID = re.compile(r"^(latest|[1-9][0-9]{0,17})$")
CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_TAGS = 100
MAX_TEXT = 200
MAX_BATCH = 1000
MAX_POINTS = 10**12
SETTINGS_FIELDS = frozenset(
    {
        "currency",
        "time_zone",
        "lifecycle",
        "tag_rules",
        "tiers",
        "points",
        "source_priority",
        "windowed_traits",
        "pii_traits",
    }
)


def _profile_ids(name: str, field: str = "name") -> tuple[str, str]:
    ids = parse(name, _PROFILE_NAME, field=field, id_patterns={"profile": UUID})
    return ids["workspace"], ids["profile"]


def _text(value: str, field: str, *, required: bool = False, limit: int = MAX_TEXT) -> str:
    if required and not value:
        raise InvalidArgument(field, "is required")
    if len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters")
    return value


def _tags(values, field: str) -> list[str]:
    tags = list(values)
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(field, f"at most {MAX_TAGS} tags")
    for i, tag in enumerate(tags):
        if not TAG.match(tag):
            raise InvalidArgument(f"{field}[{i}]", "a tag is 1-63 letters, digits, _ - : .")
    return sorted(set(tags))


def _stamp(message, field: str, moment: datetime | None) -> None:
    if moment is not None:
        set_timestamp(getattr(message, field), moment)


def _event(row: EventRow, properties: struct_pb2.Struct) -> profile_pb2.ProfileEvent:
    event = profile_pb2.ProfileEvent(
        message_id=row.message_id,
        type=EVENT_TYPE_VALUES.get(row.type, 0),
        event=row.event,
        properties=properties,
        channel=row.channel,
        store_id=row.store_id,
        staff_id=row.staff_id,
    )
    set_timestamp(event.event_time, row.event_time)
    set_timestamp(event.receive_time, row.received_at)
    return event


def _order(order: Order) -> profile_pb2.Order:
    message = profile_pb2.Order(
        order_id=order.order_id,
        status=order.status,
        currency=order.currency,
        total_minor=order.total_minor,
        refunded_minor=order.refunded_minor,
        channel=order.channel,
        store_id=order.store_id,
        staff_id=order.staff_id,
        items=order_lines(order, profile_pb2.OrderLine),
        points_earned=order.points_earned,
    )
    _stamp(message, "order_time", order.order_time)
    return message


def _entry(workspace_id: str, row: LedgerRow) -> profile_pb2.PointsEntry:
    entry = row.entry
    message = profile_pb2.PointsEntry(
        name=f"workspaces/{workspace_id}/profiles/{row.person_id}/pointsEntries/{row.entry_id}",
        kind=entry.kind,
        points=entry.points,
        balance_after=entry.balance_after,
        reference=entry.reference,
        reason=entry.reason,
    )
    _stamp(message, "create_time", entry.created_at)
    _stamp(message, "expire_time", entry.expires_at)
    return message


def _profile(workspace_id: str, view: ProfileView) -> profile_pb2.Profile:
    state = view.state
    computed = {**state.computed, **view.windowed}
    profile = profile_pb2.Profile(
        name=f"workspaces/{workspace_id}/profiles/{state.person_id}",
        person_id=state.person_id,
        traits=to_struct(state.traits),
        event_count=state.event_count,
        version=state.version,
        recent_events=[_event(row, properties) for row, properties in view.recent_events],
        computed=to_struct(computed),
        lifecycle_stage=state.lifecycle_stage,
        tier=state.tier,
        points_balance=state.points_balance,
        recent_orders=[_order(o) for o in view.recent_orders],
        merged_person_ids=list(view.merged_person_ids),
        currency=view.settings.currency,
        requested_person_id=view.requested_person_id,
    )
    for tag, assignment in sorted(state.tags.items()):
        item = profile.tags.add(tag=tag, source=assignment["source"])
        set_timestamp(item.assign_time, from_iso(assignment["at"]))
        if assignment.get("expires"):
            set_timestamp(item.expire_time, from_iso(assignment["expires"]))
    for key, statement in sorted(state.consent.items()):
        channel, _, purpose = key.partition(".")
        item = profile.consents.add(channel=channel, purpose=purpose, granted=statement["granted"])
        item.source = statement["source"]
        set_timestamp(item.update_time, from_iso(statement["at"]))
    _stamp(profile, "first_seen_time", state.first_seen_at)
    _stamp(profile, "last_seen_time", state.last_seen_at)
    _stamp(profile, "lifecycle_stage_time", state.lifecycle_at)
    _stamp(profile, "tier_time", state.tier_at)
    _stamp(profile, "update_time", view.updated_at)
    _stamp(profile, "next_due_time", view.next_due)
    prediction = view.prediction
    if prediction is not None:
        profile.predictions.CopyFrom(
            profile_pb2.Predictions(
                p_alive=prediction.p_alive,
                churn_risk=1.0 - prediction.p_alive,
                expected_purchases=prediction.expected_purchases,
                horizon_weeks=prediction.horizon_weeks,
                expected_order_value_minor=prediction.expected_order_value_minor,
                predicted_clv_minor=prediction.predicted_clv_minor,
                model_version=f"workspaces/{workspace_id}/valueModels/{prediction.model_id}",
            )
        )
        set_timestamp(profile.predictions.compute_time, prediction.fit_time)
    return profile


_JOB_STATES = {
    "pending": profile_pb2.PredictionJob.STATE_PENDING,
    "running": profile_pb2.PredictionJob.STATE_RUNNING,
    "succeeded": profile_pb2.PredictionJob.STATE_SUCCEEDED,
    "failed": profile_pb2.PredictionJob.STATE_FAILED,
}


def _job(job: JobRow) -> profile_pb2.PredictionJob:
    message = profile_pb2.PredictionJob(
        name=f"workspaces/{job.workspace_id}/predictionJobs/{job.job_id}",
        state=_JOB_STATES[job.state],
        origin=job.origin,
        calibration_end_date=job.calibration_end.isoformat() if job.calibration_end else "",
        value_model=f"workspaces/{job.workspace_id}/valueModels/{job.model_id}" if job.model_id else "",
        customers=job.customers,
        announced=job.announced,
        phase_seconds={k: float(v) for k, v in job.timings.items()},
        error=job.error,
    )
    _stamp(message, "create_time", job.create_time)
    _stamp(message, "start_time", job.start_time)
    _stamp(message, "end_time", job.end_time)
    return message


def _value_model(model: ValueModelRow) -> profile_pb2.ValueModel:
    message = profile_pb2.ValueModel(
        name=f"workspaces/{model.workspace_id}/valueModels/{model.model_id}",
        calibration_end_date=model.calibration_end.isoformat(),
        time_zone=model.time_zone,
        currency=model.currency,
        customers=model.customers,
        repeat_customers=model.repeat_customers,
        bgnbd=profile_pb2.BgNbdParameters(
            r=model.bgnbd_r,
            alpha=model.bgnbd_alpha,
            a=model.bgnbd_a,
            b=model.bgnbd_b,
            log_likelihood=model.bgnbd_log_likelihood,
        ),
        horizon_weeks=model.horizon_weeks,
        clv_months=model.clv_months,
        monthly_discount_rate=model.monthly_discount_rate,
        job=f"workspaces/{model.workspace_id}/predictionJobs/{model.job_id}",
    )
    if model.gg_p is not None:
        message.gamma_gamma.CopyFrom(
            profile_pb2.GammaGammaParameters(
                p=model.gg_p,
                q=model.gg_q,
                gamma=model.gg_gamma,
                log_likelihood=model.gg_log_likelihood,
                customers=model.gg_customers,
            )
        )
    _stamp(message, "fit_time", model.fit_time)
    return message


def _settings_message(workspace_id: str, settings, update_time: datetime | None) -> profile_pb2.ProfileSettings:
    document = to_document(settings)
    message = profile_pb2.ProfileSettings(
        name=f"workspaces/{workspace_id}/profileSettings",
        version=settings.version,
        currency=document["currency"],
        time_zone=document["time_zone"],
        lifecycle=to_struct(document["lifecycle"]),
        tiers=to_struct(document["tiers"]),
        points=to_struct(document["points"]),
        source_priority=document["source_priority"],
        pii_traits=sorted(settings.pii_traits),  # the defaults and the workspace's own
        etag=f'"{settings.version}"',
    )
    message.tag_rules.extend(document["tag_rules"])
    message.windowed_traits.extend(document["windowed_traits"])
    _stamp(message, "update_time", update_time)
    return message


def _list(values: struct_pb2.ListValue) -> list:
    return [to_dict(v.struct_value) if v.HasField("struct_value") else None for v in values.values]


def _position(token: str, scope: str, *, uuid_key: bool = False) -> tuple[datetime, str] | None:
    """The keyset position in a page token. Tokens are not signed: a made-up position only moves
    within the request's own scope (workspace and person come from the request), but it must
    still be a position, not a cause of INTERNAL."""
    position = decode_token(token, scope=scope)
    if not position:
        return None
    try:
        moment, key = datetime.fromisoformat(position["t"]), position["k"]
        if moment.tzinfo is None or not isinstance(key, str) or len(key) > 256 or "\x00" in key:
            raise ValueError(key)
        if uuid_key:
            key = str(uuid.UUID(key))
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument("page_token", "is not a token this API issued") from None
    return moment, key


def _time(message, field: str) -> datetime | None:
    """A Timestamp field, None when unset; one outside what a Timestamp can hold is bad input."""
    if not message.HasField(field):
        return None
    try:
        return getattr(message, field).ToDatetime(UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(field, "must be a time between years 1 and 9999") from None


def _next(items: list, size: int, key, scope: str) -> tuple[list, str]:
    if len(items) <= size:
        return items, ""
    items = items[:size]
    moment, item_key = key(items[-1])
    return items, encode_token({"t": moment.isoformat(), "k": item_key}, scope=scope)


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, service: ProfileService, predictions: PredictionService) -> None:
        self._service = service
        self._predictions = predictions

    async def _view(self, workspace_id: str, person_id: str) -> profile_pb2.Profile:
        return _profile(workspace_id, await self._service.get_profile(workspace_id, person_id))

    # Profiles -----------------------------------------------------------------------------------

    async def GetProfile(self, request, context) -> profile_pb2.Profile:
        workspace_id, person_id = _profile_ids(request.name)
        return await self._view(workspace_id, person_id)

    async def ListProfileDates(self, request, context) -> profile_pb2.ListProfileDatesResponse:
        workspace_id = workspace_of(request.parent)
        size = page_size(request.page_size)
        scope = f"dates/{request.parent}"
        position = decode_token(request.page_token, scope=scope)
        after = position.get("k", "") if position else ""
        try:
            after = str(uuid.UUID(after)) if after else None
        except (AttributeError, TypeError, ValueError):
            raise InvalidArgument("page_token", "is not a token this API issued") from None
        rows = await self._service.list_profile_dates(workspace_id, after, size + 1)
        token = encode_token({"k": rows[size - 1][0]}, scope=scope) if len(rows) > size else ""
        profiles = []
        for person_id, birthday, expiry, version in rows[:size]:
            dates = profile_pb2.ProfileDates(person_id=person_id, birthday_month_day=birthday or "", version=version)
            if expiry:
                dates.next_points_expiry_time.FromDatetime(expiry)
            profiles.append(dates)
        return profile_pb2.ListProfileDatesResponse(profiles=profiles, next_page_token=token)

    async def ListProfileEvents(self, request, context) -> profile_pb2.ListProfileEventsResponse:
        workspace_id, person_id = _profile_ids(request.parent, "parent")
        _text(request.event, "event")
        size = page_size(request.page_size)
        scope = f"events/{request.parent}/{request.event}"
        rows = await self._service.list_events(
            workspace_id, person_id, size + 1, _position(request.page_token, scope), request.event
        )
        rows, token = _next(rows, size, lambda r: (r[0].event_time, r[0].message_id), scope)
        return profile_pb2.ListProfileEventsResponse(events=[_event(r, p) for r, p in rows], next_page_token=token)

    async def ListProfileOrders(self, request, context) -> profile_pb2.ListProfileOrdersResponse:
        workspace_id, person_id = _profile_ids(request.parent, "parent")
        size = page_size(request.page_size)
        scope = f"orders/{request.parent}"
        orders = await self._service.list_orders(
            workspace_id, person_id, size + 1, _position(request.page_token, scope)
        )
        orders, token = _next(orders, size, lambda o: (o.order_time, o.order_id), scope)
        return profile_pb2.ListProfileOrdersResponse(orders=[_order(o) for o in orders], next_page_token=token)

    async def UpdateProfileTraits(self, request, context) -> profile_pb2.Profile:
        workspace_id, person_id = _profile_ids(request.name)
        request_id = _text(request.request_id, "request_id", required=True, limit=128)
        source = _text(request.source or "api", "source", limit=64)
        set_, set_once = to_dict(request.set), to_dict(request.set_once)
        unset = list(request.unset)
        if len(set_) + len(set_once) + len(unset) > MAX_TRAITS:
            raise InvalidArgument("set", f"at most {MAX_TRAITS} traits per call")
        for field, keys in (("set", set_), ("set_once", set_once), ("unset", unset)):
            for key in keys:
                if not key or len(key) > MAX_TRAIT_KEY or "\x00" in key:
                    raise InvalidArgument(field, f"trait keys are 1-{MAX_TRAIT_KEY} characters, no NUL")
        for field, traits in (("set", set_), ("set_once", set_once)):
            for key, value in traits.items():
                if len(orjson.dumps(value)) > MAX_TRAIT_BYTES or without_nul(value) != value:
                    raise InvalidArgument(
                        f"{field}.{key}", f"a trait value is at most {MAX_TRAIT_BYTES} bytes of JSON, without NUL"
                    )
        if not (set_ or set_once or unset):
            raise InvalidArgument("set", "nothing to set, set once or unset")
        await self._service.update_traits(
            workspace_id, person_id, set_=set_, set_once=set_once, unset=unset, source=source, request_id=request_id
        )
        return await self._view(workspace_id, person_id)

    async def ModifyProfileTags(self, request, context) -> profile_pb2.Profile:
        workspace_id, person_id = _profile_ids(request.name)
        request_id = _text(request.request_id, "request_id", required=True, limit=128)
        source = _text(request.source or "manual", "source", limit=64)
        if source.startswith("rule:"):
            raise InvalidArgument("source", "rule: sources belong to tag rules")
        add = []
        if len(request.add) > MAX_TAGS:
            raise InvalidArgument("add", f"at most {MAX_TAGS} tags")
        for i, assignment in enumerate(request.add):
            if not TAG.match(assignment.tag):
                raise InvalidArgument(f"add[{i}].tag", "a tag is 1-63 letters, digits, _ - : .")
            try:
                expires = _time(assignment, "expire_time")
            except InvalidArgument as exc:
                raise InvalidArgument(f"add[{i}].expire_time", exc.description) from None
            add.append((assignment.tag, expires))
        remove = _tags(request.remove, "remove")
        if not add and not remove:
            raise InvalidArgument("add", "nothing to add or remove")
        await self._service.modify_tags(workspace_id, person_id, add, remove, source, request_id)
        return await self._view(workspace_id, person_id)

    async def UpdateConsent(self, request, context) -> profile_pb2.Profile:
        workspace_id, person_id = _profile_ids(request.name)
        if not CHANNEL.match(request.channel):
            raise InvalidArgument("channel", "must match [a-z][a-z0-9_]{0,31} (email, sms, push, wechat, ...)")
        if request.purpose and not CHANNEL.match(request.purpose):
            raise InvalidArgument("purpose", "must match [a-z][a-z0-9_]{0,31} (marketing, service, ...)")
        source = _text(request.source or "api", "source", limit=64)
        request_id = _text(request.request_id, "request_id", limit=128)
        statement = _time(request, "statement_time")
        await self._service.update_consent(
            workspace_id, person_id, request.channel, request.purpose, request.granted, source, statement, request_id
        )
        return await self._view(workspace_id, person_id)

    async def Unsubscribe(self, request, context) -> profile_pb2.Profile:
        workspace_id, person_id = _profile_ids(request.name)
        if not CHANNEL.match(request.channel):
            raise InvalidArgument("channel", "must match [a-z][a-z0-9_]{0,31} (email, sms, push, wechat, ...)")
        source = _text(request.source or "unsubscribe_link", "source", limit=64)
        request_id = _text(request.request_id, "request_id", limit=128)
        await self._service.unsubscribe(workspace_id, person_id, request.channel, source, request_id)
        return await self._view(workspace_id, person_id)

    async def ListPointsEntries(self, request, context) -> profile_pb2.ListPointsEntriesResponse:
        workspace_id, person_id = _profile_ids(request.parent, "parent")
        size = page_size(request.page_size)
        scope = f"points/{request.parent}"
        position = _position(request.page_token, scope, uuid_key=True)
        rows = await self._service.list_points(workspace_id, person_id, size + 1, position)
        rows, token = _next(rows, size, lambda r: (r.entry.created_at, r.entry_id), scope)
        return profile_pb2.ListPointsEntriesResponse(
            entries=[_entry(workspace_id, r) for r in rows], next_page_token=token
        )

    async def ChangePoints(self, request, context) -> profile_pb2.PointsEntry:
        workspace_id, person_id = _profile_ids(request.name)
        if request.kind not in ("earn", "redeem", "adjust"):
            raise InvalidArgument("kind", "must be earn, redeem or adjust")
        if request.kind in ("earn", "redeem") and not 0 < request.points <= MAX_POINTS:
            raise InvalidArgument("points", f"must be between 1 and {MAX_POINTS}")
        if request.kind == "adjust" and not (request.points and abs(request.points) <= MAX_POINTS):
            raise InvalidArgument("points", f"must be non-zero and at most {MAX_POINTS} either way")
        reference = _text(request.reference, "reference", required=True)
        if reference.startswith(("order:", "expire:")):
            raise InvalidArgument("reference", "order: and expire: references are the service's own")
        reason = _text(request.reason, "reason", limit=500)
        row = await self._service.change_points(
            workspace_id, person_id, request.kind, request.points, reference, reason
        )
        return _entry(workspace_id, row)

    # Settings -----------------------------------------------------------------------------------

    async def GetProfileSettings(self, request, context) -> profile_pb2.ProfileSettings:
        workspace_id = parse(request.name, _SETTINGS_NAME)["workspace"]
        settings, update_time = await self._service.get_settings(workspace_id)
        return _settings_message(workspace_id, settings, update_time)

    async def UpdateProfileSettings(self, request, context) -> profile_pb2.ProfileSettings:
        workspace_id = parse(request.settings.name, _SETTINGS_NAME, field="settings.name")["workspace"]
        given = request.settings
        paths = paths_to_update(requested_paths(request.update_mask, given, SETTINGS_FIELDS), SETTINGS_FIELDS)
        if not paths:  # nothing to change: no new version (a new one re-evaluates every profile)
            settings, update_time = await self._service.get_settings(workspace_id)
            return _settings_message(workspace_id, settings, update_time)
        values: dict[str, Any] = {
            "currency": given.currency,
            "time_zone": given.time_zone,
            "lifecycle": to_dict(given.lifecycle),
            "tag_rules": _list(given.tag_rules),
            "tiers": to_dict(given.tiers),
            "points": to_dict(given.points),
            "source_priority": list(given.source_priority),
            "windowed_traits": _list(given.windowed_traits),
            "pii_traits": list(given.pii_traits),
        }
        settings, update_time = await self._service.update_settings(
            workspace_id, {path: values[path] for path in paths}, etag=given.etag
        )
        return _settings_message(workspace_id, settings, update_time)

    # Customer value -----------------------------------------------------------------------------

    async def RecomputePredictions(self, request, context) -> profile_pb2.PredictionJob:
        workspace_id = workspace_of(request.parent)
        calibration_end = parse_date(request.calibration_end_date, "calibration_end_date")
        job = await self._predictions.request(workspace_id, request.request_id, calibration_end)
        return _job(job)

    async def GetPredictionJob(self, request, context) -> profile_pb2.PredictionJob:
        ids = parse(request.name, "workspaces/{workspace}/predictionJobs/{job}", id_patterns={"job": JOB_ID})
        return _job(await self._predictions.get_job(ids["workspace"], ids["job"]))

    async def ListPredictionJobs(self, request, context) -> profile_pb2.ListPredictionJobsResponse:
        workspace_id = workspace_of(request.parent)
        size = page_size(request.page_size)
        scope = f"predictionJobs/{request.parent}"
        jobs = await self._predictions.list_jobs(workspace_id, _position(request.page_token, scope), size + 1)
        jobs, token = _next(jobs, size, lambda j: (j.create_time, j.job_id), scope)
        return profile_pb2.ListPredictionJobsResponse(jobs=[_job(j) for j in jobs], next_page_token=token)

    async def GetValueModel(self, request, context) -> profile_pb2.ValueModel:
        ids = parse(request.name, "workspaces/{workspace}/valueModels/{model}", id_patterns={"model": MODEL_ID})
        model_id = None if ids["model"] == "latest" else int(ids["model"])
        return _value_model(await self._predictions.get_model(ids["workspace"], model_id))

    async def ListValueModels(self, request, context) -> profile_pb2.ListValueModelsResponse:
        workspace_id = workspace_of(request.parent)
        size = page_size(request.page_size)
        scope = f"valueModels/{request.parent}"
        position = decode_token(request.page_token, scope=scope)
        before = position.get("k") if position else None
        if before is not None and not isinstance(before, int):
            raise InvalidArgument("page_token", "is not a token this API issued")
        models = await self._predictions.list_models(workspace_id, before, size + 1)
        token = ""
        if len(models) > size:
            models = models[:size]
            token = encode_token({"k": models[-1].model_id}, scope=scope)
        return profile_pb2.ListValueModelsResponse(
            value_models=[_value_model(m) for m in models], next_page_token=token
        )

    # Objects ------------------------------------------------------------------------------------

    def _object_name(self, kind: str, name: str, field: str = "name") -> tuple[str, str]:
        collection = OBJECT_KINDS[kind][0]
        ids = parse(name, f"workspaces/{{workspace}}/{collection}/{{id}}", field=field, id_patterns={"id": OBJECT_ID})
        return ids["workspace"], ids["id"]

    def _object(self, kind: str, workspace_id: str, row: dict):
        collection, key = OBJECT_KINDS[kind]
        name = f"workspaces/{workspace_id}/{collection}/{row[key]}"
        common = {"tags": list(row["tags"]), "attributes": to_struct(row["attributes"])}
        if kind == "product":
            message = profile_pb2.Product(
                name=name,
                sku=row["sku"],
                display_name=row["display_name"],
                category=row["category"],
                brand=row["brand"],
                price_minor=row["price_minor"],
                currency=row["currency"],
                **common,
            )
        elif kind == "store":
            message = profile_pb2.Store(
                name=name,
                code=row["code"],
                display_name=row["display_name"],
                city=row["city"],
                region_code=row["region_code"],
                address=row["address"],
                **common,
            )
        else:
            message = profile_pb2.StaffMember(
                name=name, display_name=row["display_name"], store_id=row["store_id"], **common
            )
        set_timestamp(message.update_time, row["updated_at"])
        return message

    def _row(self, kind: str, message, field: str, object_id: str) -> dict:
        """Validated columns of an object message (``field`` names it in errors)."""
        row: dict[str, Any] = {OBJECT_KINDS[kind][1]: object_id, "tags": _tags(message.tags, f"{field}.tags")}
        attributes = to_dict(message.attributes)
        if len(message.attributes.SerializeToString()) > 16_384:
            raise InvalidArgument(f"{field}.attributes", "at most 16 KB")
        row["attributes"] = attributes
        for text_field in {
            "product": ("sku", "display_name", "category", "brand", "currency"),
            "store": ("code", "display_name", "city", "address"),
            "staff": ("display_name", "store_id"),
        }[kind]:
            row[text_field] = _text(getattr(message, text_field), f"{field}.{text_field}", limit=500)
        if kind == "product":
            if message.price_minor < 0:
                raise InvalidArgument(f"{field}.price_minor", "must not be negative")
            if message.currency and not re.fullmatch(r"[A-Z]{3}", message.currency):
                raise InvalidArgument(f"{field}.currency", "must be an ISO 4217 code")
            row["price_minor"] = message.price_minor
        if kind == "store":
            row["region_code"] = region_code(message.city, message.address)
        return row

    async def _batch_upsert(self, kind: str, request, items, field: str) -> list:
        workspace_id = workspace_of(request.parent)
        if not items:
            raise InvalidArgument(field, "nothing to upsert")
        if len(items) > MAX_BATCH:
            raise InvalidArgument(field, f"at most {MAX_BATCH} per call")
        rows, seen = [], set()
        for i, item in enumerate(items):
            item_workspace, object_id = self._object_name(kind, item.name, f"{field}[{i}].name")
            if item_workspace != workspace_id:
                raise InvalidArgument(f"{field}[{i}].name", "must be in the parent workspace")
            if object_id in seen:
                raise InvalidArgument(f"{field}[{i}].name", "appears twice")
            seen.add(object_id)
            rows.append(self._row(kind, item, f"{field}[{i}]", object_id))
        saved = await self._service.upsert_objects(kind, workspace_id, rows)
        return [self._object(kind, workspace_id, row) for row in saved]

    async def _update(self, kind: str, message, mask, field: str):
        workspace_id, object_id = self._object_name(kind, message.name, f"{field}.name")
        updatable = frozenset(
            {
                "product": (
                    "sku",
                    "display_name",
                    "category",
                    "brand",
                    "price_minor",
                    "currency",
                    "tags",
                    "attributes",
                ),
                "store": ("code", "display_name", "city", "address", "tags", "attributes"),
                "staff": ("display_name", "store_id", "tags", "attributes"),
            }[kind]
        )
        paths = paths_to_update(requested_paths(mask, message, updatable), updatable)
        given = self._row(kind, message, field, object_id)

        def apply(row: dict) -> dict:
            for path in paths:
                row[path] = given[path]
            if kind == "store":
                row["region_code"] = region_code(row["city"], row["address"])
            return row

        saved = await self._service.update_object(kind, workspace_id, object_id, apply)
        return self._object(kind, workspace_id, saved)

    async def _get(self, kind: str, name: str):
        workspace_id, object_id = self._object_name(kind, name)
        return self._object(kind, workspace_id, await self._service.get_object(kind, workspace_id, object_id))

    async def _list(self, kind: str, request) -> tuple[list, str]:
        workspace_id = workspace_of(request.parent)
        size = page_size(request.page_size)
        scope = f"{kind}/{request.parent}"
        position = decode_token(request.page_token, scope=scope)
        after = position.get("k") if position else ""
        if not isinstance(after, str) or (after and not OBJECT_ID.match(after)):
            raise InvalidArgument("page_token", "is not a token this API issued")
        rows = await self._service.list_objects(kind, workspace_id, after, size + 1)
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            token = encode_token({"k": rows[-1][OBJECT_KINDS[kind][1]]}, scope=scope)
        return [self._object(kind, workspace_id, r) for r in rows], token

    async def _delete(self, kind: str, name: str) -> empty_pb2.Empty:
        workspace_id, object_id = self._object_name(kind, name)
        await self._service.delete_object(kind, workspace_id, object_id)
        return empty_pb2.Empty()

    async def GetProduct(self, request, context):
        return await self._get("product", request.name)

    async def ListProducts(self, request, context):
        items, token = await self._list("product", request)
        return profile_pb2.ListProductsResponse(products=items, next_page_token=token)

    async def BatchUpsertProducts(self, request, context):
        items = await self._batch_upsert("product", request, request.products, "products")
        return profile_pb2.BatchUpsertProductsResponse(products=items)

    async def UpdateProduct(self, request, context):
        return await self._update("product", request.product, request.update_mask, "product")

    async def DeleteProduct(self, request, context):
        return await self._delete("product", request.name)

    async def GetStore(self, request, context):
        return await self._get("store", request.name)

    async def ListStores(self, request, context):
        items, token = await self._list("store", request)
        return profile_pb2.ListStoresResponse(stores=items, next_page_token=token)

    async def BatchUpsertStores(self, request, context):
        items = await self._batch_upsert("store", request, request.stores, "stores")
        return profile_pb2.BatchUpsertStoresResponse(stores=items)

    async def UpdateStore(self, request, context):
        return await self._update("store", request.store, request.update_mask, "store")

    async def DeleteStore(self, request, context):
        return await self._delete("store", request.name)

    async def GetStaffMember(self, request, context):
        return await self._get("staff", request.name)

    async def ListStaffMembers(self, request, context):
        items, token = await self._list("staff", request)
        return profile_pb2.ListStaffMembersResponse(staff_members=items, next_page_token=token)

    async def BatchUpsertStaffMembers(self, request, context):
        items = await self._batch_upsert("staff", request, request.staff_members, "staff_members")
        return profile_pb2.BatchUpsertStaffMembersResponse(staff_members=items)

    async def UpdateStaffMember(self, request, context):
        return await self._update("staff", request.staff_member, request.update_mask, "staff_member")

    async def DeleteStaffMember(self, request, context):
        return await self._delete("staff", request.name)
