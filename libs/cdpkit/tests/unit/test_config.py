"""cdpkit.config: typed settings from the environment, every problem at once, secrets hidden."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cdpkit.config import CommonSettings, ConfigError, Secret, describe, env, load, redact_url

DSN = "postgresql://cdp:hunter2@127.0.0.1:5432/cdp"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Typed:
    count: int = env("T_COUNT", 1)
    ratio: float = env("T_RATIO", 0.5)
    enabled: bool = env("T_ENABLED", False)
    ports: tuple[int, ...] = env("T_PORTS", ())
    tags: tuple[str, ...] = env("T_TAGS", ("a",))
    data_dir: Path = env("T_DATA_DIR", Path("/tmp"))  # noqa: RUF009 - env() returns a dataclasses.field
    token: Secret = env("T_TOKEN", Secret(""))  # noqa: RUF009
    limit: int | None = env("T_LIMIT", None)
    label: str = env("T_LABEL", "x")
    not_from_env: str = "fixed"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Required:
    host: str = env("R_HOST", help="the host to talk to")
    port: int = env("R_PORT")
    debug: bool = env("R_DEBUG", False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceSettings(CommonSettings):
    grpc_port: int = env("CDP_X_GRPC_PORT", 50051)


def test_defaults_apply_when_variables_are_absent():
    settings = load(Typed, {})
    assert settings == Typed()
    assert settings.not_from_env == "fixed"


def test_each_type_is_parsed_from_its_string():
    settings = load(
        Typed,
        {
            "T_COUNT": " 42 ",
            "T_RATIO": "2.5",
            "T_ENABLED": "Yes",
            "T_PORTS": "80, 443,,8080 ",
            "T_TAGS": "x,y",
            "T_DATA_DIR": "/var/lib/cdp",
            "T_TOKEN": "s3cr3t",
            "T_LIMIT": "7",
            "T_LABEL": "  spaced  ",
        },
    )
    assert settings.count == 42 and isinstance(settings.count, int)
    assert settings.ratio == 2.5
    assert settings.enabled is True
    assert settings.ports == (80, 443, 8080)
    assert settings.tags == ("x", "y")
    assert settings.data_dir == Path("/var/lib/cdp") and isinstance(settings.data_dir, Path)
    assert isinstance(settings.token, Secret) and settings.token.get() == "s3cr3t"
    assert settings.limit == 7
    assert settings.label == "  spaced  "  # strings are taken verbatim


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False), ("off", False), ("No", False)]
)
def test_bool_accepts_the_usual_spellings(raw, expected):
    assert load(Typed, {"T_ENABLED": raw}).enabled is expected


def test_optional_empty_string_means_none():
    assert load(Typed, {"T_LIMIT": ""}).limit is None
    assert load(Typed, {"T_LIMIT": "3"}).limit == 3


def test_empty_tuple_variable_gives_an_empty_tuple():
    assert load(Typed, {"T_TAGS": ""}).tags == ()


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        load(Required, {"R_DEBUG": "maybe"})
    message = str(error.value)
    assert "R_HOST is required (the host to talk to)" in message
    assert "R_PORT is required (port)" in message
    assert "R_DEBUG='maybe' is not a valid" in message


def test_malformed_values_of_several_types_are_all_listed():
    with pytest.raises(ConfigError) as error:
        load(Typed, {"T_COUNT": "ten", "T_RATIO": "half", "T_PORTS": "80,http", "T_LIMIT": "x"})
    message = str(error.value)
    for name in ("T_COUNT='ten'", "T_RATIO='half'", "T_PORTS='80,http'", "T_LIMIT='x'"):
        assert name in message
    assert len(message.splitlines()) == 5  # the heading and one line per problem


def test_required_variables_are_satisfied_by_the_environment():
    settings = load(Required, {"R_HOST": "db", "R_PORT": "5432"})
    assert (settings.host, settings.port, settings.debug) == ("db", 5432, False)


def test_load_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("R_HOST", "from-os")
    monkeypatch.setenv("R_PORT", "1")
    assert load(Required).host == "from-os"


def test_common_settings_load_with_only_the_database_url():
    settings = load(ServiceSettings, {"CDP_DATABASE_URL": DSN, "CDP_X_GRPC_PORT": "0", "CDP_MIGRATE_ON_START": "false"})
    assert settings.database_url.get() == DSN
    assert settings.grpc_port == 0
    assert settings.migrate_on_start is False
    assert settings.partitions == 4 and settings.bus_prefix == "cdp"


def test_common_settings_require_the_database_url():
    with pytest.raises(ConfigError, match="CDP_DATABASE_URL is required"):
        load(CommonSettings, {})


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ({"CDP_DATABASE_URL": "mysql://x@y/z"}, "postgresql:// URL"),
        ({"CDP_LOG_FORMAT": "xml"}, "CDP_LOG_FORMAT"),
        ({"CDP_LOG_LEVEL": "verbose"}, "CDP_LOG_LEVEL"),
        ({"CDP_PARTITIONS": "0"}, "CDP_PARTITIONS"),
        ({"CDP_PARTITIONS": "1025"}, "CDP_PARTITIONS"),
        ({"CDP_BUS_PREFIX": "cdp.prod"}, "CDP_BUS_PREFIX"),
        ({"CDP_BUS_PREFIX": "a b"}, "CDP_BUS_PREFIX"),
    ],
)
def test_post_init_checks_become_config_errors(extra, complaint):
    with pytest.raises(ConfigError, match="invalid configuration") as error:
        load(CommonSettings, {"CDP_DATABASE_URL": DSN, **extra})
    assert complaint in str(error.value)
    assert "hunter2" not in str(error.value)


def test_post_init_accepts_boundary_values():
    settings = load(
        CommonSettings,
        {
            "CDP_DATABASE_URL": "postgres://h/db",
            "CDP_PARTITIONS": "1024",
            "CDP_LOG_LEVEL": "DEBUG",
            "CDP_BUS_PREFIX": "a-b_c",
        },
    )
    assert settings.partitions == 1024


def test_secret_never_shows_in_repr_str_or_settings_repr():
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert repr(Secret("")) == "Secret('')"
    settings = load(CommonSettings, {"CDP_DATABASE_URL": DSN})
    assert "hunter2" not in repr(settings)
    assert "Secret('***')" in repr(settings)


def test_secret_compares_by_value_and_is_falsy_when_empty():
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert not Secret("") and Secret("x")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://cdp:hunter2@db:5432/cdp", "postgresql://cdp:***@db:5432/cdp"),
        ("nats://user:p%40ss@127.0.0.1:4222", "nats://user:***@127.0.0.1:4222"),
        ("postgresql://cdp@127.0.0.1:5432/cdp", "postgresql://cdp@127.0.0.1:5432/cdp"),
        ("postgresql://127.0.0.1/cdp?sslmode=disable", "postgresql://127.0.0.1/cdp?sslmode=disable"),
    ],
)
def test_redact_url_hides_only_the_password(url, expected):
    assert redact_url(url) == expected


def test_env_refuses_mutable_defaults():
    with pytest.raises(TypeError):
        env("X", [1, 2])


def test_describe_lists_variables_with_defaults_and_help():
    rows = {name: (default, help_) for name, default, help_ in describe(Required)}
    assert rows["R_HOST"] == ("(required)", "the host to talk to")
    assert rows["R_DEBUG"][0] == "False"
    assert "not_from_env" not in rows and len(rows) == 3
