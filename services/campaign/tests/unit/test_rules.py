"""Pure rules: definitions and their checks, A/B assignment, consent, quiet hours, caps,
revenue, reports (the uplift against a hand computation)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from cdp_campaign import definition as defs
from cdp_campaign import reports
from cdp_campaign.domain import (
    WorkspaceSettings,
    address_of,
    assign_variant,
    cap_refusal,
    consent_refusal,
    next_local_time,
    quiet_until,
    revenue_minor,
)
from cdp_campaign.ports import Companion, Consent, CrossSell, Product
from cdp_campaign.runner import event_skus, redeemed_code
from cdpkit.errors import InvalidArgument

SHANGHAI = ZoneInfo("Asia/Shanghai")


def check(document):
    return defs.check(defs.parse(document), tz=SHANGHAI)


def mail(body="Hi", subject="S"):
    return {"channel": "email", "template": {"subject": subject, "body": body}}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"steps": [{"id": "a", "exit": {}}]}, "journey.definition.trigger"),
        ({"trigger": {"event": {"name": "X"}}, "steps": []}, "journey.definition.steps"),
        ({"trigger": {"event": {"name": "X"}}, "steps": [{"id": "A", "exit": {}}]}, "journey.definition.steps[0].id"),
        (
            {"trigger": {"event": {"name": "X"}}, "steps": [{"id": "a", "next": "nowhere", "exit": {}}]},
            "journey.definition.steps[0].next",
        ),
        (
            {"trigger": {"event": {"name": "X"}}, "steps": [{"id": "a", "wait": {"duration": "soon"}}]},
            "journey.definition.steps[0].wait.duration",
        ),
        (
            {"trigger": {"event": {"name": "X"}}, "steps": [{"id": "a", "wait": {"until_time": "25:00"}}]},
            "journey.definition.steps[0].wait.until_time",
        ),
        (
            {"trigger": {"event": {"name": "X"}}, "steps": [{"id": "a", "send": mail("{{ nonsense }}")}]},
            "journey.definition.steps[0].send.template.body",
        ),
        (
            {"trigger": {"segment": {"segment_id": "s"}}, "steps": [{"id": "a", "send": mail("{{ event.name }}")}]},
            "journey.definition.steps[0].send.template.body",
        ),
        (
            {"trigger": {"event": {"name": "X"}}, "steps": [{"id": "a", "send": mail("{% if %}")}]},
            "journey.definition.steps[0].send.template.body",
        ),
        (
            {
                "trigger": {"event": {"name": "X"}},
                "steps": [{"id": "a", "send": {"channel": "fax", "template": {"body": "x"}}}],
            },
            "journey.definition.steps[0].send.channel",
        ),
        (
            {"trigger": {"event": {"name": "X"}}, "steps": [{"id": "a", "next": "a", "tag": {"add": ["t"]}}]},
            "journey.definition.steps",
        ),
        (
            {
                "trigger": {"event": {"name": "X"}},
                "steps": [{"id": "a", "split": {"variants": [{"name": "x", "weight": 1}, {"name": "x", "weight": 1}]}}],
            },
            "journey.definition.steps[0].split.variants[1].name",
        ),
        (
            {"trigger": {"date": {"attribute": "anniversary"}}, "steps": [{"id": "a", "exit": {}}]},
            "journey.definition.trigger.date.attribute",
        ),
    ],
)
def test_publish_checks_name_the_field(document, field):
    with pytest.raises(InvalidArgument) as error:
        check(document)
    assert error.value.field == field


def test_coupon_is_a_variable_only_after_a_coupon_step_on_every_path():
    on_one_path = {
        "trigger": {"event": {"name": "X"}},
        "steps": [
            {"id": "b", "branch": {"condition": {"segment_id": "s"}, "if_false": "send"}},
            {"id": "c", "coupon": {"pool_id": "p"}},
            {"id": "send", "send": mail("{{ coupon.code }}")},
        ],
    }
    with pytest.raises(InvalidArgument):
        check(on_one_path)
    on_every_path = {**on_one_path, "steps": on_one_path["steps"][1:]}
    check(on_every_path)


def test_a_loop_with_a_wait_is_allowed_and_the_events_instances_listen_for():
    checked = check(
        {
            "trigger": {"event": {"name": "X"}},
            "goal": {"event": "Order Completed"},
            "steps": [
                {"id": "w", "wait": {"until_event": "Y", "timeout": "1d"}},
                {"id": "b", "branch": {"condition": {"event_since_entry": {"name": "Z"}}}},
                {"id": "t", "next": "w", "wait": {"duration": "1h"}},
            ],
        }
    )
    assert (checked.wait_events, checked.branch_events, checked.goal_events) == ({"Y"}, {"Z"}, {"Order Completed"})


def test_yaml_and_json_forms_round_trip():
    document = {
        "trigger": {"event": {"name": "Product Added", "where": [{"property": "price", "op": "gte", "value": 100}]}},
        "goal": {"event": "Order Completed", "within": "7d"},
        "steps": [
            {"id": "w", "wait": {"until_event": "Order Completed", "timeout": "1h"}},
            {"id": "m", "send": mail()},
        ],
    }
    definition = defs.parse(document)
    assert defs.from_text(defs.to_yaml(definition)) == definition
    assert defs.from_text(defs.to_json(definition)) == definition
    assert defs.canonical(defs.from_text(defs.to_yaml(definition))) == defs.canonical(definition) == document


def test_filters():
    where = defs.parse(
        {
            "trigger": {
                "event": {
                    "name": "X",
                    "where": [
                        {"property": "price", "op": "gte", "value": 100},
                        {"property": "category", "op": "in", "value": ["shoes", "bags"]},
                        {"property": "coupon", "op": "exists", "value": False},
                    ],
                }
            }
        }
    ).trigger.event.where
    assert defs.matches(where, {"price": 120, "category": "shoes"})
    assert not defs.matches(where, {"price": 99.5, "category": "shoes"})
    assert not defs.matches(where, {"price": 120, "category": "hats"})
    assert not defs.matches(where, {"price": 120, "category": "shoes", "coupon": "X"})


def test_next_local_time_and_quiet_hours():
    at = defs.time_of_day("09:00", "-")
    # 22:00 in Shanghai -> 09:00 next morning (01:00 UTC).
    assert next_local_time(datetime(2026, 6, 18, 14, 0, tzinfo=UTC), at, SHANGHAI) == datetime(
        2026, 6, 19, 1, 0, tzinfo=UTC
    )
    assert quiet_until(datetime(2026, 6, 18, 14, 0, tzinfo=UTC), SHANGHAI, "21:00", "09:00") == datetime(
        2026, 6, 19, 1, 0, tzinfo=UTC
    )
    # 02:00 local: inside, until 09:00 the same day.
    assert quiet_until(datetime(2026, 6, 17, 18, 0, tzinfo=UTC), SHANGHAI, "21:00", "09:00") == datetime(
        2026, 6, 18, 1, 0, tzinfo=UTC
    )
    assert quiet_until(datetime(2026, 6, 18, 2, 0, tzinfo=UTC), SHANGHAI, "21:00", "09:00") is None
    assert quiet_until(datetime(2026, 6, 18, 5, 0, tzinfo=UTC), SHANGHAI, "12:00", "14:00") == datetime(
        2026, 6, 18, 6, 0, tzinfo=UTC
    )
    assert quiet_until(datetime(2026, 6, 18, 14, 0, tzinfo=UTC), SHANGHAI, "", "") is None


def test_ab_assignment_is_stable_and_follows_the_weights():
    weights = [("a", 45), ("b", 45), ("control", 10)]
    persons = [f"person-{n}" for n in range(20_000)]
    first = [assign_variant("j", "split", p, weights) for p in persons]
    assert first == [assign_variant("j", "split", p, weights) for p in persons]
    shares = {k: v / len(persons) for k, v in Counter(first).items()}
    # Binomial sd at n=20,000 is at most 0.0035; 4 sd of tolerance.
    assert abs(shares["a"] - 0.45) < 0.014 and abs(shares["b"] - 0.45) < 0.014
    assert abs(shares["control"] - 0.10) < 0.009
    # Another journey (or step) shuffles people independently.
    other = [assign_variant("k", "split", p, weights) for p in persons]
    assert sum(x == y for x, y in zip(first, other, strict=True)) < 0.5 * len(persons)


def test_consent():
    granted = [Consent("email", "", True, "api")]
    assert consent_refusal(granted, "email", "opt_in") is None
    assert consent_refusal([], "email", "opt_in") == "no_consent"
    assert consent_refusal([], "email", "opt_out") is None
    withdrawn_marketing = [*granted, Consent("email", "marketing", False, "api")]
    assert consent_refusal(withdrawn_marketing, "email", "opt_in") == "no_consent"
    assert consent_refusal([Consent("email", "", False, "unsubscribe_link")], "email", "opt_out") == "unsubscribed"
    assert consent_refusal([Consent("sms", "", False, "api")], "email", "opt_out") is None
    # Profile's statements per key: the newest of "email" and "email.marketing" decides.
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    unsubscribed = [Consent("email", "", False, "unsubscribe_link", t1), Consent("email", "marketing", False, "x", t1)]
    assert consent_refusal(unsubscribed, "email", "opt_out") == "unsubscribed"  # a tie: the withdrawal
    opted_in_again = [unsubscribed[0], Consent("email", "marketing", True, "preference_center", t2)]
    assert consent_refusal(opted_in_again, "email", "opt_in") is None
    assert consent_refusal([Consent("email", "marketing", True, "api", t1), unsubscribed[0]], "email", "opt_in") == (
        "unsubscribed"
    )
    later_withdrawal = [Consent("email", "", True, "api", t1), Consent("email", "", False, "api", t2)]
    assert consent_refusal(later_withdrawal[1:], "email", "opt_in") == "no_consent"
    assert (
        consent_refusal([Consent("email", "service", False, "api", t2), later_withdrawal[0]], "email", "opt_in") is None
    )


def test_caps_addresses_revenue():
    ws = WorkspaceSettings("w", cap_per_day=2, cap_per_week=5)
    counts = {"workspace_day": 1, "workspace_week": 1, "journey_day": 1, "journey_week": 1}
    assert cap_refusal(counts, workspace=ws, journey_per_day=0, journey_per_week=0) is None
    assert cap_refusal(counts, workspace=ws, journey_per_day=1, journey_per_week=0) == "cap_journey_day"
    assert cap_refusal({**counts, "workspace_day": 2}, workspace=ws, journey_per_day=1, journey_per_week=0) == (
        "cap_workspace_day"
    )
    assert cap_refusal({**counts, "workspace_week": 5}, workspace=ws, journey_per_day=0, journey_per_week=0) == (
        "cap_workspace_week"
    )
    assert address_of({"email": " a@b.c "}, "email") == "a@b.c"
    assert address_of({"phone": "+86"}, "email") == ""
    # As profile reads an order (cdpkit.money): total_minor, total, revenue, value, else the lines.
    assert revenue_minor({"revenue": 12.34}, "", "CNY") == 1234
    assert revenue_minor({"total_minor": 999, "revenue": 1}, "", "CNY") == 999
    assert revenue_minor({"total": "5", "revenue": 4}, "", "CNY") == 500
    assert revenue_minor({"products": [{"price": 2.5, "quantity": 2}, {"price_minor": 100}]}, "", "CNY") == 600
    assert revenue_minor({"total": 1200, "currency": "JPY"}, "", "JPY") == 1200  # no minor unit
    assert revenue_minor({"total": 12, "currency": "USD"}, "", "CNY") == 0  # another currency: no money
    assert revenue_minor({"amount": "x"}, "amount", "CNY") == 0
    assert revenue_minor({"gmv_minor": 999, "gmv": 1}, "gmv_minor", "CNY") == 999
    assert revenue_minor({"gmv": "19.99"}, "gmv", "CNY") == 1999


def test_uplift_against_a_hand_computation():
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # Table II example: 56/70 vs 48/80, difference 0.2, method 10 interval (0.0524, 0.3339).
    result = reports.uplift("a", "control", 56, 70, 48, 80)
    assert math.isclose(result.uplift, 0.2, abs_tol=1e-12)
    assert math.isclose(result.ci_low, 0.0524, abs_tol=5e-5)
    assert math.isclose(result.ci_high, 0.3339, abs_tol=5e-5)


def test_report_rows_and_csv():
    rows, uplifts = reports.build(
        [("a", 200, 30, 30_000), ("control", 100, 10, 8_000)],
        [("mail", "a", "sent", "", 180), ("mail", "a", "suppressed", "no_consent", 15), ("mail", "a", "dead", "x", 5)],
        [("mail", "a", 30, 30_000)],
        holdout="control",
    )
    overall = rows[0]
    assert (overall.entered, overall.sent, overall.suppressed, overall.failed, overall.converted) == (
        300,
        180,
        15,
        5,
        40,
    )
    mail_row = next(r for r in rows if r.step_id == "mail" and not r.variant)
    assert (mail_row.entered, mail_row.converted, mail_row.suppressed_by_reason) == (200, 30, {"no_consent": 15})
    assert [u.variant for u in uplifts] == ["a"]
    text = reports.to_csv(rows, uplifts)
    assert text.splitlines()[0] == (
        "step_id,variant,entered,sent,delivered,failed,suppressed,suppressed_no_consent,converted,revenue_minor,"
        "uplift,uplift_ci_low,uplift_ci_high"
    )
    assert ",a,200,180,0,5,15,15,30,30000,0.050000,-0.035835,0.121740" in text


def test_a_recurring_schedule_published_late_runs_its_latest_due_run_not_every_missed_one():
    from cdp_campaign.runner import first_run

    definition = defs.parse({"trigger": {"schedule": {"segment_id": "s", "start": "2026-06-01T10:00", "every": "7d"}}})
    now = datetime(2026, 6, 18, 2, 0, tzinfo=UTC)  # 18 June 10:00 Shanghai
    assert first_run(definition, SHANGHAI, now) == datetime(2026, 6, 15, 10, 0, tzinfo=SHANGHAI)
    once = defs.parse({"trigger": {"schedule": {"segment_id": "s", "start": "2026-07-01T10:00"}}})
    assert first_run(once, SHANGHAI, now) == datetime(2026, 7, 1, 10, 0, tzinfo=SHANGHAI)


def test_coupon_codes_and_skus_read_from_events_by_the_spec_names():
    assert redeemed_code("Coupon Redeemed", {"coupon_id": " SPRING-1 "}) == "SPRING-1"
    assert redeemed_code("Coupon Redeemed", {"coupon": "SPRING-2"}) == "SPRING-2"
    assert redeemed_code("Order Completed", {"coupon": "VIP-ABCD", "total": 3}) == "VIP-ABCD"
    assert redeemed_code("Order Completed", {"total": 3}) == ""
    assert redeemed_code("Coupon Applied", {"coupon_id": "X"}) == ""  # applied to a cart is not redeemed
    assert event_skus({"products": [{"sku": "A"}, {"sku": ""}, "junk", {"product_id": "B"}], "sku": "C"}) == ["A", "C"]
    assert event_skus({"sku": 7}) == []


class _Ports:
    """Fakes of the two ports for the pure merge of companions (the real services are in the
    integration tests)."""

    def __init__(self, companions: dict[str, list[Companion]], products: dict[str, Product]) -> None:
        self._companions, self._products = companions, products
        self.calls = Counter()

    async def companions(self, workspace_id, sku, *, limit, min_lift):
        self.calls[sku] += 1
        return self._companions.get(sku, [])

    async def get_product(self, workspace_id, product_id):
        return self._products.get(product_id)


async def test_cross_sell_merges_companions_of_several_products_strongest_first():
    ports = _Ports(
        {
            "POLE": [Companion("BOOTS", 1.8, 0.6), Companion("JACKET", 1.2, 0.4), Companion("TENT", 1.1, 0.9)],
            "TENT": [Companion("POLE", 3.0, 0.5), Companion("JACKET", 1.5, 0.3), Companion("STOVE", 1.2, 0.2)],
        },
        {"BOOTS": Product("BOOTS", "Hiking boots", "outdoor/shoes", 59900, "CNY")},
    )
    cross_sell = CrossSell(ports, ports, ttl_seconds=60)
    items = await cross_sell.recommend("shop", ["POLE", "TENT", "POLE"], limit=3, min_lift=0)
    # The bought products themselves never; a companion of both at its best lift.
    assert [(i["sku"], i["lift"]) for i in items] == [("BOOTS", 1.8), ("JACKET", 1.5), ("STOVE", 1.2)]
    assert items[0]["name"] == "Hiking boots" and items[0]["price_minor"] == 59900
    assert items[1]["name"] == "JACKET"  # no such product in profile: the sku
    await cross_sell.recommend("shop", ["POLE"], limit=3, min_lift=0)
    assert ports.calls == {"POLE": 1, "TENT": 1}  # mined once per sku within the cache's time
    assert await cross_sell.recommend("shop", [], limit=3, min_lift=0) == []
