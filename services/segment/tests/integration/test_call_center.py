"""The issue's multi-object example, from real announcements: "bought model A during the 618
promotion AND bought at a store tagged low-performing AND no store visit in 6 months" gives the
call-center list; the live evaluator (segment created before the data) and the SQL refresh
(segment created after it) agree; the list follows tag changes, new visits and time."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta

from cdp.segment.v1 import segment_pb2

from .harness import START, WS, event_fact, order_fact, person, snapshot

RULE = (
    'orders.count(between 2026-06-01 and 2026-06-19, product.tag = "model-a") >= 1'
    ' and order.store.tag = "low-performing"'
    ' and not event("Store Visited", within 180d)'
)
JUNE_10 = datetime(2026, 6, 10, 15, 0, tzinfo=UTC)
MODEL_A = ("p-a", "A-1", "phones")
OTHER = ("p-b", "B-1", "phones")


async def test_the_call_center_list(segment):
    await segment.object_tags("product", "p-a", ["model-a"], version=1)
    await segment.object_tags("store", "s-low", ["low-performing"], version=1)
    await segment.object_tags("store", "s-flag", ["flagship"], version=1)
    for _ in range(100):
        if (await segment.sql("SELECT count(*) AS n FROM object_tags"))[0]["n"] == 3:
            break
        await asyncio.sleep(0.05)
    await segment.create("call-center", RULE, name="618 model A buyers to call")

    def bought(n, when, store, item=MODEL_A, status="completed"):
        return order_fact(f"o-{n}", when, 399900, store=store, items=(item,), status=status)

    people = {name: person() for name in ("hit", "may", "flagship", "visited", "old-visit", "mixed", "other", "refund")}
    facts = {
        "hit": ([bought(1, JUNE_10, "s-low")], []),
        "may": ([bought(2, datetime(2026, 5, 20, tzinfo=UTC), "s-low")], []),
        "flagship": ([bought(3, JUNE_10, "s-flag")], []),
        "visited": ([bought(4, JUNE_10, "s-low")], [event_fact("Store Visited", START - timedelta(days=30))]),
        "old-visit": ([bought(5, JUNE_10, "s-low")], [event_fact("Store Visited", START - timedelta(days=200))]),
        "mixed": (
            [bought(6, JUNE_10, "s-flag"), bought(7, datetime(2026, 3, 3, tzinfo=UTC), "s-low", item=OTHER)],
            [],
        ),
        "other": ([bought(8, JUNE_10, "s-low", item=OTHER)], []),
        "refund": ([bought(9, JUNE_10, "s-low", status="refunded")], []),
    }
    for who, (orders, events) in facts.items():
        await segment.profile(people[who], 1, snapshot(), orders=orders, events=events)
    expected = {people[w] for w in ("hit", "old-visit", "mixed")}
    live = await segment.changes(3)
    assert {c.person_id for c in live} == expected and all(c.entered for c in live)

    await segment.create("call-center-sql", RULE)
    assert {c.person_id for c in await segment.changes(3)} == expected
    assert await segment.members("call-center") == await segment.members("call-center-sql") == expected

    # The list the call center gets.
    export = await segment.stub.ExportSegmentMembers(
        segment_pb2.ExportSegmentMembersRequest(parent=f"workspaces/{WS}/segments/call-center")
    )
    rows = list(csv.reader(io.StringIO(export.csv)))
    assert rows[0] == ["person_id", "enter_time"] and {r[0] for r in rows[1:]} == expected

    # A visit takes the person off the list at once; the store stops being low-performing and
    # its buyers leave; time brings the recent visitor in when the visit is 180 days old.
    await segment.profile(people["hit"], 2, snapshot(), events=[event_fact("Store Visited", START)])
    visit = await segment.changes(2)
    assert {(c.segment_id, c.person_id, c.entered, c.reason) for c in visit} == {
        (s, people["hit"], False, "profile change") for s in ("call-center", "call-center-sql")
    }
    await segment.object_tags("store", "s-low", ["flagship"], version=2)
    retagged = await segment.changes(4)
    assert {(c.person_id, c.entered, c.reason) for c in retagged} == {
        (people[w], False, "object tags changed") for w in ("old-visit", "mixed")
    }
    await segment.object_tags("store", "s-low", ["low-performing"], version=3)
    assert {(c.person_id, c.entered) for c in await segment.changes(4)} == {
        (people[w], True) for w in ("old-visit", "mixed")
    }
    segment.clock.set(START - timedelta(days=30) + timedelta(days=180))
    timed = await segment.changes(2)
    assert {(c.person_id, c.entered, c.reason) for c in timed} == {(people["visited"], True, "time passed")}
    assert (
        await segment.members("call-center")
        == await segment.members("call-center-sql")
        == {people[w] for w in ("old-visit", "mixed", "visited")}
    )
