"""Profile against real PostgreSQL, NATS JetStream and gRPC over a socket."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import nats
import pytest
from google.protobuf import struct_pb2

from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile import __main__ as profile_main
from cdpkit.bus import PROFILE, RESOLVED, BusNames

T0 = datetime(2026, 6, 18, 4, 0, tzinfo=UTC)


@pytest.fixture
async def profile(run_service, service_env, nats_url):
    runtime = await run_service(profile_main, profile_main.Settings)
    nc = await nats.connect(nats_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield profile_pb2_grpc.ProfileServiceStub(channel), nc.jetstream(), BusNames(service_env["CDP_BUS_PREFIX"])
    await nc.close()


def resolved(person_id, message_id, minutes, type_=events_pb2.EVENT_TYPE_TRACK, traits=None):
    event = events_pb2.RawEvent(message_id=message_id, workspace_id="shop", type=type_, event="Product Viewed")
    event.timestamp.FromDatetime(T0 + timedelta(minutes=minutes))
    event.received_at.FromDatetime(T0 + timedelta(minutes=minutes, seconds=1))
    if traits:
        event.traits.update(traits)
    event.properties.update({"sku": "A-1"})
    return events_pb2.ResolvedEvent(event=event, person_id=person_id)


async def wait_for_count(stub, name, count, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            got = await stub.GetProfile(profile_pb2.GetProfileRequest(name=name))
            if got.event_count >= count:
                return got
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"profile {name} did not reach {count} events")
        await asyncio.sleep(0.05)


async def test_events_build_the_profile_once_and_announce_changes(profile):
    stub, js, names = profile
    person = str(uuid.uuid4())
    changes = await js.subscribe(names.all_subjects(PROFILE), stream=names.stream(PROFILE))
    batch = events_pb2.ResolvedEventBatch(
        events=[
            resolved(person, "m1", 1),
            resolved(person, "m2", 2, events_pb2.EVENT_TYPE_IDENTIFY, {"email": "a@shop.io", "tier": "gold"}),
            resolved(person, "m1", 1),  # the same message twice in one batch
        ]
    )
    await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString(), headers={"Nats-Msg-Id": "x:0"})
    # The same events again under another chunk id: stored already, nothing changes.
    await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString(), headers={"Nats-Msg-Id": "y:0"})

    got = await wait_for_count(stub, f"workspaces/shop/profiles/{person}", 2)
    changed = events_pb2.ProfileChanged.FromString((await changes.next_msg(timeout=10)).data)
    assert changed.person_id == person and changed.version == 1
    assert {"computed.event_count", "traits.email", "traits.tier"} <= set(changed.changed_fields)
    assert changed.values["computed.event_count"] == 2
    # A PII trait's value never travels on the bus: only that it is set.
    assert changed.values["traits.email"] is True and changed.values["traits.tier"] == "gold"
    assert list(changed.snapshot.pii_traits) == ["email"] and dict(changed.snapshot.traits) == {"tier": "gold"}
    assert [f.message_id for f in changed.events] == ["m1", "m2"]
    assert changed.trigger_message_id == "m2"

    await asyncio.sleep(1.0)  # let the replay be processed
    got = await stub.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/shop/profiles/{person}"))
    assert got.event_count == 2 and got.version == 1
    assert dict(got.traits) == {"email": "a@shop.io", "tier": "gold"}
    assert got.last_seen_time.ToDatetime(UTC) == T0 + timedelta(minutes=2)
    assert [e.message_id for e in got.recent_events] == ["m2", "m1"]
    assert got.recent_events[1].properties == struct_pb2.Struct(fields={"sku": struct_pb2.Value(string_value="A-1")})
    with pytest.raises(nats.errors.TimeoutError):
        await changes.next_msg(timeout=0.5)


async def test_list_events_pages_with_tokens(profile):
    stub, js, names = profile
    person = str(uuid.uuid4())
    batch = events_pb2.ResolvedEventBatch(events=[resolved(person, f"m{i:02d}", i) for i in range(25)])
    await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString())
    parent = f"workspaces/shop/profiles/{person}"
    await wait_for_count(stub, parent, 25)
    seen, token = [], ""
    while True:
        page = await stub.ListProfileEvents(
            profile_pb2.ListProfileEventsRequest(parent=parent, page_size=10, page_token=token)
        )
        seen += [e.message_id for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"m{i:02d}" for i in reversed(range(25))]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ListProfileEvents(
            profile_pb2.ListProfileEventsRequest(
                parent=f"workspaces/shop/profiles/{uuid.uuid4()}", page_token="garbage"
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_profiles_are_isolated_by_workspace(profile):
    stub, js, names = profile
    person = str(uuid.uuid4())
    batch = events_pb2.ResolvedEventBatch(events=[resolved(person, "m1", 1)])
    await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString())
    await wait_for_count(stub, f"workspaces/shop/profiles/{person}", 1)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/other/profiles/{person}"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
