"""Unmerge and identifier removal after later changes, on real PostgreSQL (the review's cases)."""

from __future__ import annotations

from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2

WS = "shop"


async def only_merge(h) -> identity_pb2.Merge:
    (merge,) = [
        m
        for m in (await h.stub.ListMerges(identity_pb2.ListMergesRequest(parent=f"workspaces/{WS}"))).merges
        if m.state == identity_pb2.Merge.STATE_ACTIVE
    ]
    return merge


async def test_unmerge_after_an_identifier_was_attached_through_the_merged_side(identity):
    h = identity
    await h.start_listening()
    # Two calls: UUIDv7 ids order by millisecond, so A (older) survives the merge.
    (a,) = await h.resolve([("phone", "13912345678")], message_ids=["m1"])
    (b,) = await h.resolve([("email", "b@x.io")], message_ids=["m2"])
    (merged,) = await h.resolve([("phone", "13912345678"), ("email", "b@x.io")], message_ids=["m3"])
    assert merged.person_id == a.person_id and list(merged.merged_person_ids) == [b.person_id]
    # The unionid is seen with B's e-mail: it belongs with B, whoever holds the e-mail now.
    await h.resolve([("email", "b@x.io"), ("wechat_unionid", "un-1")], message_ids=["m4"])

    undone = await h.stub.Unmerge(identity_pb2.UnmergeRequest(name=(await only_merge(h)).name, reason="x"))
    by_id = {p.person_id: h.pairs(p) for p in undone.persons}
    assert by_id == {
        a.person_id: {("phone", "+8613912345678")},
        b.person_id: {("email", "b@x.io"), ("wechat_unionid", "un-1")},
    }
    again = await h.person(b.person_id)
    assert again.person_id == b.person_id and not again.requested_person_id
    (split,) = await h.announcements("person_split", 1)
    assert (split.person_id, split.new_person_id) == (a.person_id, b.person_id)
    assert {(i.type, i.value) for i in split.moved_identifiers} == by_id[b.person_id]


async def test_unmerge_after_a_removal_gives_the_cut_off_piece_back_to_its_own_person(identity):
    h = identity
    await h.start_listening()
    (c,) = await h.resolve([("phone", "13912345678")], message_ids=["r0"])
    (a,) = await h.resolve([("user_id", "u")], message_ids=["r1"])
    await h.resolve(
        [("user_id", "u"), ("email", "e@x.io")], [("email", "e@x.io"), ("jd_pin", "J1")], message_ids=["r2", "r3"]
    )
    removed = await h.stub.RemoveIdentifier(
        identity_pb2.RemoveIdentifierRequest(
            name=f"workspaces/{WS}/persons/{a.person_id}",
            identifier=events_pb2.Identifier(type="email", value="e@x.io"),
        )
    )
    # J hung from the e-mail only: it is cut off to a new person N, whose id is now J's home.
    by_id = {p.person_id: h.pairs(p) for p in removed.persons}
    assert by_id[a.person_id] == {("user_id", "u")}
    (n,) = set(by_id) - {a.person_id}
    assert by_id[n] == {("jd_pin", "J1")}
    homes = await h.sql("SELECT origin_person_id::text AS home FROM identity.identifiers WHERE id_type = 'jd_pin'")
    assert [r["home"] for r in homes] == [n]

    (merged,) = await h.resolve([("jd_pin", "J1"), ("phone", "13912345678")], message_ids=["r4"])
    assert merged.person_id == c.person_id and list(merged.merged_person_ids) == [n]
    undone = await h.stub.Unmerge(identity_pb2.UnmergeRequest(name=(await only_merge(h)).name, reason="x"))
    assert {p.person_id: h.pairs(p) for p in undone.persons} == {
        c.person_id: {("phone", "+8613912345678")},
        n: {("jd_pin", "J1")},
    }
    # A was not part of any of this.
    assert h.pairs(await h.person(a.person_id)) == {("user_id", "u")}
    persons = await h.sql("SELECT person_id::text AS p, status FROM identity.persons ORDER BY 1")
    assert {r["p"]: r["status"] for r in persons} == {
        a.person_id: "active",
        c.person_id: "active",
        n: "active",
    }


async def test_migration_0004_repairs_homes_written_before_the_fix(service_env, tmp_path):
    import shutil

    import asyncpg

    from cdp_identity import __main__ as identity_main
    from cdpkit.migrate import migrate

    dsn = service_env["CDP_DATABASE_URL"]
    for path in sorted(identity_main.MIGRATIONS.glob("000[123]_*.sql")):
        shutil.copy(path, tmp_path / path.name)
    await migrate(dsn, identity_main.SCHEMA, tmp_path)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": identity_main.SCHEMA})
    try:
        a, b, n, c = (f"01a00000-0000-7000-8000-00000000000{i}" for i in range(4))
        await conn.execute(
            """INSERT INTO persons (workspace_id, person_id, status, merged_into) VALUES
               ('shop', $1, 'active', NULL), ('shop', $2, 'merged', $1), ('shop', $3, 'merged', $4),
               ('shop', $4, 'active', NULL)""",
            a,
            b,
            n,
            c,
        )
        rows = [
            # A {phone}, B {email} merged into A, W attached through B's e-mail with A as home (bug 1).
            ("phone", "h:p", a, None, a, 0),
            ("email", "h:e", a, None, b, 1),
            ("wechat_unionid", "w", a, ("email", "h:e"), a, 2),
            # J cut off to N by a removal but still at home with A (bug 2); N merged into C later.
            ("jd_pin", "J", c, None, a, 3),
            ("user_id", "c", c, None, c, 0),
        ]
        for type_, value, person, anchor, home, minute in rows:
            await conn.execute(
                """INSERT INTO identifiers (workspace_id, id_type, id_value, person_id, anchor_type, anchor_value,
                                            origin_person_id, first_seen_at)
                   VALUES ('shop', $1, $2, $3, $4, $5, $6, '2026-01-01'::timestamptz + make_interval(mins => $7))""",
                type_,
                value,
                person,
                anchor[0] if anchor else None,
                anchor[1] if anchor else None,
                home,
                minute,
            )
        await migrate(dsn, identity_main.SCHEMA, identity_main.MIGRATIONS)
        homes = {
            r["id_type"]: r["h"]
            for r in await conn.fetch("SELECT id_type, origin_person_id::text AS h FROM identifiers")
        }
    finally:
        await conn.close()
    # W goes home to B; J's real home (N) cannot be recovered: its holder is the safe guess.
    assert homes == {"phone": a, "email": b, "wechat_unionid": b, "jd_pin": c, "user_id": c}


async def test_an_accepted_suggestion_carries_separations_and_can_be_unmerged(identity):
    import uuid

    h = identity
    (a,) = await h.resolve([("user_id", "a")], message_ids=["s1"])
    (b,) = await h.resolve([("phone", "13912345678")], message_ids=["s2"])
    (c,) = await h.resolve([("email", "c@x.io")], message_ids=["s3"])
    await h.resolve([("phone", "13912345678"), ("email", "c@x.io")], message_ids=["s4"])
    await h.stub.Unmerge(identity_pb2.UnmergeRequest(name=(await only_merge(h)).name, reason="two people"))
    # The suggester found A and B alike (filed here by hand): an operator accepts it.
    suggestion = str(uuid.uuid4())
    await h.sql(
        """INSERT INTO identity.match_suggestions (workspace_id, suggestion_id, person_a, person_b, score, comparisons)
           VALUES ($1, $2, $3, $4, 20, '[]')""",
        WS,
        suggestion,
        a.person_id,
        b.person_id,
    )
    accepted = await h.stub.AcceptMatchSuggestion(
        identity_pb2.AcceptMatchSuggestionRequest(name=f"workspaces/{WS}/matchSuggestions/{suggestion}")
    )
    assert accepted.person.person_id == a.person_id
    # B was split from C by an operator: A, now holding B's phone, stays apart from C too.
    (event,) = await h.resolve([("user_id", "a"), ("email", "c@x.io")], message_ids=["s5"])
    assert event.person_id == a.person_id and not event.merged_person_ids
    assert [(x.kind, x.other_person_id) for x in event.conflicts] == [("separated", c.person_id)]

    undone = await h.stub.Unmerge(identity_pb2.UnmergeRequest(name=accepted.merge.name, reason="not the same"))
    assert {p.person_id: h.pairs(p) for p in undone.persons} == {
        a.person_id: {("user_id", "a")},
        b.person_id: {("phone", "+8613912345678")},
    }


async def test_every_removal_is_announced_and_a_split_names_the_ids_that_move(identity):
    h = identity
    await h.start_listening()
    (a,) = await h.resolve([("user_id", "a"), ("jd_pin", "leaf")], message_ids=["e1"])
    (b,) = await h.resolve([("phone", "13912345678")], message_ids=["e2"])
    (d,) = await h.resolve([("email", "d@x.io")], message_ids=["e3"])
    await h.resolve([("phone", "13912345678"), ("email", "d@x.io")], message_ids=["e4"])  # D into B
    (ab,) = await h.resolve([("user_id", "a"), ("phone", "13912345678")], message_ids=["e5"])  # B (and D) into A
    assert ab.person_id == a.person_id

    # A leaf: nothing splits, but downstream hears of it.
    removed = await h.stub.RemoveIdentifier(
        identity_pb2.RemoveIdentifierRequest(
            name=f"workspaces/{WS}/persons/{d.person_id}",  # a merged-away id names its survivor
            identifier=events_pb2.Identifier(type="jd_pin", value="leaf"),
            reason="typo",
        )
    )
    assert [p.person_id for p in removed.persons] == [a.person_id] and not removed.undone_merge_ids
    (announced,) = await h.announcements("identifiers_removed", 1)
    assert (announced.person_id, announced.blocked, announced.reason) == (a.person_id, False, "typo")
    assert [(i.type, i.value) for i in announced.identifiers] == [("jd_pin", "leaf")]

    merges = (await h.stub.ListMerges(identity_pb2.ListMergesRequest(parent=f"workspaces/{WS}"))).merges
    (a_b,) = [m for m in merges if m.trigger_message_id == "e5"]
    await h.stub.Unmerge(identity_pb2.UnmergeRequest(name=a_b.name, reason="x"))
    (split,) = await h.announcements("person_split", 1)
    assert (split.person_id, split.new_person_id) == (a.person_id, b.person_id)
    assert list(split.moved_person_ids) == [d.person_id]
    assert (await h.person(d.person_id)).person_id == b.person_id
