"""Customer 360 on the running suite: parts in parallel, honest markers, partial results when a
real service is stopped."""

from __future__ import annotations

import signal

import aiohttp
import grpc
import pytest

from cdp.gateway.v1 import customer360_pb2, customer360_pb2_grpc

from .test_slice import wait_for

pytestmark = pytest.mark.e2e

UNKNOWN = "00000000-0000-7000-8000-000000000000"


def _parts(body: dict) -> dict[str, str]:
    return {p["part"]: p["state"] for p in body["parts"]}


async def test_customer360_composes_and_degrades_part_by_part(running_stack):
    s = running_stack
    async with aiohttp.ClientSession(base_url=s.base_url) as http:
        response = await http.post(
            "/v1/identify",
            json={"userId": "c360", "traits": {"email": "c360@shop.io", "tier": "gold"}},
            headers=s.writer(),
        )
        assert response.status == 200

        async def lookup():
            found = await http.get(
                "/v1/workspaces/demo/persons:lookup",
                params={"identifierType": "user_id", "identifierValue": "c360"},
                headers=s.reader(),
            )
            return found.status, await found.json()

        _, person = await wait_for(lookup, lambda r: r[0] == 200)
        url = f"/v1/workspaces/demo/persons/{person['personId']}/customer360"

        async def view():
            answer = await http.get(url, headers=s.reader())
            return answer.status, await answer.json()

        # Identity may answer before profile has stored the event: the profile part is NOT_FOUND until then.
        _, body = await wait_for(view, lambda r: r[0] == 200 and r[1].get("profile", {}).get("eventCount") == "1")
        assert body["personId"] == person["personId"]
        assert body["profile"]["traits"] == {"email": "c360@shop.io", "tier": "gold"}
        # The 360 fields of issue 4 come through as they are.
        assert body["profile"]["lifecycleStage"] == "prospect" and body["profile"]["currency"] == "CNY"
        assert body["profile"]["computed"]["event_count"] == 1
        assert ("user_id", "c360") in {(i["type"], i["value"]) for i in body["person"]["identifiers"]}
        assert _parts(body) == {
            "PART_PROFILE": "STATE_OK",
            "PART_IDENTITIES": "STATE_OK",
            "PART_SEGMENT_MEMBERSHIPS": "STATE_OK",
            "PART_CAMPAIGN_MESSAGES": "STATE_OK",
        }
        assert body["complete"] is True
        assert body["segmentMemberships"] == [] and body["recentMessages"] == []

        missing = await http.get(f"/v1/workspaces/demo/persons/{UNKNOWN}/customer360", headers=s.reader())
        assert missing.status == 404
        assert (await missing.json())["error"]["status"] == "NOT_FOUND"
        other = await http.get(f"/v1/workspaces/rival/persons/{UNKNOWN}/customer360", headers=s.reader())
        assert other.status == 403
        write_key = await http.get(url, headers=s.writer())
        assert write_key.status == 403

        # Stop the real profile service: the identities still come back, the profile is marked.
        s.stack.kill("profile", signal.SIGKILL)
        degraded = await http.get(url, headers=s.reader())
        assert degraded.status == 200, await degraded.text()
        body = await degraded.json()
        assert _parts(body)["PART_PROFILE"] == "STATE_UNAVAILABLE"
        assert _parts(body)["PART_IDENTITIES"] == "STATE_OK"
        profile_part = next(p for p in body["parts"] if p["part"] == "PART_PROFILE")
        assert profile_part["service"] == "cdp.profile.v1.ProfileService"
        assert profile_part["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and profile_part["message"]
        assert "profile" not in body and body["complete"] is False  # absent, not an empty profile
        assert ("user_id", "c360") in {(i["type"], i["value"]) for i in body["person"]["identifiers"]}

        # The same call over the gateway's gRPC door.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{s.stack.ports.gateway_grpc}") as channel:
            stub = customer360_pb2_grpc.CustomerServiceStub(channel)
            view360 = await stub.GetCustomer360(
                customer360_pb2.GetCustomer360Request(name=url.removeprefix("/v1/")),
                metadata=(("authorization", f"Bearer {s.secret_key}"),),
                timeout=5,
            )
        states = {p.part: p.state for p in view360.parts}
        assert states[customer360_pb2.PartStatus.PART_PROFILE] == customer360_pb2.PartStatus.STATE_UNAVAILABLE
        assert states[customer360_pb2.PartStatus.PART_IDENTITIES] == customer360_pb2.PartStatus.STATE_OK
        assert view360.person.person_id == person["personId"]

        # Identity down as well: still an answer, with every part marked.
        s.stack.kill("identity", signal.SIGKILL)
        both = await http.get(url, headers=s.reader())
        assert both.status == 200
        assert set(_parts(await both.json()).values()) == {"STATE_UNAVAILABLE", "STATE_OK"}
