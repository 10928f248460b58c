"""Journey definitions, pure Python. Triggers, steps, instances and delivery arrive with
issue 6; until then a journey is a draft whose definition is stored after basic checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cdpkit.errors import InvalidArgument

MAX_DISPLAY_NAME = 200
MAX_DESCRIPTION = 2000
MAX_DEFINITION_BYTES = 256 * 1024
UPDATABLE = frozenset({"display_name", "description", "definition"})
STATES = ("draft", "active", "paused", "archived")


@dataclass(frozen=True)
class Journey:
    workspace_id: str
    journey_id: str
    display_name: str
    description: str = ""
    definition: dict[str, Any] = field(default_factory=dict)
    state: str = "draft"
    etag: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def validated(self) -> Journey:
        display_name = self.display_name.strip()
        if not display_name:
            raise InvalidArgument("journey.display_name", "is required")
        if len(display_name) > MAX_DISPLAY_NAME:
            raise InvalidArgument("journey.display_name", f"at most {MAX_DISPLAY_NAME} characters")
        if len(self.description) > MAX_DESCRIPTION:
            raise InvalidArgument("journey.description", f"at most {MAX_DESCRIPTION} characters")
        if len(json.dumps(self.definition)) > MAX_DEFINITION_BYTES:
            raise InvalidArgument("journey.definition", f"at most {MAX_DEFINITION_BYTES} bytes of JSON")
        return replace(self, display_name=display_name)

    def updated_with(self, changes: Journey, paths: frozenset[str]) -> Journey:
        return replace(self, **{path: getattr(changes, path) for path in paths}).validated()
