"""Process lifecycle shared by every service.

A service's ``bootstrap`` builds a :class:`ServiceRuntime` (pool, NATS, gRPC server, background
workers) and ``__main__`` calls :meth:`ServiceRuntime.run_until_signal`. Tests use
:meth:`start` / :meth:`stop` in their own event loop.

Start: gRPC server bound (NOT_SERVING) -> /metrics -> workers -> readiness loop, which reports
SERVING only while the database and NATS answer.
Stop (SIGTERM/SIGINT): NOT_SERVING -> ``server.stop(grace)`` lets in-flight RPCs finish ->
workers stop after their current batch -> NATS drained -> pool closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from cdpkit import bus, db
from cdpkit.config import CommonSettings
from cdpkit.metrics import READY, MetricsServer
from cdpkit.server import GrpcServer

log = structlog.get_logger(__name__)


class Worker(Protocol):
    """A background loop (consumer, outbox relay, timer) that stops when asked."""

    name: str

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Infrastructure:
    """The pool, the NATS connection and JetStream context of one process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: NATS,
        js: JetStreamContext,
        names: bus.BusNames,
        reads: asyncpg.Pool | None = None,
    ) -> None:
        self.pool = pool
        self.nc = nc
        self.js = js
        self.names = names
        # Plain reads on a hot path (see ``open(read_pool=True)``); else the pool itself.
        self.reads = reads or pool

    @classmethod
    async def open(
        cls,
        settings: CommonSettings,
        *,
        schema: str,
        client_name: str,
        json_decoder: Callable[[str], Any] = json.loads,
        read_pool: bool = False,
    ) -> Infrastructure:
        """``read_pool``: also a pool for plain reads that leave no session state (``reads``),
        whose connections go back without asyncpg's reset round trip (``db.create_pool``)."""
        pool = await db.create_pool(
            settings.database_url.get(),
            schema,
            application_name=client_name,
            max_size=settings.db_pool_max_size,
            json_decoder=json_decoder,
        )
        reads = None
        try:
            if read_pool:
                reads = await db.create_pool(
                    settings.database_url.get(),
                    schema,
                    application_name=f"{client_name}-reads",
                    max_size=settings.db_pool_max_size,
                    json_decoder=json_decoder,
                    reset_session=False,
                )
            nc = await bus.connect(settings.nats_url, name=client_name)
        except Exception:
            await pool.close()
            if reads is not None:
                await reads.close()
            raise
        js = nc.jetstream()
        names = bus.BusNames(settings.bus_prefix, settings.partitions, settings.stream_replicas)
        await bus.ensure_streams(js, names)
        return cls(pool, nc, js, names, reads)

    async def ready(self) -> bool:
        return self.nc.is_connected and await db.ping(self.pool)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if not self.nc.is_closed:
                await self.nc.drain()
        await self.pool.close()
        if self.reads is not self.pool:
            await self.reads.close()


class ServiceRuntime:
    def __init__(
        self,
        *,
        name: str,
        server: GrpcServer,
        grpc_address: str,
        readiness: Callable[[], Awaitable[bool]],
        close: Callable[[], Awaitable[None]],
        workers: list[Worker] | None = None,
        metrics_host: str = "127.0.0.1",
        metrics_port: int | None = None,
        shutdown_grace: float = 10.0,
        readiness_interval: float = 2.0,
    ) -> None:
        self.name = name
        self.server = server
        self.workers = workers or []
        self._grpc_address = grpc_address
        self._readiness = readiness
        self._close = close
        self._metrics_host = metrics_host
        self._metrics_port = metrics_port
        self._grace = shutdown_grace
        self._readiness_interval = readiness_interval
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self._stopping = False
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self._metrics: MetricsServer | None = None

    @classmethod
    def for_service(
        cls, name: str, settings: CommonSettings, infra: Infrastructure, server: GrpcServer, workers: list[Worker]
    ) -> ServiceRuntime:
        """The usual wiring: ``settings`` must also carry the service's grpc_port and metrics_port."""
        return cls(
            name=name,
            server=server,
            grpc_address=f"{settings.grpc_host}:{settings.grpc_port}",  # type: ignore[attr-defined]
            readiness=infra.ready,
            close=infra.close,
            workers=workers,
            metrics_host=settings.metrics_host,
            metrics_port=settings.metrics_port,  # type: ignore[attr-defined]
            shutdown_grace=settings.shutdown_grace_seconds,
        )

    async def start(self) -> None:
        await self.server.set_serving(False)
        self.grpc_port = await self.server.start(self._grpc_address)
        if self._metrics_port is not None:
            self._metrics = MetricsServer(self._metrics_host, self._metrics_port)
            self.metrics_port = self._metrics.port
        for worker in self.workers:
            self._tasks.append(asyncio.create_task(self._supervise(worker), name=worker.name))
        await self._check_ready()
        self._tasks.append(asyncio.create_task(self._readiness_loop(), name="readiness"))
        log.info(
            "started", grpc_port=self.grpc_port, metrics_port=self.metrics_port, workers=[w.name for w in self.workers]
        )

    async def _check_ready(self) -> bool:
        try:
            ready = await self._readiness()
        except Exception:  # noqa: BLE001
            ready = False
        if not self._stopping:
            await self.server.set_serving(ready)
        READY.set(1 if ready else 0)
        return ready

    async def _readiness_loop(self) -> None:
        last = None
        while True:
            ready = await self._check_ready()
            if ready != last:
                log.info("readiness", ready=ready)
                last = ready
            await asyncio.sleep(self._readiness_interval)

    async def _supervise(self, worker: Worker) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker crashed, restarting", worker=worker.name, restart_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        log.info("stopping", grace=self._grace)
        READY.set(0)
        await self.server.stop(self._grace)
        for worker in self.workers:
            worker.stop()
        worker_tasks = [t for t in self._tasks if t.get_name() != "readiness"]
        if worker_tasks:
            _done, pending = await asyncio.wait(worker_tasks, timeout=self._grace)
            for task in pending:
                task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close()
        if self._metrics is not None:
            self._metrics.close()
        self._stopped.set()
        log.info("stopped")

    async def run_until_signal(self) -> None:
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        await self.start()
        await stop_requested.wait()
        await self.stop()
