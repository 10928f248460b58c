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

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_TRACK: _ClassVar[EventType]
    EVENT_TYPE_IDENTIFY: _ClassVar[EventType]
    EVENT_TYPE_PAGE: _ClassVar[EventType]
    EVENT_TYPE_SCREEN: _ClassVar[EventType]
    EVENT_TYPE_ALIAS: _ClassVar[EventType]
    EVENT_TYPE_GROUP: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_TRACK: EventType
EVENT_TYPE_IDENTIFY: EventType
EVENT_TYPE_PAGE: EventType
EVENT_TYPE_SCREEN: EventType
EVENT_TYPE_ALIAS: EventType
EVENT_TYPE_GROUP: EventType

class RawEvent(_message.Message):
    __slots__ = ("message_id", "workspace_id", "type", "event", "user_id", "anonymous_id", "previous_id", "group_id", "traits", "properties", "context", "integrations", "timestamp", "original_timestamp", "sent_at", "received_at", "source_key_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    INTEGRATIONS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    workspace_id: str
    type: EventType
    event: str
    user_id: str
    anonymous_id: str
    previous_id: str
    group_id: str
    traits: _struct_pb2.Struct
    properties: _struct_pb2.Struct
    context: _struct_pb2.Struct
    integrations: _struct_pb2.Struct
    timestamp: _timestamp_pb2.Timestamp
    original_timestamp: _timestamp_pb2.Timestamp
    sent_at: _timestamp_pb2.Timestamp
    received_at: _timestamp_pb2.Timestamp
    source_key_id: str
    def __init__(self, message_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., event: _Optional[str] = ..., user_id: _Optional[str] = ..., anonymous_id: _Optional[str] = ..., previous_id: _Optional[str] = ..., group_id: _Optional[str] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., integrations: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., original_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_key_id: _Optional[str] = ...) -> None: ...

class RawEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RawEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[RawEvent, _Mapping]]] = ...) -> None: ...

class Identifier(_message.Message):
    __slots__ = ("type", "value")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    type: str
    value: str
    def __init__(self, type: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ResolvedEvent(_message.Message):
    __slots__ = ("event", "person_id", "identifiers")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    event: RawEvent
    person_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    def __init__(self, event: _Optional[_Union[RawEvent, _Mapping]] = ..., person_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ...) -> None: ...

class ResolvedEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ResolvedEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[ResolvedEvent, _Mapping]]] = ...) -> None: ...

class ProfileChanged(_message.Message):
    __slots__ = ("workspace_id", "person_id", "changed_fields", "values", "trigger_message_id", "trigger_event", "version", "change_time", "events", "orders", "snapshot", "transitions", "moved")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_EVENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    MOVED_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    person_id: str
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    values: _struct_pb2.Struct
    trigger_message_id: str
    trigger_event: str
    version: int
    change_time: _timestamp_pb2.Timestamp
    events: _containers.RepeatedCompositeFieldContainer[EventFact]
    orders: _containers.RepeatedCompositeFieldContainer[OrderFact]
    snapshot: ProfileSnapshot
    transitions: _containers.RepeatedCompositeFieldContainer[ProfileTransition]
    moved: FactsMoved
    def __init__(self, workspace_id: _Optional[str] = ..., person_id: _Optional[str] = ..., changed_fields: _Optional[_Iterable[str]] = ..., values: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., trigger_message_id: _Optional[str] = ..., trigger_event: _Optional[str] = ..., version: _Optional[int] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events: _Optional[_Iterable[_Union[EventFact, _Mapping]]] = ..., orders: _Optional[_Iterable[_Union[OrderFact, _Mapping]]] = ..., snapshot: _Optional[_Union[ProfileSnapshot, _Mapping]] = ..., transitions: _Optional[_Iterable[_Union[ProfileTransition, _Mapping]]] = ..., moved: _Optional[_Union[FactsMoved, _Mapping]] = ...) -> None: ...

class ProfileSnapshot(_message.Message):
    __slots__ = ("traits", "pii_traits", "computed", "lifecycle_stage", "tier", "tags", "consent", "points_balance", "currency")
    class ConsentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    PII_TRAITS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    POINTS_BALANCE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    traits: _struct_pb2.Struct
    pii_traits: _containers.RepeatedScalarFieldContainer[str]
    computed: _struct_pb2.Struct
    lifecycle_stage: str
    tier: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    consent: _containers.ScalarMap[str, bool]
    points_balance: int
    currency: str
    def __init__(self, traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., pii_traits: _Optional[_Iterable[str]] = ..., computed: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., lifecycle_stage: _Optional[str] = ..., tier: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., consent: _Optional[_Mapping[str, bool]] = ..., points_balance: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class ProfileTransition(_message.Message):
    __slots__ = ("kind", "from_value", "to_value", "direction", "cause", "transition_time")
    KIND_FIELD_NUMBER: _ClassVar[int]
    FROM_VALUE_FIELD_NUMBER: _ClassVar[int]
    TO_VALUE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    from_value: str
    to_value: str
    direction: str
    cause: str
    transition_time: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., from_value: _Optional[str] = ..., to_value: _Optional[str] = ..., direction: _Optional[str] = ..., cause: _Optional[str] = ..., transition_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FactsMoved(_message.Message):
    __slots__ = ("merged_person_ids", "split_from_person_id", "message_ids", "order_ids")
    MERGED_PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FROM_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    merged_person_ids: _containers.RepeatedScalarFieldContainer[str]
    split_from_person_id: str
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    order_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, merged_person_ids: _Optional[_Iterable[str]] = ..., split_from_person_id: _Optional[str] = ..., message_ids: _Optional[_Iterable[str]] = ..., order_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EventFact(_message.Message):
    __slots__ = ("message_id", "event", "event_time", "properties", "type", "channel", "store_id", "staff_id")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    event: str
    event_time: _timestamp_pb2.Timestamp
    properties: _struct_pb2.Struct
    type: EventType
    channel: str
    store_id: str
    staff_id: str
    def __init__(self, message_id: _Optional[str] = ..., event: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., type: _Optional[_Union[EventType, str]] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., staff_id: _Optional[str] = ...) -> None: ...

class OrderFact(_message.Message):
    __slots__ = ("order_id", "status", "total_minor", "currency", "store_id", "staff_id", "order_time", "items", "channel", "refunded_minor")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_TIME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_MINOR_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: str
    total_minor: int
    currency: str
    store_id: str
    staff_id: str
    order_time: _timestamp_pb2.Timestamp
    items: _containers.RepeatedCompositeFieldContainer[OrderLineFact]
    channel: str
    refunded_minor: int
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[str] = ..., total_minor: _Optional[int] = ..., currency: _Optional[str] = ..., store_id: _Optional[str] = ..., staff_id: _Optional[str] = ..., order_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., items: _Optional[_Iterable[_Union[OrderLineFact, _Mapping]]] = ..., channel: _Optional[str] = ..., refunded_minor: _Optional[int] = ...) -> None: ...

class OrderLineFact(_message.Message):
    __slots__ = ("product_id", "sku", "category", "quantity", "price_minor")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_MINOR_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    sku: str
    category: str
    quantity: int
    price_minor: int
    def __init__(self, product_id: _Optional[str] = ..., sku: _Optional[str] = ..., category: _Optional[str] = ..., quantity: _Optional[int] = ..., price_minor: _Optional[int] = ...) -> None: ...

class ObjectTagsChanged(_message.Message):
    __slots__ = ("workspace_id", "object_kind", "object_id", "tags", "version")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_KIND_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    object_kind: str
    object_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    version: int
    def __init__(self, workspace_id: _Optional[str] = ..., object_kind: _Optional[str] = ..., object_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ...) -> None: ...

class WorkspaceSettingsChanged(_message.Message):
    __slots__ = ("workspace_id", "version", "time_zone")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    version: int
    time_zone: str
    def __init__(self, workspace_id: _Optional[str] = ..., version: _Optional[int] = ..., time_zone: _Optional[str] = ...) -> None: ...

class SegmentMembershipChanged(_message.Message):
    __slots__ = ("workspace_id", "segment_id", "person_id", "change", "reason", "segment_version", "change_time", "trigger_message_id")
    class Change(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHANGE_UNSPECIFIED: _ClassVar[SegmentMembershipChanged.Change]
        CHANGE_ENTERED: _ClassVar[SegmentMembershipChanged.Change]
        CHANGE_EXITED: _ClassVar[SegmentMembershipChanged.Change]
    CHANGE_UNSPECIFIED: SegmentMembershipChanged.Change
    CHANGE_ENTERED: SegmentMembershipChanged.Change
    CHANGE_EXITED: SegmentMembershipChanged.Change
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    segment_id: str
    person_id: str
    change: SegmentMembershipChanged.Change
    reason: str
    segment_version: int
    change_time: _timestamp_pb2.Timestamp
    trigger_message_id: str
    def __init__(self, workspace_id: _Optional[str] = ..., segment_id: _Optional[str] = ..., person_id: _Optional[str] = ..., change: _Optional[_Union[SegmentMembershipChanged.Change, str]] = ..., reason: _Optional[str] = ..., segment_version: _Optional[int] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger_message_id: _Optional[str] = ...) -> None: ...

class PersonCreated(_message.Message):
    __slots__ = ("workspace_id", "person_id", "identifiers", "trigger_message_id", "create_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    person_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    trigger_message_id: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., person_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ..., trigger_message_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PersonsMerged(_message.Message):
    __slots__ = ("workspace_id", "survivor_person_id", "merged_person_ids", "bridging_identifier", "rule", "trigger_message_id", "merge_id", "merge_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    BRIDGING_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    MERGE_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    survivor_person_id: str
    merged_person_ids: _containers.RepeatedScalarFieldContainer[str]
    bridging_identifier: Identifier
    rule: str
    trigger_message_id: str
    merge_id: str
    merge_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., survivor_person_id: _Optional[str] = ..., merged_person_ids: _Optional[_Iterable[str]] = ..., bridging_identifier: _Optional[_Union[Identifier, _Mapping]] = ..., rule: _Optional[str] = ..., trigger_message_id: _Optional[str] = ..., merge_id: _Optional[str] = ..., merge_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PersonSplit(_message.Message):
    __slots__ = ("workspace_id", "person_id", "new_person_id", "moved_identifiers", "undone_merge_id", "reason", "split_time", "moved_person_ids")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    MOVED_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    UNDONE_MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SPLIT_TIME_FIELD_NUMBER: _ClassVar[int]
    MOVED_PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    person_id: str
    new_person_id: str
    moved_identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    undone_merge_id: str
    reason: str
    split_time: _timestamp_pb2.Timestamp
    moved_person_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workspace_id: _Optional[str] = ..., person_id: _Optional[str] = ..., new_person_id: _Optional[str] = ..., moved_identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ..., undone_merge_id: _Optional[str] = ..., reason: _Optional[str] = ..., split_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., moved_person_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class IdentifiersRemoved(_message.Message):
    __slots__ = ("workspace_id", "person_id", "identifiers", "blocked", "reason", "remove_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    person_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    blocked: bool
    reason: str
    remove_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., person_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ..., blocked: _Optional[bool] = ..., reason: _Optional[str] = ..., remove_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IdentifiersLinked(_message.Message):
    __slots__ = ("workspace_id", "person_id", "identifiers", "trigger_message_id", "rule", "link_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    LINK_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    person_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    trigger_message_id: str
    rule: str
    link_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., person_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ..., trigger_message_id: _Optional[str] = ..., rule: _Optional[str] = ..., link_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IdentityConflict(_message.Message):
    __slots__ = ("workspace_id", "conflict_id", "kind", "identifier", "person_id", "other_person_id", "trigger_message_id", "detail", "conflict_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    OTHER_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    conflict_id: str
    kind: str
    identifier: Identifier
    person_id: str
    other_person_id: str
    trigger_message_id: str
    detail: str
    conflict_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., conflict_id: _Optional[str] = ..., kind: _Optional[str] = ..., identifier: _Optional[_Union[Identifier, _Mapping]] = ..., person_id: _Optional[str] = ..., other_person_id: _Optional[str] = ..., trigger_message_id: _Optional[str] = ..., detail: _Optional[str] = ..., conflict_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PersonQuarantined(_message.Message):
    __slots__ = ("workspace_id", "person_id", "reason", "trigger_message_id", "quarantine_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    person_id: str
    reason: str
    trigger_message_id: str
    quarantine_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., person_id: _Optional[str] = ..., reason: _Optional[str] = ..., trigger_message_id: _Optional[str] = ..., quarantine_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CampaignMessage(_message.Message):
    __slots__ = ("workspace_id", "journey_id", "journey_version", "instance_id", "step_id", "variant", "person_id", "channel", "delivery_id", "status", "reason", "attempt", "event_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    journey_id: str
    journey_version: int
    instance_id: str
    step_id: str
    variant: str
    person_id: str
    channel: str
    delivery_id: str
    status: str
    reason: str
    attempt: int
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., journey_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., instance_id: _Optional[str] = ..., step_id: _Optional[str] = ..., variant: _Optional[str] = ..., person_id: _Optional[str] = ..., channel: _Optional[str] = ..., delivery_id: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., attempt: _Optional[int] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CampaignConversion(_message.Message):
    __slots__ = ("workspace_id", "journey_id", "instance_id", "person_id", "variant", "step_id", "goal_event", "message_id", "revenue_minor", "conversion_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    GOAL_EVENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    REVENUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    journey_id: str
    instance_id: str
    person_id: str
    variant: str
    step_id: str
    goal_event: str
    message_id: str
    revenue_minor: int
    conversion_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., journey_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., person_id: _Optional[str] = ..., variant: _Optional[str] = ..., step_id: _Optional[str] = ..., goal_event: _Optional[str] = ..., message_id: _Optional[str] = ..., revenue_minor: _Optional[int] = ..., conversion_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
