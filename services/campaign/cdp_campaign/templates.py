"""Message templates: sandboxed Jinja2, checked when a journey is published.

A template may only name the variables a send can provide (:data:`VARIABLES`), ``coupon`` only
after a coupon step on every path to the send, ``event`` only in event-triggered journeys. So a
missing variable is an error at publish time; at send time a missing *attribute*, at any depth (a
trait the person does not have), renders empty, and ``| default(...)`` picks a fallback. A
webhook body cannot name the profile's variables (the webhook step reads no profile).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

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
# What one rendering may produce and take: a template cannot stall the sender or fill its memory.
MAX_OUTPUT_CHARS = 256 * 1024
RENDER_SECONDS = 0.5
_MAX_POWER_BITS = 4096


class _LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus: ``*`` cannot build a string or list longer than a message
    may be, ``**`` cannot build a huge number (both are computed in C, before any check)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                repeated = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                if repeated and len(sequence) * times > MAX_OUTPUT_CHARS:
                    raise SecurityError(f"a repetition longer than {MAX_OUTPUT_CHARS}")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):  # noqa: SIM102 - one check per operator
            if max(abs(left).bit_length(), 1) * right > _MAX_POWER_BITS:
                raise SecurityError("a power too large")
        return super().call_binop(context, operator, left, right)


_ENV = _LimitedSandbox(autoescape=False, keep_trailing_newline=True, undefined=ChainableUndefined)


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


class _OverBudget(Exception):
    pass


def render(source: str, context: dict[str, Any], *, traced: bool = True) -> str:
    """The template rendered, at most :data:`MAX_OUTPUT_CHARS` long and within
    :data:`RENDER_SECONDS` of CPU time (checked on every traced line: a loop that produces
    nothing is stopped too). Run it in a thread (:func:`render_async`)."""
    if not source:
        return ""
    deadline = time.monotonic() + RENDER_SECONDS

    def tracer(frame, event, arg):
        if time.monotonic() > deadline:
            raise _OverBudget
        return tracer

    previous = sys.gettrace()
    if traced:
        sys.settrace(tracer)
    try:
        parts, size = [], 0
        for part in _compiled(source).generate(context):
            size += len(part)
            if size > MAX_OUTPUT_CHARS:
                raise RenderError(f"the output is over {MAX_OUTPUT_CHARS} characters")
            parts.append(part)
        return "".join(parts)
    except RenderError:
        raise
    except _OverBudget:
        raise RenderError(f"rendering took over {RENDER_SECONDS:g}s") from None
    except Exception as exc:  # noqa: BLE001 - whatever a template raises is this message's failure
        raise RenderError(str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}") from None
    finally:
        sys.settrace(previous)


async def render_async(source: str, context: dict[str, Any]) -> str:
    """:func:`render` off the event loop when the template has statements (``{% for %}`` can
    loop); a template of expressions only renders at once (no loop to run away, and a thread
    hop and a trace hook would cost more than the rendering)."""
    if not source:
        return ""
    if "{%" not in source:
        return render(source, context, traced=False)
    return await asyncio.to_thread(render, source, context)
