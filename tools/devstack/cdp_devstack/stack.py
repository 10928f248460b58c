"""The whole CDP on one machine: PostgreSQL, NATS, the four services and the gateway as
separate processes. Used by ``cdp up`` and by the end-to-end tests.

PostgreSQL and NATS come from pip wheels unless ``CDP_DATABASE_URL`` / ``CDP_NATS_URL`` point
at external servers. Components migrate their own schema at start (advisory-locked), then
report SERVING on gRPC health once their database and NATS answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdp_devstack.infra import InfraError, NatsServer, PostgresServer
from cdpkit.pii import new_key

COMPONENTS = ("identity", "profile", "segment", "campaign", "gateway")


@dataclass
class Ports:
    """Every port of the local stack; each overridable by its environment variable."""

    postgres: int = 15432
    nats: int = 14222
    nats_monitor: int = 18222
    gateway_http: int = 8080
    gateway_grpc: int = 50051
    identity: int = 50061
    profile: int = 50062
    segment: int = 50063
    campaign: int = 50064
    metrics_base: int = 9460  # gateway 9460, identity 9461, ... campaign 9464; 0: free ports

    ENV = {
        "postgres": "CDP_PG_PORT",
        "nats": "CDP_NATS_PORT",
        "nats_monitor": "CDP_NATS_MONITOR_PORT",
        "gateway_http": "CDP_GATEWAY_HTTP_PORT",
        "gateway_grpc": "CDP_GATEWAY_GRPC_PORT",
        "identity": "CDP_IDENTITY_GRPC_PORT",
        "profile": "CDP_PROFILE_GRPC_PORT",
        "segment": "CDP_SEGMENT_GRPC_PORT",
        "campaign": "CDP_CAMPAIGN_GRPC_PORT",
        "metrics_base": "CDP_METRICS_PORT_BASE",
    }

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ = os.environ) -> Ports:
        ports = cls()
        for name, variable in cls.ENV.items():
            if variable in environ:
                setattr(ports, name, int(environ[variable]))
        return ports

    def grpc(self, component: str) -> int:
        return self.gateway_grpc if component == "gateway" else getattr(self, component)

    def metrics(self, component: str) -> int:
        if self.metrics_base == 0:
            return 0  # each process picks a free port
        return self.metrics_base + COMPONENTS.index(component) + 1 if component != "gateway" else self.metrics_base


@dataclass
class Component:
    name: str
    process: subprocess.Popen
    pump: threading.Thread
    # Its last lines of output, for the error when it exits early.
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=15))


@dataclass
class Stack:
    state_dir: Path
    ports: Ports = field(default_factory=Ports)
    database_url: str | None = None  # external PostgreSQL; None starts one
    nats_url: str | None = None  # external NATS; None starts one
    bus_prefix: str = "cdp"
    fast_postgres: bool = False
    log: IO[str] = sys.stdout
    extra_env: dict[str, str] = field(default_factory=dict)
    postgres: PostgresServer | None = None
    nats: NatsServer | None = None
    components: dict[str, Component] = field(default_factory=dict)
    _log_lock: threading.Lock = field(default_factory=threading.Lock)

    # Infrastructure

    def start_infrastructure(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.database_url is None:
            self.postgres = PostgresServer(self.state_dir / "postgres", self.ports.postgres, fast=self.fast_postgres)
            self.postgres.start()
            self.database_url = self.postgres.dsn("cdp")
        if self.nats_url is None:
            self.nats = NatsServer(self.state_dir / "nats", self.ports.nats, self.ports.nats_monitor)
            self.nats.start()
            self.nats_url = self.nats.url

    # Components

    def pii_env(self) -> dict[str, str]:
        """Development PII keys, made once per state directory (0600) unless the environment has them."""
        if "CDP_PII_KEYS" in os.environ and "CDP_PII_HASH_KEY" in os.environ:
            return {"CDP_PII_KEYS": os.environ["CDP_PII_KEYS"], "CDP_PII_HASH_KEY": os.environ["CDP_PII_HASH_KEY"]}
        path = self.state_dir / "pii-keys.env"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(f"CDP_PII_KEYS=dev1:{new_key()}\nCDP_PII_HASH_KEY={new_key()}\n")
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return {key: value for key, value in pairs}

    def env_for(self, component: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
        env.update(
            {
                "CDP_DATABASE_URL": self.database_url or "",
                "CDP_NATS_URL": self.nats_url or "",
                "CDP_BUS_PREFIX": self.bus_prefix,
                "CDP_LOG_FORMAT": os.environ.get("CDP_LOG_FORMAT", "console"),
                "CDP_LOG_LEVEL": os.environ.get("CDP_LOG_LEVEL", "info"),
                "PYTHONUNBUFFERED": "1",
                **self.pii_env(),
                f"CDP_{component.upper()}_GRPC_PORT": str(self.ports.grpc(component)),
                f"CDP_{component.upper()}_METRICS_PORT": str(self.ports.metrics(component)),
            }
        )
        if component == "campaign":
            # Campaign calls profile and segment; its messages go to a JSONL dev sink.
            env["CDP_CAMPAIGN_PROFILE_TARGET"] = f"127.0.0.1:{self.ports.profile}"
            env["CDP_CAMPAIGN_SEGMENT_TARGET"] = f"127.0.0.1:{self.ports.segment}"
            env["CDP_CAMPAIGN_SINK_PATH"] = str(self.state_dir / "campaign-sink.jsonl")
        if component == "profile":
            env["CDP_PROFILE_IDENTITY_TARGET"] = f"127.0.0.1:{self.ports.identity}"  # the bulk import
        if component == "gateway":
            env["CDP_GATEWAY_HTTP_PORT"] = str(self.ports.gateway_http)
            for service in ("identity", "profile", "segment", "campaign"):
                env[f"CDP_{service.upper()}_TARGET"] = f"127.0.0.1:{self.ports.grpc(service)}"
        env.update(self.extra_env)
        return env

    def _pump(self, name: str, stream: IO[bytes], tail: deque[str]) -> None:
        width = max(map(len, COMPONENTS))
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            tail.append(line)
            with self._log_lock:
                self.log.write(f"{name:>{width}} | {line}\n")
                self.log.flush()

    def start_component(self, name: str) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", f"cdp_{name}", "serve"],
            env=self.env_for(name),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        tail: deque[str] = deque(maxlen=15)
        pump = threading.Thread(target=self._pump, args=(name, process.stdout, tail), daemon=True)
        pump.start()
        self.components[name] = Component(name, process, pump, tail)

    def start_components(self) -> None:
        for name in COMPONENTS:
            self.start_component(name)

    def serving(self, name: str, timeout: float = 1.0) -> bool:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{self.ports.grpc(name)}") as channel:
                response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
                return response.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def wait_serving(self, names: tuple[str, ...] = COMPONENTS, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            for name in list(pending):
                component = self.components.get(name)
                if component and component.process.poll() is not None:
                    component.pump.join(timeout=1)  # the rest of its output
                    last = "\n".join(component.tail)
                    code = component.process.returncode
                    raise InfraError(f"{name} exited with code {code}; its last output:\n{last}")
                if self.serving(name, timeout=0.5):
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise InfraError(f"not SERVING after {timeout:.0f}s: {', '.join(pending)}")
            if pending:
                time.sleep(0.1)

    def run_gateway_admin(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "cdp_gateway", "admin", *args],
            env=self.env_for("gateway"),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise InfraError(f"gateway admin {' '.join(args)} failed:\n{result.stderr}{result.stdout}")
        return result.stdout

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        component = self.components[name]
        component.process.send_signal(sig)
        component.process.wait(30)
        component.pump.join(5)

    # Shutdown

    def stop_components(self, timeout: float = 20.0) -> None:
        # The gateway first (no new work), then the services.
        for name in ("gateway", *[c for c in COMPONENTS if c != "gateway"]):
            component = self.components.get(name)
            if component and component.process.poll() is None:
                component.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for component in self.components.values():
            try:
                component.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                component.process.kill()
                component.process.wait()
            component.pump.join(2)
        self.components.clear()

    def stop(self) -> None:
        self.stop_components()
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.stop()

    def pids(self) -> dict[str, int]:
        pids = {name: c.process.pid for name, c in self.components.items()}
        if self.postgres and self.postgres.process:
            pids["postgres"] = self.postgres.process.pid
        if self.nats and self.nats.process:
            pids["nats"] = self.nats.process.pid
        return pids


def on_signals(handler: Callable[[], None]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: handler())
