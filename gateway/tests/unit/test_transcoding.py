"""HTTP/JSON <-> gRPC transcoding: templates, routing, request building, rendering.

Most tests use the real generated protos. Query-parameter shapes that no real request has
(bool, enum, repeated, nested messages, int64, multi-word path/body fields, additional
bindings) use a small test-only proto added to the default descriptor pool below.
"""

from __future__ import annotations

import pytest
from google.api import annotations_pb2
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    empty_pb2,
    field_mask_pb2,  # noqa: F401 - registers google/protobuf/field_mask.proto in the pool
    timestamp_pb2,  # noqa: F401 - registers google/protobuf/timestamp.proto in the pool
)
from google.protobuf.descriptor import FieldDescriptor

from cdp.campaign.v1 import campaign_pb2
from cdp.profile.v1 import profile_pb2
from cdp.segment.v1 import segment_pb2
from cdp_gateway.dispatch import exposed_services
from cdp_gateway.transcoding import (
    MethodNotAllowed,
    Route,
    Router,
    build_request,
    compile_template,
    render,
    routes_for,
)
from cdpkit.errors import InvalidArgument

# --------------------------------------------------------------------------------------------
# A test-only proto (kept out of the real API), registered once in the default pool.

_TEST_FILE = "cdp_gateway_unit_tests/transcoding_test.proto"


def _build_test_file() -> descriptor_pb2.FileDescriptorProto:
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name=_TEST_FILE,
        package="cdpgwtest.v1",
        syntax="proto3",
        dependency=[
            "google/protobuf/field_mask.proto",
            "google/protobuf/timestamp.proto",
            "google/api/annotations.proto",
        ],
    )
    color = file.enum_type.add(name="Color")
    for number, name in enumerate(("COLOR_UNSPECIFIED", "COLOR_RED", "COLOR_BLUE")):
        color.value.add(name=name, number=number)

    def message(name: str, *fields: tuple) -> None:
        msg = file.message_type.add(name=name)
        for number, (field_name, kind, *rest) in enumerate(fields, start=1):
            label = F.LABEL_REPEATED if "repeated" in rest else F.LABEL_OPTIONAL
            type_name = next((r for r in rest if r != "repeated"), "")
            added = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                added.type_name = type_name

    message("Inner", ("deep_value", F.TYPE_STRING))
    message(
        "Filter",
        ("kind", F.TYPE_STRING),
        ("min_count", F.TYPE_INT64),
        ("inner", F.TYPE_MESSAGE, ".cdpgwtest.v1.Inner"),
        ("labels", F.TYPE_STRING, "repeated"),
    )
    message("Thing", ("name", F.TYPE_STRING), ("display_name", F.TYPE_STRING))
    message(
        "SearchRequest",
        ("parent", F.TYPE_STRING),
        ("page_size", F.TYPE_INT32),
        ("show_deleted", F.TYPE_BOOL),
        ("tags", F.TYPE_STRING, "repeated"),
        ("numbers", F.TYPE_INT32, "repeated"),
        ("color", F.TYPE_ENUM, ".cdpgwtest.v1.Color"),
        ("colors", F.TYPE_ENUM, ".cdpgwtest.v1.Color", "repeated"),
        ("read_mask", F.TYPE_MESSAGE, ".google.protobuf.FieldMask"),
        ("filter", F.TYPE_MESSAGE, ".cdpgwtest.v1.Filter"),
        ("since", F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
        ("big", F.TYPE_INT64),
    )
    message(
        "UpdateThingRequest",
        ("the_thing", F.TYPE_MESSAGE, ".cdpgwtest.v1.Thing"),
        ("update_mask", F.TYPE_MESSAGE, ".google.protobuf.FieldMask"),
    )
    message("ShelfRequest", ("shelf_name", F.TYPE_STRING), ("request_id", F.TYPE_STRING))

    service = file.service.add(name="TestService")

    def rpc(name: str, request: str, response: str, **binding: object) -> None:
        method = service.method.add(
            name=name, input_type=f".cdpgwtest.v1.{request}", output_type=f".cdpgwtest.v1.{response}"
        )
        rule = method.options.Extensions[annotations_pb2.http]
        extra = binding.pop("additional", [])
        for key, value in binding.items():
            setattr(rule, key, value)
        for more in extra:
            added = rule.additional_bindings.add()
            for key, value in more.items():
                setattr(added, key, value)

    rpc(
        "Search",
        "SearchRequest",
        "SearchRequest",
        get="/v1/{parent=workspaces/*}/things:search",
        additional=[
            {"post": "/v1/{parent=workspaces/*}/things:search", "body": "*"},
            {"get": "/v1/{parent=workspaces/*}/search"},
        ],
    )
    rpc(
        "UpdateThing",
        "UpdateThingRequest",
        "Thing",
        patch="/v1/{the_thing.name=workspaces/*/things/*}",
        body="the_thing",
    )
    rpc("GetShelf", "ShelfRequest", "Thing", get="/v1/{shelf_name=shelves/*}")
    rpc("Download", "ShelfRequest", "Thing", get="/v1/{shelf_name=files/**}:download")
    service.method.add(name="NoHttp", input_type=".cdpgwtest.v1.Thing", output_type=".cdpgwtest.v1.Thing")
    return file


def _test_service():
    pool = descriptor_pool.Default()
    try:
        file = pool.FindFileByName(_TEST_FILE)
    except KeyError:
        pool.AddSerializedFile(_build_test_file().SerializeToString())
        file = pool.FindFileByName(_TEST_FILE)
    return file.services_by_name["TestService"]


TEST_SERVICE = _test_service()
TEST_ROUTES = routes_for([TEST_SERVICE])
REAL_ROUTES = routes_for(exposed_services())


def route_of(method: str, verb: str | None = None, routes=None) -> Route:
    found = [r for r in (routes or [*REAL_ROUTES, *TEST_ROUTES]) if r.method.name == method]
    if verb:
        found = [r for r in found if r.verb == verb]
    assert found, method
    return found[0]


def build(method: str, path_values: dict, query=(), body=None, verb: str | None = None):
    return build_request(route_of(method, verb), path_values, list(query), body)


def invalid(method: str, path_values: dict, query=(), body=None, verb: str | None = None) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        build(method, path_values, query, body, verb)
    return caught.value


# --------------------------------------------------------------------------------------------
# compile_template


def test_compile_resource_name_template():
    pattern, variables = compile_template("/v1/{name=workspaces/*/profiles/*}")
    assert variables == ("name",)
    found = pattern.match("/v1/workspaces/shop/profiles/p-1")
    assert found and found.group("v0") == "workspaces/shop/profiles/p-1"
    for miss in (
        "/v1/workspaces/shop/profiles",
        "/v1/workspaces/shop/profiles/",
        "/v1/workspaces/shop/profiles/p-1/",
        "/v1/workspaces//profiles/p-1",
        "/v1/workspaces/shop/profiles/p-1/events",
        "/v2/workspaces/shop/profiles/p-1",
        "/v1/projects/shop/profiles/p-1",
        "v1/workspaces/shop/profiles/p-1",
    ):
        assert not pattern.match(miss), miss


def test_compile_variable_without_pattern_is_one_segment():
    pattern, variables = compile_template("/v1/things/{id}")
    assert variables == ("id",)
    assert pattern.match("/v1/things/abc").group("v0") == "abc"
    assert not pattern.match("/v1/things/a/b")


def test_compile_custom_verb():
    pattern, variables = compile_template("/v1/{parent=workspaces/*}/persons:resolve")
    assert variables == ("parent",)
    assert pattern.match("/v1/workspaces/shop/persons:resolve").group("v0") == "workspaces/shop"
    assert not pattern.match("/v1/workspaces/shop/persons")
    assert not pattern.match("/v1/workspaces/shop/persons:lookup")
    assert not pattern.match("/v1/workspaces/shop/persons:resolvex")
    assert not pattern.match("/v1/workspaces/shop/personsXresolve")  # ':' is literal, not a regex dot


def test_compile_custom_verb_directly_after_a_variable():
    pattern, variables = compile_template("/v1/{name=workspaces/*/segments/*}:archive")
    assert variables == ("name",)
    assert pattern.match("/v1/workspaces/shop/segments/vip:archive").group("v0") == "workspaces/shop/segments/vip"
    assert not pattern.match("/v1/workspaces/shop/segments/vip")


def test_a_path_variable_never_swallows_a_custom_verb():
    pattern, _ = compile_template("/v1/{name=workspaces/*/persons/*}")
    assert not pattern.match("/v1/workspaces/shop/persons/p1:lookup")
    pattern, _ = compile_template("/v1/{parent=workspaces/*}/persons:lookup")
    assert not pattern.match("/v1/workspaces/shop:x/persons:lookup")
    # No route of the real API claims a custom-verb path with the wrong variable.
    router = Router(REAL_ROUTES)
    route, values = router.match("GET", "/v1/workspaces/shop/persons:lookup")
    assert route.method.name == "LookupPerson"
    assert values == {"parent": "workspaces/shop"}
    assert router.match("GET", "/v1/workspaces/shop/persons/p1:lookup") is None


def test_compile_nested_field_path():
    pattern, variables = compile_template("/v1/{segment.name=workspaces/*/segments/*}")
    assert variables == ("segment.name",)
    assert pattern.match("/v1/workspaces/shop/segments/vip").group("v0") == "workspaces/shop/segments/vip"


def test_compile_double_wildcard():
    pattern, variables = compile_template("/v1/{name=files/**}")
    assert variables == ("name",)
    assert pattern.match("/v1/files/a").group("v0") == "files/a"
    assert pattern.match("/v1/files/a/b/c.txt").group("v0") == "files/a/b/c.txt"
    assert not pattern.match("/v1/files/")
    assert not pattern.match("/v1/files")


def test_compile_double_wildcard_with_custom_verb():
    pattern, _ = compile_template("/v1/{name=files/**}:download")
    assert pattern.match("/v1/files/a/b:download").group("v0") == "files/a/b"
    assert not pattern.match("/v1/files/a/b")


def test_compile_several_variables_keep_template_order():
    pattern, variables = compile_template("/v1/{parent=workspaces/*}/things/{thing_id}")
    assert variables == ("parent", "thing_id")
    found = pattern.match("/v1/workspaces/shop/things/t1")
    assert found.groups() == ("workspaces/shop", "t1")


def test_compile_literal_regex_characters_are_escaped():
    pattern, _ = compile_template("/v1/a.b/{name}")
    assert pattern.match("/v1/a.b/x")
    assert not pattern.match("/v1/aXb/x")


def test_compile_rejects_relative_templates():
    with pytest.raises(ValueError):
        compile_template("v1/{name=workspaces/*}")


# --------------------------------------------------------------------------------------------
# Router


def test_router_match_returns_route_and_path_values():
    router = Router(REAL_ROUTES)
    route, values = router.match("GET", "/v1/workspaces/shop/profiles/p1")
    assert route.method.full_name == "cdp.profile.v1.ProfileService.GetProfile"
    assert route.grpc_path == "/cdp.profile.v1.ProfileService/GetProfile"
    assert route.resource_field == "name"
    assert values == {"name": "workspaces/shop/profiles/p1"}

    route, values = router.match("GET", "/v1/workspaces/shop/profiles/p1/events")
    assert route.method.name == "ListProfileEvents"
    assert values == {"parent": "workspaces/shop/profiles/p1"}

    route, values = router.match("PATCH", "/v1/workspaces/shop/segments/vip")
    assert route.method.name == "UpdateSegment"
    assert route.resource_field == "segment.name"
    assert values == {"segment.name": "workspaces/shop/segments/vip"}


def test_router_match_decodes_url_encoded_path_values():
    router = Router(REAL_ROUTES)
    _, values = router.match("GET", "/v1/workspaces/shop/persons/a%20b%40c%3Ad")
    assert values == {"name": "workspaces/shop/persons/a b@c:d"}


def test_router_match_returns_none_for_unknown_paths():
    router = Router(REAL_ROUTES)
    for path in (
        "/",
        "/v1",
        "/v1/nope",
        "/v1/workspaces/shop",
        "/v1/workspaces/shop/unknown/x",
        "/v2/workspaces/shop/segments",
    ):
        assert router.match("GET", path) is None, path
        assert router.match("POST", path) is None, path


def test_router_raises_method_not_allowed_listing_allowed_verbs():
    router = Router(REAL_ROUTES)
    with pytest.raises(MethodNotAllowed) as caught:
        router.match("PUT", "/v1/workspaces/shop/segments/vip")
    assert caught.value.allowed == ["DELETE", "GET", "PATCH"]
    assert str(caught.value) == "DELETE, GET, PATCH"

    with pytest.raises(MethodNotAllowed) as caught:
        router.match("DELETE", "/v1/workspaces/shop/segments")
    assert caught.value.allowed == ["GET", "POST"]

    with pytest.raises(MethodNotAllowed) as caught:
        router.match("GET", "/v1/workspaces/shop/persons:resolve")
    assert caught.value.allowed == ["POST"]


def test_router_same_template_different_verbs():
    router = Router(REAL_ROUTES)
    assert router.match("GET", "/v1/workspaces/shop/segments/vip")[0].method.name == "GetSegment"
    assert router.match("DELETE", "/v1/workspaces/shop/segments/vip")[0].method.name == "DeleteSegment"
    assert router.match("GET", "/v1/workspaces/shop/segments")[0].method.name == "ListSegments"
    assert router.match("POST", "/v1/workspaces/shop/segments")[0].method.name == "CreateSegment"


def test_router_with_additional_bindings():
    router = Router(TEST_ROUTES)
    assert router.match("GET", "/v1/workspaces/shop/things:search")[0].body == ""
    assert router.match("POST", "/v1/workspaces/shop/things:search")[0].body == "*"
    route, values = router.match("GET", "/v1/workspaces/shop/search")
    assert route.method.name == "Search"
    assert values == {"parent": "workspaces/shop"}
    route, values = router.match("GET", "/v1/files/a/b/c:download")
    assert route.method.name == "Download"
    assert values == {"shelf_name": "files/a/b/c"}


# --------------------------------------------------------------------------------------------
# routes_for: one route per binding, derived from the annotations only


def test_routes_for_skips_methods_without_http_and_keeps_bindings():
    names = [(r.method.name, r.verb, r.template, r.body) for r in TEST_ROUTES]
    assert names == [
        ("Search", "GET", "/v1/{parent=workspaces/*}/things:search", ""),
        ("Search", "POST", "/v1/{parent=workspaces/*}/things:search", "*"),
        ("Search", "GET", "/v1/{parent=workspaces/*}/search", ""),
        ("UpdateThing", "PATCH", "/v1/{the_thing.name=workspaces/*/things/*}", "the_thing"),
        ("GetShelf", "GET", "/v1/{shelf_name=shelves/*}", ""),
        ("Download", "GET", "/v1/{shelf_name=files/**}:download", ""),
    ]


def _bindings(method):
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def _sample_path(template: str) -> tuple[str, dict[str, str]]:
    """A concrete path for a template, and the value each variable should receive."""
    out, values, position, counter = "", {}, 0, 0
    while position < len(template):
        if template[position] == "{":
            end = template.index("}", position)
            field_path, _, sub = template[position + 1 : end].partition("=")
            segments = []
            for segment in (sub or "*").split("/"):
                counter += 1
                if segment == "*":
                    segments.append(f"s{counter}")
                elif segment == "**":
                    segments.append(f"d{counter}/e{counter}")
                else:
                    segments.append(segment)
            values[field_path] = "/".join(segments)
            out += values[field_path]
            position = end + 1
        else:
            out += template[position]
            position += 1
    # Literal '*' segments outside variables.
    return out.replace("/*/", "/lit/"), values


def _resolve_field(descriptor, field_path: str) -> FieldDescriptor:
    *parents, leaf = field_path.split(".")
    for part in parents:
        field = descriptor.fields_by_name[part]
        assert field.message_type is not None, field_path
        descriptor = field.message_type
    return descriptor.fields_by_name[leaf]


@pytest.mark.parametrize("service", [*exposed_services(), TEST_SERVICE], ids=lambda s: s.full_name)
def test_every_annotated_method_gets_one_route_per_binding_and_matches_its_sample_path(service):
    routes = routes_for([service])
    router = Router(routes)
    annotated = 0
    for method in service.methods:
        bindings = _bindings(method)
        mine = [r for r in routes if r.method.full_name == method.full_name]
        assert len(mine) == len(bindings), method.full_name
        annotated += bool(bindings)
        for route, rule in zip(mine, bindings, strict=True):
            kind = rule.WhichOneof("pattern")
            assert route.verb == kind.upper()
            assert route.template == getattr(rule, kind)
            assert route.body == rule.body
            if rule.body not in ("", "*"):
                assert route.request_class().DESCRIPTOR.fields_by_name[rule.body].message_type is not None

            path, expected = _sample_path(route.template)
            found = route.pattern.match(path)
            assert found, (route.template, path)
            # The router answers the same route (no other route shadows it).
            matched, values = router.match(route.verb, path)
            assert matched is route, (route.template, path, matched.template)
            assert values == expected
            assert set(values) == set(route.variables)
            # Every path variable is a string field of the request, and build_request sets it.
            request = build_request(route, values, [], None)
            for field_path, value in values.items():
                field = _resolve_field(request.DESCRIPTOR, field_path)
                assert field.type == FieldDescriptor.TYPE_STRING, field_path
                target = request
                for part in field_path.split("."):
                    target = getattr(target, part)
                assert target == value
    assert annotated > 0


def test_every_exposed_route_with_a_resource_names_a_workspace():
    for route in REAL_ROUTES:
        assert route.resource_field is not None, route.template
        _, values = _sample_path(route.template)
        assert values[route.resource_field].startswith("workspaces/"), route.template


def test_route_request_and_response_classes():
    route = route_of("GetProfile")
    assert route.request_class() is profile_pb2.GetProfileRequest
    assert route.response_class() is profile_pb2.Profile
    assert route.service.full_name == "cdp.profile.v1.ProfileService"
    assert route_of("DeleteSegment").response_class() is empty_pb2.Empty


# --------------------------------------------------------------------------------------------
# build_request: body


def test_body_star_fills_the_whole_request_and_path_wins():
    request = build(
        "ResolveIdentities",
        {"parent": "workspaces/shop"},
        body={"parent": "workspaces/evil", "sets": [{"identifiers": [{"type": "email", "value": "a@b.c"}]}]},
    )
    assert request.parent == "workspaces/shop"
    assert request.sets[0].identifiers[0].type == "email"
    assert request.sets[0].identifiers[0].value == "a@b.c"


def test_body_star_accepts_snake_case_names_too():
    request = build("Search", {"parent": "workspaces/shop"}, body={"page_size": 3, "showDeleted": True}, verb="POST")
    assert request.page_size == 3
    assert request.show_deleted is True


def test_body_star_may_be_absent():
    request = build("ResolveIdentities", {"parent": "workspaces/shop"}, body=None)
    assert request.parent == "workspaces/shop"
    assert len(request.sets) == 0


def test_body_field_goes_into_that_field_and_nested_path_value_wins():
    request = build(
        "UpdateSegment",
        {"segment.name": "workspaces/shop/segments/vip"},
        query=[("updateMask", "displayName,rule")],
        body={"name": "workspaces/evil/segments/x", "displayName": "VIP", "rule": "x > 1"},
    )
    assert request.segment.name == "workspaces/shop/segments/vip"
    assert request.segment.display_name == "VIP"
    assert request.segment.rule == "x > 1"
    assert list(request.update_mask.paths) == ["display_name", "rule"]


def test_body_field_with_query_for_other_fields():
    request = build(
        "CreateSegment",
        {"parent": "workspaces/shop"},
        query=[("segmentId", "vip")],
        body={"displayName": "VIP", "rule": "x"},
    )
    assert request.parent == "workspaces/shop"
    assert request.segment_id == "vip"
    assert request.segment.display_name == "VIP"
    request = build(
        "CreateJourney", {"parent": "workspaces/shop"}, query=[("journey_id", "j1")], body={"displayName": "J"}
    )
    assert request.journey_id == "j1"
    assert request.journey.display_name == "J"


def test_body_field_may_be_absent():
    request = build("CreateSegment", {"parent": "workspaces/shop"}, body=None)
    assert request.parent == "workspaces/shop"
    assert not request.HasField("segment")


@pytest.mark.parametrize("method", ["UpdateSegment", "ResolveIdentities"])
def test_unknown_body_field_is_invalid_argument(method):
    path = (
        {"segment.name": "workspaces/shop/segments/vip"} if method == "UpdateSegment" else {"parent": "workspaces/shop"}
    )
    error = invalid(method, path, body={"bogus": 1})
    assert error.field == "body"
    assert "bogus" in error.description


@pytest.mark.parametrize(
    ("method", "body", "named"),
    [
        ("UpdateSegment", {"displayName": 5}, "displayName"),
        ("UpdateSegment", {"displayName": {"a": 1}}, "displayName"),
        ("UpdateSegment", {"createTime": "yesterday"}, "createTime"),
        ("ResolveIdentities", {"sets": "x"}, "sets"),
        ("ResolveIdentities", {"sets": [5]}, "sets"),
        ("ResolveIdentities", {"parent": ["a"]}, "parent"),
    ],
)
def test_malformed_body_field_type_is_invalid_argument_naming_the_field(method, body, named):
    path = (
        {"segment.name": "workspaces/shop/segments/vip"} if method == "UpdateSegment" else {"parent": "workspaces/shop"}
    )
    error = invalid(method, path, body=body)
    assert error.field == "body"
    assert named in error.description


@pytest.mark.parametrize("body", [5, 1.5, True, "text", ["parent"], [1]], ids=repr)
@pytest.mark.parametrize("method", ["UpdateSegment", "ResolveIdentities"])
def test_a_body_that_is_not_a_json_object_is_invalid_argument(method, body):
    # BUG: numbers and booleans reach json_format.ParseDict, which iterates them and raises
    # TypeError ("'int' object is not iterable"): an HTTP 500 instead of a 400.
    path = (
        {"segment.name": "workspaces/shop/segments/vip"} if method == "UpdateSegment" else {"parent": "workspaces/shop"}
    )
    error = invalid(method, path, body=body)
    assert error.field == "body"


@pytest.mark.parametrize("body", [{"name": "x"}, [], "x", 0])
def test_a_body_on_a_body_less_get_is_invalid_argument(body):
    error = invalid("GetSegment", {"name": "workspaces/shop/segments/vip"}, body=body)
    assert error.field == "body"
    assert "GET /v1/{name=workspaces/*/segments/*} takes no body" in error.description


def test_a_body_less_get_accepts_no_or_empty_body():
    for body in (None, {}):
        request = build("GetSegment", {"name": "workspaces/shop/segments/vip"}, body=body)
        assert request.name == "workspaces/shop/segments/vip"


def test_a_body_on_a_body_less_delete_is_invalid_argument():
    error = invalid("DeleteSegment", {"name": "workspaces/shop/segments/vip"}, body={"etag": "1"})
    assert error.field == "body"


# --------------------------------------------------------------------------------------------
# build_request: query parameters

SEARCH = {"parent": "workspaces/shop"}


def search(*query: tuple[str, str]):
    return build("Search", SEARCH, query, verb="GET")


def test_query_camel_and_snake_case_names():
    assert search(("pageSize", "10")).page_size == 10
    assert search(("page_size", "11")).page_size == 11
    request = build("ListSegments", SEARCH, [("pageSize", "5"), ("page_token", "t1")])
    assert (request.parent, request.page_size, request.page_token) == ("workspaces/shop", 5, "t1")
    request = build("LookupPerson", SEARCH, [("identifierType", "email"), ("identifier_value", "a@b.c")])
    assert (request.identifier_type, request.identifier_value) == ("email", "a@b.c")


def test_query_repeated_values_accumulate_in_order():
    request = search(("tags", "b"), ("tags", "a"), ("tags", "b"))
    assert list(request.tags) == ["b", "a", "b"]
    request = search(("numbers", "3"), ("numbers", "1"))
    assert list(request.numbers) == [3, 1]
    request = search(("colors", "COLOR_BLUE"), ("colors", "COLOR_RED"))
    assert list(request.colors) == [2, 1]


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("TRUE", True), ("1", True), ("false", False), ("False", False), ("0", False)]
)
def test_query_bool(raw, expected):
    assert search(("showDeleted", raw)).show_deleted is expected


@pytest.mark.parametrize("raw", ["yes", "", "2", "t"])
def test_query_bad_bool_is_invalid_argument_naming_the_field(raw):
    error = invalid("Search", SEARCH, [("show_deleted", raw)], verb="GET")
    assert error.field == "show_deleted"


def test_query_int_and_int64():
    assert search(("pageSize", "-3")).page_size == -3
    assert search(("big", "9007199254740993")).big == 9007199254740993  # beyond float precision
    error = invalid("Search", SEARCH, [("pageSize", "ten")], verb="GET")
    assert "page_size" in str(error)


def test_query_enum_by_name_and_number():
    assert search(("color", "COLOR_RED")).color == 1
    assert search(("color", "2")).color == 2
    error = invalid("Search", SEARCH, [("color", "COLOR_PURPLE")], verb="GET")
    assert "color" in str(error)


def test_query_field_mask():
    request = search(("readMask", "displayName,name,filter.minCount"))
    assert list(request.read_mask.paths) == ["display_name", "name", "filter.min_count"]
    request = build(
        "UpdateJourney", {"journey.name": "workspaces/shop/journeys/j"}, [("update_mask", "description")], {}
    )
    assert list(request.update_mask.paths) == ["description"]


def test_query_timestamp():
    request = search(("since", "2024-05-01T10:00:00Z"))
    assert request.since.ToJsonString() == "2024-05-01T10:00:00Z"


def test_query_nested_fields():
    request = search(
        ("filter.kind", "k"), ("filter.minCount", "5"), ("filter.inner.deep_value", "d"), ("filter.labels", "x")
    )
    assert request.filter.kind == "k"
    assert request.filter.min_count == 5
    assert request.filter.inner.deep_value == "d"
    assert list(request.filter.labels) == ["x"]


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("bogus", "bogus"),
        ("filter.bogus", "filter.bogus"),
        ("bogus.kind", "bogus.kind"),
        ("pageSize.value", "pageSize.value"),  # a scalar has no sub-fields
        ("filter.inner.deepValue.x", "filter.inner.deepValue.x"),
    ],
)
def test_unknown_query_param_is_invalid_argument_naming_it(key, named):
    error = invalid("Search", SEARCH, [(key, "1")], verb="GET")
    assert error.field == named


def test_unknown_query_param_on_real_routes():
    error = invalid("GetProfile", {"name": "workspaces/shop/profiles/p"}, [("view", "FULL")])
    assert error.field == "view"
    error = invalid("ListSegments", SEARCH, [("filter", "x")])
    assert error.field == "filter"


def test_query_value_for_a_message_field_is_invalid_argument():
    error = invalid("Search", SEARCH, [("filter", "x")], verb="GET")
    assert error.field == "query"
    assert "filter" in error.description


def test_query_scalar_and_nested_spelling_of_the_same_message_is_invalid_argument():
    # BUG: "updateMask=rule" stores a string in the query tree; "updateMask.paths=rule" then
    # descends into that string and crashes with AttributeError (HTTP 500) instead of a 400.
    error = invalid(
        "UpdateSegment",
        {"segment.name": "workspaces/shop/segments/vip"},
        [("updateMask", "rule"), ("updateMask.paths", "rule")],
        {},
    )
    assert error.field.startswith("updateMask")


def test_query_param_already_set_by_the_path_is_rejected():
    error = invalid("ListSegments", SEARCH, [("parent", "workspaces/evil")])
    assert error.field == "parent"
    error = invalid("GetSegment", {"name": "workspaces/shop/segments/vip"}, [("name", "workspaces/evil/segments/x")])
    assert error.field == "name"


def test_query_param_inside_the_body_field_is_rejected():
    error = invalid(
        "UpdateSegment", {"segment.name": "workspaces/shop/segments/vip"}, [("segment.rule", "x")], {"rule": "y"}
    )
    assert error.field == "segment.rule"
    error = invalid("CreateSegment", SEARCH, [("segment.displayName", "x")], {})
    assert error.field == "segment.displayName"
    error = invalid("UpdateSegment", {"segment.name": "workspaces/shop/segments/vip"}, [("segment.name", "x")], {})
    assert error.field == "segment.name"


@pytest.mark.parametrize(
    ("method", "path_values", "query", "body"),
    [
        ("GetShelf", {"shelf_name": "shelves/a"}, [("shelfName", "shelves/other")], None),
        (
            "UpdateThing",
            {"the_thing.name": "workspaces/shop/things/t"},
            [("theThing.displayName", "query")],
            {"displayName": "body"},
        ),
    ],
    ids=["camelCase-path-variable", "camelCase-body-field"],
)
def test_camel_case_spelling_of_a_path_or_body_field_is_rejected_too(method, path_values, query, body):
    # BUG: the "already set by the path or body" check compares the raw query key with the
    # proto field names; the lowerCamelCase spelling slips through and (for the body field)
    # silently overwrites what the body said.
    invalid(method, path_values, query, body)


def test_snake_case_spelling_of_a_multi_word_path_variable_is_rejected():
    error = invalid("GetShelf", {"shelf_name": "shelves/a"}, [("shelf_name", "shelves/other")])
    assert error.field == "shelf_name"


def test_body_star_routes_take_no_query_parameters_and_path_wins():
    with pytest.raises(InvalidArgument) as error:
        build("Search", SEARCH, [("pageSize", "9")], {"pageSize": 3}, verb="POST")
    assert error.value.field == "pageSize"
    request = build("Search", SEARCH, [], {"pageSize": 3, "parent": "workspaces/elsewhere"}, verb="POST")
    assert request.page_size == 3
    assert request.parent == "workspaces/shop"


def test_path_values_are_set_last_and_win_over_everything():
    request = build("Download", {"shelf_name": "files/a/b"}, [("requestId", "r")])
    assert request.shelf_name == "files/a/b"
    assert request.request_id == "r"


# --------------------------------------------------------------------------------------------
# render


def test_render_lower_camel_case_with_defaults():
    assert render(segment_pb2.Segment(name="workspaces/shop/segments/vip")) == {
        "name": "workspaces/shop/segments/vip",
        "displayName": "",
        "description": "",
        "rule": "",
        "etag": "",
        "version": "0",
        "builtin": "",
        "memberCount": "0",
    }


def test_render_int64_as_string_enums_by_name_timestamps_and_structs():
    profile = profile_pb2.Profile(name="n", event_count=5, version=2**53 + 1)
    profile.traits.update({"email": "a@b.c", "age": 3})
    profile.first_seen_time.FromJsonString("2024-05-01T10:00:00Z")
    profile.recent_events.add(type=1, message_id="m")
    rendered = render(profile)
    assert rendered["eventCount"] == "5"
    assert rendered["version"] == str(2**53 + 1)
    assert rendered["personId"] == ""
    assert rendered["firstSeenTime"] == "2024-05-01T10:00:00Z"
    assert rendered["traits"] == {"email": "a@b.c", "age": 3}
    # Scalars are rendered with their defaults (the contract of issues 4-6 added channel, store, staff).
    assert rendered["recentEvents"] == [
        {"messageId": "m", "type": "EVENT_TYPE_TRACK", "event": "", "channel": "", "storeId": "", "staffId": ""}
    ]
    assert "first_seen_time" not in rendered and "event_count" not in rendered


def test_render_list_response_and_empty():
    rendered = render(campaign_pb2.ListJourneysResponse())
    assert rendered == {"journeys": [], "nextPageToken": ""}
    journey = campaign_pb2.Journey(name="j")
    assert render(journey)["state"] == "STATE_UNSPECIFIED"
    assert render(empty_pb2.Empty()) == {}
