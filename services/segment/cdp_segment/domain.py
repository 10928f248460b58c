"""Segments and live membership, pure Python (no I/O).

- ``Segment``: a definition as stored (the rule in its canonical text form, a version).
- ``Catalogue``: a workspace's parsed rules in dependency order; decides which segments a
  change can affect and evaluates one person against them (the live path), following
  segment-of-segment references to the dependants of every segment whose membership moved.
- ``ProfileState`` / ``ProfileChange``: what a ProfileChanged announcement tells the projection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cdp_segment.config import DEFAULT_TIME_ZONE
from cdp_segment.rules import syntax
from cdp_segment.rules.ast import (
    All,
    ItemFilter,
    Node,
    Op,
    OrderCond,
    Window,
    earliest,
    event_lookback,
    is_windowed,
    read_fields,
    reads_calendar,
    referenced_segments,
)
from cdp_segment.rules.data import DEFAULT_CURRENCY, EventFact, OrderFact, PersonFacts, WorkspaceFacts
from cdp_segment.rules.memory import evaluate
from cdp_segment.rules.timing import next_change
from cdp_segment.rules.validate import RuleError
from cdpkit.errors import InvalidArgument

MAX_DISPLAY_NAME = 200
MAX_DESCRIPTION = 2000
UPDATABLE = frozenset({"display_name", "description", "rule"})
# PII traits by default (profile's default settings); names announced in snapshots are added.
DEFAULT_PII_TRAITS = frozenset({"name", "phone", "email", "address", "birthday"})
DEFAULT_ZONE = ZoneInfo(DEFAULT_TIME_ZONE)
BUILTIN_KINDS = ("rfm", "lifecycle", "cross_sell")
# Marks "everything may have changed" (a new person, moved facts): every segment is evaluated.
EVERYTHING = "*"


@dataclass(frozen=True)
class Segment:
    workspace_id: str
    segment_id: str
    display_name: str
    description: str
    rule: str
    etag: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 1
    builtin: str = ""

    def validated(self, rule_field: str = "segment.rule", zone: tzinfo = DEFAULT_ZONE, *, rule: bool = True) -> Segment:
        """Checked, with the rule parsed (dates without an offset in ``zone``) and stored in its
        canonical text form; rule errors name ``rule_field`` (where the client wrote it).
        ``rule=False``: the rule is the stored one, kept as it is."""
        display_name = self.display_name.strip()
        if not display_name:
            raise InvalidArgument("segment.display_name", "is required")
        if len(display_name) > MAX_DISPLAY_NAME:
            raise InvalidArgument("segment.display_name", f"at most {MAX_DISPLAY_NAME} characters")
        if len(self.description) > MAX_DESCRIPTION:
            raise InvalidArgument("segment.description", f"at most {MAX_DESCRIPTION} characters")
        for name, text in (("segment.display_name", display_name), ("segment.description", self.description)):
            if "\x00" in text:
                raise InvalidArgument(name, "may not contain the NUL character (U+0000)")
        if not rule:
            return replace(self, display_name=display_name)
        rule = self.rule.strip()
        if not rule:
            raise InvalidArgument(rule_field, "is required")
        if len(rule) > syntax.MAX_RULE_LENGTH:
            raise InvalidArgument(rule_field, f"at most {syntax.MAX_RULE_LENGTH} characters")
        return replace(self, display_name=display_name, rule=syntax.render(parse_rule(rule, rule_field, zone), zone))

    def updated_with(
        self, changes: Segment, paths: frozenset[str], rule_field: str = "segment.rule", zone: tzinfo = DEFAULT_ZONE
    ) -> Segment:
        changed = replace(self, **{path: getattr(changes, path) for path in paths})
        return changed.validated(rule_field, zone, rule="rule" in paths)

    @property
    def node(self) -> Node:
        """The stored rule (validated when it was saved)."""
        return syntax.parse(self.rule, checked=False)


def parse_rule(text: str, field_name: str = "segment.rule", zone: tzinfo = DEFAULT_ZONE) -> Node:
    try:
        return syntax.parse(text, zone)
    except RuleError as exc:
        raise InvalidArgument(field_name, str(exc)) from None


def cross_sell_rule(sku: str, companions: Iterable[str], bought_within_days: int = 0) -> str:
    """ "Bought ``sku`` (in the last N days), and none of its companions ever": canonical text."""
    window = Window(within_days=bought_within_days) if bought_within_days else None
    bought = OrderCond("count", Op.GTE, Decimal(1), window, ItemFilter(sku=sku))
    missing = [OrderCond("count", Op.EQ, Decimal(0), None, ItemFilter(sku=c)) for c in companions]
    return syntax.render(All((bought, *missing)) if missing else bought)


def cross_sell_segment_id(sku: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", sku.lower()).strip("-")
    return f"cross-sell-{slug}"[:63].rstrip("-")


# Segment-of-segment references -----------------------------------------------------------


def find_cycle(references: Mapping[str, Iterable[str]], start: str) -> list[str] | None:
    """A reference path from ``start`` back to itself (``[a, b, a]``), or None."""
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in on_path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        on_path.add(node)
        for child in sorted(references.get(node, ())):
            found = visit(child)
            if found:
                return found
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    return visit(start)


def check_references(segment_id: str, node: Node, others: Mapping[str, Node], field_name: str) -> None:
    """Referenced segments must exist and must not lead back to ``segment_id``."""
    referenced = referenced_segments(node)
    missing = sorted(r for r in referenced if r not in others and r != segment_id)
    if missing:
        raise InvalidArgument(field_name, f'segment("{missing[0]}") does not exist')
    graph = {sid: referenced_segments(n) for sid, n in others.items()}
    graph[segment_id] = referenced
    cycle = find_cycle(graph, segment_id)
    if cycle:
        raise InvalidArgument(field_name, "segment references make a cycle: " + " -> ".join(cycle))


def dependency_order(references: Mapping[str, Iterable[str]]) -> list[str]:
    """Segment ids, every segment after the segments it references (ids order ties)."""
    ordered: list[str] = []
    placed: set[str] = set()

    def place(node: str, trail: frozenset[str]) -> None:
        if node in placed or node not in references:
            return
        if node in trail:
            raise ValueError(f"segment references make a cycle through {node}")
        for child in sorted(references[node]):
            place(child, trail | {node})
        placed.add(node)
        ordered.append(node)

    for node in sorted(references):
        place(node, frozenset())
    return ordered


def dependants_of(references: Mapping[str, Iterable[str]], roots: Iterable[str]) -> list[str]:
    """Every segment that references one of ``roots``, directly or not, in dependency order."""
    direct: dict[str, set[str]] = {}
    for segment_id, referenced in references.items():
        for target in referenced:
            direct.setdefault(target, set()).add(segment_id)
    found: set[str] = set()
    stack = list(roots)
    while stack:
        for dependant in direct.get(stack.pop(), ()):
            if dependant not in found:
                found.add(dependant)
                stack.append(dependant)
    return [s for s in dependency_order(references) if s in found]


# The live path -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """One segment's rule, parsed, with what the live path needs to know about it."""

    segment_id: str
    version: int
    node: Node
    reads: frozenset[str]
    references: frozenset[str]
    windowed: bool
    # the answer depends on the workspace time zone (re-evaluated in full when it moves)
    calendar: bool = False

    @classmethod
    def of(cls, segment_id: str, version: int, node: Node) -> Definition:
        return cls(
            segment_id,
            version,
            node,
            frozenset(read_fields(node)),
            frozenset(referenced_segments(node)),
            is_windowed(node),
            reads_calendar(node),
        )


@dataclass(frozen=True)
class MembershipChange:
    segment_id: str
    segment_version: int
    person_id: str
    entered: bool


@dataclass
class Evaluation:
    """The outcome of evaluating one person: membership changes and timers to set (None: drop)."""

    changes: list[MembershipChange] = field(default_factory=list)
    timers: dict[str, datetime | None] = field(default_factory=dict)


class Catalogue:
    """A workspace's segments in dependency order (referenced segments first), and the workspace
    time zone (an IANA name) both evaluators read date-only values in."""

    def __init__(self, definitions: Iterable[Definition], time_zone: str = "UTC") -> None:
        self.time_zone = time_zone
        self.zone = ZoneInfo(time_zone)
        self.by_id = {d.segment_id: d for d in definitions}
        references = {d.segment_id: d.references for d in self.by_id.values()}
        self.order = [self.by_id[s] for s in dependency_order(references)]
        self._dependants: dict[str, set[str]] = {}
        for definition in self.by_id.values():
            for target in definition.references:
                self._dependants.setdefault(target, set()).add(definition.segment_id)

    def __len__(self) -> int:
        return len(self.by_id)

    def reading(self, changed: Iterable[str]) -> set[str]:
        """Ids of the segments whose rules read one of the changed fields."""
        changed = set(changed)
        if EVERYTHING in changed:
            return set(self.by_id)
        return {d.segment_id for d in self.by_id.values() if d.reads & changed}

    def with_dependants(self, segment_ids: Iterable[str]) -> set[str]:
        found = set(segment_ids)
        stack = list(found)
        while stack:
            for dependant in self._dependants.get(stack.pop(), ()):
                if dependant not in found:
                    found.add(dependant)
                    stack.append(dependant)
        return found

    def calendar(self) -> list[str]:
        """Ids of the segments whose answer depends on the workspace time zone."""
        return [d.segment_id for d in self.order if d.calendar]

    def needs(self, segment_ids: Iterable[str], now: datetime) -> tuple[dict[str, datetime | None], bool]:
        """What evaluating these segments (and their dependants) at ``now`` reads: the events by
        name with the earliest time that matters (None: all), and whether orders are read."""
        wanted = [self.by_id[s] for s in self.with_dependants(segment_ids) if s in self.by_id]
        events: dict[str, datetime | None] = {}
        for definition in wanted:
            for name, since in event_lookback(definition.node, now).items():
                events[name] = earliest(events.get(name, now), since)
        orders = any("orders" in d.reads for d in wanted)
        return events, orders

    def evaluate(
        self, person: PersonFacts, workspace: WorkspaceFacts, now: datetime, start: Iterable[str]
    ) -> Evaluation:
        """Evaluate ``start`` for ``person``, then the dependants of every segment that changed.

        ``person.memberships`` is updated as it goes, so a dependant sees its dependencies' new
        membership. Windowed segments that were evaluated get their next timer.
        """
        pending = set(start)
        outcome = Evaluation()
        workspace = replace(workspace, zone=self.zone)
        for definition in self.order:
            if definition.segment_id not in pending:
                continue
            member = evaluate(definition.node, person, workspace, now)
            if member != (definition.segment_id in person.memberships):
                outcome.changes.append(
                    MembershipChange(definition.segment_id, definition.version, person.person_id, member)
                )
                person.memberships = person.memberships ^ {definition.segment_id}
                pending |= self._dependants.get(definition.segment_id, set())
            if definition.windowed:
                outcome.timers[definition.segment_id] = next_change(definition.node, person, workspace, now)
        return outcome


# What ProfileChanged tells the projection -----------------------------------------------------


@dataclass(frozen=True)
class ProfileState:
    """A person's profile state as audience rules read it (no PII values: only their names)."""

    traits: Mapping[str, Any] = field(default_factory=dict)
    pii_traits: frozenset[str] = frozenset()
    computed: Mapping[str, Any] = field(default_factory=dict)
    lifecycle_stage: str | None = None
    tier: str | None = None
    tags: frozenset[str] = frozenset()
    consent: Mapping[str, bool] = field(default_factory=dict)
    points_balance: int | None = None
    currency: str = DEFAULT_CURRENCY

    def changed_fields(self, other: ProfileState) -> set[str]:
        """The changed_fields names of what differs between two states."""
        changed: set[str] = set()
        for prefix, mine, theirs in (
            ("traits.", self.traits, other.traits),
            ("computed.", self.computed, other.computed),
            ("consent.", self.consent, other.consent),
        ):
            changed |= {prefix + key for key in set(mine) | set(theirs) if _differs(mine.get(key), theirs.get(key))}
        changed |= {"traits." + key for key in self.pii_traits ^ other.pii_traits}
        for name in ("lifecycle_stage", "tier", "tags", "points_balance"):
            if getattr(self, name) != getattr(other, name):
                changed.add(name)
        if self.currency != other.currency:
            changed.add("orders")  # the orders that count in money changed
        return changed

    def with_values(self, values: Mapping[str, Any], pii_names: frozenset[str] = frozenset()) -> ProfileState:
        """This state with the changed-field values of an announcement that carried no snapshot
        (a null value unsets the field). A PII trait's value is true (set) or null: it goes to
        ``pii_traits``, never to ``traits``; ``pii_names``: the trait names known to be PII."""
        traits, computed, consent = dict(self.traits), dict(self.computed), dict(self.consent)
        pii = set(self.pii_traits)
        state = self
        for name, value in values.items():
            for prefix, target in (("traits.", traits), ("computed.", computed), ("consent.", consent)):
                if name.startswith(prefix):
                    key = name[len(prefix) :]
                    if value is None:
                        target.pop(key, None)
                        if prefix == "traits.":
                            pii.discard(key)
                    elif prefix == "traits." and value is True and (key in pii_names or key in pii):
                        pii.add(key)
                    else:
                        target[key] = value
                    break
            else:
                if name in ("lifecycle_stage", "tier"):
                    state = replace(state, **{name: value or None})
                elif name == "tags":
                    state = replace(state, tags=frozenset(value or ()))
                elif name == "points_balance":
                    state = replace(state, points_balance=None if value is None else int(value))
        return replace(
            state,
            traits=traits,
            pii_traits=frozenset(pii),
            computed=computed,
            consent={k: bool(v) for k, v in consent.items()},
        )


def _differs(a: Any, b: Any) -> bool:
    """Values differ, where True is not 1 and False is not 0 (as Python's == would have it)."""
    return isinstance(a, bool) != isinstance(b, bool) or a != b


@dataclass(frozen=True)
class ProfileChange:
    """One ProfileChanged announcement, decoded."""

    workspace_id: str
    person_id: str
    version: int
    changed_fields: frozenset[str] = frozenset()
    trigger_message_id: str = ""
    snapshot: ProfileState | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[EventFact, ...] = ()
    orders: tuple[OrderFact, ...] = ()
    merged_person_ids: tuple[str, ...] = ()
    split_from_person_id: str = ""
    moved_message_ids: tuple[str, ...] = ()
    moved_order_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PersonsMerged:
    workspace_id: str
    survivor_person_id: str
    merged_person_ids: tuple[str, ...]
    trigger_message_id: str = ""

    @property
    def person_ids(self) -> set[str]:
        return {self.survivor_person_id, *self.merged_person_ids}


@dataclass(frozen=True)
class PersonSplit:
    """An unmerge or an identifier removal split ``new_person_id`` off ``person_id``; the ids that
    had been merged into ``person_id`` and now resolve to the new person."""

    workspace_id: str
    person_id: str
    new_person_id: str
    moved_person_ids: tuple[str, ...] = ()

    @property
    def person_ids(self) -> set[str]:
        return {self.person_id, self.new_person_id, *self.moved_person_ids}


@dataclass(frozen=True)
class ObjectTags:
    workspace_id: str
    kind: str
    object_id: str
    tags: frozenset[str]
    version: int


@dataclass(frozen=True)
class WorkspaceZone:
    """A workspace's calendar time zone, as profile announced it with its settings version."""

    workspace_id: str
    time_zone: str
    version: int
