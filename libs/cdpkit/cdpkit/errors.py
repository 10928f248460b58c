"""Domain errors, raised by services and repositories, mapped to gRPC and HTTP at the edge.

Code below the servicer never imports grpc to report a problem: it raises one of these, the
server interceptor turns it into a ``google.rpc.Status`` (with ``BadRequest`` field violations
for invalid arguments) and the gateway turns that into an HTTP status and JSON body.
"""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2


class DomainError(Exception):
    """Base class: a failure the caller should see, with a message safe to show them."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> list:
        """Extra ``google.rpc`` detail messages for the status."""
        return []

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.grpc_code.value[0], message=self.message)
        for detail in self.details():
            status.details.add().Pack(detail)
        return status


class InvalidArgument(DomainError):
    """A request field is missing or malformed."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description

    def details(self) -> list:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.description)
                ]
            )
        ]


class NotFound(DomainError):
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DomainError):
    """A concurrent change won (etag mismatch, serialisation failure): read again and retry."""

    grpc_code = grpc.StatusCode.ABORTED


class Unauthenticated(DomainError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(DomainError):
    """A limit was hit (rate, size, quota). ``retry_after`` in seconds when known."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> list:
        if self.retry_after is None:
            return []
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromMilliseconds(int(self.retry_after * 1000))
        return [info]


class PayloadTooLarge(ResourceExhausted):
    """A request, message or batch over its size limit (HTTP 413; gRPC RESOURCE_EXHAUSTED)."""


class Unavailable(DomainError):
    """A dependency is down; the call may be retried."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


# gRPC code -> HTTP status, as in google/rpc/code.proto.
HTTP_STATUS_BY_GRPC_CODE: dict[int, int] = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}


def http_status_for(grpc_code: int) -> int:
    return HTTP_STATUS_BY_GRPC_CODE.get(grpc_code, 500)


def http_status_of(error: DomainError) -> int:
    """HTTP status for a domain error; finer than its gRPC code where HTTP has a better word."""
    if isinstance(error, PayloadTooLarge):
        return 413
    return http_status_for(error.grpc_code.value[0])
