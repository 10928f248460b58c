"""Bad or repeated API input over gRPC against real PostgreSQL and NATS: a clear INVALID_ARGUMENT
naming the field and nothing changed, retries applied once, omitted update masks (AIP-134)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import nats
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile import __main__ as profile_main
from cdpkit.bus import RESOLVED, BusNames
from cdpkit.pagination import encode_token

from .helpers import WS, resolved

SETTINGS = f"workspaces/{WS}/profileSettings"


@pytest.fixture
async def api(run_service, service_env, nats_url):
    """A running profile service, its stub, and a person with a profile."""
    runtime = await run_service(profile_main, profile_main.Settings)
    person = str(uuid.uuid4())
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        names = BusNames(service_env["CDP_BUS_PREFIX"])
        batch = events_pb2.ResolvedEventBatch(events=[resolved(person, f"v-{person}", 1)])
        await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            name = f"workspaces/{WS}/profiles/{person}"
            for _ in range(200):
                try:
                    await stub.GetProfile(profile_pb2.GetProfileRequest(name=name))
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
            yield stub, name
    finally:
        await nc.close()


async def refused(call) -> str:
    """The field an INVALID_ARGUMENT names."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    [detail] = rpc_status.from_call(error.value).details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    return bad_request.field_violations[0].field


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(moment)
    return message


async def test_consent_is_not_dated_ahead_and_retried_statements_change_nothing(api):
    stub, name = api
    now = datetime.now(UTC)
    beyond = timestamp_pb2.Timestamp(seconds=253402300800)  # year 10000: no datetime holds it
    for statement in (stamp(now + timedelta(days=365 * 70)), beyond):
        request = profile_pb2.UpdateConsentRequest(name=name, channel="email", granted=True, statement_time=statement)
        assert await refused(stub.UpdateConsent(request)) == "statement_time"
    assert not (await stub.GetProfile(profile_pb2.GetProfileRequest(name=name))).consents

    # A grant dated a little ahead (clocks differ) is taken, and a withdrawal after it still wins.
    grant = profile_pb2.UpdateConsentRequest(
        name=name, channel="email", granted=True, statement_time=stamp(now + timedelta(minutes=4)), request_id="g1"
    )
    await stub.UpdateConsent(grant)
    unsubscribe = profile_pb2.UnsubscribeRequest(name=name, channel="email", request_id="u1")
    withdrawn = await stub.Unsubscribe(unsubscribe)
    assert [(c.channel, c.granted) for c in withdrawn.consents] == [("email", False)]
    # Retries of both change nothing (a retried grant dated now would be newer than the withdrawal).
    await stub.UpdateConsent(grant)
    again = await stub.UpdateConsent(
        profile_pb2.UpdateConsentRequest(name=name, channel="email", granted=True, request_id="g1")
    )
    assert [(c.channel, c.granted) for c in again.consents] == [("email", False)]
    assert (await stub.Unsubscribe(unsubscribe)).version == again.version == withdrawn.version


async def test_out_of_range_times_forged_tokens_and_omitted_masks(api):
    stub, name = api
    before = await stub.GetProfile(profile_pb2.GetProfileRequest(name=name))
    for expires in (timestamp_pb2.Timestamp(seconds=-62135596801), stamp(datetime.now(UTC) - timedelta(minutes=1))):
        request = profile_pb2.ModifyProfileTagsRequest(
            name=name, add=[profile_pb2.TagAssignment(tag="vip", expire_time=expires)], request_id=str(expires)
        )
        assert await refused(stub.ModifyProfileTags(request)) == "add[0].expire_time"
    for key, value in (("big", "x" * 5000), ("nul", "a\x00b")):
        request = profile_pb2.UpdateProfileTraitsRequest(name=name, request_id=key)
        request.set.update({"plan": "gold", key: value})
        assert await refused(stub.UpdateProfileTraits(request)) == f"set.{key}"
    after = await stub.GetProfile(profile_pb2.GetProfileRequest(name=name))
    assert after.version == before.version and "plan" not in after.traits

    # Tokens are not signed: one made up with the right scope must still be a position.
    scope = f"points/{name}"
    for position in ({"t": "2026-06-18T04:00:00+00:00", "k": "not-a-uuid"}, {"t": "2026-06-18T04:00:00", "k": ""}):
        token = encode_token(position, scope=scope)
        request = profile_pb2.ListPointsEntriesRequest(parent=name, page_token=token)
        assert await refused(stub.ListPointsEntries(request)) == "page_token"
    token = encode_token({"k": "P\x00"}, scope=f"product/workspaces/{WS}")
    request = profile_pb2.ListProductsRequest(parent=f"workspaces/{WS}", page_token=token)
    assert await refused(stub.ListProducts(request)) == "page_token"

    # No update mask: the fields the request populates (AIP-134), the others kept.
    full = profile_pb2.ProfileSettings(name=SETTINGS, source_priority=["crm", "pos"])
    full.tiers.update({"by": "total_spent_minor", "levels": [{"name": "gold", "min": 100}]})
    full.points.update({"per_currency_unit": 2, "expire_after_days": 30})
    mask = field_mask_pb2.FieldMask(paths=["tiers", "points", "source_priority"])
    await stub.UpdateProfileSettings(profile_pb2.UpdateProfileSettingsRequest(settings=full, update_mask=mask))
    patched = await stub.UpdateProfileSettings(
        profile_pb2.UpdateProfileSettingsRequest(settings=profile_pb2.ProfileSettings(name=SETTINGS, currency="USD"))
    )
    assert patched.currency == "USD" and list(patched.source_priority) == ["crm", "pos"]
    assert patched.tiers["by"] == "total_spent_minor" and patched.points["per_currency_unit"] == 2
    assert [rule["tag"] for rule in patched.tag_rules] == ["repurchase"]
    nothing = profile_pb2.UpdateProfileSettingsRequest(settings=profile_pb2.ProfileSettings(name=SETTINGS))
    unchanged = await stub.UpdateProfileSettings(nothing)  # nothing populated: nothing to change
    assert unchanged.currency == "USD" and list(unchanged.source_priority) == ["crm", "pos"]
    current = await stub.GetProfileSettings(profile_pb2.GetProfileSettingsRequest(name=SETTINGS))
    assert current.version == patched.version

    store = f"workspaces/{WS}/stores/S1"
    await stub.BatchUpsertStores(
        profile_pb2.BatchUpsertStoresRequest(
            parent=f"workspaces/{WS}", stores=[profile_pb2.Store(name=store, city="杭州", display_name="West Lake")]
        )
    )
    tagged = await stub.UpdateStore(profile_pb2.UpdateStoreRequest(store=profile_pb2.Store(name=store, tags=["top"])))
    assert (tagged.display_name, tagged.city, list(tagged.tags)) == ("West Lake", "杭州", ["top"])
