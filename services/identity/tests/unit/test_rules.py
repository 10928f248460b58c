import pytest

from cdp_identity.rules import (
    DEFAULT_RULES,
    Identifier,
    InvalidIdentifier,
    InvalidRules,
    TypePatch,
    apply_update,
    collect_identifiers,
    from_document,
    normalise,
    to_document,
)


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        ("email", "  Alice@Example.COM ", "alice@example.com"),
        ("phone", "139 1234-5678", "+8613912345678"),
        ("phone", "+86 139 1234 5678", "+8613912345678"),
        ("phone", "+1 650-253-0000", "+16502530000"),
        ("user_id", " u-1 ", "u-1"),
        ("user_id", 42, "42"),
        ("device_id", "ABCD-ef", "abcd-ef"),
        ("wechat_openid", "wx1234:oAbC-123", "wx1234:oAbC-123"),
    ],
)
def test_normalise(type_, raw, expected):
    assert normalise(DEFAULT_RULES, type_, raw) == Identifier(type_, expected)


@pytest.mark.parametrize(
    ("type_", "raw", "reason"),
    [
        ("email", "not-an-email", "not an e-mail address"),
        ("phone", "12ab", "not a phone number"),
        ("phone", "12345", "not a valid phone number (default region CN)"),
        ("phone", "13800138000", "blocked value"),
        ("phone", "+86 130 0000 0000", "blocked by pattern"),
        ("user_id", "null", "blank value"),
        ("user_id", "   ", "blank value"),
        ("anonymous_id", "undefined", "blank value"),
        ("anonymous_id", "Anonymous", "blocked value"),
        ("user_id", "0", "blocked value"),
        ("user_id", True, "value must be a string"),
        ("shoe_size", "42", "unknown identifier type"),
        ("user_id", "x" * 300, "longer than 256 characters"),
        ("wechat_openid", "o-123456", "must be scoped by app id"),
    ],
)
def test_invalid_and_blocked_values_are_rejected_with_a_reason(type_, raw, reason):
    with pytest.raises(InvalidIdentifier) as error:
        normalise(DEFAULT_RULES, type_, raw)
    assert error.value.reason.startswith(reason)


def test_custom_types_and_blocked_patterns_come_from_the_rules():
    rules = apply_update(
        DEFAULT_RULES,
        types=[
            TypePatch("external:crm_id", priority=85, max_per_person=1, blocked_patterns=(r"test-.*",)),
            TypePatch("device_id", enabled=False),
        ],
    )
    assert rules.version == 1
    assert normalise(rules, "external:crm_id", " C-9 ") == Identifier("external:crm_id", "C-9")
    with pytest.raises(InvalidIdentifier, match="blocked by pattern"):
        normalise(rules, "external:crm_id", "test-1")
    with pytest.raises(InvalidIdentifier, match="disabled"):
        normalise(rules, "device_id", "d1")
    assert from_document(1, to_document(rules)) == rules


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (TypePatch("device_id", bridge=True), "identifier_types[0].bridge"),
        (TypePatch("phone", pii=False), "identifier_types[0].pii"),
        (TypePatch("crm", priority=1), "identifier_types[0].name"),
        (TypePatch("external:x", priority=5000), "identifier_types[0].priority"),
        (TypePatch("external:x", blocked_patterns=("(",)), "identifier_types[0].blocked_patterns[0]"),
        (TypePatch("external:x", normaliser="soundex"), "identifier_types[0].normaliser"),
    ],
)
def test_bad_rules_name_the_field(patch, field):
    with pytest.raises(InvalidRules) as error:
        apply_update(DEFAULT_RULES, types=[patch])
    assert error.value.field == field


def test_custom_pii_flag_is_fixed_once_created():
    rules = apply_update(DEFAULT_RULES, types=[TypePatch("external:idcard", pii=True)])
    with pytest.raises(InvalidRules, match="cannot change"):
        apply_update(rules, types=[TypePatch("external:idcard", pii=False)])


def test_collect_reads_every_source_and_reports_rejections():
    rules = apply_update(DEFAULT_RULES, types=[TypePatch("external:crm_id")])
    collected = collect_identifiers(
        rules,
        user_id="u1",
        anonymous_id="a1",
        traits={
            "email": "A@x.io",
            "phone": "bad",
            "wechatUnionId": "un-1",
            "wechat_openid": "o-777",
            "wechat_app_id": "wxapp",
        },
        context={
            "traits": {"email": "a@x.io", "member_no": "M-1"},
            "device": {"id": "IDFA-1"},
            "externalIds": [
                {"type": "crm_id", "id": "c1"},
                {"type": "jd_pin", "id": "jd-1"},
                {"type": "nope", "id": "x"},
            ],
        },
    )
    assert set(collected.identifiers) == {
        Identifier("user_id", "u1"),
        Identifier("anonymous_id", "a1"),
        Identifier("email", "a@x.io"),
        Identifier("wechat_unionid", "un-1"),
        Identifier("wechat_openid", "wxapp:o-777"),
        Identifier("member_no", "M-1"),
        Identifier("device_id", "idfa-1"),
        Identifier("external:crm_id", "c1"),
        Identifier("jd_pin", "jd-1"),
    }
    assert sorted((r.type, r.reason.split(" (")[0]) for r in collected.rejected) == [
        ("external:nope", "unknown identifier type"),
        ("phone", "not a phone number"),
    ]


def test_a_custom_types_normaliser_is_fixed_once_it_exists():
    rules = apply_update(DEFAULT_RULES, types=[TypePatch("external:crm", normaliser="lower")])
    with pytest.raises(InvalidRules) as error:
        apply_update(rules, types=[TypePatch("external:crm", normaliser="plain")])
    assert error.value.field == "identifier_types[0].normaliser"
    assert (
        apply_update(rules, types=[TypePatch("external:crm", priority=80)]).types["external:crm"].normaliser == "lower"
    )


def test_the_builtin_junk_values_stay_blocked_whatever_an_update_sends():
    # An operator sets only a pattern for user_id (the API replaces both lists) ...
    rules = apply_update(
        DEFAULT_RULES, types=[TypePatch("user_id", blocked_values=(), blocked_patterns=(r"test-\d+",))]
    )
    for junk in ("null", "undefined", "0", "anonymous", " NULL "):
        with pytest.raises(InvalidIdentifier):
            normalise(rules, "user_id", junk)
    assert "null" in rules.types["user_id"].blocked_values  # and the rules show them
    phone = apply_update(
        DEFAULT_RULES, types=[TypePatch("phone", blocked_values=("+8613912345678",), blocked_patterns=())]
    )
    for test_number in ("13800138000", "13333333333"):
        with pytest.raises(InvalidIdentifier):
            normalise(phone, "phone", test_number)
    # ... and rules stored before this was enforced are enforced too.
    document = to_document(rules)
    document["types"] = [{**t, "blocked_values": [], "blocked_patterns": []} for t in document["types"]]
    with pytest.raises(InvalidIdentifier, match="blank value"):
        normalise(from_document(1, document), "user_id", "null")


@pytest.mark.parametrize("pattern", [r"(a+)+", r"(a|a)*", r"(?:\d*)*x", r"(ab|cd)+$", r"(a{1,3}){2,}"])
def test_patterns_that_backtrack_exponentially_are_refused(pattern):
    with pytest.raises(InvalidRules, match="exponential"):
        apply_update(DEFAULT_RULES, types=[TypePatch("user_id", blocked_patterns=(pattern,))])


def test_errors_name_the_field_and_never_echo_the_value():
    with pytest.raises(InvalidIdentifier) as error:
        normalise(DEFAULT_RULES, "external:nope", "x")
    assert error.value.field == "type"
    # email-validator's IDNA errors quote the (decoded) domain: the detail is dropped.
    with pytest.raises(InvalidIdentifier) as error:
        normalise(DEFAULT_RULES, "email", "li@xn--secret.com")
    assert error.value.field == "value"
    assert error.value.reason == "not an e-mail address (The part after the @-sign is not valid IDNA.)"


def test_an_event_with_too_many_identifiers_keeps_the_first_fifty():
    external = [{"type": "jd_pin", "id": f"j{i}"} for i in range(45)] + [
        {"type": "taobao_ouid", "id": f"t{i}"} for i in range(10)
    ]
    collected = collect_identifiers(DEFAULT_RULES, user_id="u", context={"externalIds": external})
    assert len(collected.identifiers) == 50 and collected.identifiers[0] == Identifier("user_id", "u")
    assert {e.reason for e in collected.rejected} == {"more than 50 identifiers on one event"}
