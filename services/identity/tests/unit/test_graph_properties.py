"""Random sequences of resolves, unmerges and removals on the pure resolver and graph code.

``World`` keeps the identity graph the way the service's tables do (identifiers with holder,
anchor, message and home; persons; the merge log; separations; blocked values) and applies
``domain.Resolver`` outcomes and ``graph.recompute`` splits the way ``service.py`` writes them.
After every step it checks what must always hold:

- an identifier belongs to one person, a live one; ids never collide;
- persons are exactly the atoms (identifiers sharing a home) joined by the merges in force, and
  every live person is the lowest home of its identifiers;
- an identifier attached later has the home of the identifier it was attached through, and
  keeps sharing it;
- unmerging merge m leaves its two sides apart, undoes only later merges that crossed them, and,
  when nothing but plain resolves happened since m, restores the persons of before m under their
  own ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp_identity.domain import GraphState, PersonView, Resolver
from cdp_identity.graph import MergeEdge, Node, recompute
from cdp_identity.rules import DEFAULT_RULES, Guardrails, Identifier, apply_update

POOL = [
    Identifier("user_id", "u1"),
    Identifier("user_id", "u2"),
    Identifier("email", "a@x.io"),
    Identifier("email", "b@x.io"),
    Identifier("email", "c@x.io"),
    Identifier("phone", "+8613912345678"),
    Identifier("phone", "+8613712345678"),
    Identifier("jd_pin", "j1"),
    Identifier("jd_pin", "j2"),
    Identifier("wechat_unionid", "w1"),
    Identifier("device_id", "d1"),
    Identifier("anonymous_id", "a1"),
]
RULES = {
    "default": DEFAULT_RULES,
    "tight": apply_update(DEFAULT_RULES, guardrails=Guardrails(max_identifiers_per_person=6, max_merges_per_person=3)),
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def key(identifier: Identifier) -> tuple[str, str]:
    return identifier.type, identifier.value


@dataclass
class Row:
    person: str
    anchor: tuple[str, str] | None
    message_id: str
    home: str
    linked_at: datetime


@dataclass
class Person:
    status: str = "active"
    merged_into: str | None = None
    merge_count: int = 0


@dataclass
class Logged:
    edge: MergeEdge
    undone: bool = False
    # Partition right before the merge, and whether anything but a plain resolve happened since.
    before: dict[str, frozenset] = field(default_factory=dict)
    disturbed: bool = False
    alone: bool = True  # the only merge of its message


class World:
    def __init__(self, rules) -> None:
        self.rules = rules
        self._counter = count(1)
        self.issued: set[str] = set()
        self.clock = T0
        self.rows: dict[tuple[str, str], Row] = {}
        self.persons: dict[str, Person] = {}
        self.merges: dict[str, Logged] = {}
        self.separated: set[frozenset[str]] = set()
        self.blocked: set[tuple[str, str]] = set()
        self.messages = count(1)

    def new_id(self) -> str:
        ident = f"p{next(self._counter):06d}"  # increasing, like UUIDv7 person ids
        assert ident not in self.issued
        self.issued.add(ident)
        return ident

    def partition(self) -> dict[str, frozenset]:
        held: dict[str, set] = {}
        for k, row in self.rows.items():
            held.setdefault(row.person, set()).add(k)
        return {p: frozenset(ks) for p, ks in held.items()}

    # Operations -----------------------------------------------------------------------------

    def resolve(self, identifiers: list[Identifier]) -> None:
        self.clock += timedelta(minutes=1)
        state = GraphState()
        for identifier in identifiers:
            row = self.rows.get(key(identifier))
            if key(identifier) in self.blocked:
                state.blocked.add(identifier)
            elif row is not None:
                state.owners[identifier] = row.person
                state.homes[identifier] = row.home
        involved = set(state.owners.values())
        for p in involved:
            links = [(k[0], r.linked_at) for k, r in self.rows.items() if r.person == p]
            state.persons[p] = PersonView(p, self.persons[p].status, self.persons[p].merge_count, links)
        state.separated = {pair for pair in self.separated if pair & involved}
        before = self.partition()
        message_id = f"m{next(self.messages)}"
        outcome = Resolver(state, self.new_id, self.rules, now=lambda: self.clock).resolve(identifiers, message_id)

        if outcome.created:
            assert outcome.person_id not in self.persons
            self.persons[outcome.person_id] = Person()
        for link in outcome.links:
            assert key(link.identifier) not in self.rows, "an identifier belongs to one person"
            expected_home = self.rows[key(link.anchor)].home if link.anchor in state.owners else link.person_id
            assert link.home == expected_home, "a new identifier takes the home of its anchor"
            anchor = key(link.anchor) if link.anchor else None
            self.rows[key(link.identifier)] = Row(link.person_id, anchor, message_id, link.home, self.clock)
        for merge in outcome.merges:
            assert merge.merge_id not in self.merges
            final = state.live(merge.merged)
            for row in self.rows.values():
                if row.person == merge.merged:
                    row.person = final
            for pid, person in self.persons.items():
                if pid == merge.merged or person.merged_into == merge.merged:
                    person.status, person.merged_into = "merged", final
            for pair in [p for p in self.separated if merge.merged in p]:
                (other,) = pair - {merge.merged}
                self.separated.add(frozenset((final, other)))
            edge = MergeEdge(
                merge.merge_id, key(merge.anchor), key(merge.bridge), merge.survivor, merge.merged, self.clock
            )
            self.merges[merge.merge_id] = Logged(edge, before=before, alone=len(outcome.merges) == 1)
        for pid, view in state.persons.items():
            if pid not in state.merged_into:
                self.persons[pid].status = view.status
                self.persons[pid].merge_count = view.merge_count
        if outcome.merges:
            self._disturb(exclude=set(m.merge_id for m in outcome.merges))

    def unmerge(self, choice: int, latest: bool) -> None:
        active = [m for m in self.merges.values() if not m.undone]
        if not active:
            return
        logged = active[-1] if latest else active[choice % len(active)]
        edge = logged.edge
        holder = self.rows[edge.anchor].person
        assert self.rows[edge.bridge].person == holder, "a merge in force has both identifiers on one person"
        before = self.partition()
        split = self._split(holder, undo=edge)
        after = self.partition()
        assert self.rows[edge.anchor].person != self.rows[edge.bridge].person
        for merge_id in split.undone_merges:
            if merge_id == edge.merge_id:
                continue
            other = self.merges[merge_id].edge
            assert other.created_at >= edge.created_at, "only later merges go with an unmerge"
            assert self.rows[other.anchor].person != self.rows[other.bridge].person
        if not logged.disturbed and logged.alone:
            # Nothing but plain resolves since: the persons of before m are back, under their ids.
            for person, keys in logged.before.items():
                assert after[person] >= keys, (person, keys, after)
        # Nothing outside the person split moved.
        for person, keys in before.items():
            if person != holder:
                assert after[person] == keys
        self._disturb()

    def remove(self, choice: int, block: bool) -> None:
        if not self.rows:
            return
        removed = sorted(self.rows)[choice % len(self.rows)]
        holder = self.rows[removed].person
        self._split(holder, remove=removed)
        del self.rows[removed]
        if block:
            self.blocked.add(removed)
        self._disturb()

    def _disturb(self, exclude: set[str] = frozenset()) -> None:
        for merge_id, logged in self.merges.items():
            if merge_id not in exclude:
                logged.disturbed = True

    def _split(self, holder: str, *, undo: MergeEdge | None = None, remove=None):
        self.clock += timedelta(minutes=1)
        nodes = [
            Node(k, r.anchor, r.message_id, r.home, r.linked_at, self.rules.priority(k[0]))
            for k, r in self.rows.items()
            if r.person == holder
        ]
        members = {holder} | {p for p, person in self.persons.items() if person.merged_into == holder}
        edges = [
            m.edge
            for m in self.merges.values()
            if not m.undone and (m.edge.survivor in members or m.edge.merged in members)
        ]
        split = recompute(nodes, edges, person=holder, new_id=self.new_id, undo=undo, remove=remove)
        for merge_id in split.undone_merges:
            self.merges[merge_id].undone = True
        for person in split.created:
            assert person not in self.persons
            self.persons[person] = Person()
        for owner, keys in split.owners.items():
            for k in keys:
                self.rows[k].person = owner
                self.rows[k].home = split.rehomed.get(k, self.rows[k].home)
            person = self.persons[owner]
            person.status = "quarantined" if person.status == "quarantined" else "active"
            person.merged_into, person.merge_count = None, split.merge_counts.get(owner, 0)
        for home, owner in split.merged_into.items():
            self.persons[home].status, self.persons[home].merged_into = "merged", owner
        if undo is not None:
            a, b = split.owner_of(undo.anchor), split.owner_of(undo.bridge)
            if a and b and a != b:
                self.separated.add(frozenset((a, b)))
        return split

    # Invariants -----------------------------------------------------------------------------

    def check(self) -> None:
        # Every identifier is held by a live person.
        for k, row in self.rows.items():
            assert self.persons[row.person].status != "merged", (k, row.person)
            assert row.home in self.persons
            assert k not in self.blocked
        # Persons are the atoms joined by the merges in force.
        parent = {row.home: row.home for row in self.rows.values()}

        def find(h):
            while parent[h] != h:
                h = parent[h]
            return h

        for logged in self.merges.values():
            if not logged.undone:
                a, b = find(self.rows[logged.edge.anchor].home), find(self.rows[logged.edge.bridge].home)
                parent[max(a, b)] = min(a, b)
        groups: dict[str, set] = {}
        for k, row in self.rows.items():
            groups.setdefault(find(row.home), set()).add(k)
        assert sorted(map(sorted, groups.values())) == sorted(map(sorted, self.partition().values()))
        # A live person is the lowest home of what it holds; its other homes resolve to it.
        for person, keys in self.partition().items():
            homes = {self.rows[k].home for k in keys}
            assert min(homes) == person, (person, homes)
            for home in homes - {person}:
                assert self.persons[home].merged_into == person
        # An identifier stays in the atom of the identifier it was attached through (one removed
        # and linked again later is another identifier).
        for k, row in self.rows.items():
            anchor = self.rows.get(row.anchor) if row.anchor else None
            if anchor is not None and anchor.linked_at <= row.linked_at:
                assert row.home == anchor.home, (k, row, anchor)
        # Merged-away persons point at a live one.
        for person in self.persons.values():
            if person.status == "merged":
                assert self.persons[person.merged_into].status != "merged"


operation = st.one_of(
    st.tuples(st.just("resolve"), st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("resolve"), st.lists(st.sampled_from(POOL), min_size=2, max_size=4, unique=True)),
    st.tuples(st.just("unmerge"), st.integers(0, 100), st.booleans()),
    st.tuples(st.just("remove"), st.integers(0, 100), st.booleans()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.sampled_from(sorted(RULES)), operations=st.lists(operation, max_size=40))
def test_any_sequence_of_resolves_unmerges_and_removals_keeps_the_graph_sound(rules, operations):
    world = World(RULES[rules])
    for op in operations:
        if op[0] == "resolve":
            world.resolve(op[1])
        elif op[0] == "unmerge":
            world.unmerge(op[1], op[2])
        else:
            world.remove(op[1], op[2])
        world.check()


def test_the_reviewers_sequences_keep_the_graph_sound():
    world = World(DEFAULT_RULES)
    phone, email, union = POOL[5], POOL[2], POOL[9]
    world.resolve([phone])
    world.resolve([email])
    world.resolve([phone, email])
    world.resolve([email, union])
    world.unmerge(0, latest=True)
    world.check()
    a_side = world.rows[key(phone)].person
    assert world.partition()[a_side] == {key(phone)}
    assert world.partition()[world.rows[key(email)].person] == {key(email), key(union)}

    world = World(DEFAULT_RULES)
    user, jd, phone = POOL[0], POOL[7], POOL[5]
    world.resolve([phone])
    world.resolve([user])
    world.resolve([user, email])
    world.resolve([email, jd])
    world.remove(sorted(world.rows).index(key(email)), block=False)
    world.check()
    world.resolve([jd, phone])
    world.unmerge(0, latest=True)
    world.check()
    assert world.rows[key(jd)].person not in (world.rows[key(user)].person, world.rows[key(phone)].person)


def test_removing_what_a_former_survivor_still_holds_keeps_a_merge_that_moved_on():
    """Found by the property test: a merge's identifiers can leave its survivor (a removal cut
    their atom off, the merge still in force) while the merge log still names that survivor;
    removing the survivor's last identifier must not undo a merge it no longer holds."""
    world = World(DEFAULT_RULES)
    u1, u2, a, b, c = POOL[0], POOL[1], POOL[2], POOL[3], POOL[4]
    world.resolve([u1, u2, a])
    world.resolve([b, u2])
    world.remove(3, block=False)  # u2: b@ loses its anchor
    world.resolve([c, u1])
    world.resolve([b, c])  # merge: c@'s person survives, b@'s is merged into it
    world.remove(3, block=False)  # u1: c@ (attached through it) goes to b@'s side, with the merge
    world.check()
    merge = next(iter(world.merges.values()))
    assert world.rows[key(b)].person == world.rows[key(c)].person != world.rows[key(a)].person
    world.remove(0, block=False)  # a@, the merge's former survivor's last identifier
    world.check()
    assert not merge.undone
    assert world.rows[key(b)].person == world.rows[key(c)].person
