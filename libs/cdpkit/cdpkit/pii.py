"""Personal data at rest: a keyed hash to look values up, AES-GCM to show them again.

China's PIPL (and GDPR) treat phone numbers, e-mails, names and addresses as personal
information to protect. Services store such a value as two columns:

- ``lookup``: HMAC-SHA256 of the normalised value under the *hash key*, for equality lookups
  and unique constraints (``digest``). Same value, same digest; nothing to reverse.
- ``sealed``: AES-256-GCM ciphertext for display (``seal`` / ``open``), with the id of the key
  that sealed it, a random 96-bit nonce, and the row's context (workspace, field) as associated
  data, so a ciphertext copied to another row or workspace does not open.

Keys come from the environment, never from code or defaults::

    CDP_PII_KEYS=k2:<base64 32 bytes>,k1:<base64 32 bytes>   # the first one seals; all open
    CDP_PII_HASH_KEY=<base64 32+ bytes>

Rotation: put a new key first in ``CDP_PII_KEYS`` (old keys stay to open old rows), then
re-seal rows whose ``needs_reseal`` is true in the background. The hash key cannot rotate
without recomputing every digest; treat it as long-lived.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = 1
_NONCE = 12


class PiiKeyError(ValueError):
    """The PII key configuration is unusable."""


class PiiDecryptError(ValueError):
    """A sealed value could not be opened (wrong context, unknown key, or tampering)."""


def _decode_key(text: str, what: str, *, exact: int | None = 32) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise PiiKeyError(f"{what} is not valid base64") from None
    if exact is not None and len(key) != exact:
        raise PiiKeyError(f"{what} must be {exact} bytes, got {len(key)}")
    if exact is None and len(key) < 32:
        raise PiiKeyError(f"{what} must be at least 32 bytes")
    return key


def new_key() -> str:
    """A fresh random key, base64, for CDP_PII_KEYS or CDP_PII_HASH_KEY."""
    return base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class PiiVault:
    keys: dict[str, bytes]
    active_key_id: str
    hash_key: bytes

    @classmethod
    def from_config(cls, keys: str, hash_key: str) -> PiiVault:
        """Parse ``kid:base64,kid:base64`` (the first seals) and the base64 hash key."""
        parsed: dict[str, bytes] = {}
        order: list[str] = []
        for entry in (e.strip() for e in keys.split(",") if e.strip()):
            key_id, sep, material = entry.partition(":")
            if not sep or not key_id or len(key_id) > 32 or not key_id.replace("-", "").replace("_", "").isalnum():
                raise PiiKeyError("CDP_PII_KEYS entries must look like <key id>:<base64 key>")
            if key_id in parsed:
                raise PiiKeyError(f"CDP_PII_KEYS has key id {key_id!r} twice")
            parsed[key_id] = _decode_key(material, f"CDP_PII_KEYS key {key_id!r}")
            order.append(key_id)
        if not order:
            raise PiiKeyError("CDP_PII_KEYS holds no key")
        return cls(parsed, order[0], _decode_key(hash_key, "CDP_PII_HASH_KEY", exact=None))

    def digest(self, kind: str, value: str) -> bytes:
        """Keyed hash of a normalised value of ``kind`` ("email", "phone", ...), for lookups."""
        return hmac.new(self.hash_key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def seal(self, plaintext: str, *, context: str) -> bytes:
        """Encrypt with the active key; ``context`` (e.g. "shop/email") must match on open."""
        return self.seal_bytes(plaintext.encode(), context=context)

    def open(self, sealed: bytes, *, context: str) -> str:
        return self.open_bytes(sealed, context=context).decode()

    def seal_bytes(self, data: bytes, *, context: str) -> bytes:
        """:meth:`seal` for binary values (e.g. a serialised protobuf message)."""
        key_id = self.active_key_id.encode()
        nonce = os.urandom(_NONCE)
        header = bytes([_VERSION, len(key_id)]) + key_id
        ciphertext = _aead(self.keys[self.active_key_id]).encrypt(nonce, data, header + context.encode())
        return header + nonce + ciphertext

    def open_bytes(self, sealed: bytes, *, context: str) -> bytes:
        key_id, header, body = self._split(sealed)
        key = self.keys.get(key_id)
        if key is None:
            raise PiiDecryptError(f"sealed with key {key_id!r}, which is not configured")
        try:
            return _aead(key).decrypt(body[:_NONCE], body[_NONCE:], header + context.encode())
        except InvalidTag:
            raise PiiDecryptError("the sealed value does not open in this context") from None

    def key_id_of(self, sealed: bytes) -> str:
        return self._split(sealed)[0]

    def needs_reseal(self, sealed: bytes) -> bool:
        return self.key_id_of(sealed) != self.active_key_id

    @staticmethod
    def _split(sealed: bytes) -> tuple[str, bytes, bytes]:
        if len(sealed) < 2 or sealed[0] != _VERSION or len(sealed) < 2 + sealed[1] + _NONCE + 16:
            raise PiiDecryptError("not a sealed value")
        end = 2 + sealed[1]
        return sealed[2:end].decode(errors="replace"), sealed[:end], sealed[end:]


@functools.lru_cache(maxsize=64)
def _aead(key: bytes) -> AESGCM:
    """The cipher of a key, made once (a consumer batch seals and opens thousands of values)."""
    return AESGCM(key)
