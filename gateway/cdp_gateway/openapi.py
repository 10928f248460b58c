"""``/openapi.json``: an OpenAPI 3.1 document generated from the same descriptors as the routes.

Every route (``transcoding.routes_for``) becomes an operation: path variables become path
parameters (a variable spanning segments, ``{name=workspaces/*/profiles/*}``, is spelled out as
``/workspaces/{workspace}/profiles/{profile}``, the path the router matches), the other
top-level request fields query parameters (routes without ``body: "*"``), the body the request
message or its body field, the answer the response message in canonical protobuf JSON. The
Segment tracking-API routes, which are not protos, are described by hand once below.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from cdp_gateway.dispatch import COLLECTION_SERVICE, required_scope
from cdp_gateway.transcoding import Route

_INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
# Well-known types have their own JSON forms (https://protobuf.dev/programming-guides/json/).
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated lowerCamelCase field paths"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int32", "minimum": 0},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "int64", "pattern": "^[0-9]+$"},
}
_ID_PATTERN = "^[^/:]+$"
_ERROR = {"$ref": "#/components/responses/Error"}


class _Schemas:
    """Component schemas, one per message, filled as messages are referenced."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name not in self.components:
            self.components[message.full_name] = {}  # placeholder: recursive messages
            self.components[message.full_name] = self._message(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def _message(self, message: Descriptor) -> dict[str, Any]:
        properties = {field.json_name: self.field(field) for field in message.fields}
        return {"type": "object", "properties": properties, "additionalProperties": False}

    def _enum(self, enum: EnumDescriptor) -> dict[str, Any]:
        return {"type": "string", "enum": [value.name for value in enum.values]}

    def scalar(self, field: FieldDescriptor) -> dict[str, Any]:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE:
            return self.ref(field.message_type)
        if kind == FieldDescriptor.TYPE_ENUM:
            return self._enum(field.enum_type)
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return {"type": "number"}
        if kind in _INT32:
            unsigned = kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32)
            bounds = {"minimum": 0, "maximum": 2**32 - 1} if unsigned else {"minimum": -(2**31), "maximum": 2**31 - 1}
            return {"type": "integer", "format": "int32", **bounds}
        if kind in _INT64:
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
        return {}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.scalar(value)}
        if field.is_repeated:
            return {"type": "array", "items": self.scalar(field)}
        return self.scalar(field)


def _singular(collection: str) -> str:
    if collection.endswith("ies"):
        return collection[:-3] + "y"
    return collection[:-1] if collection.endswith("s") else collection


def openapi_path(route: Route) -> tuple[str, list[dict[str, Any]]]:
    """The template spelled out segment by segment, and its path parameters."""
    parameters: list[dict[str, Any]] = []
    taken: set[str] = set()

    def parameter(name: str, description: str) -> str:
        base, n = name, 2
        while name in taken:
            name, n = f"{base}{n}", n + 1
        taken.add(name)
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": description,
                "schema": {"type": "string", "pattern": _ID_PATTERN},
            }
        )
        return "{" + name + "}"

    def expand(match: re.Match[str]) -> str:
        field_path, _, sub = match.group(1).partition("=")
        segments = (sub or "*").split("/")
        out = []
        for index, segment in enumerate(segments):
            if segment in ("*", "**"):
                previous = segments[index - 1] if index else field_path.split(".")[-1]
                out.append(parameter(_singular(previous) if index else previous, f"part of `{field_path}`"))
            else:
                out.append(segment)
        return "/".join(out)

    return re.sub(r"\{([^}]+)\}", expand, route.template), parameters


def _query_parameters(route: Route, schemas: _Schemas) -> list[dict[str, Any]]:
    if route.body == "*":
        return []
    bound = {v.split(".")[0] for v in route.variables} | ({route.body} if route.body else set())
    params = []
    for field in route.method.input_type.fields:
        if field.name in bound:
            continue
        if field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN:
            continue  # nested messages are settable as a.b=..., not described here
        schema = schemas.field(field)
        params.append({"name": field.json_name, "in": "query", "required": False, "schema": schema})
    return params


def _operation(route: Route, schemas: _Schemas) -> tuple[str, str, dict[str, Any]]:
    path, parameters = openapi_path(route)
    method = route.method
    collection = route.service.full_name == COLLECTION_SERVICE
    operation: dict[str, Any] = {
        "operationId": f"{route.service.name}.{method.name}",
        "tags": [route.service.full_name],
        "summary": f"{route.service.full_name}.{method.name}",
        "security": [{"writeKey": []}, {"secretKey": []}] if collection else [{"secretKey": []}],
        "x-required-scope": "write" if collection else required_scope(route),
        "parameters": parameters + _query_parameters(route, schemas),
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": schemas.ref(method.output_type)}},
            },
            "default": _ERROR,
        },
    }
    if route.body:
        body_message = (
            method.input_type if route.body == "*" else method.input_type.fields_by_name[route.body].message_type
        )
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(body_message)}},
        }
    return path, route.verb.lower(), operation


_SEGMENT_COMMON = {
    "messageId": {"type": "string", "maxLength": 256},
    "userId": {"type": "string", "maxLength": 256},
    "anonymousId": {"type": "string", "maxLength": 256},
    "context": {"type": "object"},
    "integrations": {"type": "object"},
    "timestamp": {"type": "string", "format": "date-time"},
    "originalTimestamp": {"type": "string", "format": "date-time"},
    "sentAt": {"type": "string", "format": "date-time"},
    "writeKey": {"type": "string", "description": "the write key, when not sent as Basic auth"},
}
_SEGMENT_CALLS: dict[str, dict[str, Any]] = {
    "identify": {"traits": {"type": "object"}},
    "track": {"event": {"type": "string", "maxLength": 200}, "properties": {"type": "object"}},
    "page": {"name": {"type": "string", "maxLength": 200}, "properties": {"type": "object"}},
    "screen": {"name": {"type": "string", "maxLength": 200}, "properties": {"type": "object"}},
    "alias": {"previousId": {"type": "string", "maxLength": 256}},
    "group": {"groupId": {"type": "string", "maxLength": 256}, "traits": {"type": "object"}},
}


def _segment_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    message = {
        "type": "object",
        "properties": {
            **_SEGMENT_COMMON,
            "type": {"type": "string", "enum": list(_SEGMENT_CALLS)},
            **{k: v for call in _SEGMENT_CALLS.values() for k, v in call.items()},
        },
        "required": ["type"],
        "additionalProperties": True,
    }
    responses = {
        "200": {
            "description": "stored in JetStream",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"success": {"type": "boolean"}},
                        "required": ["success"],
                    }
                }
            },
        },
        "default": _ERROR,
    }
    for call, fields in _SEGMENT_CALLS.items():
        paths[f"/v1/{call}"] = {
            "post": {
                "operationId": f"segment.{call}",
                "tags": ["Segment tracking API"],
                "summary": f"Segment-compatible {call} call",
                "security": [{"writeKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {**_SEGMENT_COMMON, **fields},
                                "additionalProperties": True,
                            }
                        }
                    },
                },
                "responses": responses,
            }
        }
    for call in ("batch", "import"):
        paths[f"/v1/{call}"] = {
            "post": {
                "operationId": f"segment.{call}",
                "tags": ["Segment tracking API"],
                "summary": f"Segment-compatible {call}: up to 2,500 messages, 500 KB",
                "security": [{"writeKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "batch": {"type": "array", "items": message, "minItems": 1},
                                    "context": {"type": "object"},
                                    "sentAt": {"type": "string", "format": "date-time"},
                                    "writeKey": {"type": "string"},
                                },
                                "required": ["batch"],
                                "additionalProperties": True,
                            }
                        }
                    },
                },
                "responses": responses,
            }
        }
    return paths


def _error_response() -> dict[str, Any]:
    return {
        "description": "google.rpc.Status as JSON (AIP-193)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "integer"},
                                "status": {"type": "string"},
                                "message": {"type": "string"},
                                "details": {"type": "array", "items": {"type": "object"}},
                            },
                            "required": ["code", "status", "message"],
                        }
                    },
                    "required": ["error"],
                }
            }
        },
    }


def build_openapi(routes: Sequence[Route], *, title: str = "CDP gateway", version: str = "v1") -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, Any] = _segment_paths()
    for route in routes:
        path, verb, operation = _operation(route, schemas)
        entry = paths.setdefault(path, {})
        if verb in entry:  # two bindings of one path and verb: keep the first, like the router
            continue
        entry[verb] = operation
    # operationIds must be unique; additional bindings of one method get a suffix.
    seen: dict[str, int] = {}
    for entry in paths.values():
        for operation in entry.values():
            count = seen.get(operation["operationId"], 0)
            seen[operation["operationId"]] = count + 1
            if count:
                operation["operationId"] += f"_{count + 1}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Generated at start-up from the google.api.http annotations of the protos.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "responses": {"Error": _error_response()},
            "securitySchemes": {
                "writeKey": {"type": "http", "scheme": "basic", "description": "write key as user, empty password"},
                "secretKey": {"type": "http", "scheme": "bearer", "description": "secret key (cdp_sk_...)"},
            },
        },
    }
