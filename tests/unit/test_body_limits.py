"""Request bodies: gzip inflated within the limit, whatever the stream claims or holds."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator

import pytest
from starlette.types import Message

from eventflow.api.body import GZIP, BoundedInflater, read_limited
from eventflow.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

CHUNK = 64 * 1024
LIMIT = 500 * 1024


def _bomb(inflated: int) -> bytes:
    """A gzip stream of ``inflated`` zero bytes, built without holding them."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [deflate.compress(zeros) for _ in range(inflated // len(zeros))]
    return b"".join(parts) + deflate.flush()


def _pieces(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_bomb_never_inflates_past_the_limit_plus_one_chunk() -> None:
    bomb = _bomb(1024 * 1024 * 1024)
    assert len(bomb) < 1_100_000
    inflater = BoundedInflater(LIMIT)

    with pytest.raises(PayloadTooLarge):
        for piece in _pieces(bomb):
            inflater.feed(piece)

    # Everything zlib produced, kept or not: one byte past the limit proves it too large.
    assert LIMIT < inflater.size <= LIMIT + CHUNK


def test_a_stream_within_the_limit_inflates_whole_in_any_pieces() -> None:
    data = os.urandom(100_000) + bytes(300_000)
    stream = gzip.compress(data)

    for size in (1, 7, 4096, len(stream)):
        inflater = BoundedInflater(LIMIT)
        for piece in _pieces(stream, size):
            inflater.feed(piece)
        assert inflater.finish() == data


def test_members_one_after_another_are_one_body() -> None:
    inflater = BoundedInflater(LIMIT)
    inflater.feed(gzip.compress(b'{"batch": ') + gzip.compress(b"[]}"))

    assert inflater.finish() == b'{"batch": []}'


@pytest.mark.parametrize(
    "stream",
    [
        b"not gzip at all",
        gzip.compress(b'{"a": 1}', mtime=0)[:-6],
        gzip.compress(b"{}", mtime=0) + b"garbage",
    ],
    ids=["not-gzip", "truncated", "trailing-garbage"],
)
def test_broken_or_truncated_streams_are_400(stream: bytes) -> None:
    inflater = BoundedInflater(LIMIT)

    with pytest.raises(BadRequest):
        inflater.feed(stream)
        inflater.finish()


async def _read(body: bytes, encoding: str | None, length: bool = True) -> bytes:
    pieces = list(_pieces(body)) or [b""]

    async def receive() -> Message:
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    return await read_limited(
        receive,
        str(len(body)) if length else None,
        LIMIT,
        content_encoding=encoding,
        encodings=(GZIP,),
    )


async def test_read_limited_inflates_gzip_and_refuses_what_it_does_not_know() -> None:
    assert await _read(gzip.compress(b'{"a": 1}'), "gzip") == b'{"a": 1}'
    assert await _read(gzip.compress(b'{"a": 1}'), " GZIP ") == b'{"a": 1}'
    assert await _read(b'{"a": 1}', "identity") == b'{"a": 1}'
    with pytest.raises(UnsupportedMediaType) as refused:
        await _read(zlib.compress(b"{}"), "deflate")
    assert refused.value.headers["Accept-Encoding"] == "gzip, identity"
    with pytest.raises(PayloadTooLarge):
        await _read(_bomb(64 * 1024 * 1024), "gzip", length=False)
    with pytest.raises(BadRequest):
        await _read(gzip.compress(b""), "gzip")


async def test_without_encodings_gzip_stays_refused() -> None:
    async def receive() -> Message:
        raise AssertionError("nothing is read")

    with pytest.raises(UnsupportedMediaType):
        await read_limited(receive, "10", LIMIT, content_encoding="gzip")
