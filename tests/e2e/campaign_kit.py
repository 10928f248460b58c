"""What campaign's tests and its benchmark do alike: publish a resolved event as identity
would (profile takes it from there), publish a profile's announcement of an event as profile
would (campaign alone), and create and publish a journey over gRPC."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import struct_pb2

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp.events.v1 import events_pb2
from cdpkit.bus import PROFILE, RESOLVED, BusNames


async def publish_resolved(
    js,
    names: BusNames,
    workspace_id: str,
    person_id: str,
    event: str,
    message_id: str,
    *,
    nats_id: str = "",
    at: datetime | None = None,
    traits: dict | None = None,
    **properties,
) -> None:
    """A resolved track event (an identify when ``event`` is empty: ``traits``) on
    {prefix}.resolved.{partition of the person}, stamped ``at`` (default: now)."""
    batch = events_pb2.ResolvedEventBatch()
    resolved = batch.events.add(person_id=person_id)
    resolved.event.message_id = message_id
    resolved.event.workspace_id = workspace_id
    resolved.event.type = events_pb2.EVENT_TYPE_TRACK if event else events_pb2.EVENT_TYPE_IDENTIFY
    resolved.event.event = event
    resolved.event.timestamp.FromDatetime(at or datetime.now(UTC))
    resolved.event.received_at.FromDatetime(at or datetime.now(UTC))
    if traits:
        resolved.event.traits.update(traits)
    if properties:
        resolved.event.properties.update(properties)
    await js.publish(
        names.partitioned(RESOLVED, person_id),
        batch.SerializeToString(),
        headers={"Nats-Msg-Id": nats_id or message_id},
    )


async def publish_profile_event(
    js,
    names: BusNames,
    workspace_id: str,
    person_id: str,
    event: str,
    message_id: str,
    *,
    version: int = 1,
    at: datetime | None = None,
    **properties,
) -> None:
    """Profile's announcement of one stored track event (a ProfileChanged carrying its EventFact)
    on {prefix}.profile.{partition of the person}: what campaign reacts to, without profile."""
    change = events_pb2.ProfileChanged(
        workspace_id=workspace_id, person_id=person_id, version=version, trigger_message_id=message_id
    )
    change.snapshot.currency = "CNY"
    fact = change.events.add(message_id=message_id, event=event, type=events_pb2.EVENT_TYPE_TRACK)
    fact.event_time.FromDatetime(at or datetime.now(UTC))
    if properties:
        fact.properties.update(properties)
    await js.publish(
        names.partitioned(PROFILE, person_id),
        change.SerializeToString(),
        headers={"Nats-Msg-Id": f"profile:{workspace_id}:{person_id}:{message_id}"},
    )


async def publish_journey(
    stub: campaign_pb2_grpc.JourneyServiceStub, workspace_id: str, journey_id: str, definition: dict
) -> campaign_pb2.Journey:
    struct = struct_pb2.Struct()
    struct.update(definition)
    created = await stub.CreateJourney(
        campaign_pb2.CreateJourneyRequest(
            parent=f"workspaces/{workspace_id}",
            journey_id=journey_id,
            journey=campaign_pb2.Journey(display_name=journey_id, definition=struct),
        )
    )
    return await stub.PublishJourney(campaign_pb2.PublishJourneyRequest(name=created.name))


async def no_quiet_hours(target: str, workspace_id: str) -> None:
    """Whatever the time of day on this machine: the workspace gets no quiet hours."""
    async with grpc.aio.insecure_channel(target) as channel:
        await campaign_pb2_grpc.JourneyServiceStub(channel).UpdateCampaignSettings(
            campaign_pb2.UpdateCampaignSettingsRequest(
                settings=campaign_pb2.CampaignSettings(name=f"workspaces/{workspace_id}/campaignSettings"),
                update_mask={"paths": ["quiet_hours_start", "quiet_hours_end"]},
            )
        )
