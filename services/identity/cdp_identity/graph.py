"""The identity graph of one person, and how it splits when a merge is undone or an identifier removed.

Nodes are the person's identifiers (by lookup key, so PII never needs decrypting). Edges are the
evidence that put them together:

- link edges: each identifier hangs from the identifier it was linked from (its *anchor*), and
  identifiers linked by the same message were seen together, so they are connected too;
- merge edges: a merge's anchor and bridge identifiers (two persons' identifiers seen on one
  message), while the merge is not undone.

A person is a connected component. Recomputing assigns each component to a person: the lowest
*origin* person id among its identifiers (origin = the person the identifier was first linked
to), so undoing a merge brings the merged-away person back under its own id; when two
components claim the same origin, the one holding the highest-ranked identifier keeps it and
the other gets the next origin or a new id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

Key = tuple[str, str]  # (identifier type, lookup key)


@dataclass(frozen=True)
class Node:
    key: Key
    anchor: Key | None
    message_id: str | None
    origin: str
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
    # Component owner -> its identifiers; the owner of ``keep`` keeps the person id.
    owners: dict[str, list[Key]] = field(default_factory=dict)
    # Merges no longer in force (the undone one, crossing later ones, ones over a removed identifier).
    undone_merges: list[str] = field(default_factory=list)
    # Person -> the person it now resolves to (merged-away persons).
    merged_into: dict[str, str] = field(default_factory=dict)
    # Active merges per owner (its merge count).
    merge_counts: dict[str, int] = field(default_factory=dict)


class _UnionFind:
    def __init__(self, keys: Iterable[Key]) -> None:
        self.parent = {k: k for k in keys}

    def find(self, key: Key) -> Key:
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a: Key, b: Key) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _rank(node: Node) -> tuple[int, datetime, Key]:
    return (-node.priority, node.linked_at, node.key)


def recompute(
    nodes: Sequence[Node],
    merges: Sequence[MergeEdge],
    *,
    new_id: Callable[[], str],
    undo: MergeEdge | None = None,
    remove: Key | None = None,
) -> Split:
    """Components of a person's graph after undoing ``undo`` and/or removing ``remove``."""
    by_key = {n.key: n for n in nodes if n.key != remove}
    uf = _UnionFind(by_key)
    undone: list[str] = []

    # Link evidence is never undone by an unmerge: links only ever add fresh identifiers.
    by_message: dict[str, Key] = {}
    roots: list[Key] = []
    for node in sorted(by_key.values(), key=lambda n: (n.linked_at, n.key)):
        if node.anchor is not None and node.anchor in by_key:
            uf.union(node.key, node.anchor)
        if node.message_id:
            first = by_message.setdefault(node.message_id, node.key)
            uf.union(first, node.key)
        if node.anchor is None and not node.message_id:
            roots.append(node.key)
    # Identifiers with neither anchor nor message (from before anchors were recorded) belong
    # with the oldest identifier of their origin person.
    by_origin_oldest: dict[str, Key] = {}
    for node in sorted(by_key.values(), key=lambda n: (n.linked_at, n.key)):
        by_origin_oldest.setdefault(node.origin, node.key)
    for key in roots:
        uf.union(key, by_origin_oldest[by_key[key].origin])

    active = [
        m
        for m in sorted(merges, key=lambda m: (m.created_at, m.merge_id))
        if undo is None or m.merge_id != undo.merge_id
    ]
    if undo is not None:
        undone.append(undo.merge_id)
    seeds = (undo.anchor, undo.bridge) if undo is not None else None
    for merge in active:
        if merge.anchor not in by_key or merge.bridge not in by_key:
            undone.append(merge.merge_id)  # an identifier of the merge was removed
            continue
        if seeds is not None and merge.created_at >= undo.created_at and all(s in by_key for s in seeds):
            a, b = uf.find(merge.anchor), uf.find(merge.bridge)
            sides = {uf.find(seeds[0]), uf.find(seeds[1])}
            if a != b and {a, b} == sides:
                undone.append(merge.merge_id)  # a later merge across the undone one goes with it
                continue
        uf.union(merge.anchor, merge.bridge)

    components: dict[Key, list[Node]] = {}
    for node in by_key.values():
        components.setdefault(uf.find(node.key), []).append(node)

    # Owners: lowest origin; ties go to the component with the highest-ranked identifier.
    ordered = sorted(components.values(), key=lambda c: min(_rank(n) for n in c))
    taken: set[str] = set()
    split = Split(undone_merges=undone)
    owner_of: dict[Key, str] = {}
    for component in ordered:
        origins = sorted({n.origin for n in component} - taken)
        owner = origins[0] if origins else new_id()
        taken.add(owner)
        split.owners[owner] = sorted(n.key for n in sorted(component, key=_rank))
        for node in component:
            owner_of[node.key] = owner

    # Every other person that was part of this one now resolves to the owner of its oldest identifier.
    oldest: dict[str, Node] = {}
    for node in sorted(by_key.values(), key=lambda n: (n.linked_at, n.key)):
        oldest.setdefault(node.origin, node)
    for origin, node in oldest.items():
        if origin not in split.owners:
            split.merged_into[origin] = owner_of[node.key]
    for merge in merges:
        if merge.merge_id in undone:
            continue
        owner = owner_of.get(merge.anchor)
        if owner is not None:
            split.merge_counts[owner] = split.merge_counts.get(owner, 0) + 1
    return split
