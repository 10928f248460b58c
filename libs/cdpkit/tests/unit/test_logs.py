"""cdpkit.logs: PII masking and the process-wide structlog/logging configuration."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
import structlog

from cdpkit import logs
from cdpkit.logs import configure, mask_pii, mask_text, mask_value


def run(event: dict) -> dict:
    return mask_pii(None, "info", dict(event))


# ---------------------------------------------------------------- mask_pii on event dicts


@pytest.mark.parametrize(
    "key",
    [
        "email",
        "phone",
        "mobile",
        "name",
        "first_name",
        "last_name",
        "username",
        "address",
        "birthday",
        "ip",
        "identifier_value",
        "password",
        "authorization",
        "write_key",
        "api_key",
    ],
)
def test_pii_keys_never_show_their_content(key):
    out = run({"event": "x", key: "Sensitive Value 42"})
    assert out[key] != "Sensitive Value 42"
    assert "Sensitive" not in str(out[key])


def test_pii_keys_are_matched_case_insensitively():
    out = run({"event": "x", "Email": "alice@example.com", "user": {"PHONE": "13812345678"}})
    assert out["Email"] == "a***@example.com"
    assert out["user"]["PHONE"] == "138****5678"


def test_pii_values_keep_only_their_shape():
    assert mask_value("alice@example.com") == "a***@example.com"
    assert mask_value("13812345678") == "138****5678"
    assert mask_value("+86 138-1234-5678") == "+86****5678"
    assert mask_value("Alice") == "***"
    assert mask_value(None) is None
    assert mask_value("") == ""
    assert mask_value(12345678901) == "***"


def test_traits_are_masked_whole_whatever_their_type():
    out = run({"event": "x", "traits": {"plan": "pro", "email": "bob@example.com"}})
    assert out["traits"] == "***"
    out = run({"event": "x", "traits": ["a", "b"]})
    assert out["traits"] == "***"


def test_nested_dicts_and_lists_are_masked_at_every_level():
    event = {
        "event": "profile merged",
        "request": {
            "persons": [
                {"id": "p-1", "email": "carol@example.org", "contact": {"phone": "+4915112345678"}},
                {"id": "p-2", "identifiers": [{"kind": "email", "identifier_value": "dave@example.net"}]},
            ],
            "note": "reach me at erin@example.com",
        },
        "tuple": ("frank@example.com", 3),
    }
    out = run(event)
    text = json.dumps(out)
    for leaked in ("carol@", "+4915112345678", "dave@example.net", "erin@", "frank@"):
        assert leaked not in text
    persons = out["request"]["persons"]
    assert persons[0]["id"] == "p-1" and persons[1]["id"] == "p-2"
    assert persons[0]["email"] == "c***@example.org"
    assert persons[1]["identifiers"][0]["kind"] == "email"  # a value named like a key is not PII
    assert persons[1]["identifiers"][0]["identifier_value"] == "d***@example.net"
    assert out["request"]["note"] == "reach me at e***@example.com"
    assert out["tuple"] == ["f***@example.com", 3]


def test_pii_keys_are_masked_however_deep_they_are_nested():
    event: dict = {"email": "deep@example.com", "note": "mail deep@example.com"}
    for level in range(12):
        event = {f"level{level}": event}
    out = json.dumps(run({"event": "x", "payload": event}))
    assert "deep@example.com" not in out


def test_emails_and_phones_inside_free_text_are_masked():
    text = "user alice.smith+promo@mail.example.co.uk called from 13812345678, then (+4915112345678) again"
    masked = mask_text(text)
    assert "alice.smith" not in masked and "a***@mail.example.co.uk" in masked
    assert "13812345678" not in masked and "138****5678," in masked
    assert "+4915112345678" not in masked and "(+49" in masked
    assert masked.startswith("user ") and masked.endswith(") again")


@pytest.mark.parametrize("text", ["Customer phone is 13812345678.", "Call +4915112345678. Thanks"])
def test_phone_at_the_end_of_a_sentence_is_masked(text):
    masked = mask_text(text)
    assert "13812345678" not in masked and "4915112345678" not in masked


def test_event_message_itself_is_masked():
    assert run({"event": "sent welcome mail to zoe@example.com"})["event"] == "sent welcome mail to z***@example.com"


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://postgres@127.0.0.1:5432/cdp",
        "nats://127.0.0.1:4222",
        "http://10.20.30.40:8080/v1/workspaces/shop/profiles",
        "connected to [::1]:50051 from 192.168.1.10",
        "workspaces/shop/profiles/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
        "cdp.raw.3 seq=1234567 ts=1712345678901",
        "order 2026-01-01T10:00:00Z total 99.95",
    ],
)
def test_urls_ips_ids_and_numbers_are_not_mangled(text):
    assert mask_text(text) == text
    assert run({"event": text, "dsn": text})["dsn"] == text


def test_uuids_and_request_ids_survive_masking():
    ids = [str(uuid.uuid4()) for _ in range(50)]
    out = run({"event": "x", "request_id": ids[0], "ids": ids})
    assert out["request_id"] == ids[0] and out["ids"] == ids


def test_non_string_values_are_left_alone():
    out = run({"event": "x", "count": 13812345678, "ok": True, "ratio": 0.5, "nothing": None})
    assert out["count"] == 13812345678 and out["ok"] is True and out["ratio"] == 0.5 and out["nothing"] is None


def test_timestamp_key_is_not_touched():
    out = run({"event": "x", "timestamp": "2026-01-01T00:00:00.000000Z"})
    assert out["timestamp"] == "2026-01-01T00:00:00.000000Z"


# ---------------------------------------------------------------- configure()


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_configure_emits_json_off_a_tty_with_service_and_bound_context(restore_logging):
    stream = io.StringIO()
    configure("profile", level="info", fmt="auto", stream=stream)
    structlog.contextvars.bind_contextvars(request_id="req-1", workspace="shop")
    logs.get_logger("cdp.test.json").info("profile updated", email="alice@example.com", person_id="p-9")
    [line] = lines(stream)
    assert line["event"] == "profile updated"
    assert line["service"] == "profile"
    assert line["request_id"] == "req-1" and line["workspace"] == "shop"
    assert line["level"] == "info"
    assert line["logger"] == "cdp.test.json"
    assert line["email"] == "a***@example.com"
    assert line["person_id"] == "p-9"
    assert line["timestamp"].endswith("Z")


def test_configure_clears_context_bound_before_it(restore_logging):
    structlog.contextvars.bind_contextvars(stale="yes")
    stream = io.StringIO()
    configure("svc", fmt="json", stream=stream)
    logs.get_logger("cdp.test.clear").info("hello")
    [line] = lines(stream)
    assert "stale" not in line and line["service"] == "svc"


def test_configure_filters_below_the_level(restore_logging):
    stream = io.StringIO()
    configure("svc", level="warning", fmt="json", stream=stream)
    log = logs.get_logger("cdp.test.level")
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_library_logs_go_through_the_same_masking_and_json(restore_logging):
    stream = io.StringIO()
    configure("identity", fmt="json", stream=stream)
    logging.getLogger("asyncpg.pool").warning("connection for %s lost", "bob@example.com")
    [line] = lines(stream)
    assert line["event"] == "connection for b***@example.com lost"
    assert line["service"] == "identity" and line["level"] == "warning"


def test_configure_is_pretty_on_a_tty(restore_logging):
    stream = FakeTty()
    configure("svc", fmt="auto", stream=stream)
    logs.get_logger("cdp.test.tty").info("pretty line", phone="13812345678")
    output = stream.getvalue()
    assert "pretty line" in output and "138****5678" in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])


def test_exception_text_is_masked_in_json_logs(restore_logging):
    """A traceback is free text like any other: a database error quoting an e-mail must not leak it."""
    stream = io.StringIO()
    configure("identity", fmt="json", stream=stream)
    try:
        raise ValueError("duplicate key (email)=(alice@example.com) already exists")
    except ValueError:
        logs.get_logger("cdp.test.exc").exception("insert failed")
    [line] = lines(stream)
    assert "ValueError" in line["exception"]
    assert "alice@example.com" not in stream.getvalue()
