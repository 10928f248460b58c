"""The two services campaign calls, behind thin ports: profile (read a profile, change tags)
and segment (membership). The gRPC adapters are the only code that knows their protos, so a
test can point them at a contract double or at the real services by address alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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


class ProfilePort(Protocol):
    async def get_profile(self, workspace_id: str, person_id: str) -> ProfileView | None: ...

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
            consents=tuple(Consent(c.channel, c.purpose, c.granted, c.source) for c in profile.consents),
        )

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
