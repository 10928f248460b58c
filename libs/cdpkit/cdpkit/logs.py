"""structlog setup: JSON off a TTY, pretty on one, contextvars, and PII masking.

Call :func:`configure` once at process start. Bind per-request context with
``structlog.contextvars.bind_contextvars`` (the gRPC interceptor does it for every RPC).
Library logs (asyncpg, nats, grpc) go through the same processors and renderer.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog

# Keys whose values are personal data wherever they appear in a log event (any nesting).
PII_KEYS = frozenset(
    {
        "email",
        "phone",
        "mobile",
        "name",
        "first_name",
        "last_name",
        "firstname",
        "lastname",
        "full_name",
        "username",
        "address",
        "street",
        "birthday",
        "birth_date",
        "id_card",
        "ip",
        "traits",
        "identifier_value",
        "password",
        "authorization",
        "write_key",
        "api_key",
    }
)

_EMAIL = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*@((?:[\w-]+\.)+[A-Za-z]{2,})\b")
# E.164 numbers and mainland-China mobile numbers standing alone (not inside ids).
_PHONE = re.compile(
    r"(?<![\w.-])(\+\d{1,3})?(1[3-9]\d)\d{4}(\d{4})(?![\w-]|\.\d)|(?<![\w.-])\+(\d{2,4})\d{4,8}(\d{2})(?![\w-]|\.\d)"
)


def _mask_phone(match: re.Match[str]) -> str:
    if match.group(2):
        return f"{match.group(1) or ''}{match.group(2)}****{match.group(3)}"
    return f"+{match.group(4)}****{match.group(5)}"


def mask_text(text: str) -> str:
    """Mask e-mail addresses and phone numbers inside free text."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(_mask_phone, text)


def mask_value(value: Any) -> str:
    """What a PII-keyed value becomes in a log line: its shape, never its content."""
    if value is None or value == "":
        return value
    if isinstance(value, str):
        if "@" in value:
            local, _, domain = value.partition("@")
            return f"{local[:1]}***@{domain}"
        if len(value) >= 7 and value.lstrip("+").replace(" ", "").replace("-", "").isdigit():
            return f"{value[:3]}****{value[-4:]}"
        return "***"
    return "***"


def _mask(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return "***"  # fail closed: too deep to inspect is too deep to print
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {
            k: (mask_value(v) if isinstance(k, str) and k.lower() in PII_KEYS else _mask(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_mask(v, depth + 1) for v in value]
    return value


def mask_pii(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask PII-named keys and e-mails/phones found in any string."""
    for key, value in list(event_dict.items()):
        if key.lower() in PII_KEYS:
            event_dict[key] = mask_value(value)
        elif key != "timestamp":
            event_dict[key] = _mask(value)
    return event_dict


def configure(service: str, *, level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    """Configure structlog and the standard library's logging for this process."""
    stream = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if use_json:
        # Exceptions become text *before* masking: database errors quote the values they reject.
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    shared.append(mask_pii)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty libraries stay at WARNING unless we debug.
    for noisy in ("asyncio", "grpc", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
