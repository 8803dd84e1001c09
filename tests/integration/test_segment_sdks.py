"""The real Segment and RudderStack libraries, unmodified, against a running ``eventflow up``.

Each sends track, identify and page calls and a flush of 1,000 messages to a server on
PostgreSQL + Redis: every message is stored exactly once (counted by its ``messageId``) and
completed by the embedded worker; the same batch sent again stores nothing new. And what no
library sends, against the same server: gzip bombs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import os
import socket
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
import pytest
import rudderstack.analytics as rudder
import segment.analytics as segment

from testkit import REPO_ROOT, EventflowProcess
from testkit.binaries import require_service
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.slow

NODE_HARNESS = REPO_ROOT / "tests" / "sdk" / "node"
FLUSH = 1000
# The calls before the flush: track, identify, page.
CALLS = 3
# Far above what the server needs; reached only when it does not deliver.
PATIENCE_S = 90.0
MB = 1024 * 1024


class Server:
    def __init__(self, proc: EventflowProcess, database_url: str) -> None:
        self.proc = proc
        self.database_url = database_url
        self.url = proc.url
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            account = {"email": f"sdk-{os.urandom(4).hex()}@example.com", "password": "12345678"}
            assert client.post("/api/v1/auth/register", json=account).status_code == 201
            login = client.post("/api/v1/auth/login", json=account)
            self.token: str = login.json()["access_token"]
            bearer = {"Authorization": f"Bearer {self.token}"}
            made = client.post(
                "/api/v1/keys", json={"name": "sdk", "scope": "ingest"}, headers=bearer
            )
            assert made.status_code == 201, made.text
        #: An ingest key: what a Segment library is given as its write key.
        self.write_key: str = made.json()["key"]

    async def messages(self) -> dict[str, list[str]]:
        """Each stored message's id: the statuses of the events that carry it."""
        connection = await asyncpg.connect(self.database_url)
        try:
            rows = await connection.fetch(
                "SELECT payload::jsonb ->> 'messageId' AS id, status FROM events"
            )
        finally:
            await connection.close()
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row["id"], []).append(row["status"])
        return found

    async def wait_completed(self, expected: set[str]) -> dict[str, list[str]]:
        """The stored messages once every expected one is completed (or the patience is up)."""
        deadline = asyncio.get_running_loop().time() + PATIENCE_S
        while True:
            found = await self.messages()
            done = all(found.get(i) == ["completed"] for i in expected)
            if done or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.25)


@pytest.fixture
def server(fresh_postgres: str, redis_url: str, tmp_path: Path) -> Iterator[Server]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("EVENTFLOW_") or name.startswith("EVENTFLOW_TEST_")
    }
    env.update(
        {
            "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
            "EVENTFLOW_DATABASE_URL": fresh_postgres,
            "EVENTFLOW_REDIS_URL": redis_url,
            "EVENTFLOW_REDIS_PREFIX": "sdk" + os.urandom(4).hex(),
            "EVENTFLOW_JWT_SECRET": TEST_SECRET,
            "EVENTFLOW_LOG_LEVEL": "info",
        }
    )
    proc = EventflowProcess("up", env, tmp_path / "up.log")
    proc.start()
    try:
        proc.wait_ready()
        yield Server(proc, fresh_postgres)
    finally:
        proc.kill()


def _expected(run: str, library: str) -> set[str]:
    calls = {f"{run}-{library}-{name}" for name in ("track", "identify", "page")}
    return calls | {f"{run}-{library}-flush-{n}" for n in range(FLUSH)}


def _send_with_python_library(client: Any, run: str, library: str) -> None:
    """The same calls through segment-analytics-python or rudder-sdk-python (one API)."""
    mid = f"{run}-{library}"
    client.track(
        user_id="ada",
        event="Order Completed",
        properties={"total": 42.5},
        message_id=f"{mid}-track",
    )
    client.identify(user_id="ada", traits={"plan": "pro"}, message_id=f"{mid}-identify")
    client.page(user_id="ada", name="Home", properties={"path": "/"}, message_id=f"{mid}-page")
    for n in range(FLUSH):
        client.track(
            anonymous_id=f"anon-{n}",
            event="Item Viewed",
            properties={"n": n},
            message_id=f"{mid}-flush-{n}",
        )
    client.flush()
    client.join()


async def _check_delivery(server: Server, run: str, library: str) -> None:
    expected = _expected(run, library)
    found = await server.wait_completed(expected)
    missing = expected - set(found)
    assert not missing, sorted(missing)[:5]
    duplicated = {i: s for i, s in found.items() if len(s) != 1}
    assert not duplicated, list(duplicated.items())[:5]
    assert {i: found[i] for i in expected if found[i] != ["completed"]} == {}
    assert set(found) == expected


async def _replay_stores_nothing(server: Server, run: str, library: str) -> None:
    """The flush's messages POSTed again, as one batch and as a retry would: nothing new."""
    before = await server.messages()
    batch = [
        {
            "type": "track",
            "event": "Item Viewed",
            "anonymousId": f"anon-{n}",
            "messageId": f"{run}-{library}-flush-{n}",
            "properties": {"n": n},
        }
        for n in range(0, FLUSH, 2)
    ]
    auth = base64.b64encode(f"{server.write_key}:".encode()).decode()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for _ in range(2):
            again = await client.post(
                "/v1/batch", json={"batch": batch}, headers={"Authorization": f"Basic {auth}"}
            )
            assert (again.status_code, again.json()) == (200, {"success": True})
    assert await server.messages() == before


#: The Python libraries' clients; RudderStack's gzips every batch (its default, said here).
PYTHON_LIBRARIES = {"segment": (segment.Client, {}), "rudder": (rudder.Client, {"gzip": True})}


@pytest.mark.parametrize("library", PYTHON_LIBRARIES)
async def test_python_library(server: Server, library: str) -> None:
    errors: list[Any] = []
    make_client, options = PYTHON_LIBRARIES[library]
    client = make_client(
        server.write_key,
        host=server.url,
        on_error=lambda e, _: errors.append(e),
        max_queue_size=FLUSH * 2,
        upload_size=100,
        **options,
    )
    run = os.urandom(4).hex()

    await asyncio.to_thread(_send_with_python_library, client, run, library)

    assert errors == []
    await _check_delivery(server, run, library)
    await _replay_stores_nothing(server, run, library)


@pytest.fixture(scope="session")
def node_harness() -> Path:
    """tests/sdk/node with its locked packages installed (``npm ci``, once: node_modules stays)."""
    node = require_service("node", "nodejs")
    npm = require_service("npm", "npm")
    installed = NODE_HARNESS / "node_modules" / ".package-lock.json"
    lock = NODE_HARNESS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_HARNESS,
            check=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
    assert Path(node).exists()
    return NODE_HARNESS


async def test_segment_analytics_node(server: Server, node_harness: Path) -> None:
    run = os.urandom(4).hex()

    done = await asyncio.to_thread(
        subprocess.run,
        ["node", "send.js", server.url, server.write_key, run, str(FLUSH)],
        cwd=node_harness,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"sent": FLUSH + CALLS, "errors": []}
    await _check_delivery(server, run, "node")
    await _replay_stores_nothing(server, run, "node")


def _rss(pid: int) -> int:
    """VmRSS of the server and of the processes it started, in bytes."""
    total = 0
    for each in (pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))):
        status = Path(f"/proc/{each}/status").read_text()
        kilobytes = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        total += int(kilobytes.split()[1]) * 1024
    return total


def _gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of ``inflated`` zero bytes (about a thousandth of that), built in pieces."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MB)
    return b"".join(deflate.compress(zeros) for _ in range(inflated // MB)) + deflate.flush()


def _upload(port: int, head: bytes, body: bytes, piece: int = 65536) -> tuple[int, dict[str, Any]]:
    """Send ``head`` and ``body`` in pieces while reading the answer, as a blocking client does
    (the server answers a refused body before it has all of it, and closes)."""

    def send() -> None:
        with contextlib.suppress(OSError):  # reset or broken pipe: the server stopped reading
            for start in range(0, len(body), piece):
                sock.sendall(body[start : start + piece])

    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S) as sock:
        sock.sendall(head)
        sender = threading.Thread(target=send)
        sender.start()
        received = b""
        # Linux hands out what arrived before a reset, so the answer is read even then.
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                received += data
        sender.join()
    head_part, _, answer = received.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/problem+json", received[:300]
    length = int(headers["content-length"])
    return int(lines[0].split()[1]), orjson.loads(answer[:length])


def _chunked(body: bytes, piece: int = 65536) -> bytes:
    framed = [
        b"%x\r\n%s\r\n" % (len(body[i : i + piece]), body[i : i + piece])
        for i in range(0, len(body), piece)
    ]
    return b"".join(framed) + b"0\r\n\r\n"


def test_a_gzip_bomb_gets_413_with_memory_flat(server: Server) -> None:
    bomb = _gzip_bomb(1024 * MB)
    assert len(bomb) < 1.1 * MB
    # 300 KB on the wire (within the 500 KB limit as sent), 300 MB inflated.
    small_bomb = _gzip_bomb(300 * MB)
    auth = base64.b64encode(f"{server.write_key}:".encode()).decode()
    fields = [
        "POST /v1/batch HTTP/1.1",
        "Host: eventflow",
        f"Authorization: Basic {auth}",
        "Content-Type: application/json",
        "Content-Encoding: gzip",
    ]
    uploads = [
        ([*fields, f"Content-Length: {len(bomb)}"], bomb),
        ([*fields, "Transfer-Encoding: chunked"], _chunked(bomb)),
        ([*fields, f"Content-Length: {len(small_bomb)}"], small_bomb),
    ]
    before = _rss(server.proc.pid)

    for lines, body in uploads:
        status, problem = _upload(
            server.proc.port, ("\r\n".join(lines) + "\r\n\r\n").encode(), body
        )
        assert (status, problem["status"], problem["code"]) == (413, 413, "payload-too-large")

    assert _rss(server.proc.pid) - before < 50 * MB
    # None of it was stored, and the server still takes a good request.
    good = gzip.compress(orjson.dumps({"batch": [{"type": "identify", "userId": "u"}]}))
    response = httpx.post(
        f"{server.url}/v1/batch",
        content=good,
        headers={
            "Authorization": f"Basic {auth}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert (response.status_code, response.json()) == (200, {"success": True})
