"""Bad input is INVALID_ARGUMENT naming the field, never INTERNAL; a journey deleted and created
again starts afresh. Campaign alone (its own API and bookkeeping)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from cdp.campaign.v1 import campaign_pb2
from cdpkit.pagination import encode_token

from ..conftest import WS, eventually, new_person


async def _refusal(call) -> tuple[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code().name, error.value.details()


async def test_crafted_tokens_and_nul_characters_are_invalid_arguments(start_campaign):
    c = await start_campaign(real=False)
    stub, parent = c.stub, f"workspaces/{WS}"
    # The token's fingerprint is not a secret: a client can build one with any position.
    for call in (
        stub.ListJourneys(campaign_pb2.ListJourneysRequest(parent=parent, page_token=encode_token({}, scope=WS))),
        stub.ListJourneys(
            campaign_pb2.ListJourneysRequest(parent=parent, page_token=encode_token({"after": 5}, scope=WS))
        ),
        stub.ListCouponPools(
            campaign_pb2.ListCouponPoolsRequest(
                parent=parent, page_token=encode_token({"after": []}, scope=f"pools/{WS}")
            )
        ),
        stub.ListDeliveries(
            campaign_pb2.ListDeliveriesRequest(
                parent=f"{parent}/journeys/-", page_token=encode_token({"after": "a\x00"}, scope=f"{WS}/-/")
            )
        ),
        stub.ListPersonMessages(
            campaign_pb2.ListPersonMessagesRequest(
                parent=f"{parent}/persons/p-1",
                page_token=encode_token({"after": ["2026-01-01T00:00:00+00:00", 7]}, scope=f"messages/{WS}/p-1"),
            )
        ),
    ):
        assert await _refusal(call) == ("INVALID_ARGUMENT", "page_token: is not a token this API issued")

    definition = struct_pb2.Struct()
    definition.update({"trigger": {"event": {"name": "Signed\x00Up"}}, "steps": [{"id": "x", "exit": {}}]})
    yaml_nul = 'trigger: {event: {name: "A\\0"}}\nsteps: [{id: x, exit: {}}]\n'
    for call, field in (
        (
            stub.CreateJourney(
                campaign_pb2.CreateJourneyRequest(
                    parent=parent, journey_id="a", journey=campaign_pb2.Journey(display_name="a\x00b")
                )
            ),
            "journey.display_name",
        ),
        (
            stub.CreateJourney(
                campaign_pb2.CreateJourneyRequest(
                    parent=parent, journey_id="b", journey=campaign_pb2.Journey(display_name="b", definition=definition)
                )
            ),
            "journey.definition.trigger.event.name",
        ),
        (
            stub.CreateJourney(
                campaign_pb2.CreateJourneyRequest(
                    parent=parent,
                    journey_id="c",
                    journey=campaign_pb2.Journey(display_name="c"),
                    definition_yaml=yaml_nul,
                )
            ),
            "journey.definition",
        ),
        (
            stub.ListJourneyInstances(
                campaign_pb2.ListJourneyInstancesRequest(parent=f"{parent}/journeys/a", person_id="p\x00")
            ),
            "person_id",
        ),
    ):
        code, details = await _refusal(call)
        assert (code, details.split(":")[0]) == ("INVALID_ARGUMENT", field)
    assert not (await stub.ListJourneys(campaign_pb2.ListJourneysRequest(parent=parent))).journeys

    # A webhook step reads no profile: a body naming a trait cannot be published.
    hook = {
        "trigger": {"event": {"name": "Joined"}},
        "steps": [{"id": "h", "webhook": {"url": "http://crm.example/x", "body": '{"e": "{{ traits.email }}"}'}}],
    }
    draft = await c.journey("hook", hook, publish=False)
    code, details = await _refusal(stub.PublishJourney(campaign_pb2.PublishJourneyRequest(name=draft.name)))
    assert code == "INVALID_ARGUMENT" and details.startswith("journey.definition.steps[0].webhook.body: unknown")


def _waiting(first_step: str) -> dict:
    return {"trigger": {"event": {"name": "Joined"}}, "steps": [{"id": first_step, "wait": {"duration": "1d"}}]}


async def test_a_journey_deleted_and_created_again_starts_afresh(start_campaign):
    c = await start_campaign(real=False)
    old = await c.journey("again", _waiting("old-wait"))
    await c.track(new_person(), "Joined")
    await eventually(lambda: _count(c.instances("again"), 1), what="an instance of the first journey")
    paused = await c.stub.PauseJourney(campaign_pb2.PauseJourneyRequest(name=old.name))
    await c.stub.DeleteJourney(campaign_pb2.DeleteJourneyRequest(name=paused.name))

    again = await c.journey("again", _waiting("new-wait"))
    assert again.version == 2  # after the deleted journey's version 1: no cache serves that one
    assert not await c.instances("again")
    report = await c.stub.GetJourneyReport(campaign_pb2.GetJourneyReportRequest(name=f"{again.name}/report"))
    assert all(row.entered == 0 for row in report.rows)
    person = new_person()
    await c.track(person, "Joined")
    (instance,) = await eventually(lambda: c.instances("again"), what="an instance of the new journey")
    assert (instance.person_id, instance.step_id, instance.journey_version) == (person, "new-wait", 2)


async def _count(coro, n):
    return len(await coro) == n
