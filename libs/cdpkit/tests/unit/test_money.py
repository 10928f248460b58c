"""cdpkit.money: amounts read the one way profile and campaign read them."""

from __future__ import annotations

import pytest

from cdpkit import money


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        (19.99, "CNY", 1999),
        ("0.125", "USD", 12),  # half-even
        ("0.135", "USD", 14),
        (1000, "JPY", 1000),  # no minor unit
        ("1.2345", "KWD", 1234),  # three decimals
    ],
)
def test_decimal_amounts_in_minor_units(value, currency, minor):
    assert money.to_minor(value, currency) == minor


@pytest.mark.parametrize("value", ["1e40", 1e300, "-1e20", "NaN", "Infinity", "abc", None, True])
def test_not_an_amount_or_out_of_range_is_none_never_an_exception(value):
    assert money.to_minor(value, "CNY") is None


def test_order_total_from_the_total_else_the_lines():
    assert money.order_total_minor({"total": "12.50"}, "CNY") == 1250
    assert money.order_total_minor({"total_minor": 700, "total": 1}, "CNY") == 700
    lines = {"products": [{"price": 3, "quantity": 2}, {"price_minor": 150}, "junk"]}
    assert money.order_total_minor(lines, "CNY") == 750
    assert money.order_total_minor({}, "CNY") is None


def test_out_of_range_tells_a_huge_amount_from_no_amount():
    assert money.out_of_range("1e40", "CNY") and money.out_of_range(1e300, "CNY")
    assert not money.out_of_range("12.5", "CNY")
    assert not any(money.out_of_range(v, "CNY") for v in ("abc", "NaN", None, True))
