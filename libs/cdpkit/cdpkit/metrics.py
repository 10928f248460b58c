"""Prometheus metrics shared by every process, and the /metrics endpoint."""

from __future__ import annotations

import contextlib
import socket
import threading

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_SECONDS = Histogram(
    "cdp_rpc_duration_seconds",
    "gRPC server handling time",
    ["method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_MESSAGES = Counter(
    "cdp_consumer_messages_total", "JetStream messages handled, by outcome", ["consumer", "outcome"]
)
CONSUMER_BATCH_SECONDS = Histogram(
    "cdp_consumer_batch_seconds",
    "Time to handle one fetched batch",
    ["consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_PARTITIONS = Gauge(
    "cdp_consumer_partitions", "Partitions this replica holds a lease on and consumes", ["consumer"]
)
OUTBOX_PUBLISHED = Counter("cdp_outbox_published_total", "Outbox rows published to JetStream", ["schema"])
OUTBOX_FAILURES = Counter("cdp_outbox_failures_total", "Outbox relay rounds that failed", ["schema"])
READY = Gauge("cdp_ready", "1 when the process is ready (database and NATS reachable)")


class MetricsServer:
    """The /metrics endpoint in a daemon thread; ``port`` 0 picks a free one."""

    def __init__(self, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host)
        self._host = host
        self.port: int = self._server.server_port

    def close(self) -> None:
        # serve_forever notices a shutdown only between its 0.5 s polls: a connection wakes it at
        # once (a service stop waited for that poll, on the event loop).
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        while stopper.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection((self._host, self.port), timeout=0.1).close()
            stopper.join(0.01)
        self._server.server_close()
        self._thread.join(timeout=5)
