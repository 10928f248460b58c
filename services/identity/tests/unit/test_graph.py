from datetime import UTC, datetime, timedelta
from itertools import count

from cdp_identity.graph import MergeEdge, Node, recompute

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def new_ids():
    c = count(1)
    return lambda: f"new{next(c)}"


# Person S (phone) and T (openid + unionid); an app login merged T into S and attached user_id.
PHONE, OPENID, UNION, USER = ("phone", "h:p"), ("wechat_openid", "o"), ("wechat_unionid", "un"), ("user_id", "u")
NODES = [
    Node(PHONE, None, "pos-1", "S", at(0), 80),
    Node(OPENID, None, "mini-1", "T", at(1), 50),
    Node(UNION, OPENID, "mini-1", "T", at(1), 90),
    Node(USER, UNION, "app-1", "T", at(2), 100),
]
MERGE = MergeEdge("m1", PHONE, UNION, "S", "T", at(2))


def test_undoing_a_merge_restores_the_merged_away_person():
    split = recompute(NODES, [MERGE], new_id=new_ids(), undo=MERGE)
    assert split.owners == {"S": [PHONE], "T": sorted([USER, UNION, OPENID])}
    assert split.undone_merges == ["m1"] and split.merged_into == {}


def test_a_later_merge_across_the_undone_one_is_undone_too():
    later = MergeEdge("m2", PHONE, OPENID, "S", "T", at(5))
    split = recompute(NODES, [MERGE, later], new_id=new_ids(), undo=MERGE)
    assert set(split.owners) == {"S", "T"} and split.undone_merges == ["m1", "m2"]


def test_removing_a_bridge_identifier_splits_and_undoes_its_merge():
    split = recompute(NODES, [MERGE], new_id=new_ids(), remove=UNION)
    # user_id hung from the unionid: without it, it is its own component (origin T, so it is T's).
    assert split.owners["S"] == [PHONE]
    assert split.undone_merges == ["m1"]
    assert sorted(k for ks in split.owners.values() for k in ks) == sorted([PHONE, OPENID, USER])


def test_removing_a_leaf_changes_nothing_else():
    split = recompute(NODES, [MERGE], new_id=new_ids(), remove=USER)
    assert split.owners == {"S": sorted([UNION, PHONE, OPENID])} and split.merged_into == {"T": "S"}
    assert split.merge_counts == {"S": 1}


def test_identifiers_seen_on_one_message_stay_together_without_their_anchor():
    nodes = [
        Node(("user_id", "a"), None, "m1", "S", at(0), 100),
        Node(("email", "h:e"), ("user_id", "a"), "m2", "S", at(1), 70),
        Node(("jd_pin", "j"), ("user_id", "a"), "m2", "S", at(1), 60),
        Node(("device_id", "d"), ("user_id", "a"), "m3", "S", at(2), 20),
    ]
    split = recompute(nodes, [], new_id=new_ids(), remove=("user_id", "a"))
    # email + jd_pin came together (m2) and keep the id; the device was only linked via the user id.
    assert split.owners == {"S": [("email", "h:e"), ("jd_pin", "j")], "new1": [("device_id", "d")]}
