"""The identity stream follower's two safety nets, against real PostgreSQL and NATS JetStream: a
delivery lost in transit (a gap in the consumer sequence) is read again from the committed
position instead of being skipped, and losing the database mid-announcement (an outage) does not
count towards dead-lettering it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import nats
import nats.js.errors
import pytest

from cdp.events.v1 import events_pb2
from cdp_profile.consumers import IdentityFollower
from cdpkit.bus import DLQ, IDENTITY, BusNames, ensure_streams
from cdpkit.consumer import ConsumerLoop, ConsumerSpec

from .helpers import WS, incoming


async def eventually(check, timeout=15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never met")
        await asyncio.sleep(0.05)


@pytest.fixture
async def bus(svc, nats_url, service_env):
    names = BusNames(service_env["CDP_BUS_PREFIX"])
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, names)
    try:
        yield js, names
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def following(follower):
    task = asyncio.create_task(follower.run())
    try:
        yield
    finally:
        follower.stop()
        await asyncio.wait_for(task, 10)


async def people(svc, count):
    persons = [str(uuid.uuid4()) for _ in range(count)]
    await svc.record_events([incoming(p, f"v-{p}", 1) for p in persons])
    return persons


async def survivor_of(svc, person):
    return (await svc.get_profile(WS, person)).state.person_id


class _DroppingFirstDelivery:
    """JetStream as the follower sees it, except that the first message delivered goes missing in
    transit once (what a fetch that expires as its messages arrive does with AckPolicy.NONE)."""

    def __init__(self, js):
        self._js = js
        self.dropped: list[int] = []

    def __getattr__(self, name):
        return getattr(self._js, name)

    async def pull_subscribe_bind(self, *args, **kwargs):
        subscription = await self._js.pull_subscribe_bind(*args, **kwargs)
        fetch = subscription.fetch

        async def lossy_fetch(*a, **k):
            messages = await fetch(*a, **k)
            if messages and not self.dropped:
                self.dropped.append(messages[0].metadata.sequence.stream)
                return messages[1:]
            return messages

        subscription.fetch = lossy_fetch
        return subscription


async def test_a_delivery_lost_in_transit_is_read_again_not_skipped(svc, bus):
    js, names = bus
    a, b, c = await people(svc, 3)
    first = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=b, merged_person_ids=[a], merge_id="m1")
    second = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=b, merged_person_ids=[c], merge_id="m2")
    subject = names.subject(IDENTITY, "persons_merged")
    lost = (await js.publish(subject, first.SerializeToString())).seq
    last = (await js.publish(subject, second.SerializeToString())).seq

    lossy = _DroppingFirstDelivery(js)
    follower = IdentityFollower(svc, lossy, names, idle_seconds=0.2, backoff_seconds=(0.1,))
    async with following(follower):
        await eventually(lambda: _position_at_least(svc, last))
    # The second merge came first with a gap before it: the follower went back and applied both.
    assert lossy.dropped == [lost]
    assert await survivor_of(svc, a) == b and await survivor_of(svc, c) == b
    assert (await svc.get_profile(WS, b)).state.event_count == 3


async def test_losing_the_database_mid_announcement_does_not_count_towards_dead_lettering(svc, bus):
    js, names = bus
    a, b = await people(svc, 2)
    merge = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=b, merged_person_ids=[a], merge_id="m1")
    dlq = await js.subscribe(names.dlq_subject("profile-identity"), stream=names.stream(DLQ))
    # One failure of the announcement itself would dead-letter it: the outage must not be one.
    follower = IdentityFollower(svc, js, names, max_attempts=1, idle_seconds=0.2, backoff_seconds=(0.1,))
    async with svc.pool.acquire() as holder:
        # The follower's transaction queues behind this lock; then its connection is cut (what a
        # database restart or failover does to every open session: SQLSTATE 57P01).
        await holder.execute("BEGIN; INSERT INTO stream_positions (name, sequence) VALUES ('identity', 0)")
        last = (await js.publish(names.subject(IDENTITY, "persons_merged"), merge.SerializeToString())).seq
        async with following(follower):
            waiting = await _wait_for_lock_waiter(holder)
            assert await holder.fetchval("SELECT pg_terminate_backend($1)", waiting)
            await asyncio.sleep(0.3)  # the follower sees the error, pauses, comes back
            await holder.execute("COMMIT")  # the database is back
            await eventually(lambda: _position_at_least(svc, last))
    assert await survivor_of(svc, a) == b
    with pytest.raises(nats.errors.TimeoutError):
        await dlq.next_msg(timeout=0.5)


async def _wait_for_lock_waiter(conn) -> int:
    for _ in range(200):
        await conn.execute("SELECT pg_stat_clear_snapshot()")  # a transaction sees one snapshot of the stats
        pid = await conn.fetchval(
            """SELECT pid FROM pg_stat_activity
               WHERE wait_event_type = 'Lock' AND query LIKE '%stream_positions%' AND pid <> pg_backend_pid()"""
        )
        if pid:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError("the follower never waited for the position")


async def _position_at_least(svc, sequence):
    return await svc.identity_position() >= sequence


async def test_an_old_replica_cannot_take_the_shared_durable_back_during_a_rolling_deploy(svc, bus):
    """The version before the follower consumed identity's announcements with a shared durable;
    one of its replicas restarting mid-deploy must not recreate it and apply announcements beside
    the follower (out of order)."""
    js, names = bus
    a, b = await people(svc, 2)
    old_version = ConsumerSpec(
        durable="profile-identity", stream=IDENTITY, filter_subject=names.subject(IDENTITY, "*"), batch_size=20
    )
    follower = IdentityFollower(svc, js, names, idle_seconds=0.2)
    async with following(follower):
        await eventually(lambda: _leading(follower))
        with pytest.raises(nats.js.errors.Error):
            await ConsumerLoop(js, names, old_version, _never).setup()
        merge = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=b, merged_person_ids=[a], merge_id="m1")
        last = (await js.publish(names.subject(IDENTITY, "persons_merged"), merge.SerializeToString())).seq
        await eventually(lambda: _position_at_least(svc, last))
    assert await survivor_of(svc, a) == b
    # A puller of the old version still bound to that name gets nothing.
    info = await js.consumer_info(names.stream(IDENTITY), "profile-identity")
    assert info.num_pending == 0 and info.delivered.consumer_seq == 0
    # The next leader finds it retired and leaves it as it is.
    again = IdentityFollower(svc, js, names, idle_seconds=0.2)
    async with following(again):
        await eventually(lambda: _leading(again))
    assert (await js.consumer_info(names.stream(IDENTITY), "profile-identity")).created == info.created


async def _leading(follower):
    return follower.leading


async def _never(messages):
    raise AssertionError("an old replica consumed identity announcements")
