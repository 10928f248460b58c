"""Per-workspace profile settings and the tiny condition language of tag rules (pure Python).

The JSON forms are documented in docs/profile.md; :func:`from_document` validates a whole
document and names the first bad field (``lifecycle.dormant_after_days``, ``tag_rules[2].when``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Trait (and event property) names that hold personal information, always sealed; a workspace's
# `pii_traits` add to them. Matched by their normalised key (`pii_key`): lower case, letters and
# digits only, so firstName, first_name and First-Name are one name.
# Bumped whenever what counts as personal changes (defaults, matching): profiles saved under an
# older version are sealed again in the background (ProfileService.reseal_pii). 1: exact
# snake_case names; 2: normalised names, compound names, more defaults, PII at any depth.
PII_RULES_VERSION = 2
DEFAULT_PII_TRAITS = (
    "name", "first_name", "last_name", "full_name", "nickname", "username",
    "phone", "phone_number", "mobile", "mobile_phone", "telephone", "tel",
    "email", "email_address",
    "address", "street", "street_address", "postal_code", "zip_code",
    "birthday", "birthdate", "date_of_birth", "dob",
    "id_card", "id_number", "national_id", "passport", "passport_number",
    "wechat_id", "qq", "ip",
)  # fmt: skip
TIER_MEASURES = ("total_spent_minor", "points_balance", "order_count")
# The computed traits (ProfileSnapshot.computed) and the other values rules read: a windowed
# trait by one of these names would shadow it in rules and tiers.
COMPUTED_TRAITS = frozenset({
    "event_count", "first_seen_time", "last_seen_time", "favourite_channel",
    "order_count", "total_spent_minor", "refunded_minor", "average_order_value_minor", "clv_historical_minor",
    "first_order_time", "last_order_time", "favourite_category", "favourite_store",
    "birthday_month_day", "region_code", "next_points_expiry_time", "next_points_expiry_points",
})  # fmt: skip
RULE_VALUES = frozenset({"lifecycle_stage", "tier", "points_balance"})
_SPEND = re.compile(r"^spend_(\d{1,3})d$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TAG = re.compile(r"^[\w][\w\-:.]{0,62}$")
MAX_TAG_RULES = 100
MAX_WINDOWED = 50
MAX_WINDOW_DAYS = 366
# Stored events are kept at least this long (CDP_PROFILE_EVENT_RETENTION_DAYS): windows and their
# rebuild from stored events read MAX_WINDOW_DAYS back, plus a day for the time zone and a month.
MIN_EVENT_RETENTION_DAYS = MAX_WINDOW_DAYS + 34


class InvalidRules(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


# Compound names ending like these are personal too (customer_email, shippingAddress, recipientPhone).
PII_SUFFIXES = (
    "phone", "phonenumber", "mobile", "email", "emailaddress", "address", "birthday", "birthdate", "dateofbirth",
    "idcard", "idnumber", "passport", "passportnumber", "firstname", "lastname", "fullname", "realname",
    "nickname", "username", "customername", "recipientname", "receivername", "contactname", "consigneename",
    "buyername", "wechatid",
)  # fmt: skip


PII_ANSWERS = 8192


@lru_cache(maxsize=8192)
def pii_key(key: str) -> str:
    """A trait name normalised for PII matching: ``firstName`` -> ``firstname`` = ``first_name``."""
    return "".join(ch for ch in key.lower() if ch.isalnum())


# Conditions ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<op>>=|<=|==|!=|>|<|\(|\))"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))"
)
_OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class Condition:
    """A parsed condition: comparisons of a profile field with a literal, and/or/not, parentheses.

    Fields: computed trait names (``order_count``), ``lifecycle_stage``, ``tier``,
    ``points_balance``, ``traits.<key>``; ``has_tag.<tag>`` is true when the tag is set. A
    comparison with a missing value, or of a number with a string, is false.
    """

    text: str
    tree: tuple

    def __call__(self, values: Mapping[str, Any]) -> bool:
        return bool(_evaluate(self.tree, values))

    @property
    def fields(self) -> frozenset[str]:
        """The field names the condition reads."""
        return frozenset(_fields(self.tree))


def _fields(node: tuple) -> list[str]:
    if node[0] in ("and", "or"):
        return _fields(node[1]) + _fields(node[2])
    if node[0] == "not":
        return _fields(node[1])
    return [node[1]]


def _evaluate(node: tuple, values: Mapping[str, Any]) -> bool:
    kind = node[0]
    if kind == "and":
        return _evaluate(node[1], values) and _evaluate(node[2], values)
    if kind == "or":
        return _evaluate(node[1], values) or _evaluate(node[2], values)
    if kind == "not":
        return not _evaluate(node[1], values)
    if kind == "truth":
        return bool(values.get(node[1]))
    _, name, op, literal = node
    value = values.get(name)
    if value is None or isinstance(value, bool) != isinstance(literal, bool):
        return False
    if isinstance(literal, (int, float)) != isinstance(value, (int, float)):
        return False
    try:
        return _OPS[op](value, literal)
    except TypeError:
        return False


def parse_condition(text: str) -> Condition:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ValueError(f"unexpected {text[position : position + 10]!r}")
        position = match.end()
        if match.group("num") is not None:
            number = match.group("num")
            tokens.append(("lit", float(number) if "." in number else int(number)))
        elif match.group("str") is not None:
            tokens.append(("lit", match.group("str")[1:-1]))
        elif match.group("op") is not None:
            tokens.append(("op", match.group("op")))
        else:
            word = match.group("name")
            if word in ("and", "or", "not"):
                tokens.append((word, word))
            elif word in ("true", "false"):
                tokens.append(("lit", word == "true"))
            else:
                tokens.append(("name", word))
    if not tokens:
        raise ValueError("is empty")
    parser = _Parser(tokens)
    tree = parser.expression()
    if parser.position != len(tokens):
        raise ValueError(f"unexpected {tokens[parser.position][1]!r}")
    return Condition(text, tree)


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> tuple[str, Any]:
        token = self._peek()
        if token is None:
            raise ValueError("ends too early")
        self.position += 1
        return token

    def expression(self) -> tuple:
        left = self.conjunction()
        while (token := self._peek()) and token[0] == "or":
            self._take()
            left = ("or", left, self.conjunction())
        return left

    def conjunction(self) -> tuple:
        left = self.unary()
        while (token := self._peek()) and token[0] == "and":
            self._take()
            left = ("and", left, self.unary())
        return left

    def unary(self) -> tuple:
        token = self._take()
        if token[0] == "not":
            return ("not", self.unary())
        if token == ("op", "("):
            inner = self.expression()
            if self._take() != ("op", ")"):
                raise ValueError("missing )")
            return inner
        if token[0] != "name":
            raise ValueError(f"expected a field name, got {token[1]!r}")
        following = self._peek()
        if following is None or following[0] != "op" or following[1] not in _OPS:
            return ("truth", token[1])
        op = self._take()[1]
        literal = self._take()
        if literal[0] != "lit":
            raise ValueError(f"expected a number, a quoted string, true or false after {op}")
        return ("cmp", token[1], op, literal[1])


# Settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lifecycle:
    new_within_days: int = 30
    loyal_min_orders: int = 3
    dormant_after_days: int = 180
    churned_after_days: int = 365


@dataclass(frozen=True)
class TagRule:
    tag: str
    when: Condition
    name: str

    @property
    def source(self) -> str:
        return f"rule:{self.name}"


@dataclass(frozen=True)
class TierLevel:
    name: str
    min: int


@dataclass(frozen=True)
class Tiers:
    by: str
    levels: tuple[TierLevel, ...]  # ascending by min

    @property
    def window_days(self) -> int | None:
        match = _SPEND.match(self.by)
        return int(match.group(1)) if match else None

    def tier_for(self, value: int) -> str:
        current = ""
        for level in self.levels:
            if value >= level.min:
                current = level.name
        return current

    def rank(self, name: str) -> int:
        return next((i + 1 for i, level in enumerate(self.levels) if level.name == name), 0)


@dataclass(frozen=True)
class PointsRules:
    # Points per unit of the workspace currency (1 = one point per yuan); 0 turns earning off.
    per_currency_unit: float = 0.0
    expire_after_days: int = 365


@dataclass(frozen=True)
class WindowedTrait:
    name: str
    event: str
    days: int
    # Empty: count the events; else sum this numeric property.
    sum_property: str = ""


@dataclass(frozen=True)
class WorkspaceSettings:
    version: int = 0
    currency: str = "CNY"
    time_zone: str = "Asia/Shanghai"
    lifecycle: Lifecycle = Lifecycle()
    tag_rules: tuple[TagRule, ...] = ()
    tiers: Tiers | None = None
    points: PointsRules = PointsRules()
    source_priority: tuple[str, ...] = ()
    windowed_traits: tuple[WindowedTrait, ...] = ()
    pii_traits: frozenset[str] = frozenset(DEFAULT_PII_TRAITS)
    zone: ZoneInfo = field(default=ZoneInfo("Asia/Shanghai"), compare=False, repr=False)

    @cached_property
    def pii_keys(self) -> frozenset[str]:
        return frozenset(pii_key(k) for k in self.pii_traits)

    @cached_property
    def _pii_answers(self) -> dict[tuple[str, bool], bool]:
        # (key, as a property) -> answer: the consumer asks about the same few keys for every event.
        return {}

    def is_pii(self, key: str) -> bool:
        """Is a trait or property of this name personal information (sealed, never announced)?"""
        answer = self._pii_answers.get((key, False))
        if answer is None:
            normalised = pii_key(key)
            answer = normalised in self.pii_keys or normalised.endswith(PII_SUFFIXES)
            self._remember(key, False, answer)
        return answer

    def is_pii_property(self, key: str) -> bool:
        """:meth:`is_pii` for event properties, where a bare ``name`` names what the event is about
        (Segment: the product, page, screen), not a person."""
        answer = self._pii_answers.get((key, True))
        if answer is None:
            answer = self.is_pii(key) and pii_key(key) != "name"
            self._remember(key, True, answer)
        return answer

    def _remember(self, key: str, as_property: bool, answer: bool) -> None:
        answers = self._pii_answers
        if len(answers) >= PII_ANSWERS:  # keys come from senders: bounded
            answers.clear()
        answers[(key, as_property)] = answer

    def holds_pii(self, key: str, value: Any) -> bool:
        """Is the value of trait ``key`` personal information: its name, or any key inside it."""
        if self.is_pii(key):
            return True
        if isinstance(value, dict):
            return any(self.holds_pii(k, v) for k, v in value.items())
        if isinstance(value, list):
            return any(self.holds_pii("", v) for v in value)
        return False

    @cached_property
    def summed_events(self) -> frozenset[str]:
        """Event names whose properties a windowed sum reads."""
        return frozenset(w.event for w in self.windowed_traits if w.sum_property)

    def tag_rules_read(self, predicate: Callable[[str], bool]) -> bool:
        """Does any tag rule read a field ``predicate`` accepts?"""
        return any(predicate(name) for rule in self.tag_rules for name in rule.when.fields)

    def source_rank(self, source: str) -> int:
        """Higher is more trusted; sources not listed rank below every listed one (0)."""
        try:
            return len(self.source_priority) - self.source_priority.index(source)
        except ValueError:
            return 0


def _int(document: Mapping, key: str, path: str, default: int, low: int, high: int) -> int:
    value = document.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRules(f"{path}.{key}", f"must be an integer between {low} and {high}")
    return value


def _mapping(value: Any, path: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRules(path, "must be an object")
    return value


def _only(document: Mapping, allowed: set[str], path: str) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise InvalidRules(f"{path}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")


def from_document(version: int, document: Mapping[str, Any], *, stored: bool = False) -> WorkspaceSettings:
    """Validated settings from their JSON document (keys as in ProfileSettings, snake_case).

    ``stored``: a document accepted before today's rules; a windowed trait whose name clashes with
    a computed trait is left out of it (not an error: the workspace's events must go on)."""
    currency = document.get("currency") or "CNY"
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise InvalidRules("currency", "must be an ISO 4217 code such as CNY")
    time_zone = document.get("time_zone") or "Asia/Shanghai"
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidRules("time_zone", "must be an IANA time zone such as Asia/Shanghai") from None

    raw_lifecycle = _mapping(document.get("lifecycle"), "lifecycle")
    _only(
        raw_lifecycle, {"new_within_days", "loyal_min_orders", "dormant_after_days", "churned_after_days"}, "lifecycle"
    )
    lifecycle = Lifecycle(
        new_within_days=_int(raw_lifecycle, "new_within_days", "lifecycle", 30, 1, 3650),
        loyal_min_orders=_int(raw_lifecycle, "loyal_min_orders", "lifecycle", 3, 2, 100_000),
        dormant_after_days=_int(raw_lifecycle, "dormant_after_days", "lifecycle", 180, 1, 3650),
        churned_after_days=_int(raw_lifecycle, "churned_after_days", "lifecycle", 365, 1, 3650),
    )
    if lifecycle.churned_after_days <= lifecycle.dormant_after_days:
        raise InvalidRules("lifecycle.churned_after_days", "must be greater than dormant_after_days")

    raw_rules = document.get("tag_rules") or []
    if not isinstance(raw_rules, list) or len(raw_rules) > MAX_TAG_RULES:
        raise InvalidRules("tag_rules", f"must be a list of at most {MAX_TAG_RULES} rules")
    tag_rules: list[TagRule] = []
    for i, raw in enumerate(raw_rules):
        path = f"tag_rules[{i}]"
        raw = _mapping(raw, path)
        _only(raw, {"tag", "when", "name"}, path)
        tag = raw.get("tag")
        if not isinstance(tag, str) or not TAG.match(tag):
            raise InvalidRules(f"{path}.tag", "must be 1-63 letters, digits, _ - : .")
        when = raw.get("when")
        if not isinstance(when, str):
            raise InvalidRules(f"{path}.when", "must be a condition such as 'order_count >= 2'")
        try:
            condition = parse_condition(when)
        except ValueError as exc:
            raise InvalidRules(f"{path}.when", str(exc)) from None
        name = raw.get("name") or tag
        if not isinstance(name, str) or not TAG.match(name):
            raise InvalidRules(f"{path}.name", "must be 1-63 letters, digits, _ - : .")
        if any(r.tag == tag for r in tag_rules):
            raise InvalidRules(f"{path}.tag", f"{tag!r} has a rule already")
        tag_rules.append(TagRule(tag, condition, name))

    tiers = None
    raw_tiers = _mapping(document.get("tiers"), "tiers")
    if raw_tiers:
        _only(raw_tiers, {"by", "levels"}, "tiers")
        by = raw_tiers.get("by")
        spend = _SPEND.match(by) if isinstance(by, str) else None
        if by not in TIER_MEASURES and not (spend and 1 <= int(spend.group(1)) <= MAX_WINDOW_DAYS):
            raise InvalidRules("tiers.by", f"must be one of {', '.join(TIER_MEASURES)} or spend_<days>d (1-366)")
        levels = raw_tiers.get("levels")
        if not isinstance(levels, list) or not 1 <= len(levels) <= 20:
            raise InvalidRules("tiers.levels", "must be a list of 1 to 20 levels")
        parsed = []
        for i, level in enumerate(levels):
            level = _mapping(level, f"tiers.levels[{i}]")
            _only(level, {"name", "min"}, f"tiers.levels[{i}]")
            name = level.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise InvalidRules(f"tiers.levels[{i}].name", "must match [a-z][a-z0-9_]{0,62}")
            parsed.append(TierLevel(name, _int(level, "min", f"tiers.levels[{i}]", 0, 0, 10**15)))
        if len({lv.name for lv in parsed}) != len(parsed) or len({lv.min for lv in parsed}) != len(parsed):
            raise InvalidRules("tiers.levels", "names and minimums must be distinct")
        tiers = Tiers(by, tuple(sorted(parsed, key=lambda lv: lv.min)))

    raw_points = _mapping(document.get("points"), "points")
    _only(raw_points, {"per_currency_unit", "expire_after_days"}, "points")
    rate = raw_points.get("per_currency_unit", 0)
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1000:
        raise InvalidRules("points.per_currency_unit", "must be a number between 0 and 1000")
    points = PointsRules(float(rate), _int(raw_points, "expire_after_days", "points", 365, 0, 36500))

    priority = document.get("source_priority") or []
    if not isinstance(priority, list) or not all(isinstance(s, str) and s for s in priority) or len(priority) > 50:
        raise InvalidRules("source_priority", "must be a list of at most 50 source names")
    if len(set(priority)) != len(priority):
        raise InvalidRules("source_priority", "lists a source twice")

    raw_windows = document.get("windowed_traits") or []
    if not isinstance(raw_windows, list) or len(raw_windows) > MAX_WINDOWED:
        raise InvalidRules("windowed_traits", f"must be a list of at most {MAX_WINDOWED} traits")
    windows: list[WindowedTrait] = []
    for i, raw in enumerate(raw_windows):
        path = f"windowed_traits[{i}]"
        raw = _mapping(raw, path)
        _only(raw, {"name", "event", "days", "sum"}, path)
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or any(w.name == name for w in windows):
            raise InvalidRules(f"{path}.name", "must be a new name matching [a-z][a-z0-9_]{0,62}")
        if name in COMPUTED_TRAITS or name in RULE_VALUES or (tiers and name == tiers.by):
            if stored:
                continue
            raise InvalidRules(
                f"{path}.name", f"{name!r} is the name of a computed trait; a windowed trait needs a name of its own"
            )
        event = raw.get("event")
        if not isinstance(event, str) or not event or len(event) > 200:
            raise InvalidRules(f"{path}.event", "must be an event name")
        total = raw.get("sum") or ""
        if not isinstance(total, str) or len(total) > 100:
            raise InvalidRules(f"{path}.sum", "must be a property name")
        windows.append(WindowedTrait(name, event, _int(raw, "days", path, 30, 1, MAX_WINDOW_DAYS), total))

    pii = document.get("pii_traits") or []
    if not isinstance(pii, list) or not all(isinstance(k, str) and k for k in pii) or len(pii) > 100:
        raise InvalidRules("pii_traits", "must be a list of at most 100 trait keys")
    pii = [*DEFAULT_PII_TRAITS, *pii]  # the defaults are always personal information
    return WorkspaceSettings(
        version=version,
        currency=currency,
        time_zone=time_zone,
        lifecycle=lifecycle,
        tag_rules=tuple(tag_rules),
        tiers=tiers,
        points=points,
        source_priority=tuple(priority),
        windowed_traits=tuple(windows),
        pii_traits=frozenset(pii),
        zone=zone,
    )


def to_document(settings: WorkspaceSettings) -> dict[str, Any]:
    """The JSON document of ``settings`` (what :func:`from_document` reads back)."""
    lifecycle = settings.lifecycle
    return {
        "currency": settings.currency,
        "time_zone": settings.time_zone,
        "lifecycle": {
            "new_within_days": lifecycle.new_within_days,
            "loyal_min_orders": lifecycle.loyal_min_orders,
            "dormant_after_days": lifecycle.dormant_after_days,
            "churned_after_days": lifecycle.churned_after_days,
        },
        "tag_rules": [{"tag": r.tag, "when": r.when.text, "name": r.name} for r in settings.tag_rules],
        "tiers": (
            {"by": settings.tiers.by, "levels": [{"name": lv.name, "min": lv.min} for lv in settings.tiers.levels]}
            if settings.tiers
            else {}
        ),
        "points": {
            "per_currency_unit": settings.points.per_currency_unit,
            "expire_after_days": settings.points.expire_after_days,
        },
        "source_priority": list(settings.source_priority),
        "windowed_traits": [
            {"name": w.name, "event": w.event, "days": w.days, **({"sum": w.sum_property} if w.sum_property else {})}
            for w in settings.windowed_traits
        ],
        # Only those added to the defaults (which always apply).
        "pii_traits": sorted(settings.pii_traits - set(DEFAULT_PII_TRAITS)),
    }


DEFAULT_SETTINGS = from_document(0, {"tag_rules": [{"tag": "repurchase", "when": "order_count >= 2"}]})
