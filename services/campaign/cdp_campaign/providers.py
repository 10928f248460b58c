"""Channel providers. Each send carries the delivery id as the provider's idempotency key, so
a send repeated after a crash (the delivery row is committed only after the provider answered)
is recognised by the provider instead of reaching the person twice.

- SMTP (email) through aiosmtplib: ``Message-ID: <{delivery id}@{domain}>`` and
  ``X-Idempotency-Key``.
- HTTP webhook (SMS, app push, WeChat template messages, the webhook step): JSON POST with an
  ``Idempotency-Key`` header and, when a signing key is set, ``X-Cdp-Signature`` (HMAC-SHA256).
- Dev sink: one JSON line per message in a file, de-duplicated by key (``make up``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import os
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc
import aiosmtplib

_LINE_BREAK = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


@dataclass(frozen=True)
class OutgoingMessage:
    delivery_id: str
    workspace_id: str
    journey_id: str
    step_id: str
    person_id: str
    channel: str
    to: str = ""
    subject: str = ""
    body: str = ""
    template_id: str = ""
    url: str = ""


class ProviderError(Exception):
    """The provider refused or failed: ``permanent`` means retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Provider(Protocol):
    async def send(self, message: OutgoingMessage) -> None: ...

    async def close(self) -> None: ...


class SmtpProvider:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str = "",
        password: str = "",
        tls: str = "none",
        timeout: float = 10.0,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password = username or None, password or None
        self._tls = tls
        self._timeout = timeout
        self._domain = sender.rpartition("@")[2] or "cdp.local"

    def compose(self, message: OutgoingMessage) -> EmailMessage:
        if _LINE_BREAK.search(message.to):
            raise ProviderError("the address has a line break", permanent=True)
        email = EmailMessage()
        email["From"] = self._sender
        email["To"] = message.to
        # A rendered subject is one line: a line break from a trait must not become a header.
        email["Subject"] = " ".join(_LINE_BREAK.split(message.subject)).strip()
        email["Message-ID"] = f"<{message.delivery_id}@{self._domain}>"
        email["X-Idempotency-Key"] = message.delivery_id
        email.set_content(message.body)
        return email

    async def send(self, message: OutgoingMessage) -> None:
        try:
            await aiosmtplib.send(
                self.compose(message),
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._tls == "tls",
                start_tls=self._tls == "starttls",
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise ProviderError(f"recipient refused: {exc}", permanent=True) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise ProviderError(f"SMTP {exc.code}: {exc.message}", permanent=500 <= exc.code < 600) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}", permanent=False) from None

    async def close(self) -> None:
        return None


class WebhookProvider:
    """POSTs JSON; 2xx (and 409: the key was seen) is success, other 4xx permanent, else retried."""

    def __init__(self, url: str, *, signing_key: str = "", timeout: float = 10.0) -> None:
        self._url = url
        self._key = signing_key.encode()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def payload(self, message: OutgoingMessage) -> bytes:
        document = {k: v for k, v in asdict(message).items() if k != "url"}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    async def send(self, message: OutgoingMessage) -> None:
        await self.post(message.url or self._url, self.payload(message), message.delivery_id)

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=self._timeout)

    async def post(self, url: str, body: bytes, key: str) -> None:
        if self._session is None:
            self._session = self._new_session()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._key:
            headers["X-Cdp-Signature"] = "sha256=" + hmac.new(self._key, body, hashlib.sha256).hexdigest()
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                if 200 <= response.status < 300 or response.status == 409:
                    return
                text = (await response.text())[:200]
                permanent = 400 <= response.status < 500 and response.status not in (408, 425, 429)
                raise ProviderError(f"HTTP {response.status}: {text}", permanent=permanent)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedDestination):
                raise exc.os_error from None
            raise ProviderError(f"{type(exc).__name__}: {exc}", permanent=False) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}", permanent=False) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class BlockedDestination(OSError):
    """A webhook step's destination the guard refuses."""


class DestinationGuard:
    """Where a journey's webhook step (a URL a journey author wrote) may go.

    With an allow-list (``CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS``: host names or IP addresses, and
    ``.example.com`` for its subdomains), only those hosts, wherever they are (an internal CRM).
    Without one, any host whose addresses are all public: not loopback, private, link-local
    (169.254.169.254, cloud metadata), shared, reserved or multicast, so a journey cannot reach
    the cluster's own services. Checked at publish (the host) and at every connection (the
    addresses it resolves to then: no DNS rebinding)."""

    def __init__(self, allowed_hosts: Sequence[str] = ()) -> None:
        self._allowed = tuple(h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip())

    def listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == a or (a.startswith(".") and host.endswith(a)) for a in self._allowed)

    def refusal(self, host: str, addresses: Sequence[str] = ()) -> str:
        """Why ``host`` (resolved to ``addresses``) is refused, or ""."""
        if self._allowed:
            return "" if self.listed(host) else f"host {host} is not in CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS"
        if host.lower().rstrip(".") in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
            return f"host {host} is not public"
        for address in (host, *addresses):
            try:
                ip = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                continue
            if not ip.is_global or ip.is_multicast:
                return f"{address} is not a public address"
        return ""

    def check_url(self, url: str) -> str:
        """The publish-time refusal of a webhook URL, or ""."""
        host = urlsplit(url).hostname or ""
        return self.refusal(host) if host else "the URL has no host"


class _GuardedResolver(aiohttp.abc.AbstractResolver):
    def __init__(self, guard: DestinationGuard) -> None:
        self._guard = guard
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        infos = await self._inner.resolve(host, port, family)
        refusal = self._guard.refusal(host, [info["host"] for info in infos])
        if refusal:
            raise BlockedDestination(refusal)
        return infos

    async def close(self) -> None:
        await self._inner.close()


class WebhookStepProvider(WebhookProvider):
    """The journey's webhook step: the rendered body goes to the step's own URL as is, if the
    :class:`DestinationGuard` lets it."""

    def __init__(self, guard: DestinationGuard, *, signing_key: str = "", timeout: float = 10.0) -> None:
        super().__init__("", signing_key=signing_key, timeout=timeout)
        self._guard = guard

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(resolver=_GuardedResolver(self._guard))
        return aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    async def send(self, message: OutgoingMessage) -> None:
        refusal = self._guard.check_url(message.url)  # an IP literal is connected to without resolving
        if refusal:
            raise ProviderError(f"webhook_refused: {refusal}", permanent=True)
        try:
            await self.post(message.url, message.body.encode(), message.delivery_id)
        except BlockedDestination as exc:
            raise ProviderError(f"webhook_refused: {exc}", permanent=True) from None


class SinkProvider:
    """Appends each message as a JSON line (development); a key already written is skipped."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._seen: set[str] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> set[str]:
        seen: set[str] = set()
        if self._path.exists():
            for line in self._path.read_text().splitlines():
                try:
                    seen.add(json.loads(line)["delivery_id"])
                except (ValueError, KeyError):
                    continue
        return seen

    async def send(self, message: OutgoingMessage) -> None:
        async with self._lock:
            if self._seen is None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._seen = self._load()
            if message.delivery_id in self._seen:
                return
            line = json.dumps({**asdict(message), "written_at": time.time()}, ensure_ascii=False) + "\n"
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            self._seen.add(message.delivery_id)

    async def close(self) -> None:
        return None


class NoProvider:
    """A channel nobody configured: every message fails permanently with that reason."""

    def __init__(self, channel: str) -> None:
        self._channel = channel

    async def send(self, message: OutgoingMessage) -> None:
        raise ProviderError(f"no provider configured for channel {self._channel}", permanent=True)

    async def close(self) -> None:
        return None
