"""The OpenAPI document built from descriptors, scope options, and Customer 360's pure parts."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from cdp.gateway.v1 import customer360_pb2
from cdp.profile.v1 import profile_pb2
from cdp.segment.v1 import segment_pb2
from cdp_gateway.customer360 import _copy_list, _Outcome, _person_request
from cdp_gateway.dispatch import exposed_services, required_scope
from cdp_gateway.openapi import build_openapi, openapi_path
from cdp_gateway.transcoding import routes_for

ROUTES = {r.method.name: r for r in routes_for(exposed_services())}
DOC = build_openapi(list(ROUTES.values()))
SCHEMAS = DOC["components"]["schemas"]


def test_paths_spell_out_multi_segment_variables():
    assert openapi_path(ROUTES["GetProfile"])[0] == "/v1/workspaces/{workspace}/profiles/{profile}"
    assert openapi_path(ROUTES["UpdateSegment"])[0] == "/v1/workspaces/{workspace}/segments/{segment}"
    assert openapi_path(ROUTES["RotateApiKey"])[0] == "/v1/workspaces/{workspace}/apiKeys/{apiKey}:rotate"
    path, params = openapi_path(ROUTES["GetCustomer360"])
    assert path == "/v1/workspaces/{workspace}/persons/{person}/customer360"
    assert [p["name"] for p in params] == ["workspace", "person"]


def test_proto3_json_types():
    profile = SCHEMAS["cdp.profile.v1.Profile"]["properties"]
    assert profile["eventCount"] == {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
    assert profile["traits"] == {"type": "object", "additionalProperties": True}
    assert profile["firstSeenTime"] == {"type": "string", "format": "date-time"}
    assert profile["recentEvents"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/cdp.profile.v1.ProfileEvent"},
    }
    event = SCHEMAS["cdp.profile.v1.ProfileEvent"]["properties"]
    assert "EVENT_TYPE_TRACK" in event["type"]["enum"]
    update = DOC["paths"]["/v1/workspaces/{workspace}/segments/{segment}"]["patch"]
    (mask,) = [p for p in update["parameters"] if p["in"] == "query"]
    assert (mask["name"], mask["schema"]["type"]) == ("updateMask", "string")  # FieldMask as a string
    assert SCHEMAS["cdp.gateway.v1.RotateApiKeyRequest"]["properties"]["gracePeriod"]["pattern"].endswith("s$")


def test_query_parameters_body_and_security():
    listing = DOC["paths"]["/v1/workspaces/{workspace}/segments"]["get"]
    assert [p["name"] for p in listing["parameters"] if p["in"] == "query"] == ["pageSize", "pageToken"]
    create = DOC["paths"]["/v1/workspaces/{workspace}/segments"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/cdp.segment.v1.Segment"
    }
    assert [p["name"] for p in create["parameters"] if p["in"] == "query"] == ["segmentId"]
    resolve = DOC["paths"]["/v1/workspaces/{workspace}/persons:resolve"]["post"]
    assert [p for p in resolve["parameters"] if p["in"] == "query"] == []  # body "*"
    assert DOC["paths"]["/v1/workspaces/{workspace}/apiKeys"]["get"]["x-required-scope"] == "admin"
    assert DOC["paths"]["/v1/batch"]["post"]["security"] == [{"writeKey": []}]
    ids = [op["operationId"] for path in DOC["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))


def test_required_scope_comes_from_the_method_option_or_the_verb():
    assert required_scope(ROUTES["CreateApiKey"]) == "admin"
    assert required_scope(ROUTES["ListApiKeys"]) == "admin"
    assert required_scope(ROUTES["GetProfile"]) == "read"
    assert required_scope(ROUTES["GetCustomer360"]) == "read"
    assert required_scope(ROUTES["CreateSegment"]) == "write"


def test_a_list_method_is_called_with_the_person_and_its_items_copied_by_field_name():
    method = segment_pb2.DESCRIPTOR.services_by_name["SegmentService"].methods_by_name["ListSegments"]  # stand-in
    request = _person_request(method, "workspaces/shop/persons/p", 50)
    assert (request.parent, request.page_size) == ("workspaces/shop/persons/p", 50)
    enter = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    response = segment_pb2.ListSegmentsResponse(
        segments=[segment_pb2.Segment(name="workspaces/shop/segments/vip", display_name="VIP", create_time=enter)]
    )
    (membership,) = _copy_list(response, customer360_pb2.SegmentMembership)
    assert membership.display_name == "VIP"  # matched by name; unknown fields ignored
    assert _copy_list(profile_pb2.Profile(), customer360_pb2.SegmentMembership) == []


def test_outcome_states():
    Part, State = customer360_pb2.PartStatus.Part, customer360_pb2.PartStatus.State
    assert _Outcome(Part.PART_PROFILE, "s", grpc.StatusCode.OK).status().state == State.STATE_OK
    assert _Outcome(Part.PART_PROFILE, "s", grpc.StatusCode.NOT_FOUND).status().state == State.STATE_NOT_FOUND
    assert _Outcome(Part.PART_PROFILE, "s", grpc.StatusCode.UNIMPLEMENTED).status().state == State.STATE_NOT_IMPLEMENTED
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL):
        status = _Outcome(Part.PART_PROFILE, "s", code, "down").status()
        assert (status.state, status.code, status.message) == (State.STATE_UNAVAILABLE, code.name, "down")
