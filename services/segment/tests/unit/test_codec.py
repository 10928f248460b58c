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
