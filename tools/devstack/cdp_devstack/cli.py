"""``cdp up | status | down | import``: the whole CDP locally, from pip-installed PostgreSQL and NATS.

State lives in ``.cdp/`` (override with CDP_STATE_DIR): the database cluster, JetStream
files, logs, the dev keys, and ``stack.json`` for ``status`` and ``down``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cdp_devstack.infra import InfraError
from cdp_devstack.stack import COMPONENTS, Ports, Stack, on_signals

WORKSPACE = "demo"


def state_dir() -> Path:
    return Path(os.environ.get("CDP_STATE_DIR", Path.cwd() / ".cdp")).resolve()


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(directory: Path) -> dict | None:
    path = directory / "stack.json"
    return json.loads(path.read_text()) if path.exists() else None


def up(_args: argparse.Namespace) -> int:
    directory = state_dir()
    previous = _read_state(directory)
    if previous and _alive(previous.get("supervisor")):
        print(f"the stack is already running (pid {previous['supervisor']}); `cdp down` stops it", file=sys.stderr)
        return 1
    started = time.monotonic()
    stack = Stack(
        directory,
        Ports.from_env(),
        database_url=os.environ.get("CDP_DATABASE_URL"),
        nats_url=os.environ.get("CDP_NATS_URL"),
        bus_prefix=os.environ.get("CDP_BUS_PREFIX", "cdp"),
    )
    stop = threading.Event()
    on_signals(stop.set)
    try:
        stack.start_infrastructure()
        stack.start_components()
        write_key_file, secret_key_file = directory / "dev-write-key", directory / "dev-secret-key"
        stack.run_gateway_admin(
            "dev-workspace",
            WORKSPACE,
            "--write-key-file",
            str(write_key_file),
            "--secret-key-file",
            str(secret_key_file),
        )
        stack.wait_serving(timeout=90)
    except (InfraError, OSError) as exc:
        print(f"cdp up failed: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    state = {"supervisor": os.getpid(), "pids": stack.pids(), "ports": vars(stack.ports)}
    # Where the data lives, for `cdp import`.
    state |= {"database_url": stack.database_url, "nats_url": stack.nats_url, "bus_prefix": stack.bus_prefix}
    (directory / "stack.json").write_text(json.dumps(state, indent=2))
    _print_ready(stack, time.monotonic() - started, write_key_file)
    exit_code = 0
    while not stop.wait(0.5):
        dead = [c.name for c in stack.components.values() if c.process.poll() is not None]
        if dead:
            print(f"cdp: {', '.join(dead)} exited; stopping everything", file=sys.stderr)
            exit_code = 1
            break
    print("cdp: stopping...", flush=True)
    stack.stop()
    (directory / "stack.json").unlink(missing_ok=True)
    print("cdp: stopped", flush=True)
    return exit_code


def _print_ready(stack: Stack, elapsed: float, write_key_file: Path) -> None:
    p = stack.ports
    key = write_key_file.read_text().strip()
    lines = [
        "",
        f"ready in {elapsed:.1f}s: all five components report SERVING",
        f"  gateway HTTP   http://127.0.0.1:{p.gateway_http}   (Segment API: POST /v1/track, /v1/batch ...)",
        f"  gateway gRPC   127.0.0.1:{p.gateway_grpc}   (reflection on)",
        *(f"  {name:<14} 127.0.0.1:{p.grpc(name)}" for name in COMPONENTS if name != "gateway"),
        f"  metrics        http://127.0.0.1:{p.metrics('gateway')}/metrics ... :{p.metrics('campaign')}/metrics",
        f"  postgres       {stack.database_url}",
        f"  nats           {stack.nats_url}",
        f"  workspace      {WORKSPACE}; write key {key} (in {write_key_file}),",
        f"                 secret key (read, write) in {write_key_file.parent / 'dev-secret-key'}",
        "  try:           curl -u \"$(cat .cdp/dev-write-key):\" -H 'content-type: application/json' \\",
        f'                   -d \'{{"userId":"u1","event":"Hello"}}\' http://127.0.0.1:{p.gateway_http}/v1/track',
        "Ctrl-C stops everything.",
        "",
    ]
    with stack._log_lock:
        print("\n".join(lines), flush=True)


def status(_args: argparse.Namespace) -> int:
    state = _read_state(state_dir())
    if not state or not _alive(state.get("supervisor")):
        print("the stack is not running (`make up` starts it)")
        return 1
    ports = Ports(**state["ports"])
    stack = Stack(state_dir(), ports)
    healthy = True
    print(f"{'component':<10} {'pid':>8}  {'state'}")
    for name, pid in state["pids"].items():
        if name in COMPONENTS:
            serving = _alive(pid) and stack.serving(name)
            healthy &= serving
            label = f"SERVING on :{ports.grpc(name)}" if serving else "NOT SERVING"
        else:
            alive = _alive(pid)
            healthy &= alive
            label = "running" if alive else "stopped"
        print(f"{name:<10} {pid:>8}  {label}")
    return 0 if healthy else 1


def down(_args: argparse.Namespace) -> int:
    directory = state_dir()
    state = _read_state(directory)
    if not state:
        print("the stack is not running")
        return 0
    supervisor = state.get("supervisor")
    if _alive(supervisor):
        os.kill(supervisor, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(supervisor) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever outlived its supervisor (it was killed, say): components first, servers last.
    order = [n for n in state["pids"] if n in COMPONENTS] + [n for n in ("nats", "postgres") if n in state["pids"]]
    for name in order:
        pid = state["pids"][name]
        if _alive(pid):
            os.kill(pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
            deadline = time.monotonic() + 20
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    (directory / "stack.json").unlink(missing_ok=True)
    print("the stack is stopped")
    return 0


def import_(args: argparse.Namespace) -> int:
    """``python -m cdp_profile import`` against the running stack (its database, identity service
    and PII keys); the profile service relays the announcements."""
    state = _read_state(state_dir())
    if not state or not _alive(state.get("supervisor")):
        print("the stack is not running (`make up` starts it)", file=sys.stderr)
        return 1
    stack = Stack(
        state_dir(),
        Ports(**state["ports"]),
        database_url=state.get("database_url"),
        nats_url=state.get("nats_url"),
        bus_prefix=state.get("bus_prefix", "cdp"),
    )
    command = [sys.executable, "-m", "cdp_profile", "import", "--workspace", args.workspace, *args.arguments]
    return subprocess.run(command, env=stack.env_for("profile"), check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cdp", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start everything in the foreground; Ctrl-C stops it").set_defaults(run=up)
    commands.add_parser("status", help="show what runs and whether it is SERVING").set_defaults(run=status)
    commands.add_parser("down", help="stop a stack started by `cdp up` elsewhere").set_defaults(run=down)
    bulk = commands.add_parser(
        "import",
        help="bulk-import customers, orders, products or stores into the running stack",
        description="cdp import [--workspace demo] --kind orders --format cdnow FILE ... "
        "(the options of `python -m cdp_profile import`, which this runs)",
    )
    bulk.add_argument("--workspace", default=WORKSPACE, help=f"default {WORKSPACE}")
    bulk.set_defaults(run=import_)
    # Everything `cdp import` does not know is passed on to `python -m cdp_profile import`.
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "import":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.arguments = rest
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
