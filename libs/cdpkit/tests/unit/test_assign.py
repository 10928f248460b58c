"""The partition assignment every replica computes on its own (cdpkit.partitions.assign)."""

from __future__ import annotations

import pytest

from cdpkit.partitions import assign


@pytest.mark.parametrize("partitions", [1, 4, 7, 32, 64])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_every_partition_has_exactly_one_owner_and_loads_differ_by_at_most_one(partitions, count):
    members = [f"pod-{i}" for i in range(count)]
    owned = assign(partitions, members)
    every = sorted(p for ps in owned.values() for p in ps)
    assert every == list(range(partitions))
    loads = [len(ps) for ps in owned.values()]
    assert max(loads) - min(loads) <= 1 if partitions >= count else max(loads) == 1


def test_the_result_depends_only_on_the_set_of_members():
    a = assign(16, ["b", "a", "c"])
    assert a == assign(16, ["c", "b", "a", "a"])
    assert set(a) == {"a", "b", "c"}


def test_a_joining_member_moves_few_partitions():
    before = assign(64, ["a", "b", "c"])
    after = assign(64, ["a", "b", "c", "d"])
    moved = sum(1 for m in ("a", "b", "c") for p in before[m] if p not in after[m])
    # d takes its 16; round-robin over a sorted list would move 48 of 64.
    assert len(after["d"]) == 16
    assert moved <= 28


def test_no_members_no_assignment():
    assert assign(4, []) == {}
