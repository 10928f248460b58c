"""Transactional outbox: announce state changes without "commit, then publish and hope".

Write side: inside the transaction that changes state, call :func:`enqueue` (or
:func:`enqueue_many`); the row commits or rolls back with the change, and its commit wakes the
relay (``pg_notify``).

Relay side, :class:`OutboxRelay`, one round in one transaction:

1. Take the schema's relay lock (a transaction-scoped advisory lock) and claim the oldest rows
   (``ORDER BY seq ... FOR UPDATE``). One relay per schema publishes at a time; other replicas'
   relays stand by (they poll) and take over at their next round. Two relays publishing side by
   side let a later row of a subject reach the stream before an earlier one (bench/kit.py saw it).
2. Publish them as one window, ``Nats-Msg-Id`` = the row's ``msg_id``: every publish of a stream
   in flight together on one connection, then the acks awaited. JetStream stores one
   connection's publishes to a stream in the order sent. What must never happen is a later row
   of a subject stored while an earlier one failed: published again, the earlier one would reach
   consumers after it, and those that drop stale versions would drop it, transitions and all.

   - Single-replica streams: plain publishes, pipelined. Such a window cannot be split. It
     reaches the socket in one write (a chunk stays under nats-py's 2 MiB pending buffer), so a
     lost connection cuts it after a prefix; payloads over the stream's or the server's size
     limit are held back before sending (the window stops at that row); and nothing else in our
     stream configuration refuses one message and takes the next.
   - Replicated streams (``CDP_STREAM_REPLICAS`` > 1; or ``atomic=True``): a stream leader change
     in the middle of a window could lose a message and store the next. So where a subject occurs
     more than once in the window, the stream's rows go out as a JetStream *atomic batch*
     (nats-server 2.12.1+, streams with ``allow_atomic``, as :func:`cdpkit.bus.ensure_streams`
     makes them): sent back to back, committed by the last, acknowledged once; the stream stores
     all of them, in row order, or none. Not the default everywhere because the server syncs an
     atomic batch to disk before acknowledging it: about 10 ms per window on this project's test
     machines (0.3 ms on tmpfs), against about 1 ms for a pipelined window.

3. Delete the acknowledged rows, in the same transaction, committed without waiting for the WAL
   flush (a delete lost in a crash only makes the relay publish those rows again). Rows behind a
   failed one are not deleted and wait for the next round; the next window of a stream is sent
   only after the previous one was acknowledged.

A window refused as a batch because it holds a msg id the stream already has (the relay crashed
after publishing but before deleting, or a service enqueued the same msg id again) is published
pipelined instead, and the stream drops the copies; so is everything on a server or stream
without atomic batches. Should a pipelined window ever store a row of a subject after an earlier
one failed, the relay logs "outbox row of the same subject stored after a failed one".

Duplicates: a row is published again only after a crash or failure between its publish and its
delete, normally within seconds. The stream's duplicate window (``cdpkit.bus``: 10 minutes) drops
the copy if it comes within that time of the first publish; later than that (the service down
for longer with undeleted rows), consumers' idempotency by message id is the backstop.

Sealed payloads (optional): a service whose announcements carry personal data passes a
``sealer`` (``cdpkit.pii.PiiVault``, or anything with ``seal_bytes``/``open_bytes``) to the
enqueue functions and to its relay. The row then holds AES-GCM ciphertext bound to its
workspace and msg id (``sealed = true``), and only the relay opens it, right before publishing.
Rows enqueued without a sealer are published as they are, so services that do not seal need no
change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import nats.js.errors
import structlog
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck

from cdpkit.ids import new_id
from cdpkit.metrics import OUTBOX_FAILURES, OUTBOX_PUBLISHED

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "cdp_outbox"
# JetStream's limit on the messages of one atomic batch (server default); and the bytes of a chunk
# of a window, under nats-py's 2 MiB pending buffer so that the chunk reaches the socket at once.
ATOMIC_BATCH_MESSAGES = 1000
CHUNK_BYTES = 1024 * 1024
# The first server version whose atomic batches accept Nats-Msg-Id.
_ATOMIC_SINCE = (2, 12, 1)
_ERR_BATCH_HAS_DUPLICATE = 10201
# Atomic publish disabled on the stream; a header it does not support (2.12.0 and Nats-Msg-Id).
_ERRS_ATOMIC_UNAVAILABLE = frozenset({10174, 10177})

# The schema's relay lock (transaction-scoped) is taken once (an InitPlan), before any row is read.
_RELAY_LOCK = "pg_try_advisory_xact_lock(hashtext('cdp_outbox'), hashtext(current_schema()))"
_CLAIM = f"""
SELECT seq, workspace_id, subject, msg_id, payload, NULLIF(headers, '{{}}'::jsonb) AS headers, sealed
FROM outbox
WHERE (SELECT {_RELAY_LOCK})
ORDER BY seq
LIMIT $1
FOR UPDATE"""


class PayloadSealer(Protocol):
    """Seals outbox payloads at rest (``cdpkit.pii.PiiVault`` is one)."""

    def seal_bytes(self, data: bytes, *, context: str) -> bytes: ...

    def open_bytes(self, sealed: bytes, *, context: str) -> bytes: ...


def _context(workspace_id: str, msg_id: str) -> str:
    # Bound to the row: a sealed payload copied to another row or workspace does not open.
    return f"{workspace_id}/outbox/{msg_id}"


async def enqueue(
    conn: asyncpg.Connection,
    *,
    workspace_id: str,
    subject: str,
    message: Message,
    msg_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    sealer: PayloadSealer | None = None,
) -> str:
    """Add one message to the outbox inside the caller's transaction; returns its msg id."""
    msg_id = msg_id or new_id()
    payload = message.SerializeToString()
    if sealer is not None:
        payload = sealer.seal_bytes(payload, context=_context(workspace_id, msg_id))
    # The row and its notification in one round trip.
    await conn.execute(
        """WITH added AS (
               INSERT INTO outbox (workspace_id, subject, msg_id, payload, headers, sealed)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING 1)
           SELECT pg_notify($7, current_schema()) FROM added""",
        workspace_id,
        subject,
        msg_id,
        payload,
        dict(headers or {}),
        sealer is not None,
        NOTIFY_CHANNEL,
    )
    return msg_id


def enqueue_many_sql(
    rows: list[tuple[str, str, str, bytes]], *, first: int = 1, sealer: PayloadSealer | None = None
) -> tuple[str, str, list]:
    """:func:`enqueue_many` in parts, for a caller that writes other tables in the same statement
    (one round trip): ``WITH <its CTEs>, <cte> <notify>``. (``outbox_added AS (...)``, a
    data-modifying CTE; the final SELECT that notifies the relay; the parameters, numbered from
    ``$first``)."""
    if sealer is not None:
        rows = [(w, s, m, sealer.seal_bytes(p, context=_context(w, m))) for w, s, m, p in rows]
    n = [f"${first + i}" for i in range(6)]
    cte = f"""outbox_added AS (
               INSERT INTO outbox (workspace_id, subject, msg_id, payload, sealed)
               SELECT w, s, m, p, {n[4]}
               FROM unnest({n[0]}::text[], {n[1]}::text[], {n[2]}::text[], {n[3]}::bytea[])
                    WITH ORDINALITY AS r(w, s, m, p, n)
               ORDER BY n
               RETURNING 1)"""
    notify = f"SELECT pg_notify({n[5]}, current_schema()) FROM (SELECT count(*) FROM outbox_added) AS c"
    columns = [[r[i] for r in rows] for i in range(4)]
    return cte, notify, [*columns, sealer is not None, NOTIFY_CHANNEL]


async def enqueue_many(
    conn: asyncpg.Connection, rows: list[tuple[str, str, str, bytes]], *, sealer: PayloadSealer | None = None
) -> None:
    """Bulk form of :func:`enqueue`: rows of (workspace_id, subject, msg_id, payload)."""
    if not rows:
        return
    # One statement whatever the number of rows (executemany costs a round of protocol work per
    # row), the notification included (one round trip less).
    cte, notify, params = enqueue_many_sql(rows, sealer=sealer)
    await conn.execute(f"WITH {cte} {notify}", *params)


@dataclass
class _Stream:
    """What the relay needs to know of a stream (looked up once)."""

    name: str
    atomic: bool  # windows repeating a subject go out as atomic batches
    max_msg_size: int  # -1: no limit of its own


@dataclass
class _Item:
    """A claimed row ready to go: its payload opened, its stream known."""

    row: asyncpg.Record
    payload: bytes
    stream: _Stream

    def headers(self) -> dict[str, str]:
        extra = self.row["headers"]
        return {**extra, "Nats-Msg-Id": self.row["msg_id"]} if extra else {"Nats-Msg-Id": self.row["msg_id"]}


@dataclass
class _Window:
    """What became of one claimed batch: the rows JetStream acknowledged, and the first failure."""

    published: list[int] = field(default_factory=list)
    failed: asyncpg.Record | None = None
    error: Exception | None = None

    def fail(self, row: asyncpg.Record, error: Exception) -> None:
        if self.failed is None or row["seq"] < self.failed["seq"]:
            self.failed, self.error = row, error


class _NotABatch(Exception):
    """The commit was acknowledged as a plain publish: the server ignored the batch headers."""


class _Replies:
    """Replies to our publishes on one wildcard inbox, each matched to a future by its token.

    (nats-py's ``publish_async`` is not used: its reply handler raises on an error reply instead of
    failing the future, so a refused batch would never be reported.)
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub = None
        self._futures: dict[str, asyncio.Future[bytes]] = {}
        self._next = 0

    async def expect(self) -> tuple[str, str, asyncio.Future[bytes]]:
        """A reply subject, its token and the future its answer will complete."""
        if self._sub is None:
            self._prefix = self._nc.new_inbox()
            self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)
        self._next += 1
        token = str(self._next)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        return f"{self._prefix}.{token}", token, future

    def forget(self, token: str) -> None:
        future = self._futures.pop(token, None)
        if future is not None and not future.done():
            future.cancel()

    async def _on_reply(self, msg: Msg) -> None:
        future = self._futures.pop(msg.subject[len(self._prefix) + 1 :], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(nats.js.errors.NoStreamResponseError())
            return
        # The answer as JSON bytes; decoded here only when it may be an error (most are not).
        if b'"error"' in msg.data:
            try:
                response = json.loads(msg.data)
                if "error" in response:
                    nats.js.errors.APIError.from_error(response["error"])  # raises the typed error
            except Exception as exc:  # noqa: BLE001 - the publisher gets it
                future.set_exception(exc)
                return
        future.set_result(msg.data)

    async def close(self) -> None:
        for token in list(self._futures):
            self.forget(token)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


class OutboxRelay:
    """Publishes committed outbox rows of one schema to JetStream, in order, at least once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        schema: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        ack_timeout: float = 5.0,
        sealer: PayloadSealer | None = None,
        atomic: bool | None = None,
    ) -> None:
        """``atomic``: publish windows that repeat a subject as atomic batches on streams that
        allow them: always (True), never (False), or on replicated streams only (None)."""
        self._pool = pool
        self._js = js
        # nats-py keeps the connection of a JetStream context private; the relay publishes on it.
        self._nc: NATS = js._nc
        self._schema = schema
        self._sealer = sealer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._ack_timeout = ack_timeout
        self._replies = _Replies(self._nc)
        self._streams: dict[str, _Stream] = {}
        self._atomic = atomic
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.name = f"{schema}-outbox-relay"
        # Another relay of this schema held the lock at the last round.
        self.standing_by = False

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish up to one batch; returns how many rows were published.

        Raises the first failure (after deleting what was published and recording the failure on
        its row); rows behind a failed one wait for the next round.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self._batch_size)
            if not rows:
                # Nothing to do, or another relay holds the lock (then this one stands by).
                self.standing_by = not await conn.fetchval(f"SELECT {_RELAY_LOCK}")
                return 0
            self.standing_by = False
            window = await self._publish(rows)
            # Losing this commit in a crash only re-publishes rows, which the stream drops.
            await conn.execute("SET LOCAL synchronous_commit = off")
            if window.published:
                await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", window.published)
            if window.failed is not None:
                await conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1",
                    window.failed["seq"],
                    _describe(window.error)[:1000],
                )
        if window.published:
            OUTBOX_PUBLISHED.labels(self._schema).inc(len(window.published))
        if window.error is not None:
            raise window.error
        return len(window.published)

    # ---------------------------------------------------------------- one window

    async def _publish(self, rows: Sequence[asyncpg.Record]) -> _Window:
        window = _Window()
        by_stream: dict[str, list[_Item]] = {}
        for row in rows:
            try:
                item = await self._item(row)
            except Exception as exc:  # noqa: BLE001 - this row cannot go; the rows behind it wait
                window.fail(row, exc)
                break
            by_stream.setdefault(item.stream.name, []).append(item)
        # Streams are independent (a subject lives in one): their batches are in flight together.
        await asyncio.gather(*(self._publish_stream(items, window) for items in by_stream.values()))
        return window

    async def _item(self, row: asyncpg.Record) -> _Item:
        if row["sealed"]:
            if self._sealer is None:
                # Never publish ciphertext: the row waits (and the failure is logged) until a relay
                # with the keys runs.
                raise RuntimeError(f"outbox row {row['msg_id']} is sealed and this relay has no sealer")
            payload = self._sealer.open_bytes(row["payload"], context=_context(row["workspace_id"], row["msg_id"]))
        else:
            payload = row["payload"]
        stream = await self._stream_of(row["subject"])
        # Limits checked here, so that the server never refuses one message of a window for them.
        limit = min(self._nc.max_payload, stream.max_msg_size if stream.max_msg_size > 0 else self._nc.max_payload)
        if len(payload) > limit:
            raise ValueError(f"payload of {len(payload)} bytes, over the limit of {limit} ({stream.name})")
        return _Item(row, payload, stream)

    async def _stream_of(self, subject: str) -> _Stream:
        stream = self._streams.get(subject)
        if stream is None:
            name = await self._js.find_stream_name_by_subject(subject)
            stream = next((known for known in self._streams.values() if known.name == name), None)
            if stream is None:
                config = (await self._js.stream_info(name)).config
                version = self._nc.connected_server_version
                atomic = (
                    bool(config.allow_atomic)
                    and (version.major, version.minor, version.patch) >= _ATOMIC_SINCE
                    # A window of a single-replica stream cannot be split (see the module's notes);
                    # a replicated stream's leader may change in the middle of one.
                    and (self._atomic if self._atomic is not None else (config.num_replicas or 1) > 1)
                )
                stream = _Stream(name, atomic, config.max_msg_size or -1)
            self._streams[subject] = stream
        return stream

    async def _publish_stream(self, items: list[_Item], window: _Window) -> None:
        for chunk in _chunks(items):
            if not await self._publish_chunk(chunk, window):
                return  # the rest of this stream waits: publishing it now could overtake the failed rows

    async def _publish_chunk(self, chunk: list[_Item], window: _Window) -> bool:
        """Publish one chunk of one stream's rows; True when every row was acknowledged."""
        stream = chunk[0].stream
        if stream.atomic and len({item.row["subject"] for item in chunk}) < len(chunk):
            try:
                await self._send_atomic(chunk)
            except nats.js.errors.APIError as exc:
                if exc.err_code in _ERRS_ATOMIC_UNAVAILABLE:
                    self._atomic_unavailable(stream, str(exc))
                elif exc.err_code != _ERR_BATCH_HAS_DUPLICATE:
                    window.fail(chunk[0].row, exc)
                    return False
                # A msg id the stream already has: pipelined, so the stream drops just the copies.
            except _NotABatch as exc:
                # The rows may have been stored one by one: the pipelined publish below makes sure
                # of each (copies dropped) before any row is deleted.
                self._atomic_unavailable(stream, str(exc))
            except Exception as exc:  # noqa: BLE001 - nothing of the batch was stored
                window.fail(chunk[0].row, exc)
                return False
            else:
                window.published.extend(item.row["seq"] for item in chunk)
                return True
        return await self._send_pipelined(chunk, window)

    async def _send_atomic(self, chunk: list[_Item]) -> None:
        batch_id = uuid.uuid4().hex
        last = len(chunk)
        reply, token, future = await self._replies.expect()
        try:
            for number, item in enumerate(chunk, 1):
                headers = item.headers()
                headers["Nats-Batch-Id"] = batch_id
                headers["Nats-Batch-Sequence"] = str(number)
                if number == last:
                    headers["Nats-Batch-Commit"] = "1"
                await self._nc.publish(
                    item.row["subject"], item.payload, reply=reply if number == last else "", headers=headers
                )
            ack = PubAck.from_response(json.loads(await asyncio.wait_for(future, self._ack_timeout)))
        finally:
            self._replies.forget(token)
        if ack.batch_id != batch_id or ack.batch_size != last:
            raise _NotABatch(f"the commit of a batch of {last} was acknowledged as {ack}")

    async def _send_pipelined(self, chunk: list[_Item], window: _Window) -> bool:
        sent: list[tuple[_Item, str, asyncio.Future[bytes]]] = []
        unsent: tuple[_Item, Exception] | None = None
        for item in chunk:
            reply, token, future = await self._replies.expect()
            try:
                await self._nc.publish(item.row["subject"], item.payload, reply=reply, headers=item.headers())
            except Exception as exc:  # noqa: BLE001 - connection closed, buffer full: stop here
                self._replies.forget(token)
                unsent = (item, exc)
                break
            sent.append((item, token, future))
        if sent:
            await asyncio.wait([future for _, _, future in sent], timeout=self._ack_timeout)
        failed_subjects: set[str] = set()
        for item, token, future in sent:
            self._replies.forget(token)
            if future.done() and not future.cancelled() and future.exception() is None:
                window.published.append(item.row["seq"])
                if item.row["subject"] in failed_subjects:
                    log.warning(
                        "outbox row of the same subject stored after a failed one",
                        schema=self._schema,
                        subject=item.row["subject"],
                        msg_id=item.row["msg_id"],
                    )
                continue
            error = future.exception() if future.done() and not future.cancelled() else None
            window.fail(item.row, error or TimeoutError(f"no ack within {self._ack_timeout} s"))
            failed_subjects.add(item.row["subject"])
        if unsent is not None:
            window.fail(unsent[0].row, unsent[1])
        return unsent is None and not failed_subjects

    def _atomic_unavailable(self, stream: _Stream, reason: str) -> None:
        if stream.atomic:
            log.warning("atomic batches unavailable, publishing pipelined", stream=stream.name, reason=reason)
        stream.atomic = False

    # ---------------------------------------------------------------- the loop

    async def run(self) -> None:
        listener: asyncpg.Connection | None = None
        backoff = 0.5
        try:
            listener = await self._pool.acquire()
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            while not self._stopping.is_set():
                try:
                    published = await self.relay_once()
                    backoff = 0.5
                except Exception as exc:  # noqa: BLE001 - NATS or Postgres down: keep the rows, retry
                    OUTBOX_FAILURES.labels(self._schema).inc()
                    log.warning("outbox relay failed, will retry", schema=self._schema, error=_describe(exc))
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                if self.standing_by:
                    # Every commit notifies: a relay standing by polls instead of claiming for each.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), timeout=self._poll_interval)
                elif published < self._batch_size:
                    await self._sleep(self._poll_interval)
        finally:
            await self._replies.close()
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                await self._pool.release(listener)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == self._schema:
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()


def _chunks(items: list[_Item]) -> list[list[_Item]]:
    """Consecutive runs of a stream's rows within the limits (messages of a batch, bytes)."""
    chunks: list[list[_Item]] = []
    size = CHUNK_BYTES + 1
    for item in items:
        if size + len(item.payload) > CHUNK_BYTES or len(chunks[-1]) >= ATOMIC_BATCH_MESSAGES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item.payload)
    return chunks


def _describe(error: Exception | None) -> str:
    return f"{type(error).__name__}: {error}"
