"""OneID resolution, pure Python: which person an identifier set belongs to, and what changes.

The resolver works on a :class:`GraphState`, a view of the persons that hold the identifiers
of a batch (loaded by the service in one transaction, or replayed in memory by a dry run), and
returns one :class:`Outcome` per identifier set. The algorithm (docs/identity.md):

1. Order the set's identifiers: bridging ones before weak ones, each by priority (then type,
   then value).
2. Walk them greedily, growing a *cluster*: the persons to join and the unknown identifiers to
   attach. An unknown identifier is kept unless it would break its type's limit (then a
   conflict is recorded). A known identifier brings its person into the cluster, i.e. a merge,
   unless:
   - it is weak (``bridge = false``) and both its person and the cluster are *known* (hold a
     bridging identifier, or bring a new one): weak ids never glue two known persons (the
     shared family tablet, the POS terminal's anonymous id);
   - the merged person would break a type limit (two different ``user_id``) -> conflict;
   - an operator separated the two persons (an undone merge) -> conflict;
   - either side is quarantined -> conflict;
   - the merged person would exceed a guardrail -> the bigger side (the newcomer, or the
     cluster as a whole) is quarantined, conflict; a quarantined cluster takes nobody else.
3. The survivor is the lowest person id of the cluster (UUIDv7: the oldest), so every
   resolver, in any order, picks the same one. Without any known person, a new person is
   created. The event resolves to the survivor, or (when nothing could be joined) to the
   person of its highest-priority identifier.
4. Unknown identifiers are attached to the survivor, each with its *anchor* (the identifier it
   was linked through) and its *home*: the anchor's home (see graph.py), so an unmerge later
   gives it back to the side it was seen with.

Limits only bind when both sides bring identifiers of the type: a person that already holds
more than a lowered limit still resolves, and takes other types.

Priority decides who wins: a lower-priority identifier never overrides a higher one, so an
event ``{user_id: u2, phone: P}`` where P belongs to u1's person creates u2's person and
leaves P where it is (conflict recorded), and ``{user_id: u1, phone: P}`` with P held by u2's
person resolves to u1's person without merging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cdp_identity.rules import DEFAULT_RULES, Identifier, Rules

# Re-exported for callers that only need the value types.
__all__ = ["Conflict", "GraphState", "Identifier", "Link", "Merge", "Outcome", "PersonView", "Resolver"]

ACTIVE = "active"
QUARANTINED = "quarantined"


@dataclass
class PersonView:
    """What the resolver needs to know about one person."""

    person_id: str
    status: str = ACTIVE
    merge_count: int = 0
    # (type, linked_at) of every identifier the person holds.
    links: list[tuple[str, datetime]] = field(default_factory=list)

    def count(self, type_: str, since: datetime | None = None) -> int:
        return sum(1 for t, at in self.links if t == type_ and (since is None or at >= since))

    def known(self, rules: Rules) -> bool:
        """Holds at least one bridging (strong) identifier."""
        return any((r := rules.types.get(t)) is not None and r.bridge for t, _ in self.links)

    @property
    def quarantined(self) -> bool:
        return self.status == QUARANTINED


@dataclass
class GraphState:
    """Owners of identifiers and the persons involved; mutated as a batch is resolved."""

    owners: dict[Identifier, str] = field(default_factory=dict)
    persons: dict[str, PersonView] = field(default_factory=dict)
    # Pairs of persons an operator split apart: never merged again automatically.
    separated: set[frozenset[str]] = field(default_factory=set)
    # Identifiers an operator removed and blocked.
    blocked: set[Identifier] = field(default_factory=set)
    # Identifier -> its home person (graph.py); absent: the person holding it.
    homes: dict[Identifier, str] = field(default_factory=dict)
    # merged-away person -> survivor (within this state's lifetime).
    merged_into: dict[str, str] = field(default_factory=dict)

    def live(self, person_id: str) -> str:
        while person_id in self.merged_into:
            person_id = self.merged_into[person_id]
        return person_id

    def owner(self, identifier: Identifier) -> str | None:
        person = self.owners.get(identifier)
        return None if person is None else self.live(person)

    def home(self, identifier: Identifier) -> str:
        return self.homes.get(identifier) or self.owners[identifier]


@dataclass(frozen=True)
class Link:
    identifier: Identifier
    person_id: str
    # The identifier it was linked from (None for the first identifiers of a new person).
    anchor: Identifier | None
    message_id: str
    rule: str
    # The person it belongs to when no merge is in force: the anchor's home, or the new person.
    home: str


@dataclass(frozen=True)
class Merge:
    merge_id: str
    survivor: str
    merged: str
    # ``bridge`` is held by the merged-away person, ``anchor`` by the survivor's side; both
    # were seen on message ``message_id``.
    anchor: Identifier
    bridge: Identifier
    message_id: str
    rule: str


@dataclass(frozen=True)
class Conflict:
    kind: str  # limit | separated | quarantined | guardrail
    identifier: Identifier
    person_id: str  # the person the event resolved to ("" when not known yet)
    other_person_id: str | None
    detail: str


@dataclass
class Outcome:
    person_id: str
    created: bool
    links: list[Link] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    # Identifiers of the event that were neither attached nor used, with why.
    skipped: list[tuple[Identifier, str]] = field(default_factory=list)
    # A message resolved before (journal): answered read-only, nothing changed.
    replayed: bool = False

    @property
    def attached(self) -> tuple[Identifier, ...]:
        return tuple(link.identifier for link in self.links)


class Resolver:
    """Resolves identifier sets in order against a :class:`GraphState`, updating it as it goes."""

    def __init__(
        self,
        state: GraphState,
        new_id: Callable[[], str],
        rules: Rules = DEFAULT_RULES,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.state = state
        self._new_id = new_id
        self.rules = rules
        self._now = now or (lambda: datetime.now(UTC))

    # Limits ---------------------------------------------------------------------------------

    def _since(self, type_: str, now: datetime) -> datetime | None:
        rule = self.rules.types.get(type_)
        return now - timedelta(days=rule.window_days) if rule is not None and rule.window_days else None

    def _counts(self, persons: Iterable[PersonView], pending: Iterable[Identifier], now: datetime) -> dict[str, int]:
        """Identifiers per type held by ``persons`` (within each type's window) plus ``pending``."""
        counts: dict[str, int] = {}
        for identifier in pending:
            counts[identifier.type] = counts.get(identifier.type, 0) + 1
        for person in persons:
            for type_, at in person.links:
                since = self._since(type_, now)
                if since is None or at >= since:
                    counts[type_] = counts.get(type_, 0) + 1
        return counts

    def _over_limit(self, ours: dict[str, int], theirs: dict[str, int]) -> str | None:
        """The first type whose limit joining two sides would break; only types both sides bring."""
        for type_ in sorted(ours.keys() & theirs.keys()):
            rule = self.rules.types.get(type_)
            if rule is not None and rule.max_per_person and ours[type_] + theirs[type_] > rule.max_per_person:
                return type_
        return None

    def _strong(self, identifier: Identifier) -> bool:
        rule = self.rules.types.get(identifier.type)
        return rule is not None and rule.bridge

    def _quarantine(self, person: PersonView, reason: str, outcome: Outcome) -> None:
        if not person.quarantined:
            person.status = QUARANTINED
            outcome.quarantined.append((person.person_id, reason))

    def merge_problem(self, a: PersonView, b: PersonView) -> str | None:
        """Why an operator's merge of ``a`` and ``b`` would break a rule (None: it would not)."""
        if frozenset((a.person_id, b.person_id)) in self.state.separated:
            return "an operator split these persons apart"
        if a.quarantined or b.quarantined:
            return "a quarantined person is never merged"
        now = self._now()
        limited = self._over_limit(self._counts([a], [], now), self._counts([b], [], now))
        if limited is not None:
            return f"the person would hold two different {limited}"
        guard = self.rules.guardrails
        if len(a.links) + len(b.links) > guard.max_identifiers_per_person:
            return f"the person would hold more than {guard.max_identifiers_per_person} identifiers"
        if a.merge_count + b.merge_count + 1 > guard.max_merges_per_person:
            return f"the person would have more than {guard.max_merges_per_person} merges"
        return None

    # Resolution -----------------------------------------------------------------------------

    def resolve(self, identifiers: Iterable[Identifier], message_id: str) -> Outcome:
        # Bridging identifiers first (by priority), weak ones after: a weak id can then only add a
        # person the strong ones did not already make known, whatever the priorities say.
        ordered = sorted(set(identifiers), key=lambda i: (not self._strong(i), *self.rules.rank(i)))
        if not ordered:
            raise ValueError("an identifier set must not be empty")
        now = self._now()
        state, rules, guard = self.state, self.rules, self.rules.guardrails
        cluster: list[PersonView] = []  # persons to join, in the order they joined
        joined_by: dict[str, Identifier] = {}  # person -> the identifier that brought it in
        pending: list[Identifier] = []  # unknown identifiers to attach
        conflicts: list[Conflict] = []
        skipped: list[tuple[Identifier, str]] = []
        outcome = Outcome("", False)
        # Set when the cluster itself would exceed a guardrail: its survivor is quarantined.
        cluster_quarantine = ""

        for identifier in ordered:
            if identifier in state.blocked:
                skipped.append((identifier, "removed and blocked by an operator"))
                continue
            owner = state.owner(identifier)
            if owner is None:
                limited = self._over_limit(self._counts(cluster, pending, now), {identifier.type: 1})
                if limited is not None:
                    conflicts.append(
                        Conflict("limit", identifier, "", None, f"would exceed the {limited} limit of the person")
                    )
                    continue
                pending.append(identifier)
                continue
            if any(p.person_id == owner for p in cluster):
                continue
            person = state.persons[owner]
            type_rule = rules.types.get(identifier.type)
            weak = type_rule is None or not type_rule.bridge
            cluster_known = any(p.known(rules) for p in cluster) or any(self._strong(i) for i in pending)
            if weak and cluster_known and person.known(rules):
                # The shared tablet, the POS terminal: a weak id never carries one known person's
                # identifiers onto another known person, nor new strong identifiers onto a known one.
                skipped.append((identifier, "weak identifier does not bridge two known persons"))
                continue
            if not cluster:
                limited = self._over_limit(self._counts([person], [], now), self._counts([], pending, now))
                if limited is not None:
                    conflicts.append(
                        Conflict("limit", identifier, "", owner, f"its person already holds a different {limited}")
                    )
                    continue
                cluster.append(person)
                joined_by[owner] = identifier
                continue
            # A second person: this would be a merge.
            if any(frozenset((p.person_id, owner)) in state.separated for p in cluster):
                conflicts.append(Conflict("separated", identifier, "", owner, "an operator split these persons apart"))
                continue
            if person.quarantined or cluster_quarantine or any(p.quarantined for p in cluster):
                conflicts.append(Conflict("quarantined", identifier, "", owner, "a quarantined person is never merged"))
                continue
            limited = self._over_limit(self._counts(cluster, pending, now), self._counts([person], [], now))
            if limited is not None:
                conflicts.append(
                    Conflict("limit", identifier, "", owner, f"merging would give the person two different {limited}")
                )
                continue
            ours = (sum(len(p.links) for p in cluster) + len(pending), sum(p.merge_count for p in cluster))
            theirs = (len(person.links), person.merge_count)
            total, merges = ours[0] + theirs[0], ours[1] + theirs[1] + len(cluster)
            if total > guard.max_identifiers_per_person or merges > guard.max_merges_per_person:
                what = (
                    f"more than {guard.max_identifiers_per_person} identifiers"
                    if total > guard.max_identifiers_per_person
                    else f"more than {guard.max_merges_per_person} merges"
                )
                # The bigger side is the suspicious one; the cluster counts as the person it becomes.
                if (*ours, min(p.person_id for p in cluster)) >= (*theirs, owner):
                    cluster_quarantine = f"a merge would give it {what}"
                else:
                    self._quarantine(person, f"a merge would give it {what}", outcome)
                conflicts.append(Conflict("guardrail", identifier, "", owner, f"merging would give the person {what}"))
                continue
            cluster.append(person)
            joined_by[owner] = identifier

        if cluster:
            survivor = min(p.person_id for p in cluster)
            created = False
        elif not pending:
            # Nothing usable: every identifier was blocked or refused.
            outcome.conflicts, outcome.skipped = conflicts, skipped
            return outcome
        else:
            survivor = self._new_id()
            created = True
            state.persons[survivor] = PersonView(survivor)
        outcome.person_id, outcome.created = survivor, created

        # Merges: the survivor absorbs every other person of the cluster.
        if len(cluster) > 1:
            first = cluster[0]
            a0 = joined_by[first.person_id]
            order = [p for p in cluster if p.person_id != survivor]
            if first.person_id != survivor:
                # The first person joins the survivor over the survivor's own bridging identifier.
                order.remove(first)
                order.insert(0, first)
            target = state.persons[survivor]
            for person in order:
                if person is first:
                    anchor, bridge = joined_by[survivor], a0
                else:
                    anchor, bridge = a0, joined_by[person.person_id]
                outcome.merges.append(
                    Merge(
                        merge_id=self._new_id(),
                        survivor=survivor,
                        merged=person.person_id,
                        anchor=anchor,
                        bridge=bridge,
                        message_id=message_id,
                        rule=f"bridge:{rules.rule_name(bridge.type)}",
                    )
                )
                target.links.extend(person.links)
                target.merge_count += person.merge_count + 1
                person.links = []
                state.merged_into[person.person_id] = survivor
                # Separations follow the survivor.
                for pair in [p for p in state.separated if person.person_id in p]:
                    (other,) = pair - {person.person_id}
                    state.separated.add(frozenset((survivor, other)))
        target = state.persons[survivor]
        if cluster_quarantine:
            self._quarantine(target, cluster_quarantine, outcome)

        # Links: pending identifiers attach to the survivor (unless it is quarantined), at home
        # in the atom of the identifier they were seen with.
        anchor = joined_by[cluster[0].person_id] if cluster else None
        home = state.home(anchor) if anchor is not None else survivor
        for identifier in pending:
            if target.quarantined:
                skipped.append((identifier, "person is quarantined"))
                continue
            if len(target.links) + 1 > guard.max_identifiers_per_person:
                self._quarantine(
                    target, f"would hold more than {guard.max_identifiers_per_person} identifiers", outcome
                )
                conflicts.append(
                    Conflict("guardrail", identifier, survivor, None, "the person reached its identifier cap")
                )
                continue
            outcome.links.append(
                Link(
                    identifier,
                    survivor,
                    anchor,
                    message_id,
                    f"{'new' if created else 'attach'}:{rules.rule_name(identifier.type)}",
                    home,
                )
            )
            target.links.append((identifier.type, now))
            state.owners[identifier] = survivor
            state.homes[identifier] = home
            if anchor is None:
                anchor = identifier

        outcome.conflicts = [Conflict(c.kind, c.identifier, survivor, c.other_person_id, c.detail) for c in conflicts]
        outcome.skipped = skipped
        return outcome


def resolve_read_only(state: GraphState, identifiers: Iterable[Identifier], rules: Rules) -> str | None:
    """The person of the highest-priority identifier that has one, changing nothing (replays)."""
    for identifier in sorted(set(identifiers), key=rules.rank):
        owner = state.owner(identifier)
        if owner is not None:
            return owner
    return None


def needs_write(state: GraphState, identifiers: Iterable[Identifier]) -> bool:
    """Whether resolving this set could change anything (an unknown identifier, or several persons)."""
    persons = set()
    for identifier in identifiers:
        owner = state.owner(identifier)
        if owner is None:
            if identifier not in state.blocked:
                return True
            continue
        persons.add(owner)
    return len(persons) > 1
