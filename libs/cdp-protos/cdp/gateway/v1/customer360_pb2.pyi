import datetime

from cdp.identity.v1 import identity_pb2 as _identity_pb2
from cdp.profile.v1 import profile_pb2 as _profile_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCustomer360Request(_message.Message):
    __slots__ = ("name", "message_limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    message_limit: int
    def __init__(self, name: _Optional[str] = ..., message_limit: _Optional[int] = ...) -> None: ...

class Customer360(_message.Message):
    __slots__ = ("name", "person_id", "profile", "person", "segment_memberships", "recent_messages", "parts", "complete")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_MEMBERSHIPS_FIELD_NUMBER: _ClassVar[int]
    RECENT_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    name: str
    person_id: str
    profile: _profile_pb2.Profile
    person: _identity_pb2.Person
    segment_memberships: _containers.RepeatedCompositeFieldContainer[SegmentMembership]
    recent_messages: _containers.RepeatedCompositeFieldContainer[CampaignMessage]
    parts: _containers.RepeatedCompositeFieldContainer[PartStatus]
    complete: bool
    def __init__(self, name: _Optional[str] = ..., person_id: _Optional[str] = ..., profile: _Optional[_Union[_profile_pb2.Profile, _Mapping]] = ..., person: _Optional[_Union[_identity_pb2.Person, _Mapping]] = ..., segment_memberships: _Optional[_Iterable[_Union[SegmentMembership, _Mapping]]] = ..., recent_messages: _Optional[_Iterable[_Union[CampaignMessage, _Mapping]]] = ..., parts: _Optional[_Iterable[_Union[PartStatus, _Mapping]]] = ..., complete: _Optional[bool] = ...) -> None: ...

class PartStatus(_message.Message):
    __slots__ = ("part", "state", "service", "code", "message")
    class Part(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PART_UNSPECIFIED: _ClassVar[PartStatus.Part]
        PART_PROFILE: _ClassVar[PartStatus.Part]
        PART_IDENTITIES: _ClassVar[PartStatus.Part]
        PART_SEGMENT_MEMBERSHIPS: _ClassVar[PartStatus.Part]
        PART_CAMPAIGN_MESSAGES: _ClassVar[PartStatus.Part]
    PART_UNSPECIFIED: PartStatus.Part
    PART_PROFILE: PartStatus.Part
    PART_IDENTITIES: PartStatus.Part
    PART_SEGMENT_MEMBERSHIPS: PartStatus.Part
    PART_CAMPAIGN_MESSAGES: PartStatus.Part
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[PartStatus.State]
        STATE_OK: _ClassVar[PartStatus.State]
        STATE_NOT_FOUND: _ClassVar[PartStatus.State]
        STATE_UNAVAILABLE: _ClassVar[PartStatus.State]
        STATE_NOT_IMPLEMENTED: _ClassVar[PartStatus.State]
    STATE_UNSPECIFIED: PartStatus.State
    STATE_OK: PartStatus.State
    STATE_NOT_FOUND: PartStatus.State
    STATE_UNAVAILABLE: PartStatus.State
    STATE_NOT_IMPLEMENTED: PartStatus.State
    PART_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    part: PartStatus.Part
    state: PartStatus.State
    service: str
    code: str
    message: str
    def __init__(self, part: _Optional[_Union[PartStatus.Part, str]] = ..., state: _Optional[_Union[PartStatus.State, str]] = ..., service: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class SegmentMembership(_message.Message):
    __slots__ = ("segment", "display_name", "enter_time")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ENTER_TIME_FIELD_NUMBER: _ClassVar[int]
    segment: str
    display_name: str
    enter_time: _timestamp_pb2.Timestamp
    def __init__(self, segment: _Optional[str] = ..., display_name: _Optional[str] = ..., enter_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CampaignMessage(_message.Message):
    __slots__ = ("journey", "channel", "state", "send_time", "attributes")
    JOURNEY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    journey: str
    channel: str
    state: str
    send_time: _timestamp_pb2.Timestamp
    attributes: _struct_pb2.Struct
    def __init__(self, journey: _Optional[str] = ..., channel: _Optional[str] = ..., state: _Optional[str] = ..., send_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
