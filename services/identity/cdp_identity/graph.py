"""The identity graph of one person, and how it splits when a merge is undone or an identifier removed.

Every identifier has a *home*: the person it belongs to when no merge is in force
(``identifiers.origin_person_id``). A new person's identifiers have it as their home; an
identifier attached later gets the home of the identifier it was attached through (its
*anchor*), whoever holds that identifier now. So the identifiers sharing a home are one
*atom*, connected by link evidence (each hangs from its anchor; identifiers linked by one
message were seen together), and a person is a set of atoms joined by merges: each merge joins
the atom of its anchor identifier (survivor's side) and the atom of its bridge identifier
(merged side).

Recomputing a person:

- **undo a merge**: the merge is dropped, and so is every later merge that would join the two
  sides again; the atoms are regrouped by the merges left. A merge never moves an identifier to
  another atom, so every person gets back exactly the identifiers it had without that merge.
- **remove an identifier**: its atom falls apart where the link evidence went through it; the
  piece holding the best-ranked identifier keeps the home, every other piece gets a new person
  id as its home (written back, so later recomputes see it). Merges over the removed identifier
  are undone.

Each group of atoms goes to its lowest home (person ids are UUIDv7: the oldest person, the one
every resolver picks as a merge survivor), and the group holding the person being split keeps
that person's id. A person whose own atom is gone (its identifiers removed) keeps the group of
its lowest other home and adopts that atom as its own. Every other home of a group now resolves
to the group's owner.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

Key = tuple[str, str]  # (identifier type, lookup key)


@dataclass(frozen=True)
class Node:
    key: Key
    anchor: Key | None
    message_id: str | None
    home: str
    linked_at: datetime
    priority: int = 0


@dataclass(frozen=True)
class MergeEdge:
    merge_id: str
    anchor: Key
    bridge: Key
    survivor: str
    merged: str
    created_at: datetime


@dataclass
class Split:
    # Owner -> its identifiers (best-ranked first). The person split keeps its id when it owns a group.
    owners: dict[str, list[Key]] = field(default_factory=dict)
    # Merges no longer in force (the undone one, crossing later ones, ones over a removed identifier).
    undone_merges: list[str] = field(default_factory=list)
    # Home -> the owner it now resolves to (every home of a group but its owner).
    merged_into: dict[str, str] = field(default_factory=dict)
    # Active merges per owner (its merge count).
    merge_counts: dict[str, int] = field(default_factory=dict)
    # Identifiers whose home changed (pieces of an atom cut by a removal) -> their new home.
    rehomed: dict[Key, str] = field(default_factory=dict)
    # New person ids (homes of cut-off pieces); each is an owner or merged into one.
    created: list[str] = field(default_factory=list)

    def owner_of(self, key: Key) -> str | None:
        for owner, keys in self.owners.items():
            if key in keys:
                return owner
        return None


class _UnionFind:
    def __init__(self, items: Iterable[Hashable]) -> None:
        self.parent = {k: k for k in items}

    def find(self, item: Hashable) -> Hashable:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[Hashable]]:
        found: dict[Hashable, list[Hashable]] = {}
        for item in self.parent:
            found.setdefault(self.find(item), []).append(item)
        return list(found.values())


def _rank(node: Node) -> tuple[int, datetime, Key]:
    return (-node.priority, node.linked_at, node.key)


def _pieces(atom: Sequence[Node]) -> list[list[Node]]:
    """An atom's identifiers grouped by link evidence (anchor edges, one message's identifiers)."""
    by_key = {n.key: n for n in atom}
    uf = _UnionFind(by_key)
    by_message: dict[str, Key] = {}
    oldest = min(atom, key=lambda n: (n.linked_at, n.key)).key
    for node in atom:
        if node.anchor is not None and node.anchor in by_key:
            uf.union(node.key, node.anchor)
        if node.message_id:
            uf.union(by_message.setdefault(node.message_id, node.key), node.key)
        if node.anchor is None and not node.message_id:
            uf.union(node.key, oldest)  # linked before anchors were recorded: stays with the oldest
    return [[by_key[k] for k in group] for group in uf.groups()]  # type: ignore[index]


def recompute(
    nodes: Sequence[Node],
    merges: Sequence[MergeEdge],
    *,
    person: str,
    new_id: Callable[[], str],
    undo: MergeEdge | None = None,
    remove: Key | None = None,
) -> Split:
    """Groups of ``person``'s identifiers after undoing ``undo`` and/or removing ``remove``."""
    split = Split()
    home = {n.key: n.home for n in nodes if n.key != remove}
    removed = next((n for n in nodes if n.key == remove), None)
    if removed is not None:
        atom = [n for n in nodes if n.home == removed.home and n.key != remove]
        if atom:
            pieces = sorted(_pieces(atom), key=lambda piece: min(_rank(n) for n in piece))
            for piece in pieces[1:]:
                fresh = new_id()
                split.created.append(fresh)
                for node in piece:
                    home[node.key] = split.rehomed[node.key] = fresh

    homes = _UnionFind(set(home.values()))
    seeds = None
    if undo is not None:
        split.undone_merges.append(undo.merge_id)
        if undo.anchor in home and undo.bridge in home:
            seeds = (home[undo.anchor], home[undo.bridge])
    kept: list[MergeEdge] = []
    for merge in sorted(merges, key=lambda m: (m.created_at, m.merge_id)):
        if undo is not None and merge.merge_id == undo.merge_id:
            continue
        if merge.anchor not in home and merge.bridge not in home and remove not in (merge.anchor, merge.bridge):
            # Both identifiers are another person's now (an earlier split moved them there with
            # the merge in force): not this person's merge to keep or undo.
            continue
        if merge.anchor not in home or merge.bridge not in home:
            split.undone_merges.append(merge.merge_id)  # an identifier of the merge was removed
            continue
        a, b = homes.find(home[merge.anchor]), homes.find(home[merge.bridge])
        crossing = seeds is not None and a != b and {a, b} == {homes.find(seeds[0]), homes.find(seeds[1])}
        if crossing and merge.created_at >= undo.created_at:  # type: ignore[union-attr]
            split.undone_merges.append(merge.merge_id)  # a later merge across the undone one goes too
            continue
        homes.union(a, b)
        kept.append(merge)

    keys_of: dict[str, list[Key]] = {}
    for key, h in home.items():
        keys_of.setdefault(h, []).append(key)
    rank = {n.key: _rank(n) for n in nodes}
    owner_of_home: dict[str, str] = {}
    for group in sorted(homes.groups(), key=min):
        owner = min(group)
        if person in group or (person not in home.values() and not split.owners):
            owner = person
            if person not in group:
                # Its own atom is gone: it adopts the oldest atom of the group, so it keeps a home
                # (and stays the lowest home of its group, as merge survivors are).
                for key in keys_of[min(group)]:
                    split.rehomed[key] = person
                owner_of_home[person] = person
        keys = sorted((k for h in group for k in keys_of[h]), key=rank.__getitem__)
        split.owners[owner] = keys
        for h in group:
            owner_of_home[h] = owner
            if h != owner:
                split.merged_into[h] = owner
    for merge in kept:
        owner = owner_of_home[home[merge.anchor]]
        split.merge_counts[owner] = split.merge_counts.get(owner, 0) + 1
    return split
