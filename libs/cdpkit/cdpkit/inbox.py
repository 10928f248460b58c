"""Inbox: "have I applied this message already?" for consumers with no natural unique key."""

from __future__ import annotations

import asyncpg


async def first_time(conn: asyncpg.Connection, consumer: str, workspace_id: str, msg_id: str) -> bool:
    """Record ``msg_id`` for ``consumer`` inside the caller's transaction; False if seen before.

    Call it in the transaction that applies the message: both commit or neither does.
    """
    status = await conn.execute(
        "INSERT INTO inbox (consumer, workspace_id, msg_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        consumer,
        workspace_id,
        msg_id,
    )
    return status.endswith(" 1")
