"""A running segment service fed with real announcements over real NATS, read over real gRPC.

The service runs in the test's event loop with a ManualClock. Tests publish ProfileChanged /
ObjectTagsChanged / PersonsMerged exactly as profile and identity publish them, and watch the
SegmentMembershipChanged announcements on {prefix}.segment.membership.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import grpc
import nats
import pytest
from google.protobuf import struct_pb2

from cdp.events.v1 import events_pb2
from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_segment import __main__ as segment_main
from cdp_segment.bootstrap import bootstrap
from cdpkit.bus import IDENTITY, PROFILE, SEGMENT, BusNames
from cdpkit.clock import ManualClock
from cdpkit.config import load
from cdpkit.migrate import migrate

WS = "shop"
START = datetime(2026, 6, 18, 12, 0, tzinfo=UTC)


def person() -> str:
    return str(uuid.uuid4())


def struct(values: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def event_fact(name: str, when: datetime, properties: dict | None = None, message_id: str = ""):
    fact = events_pb2.EventFact(message_id=message_id or uuid.uuid4().hex, event=name)
    fact.event_time.FromDatetime(when)
    if properties:
        fact.properties.CopyFrom(struct(properties))
    return fact


def order_fact(
    order_id: str,
    when: datetime,
    total: int,
    *,
    status: str = "completed",
    store: str = "",
    staff: str = "",
    items: tuple[tuple[str, str, str], ...] = (),
):
    """items: (product_id, sku, category)."""
    fact = events_pb2.OrderFact(
        order_id=order_id, status=status, total_minor=total, currency="CNY", store_id=store, staff_id=staff
    )
    fact.order_time.FromDatetime(when)
    for product_id, sku, category in items:
        fact.items.add(product_id=product_id, sku=sku, category=category, quantity=1, price_minor=total)
    return fact


def snapshot(
    *,
    traits: dict | None = None,
    pii: tuple[str, ...] = (),
    computed: dict | None = None,
    lifecycle: str = "",
    tier: str = "",
    tags: tuple[str, ...] = (),
    consent: dict | None = None,
    points: int = 0,
) -> events_pb2.ProfileSnapshot:
    return events_pb2.ProfileSnapshot(
        traits=struct(traits or {}),
        pii_traits=list(pii),
        computed=struct(computed or {}),
        lifecycle_stage=lifecycle,
        tier=tier,
        tags=list(tags),
        consent=consent or {},
        points_balance=points,
        currency="CNY",
    )


@dataclass
class Change:
    segment_id: str
    person_id: str
    entered: bool
    reason: str
    version: int
    trigger: str


class Harness:
    def __init__(self, stub, names: BusNames, nc, clock: ManualClock, database_url: str, port: int) -> None:
        self.stub = stub
        self.names = names
        self.nc = nc
        self.js = nc.jetstream()
        self.clock = clock
        self.database_url = database_url
        self.port = port
        self._changes: asyncio.Queue[Change] = asyncio.Queue()
        self._sub = None

    async def listen(self) -> None:
        async def on_message(msg) -> None:
            m = events_pb2.SegmentMembershipChanged.FromString(msg.data)
            await self._changes.put(
                Change(
                    m.segment_id,
                    m.person_id,
                    m.change == events_pb2.SegmentMembershipChanged.CHANGE_ENTERED,
                    m.reason,
                    m.segment_version,
                    m.trigger_message_id,
                )
            )
            await msg.ack()

        self._sub = await self.js.subscribe(
            self.names.subject(SEGMENT, "membership"), stream=self.names.stream(SEGMENT), cb=on_message
        )

    # publishing, as profile and identity do ----------------------------------------------------

    async def profile(
        self,
        person_id: str,
        version: int,
        snap: events_pb2.ProfileSnapshot | None = None,
        *,
        events=(),
        orders=(),
        changed: tuple[str, ...] = (),
        trigger: str = "",
        moved: events_pb2.FactsMoved | None = None,
        msg_id: str | None = None,
    ) -> str:
        message = events_pb2.ProfileChanged(
            workspace_id=WS,
            person_id=person_id,
            changed_fields=list(changed),
            trigger_message_id=trigger,
            version=version,
            events=list(events),
            orders=list(orders),
        )
        message.change_time.FromDatetime(self.clock.now())
        if snap is not None:
            message.snapshot.CopyFrom(snap)
        if moved is not None:
            message.moved.CopyFrom(moved)
        msg_id = msg_id or f"profile:{WS}:{person_id}:{version}"
        await self.js.publish(
            self.names.partitioned(PROFILE, person_id), message.SerializeToString(), headers={"Nats-Msg-Id": msg_id}
        )
        return msg_id

    async def object_tags(self, kind: str, object_id: str, tags: list[str], version: int) -> None:
        message = events_pb2.ObjectTagsChanged(
            workspace_id=WS, object_kind=kind, object_id=object_id, tags=tags, version=version
        )
        await self.js.publish(
            self.names.subject(PROFILE, "objects"),
            message.SerializeToString(),
            headers={"Nats-Msg-Id": f"objects:{kind}:{object_id}:{version}"},
        )

    async def settings(self, time_zone: str, version: int) -> None:
        """Profile's announcement of the workspace's settings version ``version``."""
        message = events_pb2.WorkspaceSettingsChanged(workspace_id=WS, version=version, time_zone=time_zone)
        await self.js.publish(
            self.names.subject(PROFILE, "settings"),
            message.SerializeToString(),
            headers={"Nats-Msg-Id": f"settings:{WS}:{version}"},
        )

    async def merged(self, survivor: str, *merged: str, trigger: str = "") -> None:
        message = events_pb2.PersonsMerged(
            workspace_id=WS,
            survivor_person_id=survivor,
            merged_person_ids=list(merged),
            trigger_message_id=trigger,
            merge_id=uuid.uuid4().hex,
        )
        await self.js.publish(
            self.names.subject(IDENTITY, "persons_merged"),
            message.SerializeToString(),
            headers={"Nats-Msg-Id": message.merge_id},
        )

    async def split(self, original: str, new_person: str, *moved_person_ids: str) -> None:
        message = events_pb2.PersonSplit(
            workspace_id=WS, person_id=original, new_person_id=new_person, moved_person_ids=list(moved_person_ids)
        )
        await self.js.publish(
            self.names.subject(IDENTITY, "person_split"),
            message.SerializeToString(),
            headers={"Nats-Msg-Id": uuid.uuid4().hex},
        )

    # reading -----------------------------------------------------------------------------------

    async def changes(self, count: int, timeout: float = 10.0) -> list[Change]:
        found = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < count:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"only {len(found)} of {count} membership changes: {found}"
            try:
                found.append(await asyncio.wait_for(self._changes.get(), timeout=left))
            except TimeoutError:
                continue
        return sorted(found, key=lambda c: (c.segment_id, c.person_id, c.entered))

    async def quiet(self, seconds: float = 0.5) -> None:
        """Nothing more is announced within ``seconds``."""
        await asyncio.sleep(seconds)
        assert self._changes.empty(), f"unexpected membership change {self._changes.get_nowait()}"

    async def create(self, segment_id: str, rule: str, name: str = "Segment") -> segment_pb2.Segment:
        return await self.stub.CreateSegment(
            segment_pb2.CreateSegmentRequest(
                parent=f"workspaces/{WS}",
                segment_id=segment_id,
                segment=segment_pb2.Segment(display_name=name, rule=rule),
            )
        )

    async def members(self, segment_id: str) -> set[str]:
        found, token = set(), ""
        while True:
            page = await self.stub.ListSegmentMembers(
                segment_pb2.ListSegmentMembersRequest(
                    parent=f"workspaces/{WS}/segments/{segment_id}", page_size=1000, page_token=token
                )
            )
            found |= {m.person_id for m in page.members}
            token = page.next_page_token
            if not token:
                return found

    async def is_member(self, segment_id: str, person_id: str) -> bool:
        check = await self.stub.CheckMembership(
            segment_pb2.CheckMembershipRequest(parent=f"workspaces/{WS}/segments/{segment_id}", person_id=person_id)
        )
        return check.member

    async def sql(self, query: str, *args):
        conn = await asyncpg.connect(self.database_url, server_settings={"search_path": "segment"})
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()


async def start_segment(service_env: dict[str, str], nats_url: str, clock: ManualClock, **extra_env: str):
    env = {
        **service_env,
        "CDP_SEGMENT_GRPC_PORT": "0",
        "CDP_SEGMENT_METRICS_PORT": "0",
        "CDP_SEGMENT_TIMER_POLL_SECONDS": "0.05",
        "CDP_SEGMENT_RFM_INTERVAL_SECONDS": "0",
        "CDP_CONSUMER_LEASE_SECONDS": "2",
        **extra_env,
    }
    settings = load(segment_main.Settings, env)
    await migrate(settings.database_url.get(), segment_main.SCHEMA, segment_main.MIGRATIONS)
    runtime = await bootstrap(settings, clock=clock)
    await runtime.start()
    return runtime


@pytest.fixture
async def segment(service_env, nats_url):
    async with running_segment(service_env, nats_url) as harness:
        yield harness


@contextlib.asynccontextmanager
async def running_segment(service_env, nats_url, **extra_env: str):
    """The segment service in this event loop on a ManualClock at START, and its Harness."""
    clock = ManualClock(START)
    runtime = await start_segment(service_env, nats_url, clock, **extra_env)
    nc = await nats.connect(nats_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            harness = Harness(
                segment_pb2_grpc.SegmentServiceStub(channel),
                BusNames(service_env["CDP_BUS_PREFIX"]),
                nc,
                clock,
                service_env["CDP_DATABASE_URL"],
                runtime.grpc_port,
            )
            await harness.listen()
            yield harness
    finally:
        await nc.close()
        await runtime.stop()
