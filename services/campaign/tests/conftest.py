"""Campaign's own tests: the service alone in this event loop on a ManualClock, on real
PostgreSQL, NATS and gRPC, for what is campaign's own logic (definitions, publishing, the API,
re-keying). Campaign with the real profile and segment services (the issue's "done when",
triggers, steps, sends) is tested one level up, in tests/integration, because a component's
tests import no other component; the harness lives there and is loaded here by path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _harness():
    path = Path(__file__).resolve().parents[3] / "tests" / "integration" / "campaign_harness.py"
    spec = importlib.util.spec_from_file_location("cdp_campaign_test_harness", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


harness = _harness()
WS, eventually, len_is, new_person = harness.WS, harness.eventually, harness.len_is, harness.new_person


@pytest.fixture
async def start_campaign(service_env, tmp_path):
    """``campaign = await start_campaign(**env)``: campaign alone (profile and segment targets
    point at a closed port)."""
    async for start in harness.campaigns(service_env, tmp_path, allow_real=False):
        yield start
