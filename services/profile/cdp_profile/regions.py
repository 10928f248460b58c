"""GB/T 2260 region codes from free-text Chinese cities and addresses (pure Python, no I/O at call time).

The code table is package data (data/gbt2260.tsv: 6-digit code, name), taken from the `cpca`
wheel's table (see tools/profile_regions.py for provenance). A code is XX0000 for a province,
XXXX00 for a prefecture-level city and XXXXXX for a county or district.

Matching: every full name and its short form ("浙江省" / "浙江", "杭州市" / "杭州", "西湖区" /
"西湖" for names of three or more characters) is looked up at every position of the text, longest
first. Among the places found, the most precise one that agrees with the others wins: "西湖区"
alone is ambiguous (Hangzhou and Nanchang), "杭州西湖区" is 330106. A place name that stays
ambiguous falls back to the most precise code all its readings share (often none: ""). Latin
names of provinces and of the largest cities ("Shanghai", "Hangzhou") are recognised too.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_SUFFIXES = re.compile(
    r"(省|市|特别行政区|壮族自治区|回族自治区|维吾尔自治区|自治区|自治州|自治县|地区|盟|新区|区|县|旗)$"
)
_SPECIAL_SHORT = {
    "内蒙古自治区": "内蒙古",
    "广西壮族自治区": "广西",
    "西藏自治区": "西藏",
    "新疆维吾尔自治区": "新疆",
    "宁夏回族自治区": "宁夏",
    "香港特别行政区": "香港",
    "澳门特别行政区": "澳门",
}
# Latin names: provinces and the largest cities (pinyin without tones, lower case).
_LATIN = {
    "beijing": "110000",
    "tianjin": "120000",
    "hebei": "130000",
    "shanxi": "140000",
    "inner mongolia": "150000",
    "neimenggu": "150000",
    "liaoning": "210000",
    "jilin": "220000",
    "heilongjiang": "230000",
    "shanghai": "310000",
    "jiangsu": "320000",
    "zhejiang": "330000",
    "anhui": "340000",
    "fujian": "350000",
    "jiangxi": "360000",
    "shandong": "370000",
    "henan": "410000",
    "hubei": "420000",
    "hunan": "430000",
    "guangdong": "440000",
    "guangxi": "450000",
    "hainan": "460000",
    "chongqing": "500000",
    "sichuan": "510000",
    "guizhou": "520000",
    "yunnan": "530000",
    "tibet": "540000",
    "xizang": "540000",
    "shaanxi": "610000",
    "gansu": "620000",
    "qinghai": "630000",
    "ningxia": "640000",
    "xinjiang": "650000",
    "hong kong": "810000",
    "macau": "820000",
    "macao": "820000",
    "shijiazhuang": "130100",
    "taiyuan": "140100",
    "shenyang": "210100",
    "dalian": "210200",
    "changchun": "220100",
    "harbin": "230100",
    "nanjing": "320100",
    "wuxi": "320200",
    "suzhou": "320500",
    "hangzhou": "330100",
    "ningbo": "330200",
    "wenzhou": "330300",
    "hefei": "340100",
    "fuzhou": "350100",
    "xiamen": "350200",
    "nanchang": "360100",
    "jinan": "370100",
    "qingdao": "370200",
    "zhengzhou": "410100",
    "wuhan": "420100",
    "changsha": "430100",
    "guangzhou": "440100",
    "shenzhen": "440300",
    "zhuhai": "440400",
    "foshan": "440600",
    "dongguan": "441900",
    "nanning": "450100",
    "haikou": "460100",
    "sanya": "460200",
    "chengdu": "510100",
    "guiyang": "520100",
    "kunming": "530100",
    "lhasa": "540100",
    "xi'an": "610100",
    "xian": "610100",
    "lanzhou": "620100",
    "xining": "630100",
    "yinchuan": "640100",
    "urumqi": "650100",
}
_LATIN_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(_LATIN, key=len, reverse=True)) + r")\b", re.IGNORECASE
)


def _level(code: str) -> int:
    """0 province, 1 prefecture-level city, 2 county or district."""
    if code.endswith("0000"):
        return 0
    return 1 if code.endswith("00") else 2


class RegionTable:
    def __init__(self, rows: list[tuple[str, str]]) -> None:
        self.names: dict[str, str] = {}
        self._index: dict[str, set[str]] = {}
        for code, name in rows:
            self.names[code] = name
            self._index.setdefault(name, set()).add(code)
            short = _SPECIAL_SHORT.get(name) or _SUFFIXES.sub("", name)
            if short != name and len(short) >= 2:
                self._index.setdefault(short, set()).add(code)
        self._longest = max(map(len, self._index))

    def _found(self, text: str) -> list[set[str]]:
        """Readings of every place name in ``text``, scanning left to right, longest name first."""
        found: list[set[str]] = []
        i = 0
        while i < len(text):
            for length in range(min(self._longest, len(text) - i), 1, -1):
                codes = self._index.get(text[i : i + length])
                if codes:
                    found.append(codes)
                    i += length
                    break
            else:
                i += 1
        for match in _LATIN_PATTERN.finditer(text):
            found.append({_LATIN[match.group(1).lower()]})
        return found

    def code_of(self, *texts: str) -> str:
        """The GB/T 2260 code of the most precise place the texts name consistently, or ""."""
        found = [codes for text in texts if text for codes in self._found(text)]
        if not found:
            return ""
        best: list[str] = []
        best_key: tuple[int, int] | None = None
        for codes in found:
            for code in codes:
                # Readings of the other names that contain this place (its province, its city).
                confirmations = sum(
                    1
                    for other in found
                    if other is not codes and any(o != code and code.startswith(_trim(o)) for o in other)
                )
                key = (confirmations, _level(code))
                if best_key is None or key > best_key:
                    best_key, best = key, [code]
                elif key == best_key and code not in best:
                    best.append(code)
        if len(best) == 1:
            return best[0]
        return _common_ancestor(best)


def _trim(code: str) -> str:
    """The prefix that every place inside ``code`` shares."""
    level = _level(code)
    return code[:2] if level == 0 else code[:4] if level == 1 else code


def _common_ancestor(codes: list[str]) -> str:
    for width, pad in ((4, "00"), (2, "0000")):
        prefixes = {c[:width] for c in codes}
        if len(prefixes) == 1:
            return next(iter(prefixes)) + pad
    return ""


@lru_cache(maxsize=1)
def table() -> RegionTable:
    text = resources.files("cdp_profile").joinpath("data/gbt2260.tsv").read_text(encoding="utf-8")
    rows = [tuple(line.split("\t", 1)) for line in text.splitlines() if line and not line.startswith("#")]
    return RegionTable(rows)  # type: ignore[arg-type]


def region_code(*texts: str) -> str:
    """GB/T 2260 code for free-text city/address strings ("" when nothing is recognised)."""
    return table().code_of(*texts)
