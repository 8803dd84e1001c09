"""Segment messages as EventFlow events: validation, event types, payloads, idempotency keys.

The body is parsed by orjson and its shape checked by pydantic TypedDicts (``validate_python``,
about 0.4 µs a message on top of the parse): a message's own fields stay as sent, and become
the event's payload whole. See docs/segment.md for the mapping.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal, NotRequired

import orjson
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from eventflow.auth.principal import Principal, event_source
from eventflow.errors import InvalidMessage, MalformedJson, MessageTooLarge, ValidationFailed
from eventflow.ingest.fidelity import check_encodable, dotted
from eventflow.ingest.validation import IDEMPOTENCY_KEY_PATTERN, ValidEvent

#: Segment's documented limits: one message, and one request (both decompressed).
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
Kind = Literal["track", "identify", "page", "screen", "group", "alias"]
KINDS: tuple[Kind, ...] = ("track", "identify", "page", "screen", "group", "alias")
#: The type of a ``track`` without an event name, and the prefix of the other kinds' types.
PREFIX = "segment."
#: Put before a track's name that does not start with a letter, as types must.
TRACK_PREFIX = "track_"
_MAX_TYPE = 100
_OUTSIDE_TYPE_ALPHABET = re.compile(r"[^A-Za-z0-9_.:-]")
# A run this long may be an integer beyond 64 bits, which orjson reads as a float.
_LONG_DIGITS = re.compile(rb"\d{20}")
_MAX_LIBRARY_TEXT = 100
_Object = dict[str, Any]

_MESSAGE_ID = Field(
    pattern=IDEMPOTENCY_KEY_PATTERN,
    description="The message's unique id: a repeat with the same id (a retry, a replayed "
    "batch) stores nothing new. 1 to 255 visible ASCII characters.",
)
_EVENT = Field(description="`track`: the event's name; its type is this name (docs/segment.md)")
_CONTEXT = Field(description="Segment's context; `library.name` and `.version` name the sender")


@with_config(ConfigDict(extra="allow"))
class _Fields(TypedDict):
    """The fields EventFlow reads; every field, also those not named here, is kept."""

    messageId: NotRequired[Annotated[str, _MESSAGE_ID]]
    event: NotRequired[Annotated[str, _EVENT]]
    context: NotRequired[Annotated[_Object, _CONTEXT]]
    integrations: NotRequired[_Object]


@with_config(ConfigDict(extra="allow"))
class MessageIn(_Fields):
    """One Segment message of a batch."""

    type: Kind


@with_config(ConfigDict(extra="allow"))
class CallIn(_Fields):
    """One message sent to its own route (``/v1/track``…), whose kind the route says."""

    type: NotRequired[Annotated[str, Field(description="Ignored: the route sets it")]]


@with_config(ConfigDict(extra="allow"))
class BatchIn(TypedDict):
    """Messages stored together, all or none (``sentAt``, ``writeKey`` and the like are
    accepted and not kept)."""

    batch: list[MessageIn]
    context: NotRequired[
        Annotated[_Object, Field(description="Merged into each message's, whose keys win")]
    ]
    integrations: NotRequired[
        Annotated[_Object, Field(description="Merged into each message's, whose keys win")]
    ]


BATCH_IN: TypeAdapter[BatchIn] = TypeAdapter(BatchIn)
CALL_IN: TypeAdapter[CallIn] = TypeAdapter(CallIn)


@lru_cache(maxsize=4096)
def track_type(name: str) -> str:
    """The event type of a ``track`` named ``name`` (a few names repeat: cached)."""
    if not name:
        return PREFIX + "track"
    mapped = _OUTSIDE_TYPE_ALPHABET.sub("_", name)
    if not mapped[0].isalpha():
        mapped = TRACK_PREFIX + mapped
    return mapped[:_MAX_TYPE]


def event_type(kind: str, message: Mapping[str, Any]) -> str:
    return track_type(message.get("event", "")) if kind == "track" else PREFIX + kind


def parse_batch(body: bytes, principal: Principal, max_message_bytes: int) -> list[ValidEvent]:
    """The events of a ``/v1/batch`` body, in order; 400 naming the first invalid part."""
    batch = _validated(BATCH_IN, body)
    context = batch.get("context")
    integrations = batch.get("integrations")
    convert = _Converter(principal, max_message_bytes)
    events = []
    for index, message in enumerate(batch["batch"]):
        if context is not None:
            _merge(message, "context", context)
        if integrations is not None:
            _merge(message, "integrations", integrations)
        events.append(convert(message, message["type"], ("batch", index)))
    return events


def parse_call(body: bytes, kind: Kind, principal: Principal, max_message_bytes: int) -> ValidEvent:
    """The event of a body sent to ``/v1/<kind>``."""
    message = _validated(CALL_IN, body)
    message["type"] = kind
    return _Converter(principal, max_message_bytes)(message, kind, ())


class _Converter:
    """Messages to events for one request (its sender's source encoded once per library)."""

    __slots__ = ("_limit", "_principal", "_sources")

    def __init__(self, principal: Principal, max_message_bytes: int) -> None:
        self._principal = principal
        self._limit = max_message_bytes
        self._sources: dict[tuple[str, str] | None, str | None] = {}

    def __call__(
        self, message: Mapping[str, Any], kind: str, loc: tuple[str | int, ...]
    ) -> ValidEvent:
        payload = orjson.dumps(message)
        if len(payload) > self._limit:
            raise MessageTooLarge(
                f"{dotted(loc)} is {len(payload)} bytes when encoded; the limit of a message "
                f"is {self._limit}"
            )
        library = _library(message.get("context"))
        try:
            source = self._sources[library]
        except KeyError:
            source = self._sources[library] = event_source(self._principal, library)
        return ValidEvent(
            event_type(kind, message), payload.decode(), 0, message.get("messageId"), source
        )


def _validated(adapter: TypeAdapter[Any], body: bytes) -> Any:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"The body is not valid JSON: {exc}") from exc
    if _LONG_DIGITS.search(body) is not None:
        _check_integers(body)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _check_integers(body: bytes) -> None:
    """Refuse integers beyond 64 bits, which orjson would read as floats (not as sent)."""
    try:
        check_encodable((), json.loads(body))
    except ValidationFailed as exc:
        raise InvalidMessage(exc.detail, errors=exc.errors) from exc


def _invalid(exc: ValidationError) -> InvalidMessage:
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    errors = [
        {"loc": list(d["loc"]), "field": dotted(d["loc"]), "msg": d["msg"], "type": d["type"]}
        for d in details
    ]
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidMessage(f"{first['field']}: {first['msg']}{more}", errors=errors)


def _merge(message: dict[str, Any], name: str, outer: _Object) -> None:
    own = message.get(name)
    message[name] = outer if own is None else {**outer, **own}


def _library(context: Any) -> tuple[str, str] | None:
    library = context.get("library") if isinstance(context, dict) else None
    if not isinstance(library, dict):
        return None
    name, version = library.get("name"), library.get("version")
    if not isinstance(name, str) or not name:
        return None
    version = version if isinstance(version, str) else ""
    return name[:_MAX_LIBRARY_TEXT], version[:_MAX_LIBRARY_TEXT]
