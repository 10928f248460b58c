"""The transcoded JSON API handler, driven with mocked aiohttp requests (no server, no sockets)."""

from __future__ import annotations

import json

from aiohttp.test_utils import make_mocked_request

from cdp.identity.v1 import identity_pb2
from cdp.segment.v1 import segment_pb2
from cdp_gateway.dispatch import exposed_services
from cdp_gateway.http_api import REQUEST_ID, HttpApi
from cdp_gateway.keys import SECRET, Principal
from cdp_gateway.transcoding import Router, routes_for

PRINCIPAL = Principal(workspace_id="shop", key_id="key_s", kind=SECRET, scopes=frozenset({"read", "write"}))


class FakeKeys:
    def __init__(self) -> None:
        self.keys: list[str | None] = []

    async def authenticate(self, key):
        self.keys.append(key)
        return PRINCIPAL


class RecordingDispatcher:
    def __init__(self, response) -> None:
        self.response = response
        self.calls: list = []

    async def invoke(self, route, request, principal, *, request_id, timeout):
        self.calls.append((route, request, principal, request_id, timeout))
        return self.response


def api(response=None) -> tuple[HttpApi, FakeKeys, RecordingDispatcher]:
    keys = FakeKeys()
    dispatcher = RecordingDispatcher(response or identity_pb2.Person(name="workspaces/shop/persons/p"))

    async def ready() -> bool:
        return True

    http = HttpApi(
        keys=keys,  # type: ignore[arg-type]
        ingestion=None,  # type: ignore[arg-type]
        router=Router(routes_for(exposed_services())),
        dispatcher=dispatcher,  # type: ignore[arg-type]
        readiness=ready,
        max_batch_bytes=1024,
        max_api_body_bytes=1024,
    )
    return http, keys, dispatcher


def mocked(method: str, path: str, headers: dict | None = None):
    request = make_mocked_request(method, path, headers={"Authorization": "Bearer cdp_sk_x", **(headers or {})})
    request[REQUEST_ID] = "req-1"
    return request


async def test_get_is_transcoded_and_rendered():
    http, keys, dispatcher = api(identity_pb2.Person(name="workspaces/shop/persons/p", person_id="p"))
    response = await http._api(mocked("GET", "/v1/workspaces/shop/persons/p", {"X-Timeout-Seconds": "2.5"}))
    assert response.status == 200
    body = json.loads(response.body)
    assert body["name"] == "workspaces/shop/persons/p"
    assert body["personId"] == "p"
    assert body["identifiers"] == []
    assert keys.keys == ["cdp_sk_x"]
    ((route, request, principal, request_id, timeout),) = dispatcher.calls
    assert route.method.name == "GetPerson"
    assert request == identity_pb2.GetPersonRequest(name="workspaces/shop/persons/p")
    assert (principal, request_id, timeout) == (PRINCIPAL, "req-1", 2.5)


async def test_query_parameters_reach_the_request():
    http, _, dispatcher = api(segment_pb2.ListSegmentsResponse())
    response = await http._api(mocked("GET", "/v1/workspaces/shop/segments?pageSize=7&page_token=abc"))
    assert response.status == 200
    assert json.loads(response.body) == {"segments": [], "nextPageToken": ""}
    request = dispatcher.calls[0][1]
    assert (request.parent, request.page_size, request.page_token) == ("workspaces/shop", 7, "abc")


async def test_percent_encoded_path_values_are_decoded_exactly_once():
    # BUG: HttpApi._api matches request.path, which aiohttp has already percent-decoded, and
    # Router.match decodes again: "p%2541" reaches the service as "pA" instead of "p%41".
    http, _, dispatcher = api()
    response = await http._api(mocked("GET", "/v1/workspaces/shop/persons/p%2541%20x"))
    assert response.status == 200
    assert dispatcher.calls[0][1].name == "workspaces/shop/persons/p%41 x"


async def test_unknown_path_is_404_with_the_error_shape():
    http, keys, dispatcher = api()
    response = await http._api(mocked("GET", "/v1/nothing/here"))
    assert response.status == 404
    error = json.loads(response.body)["error"]
    assert error["code"] == 404
    assert error["status"] == "NOT_FOUND"
    assert "/v1/nothing/here" in error["message"]
    assert keys.keys == [] and dispatcher.calls == []


async def test_wrong_verb_is_405_with_allow_header():
    http, keys, dispatcher = api()
    response = await http._api(mocked("PUT", "/v1/workspaces/shop/segments/vip"))
    assert response.status == 405
    assert response.headers["Allow"] == "DELETE, GET, PATCH"
    assert json.loads(response.body)["error"]["status"] == "UNIMPLEMENTED"
    assert keys.keys == [] and dispatcher.calls == []
