from cdp.events.v1 import events_pb2 as _events_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestEventsRequest(_message.Message):
    __slots__ = ("parent", "events")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.RawEvent]
    def __init__(self, parent: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_events_pb2.RawEvent, _Mapping]]] = ...) -> None: ...

class IngestEventsResponse(_message.Message):
    __slots__ = ("accepted_count", "message_ids")
    ACCEPTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    accepted_count: int
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted_count: _Optional[int] = ..., message_ids: _Optional[_Iterable[str]] = ...) -> None: ...
