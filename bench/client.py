"""A minimal HTTP/1.1 client for the bench's few control requests (the load itself is wrk's)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson

_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


class BenchClientError(RuntimeError):
    """A control request (register, login, pre-fill) did not get the answer it needs."""


async def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout_s: float = _TIMEOUT_S,
) -> Reply:
    """One request on a fresh connection (``Connection: close``, so the body ends at EOF)."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Connection: close",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head + body)
            await writer.drain()
            raw = await reader.read(-1)
        finally:
            writer.close()
    return _parse(raw)


def _parse(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise BenchClientError(f"not an HTTP response: {raw[:200]!r}")
    chunked = any(
        line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower()
        for line in header_lines
    )
    return Reply(int(parts[1]), _unchunk(body) if chunked else body)


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


async def post_json(
    port: int, path: str, body: bytes, token: str | None = None, timeout_s: float = _TIMEOUT_S
) -> Reply:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await request(port, "POST", path, body, headers, timeout_s)


@dataclass(frozen=True, slots=True)
class Account:
    user_id: str
    token: str


async def register_and_login(port: int, email: str, password: str) -> Account:
    """A fresh account and its bearer token."""
    form = orjson.dumps({"email": email, "password": password})
    created = await post_json(port, "/api/v1/auth/register", form)
    if created.status != 201:
        raise BenchClientError(f"register answered {created.status}: {created.body[:300]!r}")
    logged_in = await post_json(port, "/api/v1/auth/login", form)
    if logged_in.status != 200:
        raise BenchClientError(f"login answered {logged_in.status}: {logged_in.body[:300]!r}")
    user = created.json()
    token = logged_in.json()
    if not isinstance(user, dict) or not isinstance(token, dict):
        raise BenchClientError("register or login answered something other than an object")
    return Account(user_id=str(user["id"]), token=str(token["access_token"]))


async def ingest_key(port: int, account: Account, name: str) -> Account:
    """The account with one of its API keys of scope ``ingest`` in place of its token."""
    body = orjson.dumps({"name": name, "scope": "ingest"})
    made = await post_json(port, "/api/v1/keys", body, account.token)
    found = made.json() if made.status == 201 else None
    if not isinstance(found, dict):
        raise BenchClientError(f"creating a key answered {made.status}: {made.body[:300]!r}")
    return Account(user_id=account.user_id, token=str(found["key"]))
