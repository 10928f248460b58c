"""Merges never double a message: campaign alone (re-keying on identity's PersonsMerged is
campaign's own bookkeeping; the announcements are published here as identity publishes them)."""

from __future__ import annotations

from datetime import timedelta

from cdp.events.v1 import events_pb2
from cdpkit.bus import IDENTITY

from ..conftest import WS, eventually, new_person


def _send_after(trigger: str, wait: str, reentry: str) -> dict:
    steps = [{"id": "mail", "send": {"channel": "email", "template": {"subject": "Hi", "body": "b"}}}]
    if wait:
        steps.insert(0, {"id": "w", "wait": {"duration": wait}})
    return {"trigger": {"event": {"name": trigger}}, "reentry": {"mode": reentry}, "steps": steps}


async def test_a_merge_keeps_one_running_instance_and_suppresses_the_other_ones_messages(start_campaign):
    c = await start_campaign(real=False)
    await c.journey("cart", _send_after("Added", "1h", "after_exit"))
    await c.journey("welcome", _send_after("Joined", "", "once"))
    await c.journey("browse", _send_after("Browsed", "1h", "always"))
    survivor, merged = new_person(), new_person()
    for person in (survivor, merged):
        for event in ("Added", "Joined", "Browsed"):
            await c.track(person, event)

    async def ready():
        return (
            len(await c.instances("cart")) == 2
            and len(await c.instances("browse")) == 2
            and len(await c.deliveries("welcome")) == 2
        )

    await eventually(ready, what="two persons in three journeys, two welcome messages pending")
    merge = events_pb2.PersonsMerged(
        workspace_id=WS, survivor_person_id=survivor, merged_person_ids=[merged], merge_id="merge-1"
    )
    await c.js.publish(c.names.subject(IDENTITY, "persons_merged"), merge.SerializeToString())

    async def states(journey_id):
        return sorted((i.person_id == survivor, i.state, i.exit_reason) for i in await c.instances(journey_id))

    async def merged_away():
        return await states("cart") == [(True, "active", ""), (True, "exited", "merged")]

    await eventually(merged_away, what="the merge")
    # once: the merged person's pending welcome is suppressed, not moved to the survivor.
    # (The sender cannot reach profile here: the other one stays pending, retrying.)
    welcome = sorted((d.status, d.reason if d.status == "suppressed" else "") for d in await c.deliveries("welcome"))
    assert welcome == [("pending", ""), ("suppressed", "merged")]
    # always: both instances go on.
    assert await states("browse") == [(True, "active", ""), (True, "active", "")]
    c.clock.advance(timedelta(hours=1, minutes=1))
    # The background scheduler may hold the due instances (SKIP LOCKED) when a run of our own
    # starts: wait until nothing is due at the clock's time and everything held has committed.
    await c.tick()
    # after_exit: one cart reminder for the merged person, two browse reminders (always).
    assert len(await c.deliveries("cart")) == 1 and len(await c.deliveries("browse")) == 2

    # The unmerge: the cart instance the merge ended runs again for its person.
    split = events_pb2.PersonSplit(
        workspace_id=WS, person_id=survivor, new_person_id=merged, undone_merge_id="merge-1", reason="unmerge"
    )
    await c.js.publish(c.names.subject(IDENTITY, "person_split"), split.SerializeToString())

    async def back():  # running again (or already through its reminder: its wake time has passed)
        states = {(i.person_id == survivor, i.state) for i in await c.instances("cart")}
        return (True, "completed") in states and ({(False, "active"), (False, "completed")} & states)

    await eventually(back, what="the instance back with its person")
