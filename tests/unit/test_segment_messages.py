"""Segment messages as events: types, payloads, timestamps, batch context, keys, sources."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from eventflow.auth.principal import Principal, Scope
from eventflow.errors import InvalidMessage, MalformedJson, MessageTooLarge
from eventflow.ingest.validation import TYPE_PATTERN
from eventflow.segment.messages import (
    MAX_MESSAGE_BYTES,
    parse_batch,
    parse_call,
    track_type,
)

USER = Principal("u1", Scope.USER)
KEY = Principal("u1", Scope.INGEST, key_id="k1", key_name="web")
LIBRARY = {"library": {"name": "analytics-python", "version": "2.4.0"}}


def _batch(*messages: dict[str, Any], **outer: Any) -> bytes:
    return orjson.dumps({"batch": list(messages), "sentAt": "2026-01-02T03:04:05Z", **outer})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Order Completed", "Order_Completed"),
        ("checkout:step-2.done", "checkout:step-2.done"),
        ("Zahlung bestätigt", "Zahlung_best_tigt"),
        ("2fa Enabled", "track_2fa_Enabled"),
        ("_private", "track__private"),
        (" leading space", "track__leading_space"),
        ("", "segment.track"),
        ("A" * 150, "A" * 100),
        ("9" * 150, "track_" + "9" * 94),
    ],
)
def test_track_names_become_valid_types(name: str, expected: str) -> None:
    assert track_type(name) == expected
    assert re.fullmatch(TYPE_PATTERN, expected)


def test_each_kind_maps_to_its_type_and_the_whole_message_is_the_payload() -> None:
    messages = [
        {
            "type": kind,
            "messageId": f"m-{kind}",
            "userId": "ada",
            "anonymousId": "anon-1",
            "timestamp": "2025-12-31T23:59:59.123+01:00",
            "properties": {"revenue": 12.5, "items": [1, 2]},
            "traits": {"plan": "pro"},
            "context": {"ip": "192.0.2.1", **LIBRARY},
            "event": "Order Completed" if kind == "track" else None,
        }
        for kind in ("track", "identify", "page", "screen", "group", "alias")
    ]
    for message in messages:
        if message["event"] is None:
            del message["event"]
    events = parse_batch(_batch(*messages), USER, MAX_MESSAGE_BYTES)

    assert [e.type for e in events] == [
        "Order_Completed",
        "segment.identify",
        "segment.page",
        "segment.screen",
        "segment.group",
        "segment.alias",
    ]
    for event, message in zip(events, messages, strict=True):
        # As sent, timestamp included (not parsed, not normalised).
        assert orjson.loads(event.payload) == message
        assert event.idempotency_key == message["messageId"]
        assert event.delay_ms == 0


def test_batch_context_and_integrations_are_merged_with_the_message_winning() -> None:
    body = _batch(
        {"type": "track", "event": "A", "context": {"ip": "192.0.2.9", "locale": "de"}},
        {"type": "identify", "userId": "u", "integrations": {"All": True}},
        context={"ip": "192.0.2.1", "app": {"name": "shop"}},
        integrations={"All": False, "Mixpanel": True},
    )
    first, second = (orjson.loads(e.payload) for e in parse_batch(body, USER, MAX_MESSAGE_BYTES))

    assert first["context"] == {"ip": "192.0.2.9", "locale": "de", "app": {"name": "shop"}}
    assert first["integrations"] == {"All": False, "Mixpanel": True}
    assert second["context"] == {"ip": "192.0.2.1", "app": {"name": "shop"}}
    assert second["integrations"] == {"All": True, "Mixpanel": True}
    assert "sentAt" not in first


def test_a_message_without_message_id_has_no_key_and_duplicates_keep_theirs() -> None:
    body = _batch(
        {"type": "track", "event": "A"},
        {"type": "track", "event": "A", "messageId": "same"},
        {"type": "track", "event": "A", "messageId": "same"},
    )
    keys = [e.idempotency_key for e in parse_batch(body, USER, MAX_MESSAGE_BYTES)]

    # The writer stores one event per key and account, also within one group.
    assert keys == [None, "same", "same"]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "purchase", "event": "A"}, "batch[0].type"),
        ({"event": "A"}, "batch[0].type"),
        ({"type": "track", "event": "A", "messageId": ""}, "batch[0].messageId"),
        ({"type": "track", "event": "A", "messageId": "has space"}, "batch[0].messageId"),
        ({"type": "track", "event": "A", "messageId": "x" * 256}, "batch[0].messageId"),
        ({"type": "track", "event": "A", "messageId": 7}, "batch[0].messageId"),
        ({"type": "track", "event": 7}, "batch[0].event"),
        ({"type": "track", "event": "A", "context": []}, "batch[0].context"),
    ],
)
def test_invalid_messages_are_refused_naming_the_field(message: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMessage) as refused:
        parse_batch(_batch({"type": "track", "event": "ok"}, message), USER, MAX_MESSAGE_BYTES)

    assert refused.value.status == 400
    assert refused.value.detail.startswith(field.replace("[0]", "[1]"))


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"batch": {}}',
        b'{"batch": [1]}',
        b'{"batch": [{"type": "track"}], "x": 1e400}',
    ],
)
def test_bodies_that_are_not_a_batch_are_400(body: bytes) -> None:
    with pytest.raises((InvalidMessage, MalformedJson)) as refused:
        parse_batch(body, USER, MAX_MESSAGE_BYTES)

    assert refused.value.status == 400


def test_integers_beyond_64_bits_are_refused_not_rounded() -> None:
    body = b'{"batch": [{"type": "track", "properties": {"n": 123456789012345678901234}}]}'

    with pytest.raises(InvalidMessage) as refused:
        parse_batch(body, USER, MAX_MESSAGE_BYTES)

    assert "batch[0].properties.n" in refused.value.detail
    fits = (
        b'{"batch": [{"type": "track", "event": "A", "properties": {"n": 18446744073709551615}}]}'
    )
    (event,) = parse_batch(fits, USER, MAX_MESSAGE_BYTES)
    assert event.payload.endswith('"n":18446744073709551615}}')


def test_a_message_over_the_limit_is_refused_naming_it() -> None:
    small = {"type": "track", "event": "A"}
    big = {"type": "track", "event": "A", "properties": {"pad": "x" * MAX_MESSAGE_BYTES}}

    with pytest.raises(MessageTooLarge) as refused:
        parse_batch(_batch(small, big), USER, MAX_MESSAGE_BYTES)

    assert refused.value.status == 400
    assert refused.value.detail.startswith("batch[1] is ")


def test_a_call_takes_its_kind_from_the_route() -> None:
    body = orjson.dumps({"type": "identify", "event": "Signed Up", "messageId": "c1"})

    event = parse_call(body, "track", USER, MAX_MESSAGE_BYTES)

    assert event.type == "Signed_Up"
    assert orjson.loads(event.payload)["type"] == "track"
    assert event.idempotency_key == "c1"


def test_the_source_names_the_key_and_the_library() -> None:
    body = _batch(
        {"type": "track", "event": "A", "context": LIBRARY},
        {"type": "track", "event": "A"},
        {"type": "track", "event": "A", "context": {"library": {"name": "x", "version": 3}}},
    )

    with_library, without, odd_version = parse_batch(body, KEY, MAX_MESSAGE_BYTES)

    assert orjson.loads(with_library.source or "") == {
        "key_id": "k1",
        "key_name": "web",
        "library": {"name": "analytics-python", "version": "2.4.0"},
    }
    assert orjson.loads(without.source or "") == {"key_id": "k1", "key_name": "web"}
    assert orjson.loads(odd_version.source or "")["library"] == {"name": "x", "version": ""}
    # A user's token is no key: its events keep no source.
    assert parse_batch(body, USER, MAX_MESSAGE_BYTES)[0].source is None
