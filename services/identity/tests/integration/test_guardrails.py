"""Guardrails through the service: the person quarantined is the one that exists afterwards."""

from __future__ import annotations

from cdp.identity.v1 import identity_pb2

WS = "shop"


async def set_guardrails(h, identifiers: int, merges: int) -> None:
    await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(
            rules=identity_pb2.IdentityRules(
                name=f"workspaces/{WS}/identityRules",
                guardrails=identity_pb2.Guardrails(
                    max_identifiers_per_person=identifiers, max_merges_per_person=merges
                ),
            ),
            update_mask={"paths": ["guardrails"]},
        )
    )


async def test_guardrails_quarantine_the_person_that_exists_afterwards(identity):
    h = identity
    await h.start_listening()
    # Reaching the identifier cap quarantines the person.
    await set_guardrails(h, 3, 10)
    (person,) = await h.resolve([("user_id", "u"), ("email", "a@x.io")], message_ids=["c1"])
    (full,) = await h.resolve([("user_id", "u"), ("jd_pin", "j1"), ("jd_pin", "j2")], message_ids=["c2"])
    assert full.person_id == person.person_id
    assert [(c.kind, c.identifier.value) for c in full.conflicts] == [("guardrail", "j2")]
    (announced,) = await h.announcements("person_quarantined", 1)
    assert announced.person_id == person.person_id and announced.trigger_message_id == "c2"
    stored = await h.person(person.person_id)
    assert stored.state == identity_pb2.Person.STATE_QUARANTINED
    assert h.pairs(stored) == {("user_id", "u"), ("email", "a@x.io"), ("jd_pin", "j1")}
    assert not await h.sql("SELECT 1 FROM identity.identifiers WHERE id_value = 'j2'")

    # A cluster over a guardrail quarantines the survivor it becomes, never a merged-away id:
    # b's person is the oldest, so the survivor; u's person holds 4 identifiers; c's person 2.
    await set_guardrails(h, 6, 50)
    (b,) = await h.resolve([("email", "b@x.io")], message_ids=["q1"])
    (a,) = await h.resolve([("user_id", "v"), ("jd_pin", "1"), ("jd_pin", "2"), ("jd_pin", "3")], message_ids=["q2"])
    (c,) = await h.resolve([("email", "c@x.io"), ("taobao_ouid", "t")], message_ids=["q3"])
    (event,) = await h.resolve([("user_id", "v"), ("email", "b@x.io"), ("email", "c@x.io")], message_ids=["q4"])
    assert event.person_id == b.person_id and list(event.merged_person_ids) == [a.person_id]
    assert [(x.kind, x.other_person_id) for x in event.conflicts] == [("guardrail", c.person_id)]
    (announced,) = await h.announcements("person_quarantined", 1)
    assert announced.person_id == b.person_id
    states = {r["p"]: r["status"] for r in await h.sql("SELECT person_id::text AS p, status FROM identity.persons")}
    assert states == {
        person.person_id: "quarantined",
        b.person_id: "quarantined",
        a.person_id: "merged",
        c.person_id: "active",
    }
