"""Channel providers. Each send carries the delivery id as the provider's idempotency key, so
a send repeated after a crash (the delivery row is committed only after the provider answered)
is recognised by the provider instead of reaching the person twice.

A send calls ``transmitting()`` (the sender commits "at the provider" then) right before the
step it cannot take back: an SMTP message's content after the server's 354, a webhook's POST. A
sender that died before that point sent nothing; one that died after it may have, and its
message goes again with the same key (counted as a re-send).

- SMTP (email) through aiosmtplib: ``Message-ID: <{delivery id}@{domain}>`` and
  ``X-Idempotency-Key``; one connection per send batch (:meth:`SmtpProvider.connection`), its
  messages one after another.
- HTTP webhook (SMS, app push, WeChat template messages, the webhook step): JSON POST with an
  ``Idempotency-Key`` header and, when a signing key is set, ``X-Cdp-Signature`` (HMAC-SHA256).
  429 and 503 answers are retried after their ``Retry-After`` when they give one.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc
import aiosmtplib
from aiosmtplib.email import flatten_message
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

Transmitting = Callable[[], Awaitable[None]]


async def _untracked() -> None:
    return None


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
    """The provider refused or failed: ``permanent`` means retrying cannot help; ``retry_after``
    (seconds) is when the provider asked to be tried again, if it said."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Provider(Protocol):
    async def send(self, message: OutgoingMessage, transmitting: Transmitting = _untracked) -> None: ...

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

    def connection(self) -> SmtpConnection:
        """One connection for a batch of messages (``async with``), opened at the first send."""
        return SmtpConnection(self)

    async def send(self, message: OutgoingMessage, transmitting: Transmitting = _untracked) -> None:
        async with self.connection() as connection:
            await connection.send(message, transmitting)

    async def close(self) -> None:
        return None


class SmtpConnection:
    """An SMTP session that sends messages one after another (one TCP and TLS handshake, EHLO
    and login per batch, not per message). A message the server refuses leaves the session
    usable (RSET); a network error, a timeout or a cancellation closes it and the next message
    opens a new one."""

    def __init__(self, provider: SmtpProvider) -> None:
        self._provider = provider
        self._smtp: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> SmtpConnection:
        return self

    async def __aexit__(self, *_exc) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()

    async def _open(self) -> aiosmtplib.SMTP:
        p = self._provider
        smtp = aiosmtplib.SMTP(
            hostname=p._host,
            port=p._port,
            username=p._username,
            password=p._password,
            use_tls=p._tls == "tls",
            start_tls=p._tls == "starttls",
            timeout=p._timeout,
        )
        await smtp.connect()
        if smtp.is_ehlo_or_helo_needed:
            await smtp.ehlo()
        return smtp

    async def send(self, message: OutgoingMessage, transmitting: Transmitting = _untracked) -> None:
        email = self._provider.compose(message)
        try:
            if self._smtp is None or not self._smtp.is_connected:
                self._smtp = await self._open()
            await self._transaction(self._smtp, email, message.to, transmitting)
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPRecipientRefused) as exc:
            await self._reset()
            raise ProviderError(f"recipient refused: {exc}", permanent=True) from None
        except aiosmtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise ProviderError(f"{type(exc).__name__}: {exc}", permanent=False) from None
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset()
            raise ProviderError(f"SMTP {exc.code}: {exc.message}", permanent=500 <= exc.code < 600) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop()
            raise ProviderError(f"{type(exc).__name__}: {exc}", permanent=False) from None
        except BaseException:  # cancelled (the send timeout) mid-command: the session's state is unknown
            self._drop()
            raise

    async def _transaction(self, smtp: aiosmtplib.SMTP, email: EmailMessage, to: str, transmitting) -> None:
        """MAIL, RCPT, DATA; ``transmitting()`` once the server is ready for the content (354),
        then the content and its 250. Only a death between that call and the 250 being recorded
        can leave the server with a message the sender does not know it took."""
        utf8 = not (self._provider._sender + to).isascii()
        if utf8 and not smtp.supports_extension("smtputf8"):
            raise ProviderError("a non-ASCII address and a server without SMTPUTF8", permanent=True)
        eight_bit = smtp.supports_extension("8bitmime")
        options = (["SMTPUTF8"] if utf8 else []) + (["BODY=8BITMIME"] if eight_bit else [])
        content = flatten_message(email, utf8=utf8, cte_type="8bit" if eight_bit else "7bit")
        encoding = "utf-8" if utf8 else "ascii"
        await smtp.mail(self._provider._sender, options=options, encoding=encoding)
        await smtp.rcpt(to, encoding=encoding)
        start = await smtp.execute_command(b"DATA")
        if start.code != 354:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        await transmitting()
        # The content goes as aiosmtplib's own data() sends it after its 354 (its protocol's
        # write and read_response; aiosmtplib is pinned in deploy/constraints.txt).
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        protocol.write(PERIOD_REGEX.sub(b"..", normalize_message_line_endings(content)) + b".\r\n")
        answer = await protocol.read_response(timeout=self._provider._timeout)
        if answer.code != 250:
            raise aiosmtplib.SMTPDataError(answer.code, answer.message)

    async def _reset(self) -> None:
        if self._smtp is None:
            return
        try:
            await self._smtp.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._drop()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


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

    async def send(self, message: OutgoingMessage, transmitting: Transmitting = _untracked) -> None:
        await self.post(message.url or self._url, self.payload(message), message.delivery_id, transmitting)

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=self._timeout)

    async def post(self, url: str, body: bytes, key: str, transmitting: Transmitting = _untracked) -> None:
        if self._session is None:
            self._session = self._new_session()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._key:
            headers["X-Cdp-Signature"] = "sha256=" + hmac.new(self._key, body, hashlib.sha256).hexdigest()
        await transmitting()
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                if 200 <= response.status < 300 or response.status == 409:
                    return
                text = (await response.text())[:200]
                permanent = 400 <= response.status < 500 and response.status not in (408, 425, 429)
                raise ProviderError(
                    f"HTTP {response.status}: {text}",
                    permanent=permanent,
                    retry_after=retry_after(response.headers.get("Retry-After", ""))
                    if response.status in (429, 503)
                    else None,
                )
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


MAX_RETRY_AFTER = 24 * 3600.0


def retry_after(value: str, now: datetime | None = None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` (delay-seconds or an HTTP date), at most a day; None
    when absent or unreadable."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - (now or datetime.now(UTC))).total_seconds(), 0.0), MAX_RETRY_AFTER)


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

    async def send(self, message: OutgoingMessage, transmitting: Transmitting = _untracked) -> None:
        refusal = self._guard.check_url(message.url)  # an IP literal is connected to without resolving
        if refusal:
            raise ProviderError(f"webhook_refused: {refusal}", permanent=True)
        try:
            await self.post(message.url, message.body.encode(), message.delivery_id, transmitting)
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

    async def send(self, message: OutgoingMessage, transmitting: Transmitting = _untracked) -> None:
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

    async def send(self, message: OutgoingMessage, transmitting: Transmitting = _untracked) -> None:
        raise ProviderError(f"no provider configured for channel {self._channel}", permanent=True)

    async def close(self) -> None:
        return None
