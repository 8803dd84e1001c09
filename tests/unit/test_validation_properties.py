"""Properties of ingest validation: a payload is stored exactly as sent, or refused by JSON path.

``eventflow.ingest.fidelity`` proves the absence of repeated keys and non-finite numbers with
byte counts, so these bodies are written by hand, not by ``json.dumps``: random whitespace,
``\\uXXXX`` escapes (escaped colons, ``n\\u0075ll``), repeated keys spelled differently, and
``NaN`` or ``1e400`` at any depth, in a single event or at any index of a batch.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventflow.errors import EventflowError, MalformedJson, PayloadTooLarge, ValidationFailed
from eventflow.ingest.validation import (
    MAX_DELAY_MS,
    ValidEvent,
    parse_batch,
    parse_event,
    parse_json_object,
)
from tests.unit.json_bodies import (
    BIG,
    INT_MAX,
    INT_MIN,
    MAX_NESTING,
    TYPE_RE,
    EventCase,
    Loc,
    Node,
    Obj,
    Parse,
    Raw,
    Style,
    constant,
    escape_sets,
    events,
    fresh,
    insert,
    nodes,
    non_finite,
    out_of_range,
    payload_of,
    place,
    placements,
    plant,
    refusal,
    render,
    repeat,
    same,
    strings,
    styles,
    submit,
    tree,
    update,
    values,
    wheres,
)

# --- Accepted bodies are stored exactly --------------------------------------------------------

EDGES = {"u64": INT_MAX, "i64": INT_MIN, "i63": 2**63 - 1, "u63": 2**63, "one": 1, "onef": 1.0}
EDGES |= {
    "neg0": -0.0,
    "tiny": 5e-324,
    "max": 1.7976931348623157e308,
    "min": -1.7976931348623157e308,
}


@settings(max_examples=120, deadline=None)
@given(case=events, style=styles)
@example(case=EventCase("A", EDGES), style=Style())
@example(case=EventCase("A", EDGES), style=Style(floats="E", ensure_ascii=True))
@example(
    # Text that looks like the escapes the counts look for, but is not: not a NUL, not a colon.
    case=EventCase("A:null", {"s": "\\u0000 \\u003a n\\u0075ll \\\\u003a", "\nu": "\null"}, 0),
    style=Style(escaped=frozenset(":nul"), upper_hex=True),
)
def test_valid_events_are_stored_exactly(case: EventCase, style: Style) -> None:
    event = parse_event(render(case.obj(), style).encode(), BIG)
    expected = case.payload or {}
    assert (event.type, event.delay_ms) == (case.type_, case.delay_ms or 0)
    assert event.payload == orjson.dumps(expected).decode()
    assert same(orjson.loads(event.payload), expected)


@settings(max_examples=50, deadline=None)
@given(cases=st.lists(events, min_size=1, max_size=5), style=styles)
def test_valid_batches_are_stored_exactly(cases: list[EventCase], style: Style) -> None:
    body = render(Obj((("events", [case.obj() for case in cases]),)), style).encode()
    stored = parse_batch(body, BIG)
    assert [(e.type, e.delay_ms) for e in stored] == [(c.type_, c.delay_ms or 0) for c in cases]
    for event, case in zip(stored, cases, strict=True):
        assert same(orjson.loads(event.payload), case.payload or {})


@settings(max_examples=50, deadline=None)
@given(cases=st.lists(events, min_size=1, max_size=4), style=styles)
def test_payload_limit_is_inclusive_and_names_the_event(
    cases: list[EventCase], style: Style
) -> None:
    sizes = [len(orjson.dumps(case.payload or {})) for case in cases]
    single = render(cases[0].obj(), style).encode()
    assert len(parse_event(single, sizes[0]).payload.encode()) == sizes[0]
    with pytest.raises(PayloadTooLarge) as info:
        parse_event(single, sizes[0] - 1)
    assert info.value.status == 413
    assert info.value.detail.startswith(f"payload is {sizes[0]} bytes")
    batch = render(Obj((("events", [case.obj() for case in cases]),)), style).encode()
    assert len(parse_batch(batch, max(sizes))) == len(cases)
    with pytest.raises(PayloadTooLarge) as info:
        parse_batch(batch, max(sizes) - 1)
    assert info.value.detail.startswith(f"events[{sizes.index(max(sizes))}].payload is ")


# --- Refusals name the exact path --------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    case=events,
    spots=wheres,
    key=strings,
    bad=st.lists(non_finite, min_size=3, max_size=3),
    style=styles,
    placement=placements,
)
# Spot 3 of {"o": {"l": [1]}} is the 1: a NaN in a list in an object.
@example(
    case=EventCase("A", {"o": {"l": [1]}}),
    spots=[3],
    key="k",
    bad=["NaN"] * 3,
    style=Style(),
    placement=None,
)
@example(
    case=EventCase("null", {"n": None}),
    spots=[1],
    key="k",
    bad=["-1e999"] * 3,
    style=Style(),
    placement=([], 0),
)
def test_non_finite_numbers_are_refused_at_their_path(
    case: EventCase,
    spots: list[int],
    key: str,
    bad: list[str],
    style: Style,
    placement: tuple[list[EventCase], int] | None,
) -> None:
    payload, planted = plant(payload_of(case), spots, key, [Raw(text) for text in bad])
    call, prefix = submit(case.obj(payload), style, placement)
    assert refusal(call) == {("number_not_finite", (*prefix, "payload", *at)) for at in planted}


@settings(max_examples=80, deadline=None)
@given(
    case=events,
    spots=wheres,
    key=strings,
    bad=st.lists(out_of_range, min_size=3, max_size=3),
    style=styles,
    placement=placements,
)
@example(
    case=EventCase("A", {"n": 0}),
    spots=[1],
    key="k",
    bad=[2**64] * 3,
    style=Style(),
    placement=None,
)
@example(
    case=EventCase("A", {"n": 0}),
    spots=[1],
    key="k",
    bad=[-(2**63) - 1] * 3,
    style=Style(),
    placement=([], 1),
)
def test_integers_beyond_64_bits_are_refused_at_their_path(
    case: EventCase,
    spots: list[int],
    key: str,
    bad: list[int],
    style: Style,
    placement: tuple[list[EventCase], int] | None,
) -> None:
    payload, planted = plant(payload_of(case), spots, key, list(bad))
    call, prefix = submit(case.obj(payload), style, placement)
    assert refusal(call) == {("int_out_of_range", (*prefix, "payload", *at)) for at in planted}


def plant_nul(payload: Obj, spots: list[int], key: str) -> tuple[Node, set[Loc]]:
    """Put a NUL in strings, keys, new members or elements; answers where they ended up."""
    planted: set[Loc] = set()
    node: Node = payload
    for spot in spots:
        # Every place offers one edit, and every key of an object one more: a rename.
        edits: list[tuple[Loc, Node, str | None]] = [
            (at, target, None) for at, target in nodes(node)
        ]
        edits += [
            (at, target, name)
            for at, target in nodes(node)
            if isinstance(target, Obj)
            for name in target.names()
        ]
        at, target, old = edits[spot % len(edits)]
        turn = spot // len(edits)
        if isinstance(target, Obj) and old is not None:
            new = fresh(old[: turn % 3] + "\x00" + old[turn % 3 :], target)
            renamed = Obj(tuple((new if k == old else k, v) for k, v in target.members))
            node = update(node, at, constant(renamed))
            loc, old_loc = (*at, new), (*at, old)
            planted = {
                (*loc, *p[len(old_loc) :]) if p[: len(old_loc)] == old_loc else p for p in planted
            }
        elif isinstance(target, str):
            cut = turn % (len(target) + 1)
            node, loc = update(node, at, constant(target[:cut] + "\x00" + target[cut:])), at
        elif isinstance(target, Obj | list):
            node, loc = insert(node, at, target, turn, key, "\x00" + key)
        else:
            node, loc = update(node, at, constant("\x00")), at
        planted.add(loc)
    return node, planted


@settings(max_examples=80, deadline=None)
@given(case=events, spots=wheres, key=strings, style=styles, placement=placements)
@example(
    case=EventCase("A", {"k": "\\u0000"}), spots=[1], key="k", style=Style(), placement=None
)  # a NUL next to the text
def test_nul_characters_are_refused_at_their_path(
    case: EventCase,
    spots: list[int],
    key: str,
    style: Style,
    placement: tuple[list[EventCase], int] | None,
) -> None:
    payload, planted = plant_nul(payload_of(case), spots, key)
    call, prefix = submit(case.obj(payload), style, placement)
    assert refusal(call) == {("string_nul", (*prefix, "payload", *at)) for at in planted}


@settings(max_examples=120, deadline=None)
@given(
    case=events,
    spot=st.integers(0, 10**6),
    filler=values,
    other=events,
    spelling=escape_sets,
    key=strings,
    style=styles,
    placement=placements,
)
@example(
    case=EventCase("A"),
    spot=0,
    filler=0,
    other=EventCase("B"),
    spelling=frozenset(),
    key="k",
    style=Style(),
    placement=None,
)
# Spot 3 is the key "a:b" of the payload, repeated as "a\u003ab".
@example(
    case=EventCase("A", {"a:b": 1}),
    spot=3,
    filler=0,
    other=EventCase("A"),
    spelling=frozenset(":"),
    key="k",
    style=Style(),
    placement=None,
)
@example(
    case=EventCase("A", {"a:b": 1}),
    spot=3,
    filler=0,
    other=EventCase("A"),
    spelling=frozenset(":"),
    key="k",
    style=Style(),
    placement=([], 9),
)
def test_repeated_keys_are_refused_at_their_path(
    case: EventCase,
    spot: int,
    filler: Any,
    other: EventCase,
    spelling: frozenset[str],
    key: str,
    style: Style,
    placement: tuple[list[EventCase], int] | None,
) -> None:
    event = case.obj()
    targets: list[tuple[Loc, str]] = [((), k) for k in ("type", "payload", "delay_ms")]
    for at, node in nodes(event):
        if at and isinstance(node, Obj):
            targets += [(at, k) for k in node.names()] + [(at, fresh(key, node))]
    at, repeated = targets[spot % len(targets)]
    # The event's own keys are repeated with valid values, so only the repetition is wrong.
    own: dict[str, Node] = {
        "type": other.type_,
        "payload": payload_of(other),
        "delay_ms": other.delay_ms or 0,
    }
    value = own[repeated] if at == () else tree(filler)
    spoiled = repeat(event, at, repeated, value, spelling, spot // len(targets))
    assert isinstance(spoiled, Obj)
    call, prefix = submit(spoiled, style, placement)
    assert refusal(call) == {("duplicate_key", (*prefix, *at, repeated))}


@settings(max_examples=100, deadline=None)
@given(
    case=events,
    kinds=st.lists(st.sampled_from(["nan", "int", "nul", "dup"]), min_size=2, max_size=4),
    spots=st.lists(st.integers(0, 10**6), min_size=4, max_size=4),
    key=strings,
    style=styles,
    placement=placements,
)
def test_several_defects_are_refused_naming_only_planted_ones(
    case: EventCase,
    kinds: list[str],
    spots: list[int],
    key: str,
    style: Style,
    placement: tuple[list[EventCase], int] | None,
) -> None:
    node: Node = payload_of(case)
    planted: set[tuple[str, Loc]] = set()
    bad: dict[str, Node] = {"nan": Raw("NaN"), "int": 2**64, "nul": "\x00"}
    names = {"nan": "number_not_finite", "int": "int_out_of_range", "nul": "string_nul"}
    for kind, spot in zip(kinds, spots, strict=False):
        if kind == "dup":
            objects = [(at, obj) for at, obj in nodes(node) if isinstance(obj, Obj)]
            at, target = objects[spot % len(objects)]
            repeated = target.names()[spot % len(target.names())] if target.members else key
            node = repeat(node, at, repeated, "null", frozenset(":n"), spot)
            planted.add(("duplicate_key", ("payload", *at, repeated)))
        else:
            assert isinstance(node, Obj)
            node, locs = plant(node, [spot], key, [bad[kind]])
            planted |= {(names[kind], ("payload", *loc)) for loc in locs}
    call, prefix = submit(case.obj(node), style, placement)
    found = refusal(call)
    assert {(kind, loc[len(prefix) :]) for kind, loc in found} <= planted
    assert all(loc[: len(prefix)] == prefix for _, loc in found)


_BATCH_DEFECTS = {
    "type": "event_type",
    "delay": "greater_than_equal",
    "extra": "extra_forbidden",
    "nan": "number_not_finite",
    "int": "int_out_of_range",
    "nul": "string_nul",
    "dup": "duplicate_key",
}


def spoil(case: EventCase, kind: str) -> Obj:
    payload = payload_of(case)
    if kind == "type":
        return EventCase("9", case.payload, case.delay_ms, case.order).obj()
    if kind == "delay":
        return EventCase(case.type_, case.payload, -1, case.order).obj()
    if kind == "extra":
        return Obj((*case.obj().members, ("extra", 1)))
    key = fresh("bad", payload)
    extra: dict[str, tuple[tuple[str, Node], ...]] = {
        "nan": ((key, Raw("NaN")),),
        "int": ((key, 2**64),),
        "nul": ((key, "\x00"),),
        "dup": ((key, 1), (key, 2)),
    }
    return case.obj(Obj((*payload.members, *extra[kind])))


@settings(max_examples=100, deadline=None)
@given(
    cases=st.lists(events, min_size=1, max_size=6),
    spoiled=st.dictionaries(st.integers(0, 5), st.sampled_from(sorted(_BATCH_DEFECTS)), min_size=1),
    style=styles,
)
@example(cases=[EventCase("A")] * 4, spoiled={3: "nan"}, style=Style())
@example(cases=[EventCase("A")] * 4, spoiled={1: "dup", 3: "dup"}, style=Style())
def test_batch_errors_name_the_spoiled_events(
    cases: list[EventCase], spoiled: dict[int, str], style: Style
) -> None:
    spoiled = {index % len(cases): kind for index, kind in spoiled.items()}
    items: list[Node] = [
        spoil(case, spoiled[i]) if i in spoiled else case.obj() for i, case in enumerate(cases)
    ]
    body = render(Obj((("events", items),)), style).encode()
    found = refusal(lambda limit: parse_batch(body, limit))
    named = {loc[1] for _, loc in found if loc[:1] == ("events",)}
    assert all(loc[:1] == ("events",) and loc[1] in spoiled for _, loc in found), found
    assert {kind for kind, _ in found} <= {_BATCH_DEFECTS[k] for k in spoiled.values()}
    assert named
    # One kind of defect is reported for every event that has it (out-of-range integers stop
    # the encoder at the first one).
    if len(set(spoiled.values())) == 1 and "int" not in spoiled.values():
        assert named == set(spoiled)


# --- Fields --------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    type_=st.from_regex(TYPE_RE, fullmatch=True)
    | st.text(max_size=110)
    | st.builds(str.__add__, st.from_regex(TYPE_RE, fullmatch=True), st.text(max_size=2)),
    ensure_ascii=st.booleans(),
)
@example(type_="A" * 100, ensure_ascii=False)
@example(type_="A" * 101, ensure_ascii=False)
@example(type_="A\n", ensure_ascii=False)  # `$` in a Python regex would accept this one
@example(type_="9a", ensure_ascii=False)
@example(type_="\u212a", ensure_ascii=True)  # KELVIN SIGN: a letter, but not one of A-Z
@example(type_="A\x00", ensure_ascii=False)
@example(type_="", ensure_ascii=False)
def test_type_is_accepted_exactly_when_it_matches_the_pattern(
    type_: str, ensure_ascii: bool
) -> None:
    body = json.dumps({"type": type_}, ensure_ascii=ensure_ascii).encode()
    if TYPE_RE.fullmatch(type_):
        assert parse_event(body, BIG).type == type_
    else:
        assert refusal(lambda limit: parse_event(body, limit)) == {("event_type", ("type",))}


delays = (
    st.integers()
    | st.integers(-2, 2)
    | st.integers(MAX_DELAY_MS - 2, MAX_DELAY_MS + 2)
    | st.booleans()
    | st.none()
    | st.floats()
    | st.integers(0, MAX_DELAY_MS).map(float)
    | st.integers().map(str)
    | st.lists(st.integers(0, 5), max_size=2)
)


@settings(max_examples=100, deadline=None)
@given(delay=delays, style=styles)
@example(delay=False, style=Style())
@example(delay=True, style=Style())
@example(delay="5", style=Style())
@example(delay=5.0, style=Style())
@example(delay=-1, style=Style())
@example(delay=0, style=Style())
@example(delay=MAX_DELAY_MS, style=Style())
@example(delay=MAX_DELAY_MS + 1, style=Style())
@example(delay=None, style=Style())
def test_delay_ms_is_a_strict_integer_in_range(delay: Any, style: Style) -> None:
    body = render(Obj((("type", "A"), ("delay_ms", tree(delay)))), style).encode()
    if type(delay) is int and 0 <= delay <= MAX_DELAY_MS:
        assert parse_event(body, BIG).delay_ms == delay
    else:
        found = refusal(lambda limit: parse_event(body, limit))
        assert {loc for _, loc in found} == {("delay_ms",)}


# --- Any body ----------------------------------------------------------------------------------

_BROKEN = [b"\\ud800", b"\\udfff", b"\\ud83dx", b"\\ude00\\ud83d", b"\\ud800\\u0041", b"\\ud8"]
_BROKEN += [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80"]


@settings(max_examples=60, deadline=None)
@given(
    case=events,
    broken=st.sampled_from(_BROKEN),
    in_key=st.booleans(),
    style=styles,
    placement=placements,
)
def test_lone_surrogates_and_invalid_utf8_are_malformed_json(
    case: EventCase,
    broken: bytes,
    in_key: bool,
    style: Style,
    placement: tuple[list[EventCase], int] | None,
) -> None:
    payload = payload_of(case)
    marked = Obj((*payload.members, (fresh("~k~", payload), "~v~")))
    body, parse, _ = place(case.obj(marked), style, placement)
    body = body.replace(b"~k~" if in_key else b"~v~", broken)
    with pytest.raises(MalformedJson) as info:
        parse(body, BIG)
    assert info.value.status == 400


_LEAVES = {
    "1": None,
    "NaN": "number_not_finite",
    '"\\u0000"': "string_nul",
    "18446744073709551616": "int_out_of_range",
    '{"d":1,"\\u0064":2}': "duplicate_key",
}


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.booleans(), min_size=1, max_size=260),
    leaf=st.sampled_from(sorted(_LEAVES)),
    batch=st.booleans(),
)
@example(shape=[True] * (MAX_NESTING - 2), leaf="NaN", batch=False)
@example(shape=[False] * (MAX_NESTING - 5), leaf='{"d":1,"\\u0064":2}', batch=True)
@example(shape=[True] * (MAX_NESTING - 2), leaf="1", batch=False)
@example(shape=[True] * MAX_NESTING, leaf="1", batch=False)
def test_deep_nesting_is_422_and_shallower_bodies_keep_their_paths(
    shape: list[bool], leaf: str, batch: bool
) -> None:
    text = leaf
    for is_list in reversed(shape):
        text = f"[{text}]" if is_list else f'{{"k":{text}}}'
    event = f'{{"type":"A","payload":{{"k":{text}}}}}'
    body = (f'{{"events":[{event}]}}' if batch else event).encode()
    prefix: Loc = ("events", 0) if batch else ()
    depth = len(prefix) + 2 + len(shape) + leaf.startswith("{")
    parse: Parse = parse_batch if batch else parse_event
    if depth > MAX_NESTING + 1:
        assert refusal(lambda limit: parse(body, limit)) == {("depth", ())}
        return
    kind = _LEAVES[leaf]
    path = (*prefix, "payload", "k", *(0 if is_list else "k" for is_list in shape))
    expected = {(kind, (*path, "d") if kind == "duplicate_key" else path)} if kind else set()
    try:
        stored = parse(body, BIG)
    except ValidationFailed as exc:
        found = {(str(e["type"]), tuple(e["loc"])) for e in exc.errors or []}
        # One level more is read when the deepest container holds no value; refused otherwise.
        assert found == expected or (depth == MAX_NESTING + 1 and found == {("depth", ())})
    else:
        assert not expected
        event_out = stored[0] if isinstance(stored, list) else stored
        assert isinstance(event_out, ValidEvent)
        assert same(orjson.loads(event_out.payload), json.loads(event)["payload"])


_FIDELITY = {"duplicate_key", "number_not_finite", "int_out_of_range", "string_nul"}


def python_view(body: bytes) -> tuple[Any, set[str]] | None:
    """The body as Python's own parser reads it, and what in it cannot be stored exactly."""
    defects: set[str] = set()

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in items}) < len(items):
            defects.add("duplicate_key")
        return dict(items)

    try:
        value = json.loads(body.decode(), object_pairs_hook=pairs)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack += [*node, *node.values()]
        elif isinstance(node, list):
            stack += node
        elif isinstance(node, float) and not math.isfinite(node):
            defects.add("number_not_finite")
        elif type(node) is int and not INT_MIN <= node <= INT_MAX:
            defects.add("int_out_of_range")
        elif isinstance(node, str) and "\x00" in node:
            defects.add("string_nul")
        elif isinstance(node, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in node):
            defects.add("surrogate")
    return value, defects


_SPLICES = [b"{", b"}", b"[", b"]", b'"', b"\\", b":", b",", b" ", b"0", b"-", b"null", b"NaN"]
_SPLICES += [b"1e400", b"18446744073709551616", b"\\u0000", b"\\ud800", b"\\u003a", b"\\u0022"]
_SPLICES += [b"\xff", b"\xc3", b"\xed\xa0\x80", b'"type":"B",', b'"a":1,', b'"payload":{},']
_SPLICES += [b'"n":NaN,', b'"z":"\\u0000",', b'"i":-9223372036854775809,', b'"\\u0061":2,']


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid body with a few bytes inserted, deleted, replaced or repeated."""
    cases = draw(st.lists(events, min_size=1, max_size=3))
    defect = draw(st.sampled_from([None, *sorted(_BATCH_DEFECTS)]))
    objs = [
        spoil(case, defect) if defect and i == 0 else case.obj() for i, case in enumerate(cases)
    ]
    single = len(cases) == 1 and draw(st.booleans())
    node = objs[0] if single else Obj((("events", list[Node](objs)),))
    body = bytearray(render(node, draw(styles)).encode())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(body)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        if edit == "insert":
            body[at:at] = draw(st.sampled_from(_SPLICES))
        elif edit == "delete":
            del body[at : at + draw(st.integers(1, 4))]
        elif edit == "replace":
            body[at : at + 1] = draw(st.sampled_from(_SPLICES))
        else:
            body[at:at] = body[at : at + draw(st.integers(1, 40))]
    return bytes(body)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200) | mutated_bodies())
@example(body=b'{"type":"A","payload":' + b"[" * 100_000)
@example(body=b'{"events":' + b'[{"events":' * 3000)
@example(body=b'{"type":"A","payload":{"a":"\\ud800"}}')
@example(body=b'{"type":"A","payload":{"a":"\\u0000","a":"\\\\u0000"}}')
@example(body=b'{"type":"A","payload":{"a":1,"a":' + b"9" * 4300 + b"}}")
def test_any_body_is_stored_exactly_or_refused_with_a_4xx(body: bytes) -> None:
    view = python_view(body)
    for parse, events_of in (
        (parse_event, lambda value: [value]),
        (parse_batch, lambda value: value["events"]),
    ):
        try:
            stored = parse(body, BIG)
        except EventflowError as exc:
            assert 400 <= exc.status < 500, exc
            kinds = {str(e["type"]) for e in exc.errors or []} & _FIDELITY
            # Refused as not storable: Python's parser sees the same defect.
            assert not kinds or (view is not None and kinds <= view[1]), (kinds, view)
            if isinstance(exc, MalformedJson):
                assert view is None or "surrogate" in view[1], exc.detail
            continue
        assert view is not None
        assert not view[1]
        sent = events_of(view[0])
        accepted = stored if isinstance(stored, list) else [stored]
        assert len(accepted) == len(sent)
        for event, value in zip(accepted, sent, strict=True):
            assert (event.type, event.delay_ms) == (value["type"], value.get("delay_ms", 0))
            assert same(orjson.loads(event.payload), value.get("payload", {}))


@settings(max_examples=150, deadline=None)
@given(body=st.binary(max_size=200) | mutated_bodies())
@example(body=b'{"email":"a@example.com","\\u0065mail":"b@example.com"}')
def test_any_account_body_is_an_object_without_repeated_keys_or_a_4xx(body: bytes) -> None:
    try:
        value = parse_json_object(body)
    except EventflowError as exc:
        assert 400 <= exc.status < 500, exc
    else:
        view = python_view(body)
        assert isinstance(value, dict)
        assert view is not None
        assert "duplicate_key" not in view[1]


def test_deeply_nested_account_body_is_a_4xx_not_a_recursion_error() -> None:
    # Found by these tests: the repeated-key check parsed again with the stdlib, whose recursion
    # limit (about 990 levels) is below orjson's (1023): a 2 KB register body answered 500.
    body = b'{"a":' + b"[" * 1020 + b"]" * 1020 + b"}"
    with pytest.raises(EventflowError) as info:
        parse_json_object(body)
    assert info.value.status == 422


# --- Known edge cases, written out ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"type":"A","payload":{"o":{"l":[1, NaN]}}}',
            {("number_not_finite", ("payload", "o", "l", 1))},
        ),
        (b'{"type":"A","payload":{"n":-1e999}}', {("number_not_finite", ("payload", "n"))}),
        (
            b'{"type":"A","payload":{"n":' + b"1" * 400 + b".5}}",
            {("number_not_finite", ("payload", "n"))},
        ),
        (
            b'{"type":"A","payload":{"n":18446744073709551616}}',
            {("int_out_of_range", ("payload", "n"))},
        ),
        (
            b'{"type":"A","payload":{"n":-9223372036854775809}}',
            {("int_out_of_range", ("payload", "n"))},
        ),
        (b'{"type":"A","payload":{"k\\u0000":"v"}}', {("string_nul", ("payload", "k\x00"))}),
        (
            b'{"type":"A","payload":{"a\\u003ab":1,"a:b":2}}',
            {("duplicate_key", ("payload", "a:b"))},
        ),
        (
            b'{"type":"A","payload":{"x":"\\u003a","x":"\\u003A"}}',
            {("duplicate_key", ("payload", "x"))},
        ),
        # The repetition's colon is made up for by the escaped one the count must not miss.
        (b'{"type":"A","payload":{"x":1,"x":"\\u003A"}}', {("duplicate_key", ("payload", "x"))}),
        (b'{"type":"A","type":"B"}', {("duplicate_key", ("type",))}),
        (b'{"type":"a:b","payload":{},"payload":{"c":"null"}}', {("duplicate_key", ("payload",))}),
        (
            b'{"events":[{"type":"A"},{"type":"A","payload":{"items":[{"price":NaN}]}}]}',
            {("number_not_finite", ("events", 1, "payload", "items", 0, "price"))},
        ),
        (b'{"events":[{"type":"A"}],"events":[{"type":"B"}]}', {("duplicate_key", ("events",))}),
    ],
)
def test_known_refusals(body: bytes, expected: set[tuple[str, Loc]]) -> None:
    parse: Parse = parse_batch if body.startswith(b'{"events"') else parse_event
    assert refusal(lambda limit: parse(body, limit)) == expected


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        ("9" * 4301, "int_out_of_range"),
        ("-" + "9" * 5000, "int_out_of_range"),
        ("1" + "0" * 5000 + ".5", "number_not_finite"),
        # About 1.1e10, but the parser reads no number with over 4,300 digits before the point.
        ("1" * 4301 + "e-4290", "number_too_long"),
    ],
)
def test_numbers_of_more_than_4300_digits_are_named_not_malformed(number: str, kind: str) -> None:
    # Found by these tests: the parser calls such a number "out of range" without saying
    # where, which was answered as malformed JSON (400).
    body = f'{{"type":"A","payload":{{"n":{number}}}}}'.encode()
    assert refusal(lambda limit: parse_event(body, limit)) == {(kind, ("payload", "n"))}
    batch = f'{{"events":[{{"type":"A"}},{{"type":"B","payload":{{"n":{number}}}}}]}}'.encode()
    assert refusal(lambda limit: parse_batch(batch, limit)) == {
        (kind, ("events", 1, "payload", "n"))
    }
