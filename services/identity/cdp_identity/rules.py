"""Identifier types and resolution rules per workspace, pure Python.

A workspace's rules are one versioned document: the identifier types (built-in ones, which can
be tuned or disabled, plus custom ``external:<name>`` types), guardrails, and match-suggestion
settings. Version 0 is the built-in default; every update stores a new version.

Each identifier type has a normaliser (values are compared only after normalisation), a
priority (higher wins when the identifiers of one event point at different persons), a limit
(at most N identifiers of this type per person, optionally counted over a time window), a
bridge flag (whether it may merge two known persons; weak ids never do), and blocked values
(exact, case-insensitive, and regular expressions matched against the normalised value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# The standard library's regular-expression parser (sre_parse before 3.11), to vet operators' patterns.
try:
    import re._constants as _sre_constants
    import re._parser as _sre_parser
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parser  # type: ignore[no-redef]

_REPEATS = tuple(
    getattr(_sre_constants, name)
    for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
    if hasattr(_sre_constants, name)
)

MAX_VALUE_LENGTH = 256
# Identifiers of one event or API set: more is a broken client, not a shopper.
MAX_IDENTIFIERS_PER_SET = 50
MAX_BLOCKED_VALUES = 1000
MAX_PATTERN_LENGTH = 200
MAX_TYPES = 64
CUSTOM_PREFIX = "external:"
CUSTOM_NAME = re.compile(r"^external:[a-z][a-z0-9_]{0,39}$")
NORMALISERS = ("plain", "lower", "email", "phone", "digits", "scoped")
# Weak identifiers: shared by several people often enough that they never bridge two known persons.
WEAK_TYPES = frozenset({"anonymous_id", "device_id"})

# Values that mean "no value" in real tracking data, blocked for every type by default.
COMMON_BLOCKED = (
    "",
    "null",
    "undefined",
    "none",
    "nil",
    "nan",
    "0",
    "-1",
    "anonymous",
    "unknown",
    "[object object]",
    "00000000-0000-0000-0000-000000000000",
)
# Numbers from documentation and tests that real shoppers never own.
PHONE_BLOCKED = ("+8613800138000", "+8613800000000", "+8613900000000")
PHONE_BLOCKED_PATTERNS = (r"\+86(\d)\1{10}", r"\+861\d(0{9}|1{9}|2{9}|3{9}|4{9}|5{9}|6{9}|7{9}|8{9}|9{9})")


def builtin_blocked(normaliser: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Values (and patterns) blocked for every type whatever its rules say: junk values, and
    documentation/test numbers for phone numbers. A rules update can add to them, never drop them."""
    if normaliser == "phone":
        return COMMON_BLOCKED + PHONE_BLOCKED, PHONE_BLOCKED_PATTERNS
    return COMMON_BLOCKED, ()


class InvalidIdentifier(ValueError):
    """A value that is not used as an identifier, with the reason (never the value itself) and the
    field at fault: ``"type"`` (unknown or disabled type) or ``"value"``."""

    def __init__(self, type_: str, reason: str, field: str = "value") -> None:
        super().__init__(f"{type_}: {reason}")
        self.type = type_
        self.reason = reason
        self.field = field


class InvalidRules(ValueError):
    """A rules document that cannot be used; ``field`` names the offending part."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, order=True)
class Identifier:
    type: str
    value: str


@dataclass(frozen=True)
class TypeRule:
    name: str
    priority: int
    # Most identifiers of this type one person may hold (0: no limit) ...
    max_per_person: int = 0
    # ... counted over the last window_days days of links (0: over the person's lifetime).
    window_days: int = 0
    # May this identifier merge two known persons? Weak ids never do.
    bridge: bool = True
    # Stored as keyed hash + AES-GCM ciphertext instead of plaintext.
    pii: bool = False
    normaliser: str = "plain"
    blocked_values: tuple[str, ...] = COMMON_BLOCKED
    blocked_patterns: tuple[str, ...] = ()
    enabled: bool = True
    builtin: bool = False


def _builtin(name: str, priority: int, max_per_person: int, **kwargs: Any) -> TypeRule:
    return TypeRule(name, priority, max_per_person, builtin=True, **kwargs)


BUILTIN_TYPES: tuple[TypeRule, ...] = (
    _builtin("user_id", 100, 1),
    _builtin("member_no", 95, 1),
    _builtin("wechat_unionid", 90, 1),
    _builtin(
        "phone",
        80,
        3,
        pii=True,
        normaliser="phone",
        blocked_patterns=PHONE_BLOCKED_PATTERNS,
        blocked_values=COMMON_BLOCKED + PHONE_BLOCKED,
    ),
    _builtin("email", 70, 5, pii=True, normaliser="email"),
    _builtin("taobao_ouid", 60, 3),
    _builtin("jd_pin", 60, 3),
    _builtin("douyin_openid", 60, 3),
    # An openid is only unique within one WeChat app: values are "<app id>:<openid>".
    _builtin("wechat_openid", 50, 10, normaliser="scoped"),
    _builtin("device_id", 20, 20, bridge=False, normaliser="lower"),
    _builtin("anonymous_id", 10, 200, bridge=False),
)
BUILTIN_NAMES = frozenset(t.name for t in BUILTIN_TYPES)


@dataclass(frozen=True)
class Guardrails:
    # A person that would exceed either cap is quarantined instead of growing.
    max_identifiers_per_person: int = 500
    max_merges_per_person: int = 50


@dataclass(frozen=True)
class MatchingSettings:
    enabled: bool = True
    # Fellegi-Sunter total weight (log2 likelihood ratio) at or above which a pair is suggested.
    threshold: float = 14.0


@dataclass(frozen=True)
class Rules:
    version: int = 0
    types: Mapping[str, TypeRule] = field(default_factory=lambda: {t.name: t for t in BUILTIN_TYPES})
    guardrails: Guardrails = Guardrails()
    matching: MatchingSettings = MatchingSettings()
    default_phone_region: str = "CN"

    def type(self, name: str) -> TypeRule | None:
        rule = self.types.get(name)
        return rule if rule is not None and rule.enabled else None

    def priority(self, name: str) -> int:
        rule = self.types.get(name)
        return rule.priority if rule else 0

    def rank(self, identifier: Identifier) -> tuple[int, str, str]:
        """Sort key: highest priority first, then type and value (deterministic)."""
        return (-self.priority(identifier.type), identifier.type, identifier.value)

    def rule_name(self, type_: str) -> str:
        return f"{type_}@v{self.version}"


DEFAULT_RULES = Rules()


# Normalisation ---------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DETAIL = re.compile(r" *\(.*\)")
_SCOPED = re.compile(r"^([A-Za-z0-9_.-]{1,64}):([A-Za-z0-9_-]{4,128})$")


def _plain(value: str, _region: str) -> str:
    value = value.strip()
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


def _lower(value: str, region: str) -> str:
    return _plain(value, region).lower()


def _digits(value: str, region: str) -> str:
    digits = re.sub(r"[\s\-().]", "", _plain(value, region))
    if not digits.isdigit():
        raise ValueError("must hold digits only")
    return digits


@lru_cache(maxsize=65536)
def _email(value: str, _region: str) -> str:
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        # The library's details in parentheses can echo the domain: errors and logs never show values.
        detail = _DETAIL.sub("", str(exc))
        raise ValueError(f"not an e-mail address ({detail})") from None
    # Mailboxes are case-insensitive in practice; one shopper, one address.
    return result.normalized.lower()


@lru_cache(maxsize=65536)
def _phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value.strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number (default region {region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _scoped(value: str, region: str) -> str:
    value = _plain(value, region)
    if not _SCOPED.match(value):
        raise ValueError("must be scoped by app id: '<app id>:<openid>'")
    return value


_NORMALISERS = {
    "plain": _plain,
    "lower": _lower,
    "email": _email,
    "phone": _phone,
    "digits": _digits,
    "scoped": _scoped,
}


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def normalise(rules: Rules, type_: str, value: Any) -> Identifier:
    """The canonical identifier, or :class:`InvalidIdentifier` with the reason."""
    kind = rules.type(type_)
    if kind is None:
        reason = "identifier type is disabled" if type_ in rules.types else "unknown identifier type"
        raise InvalidIdentifier(type_, reason, field="type")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidIdentifier(type_, "value must be a string")
    text = str(value)
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidIdentifier(type_, f"longer than {MAX_VALUE_LENGTH} characters")
    always_values, always_patterns = builtin_blocked(kind.normaliser)
    raw = text.strip().lower()
    if raw in always_values or raw in kind.blocked_values:
        raise InvalidIdentifier(
            type_, "blank value" if raw in ("", "null", "undefined", "none", "nil") else "blocked value"
        )
    try:
        normalised = _NORMALISERS[kind.normaliser](text, rules.default_phone_region)
    except ValueError as exc:
        raise InvalidIdentifier(type_, str(exc)) from None
    if not normalised:
        raise InvalidIdentifier(type_, "blank value")
    if normalised.lower() in always_values or normalised.lower() in kind.blocked_values:
        raise InvalidIdentifier(type_, "blocked value")
    for pattern in dict.fromkeys((*always_patterns, *kind.blocked_patterns)):
        if _compiled(pattern).fullmatch(normalised):
            raise InvalidIdentifier(type_, f"blocked by pattern {pattern!r}")
    return Identifier(type_, normalised)


# Where events carry identifiers ------------------------------------------------------------------


def flat_key(key: str) -> str:
    """A trait key compared loosely: ``wechat_unionid``, ``wechatUnionId`` and ``wechat-unionid`` are one."""
    return key.replace("_", "").replace("-", "").lower()


@dataclass
class Collected:
    identifiers: list[Identifier]
    rejected: list[InvalidIdentifier]
    # (type, raw value) of the rejected ones, for the journal (a dry run re-normalises them).
    rejected_values: list[tuple[str, str]]


def collect_identifiers(
    rules: Rules,
    *,
    user_id: str = "",
    anonymous_id: str = "",
    previous_id: str = "",
    traits: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> Collected:
    """The identifiers an event carries, normalised and de-duplicated, and the rejected values.

    Sources: ``userId``, ``anonymousId``, ``previousId`` (alias: the anonymous id being linked),
    ``context.device.id`` (device_id), trait keys named like a type in ``traits`` and
    ``context.traits`` (``wechat_unionid``, ``wechatUnionid``, ``memberNo`` ...; a
    ``wechat_openid`` without an app id is scoped by a ``wechat_app_id`` trait), and
    Segment's ``context.externalIds`` (``[{"type": "jd_pin" | "<custom>", "id": ...}]``; a
    custom type maps to ``external:<type>``).
    """
    context = context or {}
    candidates: list[tuple[str, Any]] = []
    if user_id:
        candidates.append(("user_id", user_id))
    if anonymous_id:
        candidates.append(("anonymous_id", anonymous_id))
    if previous_id:
        candidates.append(("anonymous_id", previous_id))
    device = context.get("device")
    if isinstance(device, Mapping) and device.get("id") not in (None, ""):
        candidates.append(("device_id", device["id"]))
    trait_types = {flat_key(name): name for name in BUILTIN_NAMES - {"user_id", "anonymous_id"}}
    context_traits = context.get("traits")
    for source in (traits or {}, context_traits if isinstance(context_traits, Mapping) else {}):
        flat = {flat_key(k): v for k, v in source.items() if isinstance(k, str)}
        for key, value in flat.items():
            type_ = trait_types.get(key)
            if type_ is None or value in (None, ""):
                continue
            if type_ == "wechat_openid" and isinstance(value, str) and ":" not in value:
                app = flat.get("wechatappid")
                if isinstance(app, str) and app:
                    value = f"{app.strip()}:{value.strip()}"
            candidates.append((type_, value))
    external = context.get("externalIds")
    if isinstance(external, list):
        for entry in external[:50]:
            if not isinstance(entry, Mapping):
                continue
            kind = str(entry.get("type") or "").strip()
            if not kind:
                continue
            type_ = kind if kind in BUILTIN_NAMES else f"{CUSTOM_PREFIX}{kind.lower()}"
            candidates.append((type_, entry.get("id")))
    found: dict[Identifier, None] = {}
    rejected: list[InvalidIdentifier] = []
    rejected_values: list[tuple[str, str]] = []
    for type_, value in candidates:
        try:
            identifier = normalise(rules, type_, value)
        except InvalidIdentifier as exc:
            rejected.append(exc)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                rejected_values.append((type_, str(value)[:MAX_VALUE_LENGTH]))
            continue
        if identifier not in found and len(found) >= MAX_IDENTIFIERS_PER_SET:
            rejected.append(InvalidIdentifier(type_, f"more than {MAX_IDENTIFIERS_PER_SET} identifiers on one event"))
            continue
        found.setdefault(identifier)
    return Collected(list(found), rejected, rejected_values)


# Rules documents -----------------------------------------------------------------------------------


def _int(value: Any, field_: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise InvalidRules(field_, "must be an integer")
    if not low <= int(value) <= high:
        raise InvalidRules(field_, f"must be between {low} and {high}")
    return int(value)


def check_type(rule: TypeRule, current: TypeRule | None, field_: str) -> TypeRule:
    """Validate one type rule against the one it replaces (None for a new custom type)."""
    if rule.name in BUILTIN_NAMES:
        builtin = next(t for t in BUILTIN_TYPES if t.name == rule.name)
        if rule.pii != builtin.pii:
            raise InvalidRules(f"{field_}.pii", f"{rule.name} is a built-in type; its pii flag is fixed")
        if rule.normaliser != builtin.normaliser:
            raise InvalidRules(f"{field_}.normaliser", f"{rule.name} is a built-in type; its normaliser is fixed")
        rule = replace(rule, builtin=True)
    elif not CUSTOM_NAME.match(rule.name):
        raise InvalidRules(f"{field_}.name", "custom types are named external:<name> ([a-z][a-z0-9_]{0,39})")
    else:
        rule = replace(rule, builtin=False)
        if current is not None and current.pii != rule.pii:
            raise InvalidRules(f"{field_}.pii", "cannot change once the type exists (stored values depend on it)")
        if current is not None and current.normaliser != rule.normaliser:
            raise InvalidRules(
                f"{field_}.normaliser", "cannot change once the type exists (stored values depend on it)"
            )
    if rule.normaliser not in NORMALISERS:
        raise InvalidRules(f"{field_}.normaliser", f"must be one of {', '.join(NORMALISERS)}")
    _int(rule.priority, f"{field_}.priority", 0, 1000)
    _int(rule.max_per_person, f"{field_}.max_per_person", 0, 100_000)
    _int(rule.window_days, f"{field_}.window_days", 0, 3650)
    if rule.name in WEAK_TYPES and rule.bridge:
        raise InvalidRules(f"{field_}.bridge", f"{rule.name} is a weak identifier and never bridges two persons")
    if len(rule.blocked_values) > MAX_BLOCKED_VALUES:
        raise InvalidRules(f"{field_}.blocked_values", f"at most {MAX_BLOCKED_VALUES} values")
    if len(rule.blocked_patterns) > 50:
        raise InvalidRules(f"{field_}.blocked_patterns", "at most 50 patterns")
    for n, pattern in enumerate(rule.blocked_patterns):
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise InvalidRules(f"{field_}.blocked_patterns[{n}]", f"longer than {MAX_PATTERN_LENGTH} characters")
        try:
            parsed = _sre_parser.parse(pattern)
        except re.error as exc:
            raise InvalidRules(f"{field_}.blocked_patterns[{n}]", f"not a regular expression: {exc}") from None
        if _explosive(parsed):
            raise InvalidRules(
                f"{field_}.blocked_patterns[{n}]",
                "a repeated part may not itself repeat or hold alternatives (matching could take exponential time)",
            )
    # The built-in junk values stay blocked whatever the update sends.
    always_values, always_patterns = builtin_blocked(rule.normaliser)
    blocked = tuple(dict.fromkeys((*always_values, *(v.strip().lower() for v in rule.blocked_values))))
    patterns = tuple(dict.fromkeys((*always_patterns, *rule.blocked_patterns)))
    return replace(rule, blocked_values=blocked, blocked_patterns=patterns)


def _explosive(items: Any, repeated: bool = False) -> bool:
    """Whether a parsed pattern nests a repetition (or alternatives) inside a repetition: the
    shapes that backtrack exponentially, like ``(a+)+`` or ``(a|a)*``. Blocked patterns run on
    every identifier; operators are trusted, but not that much."""
    for op, arg in items:
        if op in _REPEATS:
            many = arg[1] > 1
            if (repeated and many) or _explosive(arg[2], repeated or many):
                return True
        elif op is _sre_constants.BRANCH:
            if repeated or any(_explosive(branch, repeated) for branch in arg[1]):
                return True
        elif op is _sre_constants.SUBPATTERN:
            if _explosive(arg[-1], repeated):
                return True
        elif op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT) and _explosive(arg[1], repeated):
            return True
    return False


@dataclass(frozen=True)
class TypePatch:
    """A change to one identifier type: None fields keep the current (or default) value."""

    name: str
    priority: int | None = None
    max_per_person: int | None = None
    window_days: int | None = None
    bridge: bool | None = None
    pii: bool | None = None
    normaliser: str | None = None
    blocked_values: tuple[str, ...] | None = None
    blocked_patterns: tuple[str, ...] | None = None
    enabled: bool | None = None

    def over(self, current: TypeRule | None) -> TypeRule:
        base = current or TypeRule(self.name, priority=50, max_per_person=5)
        changes = {
            name: getattr(self, name)
            for name in (
                "priority",
                "max_per_person",
                "window_days",
                "bridge",
                "pii",
                "normaliser",
                "blocked_values",
                "blocked_patterns",
                "enabled",
            )
            if getattr(self, name) is not None
        }
        return replace(base, **changes)


def apply_update(
    current: Rules,
    *,
    types: Iterable[TypePatch] | None = None,
    guardrails: Guardrails | None = None,
    matching: MatchingSettings | None = None,
    default_phone_region: str | None = None,
) -> Rules:
    """A new rules document (version current + 1); types are upserted by name."""
    merged = dict(current.types)
    if types is not None:
        seen: set[str] = set()
        for n, patch in enumerate(types):
            if patch.name in seen:
                raise InvalidRules(f"identifier_types[{n}].name", f"{patch.name} appears twice")
            seen.add(patch.name)
            existing = current.types.get(patch.name)
            if existing is None and patch.name in BUILTIN_NAMES:
                existing = next(t for t in BUILTIN_TYPES if t.name == patch.name)
            merged[patch.name] = check_type(patch.over(existing), existing, f"identifier_types[{n}]")
        if len(merged) > MAX_TYPES:
            raise InvalidRules("identifier_types", f"at most {MAX_TYPES} identifier types")
    if guardrails is not None:
        _int(guardrails.max_identifiers_per_person, "guardrails.max_identifiers_per_person", 1, 100_000)
        _int(guardrails.max_merges_per_person, "guardrails.max_merges_per_person", 1, 100_000)
    if matching is not None and not 0 <= matching.threshold <= 100:
        raise InvalidRules("matching.threshold", "must be between 0 and 100")
    region = current.default_phone_region if default_phone_region is None else default_phone_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidRules("default_phone_region", "must be an ISO 3166 region that phone numbers know")
    return Rules(
        version=current.version + 1,
        types=merged,
        guardrails=guardrails or current.guardrails,
        matching=matching or current.matching,
        default_phone_region=region,
    )


def to_document(rules: Rules) -> dict[str, Any]:
    """JSON form stored per version (every field, so old versions read back unchanged)."""
    return {
        "types": [
            {
                "name": t.name,
                "priority": t.priority,
                "max_per_person": t.max_per_person,
                "window_days": t.window_days,
                "bridge": t.bridge,
                "pii": t.pii,
                "normaliser": t.normaliser,
                "blocked_values": list(t.blocked_values),
                "blocked_patterns": list(t.blocked_patterns),
                "enabled": t.enabled,
            }
            for t in rules.types.values()
        ],
        "guardrails": {
            "max_identifiers_per_person": rules.guardrails.max_identifiers_per_person,
            "max_merges_per_person": rules.guardrails.max_merges_per_person,
        },
        "matching": {"enabled": rules.matching.enabled, "threshold": rules.matching.threshold},
        "default_phone_region": rules.default_phone_region,
    }


def from_document(version: int, document: Mapping[str, Any]) -> Rules:
    types = {}
    for t in document["types"]:
        rule = TypeRule(
            name=t["name"],
            priority=t["priority"],
            max_per_person=t["max_per_person"],
            window_days=t["window_days"],
            bridge=t["bridge"],
            pii=t["pii"],
            normaliser=t["normaliser"],
            blocked_values=tuple(t["blocked_values"]),
            blocked_patterns=tuple(t["blocked_patterns"]),
            enabled=t["enabled"],
            builtin=t["name"] in BUILTIN_NAMES,
        )
        types[rule.name] = rule
    return Rules(
        version=version,
        types=types,
        guardrails=Guardrails(**document["guardrails"]),
        matching=MatchingSettings(**document["matching"]),
        default_phone_region=document["default_phone_region"],
    )
