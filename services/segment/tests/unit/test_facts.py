"""Which announcement of an order wins, across merges and splits (cdp_segment.facts)."""

from __future__ import annotations

from cdp_segment.facts import Claim, Lineage, announced


def test_an_owner_s_newer_version_wins_and_an_older_one_is_left_alone():
    stored = Lineage("a", "a", 5)
    assert announced(stored, "a", 6, "a") == Lineage("a", "a", 6)
    assert announced(stored, "a", 5, "a") is None


def test_after_a_move_the_previous_owner_updates_only_until_the_new_owner_writes():
    moved = Lineage("s", "s", 3, prior_writer="b", prior_version=1)  # b (v1) merged into s (v3)
    late = announced(moved, "b", 2, "s")  # b's v2, still on its way when the merge was applied
    assert late == Lineage("s", "s", 3, "b", 2)
    assert announced(late, "b", 2, "s") is None  # redelivered
    written = announced(late, "s", 4, "s")
    assert written == Lineage("s", "s", 4)
    assert announced(written, "b", 9, "s") is None  # the new owner wrote it: b's versions no longer count
    assert announced(Lineage("s", "s", 50), "t", 99, "t") is None  # another person's sequence says nothing


def test_a_fact_arriving_after_a_split_claimed_it_goes_to_the_split_person():
    claim = Claim("n", "n", 1)
    assert announced(None, "a", 2, "a", claim) == Lineage("n", "n", 1, "a", 2)
    assert announced(None, "n", 2, "n", claim) == Lineage("n", "n", 2)
    # a merged-away person's late announcement: the survivor's, which writes over it later
    assert announced(None, "b", 7, "s") == Lineage("s", "s", 0, "b", 7)
