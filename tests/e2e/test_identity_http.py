"""OneID through the gateway's JSON API (routes built from identity.proto's google.api.http)."""

from __future__ import annotations

import aiohttp
import pytest

pytestmark = pytest.mark.e2e


async def test_resolve_merge_unmerge_and_rules_over_http(running_stack):
    s = running_stack
    base = "/v1/workspaces/demo"
    async with aiohttp.ClientSession(base_url=s.base_url, headers=s.reader()) as http:

        async def post(path, body):
            async with http.post(base + path, json=body) as response:
                assert response.status == 200, await response.text()
                return await response.json()

        first = await post(
            "/persons:resolve",
            {"sets": [{"identifiers": [{"type": "phone", "value": "139 1234 5678"}], "messageId": "h1"},
                      {"identifiers": [{"type": "wechat_unionid", "value": "un-1"}], "messageId": "h2"}]},
        )  # fmt: skip
        login = await post(
            "/persons:resolve",
            {"sets": [{"identifiers": [{"type": "user_id", "value": "u-1"}, {"type": "phone", "value": "13912345678"},
                                       {"type": "wechat_unionid", "value": "un-1"}], "messageId": "h3"}]},
        )  # fmt: skip
        (resolution,) = login["resolutions"]
        assert resolution["mergedPersonIds"] and resolution["personId"] in {r["personId"] for r in first["resolutions"]}

        async with http.get(base + "/merges") as response:
            merges = (await response.json())["merges"]
        assert [m["triggerMessageId"] for m in merges] == ["h3"]
        undone = await post(f"/merges/{merges[0]['mergeId']}:unmerge", {"reason": "test"})
        assert undone["merge"]["state"] == "STATE_UNDONE" and len(undone["persons"]) == 2

        async with http.get(base + "/identityRules") as response:
            rules = await response.json()
        assert rules["version"] == 0 and rules["defaultPhoneRegion"] == "CN"
        async with http.patch(
            base + "/identityRules",
            params={"updateMask": "guardrails"},
            json={"guardrails": {"maxIdentifiersPerPerson": 50, "maxMergesPerPerson": 5}, "etag": rules["etag"]},
        ) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["version"] == 1
        async with http.post(
            base + "/persons:resolve", json={"sets": [{"identifiers": [{"type": "phone", "value": "12"}]}]}
        ) as bad:
            assert bad.status == 400
            error = (await bad.json())["error"]
            assert error["details"][0]["fieldViolations"][0]["field"] == "sets[0].identifiers[0]"
