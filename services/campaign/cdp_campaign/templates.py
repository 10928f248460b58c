"""Message templates: sandboxed Jinja2, checked when a journey is published.

A template may only name the variables a send can provide (:data:`VARIABLES`), ``coupon`` only
after a coupon step on every path to the send, ``event`` only in event-triggered journeys. So a
missing variable is an error at publish time; at send time a missing *attribute*, at any depth (a
trait the person does not have), renders empty, and ``| default(...)`` picks a fallback. A
webhook body cannot name the profile's variables (the webhook step reads no profile).
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 64 * 1024
# Every variable a rendering gets (see render context in delivery.py).
VARIABLES = frozenset(
    {
        "person_id",
        "traits",
        "computed",
        "tags",
        "tier",
        "lifecycle_stage",
        "points_balance",
        "event",
        "coupon",
        "recommendations",
        "journey",
        "variant",
    }
)

# What a send reads from the person's profile; a webhook step is a call to a system and reads none.
PROFILE_VARIABLES = frozenset({"traits", "computed", "tags", "tier", "lifecycle_stage", "points_balance"})

# ChainableUndefined: a missing attribute at any depth (``traits.address.city`` for a person
# without an address) renders empty, as publish promised, instead of failing the message.
_ENV = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True, undefined=ChainableUndefined)


class TemplateProblem(ValueError):
    """A template that does not compile or names a variable that will not exist."""


class RenderError(ValueError):
    """A template that failed while rendering one message (any error: a type mismatch, a division
    by zero, an include without a loader): that message fails, not the batch it is in."""


def variables_of(source: str) -> set[str]:
    """The top-level variables a template reads; raises TemplateProblem on a syntax error."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateProblem(f"at most {MAX_TEMPLATE_CHARS} characters")
    try:
        return set(meta.find_undeclared_variables(_ENV.parse(source)))
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"line {exc.lineno}: {exc.message}") from None


def check(source: str, available: frozenset[str]) -> None:
    unknown = sorted(variables_of(source) - available)
    if unknown:
        raise TemplateProblem(f"unknown variable(s) {', '.join(unknown)}: available are {', '.join(sorted(available))}")


@functools.lru_cache(maxsize=512)
def _compiled(source: str):
    return _ENV.from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    if not source:
        return ""
    try:
        return _compiled(source).render(context)
    except Exception as exc:  # noqa: BLE001 - whatever a template raises is this message's failure
        raise RenderError(str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}") from None
