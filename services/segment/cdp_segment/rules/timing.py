"""When can a person's membership change with no new data? Only when time crosses a window edge.

``next_change(rule, person, workspace, now)`` returns the earliest instant after ``now`` at which
some windowed condition of the rule can flip for this person, or None if nothing time-dependent
can ever flip. A durable timer at that instant re-evaluates the person (and asks again), so
entries and exits happen on time without rescanning everyone. The instant may be early (the rule
as a whole may not flip then); it is never late.

Edges: ``within last Nd`` / ``within Nd`` hold for now - N < t ≤ now, so a time t enters at t
and leaves at t + N; ``more than Nd ago`` holds from t + N.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta

from cdp_segment.rules.ast import All, Any_, EventCond, FieldCond, Member, Node, Not, Op, OrderCond
from cdp_segment.rules.data import PersonFacts, WorkspaceFacts
from cdp_segment.rules.memory import END_OF_TIME, MISSING, _order_matches, as_time, compare, field_value


def _edges(node: Node, person: PersonFacts, workspace: WorkspaceFacts) -> Iterator[datetime]:
    if isinstance(node, (All, Any_)):
        for item in node.items:
            yield from _edges(item, person, workspace)
    elif isinstance(node, Not):
        yield from _edges(node.item, person, workspace)
    elif isinstance(node, FieldCond):
        if node.op in (Op.WITHIN_LAST, Op.MORE_THAN_AGO):
            moment = as_time(field_value(person, node.field), workspace.zone)
            if moment is not None:
                yield from _edges_of(moment, node.days)
    elif isinstance(node, EventCond):
        for event in person.events:
            if event.name != node.name or not all(
                compare(event.properties.get(f.prop, MISSING), f.op, f.values) for f in node.filters
            ):
                continue
            yield from _window_edges(event.time, node.window)
    elif isinstance(node, OrderCond):
        timeless = replace(node, window=None)
        for order in person.orders:
            # every filter but the window; the window is what time moves
            if _order_matches(order, timeless, person, workspace, order.time):
                yield from _window_edges(order.time, node.window)
    elif isinstance(node, Member):
        return


def _window_edges(moment: datetime, window) -> Iterator[datetime]:
    # A fixed window (between A and B) does not move with time: only "within Nd" has edges.
    if window is not None and window.within_days is not None:
        yield from _edges_of(moment, window.within_days)


def _edges_of(moment: datetime, days: int) -> Iterator[datetime]:
    """A time and the time ``days`` later; an edge from END_OF_TIME on is never reached (the SQL
    twin drops it too)."""
    yield moment
    if END_OF_TIME - moment > timedelta(days=days):
        yield moment + timedelta(days=days)


def next_change(node: Node, person: PersonFacts, workspace: WorkspaceFacts, now: datetime) -> datetime | None:
    return min((edge for edge in _edges(node, person, workspace) if edge > now), default=None)
