from itertools import count

import pytest

from cdp_identity.domain import Identifier, InvalidIdentifier, Resolver, collect_identifiers, normalise


def ids():
    counter = count(1)
    return lambda: f"p{next(counter)}"


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        ("email", "  Alice@Example.COM ", "alice@example.com"),
        ("phone", "138 0013-8000", "13800138000"),
        ("phone", "+86 138 0013 8000", "+8613800138000"),
        ("user_id", " u-1 ", "u-1"),
        ("user_id", 42, "42"),
    ],
)
def test_normalise(type_, raw, expected):
    assert normalise(type_, raw) == Identifier(type_, expected)


@pytest.mark.parametrize(
    ("type_", "raw", "reason"),
    [
        ("email", "not-an-email", "not an e-mail address"),
        ("phone", "12ab", "not a phone number"),
        ("user_id", "null", "blank value"),
        ("user_id", "   ", "blank value"),
        ("anonymous_id", "undefined", "blank value"),
        ("user_id", True, "value must be a string"),
        ("shoe_size", "42", "unknown identifier type"),
        ("user_id", "x" * 300, "longer than 256 characters"),
    ],
)
def test_invalid_values_are_rejected_with_a_reason(type_, raw, reason):
    with pytest.raises(InvalidIdentifier) as error:
        normalise(type_, raw)
    assert error.value.reason == reason


def test_collect_deduplicates_and_reports_rejections():
    collected = collect_identifiers(
        user_id="u1",
        anonymous_id="a1",
        traits={"email": "A@x.io", "phone": "bad"},
        context_traits={"email": "a@x.io"},
    )
    assert collected.identifiers == [
        Identifier("user_id", "u1"),
        Identifier("anonymous_id", "a1"),
        Identifier("email", "a@x.io"),
    ]
    assert [r.type for r in collected.rejected] == ["phone"]


def test_unknown_set_creates_a_person_and_later_sets_attach():
    resolver = Resolver({}, ids())
    first = resolver.resolve([Identifier("anonymous_id", "a1")])
    assert first.created and first.person_id == "p1"
    second = resolver.resolve([Identifier("anonymous_id", "a1"), Identifier("user_id", "u1")])
    assert not second.created
    assert second.person_id == "p1"
    assert second.attach == (Identifier("user_id", "u1"),)
    assert resolver.resolve([Identifier("user_id", "u1")]).person_id == "p1"


def test_highest_priority_match_wins_when_sets_span_persons():
    owners = {Identifier("anonymous_id", "a1"): "anon-person", Identifier("user_id", "u1"): "known-person"}
    decision = Resolver(owners, ids()).resolve(
        [Identifier("anonymous_id", "a1"), Identifier("user_id", "u1"), Identifier("email", "e@x.io")]
    )
    assert decision.person_id == "known-person"
    assert decision.attach == (Identifier("email", "e@x.io"),)


def test_empty_set_is_refused():
    with pytest.raises(ValueError):
        Resolver({}, ids()).resolve([])
