"""Co-purchase rules: a textbook example computed by hand, and exact incremental counts."""

from __future__ import annotations

import pytest
from cdp_analytics.crosssell import MAX_BASKET_PRODUCTS, CoPurchaseCounts, companions, rules
from hypothesis import given
from hypothesis import strategies as st

# Tan, Steinbach & Kumar, "Introduction to Data Mining", table 6.1 (market-basket transactions).
BASKETS = [
    {"bread", "milk"},
    {"bread", "diapers", "beer", "eggs"},
    {"milk", "diapers", "beer", "cola"},
    {"bread", "milk", "diapers", "beer"},
    {"bread", "milk", "diapers", "cola"},
]


def test_rules_of_the_textbook_example_match_a_hand_computation():
    counts = CoPurchaseCounts.of(BASKETS)
    found = {(r.antecedent, r.consequent): r for r in rules(counts)}
    # diapers and beer together in 3 of 5 baskets; diapers in 4, beer in 3.
    diapers_beer = found[("diapers", "beer")]
    assert (diapers_beer.together, diapers_beer.support) == (3, 0.6)
    assert diapers_beer.confidence == pytest.approx(3 / 4)
    assert diapers_beer.lift == pytest.approx((3 / 4) / (3 / 5))
    assert found[("beer", "diapers")].confidence == pytest.approx(1.0)
    assert found[("beer", "diapers")].lift == pytest.approx(1.0 / (4 / 5))
    # bread and milk: confidence 3/4 but milk is in 4 of 5 baskets anyway: lift 0.9375 < 1.
    assert ("bread", "milk") not in found
    assert rules(counts, min_lift=0.9)[-1].lift >= 0.9
    assert any((r.antecedent, r.consequent) == ("bread", "milk") for r in rules(counts, min_lift=0.9))


def test_companions_are_the_strongest_rules_from_one_product():
    counts = CoPurchaseCounts.of(BASKETS)
    # Beer is in 3 baskets: with diapers in all 3 (lift 1.25), eggs in 1 (lift (1/3)/(1/5)),
    # bread and milk in 2 and cola in 1 (lift below 1: not companions).
    assert [(r.consequent, round(r.lift, 3)) for r in companions(counts, "beer", min_together=1)] == [
        ("eggs", 1.667),
        ("diapers", 1.25),
    ]
    # One basket in common is chance: by default a companion needs two.
    assert [r.consequent for r in companions(counts, "beer")] == ["diapers"]
    assert companions(counts, "unknown") == []


def test_huge_baskets_count_only_their_first_products():
    counts = CoPurchaseCounts.of([[f"p{i:03d}" for i in range(200)]])
    assert len(counts.products) == MAX_BASKET_PRODUCTS
    assert len(counts.pairs) == MAX_BASKET_PRODUCTS * (MAX_BASKET_PRODUCTS - 1) // 2


baskets = st.lists(st.sets(st.sampled_from("abcdefg"), max_size=5), max_size=30)


@given(baskets, st.data())
def test_incremental_counts_equal_counts_from_scratch(all_baskets, data):
    counts = CoPurchaseCounts.of(all_baskets)
    removed = data.draw(st.sets(st.integers(0, max(len(all_baskets) - 1, 0)), max_size=len(all_baskets)))
    removed = {i for i in removed if i < len(all_baskets)}
    for i in sorted(removed):
        counts.remove(all_baskets[i])
    kept = [b for i, b in enumerate(all_baskets) if i not in removed]
    assert counts == CoPurchaseCounts.of(kept)
    assert rules(counts, min_together=1) == rules(CoPurchaseCounts.of(kept), min_together=1)
