"""The scheduler holds no transaction or row lock while it calls profile (real profile, real
PostgreSQL): a slow ModifyProfileTags cannot stall other writers of the instance."""

from __future__ import annotations

import asyncio

from .campaign_harness import eventually


class _SlowTags:
    """The real profile port; ModifyProfileTags waits until the test lets it go."""

    def __init__(self, port) -> None:
        self._port = port
        self.calling = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self._port, name)

    async def modify_tags(self, *args, **kwargs):
        self.calling.set()
        await self.go.wait()
        return await self._port.modify_tags(*args, **kwargs)


async def test_no_row_lock_is_held_while_profile_is_called(start_campaign):
    c = await start_campaign()
    (scheduler,) = [w for w in c.runtime.workers if getattr(w, "name", "") == "campaign-scheduler"]
    scheduler.stop()  # the test runs the scheduler by hand
    runner = c.runtime.runner
    slow = runner._profile = _SlowTags(runner._profile)
    person = await c.person(email="tagged@example.com")
    journey = {"trigger": {"event": {"name": "Joined"}}, "steps": [{"id": "t", "tag": {"add": ["joined"]}}]}
    await c.journey("tagging", journey)
    await c.track(person, "Joined")
    (instance,) = await eventually(lambda: c.instances("tagging"), what="the enrolment")
    instance_id = instance.name.rsplit("/", 1)[1]

    run = asyncio.create_task(runner.run_due())
    try:
        await asyncio.wait_for(slow.calling.wait(), 10)
        # While the call is out, the instance row is not locked (a consumer could write it).
        async with c.runtime.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchval(
                "SELECT instance_id::text FROM instances WHERE instance_id = $1::uuid FOR UPDATE NOWAIT", instance_id
            )
        assert locked == instance_id
    finally:
        slow.go.set()
    assert await run == 1
    (done,) = await c.instances("tagging")
    assert done.state == "completed"
    await c.profile_is(person, lambda p: "joined" in {t.tag for t in p.tags}, "the tag at profile")
