import datetime

from cdp.events.v1 import events_pb2 as _events_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Person(_message.Message):
    __slots__ = ("name", "person_id", "identifiers", "create_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    person_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[_events_pb2.Identifier]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., person_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[_events_pb2.Identifier, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IdentifierSet(_message.Message):
    __slots__ = ("identifiers",)
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    identifiers: _containers.RepeatedCompositeFieldContainer[_events_pb2.Identifier]
    def __init__(self, identifiers: _Optional[_Iterable[_Union[_events_pb2.Identifier, _Mapping]]] = ...) -> None: ...

class ResolveIdentitiesRequest(_message.Message):
    __slots__ = ("parent", "sets")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    sets: _containers.RepeatedCompositeFieldContainer[IdentifierSet]
    def __init__(self, parent: _Optional[str] = ..., sets: _Optional[_Iterable[_Union[IdentifierSet, _Mapping]]] = ...) -> None: ...

class ResolveIdentitiesResponse(_message.Message):
    __slots__ = ("resolutions",)
    RESOLUTIONS_FIELD_NUMBER: _ClassVar[int]
    resolutions: _containers.RepeatedCompositeFieldContainer[Resolution]
    def __init__(self, resolutions: _Optional[_Iterable[_Union[Resolution, _Mapping]]] = ...) -> None: ...

class Resolution(_message.Message):
    __slots__ = ("person_id", "created")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    created: bool
    def __init__(self, person_id: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class LookupPersonRequest(_message.Message):
    __slots__ = ("parent", "identifier_type", "identifier_value")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_TYPE_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_VALUE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    identifier_type: str
    identifier_value: str
    def __init__(self, parent: _Optional[str] = ..., identifier_type: _Optional[str] = ..., identifier_value: _Optional[str] = ...) -> None: ...

class GetPersonRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
