"""AIP-134 on every Update: an omitted update_mask changes only the fields the request populates
(not every field, which would wipe what the client did not send)."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2, struct_pb2

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_campaign import __main__ as campaign_main
from cdp_profile import __main__ as profile_main
from cdp_segment import __main__ as segment_main

WS = "masks"


def struct(values: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


async def test_segment_update_without_a_mask_keeps_what_was_not_sent(run_service):
    runtime = await run_service(segment_main, segment_main.Settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = segment_pb2_grpc.SegmentServiceStub(channel)
        created = await stub.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                parent=f"workspaces/{WS}",
                segment_id="repeat",
                segment=segment_pb2.Segment(
                    display_name="Repeat", description="two orders", rule="orders.count() >= 2"
                ),
            )
        )
        renamed = await stub.UpdateSegment(
            segment_pb2.UpdateSegmentRequest(segment=segment_pb2.Segment(name=created.name, display_name="Loyal"))
        )
        assert (renamed.display_name, renamed.description, renamed.rule) == ("Loyal", "two orders", created.rule)
        assert renamed.version == created.version  # the rule did not change: no new version
        # An explicit mask still clears a field sent empty.
        cleared = await stub.UpdateSegment(
            segment_pb2.UpdateSegmentRequest(
                segment=segment_pb2.Segment(name=created.name),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        )
        assert (cleared.display_name, cleared.description) == ("Loyal", "")


async def test_profile_settings_update_without_a_mask_keeps_the_tiers(run_service):
    runtime = await run_service(profile_main, profile_main.Settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        name = f"workspaces/{WS}/profileSettings"
        tiers = {"by": "total_spent_minor", "levels": [{"name": "silver", "min": 50000}]}
        before = await stub.UpdateProfileSettings(
            profile_pb2.UpdateProfileSettingsRequest(
                settings=profile_pb2.ProfileSettings(name=name, tiers=struct(tiers)),
                update_mask=field_mask_pb2.FieldMask(paths=["tiers"]),
            )
        )
        after = await stub.UpdateProfileSettings(
            profile_pb2.UpdateProfileSettingsRequest(settings=profile_pb2.ProfileSettings(name=name, currency="USD"))
        )
        assert after.currency == "USD"
        assert after.tiers == before.tiers and after.tag_rules == before.tag_rules  # the default repurchase rule too
        assert len(after.tiers.fields["levels"].list_value.values) == 1


async def test_campaign_settings_update_without_a_mask_keeps_quiet_hours(run_service):
    runtime = await run_service(campaign_main, campaign_main.Settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = campaign_pb2_grpc.JourneyServiceStub(channel)
        name = f"workspaces/{WS}/campaignSettings"
        await stub.UpdateCampaignSettings(
            campaign_pb2.UpdateCampaignSettingsRequest(
                settings=campaign_pb2.CampaignSettings(name=name, quiet_hours_start="21:00", quiet_hours_end="09:00"),
                update_mask=field_mask_pb2.FieldMask(paths=["quiet_hours_start", "quiet_hours_end"]),
            )
        )
        capped = await stub.UpdateCampaignSettings(
            campaign_pb2.UpdateCampaignSettingsRequest(
                settings=campaign_pb2.CampaignSettings(name=name, caps=campaign_pb2.FrequencyCaps(per_day=2))
            )
        )
        assert capped.caps.per_day == 2
        assert (capped.quiet_hours_start, capped.quiet_hours_end) == ("21:00", "09:00")  # not switched off
