"""cdpkit.db pools: released connections are reset, or (``reset_session=False``) only rolled back."""

from __future__ import annotations

from pathlib import Path

from cdpkit import db
from cdpkit.migrate import migrate


async def _leave_state_and_take_again(pool) -> tuple[bool, str]:
    """Leave a session setting and an open transaction on the pool's only connection; then
    (whether that next user finds a transaction open, the setting it finds)."""
    async with pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("SET application_name = 'left behind'")
        await conn.execute("BEGIN")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_backend_pid()") == pid
        return conn.is_in_transaction(), await conn.fetchval("SELECT current_setting('application_name')")


async def test_reads_pool_skips_the_session_reset_but_never_hands_out_an_open_transaction(database_url, tmp_path: Path):
    await migrate(database_url, "svc", tmp_path)
    reads = await db.create_pool(database_url, "svc", application_name="reads", max_size=1, reset_session=False)
    usual = await db.create_pool(database_url, "svc", application_name="usual", max_size=1)
    try:
        assert await _leave_state_and_take_again(reads) == (False, "left behind")
        assert await _leave_state_and_take_again(usual) == (False, "usual")
    finally:
        await reads.close()
        await usual.close()
