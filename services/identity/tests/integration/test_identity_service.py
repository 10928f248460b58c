"""Identity against real PostgreSQL, NATS JetStream and gRPC over a socket."""

from __future__ import annotations

import asyncio

import grpc
import nats
import pytest

from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_identity import __main__ as identity_main
from cdpkit.bus import IDENTITY, RAW, RESOLVED, BusNames


@pytest.fixture
async def identity(run_service, service_env):
    runtime = await run_service(identity_main, identity_main.Settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel), BusNames(service_env["CDP_BUS_PREFIX"])


def ident(type_, value):
    return events_pb2.Identifier(type=type_, value=value)


async def test_resolve_creates_then_attaches(identity):
    stub, _ = identity
    first = await stub.ResolveIdentities(
        identity_pb2.ResolveIdentitiesRequest(
            parent="workspaces/shop", sets=[identity_pb2.IdentifierSet(identifiers=[ident("anonymous_id", "a1")])]
        )
    )
    assert first.resolutions[0].created
    person_id = first.resolutions[0].person_id
    second = await stub.ResolveIdentities(
        identity_pb2.ResolveIdentitiesRequest(
            parent="workspaces/shop",
            sets=[identity_pb2.IdentifierSet(identifiers=[ident("anonymous_id", "a1"), ident("email", "A@Shop.io")])],
        )
    )
    assert second.resolutions[0] == identity_pb2.Resolution(person_id=person_id, created=False)

    person = await stub.LookupPerson(
        identity_pb2.LookupPersonRequest(
            parent="workspaces/shop", identifier_type="email", identifier_value="a@shop.IO"
        )
    )
    assert person.person_id == person_id
    assert {(i.type, i.value) for i in person.identifiers} == {("anonymous_id", "a1"), ("email", "a@shop.io")}
    got = await stub.GetPerson(identity_pb2.GetPersonRequest(name=person.name))
    assert got.identifiers == person.identifiers


async def test_workspaces_are_isolated(identity):
    stub, _ = identity
    request = identity_pb2.ResolveIdentitiesRequest(
        parent="workspaces/one", sets=[identity_pb2.IdentifierSet(identifiers=[ident("user_id", "u1")])]
    )
    one = await stub.ResolveIdentities(request)
    request.parent = "workspaces/two"
    two = await stub.ResolveIdentities(request)
    assert one.resolutions[0].person_id != two.resolutions[0].person_id
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetPerson(
            identity_pb2.GetPersonRequest(name=f"workspaces/two/persons/{one.resolutions[0].person_id}")
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (identity_pb2.ResolveIdentitiesRequest(parent="shops/x"), "parent"),
        (identity_pb2.ResolveIdentitiesRequest(parent="workspaces/shop"), "sets"),
        (
            identity_pb2.ResolveIdentitiesRequest(
                parent="workspaces/shop", sets=[identity_pb2.IdentifierSet(identifiers=[ident("email", "nope")])]
            ),
            "sets[0].identifiers[0]",
        ),
    ],
)
async def test_bad_input_names_the_field(identity, request_, field):
    stub, _ = identity
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ResolveIdentities(request_)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(field + ":")


async def test_get_person_rejects_malformed_name(identity):
    stub, _ = identity
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.GetPerson(identity_pb2.GetPersonRequest(name="workspaces/shop/persons/not-a-uuid"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_raw_events_are_resolved_and_published_once(identity, nats_url):
    _, names = identity
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    resolved_sub = await js.subscribe(names.all_subjects(RESOLVED), stream=names.stream(RESOLVED))
    created_sub = await js.subscribe(names.all_subjects(IDENTITY), stream=names.stream(IDENTITY))
    batch = events_pb2.RawEventBatch(
        events=[
            events_pb2.RawEvent(
                message_id="m1",
                workspace_id="shop",
                type=events_pb2.EVENT_TYPE_TRACK,
                event="Viewed",
                anonymous_id="anon-7",
            ),
            events_pb2.RawEvent(
                message_id="m2",
                workspace_id="shop",
                type=events_pb2.EVENT_TYPE_IDENTIFY,
                anonymous_id="anon-7",
                user_id="u-7",
            ),
            events_pb2.RawEvent(
                message_id="m3", workspace_id="shop", type=events_pb2.EVENT_TYPE_TRACK, event="x", anonymous_id="null"
            ),
        ]
    )
    payload = batch.SerializeToString()
    # The same chunk published twice (an SDK retry) is stored once by JetStream.
    for _ in range(2):
        await js.publish(names.subject(RAW, 0), payload, headers={"Nats-Msg-Id": "chunk-1"})

    received: list[events_pb2.ResolvedEvent] = []
    while len(received) < 2:
        msg = await resolved_sub.next_msg(timeout=10)
        received.extend(events_pb2.ResolvedEventBatch.FromString(msg.data).events)
        await msg.ack()
    assert [r.event.message_id for r in received] == ["m1", "m2"]  # m3 has no usable identifier
    assert received[0].person_id == received[1].person_id
    created = events_pb2.PersonCreated.FromString((await created_sub.next_msg(timeout=10)).data)
    assert created.person_id == received[0].person_id
    assert created.trigger_message_id == "m1"
    with pytest.raises(nats.errors.TimeoutError):
        await resolved_sub.next_msg(timeout=1)
    await nc.close()


async def test_undecodable_message_is_dead_lettered_with_reason(identity, nats_url):
    _, names = identity
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    dlq = await js.subscribe(names.dlq_subject("identity-raw"))
    await js.publish(names.subject(RAW, 1), b"\xff\xff not protobuf", headers={"Nats-Msg-Id": "bad-1"})
    msg = await dlq.next_msg(timeout=10)
    assert msg.data == b"\xff\xff not protobuf"
    assert msg.headers["Cdp-Dlq-Reason"].startswith("PermanentError")
    assert msg.headers["Cdp-Original-Msg-Id"] == "bad-1"
    await nc.close()
    await asyncio.sleep(0)


async def test_no_plaintext_pii_anywhere_in_the_schema_and_the_relay_publishes_the_announcements(service_env, nats_url):
    """Announcements wait in the outbox sealed (NATS down, say); every table holds PII only sealed."""
    from cdp_identity.service import IdentityService
    from cdpkit import db
    from cdpkit.bus import ensure_streams
    from cdpkit.config import load
    from cdpkit.migrate import migrate
    from cdpkit.outbox import OutboxRelay

    settings = load(identity_main.Settings, service_env)
    await migrate(settings.database_url.get(), identity_main.SCHEMA, identity_main.MIGRATIONS)
    pool = await db.create_pool(settings.database_url.get(), identity_main.SCHEMA, application_name="test")
    names = BusNames(service_env["CDP_BUS_PREFIX"])
    vault = settings.pii_vault()
    service = IdentityService(pool, names, vault)
    phone, email = "13912345678", "li.lei@shop.io"
    try:
        (a,) = await service.resolve_sets("shop", [([("phone", phone), ("user_id", "u1")], "m1")])
        (b,) = await service.resolve_sets("shop", [([("email", email), ("jd_pin", "j1")], "m2")])
        await service.resolve_sets("shop", [([("phone", phone), ("email", email)], "m3")])  # merge
        await service.resolve_sets("shop", [([("user_id", "u2"), ("phone", phone)], "m4")])  # conflict
        merge = (await service.list_merges("shop", person_id=None, after=None, limit=10))[0][0]
        await service.unmerge("shop", merge.merge_id, reason="test")
        await service.remove_identifier("shop", b.person_id, "email", email, block=True, reason="test")
        async with pool.acquire() as conn:
            kinds = [
                r["subject"].rsplit(".", 1)[1] for r in await conn.fetch("SELECT subject FROM outbox ORDER BY seq")
            ]
            assert set(kinds) >= {"person_created", "persons_merged", "conflict", "person_split"}
            assert await conn.fetchval("SELECT bool_and(sealed) FROM outbox")
            for table in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'identity'"
            ):
                text = "\n".join(r[0] for r in await conn.fetch(f"SELECT t::text FROM identity.{table[0]} t"))
                for plain in (phone, email):
                    assert plain not in text and plain.encode().hex() not in text, (table[0], plain)
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_streams(js, names, (IDENTITY,))
        relay = OutboxRelay(pool, js, schema=identity_main.SCHEMA, sealer=vault)
        while await relay.relay_once():
            pass
        created = await js.get_msg(names.stream(IDENTITY), 1)
        event = events_pb2.PersonCreated.FromString(created.data)
        assert event.person_id == a.person_id
        assert {(i.type, i.value) for i in event.identifiers} == {("phone", "+8613912345678"), ("user_id", "u1")}
        await nc.close()
    finally:
        await pool.close()


async def test_rotated_keys_are_resealed_so_the_old_key_can_be_dropped(service_env):
    from cdp_identity import repository
    from cdp_identity.matching import Attributes
    from cdp_identity.rules import Identifier
    from cdp_identity.service import IdentityService, ResolveItem, reseal
    from cdpkit import db
    from cdpkit.config import load
    from cdpkit.migrate import migrate
    from cdpkit.pii import PiiVault, new_key

    settings = load(identity_main.Settings, service_env)
    await migrate(settings.database_url.get(), identity_main.SCHEMA, identity_main.MIGRATIONS)
    pool = await db.create_pool(settings.database_url.get(), identity_main.SCHEMA, application_name="test")
    names = BusNames(service_env["CDP_BUS_PREFIX"])
    old, new, hash_key = new_key(), new_key(), new_key()
    try:
        before = IdentityService(pool, names, PiiVault.from_config(f"k1:{old}", hash_key))
        (a,) = await before.resolve(
            [ResolveItem("shop", (Identifier("phone", "+8613912345678"),), "r1", Attributes(family_name="li"))]
        )
        await before.resolve([ResolveItem("shop", (Identifier("email", "li@shop.io"),), "r2")])
        await before.resolve_sets("shop", [([("phone", "13912345678"), ("email", "li@shop.io")], "r3")])  # merge
        await before.resolve_sets("shop", [([("user_id", "x"), ("phone", "13912345678")], "r4")])
        await before.resolve_sets("shop", [([("user_id", "y"), ("phone", "13912345678")], "r5")])  # conflict
        await before.remove_identifier("shop", a.person_id, "email", "li@shop.io", block=True, reason="test")

        rotated = PiiVault.from_config(f"k2:{new},k1:{old}", hash_key)
        assert await reseal(pool, rotated, batch=2) > 0
        assert await reseal(pool, rotated) == 0
        async with pool.acquire() as conn:
            for sealed in repository.SEALED_COLUMNS:
                values = await conn.fetch(
                    f"SELECT {sealed.column} AS v FROM {sealed.table} WHERE {sealed.column} IS NOT NULL"
                )
                assert values, sealed
                assert {rotated.key_id_of(r["v"]) for r in values} == {"k2"}, sealed

        after = IdentityService(pool, names, PiiVault.from_config(f"k2:{new}", hash_key))  # k1 dropped
        person = await after.get_person("shop", a.person_id)
        assert ("phone", "+8613912345678") in {(i.type, i.value) for i, _ in person.identifiers}
        assert await after.list_conflicts("shop", person_id=None, after=None, limit=10)
        report = await after.dry_run("shop", {}, days=1, max_events=100)
        assert report.events_replayed == 5
    finally:
        await pool.close()
