"""AIP-158 pagination: page_size with a documented maximum, opaque page tokens.

A token carries the position (keyset, never an offset) and a fingerprint of the request it
belongs to, so a token reused with different filters is rejected instead of skipping rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cdpkit.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if requested == 0:
        return default
    return min(requested, maximum)


def _fingerprint(scope: str) -> str:
    return hashlib.blake2b(scope.encode(), digest_size=6).hexdigest()


def encode_token(position: dict[str, Any], *, scope: str) -> str:
    body = json.dumps({"p": position, "s": _fingerprint(scope)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_token(token: str, *, scope: str) -> dict[str, Any] | None:
    """The position in ``token``, or None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, fingerprint = body["p"], body["s"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token", "is not a token this API issued") from None
    if fingerprint != _fingerprint(scope) or not isinstance(position, dict):
        raise InvalidArgument("page_token", "belongs to a different request")
    return position
