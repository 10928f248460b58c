"""Resource names (AIP-122): ``workspaces/{workspace}/profiles/{profile}`` and friends."""

from __future__ import annotations

import re

from cdpkit.errors import InvalidArgument

WORKSPACE_ID = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
# Ids chosen by clients (segment ids, journey ids) follow AIP-122's recommendation.
RESOURCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# Person ids are UUIDs.
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse(
    name: str, pattern: str, *, field: str = "name", id_patterns: dict[str, re.Pattern[str]] | None = None
) -> dict[str, str]:
    """Split ``name`` by ``pattern`` (e.g. ``workspaces/{workspace}/profiles/{profile}``).

    Raises :class:`InvalidArgument` naming ``field`` when it does not match. ``workspace`` is
    always checked against :data:`WORKSPACE_ID`; other variables against ``id_patterns``.
    """
    id_patterns = {"workspace": WORKSPACE_ID, **(id_patterns or {})}
    parts = name.split("/")
    template = pattern.split("/")
    if not name or len(parts) != len(template):
        raise InvalidArgument(field, f"must look like {pattern}")
    values: dict[str, str] = {}
    for part, expected in zip(parts, template, strict=True):
        if expected.startswith("{"):
            key = expected[1:-1]
            check = id_patterns.get(key)
            if not part or (check is not None and not check.match(part)):
                raise InvalidArgument(field, f"invalid {key} id {part!r} (must look like {pattern})")
            values[key] = part
        elif part != expected:
            raise InvalidArgument(field, f"must look like {pattern}")
    return values


def workspace_of(parent: str, *, field: str = "parent") -> str:
    return parse(parent, "workspaces/{workspace}", field=field)["workspace"]
