"""Money in integer minor units, read from e-commerce event properties the one way every service
reads them (the Segment e-commerce spec's names).

An order's total is ``total_minor`` (already minor units), else the decimal ``total``, ``revenue``
or ``value`` in the order's currency (converted with the currency's exponent, half-even), else
the products' ``price_minor`` / ``price`` times ``quantity``. Profile counts orders this way;
campaign counts a goal's revenue this way, so the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

# ISO 4217 minor-unit exponents that are not 2.
CURRENCY_EXPONENTS = {
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "KWD": 3,
    "BHD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
}
TOTAL_KEYS = ("total", "revenue", "value")
MAX_MINOR = 10**15


def currency_exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS.get(currency, 2)


def to_minor(value: Any, currency: str) -> int | None:
    """A decimal amount (19.99, "19.99") in minor units of ``currency``; None when not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite():
        return None
    scaled = amount.scaleb(currency_exponent(currency))
    if abs(scaled) >= MAX_MINOR:  # checked first: rounding a huge Decimal raises InvalidOperation
        return None
    return int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN))


def out_of_range(value: Any, currency: str) -> bool:
    """A finite decimal amount that :func:`to_minor` does not read because it is beyond its range
    (callers refuse such a value rather than take it as absent)."""
    if isinstance(value, bool) or value is None or to_minor(value, currency) is not None:
        return False
    try:
        return Decimal(str(value)).is_finite()
    except (InvalidOperation, ValueError):
        return False


def amount_minor(properties: Mapping[str, Any], minor_key: str, keys: tuple[str, ...], currency: str) -> int | None:
    """``minor_key`` as whole minor units, else the first of ``keys`` that is a decimal amount."""
    minor = properties.get(minor_key)
    if isinstance(minor, int | float) and not isinstance(minor, bool) and float(minor).is_integer():
        return int(minor)
    for key in keys:
        if key in properties:
            parsed = to_minor(properties[key], currency)
            if parsed is not None:
                return parsed
    return None


def order_total_minor(properties: Mapping[str, Any], currency: str) -> int | None:
    """The order total of an Order Completed's properties; None when it names no amount at all."""
    total = amount_minor(properties, "total_minor", TOTAL_KEYS, currency)
    if total is not None:
        return total
    products = properties.get("products")
    if not isinstance(products, list):
        return None
    lines = 0
    for item in products:
        if not isinstance(item, Mapping):
            continue
        quantity = item.get("quantity", 1)
        quantity = int(quantity) if isinstance(quantity, int | float) and not isinstance(quantity, bool) else 1
        lines += (amount_minor(item, "price_minor", ("price",), currency) or 0) * max(quantity, 0)
    return lines
