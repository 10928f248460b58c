"""The identity service under test: real PostgreSQL, NATS JetStream and gRPC over a socket."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import grpc
import nats
import pytest

from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_identity import __main__ as identity_main
from cdpkit.bus import IDENTITY, RAW, RESOLVED, BusNames

WS = "shop"


@pytest.fixture
async def start_identity(run_service, service_env, nats_url):
    """``h = await start_identity(**env)``: the service with extra settings, and a harness to drive it."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**env) -> Harness:
            runtime = await run_service(identity_main, identity_main.Settings, **env)
            nc = await nats.connect(nats_url)
            stack.push_async_callback(nc.close)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
            await stack.enter_async_context(channel)
            return Harness(
                identity_pb2_grpc.IdentityServiceStub(channel),
                BusNames(service_env["CDP_BUS_PREFIX"]),
                nc,
                service_env["CDP_DATABASE_URL"],
                runtime,
            )

        yield start


@pytest.fixture
async def identity(start_identity):
    return await start_identity()


class Harness:
    def __init__(self, stub, names: BusNames, nc, database_url: str, runtime=None) -> None:
        self.stub = stub
        self.runtime = runtime
        self.names = names
        self.nc = nc
        self.js = nc.jetstream() if nc else None
        self.database_url = database_url
        self._resolved = None
        self._identity = None

    async def start_listening(self) -> None:
        self._resolved = await self.js.subscribe(self.names.all_subjects(RESOLVED), stream=self.names.stream(RESOLVED))
        self._identity = await self.js.subscribe(self.names.all_subjects(IDENTITY), stream=self.names.stream(IDENTITY))

    async def publish(self, *events: events_pb2.RawEvent, msg_id: str | None = None) -> None:
        batch = events_pb2.RawEventBatch(events=list(events))
        await self.js.publish(
            self.names.subject(RAW, 0), batch.SerializeToString(), headers={"Nats-Msg-Id": msg_id or uuid.uuid4().hex}
        )

    async def resolved(self, count: int, timeout: float = 10) -> list[events_pb2.ResolvedEvent]:
        got: list[events_pb2.ResolvedEvent] = []
        while len(got) < count:
            msg = await self._resolved.next_msg(timeout=timeout)
            got.extend(events_pb2.ResolvedEventBatch.FromString(msg.data).events)
            await msg.ack()
        return got

    async def announcements(self, kind: str, count: int, timeout: float = 10) -> list:
        decoders = {
            "person_created": events_pb2.PersonCreated,
            "identifiers_linked": events_pb2.IdentifiersLinked,
            "persons_merged": events_pb2.PersonsMerged,
            "person_split": events_pb2.PersonSplit,
            "conflict": events_pb2.IdentityConflict,
            "person_quarantined": events_pb2.PersonQuarantined,
            "identifiers_removed": events_pb2.IdentifiersRemoved,
        }
        found = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < count:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"only {len(found)} {kind} announcements"
            msg = await self._identity.next_msg(timeout=left)
            await msg.ack()
            if msg.subject.endswith("." + kind):
                found.append(decoders[kind].FromString(msg.data))
        return found

    async def sql(self, query: str, *args):
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def resolve(self, *sets: list[tuple[str, str]], message_ids: list[str] | None = None):
        request = identity_pb2.ResolveIdentitiesRequest(parent=f"workspaces/{WS}")
        for n, pairs in enumerate(sets):
            request.sets.add(
                identifiers=[events_pb2.Identifier(type=t, value=v) for t, v in pairs],
                message_id=message_ids[n] if message_ids else "",
            )
        return (await self.stub.ResolveIdentities(request)).resolutions

    @staticmethod
    def raw(message_id: str, *, user_id: str = "", anonymous_id: str = "", traits: dict | None = None, context=None):
        """An identify event of workspace ``shop``."""
        event = events_pb2.RawEvent(
            message_id=message_id,
            workspace_id=WS,
            type=events_pb2.EVENT_TYPE_IDENTIFY,
            user_id=user_id,
            anonymous_id=anonymous_id,
        )
        if traits:
            event.traits.update(traits)
        if context:
            event.context.update(context)
        return event

    @staticmethod
    def pairs(person: identity_pb2.Person) -> set[tuple[str, str]]:
        return {(i.type, i.value) for i in person.identifiers}

    async def person(self, person_id: str) -> identity_pb2.Person:
        return await self.stub.GetPerson(identity_pb2.GetPersonRequest(name=f"workspaces/{WS}/persons/{person_id}"))
