"""AIP helpers: resource names, pagination tokens, update masks."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from cdp.campaign.v1 import campaign_pb2
from cdp.segment.v1 import segment_pb2
from cdpkit import fieldmask, names, pagination
from cdpkit.errors import InvalidArgument

SEGMENT = "workspaces/{workspace}/segments/{segment}"
PROFILE = "workspaces/{workspace}/profiles/{profile}"


# ---------------------------------------------------------------- names


def test_parse_splits_a_name_into_its_variables():
    assert names.parse("workspaces/shop/segments/vip-2", SEGMENT, id_patterns={"segment": names.RESOURCE_ID}) == {
        "workspace": "shop",
        "segment": "vip-2",
    }


def test_parse_checks_uuid_ids():
    person = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
    assert (
        names.parse(f"workspaces/shop/profiles/{person}", PROFILE, id_patterns={"profile": names.UUID})["profile"]
        == person
    )
    with pytest.raises(InvalidArgument, match="invalid profile id"):
        names.parse("workspaces/shop/profiles/not-a-uuid", PROFILE, id_patterns={"profile": names.UUID})


@pytest.mark.parametrize(
    "name",
    [
        "",
        "workspaces/shop",
        "workspaces/shop/segments",
        "workspaces/shop/segments/vip/extra",
        "workspace/shop/segments/vip",
        "workspaces/shop/profiles/vip",
        "workspaces//segments/vip",
        "workspaces/shop/segments/",
        "workspaces/Shop/segments/vip",
        "workspaces/s/segments/vip",  # a workspace id has at least two characters
        "workspaces/1shop/segments/vip",
        "workspaces/shop/segments/VIP",
        "workspaces/shop/segments/vip_2",
    ],
)
def test_parse_rejects_names_that_do_not_match(name):
    with pytest.raises(InvalidArgument) as error:
        names.parse(name, SEGMENT, field="segment.name", id_patterns={"segment": names.RESOURCE_ID})
    assert error.value.field == "segment.name"


def test_unchecked_variables_accept_any_nonempty_token():
    assert names.parse("workspaces/shop/segments/Any_Thing", SEGMENT)["segment"] == "Any_Thing"


def test_workspace_of_a_parent():
    assert names.workspace_of("workspaces/acme-eu") == "acme-eu"
    with pytest.raises(InvalidArgument) as error:
        names.workspace_of("workspaces/acme/segments/x")
    assert error.value.field == "parent"
    with pytest.raises(InvalidArgument) as error:
        names.workspace_of("projects/acme", field="request.parent")
    assert error.value.field == "request.parent"
    assert "workspaces/{workspace}" in error.value.description


def test_workspace_id_length_limit():
    assert names.workspace_of("workspaces/" + "a" * 63)
    with pytest.raises(InvalidArgument):
        names.workspace_of("workspaces/" + "a" * 64)


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize(
    ("requested", "expected"), [(0, 100), (1, 1), (100, 100), (1000, 1000), (1001, 1000), (10**9, 1000)]
)
def test_page_size_defaults_and_caps(requested, expected):
    assert pagination.page_size(requested) == expected


def test_page_size_with_custom_bounds():
    assert pagination.page_size(0, default=25, maximum=50) == 25
    assert pagination.page_size(80, default=25, maximum=50) == 50


def test_negative_page_size_is_invalid():
    with pytest.raises(InvalidArgument) as error:
        pagination.page_size(-1)
    assert error.value.field == "page_size"


def test_token_round_trips_its_position():
    position = {"id": "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", "n": 42, "ok": True}
    token = pagination.encode_token(position, scope="workspaces/shop|filter=a")
    assert "=" not in token and "+" not in token and "/" not in token  # URL-safe, unpadded
    assert pagination.decode_token(token, scope="workspaces/shop|filter=a") == position


def test_token_stringifies_values_json_cannot_hold():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    token = pagination.encode_token({"t": when}, scope="s")
    assert pagination.decode_token(token, scope="s") == {"t": str(when)}


def test_empty_token_means_first_page():
    assert pagination.decode_token("", scope="anything") is None


def test_token_from_another_request_is_rejected():
    token = pagination.encode_token({"id": "x"}, scope="workspaces/shop")
    with pytest.raises(InvalidArgument, match="different request") as error:
        pagination.decode_token(token, scope="workspaces/elsewhere")
    assert error.value.field == "page_token"


def _raw_token(body: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "a",
        "%%%%",
        base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),
        _raw_token([1, 2]),
        _raw_token("text"),
        _raw_token({"p": {"id": 1}}),
        _raw_token({"s": "abc"}),
    ],
)
def test_garbage_tokens_are_rejected_as_not_issued_by_us(token):
    with pytest.raises(InvalidArgument, match="not a token this API issued"):
        pagination.decode_token(token, scope="s")


def test_token_with_right_scope_but_non_object_position_is_rejected():
    fingerprint = json.loads(base64.urlsafe_b64decode(pagination.encode_token({}, scope="s") + "==="))["s"]
    with pytest.raises(InvalidArgument):
        pagination.decode_token(_raw_token({"p": [1, 2], "s": fingerprint}), scope="s")


# ---------------------------------------------------------------- field masks

UPDATABLE = frozenset({"display_name", "description", "rule"})


def test_star_means_every_updatable_field_and_no_path_none():
    assert fieldmask.paths_to_update(["*"], UPDATABLE) == UPDATABLE
    assert fieldmask.paths_to_update([], UPDATABLE) == frozenset()


def test_an_omitted_mask_means_the_populated_updatable_fields():
    # AIP-134: only what the client sent changes; the name and etag identify, they do not update.
    sent = segment_pb2.Segment(name="workspaces/w/segments/s", etag="e1", display_name="VIP", rule="")
    assert fieldmask.requested_paths(FieldMask(), sent, UPDATABLE) == ["display_name"]
    caps = campaign_pb2.CampaignSettings(caps={"per_day": 2})
    assert fieldmask.requested_paths(FieldMask(), caps, {"caps.per_day", "quiet_hours_start"}) == ["caps"]


def test_a_given_mask_is_taken_as_sent():
    sent = segment_pb2.Segment(display_name="VIP")
    assert fieldmask.requested_paths(FieldMask(paths=["description"]), sent, UPDATABLE) == ["description"]


def test_mask_subset_is_returned_as_is():
    assert fieldmask.paths_to_update(["rule", "rule", "description"], UPDATABLE) == {"rule", "description"}


def test_mask_with_unknown_or_output_only_paths_is_rejected_naming_them():
    with pytest.raises(InvalidArgument) as error:
        fieldmask.paths_to_update(["rule", "etag", "create_time"], UPDATABLE)
    assert error.value.field == "update_mask"
    assert "create_time, etag" in error.value.description
    assert "updatable: description, display_name, rule" in error.value.description


def test_star_mixed_with_paths_is_rejected():
    with pytest.raises(InvalidArgument):
        fieldmask.paths_to_update(["*", "rule"], UPDATABLE)
