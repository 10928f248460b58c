from zoneinfo import ZoneInfo

from hypothesis import given, settings

from cdp.segment.v1 import condition_pb2
from cdp_segment.rules.ast import normalise
from cdp_segment.rules.codec import from_proto, to_proto
from cdp_segment.rules.syntax import parse, render

from ..rule_strategies import rules


@settings(max_examples=300, deadline=None)
@given(rules)
def test_proto_round_trip(rule):
    wire = condition_pb2.Condition.FromString(to_proto(rule).SerializeToString())
    assert from_proto(wire) == normalise(rule)


@settings(max_examples=100, deadline=None)
@given(rules)
def test_text_and_proto_forms_meet(rule):
    assert render(from_proto(to_proto(parse(render(rule))))) == render(rule)


def test_hash_strings_and_exact_numbers_round_trip():
    rule = parse('traits.code in ["#1", "#vip", "##"] and traits.n = 12345678901234567890.5 and traits.m = 0.1')
    condition = to_proto(rule)
    values = [v for c in condition.all_of.conditions for v in c.field.values]
    assert [v.WhichOneof("kind") for v in values] == ["string_value"] * 4 + ["number_value"]
    assert [v.string_value for v in values[:4]] == ["##1", "##vip", "###", "#12345678901234567890.5"]
    assert from_proto(condition) == rule
    # what a client writes by hand: "#vip" is a string, "#5" the number 5, "##5" the string "#5"
    sent = to_proto(parse('traits.code in ["x"]'))
    sent.field.values[0].string_value = "#vip"
    sent.field.values.add(string_value="#5")
    sent.field.values.add(string_value="##5")
    assert render(from_proto(sent)) == 'traits.code in ["#vip", 5, "#5"]'


SHANGHAI = ZoneInfo("Asia/Shanghai")


@settings(max_examples=100, deadline=None)
@given(rules)
def test_text_printed_in_a_time_zone_reads_back_in_any(rule):
    text = render(rule, SHANGHAI)
    assert parse(text) == parse(text, ZoneInfo("America/New_York")) == normalise(rule)
