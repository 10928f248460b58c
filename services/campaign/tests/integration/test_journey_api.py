"""Journey definitions CRUD over real gRPC and PostgreSQL (campaign alone: no profile or segment
call is made; campaign's settings, whose time zone is profile's: tests/integration)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from cdp.campaign.v1 import campaign_pb2


@pytest.fixture
async def stub(start_campaign):
    return (await start_campaign()).stub


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


async def test_the_parsed_definitions_cache_is_bounded(start_campaign):
    """CDP_CAMPAIGN_DEFINITION_CACHE_SIZE versions are kept (least recently used evicted); an
    evicted version is read from the database again."""
    c = await start_campaign(real=False, CDP_CAMPAIGN_DEFINITION_CACHE_SIZE="2")
    for n in range(4):
        send = {"channel": "email", "template": {"subject": f"s{n}", "body": "b"}}
        await c.journey(f"j{n}", {"trigger": {"event": {"name": f"E{n}"}}, "steps": [{"id": "m", "send": send}]})
    catalog = c.runtime.runner.catalog
    await catalog.live()  # parses every active version once
    assert len(catalog._versions) == 2
    async with c.runtime.pool.acquire() as conn:
        for n in range(4):
            definition = await catalog.version(conn, "shop", f"j{n}", 1)
            assert definition.steps[0].send.template.subject == f"s{n}"
            assert len(catalog._versions) <= 2
