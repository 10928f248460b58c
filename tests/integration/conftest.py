"""Campaign with the real profile and segment services in one process on one ManualClock
(campaign_harness.py); the SMTP and webhook receivers come from tests/conftest.py."""

from __future__ import annotations

import pytest

from .campaign_harness import campaigns


@pytest.fixture
async def start_campaign(service_env, tmp_path):
    """``campaign = await start_campaign(**env)``: campaign with the real profile and segment."""
    async for start in campaigns(service_env, tmp_path, allow_real=True):
        yield start
