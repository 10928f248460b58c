"""Campaign alone (its own logic; no profile or segment call), on a ManualClock with real
PostgreSQL, NATS and gRPC: publishing checks and the ready-made journeys' round trip; re-keying
on identity's merges and splits and following profile's split announcement (published here as
identity and profile publish them; the whole path runs in tests/e2e/test_business_jobs.py).
Triggers, steps and sends with the real profile and segment: tests/integration."""

from __future__ import annotations

import grpc
import pytest
import yaml
from google.protobuf import json_format

from cdp.campaign.v1 import campaign_pb2
from cdp.events.v1 import events_pb2
from cdp_campaign.service import LIBRARY
from cdpkit.bus import IDENTITY, PROFILE

from ..conftest import WS, eventually, len_is, new_person


async def test_publish_checks_templates_and_yaml_round_trips(start_campaign):
    c = await start_campaign()
    bad = {
        "trigger": {"segment": {"segment_id": "vip"}},
        "steps": [
            {"id": "hi", "send": {"channel": "email", "template": {"subject": "Hi", "body": "{{ coupon.code }}"}}}
        ],
    }
    draft = await c.journey("bad", bad, publish=False)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.stub.PublishJourney(campaign_pb2.PublishJourneyRequest(name=draft.name))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # No coupon step before the send, no event trigger: the variable cannot exist at send time.
    assert error.value.details().startswith(
        "journey.definition.steps[0].send.template.body: unknown variable(s) coupon"
    )
    assert (await c.stub.GetJourney(campaign_pb2.GetJourneyRequest(name=draft.name))).state == 1  # still a draft

    for definition, field in (
        # A tag profile would refuse (ModifyProfileTags) is refused at publish, not at run time.
        (
            {"trigger": {"event": {"name": "X"}}, "steps": [{"id": "t", "tag": {"add": ["brand friend"]}}]},
            "journey.definition.steps[0].tag.add[0]",
        ),
        (
            {"trigger": {"segment": {"segment_id": "vip", "change": "exited", "include_current_members": True}},
             "steps": [{"id": "e", "exit": {}}]},
            "journey.definition.trigger.segment.include_current_members",
        ),
        (
            {"trigger": {"segment": {"segment_id": "vip"}},
             "steps": [{"id": "m", "send": {"channel": "email", "cross_sell": {"source": "event"},
                                            "template": {"subject": "s", "body": "b"}}}]},
            "journey.definition.steps[0].send.cross_sell.source",
        ),
    ):  # fmt: skip
        draft = await c.journey(f"bad-{len(field)}", definition, publish=False)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await c.stub.PublishJourney(campaign_pb2.PublishJourneyRequest(name=draft.name))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error.value.details().startswith(field)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.journey("unknown-field", {"trigger": {"event": {"name": "X", "colour": "red"}}}, publish=False)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "colour" in error.value.details()

    # Every ready-made journey, created from its YAML form, exports to the same YAML.
    templates = await c.stub.ListJourneyTemplates(campaign_pb2.ListJourneyTemplatesRequest(parent=f"workspaces/{WS}"))
    assert {t.name.rsplit("/", 1)[1] for t in templates.templates} == {
        "welcome-series",
        "cart-abandonment",
        "win-back",
        "birthday",
        "points-expiry",
        "brand-friend-invitation",
        "post-promotion-nurture",
    }
    for path in sorted(LIBRARY.glob("*.yaml")):
        definition_yaml = yaml.safe_dump(yaml.safe_load(path.read_text())["definition"])
        created = await c.stub.CreateJourney(
            campaign_pb2.CreateJourneyRequest(
                parent=f"workspaces/{WS}",
                journey_id=path.stem,
                journey=campaign_pb2.Journey(display_name=path.stem),
                definition_yaml=definition_yaml,
            )
        )
        exported = await c.stub.ExportJourney(campaign_pb2.ExportJourneyRequest(name=created.name, format="yaml"))
        assert yaml.safe_load(exported.content) == json_format.MessageToDict(created.definition)
        again = await c.stub.CreateJourney(
            campaign_pb2.CreateJourneyRequest(
                parent=f"workspaces/{WS}",
                journey_id=f"{path.stem}-2",
                journey=campaign_pb2.Journey(display_name="Again"),
                definition_yaml=exported.content,
            )
        )
        assert again.definition == created.definition


async def test_merged_persons_are_re_keyed_and_a_split_gives_back_what_the_merge_brought(start_campaign):
    """Campaign alone: re-keying on identity's PersonsMerged / PersonSplit and following profile's
    split announcement is campaign's own bookkeeping (the announcements are published here as
    identity and profile publish them; the whole path runs in tests/e2e/test_business_jobs.py)."""
    c = await start_campaign()
    waiting = {
        "trigger": {"event": {"name": "Joined"}},
        "reentry": {"mode": "once"},
        "steps": [{"id": "w", "wait": {"duration": "1d"}}],
    }
    await c.journey("once", waiting)
    await c.journey("browse", {**waiting, "trigger": {"event": {"name": "Browsed"}}, "reentry": {"mode": "always"}})
    old, new, other = new_person(), new_person(), new_person()
    await c.track(old, "Joined", "j-old")
    await c.track(new, "Joined", "j-new")
    await eventually(lambda: len_is(c.instances("once"), 2), what="two instances")
    merge = events_pb2.PersonsMerged(
        workspace_id=WS, survivor_person_id=new, merged_person_ids=[old], merge_id="merge-1"
    )
    await c.js.publish(c.names.subject(IDENTITY, "persons_merged"), merge.SerializeToString())

    async def instances(journey_id):
        return {(i.person_id, i.state, i.exit_reason) for i in await c.instances(journey_id)}

    await eventually(
        lambda: _equals(instances("once"), {(new, "active", ""), (new, "exited", "merged")}), what="re-keying"
    )
    await c.track(new, "Joined", "j-again")  # once: the merged person does not enter again
    await c.track(other, "Joined", "j-other")
    await eventually(lambda: len_is(c.instances("once"), 3), what="the other person")
    assert len([i for i in await c.instances("once") if i.person_id == new]) == 2
    # After the merge, the survivor browses twice; profile will move one of those events away.
    await c.track(new, "Browsed", "b-1")
    await c.track(new, "Browsed", "b-2")
    await eventually(lambda: len_is(c.instances("browse"), 2), what="two browse instances")

    # The unmerge: identity gives the old id back ...
    split = events_pb2.PersonSplit(
        workspace_id=WS, person_id=new, new_person_id=old, undone_merge_id="merge-1", reason="unmerge"
    )
    await c.js.publish(c.names.subject(IDENTITY, "person_split"), split.SerializeToString())
    # ... and profile announces that event b-2 (resolved from the old person's identifiers) moved.
    moved = events_pb2.ProfileChanged(workspace_id=WS, person_id=old, version=9)
    moved.moved.split_from_person_id = new
    moved.moved.message_ids.append("b-2")
    await c.js.publish(c.names.partitioned(PROFILE, old), moved.SerializeToString())
    # What the merge brought goes back to the old person; what the survivor did stays; an
    # instance started by an event that moved follows it.
    await eventually(
        lambda: _equals(instances("once"), {(new, "active", ""), (old, "active", ""), (other, "active", "")}),
        what="the split",
    )

    async def browse():  # profile's announcement is a consumer of its own: not ordered with the split
        return {(i.person_id, i.trigger_key) for i in await c.instances("browse")}

    await eventually(lambda: _equals(browse(), {(new, "event:b-1"), (old, "event:b-2")}), what="the moved event")


async def _equals(coro, expected):
    return await coro == expected
