"""ApiKeyService over HTTP and gRPC on a running gateway: admin scope only, keys of one
workspace, rotation with and without a grace period, revocation seen by every replica."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import pytest

from cdp.gateway.v1 import keys_pb2, keys_pb2_grpc
from cdp_gateway import __main__ as gateway_main

from .conftest import basic_auth, extra_env


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def admin(gateway):
    _, key = await gateway.runtime.keys.create_key("shop", "secret", frozenset({"admin"}))
    return key


async def create(gateway, admin, **api_key) -> dict:
    response = await gateway.http.post("/v1/workspaces/shop/apiKeys", json=api_key, headers=bearer(admin))
    assert response.status == 200, await response.text()
    return await response.json()


async def track(gateway, key: str) -> int:
    response = await gateway.http.post("/v1/track", json={"userId": "u", "event": "Key Check"}, headers=basic_auth(key))
    return response.status


async def test_admin_creates_reads_and_lists_keys(gateway, admin):
    created = await create(gateway, admin, kind="KIND_WRITE", displayName="web shop", rateLimitPerSecond=500)
    assert created["name"].startswith("workspaces/shop/apiKeys/key-")
    assert created["key"].startswith("cdp_wk_") and created["displayHint"] == created["key"][:11] + "…"
    assert created["rateLimitPerSecond"] == 500 and created["kind"] == "KIND_WRITE"
    assert await track(gateway, created["key"]) == 200  # the new key works at once

    secret = await create(gateway, admin, kind="KIND_SECRET", scopes=["read"])
    fetched = await gateway.http.get(f"/v1/{secret['name']}", headers=bearer(admin))
    body = await fetched.json()
    assert body["scopes"] == ["read"] and body["key"] == ""  # the secret is shown once only

    named = await gateway.http.post(
        "/v1/workspaces/shop/apiKeys",
        params={"apiKeyId": "pos-store-12"},
        json={"kind": "KIND_WRITE"},
        headers=bearer(admin),
    )
    assert (await named.json())["name"] == "workspaces/shop/apiKeys/pos-store-12"
    again = await gateway.http.post(
        "/v1/workspaces/shop/apiKeys",
        params={"apiKeyId": "pos-store-12"},
        json={"kind": "KIND_WRITE"},
        headers=bearer(admin),
    )
    assert again.status == 409  # the id doubles as the idempotency key

    names, token = [], ""
    while True:
        page = await gateway.http.get(
            "/v1/workspaces/shop/apiKeys", params={"pageSize": "2", "pageToken": token}, headers=bearer(admin)
        )
        assert page.status == 200, await page.text()
        body = await page.json()
        assert len(body["apiKeys"]) <= 2
        names += [k["name"] for k in body["apiKeys"]]
        token = body["nextPageToken"]
        if not token:
            break
    # The fixture's two shop keys, the admin key and the three made here, oldest first.
    assert len(names) == 6 and len(set(names)) == 6
    assert names[-3:] == [created["name"], secret["name"], "workspaces/shop/apiKeys/pos-store-12"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "KIND_WRITE", "scopes": ["read"]}, "api_key.scopes"),
        ({"kind": "KIND_SECRET"}, "api_key.scopes"),
        ({"kind": "KIND_SECRET", "scopes": ["root"]}, "api_key.scopes"),
        ({"scopes": ["read"]}, "api_key.kind"),
        ({"kind": "KIND_WRITE", "rateLimitPerSecond": -1}, "api_key.rate_limit_per_second"),
    ],
)
async def test_invalid_keys_are_refused_naming_the_field(gateway, admin, body, field):
    response = await gateway.http.post("/v1/workspaces/shop/apiKeys", json=body, headers=bearer(admin))
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["details"][0]["fieldViolations"][0]["field"] == field


async def test_only_an_admin_key_of_the_same_workspace_may_manage_keys(gateway, admin):
    for key in (gateway.secret_key, gateway.write_key):  # read+write secret, write key
        response = await gateway.http.get("/v1/workspaces/shop/apiKeys", headers=bearer(key))
        assert response.status == 403, key
        response = await gateway.http.post(
            "/v1/workspaces/shop/apiKeys", json={"kind": "KIND_SECRET", "scopes": ["admin"]}, headers=bearer(key)
        )
        assert response.status == 403
        assert "'admin' scope" in (await response.json())["error"]["message"]
    _, rival_admin = await gateway.runtime.keys.create_key("rival", "secret", frozenset({"admin"}))
    response = await gateway.http.get("/v1/workspaces/shop/apiKeys", headers=bearer(rival_admin))
    assert response.status == 403
    # A shop key cannot be read, rotated or revoked through another workspace's name either.
    shop_key = await create(gateway, admin, kind="KIND_WRITE")
    key_id = shop_key["name"].rsplit("/", 1)[1]
    response = await gateway.http.post(f"/v1/workspaces/rival/apiKeys/{key_id}:revoke", headers=bearer(rival_admin))
    assert response.status == 404
    assert await track(gateway, shop_key["key"]) == 200
    response = await gateway.http.get("/v1/workspaces/shop/apiKeys")
    assert response.status == 401


async def test_rotation_without_grace_stops_the_old_secret_at_once(gateway, admin):
    created = await create(gateway, admin, kind="KIND_WRITE")
    assert await track(gateway, created["key"]) == 200  # cached as valid now
    rotated = await gateway.http.post(f"/v1/{created['name']}:rotate", json={}, headers=bearer(admin))
    body = await rotated.json()
    assert rotated.status == 200 and body["key"] != created["key"] and body["rotateTime"]
    assert "previousKeyExpireTime" not in body
    assert await track(gateway, created["key"]) == 401
    assert await track(gateway, body["key"]) == 200


async def test_rotation_with_grace_keeps_both_secrets_then_revocation_stops_all(gateway, admin):
    created = await create(gateway, admin, kind="KIND_WRITE")
    rotated = await gateway.http.post(
        f"/v1/{created['name']}:rotate", json={"gracePeriod": "3600s"}, headers=bearer(admin)
    )
    body = await rotated.json()
    assert body["previousKeyExpireTime"]
    assert await track(gateway, created["key"]) == 200
    assert await track(gateway, body["key"]) == 200
    too_long = await gateway.http.post(
        f"/v1/{created['name']}:rotate", json={"gracePeriod": "864000s"}, headers=bearer(admin)
    )
    assert too_long.status == 400

    revoked = await gateway.http.post(f"/v1/{created['name']}:revoke", json={}, headers=bearer(admin))
    assert revoked.status == 200 and (await revoked.json())["revokeTime"]
    assert await track(gateway, created["key"]) == 401
    assert await track(gateway, body["key"]) == 401
    again = await gateway.http.post(f"/v1/{created['name']}:revoke", json={}, headers=bearer(admin))
    assert again.status == 200  # idempotent
    listed = await gateway.http.get("/v1/workspaces/shop/apiKeys", headers=bearer(admin))
    assert created["name"] not in [k["name"] for k in (await listed.json())["apiKeys"]]
    listed = await gateway.http.get(
        "/v1/workspaces/shop/apiKeys", params={"showRevoked": "true"}, headers=bearer(admin)
    )
    assert created["name"] in [k["name"] for k in (await listed.json())["apiKeys"]]
    rotate_revoked = await gateway.http.post(f"/v1/{created['name']}:rotate", json={}, headers=bearer(admin))
    assert rotate_revoked.status == 404


async def test_a_revocation_reaches_another_replica_before_its_cache_expires(gateway, admin, run_service):
    other = await run_service(
        gateway_main,
        gateway_main.Settings,
        CDP_GATEWAY_HTTP_PORT="0",
        CDP_GATEWAY_KEY_CACHE_SECONDS="3600",
        **extra_env(),
    )
    created = await create(gateway, admin, kind="KIND_WRITE")
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{other.http_port}") as replica:

        async def track_there() -> int:
            response = await replica.post(
                "/v1/track", json={"userId": "u", "event": "x"}, headers=basic_auth(created["key"])
            )
            return response.status

        assert await track_there() == 200  # now cached for an hour on the other replica
        revoked = await gateway.http.post(f"/v1/{created['name']}:revoke", json={}, headers=bearer(admin))
        assert revoked.status == 200
        for _ in range(50):
            if await track_there() == 401:
                break
            await asyncio.sleep(0.05)
        assert await track_there() == 401


async def test_key_api_over_grpc(gateway, admin):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.runtime.grpc_port}") as channel:
        stub = keys_pb2_grpc.ApiKeyServiceStub(channel)
        created = await stub.CreateApiKey(
            keys_pb2.CreateApiKeyRequest(
                parent="workspaces/shop", api_key=keys_pb2.ApiKey(kind=keys_pb2.ApiKey.KIND_SECRET, scopes=["read"])
            ),
            metadata=(("authorization", f"Bearer {admin}"),),
        )
        assert created.key.startswith("cdp_sk_")
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.ListApiKeys(
                keys_pb2.ListApiKeysRequest(parent="workspaces/shop"),
                metadata=(("authorization", f"Bearer {created.key}"),),
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
