"""cdpkit.server + cdpkit.runtime over real gRPC sockets: error mapping, health, reflection,
graceful shutdown and the /metrics endpoint."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import urllib.request

import asyncpg
import grpc
import pytest
import structlog
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdpkit import db, errors
from cdpkit.bus import RAW, ensure_streams
from cdpkit.consumer import ConsumerLoop, ConsumerSpec
from cdpkit.logs import configure
from cdpkit.migrate import migrate
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import ServiceRuntime
from cdpkit.server import Registration, create_server

SERVICE = "cdp.segment.v1.SegmentService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Segments(segment_pb2_grpc.SegmentServiceServicer):
    """Each method fails (or stalls) in one way the kit has to handle. UpdateSegment is left unimplemented."""

    def __init__(self) -> None:
        self.listing = asyncio.Event()
        self.listed = False

    async def CreateSegment(self, request, context):
        raise errors.InvalidArgument("segment.rule", "bad")

    async def GetSegment(self, request, context):
        segment = request.name.rsplit("/", 1)[-1]
        if segment == "boom":
            raise RuntimeError("secret detail")
        if segment == "busy":
            raise errors.ResourceExhausted("slow down", retry_after=2)
        if segment == "denied":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
        if segment == "ok":
            return segment_pb2.Segment(name=request.name, display_name="Found")
        if segment == "deadlock":
            raise asyncpg.DeadlockDetectedError("deadlock detected (secret detail)")
        raise errors.NotFound(f"segment {request.name} not found")

    async def ListSegments(self, request, context):
        self.listing.set()
        await asyncio.sleep(0.5)
        self.listed = True
        return segment_pb2.ListSegmentsResponse(segments=[segment_pb2.Segment(name="workspaces/shop/segments/slow")])

    async def DeleteSegment(self, request, context):
        raise RuntimeError("secret detail")


class Harness:
    def __init__(self) -> None:
        self.ready = False
        self.readiness_error: Exception | None = None
        self.closed = 0
        self.servicer = Segments()
        self.runtime: ServiceRuntime | None = None
        self.channel: grpc.aio.Channel | None = None

    async def readiness(self) -> bool:
        if self.readiness_error is not None:
            raise self.readiness_error
        return self.ready

    async def close(self) -> None:
        self.closed += 1

    @property
    def stub(self) -> segment_pb2_grpc.SegmentServiceStub:
        return segment_pb2_grpc.SegmentServiceStub(self.channel)

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channel)

    async def status(self, service: str = "") -> int:
        return (await self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)).status


async def start_harness(grace: float = 2.0) -> Harness:
    harness = Harness()
    server = create_server(
        [
            Registration(
                harness.servicer,
                segment_pb2_grpc.add_SegmentServiceServicer_to_server,
                segment_pb2.DESCRIPTOR.services_by_name["SegmentService"],
            )
        ]
    )
    harness.runtime = ServiceRuntime(
        name="segment-test",
        server=server,
        grpc_address="127.0.0.1:0",
        readiness=harness.readiness,
        close=harness.close,
        metrics_port=0,
        shutdown_grace=grace,
        readiness_interval=0.05,
    )
    await harness.runtime.start()
    harness.channel = grpc.aio.insecure_channel(f"127.0.0.1:{harness.runtime.grpc_port}")
    return harness


@pytest.fixture
async def service():
    harness = await start_harness()
    yield harness
    await harness.channel.close()
    await harness.runtime.stop()


async def wait_for_status(harness: Harness, expected: int, service: str = "", timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while (status := await harness.status(service)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"health of {service!r} stayed {status}, expected {expected}")
        await asyncio.sleep(0.02)


def get_request(segment: str) -> segment_pb2.GetSegmentRequest:
    return segment_pb2.GetSegmentRequest(name=f"workspaces/shop/segments/{segment}")


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


# ---------------------------------------------------------------- error mapping


async def test_invalid_argument_carries_a_bad_request_field_violation(service):
    error = await rpc_error(service.stub.CreateSegment(segment_pb2.CreateSegmentRequest(parent="workspaces/shop")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "segment.rule: bad"
    status = rpc_status.from_call(error)
    assert status is not None and status.message == "segment.rule: bad"
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("segment.rule", "bad")]


async def test_not_found_maps_to_not_found_with_its_message(service):
    error = await rpc_error(service.stub.GetSegment(get_request("missing")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "segment workspaces/shop/segments/missing not found"


async def test_resource_exhausted_carries_retry_info(service):
    error = await rpc_error(service.stub.GetSegment(get_request("busy")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    [detail] = rpc_status.from_call(error).details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info) and info.retry_delay.seconds == 2


@pytest.mark.parametrize("method", ["get", "delete"])
async def test_unexpected_exception_is_internal_error_without_leaking_details(service, method):
    if method == "get":
        call = service.stub.GetSegment(get_request("boom"))
    else:
        call = service.stub.DeleteSegment(segment_pb2.DeleteSegmentRequest(name="workspaces/shop/segments/x"))
    error = await rpc_error(call)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"
    everything = repr(error) + str(error.debug_error_string()) + repr(list(error.trailing_metadata() or ()))
    assert "secret detail" not in everything and "RuntimeError" not in everything


async def test_a_transaction_the_database_rolled_back_is_aborted_and_retryable(service):
    error = await rpc_error(service.stub.GetSegment(get_request("deadlock")))
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details() == "a concurrent change won; retry" and "secret detail" not in repr(error)


async def test_an_abort_by_the_servicer_passes_through_unchanged(service):
    error = await rpc_error(service.stub.GetSegment(get_request("denied")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "not yours"


async def test_a_successful_call_is_untouched(service):
    reply = await service.stub.GetSegment(get_request("ok"))
    assert reply == segment_pb2.Segment(name="workspaces/shop/segments/ok", display_name="Found")


async def test_a_method_the_servicer_does_not_implement_answers_unimplemented(service):
    error = await rpc_error(service.stub.UpdateSegment(segment_pb2.UpdateSegmentRequest()))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_an_unknown_method_answers_unimplemented(service):
    call = service.channel.unary_unary(
        f"/{SERVICE}/Nope", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    error = await rpc_error(call(b""))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


# ---------------------------------------------------------------- health and reflection


async def test_health_follows_readiness(service):
    assert await service.status() == NOT_SERVING
    assert await service.status(SERVICE) == NOT_SERVING
    service.ready = True
    await wait_for_status(service, SERVING)
    assert await service.status(SERVICE) == SERVING
    service.ready = False
    await wait_for_status(service, NOT_SERVING)
    assert await service.status(SERVICE) == NOT_SERVING


async def test_readiness_check_that_raises_counts_as_not_ready(service):
    service.ready = True
    await wait_for_status(service, SERVING)
    service.readiness_error = ConnectionError("database gone")
    await wait_for_status(service, NOT_SERVING)
    service.readiness_error = None
    await wait_for_status(service, SERVING)


async def test_rpcs_are_served_even_while_not_ready(service):
    # Readiness steers load balancers; it does not gate the handlers themselves.
    assert await service.status() == NOT_SERVING
    assert (await service.stub.GetSegment(get_request("ok"))).display_name == "Found"


async def test_health_of_an_unknown_service_is_not_found(service):
    error = await rpc_error(service.health.Check(health_pb2.HealthCheckRequest(service="cdp.nope.v1.Nope")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_service_and_describes_it(service):
    stub = reflection_pb2_grpc.ServerReflectionStub(service.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    responses = [r async for r in stub.ServerReflectionInfo(iter(requests))]
    listed = {s.name for s in responses[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed
    assert responses[1].file_descriptor_response.file_descriptor_proto  # the descriptor is served too


# ---------------------------------------------------------------- metrics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        if metric == name or (metric.startswith(name + "{") and all(f'{k}="{v}"' in metric for k, v in labels.items())):
            return float(value)
    return None


async def test_metrics_endpoint_serves_rpc_durations_by_method_and_code(service):
    method = f"/{SERVICE}/GetSegment"
    before = await asyncio.to_thread(scrape, service.runtime.metrics_port)
    for _ in range(3):
        await rpc_error(service.stub.GetSegment(get_request("missing")))
    await service.stub.GetSegment(get_request("ok"))
    await service.status()
    after = await asyncio.to_thread(scrape, service.runtime.metrics_port)
    assert "# TYPE cdp_rpc_duration_seconds histogram" in after
    name = "cdp_rpc_duration_seconds_count"
    not_found = sample(after, name, method=method, code="NOT_FOUND")
    assert not_found - (sample(before, name, method=method, code="NOT_FOUND") or 0) == 3
    assert sample(after, name, method=method, code="OK") - (sample(before, name, method=method, code="OK") or 0) == 1
    assert sample(after, "cdp_rpc_duration_seconds_bucket", method=method, code="NOT_FOUND", le="+Inf") >= 3
    assert "/grpc.health.v1.Health/Check" not in after  # infrastructure RPCs are not measured


async def test_internal_errors_are_counted_as_internal(service):
    await rpc_error(service.stub.DeleteSegment(segment_pb2.DeleteSegmentRequest(name="workspaces/shop/segments/x")))
    text = await asyncio.to_thread(scrape, service.runtime.metrics_port)
    assert sample(text, "cdp_rpc_duration_seconds_count", method=f"/{SERVICE}/DeleteSegment", code="INTERNAL") >= 1


async def test_ready_gauge_follows_readiness(service):
    assert sample(await asyncio.to_thread(scrape, service.runtime.metrics_port), "cdp_ready") == 0.0
    service.ready = True
    await wait_for_status(service, SERVING)
    assert sample(await asyncio.to_thread(scrape, service.runtime.metrics_port), "cdp_ready") == 1.0


# ---------------------------------------------------------------- graceful shutdown


async def test_stop_lets_an_inflight_rpc_finish_stops_serving_and_closes():
    harness = await start_harness(grace=2.0)
    try:
        harness.ready = True
        await wait_for_status(harness, SERVING)
        watch = harness.health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == SERVING

        inflight = asyncio.ensure_future(
            harness.stub.ListSegments(segment_pb2.ListSegmentsRequest(parent="workspaces/shop"))
        )
        await asyncio.wait_for(harness.servicer.listing.wait(), 2)
        started = time.monotonic()
        stopping = asyncio.create_task(harness.runtime.stop())

        # Health turns NOT_SERVING at once, and the readiness loop does not turn it back.
        assert (await asyncio.wait_for(watch.read(), 1)).status == NOT_SERVING
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(watch.read(), 0.2)
        watch.cancel()

        # New RPCs are refused while the old one finishes.
        refused = await rpc_error(harness.stub.GetSegment(get_request("ok"), timeout=1))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE

        reply = await inflight
        assert [s.name for s in reply.segments] == ["workspaces/shop/segments/slow"]
        assert harness.servicer.listed
        await asyncio.wait_for(stopping, 5)
        assert time.monotonic() - started < 2.0  # did not wait out the whole grace once idle
        assert harness.closed == 1
    finally:
        await harness.channel.close()
        await harness.runtime.stop()

    # The server is gone: a fresh client is refused.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{harness.runtime.grpc_port}") as channel:
        error = await rpc_error(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_stop_twice_closes_once():
    harness = await start_harness(grace=0.5)
    await harness.channel.close()
    await asyncio.gather(harness.runtime.stop(), harness.runtime.stop())
    await harness.runtime.stop()
    assert harness.closed == 1


async def test_an_rpc_longer_than_the_grace_is_cut_off():
    harness = await start_harness(grace=0.1)
    try:
        inflight = asyncio.ensure_future(harness.stub.ListSegments(segment_pb2.ListSegmentsRequest()))
        await asyncio.wait_for(harness.servicer.listing.wait(), 2)
        await harness.runtime.stop()
        assert not harness.servicer.listed  # stop() returned without waiting for the 0.5 s handler
        error = await rpc_error(inflight)
        assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert harness.closed == 1
    finally:
        await harness.channel.close()
        await harness.runtime.stop()


class StubbornWorker:
    name = "stubborn"

    def __init__(self) -> None:
        self.runs = 0
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        self.runs += 1
        if self.runs < 3:
            raise RuntimeError("crash")
        await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


async def test_workers_are_restarted_after_a_crash_and_stopped_on_shutdown(eventually):
    worker = StubbornWorker()
    server = create_server([])
    closed = []

    async def close():
        closed.append(worker.stopped.is_set())  # workers stop before the close callback runs

    async def ready():
        return True

    runtime = ServiceRuntime(
        name="w",
        server=server,
        grpc_address="127.0.0.1:0",
        readiness=ready,
        close=close,
        workers=[worker],
        shutdown_grace=1,
    )
    await runtime.start()
    try:
        await eventually(lambda: worker.runs >= 3)
        assert worker.runs == 3  # crashed twice, restarted with backoff
    finally:
        await runtime.stop()
    assert worker.stopped.is_set() and closed == [True]


async def test_an_idle_service_with_the_kits_workers_stops_at_once(database_url, tmp_path, nc, js, names, eventually):
    # Consumers waiting in a pull request (1 s), the relay asleep, /metrics serving: stop() used
    # to wait for the pull request and for the metrics server's 0.5 s poll (~1.4 s in all).
    empty = tmp_path / "no-migrations"
    empty.mkdir()
    await migrate(database_url, "svc", empty)
    await ensure_streams(js, names, (RAW,))
    pool = await db.create_pool(database_url, "svc", application_name="stop-test")

    async def handle(messages):
        pass

    partitioned = ConsumerLoop(js, names, ConsumerSpec("stopper", RAW, partitioned=True, lease_seconds=3.0), handle)
    plain = ConsumerLoop(js, names, ConsumerSpec("plain", RAW), handle)
    workers = [partitioned, plain, OutboxRelay(pool, js, schema="svc")]

    async def ready():
        return True

    runtime = ServiceRuntime(
        name="stopper",
        server=create_server([]),
        grpc_address="127.0.0.1:0",
        readiness=ready,
        close=pool.close,
        workers=workers,
        metrics_port=0,
        shutdown_grace=5,
    )
    await runtime.start()
    await eventually(lambda: partitioned._group is not None and len(partitioned._group.partitions) == 4)
    await asyncio.sleep(0.3)  # every loop waiting for messages
    started = time.monotonic()
    await runtime.stop()
    assert time.monotonic() - started < 0.3


# ---------------------------------------------------------------- per-RPC log line


@pytest.fixture
def json_logs():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure("segment", fmt="json", stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


async def test_each_rpc_logs_one_line_with_request_id_workspace_method_and_code(json_logs):
    harness = await start_harness()
    try:
        metadata = (("x-request-id", "req-123"), ("x-cdp-workspace", "shop"))
        await rpc_error(harness.stub.GetSegment(get_request("missing"), metadata=metadata))
        await harness.stub.GetSegment(get_request("ok"))
    finally:
        await harness.channel.close()
        await harness.runtime.stop()
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    rpc_lines = [line for line in lines if line["event"] == "rpc"]
    assert len(rpc_lines) == 2
    first, second = rpc_lines
    assert first["request_id"] == "req-123" and first["workspace"] == "shop"
    assert first["rpc_method"] == f"/{SERVICE}/GetSegment" and first["code"] == "NOT_FOUND"
    assert first["service"] == "segment" and first["duration_ms"] >= 0
    assert second["code"] == "OK" and second["request_id"] not in ("", "req-123")  # generated when absent
    assert second["workspace"] is None
