"""Two instances of one person in one journey issue a coupon at the same time (re-entry always,
two scheduler replicas): both get the person's one code. Campaign alone, real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cdp.campaign.v1 import campaign_pb2

from ..conftest import WS, new_person


@pytest.mark.parametrize("kind", ["imported", "generated"])
async def test_concurrent_instances_of_one_person_get_the_same_code(start_campaign, kind):
    c = await start_campaign(real=False)
    await c.stub.CreateCouponPool(
        campaign_pb2.CreateCouponPoolRequest(
            parent=f"workspaces/{WS}", coupon_pool_id="pool", coupon_pool=campaign_pb2.CouponPool(kind=kind)
        )
    )
    if kind == "imported":
        await c.stub.ImportCouponCodes(
            campaign_pb2.ImportCouponCodesRequest(pool=f"workspaces/{WS}/couponPools/pool", codes=["CODE-1", "CODE-2"])
        )
    person = new_person()
    instances = [
        {"workspace_id": WS, "journey_id": "j", "person_id": person, "instance_id": uuid.uuid4()} for _ in range(2)
    ]
    first_issued = asyncio.Event()
    codes = []

    async def issue(instance, hold: bool):
        # The scheduler's step transaction (one per replica), the first one still open while the
        # second issues.
        async with c.runtime.pool.acquire() as conn, conn.transaction():
            codes.append(await c.runtime.runner._issue_coupon(conn, instance, "pool", c.clock.now()))
            if hold:
                first_issued.set()
                await asyncio.sleep(0.5)

    async def second():
        await first_issued.wait()
        await issue(instances[1], False)

    await asyncio.gather(issue(instances[0], True), second())
    assert codes[0] and codes[1] == codes[0]
    assert await c.runtime.pool.fetchval("SELECT count(*) FROM coupon_codes WHERE person_id = $1", person) == 1
