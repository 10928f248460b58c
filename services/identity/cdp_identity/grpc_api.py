"""IdentityService over gRPC: proto <-> domain, nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

import grpc

from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_identity import repository
from cdp_identity.domain import Outcome
from cdp_identity.rules import Guardrails, Identifier, MatchingSettings, TypePatch
from cdp_identity.service import IdentityService, PersonDetails, RulesInfo, SplitResult
from cdpkit.errors import InvalidArgument
from cdpkit.fieldmask import paths_to_update, requested_paths
from cdpkit.names import UUID, parse, workspace_of
from cdpkit.pagination import decode_token, encode_token, page_size

MAX_SETS = 500
RULES_FIELDS = frozenset({"identifier_types", "guardrails", "matching", "default_phone_region", "comment"})


def _id(identifier: Identifier | None) -> events_pb2.Identifier | None:
    return None if identifier is None else events_pb2.Identifier(type=identifier.type, value=identifier.value)


def _ts(message, field: str, when: datetime | None) -> None:
    if when is not None:
        getattr(message, field).FromDatetime(when)


def merge_pb(workspace_id: str, view: tuple[repository.MergeRow, Identifier, Identifier]) -> identity_pb2.Merge:
    row, anchor, bridge = view
    merge = identity_pb2.Merge(
        name=f"workspaces/{workspace_id}/merges/{row.merge_id}",
        merge_id=row.merge_id,
        survivor_person_id=row.survivor_id,
        merged_person_id=row.merged_id,
        anchor_identifier=_id(anchor),
        bridging_identifier=_id(bridge),
        trigger_message_id=row.message_id,
        rule=row.rule,
        rule_version=row.rule_version,
        kind=identity_pb2.Merge.KIND_SUGGESTION if row.kind == "suggestion" else identity_pb2.Merge.KIND_AUTO,
        state=identity_pb2.Merge.STATE_UNDONE if row.undone_at else identity_pb2.Merge.STATE_ACTIVE,
        undo_reason=row.undo_reason or "",
    )
    _ts(merge, "create_time", row.created_at)
    _ts(merge, "undo_time", row.undone_at)
    return merge


def person_pb(workspace_id: str, details: PersonDetails) -> identity_pb2.Person:
    row = details.row
    person = identity_pb2.Person(
        name=f"workspaces/{workspace_id}/persons/{row.person_id}",
        person_id=row.person_id,
        identifiers=[_id(identifier) for identifier, _ in details.identifiers],
        state=identity_pb2.Person.STATE_QUARANTINED
        if row.status == "quarantined"
        else identity_pb2.Person.STATE_ACTIVE,
        quarantine_reason=row.quarantine_reason or "",
        merged_person_ids=details.merged_person_ids,
        merge_history=[merge_pb(workspace_id, m) for m in details.history],
        requested_person_id=details.requested_person_id,
    )
    shown = {r.key: identifier for identifier, r in details.identifiers}
    for identifier, r in details.identifiers:
        link = person.identifier_links.add(
            identifier=_id(identifier),
            message_id=r.message_id or "",
            rule=r.rule or "",
            origin_person_id=r.origin_person_id or "",
        )
        if r.anchor is not None:
            anchor = shown.get(r.anchor) or Identifier(
                r.anchor[0], "(removed)" if r.anchor[1].startswith("h:") else r.anchor[1]
            )
            link.anchor.CopyFrom(_id(anchor))
        link.link_time.FromDatetime(r.linked_at)
    person.create_time.FromDatetime(row.created_at)
    person.update_time.FromDatetime(row.updated_at)
    return person


def conflict_pb(
    workspace_id: str, row: repository.ConflictRow, identifier: Identifier
) -> identity_pb2.IdentityConflict:
    conflict = identity_pb2.IdentityConflict(
        name=f"workspaces/{workspace_id}/identityConflicts/{row.conflict_id}",
        kind=row.kind,
        identifier=_id(identifier),
        person_id=row.person_id or "",
        other_person_id=row.other_person_id or "",
        trigger_message_id=row.message_id,
        detail=row.detail,
        rule_version=row.rule_version,
    )
    _ts(conflict, "create_time", row.created_at)
    return conflict


def rules_pb(workspace_id: str, info: RulesInfo) -> identity_pb2.IdentityRules:
    rules = info.rules
    message = identity_pb2.IdentityRules(
        name=f"workspaces/{workspace_id}/identityRules",
        version=rules.version,
        guardrails=identity_pb2.Guardrails(
            max_identifiers_per_person=rules.guardrails.max_identifiers_per_person,
            max_merges_per_person=rules.guardrails.max_merges_per_person,
        ),
        matching=identity_pb2.MatchingSettings(enabled=rules.matching.enabled, threshold=rules.matching.threshold),
        default_phone_region=rules.default_phone_region,
        comment=info.comment,
        etag=f'"{rules.version}"',
    )
    for t in sorted(rules.types.values(), key=lambda t: (-t.priority, t.name)):
        message.identifier_types.add(
            name=t.name,
            priority=t.priority,
            max_per_person=t.max_per_person,
            window_days=t.window_days,
            bridge=t.bridge,
            pii=t.pii,
            normaliser=t.normaliser,
            blocked=identity_pb2.BlockedValues(exact=t.blocked_values, patterns=t.blocked_patterns),
            disabled=not t.enabled,
            builtin=t.builtin,
        )
    _ts(message, "update_time", info.update_time)
    return message


def _patch(rule: identity_pb2.IdentifierTypeRule) -> TypePatch:
    def opt(name: str):
        return getattr(rule, name) if rule.HasField(name) else None

    blocked = rule.blocked if rule.HasField("blocked") else None
    return TypePatch(
        name=rule.name.strip(),
        priority=opt("priority"),
        max_per_person=opt("max_per_person"),
        window_days=opt("window_days"),
        bridge=opt("bridge"),
        pii=opt("pii"),
        normaliser=opt("normaliser"),
        blocked_values=tuple(blocked.exact) if blocked is not None else None,
        blocked_patterns=tuple(blocked.patterns) if blocked is not None else None,
        enabled=None if not rule.HasField("disabled") else not rule.disabled,
    )


def rules_change(rules: identity_pb2.IdentityRules, paths: frozenset[str]) -> dict:
    change: dict = {}
    if "identifier_types" in paths:
        change["types"] = [_patch(t) for t in rules.identifier_types]
    if "guardrails" in paths and rules.HasField("guardrails"):
        change["guardrails"] = Guardrails(
            rules.guardrails.max_identifiers_per_person, rules.guardrails.max_merges_per_person
        )
    if "matching" in paths and rules.HasField("matching"):
        change["matching"] = MatchingSettings(rules.matching.enabled, rules.matching.threshold)
    if "default_phone_region" in paths and rules.default_phone_region:
        change["default_phone_region"] = rules.default_phone_region
    return change


def resolution_pb(workspace_id: str, outcome: Outcome) -> identity_pb2.Resolution:
    return identity_pb2.Resolution(
        person_id=outcome.person_id,
        created=outcome.created,
        merged_person_ids=[m.merged for m in outcome.merges],
        conflicts=[
            identity_pb2.IdentityConflict(
                kind=c.kind,
                identifier=_id(c.identifier),
                person_id=c.person_id,
                other_person_id=c.other_person_id or "",
                detail=c.detail,
            )
            for c in outcome.conflicts
        ],
        ignored=[f"{i.type}: {reason}" for i, reason in outcome.skipped],
    )


def _rules_name(name: str, field: str = "name") -> str:
    return parse(name, "workspaces/{workspace}/identityRules", field=field)["workspace"]


def _position(token: str, scope: str) -> tuple[datetime, str] | None:
    position = decode_token(token, scope=scope)
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position["t"]), position["id"]
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument("page_token", "is not a token this API issued") from None


async def _page(
    request, scope: str, fetch: Callable[..., Awaitable[list]], position: Callable[[Any], tuple[datetime, str]]
) -> tuple[list, str]:
    """A page of rows after the request's page token (``fetch(after=, limit=)``), and the next token."""
    size = page_size(request.page_size)
    rows = await fetch(after=_position(request.page_token, scope), limit=size + 1)
    if len(rows) <= size:
        return rows, ""
    when, ident = position(rows[size - 1])
    return rows[:size], encode_token({"t": when.isoformat(), "id": ident}, scope=scope)


class _IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, service: IdentityService) -> None:
        self._service = service

    async def ResolveIdentities(
        self, request: identity_pb2.ResolveIdentitiesRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ResolveIdentitiesResponse:
        workspace_id = workspace_of(request.parent)
        if not request.sets:
            raise InvalidArgument("sets", "must hold at least one identifier set")
        if len(request.sets) > MAX_SETS:
            raise InvalidArgument("sets", f"at most {MAX_SETS} sets per call")
        outcomes = await self._service.resolve_sets(
            workspace_id, [([(i.type, i.value) for i in s.identifiers], s.message_id) for s in request.sets]
        )
        return identity_pb2.ResolveIdentitiesResponse(resolutions=[resolution_pb(workspace_id, o) for o in outcomes])

    async def LookupPerson(
        self, request: identity_pb2.LookupPersonRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Person:
        workspace_id = workspace_of(request.parent)
        details = await self._service.lookup(workspace_id, request.identifier_type, request.identifier_value)
        return person_pb(workspace_id, details)

    async def GetPerson(
        self, request: identity_pb2.GetPersonRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Person:
        ids = parse(request.name, "workspaces/{workspace}/persons/{person}", id_patterns={"person": UUID})
        return person_pb(ids["workspace"], await self._service.get_person(ids["workspace"], ids["person"]))

    async def ListMerges(
        self, request: identity_pb2.ListMergesRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ListMergesResponse:
        workspace_id = workspace_of(request.parent)
        rows, token = await _page(
            request,
            f"merges:{workspace_id}:{request.person_id}",
            partial(self._service.list_merges, workspace_id, person_id=request.person_id),
            lambda view: (view[0].created_at, view[0].merge_id),
        )
        return identity_pb2.ListMergesResponse(merges=[merge_pb(workspace_id, m) for m in rows], next_page_token=token)

    async def Unmerge(
        self, request: identity_pb2.UnmergeRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.UnmergeResponse:
        ids = parse(request.name, "workspaces/{workspace}/merges/{merge}", id_patterns={"merge": UUID})
        result = await self._service.unmerge(ids["workspace"], ids["merge"], request.reason)
        return self._split_pb(ids["workspace"], result)

    def _split_pb(self, workspace_id: str, result: SplitResult) -> identity_pb2.UnmergeResponse:
        return identity_pb2.UnmergeResponse(
            merge=merge_pb(workspace_id, result.merge) if result.merge else None,
            persons=[person_pb(workspace_id, p) for p in result.persons],
            undone_merge_ids=result.undone_merge_ids,
        )

    async def RemoveIdentifier(
        self, request: identity_pb2.RemoveIdentifierRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RemoveIdentifierResponse:
        ids = parse(request.name, "workspaces/{workspace}/persons/{person}", id_patterns={"person": UUID})
        if not request.HasField("identifier") or not request.identifier.type:
            raise InvalidArgument("identifier", "is required")
        result = await self._service.remove_identifier(
            ids["workspace"],
            ids["person"],
            request.identifier.type,
            request.identifier.value,
            block=request.block,
            reason=request.reason,
        )
        return identity_pb2.RemoveIdentifierResponse(
            persons=[person_pb(ids["workspace"], p) for p in result.persons], undone_merge_ids=result.undone_merge_ids
        )

    async def UnblockIdentifier(
        self, request: identity_pb2.UnblockIdentifierRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.UnblockIdentifierResponse:
        workspace_id = workspace_of(request.parent)
        if not request.HasField("identifier") or not request.identifier.type:
            raise InvalidArgument("identifier", "is required")
        identifier, reason = await self._service.unblock_identifier(
            workspace_id, request.identifier.type, request.identifier.value
        )
        return identity_pb2.UnblockIdentifierResponse(identifier=_id(identifier), blocked_reason=reason)

    async def ReleasePerson(
        self, request: identity_pb2.ReleasePersonRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Person:
        ids = parse(request.name, "workspaces/{workspace}/persons/{person}", id_patterns={"person": UUID})
        details = await self._service.release_person(ids["workspace"], ids["person"], request.reason)
        return person_pb(ids["workspace"], details)

    async def ListIdentityConflicts(
        self, request: identity_pb2.ListIdentityConflictsRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ListIdentityConflictsResponse:
        workspace_id = workspace_of(request.parent)
        rows, token = await _page(
            request,
            f"conflicts:{workspace_id}:{request.person_id}",
            partial(self._service.list_conflicts, workspace_id, person_id=request.person_id),
            lambda view: (view[0].created_at, view[0].conflict_id),
        )
        return identity_pb2.ListIdentityConflictsResponse(
            identity_conflicts=[conflict_pb(workspace_id, r, i) for r, i in rows], next_page_token=token
        )

    async def GetIdentityRules(
        self, request: identity_pb2.GetIdentityRulesRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityRules:
        workspace_id = _rules_name(request.name)
        return rules_pb(workspace_id, await self._service.get_rules(workspace_id, request.version))

    async def UpdateIdentityRules(
        self, request: identity_pb2.UpdateIdentityRulesRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IdentityRules:
        workspace_id = _rules_name(request.rules.name, "rules.name")
        paths = paths_to_update(requested_paths(request.update_mask, request.rules, RULES_FIELDS), RULES_FIELDS)
        info = await self._service.update_rules(
            workspace_id,
            rules_change(request.rules, paths),
            etag=request.rules.etag,
            comment=request.rules.comment if "comment" in paths else "",
        )
        return rules_pb(workspace_id, info)

    async def DryRunIdentityRules(
        self, request: identity_pb2.DryRunIdentityRulesRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.DryRunIdentityRulesResponse:
        workspace_id = _rules_name(request.name)
        paths = paths_to_update(requested_paths(request.update_mask, request.rules, RULES_FIELDS), RULES_FIELDS)
        report = await self._service.dry_run(
            workspace_id, rules_change(request.rules, paths), days=request.days, max_events=request.max_events
        )
        side = {
            "current": identity_pb2.MergeDifference.SIDE_CURRENT_ONLY,
            "proposed": identity_pb2.MergeDifference.SIDE_PROPOSED_ONLY,
        }
        response = identity_pb2.DryRunIdentityRulesResponse(
            current_version=report.current_version,
            events_replayed=report.events_replayed,
            truncated=report.truncated,
            current_merges=report.current["merges"],
            proposed_merges=report.proposed["merges"],
            current_conflicts=report.current["conflicts"],
            proposed_conflicts=report.proposed["conflicts"],
            current_persons=report.current["persons"],
            proposed_persons=report.proposed["persons"],
            differences=[
                identity_pb2.MergeDifference(
                    side=side[s], trigger_message_id=m, anchor_identifier=_id(a), bridging_identifier=_id(b), rule=r
                )
                for s, m, a, b, r in report.differences
            ],
            truncation_reason=report.truncation_reason,
            days_replayed=report.days_replayed,
        )
        _ts(response, "oldest_event_time", report.oldest_event_time)
        return response


_STATES = {
    identity_pb2.MatchSuggestion.STATE_UNSPECIFIED: "pending",
    identity_pb2.MatchSuggestion.STATE_PENDING: "pending",
    identity_pb2.MatchSuggestion.STATE_ACCEPTED: "accepted",
    identity_pb2.MatchSuggestion.STATE_REJECTED: "rejected",
    identity_pb2.MatchSuggestion.STATE_OBSOLETE: "obsolete",
}
_STATE_PB = {v: k for k, v in _STATES.items() if k != identity_pb2.MatchSuggestion.STATE_UNSPECIFIED}


def suggestion_pb(workspace_id: str, row: repository.SuggestionRow) -> identity_pb2.MatchSuggestion:
    message = identity_pb2.MatchSuggestion(
        name=f"workspaces/{workspace_id}/matchSuggestions/{row.suggestion_id}",
        suggestion_id=row.suggestion_id,
        person_id=row.person_a,
        other_person_id=row.person_b,
        score=row.score,
        comparisons=[identity_pb2.FieldComparison(**c) for c in row.comparisons],
        state=_STATE_PB[row.state],
        merge_id=row.merge_id or "",
    )
    _ts(message, "create_time", row.created_at)
    _ts(message, "decide_time", row.decided_at)
    return message


def _suggestion_name(name: str) -> tuple[str, str]:
    ids = parse(name, "workspaces/{workspace}/matchSuggestions/{suggestion}", id_patterns={"suggestion": UUID})
    return ids["workspace"], ids["suggestion"]


class _SuggestionMethods:
    _service: IdentityService

    async def ListMatchSuggestions(
        self, request: identity_pb2.ListMatchSuggestionsRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ListMatchSuggestionsResponse:
        workspace_id = workspace_of(request.parent)
        if request.state not in _STATES:
            raise InvalidArgument("state", "unknown state")
        state = _STATES[request.state]
        rows, token = await _page(
            request,
            f"suggestions:{workspace_id}:{state}",
            partial(self._service.list_suggestions, workspace_id, state=state),
            lambda row: (row.created_at, row.suggestion_id),
        )
        return identity_pb2.ListMatchSuggestionsResponse(
            match_suggestions=[suggestion_pb(workspace_id, r) for r in rows], next_page_token=token
        )

    async def AcceptMatchSuggestion(
        self, request: identity_pb2.AcceptMatchSuggestionRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.AcceptMatchSuggestionResponse:
        workspace_id, suggestion_id = _suggestion_name(request.name)
        row, merge, person = await self._service.accept_suggestion(workspace_id, suggestion_id)
        return identity_pb2.AcceptMatchSuggestionResponse(
            match_suggestion=suggestion_pb(workspace_id, row),
            merge=merge_pb(workspace_id, merge),
            person=person_pb(workspace_id, person),
        )

    async def RejectMatchSuggestion(
        self, request: identity_pb2.RejectMatchSuggestionRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.MatchSuggestion:
        workspace_id, suggestion_id = _suggestion_name(request.name)
        return suggestion_pb(workspace_id, await self._service.reject_suggestion(workspace_id, suggestion_id))


class IdentityServicer(_SuggestionMethods, _IdentityServicer):
    """The whole IdentityService."""


__all__ = ["IdentityServicer"]
