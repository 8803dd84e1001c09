"""Every answer of a real ``eventflow up`` carries the security headers, whichever layer sent it:
ingest past the middleware, FastAPI's routes and errors, the HTTP protocol's refusals, pages."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

from testkit import EventflowProcess

pytestmark = pytest.mark.slow

EVENT = {"type": "ORDER_CREATED", "payload": {"n": 1}}
ACCOUNT = {"email": "headers@example.com", "password": "12345678"}


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    port: int
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("headers")
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVENTFLOW_")}
    env |= {"EVENTFLOW_DATA_DIR": str(workdir / "data"), "EVENTFLOW_LOG_LEVEL": "warning"}
    proc = EventflowProcess("up", env, workdir / "up.log")
    proc.start()
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=5) as client:
            assert client.post("/api/v1/auth/register", json=ACCOUNT).status_code == 201
            token = client.post("/api/v1/auth/login", json=ACCOUNT).json()["access_token"]
        yield Server(proc.url, proc.port, token)
    finally:
        proc.kill()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _assert_baseline(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], where
    assert response.headers.get_list("referrer-policy") == ["no-referrer"], where
    # Nothing names the server software for a scanner to look up.
    assert "server" not in response.headers, where


def _assert_problem(response: httpx.Response, status: int, slug: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    _assert_baseline(response)
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["type"] == (f"/problems/{slug}" if slug else "about:blank")


@pytest.mark.parametrize("origin", [None, "http://elsewhere.example"])
def test_ingest_answers_carry_the_headers_on_both_paths(
    client: httpx.Client, server: Server, origin: str | None
) -> None:
    # Without Origin DirectIngest hands the request to the route past the app's middleware;
    # with it, the request goes through the app (CORS) to the same route.
    headers = {**server.auth, **({"Origin": origin} if origin else {})}
    accepted = client.post("/api/v1/events", json=EVENT, headers=headers)
    assert accepted.status_code == 202
    assert accepted.headers["content-type"] == "application/json"
    _assert_baseline(accepted)
    assert accepted.headers["cache-control"] == "no-store"
    batch = client.post("/api/v1/events/batch", json={"events": [EVENT]}, headers=headers)
    assert batch.status_code == 202
    _assert_baseline(batch)

    bad_type = client.post("/api/v1/events", json={**EVENT, "type": "9"}, headers=headers)
    _assert_problem(bad_type, 422, "validation")
    no_token = client.post("/api/v1/events", json=EVENT, headers={"Authorization": "Bearer x"})
    _assert_problem(no_token, 401, "unauthorized")
    not_json = client.post(
        "/api/v1/events", content=b"{", headers={**headers, "Content-Type": "application/json"}
    )
    _assert_problem(not_json, 400, "malformed-json")
    text = client.post(
        "/api/v1/events", content=b"x", headers={**headers, "Content-Type": "text/plain"}
    )
    _assert_problem(text, 415, "unsupported-media-type")


def test_routes_and_their_errors_carry_the_headers(client: httpx.Client, server: Server) -> None:
    listed = client.get("/api/v1/events", headers=server.auth)
    assert listed.status_code == 200
    _assert_baseline(listed)
    assert listed.headers["cache-control"] == "no-store"
    me = client.get("/api/v1/auth/me", headers=server.auth)
    assert me.status_code == 200
    assert me.headers["cache-control"] == "no-store"
    login = client.post("/api/v1/auth/login", json=ACCOUNT)
    assert login.status_code == 200 and "access_token" in login.json()
    _assert_baseline(login)
    assert login.headers["cache-control"] == "no-store"

    health = client.get("/health")
    _assert_baseline(health)
    assert "cache-control" not in health.headers  # nothing private: no credentials were sent
    schema = client.get("/api/v1/openapi.json")
    _assert_baseline(schema)

    _assert_problem(client.get("/nowhere"), 404, None)
    _assert_problem(client.delete("/api/v1/events"), 405, None)
    _assert_problem(client.get("/api/v1/events?limit=0", headers=server.auth), 422, "validation")
    missing = client.get("/api/v1/events/" + "0" * 32, headers=server.auth)
    _assert_problem(missing, 404, "not-found")


def test_pages_and_files_carry_the_headers(client: httpx.Client) -> None:
    for path in ("/", "/docs", "/problems/validation"):
        page = client.get(path, headers={"Accept": "text/html"})
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html"), path
        _assert_baseline(page)
        assert page.headers["content-security-policy"].startswith("default-src 'none'"), path
    for path in (
        "/assets/app.css",
        "/assets/js/main.js",
        "/docs/swagger-init.js",
        "/docs/vendor/swagger-ui-bundle.js",
        "/docs/vendor/swagger-ui.css",
    ):
        asset = client.get(path)
        assert asset.status_code == 200, path
        _assert_baseline(asset)
    _assert_baseline(client.get("/assets/nope.js"))


def test_the_problem_type_of_an_error_answers_on_the_server(
    client: httpx.Client, server: Server
) -> None:
    refused = client.post("/api/v1/events", json={**EVENT, "delay_ms": -1}, headers=server.auth)
    kind = refused.json()["type"]
    assert kind == "/problems/validation"
    described = client.get(kind, headers={"Accept": "application/json"})
    assert described.status_code == 200
    assert described.json()["title"] == refused.json()["title"]
    assert described.json()["status"] == 422
    _assert_baseline(described)
    unknown = client.get("/problems/no-such-problem", headers={"Accept": "application/json"})
    _assert_problem(unknown, 404, "not-found")


def test_the_protocols_own_431_carries_the_headers(server: Server) -> None:
    fields = "".join(f"X-Field-{n}: {n}\r\n" for n in range(150))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: eventflow\r\n{fields}\r\n".encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer: {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        while len(body) < int(headers["content-length"]):
            body += sock.recv(65536)
    assert lines[0].startswith("HTTP/1.1 431 ")
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert orjson.loads(body)["type"] == "/problems/headers-too-large"
    assert head.lower().count(b"\r\ncontent-length:") == 1
