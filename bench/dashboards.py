"""Open dashboards: live streams (``GET /api/v1/stream``) held open as the dashboard holds them."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote

from bench.client import Account, BenchClientError, post_json
from eventflow.api.stream_access import MAX_STREAMS_PER_USER

TICKET_PATH = "/api/v1/stream/ticket"
STREAM_PATH = "/api/v1/stream"
_OPEN_TIMEOUT_S = 60.0


def accounts_for(dashboards: int) -> int:
    """How many accounts hold ``dashboards`` streams: EventFlow caps one account's streams."""
    return max(1, math.ceil(dashboards / MAX_STREAMS_PER_USER))


@dataclass(slots=True)
class _Stream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    metrics: int = 0


async def _open(port: int, account: Account) -> _Stream:
    """A ticket traded for the account's token, then the stream, read up to its headers."""
    issued = await post_json(port, TICKET_PATH, b"", account.token)
    if issued.status != 200:
        raise BenchClientError(f"stream ticket answered {issued.status}: {issued.body[:300]!r}")
    answer = issued.json()
    if not isinstance(answer, dict):
        raise BenchClientError("the stream ticket is not an object")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = f"{STREAM_PATH}?ticket={quote(str(answer['ticket']))}"
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        writer.close()
        raise BenchClientError(f"the stream answered {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return _Stream(reader, writer)


@dataclass(slots=True)
class OpenDashboards:
    streams: list[_Stream]
    #: Seconds from the first ticket until every stream had its first metrics.
    open_s: float = 0.0

    @property
    def metrics_frames(self) -> int:
        return sum(s.metrics for s in self.streams)


async def _read(stream: _Stream) -> None:
    # Chunked framing puts the chunk sizes on lines of their own; the frames' lines are whole
    # inside a chunk, since each frame is written in one piece.
    while line := await stream.reader.readline():
        if line.startswith(b"event: metrics"):
            stream.metrics += 1


@asynccontextmanager
async def open_dashboards(
    port: int, accounts: Sequence[Account], count: int
) -> AsyncIterator[OpenDashboards]:
    """``count`` live streams spread over ``accounts``, each read as it arrives; the block
    starts once every stream has had its first metrics (the dashboard's opening work done)."""
    started = time.monotonic()
    owners = [accounts[n % len(accounts)] for n in range(count)]
    opened = await asyncio.gather(*(_open(port, a) for a in owners), return_exceptions=True)
    found = OpenDashboards([s for s in opened if isinstance(s, _Stream)])
    readers = [asyncio.create_task(_read(s)) for s in found.streams]
    try:
        for failed in opened:
            if isinstance(failed, BaseException):
                raise failed
        async with asyncio.timeout(_OPEN_TIMEOUT_S):
            while any(s.metrics == 0 for s in found.streams):
                if any(t.done() for t in readers):
                    raise BenchClientError("a live stream ended before its first metrics")
                await asyncio.sleep(0.05)
        found.open_s = time.monotonic() - started
        yield found
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for stream in found.streams:
            stream.writer.close()
