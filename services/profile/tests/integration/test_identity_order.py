"""identity's merges and splits applied in stream order by one replica at a time, against real
PostgreSQL and NATS JetStream, with two replicas of the service."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import nats
import pytest

from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile import __main__ as profile_main
from cdp_profile.consumers import IdentityFollower
from cdpkit.bus import DLQ, IDENTITY, RESOLVED, BusNames

from .helpers import WS, resolved


async def eventually(check, timeout=15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never met")
        await asyncio.sleep(0.05)


@pytest.fixture
async def replicas(run_service, service_env, nats_url):
    first = await run_service(profile_main, profile_main.Settings)
    second = await run_service(profile_main, profile_main.Settings)
    nc = await nats.connect(nats_url)
    try:
        yield first, second, nc.jetstream(), BusNames(service_env["CDP_BUS_PREFIX"]), service_env["CDP_DATABASE_URL"]
    finally:
        await nc.close()


async def test_merges_and_splits_apply_in_stream_order_once_with_failover_and_dead_letters(replicas):
    first, second, js, names, dsn = replicas
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    for person in (a, b, c):
        batch = events_pb2.ResolvedEventBatch(
            events=[resolved(person, f"v-{person}", 1, identifiers=[("user_id", person)])]
        )
        await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString())

    async def publish(kind, message):
        return (await js.publish(names.subject(IDENTITY, kind), message)).seq

    async def position():
        conn = await asyncpg.connect(dsn, server_settings={"search_path": "profile"})
        try:
            return await conn.fetchval("SELECT sequence FROM stream_positions WHERE name = 'identity'") or 0
        finally:
            await conn.close()

    async with grpc.aio.insecure_channel(f"127.0.0.1:{second.grpc_port}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)

        async def profile(person):
            return await stub.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/{WS}/profiles/{person}"))

        async def all_there():
            try:
                return all([(await profile(p)).event_count == 1 for p in (a, b, c)])
            except grpc.aio.AioRpcError:
                return False

        await eventually(all_there)
        merge = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=b, merged_person_ids=[a], merge_id="m1")
        undo = events_pb2.PersonSplit(
            workspace_id=WS,
            person_id=b,
            new_person_id=a,
            moved_identifiers=[events_pb2.Identifier(type="user_id", value=a)],
            undone_merge_id="m1",
        )
        # The merge's first attempt fails (whichever replica leads): it is tried again before the
        # split behind it, which would otherwise find nothing to undo and leave a and b glued.
        failed = []
        for runtime in (first, second):
            service = next(w for w in runtime.workers if isinstance(w, IdentityFollower))._service
            service.apply_merge = _failing_once(service.apply_merge, failed)
        dlq = await js.subscribe(names.dlq_subject("profile-identity"), stream=names.stream(DLQ))
        await publish("persons_merged", merge.SerializeToString())
        await publish("person_split", b"\xff\xff not a payload")
        await publish("persons_merged", merge.SerializeToString())  # delivered twice: applied once
        bad = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=b, merged_person_ids=["x"], merge_id="m2")
        await publish("persons_merged", bad.SerializeToString())
        last = await publish("person_split", undo.SerializeToString())
        await eventually(lambda: _at_least(position, last))

        # The merge (after its failure), then the split: a stands alone again.
        assert failed == ["m1"]
        assert (await profile(a)).person_id == a and (await profile(b)).event_count == 1
        assert (await profile(b)).version == 3  # merged once (2), split (3)
        reasons = []
        for _ in range(2):
            message = await dlq.next_msg(timeout=5)
            reasons.append(message.headers["Cdp-Dlq-Reason"].split(":")[0])
        assert reasons == ["BadAnnouncement", "BadAnnouncement"]

    # One replica follows at a time; when it stops, the other goes on from the position.
    follower = {r: next(w for w in r.workers if isinstance(w, IdentityFollower)) for r in (first, second)}
    assert sorted(f.leading for f in follower.values()) == [False, True]
    leader = next(r for r, f in follower.items() if f.leading)
    other = second if leader is first else first
    await leader.stop()
    again = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=c, merged_person_ids=[a], merge_id="m3")
    last = await publish("persons_merged", again.SerializeToString())
    await eventually(lambda: _at_least(position, last))
    assert follower[other].leading
    async with grpc.aio.insecure_channel(f"127.0.0.1:{other.grpc_port}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        moved = await stub.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/{WS}/profiles/{a}"))
        assert moved.person_id == c and moved.event_count == 2


async def _at_least(position, sequence):
    return await position() >= sequence


def _failing_once(apply_merge, failed):
    async def apply(message, conn=None):
        if not failed:
            failed.append(message.merge_id)
            raise RuntimeError("the database hiccuped")
        return await apply_merge(message, conn)

    return apply


async def test_the_old_shared_durable_hands_over_its_acknowledged_position(run_service, service_env, nats_url):
    """An upgrade from the shared durable: what it acknowledged is not applied again (a replay of
    everything would apply an announcement it had dead-lettered after later ones)."""
    from nats.js.api import AckPolicy, ConsumerConfig

    from cdpkit.bus import ensure_streams

    names = BusNames(service_env["CDP_BUS_PREFIX"])
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, names)
        stream = names.stream(IDENTITY)
        old = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=b, merged_person_ids=[a], merge_id="old")
        acked = (await js.publish(names.subject(IDENTITY, "persons_merged"), old.SerializeToString())).seq
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name="profile-identity",
                ack_policy=AckPolicy.EXPLICIT,
                filter_subject=names.subject(IDENTITY, "*"),
            ),
        )
        legacy = await js.pull_subscribe_bind("profile-identity", stream=stream)
        [message] = await legacy.fetch(1, timeout=5)
        await message.ack_sync()
        for person in (a, b):
            batch = events_pb2.ResolvedEventBatch(events=[resolved(person, f"v-{person}", 1)])
            await js.publish(names.partitioned(RESOLVED, person), batch.SerializeToString())

        runtime = await run_service(profile_main, profile_main.Settings)
        later = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=a, merged_person_ids=[b], merge_id="new")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)

            async def profile(person):
                return await stub.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/{WS}/profiles/{person}"))

            async def b_merged_into_a():
                return (await profile(b)).person_id == a

            await eventually(lambda: _both_exist(stub, a, b))
            await js.publish(names.subject(IDENTITY, "persons_merged"), later.SerializeToString())
            # Only the merge published after the hand-over applies: b into a (had the old one, a
            # into b, been applied again, this one would find a merged away and change nothing).
            await eventually(b_merged_into_a)
            assert (await profile(a)).event_count == 2
        # Replaced by a durable of the same name that delivers nothing and that the old version
        # cannot take back (test_identity_follower: an old replica during a rolling deploy).
        retired = await js.consumer_info(stream, "profile-identity")
        assert AckPolicy(retired.config.ack_policy) == AckPolicy.NONE and retired.delivered.consumer_seq == 0
        assert await _position(service_env) >= acked
    finally:
        await nc.close()


async def _both_exist(stub, *persons):
    for person in persons:
        try:
            await stub.GetProfile(profile_pb2.GetProfileRequest(name=f"workspaces/{WS}/profiles/{person}"))
        except grpc.aio.AioRpcError:
            return False
    return True


async def _position(service_env):
    conn = await asyncpg.connect(service_env["CDP_DATABASE_URL"], server_settings={"search_path": "profile"})
    try:
        return await conn.fetchval("SELECT sequence FROM stream_positions WHERE name = 'identity'")
    finally:
        await conn.close()
