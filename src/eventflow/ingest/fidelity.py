"""Fidelity: a body is stored exactly as sent, or refused naming the JSON path that cannot be.

The JSON parser on the hot path (pydantic-core) is lenient where a store must not be: it reads
``NaN``, ``Infinity`` and ``1e400`` as non-finite floats (which encode as ``null``), integers of
any size (which the encoder refuses beyond 64 bits), ``\\u0000`` (which PostgreSQL cannot keep in
text), and repeated keys in an object (the last one silently wins). Walking every payload in
Python to look for these would cost more than the validation itself, so ``check_body`` proves
their absence with byte counts the parser and encoder already fixed, and walks only when a count
says something may be wrong:

- **Repeated keys.** Every member of an object is written with one ``:`` outside strings, and
  ``:`` inside a string is either literal or the escape ``\\u003a``. So, for a body without
  repeated keys, the raw body's colons plus its ``\\u003a`` escapes equal the members the parser
  kept plus the colons in the strings it kept; a repeated key adds at least one. The count can
  only over-estimate (``\\\\u003a`` is not an escape), which costs an exact check, never a miss.
- **Non-finite numbers.** The encoder writes them as ``null``. Every ``null`` in the raw body
  (a literal, or text inside a string, also across a ``\\n`` escape) is in the encoded payloads or
  the event types too, so more ``null`` s after encoding than before means a non-finite number,
  once repeated keys (which drop text) are ruled out.
- **NUL.** A raw control character is invalid inside a JSON string, so a NUL can only arrive as
  the escape ``\\u0000``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from eventflow.errors import ValidationFailed

#: The integers the encoder keeps exactly: 64-bit, signed or unsigned.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
#: Levels of arrays and objects pydantic-core's parser always reads, the request's own
#: included (it counts a value inside the deepest container as one more level).
MAX_NESTING = 200
#: The most digits before the decimal point that pydantic-core's parser reads in a number.
MAX_DIGITS = 4300

Loc = tuple[int | str, ...]

_NON_FINITE = (
    "not a finite number: NaN, Infinity and numbers beyond ±1.7976931348623157e308 "
    "cannot be stored; send a finite number, or the value as a string"
)
_INT_RANGE = (
    "integer out of range: integers are kept exactly from -2^63 to 2^64-1; "
    "send larger ones as strings"
)
_NUL = "contains the NUL character (\\u0000), which cannot be stored; remove or encode it"
_TOO_LONG = (
    f"written with more than {MAX_DIGITS} digits before the decimal point, which are not read; "
    "use an exponent, or send the value as a string"
)


def check_body(
    body: bytes,
    events: Sequence[Mapping[str, Any]],
    payloads: Sequence[bytes],
    locs: Sequence[Loc],
    envelope_members: int,
) -> None:
    """Refuse ``body`` if a payload in it would not be stored exactly as sent.

    ``events`` are the body's events as parsed, ``payloads`` their payloads as encoded and
    ``locs`` their locations in the body; ``envelope_members`` counts the members of objects
    around the events (1 for a batch's ``{"events": …}``, 0 for a single event).
    """
    if len(events) == 1:
        payload_text, types = payloads[0], events[0]["type"]
        members = envelope_members + len(events[0])
    else:
        # Joined, so that a batch costs a few counts rather than a few per event; a space
        # holds neither ":" nor "null".
        payload_text = b" ".join(payloads)
        types = " ".join(event["type"] for event in events)
        members = envelope_members + sum(map(len, events))
    # A one-byte search: most bodies hold no backslash, so no escape of any kind.
    escapes = body.find(b"\\") >= 0
    colons = body.count(b":")
    if escapes:
        colons += body.count(b"\\u003a") + body.count(b"\\u003A")
    # ``members``: the envelope's, each event's own (type, payload, delay_ms); the payloads'
    # members and string colons are in their encoded text, the types' colons in the types.
    if colons != members + types.count(":") + payload_text.count(b":"):
        raise_if_any(_repeated_keys(body))
    if b"null" in payload_text and (
        payload_text.count(b"null") + types.count("null") > body.count(b"null")
    ):
        raise_if_any(_scan(zip(locs, events, strict=True), _non_finite))
    if escapes and b"\\u0000" in body:
        raise_if_any(_scan(zip(locs, events, strict=True), _nul))


def check_unique_keys(body: bytes) -> None:
    """Refuse a JSON body in which an object repeats a key (for small, rare bodies: it parses)."""
    raise_if_any(_repeated_keys(body))


def check_encodable(loc: Loc, payload: Mapping[str, Any]) -> None:
    """Name the integers the encoder refused (called when encoding ``payload`` failed)."""
    raise_if_any([_problem(at, _INT_RANGE, "int_out_of_range") for at in _walk_ints(loc, payload)])


def _scan(
    items: Iterable[tuple[Loc, Mapping[str, Any]]],
    finder: Callable[[Loc, Any], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for loc, event in items:
        found += finder((*loc, "payload"), event.get("payload", {}))
    return found


def _non_finite(loc: Loc, payload: Any) -> list[dict[str, Any]]:
    return [
        _problem(at, _NON_FINITE, "number_not_finite")
        for at, value in _leaves(loc, payload)
        if type(value) is float and not math.isfinite(value)
    ]


def _nul(loc: Loc, payload: Any) -> list[dict[str, Any]]:
    found = []
    for at, value in _leaves(loc, payload, keys=True):
        if isinstance(value, str) and "\x00" in value:
            found.append(_problem(at, _NUL, "string_nul"))
    return found


def _walk_ints(loc: Loc, payload: Any) -> Iterator[Loc]:
    for at, value in _leaves(loc, payload):
        if type(value) is int and not INT_MIN <= value <= INT_MAX:
            yield at


def _leaves(loc: Loc, value: Any, *, keys: bool = False) -> Iterator[tuple[Loc, Any]]:
    """Every scalar under ``value`` with its location (and every key, when ``keys``)."""
    for at, node in _nodes(loc, value):
        if isinstance(node, dict):
            if keys:
                yield from (((*at, key), key) for key in node)
        elif not isinstance(node, list):
            yield at, node


def _nodes(loc: Loc, value: Any) -> Iterator[tuple[Loc, Any]]:
    """Every value under ``value`` (itself included) with its location, in document order."""
    # Iterative: the parser allows nesting deeper than Python's recursion is comfortable with.
    stack: list[tuple[Loc, Any]] = [(loc, value)]
    while stack:
        at, node = stack.pop()
        yield at, node
        if isinstance(node, dict):
            stack.extend(reversed([((*at, key), child) for key, child in node.items()]))
        elif isinstance(node, list):
            stack.extend(reversed([((*at, index), child) for index, child in enumerate(node)]))


class _Repeated(dict[str, Any]):
    """An object in which the stdlib parser saw a key more than once."""

    repeated: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    marked = _Repeated(result)
    marked.repeated = [key for key, n in Counter(key for key, _ in pairs).items() if n > 1]
    return marked


def too_deep() -> ValidationFailed:
    return ValidationFailed(
        f"The body nests arrays and objects more than {MAX_NESTING} levels deep",
        errors=[{"loc": [], "field": "body", "msg": "nested too deeply", "type": "depth"}],
    )


def long_numbers(body: bytes) -> list[dict[str, Any]]:
    """Name the numbers written with too many digits for the parser (which says only where)."""
    found: list[dict[str, Any]] = []
    for at, node in _nodes(
        (), _stdlib_parse(body, parse_int=_Long.or_int, parse_float=_Long.or_float)
    ):
        if isinstance(node, _Long):
            if node.integer:
                found.append(_problem(at, _INT_RANGE, "int_out_of_range"))
            elif not math.isfinite(float(node)):
                found.append(_problem(at, _NON_FINITE, "number_not_finite"))
            else:
                found.append(_problem(at, _TOO_LONG, "number_too_long"))
    return found


class _Long(str):
    """A number's text, kept as text because it has too many digits to be read."""

    integer: bool

    @classmethod
    def or_int(cls, text: str) -> int | _Long:
        return cls._marked(text, integer=True) if len(text) > MAX_DIGITS else int(text)

    @classmethod
    def or_float(cls, text: str) -> float | _Long:
        whole = text.lstrip("-").split(".")[0].split("e")[0].split("E")[0]
        return cls._marked(text, integer=False) if len(whole) > MAX_DIGITS else float(text)

    @classmethod
    def _marked(cls, text: str, *, integer: bool) -> _Long:
        marked = cls(text)
        marked.integer = integer
        return marked


def _stdlib_parse(body: bytes, **hooks: Any) -> Any:
    try:
        return json.loads(body, **hooks)
    except RecursionError as exc:
        raise too_deep() from exc


def _repeated_keys(body: bytes) -> list[dict[str, Any]]:
    """Exact, and slow: parse again with the stdlib, which shows every key of every object."""
    found: list[dict[str, Any]] = []
    for at, node in _nodes((), _stdlib_parse(body, object_pairs_hook=_pairs)):
        if isinstance(node, _Repeated):
            found += [
                _problem(
                    (*at, key),
                    f"the key {key!r} appears more than once in this object; send it once",
                    "duplicate_key",
                )
                for key in node.repeated
            ]
    return found


def _problem(loc: Loc, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "field": dotted(loc), "msg": msg, "type": kind}


def raise_if_any(problems: list[dict[str, Any]]) -> None:
    """A 422 naming every problem found, if any."""
    if not problems:
        return
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise ValidationFailed(f"{first['field']}: {first['msg']}{more}", errors=problems)


def dotted(loc: Sequence[int | str]) -> str:
    """``events[2].payload.items[0]``: a location as a reader writes it (``body``: the root)."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "body"
