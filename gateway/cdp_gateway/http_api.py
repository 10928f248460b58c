"""The gateway's HTTP door (aiohttp): the Segment tracking API and the transcoded JSON API.

Every error answer has the same JSON shape, Google's (AIP-193)::

    {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "batch[2].event: is required",
               "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest", ...}]}}
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from cdp_gateway.auth import KeyStore
from cdp_gateway.dispatch import CallFailed, Dispatcher
from cdp_gateway.ingest import Ingestion
from cdp_gateway.keys import from_authorization
from cdp_gateway.transcoding import MethodNotAllowed, Router, build_request, render
from cdpkit.errors import (
    DomainError,
    InvalidArgument,
    PayloadTooLarge,
    ResourceExhausted,
    http_status_for,
    http_status_of,
)
from cdpkit.ids import new_id
from cdpkit.metrics import RPC_SECONDS
from cdpkit.server import REQUEST_ID_HEADER

log = structlog.get_logger(__name__)

REQUEST_ID = web.RequestKey("request_id", str)
ROUTE_NAME = web.RequestKey("route_name", str)
_SUCCESS = b'{"success": true}'
COLLECTION_CALLS = ("identify", "track", "page", "screen", "alias", "group", "batch", "import")


def error_response(
    status: status_pb2.Status, *, http_status: int | None = None, headers: dict | None = None
) -> web.Response:
    code = http_status or http_status_for(status.code)
    body = {
        "error": {
            "code": code,
            "status": code_pb2.Code.Name(status.code),
            "message": status.message,
            "details": [json_format.MessageToDict(detail) for detail in status.details],
        }
    }
    return web.json_response(body, status=code, headers=headers)


def _domain_error_response(error: DomainError) -> web.Response:
    headers = None
    if isinstance(error, ResourceExhausted) and error.retry_after:
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    return error_response(error.to_status(), http_status=http_status_of(error), headers=headers)


async def _read_json(request: web.Request, limit: int) -> Any:
    """The JSON body (gunzipped by aiohttp when Content-Encoding says so), at most ``limit`` bytes."""
    if (
        request.content_length is not None
        and request.content_length > limit
        and not request.headers.get("Content-Encoding")
    ):
        raise PayloadTooLarge(f"request body is {request.content_length} bytes; the limit is {limit}")
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except RequestPayloadError:
        # A body that is not what Content-Encoding says (corrupt gzip) or was cut short.
        raise InvalidArgument("body", "cannot be decoded (corrupt gzip data or a truncated body)") from None
    raw = b"".join(chunks)
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument("body", f"malformed JSON: {exc}") from None


class HttpApi:
    def __init__(
        self,
        *,
        keys: KeyStore,
        ingestion: Ingestion,
        router: Router,
        dispatcher: Dispatcher,
        readiness: Callable[[], Awaitable[bool]],
        max_batch_bytes: int,
        max_api_body_bytes: int,
        openapi: dict[str, Any] | None = None,
    ) -> None:
        self._keys = keys
        self._ingestion = ingestion
        self._router = router
        self._dispatcher = dispatcher
        self._readiness = readiness
        self._max_batch_bytes = max_batch_bytes
        self._max_api_body_bytes = max_api_body_bytes
        self._openapi = web.json_response(openapi or {}).body

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_api_body_bytes + 1, middlewares=[self._observe])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/openapi.json", self._openapi_json)
        for call in COLLECTION_CALLS:
            app.router.add_post(f"/v1/{call}", self._collector(call))
        app.router.add_route("*", "/{tail:.*}", self._api)
        return app

    @web.middleware
    async def _observe(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        request_id = request.headers.get(REQUEST_ID_HEADER) or new_id()
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        status = 500
        try:
            try:
                response = await handler(request)
            except DomainError as exc:
                response = _domain_error_response(exc)
            except CallFailed as exc:
                response = error_response(exc.status)
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("unhandled error in http request", path=request.path)
                response = error_response(status_pb2.Status(code=code_pb2.INTERNAL, message="internal error"))
            status = response.status
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - started
            RPC_SECONDS.labels(f"HTTP {request.get(ROUTE_NAME, 'unmatched')}", str(status)).observe(elapsed)
            log.info(
                "http",
                method=request.method,
                path=request.path,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                request_id=request_id,
            )

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _openapi_json(self, _request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready = await self._readiness()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    def _collector(self, call: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def collect(request: web.Request) -> web.Response:
            request[ROUTE_NAME] = f"collect.{call}"
            body = await _read_json(request, self._max_batch_bytes)
            key = from_authorization(request.headers.get("Authorization"))
            if key is None and isinstance(body, dict) and isinstance(body.get("writeKey"), str):
                key = body["writeKey"]
            principal = await self._keys.authenticate_writer(key)
            if body is None:
                raise InvalidArgument("body", "is required")
            await self._ingestion.collect(call, body, principal)
            return web.Response(body=_SUCCESS, content_type="application/json")

        return collect

    async def _api(self, request: web.Request) -> web.Response:
        try:
            matched = self._router.match(request.method, request.rel_url.raw_path)
        except MethodNotAllowed as exc:
            return error_response(
                status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message=f"{request.method} is not allowed here"),
                http_status=405,
                headers={"Allow": ", ".join(exc.allowed)},
            )
        if matched is None:
            return error_response(status_pb2.Status(code=code_pb2.NOT_FOUND, message=f"no route for {request.path}"))
        route, path_values = matched
        request[ROUTE_NAME] = f"{route.service.name}.{route.method.name}"
        principal = await self._keys.authenticate(from_authorization(request.headers.get("Authorization")))
        body = await _read_json(request, self._max_api_body_bytes) if route.body else None
        message = build_request(route, path_values, request.query.items(), body)
        timeout = _timeout(request.headers.get("X-Timeout-Seconds") or request.headers.get("grpc-timeout"))
        response = await self._dispatcher.invoke(
            route, message, principal, request_id=request[REQUEST_ID], timeout=timeout
        )
        return web.json_response(render(response))


def _timeout(header: str | None) -> float | None:
    if not header:
        return None
    try:
        value = float(header)
    except ValueError:
        raise InvalidArgument("X-Timeout-Seconds", "must be a number of seconds") from None
    if not 0 < value <= 300:
        raise InvalidArgument("X-Timeout-Seconds", "must be between 0 and 300")
    return value


class HttpServer:
    """The aiohttp server as a runtime worker: serves until stopped, then drains."""

    def __init__(self, app: web.Application, host: str, port: int, *, shutdown_timeout: float = 10.0) -> None:
        self.name = "http"
        self._app = app
        self._host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self.port: int | None = None

    async def wait_started(self) -> int:
        await self._started.wait()
        assert self.port is not None
        return self.port

    async def run(self) -> None:
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True, backlog=1024)
        await site.start()
        self.port = runner.addresses[0][1]
        self._started.set()
        log.info("http serving", host=self._host, port=self.port)
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        self._stopping.set()
