"""One event end to end: HTTP in at the gateway, profile out over HTTP and gRPC."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdpkit.errors import http_status_for

pytestmark = pytest.mark.e2e


async def wait_for(fetch, predicate, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await fetch()
        if predicate(last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s; last value: {last}")


async def test_track_and_identify_reach_the_profile(running_stack):
    s = running_stack
    async with aiohttp.ClientSession(base_url=s.base_url) as http:
        track = await http.post(
            "/v1/track",
            json={"anonymousId": "anon-42", "event": "Product Viewed", "properties": {"sku": "A-1"}},
            headers=s.writer(),
        )
        assert track.status == 200
        identify = await http.post(
            "/v1/identify",
            json={"anonymousId": "anon-42", "userId": "u-42", "traits": {"email": "Li@Shop.io", "tier": "silver"}},
            headers=s.writer(),
        )
        assert identify.status == 200

        async def lookup():
            response = await http.get(
                "/v1/workspaces/demo/persons:lookup",
                params={"identifierType": "email", "identifierValue": "li@shop.io"},
                headers=s.reader(),
            )
            return response.status, await response.json()

        _, person = await wait_for(lookup, lambda r: r[0] == 200)
        person_id = person["personId"]
        assert {(i["type"], i["value"]) for i in person["identifiers"]} == {
            ("anonymous_id", "anon-42"),
            ("user_id", "u-42"),
            ("email", "li@shop.io"),
        }

        async def profile():
            response = await http.get(f"/v1/workspaces/demo/profiles/{person_id}", headers=s.reader())
            return response.status, await response.json()

        _, body = await wait_for(profile, lambda r: r[0] == 200 and r[1]["eventCount"] == "2")
        assert body["traits"] == {"email": "Li@Shop.io", "tier": "silver"}
        assert [e["event"] for e in body["recentEvents"]] == ["", "Product Viewed"]
        assert body["lastSeenTime"] and body["firstSeenTime"]

    # The same profile over gRPC: from the profile service itself, and through the gateway's door.
    request = profile_pb2.GetProfileRequest(name=f"workspaces/demo/profiles/{person_id}")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{s.stack.ports.profile}") as channel:
        direct = await profile_pb2_grpc.ProfileServiceStub(channel).GetProfile(request)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{s.stack.ports.gateway_grpc}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        via_gateway = await stub.GetProfile(request, metadata=(("authorization", f"Bearer {s.secret_key}"),))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetProfile(request)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.GetProfile(
                profile_pb2.GetProfileRequest(name=f"workspaces/other/profiles/{person_id}"),
                metadata=(("authorization", f"Bearer {s.secret_key}"),),
            )
        assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert direct.event_count == via_gateway.event_count == 2
    assert direct.traits == via_gateway.traits


async def test_api_errors_are_json_with_the_right_status(running_stack):
    s = running_stack
    async with aiohttp.ClientSession(base_url=s.base_url) as http:
        missing = await http.get(
            "/v1/workspaces/demo/profiles/00000000-0000-7000-8000-000000000000", headers=s.reader()
        )
        assert missing.status == 404
        assert (await missing.json())["error"]["status"] == "NOT_FOUND"
        malformed = await http.get("/v1/workspaces/demo/profiles/not-a-uuid", headers=s.reader())
        assert malformed.status == 400
        error = (await malformed.json())["error"]
        assert error["details"][0]["fieldViolations"][0]["field"] == "name"
        wrong_verb = await http.delete("/v1/workspaces/demo/profiles/x", headers=s.reader())
        assert wrong_verb.status == 405 and wrong_verb.headers["Allow"] == "GET"
        no_route = await http.get("/v1/nothing/here", headers=s.reader())
        assert no_route.status == 404
        write_key_on_api = await http.get("/v1/workspaces/demo/segments", headers=s.writer())
        assert write_key_on_api.status == http_status_for(7)  # PERMISSION_DENIED -> 403
        created = await http.post(
            "/v1/workspaces/demo/segments",
            params={"segmentId": "vip"},
            json={"displayName": "VIP", "rule": 'tier = "gold"'},
            headers=s.reader(),
        )
        assert created.status == 200, await created.text()
        assert (await created.json())["name"] == "workspaces/demo/segments/vip"
