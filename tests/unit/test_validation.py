"""The one validation path shared by every ingest route."""

from __future__ import annotations

import pytest

from eventflow.errors import (
    MalformedJson,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from eventflow.ingest.validation import (
    check_idempotency_key,
    check_json_content_type,
    parse_batch,
    parse_event,
)


def test_valid_event_is_encoded_compactly() -> None:
    event = parse_event(b'{"type": "ORDER_CREATED", "payload": {"a": [1, 2]}, "delay_ms": 5}', 100)
    assert (event.type, event.payload, event.delay_ms) == ("ORDER_CREATED", '{"a":[1,2]}', 5)


def test_payload_defaults_to_empty_object() -> None:
    assert parse_event(b'{"type": "A"}', 100).payload == "{}"


@pytest.mark.parametrize("type_", ["a", "A1", "order.created", "ns:v1-x_y", "Z" * 100])
def test_accepted_types(type_: str) -> None:
    assert parse_event(f'{{"type": "{type_}"}}'.encode(), 100).type == type_


@pytest.mark.parametrize("type_", ["", "1a", "_a", "a b", "a/b", "é", "Z" * 101, "A\\n"])
def test_rejected_types(type_: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_event(f'{{"type": "{type_}"}}'.encode(), 100)
    assert info.value.detail.startswith("type: must start with a letter")
    assert info.value.errors is not None
    assert info.value.errors[0]["type"] == "event_type"


def test_batch_type_error_names_the_index_and_every_error() -> None:
    body = b'{"events": [{"type": "A"}, {"type": "9"}, {"type": "B", "extra": 1}]}'
    with pytest.raises(ValidationFailed) as info:
        parse_batch(body, 100)
    assert info.value.detail == (
        "events[1].type: must start with a letter and hold only letters, digits and _ . : - "
        "(100 characters at most) (and 1 more)"
    )
    assert info.value.errors is not None
    assert [e["field"] for e in info.value.errors] == ["events[1].type", "events[2].extra"]


def test_malformed_json_is_400() -> None:
    with pytest.raises(MalformedJson):
        parse_event(b'{"type": ', 100)


def test_payload_limit_counts_encoded_bytes() -> None:
    ok = b'{"type": "A", "payload": {"k": "' + b"x" * 92 + b'"}}'
    assert len(parse_event(ok, 100).payload) == 100
    with pytest.raises(PayloadTooLarge):
        parse_event(ok.replace(b"x" * 92, b"x" * 93), 100)


def test_batch_error_names_the_index() -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_batch(b'{"events": [{"type": "A"}, {"type": "A", "delay_ms": "soon"}]}', 100)
    assert info.value.detail.startswith("events[1].delay_ms:")
    assert info.value.errors is not None
    assert info.value.errors[0]["loc"] == ["events", 1, "delay_ms"]


def test_batch_payload_limit_names_the_index() -> None:
    with pytest.raises(PayloadTooLarge) as info:
        parse_batch(
            b'{"events": [{"type": "A"}, {"type": "B", "payload": {"k": "xxxxxxxxxx"}}]}', 10
        )
    assert "events[1].payload" in info.value.detail


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/cloudevents+json"],
)
def test_json_content_types(content_type: str) -> None:
    check_json_content_type(content_type)


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/x-www-form-urlencoded"]
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_json_content_type(content_type)


def test_idempotency_key_rules() -> None:
    assert check_idempotency_key(None) is None
    assert check_idempotency_key("order-1:retry") == "order-1:retry"
    for bad in ("", "has space", "x" * 256, "tab\t"):
        with pytest.raises(ValidationFailed):
            check_idempotency_key(bad)
