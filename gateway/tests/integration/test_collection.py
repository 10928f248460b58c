"""The Segment tracking API on a running gateway with real NATS JetStream and PostgreSQL."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest

from cdp.events.v1 import events_pb2

from .conftest import basic_auth


async def test_track_is_acked_after_jetstream_stored_it(gateway):
    response = await gateway.http.post(
        "/v1/track",
        json={"userId": "u1", "event": "Product Viewed", "properties": {"sku": "A-1"}, "messageId": "m-1"},
        headers=gateway.basic,
    )
    assert response.status == 200
    assert await response.json() == {"success": True}
    (event,) = await gateway.raw_events()
    assert event.message_id == "m-1"
    assert event.workspace_id == "shop"
    assert event.type == events_pb2.EVENT_TYPE_TRACK
    assert event.properties["sku"] == "A-1"
    assert event.received_at.seconds > 0


async def test_batch_is_chunked_and_a_retry_is_deduplicated(gateway):
    batch = {
        "batch": [
            {"type": "track", "event": "Viewed", "anonymousId": f"a{i % 7}", "messageId": f"b-{i}"} for i in range(250)
        ],
        "writeKey": gateway.write_key,  # the key may also travel in the body
    }
    for _ in range(2):  # an SDK retry of the same batch
        response = await gateway.http.post("/v1/batch", json=batch)
        assert response.status == 200, await response.text()
    events = await gateway.raw_events()
    assert sorted(e.message_id for e in events) == sorted(f"b-{i}" for i in range(250))
    assert await gateway.raw_message_count() <= 4 + 250 // 100  # chunks, not one message per event


async def test_identify_traits_rudderstack_style_and_clock_skew(gateway):
    sent_at = datetime.now(UTC) + timedelta(hours=1)  # the device clock runs an hour fast
    happened = sent_at - timedelta(seconds=30)
    response = await gateway.http.post(
        "/v1/identify",
        json={
            "anonymousId": "anon-1",
            "context": {"traits": {"email": "a@shop.io"}},
            "timestamp": happened.isoformat(),
            "sentAt": sent_at.isoformat(),
            "rudderId": "extra fields are accepted",
        },
        headers=gateway.basic,
    )
    assert response.status == 200
    (event,) = await gateway.raw_events()
    assert event.traits["email"] == "a@shop.io"
    corrected = event.timestamp.ToDatetime(UTC)
    received = event.received_at.ToDatetime(UTC)
    assert abs((received - corrected).total_seconds() - 30) < 1


async def test_gzip_bodies_are_accepted(gateway):
    body = gzip.compress(json.dumps({"userId": "u1", "event": "Zipped"}).encode())
    response = await gateway.http.post(
        "/v1/track",
        data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json", **gateway.basic},
    )
    assert response.status == 200, await response.text()
    assert [e.event for e in await gateway.raw_events()] == ["Zipped"]


async def assert_rejected(gateway, response, status, *, field=None, code=None):
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert error["code"] == status and error["message"]
    if code:
        assert error["status"] == code
    if field:
        violations = [v for d in error["details"] for v in d.get("fieldViolations", [])]
        assert violations and violations[0]["field"] == field
    assert await gateway.raw_message_count() == 0


async def test_malformed_json_is_400(gateway):
    response = await gateway.http.post("/v1/track", data=b"{not json", headers=gateway.basic)
    await assert_rejected(gateway, response, 400, field="body", code="INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("call", "body", "field"),
    [
        ("track", {"userId": "u1"}, "event"),
        ("track", {"event": "x"}, "userId"),
        ("track", {"userId": "u1", "event": "x", "properties": [1, 2]}, "properties"),
        ("track", {"userId": {"nested": 1}, "event": "x"}, "userId"),
        ("track", {"userId": "u1", "event": "x", "timestamp": "yesterday"}, "timestamp"),
        ("alias", {"userId": "u1"}, "previousId"),
        ("batch", {"batch": []}, "batch"),
        (
            "batch",
            {"batch": [{"type": "track", "userId": "u", "event": "ok"}, {"type": "nope", "userId": "u"}]},
            "batch[1].type",
        ),
    ],
)
async def test_wrong_types_and_missing_fields_name_the_field_and_publish_nothing(gateway, call, body, field):
    response = await gateway.http.post(f"/v1/{call}", json=body, headers=gateway.basic)
    await assert_rejected(gateway, response, 400, field=field)


async def test_missing_and_wrong_keys_are_401(gateway):
    response = await gateway.http.post("/v1/track", json={"userId": "u", "event": "x"})
    await assert_rejected(gateway, response, 401, code="UNAUTHENTICATED")
    response = await gateway.http.post(
        "/v1/track", json={"userId": "u", "event": "x"}, headers=basic_auth("cdp_wk_nope")
    )
    await assert_rejected(gateway, response, 401)


async def test_a_secret_read_key_cannot_send_events(gateway):
    response = await gateway.http.post(
        "/v1/track", json={"userId": "u", "event": "x"}, headers={"Authorization": f"Bearer {gateway.rival_secret}"}
    )
    await assert_rejected(gateway, response, 403, code="PERMISSION_DENIED")


async def test_oversize_message_is_413(gateway):
    response = await gateway.http.post(
        "/v1/track", json={"userId": "u", "event": "x", "properties": {"blob": "x" * 40_000}}, headers=gateway.basic
    )
    await assert_rejected(gateway, response, 413, code="RESOURCE_EXHAUSTED")


async def test_oversize_batch_is_413(gateway):
    batch = {"batch": [{"type": "track", "userId": "u", "event": "x", "properties": {"p": "y" * 20_000}}] * 30}
    response = await gateway.http.post("/v1/batch", json=batch, headers=gateway.basic)
    await assert_rejected(gateway, response, 413)


async def test_gzip_bomb_is_413_without_inflating_it(gateway):
    bomb = gzip.compress(b"[" + b" " * (200 * 1024 * 1024) + b"]", compresslevel=9)
    assert len(bomb) < 300_000
    response = await gateway.http.post(
        "/v1/batch",
        data=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json", **gateway.basic},
    )
    await assert_rejected(gateway, response, 413)


async def test_health_endpoints(gateway):
    assert (await gateway.http.get("/healthz")).status == 200
    ready = await gateway.http.get("/readyz")
    assert ready.status == 200 and (await ready.json()) == {"ready": True}


# --------------------------------------------------------------------------------------------
# More bad input (issue 7): each answer is a 4xx with a message, and nothing is published.


async def test_a_key_of_another_workspace_is_403_on_the_ingest_api(gateway):
    _, rival_writer = await gateway.runtime.keys.create_key("rival", "write")
    event = {"type": "EVENT_TYPE_TRACK", "event": "x", "userId": "u"}
    response = await gateway.http.post(
        "/v1/workspaces/shop/events:ingest", json={"events": [event]}, headers=basic_auth(rival_writer)
    )
    await assert_rejected(gateway, response, 403, code="PERMISSION_DENIED")
    # A shop secret key is not a key of the rival workspace either.
    response = await gateway.http.post(
        "/v1/workspaces/rival/events:ingest",
        json={"events": [event]},
        headers={"Authorization": f"Bearer {gateway.secret_key}"},
    )
    await assert_rejected(gateway, response, 403, code="PERMISSION_DENIED")
    # The same call with the shop's own write key goes through.
    response = await gateway.http.post(
        "/v1/workspaces/shop/events:ingest", json={"events": [event]}, headers=gateway.basic
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["acceptedCount"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b'{"events": {"type": "EVENT_TYPE_TRACK"}}', "body"),
        (b'{"events": [{"type": "EVENT_TYPE_TRACK", "userId": 5, "event": "x", "timestamp": 7}]}', "body"),
        (b'{"events": [{"type": "EVENT_TYPE_TRACK", "userId": "u"}]}', "events[0].event"),
        (b'{"events": []}', "events"),
    ],
)
async def test_bad_input_on_the_ingest_api_is_400(gateway, body, field):
    response = await gateway.http.post(
        "/v1/workspaces/shop/events:ingest",
        data=body,
        headers={"Content-Type": "application/json", **gateway.basic},
    )
    await assert_rejected(gateway, response, 400, field=field, code="INVALID_ARGUMENT")


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"[1, 2]", {}),
        (b'"just a string"', {}),
        (b"", {}),
        (b"\x1f\x8b\x08\x00 not really gzip", {"Content-Encoding": "gzip"}),
    ],
    ids=["array", "string", "empty", "corrupt-gzip"],
)
async def test_bodies_that_are_not_a_json_object_are_400(gateway, body, headers):
    response = await gateway.http.post(
        "/v1/track", data=body, headers={"Content-Type": "application/json", **headers, **gateway.basic}
    )
    await assert_rejected(gateway, response, 400, code="INVALID_ARGUMENT")


async def test_too_many_messages_in_one_batch_is_413(gateway):
    batch = {"batch": [{"type": "track", "userId": "u", "event": "x"} for _ in range(2501)]}
    response = await gateway.http.post("/v1/batch", json=batch, headers=gateway.basic)
    await assert_rejected(gateway, response, 413)
    assert "2501 messages" in (await response.json())["error"]["message"]


async def test_oversize_message_inside_a_batch_names_it(gateway):
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "ok"},
            {"type": "track", "userId": "u", "event": "big", "properties": {"blob": "x" * 40_000}},
        ]
    }
    response = await gateway.http.post("/v1/batch", json=batch, headers=gateway.basic)
    await assert_rejected(gateway, response, 413)
    assert "batch[1]" in (await response.json())["error"]["message"]


async def test_a_revoked_key_is_401(gateway):
    key_id, key = await gateway.runtime.keys.create_key("shop", "write")
    response = await gateway.http.post("/v1/track", json={"userId": "u", "event": "x"}, headers=basic_auth(key))
    assert response.status == 200
    await gateway.runtime.keys.revoke_key("shop", key_id)
    before = await gateway.raw_message_count()
    response = await gateway.http.post("/v1/track", json={"userId": "u", "event": "y"}, headers=basic_auth(key))
    assert response.status == 401
    assert await gateway.raw_message_count() == before
