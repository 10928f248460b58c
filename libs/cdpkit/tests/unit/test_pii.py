import base64

import pytest

from cdpkit.config import CommonSettings, ConfigError, PiiSettings, load
from cdpkit.pii import PiiDecryptError, PiiKeyError, PiiVault, new_key


def vault(keys=None, hash_key=None):
    return PiiVault.from_config(keys or f"k1:{new_key()}", hash_key or new_key())


def test_seal_and_open_round_trip_with_random_nonces():
    v = vault()
    first = v.seal("李雷 +8613800138000", context="shop/phone")
    second = v.seal("李雷 +8613800138000", context="shop/phone")
    assert first != second
    assert b"13800138000" not in first
    assert v.open(first, context="shop/phone") == v.open(second, context="shop/phone") == "李雷 +8613800138000"


def test_binary_values_seal_too_and_open_only_as_themselves():
    v = vault()
    data = bytes(range(256))  # not UTF-8: a serialised protobuf message, say
    sealed = v.seal_bytes(data, context="shop/outbox/m1")
    assert v.open_bytes(sealed, context="shop/outbox/m1") == data
    with pytest.raises(PiiDecryptError):
        v.open_bytes(sealed, context="shop/outbox/m2")


def test_a_sealed_value_does_not_open_in_another_context_or_when_tampered():
    v = vault()
    sealed = v.seal("a@shop.io", context="shop/email")
    with pytest.raises(PiiDecryptError):
        v.open(sealed, context="rival/email")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(PiiDecryptError):
        v.open(tampered, context="shop/email")
    with pytest.raises(PiiDecryptError):
        v.open(b"\x09garbage", context="shop/email")


def test_rotation_new_key_seals_old_keys_still_open():
    old_key, new = new_key(), new_key()
    hash_key = new_key()
    before = PiiVault.from_config(f"k1:{old_key}", hash_key)
    sealed = before.seal("a@shop.io", context="c")
    after = PiiVault.from_config(f"k2:{new},k1:{old_key}", hash_key)
    assert after.open(sealed, context="c") == "a@shop.io"
    assert after.needs_reseal(sealed) and after.key_id_of(sealed) == "k1"
    assert not after.needs_reseal(after.seal("a@shop.io", context="c"))
    without_old = PiiVault.from_config(f"k2:{new}", hash_key)
    with pytest.raises(PiiDecryptError, match="k1"):
        without_old.open(sealed, context="c")


def test_digest_is_keyed_stable_and_kind_separated():
    hash_key = new_key()
    a, b = vault(hash_key=hash_key), vault(hash_key=hash_key)
    assert a.digest("email", "a@shop.io") == b.digest("email", "a@shop.io")
    assert a.digest("email", "a@shop.io") != a.digest("phone", "a@shop.io")
    assert a.digest("email", "a@shop.io") != vault().digest("email", "a@shop.io")


@pytest.mark.parametrize(
    ("keys", "hash_key", "message"),
    [
        ("", new_key(), "no key"),
        ("nokeyid", new_key(), "look like"),
        (f"k1:{new_key()},k1:{new_key()}", new_key(), "twice"),
        ("k1:not-base64!", new_key(), "base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", new_key(), "32 bytes"),
        (f"k1:{new_key()}", base64.b64encode(b"tiny").decode(), "at least 32"),
    ],
)
def test_bad_key_configuration_is_refused(keys, hash_key, message):
    with pytest.raises(PiiKeyError, match=message):
        PiiVault.from_config(keys, hash_key)


def test_pii_settings_are_required_and_never_printed():
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class Settings(PiiSettings, CommonSettings):
        pass

    with pytest.raises(ConfigError) as error:
        load(Settings, {"CDP_DATABASE_URL": "postgresql://x@h/db"})
    assert "CDP_PII_KEYS is required" in str(error.value) and "CDP_PII_HASH_KEY is required" in str(error.value)
    key = new_key()
    settings = load(
        Settings,
        {"CDP_DATABASE_URL": "postgresql://x@h/db", "CDP_PII_KEYS": f"k1:{key}", "CDP_PII_HASH_KEY": new_key()},
    )
    assert key not in repr(settings)
    assert settings.pii_vault().active_key_id == "k1"
