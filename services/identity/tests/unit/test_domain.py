from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from cdp_identity.domain import GraphState, PersonView, Resolver, needs_write
from cdp_identity.rules import DEFAULT_RULES, Guardrails, Identifier, TypePatch, apply_update

NOW = datetime(2026, 6, 18, 12, 0, tzinfo=UTC)


def ids(prefix="p"):
    counter = count(1)
    return lambda: f"{prefix}{next(counter):04d}"


def resolver(rules=DEFAULT_RULES, state=None):
    return Resolver(state or GraphState(), ids(), rules, now=lambda: NOW)


U = lambda v: Identifier("user_id", v)  # noqa: E731
PHONE = lambda v: Identifier("phone", v)  # noqa: E731
ANON = lambda v: Identifier("anonymous_id", v)  # noqa: E731
DEVICE = lambda v: Identifier("device_id", v)  # noqa: E731
UNION = lambda v: Identifier("wechat_unionid", v)  # noqa: E731
OPENID = lambda v: Identifier("wechat_openid", v)  # noqa: E731


def test_unknown_set_creates_a_person_and_later_sets_attach():
    r = resolver()
    first = r.resolve([ANON("a1")], "m1")
    assert first.created and first.person_id == "p0001"
    assert [(link.identifier, link.anchor) for link in first.links] == [(ANON("a1"), None)]
    second = r.resolve([ANON("a1"), U("u1")], "m2")
    assert not second.created and second.person_id == "p0001"
    assert second.attached == (U("u1"),)
    assert second.links[0].anchor == ANON("a1") and second.links[0].rule == "attach:user_id@v0"
    assert r.resolve([U("u1")], "m3").person_id == "p0001"


def test_pos_then_mini_program_then_app_login_merges_into_one_person():
    r = resolver()
    pos = r.resolve([PHONE("+8613912345678")], "pos-1")
    mini = r.resolve([OPENID("wxapp:o-1"), UNION("un-1")], "mini-1")
    assert pos.person_id != mini.person_id
    login = r.resolve([U("u-9"), PHONE("+8613912345678"), UNION("un-1")], "app-1")
    assert login.person_id == pos.person_id  # the older person survives
    # unionid (priority 90) brought the mini-program person in first; the phone joined the POS person.
    assert [(m.survivor, m.merged, m.bridge, m.anchor, m.message_id) for m in login.merges] == [
        (pos.person_id, mini.person_id, UNION("un-1"), PHONE("+8613912345678"), "app-1")
    ]
    assert login.merges[0].rule == "bridge:wechat_unionid@v0"
    assert login.attached == (U("u-9"),)
    # user_id hangs from the unionid: its home is the mini-program person, whoever holds it now.
    assert login.links[0].anchor == UNION("un-1") and login.links[0].home == mini.person_id
    assert r.resolve([OPENID("wxapp:o-1")], "mini-2").person_id == pos.person_id


def test_survivor_is_the_lowest_person_id_whatever_the_order():
    for order in ([UNION("x"), PHONE("+8613912345678")], [PHONE("+8613912345678"), UNION("x")]):
        state = GraphState(
            owners={UNION("x"): "p9", PHONE("+8613912345678"): "p2"},
            persons={
                "p9": PersonView("p9", links=[("wechat_unionid", NOW)]),
                "p2": PersonView("p2", links=[("phone", NOW)]),
            },
        )
        outcome = resolver(state=state).resolve(order, "m")
        assert outcome.person_id == "p2" and [m.merged for m in outcome.merges] == ["p9"]


def test_two_different_user_ids_never_merge_and_a_conflict_is_recorded():
    r = resolver()
    a = r.resolve([U("u1"), PHONE("+8613912345678")], "m1")
    b = r.resolve([U("u2")], "m2")
    joined = r.resolve([U("u1"), U("u2")], "m3")
    assert joined.person_id == a.person_id and not joined.merges
    assert [(c.kind, c.identifier) for c in joined.conflicts] == [("limit", U("u2"))]
    # A new user id next to another user's phone: its own person, the phone stays.
    other = r.resolve([U("u3"), PHONE("+8613912345678")], "m4")
    assert other.created and other.person_id not in (a.person_id, b.person_id)
    assert [(c.kind, c.other_person_id) for c in other.conflicts] == [("limit", a.person_id)]
    assert r.state.owner(PHONE("+8613912345678")) == a.person_id


def test_shared_family_tablet_does_not_glue_two_members():
    r = resolver()
    mum = r.resolve([U("mum"), DEVICE("tablet")], "m1")
    kid = r.resolve([U("kid"), DEVICE("tablet")], "m2")
    assert kid.person_id != mum.person_id and not kid.merges
    assert kid.skipped == [(DEVICE("tablet"), "weak identifier does not bridge two known persons")]
    # A known person on the tablet with another known person's anonymous id: still not glued.
    r.resolve([U("kid"), ANON("kid-browser")], "m3")
    both = r.resolve([ANON("kid-browser"), DEVICE("tablet")], "m4")
    assert not both.merges
    assert both.skipped[0][1] == "weak identifier does not bridge two known persons"


def test_a_shared_terminal_id_does_not_carry_a_new_phone_onto_the_last_customer():
    r = resolver()
    first = r.resolve([ANON("pos-terminal-7"), PHONE("+8613912345678")], "m1")
    second = r.resolve([ANON("pos-terminal-7"), PHONE("+8613712345678")], "m2")
    assert second.created and second.person_id != first.person_id
    assert r.state.owner(PHONE("+8613912345678")) == first.person_id


def test_an_anonymous_visitor_who_gives_an_email_keeps_one_person():
    r = resolver()
    visit = r.resolve([ANON("a1")], "m1")
    signup = r.resolve([ANON("a1"), Identifier("email", "x@y.io")], "m2")
    assert signup.person_id == visit.person_id and signup.attached == (Identifier("email", "x@y.io"),)


def test_weak_id_may_absorb_an_anonymous_person_into_a_known_one():
    r = resolver()
    anon = r.resolve([ANON("a1")], "m1")
    known = r.resolve([U("u1"), ANON("a2")], "m2")
    login = r.resolve([ANON("a2"), ANON("a1")], "m3")
    assert login.person_id == min(anon.person_id, known.person_id)
    assert len(login.merges) == 1


def test_guardrail_quarantines_instead_of_growing():
    rules = apply_update(DEFAULT_RULES, guardrails=Guardrails(max_identifiers_per_person=3, max_merges_per_person=5))
    r = resolver(rules)
    a = r.resolve([U("u1"), PHONE("+8613912345678")], "m1")
    b = r.resolve([Identifier("email", "x@y.io"), Identifier("jd_pin", "j1")], "m2")
    merged = r.resolve([PHONE("+8613912345678"), Identifier("email", "x@y.io")], "m3")
    assert not merged.merges and merged.person_id == a.person_id
    # Both hold 2 identifiers; 4 > 3: the tie goes to the higher id, b.
    assert merged.quarantined == [(b.person_id, "a merge would give it more than 3 identifiers")]
    assert [c.kind for c in merged.conflicts] == ["guardrail"]
    more = r.resolve([Identifier("jd_pin", "j1"), Identifier("taobao_ouid", "t1")], "m4")
    assert more.person_id == b.person_id and more.attached == ()
    assert more.skipped == [(Identifier("taobao_ouid", "t1"), "person is quarantined")]


def test_windowed_limit_counts_only_recent_links():
    rules = apply_update(DEFAULT_RULES, types=[TypePatch("device_id", max_per_person=2, window_days=30)])
    old = NOW - timedelta(days=90)
    state = GraphState(
        owners={U("u1"): "p1"},
        persons={"p1": PersonView("p1", links=[("user_id", old), ("device_id", old), ("device_id", old)])},
    )
    r = resolver(rules, state)
    outcome = r.resolve([U("u1"), DEVICE("d3"), DEVICE("d4")], "m")
    assert outcome.attached == (DEVICE("d3"), DEVICE("d4"))
    again = r.resolve([U("u1"), DEVICE("d5")], "m2")
    assert again.attached == () and again.conflicts[0].kind == "limit"


def test_separated_persons_are_not_merged_again():
    state = GraphState(
        owners={U("u1"): "p1", PHONE("+8613912345678"): "p2"},
        persons={"p1": PersonView("p1", links=[("user_id", NOW)]), "p2": PersonView("p2", links=[("phone", NOW)])},
        separated={frozenset(("p1", "p2"))},
    )
    outcome = resolver(state=state).resolve([U("u1"), PHONE("+8613912345678")], "m")
    assert outcome.person_id == "p1" and not outcome.merges
    assert outcome.conflicts[0].kind == "separated"


def test_blocked_only_set_resolves_to_nobody():
    state = GraphState(blocked={PHONE("+8613912345678")})
    outcome = resolver(state=state).resolve([PHONE("+8613912345678")], "m")
    assert outcome.person_id == "" and outcome.skipped


def test_replaying_a_set_changes_nothing():
    r = resolver()
    r.resolve([U("u1"), PHONE("+8613912345678")], "m1")
    assert not needs_write(r.state, [U("u1"), PHONE("+8613912345678")])
    again = r.resolve([U("u1"), PHONE("+8613912345678")], "m1")
    assert not again.created and not again.links and not again.merges and not again.conflicts


def test_empty_set_is_refused():
    with pytest.raises(ValueError):
        resolver().resolve([], "m")


def _crowded(names):
    """The review's case: u on a person with 4 identifiers, b alone, c with 2 (guardrail 6)."""
    a, b, c = names
    return GraphState(
        owners={U("u"): a, Identifier("email", "b@x.io"): b, Identifier("email", "c@x.io"): c},
        persons={
            a: PersonView(a, links=[("user_id", NOW)] + [("jd_pin", NOW)] * 3),
            b: PersonView(b, links=[("email", NOW)]),
            c: PersonView(c, links=[("email", NOW)] * 2),
        },
    )


@pytest.mark.parametrize("names", [("pA", "pB", "pC"), ("p2", "p1", "p3")])
def test_a_cluster_that_would_exceed_a_guardrail_quarantines_its_survivor_and_takes_nobody_else(names):
    rules = apply_update(DEFAULT_RULES, guardrails=Guardrails(max_identifiers_per_person=6, max_merges_per_person=50))
    state = _crowded(names)
    a, b, c = names
    outcome = resolver(rules, state).resolve(
        [U("u"), Identifier("email", "b@x.io"), Identifier("email", "c@x.io")], "m"
    )
    survivor = min(a, b)
    # u's person and b joined first (5 identifiers); c would make 7: the cluster is the bigger side.
    assert outcome.person_id == survivor and [(m.survivor, m.merged) for m in outcome.merges] == [(survivor, max(a, b))]
    assert outcome.quarantined == [(survivor, "a merge would give it more than 6 identifiers")]
    assert state.persons[survivor].quarantined and max(a, b) in state.merged_into
    assert not state.persons[c].quarantined and c not in state.merged_into
    assert [(x.kind, x.other_person_id) for x in outcome.conflicts] == [("guardrail", c)]


def test_reaching_the_identifier_cap_quarantines_the_person_and_leaves_the_rest_unattached():
    rules = apply_update(DEFAULT_RULES, guardrails=Guardrails(max_identifiers_per_person=3, max_merges_per_person=5))
    r = resolver(rules)
    person = r.resolve([U("u"), Identifier("email", "a@x.io")], "m1").person_id
    full = r.resolve([U("u"), Identifier("jd_pin", "j1"), Identifier("jd_pin", "j2")], "m2")
    assert full.attached == (Identifier("jd_pin", "j1"),)
    assert full.quarantined == [(person, "would hold more than 3 identifiers")]
    assert [(c.kind, c.identifier) for c in full.conflicts] == [("guardrail", Identifier("jd_pin", "j2"))]


def test_a_person_over_a_lowered_limit_still_resolves_and_takes_other_types():
    rules = apply_update(DEFAULT_RULES, types=[TypePatch("phone", max_per_person=1)])
    phones = [PHONE("+8613912345678"), PHONE("+8613712345678")]
    state = GraphState(
        owners={phones[0]: "p1", phones[1]: "p1"},
        persons={"p1": PersonView("p1", links=[("phone", NOW), ("phone", NOW)])},
    )
    r = resolver(rules, state)
    alone = r.resolve([phones[0]], "m1")
    assert alone.person_id == "p1" and not alone.conflicts
    more = r.resolve([phones[1], Identifier("email", "x@y.io")], "m2")
    assert more.person_id == "p1" and more.attached == (Identifier("email", "x@y.io"),) and not more.conflicts
    third = r.resolve([phones[0], PHONE("+8613987654321")], "m3")
    assert third.attached == () and [c.kind for c in third.conflicts] == ["limit"]
