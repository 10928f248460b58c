"""Real receivers that count what campaign delivers, per idempotency key.

- ``SmtpReceiver``: an aiosmtpd SMTP server. Like a provider that honours idempotency keys, it
  accepts a message whose Message-ID it already has without delivering it again; it keeps every
  raw arrival (``arrivals``: Message-ID, X-Idempotency-Key), counts them per Message-ID
  (``transmissions``) and what it delivered (``delivered``, per Message-ID).
- ``WebhookReceiver``: an aiohttp server counting POSTs per ``Idempotency-Key``; a repeated key
  is answered 200 and not delivered again. It can be told to fail the first N attempts (503, or
  ``fail_status``, with ``Retry-After: retry_after`` when set).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from email import message_from_bytes

from aiohttp import web
from aiosmtpd.controller import Controller

from cdp_devstack.infra import free_port


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self._receiver = receiver

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content)
        key = message["Message-ID"]
        with self._receiver.lock:
            self._receiver.arrivals.append((key, message["X-Idempotency-Key"]))
            self._receiver.transmissions[key] += 1
            if key not in self._receiver.delivered:
                self._receiver.delivered[key] = {
                    "to": envelope.rcpt_tos,
                    "subject": message["Subject"],
                    "body": message.get_payload(decode=True).decode(errors="replace"),
                }
        return "250 Message accepted for delivery"


class SmtpReceiver:
    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.arrivals: list[tuple[str, str]] = []
        self.transmissions: Counter[str] = Counter()
        self.delivered: dict[str, dict] = {}
        self.port = free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def env(self) -> dict[str, str]:
        return smtp_env(self.port)


def smtp_env(port: int) -> dict[str, str]:
    """Campaign's settings for sending e-mail to a local test SMTP server on ``port``."""
    return {
        "CDP_CAMPAIGN_EMAIL_PROVIDER": "smtp",
        "CDP_CAMPAIGN_SMTP_HOST": "127.0.0.1",
        "CDP_CAMPAIGN_SMTP_PORT": str(port),
        "CDP_CAMPAIGN_SMTP_TLS": "none",
        "CDP_CAMPAIGN_SMTP_FROM": "shop@example.com",
    }


class WebhookReceiver:
    def __init__(self) -> None:
        self.posts: Counter[str] = Counter()
        self.delivered: dict[str, dict] = {}
        self.fail_first: dict[str, int] = {}
        self.fail_always = False
        self.fail_status = 503
        self.retry_after = ""
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        body = await request.read()
        self.posts[key] += 1
        if self.fail_always or self.posts[key] <= self.fail_first.get(request.path, 0):
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.Response(status=self.fail_status, text="try again", headers=headers)
        if key not in self.delivered:
            self.delivered[key] = {"path": request.path, "body": json.loads(body)}
        return web.json_response({"status": "accepted"})

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{channel}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, channel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{channel}"

    def env(self) -> dict[str, str]:
        # Journeys' webhook steps may call this local receiver (by default only public hosts).
        env = {"CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
        for channel in ("sms", "push", "wechat"):
            env[f"CDP_CAMPAIGN_{channel.upper()}_PROVIDER"] = "webhook"
            env[f"CDP_CAMPAIGN_{channel.upper()}_URL"] = self.url(channel)
        return env


async def eventually(predicate, *, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll an (async or plain) predicate until it is truthy; its last value is returned."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
