"""The two services campaign calls, behind thin ports: profile (a profile, tags, the
workspace's time zone, products) and segment (membership, product companions). The gRPC
adapters are the only code that knows their protos.

:class:`WorkspaceFacts` and :class:`CrossSell` cache what changes rarely (the workspace time
zone; mined product companions, which segment computes from every order of the workspace).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc
from google.protobuf import json_format

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


class DependencyError(Exception):
    """A call to another service failed; ``retryable`` says whether to try again later."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Consent:
    channel: str
    purpose: str
    granted: bool
    source: str
    update_time: datetime | None = None


@dataclass(frozen=True)
class ProfileView:
    """What campaign reads of a profile: for send-time checks, branches and templates."""

    person_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    computed: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    tier: str = ""
    lifecycle_stage: str = ""
    points_balance: int = 0
    consents: tuple[Consent, ...] = ()
    # The skus of the person's most recent completed order (cross-sell "last_order").
    last_order_skus: tuple[str, ...] = ()

    def document(self) -> dict[str, Any]:
        """The profile as branch conditions address it (traits.x, computed.x, tier, tags...)."""
        return {
            "person_id": self.person_id,
            "traits": self.traits,
            "computed": self.computed,
            "tags": list(self.tags),
            "tier": self.tier,
            "lifecycle_stage": self.lifecycle_stage,
            "points_balance": self.points_balance,
        }


@dataclass(frozen=True)
class Product:
    """A product as a message template shows it (profile's object, found by the sku as its id)."""

    sku: str
    display_name: str = ""
    category: str = ""
    price_minor: int = 0
    currency: str = ""


@dataclass(frozen=True)
class Companion:
    sku: str
    lift: float
    confidence: float


@dataclass(frozen=True)
class PersonDates:
    """A profile's date attributes (profile's ``ListProfileDates``), at its ``version``."""

    person_id: str
    birthday_month_day: str | None
    points_expiry_at: datetime | None
    version: int


class ProfilePort(Protocol):
    async def get_profile(self, workspace_id: str, person_id: str) -> ProfileView | None: ...

    async def time_zone(self, workspace_id: str) -> str: ...

    async def get_product(self, workspace_id: str, product_id: str) -> Product | None: ...

    async def list_dates(
        self, workspace_id: str, *, page_token: str, page_size: int
    ) -> tuple[list[PersonDates], str]: ...

    async def modify_tags(
        self,
        workspace_id: str,
        person_id: str,
        *,
        add: list[str],
        remove: list[str],
        expire_at: datetime | None,
        source: str,
        request_id: str,
    ) -> None: ...


class SegmentPort(Protocol):
    async def is_member(self, workspace_id: str, segment_id: str, person_id: str) -> bool: ...

    async def list_members(
        self, workspace_id: str, segment_id: str, *, page_token: str, page_size: int
    ) -> tuple[list[str], str]: ...

    async def companions(self, workspace_id: str, sku: str, *, limit: int, min_lift: float) -> list[Companion]: ...


def _error(exc: grpc.aio.AioRpcError, what: str) -> DependencyError:
    return DependencyError(f"{what}: {exc.code().name} {exc.details()}", retryable=exc.code() in _RETRYABLE)


class GrpcProfilePort:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float) -> None:
        self._stub = profile_pb2_grpc.ProfileServiceStub(channel)
        self._timeout = timeout

    async def get_profile(self, workspace_id: str, person_id: str) -> ProfileView | None:
        try:
            profile = await self._stub.GetProfile(
                profile_pb2.GetProfileRequest(name=f"workspaces/{workspace_id}/profiles/{person_id}"),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _error(exc, "GetProfile") from None
        return ProfileView(
            person_id=profile.person_id or person_id,
            traits=json_format.MessageToDict(profile.traits),
            computed=json_format.MessageToDict(profile.computed),
            tags=tuple(t.tag for t in profile.tags),
            tier=profile.tier,
            lifecycle_stage=profile.lifecycle_stage,
            points_balance=profile.points_balance,
            consents=tuple(
                Consent(
                    c.channel,
                    c.purpose,
                    c.granted,
                    c.source,
                    c.update_time.ToDatetime(UTC) if c.HasField("update_time") else None,
                )
                for c in profile.consents
            ),
            last_order_skus=next(
                (
                    tuple(line.sku for line in order.items if line.sku)
                    for order in profile.recent_orders
                    if order.status == "completed"
                ),
                (),
            ),
        )

    async def time_zone(self, workspace_id: str) -> str:
        try:
            settings = await self._stub.GetProfileSettings(
                profile_pb2.GetProfileSettingsRequest(name=f"workspaces/{workspace_id}/profileSettings"),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, "GetProfileSettings") from None
        return settings.time_zone

    async def get_product(self, workspace_id: str, product_id: str) -> Product | None:
        try:
            product = await self._stub.GetProduct(
                profile_pb2.GetProductRequest(name=f"workspaces/{workspace_id}/products/{product_id}"),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise _error(exc, "GetProduct") from None
        return Product(product_id, product.display_name, product.category, product.price_minor, product.currency)

    async def list_dates(self, workspace_id: str, *, page_token: str, page_size: int) -> tuple[list[PersonDates], str]:
        try:
            page = await self._stub.ListProfileDates(
                profile_pb2.ListProfileDatesRequest(
                    parent=f"workspaces/{workspace_id}", page_size=page_size, page_token=page_token
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, "ListProfileDates") from None
        return [
            PersonDates(
                p.person_id,
                p.birthday_month_day or None,
                p.next_points_expiry_time.ToDatetime(UTC) if p.HasField("next_points_expiry_time") else None,
                p.version,
            )
            for p in page.profiles
        ], page.next_page_token

    async def modify_tags(self, workspace_id, person_id, *, add, remove, expire_at, source, request_id) -> None:
        request = profile_pb2.ModifyProfileTagsRequest(
            name=f"workspaces/{workspace_id}/profiles/{person_id}", remove=remove, source=source, request_id=request_id
        )
        for tag in add:
            assignment = request.add.add(tag=tag, source=source)
            if expire_at is not None:
                assignment.expire_time.FromDatetime(expire_at)
        try:
            await self._stub.ModifyProfileTags(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, "ModifyProfileTags") from None


class GrpcSegmentPort:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float) -> None:
        self._stub = segment_pb2_grpc.SegmentServiceStub(channel)
        self._timeout = timeout

    async def is_member(self, workspace_id: str, segment_id: str, person_id: str) -> bool:
        try:
            answer = await self._stub.CheckMembership(
                segment_pb2.CheckMembershipRequest(
                    parent=f"workspaces/{workspace_id}/segments/{segment_id}", person_id=person_id
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise _error(exc, "CheckMembership") from None
        return answer.member

    async def list_members(self, workspace_id, segment_id, *, page_token, page_size):
        try:
            page = await self._stub.ListSegmentMembers(
                segment_pb2.ListSegmentMembersRequest(
                    parent=f"workspaces/{workspace_id}/segments/{segment_id}",
                    page_size=page_size,
                    page_token=page_token,
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, "ListSegmentMembers") from None
        return [m.person_id for m in page.members], page.next_page_token

    async def companions(self, workspace_id: str, sku: str, *, limit: int, min_lift: float) -> list[Companion]:
        request = segment_pb2.ListProductCompanionsRequest(
            parent=f"workspaces/{workspace_id}", sku=sku, max_companions=limit
        )
        if min_lift:
            request.filter.min_lift = min_lift
        try:
            answer = await self._stub.ListProductCompanions(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return []  # not a sku segment knows how to mine (e.g. too long): no companions
            raise _error(exc, "ListProductCompanions") from None
        return [Companion(c.sku, c.lift, c.confidence) for c in answer.companions]


class _Expiring:
    """A small per-process cache of values that change rarely, with a time to live."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._values: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        """(fresh, value); a stale value is still returned (the fallback when a refresh fails)."""
        found = self._values.get(key)
        if found is None:
            return False, None
        return time.monotonic() - found[0] < self._ttl, found[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._values) > 10_000:
            self._values.clear()
        self._values[key] = (time.monotonic(), value)


class WorkspaceFacts:
    """The workspace time zone (ProfileSettings.time_zone: the one source of truth), cached for
    ``ttl_seconds``; when profile cannot answer, the last known zone is used, and without one
    the call fails (DependencyError, retryable) rather than guess."""

    def __init__(self, profile: ProfilePort, *, ttl_seconds: float) -> None:
        self._profile = profile
        self._cache = _Expiring(ttl_seconds)

    async def time_zone(self, workspace_id: str) -> str:
        fresh, zone = self._cache.get(workspace_id)
        if fresh:
            return zone
        try:
            zone = await self._profile.time_zone(workspace_id)
        except DependencyError:
            if zone is None:
                raise
            return zone
        self._cache.put(workspace_id, zone)
        return zone


class CrossSell:
    """Products usually bought with given skus (segment's ListProductCompanions, which mines every
    completed order of the workspace: cached per sku for ``ttl_seconds``), with their details
    from profile's products where a product's id is the sku."""

    MAX_SOURCE_SKUS = 10

    def __init__(self, profile: ProfilePort, segment: SegmentPort, *, ttl_seconds: float) -> None:
        self._profile = profile
        self._segment = segment
        self._companions = _Expiring(ttl_seconds)
        self._products = _Expiring(ttl_seconds)

    async def _of(self, workspace_id: str, sku: str, limit: int, min_lift: float) -> list[Companion]:
        key = (workspace_id, sku, limit, min_lift)
        fresh, found = self._companions.get(key)
        if not fresh:
            found = await self._segment.companions(workspace_id, sku, limit=limit, min_lift=min_lift)
            self._companions.put(key, found)
        return found

    async def _product(self, workspace_id: str, sku: str) -> Product:
        fresh, found = self._products.get((workspace_id, sku))
        if not fresh:
            found = await self._profile.get_product(workspace_id, sku) or Product(sku)
            self._products.put((workspace_id, sku), found)
        return found

    async def recommend(self, workspace_id: str, skus: list[str], *, limit: int, min_lift: float) -> list[dict]:
        """The strongest companions of ``skus`` (by lift, then confidence), none of ``skus`` itself,
        at most ``limit``, as template items."""
        bought = list(dict.fromkeys(s for s in skus if s))[: self.MAX_SOURCE_SKUS]
        if not bought:
            return []
        found = await asyncio.gather(*(self._of(workspace_id, sku, limit, min_lift) for sku in bought))
        best: dict[str, Companion] = {}
        for companion in (c for companions in found for c in companions):
            if companion.sku in bought:
                continue
            known = best.get(companion.sku)
            if known is None or (companion.lift, companion.confidence) > (known.lift, known.confidence):
                best[companion.sku] = companion
        chosen = sorted(best.values(), key=lambda c: (-c.lift, -c.confidence, c.sku))[:limit]
        products = await asyncio.gather(*(self._product(workspace_id, c.sku) for c in chosen))
        return [
            {
                "product_id": c.sku,
                "sku": c.sku,
                "name": p.display_name or c.sku,
                "category": p.category,
                "price_minor": p.price_minor,
                "currency": p.currency,
                "lift": round(c.lift, 4),
                "confidence": round(c.confidence, 4),
                "source": "cross_sell",
            }
            for c, p in zip(chosen, products, strict=True)
        ]
