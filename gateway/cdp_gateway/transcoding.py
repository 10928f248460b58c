"""HTTP/JSON <-> gRPC transcoding built from the ``google.api.http`` annotations.

At start-up every method of the exposed services is read from its descriptor; its HttpRule
becomes a route (verb + compiled path template + body rule). There is no code per method: a
request is matched against the table, its path variables, query parameters and JSON body are
merged into the request message (canonical protobuf JSON), and the response message is
rendered back as canonical JSON (lowerCamelCase; int64 as strings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from cdpkit.errors import InvalidArgument

_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Route:
    verb: str  # upper-case HTTP method
    template: str
    pattern: re.Pattern[str]
    # Request field paths bound by the path, in template order ("name", "segment.name", ...).
    variables: tuple[str, ...]
    body: str  # "" (none), "*" (whole request) or a top-level field name
    method: MethodDescriptor

    @property
    def service(self) -> ServiceDescriptor:
        return self.method.containing_service

    @property
    def grpc_path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def resource_field(self) -> str | None:
        """The request field naming the resource (used for workspace checks)."""
        return self.variables[0] if self.variables else None

    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)


def _segment_regex(segment: str, *, in_variable: bool) -> str:
    if segment == "**":
        return ".+"
    if segment == "*":
        # ':' is excluded so that a custom verb (":resolve") never lands inside a variable.
        return "[^/:]+" if in_variable else "[^/]+"
    return re.escape(segment)


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """A regex with one named group per variable, and the variables' field paths."""
    if not template.startswith("/"):
        raise ValueError(f"path template must start with '/': {template}")
    regex, variables, position = "", [], 0
    verb = ""
    body = template
    last_slash = body.rfind("/")
    colon = body.rfind(":")
    if colon > last_slash and "}" not in body[colon:]:
        body, verb = body[:colon], body[colon:]
    while position < len(body):
        if body[position] == "{":
            end = body.index("}", position)
            field_path, _, sub = body[position + 1 : end].partition("=")
            group = f"v{len(variables)}"
            inner = "/".join(_segment_regex(s, in_variable=True) for s in (sub or "*").split("/"))
            regex += f"(?P<{group}>{inner})"
            variables.append(field_path)
            position = end + 1
        else:
            end = body.find("{", position)
            literal = body[position:] if end == -1 else body[position:end]
            regex += "/".join(_segment_regex(s, in_variable=False) for s in literal.split("/"))
            position = len(body) if end == -1 else end
    return re.compile(f"^{regex}{re.escape(verb)}$"), tuple(variables)


def routes_for(services: Iterable[ServiceDescriptor]) -> list[Route]:
    routes = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule = options.Extensions[annotations_pb2.http]
            for one in [rule, *rule.additional_bindings]:
                routes.append(_route(one, method))
    return routes


def _route(rule: http_pb2.HttpRule, method: MethodDescriptor) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind not in _VERBS:
        raise ValueError(f"{method.full_name}: unsupported HTTP pattern {kind}")
    template = getattr(rule, kind)
    pattern, variables = compile_template(template)
    return Route(kind.upper(), template, pattern, variables, rule.body, method)


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)

    def match(self, verb: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for ``verb path`` and its path variables, or None.

        Raises :class:`MethodNotAllowed` when the path matches with another verb only.
        """
        allowed: set[str] = set()
        for route in self.routes:
            found = route.pattern.match(path)
            if not found:
                continue
            if route.verb != verb:
                allowed.add(route.verb)
                continue
            values = {route.variables[i]: unquote(v) for i, v in enumerate(found.groups())}
            return route, values
        if allowed:
            raise MethodNotAllowed(sorted(allowed))
        return None


class MethodNotAllowed(Exception):
    def __init__(self, allowed: list[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


def _field(descriptor: Any, name: str) -> FieldDescriptor | None:
    return descriptor.fields_by_name.get(name) or next((f for f in descriptor.fields if f.json_name == name), None)


def _query_value(field: FieldDescriptor, raw: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise InvalidArgument(field.name, "must be true or false")
        return lowered in ("true", "1")
    return raw  # json_format parses numbers, enums, timestamps, masks... from strings


def _query_tree(descriptor: Any, query: Iterable[tuple[str, str]], skip: set[str]) -> dict[str, Any]:
    """Query parameters as a dict for ``json_format.ParseDict``; ``skip`` holds the field paths
    (proto names) already bound by the path or the body."""
    tree: dict[str, Any] = {}
    for key, raw in query:
        parts = key.split(".")
        node, current, names = tree, descriptor, []
        for depth, part in enumerate(parts):
            field = _field(current, part) if current is not None else None
            if field is None:
                raise InvalidArgument(key, "is not a field of this request")
            names.append(field.name)
            if ".".join(names) in skip:
                raise InvalidArgument(key, "is already set by the path or body")
            existing = node.get(field.name)
            if depth == len(parts) - 1:
                if isinstance(existing, dict):
                    raise InvalidArgument(key, "conflicts with another query parameter")
                value = _query_value(field, raw)
                if field.is_repeated:
                    node.setdefault(field.name, []).append(value)
                else:
                    node[field.name] = value
            else:
                if field.message_type is None or field.is_repeated:
                    raise InvalidArgument(key, "is not a field of this request")
                if existing is not None and not isinstance(existing, dict):
                    raise InvalidArgument(key, "conflicts with another query parameter")
                node = node.setdefault(field.name, {})
                current = field.message_type
    return tree


def _set_path(message: Message, path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    target = message
    for part in parents:
        target = getattr(target, part)
    setattr(target, leaf, value)


def build_request(route: Route, path_values: Mapping[str, str], query: Iterable[tuple[str, str]], body: Any) -> Message:
    """The gRPC request for one HTTP call: body first, then query parameters, then the path."""
    request = route.request_class()()
    descriptor = request.DESCRIPTOR
    if route.body and body is not None and not isinstance(body, dict):
        raise InvalidArgument("body", "must be a JSON object")
    try:
        if route.body == "*":
            if body is not None:
                json_format.ParseDict(body, request)
        elif route.body:
            if body is not None:
                json_format.ParseDict(body, getattr(request, route.body))
        elif body not in (None, {}):
            raise InvalidArgument("body", f"{route.verb} {route.template} takes no body")
    except json_format.ParseError as exc:
        raise InvalidArgument("body", str(exc)) from None
    if route.body == "*":
        for key, _ in query:
            raise InvalidArgument(key, "this method takes its fields in the body, not the query string")
    else:
        skip = set(path_values) | ({route.body} if route.body else set())
        tree = _query_tree(descriptor, query, skip)
        if tree:
            try:
                json_format.ParseDict(tree, request)
            except json_format.ParseError as exc:
                raise InvalidArgument("query", str(exc)) from None
    for path, value in path_values.items():
        _set_path(request, path, value)
    return request


def render(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
