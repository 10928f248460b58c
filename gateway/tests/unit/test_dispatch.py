"""dispatch.authorize (scopes, key kinds, workspace of the resource) and local dispatch."""

from __future__ import annotations

import pytest

from cdp.gateway.v1 import gateway_pb2
from cdp.identity.v1 import identity_pb2
from cdp.profile.v1 import profile_pb2
from cdp.segment.v1 import segment_pb2
from cdp_gateway.dispatch import COLLECTION_SERVICE, CallFailed, Dispatcher, authorize, exposed_services
from cdp_gateway.keys import SECRET, WRITE, Principal
from cdp_gateway.transcoding import routes_for
from cdpkit.errors import NotFound, PermissionDenied

ROUTES = {route.method.name: route for route in routes_for(exposed_services())}


def writer(workspace: str = "shop") -> Principal:
    return Principal(workspace_id=workspace, key_id="key_w", kind=WRITE, scopes=frozenset())


def secret(*scopes: str, workspace: str = "shop") -> Principal:
    return Principal(workspace_id=workspace, key_id="key_s", kind=SECRET, scopes=frozenset(scopes))


def ingest(parent: str = "workspaces/shop") -> gateway_pb2.IngestEventsRequest:
    return gateway_pb2.IngestEventsRequest(parent=parent)


def allowed(method: str, principal: Principal, request) -> bool:
    try:
        authorize(ROUTES[method], principal, request)
    except PermissionDenied:
        return False
    return True


def test_exposed_services_are_discovered_from_the_annotated_protos():
    names = [s.full_name for s in exposed_services()]
    assert names == [
        "cdp.gateway.v1.ApiKeyService",
        COLLECTION_SERVICE,
        "cdp.gateway.v1.CustomerService",
        "cdp.campaign.v1.JourneyService",
        "cdp.identity.v1.IdentityService",
        "cdp.profile.v1.ProfileService",
        "cdp.segment.v1.SegmentService",
    ]
    # Payload-only protos (cdp.events.v1) have no service and are not exposed.
    assert not any(name.startswith("cdp.events.") for name in names)


# --------------------------------------------------------------------------------------------
# Collection


def test_collection_accepts_a_write_key():
    authorize(ROUTES["IngestEvents"], writer(), ingest())


@pytest.mark.parametrize(("scopes", "ok"), [(("write",), True), (("admin",), True), (("read",), False), ((), False)])
def test_collection_with_a_secret_key_needs_the_write_scope(scopes, ok):
    assert allowed("IngestEvents", secret(*scopes), ingest()) is ok


def test_collection_checks_the_workspace():
    assert not allowed("IngestEvents", writer(), ingest("workspaces/shop2"))
    assert not allowed("IngestEvents", writer("shop2"), ingest("workspaces/shop"))
    assert not allowed("IngestEvents", writer(), ingest(""))
    assert allowed("IngestEvents", writer("shop2"), ingest("workspaces/shop2"))


# --------------------------------------------------------------------------------------------
# API scopes

GET_SEGMENT = segment_pb2.GetSegmentRequest(name="workspaces/shop/segments/vip")
DELETE_SEGMENT = segment_pb2.DeleteSegmentRequest(name="workspaces/shop/segments/vip")
CREATE_SEGMENT = segment_pb2.CreateSegmentRequest(parent="workspaces/shop")
UPDATE_SEGMENT = segment_pb2.UpdateSegmentRequest(segment=segment_pb2.Segment(name="workspaces/shop/segments/vip"))
RESOLVE = identity_pb2.ResolveIdentitiesRequest(parent="workspaces/shop")
LOOKUP = identity_pb2.LookupPersonRequest(parent="workspaces/shop")


@pytest.mark.parametrize(
    ("method", "request_message", "needs"),
    [
        ("GetSegment", GET_SEGMENT, "read"),
        ("ListSegments", segment_pb2.ListSegmentsRequest(parent="workspaces/shop"), "read"),
        ("LookupPerson", LOOKUP, "read"),  # GET with a custom verb
        ("GetProfile", profile_pb2.GetProfileRequest(name="workspaces/shop/profiles/p"), "read"),
        ("ListProfileEvents", profile_pb2.ListProfileEventsRequest(parent="workspaces/shop/profiles/p"), "read"),
        ("CreateSegment", CREATE_SEGMENT, "write"),
        ("UpdateSegment", UPDATE_SEGMENT, "write"),
        ("DeleteSegment", DELETE_SEGMENT, "write"),
        ("ResolveIdentities", RESOLVE, "write"),  # POST with a custom verb
    ],
)
def test_get_needs_read_and_everything_else_write(method, request_message, needs):
    other = "write" if needs == "read" else "read"
    assert allowed(method, secret(needs), request_message)
    assert allowed(method, secret("admin"), request_message)
    assert allowed(method, secret("read", "write"), request_message)
    assert not allowed(method, secret(other), request_message)
    assert not allowed(method, secret(), request_message)
    assert not allowed(method, writer(), request_message)  # write keys only collect


def test_permission_denied_says_which_scope():
    with pytest.raises(PermissionDenied) as caught:
        authorize(ROUTES["DeleteSegment"], secret("read"), DELETE_SEGMENT)
    assert "'write'" in caught.value.message
    with pytest.raises(PermissionDenied) as caught:
        authorize(ROUTES["GetSegment"], secret("write"), GET_SEGMENT)
    assert "'read'" in caught.value.message


# --------------------------------------------------------------------------------------------
# Workspace of the resource


@pytest.mark.parametrize(
    ("resource", "ok"),
    [
        ("workspaces/shop/segments/vip", True),
        ("workspaces/shop2/segments/vip", False),  # prefix trap
        ("workspaces/sho/segments/vip", False),
        ("workspaces/rival/segments/vip", False),
        ("workspaces/shop", True),  # the workspace itself is the key's own (the service validates the shape)
        ("", False),
        ("shop/segments/vip", False),
        ("workspaces/shop-2/segments/vip", False),
        ("Workspaces/shop/segments/vip", False),
        ("xworkspaces/shop/segments/vip", False),
    ],
)
def test_resource_must_be_in_the_keys_workspace(resource, ok):
    assert allowed("GetSegment", secret("read"), segment_pb2.GetSegmentRequest(name=resource)) is ok


def test_parent_resource_prefix_trap():
    assert allowed("ListSegments", secret("read"), segment_pb2.ListSegmentsRequest(parent="workspaces/shop"))
    assert not allowed("ListSegments", secret("read"), segment_pb2.ListSegmentsRequest(parent="workspaces/shop2"))
    assert not allowed(
        "ListSegments", secret("read", workspace="shop2"), segment_pb2.ListSegmentsRequest(parent="workspaces/shop")
    )
    assert not allowed(
        "ResolveIdentities", secret("admin"), identity_pb2.ResolveIdentitiesRequest(parent="workspaces/shop2")
    )


def test_nested_resource_field_is_checked():
    route = ROUTES["UpdateSegment"]
    assert route.resource_field == "segment.name"
    assert allowed("UpdateSegment", secret("write"), UPDATE_SEGMENT)
    other = segment_pb2.UpdateSegmentRequest(segment=segment_pb2.Segment(name="workspaces/shop2/segments/vip"))
    assert not allowed("UpdateSegment", secret("write"), other)
    assert not allowed("UpdateSegment", secret("write"), segment_pb2.UpdateSegmentRequest())


def test_denial_names_the_resource():
    with pytest.raises(PermissionDenied) as caught:
        authorize(
            ROUTES["GetSegment"], secret("read"), segment_pb2.GetSegmentRequest(name="workspaces/shop2/segments/x")
        )
    assert "workspaces/shop2/segments/x" in caught.value.message


def test_every_route_checks_the_workspace_of_its_resource():
    for route in ROUTES.values():
        request = route.request_class()()
        principal = writer() if route.service.full_name == COLLECTION_SERVICE else secret("admin")
        # Empty resource: denied.
        with pytest.raises(PermissionDenied):
            authorize(route, principal, request)
        target = request
        *parents, leaf = route.resource_field.split(".")
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, "workspaces/shop2/x/y")
        with pytest.raises(PermissionDenied):
            authorize(route, principal, request)
        setattr(target, leaf, "workspaces/shop/x/y")
        authorize(route, principal, request)  # no exception


# --------------------------------------------------------------------------------------------
# Dispatcher (local handlers only; no channels)


def test_dispatcher_indexes_the_first_binding_of_each_method():
    routes = list(ROUTES.values())
    dispatcher = Dispatcher(routes, {}, {}, default_timeout=1.0)
    assert set(dispatcher.routes_by_path) == {r.grpc_path for r in routes}
    assert dispatcher.routes_by_path["/cdp.gateway.v1.CollectionService/IngestEvents"] is ROUTES["IngestEvents"]


async def test_invoke_authorizes_then_calls_the_local_handler():
    calls = []

    async def handler(request, principal, **call):
        assert set(call) == {"request_id", "timeout"}
        calls.append((request, principal))
        return gateway_pb2.IngestEventsResponse(accepted_count=1)

    route = ROUTES["IngestEvents"]
    dispatcher = Dispatcher([route], {}, {route.grpc_path: handler}, default_timeout=1.0)
    response = await dispatcher.invoke(route, ingest(), writer(), request_id="r", timeout=None)
    assert response.accepted_count == 1
    assert calls == [(ingest(), writer())]

    with pytest.raises(CallFailed) as caught:
        await dispatcher.invoke(route, ingest("workspaces/shop2"), writer(), request_id="r", timeout=None)
    assert caught.value.status.code == 7  # PERMISSION_DENIED
    assert len(calls) == 1


async def test_invoke_turns_domain_errors_of_local_handlers_into_call_failed():
    async def handler(request, principal, **_):
        raise NotFound("nothing here")

    route = ROUTES["DeleteSegment"]
    dispatcher = Dispatcher([route], {}, {route.grpc_path: handler}, default_timeout=1.0)
    with pytest.raises(CallFailed) as caught:
        await dispatcher.invoke(route, DELETE_SEGMENT, secret("write"), request_id="r", timeout=None)
    assert caught.value.status.code == 5  # NOT_FOUND
    assert caught.value.status.message == "nothing here"
