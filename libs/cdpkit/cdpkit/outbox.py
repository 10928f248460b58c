"""Transactional outbox: announce state changes without "commit, then publish and hope".

Write side: inside the transaction that changes state, call :func:`enqueue`; the row commits
or rolls back with the change. Relay side: :class:`OutboxRelay` takes rows in order with
``FOR UPDATE SKIP LOCKED`` (so several replicas can relay without stepping on each other),
publishes them to JetStream with ``Nats-Msg-Id`` = the row's ``msg_id`` (a crash between
publish and delete re-publishes, and the stream's duplicate window drops the copy), waits for
every publish ack, and deletes them in the same transaction. ``pg_notify`` wakes it at once;
a poll interval covers lost notifications.

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
from collections.abc import Mapping
from typing import Protocol

import asyncpg
import structlog
from google.protobuf.message import Message
from nats.js import JetStreamContext

from cdpkit.ids import new_id
from cdpkit.metrics import OUTBOX_FAILURES, OUTBOX_PUBLISHED

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "cdp_outbox"


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
    await conn.execute(
        """INSERT INTO outbox (workspace_id, subject, msg_id, payload, headers, sealed)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        workspace_id,
        subject,
        msg_id,
        payload,
        dict(headers or {}),
        sealer is not None,
    )
    await conn.execute("SELECT pg_notify($1, current_schema())", NOTIFY_CHANNEL)
    return msg_id


async def enqueue_many(
    conn: asyncpg.Connection, rows: list[tuple[str, str, str, bytes]], *, sealer: PayloadSealer | None = None
) -> None:
    """Bulk form of :func:`enqueue`: rows of (workspace_id, subject, msg_id, payload)."""
    if not rows:
        return
    if sealer is not None:
        rows = [(w, s, m, sealer.seal_bytes(p, context=_context(w, m))) for w, s, m, p in rows]
    # One statement whatever the number of rows (executemany costs a round of protocol work per
    # row), the notification included (one round trip less).
    await conn.execute(
        """WITH added AS (
               INSERT INTO outbox (workspace_id, subject, msg_id, payload, sealed)
               SELECT w, s, m, p, $5
               FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) WITH ORDINALITY AS r(w, s, m, p, n)
               ORDER BY n
               RETURNING 1)
           SELECT pg_notify($6, current_schema()) FROM (SELECT count(*) FROM added) AS c""",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        sealer is not None,
        NOTIFY_CHANNEL,
    )


class OutboxRelay:
    """Publishes committed outbox rows of one schema to JetStream, in order, at least once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        schema: str,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        sealer: PayloadSealer | None = None,
    ) -> None:
        self._pool = pool
        self._js = js
        self._schema = schema
        self._sealer = sealer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.name = f"{schema}-outbox-relay"

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish up to one batch; returns how many rows were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT seq, workspace_id, subject, msg_id, payload, headers, sealed FROM outbox
                   ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self._batch_size,
            )
            if not rows:
                return 0
            payloads = [self._payload(row) for row in rows]
            # Publishes are sent in order on one connection; their acks are awaited together.
            await asyncio.gather(
                *(
                    self._js.publish(row["subject"], payload, headers={**row["headers"], "Nats-Msg-Id": row["msg_id"]})
                    for row, payload in zip(rows, payloads, strict=True)
                )
            )
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [row["seq"] for row in rows])
        OUTBOX_PUBLISHED.labels(self._schema).inc(len(rows))
        return len(rows)

    def _payload(self, row: asyncpg.Record) -> bytes:
        if not row["sealed"]:
            return row["payload"]
        if self._sealer is None:
            # Never publish ciphertext: the row waits (and the failure is logged) until a relay
            # with the keys runs.
            raise RuntimeError(f"outbox row {row['msg_id']} is sealed and this relay has no sealer")
        return self._sealer.open_bytes(row["payload"], context=_context(row["workspace_id"], row["msg_id"]))

    async def _record_failure(self, error: Exception) -> None:
        OUTBOX_FAILURES.labels(self._schema).inc()
        log.warning("outbox relay failed, will retry", schema=self._schema, error=f"{type(error).__name__}: {error}")
        with contextlib.suppress(Exception):
            async with self._pool.acquire() as conn:
                await conn.execute(
                    """UPDATE outbox SET attempts = attempts + 1, last_error = $1
                       WHERE seq = (SELECT min(seq) FROM outbox)""",
                    str(error)[:1000],
                )

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
                    await self._record_failure(exc)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                if published < self._batch_size:
                    await self._sleep(self._poll_interval)
        finally:
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
