"""Every google.api.http annotation in protos/cdp has a live HTTP route on a running gateway, and
the HTTP app holds no route per method (one catch-all transcoder), and /openapi.json lists them."""

from __future__ import annotations

import importlib
import pkgutil
import re

from google.api import annotations_pb2

import cdp
from cdp_gateway.openapi import openapi_path
from cdp_gateway.transcoding import routes_for


def annotated_bindings() -> list[tuple[str, str, str]]:
    """(method, verb, template) for every binding of every annotated method in the cdp protos,
    read from the generated descriptors independently of the gateway's own discovery."""
    bindings = []
    for info in pkgutil.walk_packages(cdp.__path__, prefix="cdp."):
        if not info.name.endswith("_pb2"):
            continue
        for service in importlib.import_module(info.name).DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(annotations_pb2.http):
                    continue
                rule = options.Extensions[annotations_pb2.http]
                for one in [rule, *rule.additional_bindings]:
                    verb = one.WhichOneof("pattern")
                    bindings.append((method.full_name, verb.upper(), getattr(one, verb)))
    return bindings


def sample_path(template: str) -> str:
    def fill(match: re.Match[str]) -> str:
        _, _, pattern = match.group(1).partition("=")
        return "/".join("a/b" if s == "**" else "x1" if s == "*" else s for s in (pattern or "*").split("/"))

    return re.sub(r"\{([^}]+)\}", fill, template)


async def test_every_annotated_method_has_a_live_route(gateway):
    bindings = annotated_bindings()
    services = {name.rsplit(".", 1)[0] for name, _, _ in bindings}
    # The protos of every component are covered, not only the ones the gateway was written with.
    assert {"cdp.identity.v1.IdentityService", "cdp.profile.v1.ProfileService", "cdp.gateway.v1.ApiKeyService"} <= (
        services
    )
    assert len(bindings) >= 22
    for method, verb, template in bindings:
        response = await gateway.http.request(verb, sample_path(template))
        # No key: a matched route asks for one (401); an unmatched path would be 404 or 405.
        assert response.status == 401, (method, verb, template, response.status, await response.text())
    unknown = await gateway.http.get("/v1/workspaces/x1/nothing-here")
    assert unknown.status == 404


async def test_the_http_app_has_no_route_per_method(gateway):
    app = gateway.runtime.http._app
    paths = sorted({resource.canonical for resource in app.router.resources()})
    segment_calls = [f"/v1/{c}" for c in ("alias", "batch", "group", "identify", "import", "page", "screen", "track")]
    assert paths == sorted(["/healthz", "/readyz", "/openapi.json", *segment_calls, "/{tail}"])


async def test_openapi_json_has_an_operation_for_every_route(gateway):
    response = await gateway.http.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    from cdp_gateway.dispatch import exposed_services

    for route in routes_for(exposed_services()):
        path, parameters = openapi_path(route)
        operation = document["paths"][path][route.verb.lower()]
        assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == [p["name"] for p in parameters]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]
    # Component schemas resolve.
    text = await response.text()
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert ref in document["components"]["schemas"], ref
