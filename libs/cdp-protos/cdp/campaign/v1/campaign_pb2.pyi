import datetime

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

class Journey(_message.Message):
    __slots__ = ("name", "display_name", "description", "state", "definition", "create_time", "update_time", "etag", "version", "publish_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Journey.State]
        STATE_DRAFT: _ClassVar[Journey.State]
        STATE_ACTIVE: _ClassVar[Journey.State]
        STATE_PAUSED: _ClassVar[Journey.State]
        STATE_ARCHIVED: _ClassVar[Journey.State]
    STATE_UNSPECIFIED: Journey.State
    STATE_DRAFT: Journey.State
    STATE_ACTIVE: Journey.State
    STATE_PAUSED: Journey.State
    STATE_ARCHIVED: Journey.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    state: Journey.State
    definition: _struct_pb2.Struct
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    version: int
    publish_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., state: _Optional[_Union[Journey.State, str]] = ..., definition: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., version: _Optional[int] = ..., publish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateJourneyRequest(_message.Message):
    __slots__ = ("parent", "journey", "journey_id", "definition_yaml")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_YAML_FIELD_NUMBER: _ClassVar[int]
    parent: str
    journey: Journey
    journey_id: str
    definition_yaml: str
    def __init__(self, parent: _Optional[str] = ..., journey: _Optional[_Union[Journey, _Mapping]] = ..., journey_id: _Optional[str] = ..., definition_yaml: _Optional[str] = ...) -> None: ...

class GetJourneyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListJourneysRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJourneysResponse(_message.Message):
    __slots__ = ("journeys", "next_page_token")
    JOURNEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    journeys: _containers.RepeatedCompositeFieldContainer[Journey]
    next_page_token: str
    def __init__(self, journeys: _Optional[_Iterable[_Union[Journey, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateJourneyRequest(_message.Message):
    __slots__ = ("journey", "update_mask")
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    journey: Journey
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, journey: _Optional[_Union[Journey, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteJourneyRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class JourneyDefinition(_message.Message):
    __slots__ = ("trigger", "reentry", "goal", "steps", "caps")
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    REENTRY_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    trigger: Trigger
    reentry: ReentryPolicy
    goal: Goal
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    caps: FrequencyCaps
    def __init__(self, trigger: _Optional[_Union[Trigger, _Mapping]] = ..., reentry: _Optional[_Union[ReentryPolicy, _Mapping]] = ..., goal: _Optional[_Union[Goal, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., caps: _Optional[_Union[FrequencyCaps, _Mapping]] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("event", "segment", "schedule", "date", "transition")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    event: EventTrigger
    segment: SegmentTrigger
    schedule: ScheduleTrigger
    date: DateTrigger
    transition: TransitionTrigger
    def __init__(self, event: _Optional[_Union[EventTrigger, _Mapping]] = ..., segment: _Optional[_Union[SegmentTrigger, _Mapping]] = ..., schedule: _Optional[_Union[ScheduleTrigger, _Mapping]] = ..., date: _Optional[_Union[DateTrigger, _Mapping]] = ..., transition: _Optional[_Union[TransitionTrigger, _Mapping]] = ...) -> None: ...

class PropertyFilter(_message.Message):
    __slots__ = ("property", "op", "value")
    PROPERTY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    property: str
    op: str
    value: _struct_pb2.Value
    def __init__(self, property: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class EventTrigger(_message.Message):
    __slots__ = ("name", "where")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    name: str
    where: _containers.RepeatedCompositeFieldContainer[PropertyFilter]
    def __init__(self, name: _Optional[str] = ..., where: _Optional[_Iterable[_Union[PropertyFilter, _Mapping]]] = ...) -> None: ...

class SegmentTrigger(_message.Message):
    __slots__ = ("segment_id", "change", "include_current_members")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CURRENT_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    change: str
    include_current_members: bool
    def __init__(self, segment_id: _Optional[str] = ..., change: _Optional[str] = ..., include_current_members: _Optional[bool] = ...) -> None: ...

class ScheduleTrigger(_message.Message):
    __slots__ = ("segment_id", "start", "every")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    segment_id: str
    start: str
    every: str
    def __init__(self, segment_id: _Optional[str] = ..., start: _Optional[str] = ..., every: _Optional[str] = ...) -> None: ...

class DateTrigger(_message.Message):
    __slots__ = ("attribute", "days_before", "at")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    DAYS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    days_before: int
    at: str
    def __init__(self, attribute: _Optional[str] = ..., days_before: _Optional[int] = ..., at: _Optional[str] = ...) -> None: ...

class TransitionTrigger(_message.Message):
    __slots__ = ("kind", "to", "direction")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    to: str
    direction: str
    def __init__(self, kind: _Optional[str] = ..., to: _Optional[str] = ..., direction: _Optional[str] = ...) -> None: ...

class ReentryPolicy(_message.Message):
    __slots__ = ("mode", "min_interval")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MIN_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    mode: str
    min_interval: str
    def __init__(self, mode: _Optional[str] = ..., min_interval: _Optional[str] = ...) -> None: ...

class Goal(_message.Message):
    __slots__ = ("event", "where", "within", "revenue_property", "exit_on_goal")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    WITHIN_FIELD_NUMBER: _ClassVar[int]
    REVENUE_PROPERTY_FIELD_NUMBER: _ClassVar[int]
    EXIT_ON_GOAL_FIELD_NUMBER: _ClassVar[int]
    event: str
    where: _containers.RepeatedCompositeFieldContainer[PropertyFilter]
    within: str
    revenue_property: str
    exit_on_goal: bool
    def __init__(self, event: _Optional[str] = ..., where: _Optional[_Iterable[_Union[PropertyFilter, _Mapping]]] = ..., within: _Optional[str] = ..., revenue_property: _Optional[str] = ..., exit_on_goal: _Optional[bool] = ...) -> None: ...

class FrequencyCaps(_message.Message):
    __slots__ = ("per_day", "per_week")
    PER_DAY_FIELD_NUMBER: _ClassVar[int]
    PER_WEEK_FIELD_NUMBER: _ClassVar[int]
    per_day: int
    per_week: int
    def __init__(self, per_day: _Optional[int] = ..., per_week: _Optional[int] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("id", "next", "wait", "branch", "split", "send", "coupon", "tag", "webhook", "exit")
    ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    SEND_FIELD_NUMBER: _ClassVar[int]
    COUPON_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    id: str
    next: str
    wait: WaitStep
    branch: BranchStep
    split: SplitStep
    send: SendStep
    coupon: CouponStep
    tag: TagStep
    webhook: WebhookStep
    exit: ExitStep
    def __init__(self, id: _Optional[str] = ..., next: _Optional[str] = ..., wait: _Optional[_Union[WaitStep, _Mapping]] = ..., branch: _Optional[_Union[BranchStep, _Mapping]] = ..., split: _Optional[_Union[SplitStep, _Mapping]] = ..., send: _Optional[_Union[SendStep, _Mapping]] = ..., coupon: _Optional[_Union[CouponStep, _Mapping]] = ..., tag: _Optional[_Union[TagStep, _Mapping]] = ..., webhook: _Optional[_Union[WebhookStep, _Mapping]] = ..., exit: _Optional[_Union[ExitStep, _Mapping]] = ...) -> None: ...

class WaitStep(_message.Message):
    __slots__ = ("duration", "until_time", "until_event", "where", "timeout", "on_event", "on_timeout")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    UNTIL_TIME_FIELD_NUMBER: _ClassVar[int]
    UNTIL_EVENT_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ON_EVENT_FIELD_NUMBER: _ClassVar[int]
    ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    duration: str
    until_time: str
    until_event: str
    where: _containers.RepeatedCompositeFieldContainer[PropertyFilter]
    timeout: str
    on_event: str
    on_timeout: str
    def __init__(self, duration: _Optional[str] = ..., until_time: _Optional[str] = ..., until_event: _Optional[str] = ..., where: _Optional[_Iterable[_Union[PropertyFilter, _Mapping]]] = ..., timeout: _Optional[str] = ..., on_event: _Optional[str] = ..., on_timeout: _Optional[str] = ...) -> None: ...

class BranchStep(_message.Message):
    __slots__ = ("condition", "if_true", "if_false")
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    IF_TRUE_FIELD_NUMBER: _ClassVar[int]
    IF_FALSE_FIELD_NUMBER: _ClassVar[int]
    condition: Condition
    if_true: str
    if_false: str
    def __init__(self, condition: _Optional[_Union[Condition, _Mapping]] = ..., if_true: _Optional[str] = ..., if_false: _Optional[str] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("profile", "segment_id", "event_since_entry")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_SINCE_ENTRY_FIELD_NUMBER: _ClassVar[int]
    profile: PropertyFilter
    segment_id: str
    event_since_entry: EventTrigger
    def __init__(self, profile: _Optional[_Union[PropertyFilter, _Mapping]] = ..., segment_id: _Optional[str] = ..., event_since_entry: _Optional[_Union[EventTrigger, _Mapping]] = ...) -> None: ...

class SplitStep(_message.Message):
    __slots__ = ("variants",)
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    def __init__(self, variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ("name", "weight", "next", "holdout")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: int
    next: str
    holdout: bool
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[int] = ..., next: _Optional[str] = ..., holdout: _Optional[bool] = ...) -> None: ...

class SendStep(_message.Message):
    __slots__ = ("channel", "template", "ignore_quiet_hours", "recommendations", "cross_sell")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    IGNORE_QUIET_HOURS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    CROSS_SELL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    template: MessageTemplate
    ignore_quiet_hours: bool
    recommendations: _containers.RepeatedScalarFieldContainer[str]
    cross_sell: CrossSell
    def __init__(self, channel: _Optional[str] = ..., template: _Optional[_Union[MessageTemplate, _Mapping]] = ..., ignore_quiet_hours: _Optional[bool] = ..., recommendations: _Optional[_Iterable[str]] = ..., cross_sell: _Optional[_Union[CrossSell, _Mapping]] = ...) -> None: ...

class CrossSell(_message.Message):
    __slots__ = ("source", "max_products", "min_lift")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MAX_PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    MIN_LIFT_FIELD_NUMBER: _ClassVar[int]
    source: str
    max_products: int
    min_lift: float
    def __init__(self, source: _Optional[str] = ..., max_products: _Optional[int] = ..., min_lift: _Optional[float] = ...) -> None: ...

class MessageTemplate(_message.Message):
    __slots__ = ("subject", "body", "template_id")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    subject: str
    body: str
    template_id: str
    def __init__(self, subject: _Optional[str] = ..., body: _Optional[str] = ..., template_id: _Optional[str] = ...) -> None: ...

class CouponStep(_message.Message):
    __slots__ = ("pool_id",)
    POOL_ID_FIELD_NUMBER: _ClassVar[int]
    pool_id: str
    def __init__(self, pool_id: _Optional[str] = ...) -> None: ...

class TagStep(_message.Message):
    __slots__ = ("add", "remove", "expire_after")
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AFTER_FIELD_NUMBER: _ClassVar[int]
    add: _containers.RepeatedScalarFieldContainer[str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    expire_after: str
    def __init__(self, add: _Optional[_Iterable[str]] = ..., remove: _Optional[_Iterable[str]] = ..., expire_after: _Optional[str] = ...) -> None: ...

class WebhookStep(_message.Message):
    __slots__ = ("url", "body")
    URL_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    url: str
    body: str
    def __init__(self, url: _Optional[str] = ..., body: _Optional[str] = ...) -> None: ...

class ExitStep(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PublishJourneyRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class PauseJourneyRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class ExportJourneyRequest(_message.Message):
    __slots__ = ("name", "format")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class ExportJourneyResponse(_message.Message):
    __slots__ = ("content", "format")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    content: str
    format: str
    def __init__(self, content: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class ListJourneyTemplatesRequest(_message.Message):
    __slots__ = ("parent",)
    PARENT_FIELD_NUMBER: _ClassVar[int]
    parent: str
    def __init__(self, parent: _Optional[str] = ...) -> None: ...

class ListJourneyTemplatesResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Journey]
    def __init__(self, templates: _Optional[_Iterable[_Union[Journey, _Mapping]]] = ...) -> None: ...

class JourneyInstance(_message.Message):
    __slots__ = ("name", "person_id", "journey_version", "trigger_key", "state", "step_id", "variant", "exit_reason", "enter_time", "wake_time", "convert_time", "revenue_minor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    EXIT_REASON_FIELD_NUMBER: _ClassVar[int]
    ENTER_TIME_FIELD_NUMBER: _ClassVar[int]
    WAKE_TIME_FIELD_NUMBER: _ClassVar[int]
    CONVERT_TIME_FIELD_NUMBER: _ClassVar[int]
    REVENUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    person_id: str
    journey_version: int
    trigger_key: str
    state: str
    step_id: str
    variant: str
    exit_reason: str
    enter_time: _timestamp_pb2.Timestamp
    wake_time: _timestamp_pb2.Timestamp
    convert_time: _timestamp_pb2.Timestamp
    revenue_minor: int
    def __init__(self, name: _Optional[str] = ..., person_id: _Optional[str] = ..., journey_version: _Optional[int] = ..., trigger_key: _Optional[str] = ..., state: _Optional[str] = ..., step_id: _Optional[str] = ..., variant: _Optional[str] = ..., exit_reason: _Optional[str] = ..., enter_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., wake_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., convert_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revenue_minor: _Optional[int] = ...) -> None: ...

class ListJourneyInstancesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "person_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    person_id: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., person_id: _Optional[str] = ...) -> None: ...

class ListJourneyInstancesResponse(_message.Message):
    __slots__ = ("instances", "next_page_token")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[JourneyInstance]
    next_page_token: str
    def __init__(self, instances: _Optional[_Iterable[_Union[JourneyInstance, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("name", "instance_id", "step_id", "variant", "person_id", "channel", "status", "reason", "attempts", "deferrals", "create_time", "next_attempt_time", "send_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DEFERRALS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_TIME_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    instance_id: str
    step_id: str
    variant: str
    person_id: str
    channel: str
    status: str
    reason: str
    attempts: int
    deferrals: int
    create_time: _timestamp_pb2.Timestamp
    next_attempt_time: _timestamp_pb2.Timestamp
    send_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., instance_id: _Optional[str] = ..., step_id: _Optional[str] = ..., variant: _Optional[str] = ..., person_id: _Optional[str] = ..., channel: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., attempts: _Optional[int] = ..., deferrals: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., send_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDeliveriesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "status")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    status: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class ListDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListPersonMessagesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class PersonMessage(_message.Message):
    __slots__ = ("name", "journey", "channel", "state", "send_time", "create_time", "attributes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    journey: str
    channel: str
    state: str
    send_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    attributes: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., journey: _Optional[str] = ..., channel: _Optional[str] = ..., state: _Optional[str] = ..., send_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListPersonMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[PersonMessage]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[PersonMessage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RetryDeliveryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ReportDeliveryStatusRequest(_message.Message):
    __slots__ = ("name", "status", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetJourneyReportRequest(_message.Message):
    __slots__ = ("name", "format")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class ReportRow(_message.Message):
    __slots__ = ("step_id", "variant", "entered", "sent", "delivered", "failed", "suppressed", "suppressed_by_reason", "converted", "revenue_minor")
    class SuppressedByReasonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_BY_REASON_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_FIELD_NUMBER: _ClassVar[int]
    REVENUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    variant: str
    entered: int
    sent: int
    delivered: int
    failed: int
    suppressed: int
    suppressed_by_reason: _containers.ScalarMap[str, int]
    converted: int
    revenue_minor: int
    def __init__(self, step_id: _Optional[str] = ..., variant: _Optional[str] = ..., entered: _Optional[int] = ..., sent: _Optional[int] = ..., delivered: _Optional[int] = ..., failed: _Optional[int] = ..., suppressed: _Optional[int] = ..., suppressed_by_reason: _Optional[_Mapping[str, int]] = ..., converted: _Optional[int] = ..., revenue_minor: _Optional[int] = ...) -> None: ...

class Uplift(_message.Message):
    __slots__ = ("variant", "control", "conversion_rate", "control_conversion_rate", "uplift", "ci_low", "ci_high")
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    UPLIFT_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    variant: str
    control: str
    conversion_rate: float
    control_conversion_rate: float
    uplift: float
    ci_low: float
    ci_high: float
    def __init__(self, variant: _Optional[str] = ..., control: _Optional[str] = ..., conversion_rate: _Optional[float] = ..., control_conversion_rate: _Optional[float] = ..., uplift: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ...) -> None: ...

class JourneyReport(_message.Message):
    __slots__ = ("name", "rows", "uplifts", "coupons_issued", "coupons_redeemed", "csv", "compute_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    UPLIFTS_FIELD_NUMBER: _ClassVar[int]
    COUPONS_ISSUED_FIELD_NUMBER: _ClassVar[int]
    COUPONS_REDEEMED_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    rows: _containers.RepeatedCompositeFieldContainer[ReportRow]
    uplifts: _containers.RepeatedCompositeFieldContainer[Uplift]
    coupons_issued: int
    coupons_redeemed: int
    csv: str
    compute_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[ReportRow, _Mapping]]] = ..., uplifts: _Optional[_Iterable[_Union[Uplift, _Mapping]]] = ..., coupons_issued: _Optional[int] = ..., coupons_redeemed: _Optional[int] = ..., csv: _Optional[str] = ..., compute_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CouponPool(_message.Message):
    __slots__ = ("name", "display_name", "kind", "prefix", "code_length", "total_codes", "issued_codes", "redeemed_codes", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    CODE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CODES_FIELD_NUMBER: _ClassVar[int]
    ISSUED_CODES_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_CODES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    kind: str
    prefix: str
    code_length: int
    total_codes: int
    issued_codes: int
    redeemed_codes: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., kind: _Optional[str] = ..., prefix: _Optional[str] = ..., code_length: _Optional[int] = ..., total_codes: _Optional[int] = ..., issued_codes: _Optional[int] = ..., redeemed_codes: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCouponPoolRequest(_message.Message):
    __slots__ = ("parent", "coupon_pool", "coupon_pool_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    COUPON_POOL_FIELD_NUMBER: _ClassVar[int]
    COUPON_POOL_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    coupon_pool: CouponPool
    coupon_pool_id: str
    def __init__(self, parent: _Optional[str] = ..., coupon_pool: _Optional[_Union[CouponPool, _Mapping]] = ..., coupon_pool_id: _Optional[str] = ...) -> None: ...

class GetCouponPoolRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCouponPoolsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCouponPoolsResponse(_message.Message):
    __slots__ = ("coupon_pools", "next_page_token")
    COUPON_POOLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    coupon_pools: _containers.RepeatedCompositeFieldContainer[CouponPool]
    next_page_token: str
    def __init__(self, coupon_pools: _Optional[_Iterable[_Union[CouponPool, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ImportCouponCodesRequest(_message.Message):
    __slots__ = ("pool", "codes")
    POOL_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    pool: str
    codes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pool: _Optional[str] = ..., codes: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportCouponCodesResponse(_message.Message):
    __slots__ = ("imported", "skipped")
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    imported: int
    skipped: int
    def __init__(self, imported: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class CampaignSettings(_message.Message):
    __slots__ = ("name", "time_zone", "quiet_hours_start", "quiet_hours_end", "caps", "consent_mode", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_START_FIELD_NUMBER: _ClassVar[int]
    QUIET_HOURS_END_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    CONSENT_MODE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    time_zone: str
    quiet_hours_start: str
    quiet_hours_end: str
    caps: FrequencyCaps
    consent_mode: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., time_zone: _Optional[str] = ..., quiet_hours_start: _Optional[str] = ..., quiet_hours_end: _Optional[str] = ..., caps: _Optional[_Union[FrequencyCaps, _Mapping]] = ..., consent_mode: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCampaignSettingsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateCampaignSettingsRequest(_message.Message):
    __slots__ = ("settings", "update_mask")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    settings: CampaignSettings
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, settings: _Optional[_Union[CampaignSettings, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...
