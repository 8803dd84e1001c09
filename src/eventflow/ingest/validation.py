"""Validation of incoming events: one set of rules and errors for every ingest path."""

from __future__ import annotations

import re
from typing import Annotated, Any, NotRequired

import orjson
from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError, with_config
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

from eventflow.errors import MalformedJson, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from eventflow.ingest.fidelity import (
    Loc,
    check_body,
    check_encodable,
    check_unique_keys,
    dotted,
    long_numbers,
    raise_if_any,
    too_deep,
)

TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,99}$"
MAX_DELAY_MS = 604_800_000
MAX_BATCH = 1000
_MAX_IDEMPOTENCY_KEY = 255
_EMPTY: dict[str, Any] = {}
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_IDEMPOTENCY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)


@with_config(ConfigDict(extra="forbid"))
class EventIn(TypedDict):
    """One event as a client sends it."""

    type: Annotated[
        str,
        Field(
            pattern=TYPE_PATTERN,
            description="Event type: a letter, then letters, digits or `_ . : -`; 100 at most.",
            examples=["ORDER_CREATED"],
        ),
    ]
    payload: NotRequired[
        Annotated[
            dict[str, Any],
            Field(
                description="Any JSON object, at most EVENTFLOW_MAX_PAYLOAD_BYTES when encoded.",
                examples=[{"order_id": "A-1001", "amount": 42.5}],
                json_schema_extra={"default": {}},
            ),
        ]
    ]
    delay_ms: NotRequired[
        Annotated[
            int,
            # Strict: `false`, `"5"` and `5.0` are refused, not read as numbers.
            Strict(),
            Field(
                ge=0,
                le=MAX_DELAY_MS,
                description="Deliver no earlier than this many milliseconds from now.",
                json_schema_extra={"default": 0},
            ),
        ]
    ]


@with_config(ConfigDict(extra="forbid"))
class BatchIn(TypedDict):
    """Up to 1,000 events accepted or refused together."""

    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH)]


# TypedDicts validated in pydantic-core (no model instance per event): a batch of 500 small
# events validates in about 0.9 µs an event, against 2.4 µs with BaseModels and a Python validator.
EVENT_IN: TypeAdapter[EventIn] = TypeAdapter(EventIn)
BATCH_IN: TypeAdapter[BatchIn] = TypeAdapter(BatchIn)
_TYPE_MESSAGE = (
    "must start with a letter and hold only letters, digits and _ . : - (100 characters at most)"
)


class ValidEvent:
    """A validated event with its payload already encoded for storage."""

    __slots__ = ("delay_ms", "idempotency_key", "payload", "source", "type")

    def __init__(
        self,
        type_: str,
        payload: str,
        delay_ms: int,
        idempotency_key: str | None = None,
        source: str | None = None,
    ) -> None:
        self.type = type_
        self.payload = payload
        self.delay_ms = delay_ms
        #: This event's own idempotency key (a Segment ``messageId``); a request's
        #: ``Idempotency-Key`` header, given to the writer, takes its place.
        self.idempotency_key = idempotency_key
        #: Who sent it, as ``auth.principal.event_source`` encodes it (None: a user's token).
        self.source = source


def check_json_content_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Send the body as JSON with 'Content-Type: application/json' "
            f"(got {content_type or 'no Content-Type'})"
        )


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _IDEMPOTENCY_RE.match(value):
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY} visible ASCII characters",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "invalid", "type": "value"}],
        )
    return value


def parse_event(body: bytes, max_payload_bytes: int, source: str | None = None) -> ValidEvent:
    """The event of a ``POST /events`` body; ``source`` is who sent it."""
    try:
        event = EVENT_IN.validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc, body) from exc
    payload = _encode(event, max_payload_bytes, ())
    check_body(body, (event,), (payload,), ((),), envelope_members=0)
    return ValidEvent(event["type"], payload.decode(), event.get("delay_ms", 0), None, source)


def parse_batch(body: bytes, max_payload_bytes: int, source: str | None = None) -> list[ValidEvent]:
    """The events of a ``POST /events/batch`` body, in order; ``source`` is who sent them."""
    try:
        batch = BATCH_IN.validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc, body) from exc
    events = batch["events"]
    locs = [("events", index) for index in range(len(events))]
    payloads = [
        _encode(event, max_payload_bytes, loc) for event, loc in zip(events, locs, strict=True)
    ]
    check_body(body, events, payloads, locs, envelope_members=1)
    return [
        ValidEvent(event["type"], payload.decode(), event.get("delay_ms", 0), None, source)
        for event, payload in zip(events, payloads, strict=True)
    ]


def _encode(event: EventIn, max_payload_bytes: int, loc: Loc) -> bytes:
    value = event.get("payload", _EMPTY)
    try:
        payload = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        check_encodable((*loc, "payload"), value)
        raise ValidationFailed(f"{dotted((*loc, 'payload'))}: cannot be encoded ({exc})") from exc
    if len(payload) > max_payload_bytes:
        raise PayloadTooLarge(
            f"{dotted((*loc, 'payload'))} is {len(payload)} bytes when encoded; "
            f"the limit is {max_payload_bytes}"
        )
    return payload


def _validation_error(exc: ValidationError, body: bytes) -> MalformedJson | ValidationFailed:
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    invalid = next((d for d in details if d["type"] == "json_invalid"), None)
    if invalid is not None and "recursion limit exceeded" in invalid["msg"]:
        return too_deep()
    if invalid is not None and "number out of range" in invalid["msg"]:
        try:
            raise_if_any(long_numbers(body))
        except ValidationFailed as refused:
            return refused
    if invalid is not None:
        return MalformedJson(f"The body is not valid JSON: {invalid['msg']}")
    errors = [_problem_item(d) for d in details]
    first = errors[0]
    where = first["field"]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ValidationFailed(f"{where}: {first['msg']}{more}", errors=errors)


def _problem_item(detail: ErrorDetails) -> dict[str, Any]:
    loc = list(detail["loc"])
    if detail["type"] == "string_pattern_mismatch" and loc and loc[-1] == "type":
        # The pattern itself means little to a reader; say what a type may hold.
        return {"loc": loc, "field": dotted(loc), "msg": _TYPE_MESSAGE, "type": "event_type"}
    return {"loc": loc, "field": dotted(loc), "msg": detail["msg"], "type": detail["type"]}


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Decode a small JSON object body (auth forms); a clear 4xx for anything else."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValidationFailed("The body must be a JSON object")
    check_unique_keys(body)
    return value
