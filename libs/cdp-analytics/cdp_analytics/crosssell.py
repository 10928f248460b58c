"""Co-purchase association rules ("bought trekking poles: offer jackets and hiking boots").

A *basket* is the set of distinct products of one unit of purchase (an order, or all of one
customer's orders). For products X and Y over N baskets:

- support(X -> Y)    = baskets holding both / N
- confidence(X -> Y) = baskets holding both / baskets holding X
- lift(X -> Y)       = confidence(X -> Y) / (baskets holding Y / N)

Lift above 1 means Y is bought with X more often than chance. Only one-product antecedents and
consequents are mined: they are what "bought with X" recommendations and cross-sell audiences
use, and their counts can be kept exactly and incrementally (``CoPurchaseCounts.add`` /
``remove`` when an order completes or is cancelled), which an Apriori pass over all itemsets
cannot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations

# A basket with more distinct products than this counts only its first ones (sorted): pairs
# grow with the square of the basket, and a 500-line wholesale order says little about taste.
MAX_BASKET_PRODUCTS = 50


@dataclass(frozen=True)
class AssociationRule:
    antecedent: str
    consequent: str
    # Baskets holding both.
    together: int
    support: float
    confidence: float
    lift: float


def basket_pairs(products: Iterable[str]) -> list[tuple[str, str]]:
    """The unordered product pairs of one basket, each once, as (smaller, larger)."""
    distinct = sorted({p for p in products if p})[:MAX_BASKET_PRODUCTS]
    return list(combinations(distinct, 2))


def basket_products(products: Iterable[str]) -> list[str]:
    return sorted({p for p in products if p})[:MAX_BASKET_PRODUCTS]


@dataclass
class CoPurchaseCounts:
    """Exact counts behind the rules: baskets, baskets per product, baskets per product pair."""

    baskets: int = 0
    products: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, basket: Iterable[str]) -> None:
        self._apply(list(basket), +1)

    def remove(self, basket: Iterable[str]) -> None:
        """Undo ``add`` of the same basket (a cancelled or fully refunded order)."""
        self._apply(list(basket), -1)

    def _apply(self, basket: list[str], sign: int) -> None:
        products = basket_products(basket)
        if not products:
            return
        self.baskets += sign
        for product in products:
            self.products[product] += sign
            if self.products[product] <= 0:
                del self.products[product]
        for pair in basket_pairs(products):
            self.pairs[pair] += sign
            if self.pairs[pair] <= 0:
                del self.pairs[pair]

    @classmethod
    def of(cls, baskets: Iterable[Iterable[str]]) -> CoPurchaseCounts:
        counts = cls()
        for basket in baskets:
            counts.add(basket)
        return counts


def rule(antecedent: str, consequent: str, together: int, with_antecedent: int, with_consequent: int, baskets: int):
    """One rule from its four counts (None when a count is zero)."""
    if not (together and with_antecedent and with_consequent and baskets):
        return None
    confidence = together / with_antecedent
    return AssociationRule(
        antecedent=antecedent,
        consequent=consequent,
        together=together,
        support=together / baskets,
        confidence=confidence,
        lift=confidence / (with_consequent / baskets),
    )


def rules(
    counts: CoPurchaseCounts,
    *,
    min_together: int = 2,
    min_support: float = 0.0,
    min_confidence: float = 0.0,
    min_lift: float = 1.0,
) -> list[AssociationRule]:
    """Every rule X -> Y passing the thresholds, strongest first (lift, then confidence, then support)."""
    found: list[AssociationRule] = []
    for (a, b), together in counts.pairs.items():
        if together < min_together:
            continue
        for x, y in ((a, b), (b, a)):
            candidate = rule(x, y, together, counts.products[x], counts.products[y], counts.baskets)
            if (
                candidate
                and candidate.support >= min_support
                and candidate.confidence >= min_confidence
                and candidate.lift >= min_lift
            ):
                found.append(candidate)
    return sorted(found, key=_strength)


def companions(
    counts: CoPurchaseCounts,
    product: str,
    *,
    limit: int = 10,
    min_together: int = 2,
    min_confidence: float = 0.0,
    min_lift: float = 1.0,
) -> list[AssociationRule]:
    """Products bought with ``product`` (rules product -> Y), strongest first."""
    found = []
    for (a, b), together in counts.pairs.items():
        if product not in (a, b) or together < min_together:
            continue
        other = b if a == product else a
        candidate = rule(product, other, together, counts.products[product], counts.products[other], counts.baskets)
        if candidate and candidate.confidence >= min_confidence and candidate.lift >= min_lift:
            found.append(candidate)
    return sorted(found, key=_strength)[:limit]


def _strength(r: AssociationRule) -> tuple:
    return (-r.lift, -r.confidence, -r.support, r.antecedent, r.consequent)
