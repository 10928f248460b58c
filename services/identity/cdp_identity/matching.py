"""Match suggestions, pure Python: blocking keys and a Fellegi-Sunter scorer.

Persons that share no identifier may still be one shopper (a POS record and an online account
with the same name, birth date and address). Such pairs are *suggested* for review, never
merged automatically.

- Attributes come from identify traits (name, given/family name, birthday, address, phone).
- Blocking: each person gets a few keys (birth date; phone; name prefixes; phonetic name codes
  with postcode or birth year ...). Only persons sharing a key are compared, so the work grows
  with the number of persons, not its square. The service stores the keys as keyed hashes.
- Scoring (Fellegi and Sunter, 1969): every field compares at a level (exact, close, different,
  missing); a level adds log2(m/u), where m is the probability of that level for a true match and
  u for a random pair. The total weight is the log2 likelihood ratio of "same person"; pairs at
  or above the workspace's threshold are suggested.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from cdp_identity.rules import flat_key

FIELDS = ("given_name", "family_name", "birth_date", "phone", "street", "locality", "postcode", "region")
AREA = ("locality", "postcode", "region")


@dataclass(frozen=True)
class Attributes:
    given_name: str = ""
    family_name: str = ""
    birth_date: str = ""  # YYYYMMDD digits
    phone: str = ""  # digits only
    street: str = ""  # house number and street
    locality: str = ""
    postcode: str = ""
    region: str = ""

    def empty(self) -> bool:
        return not any(getattr(self, f) for f in FIELDS)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, values: Mapping[str, str]) -> Attributes:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def merged_with(self, newer: Attributes) -> Attributes:
        """Newer non-empty values win."""
        return Attributes(**{f: getattr(newer, f) or getattr(self, f) for f in FIELDS})


def _text(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return ""
    text = unicodedata.normalize("NFKC", str(value)).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()[:100]


def _digits(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return ""
    return re.sub(r"\D", "", str(value))[:20]


def _pick(source: Mapping[str, Any], *names: str) -> Any:
    wanted = {flat_key(n) for n in names}
    for key, value in source.items():
        if isinstance(key, str) and flat_key(key) in wanted and value not in (None, ""):
            return value
    return None


def _birth_date(value: Any) -> str:
    digits = _digits(value)
    if len(digits) == 8 and digits[:2] in ("19", "20"):
        return digits
    return ""


def extract(traits: Mapping[str, Any]) -> Attributes:
    """Match attributes from identify traits (Segment's reserved traits and common variants)."""
    given = _text(_pick(traits, "first_name", "given_name"))
    family = _text(_pick(traits, "last_name", "family_name", "surname"))
    if not given and not family:
        name = _text(_pick(traits, "name"))
        if " " in name:
            given, family = name.split(" ", 1)
        else:
            family = name
    address = _pick(traits, "address")
    street = locality = postcode = region = ""
    if isinstance(address, Mapping):
        street = _text(_pick(address, "street", "street_address", "line1"))
        locality = _text(_pick(address, "city", "district", "suburb", "locality"))
        postcode = _digits(_pick(address, "postal_code", "postcode", "zip"))
        region = _text(_pick(address, "state", "province", "region"))
    elif isinstance(address, str):
        street = _text(address)
    phone = _digits(_pick(traits, "phone", "mobile"))
    return Attributes(
        given_name=given,
        family_name=family,
        birth_date=_birth_date(_pick(traits, "birthday", "birth_date", "date_of_birth")),
        phone=phone[-11:],
        street=street,
        locality=locality,
        postcode=postcode,
        region=region,
    )


# String similarity ------------------------------------------------------------------------------


def jaro_winkler(a: str, b: str) -> float:
    if a == b:
        return 1.0 if a else 0.0
    if not a or not b:
        return 0.0
    window = max(0, max(len(a), len(b)) // 2 - 1)
    taken = [False] * len(b)
    a_matches = []
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not taken[j] and b[j] == ch:
                taken[j] = True
                a_matches.append(ch)
                break
    if not a_matches:
        return 0.0
    b_matches = [b[j] for j in range(len(b)) if taken[j]]
    transpositions = sum(x != y for x, y in zip(a_matches, b_matches, strict=True)) / 2
    m = len(a_matches)
    jaro = (m / len(a) + m / len(b) + (m - transpositions) / m) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4], strict=False):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * 0.1 * (1 - jaro)


def edit_distance(a: str, b: str, limit: int = 3) -> int:
    """Damerau-Levenshtein (optimal string alignment), stopping early above ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def soundex(word: str) -> str:
    """American Soundex of the first word (letters only), e.g. robert -> r163."""
    letters = [c for c in word.split(" ")[0] if "a" <= c <= "z"] if word else []
    if not letters:
        return ""
    codes = {**dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"), **dict.fromkeys("dt", "3"),
             "l": "4", **dict.fromkeys("mn", "5"), "r": "6"}  # fmt: skip
    out = [letters[0]]
    last = codes.get(letters[0], "")
    for c in letters[1:]:
        code = codes.get(c, "")
        if code and code != last:
            out.append(code)
        if c not in "hw":
            last = code
    return ("".join(out) + "000")[:4]


# Blocking -------------------------------------------------------------------------------------------------


def blocking_keys(a: Attributes) -> list[str]:
    """Keys under which a person is filed; persons sharing one are compared."""
    keys = []
    given, family = a.given_name.replace(" ", ""), a.family_name.replace(" ", "")
    if a.birth_date:
        keys.append(f"dob:{a.birth_date}")
    if len(a.phone) >= 6:
        keys.append(f"phone:{a.phone}")
    if given and family:
        keys.append(f"names:{given[:3]}|{family[:3]}")
        keys.append(f"names-swapped:{min(given, family)[:4]}|{max(given, family)[:4]}")
    if family and a.postcode:
        keys.append(f"family-postcode:{soundex(family)}|{a.postcode}")
    if given and a.postcode:
        keys.append(f"given-postcode:{soundex(given)}|{a.postcode}")
    if family and a.birth_date:
        keys.append(f"family-year:{soundex(family)}|{a.birth_date[:4]}")
    if given and a.birth_date:
        keys.append(f"given-monthday:{soundex(given)}|{a.birth_date[4:]}")
    if a.street and a.postcode:
        number = a.street.split(" ")[0]
        keys.append(f"street-postcode:{number}|{a.postcode}")
    if a.street and a.locality:
        keys.append(f"street-locality:{a.street[:6]}|{a.locality[:4]}")
    return keys


# Scoring ---------------------------------------------------------------------------------------------------

# (m, u) per field and level: m = P(level | same person), u = P(level | different persons).
# Set by hand from typical keying-error rates and from how often values agree by chance; the
# "different" level takes the remaining mass.
PARAMETERS: dict[str, dict[str, tuple[float, float]]] = {
    "given_name": {"exact": (0.80, 0.01), "close": (0.13, 0.02)},
    "family_name": {"exact": (0.80, 0.005), "close": (0.13, 0.01)},
    "birth_date": {"exact": (0.80, 0.0005), "close": (0.14, 0.002)},
    "phone": {"exact": (0.85, 0.0001), "close": (0.10, 0.0005)},
    "street": {"exact": (0.70, 0.001), "close": (0.22, 0.003)},
    "locality": {"exact": (0.80, 0.005), "close": (0.12, 0.01)},
    "postcode": {"exact": (0.85, 0.003), "close": (0.09, 0.02)},
    "region": {"exact": (0.92, 0.25), "close": (0.0, 0.0)},
}


def _level(field: str, x: str, y: str) -> str:
    if not x or not y:
        return "missing"
    if x == y:
        return "exact"
    if field in ("given_name", "family_name", "locality"):
        return "close" if jaro_winkler(x, y) >= 0.85 else "different"
    if field == "street":
        return "close" if jaro_winkler(x, y) >= 0.88 else "different"
    if field in ("birth_date", "phone", "postcode"):
        if len(x) == len(y) and edit_distance(x, y, 1) <= 1:
            return "close"
        if field == "birth_date" and x[:4] == y[:4] and x[4:6] == y[6:8] and x[6:8] == y[4:6]:
            return "close"  # day and month swapped
        return "different"
    return "different"


def _weight(field: str, level: str) -> float:
    if level == "missing":
        return 0.0
    table = PARAMETERS[field]
    if level in table and table[level][0] > 0:
        m, u = table[level]
        return math.log2(m / u)
    m = 1 - sum(v[0] for v in table.values())
    u = 1 - sum(v[1] for v in table.values())
    return math.log2(max(m, 1e-4) / u)


@dataclass(frozen=True)
class Comparison:
    field: str
    level: str
    weight: float


def score(a: Attributes, b: Attributes) -> tuple[float, list[Comparison]]:
    """Total weight (log2 likelihood ratio) and the per-field comparison."""
    comparisons = []
    for field in FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        if field in ("given_name", "family_name"):
            # A swapped given/family name is close, not different.
            other = "family_name" if field == "given_name" else "given_name"
            level = _level(field, x, y)
            if level == "different" and x and x == getattr(b, other):
                level = "close"
        else:
            level = _level(field, x, y)
        comparisons.append(Comparison(field, level, round(_weight(field, level), 3)))
    # Locality, postcode and region say the same thing (where someone lives): counting each as
    # independent evidence would let a neighbour with a similar name pass. They count once, as
    # the strongest of the three.
    area = [c.weight for c in comparisons if c.field in AREA]
    total = sum(c.weight for c in comparisons if c.field not in AREA) + (max(area) if area else 0.0)
    return round(total, 3), comparisons
