"""cdpkit.inbox against a real PostgreSQL: a message id is applied once per consumer and workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdpkit import db
from cdpkit.inbox import first_time
from cdpkit.migrate import migrate


@pytest.fixture
async def pool(database_url, tmp_path: Path):
    await migrate(database_url, "svc", tmp_path)
    pool = await db.create_pool(database_url, "svc", application_name="test")
    yield pool
    await pool.close()


async def test_first_time_is_true_once_per_consumer_workspace_and_msg_id(pool):
    async with pool.acquire() as conn:
        assert await first_time(conn, "applier", "shop", "m-1") is True
        assert await first_time(conn, "applier", "shop", "m-1") is False
        assert await first_time(conn, "applier", "other-shop", "m-1") is True
        assert await first_time(conn, "mailer", "shop", "m-1") is True
        assert await conn.fetchval("SELECT count(*) FROM inbox") == 3


async def test_inbox_record_rolls_back_with_the_failed_apply(pool):
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                assert await first_time(conn, "applier", "shop", "m-2") is True
                raise RuntimeError("apply failed")
        # The redelivered message is applied again, since the first attempt left no trace.
        assert await first_time(conn, "applier", "shop", "m-2") is True
