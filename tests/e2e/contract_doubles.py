"""Contract doubles of ProfileService and SegmentService for campaign's tests.

Real gRPC servers on a socket, in-memory state, and only the RPCs campaign calls (GetProfile,
ModifyProfileTags, CheckMembership, ListSegmentMembers), answering as profile.proto and
segment.proto say: NOT_FOUND for an unknown profile, ModifyProfileTags idempotent by
request_id, members paged in person-id order. Every other RPC answers UNIMPLEMENTED (the
generated base class). When the real services are merged, tests point campaign's
CDP_CAMPAIGN_PROFILE_TARGET / CDP_CAMPAIGN_SEGMENT_TARGET at them instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import struct_pb2

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc


class ProfileDouble(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self) -> None:
        self.profiles: dict[tuple[str, str], profile_pb2.Profile] = {}
        self.tag_requests: dict[str, profile_pb2.ModifyProfileTagsRequest] = {}
        self.get_calls = 0
        self.unavailable = False

    def put(
        self,
        workspace_id: str,
        person_id: str,
        *,
        traits: dict | None = None,
        consents: dict[str, bool] | None = None,
        tier: str = "",
        points_balance: int = 0,
        consent_source: str = "api",
    ) -> profile_pb2.Profile:
        struct = struct_pb2.Struct()
        struct.update(traits or {})
        profile = profile_pb2.Profile(
            name=f"workspaces/{workspace_id}/profiles/{person_id}",
            person_id=person_id,
            traits=struct,
            tier=tier,
            points_balance=points_balance,
        )
        for channel, granted in (consents or {}).items():
            channel, _, purpose = channel.partition(".")
            profile.consents.add(channel=channel, purpose=purpose, granted=granted, source=consent_source)
        self.profiles[(workspace_id, person_id)] = profile
        return profile

    def set_consent(self, workspace_id: str, person_id: str, channel: str, granted: bool, source: str = "api") -> None:
        profile = self.profiles[(workspace_id, person_id)]
        kept = [c for c in profile.consents if not (c.channel == channel and c.purpose == "")]
        del profile.consents[:]
        profile.consents.extend(kept)
        profile.consents.add(channel=channel, granted=granted, source=source)

    def tags(self, workspace_id: str, person_id: str) -> list[str]:
        return [t.tag for t in self.profiles[(workspace_id, person_id)].tags]

    @staticmethod
    def _key(name: str) -> tuple[str, str]:
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "workspaces" or parts[2] != "profiles":
            return ("", "")
        return parts[1], parts[3]

    async def GetProfile(self, request, context):
        self.get_calls += 1
        if self.unavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "profile double is down")
        profile = self.profiles.get(self._key(request.name))
        if profile is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "profile not found")
        return profile

    async def ModifyProfileTags(self, request, context):
        if not request.request_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request_id: is required")
        profile = self.profiles.get(self._key(request.name))
        if profile is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "profile not found")
        if request.request_id in self.tag_requests:
            return profile  # a retry changes nothing more
        self.tag_requests[request.request_id] = request
        kept = [t for t in profile.tags if t.tag not in set(request.remove)]
        del profile.tags[:]
        profile.tags.extend(kept)
        for assignment in request.add:
            if assignment.tag not in {t.tag for t in profile.tags}:
                profile.tags.add().CopyFrom(assignment)
        return profile


@dataclass
class SegmentDouble(segment_pb2_grpc.SegmentServiceServicer):
    members: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @staticmethod
    def _key(parent: str) -> tuple[str, str]:
        parts = parent.split("/")
        if len(parts) != 4 or parts[0] != "workspaces" or parts[2] != "segments":
            return ("", "")
        return parts[1], parts[3]

    async def CheckMembership(self, request, context):
        key = self._key(request.parent)
        if key not in self.members:
            await context.abort(grpc.StatusCode.NOT_FOUND, "segment not found")
        return segment_pb2.CheckMembershipResponse(member=request.person_id in self.members[key], segment_version=1)

    async def ListSegmentMembers(self, request, context):
        key = self._key(request.parent)
        if key not in self.members:
            await context.abort(grpc.StatusCode.NOT_FOUND, "segment not found")
        ordered = sorted(self.members[key])
        size = request.page_size or 100
        start = int(request.page_token or 0)
        page = ordered[start : start + size]
        token = str(start + size) if start + size < len(ordered) else ""
        return segment_pb2.ListSegmentMembersResponse(
            members=[segment_pb2.SegmentMember(person_id=p) for p in page], next_page_token=token, segment_version=1
        )


class Doubles:
    def __init__(self) -> None:
        self.profile = ProfileDouble()
        self.segment = SegmentDouble()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> Doubles:
        self.server = grpc.aio.server()
        profile_pb2_grpc.add_ProfileServiceServicer_to_server(self.profile, self.server)
        segment_pb2_grpc.add_SegmentServiceServicer_to_server(self.segment, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
