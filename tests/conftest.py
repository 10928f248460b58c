"""The real receivers of campaign's messages (an SMTP server, a webhook endpoint), for the
repository's tests that send through campaign: tests/integration and tests/e2e."""

from __future__ import annotations

import pytest

from .e2e.delivery_receivers import SmtpReceiver, WebhookReceiver


@pytest.fixture
def smtp():
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
async def webhooks():
    receiver = await WebhookReceiver().start()
    yield receiver
    await receiver.stop()
