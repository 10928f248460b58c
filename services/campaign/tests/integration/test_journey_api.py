"""Journey definitions CRUD over real gRPC and PostgreSQL (campaign alone: no profile or segment
call is made), and campaign settings (with the real profile: the time zone is profile's)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp_campaign import __main__ as campaign_main


@pytest.fixture
async def stub(run_service):
    runtime = await run_service(campaign_main, campaign_main.Settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield campaign_pb2_grpc.JourneyServiceStub(channel)


def definition(**values):
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


async def test_journey_lifecycle(stub):
    created = await stub.CreateJourney(
        campaign_pb2.CreateJourneyRequest(
            parent="workspaces/shop",
            journey=campaign_pb2.Journey(
                display_name="Welcome", definition=definition(trigger={"event": {"name": "Signed Up"}})
            ),
        )
    )
    assert created.state == campaign_pb2.Journey.STATE_DRAFT
    assert created.name.startswith("workspaces/shop/journeys/jny-")
    assert created.definition["trigger"]["event"]["name"] == "Signed Up"

    updated = await stub.UpdateJourney(
        campaign_pb2.UpdateJourneyRequest(
            journey=campaign_pb2.Journey(
                name=created.name,
                definition=definition(steps=[{"id": "w", "wait": {"duration": "1h"}}]),
                etag=created.etag,
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["definition"]),
        )
    )
    assert "trigger" not in updated.definition and updated.display_name == "Welcome"

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.UpdateJourney(
            campaign_pb2.UpdateJourneyRequest(
                journey=campaign_pb2.Journey(name=created.name, display_name="x", etag=created.etag)
            )
        )
    assert error.value.code() == grpc.StatusCode.ABORTED

    listed = await stub.ListJourneys(campaign_pb2.ListJourneysRequest(parent="workspaces/shop"))
    assert [j.name for j in listed.journeys] == [created.name]
    await stub.DeleteJourney(campaign_pb2.DeleteJourneyRequest(name=created.name))
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetJourney(campaign_pb2.GetJourneyRequest(name=created.name))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_missing_display_name_is_invalid(stub):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.CreateJourney(
            campaign_pb2.CreateJourneyRequest(parent="workspaces/shop", journey=campaign_pb2.Journey())
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("journey.display_name:")


async def test_campaign_settings_validate_and_update_by_mask(start_campaign):
    c = await start_campaign()
    stub = c.stub
    name = "workspaces/shop/campaignSettings"
    defaults = await stub.GetCampaignSettings(campaign_pb2.GetCampaignSettingsRequest(name=name))
    assert (defaults.time_zone, defaults.quiet_hours_start, defaults.quiet_hours_end) == (
        "Asia/Shanghai",  # profile's default workspace time zone
        "21:00",
        "09:00",
    )
    assert defaults.consent_mode == "opt_in"
    both = campaign_pb2.CampaignSettings(name=name, caps=campaign_pb2.FrequencyCaps(per_day=2, per_week=5))
    await stub.UpdateCampaignSettings(campaign_pb2.UpdateCampaignSettingsRequest(settings=both))
    only_day = campaign_pb2.CampaignSettings(name=name, caps=campaign_pb2.FrequencyCaps(per_day=1))
    updated = await stub.UpdateCampaignSettings(
        campaign_pb2.UpdateCampaignSettingsRequest(
            settings=only_day, update_mask=field_mask_pb2.FieldMask(paths=["caps.per_day"])
        )
    )
    assert (updated.caps.per_day, updated.caps.per_week) == (1, 5)
    for bad, field in (
        # The time zone is the workspace's, set in profile's settings, never here.
        (campaign_pb2.CampaignSettings(name=name, time_zone="Europe/Paris"), "settings.time_zone"),
        (campaign_pb2.CampaignSettings(name=name, quiet_hours_start="25:00"), "settings.quiet_hours_start"),
        (campaign_pb2.CampaignSettings(name=name, consent_mode="maybe"), "settings.consent_mode"),
    ):
        paths = [field.removeprefix("settings.")]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.UpdateCampaignSettings(
                campaign_pb2.UpdateCampaignSettingsRequest(
                    settings=bad, update_mask=field_mask_pb2.FieldMask(paths=paths)
                )
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error.value.details().startswith(field)
    unchanged = await stub.GetCampaignSettings(campaign_pb2.GetCampaignSettingsRequest(name=name))
    assert (unchanged.time_zone, unchanged.consent_mode, unchanged.caps.per_day) == ("Asia/Shanghai", "opt_in", 1)
    await c.profile_settings(time_zone="America/New_York")
    moved = await stub.GetCampaignSettings(campaign_pb2.GetCampaignSettingsRequest(name=name))
    assert moved.time_zone == "America/New_York"
