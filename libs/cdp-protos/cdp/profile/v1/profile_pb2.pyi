import datetime

from cdp.events.v1 import events_pb2 as _events_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Profile(_message.Message):
    __slots__ = ("name", "person_id", "traits", "event_count", "first_seen_time", "last_seen_time", "update_time", "version", "recent_events", "computed", "lifecycle_stage", "lifecycle_stage_time", "tags", "tier", "points_balance", "consents", "recent_orders", "predictions", "merged_person_ids", "currency", "requested_person_id", "tier_time", "next_due_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RECENT_EVENTS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_TIME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    POINTS_BALANCE_FIELD_NUMBER: _ClassVar[int]
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    RECENT_ORDERS_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    MERGED_PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    person_id: str
    traits: _struct_pb2.Struct
    event_count: int
    first_seen_time: _timestamp_pb2.Timestamp
    last_seen_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    version: int
    recent_events: _containers.RepeatedCompositeFieldContainer[ProfileEvent]
    computed: _struct_pb2.Struct
    lifecycle_stage: str
    lifecycle_stage_time: _timestamp_pb2.Timestamp
    tags: _containers.RepeatedCompositeFieldContainer[TagAssignment]
    tier: str
    points_balance: int
    consents: _containers.RepeatedCompositeFieldContainer[ConsentState]
    recent_orders: _containers.RepeatedCompositeFieldContainer[Order]
    predictions: Predictions
    merged_person_ids: _containers.RepeatedScalarFieldContainer[str]
    currency: str
    requested_person_id: str
    tier_time: _timestamp_pb2.Timestamp
    next_due_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., person_id: _Optional[str] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., event_count: _Optional[int] = ..., first_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., recent_events: _Optional[_Iterable[_Union[ProfileEvent, _Mapping]]] = ..., computed: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., lifecycle_stage: _Optional[str] = ..., lifecycle_stage_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tags: _Optional[_Iterable[_Union[TagAssignment, _Mapping]]] = ..., tier: _Optional[str] = ..., points_balance: _Optional[int] = ..., consents: _Optional[_Iterable[_Union[ConsentState, _Mapping]]] = ..., recent_orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., predictions: _Optional[_Union[Predictions, _Mapping]] = ..., merged_person_ids: _Optional[_Iterable[str]] = ..., currency: _Optional[str] = ..., requested_person_id: _Optional[str] = ..., tier_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_due_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ProfileEvent(_message.Message):
    __slots__ = ("message_id", "type", "event", "properties", "event_time", "receive_time", "channel", "store_id", "staff_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    type: _events_pb2.EventType
    event: str
    properties: _struct_pb2.Struct
    event_time: _timestamp_pb2.Timestamp
    receive_time: _timestamp_pb2.Timestamp
    channel: str
    store_id: str
    staff_id: str
    def __init__(self, message_id: _Optional[str] = ..., type: _Optional[_Union[_events_pb2.EventType, str]] = ..., event: _Optional[str] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., staff_id: _Optional[str] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "status", "currency", "total_minor", "refunded_minor", "channel", "store_id", "staff_id", "order_time", "items", "points_earned")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MINOR_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_MINOR_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_TIME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    POINTS_EARNED_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: str
    currency: str
    total_minor: int
    refunded_minor: int
    channel: str
    store_id: str
    staff_id: str
    order_time: _timestamp_pb2.Timestamp
    items: _containers.RepeatedCompositeFieldContainer[OrderLine]
    points_earned: int
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[str] = ..., currency: _Optional[str] = ..., total_minor: _Optional[int] = ..., refunded_minor: _Optional[int] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., staff_id: _Optional[str] = ..., order_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., items: _Optional[_Iterable[_Union[OrderLine, _Mapping]]] = ..., points_earned: _Optional[int] = ...) -> None: ...

class OrderLine(_message.Message):
    __slots__ = ("product_id", "sku", "category", "price_minor", "quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    sku: str
    category: str
    price_minor: int
    quantity: int
    def __init__(self, product_id: _Optional[str] = ..., sku: _Optional[str] = ..., category: _Optional[str] = ..., price_minor: _Optional[int] = ..., quantity: _Optional[int] = ...) -> None: ...

class TagAssignment(_message.Message):
    __slots__ = ("tag", "source", "assign_time", "expire_time")
    TAG_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    tag: str
    source: str
    assign_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, tag: _Optional[str] = ..., source: _Optional[str] = ..., assign_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConsentState(_message.Message):
    __slots__ = ("channel", "purpose", "granted", "source", "update_time")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    channel: str
    purpose: str
    granted: bool
    source: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, channel: _Optional[str] = ..., purpose: _Optional[str] = ..., granted: _Optional[bool] = ..., source: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Predictions(_message.Message):
    __slots__ = ("p_alive", "churn_risk", "expected_purchases", "horizon_weeks", "expected_order_value_minor", "predicted_clv_minor", "model_version", "compute_time")
    P_ALIVE_FIELD_NUMBER: _ClassVar[int]
    CHURN_RISK_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PURCHASES_FIELD_NUMBER: _ClassVar[int]
    HORIZON_WEEKS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ORDER_VALUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLV_MINOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TIME_FIELD_NUMBER: _ClassVar[int]
    p_alive: float
    churn_risk: float
    expected_purchases: float
    horizon_weeks: int
    expected_order_value_minor: int
    predicted_clv_minor: int
    model_version: str
    compute_time: _timestamp_pb2.Timestamp
    def __init__(self, p_alive: _Optional[float] = ..., churn_risk: _Optional[float] = ..., expected_purchases: _Optional[float] = ..., horizon_weeks: _Optional[int] = ..., expected_order_value_minor: _Optional[int] = ..., predicted_clv_minor: _Optional[int] = ..., model_version: _Optional[str] = ..., compute_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PointsEntry(_message.Message):
    __slots__ = ("name", "kind", "points", "balance_after", "reference", "reason", "create_time", "expire_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    points: int
    balance_after: int
    reference: str
    reason: str
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., points: _Optional[int] = ..., balance_after: _Optional[int] = ..., reference: _Optional[str] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListProfileDatesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ProfileDates(_message.Message):
    __slots__ = ("person_id", "birthday_month_day", "next_points_expiry_time", "version")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    BIRTHDAY_MONTH_DAY_FIELD_NUMBER: _ClassVar[int]
    NEXT_POINTS_EXPIRY_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    birthday_month_day: str
    next_points_expiry_time: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, person_id: _Optional[str] = ..., birthday_month_day: _Optional[str] = ..., next_points_expiry_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class ListProfileDatesResponse(_message.Message):
    __slots__ = ("profiles", "next_page_token")
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    profiles: _containers.RepeatedCompositeFieldContainer[ProfileDates]
    next_page_token: str
    def __init__(self, profiles: _Optional[_Iterable[_Union[ProfileDates, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListProfileEventsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "event")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    event: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., event: _Optional[str] = ...) -> None: ...

class ListProfileEventsResponse(_message.Message):
    __slots__ = ("events", "next_page_token")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ProfileEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[ProfileEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListProfileOrdersRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProfileOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateProfileTraitsRequest(_message.Message):
    __slots__ = ("name", "set", "set_once", "unset", "source", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    SET_ONCE_FIELD_NUMBER: _ClassVar[int]
    UNSET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    set: _struct_pb2.Struct
    set_once: _struct_pb2.Struct
    unset: _containers.RepeatedScalarFieldContainer[str]
    source: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., set: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., set_once: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., unset: _Optional[_Iterable[str]] = ..., source: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ModifyProfileTagsRequest(_message.Message):
    __slots__ = ("name", "add", "remove", "source", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    add: _containers.RepeatedCompositeFieldContainer[TagAssignment]
    remove: _containers.RepeatedScalarFieldContainer[str]
    source: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., add: _Optional[_Iterable[_Union[TagAssignment, _Mapping]]] = ..., remove: _Optional[_Iterable[str]] = ..., source: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateConsentRequest(_message.Message):
    __slots__ = ("name", "channel", "purpose", "granted", "source", "statement_time", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    channel: str
    purpose: str
    granted: bool
    source: str
    statement_time: _timestamp_pb2.Timestamp
    request_id: str
    def __init__(self, name: _Optional[str] = ..., channel: _Optional[str] = ..., purpose: _Optional[str] = ..., granted: _Optional[bool] = ..., source: _Optional[str] = ..., statement_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UnsubscribeRequest(_message.Message):
    __slots__ = ("name", "channel", "source", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    channel: str
    source: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., channel: _Optional[str] = ..., source: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListPointsEntriesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPointsEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[PointsEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[PointsEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ChangePointsRequest(_message.Message):
    __slots__ = ("name", "kind", "points", "reference", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    points: int
    reference: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., points: _Optional[int] = ..., reference: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ProfileSettings(_message.Message):
    __slots__ = ("name", "version", "currency", "time_zone", "lifecycle", "tag_rules", "tiers", "points", "source_priority", "windowed_traits", "pii_traits", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    TAG_RULES_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    WINDOWED_TRAITS_FIELD_NUMBER: _ClassVar[int]
    PII_TRAITS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    currency: str
    time_zone: str
    lifecycle: _struct_pb2.Struct
    tag_rules: _struct_pb2.ListValue
    tiers: _struct_pb2.Struct
    points: _struct_pb2.Struct
    source_priority: _containers.RepeatedScalarFieldContainer[str]
    windowed_traits: _struct_pb2.ListValue
    pii_traits: _containers.RepeatedScalarFieldContainer[str]
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., currency: _Optional[str] = ..., time_zone: _Optional[str] = ..., lifecycle: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tag_rules: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., tiers: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., points: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., source_priority: _Optional[_Iterable[str]] = ..., windowed_traits: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ..., pii_traits: _Optional[_Iterable[str]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class GetProfileSettingsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateProfileSettingsRequest(_message.Message):
    __slots__ = ("settings", "update_mask")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    settings: ProfileSettings
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, settings: _Optional[_Union[ProfileSettings, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("name", "sku", "display_name", "category", "brand", "price_minor", "currency", "tags", "attributes", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    sku: str
    display_name: str
    category: str
    brand: str
    price_minor: int
    currency: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    attributes: _struct_pb2.Struct
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., sku: _Optional[str] = ..., display_name: _Optional[str] = ..., category: _Optional[str] = ..., brand: _Optional[str] = ..., price_minor: _Optional[int] = ..., currency: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Store(_message.Message):
    __slots__ = ("name", "code", "display_name", "city", "region_code", "address", "tags", "attributes", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    code: str
    display_name: str
    city: str
    region_code: str
    address: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    attributes: _struct_pb2.Struct
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., code: _Optional[str] = ..., display_name: _Optional[str] = ..., city: _Optional[str] = ..., region_code: _Optional[str] = ..., address: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StaffMember(_message.Message):
    __slots__ = ("name", "display_name", "store_id", "tags", "attributes", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    store_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    attributes: _struct_pb2.Struct
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., store_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetProductRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListProductsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProductsResponse(_message.Message):
    __slots__ = ("products", "next_page_token")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    next_page_token: str
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class BatchUpsertProductsRequest(_message.Message):
    __slots__ = ("parent", "products")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    products: _containers.RepeatedCompositeFieldContainer[Product]
    def __init__(self, parent: _Optional[str] = ..., products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ...) -> None: ...

class BatchUpsertProductsResponse(_message.Message):
    __slots__ = ("products",)
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ...) -> None: ...

class UpdateProductRequest(_message.Message):
    __slots__ = ("product", "update_mask")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    product: Product
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteProductRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetStoreRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListStoresRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStoresResponse(_message.Message):
    __slots__ = ("stores", "next_page_token")
    STORES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    stores: _containers.RepeatedCompositeFieldContainer[Store]
    next_page_token: str
    def __init__(self, stores: _Optional[_Iterable[_Union[Store, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class BatchUpsertStoresRequest(_message.Message):
    __slots__ = ("parent", "stores")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    parent: str
    stores: _containers.RepeatedCompositeFieldContainer[Store]
    def __init__(self, parent: _Optional[str] = ..., stores: _Optional[_Iterable[_Union[Store, _Mapping]]] = ...) -> None: ...

class BatchUpsertStoresResponse(_message.Message):
    __slots__ = ("stores",)
    STORES_FIELD_NUMBER: _ClassVar[int]
    stores: _containers.RepeatedCompositeFieldContainer[Store]
    def __init__(self, stores: _Optional[_Iterable[_Union[Store, _Mapping]]] = ...) -> None: ...

class UpdateStoreRequest(_message.Message):
    __slots__ = ("store", "update_mask")
    STORE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    store: Store
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, store: _Optional[_Union[Store, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteStoreRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetStaffMemberRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListStaffMembersRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStaffMembersResponse(_message.Message):
    __slots__ = ("staff_members", "next_page_token")
    STAFF_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    staff_members: _containers.RepeatedCompositeFieldContainer[StaffMember]
    next_page_token: str
    def __init__(self, staff_members: _Optional[_Iterable[_Union[StaffMember, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class BatchUpsertStaffMembersRequest(_message.Message):
    __slots__ = ("parent", "staff_members")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    STAFF_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    staff_members: _containers.RepeatedCompositeFieldContainer[StaffMember]
    def __init__(self, parent: _Optional[str] = ..., staff_members: _Optional[_Iterable[_Union[StaffMember, _Mapping]]] = ...) -> None: ...

class BatchUpsertStaffMembersResponse(_message.Message):
    __slots__ = ("staff_members",)
    STAFF_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    staff_members: _containers.RepeatedCompositeFieldContainer[StaffMember]
    def __init__(self, staff_members: _Optional[_Iterable[_Union[StaffMember, _Mapping]]] = ...) -> None: ...

class UpdateStaffMemberRequest(_message.Message):
    __slots__ = ("staff_member", "update_mask")
    STAFF_MEMBER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    staff_member: StaffMember
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, staff_member: _Optional[_Union[StaffMember, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteStaffMemberRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RecomputePredictionsRequest(_message.Message):
    __slots__ = ("parent", "calibration_end_date", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_END_DATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    calibration_end_date: str
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., calibration_end_date: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class PredictionJob(_message.Message):
    __slots__ = ("name", "state", "origin", "calibration_end_date", "create_time", "start_time", "end_time", "value_model", "customers", "announced", "phase_seconds", "error")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[PredictionJob.State]
        STATE_PENDING: _ClassVar[PredictionJob.State]
        STATE_RUNNING: _ClassVar[PredictionJob.State]
        STATE_SUCCEEDED: _ClassVar[PredictionJob.State]
        STATE_FAILED: _ClassVar[PredictionJob.State]
    STATE_UNSPECIFIED: PredictionJob.State
    STATE_PENDING: PredictionJob.State
    STATE_RUNNING: PredictionJob.State
    STATE_SUCCEEDED: PredictionJob.State
    STATE_FAILED: PredictionJob.State
    class PhaseSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_END_DATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_MODEL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCED_FIELD_NUMBER: _ClassVar[int]
    PHASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: PredictionJob.State
    origin: str
    calibration_end_date: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    value_model: str
    customers: int
    announced: int
    phase_seconds: _containers.ScalarMap[str, float]
    error: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[PredictionJob.State, str]] = ..., origin: _Optional[str] = ..., calibration_end_date: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value_model: _Optional[str] = ..., customers: _Optional[int] = ..., announced: _Optional[int] = ..., phase_seconds: _Optional[_Mapping[str, float]] = ..., error: _Optional[str] = ...) -> None: ...

class GetPredictionJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListPredictionJobsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPredictionJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[PredictionJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[PredictionJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ValueModel(_message.Message):
    __slots__ = ("name", "fit_time", "calibration_end_date", "time_zone", "currency", "customers", "repeat_customers", "bgnbd", "gamma_gamma", "horizon_weeks", "clv_months", "monthly_discount_rate", "job")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FIT_TIME_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_END_DATE_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    REPEAT_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    BGNBD_FIELD_NUMBER: _ClassVar[int]
    GAMMA_GAMMA_FIELD_NUMBER: _ClassVar[int]
    HORIZON_WEEKS_FIELD_NUMBER: _ClassVar[int]
    CLV_MONTHS_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_DISCOUNT_RATE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    name: str
    fit_time: _timestamp_pb2.Timestamp
    calibration_end_date: str
    time_zone: str
    currency: str
    customers: int
    repeat_customers: int
    bgnbd: BgNbdParameters
    gamma_gamma: GammaGammaParameters
    horizon_weeks: int
    clv_months: int
    monthly_discount_rate: float
    job: str
    def __init__(self, name: _Optional[str] = ..., fit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., calibration_end_date: _Optional[str] = ..., time_zone: _Optional[str] = ..., currency: _Optional[str] = ..., customers: _Optional[int] = ..., repeat_customers: _Optional[int] = ..., bgnbd: _Optional[_Union[BgNbdParameters, _Mapping]] = ..., gamma_gamma: _Optional[_Union[GammaGammaParameters, _Mapping]] = ..., horizon_weeks: _Optional[int] = ..., clv_months: _Optional[int] = ..., monthly_discount_rate: _Optional[float] = ..., job: _Optional[str] = ...) -> None: ...

class BgNbdParameters(_message.Message):
    __slots__ = ("r", "alpha", "a", "b", "log_likelihood")
    R_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    def __init__(self, r: _Optional[float] = ..., alpha: _Optional[float] = ..., a: _Optional[float] = ..., b: _Optional[float] = ..., log_likelihood: _Optional[float] = ...) -> None: ...

class GammaGammaParameters(_message.Message):
    __slots__ = ("p", "q", "gamma", "log_likelihood", "customers")
    P_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    p: float
    q: float
    gamma: float
    log_likelihood: float
    customers: int
    def __init__(self, p: _Optional[float] = ..., q: _Optional[float] = ..., gamma: _Optional[float] = ..., log_likelihood: _Optional[float] = ..., customers: _Optional[int] = ...) -> None: ...

class GetValueModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListValueModelsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListValueModelsResponse(_message.Message):
    __slots__ = ("value_models", "next_page_token")
    VALUE_MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    value_models: _containers.RepeatedCompositeFieldContainer[ValueModel]
    next_page_token: str
    def __init__(self, value_models: _Optional[_Iterable[_Union[ValueModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
