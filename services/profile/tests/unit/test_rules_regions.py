import pytest

from cdp_profile.regions import region_code
from cdp_profile.rules import InvalidRules, from_document, parse_condition, to_document


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("上海市浦东新区", "310115"),
        ("Shanghai", "310000"),
        ("浙江省杭州市西湖区文三路 90 号", "330106"),
        ("杭州西湖区", "330106"),
        ("西湖区", ""),  # Hangzhou's and Nanchang's: ambiguous alone
        ("北京朝阳区", "110105"),
        ("吉林省长春市朝阳区", "220104"),
        ("吉林市", "220200"),
        ("广东深圳南山", "440305"),
        ("内蒙古", "150000"),
        ("Guangzhou, Tianhe", "440100"),
        ("", ""),
        ("somewhere else", ""),
    ],
)
def test_region_codes_from_free_text(text, code):
    assert region_code(text) == code


def test_conditions():
    rule = parse_condition("order_count >= 2 and (tier == 'gold' or not has_tag.vip) and traits.city != \"x\"")
    assert rule({"order_count": 2, "tier": "silver", "traits.city": "y"})
    assert not rule({"order_count": 2, "tier": "silver", "has_tag.vip": True, "traits.city": "y"})
    assert not rule({"order_count": "2", "tier": "gold", "traits.city": "y"})  # a string is not a number
    assert not rule({})  # missing values compare false
    for bad in ("order_count >>= 2", "order_count >=", "(a > 1", "a > b", ""):
        with pytest.raises(ValueError):
            parse_condition(bad)


def test_settings_documents_validate_and_round_trip():
    document = {
        "currency": "JPY",
        "lifecycle": {"dormant_after_days": 60, "churned_after_days": 200},
        "tag_rules": [{"tag": "big-spender", "when": "total_spent_minor > 100000"}],
        "tiers": {"by": "spend_365d", "levels": [{"name": "gold", "min": 500}, {"name": "silver", "min": 100}]},
        "windowed_traits": [{"name": "spend_7d", "event": "Order Completed", "days": 7, "sum": "total"}],
    }
    settings = from_document(3, document)
    assert [level.name for level in settings.tiers.levels] == ["silver", "gold"]
    assert settings.tiers.window_days == 365 and settings.summed_events == {"Order Completed"}
    assert from_document(3, to_document(settings)) == settings
    for bad, field in (
        ({"currency": "yuan"}, "currency"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"lifecycle": {"dormant_after_days": 400}}, "lifecycle.churned_after_days"),
        ({"lifecycle": {"sleepy_after": 3}}, "lifecycle.sleepy_after"),
        ({"tag_rules": [{"tag": "x", "when": "a >"}]}, "tag_rules[0].when"),
        ({"tiers": {"by": "spend_999d", "levels": [{"name": "a", "min": 1}]}}, "tiers.by"),
        ({"points": {"per_currency_unit": -1}}, "points.per_currency_unit"),
        ({"windowed_traits": [{"name": "w", "event": "E", "days": 0}]}, "windowed_traits[0].days"),
    ):
        with pytest.raises(InvalidRules) as error:
            from_document(1, bad)
        assert error.value.field == field
