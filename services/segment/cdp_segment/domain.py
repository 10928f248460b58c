"""Segment definitions, pure Python. The rule language and evaluators arrive with issue 5;
until then a rule is stored as text after basic checks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from cdpkit.errors import InvalidArgument

MAX_DISPLAY_NAME = 200
MAX_DESCRIPTION = 2000
MAX_RULE = 20_000
UPDATABLE = frozenset({"display_name", "description", "rule"})


@dataclass(frozen=True)
class Segment:
    workspace_id: str
    segment_id: str
    display_name: str
    description: str
    rule: str
    etag: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def validated(self) -> Segment:
        display_name, rule = self.display_name.strip(), self.rule.strip()
        if not display_name:
            raise InvalidArgument("segment.display_name", "is required")
        if len(display_name) > MAX_DISPLAY_NAME:
            raise InvalidArgument("segment.display_name", f"at most {MAX_DISPLAY_NAME} characters")
        if len(self.description) > MAX_DESCRIPTION:
            raise InvalidArgument("segment.description", f"at most {MAX_DESCRIPTION} characters")
        if not rule:
            raise InvalidArgument("segment.rule", "is required")
        if len(rule) > MAX_RULE:
            raise InvalidArgument("segment.rule", f"at most {MAX_RULE} characters")
        return replace(self, display_name=display_name, rule=rule)

    def updated_with(self, changes: Segment, paths: frozenset[str]) -> Segment:
        return replace(self, **{path: getattr(changes, path) for path in paths}).validated()
