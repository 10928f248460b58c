"""Bulk import files: parsing, validation and the reasons of rejected rows (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from cdp_profile import import_formats as formats
from cdp_profile.import_formats import Catalogue, Customer, Options, Order

SHANGHAI = Options()


def parse(kind: str, fmt: str, text: bytes | str, options: Options = SHANGHAI) -> list[formats.Record]:
    data = text.encode() if isinstance(text, str) else text
    return list(formats.records(kind, fmt, formats.decode_lines(data.splitlines(keepends=True)), options))


def test_csv_order_lines_become_one_order_and_later_rows_may_leave_order_columns_empty():
    records = parse(
        "orders",
        "csv",
        "order_id,customer_id,order_time,currency,store_id,product_id,sku,quantity,price\n"
        "A-1,c-1,2026-05-01T10:00:00+08:00,CNY,s-1,p-1,SKU-1,2,19.99\n"
        "A-1,,,,,p-2,SKU-2,,5\n"
        "A-2,c-2,2026-05-02,,,,,,\n",
    )
    assert [(r.line, r.last_line, r.reason) for r in records] == [(2, 3, ""), (4, 4, "")]
    first, second = records[0].value, records[1].value
    assert isinstance(first, Order) and first.order_time == datetime(2026, 5, 1, 2, tzinfo=UTC)
    assert first.items == (
        {"product_id": "p-1", "sku": "SKU-1", "quantity": 2, "price_minor": 1999},
        {"product_id": "p-2", "sku": "SKU-2", "quantity": 1, "price_minor": 500},
    )
    assert first.total_minor is None and first.store_id == "s-1"
    # A day without a time is local midnight (Asia/Shanghai by default); no lines, no total.
    assert second.order_time == datetime(2026, 5, 1, 16, tzinfo=UTC) and second.items == ()
    assert first.properties() == {
        "order_id": "A-1",
        "currency": "CNY",
        "products": [dict(i) for i in first.items],
        "store_id": "s-1",
    }


def test_csv_rows_of_one_order_that_disagree_reject_the_order():
    records = parse(
        "orders",
        "csv",
        "order_id,customer_id,order_time,sku\nA-1,c-1,2026-05-01,X\nA-1,c-2,2026-05-01,Y\nA-2,c-1,2026-05-01,Z\n",
    )
    assert [(r.line, r.last_line, r.reason) for r in records] == [
        (2, 3, "line 3: the rows of order A-1 disagree"),
        (4, 4, ""),
    ]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"customer_id": "c", "order_time": "2026-05-01"}, "order_id: is required (no spaces, at most 200 characters)"),
        ({"order_id": "o 1", "customer_id": "c", "order_time": "2026-05-01"}, "order_id: is required"),
        ({"order_id": "o", "order_time": "2026-05-01"}, "customer_id: is required"),
        ({"order_id": "o", "customer_id": "c", "order_time": "May 1st"}, "order_time: 'May 1st' is not a date or time"),
        ({"order_id": "o", "customer_id": "c"}, "order_time: is required"),
        (
            {"order_id": "o", "customer_id": "c", "order_time": "2026-05-01", "total": "-3"},
            "total: must be a non-negative",
        ),
        (
            {"order_id": "o", "customer_id": "c", "order_time": "2026-05-01", "total": "abc"},
            "total: 'abc' is not an amount",
        ),
        ({"order_id": "o", "customer_id": "c", "order_time": "2026-05-01", "currency": "yuan"}, "currency: must be"),
        (
            {"order_id": "o", "customer_id": "c", "order_time": "2026-05-01", "store_id": "a b"},
            "store_id: 'a b' is not",
        ),
        ({"order_id": "o", "customer_id": "c", "order_time": "2026-05-01", "items": {}}, "items: must be a list"),
        (
            {"order_id": "o", "customer_id": "c", "order_time": "2026-05-01", "items": [{"quantity": 1}]},
            "items[0]: names",
        ),
        (
            {"order_id": "o", "customer_id": "c", "order_time": "2026-05-01", "items": [{"sku": "A", "quantity": 1.5}]},
            "items[0].quantity: must be a whole number",
        ),
    ],
)
def test_jsonl_orders_are_rejected_with_the_field_and_the_reason(row, reason):
    (record,) = parse("orders", "jsonl", orjson.dumps(row).decode() + "\n")
    assert record.rejected and record.reason.startswith(reason), record.reason


def test_jsonl_money_follows_the_currency_exponent_and_rounds_half_even():
    rows = [
        {"order_id": "a", "customer_id": "c", "order_time": "2026-05-01T00:00:00Z", "total": "10.005"},
        {"order_id": "b", "customer_id": "c", "order_time": "2026-05-01T00:00:00Z", "total": "1999", "currency": "JPY"},
        {"order_id": "c", "customer_id": "c", "order_time": "2026-05-01T00:00:00Z", "total_minor": 1234},
    ]
    records = parse("orders", "jsonl", "\n".join(orjson.dumps(r).decode() for r in rows))
    assert [(r.value.currency, r.value.total_minor) for r in records] == [("CNY", 1000), ("JPY", 1999), ("CNY", 1234)]


def test_lines_that_are_not_json_not_utf8_or_not_csv_shaped_are_rejected():
    assert [r.reason for r in parse("customers", "jsonl", b'{"customer_id": "c"\n[1, 2]\n\xff\n')] == [
        "not JSON: unexpected end of data: line 1 column 20 (char 19)",
        "not a JSON object",
        "not UTF-8",
    ]
    records = parse("products", "csv", "product_id,name\np-1,One\np-2\n")
    assert [(r.line, r.reason) for r in records] == [(2, ""), (3, "1 columns, the header has 2")]
    with pytest.raises(ValueError, match="header"):
        parse("products", "csv", "product_id,product_id\n")


def test_customers_carry_their_identifiers_traits_and_statement_time():
    (record,) = parse(
        "customers",
        "csv",
        "customer_id,email,phone,name,city,updated_at\nc-1,Li@Shop.io,13800000000,李雷,杭州,2026-05-01T08:00:00Z\n",
    )
    customer = record.value
    assert isinstance(customer, Customer)
    assert customer.identifiers == (("user_id", "c-1"), ("email", "Li@Shop.io"), ("phone", "13800000000"))
    assert customer.traits == {"email": "Li@Shop.io", "phone": "13800000000", "name": "李雷", "city": "杭州"}
    assert customer.as_of == datetime(2026, 5, 1, 8, tzinfo=UTC)
    (other,) = parse("customers", "jsonl", '{"customer_id": "c-2", "traits.vip": 3, "tier hint": "x"}\n')
    assert other.reason == "tier hint: not a trait name"
    (typed,) = parse("customers", "jsonl", '{"customer_id": "u9", "traits.vip": 3}\n', Options(id_type="crm_id"))
    assert typed.value.identifiers == (("crm_id", "u9"),) and typed.value.traits == {"vip": 3}


def test_products_and_stores_are_validated_like_the_batch_upserts():
    products = parse(
        "products",
        "csv",
        "product_id,sku,name,category,price,tags,colour\n"
        "p-1,S1,Pole,outdoor/poles,199.00,outdoor|bestseller,black\n"
        "p-2,S2,Boot,outdoor,10,not a tag,\n",
    )
    assert products[0].value == Catalogue(
        "product",
        {
            "product_id": "p-1",
            "tags": ["bestseller", "outdoor"],
            "display_name": "Pole",
            "sku": "S1",
            "category": "outdoor/poles",
            "brand": "",
            "currency": "",
            "price_minor": 19900,
            "attributes": {"colour": "black"},
        },
    )
    assert products[1].reason.startswith("tags: 'not a tag' is not a tag")
    (store,) = parse(
        "stores", "jsonl", '{"store_id": "s-1", "name": "西湖店", "city": "杭州西湖区", "tags": ["flagship"]}'
    )
    assert store.value.row["region_code"] == "330106" and store.value.row["tags"] == ["flagship"]
    assert store.value.object_id == "s-1"


def test_cdnow_sample_and_master_lines():
    sample = parse("orders", "cdnow", " 00004 0001 19970101  2   29.33\n 00004 0001 19970101  1   10.00\n")
    assert [r.value.order_id for r in sample] == ["cdnow-00004-19970101-1", "cdnow-00004-19970101-2"]
    first = sample[0].value
    assert (first.customer_id, first.currency, first.total_minor) == ("00004", "USD", 2933)
    assert first.items == ({"sku": "CD", "quantity": 2, "price_minor": 1466},)
    assert first.order_time == datetime(1996, 12, 31, 16, tzinfo=UTC)  # local midnight, Asia/Shanghai
    new_york = Options(zone=ZoneInfo("America/New_York"))
    master = parse(
        "orders",
        "cdnow",
        " customer_id  date number_of_cds  dollar_value\n 00001 19970101  1   11.77\n 00002 1997013  1  1\n"
        " 00003 19970102 0 0.00\n x1 19970101 1 1\n",
        new_york,
    )
    assert [(r.line, r.reason) for r in master] == [
        (2, ""),
        (3, "date: '1997013' is not a date or time"),
        (4, ""),
        (5, "customer id: must be digits"),
    ]
    assert master[0].value.order_time == datetime(1997, 1, 1, 5, tzinfo=UTC)
    assert master[2].value.items == ({"sku": "CD", "quantity": 0},) and master[2].value.total_minor == 0
    with pytest.raises(ValueError, match="orders only"):
        parse("customers", "cdnow", "")
