"""cdpkit.outbox against real PostgreSQL and JetStream."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from google.protobuf import wrappers_pb2
from prometheus_client import REGISTRY

from cdpkit import db
from cdpkit.bus import RAW, ensure_streams
from cdpkit.migrate import migrate
from cdpkit.outbox import OutboxRelay, enqueue, enqueue_many
from cdpkit.pii import PiiDecryptError, PiiVault, new_key

SCHEMA = "svc"


def message(text: str) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=text)


def text_of(data: bytes) -> str:
    return wrappers_pb2.StringValue.FromString(data).value


@pytest.fixture
async def kit_schema(database_url, tmp_path: Path) -> str:
    empty = tmp_path / "no-migrations"
    empty.mkdir()
    await migrate(database_url, SCHEMA, empty)
    return database_url


@pytest.fixture
async def pool(kit_schema):
    pool = await db.create_pool(kit_schema, SCHEMA, application_name="test")
    yield pool
    await pool.close()


@pytest.fixture
async def raw_stream(js, names):
    await ensure_streams(js, names, (RAW,))
    return names.stream(RAW)


@pytest.fixture
async def wire(nc, names):
    """Every message published on the raw subjects, as seen on the wire (before stream de-duplication)."""
    seen: list = []

    async def on_message(msg):
        seen.append(msg)

    sub = await nc.subscribe(names.all_subjects(RAW), cb=on_message)
    await nc.flush()
    yield seen
    await sub.unsubscribe()


async def stored(js, stream: str) -> list:
    count = (await js.stream_info(stream)).state.messages
    return [await js.get_msg(stream, seq) for seq in range(1, count + 1)]


async def outbox_rows(pool) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM outbox")


async def enqueue_texts(pool, names, texts, **kwargs) -> list[str]:
    async with pool.acquire() as conn, conn.transaction():
        return [
            await enqueue(conn, workspace_id="shop", subject=names.subject(RAW, i % 4), message=message(t), **kwargs)
            for i, t in enumerate(texts)
        ]


@pytest.fixture
async def running(pool, js):
    relays: list[tuple[OutboxRelay, asyncio.Task]] = []

    def start(relay: OutboxRelay) -> OutboxRelay:
        relays.append((relay, asyncio.create_task(relay.run())))
        return relay

    yield start
    for relay, _task in relays:
        relay.stop()
    await asyncio.wait_for(asyncio.gather(*(task for _relay, task in relays)), 5)


async def test_enqueue_in_a_rolled_back_transaction_publishes_nothing(pool, js, raw_stream, names):
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await enqueue(conn, workspace_id="shop", subject=names.subject(RAW, 0), message=message("ghost"))
                assert await conn.fetchval("SELECT count(*) FROM outbox") == 1  # visible inside the transaction
                raise RuntimeError("state change failed")
    assert await outbox_rows(pool) == 0
    assert await OutboxRelay(pool, js, schema=SCHEMA).relay_once() == 0
    assert (await js.stream_info(raw_stream)).state.messages == 0


async def test_committed_rows_are_published_in_order_with_their_msg_id_and_deleted(pool, js, raw_stream, names):
    before = REGISTRY.get_sample_value("cdp_outbox_published_total", {"schema": SCHEMA}) or 0
    first = await enqueue_texts(pool, names, [f"m{i}" for i in range(40)])
    second = await enqueue_texts(pool, names, [f"m{i}" for i in range(40, 50)], headers={"Cdp-Workspace": "shop"})
    relay = OutboxRelay(pool, js, schema=SCHEMA)
    assert await relay.relay_once() == 50
    messages = await stored(js, raw_stream)
    assert [text_of(m.data) for m in messages] == [f"m{i}" for i in range(50)]
    assert [m.headers["Nats-Msg-Id"] for m in messages] == first + second
    assert [m.subject for m in messages[:4]] == [names.subject(RAW, p) for p in range(4)]
    assert all(m.headers.get("Cdp-Workspace") == "shop" for m in messages[40:])
    assert "Cdp-Workspace" not in (messages[0].headers or {})
    assert await outbox_rows(pool) == 0
    assert await relay.relay_once() == 0
    assert REGISTRY.get_sample_value("cdp_outbox_published_total", {"schema": SCHEMA}) - before == 50


async def test_relay_works_through_the_backlog_one_batch_at_a_time(pool, js, raw_stream, names):
    await enqueue_texts(pool, names, [f"m{i}" for i in range(8)])
    relay = OutboxRelay(pool, js, schema=SCHEMA, batch_size=3)
    assert [await relay.relay_once() for _ in range(4)] == [3, 3, 2, 0]
    assert [text_of(m.data) for m in await stored(js, raw_stream)] == [f"m{i}" for i in range(8)]


async def test_enqueue_uses_the_given_msg_id_or_a_fresh_uuid7(pool, names):
    given = await enqueue_texts(pool, names, ["a"], msg_id="order-42-paid")
    fresh = await enqueue_texts(pool, names, ["b", "c"])
    assert given == ["order-42-paid"]
    assert len(set(fresh)) == 2 and all(len(f) == 36 and f[14] == "7" for f in fresh)


async def test_republish_of_an_already_published_msg_id_is_deduplicated(pool, js, raw_stream, names, wire):
    # The relay crashed after publishing but before deleting: the row is published again.
    await js.publish(names.subject(RAW, 0), b"first copy", headers={"Nats-Msg-Id": "evt-1"})
    await enqueue_texts(pool, names, ["second copy"], msg_id="evt-1")
    await enqueue_texts(pool, names, ["other"], msg_id="evt-2")
    assert await OutboxRelay(pool, js, schema=SCHEMA).relay_once() == 2
    messages = await stored(js, raw_stream)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ["evt-1", "evt-2"]
    assert messages[0].data == b"first copy"
    assert await outbox_rows(pool) == 0
    await asyncio.sleep(0.05)
    assert [m.headers["Nats-Msg-Id"] for m in wire] == ["evt-1", "evt-1", "evt-2"]  # it really was sent twice


class CountingRelay(OutboxRelay):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.published = 0

    async def relay_once(self) -> int:
        count = await super().relay_once()
        self.published += count
        return count


async def test_two_relays_on_one_table_publish_every_row_exactly_once(
    kit_schema, pool, js, raw_stream, names, wire, eventually
):
    ids: list[str] = []
    for chunk in range(6):
        ids += await enqueue_texts(pool, names, [f"m{chunk}-{i}" for i in range(50)])
    other_pool = await db.create_pool(kit_schema, SCHEMA, application_name="replica-2")
    a = CountingRelay(pool, js, schema=SCHEMA, batch_size=10, poll_interval=0.05)
    b = CountingRelay(other_pool, js, schema=SCHEMA, batch_size=10, poll_interval=0.05)
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    try:

        async def drained() -> bool:
            return await outbox_rows(pool) == 0 and len(wire) >= len(ids)

        await eventually(drained, 10)
        await asyncio.sleep(0.2)  # let any double publish arrive
    finally:
        a.stop()
        b.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await other_pool.close()
    sent = Counter(m.headers["Nats-Msg-Id"] for m in wire)
    assert set(sent) == set(ids)
    assert [i for i, n in sent.items() if n > 1] == []
    assert a.published > 0 and b.published > 0  # both really took part
    assert a.published + b.published == len(ids)
    assert (await js.stream_info(raw_stream)).state.messages == len(ids)


async def test_notify_wakes_the_relay_long_before_its_poll_interval(
    pool, js, raw_stream, names, wire, running, eventually
):
    running(OutboxRelay(pool, js, schema=SCHEMA, poll_interval=30.0))
    await asyncio.sleep(0.3)  # the relay found nothing and is asleep
    started = time.monotonic()
    await enqueue_texts(pool, names, ["wake up"])
    await eventually(lambda: wire, 5, 0.005)
    assert time.monotonic() - started < 1.0
    assert text_of(wire[0].data) == "wake up"

    # enqueue_many notifies too; rows without headers get only the msg id.
    started = time.monotonic()
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_many(
            conn, [("shop", names.subject(RAW, 1), f"bulk-{i}", message(f"b{i}").SerializeToString()) for i in range(3)]
        )
    await eventually(lambda: len(wire) >= 4, 5, 0.005)
    assert time.monotonic() - started < 1.0
    assert [m.headers for m in wire[1:]] == [{"Nats-Msg-Id": f"bulk-{i}"} for i in range(3)]


async def test_enqueue_many_with_no_rows_does_nothing(pool):
    async with pool.acquire() as conn:
        await enqueue_many(conn, [])
    assert await outbox_rows(pool) == 0


async def test_failed_publish_keeps_the_row_records_the_error_and_retries(pool, js, names, running, eventually):
    # No stream yet: JetStream does not answer and the publish fails.
    await enqueue_texts(pool, names, ["patient"], msg_id="wait-1")
    running(OutboxRelay(pool, js, schema=SCHEMA, poll_interval=0.05))

    async def failure_recorded():
        async with pool.acquire() as conn:
            return await conn.fetchrow(
                "SELECT attempts, last_error FROM outbox WHERE msg_id = 'wait-1' AND attempts > 0"
            )

    await eventually(failure_recorded)
    row = await failure_recorded()
    assert row["attempts"] >= 1 and row["last_error"]

    await ensure_streams(js, names, (RAW,))

    async def drained() -> bool:
        return await outbox_rows(pool) == 0

    await eventually(drained)
    [published] = await stored(js, names.stream(RAW))
    assert published.headers["Nats-Msg-Id"] == "wait-1" and text_of(published.data) == "patient"


async def test_pool_connections_live_in_the_schema_and_decode_json(pool):
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_schema()") == SCHEMA
        assert await conn.fetchval("SELECT current_setting('application_name')") == "test"
        assert await conn.fetchval("SELECT current_setting('TimeZone')") == "UTC"
        assert await conn.fetchval("""SELECT '{"a": [1, 2]}'::jsonb""") == {"a": [1, 2]}
    assert await db.ping(pool) is True


async def test_create_pool_rejects_a_bad_schema_name(kit_schema):
    with pytest.raises(ValueError, match="invalid schema name"):
        await db.create_pool(kit_schema, "Svc-1", application_name="x")


async def test_sealed_payloads_hold_no_plaintext_and_only_a_relay_with_the_keys_publishes_them(
    pool, js, raw_stream, names
):
    vault = PiiVault.from_config(f"k1:{new_key()}", new_key())
    ids = await enqueue_texts(pool, names, ["+8613912345678"], sealer=vault)
    async with pool.acquire() as conn, conn.transaction():
        await enqueue_many(
            conn, [("shop", names.subject(RAW, 1), "bulk-1", message("li@shop.io").SerializeToString())], sealer=vault
        )
        await enqueue(conn, workspace_id="shop", subject=names.subject(RAW, 2), message=message("plain"), msg_id="p-1")
        rows = await conn.fetch("SELECT msg_id, payload, sealed FROM outbox ORDER BY seq")
    assert [(r["msg_id"], r["sealed"]) for r in rows] == [(ids[0], True), ("bulk-1", True), ("p-1", False)]
    assert b"13912345678" not in rows[0]["payload"] and b"li@shop.io" not in rows[1]["payload"]

    # A relay without the keys publishes nothing (not even the plain row behind the sealed ones).
    with pytest.raises(RuntimeError, match="sealed"):
        await OutboxRelay(pool, js, schema=SCHEMA).relay_once()
    assert (await js.stream_info(raw_stream)).state.messages == 0 and await outbox_rows(pool) == 3

    assert await OutboxRelay(pool, js, schema=SCHEMA, sealer=vault).relay_once() == 3
    messages = await stored(js, raw_stream)
    assert [text_of(m.data) for m in messages] == ["+8613912345678", "li@shop.io", "plain"]
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [ids[0], "bulk-1", "p-1"]


async def test_a_sealed_payload_moved_to_another_row_does_not_open(pool, js, raw_stream, names):
    vault = PiiVault.from_config(f"k1:{new_key()}", new_key())
    await enqueue_texts(pool, names, ["secret"], sealer=vault, msg_id="a")
    await enqueue_texts(pool, names, ["other"], sealer=vault, msg_id="b")
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE outbox SET payload = (SELECT payload FROM outbox WHERE msg_id = 'a') WHERE msg_id = 'b'"
        )
        await conn.execute("DELETE FROM outbox WHERE msg_id = 'a'")
    with pytest.raises(PiiDecryptError):
        await OutboxRelay(pool, js, schema=SCHEMA, sealer=vault).relay_once()
    assert (await js.stream_info(raw_stream)).state.messages == 0
