import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from cdp.segment.v1 import condition_pb2 as _condition_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentMember(_message.Message):
    __slots__ = ("person_id", "enter_time")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    ENTER_TIME_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    enter_time: _timestamp_pb2.Timestamp
    def __init__(self, person_id: _Optional[str] = ..., enter_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSegmentVersionsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SegmentVersion(_message.Message):
    __slots__ = ("version", "rule", "create_time")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    version: int
    rule: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[int] = ..., rule: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSegmentVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[SegmentVersion]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[SegmentVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EstimateSegmentRequest(_message.Message):
    __slots__ = ("parent", "rule", "condition")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    parent: str
    rule: str
    condition: _condition_pb2.Condition
    def __init__(self, parent: _Optional[str] = ..., rule: _Optional[str] = ..., condition: _Optional[_Union[_condition_pb2.Condition, _Mapping]] = ...) -> None: ...

class EstimateSegmentResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class PreviewSegmentRequest(_message.Message):
    __slots__ = ("parent", "rule", "condition", "sample_size")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    rule: str
    condition: _condition_pb2.Condition
    sample_size: int
    def __init__(self, parent: _Optional[str] = ..., rule: _Optional[str] = ..., condition: _Optional[_Union[_condition_pb2.Condition, _Mapping]] = ..., sample_size: _Optional[int] = ...) -> None: ...

class PersonPreview(_message.Message):
    __slots__ = ("person_id", "lifecycle_stage", "tier", "rfm_group", "tags", "points_balance", "traits", "computed")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    RFM_GROUP_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    POINTS_BALANCE_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    lifecycle_stage: str
    tier: str
    rfm_group: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    points_balance: int
    traits: _struct_pb2.Struct
    computed: _struct_pb2.Struct
    def __init__(self, person_id: _Optional[str] = ..., lifecycle_stage: _Optional[str] = ..., tier: _Optional[str] = ..., rfm_group: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., points_balance: _Optional[int] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., computed: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class PreviewSegmentResponse(_message.Message):
    __slots__ = ("persons", "total_count")
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    persons: _containers.RepeatedCompositeFieldContainer[PersonPreview]
    total_count: int
    def __init__(self, persons: _Optional[_Iterable[_Union[PersonPreview, _Mapping]]] = ..., total_count: _Optional[int] = ...) -> None: ...

class ExportSegmentMembersRequest(_message.Message):
    __slots__ = ("parent", "columns", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ExportSegmentMembersResponse(_message.Message):
    __slots__ = ("csv", "row_count", "next_page_token", "segment_version")
    CSV_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    csv: str
    row_count: int
    next_page_token: str
    segment_version: int
    def __init__(self, csv: _Optional[str] = ..., row_count: _Optional[int] = ..., next_page_token: _Optional[str] = ..., segment_version: _Optional[int] = ...) -> None: ...

class StreamSegmentMembersRequest(_message.Message):
    __slots__ = ("parent", "columns")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamSegmentMembersResponse(_message.Message):
    __slots__ = ("csv", "segment_version")
    CSV_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    csv: str
    segment_version: int
    def __init__(self, csv: _Optional[str] = ..., segment_version: _Optional[int] = ...) -> None: ...

class ListPersonMembershipsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class PersonMembership(_message.Message):
    __slots__ = ("segment", "display_name", "enter_time")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ENTER_TIME_FIELD_NUMBER: _ClassVar[int]
    segment: str
    display_name: str
    enter_time: _timestamp_pb2.Timestamp
    def __init__(self, segment: _Optional[str] = ..., display_name: _Optional[str] = ..., enter_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPersonMembershipsResponse(_message.Message):
    __slots__ = ("memberships", "next_page_token")
    MEMBERSHIPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    memberships: _containers.RepeatedCompositeFieldContainer[PersonMembership]
    next_page_token: str
    def __init__(self, memberships: _Optional[_Iterable[_Union[PersonMembership, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListMembershipChangesRequest(_message.Message):
    __slots__ = ("parent", "person_id", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    person_id: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., person_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class MembershipChange(_message.Message):
    __slots__ = ("person_id", "entered", "reason", "segment_version", "change_time", "trigger_message_id")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    entered: bool
    reason: str
    segment_version: int
    change_time: _timestamp_pb2.Timestamp
    trigger_message_id: str
    def __init__(self, person_id: _Optional[str] = ..., entered: _Optional[bool] = ..., reason: _Optional[str] = ..., segment_version: _Optional[int] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger_message_id: _Optional[str] = ...) -> None: ...

class ListMembershipChangesResponse(_message.Message):
    __slots__ = ("changes", "next_page_token")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[MembershipChange]
    next_page_token: str
    def __init__(self, changes: _Optional[_Iterable[_Union[MembershipChange, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateBuiltinSegmentsRequest(_message.Message):
    __slots__ = ("parent", "kind")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    parent: str
    kind: str
    def __init__(self, parent: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class CreateBuiltinSegmentsResponse(_message.Message):
    __slots__ = ("segments",)
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    def __init__(self, segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ...) -> None: ...

class CoPurchaseFilter(_message.Message):
    __slots__ = ("min_together", "min_confidence", "min_lift", "window_days")
    MIN_TOGETHER_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_LIFT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    min_together: int
    min_confidence: float
    min_lift: float
    window_days: int
    def __init__(self, min_together: _Optional[int] = ..., min_confidence: _Optional[float] = ..., min_lift: _Optional[float] = ..., window_days: _Optional[int] = ...) -> None: ...

class ListProductCompanionsRequest(_message.Message):
    __slots__ = ("parent", "sku", "max_companions", "filter")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPANIONS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    parent: str
    sku: str
    max_companions: int
    filter: CoPurchaseFilter
    def __init__(self, parent: _Optional[str] = ..., sku: _Optional[str] = ..., max_companions: _Optional[int] = ..., filter: _Optional[_Union[CoPurchaseFilter, _Mapping]] = ...) -> None: ...

class ProductCompanion(_message.Message):
    __slots__ = ("sku", "together", "support", "confidence", "lift")
    SKU_FIELD_NUMBER: _ClassVar[int]
    TOGETHER_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    sku: str
    together: int
    support: float
    confidence: float
    lift: float
    def __init__(self, sku: _Optional[str] = ..., together: _Optional[int] = ..., support: _Optional[float] = ..., confidence: _Optional[float] = ..., lift: _Optional[float] = ...) -> None: ...

class ListProductCompanionsResponse(_message.Message):
    __slots__ = ("companions", "baskets", "baskets_with_product", "compute_time")
    COMPANIONS_FIELD_NUMBER: _ClassVar[int]
    BASKETS_FIELD_NUMBER: _ClassVar[int]
    BASKETS_WITH_PRODUCT_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TIME_FIELD_NUMBER: _ClassVar[int]
    companions: _containers.RepeatedCompositeFieldContainer[ProductCompanion]
    baskets: int
    baskets_with_product: int
    compute_time: _timestamp_pb2.Timestamp
    def __init__(self, companions: _Optional[_Iterable[_Union[ProductCompanion, _Mapping]]] = ..., baskets: _Optional[int] = ..., baskets_with_product: _Optional[int] = ..., compute_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BuildCrossSellSegmentRequest(_message.Message):
    __slots__ = ("parent", "segment_id", "sku", "max_companions", "filter", "bought_within_days")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPANIONS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    BOUGHT_WITHIN_DAYS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    segment_id: str
    sku: str
    max_companions: int
    filter: CoPurchaseFilter
    bought_within_days: int
    def __init__(self, parent: _Optional[str] = ..., segment_id: _Optional[str] = ..., sku: _Optional[str] = ..., max_companions: _Optional[int] = ..., filter: _Optional[_Union[CoPurchaseFilter, _Mapping]] = ..., bought_within_days: _Optional[int] = ...) -> None: ...

class BuildCrossSellSegmentResponse(_message.Message):
    __slots__ = ("segment", "companions")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    COMPANIONS_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    companions: _containers.RepeatedCompositeFieldContainer[ProductCompanion]
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ..., companions: _Optional[_Iterable[_Union[ProductCompanion, _Mapping]]] = ...) -> None: ...

class GetRfmReportRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RecomputeRfmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateRfmSettingsRequest(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: RfmSettings
    def __init__(self, settings: _Optional[_Union[RfmSettings, _Mapping]] = ...) -> None: ...

class RfmSettings(_message.Message):
    __slots__ = ("name", "method", "high_score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HIGH_SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    method: str
    high_score: int
    def __init__(self, name: _Optional[str] = ..., method: _Optional[str] = ..., high_score: _Optional[int] = ...) -> None: ...

class RfmThresholds(_message.Message):
    __slots__ = ("recency_seconds", "frequency", "monetary", "customers", "compute_time")
    RECENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TIME_FIELD_NUMBER: _ClassVar[int]
    recency_seconds: _containers.RepeatedScalarFieldContainer[float]
    frequency: _containers.RepeatedScalarFieldContainer[float]
    monetary: _containers.RepeatedScalarFieldContainer[float]
    customers: int
    compute_time: _timestamp_pb2.Timestamp
    def __init__(self, recency_seconds: _Optional[_Iterable[float]] = ..., frequency: _Optional[_Iterable[float]] = ..., monetary: _Optional[_Iterable[float]] = ..., customers: _Optional[int] = ..., compute_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RfmGroupCount(_message.Message):
    __slots__ = ("group", "count", "segment_id")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    group: str
    count: int
    segment_id: str
    def __init__(self, group: _Optional[str] = ..., count: _Optional[int] = ..., segment_id: _Optional[str] = ...) -> None: ...

class RfmReport(_message.Message):
    __slots__ = ("name", "settings", "thresholds", "groups", "persons")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    settings: RfmSettings
    thresholds: RfmThresholds
    groups: _containers.RepeatedCompositeFieldContainer[RfmGroupCount]
    persons: int
    def __init__(self, name: _Optional[str] = ..., settings: _Optional[_Union[RfmSettings, _Mapping]] = ..., thresholds: _Optional[_Union[RfmThresholds, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[RfmGroupCount, _Mapping]]] = ..., persons: _Optional[int] = ...) -> None: ...

class ListSegmentMembersRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSegmentMembersResponse(_message.Message):
    __slots__ = ("members", "next_page_token", "segment_version")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[SegmentMember]
    next_page_token: str
    segment_version: int
    def __init__(self, members: _Optional[_Iterable[_Union[SegmentMember, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., segment_version: _Optional[int] = ...) -> None: ...

class CheckMembershipRequest(_message.Message):
    __slots__ = ("parent", "person_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    person_id: str
    def __init__(self, parent: _Optional[str] = ..., person_id: _Optional[str] = ...) -> None: ...

class CheckMembershipResponse(_message.Message):
    __slots__ = ("member", "enter_time", "segment_version", "person_id")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    ENTER_TIME_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    member: bool
    enter_time: _timestamp_pb2.Timestamp
    segment_version: int
    person_id: str
    def __init__(self, member: _Optional[bool] = ..., enter_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., segment_version: _Optional[int] = ..., person_id: _Optional[str] = ...) -> None: ...

class ListPersonSegmentsRequest(_message.Message):
    __slots__ = ("parent", "person_id", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    person_id: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., person_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPersonSegmentsResponse(_message.Message):
    __slots__ = ("segments", "enter_times", "person_id", "next_page_token")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    ENTER_TIMES_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedScalarFieldContainer[str]
    enter_times: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    person_id: str
    next_page_token: str
    def __init__(self, segments: _Optional[_Iterable[str]] = ..., enter_times: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ..., person_id: _Optional[str] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("name", "display_name", "description", "rule", "create_time", "update_time", "etag", "condition", "version", "builtin", "member_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    MEMBER_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    rule: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    condition: _condition_pb2.Condition
    version: int
    builtin: str
    member_count: int
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., rule: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., condition: _Optional[_Union[_condition_pb2.Condition, _Mapping]] = ..., version: _Optional[int] = ..., builtin: _Optional[str] = ..., member_count: _Optional[int] = ...) -> None: ...

class CreateSegmentRequest(_message.Message):
    __slots__ = ("parent", "segment", "segment_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    segment: Segment
    segment_id: str
    def __init__(self, parent: _Optional[str] = ..., segment: _Optional[_Union[Segment, _Mapping]] = ..., segment_id: _Optional[str] = ...) -> None: ...

class GetSegmentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSegmentsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSegmentsResponse(_message.Message):
    __slots__ = ("segments", "next_page_token")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    next_page_token: str
    def __init__(self, segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSegmentRequest(_message.Message):
    __slots__ = ("segment", "update_mask")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    segment: Segment
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, segment: _Optional[_Union[Segment, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteSegmentRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...
