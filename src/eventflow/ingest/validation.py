"""Validation of incoming events: one set of rules and errors for every ingest path."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from eventflow.errors import MalformedJson, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,99}$"
_TYPE_RE = re.compile(TYPE_PATTERN)
MAX_DELAY_MS = 604_800_000
MAX_BATCH = 1000
_MAX_IDEMPOTENCY_KEY = 255
_IDEMPOTENCY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


class EventIn(BaseModel):
    """One event as a client sends it."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        description="Event type: a letter, then letters, digits or `_ . : -`; 100 at most.",
        examples=["ORDER_CREATED"],
        json_schema_extra={"pattern": TYPE_PATTERN},
    )
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description="Any JSON object, at most EVENTFLOW_MAX_PAYLOAD_BYTES when encoded.",
        examples=[{"order_id": "A-1001", "amount": 42.5}],
    )
    delay_ms: Annotated[int, Field(ge=0, le=MAX_DELAY_MS)] = Field(
        default=0, description="Deliver no earlier than this many milliseconds from now."
    )

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        if not _TYPE_RE.match(value):
            raise PydanticCustomError(
                "event_type",
                "must start with a letter and hold only letters, digits and _ . : - "
                "(100 characters at most)",
            )
        return value


class BatchIn(BaseModel):
    """Up to 1,000 events accepted or refused together."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH)]


class ValidEvent:
    """A validated event with its payload already encoded for storage."""

    __slots__ = ("delay_ms", "payload", "type")

    def __init__(self, type_: str, payload: str, delay_ms: int) -> None:
        self.type = type_
        self.payload = payload
        self.delay_ms = delay_ms


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


def parse_event(body: bytes, max_payload_bytes: int) -> ValidEvent:
    try:
        event = EventIn.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc) from exc
    return _encode(event, max_payload_bytes, "payload")


def parse_batch(body: bytes, max_payload_bytes: int) -> list[ValidEvent]:
    try:
        batch = BatchIn.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc) from exc
    return [
        _encode(event, max_payload_bytes, f"events[{index}].payload")
        for index, event in enumerate(batch.events)
    ]


def _encode(event: EventIn, max_payload_bytes: int, where: str) -> ValidEvent:
    payload = orjson.dumps(event.payload)
    if len(payload) > max_payload_bytes:
        raise PayloadTooLarge(
            f"{where} is {len(payload)} bytes when encoded; the limit is {max_payload_bytes}"
        )
    return ValidEvent(event.type, payload.decode(), event.delay_ms)


def _validation_error(exc: ValidationError) -> MalformedJson | ValidationFailed:
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    if any(d["type"] == "json_invalid" for d in details):
        return MalformedJson(f"The body is not valid JSON: {details[0]['msg']}")
    errors = [_problem_item(d) for d in details]
    first = errors[0]
    where = first["field"] or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ValidationFailed(f"{where}: {first['msg']}{more}", errors=errors)


def _problem_item(detail: ErrorDetails) -> dict[str, Any]:
    loc = list(detail["loc"])
    return {"loc": loc, "field": _dotted(loc), "msg": detail["msg"], "type": detail["type"]}


def _dotted(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Decode a small JSON object body (auth forms); a clear 4xx for anything else."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValidationFailed("The body must be a JSON object")
    return value
