"""API keys, pure Python: format, hashing, scopes, and reading them from request headers.

- write keys (``cdp_wk_...``) authenticate event collection, like a Segment write key;
- secret keys (``cdp_sk_...``) authenticate the APIs, with scopes ``read``, ``write``, ``admin``.

Only a SHA-256 of a key is stored. Keys are 32 random base62 characters (~190 bits) after the
prefix, so a fast hash is safe here (no dictionary to attack, unlike passwords).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

WRITE = "write"
SECRET = "secret"
SCOPES = frozenset({"read", "write", "admin"})
_PREFIX = {WRITE: "cdp_wk_", SECRET: "cdp_sk_"}
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Principal:
    """Who is calling: the workspace their key belongs to, the key, its kind and scopes."""

    workspace_id: str
    key_id: str
    kind: str
    scopes: frozenset[str]
    # Token-bucket rate of the key (events/s for write keys, requests/s for secret keys);
    # 0 means the gateway's default for the kind.
    rate_limit: int = 0

    def may(self, scope: str) -> bool:
        return self.kind == SECRET and (scope in self.scopes or "admin" in self.scopes)


def generate(kind: str) -> str:
    return _PREFIX[kind] + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def hint(key: str) -> str:
    return key[:11] + "…"


def from_authorization(header: str | None) -> str | None:
    """The key in an ``Authorization`` header: ``Basic base64(key:)`` or ``Bearer key``."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None
    return None


@dataclass(frozen=True)
class KeyRecord:
    """A stored key as the administration API shows it (never its secret)."""

    key_id: str
    workspace_id: str
    kind: str
    scopes: tuple[str, ...]
    display_name: str
    rate_limit: int
    display_hint: str
    created_at: datetime
    rotated_at: datetime | None = None
    previous_expires_at: datetime | None = None
    revoked_at: datetime | None = None
