"""Nothing lost, nothing doubled: 1,000 events over HTTP while the profile process is SIGKILLed."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest

pytestmark = pytest.mark.e2e

USERS = 10
BATCHES = 20
PER_BATCH = 50  # 20 x 50 = 1,000 events, 100 per user


def batch(number: int) -> dict:
    return {
        "batch": [
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": f"user-{i % USERS}",
                "messageId": f"evt-{number:02d}-{i:02d}",
                "properties": {"batch": number},
            }
            for i in range(PER_BATCH)
        ]
    }


async def test_sigkill_of_profile_mid_stream_loses_and_doubles_nothing(running_stack, database_url):
    s = running_stack
    async with aiohttp.ClientSession(base_url=s.base_url) as http:
        for number in range(BATCHES):
            if number == BATCHES // 2:
                # Mid-way: kill -9 the profile process while events keep arriving, then restart it.
                await asyncio.to_thread(s.stack.kill, "profile")
            response = await http.post("/v1/batch", json=batch(number), headers=s.writer())
            assert response.status == 200, await response.text()
            if number == BATCHES // 2 + 3:
                # An SDK retry of an already-accepted batch must not double anything either.
                again = await http.post("/v1/batch", json=batch(number), headers=s.writer())
                assert again.status == 200
        await asyncio.to_thread(s.stack.start_component, "profile")
        await asyncio.to_thread(s.stack.wait_serving, ("profile",), 60)

    conn = await asyncpg.connect(database_url)
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            stored = await conn.fetchval("SELECT count(*) FROM profile.events WHERE workspace_id = 'demo'")
            counted = await conn.fetchval(
                "SELECT coalesce(sum(event_count), 0) FROM profile.profiles WHERE workspace_id = 'demo'"
            )
            if stored >= 1000 and counted >= 1000:
                break
            assert asyncio.get_running_loop().time() < deadline, f"stored {stored}, counted {counted}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything still in flight would show up now
        assert await conn.fetchval("SELECT count(*) FROM profile.events WHERE workspace_id = 'demo'") == 1000
        per_profile = await conn.fetch("SELECT event_count FROM profile.profiles WHERE workspace_id = 'demo'")
        assert sorted(r["event_count"] for r in per_profile) == [BATCHES * PER_BATCH // USERS] * USERS
        assert await conn.fetchval("SELECT count(*) FROM identity.persons WHERE workspace_id = 'demo'") == USERS
    finally:
        await conn.close()
