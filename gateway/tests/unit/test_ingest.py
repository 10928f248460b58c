"""Ingestion use cases with a recording publisher (no NATS)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdp.events.v1 import events_pb2
from cdp.gateway.v1 import gateway_pb2
from cdp_gateway.collection import Limits
from cdp_gateway.ingest import MAX_INGEST_EVENTS, Ingestion
from cdp_gateway.keys import WRITE, Principal
from cdpkit.errors import InvalidArgument, PayloadTooLarge, PermissionDenied, Unavailable

PRINCIPAL = Principal(workspace_id="shop", key_id="key_w", kind=WRITE, scopes=frozenset())


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[events_pb2.RawEvent]] = []
        self.fail = fail

    async def publish(self, events):
        if self.fail:
            raise Unavailable("bus down")
        self.calls.append(list(events))


def ingestion(publisher=None, limits: Limits = Limits()) -> tuple[Ingestion, RecordingPublisher]:
    publisher = publisher or RecordingPublisher()
    return Ingestion(publisher, limits), publisher  # type: ignore[arg-type]


async def test_collect_validates_then_publishes_stamped_events():
    use_case, publisher = ingestion()
    before = datetime.now(UTC)
    events = await use_case.collect(
        "batch",
        {"batch": [{"type": "track", "userId": "u", "event": "A"}, {"type": "identify", "anonymousId": "a"}]},
        PRINCIPAL,
    )
    assert publisher.calls == [events]
    assert [e.type for e in events] == [events_pb2.EVENT_TYPE_TRACK, events_pb2.EVENT_TYPE_IDENTIFY]
    for e in events:
        assert e.workspace_id == "shop" and e.source_key_id == "key_w"
        assert before <= e.received_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)


async def test_collect_publishes_nothing_when_one_message_is_invalid():
    use_case, publisher = ingestion()
    with pytest.raises(InvalidArgument) as caught:
        await use_case.collect(
            "batch", {"batch": [{"type": "track", "userId": "u", "event": "A"}, {"type": "track"}]}, PRINCIPAL
        )
    assert caught.value.field == "batch[1].userId"
    assert publisher.calls == []


async def test_collect_propagates_publish_failure():
    use_case, _ = ingestion(RecordingPublisher(fail=True))
    with pytest.raises(Unavailable):
        await use_case.collect("track", {"userId": "u", "event": "A"}, PRINCIPAL)


async def test_ingest_events():
    use_case, publisher = ingestion()
    request = gateway_pb2.IngestEventsRequest(parent="workspaces/shop")
    request.events.add(
        type=events_pb2.EVENT_TYPE_TRACK, user_id="u", event="Bought", message_id="m1"
    ).properties.update({"sku": "A"})
    page = request.events.add(type=events_pb2.EVENT_TYPE_PAGE, anonymous_id="a", event="Home")
    page.timestamp.FromJsonString("2024-05-01T10:00:00Z")
    # Ignored: set by the gateway.
    request.events.add(
        type=events_pb2.EVENT_TYPE_ALIAS, user_id="u", previous_id="a", workspace_id="evil", source_key_id="k"
    )
    response = await use_case.ingest(request, PRINCIPAL)
    (published,) = publisher.calls
    assert response.accepted_count == 3
    assert list(response.message_ids) == [e.message_id for e in published]
    assert published[0].message_id == "m1"
    assert published[0].properties["sku"] == "A"
    assert published[1].event == "Home"
    assert published[1].type == events_pb2.EVENT_TYPE_PAGE
    assert published[1].timestamp.ToJsonString() == "2024-05-01T10:00:00Z"
    assert published[2].workspace_id == "shop"
    assert published[2].source_key_id == "key_w"
    assert published[2].message_id  # generated


@pytest.mark.parametrize(
    ("events", "error", "field"),
    [
        ([], InvalidArgument, "events"),
        ([events_pb2.RawEvent(user_id="u")], InvalidArgument, "events[0].type"),
        (
            [
                events_pb2.RawEvent(type=events_pb2.EVENT_TYPE_TRACK, user_id="u", event="E"),
                events_pb2.RawEvent(type=events_pb2.EVENT_TYPE_TRACK, user_id="u"),
            ],
            InvalidArgument,
            "events[1].event",
        ),
        ([events_pb2.RawEvent(type=events_pb2.EVENT_TYPE_GROUP, user_id="u")], InvalidArgument, "events[0].groupId"),
    ],
)
async def test_ingest_validation(events, error, field):
    use_case, publisher = ingestion()
    with pytest.raises(error) as caught:
        await use_case.ingest(gateway_pb2.IngestEventsRequest(parent="workspaces/shop", events=events), PRINCIPAL)
    assert caught.value.field == field
    assert publisher.calls == []


async def test_ingest_too_many_events():
    use_case, publisher = ingestion()
    events = [events_pb2.RawEvent(type=events_pb2.EVENT_TYPE_TRACK, user_id="u", event="E")] * (MAX_INGEST_EVENTS + 1)
    with pytest.raises(PayloadTooLarge):
        await use_case.ingest(gateway_pb2.IngestEventsRequest(parent="workspaces/shop", events=events), PRINCIPAL)
    assert publisher.calls == []


@pytest.mark.parametrize("parent", ["workspaces/shop2", "workspaces/rival"])
async def test_ingest_other_workspace_is_denied(parent):
    use_case, publisher = ingestion()
    request = gateway_pb2.IngestEventsRequest(parent=parent)
    request.events.add(type=events_pb2.EVENT_TYPE_TRACK, user_id="u", event="E")
    with pytest.raises(PermissionDenied):
        await use_case.ingest(request, PRINCIPAL)
    assert publisher.calls == []


async def test_ingest_malformed_parent_is_invalid():
    use_case, _ = ingestion()
    request = gateway_pb2.IngestEventsRequest(parent="shop")
    request.events.add(type=events_pb2.EVENT_TYPE_TRACK, user_id="u", event="E")
    with pytest.raises(InvalidArgument) as caught:
        await use_case.ingest(request, PRINCIPAL)
    assert caught.value.field == "parent"
