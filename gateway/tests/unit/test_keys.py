"""API keys: format, hashing, scopes, Authorization headers."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from cdp_gateway import keys
from cdp_gateway.keys import SECRET, WRITE, Principal, digest, from_authorization, generate, hint


@pytest.mark.parametrize(("kind", "prefix"), [(WRITE, "cdp_wk_"), (SECRET, "cdp_sk_")])
def test_generate_format(kind, prefix):
    key = generate(kind)
    assert re.fullmatch(re.escape(prefix) + r"[A-Za-z0-9]{32}", key), key


def test_generate_is_unique():
    generated = {generate(WRITE) for _ in range(2000)} | {generate(SECRET) for _ in range(2000)}
    assert len(generated) == 4000


def test_generate_rejects_unknown_kinds():
    with pytest.raises(KeyError):
        generate("admin")


def test_digest_is_a_stable_sha256():
    key = "cdp_wk_" + "a" * 32
    assert digest(key) == digest(key)
    assert digest(key) == hashlib.sha256(key.encode()).digest()
    assert len(digest(key)) == 32
    assert digest(key) != digest("cdp_wk_" + "a" * 31 + "b")


def test_hint_shows_only_the_prefix_and_a_few_characters():
    key = "cdp_sk_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    assert hint(key) == "cdp_sk_ABCD…"
    assert "EFGH" not in hint(key)


def test_scopes():
    assert frozenset({"read", "write", "admin"}) == keys.SCOPES


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("cdp_wk_abc"), "cdp_wk_abc"),
        (basic("cdp_wk_abc", "ignored"), "cdp_wk_abc"),
        ("Basic " + base64.b64encode(b"cdp_wk_abc").decode(), "cdp_wk_abc"),  # no colon at all
        ("basic " + base64.b64encode(b"cdp_wk_abc:").decode(), "cdp_wk_abc"),
        ("  Basic   " + base64.b64encode(b"cdp_wk_abc:").decode() + "  ", "cdp_wk_abc"),
        ("Bearer cdp_sk_xyz", "cdp_sk_xyz"),
        ("bearer cdp_sk_xyz", "cdp_sk_xyz"),
        ("BEARER   cdp_sk_xyz  ", "cdp_sk_xyz"),
        (None, None),
        ("", None),
        ("   ", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic", None),
        ("Basic !!!not-base64!!!", None),
        ("Basic " + base64.b64encode(b":password").decode(), None),  # empty user
        ("Basic " + base64.b64encode(b"\xff\xfe:").decode(), None),  # not UTF-8
        ("Basic Y2RwX3drX2FiYzo", None),  # unpadded base64 is rejected (validate=True)
        ("Token cdp_sk_xyz", None),
        ("cdp_sk_xyz", None),
        ("Digest username=x", None),
    ],
)
def test_from_authorization(header, expected):
    assert from_authorization(header) == expected


def principal(kind: str, *scopes: str, workspace: str = "shop") -> Principal:
    return Principal(workspace_id=workspace, key_id="key_1", kind=kind, scopes=frozenset(scopes))


def test_write_keys_have_no_api_scopes():
    writer = principal(WRITE, "read", "write", "admin")  # even if scopes were stored
    for scope in ("read", "write", "admin"):
        assert not writer.may(scope)


@pytest.mark.parametrize(
    ("scopes", "read", "write", "admin"),
    [
        ((), False, False, False),
        (("read",), True, False, False),
        (("write",), False, True, False),
        (("read", "write"), True, True, False),
        (("admin",), True, True, True),
    ],
)
def test_secret_key_scopes(scopes, read, write, admin):
    secret = principal(SECRET, *scopes)
    assert (secret.may("read"), secret.may("write"), secret.may("admin")) == (read, write, admin)


def test_principal_is_immutable_and_hashable():
    p = principal(SECRET, "read")
    with pytest.raises(AttributeError):
        p.workspace_id = "other"  # type: ignore[misc]
    assert p == principal(SECRET, "read")
    assert len({p, principal(SECRET, "read")}) == 1
