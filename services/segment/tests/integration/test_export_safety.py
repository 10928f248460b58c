"""Exports are safe to open in a spreadsheet; rules cannot ask about personal data in events."""

from __future__ import annotations

import csv
import io

import pytest

from cdp_segment.domain import Segment
from cdp_segment.rules import syntax
from cdpkit.errors import InvalidArgument

from .live_env import WS, change, pid

FORMULAS = ['=HYPERLINK("http://x","y")', "+1+cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "\tx", "\r=1"]
SAFE = ["-5", "+1.5e3", "plain", "a=b", "two\rlines"]


async def test_export_cells_never_start_a_formula(env):
    people = {pid(): text for text in FORMULAS + SAFE}
    await env.live.apply_profile_changes([change(p, 1, {"note": text, "n": -7}) for p, text in people.items()])
    await env.service.create(Segment(WS, "noted", "noted", "", "traits.note exists"))
    text, _, rows, _ = await env.service.export_page(WS, "noted", ["traits.note", "traits.n"], 0, "")
    streamed = "".join(
        [chunk async for chunk, _ in env.service.export_stream(WS, "noted", ["traits.note", "traits.n"])]
    )
    assert streamed == text and rows == len(people)
    cells = {r[0]: (r[2], r[3]) for r in list(csv.reader(io.StringIO(text, newline="")))[1:]}
    assert cells == {p: ("'" + note if note in FORMULAS else note, "-7") for p, note in people.items()}


async def test_event_filters_on_personal_data_are_refused(env):
    rule = syntax.parse('event("Signed Up", where email = "a@example.com")')
    with pytest.raises(InvalidArgument) as error:
        await env.service.estimate(WS, rule, "rule")
    assert error.value.field == "rule" and "personal data" in str(error.value)
