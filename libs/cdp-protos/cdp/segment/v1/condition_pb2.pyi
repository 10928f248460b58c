import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_UNSPECIFIED: _ClassVar[Operator]
    OPERATOR_EQ: _ClassVar[Operator]
    OPERATOR_NEQ: _ClassVar[Operator]
    OPERATOR_LT: _ClassVar[Operator]
    OPERATOR_LTE: _ClassVar[Operator]
    OPERATOR_GT: _ClassVar[Operator]
    OPERATOR_GTE: _ClassVar[Operator]
    OPERATOR_BETWEEN: _ClassVar[Operator]
    OPERATOR_IN: _ClassVar[Operator]
    OPERATOR_CONTAINS: _ClassVar[Operator]
    OPERATOR_STARTS_WITH: _ClassVar[Operator]
    OPERATOR_EXISTS: _ClassVar[Operator]
    OPERATOR_WITHIN_LAST: _ClassVar[Operator]
    OPERATOR_MORE_THAN_AGO: _ClassVar[Operator]
OPERATOR_UNSPECIFIED: Operator
OPERATOR_EQ: Operator
OPERATOR_NEQ: Operator
OPERATOR_LT: Operator
OPERATOR_LTE: Operator
OPERATOR_GT: Operator
OPERATOR_GTE: Operator
OPERATOR_BETWEEN: Operator
OPERATOR_IN: Operator
OPERATOR_CONTAINS: Operator
OPERATOR_STARTS_WITH: Operator
OPERATOR_EXISTS: Operator
OPERATOR_WITHIN_LAST: Operator
OPERATOR_MORE_THAN_AGO: Operator

class Condition(_message.Message):
    __slots__ = ("all_of", "any_of", "negation", "field", "event", "order", "segment")
    ALL_OF_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    NEGATION_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    all_of: ConditionList
    any_of: ConditionList
    negation: Condition
    field: FieldCondition
    event: EventCondition
    order: OrderCondition
    segment: MembershipCondition
    def __init__(self, all_of: _Optional[_Union[ConditionList, _Mapping]] = ..., any_of: _Optional[_Union[ConditionList, _Mapping]] = ..., negation: _Optional[_Union[Condition, _Mapping]] = ..., field: _Optional[_Union[FieldCondition, _Mapping]] = ..., event: _Optional[_Union[EventCondition, _Mapping]] = ..., order: _Optional[_Union[OrderCondition, _Mapping]] = ..., segment: _Optional[_Union[MembershipCondition, _Mapping]] = ...) -> None: ...

class ConditionList(_message.Message):
    __slots__ = ("conditions",)
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class FieldCondition(_message.Message):
    __slots__ = ("field", "op", "values", "days")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: Operator
    values: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    days: int
    def __init__(self, field: _Optional[str] = ..., op: _Optional[_Union[Operator, str]] = ..., values: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., days: _Optional[int] = ...) -> None: ...

class Window(_message.Message):
    __slots__ = ("within_days", "between")
    WITHIN_DAYS_FIELD_NUMBER: _ClassVar[int]
    BETWEEN_FIELD_NUMBER: _ClassVar[int]
    within_days: int
    between: DateRange
    def __init__(self, within_days: _Optional[int] = ..., between: _Optional[_Union[DateRange, _Mapping]] = ...) -> None: ...

class DateRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PropertyFilter(_message.Message):
    __slots__ = ("property", "op", "values")
    PROPERTY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    property: str
    op: Operator
    values: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, property: _Optional[str] = ..., op: _Optional[_Union[Operator, str]] = ..., values: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class EventCondition(_message.Message):
    __slots__ = ("name", "filters", "window", "count_op", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    COUNT_OP_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    filters: _containers.RepeatedCompositeFieldContainer[PropertyFilter]
    window: Window
    count_op: Operator
    count: int
    def __init__(self, name: _Optional[str] = ..., filters: _Optional[_Iterable[_Union[PropertyFilter, _Mapping]]] = ..., window: _Optional[_Union[Window, _Mapping]] = ..., count_op: _Optional[_Union[Operator, str]] = ..., count: _Optional[int] = ...) -> None: ...

class OrderCondition(_message.Message):
    __slots__ = ("aggregate", "op", "value", "window", "item", "store_tag", "staff_tag")
    class Aggregate(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        AGGREGATE_UNSPECIFIED: _ClassVar[OrderCondition.Aggregate]
        AGGREGATE_COUNT: _ClassVar[OrderCondition.Aggregate]
        AGGREGATE_SUM: _ClassVar[OrderCondition.Aggregate]
        AGGREGATE_AVG: _ClassVar[OrderCondition.Aggregate]
    AGGREGATE_UNSPECIFIED: OrderCondition.Aggregate
    AGGREGATE_COUNT: OrderCondition.Aggregate
    AGGREGATE_SUM: OrderCondition.Aggregate
    AGGREGATE_AVG: OrderCondition.Aggregate
    AGGREGATE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    STORE_TAG_FIELD_NUMBER: _ClassVar[int]
    STAFF_TAG_FIELD_NUMBER: _ClassVar[int]
    aggregate: OrderCondition.Aggregate
    op: Operator
    value: _struct_pb2.Value
    window: Window
    item: ItemFilter
    store_tag: str
    staff_tag: str
    def __init__(self, aggregate: _Optional[_Union[OrderCondition.Aggregate, str]] = ..., op: _Optional[_Union[Operator, str]] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., window: _Optional[_Union[Window, _Mapping]] = ..., item: _Optional[_Union[ItemFilter, _Mapping]] = ..., store_tag: _Optional[str] = ..., staff_tag: _Optional[str] = ...) -> None: ...

class ItemFilter(_message.Message):
    __slots__ = ("sku", "category", "product_tag")
    SKU_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TAG_FIELD_NUMBER: _ClassVar[int]
    sku: str
    category: str
    product_tag: str
    def __init__(self, sku: _Optional[str] = ..., category: _Optional[str] = ..., product_tag: _Optional[str] = ...) -> None: ...

class MembershipCondition(_message.Message):
    __slots__ = ("segment_id",)
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    def __init__(self, segment_id: _Optional[str] = ...) -> None: ...
