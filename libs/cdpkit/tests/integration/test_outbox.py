"""cdpkit.outbox against real PostgreSQL and JetStream."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
from google.protobuf import wrappers_pb2
from nats.js.errors import BadRequestError
from prometheus_client import REGISTRY

from cdpkit import bus, db, outbox
from cdpkit.bus import IDENTITY, RAW, StreamSpec, ensure_streams
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


@pytest.mark.parametrize(
    ("atomic", "sent"),
    [
        # Pipelined: each row its own publish; the stream drops the copy.
        (None, [("evt-1", False), ("evt-1", False), ("evt-2", False)]),
        # As an atomic batch, refused whole (it holds a msg id the stream has), then row by row.
        (True, [("evt-1", False), ("evt-1", True), ("evt-2", True), ("evt-1", False), ("evt-2", False)]),
    ],
)
async def test_republish_of_an_already_published_msg_id_is_deduplicated(
    pool, js, raw_stream, names, wire, atomic, sent
):
    # The relay crashed after publishing but before deleting: the row is published again.
    await js.publish(names.subject(RAW, 0), b"first copy", headers={"Nats-Msg-Id": "evt-1"})
    await enqueue_texts(pool, names, ["second copy"], msg_id="evt-1")
    await enqueue_texts(pool, names, ["other"], msg_id="evt-2")
    assert await OutboxRelay(pool, js, schema=SCHEMA, atomic=atomic).relay_once() == 2
    messages = await stored(js, raw_stream)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ["evt-1", "evt-2"]
    assert messages[0].data == b"first copy"
    assert await outbox_rows(pool) == 0
    await asyncio.sleep(0.05)
    assert [(m.headers["Nats-Msg-Id"], "Nats-Batch-Id" in m.headers) for m in wire] == sent  # really sent again


class CountingRelay(OutboxRelay):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.published = 0

    async def relay_once(self) -> int:
        count = await super().relay_once()
        self.published += count
        return count


def in_order_per_subject(messages) -> bool:
    """Each subject holds its rows in the order they were enqueued (texts are increasing numbers)."""
    per_subject: dict[str, list[int]] = {}
    for m in messages:
        per_subject.setdefault(m.subject, []).append(int(text_of(m.data)))
    return all(values == sorted(values) for values in per_subject.values())


async def test_two_relays_on_one_table_keep_each_subject_in_order_and_one_takes_over(
    kit_schema, nats_url, pool, js, raw_stream, names, eventually
):
    # One relay per schema publishes at a time, the other stands by: two replicas publishing side
    # by side stored a subject's rows out of order (bench/kit.py found it; this test failed then).
    ids = await enqueue_texts(pool, names, [str(i) for i in range(400)])
    other_pool = await db.create_pool(kit_schema, SCHEMA, application_name="replica-2")
    other_nc = await bus.connect(nats_url, name="replica-2")
    a = CountingRelay(pool, js, schema=SCHEMA, batch_size=10, poll_interval=0.01)
    b = CountingRelay(other_pool, other_nc.jetstream(), schema=SCHEMA, batch_size=10, poll_interval=0.01)
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]

    async def drained() -> bool:
        return await outbox_rows(pool) == 0

    try:
        await eventually(drained, 10)
        a.stop()  # a replica goes away: the other one relays what comes next
        await asyncio.wait_for(tasks[0], 5)
        before = b.published
        ids += await enqueue_texts(pool, names, [str(400 + i) for i in range(50)])
        await eventually(drained, 10)
        assert b.published - before == 50
    finally:
        a.stop()
        b.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await other_pool.close()
        await other_nc.close()
    messages = await stored(js, raw_stream)
    assert sorted(m.headers["Nats-Msg-Id"] for m in messages) == sorted(ids)  # every row once
    assert in_order_per_subject(messages)
    assert a.published + b.published == len(ids)


async def test_a_relay_stands_by_while_another_holds_the_schemas_relay_lock(pool, js, raw_stream, names):
    await enqueue_texts(pool, names, ["waiting"])
    relay = OutboxRelay(pool, js, schema=SCHEMA)
    async with pool.acquire() as other, other.transaction():
        plan = "\n".join(r[0] for r in await other.fetch(f"EXPLAIN {outbox._CLAIM}", 10))
        assert "One-Time Filter" in plan  # the lock is taken once, before any row is read
        assert await other.fetchval(f"SELECT {outbox._RELAY_LOCK}")  # another replica's relay, mid-round
        assert await relay.relay_once() == 0 and relay.standing_by
    assert await relay.relay_once() == 1 and not relay.standing_by
    assert await relay.relay_once() == 0 and not relay.standing_by  # nothing left: not standing by


async def test_a_window_goes_out_as_one_atomic_batch_per_stream_in_row_order(pool, js, names, monkeypatch):
    await ensure_streams(js, names, (RAW, IDENTITY))
    monkeypatch.setattr(outbox, "ATOMIC_BATCH_MESSAGES", 7)  # several batches per stream in one window
    async with pool.acquire() as conn, conn.transaction():
        for i in range(60):
            subject = names.subject(IDENTITY, "merged") if i % 3 == 0 else names.subject(RAW, i % 4)
            await enqueue(conn, workspace_id="shop", subject=subject, message=message(str(i)), msg_id=f"r{i}")
    relay = OutboxRelay(pool, js, schema=SCHEMA, batch_size=50, atomic=True)
    assert await relay.relay_once() == 50
    assert await relay.relay_once() == 10
    raw = await stored(js, names.stream(RAW))
    identity = await stored(js, names.stream(IDENTITY))
    assert [int(text_of(m.data)) for m in raw] == [i for i in range(60) if i % 3]
    assert [int(text_of(m.data)) for m in identity] == [i for i in range(60) if i % 3 == 0]
    assert all(m.headers["Nats-Msg-Id"] == f"r{text_of(m.data)}" for m in raw + identity)
    assert {m.headers["Nats-Batch-Id"] for m in raw[:7]} == {raw[0].headers["Nats-Batch-Id"]}  # one batch
    assert await outbox_rows(pool) == 0


async def test_a_window_with_every_subject_once_goes_out_as_plain_publishes(pool, js, raw_stream, names):
    # Nothing to keep in order inside it, so no atomic batch (whose commit waits for a disk sync).
    await enqueue_texts(pool, names, ["0", "1", "2", "3"])  # partitions 0..3
    assert await OutboxRelay(pool, js, schema=SCHEMA, atomic=True).relay_once() == 4
    messages = await stored(js, raw_stream)
    assert [text_of(m.data) for m in messages] == ["0", "1", "2", "3"]
    assert all("Nats-Batch-Id" not in m.headers for m in messages)


async def test_on_a_single_replica_stream_the_relay_publishes_pipelined_by_default(pool, js, raw_stream, names):
    await enqueue_texts(pool, names, [str(i) for i in range(12)])  # each partition three times
    assert await OutboxRelay(pool, js, schema=SCHEMA).relay_once() == 12
    messages = await stored(js, raw_stream)
    assert [int(text_of(m.data)) for m in messages] == list(range(12))
    assert all("Nats-Batch-Id" not in m.headers for m in messages)


async def enqueue_with_a_refused_row(pool, names) -> None:
    """Rows 0..9 on one subject, row 4 carrying a condition the stream refuses; 10..13 on another."""
    async with pool.acquire() as conn, conn.transaction():
        for i in range(14):
            await enqueue(
                conn,
                workspace_id="shop",
                subject=names.subject(RAW, 0 if i < 10 else 1),
                message=message(str(i)),
                msg_id=f"r{i}",
                headers={"Nats-Expected-Last-Subject-Sequence": "999"} if i == 4 else None,
            )


async def allow_the_refused_row(pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("UPDATE outbox SET headers = '{}' WHERE msg_id = 'r4'")


async def test_a_publish_refused_in_the_middle_of_an_atomic_window_stores_nothing_of_it(pool, js, raw_stream, names):
    await enqueue_with_a_refused_row(pool, names)
    relay = OutboxRelay(pool, js, schema=SCHEMA, atomic=True)
    with pytest.raises(BadRequestError):
        await relay.relay_once()
    # Neither the rows before the refused one nor those after it were stored: no later row of a
    # subject can overtake an earlier one. Everything waits, the failure recorded.
    assert (await js.stream_info(raw_stream)).state.messages == 0
    assert await outbox_rows(pool) == 14
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT attempts FROM outbox WHERE msg_id = 'r0'") == 1

    await allow_the_refused_row(pool)
    assert await relay.relay_once() == 14
    assert [int(text_of(m.data)) for m in await stored(js, raw_stream)] == list(range(14))


async def test_a_publish_refused_in_the_middle_of_a_pipelined_window_keeps_its_row(pool, js, raw_stream, names):
    # Without an atomic batch the rows after a refused one are stored: the row itself stays
    # (nothing lost) and goes out once the stream takes it, after them (the limit of pipelining,
    # which our stream configuration never triggers: it has no per-message conditions).
    await enqueue_with_a_refused_row(pool, names)
    relay = OutboxRelay(pool, js, schema=SCHEMA)
    with pytest.raises(BadRequestError):
        await relay.relay_once()
    assert [int(text_of(m.data)) for m in await stored(js, raw_stream)] == [i for i in range(14) if i != 4]
    async with pool.acquire() as conn:
        assert await conn.fetch("SELECT msg_id, attempts FROM outbox") == [("r4", 1)]

    await allow_the_refused_row(pool)
    assert await relay.relay_once() == 1
    assert int(text_of((await stored(js, raw_stream))[-1].data)) == 4
    assert await outbox_rows(pool) == 0


async def test_a_payload_over_the_streams_size_limit_stops_the_window_before_it_is_sent(pool, js, names):
    await ensure_streams(js, names, (StreamSpec("RAW", "raw", max_msg_size=1024),))
    async with pool.acquire() as conn, conn.transaction():
        for i in range(8):
            text = str(i) + (" " * 2000 if i == 4 else "")
            await enqueue(conn, workspace_id="shop", subject=names.subject(RAW, i % 2), message=message(text))
    relay = OutboxRelay(pool, js, schema=SCHEMA)
    with pytest.raises(ValueError, match="over the limit of 1024"):
        await relay.relay_once()
    assert [int(text_of(m.data)) for m in await stored(js, names.stream(RAW))] == [0, 1, 2, 3]
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT attempts, last_error FROM outbox ORDER BY seq")
    assert [r["attempts"] for r in rows] == [1, 0, 0, 0]  # the big row, and the rows behind it waiting
    assert "over the limit" in rows[0]["last_error"]


async def test_a_crash_between_publish_and_delete_loses_nothing_and_doubles_nothing(
    kit_schema, pool, js, raw_stream, names
):
    ids = await enqueue_texts(pool, names, [str(i) for i in range(30)])
    crashing_pool = await db.create_pool(kit_schema, SCHEMA, application_name="crashing")

    class CrashingRelay(OutboxRelay):
        async def _publish(self, rows):
            window = await super()._publish(rows)
            # JetStream has the window; now the relay's database session dies before the delete.
            async with pool.acquire() as conn:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'crashing'"
                )
            return window

    try:
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError)):
            await CrashingRelay(crashing_pool, js, schema=SCHEMA).relay_once()
    finally:
        crashing_pool.terminate()
    assert (await js.stream_info(raw_stream)).state.messages == 30
    assert await outbox_rows(pool) == 30  # nothing lost: every row is still there

    assert await OutboxRelay(pool, js, schema=SCHEMA).relay_once() == 30
    messages = await stored(js, raw_stream)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == ids  # nothing doubled, in order
    assert await outbox_rows(pool) == 0


class BreakingConnection:
    """A NATS connection that breaks after ``after`` publishes (the rest never leaves)."""

    def __init__(self, nc, after: int) -> None:
        self._nc = nc
        self._left = after

    def __getattr__(self, name):
        return getattr(self._nc, name)

    async def publish(self, *args, **kwargs):
        if self._left == 0:
            raise ConnectionError("connection lost")
        self._left -= 1
        await self._nc.publish(*args, **kwargs)
        await self._nc.flush()  # really on the server


@pytest.mark.parametrize(("atomic", "stored_before"), [(None, 8), (True, 0)])
async def test_a_connection_lost_in_the_middle_of_a_window_stores_a_prefix_of_it_at_most(
    nc, pool, js, raw_stream, names, atomic, stored_before
):
    # Pipelined, the rows sent before the break are stored (a prefix, in order) and deleted; as
    # an atomic batch, nothing is. Either way the rest goes out next, in order, each row once.
    ids = await enqueue_texts(pool, names, [str(i) for i in range(20)])
    breaking = OutboxRelay(pool, js, schema=SCHEMA, atomic=atomic)
    breaking._nc = BreakingConnection(nc, after=8)
    with pytest.raises(ConnectionError):
        await breaking.relay_once()
    assert [m.headers["Nats-Msg-Id"] for m in await stored(js, raw_stream)] == ids[:stored_before]
    assert await outbox_rows(pool) == 20 - stored_before
    assert await OutboxRelay(pool, js, schema=SCHEMA).relay_once() == 20 - stored_before
    assert [m.headers["Nats-Msg-Id"] for m in await stored(js, raw_stream)] == ids


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
    assert [{k: v for k, v in m.headers.items() if not k.startswith("Nats-Batch-")} for m in wire[1:]] == [
        {"Nats-Msg-Id": f"bulk-{i}"} for i in range(3)
    ]


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
