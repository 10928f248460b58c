from datetime import UTC, datetime, timedelta
from itertools import count

from cdp_identity.graph import MergeEdge, Node, recompute

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def new_ids():
    c = count(1)
    return lambda: f"new{next(c)}"


# Person S (phone) and T (openid + unionid); an app login merged T into S and attached user_id
# through the unionid, so user_id's home is T.
PHONE, OPENID, UNION, USER = ("phone", "h:p"), ("wechat_openid", "o"), ("wechat_unionid", "un"), ("user_id", "u")
NODES = [
    Node(PHONE, None, "pos-1", "S", at(0), 80),
    Node(OPENID, None, "mini-1", "T", at(1), 50),
    Node(UNION, OPENID, "mini-1", "T", at(1), 90),
    Node(USER, UNION, "app-1", "T", at(2), 100),
]
MERGE = MergeEdge("m1", PHONE, UNION, "S", "T", at(2))


def test_undoing_a_merge_restores_the_merged_away_person():
    split = recompute(NODES, [MERGE], person="S", new_id=new_ids(), undo=MERGE)
    assert split.owners == {"S": [PHONE], "T": [USER, UNION, OPENID]}
    assert split.undone_merges == ["m1"] and split.merged_into == {} and not split.created
    assert split.owner_of(MERGE.anchor) == "S" and split.owner_of(MERGE.bridge) == "T"


def test_a_later_merge_across_the_undone_one_is_undone_too():
    later = MergeEdge("m2", PHONE, OPENID, "S", "T", at(5))
    split = recompute(NODES, [MERGE, later], person="S", new_id=new_ids(), undo=MERGE)
    assert split.owners == {"S": [PHONE], "T": [USER, UNION, OPENID]} and split.undone_merges == ["m1", "m2"]


def test_an_identifier_attached_after_the_merge_goes_back_with_its_anchor():
    # The reviewer's case: A {phone}, B {email}, m3 merges B into A, m4 attaches W through B's email.
    email, union = ("email", "h:e"), ("wechat_unionid", "w")
    nodes = [
        Node(PHONE, None, "m1", "A", at(0), 80),
        Node(email, None, "m2", "B", at(1), 70),
        Node(union, email, "m4", "B", at(3), 90),
    ]
    merge = MergeEdge("m3", PHONE, email, "A", "B", at(2))
    split = recompute(nodes, [merge], person="A", new_id=new_ids(), undo=merge)
    assert split.owners == {"A": [PHONE], "B": [union, email]} and not split.merged_into


def test_removing_a_bridge_identifier_splits_its_atom_and_undoes_its_merge():
    split = recompute(NODES, [MERGE], person="S", new_id=new_ids(), remove=UNION)
    # user_id hung from the unionid, the openid was its anchor: two pieces of T's atom. The one
    # with the best identifier (user_id) keeps T; the openid gets a new person, written as its home.
    assert split.owners == {"S": [PHONE], "T": [USER], "new1": [OPENID]}
    assert split.undone_merges == ["m1"] and split.created == ["new1"] and split.rehomed == {OPENID: "new1"}


def test_removing_a_leaf_changes_nothing_else():
    split = recompute(NODES, [MERGE], person="S", new_id=new_ids(), remove=USER)
    assert split.owners == {"S": [UNION, PHONE, OPENID]} and split.merged_into == {"T": "S"}
    assert split.merge_counts == {"S": 1} and not split.rehomed and not split.undone_merges


def test_identifiers_seen_on_one_message_stay_together_without_their_anchor():
    nodes = [
        Node(("user_id", "a"), None, "m1", "S", at(0), 100),
        Node(("email", "h:e"), ("user_id", "a"), "m2", "S", at(1), 70),
        Node(("jd_pin", "j"), ("user_id", "a"), "m2", "S", at(1), 60),
        Node(("device_id", "d"), ("user_id", "a"), "m3", "S", at(2), 20),
    ]
    split = recompute(nodes, [], person="S", new_id=new_ids(), remove=("user_id", "a"))
    # email + jd_pin came together (m2) and keep the id; the device was only linked via the user id.
    assert split.owners == {"S": [("email", "h:e"), ("jd_pin", "j")], "new1": [("device_id", "d")]}
    assert split.rehomed == {("device_id", "d"): "new1"}


def test_a_piece_cut_off_by_a_removal_is_its_own_side_in_a_later_unmerge():
    # The reviewer's second case after the removal wrote J's new home N: {J, phone P} merged N into
    # C (the phone's older person). Undoing it gives J back to N, not to A, J's first person.
    jd, phone = ("jd_pin", "J"), ("phone", "h:p")
    nodes = [Node(phone, None, "r0", "C", at(0), 80), Node(jd, ("email", "h:e"), "r3", "N", at(3), 60)]
    merge = MergeEdge("m", phone, jd, "C", "N", at(5))
    split = recompute(nodes, [merge], person="C", new_id=new_ids(), undo=merge)
    assert split.owners == {"C": [phone], "N": [jd]} and not split.created


def test_a_person_whose_own_identifiers_are_gone_keeps_its_id_and_adopts_its_oldest_atom():
    s1, x1, y1 = ("user_id", "s"), ("email", "h:x"), ("jd_pin", "y")
    nodes = [
        Node(s1, None, "m1", "S", at(0), 100),
        Node(x1, None, "m2", "X", at(1), 70),
        Node(y1, None, "m3", "Y", at(2), 60),
    ]
    merges = [MergeEdge("sx", s1, x1, "S", "X", at(3)), MergeEdge("xy", x1, y1, "S", "Y", at(4))]
    split = recompute(nodes, merges, person="S", new_id=new_ids(), remove=s1)
    assert split.owners == {"S": [x1, y1]} and split.undone_merges == ["sx"]
    assert split.rehomed == {x1: "S"} and split.merged_into == {"X": "S", "Y": "S"}
    assert split.merge_counts == {"S": 1}


def test_the_person_split_keeps_its_id_even_when_it_is_on_the_bridge_side():
    # p0 (older) merged the p1+p2 person over one of p2's identifiers; undoing p1<-p2 leaves p0
    # with p2's side, and p1 comes back on its own.
    a, b, z = ("phone", "h:a"), ("email", "h:b"), ("user_id", "z")
    nodes = [
        Node(z, None, "0", "p0", at(0), 100),
        Node(a, None, "1", "p1", at(1), 80),
        Node(b, None, "2", "p2", at(2), 70),
    ]
    ab = MergeEdge("ab", a, b, "p1", "p2", at(3))
    zb = MergeEdge("zb", z, b, "p0", "p1", at(4))
    split = recompute(nodes, [ab, zb], person="p0", new_id=new_ids(), undo=ab)
    assert split.owners == {"p0": [z, b], "p1": [a]} and split.merged_into == {"p2": "p0"}
    assert split.merge_counts == {"p0": 1} and split.undone_merges == ["ab"]
