"""OneID end to end inside the identity service: real PostgreSQL, NATS JetStream and gRPC.

The "Done when" scenarios of issue 3: POS -> mini-program -> app login becomes one person with
an explained merge log; a shared tablet and two user ids never glue people; blocked and invalid
values are ignored with a reason; unmerge restores two persons and announces it; replays change
nothing; 200+ concurrent overlapping resolves converge on one person.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import grpc
import nats
import pytest
from prometheus_client import REGISTRY

from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_identity import __main__ as identity_main
from cdpkit.bus import IDENTITY

WS = "shop"
TYPES = ("anonymous_id", "phone", "email", "wechat_unionid")


async def test_pos_then_mini_program_then_app_login_is_one_person_with_an_explained_merge_log(identity):
    h = identity
    await h.start_listening()
    await h.publish(h.raw("pos-1", anonymous_id="pos-order-991", traits={"phone": "139 1234 5678"}))
    await h.publish(
        h.raw(
            "mini-1",
            anonymous_id="mp-session-1",
            traits={"wechat_openid": "o-abc123", "wechat_app_id": "wxshop", "wechat_unionid": "un-777"},
        )
    )
    first = await h.resolved(2)
    assert first[0].person_id != first[1].person_id
    await h.publish(
        h.raw(
            "app-1",
            user_id="u-42",
            anonymous_id="app-install-5",
            traits={"phone": "+86 139-1234-5678", "wechat_unionid": "un-777"},
        )
    )
    (login,) = await h.resolved(1)
    pos_person, mini_person = first[0].person_id, first[1].person_id
    assert login.person_id == min(pos_person, mini_person)  # the older person survives

    person = await h.stub.GetPerson(identity_pb2.GetPersonRequest(name=f"workspaces/{WS}/persons/{login.person_id}"))
    assert h.pairs(person) == {
        ("phone", "+8613912345678"),
        ("anonymous_id", "pos-order-991"),
        ("anonymous_id", "mp-session-1"),
        ("wechat_openid", "wxshop:o-abc123"),
        ("wechat_unionid", "un-777"),
        ("user_id", "u-42"),
        ("anonymous_id", "app-install-5"),
    }
    # The log explains each step: which message linked each identifier, under which rule ...
    links = {(link.identifier.type, link.identifier.value): link for link in person.identifier_links}
    assert links[("phone", "+8613912345678")].message_id == "pos-1"
    assert links[("phone", "+8613912345678")].rule == "new:phone@v0"
    assert links[("wechat_unionid", "un-777")].message_id == "mini-1"
    assert links[("user_id", "u-42")].message_id == "app-1"
    assert links[("user_id", "u-42")].rule == "attach:user_id@v0"
    # ... and which identifiers seen together on which message merged the two persons.
    (merge,) = person.merge_history
    assert merge.trigger_message_id == "app-1"
    assert merge.survivor_person_id == login.person_id
    assert merge.merged_person_id == max(pos_person, mini_person)
    assert {
        (merge.anchor_identifier.type, merge.anchor_identifier.value),
        (merge.bridging_identifier.type, merge.bridging_identifier.value),
    } == {("phone", "+8613912345678"), ("wechat_unionid", "un-777")}
    assert merge.rule.startswith("bridge:") and merge.state == identity_pb2.Merge.STATE_ACTIVE
    assert list(person.merged_person_ids) == [merge.merged_person_id]

    (announced,) = await h.announcements("persons_merged", 1)
    assert announced.merge_id == merge.merge_id and announced.trigger_message_id == "app-1"
    assert list(announced.merged_person_ids) == [merge.merged_person_id]

    # The merged-away id keeps resolving to the survivor.
    old = await h.stub.GetPerson(
        identity_pb2.GetPersonRequest(name=f"workspaces/{WS}/persons/{merge.merged_person_id}")
    )
    assert old.person_id == login.person_id and old.requested_person_id == merge.merged_person_id

    # PII at rest: no plaintext phone in the identity schema, and the sealed value opens only via the API.
    rows = await h.sql("SELECT id_value, sealed FROM identity.identifiers WHERE id_type = 'phone'")
    assert len(rows) == 1 and rows[0]["id_value"].startswith("h:") and b"13912345678" not in rows[0]["sealed"]
    merges = await h.sql("SELECT anchor_value, bridge_value FROM identity.merges")
    assert all("13912345678" not in v for r in merges for v in r.values())


async def test_a_shared_tablet_and_two_user_ids_never_glue_people(identity):
    h = identity
    await h.start_listening()
    mum, kid = await h.resolve(
        [("user_id", "mum"), ("device_id", "TABLET-1")],
        [("user_id", "kid"), ("device_id", "tablet-1")],
        message_ids=["t1", "t2"],
    )
    assert mum.person_id != kid.person_id and not kid.merged_person_ids
    assert kid.ignored == ["device_id: weak identifier does not bridge two known persons"]

    # Equal priority: the tie goes to the lower value ("kid"), and the other user id is a conflict.
    (both,) = await h.resolve([("user_id", "mum"), ("user_id", "kid")], message_ids=["t3"])
    assert both.person_id == kid.person_id and not both.merged_person_ids
    assert [(c.kind, c.identifier.value, c.other_person_id) for c in both.conflicts] == [
        ("limit", "mum", mum.person_id)
    ]
    (conflict,) = await h.announcements("conflict", 1)
    assert conflict.kind == "limit" and conflict.trigger_message_id == "t3"
    listed = await h.stub.ListIdentityConflicts(
        identity_pb2.ListIdentityConflictsRequest(parent=f"workspaces/{WS}", person_id=mum.person_id)
    )
    assert [c.trigger_message_id for c in listed.identity_conflicts] == ["t3"]
    persons = await h.sql("SELECT count(*) AS n FROM identity.persons WHERE status = 'active'")
    assert persons[0]["n"] == 2


async def test_blocked_and_invalid_values_are_ignored_with_a_reason(identity):
    h = identity
    await h.start_listening()
    ignored = {t: REGISTRY.get_sample_value("cdp_identity_identifiers_ignored_total", {"type": t}) or 0 for t in TYPES}
    unresolved = REGISTRY.get_sample_value("cdp_identity_events_unresolved_total") or 0
    dlq = await h.js.subscribe(h.names.dlq_subject("identity-raw"))
    await h.publish(
        h.raw(
            "b1",
            user_id="u-1",
            anonymous_id="undefined",
            traits={"phone": "13800138000", "email": "not-an-address", "wechat_unionid": "null"},
        ),
        h.raw("b2", anonymous_id="anonymous"),  # nothing usable at all
    )
    (resolved,) = await h.resolved(1)
    assert resolved.event.message_id == "b1"
    assert {(i.type, i.value) for i in resolved.identifiers} == {("user_id", "u-1")}
    assert [dict(r) for r in await h.sql("SELECT id_type FROM identity.identifiers")] == [{"id_type": "user_id"}]
    # b2 resolves to nobody: dead-lettered with the reason (never the value), not a resolved event.
    letter = await dlq.next_msg(timeout=10)
    (event,) = events_pb2.RawEventBatch.FromString(letter.data).events
    assert event.message_id == "b2" and letter.headers["Cdp-Message-Id"] == "b2"
    assert letter.headers["Cdp-Dlq-Reason"] == "no usable identifier (anonymous_id: blocked value)"
    with pytest.raises(nats.errors.TimeoutError):
        await h.resolved(1, timeout=0.5)
    # Every refused value is counted by type (and logged with the reason).
    assert {
        t: REGISTRY.get_sample_value("cdp_identity_identifiers_ignored_total", {"type": t}) - ignored[t] for t in TYPES
    } == {"anonymous_id": 2, "phone": 1, "email": 1, "wechat_unionid": 1}
    assert REGISTRY.get_sample_value("cdp_identity_events_unresolved_total") - unresolved == 1

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.resolve([("user_id", "u-1"), ("phone", "13800138000")])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "sets[0].identifiers[1]: blocked value"

    # Blocked patterns come from the rules; a new version applies at once.
    await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(
            rules=identity_pb2.IdentityRules(
                name=f"workspaces/{WS}/identityRules",
                identifier_types=[
                    identity_pb2.IdentifierTypeRule(
                        name="user_id", blocked=identity_pb2.BlockedValues(exact=["guest"], patterns=[r"test-\d+"])
                    )
                ],
            ),
            update_mask={"paths": ["identifier_types"]},
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.resolve([("user_id", "test-17")])
    assert error.value.details() == "sets[0].identifiers[0]: blocked by pattern 'test-\\\\d+'"
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.resolve([("user_id", "Guest")])
    assert error.value.details() == "sets[0].identifiers[0]: blocked value"
    # The update replaced both lists; the built-in junk values are still blocked.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.resolve([("user_id", "null")])
    assert error.value.details() == "sets[0].identifiers[0]: blank value"


async def test_unmerge_restores_two_persons_and_tells_downstream(identity):
    h = identity
    await h.start_listening()
    pos, mini = await h.resolve(
        [("phone", "13912345678")],
        [("wechat_unionid", "un-1"), ("wechat_openid", "wxa:o-0001")],
        message_ids=["pos-1", "mini-1"],
    )
    (login,) = await h.resolve(
        [("user_id", "u-1"), ("phone", "13912345678"), ("wechat_unionid", "un-1")], message_ids=["app-1"]
    )
    assert login.merged_person_ids == [max(pos.person_id, mini.person_id)]
    survivor, merged = login.person_id, login.merged_person_ids[0]
    merges = await h.stub.ListMerges(identity_pb2.ListMergesRequest(parent=f"workspaces/{WS}"))
    (merge,) = merges.merges

    undone = await h.stub.Unmerge(identity_pb2.UnmergeRequest(name=merge.name, reason="two people share a phone"))
    assert undone.merge.state == identity_pb2.Merge.STATE_UNDONE
    assert undone.merge.undo_reason == "two people share a phone"
    assert [p.person_id for p in undone.persons] == [survivor, merged]
    by_id = {p.person_id: h.pairs(p) for p in undone.persons}
    assert by_id[pos.person_id] == {("phone", "+8613912345678")}
    assert by_id[mini.person_id] >= {("wechat_unionid", "un-1"), ("wechat_openid", "wxa:o-0001")}
    # Everything is somewhere, once.
    assert by_id[survivor] | by_id[merged] == {
        ("phone", "+8613912345678"),
        ("wechat_unionid", "un-1"),
        ("wechat_openid", "wxa:o-0001"),
        ("user_id", "u-1"),
    }

    (split,) = await h.announcements("person_split", 1)
    assert (split.person_id, split.new_person_id, split.undone_merge_id) == (survivor, merged, merge.merge_id)
    assert {(i.type, i.value) for i in split.moved_identifiers} == by_id[merged]
    assert split.reason == "two people share a phone"

    # The restored person answers under its own id again ...
    again = await h.stub.GetPerson(identity_pb2.GetPersonRequest(name=f"workspaces/{WS}/persons/{merged}"))
    assert again.person_id == merged and not again.requested_person_id
    # ... a replay of the message that merged them changes nothing ...
    (replay,) = await h.resolve(
        [("user_id", "u-1"), ("phone", "13912345678"), ("wechat_unionid", "un-1")], message_ids=["app-1"]
    )
    # (it resolves read-only to the holder of its best identifier, user_id, which went with the unionid)
    assert not replay.merged_person_ids and not replay.conflicts and replay.person_id == mini.person_id
    # ... and a new event with both sides is refused: an operator split them.
    (fresh,) = await h.resolve([("phone", "13912345678"), ("wechat_unionid", "un-1")], message_ids=["app-2"])
    assert not fresh.merged_person_ids and [c.kind for c in fresh.conflicts] == ["separated"]

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.stub.Unmerge(identity_pb2.UnmergeRequest(name=merge.name))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_removing_a_bridging_identifier_splits_the_person_and_blocking_keeps_it_out(identity):
    h = identity
    await h.start_listening()
    a, b = await h.resolve([("user_id", "a")], [("email", "b@shop.io"), ("jd_pin", "jd-b")], message_ids=["r1", "r2"])
    (both,) = await h.resolve([("email", "b@shop.io"), ("member_no", "M-1"), ("user_id", "a")], message_ids=["r3"])
    assert both.merged_person_ids == [max(a.person_id, b.person_id)]
    person = await h.stub.GetPerson(identity_pb2.GetPersonRequest(name=f"workspaces/{WS}/persons/{both.person_id}"))
    bridge = person.merge_history[0].bridging_identifier

    removed = await h.stub.RemoveIdentifier(
        identity_pb2.RemoveIdentifierRequest(name=person.name, identifier=bridge, block=True, reason="wrong link")
    )
    assert len(removed.persons) == 2 and removed.undone_merge_ids == [person.merge_history[0].merge_id]
    assert all((bridge.type, bridge.value) not in h.pairs(p) for p in removed.persons)
    await h.announcements("person_split", 1)
    # Blocked: the value is ignored from now on (the event resolves through its other identifier).
    (later,) = await h.resolve([(bridge.type, bridge.value), ("member_no", "M-1")], message_ids=["r4"])
    assert later.ignored == [f"{bridge.type}: removed and blocked by an operator"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.stub.RemoveIdentifier(identity_pb2.RemoveIdentifierRequest(name=person.name, identifier=bridge))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND

    # An operator unblocks it: the next event carrying it links it again.
    unblocked = await h.stub.UnblockIdentifier(
        identity_pb2.UnblockIdentifierRequest(parent=f"workspaces/{WS}", identifier=bridge)
    )
    assert (unblocked.identifier, unblocked.blocked_reason) == (bridge, "wrong link")
    (relinked,) = await h.resolve([(bridge.type, bridge.value), ("member_no", "M-1")], message_ids=["r5"])
    assert relinked.person_id == later.person_id and not relinked.ignored
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.stub.UnblockIdentifier(
            identity_pb2.UnblockIdentifierRequest(parent=f"workspaces/{WS}", identifier=bridge)
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_replaying_the_same_raw_events_changes_nothing(identity):
    h = identity
    await h.start_listening()
    events = [
        h.raw("e1", anonymous_id="a1", traits={"email": "x@shop.io"}),
        h.raw("e2", user_id="u1"),
        h.raw("e3", user_id="u1", traits={"email": "x@shop.io", "phone": "13912345678"}),  # merges e1's and e2's
        h.raw("e4", user_id="u2", traits={"phone": "13912345678"}),  # conflict: another user's phone
        h.raw("e5", user_id="u1", context={"device": {"id": "d-1"}}),
    ]

    async def settled() -> tuple[dict, int]:
        """The graph tables, and how many announcements were published, once the outbox is empty."""
        for _ in range(100):
            if not await h.sql("SELECT 1 FROM identity.outbox"):
                break
            await asyncio.sleep(0.05)
        tables = {}
        for table, order in (
            ("persons", "person_id"),
            ("identifiers", "id_type, id_value"),
            ("merges", "merge_id"),
            ("conflicts", "conflict_id"),
            ("separations", "person_a"),
            ("removals", "removal_id"),
        ):
            tables[table] = [dict(r) for r in await h.sql(f"SELECT * FROM identity.{table} ORDER BY {order}")]
        return tables, (await h.js.stream_info(h.names.stream(IDENTITY))).state.messages

    async def replay(chunk: str) -> dict[str, str]:
        await h.publish(*events, msg_id=chunk)  # a new chunk id: JetStream does not de-duplicate it
        again = await h.resolved(5)
        assert sorted(r.event.message_id for r in again) == ["e1", "e2", "e3", "e4", "e5"]
        return {r.event.message_id: r.person_id for r in again}

    await h.publish(*events, msg_id="first")
    first = {r.event.message_id: r.person_id for r in await h.resolved(5)}
    before, announced = await settled()
    assert len(before["merges"]) == 1 and len(before["conflicts"]) == 1 and announced >= 5
    now = await replay("second")
    # Every replayed event resolves to the person that now holds its identifiers ...
    assert now["e1"] == now["e2"] == now["e3"] == now["e5"] == first["e3"] != now["e4"]
    # ... and nothing in the graph changed, nothing was announced.
    assert await settled() == (before, announced)

    # After an unmerge, replaying the message that merged still changes nothing: no conflict
    # "separated", no announcement (the journal answers it read-only).
    (merge,) = (await h.stub.ListMerges(identity_pb2.ListMergesRequest(parent=f"workspaces/{WS}"))).merges
    await h.stub.Unmerge(identity_pb2.UnmergeRequest(name=merge.name, reason="test"))
    before, announced = await settled()
    await replay("third")
    assert await settled() == (before, announced)

    # After a removal without blocking, a replay does not link the identifier again.
    await h.stub.RemoveIdentifier(
        identity_pb2.RemoveIdentifierRequest(
            name=f"workspaces/{WS}/persons/{first['e2']}",  # u1's person, restored by the unmerge
            identifier=events_pb2.Identifier(type="device_id", value="d-1"),
        )
    )
    before, announced = await settled()
    assert not await h.sql("SELECT 1 FROM identity.identifiers WHERE id_type = 'device_id'")
    await replay("fourth")
    assert await settled() == (before, announced)

    # Through the API, a message id reused with other identifiers is refused, not answered
    # read-only as a replay.
    (api,) = await h.resolve([("user_id", "api-u1"), ("email", "a@x.io")], message_ids=["api-1"])
    (same,) = await h.resolve([("email", "A@x.io"), ("user_id", "api-u1")], message_ids=["api-1"])
    assert same.person_id == api.person_id  # the same set again: a replay, answered read-only
    for sets in ([[("user_id", "api-u2")]], [[("user_id", "api-u3")], [("user_id", "api-u1"), ("email", "b@x.io")]]):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await h.resolve(*sets, message_ids=["x", "api-1"][-len(sets) :])
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == (
            f"sets[{len(sets) - 1}].message_id: was resolved before with other identifiers; use a new message id"
        )
    with pytest.raises(grpc.aio.AioRpcError) as error:  # twice in one call, with other identifiers
        await h.resolve([("user_id", "api-u4")], [("user_id", "api-u5")], message_ids=["api-2", "api-2"])
    assert error.value.details() == "sets[1].message_id: sets[0] has it with other identifiers"
    # Nothing of the refused calls was stored.
    rows = await h.sql("SELECT id_value FROM identity.identifiers WHERE id_type = 'user_id' ORDER BY 1")
    assert [r["id_value"] for r in rows] == ["api-u1", "u1", "u2"]


@pytest.mark.parametrize("locking", ["rows", "workspace"])
async def test_concurrent_overlapping_resolves_converge_on_one_person(start_identity, locking):
    await _converge(await start_identity(CDP_IDENTITY_LOCKING=locking))


async def _converge(h) -> None:
    # A custom type without a limit: a chain 0-1, 1-2, ..., 249-250 must end as one person.
    await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(
            rules=identity_pb2.IdentityRules(
                name=f"workspaces/{WS}/identityRules",
                identifier_types=[identity_pb2.IdentifierTypeRule(name="external:card", priority=70, max_per_person=0)],
                guardrails=identity_pb2.Guardrails(max_identifiers_per_person=10_000, max_merges_per_person=10_000),
            )
        )
    )
    tasks = 250
    order = list(range(tasks))
    order = order[::2] + order[1::2]  # neighbours run in different waves

    async def one(i: int):
        return await h.resolve([("external:card", f"c{i}"), ("external:card", f"c{i + 1}")])

    results = await asyncio.gather(*(one(i) for i in order))
    assert len(results) == tasks
    rows = await h.sql(
        "SELECT person_id::text AS p, count(*) AS n FROM identity.identifiers WHERE workspace_id = $1 GROUP BY 1", WS
    )
    assert len(rows) == 1 and rows[0]["n"] == tasks + 1
    (survivor,) = rows
    persons = await h.sql("SELECT person_id::text AS p, status, merged_into::text AS m FROM identity.persons")
    active = [p for p in persons if p["status"] == "active"]
    assert [p["p"] for p in active] == [survivor["p"]]
    assert all(p["m"] == survivor["p"] for p in persons if p["status"] == "merged")
    # The survivor is the oldest person; merges = persons created - 1.
    assert survivor["p"] == min(p["p"] for p in persons)
    merges = await h.sql("SELECT count(*) AS n FROM identity.merges")
    assert merges[0]["n"] == len(persons) - 1
    # Every id resolves to it now.
    again = await h.resolve(*[[("external:card", f"c{i}")] for i in range(0, tasks + 1, 25)])
    assert {r.person_id for r in again} == {survivor["p"]}


async def test_rules_are_versioned_and_guarded(identity):
    h = identity
    name = f"workspaces/{WS}/identityRules"
    current = await h.stub.GetIdentityRules(identity_pb2.GetIdentityRulesRequest(name=name))
    assert current.version == 0 and current.default_phone_region == "CN"
    assert [t.name for t in current.identifier_types][:3] == ["user_id", "member_no", "wechat_unionid"]
    phone = next(t for t in current.identifier_types if t.name == "phone")
    assert phone.pii and phone.bridge and phone.max_per_person == 3 and "+8613800138000" in phone.blocked.exact

    updated = await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(
            rules=identity_pb2.IdentityRules(
                name=name,
                etag=current.etag,
                comment="CRM ids",
                identifier_types=[identity_pb2.IdentifierTypeRule(name="external:crm", priority=85, max_per_person=1)],
            ),
            update_mask={"paths": ["identifier_types", "comment"]},
        )
    )
    assert updated.version == 1 and updated.comment == "CRM ids"
    crm = next(t for t in updated.identifier_types if t.name == "external:crm")
    assert (crm.priority, crm.max_per_person, crm.bridge, crm.pii, crm.builtin) == (85, 1, True, False, False)
    second = await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(
            rules=identity_pb2.IdentityRules(name=name, etag=updated.etag, default_phone_region="HK"),
            update_mask={"paths": ["default_phone_region"]},
        )
    )
    assert second.version == 2 and second.default_phone_region == "HK"
    old = await h.stub.GetIdentityRules(identity_pb2.GetIdentityRulesRequest(name=name, version=1))
    assert old.default_phone_region == "CN" and "external:crm" in [t.name for t in old.identifier_types]
    with pytest.raises(grpc.aio.AioRpcError) as error:  # stale etag
        await h.stub.UpdateIdentityRules(
            identity_pb2.UpdateIdentityRulesRequest(rules=identity_pb2.IdentityRules(name=name, etag=current.etag))
        )
    assert error.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.stub.UpdateIdentityRules(
            identity_pb2.UpdateIdentityRulesRequest(
                rules=identity_pb2.IdentityRules(
                    name=name, identifier_types=[identity_pb2.IdentifierTypeRule(name="anonymous_id", bridge=True)]
                ),
                update_mask={"paths": ["identifier_types"]},
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("rules.identifier_types[0].bridge:")
    assert (await h.stub.GetIdentityRules(identity_pb2.GetIdentityRulesRequest(name=name))).version == 2


async def test_guardrail_quarantines_a_person_instead_of_growing(identity):
    h = identity
    await h.start_listening()
    await h.stub.UpdateIdentityRules(
        identity_pb2.UpdateIdentityRulesRequest(
            rules=identity_pb2.IdentityRules(
                name=f"workspaces/{WS}/identityRules",
                guardrails=identity_pb2.Guardrails(max_identifiers_per_person=100, max_merges_per_person=1),
            ),
            update_mask={"paths": ["guardrails"]},
        )
    )
    await h.resolve([("email", "a@x.io")], [("email", "b@x.io")], [("email", "c@x.io")], message_ids=["g1", "g2", "g3"])
    (first,) = await h.resolve([("email", "a@x.io"), ("email", "b@x.io")], message_ids=["g4"])
    assert len(first.merged_person_ids) == 1
    (second,) = await h.resolve([("email", "a@x.io"), ("email", "c@x.io")], message_ids=["g5"])
    assert not second.merged_person_ids and [c.kind for c in second.conflicts] == ["guardrail"]
    (quarantined,) = await h.announcements("person_quarantined", 1)
    assert quarantined.person_id == first.person_id and "more than 1 merges" in quarantined.reason
    person = await h.stub.GetPerson(identity_pb2.GetPersonRequest(name=f"workspaces/{WS}/persons/{first.person_id}"))
    assert person.state == identity_pb2.Person.STATE_QUARANTINED
    # Quarantined: its own identifiers still resolve to it, new ones are not attached.
    (more,) = await h.resolve([("email", "a@x.io"), ("jd_pin", "new")], message_ids=["g6"])
    assert more.person_id == first.person_id and more.ignored == ["jd_pin: person is quarantined"]
    # An operator releases it: it takes identifiers again (and merges, within the guardrails).
    released = await h.stub.ReleasePerson(identity_pb2.ReleasePersonRequest(name=person.name, reason="checked"))
    assert released.state == identity_pb2.Person.STATE_ACTIVE and not released.quarantine_reason
    (after,) = await h.resolve([("email", "a@x.io"), ("jd_pin", "new")], message_ids=["g7"])
    assert after.person_id == first.person_id and not after.ignored
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.stub.ReleasePerson(identity_pb2.ReleasePersonRequest(name=person.name))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_dry_run_reports_merges_that_proposed_rules_would_change(identity):
    h = identity
    await h.resolve(
        [("phone", "13912345678"), ("user_id", "u1")],
        [("phone", "13912345678"), ("wechat_unionid", "un-1")],
        [("wechat_unionid", "un-1"), ("email", "x@y.io")],
        message_ids=["d1", "d2", "d3"],
    )
    # d2 attached the unionid to u1's person; now the same through two persons:
    await h.resolve([("email", "z@y.io")], message_ids=["d4"])
    (merged,) = await h.resolve([("email", "z@y.io"), ("phone", "13912345678")], message_ids=["d5"])
    assert merged.merged_person_ids
    report = await h.stub.DryRunIdentityRules(
        identity_pb2.DryRunIdentityRulesRequest(
            name=f"workspaces/{WS}/identityRules",
            rules=identity_pb2.IdentityRules(
                identifier_types=[identity_pb2.IdentifierTypeRule(name="phone", bridge=False)]
            ),
            update_mask={"paths": ["identifier_types"]},
            days=1,
        )
    )
    assert report.events_replayed == 5 and not report.truncated
    assert (report.current_merges, report.proposed_merges) == (1, 0)
    (difference,) = report.differences
    assert difference.side == identity_pb2.MergeDifference.SIDE_CURRENT_ONLY
    assert difference.trigger_message_id == "d5"
    shown = {
        difference.anchor_identifier.type: difference.anchor_identifier.value,
        difference.bridging_identifier.type: difference.bridging_identifier.value,
    }
    assert set(shown) == {"phone", "email"}
    assert "13912345678" not in shown["phone"] and shown["email"] != "z@y.io"  # masked
    # A dry run changes nothing.
    assert (
        await h.stub.GetIdentityRules(identity_pb2.GetIdentityRulesRequest(name=f"workspaces/{WS}/identityRules"))
    ).version == 0


async def test_merge_log_pages(identity):
    h = identity
    for n in range(5):
        await h.resolve([("email", f"{n}@a.io")], [("email", f"{n}@b.io")], message_ids=[f"p{n}a", f"p{n}b"])
        await h.resolve([("email", f"{n}@a.io"), ("email", f"{n}@b.io")], message_ids=[f"p{n}"])
    seen, token = [], ""
    while True:
        page = await h.stub.ListMerges(
            identity_pb2.ListMergesRequest(parent=f"workspaces/{WS}", page_size=2, page_token=token)
        )
        seen.extend(m.trigger_message_id for m in page.merges)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["p4", "p3", "p2", "p1", "p0"]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.stub.ListMerges(
            identity_pb2.ListMergesRequest(
                parent=f"workspaces/{WS}", person_id=str(uuid.uuid4()), page_token=token or "x"
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_plaintext_identifiers_from_before_the_migration_are_converted(run_service, service_env):
    from cdpkit.migrate import migrate

    await migrate(service_env["CDP_DATABASE_URL"], identity_main.SCHEMA, identity_main.MIGRATIONS)
    conn = await asyncpg.connect(service_env["CDP_DATABASE_URL"])
    person = str(uuid.uuid4())
    await conn.execute("INSERT INTO identity.persons (workspace_id, person_id) VALUES ($1, $2)", WS, person)
    await conn.execute(
        """INSERT INTO identity.identifiers (workspace_id, id_type, id_value, person_id) VALUES
           ($1, 'phone', '13912345678', $2), ($1, 'email', 'li@shop.io', $2), ($1, 'user_id', 'u-1', $2)""",
        WS,
        person,
    )
    runtime = await run_service(identity_main, identity_main.Settings)
    rows = await conn.fetch("SELECT id_type, id_value, sealed FROM identity.identifiers ORDER BY id_type")
    await conn.close()
    assert [(r["id_type"], r["id_value"].startswith("h:"), r["sealed"] is not None) for r in rows] == [
        ("email", True, True),
        ("phone", True, True),
        ("user_id", False, False),
    ]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        found = await stub.LookupPerson(
            identity_pb2.LookupPersonRequest(
                parent=f"workspaces/{WS}", identifier_type="phone", identifier_value="+86 139 1234 5678"
            )
        )
    assert found.person_id == person and ("email", "li@shop.io") in {(i.type, i.value) for i in found.identifiers}


async def test_match_suggestions_are_listed_accepted_and_rejected_never_auto_merged(start_identity):
    h = await start_identity(CDP_IDENTITY_SUGGEST_INTERVAL_SECONDS="0.2")
    await h.start_listening()
    address = {"street": "88 Nanjing Road", "city": "Shanghai", "postalCode": "200001", "state": "SH"}
    await h.publish(
        # The same shopper at a POS (member number) and online (user id), with a typo in the name.
        h.raw("s1", anonymous_id="pos-1", traits={"member_no": "M-1", "firstName": "Lei", "lastName": "Li",
                                                "birthday": "1990-05-17", "address": address}),
        h.raw("s2", user_id="web-1", traits={"firstName": "Lei", "lastName": "Lii", "birthday": "1990-05-17",
                                           "phone": "13912345678", "address": address}),
        # Same home, another person.
        h.raw("s3", user_id="web-2", traits={"firstName": "Meimei", "lastName": "Han", "birthday": "1992-01-02",
                                           "address": address}),
        # Looks like s1 too; will be rejected.
        h.raw("s4", user_id="web-3", traits={"firstName": "Lei", "lastName": "Li", "birthday": "1990-05-17",
                                           "address": {**address, "street": "88 Nanjing Rd"}}),
    )  # fmt: skip
    resolved = {r.event.message_id: r.person_id for r in await h.resolved(4)}
    assert len(set(resolved.values())) == 4  # nothing merged automatically

    async def pending():
        for _ in range(100):
            listed = await h.stub.ListMatchSuggestions(
                identity_pb2.ListMatchSuggestionsRequest(parent=f"workspaces/{WS}")
            )
            if len(listed.match_suggestions) >= 3:
                return listed.match_suggestions
            await asyncio.sleep(0.1)
        raise AssertionError(f"suggestions: {listed}")

    suggestions = await pending()
    pairs_ = {frozenset((s.person_id, s.other_person_id)): s for s in suggestions}
    assert set(pairs_) == {
        frozenset((resolved["s1"], resolved["s2"])),
        frozenset((resolved["s1"], resolved["s4"])),
        frozenset((resolved["s2"], resolved["s4"])),
    }  # s3 (another person at the same address) is not suggested
    first = pairs_[frozenset((resolved["s1"], resolved["s2"]))]
    levels = {c.field: c.level for c in first.comparisons}
    assert levels["family_name"] == "close" and levels["birth_date"] == "exact" and levels["phone"] == "missing"
    assert first.score >= 14 and first.state == identity_pb2.MatchSuggestion.STATE_PENDING

    accepted = await h.stub.AcceptMatchSuggestion(identity_pb2.AcceptMatchSuggestionRequest(name=first.name))
    survivor, gone = sorted((resolved["s1"], resolved["s2"]))
    assert accepted.match_suggestion.state == identity_pb2.MatchSuggestion.STATE_ACCEPTED
    assert accepted.merge.kind == identity_pb2.Merge.KIND_SUGGESTION
    assert accepted.person.person_id == survivor
    assert {("member_no", "M-1"), ("user_id", "web-1")} <= h.pairs(accepted.person)
    merged = await h.announcements("persons_merged", 1)
    assert merged[0].merge_id == accepted.merge.merge_id
    # The suggestion naming the merged-away person is obsolete; the survivor's stays pending.
    obsolete = await h.stub.ListMatchSuggestions(
        identity_pb2.ListMatchSuggestionsRequest(
            parent=f"workspaces/{WS}", state=identity_pb2.MatchSuggestion.STATE_OBSOLETE
        )
    )
    assert [frozenset((s.person_id, s.other_person_id)) for s in obsolete.match_suggestions] == [
        frozenset((gone, resolved["s4"]))
    ]
    left = pairs_[frozenset((survivor, resolved["s4"]))]
    rejected = await h.stub.RejectMatchSuggestion(identity_pb2.RejectMatchSuggestionRequest(name=left.name))
    assert rejected.state == identity_pb2.MatchSuggestion.STATE_REJECTED
    still = await h.stub.ListMatchSuggestions(identity_pb2.ListMatchSuggestionsRequest(parent=f"workspaces/{WS}"))
    assert not still.match_suggestions
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await h.stub.AcceptMatchSuggestion(identity_pb2.AcceptMatchSuggestionRequest(name=first.name))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
