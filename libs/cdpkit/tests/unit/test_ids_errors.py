"""UUIDv7 ids, and domain errors mapped to google.rpc.Status and HTTP."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2

from cdpkit import errors, ids
from cdpkit.errors import http_status_for, http_status_of

# ---------------------------------------------------------------- ids


def test_uuid7_has_version_7_and_the_rfc_variant():
    for _ in range(200):
        value = ids.uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122


def test_uuid7_carries_the_current_unix_milliseconds():
    before = time.time_ns() // 1_000_000
    value = ids.uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= value.int >> 80 <= after


def test_uuid7_sorts_by_creation_time_across_milliseconds():
    generated = []
    for _ in range(20):
        generated.append(ids.uuid7())
        time.sleep(0.0015)
    assert sorted(generated) == generated
    assert sorted(str(v) for v in generated) == [str(v) for v in generated]  # text order too


def test_uuid7_random_bits_differ():
    values = {ids.uuid7() for _ in range(5000)}
    assert len(values) == 5000


def test_new_id_is_the_canonical_text_form():
    text = ids.new_id()
    assert str(uuid.UUID(text)) == text and uuid.UUID(text).version == 7


# ---------------------------------------------------------------- errors


def test_invalid_argument_status_carries_a_bad_request_field_violation():
    status = errors.InvalidArgument("segment.rule", "bad").to_status()
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message == "segment.rule: bad"
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("segment.rule", "bad")]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFound("no such segment"), code_pb2.NOT_FOUND),
        (errors.AlreadyExists("x"), code_pb2.ALREADY_EXISTS),
        (errors.FailedPrecondition("x"), code_pb2.FAILED_PRECONDITION),
        (errors.Aborted("x"), code_pb2.ABORTED),
        (errors.Unauthenticated("x"), code_pb2.UNAUTHENTICATED),
        (errors.PermissionDenied("x"), code_pb2.PERMISSION_DENIED),
        (errors.Unavailable("x"), code_pb2.UNAVAILABLE),
        (errors.ResourceExhausted("x"), code_pb2.RESOURCE_EXHAUSTED),
        (errors.DomainError("x"), code_pb2.UNKNOWN),
    ],
)
def test_each_domain_error_maps_to_its_grpc_code_without_details(error, code):
    status = error.to_status()
    assert status.code == code
    assert status.message == error.message
    assert list(status.details) == []


def test_resource_exhausted_with_retry_after_adds_retry_info():
    status = errors.ResourceExhausted("slow down", retry_after=1.5).to_status()
    [detail] = status.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    assert info.retry_delay.ToMilliseconds() == 1500


def test_payload_too_large_is_resource_exhausted_on_grpc_but_413_on_http():
    error = errors.PayloadTooLarge("batch over 500 KB")
    assert error.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.to_status().code == code_pb2.RESOURCE_EXHAUSTED
    assert http_status_of(error) == 413
    assert http_status_of(errors.ResourceExhausted("rate")) == 429


@pytest.mark.parametrize(
    ("error", "http"),
    [
        (errors.InvalidArgument("f", "d"), 400),
        (errors.FailedPrecondition("x"), 400),
        (errors.Unauthenticated("x"), 401),
        (errors.PermissionDenied("x"), 403),
        (errors.NotFound("x"), 404),
        (errors.AlreadyExists("x"), 409),
        (errors.Aborted("x"), 409),
        (errors.Unavailable("x"), 503),
        (errors.DomainError("x"), 500),
    ],
)
def test_http_status_of_domain_errors(error, http):
    assert http_status_of(error) == http


def test_http_status_for_raw_codes_and_unknown_codes():
    assert http_status_for(code_pb2.OK) == 200
    assert http_status_for(code_pb2.CANCELLED) == 499
    assert http_status_for(code_pb2.DEADLINE_EXCEEDED) == 504
    assert http_status_for(code_pb2.UNIMPLEMENTED) == 501
    assert http_status_for(999) == 500


def test_every_grpc_code_has_an_http_status():
    for code in grpc.StatusCode:
        assert code.value[0] in errors.HTTP_STATUS_BY_GRPC_CODE
