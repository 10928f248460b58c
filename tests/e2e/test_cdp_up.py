"""`cdp up` (what `make up` runs after installing): ready, SERVING, reflection, status, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cdp_devstack.stack import Ports

from .conftest import free_ports

pytestmark = pytest.mark.e2e
CDP = str(Path(sys.executable).parent / "cdp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cdp_up_status_and_ctrl_c(tmp_path):
    ports = free_ports()  # metrics_base 0: every process picks a free /metrics port
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update({variable: str(getattr(ports, name)) for name, variable in Ports.ENV.items()})
    env["CDP_STATE_DIR"] = str(tmp_path / ".cdp")
    for name in ("CDP_DATABASE_URL", "CDP_NATS_URL"):  # an external server, when the suite runs against one
        if name in os.environ:
            env[name] = os.environ[name]
    started = time.monotonic()
    up = subprocess.Popen([CDP, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        for line in up.stdout:
            output.append(line)
            if line.startswith("ready in"):
                break
        else:
            raise AssertionError("cdp up ended without 'ready':\n" + "".join(output[-50:]))
        ready_after = time.monotonic() - started
        assert ready_after < 90, ready_after

        status = subprocess.run([CDP, "status"], env=env, capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("SERVING on") == 5

        with grpc.insecure_channel(f"127.0.0.1:{ports.gateway_grpc}") as channel:
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            (answer,) = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        listed = {s.name for s in answer.list_services_response.service}
        assert {
            "cdp.gateway.v1.CollectionService",
            "cdp.identity.v1.IdentityService",
            "cdp.profile.v1.ProfileService",
            "cdp.segment.v1.SegmentService",
            "cdp.campaign.v1.JourneyService",
            "grpc.health.v1.Health",
        } <= listed
        # `cdp import` runs the profile's bulk import against the running stack.
        orders = tmp_path / "orders.jsonl"
        orders.write_text('{"order_id": "o-1", "customer_id": "c-1", "order_time": "2026-05-01", "total": 9.9}\n')
        imported = subprocess.run(
            [CDP, "import", "--kind", "orders", "--no-progress", str(orders)], env=env, capture_output=True, text=True
        )
        assert imported.returncode == 0 and "1 applied, 0 rejected" in imported.stdout, imported.stderr
        key_file = tmp_path / ".cdp" / "dev-write-key"
        assert key_file.read_text().startswith("cdp_wk_")
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        pids = json.loads((tmp_path / ".cdp" / "stack.json").read_text())["pids"]
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = up.communicate(timeout=60)
    assert up.returncode == 0, rest
    assert "cdp: stopped" in rest
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert not (tmp_path / ".cdp" / "stack.json").exists()
