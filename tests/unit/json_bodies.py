"""Hand-written JSON bodies (any spacing, escapes, repeated keys) and strategies that draw them."""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import pytest
from hypothesis import strategies as st

from eventflow.errors import ValidationFailed
from eventflow.ingest.validation import (
    MAX_DELAY_MS,
    parse_batch,
    parse_event,
)

# The contract, written out here rather than imported, so that a change to it fails a test.
TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,99}")
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
MAX_NESTING = 200  # levels of arrays and objects always read, the request's own included
BIG = 1 << 20

Loc: TypeAlias = tuple[int | str, ...]
Node: TypeAlias = "Obj | list[Node] | Raw | str | int | float | bool | None"


@dataclass(frozen=True)
class Raw:
    """JSON text written as is: ``NaN``, ``1e400``, a 400-digit number."""

    text: str


@dataclass(frozen=True)
class Key:
    """A key with a spelling of its own (the characters it writes as ``\\uXXXX``)."""

    value: str
    escaped: frozenset[str]


@dataclass(frozen=True)
class Obj:
    """A JSON object as written: members in order, a key possibly more than once."""

    members: tuple[tuple[str | Key, Node], ...] = ()

    def names(self) -> list[str]:
        return [k.value if isinstance(k, Key) else k for k, _ in self.members]


@dataclass(frozen=True)
class Style:
    """How a body is written; every choice is valid JSON for the same value."""

    colon: str = ":"
    comma: str = ","
    pad: str = ""
    ensure_ascii: bool = False
    escaped: frozenset[str] = frozenset()
    upper_hex: bool = False
    floats: str = "r"
    slash: bool = False


@dataclass(frozen=True)
class EventCase:
    """A valid event: its members in ``order`` (a permutation of type, payload, delay_ms)."""

    type_: str
    payload: dict[str, Any] | None = None
    delay_ms: int | None = None
    order: tuple[int, ...] = (0, 1, 2)

    def obj(self, payload: Node | None = None) -> Obj:
        if payload is None and self.payload is not None:
            payload = tree(self.payload)
        members: list[tuple[str | Key, Node]] = [("type", self.type_)]
        members += [("payload", payload)] if payload is not None else []
        members += [("delay_ms", self.delay_ms)] if self.delay_ms is not None else []
        return Obj(tuple(members[i] for i in self.order if i < len(members)))


# --- Writing JSON text -------------------------------------------------------------------------

_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _u_escape(char: str, upper: bool) -> str:
    code = ord(char)
    units = [code] if code < 0x10000 else [0xD800 + (code - 0x10000 >> 10), 0xDC00 + (code & 0x3FF)]
    return "".join(("\\u%04X" if upper else "\\u%04x") % unit for unit in units)


def quote(text: str, style: Style, escaped: frozenset[str] | None = None) -> str:
    escaped = style.escaped if escaped is None else escaped
    out = []
    for char in text:
        if char in escaped or (style.ensure_ascii and ord(char) > 0x7F):
            out.append(_u_escape(char, style.upper_hex))
        elif char in _SHORT:
            out.append(_SHORT[char])
        elif ord(char) < 0x20:
            out.append(_u_escape(char, style.upper_hex))
        else:
            out.append("\\/" if char == "/" and style.slash else char)
    return '"' + "".join(out) + '"'


def render(node: Node, style: Style) -> str:
    if isinstance(node, Obj):
        members = [
            (quote(k.value, style, k.escaped) if isinstance(k, Key) else quote(k, style))
            + style.colon
            + render(v, style)
            for k, v in node.members
        ]
        return "{" + style.pad + style.comma.join(members) + style.pad + "}"
    if isinstance(node, list):
        return "[" + style.pad + style.comma.join(render(v, style) for v in node) + style.pad + "]"
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, str):
        return quote(node, style)
    if isinstance(node, float) and math.isfinite(node) and style.floats != "r":
        return format(node, ".17" + style.floats)
    return json.dumps(node)  # null, true, false, integers, repr of floats, NaN, Infinity


def tree(value: Any) -> Node:
    if isinstance(value, dict):
        return Obj(tuple((k, tree(v)) for k, v in value.items()))
    if isinstance(value, list):
        return [tree(v) for v in value]
    assert value is None or isinstance(value, str | int | float)
    return value


# --- Strategies --------------------------------------------------------------------------------

_PIECES = [":", "null", "nul", "ull", "l", "\\", '"', "\n", "\\n", "\\u003a", "\\u003A", "\\u0000"]
_PIECES += ["\\\\u0000", "n\\u0075ll", "u003a", "é", "😀", "\u2028", "/", "{", "}", "[", ",", " "]
_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
strings = st.lists(st.sampled_from(_PIECES) | st.text(_CHARS, max_size=3), max_size=4).map("".join)
ints = st.integers(INT_MIN, INT_MAX) | st.sampled_from([INT_MIN, 2**63 - 1, 2**63, INT_MAX, -1])
floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [-0.0, 5e-324, -5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 0.1, 1e16, 1e22]
)
values = st.recursive(
    st.none() | st.booleans() | ints | floats | strings,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(strings, children, max_size=4)
    ),
    max_leaves=16,
)
payloads = st.dictionaries(strings, values, max_size=5)
types = st.from_regex(TYPE_RE, fullmatch=True) | st.sampled_from(["null", "A:null", "n:u:l:l", "l"])
_ESCAPABLE = [":", "n", "u", "l", "a", "\\", '"', "/", " ", "é", "😀"]
escape_sets = st.frozensets(st.sampled_from(_ESCAPABLE), max_size=4)
_SPACE = st.text(" \t\n\r", max_size=2)
styles = st.builds(
    Style,
    colon=st.builds("{}:{}".format, _SPACE, _SPACE),
    comma=st.builds("{},{}".format, _SPACE, _SPACE),
    pad=_SPACE,
    ensure_ascii=st.booleans(),
    escaped=escape_sets,
    upper_hex=st.booleans(),
    floats=st.sampled_from(["r", "e", "E"]),
    slash=st.booleans(),
)
events = st.builds(
    EventCase,
    type_=types,
    payload=st.none() | payloads,
    delay_ms=st.none() | st.integers(0, MAX_DELAY_MS),
    order=st.permutations(range(3)).map(tuple),
)
#: Where a tested event goes: alone, or at some index among valid siblings in a batch.
placements = st.none() | st.tuples(st.lists(events, max_size=3), st.integers(0, 3))
wheres = st.lists(st.integers(0, 10**6), min_size=1, max_size=3)
_OVERFLOWS = ["1e400", "-1e999", "1E+309", "9.9e308", "-0.5e99999", "1" * 400 + ".5"]
non_finite = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", *_OVERFLOWS, "-" + "9" * 400 + ".0e0"]
) | st.builds("{}e{}".format, st.integers(1, 9), st.integers(309, 10**9))
out_of_range = (
    st.integers(max_value=INT_MIN - 1)
    | st.integers(min_value=INT_MAX + 1)
    | st.integers(20, 4300).map(lambda digits: -int("9" * digits))
)


# --- Submitting and reading refusals -----------------------------------------------------------

Submit = Callable[[int], object]
Parse = Callable[[bytes, int], object]


def place(
    event: Obj, style: Style, placement: tuple[list[EventCase], int] | None
) -> tuple[bytes, Parse, Loc]:
    """A body holding ``event``, the function that validates it, and where the event sits."""
    if placement is None:
        return render(event, style).encode(), parse_event, ()
    siblings, at = placement
    index = at % (len(siblings) + 1)
    items: list[Node] = [case.obj() for case in siblings]
    items.insert(index, event)
    return render(Obj((("events", items),)), style).encode(), parse_batch, ("events", index)


def submit(
    event: Obj, style: Style, placement: tuple[list[EventCase], int] | None
) -> tuple[Submit, Loc]:
    body, parse, prefix = place(event, style, placement)
    return lambda limit: parse(body, limit), prefix


def field(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "body"


def refusal(call: Submit, limit: int = BIG) -> set[tuple[str, Loc]]:
    """The (type, loc) of every error a body is refused with; fails if it is accepted."""
    with pytest.raises(ValidationFailed) as info:
        call(limit)
    assert info.value.status == 422
    errors = info.value.errors
    assert errors, info.value.detail
    for error in errors:
        assert error["field"] == field(tuple(error["loc"])), error
    if errors[0]["loc"]:
        assert info.value.detail.startswith(errors[0]["field"] + ": ")
    return {(str(e["type"]), tuple(e["loc"])) for e in errors}


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 is not 1.0), floats to the bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return bool(a == b)


# --- Editing trees -----------------------------------------------------------------------------


def nodes(node: Node, at: Loc = ()) -> Iterator[tuple[Loc, Node]]:
    yield at, node
    if isinstance(node, Obj):
        for key, child in node.members:
            yield from nodes(child, (*at, key.value if isinstance(key, Key) else key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from nodes(child, (*at, index))


def update(node: Node, at: Loc, change: Callable[[Node], Node]) -> Node:
    if not at:
        return change(node)
    head, rest = at[0], at[1:]
    if isinstance(node, list):
        return [update(v, rest, change) if i == head else v for i, v in enumerate(node)]
    if not isinstance(node, Obj):
        return node  # a repeated key's other value, where the path does not go on
    return Obj(
        tuple(
            (k, update(v, rest, change) if key == head else v)
            for (k, v), key in zip(node.members, node.names(), strict=True)
        )
    )


def constant(value: Node) -> Callable[[Node], Node]:
    return lambda _: value


def fresh(key: str, obj: Obj) -> str:
    while key in obj.names():
        key += "_"
    return key


def insert(
    node: Node, at: Loc, target: Obj | list[Node], where: int, key: str, value: Node
) -> tuple[Node, Loc]:
    """Add ``value`` to ``target``, the object or list at ``at``; answers the new tree and the
    value's location."""
    if isinstance(target, list):
        return update(node, at, constant([*target, value])), (*at, len(target))
    key = fresh(key, target)
    members = list(target.members)
    members.insert(where % (len(members) + 1), (key, value))
    return update(node, at, constant(Obj(tuple(members)))), (*at, key)


def plant(payload: Obj, spots: list[int], key: str, bad: list[Node]) -> tuple[Node, set[Loc]]:
    """Put each ``bad`` value at a spot: a new member or element, or in place of a scalar."""
    planted: set[Loc] = set()
    node: Node = payload
    for spot, value in zip(spots, bad, strict=False):
        places = list(nodes(node))
        at, target = places[spot % len(places)]
        if isinstance(target, Obj | list):
            node, loc = insert(node, at, target, spot // len(places), key, value)
        else:
            node, loc = update(node, at, constant(value)), at
        planted.add(loc)
    return node, planted


def payload_of(case: EventCase) -> Obj:
    node = tree(case.payload or {})
    assert isinstance(node, Obj)
    return node


def repeat(
    node: Node, at: Loc, key: str, value: Node, spelling: frozenset[str], where: int
) -> Node:
    """The object at ``at`` with ``key`` once more (twice if absent), spelled with ``spelling``."""

    def change(target: Node) -> Node:
        if not isinstance(target, Obj):
            return target  # the other value of a key already repeated
        members = list(target.members)
        if key not in target.names():
            members.append((key, value))
        members.insert(where % (len(members) + 1), (Key(key, spelling), value))
        return Obj(tuple(members))

    return update(node, at, change)
