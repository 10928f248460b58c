import datetime

from cdp.events.v1 import events_pb2 as _events_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Person(_message.Message):
    __slots__ = ("name", "person_id", "identifiers", "create_time", "update_time", "state", "quarantine_reason", "merged_person_ids", "identifier_links", "merge_history", "requested_person_id")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Person.State]
        STATE_ACTIVE: _ClassVar[Person.State]
        STATE_QUARANTINED: _ClassVar[Person.State]
    STATE_UNSPECIFIED: Person.State
    STATE_ACTIVE: Person.State
    STATE_QUARANTINED: Person.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUARANTINE_REASON_FIELD_NUMBER: _ClassVar[int]
    MERGED_PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_LINKS_FIELD_NUMBER: _ClassVar[int]
    MERGE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    person_id: str
    identifiers: _containers.RepeatedCompositeFieldContainer[_events_pb2.Identifier]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    state: Person.State
    quarantine_reason: str
    merged_person_ids: _containers.RepeatedScalarFieldContainer[str]
    identifier_links: _containers.RepeatedCompositeFieldContainer[IdentifierLink]
    merge_history: _containers.RepeatedCompositeFieldContainer[Merge]
    requested_person_id: str
    def __init__(self, name: _Optional[str] = ..., person_id: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[_events_pb2.Identifier, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[Person.State, str]] = ..., quarantine_reason: _Optional[str] = ..., merged_person_ids: _Optional[_Iterable[str]] = ..., identifier_links: _Optional[_Iterable[_Union[IdentifierLink, _Mapping]]] = ..., merge_history: _Optional[_Iterable[_Union[Merge, _Mapping]]] = ..., requested_person_id: _Optional[str] = ...) -> None: ...

class IdentifierLink(_message.Message):
    __slots__ = ("identifier", "anchor", "message_id", "rule", "link_time", "origin_person_id")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    LINK_TIME_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    identifier: _events_pb2.Identifier
    anchor: _events_pb2.Identifier
    message_id: str
    rule: str
    link_time: _timestamp_pb2.Timestamp
    origin_person_id: str
    def __init__(self, identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., anchor: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., message_id: _Optional[str] = ..., rule: _Optional[str] = ..., link_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin_person_id: _Optional[str] = ...) -> None: ...

class Merge(_message.Message):
    __slots__ = ("name", "merge_id", "survivor_person_id", "merged_person_id", "anchor_identifier", "bridging_identifier", "trigger_message_id", "rule", "rule_version", "kind", "state", "create_time", "undo_time", "undo_reason")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Merge.State]
        STATE_ACTIVE: _ClassVar[Merge.State]
        STATE_UNDONE: _ClassVar[Merge.State]
    STATE_UNSPECIFIED: Merge.State
    STATE_ACTIVE: Merge.State
    STATE_UNDONE: Merge.State
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Merge.Kind]
        KIND_AUTO: _ClassVar[Merge.Kind]
        KIND_SUGGESTION: _ClassVar[Merge.Kind]
    KIND_UNSPECIFIED: Merge.Kind
    KIND_AUTO: Merge.Kind
    KIND_SUGGESTION: Merge.Kind
    NAME_FIELD_NUMBER: _ClassVar[int]
    MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    SURVIVOR_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    MERGED_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    BRIDGING_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UNDO_TIME_FIELD_NUMBER: _ClassVar[int]
    UNDO_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    merge_id: str
    survivor_person_id: str
    merged_person_id: str
    anchor_identifier: _events_pb2.Identifier
    bridging_identifier: _events_pb2.Identifier
    trigger_message_id: str
    rule: str
    rule_version: int
    kind: Merge.Kind
    state: Merge.State
    create_time: _timestamp_pb2.Timestamp
    undo_time: _timestamp_pb2.Timestamp
    undo_reason: str
    def __init__(self, name: _Optional[str] = ..., merge_id: _Optional[str] = ..., survivor_person_id: _Optional[str] = ..., merged_person_id: _Optional[str] = ..., anchor_identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., bridging_identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., trigger_message_id: _Optional[str] = ..., rule: _Optional[str] = ..., rule_version: _Optional[int] = ..., kind: _Optional[_Union[Merge.Kind, str]] = ..., state: _Optional[_Union[Merge.State, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., undo_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., undo_reason: _Optional[str] = ...) -> None: ...

class IdentifierSet(_message.Message):
    __slots__ = ("identifiers", "message_id")
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    identifiers: _containers.RepeatedCompositeFieldContainer[_events_pb2.Identifier]
    message_id: str
    def __init__(self, identifiers: _Optional[_Iterable[_Union[_events_pb2.Identifier, _Mapping]]] = ..., message_id: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("person_id", "created", "merged_person_ids", "conflicts", "ignored")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MERGED_PERSON_IDS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    person_id: str
    created: bool
    merged_person_ids: _containers.RepeatedScalarFieldContainer[str]
    conflicts: _containers.RepeatedCompositeFieldContainer[IdentityConflict]
    ignored: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, person_id: _Optional[str] = ..., created: _Optional[bool] = ..., merged_person_ids: _Optional[_Iterable[str]] = ..., conflicts: _Optional[_Iterable[_Union[IdentityConflict, _Mapping]]] = ..., ignored: _Optional[_Iterable[str]] = ...) -> None: ...

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

class ListMergesRequest(_message.Message):
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

class ListMergesResponse(_message.Message):
    __slots__ = ("merges", "next_page_token")
    MERGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    merges: _containers.RepeatedCompositeFieldContainer[Merge]
    next_page_token: str
    def __init__(self, merges: _Optional[_Iterable[_Union[Merge, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UnmergeRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UnmergeResponse(_message.Message):
    __slots__ = ("merge", "persons", "undone_merge_ids")
    MERGE_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    UNDONE_MERGE_IDS_FIELD_NUMBER: _ClassVar[int]
    merge: Merge
    persons: _containers.RepeatedCompositeFieldContainer[Person]
    undone_merge_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, merge: _Optional[_Union[Merge, _Mapping]] = ..., persons: _Optional[_Iterable[_Union[Person, _Mapping]]] = ..., undone_merge_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RemoveIdentifierRequest(_message.Message):
    __slots__ = ("name", "identifier", "block", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    identifier: _events_pb2.Identifier
    block: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., block: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveIdentifierResponse(_message.Message):
    __slots__ = ("persons", "undone_merge_ids")
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    UNDONE_MERGE_IDS_FIELD_NUMBER: _ClassVar[int]
    persons: _containers.RepeatedCompositeFieldContainer[Person]
    undone_merge_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, persons: _Optional[_Iterable[_Union[Person, _Mapping]]] = ..., undone_merge_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class UnblockIdentifierRequest(_message.Message):
    __slots__ = ("parent", "identifier")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    parent: str
    identifier: _events_pb2.Identifier
    def __init__(self, parent: _Optional[str] = ..., identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ...) -> None: ...

class UnblockIdentifierResponse(_message.Message):
    __slots__ = ("identifier", "blocked_reason")
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_REASON_FIELD_NUMBER: _ClassVar[int]
    identifier: _events_pb2.Identifier
    blocked_reason: str
    def __init__(self, identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., blocked_reason: _Optional[str] = ...) -> None: ...

class ReleasePersonRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class IdentityConflict(_message.Message):
    __slots__ = ("name", "kind", "identifier", "person_id", "other_person_id", "trigger_message_id", "detail", "rule_version", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    OTHER_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    RULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    identifier: _events_pb2.Identifier
    person_id: str
    other_person_id: str
    trigger_message_id: str
    detail: str
    rule_version: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., person_id: _Optional[str] = ..., other_person_id: _Optional[str] = ..., trigger_message_id: _Optional[str] = ..., detail: _Optional[str] = ..., rule_version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListIdentityConflictsRequest(_message.Message):
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

class ListIdentityConflictsResponse(_message.Message):
    __slots__ = ("identity_conflicts", "next_page_token")
    IDENTITY_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    identity_conflicts: _containers.RepeatedCompositeFieldContainer[IdentityConflict]
    next_page_token: str
    def __init__(self, identity_conflicts: _Optional[_Iterable[_Union[IdentityConflict, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IdentifierTypeRule(_message.Message):
    __slots__ = ("name", "priority", "max_per_person", "window_days", "bridge", "pii", "normaliser", "blocked", "disabled", "builtin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_PERSON_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_FIELD_NUMBER: _ClassVar[int]
    PII_FIELD_NUMBER: _ClassVar[int]
    NORMALISER_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    priority: int
    max_per_person: int
    window_days: int
    bridge: bool
    pii: bool
    normaliser: str
    blocked: BlockedValues
    disabled: bool
    builtin: bool
    def __init__(self, name: _Optional[str] = ..., priority: _Optional[int] = ..., max_per_person: _Optional[int] = ..., window_days: _Optional[int] = ..., bridge: _Optional[bool] = ..., pii: _Optional[bool] = ..., normaliser: _Optional[str] = ..., blocked: _Optional[_Union[BlockedValues, _Mapping]] = ..., disabled: _Optional[bool] = ..., builtin: _Optional[bool] = ...) -> None: ...

class BlockedValues(_message.Message):
    __slots__ = ("exact", "patterns")
    EXACT_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    exact: _containers.RepeatedScalarFieldContainer[str]
    patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, exact: _Optional[_Iterable[str]] = ..., patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class Guardrails(_message.Message):
    __slots__ = ("max_identifiers_per_person", "max_merges_per_person")
    MAX_IDENTIFIERS_PER_PERSON_FIELD_NUMBER: _ClassVar[int]
    MAX_MERGES_PER_PERSON_FIELD_NUMBER: _ClassVar[int]
    max_identifiers_per_person: int
    max_merges_per_person: int
    def __init__(self, max_identifiers_per_person: _Optional[int] = ..., max_merges_per_person: _Optional[int] = ...) -> None: ...

class MatchingSettings(_message.Message):
    __slots__ = ("enabled", "threshold")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    threshold: float
    def __init__(self, enabled: _Optional[bool] = ..., threshold: _Optional[float] = ...) -> None: ...

class IdentityRules(_message.Message):
    __slots__ = ("name", "version", "identifier_types", "guardrails", "matching", "default_phone_region", "comment", "etag", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_TYPES_FIELD_NUMBER: _ClassVar[int]
    GUARDRAILS_FIELD_NUMBER: _ClassVar[int]
    MATCHING_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PHONE_REGION_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    identifier_types: _containers.RepeatedCompositeFieldContainer[IdentifierTypeRule]
    guardrails: Guardrails
    matching: MatchingSettings
    default_phone_region: str
    comment: str
    etag: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., identifier_types: _Optional[_Iterable[_Union[IdentifierTypeRule, _Mapping]]] = ..., guardrails: _Optional[_Union[Guardrails, _Mapping]] = ..., matching: _Optional[_Union[MatchingSettings, _Mapping]] = ..., default_phone_region: _Optional[str] = ..., comment: _Optional[str] = ..., etag: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetIdentityRulesRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class UpdateIdentityRulesRequest(_message.Message):
    __slots__ = ("rules", "update_mask")
    RULES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    rules: IdentityRules
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, rules: _Optional[_Union[IdentityRules, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DryRunIdentityRulesRequest(_message.Message):
    __slots__ = ("name", "rules", "update_mask", "days", "max_events")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    rules: IdentityRules
    update_mask: _field_mask_pb2.FieldMask
    days: int
    max_events: int
    def __init__(self, name: _Optional[str] = ..., rules: _Optional[_Union[IdentityRules, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., days: _Optional[int] = ..., max_events: _Optional[int] = ...) -> None: ...

class MergeDifference(_message.Message):
    __slots__ = ("side", "trigger_message_id", "anchor_identifier", "bridging_identifier", "rule")
    class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SIDE_UNSPECIFIED: _ClassVar[MergeDifference.Side]
        SIDE_CURRENT_ONLY: _ClassVar[MergeDifference.Side]
        SIDE_PROPOSED_ONLY: _ClassVar[MergeDifference.Side]
    SIDE_UNSPECIFIED: MergeDifference.Side
    SIDE_CURRENT_ONLY: MergeDifference.Side
    SIDE_PROPOSED_ONLY: MergeDifference.Side
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    BRIDGING_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    side: MergeDifference.Side
    trigger_message_id: str
    anchor_identifier: _events_pb2.Identifier
    bridging_identifier: _events_pb2.Identifier
    rule: str
    def __init__(self, side: _Optional[_Union[MergeDifference.Side, str]] = ..., trigger_message_id: _Optional[str] = ..., anchor_identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., bridging_identifier: _Optional[_Union[_events_pb2.Identifier, _Mapping]] = ..., rule: _Optional[str] = ...) -> None: ...

class DryRunIdentityRulesResponse(_message.Message):
    __slots__ = ("current_version", "events_replayed", "truncated", "current_merges", "proposed_merges", "current_conflicts", "proposed_conflicts", "current_persons", "proposed_persons", "differences", "truncation_reason", "days_replayed", "oldest_event_time")
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_MERGES_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_MERGES_FIELD_NUMBER: _ClassVar[int]
    CURRENT_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PERSONS_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_PERSONS_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_REASON_FIELD_NUMBER: _ClassVar[int]
    DAYS_REPLAYED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    current_version: int
    events_replayed: int
    truncated: bool
    current_merges: int
    proposed_merges: int
    current_conflicts: int
    proposed_conflicts: int
    current_persons: int
    proposed_persons: int
    differences: _containers.RepeatedCompositeFieldContainer[MergeDifference]
    truncation_reason: str
    days_replayed: int
    oldest_event_time: _timestamp_pb2.Timestamp
    def __init__(self, current_version: _Optional[int] = ..., events_replayed: _Optional[int] = ..., truncated: _Optional[bool] = ..., current_merges: _Optional[int] = ..., proposed_merges: _Optional[int] = ..., current_conflicts: _Optional[int] = ..., proposed_conflicts: _Optional[int] = ..., current_persons: _Optional[int] = ..., proposed_persons: _Optional[int] = ..., differences: _Optional[_Iterable[_Union[MergeDifference, _Mapping]]] = ..., truncation_reason: _Optional[str] = ..., days_replayed: _Optional[int] = ..., oldest_event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MatchSuggestion(_message.Message):
    __slots__ = ("name", "suggestion_id", "person_id", "other_person_id", "score", "comparisons", "state", "create_time", "decide_time", "merge_id")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[MatchSuggestion.State]
        STATE_PENDING: _ClassVar[MatchSuggestion.State]
        STATE_ACCEPTED: _ClassVar[MatchSuggestion.State]
        STATE_REJECTED: _ClassVar[MatchSuggestion.State]
        STATE_OBSOLETE: _ClassVar[MatchSuggestion.State]
    STATE_UNSPECIFIED: MatchSuggestion.State
    STATE_PENDING: MatchSuggestion.State
    STATE_ACCEPTED: MatchSuggestion.State
    STATE_REJECTED: MatchSuggestion.State
    STATE_OBSOLETE: MatchSuggestion.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUGGESTION_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    OTHER_PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    MERGE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    suggestion_id: str
    person_id: str
    other_person_id: str
    score: float
    comparisons: _containers.RepeatedCompositeFieldContainer[FieldComparison]
    state: MatchSuggestion.State
    create_time: _timestamp_pb2.Timestamp
    decide_time: _timestamp_pb2.Timestamp
    merge_id: str
    def __init__(self, name: _Optional[str] = ..., suggestion_id: _Optional[str] = ..., person_id: _Optional[str] = ..., other_person_id: _Optional[str] = ..., score: _Optional[float] = ..., comparisons: _Optional[_Iterable[_Union[FieldComparison, _Mapping]]] = ..., state: _Optional[_Union[MatchSuggestion.State, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., merge_id: _Optional[str] = ...) -> None: ...

class FieldComparison(_message.Message):
    __slots__ = ("field", "level", "weight")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    field: str
    level: str
    weight: float
    def __init__(self, field: _Optional[str] = ..., level: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class ListMatchSuggestionsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "state")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    state: MatchSuggestion.State
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[MatchSuggestion.State, str]] = ...) -> None: ...

class ListMatchSuggestionsResponse(_message.Message):
    __slots__ = ("match_suggestions", "next_page_token")
    MATCH_SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    match_suggestions: _containers.RepeatedCompositeFieldContainer[MatchSuggestion]
    next_page_token: str
    def __init__(self, match_suggestions: _Optional[_Iterable[_Union[MatchSuggestion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AcceptMatchSuggestionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AcceptMatchSuggestionResponse(_message.Message):
    __slots__ = ("match_suggestion", "merge", "person")
    MATCH_SUGGESTION_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    match_suggestion: MatchSuggestion
    merge: Merge
    person: Person
    def __init__(self, match_suggestion: _Optional[_Union[MatchSuggestion, _Mapping]] = ..., merge: _Optional[_Union[Merge, _Mapping]] = ..., person: _Optional[_Union[Person, _Mapping]] = ...) -> None: ...

class RejectMatchSuggestionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
