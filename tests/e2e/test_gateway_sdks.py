"""Contract tests: the real Segment and RudderStack Python SDKs pointed at a running gateway.

Each SDK sends identify, track, page, alias and group through ``/v1/batch`` (Basic auth with the
write key; RudderStack gzips and puts identify traits under ``context.traits``). The calls must
land as events and a profile: the person is found by the user id, holds the alias's previous id,
and the profile has the traits and all five events.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .test_slice import wait_for

pytestmark = pytest.mark.e2e


def _segment_client(base_url: str, write_key: str):
    from segment.analytics import Client

    errors: list = []
    client = Client(write_key, host=base_url, sync_mode=True, max_retries=0, on_error=lambda e, _: errors.append(e))
    return client, errors


def _rudder_client(base_url: str, write_key: str):
    from rudderstack.analytics import Client

    errors: list = []
    client = Client(write_key, host=base_url, sync_mode=True, max_retries=0, on_error=lambda e, _: errors.append(e))
    return client, errors


def _send_all(client, prefix: str) -> None:
    user, anon = f"{prefix}-user", f"{prefix}-anon"
    client.identify(user, {"email": f"{prefix}@shop.io", "tier": "gold"}, anonymous_id=anon)
    client.track(user, "Product Viewed", {"sku": "A-1", "price": 1999})
    client.page(user, "Catalog", "Jackets", {"url": "https://shop.io/jackets"})
    client.alias(f"{prefix}-previous", user)
    client.group(user, f"{prefix}-company", {"name": "Outdoor Co"})
    client.flush()


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
async def test_sdk_calls_land_as_events_and_a_profile(running_stack, sdk):
    s = running_stack
    make = _segment_client if sdk == "segment" else _rudder_client
    client, errors = make(s.base_url, s.write_key)
    await asyncio.to_thread(_send_all, client, sdk)
    assert errors == []

    async with aiohttp.ClientSession(base_url=s.base_url) as http:

        async def lookup():
            response = await http.get(
                "/v1/workspaces/demo/persons:lookup",
                params={"identifierType": "user_id", "identifierValue": f"{sdk}-user"},
                headers=s.reader(),
            )
            return response.status, await response.json()

        _, person = await wait_for(lookup, lambda r: r[0] == 200 and ("anonymous_id", f"{sdk}-previous") in _ids(r[1]))
        assert {("user_id", f"{sdk}-user"), ("anonymous_id", f"{sdk}-anon"), ("email", f"{sdk}@shop.io")} <= _ids(
            person
        )

        async def profile():
            response = await http.get(f"/v1/workspaces/demo/profiles/{person['personId']}", headers=s.reader())
            return response.status, await response.json()

        _, body = await wait_for(profile, lambda r: r[0] == 200 and r[1]["eventCount"] == "5")
        assert body["traits"]["email"] == f"{sdk}@shop.io"
        assert body["traits"]["tier"] == "gold"
        events = await http.get(f"/v1/workspaces/demo/profiles/{person['personId']}/events", headers=s.reader())
        stored = (await events.json())["events"]
        assert sorted(e["type"] for e in stored) == sorted(
            ["EVENT_TYPE_IDENTIFY", "EVENT_TYPE_TRACK", "EVENT_TYPE_PAGE", "EVENT_TYPE_ALIAS", "EVENT_TYPE_GROUP"]
        )
        track = next(e for e in stored if e["type"] == "EVENT_TYPE_TRACK")
        assert track["event"] == "Product Viewed" and track["properties"] == {"sku": "A-1", "price": 1999}
        page = next(e for e in stored if e["type"] == "EVENT_TYPE_PAGE")
        assert page["event"] == "Jackets"


async def test_a_wrong_write_key_is_reported_to_the_sdk_and_nothing_lands(running_stack):
    s = running_stack
    from segment.analytics.request import APIError

    client, _errors = _segment_client(s.base_url, "cdp_wk_" + "x" * 32)
    with pytest.raises(APIError) as error:  # sync mode raises what the gateway answered
        await asyncio.to_thread(_send_all, client, "nobody")
    assert error.value.status == 401
    assert "invalid or revoked API key" in error.value.message
    async with aiohttp.ClientSession(base_url=s.base_url) as http:
        await asyncio.sleep(1)
        response = await http.get(
            "/v1/workspaces/demo/persons:lookup",
            params={"identifierType": "user_id", "identifierValue": "nobody-user"},
            headers=s.reader(),
        )
        assert response.status == 404


def _ids(person: dict) -> set[tuple[str, str]]:
    return {(i["type"], i["value"]) for i in person.get("identifiers", [])}
