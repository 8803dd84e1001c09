"""The ingest lane on a real ``eventflow up``: the same answers as the ordinary way, answers in
order on a connection, keyed events, and clients that leave before the commit."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import httpx
import orjson
import pytest

from testkit import EventflowProcess

pytestmark = pytest.mark.slow

EVENTS = "/api/v1/events"
PATIENCE_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EventflowProcess, str]]:
    workdir = tmp_path_factory.mktemp("lane")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("EVENTFLOW_") or name.startswith("EVENTFLOW_TEST_")
    }
    env["EVENTFLOW_DATA_DIR"] = str(workdir / "data")
    proc = EventflowProcess("up", env, workdir / "up.log")
    proc.start()
    try:
        proc.wait_ready()
        account = {"email": "lane@example.com", "password": "12345678"}
        with httpx.Client(base_url=proc.url, timeout=5) as client:
            assert client.post("/api/v1/auth/register", json=account).status_code == 201
            token = client.post("/api/v1/auth/login", json=account).json()["access_token"]
            # One request the ordinary way verifies the token; the lane takes cached ones.
            assert client.get(EVENTS, headers={"Authorization": f"Bearer {token}"}).is_success
        yield proc, token
    finally:
        proc.kill()


def _post(token: str, body: bytes, *extra: str, chunked: bool = False) -> bytes:
    lines = [f"POST {EVENTS} HTTP/1.1", "Host: t", f"Authorization: Bearer {token}"]
    lines += ["Content-Type: application/json", *extra]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join([*lines, "", ""]).encode() + body


async def _exchange(
    port: int, data: bytes, answers: int
) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``data`` in one write, then read ``answers`` answers in the order they come."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        out = []
        async with asyncio.timeout(PATIENCE_S):
            for _ in range(answers):
                head = await reader.readuntil(b"\r\n\r\n")
                status_line, *fields = head.decode("latin-1").split("\r\n")[:-2]
                headers = dict(f.split(": ", 1) for f in fields)
                body = await reader.readexactly(int(headers["content-length"]))
                out.append((int(status_line.split()[1]), headers, body))
        return out
    finally:
        writer.close()


async def test_the_lane_answers_as_the_ordinary_way_does(
    server: tuple[EventflowProcess, str],
) -> None:
    proc, token = server
    body = b'{"type": "ORDER_CREATED", "payload": {"n": 1}}'
    lane, ordinary = [
        (await _exchange(proc.port, _post(token, body, "X-Request-ID: r-" + name, chunked=c), 1))[0]
        for name, c in (("lane", False), ("ordinary", True))
    ]
    assert lane[0] == ordinary[0] == 202
    assert lane[1].keys() == ordinary[1].keys()
    assert (lane[1]["x-request-id"], ordinary[1]["x-request-id"]) == ("r-lane", "r-ordinary")
    lane_body, ordinary_body = orjson.loads(lane[2]), orjson.loads(ordinary[2])
    assert lane_body.keys() == ordinary_body.keys() == {"id", "status", "created_at"}
    async with httpx.AsyncClient(base_url=proc.url, timeout=5) as client:
        auth = {"Authorization": f"Bearer {token}"}
        for answer in (lane_body, ordinary_body):
            stored = (await client.get(f"{EVENTS}/{answer['id']}", headers=auth)).json()
            assert stored["payload"] == {"n": 1} and stored["source"] == {"kind": "token"}
    # What the lane does not accept at once gets the ordinary way's refusal.
    refused = await _exchange(proc.port, _post(token, b'{"type": "no spaces"}'), 1)
    assert refused[0][0] == 422 and refused[0][1]["content-type"] == "application/problem+json"
    unknown = await _exchange(proc.port, _post("not-a-token", body), 1)
    assert unknown[0][0] == 401


async def test_a_connections_answers_keep_the_order_of_its_requests(
    server: tuple[EventflowProcess, str],
) -> None:
    proc, token = server
    body = b'{"type": "ORDER_CREATED"}'
    # Pipelined: the health check must wait for the event's commit to be answered.
    health = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
    answers = await _exchange(proc.port, _post(token, body) + health + _post(token, body), 3)
    assert [status for status, _, _ in answers] == [202, 200, 202]
    first, last = orjson.loads(answers[0][2])["id"], orjson.loads(answers[2][2])["id"]
    assert first < last  # ids grow with time: the first request was stored first


async def test_a_keyed_event_sent_twice_is_stored_once(
    server: tuple[EventflowProcess, str],
) -> None:
    proc, token = server
    body = b'{"type": "PAYMENT_PROCESSED"}'
    key = f"Idempotency-Key: lane-{os.urandom(4).hex()}"
    answers = await _exchange(proc.port, _post(token, body, key) + _post(token, body, key), 2)
    assert [status for status, _, _ in answers] == [202, 202]
    assert orjson.loads(answers[0][2])["id"] == orjson.loads(answers[1][2])["id"]


async def test_an_event_whose_client_left_before_the_commit_is_stored(
    server: tuple[EventflowProcess, str],
) -> None:
    proc, token = server
    marker = os.urandom(6).hex()
    body = b'{"type": "USER_SIGNUP", "payload": {"marker": "%s"}}' % marker.encode()
    for _ in range(20):
        _, writer = await asyncio.open_connection("127.0.0.1", proc.port)
        writer.write(_post(token, body))
        await writer.drain()
        writer.close()
    async with httpx.AsyncClient(base_url=proc.url, timeout=5) as client:
        auth = {"Authorization": f"Bearer {token}"}
        async with asyncio.timeout(PATIENCE_S):
            while True:
                page = (
                    await client.get(
                        EVENTS, params={"type": "USER_SIGNUP", "limit": 100}, headers=auth
                    )
                ).json()
                found = [e for e in page["items"] if e["payload"] == {"marker": marker}]
                if len(found) == 20:
                    break
                await asyncio.sleep(0.1)
        assert (await client.get("/health")).status_code == 200
    assert "Traceback" not in proc.log_path.read_text()
