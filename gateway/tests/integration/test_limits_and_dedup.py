"""Per-key rate limits (429 + Retry-After, nothing published) and messageId de-duplication on a
running gateway with real JetStream."""

from __future__ import annotations

import grpc
import pytest

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc

from .conftest import basic_auth


def batch(ids, user="u1"):
    return {"batch": [{"type": "track", "userId": user, "event": "Viewed", "messageId": m} for m in ids]}


async def test_a_write_key_is_limited_in_events_per_second(gateway):
    # 50 events/s and a 2 s bucket: 100 tokens, one per event.
    _, key = await gateway.runtime.keys.create_key("shop", "write", rate_limit=50)
    first = await gateway.http.post("/v1/batch", json=batch([f"a{i}" for i in range(80)]), headers=basic_auth(key))
    assert first.status == 200
    second = await gateway.http.post("/v1/batch", json=batch([f"b{i}" for i in range(80)]), headers=basic_auth(key))
    assert second.status == 429  # 20 tokens left for 80 events
    assert int(second.headers["Retry-After"]) == 2  # 60 tokens at 50/s: 1.2 s, rounded up
    error = (await second.json())["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED" and "rate limit" in error["message"]
    assert error["details"][0]["@type"].endswith("google.rpc.RetryInfo")
    third = await gateway.http.post("/v1/batch", json=batch([f"c{i}" for i in range(15)]), headers=basic_auth(key))
    assert third.status == 200  # a refused request cost nothing
    events = await gateway.raw_events()
    assert len(events) == 95 and not any(e.message_id.startswith("b") for e in events)
    # Another key of the same workspace has its own bucket.
    other = await gateway.http.post("/v1/batch", json=batch(["d1"]), headers=gateway.basic)
    assert other.status == 200


async def test_a_secret_key_is_limited_in_requests_per_second_on_both_doors(gateway):
    _, key = await gateway.runtime.keys.create_key("shop", "secret", frozenset({"read"}), rate_limit=1)
    headers = {"Authorization": f"Bearer {key}"}
    # A bucket of 2 requests. Admitted calls fail fast (400: not a person id), after the charge.
    url = "/v1/workspaces/shop/persons/not-a-uuid/customer360"
    statuses = [(await gateway.http.get(url, headers=headers)).status for _ in range(3)]
    assert statuses == [400, 400, 429]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.runtime.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await identity_pb2_grpc.IdentityServiceStub(channel).GetPerson(
                identity_pb2.GetPersonRequest(name="workspaces/shop/persons/p1"),
                metadata=(("authorization", f"Bearer {key}"),),
            )
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_message_ids_seen_recently_are_dropped_at_the_gateway(gateway):
    response = await gateway.http.post("/v1/batch", json=batch(["m1", "m2", "m3"]), headers=gateway.basic)
    assert response.status == 200
    # A mobile SDK re-sends m2 and m3 inside a new batch, and m4 twice in one request.
    response = await gateway.http.post("/v1/batch", json=batch(["m2", "m3", "m4", "m4", "m5"]), headers=gateway.basic)
    assert response.status == 200 and await response.json() == {"success": True}
    response = await gateway.http.post(
        "/v1/track", json={"userId": "u1", "event": "x", "messageId": "m1"}, headers=gateway.basic
    )
    assert response.status == 200
    events = await gateway.raw_events()
    assert [e.message_id for e in events] == ["m1", "m2", "m3", "m4", "m5"]
    # The same id in another workspace is another message.
    _, rival_writer = await gateway.runtime.keys.create_key("rival", "write")
    response = await gateway.http.post("/v1/batch", json=batch(["m1"]), headers=basic_auth(rival_writer))
    assert response.status == 200
    assert [(e.workspace_id, e.message_id) for e in (await gateway.raw_events())[-1:]] == [("rival", "m1")]


async def test_a_rejected_request_does_not_mark_its_ids_as_seen(gateway):
    bad = batch(["r1", "r2"])
    bad["batch"].append({"type": "track", "userId": "u1"})  # no event name: the whole request is refused
    response = await gateway.http.post("/v1/batch", json=bad, headers=gateway.basic)
    assert response.status == 400
    response = await gateway.http.post("/v1/batch", json=batch(["r1", "r2"]), headers=gateway.basic)
    assert response.status == 200
    assert [e.message_id for e in await gateway.raw_events()] == ["r1", "r2"]
