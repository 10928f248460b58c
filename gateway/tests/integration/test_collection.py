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
