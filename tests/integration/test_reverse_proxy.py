"""deploy/nginx/eventflow.conf, run: nginx accepts it, serves the API over TLS, hands EventFlow
the client's address (EVENTFLOW_TRUSTED_PROXIES), and passes the event stream frame by frame.

The example's addresses are this machine's: its ports are free ones, its certificate a fresh
self-signed one, and nginx connects to EventFlow from 127.0.0.2 (`proxy_bind`), so that the proxy
and the test's clients (127.0.0.3, 127.0.0.4) are different addresses, as on a real network.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit import REPO_ROOT, EventflowProcess, free_port, require_service

pytestmark = pytest.mark.slow

EXAMPLE = REPO_ROOT / "deploy" / "nginx" / "eventflow.conf"
PROXY_ADDRESS = "127.0.0.2"
CLIENTS = ("127.0.0.3", "127.0.0.4")
LOGINS_PER_ADDRESS = 3


def _adapted(upstream_port: int, http_port: int, https_port: int, tmp: Path) -> str:
    text = EXAMPLE.read_text()
    replacements = {
        "    server 127.0.0.1:3000;\n    server 127.0.0.1:3001;\n": (
            f"    server 127.0.0.1:{upstream_port};\n"
        ),
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "/etc/letsencrypt/live/events.example.com/fullchain.pem": str(tmp / "cert.pem"),
        "/etc/letsencrypt/live/events.example.com/privkey.pem": str(tmp / "key.pem"),
        "    proxy_http_version 1.1;\n": (
            f"    proxy_http_version 1.1;\n    proxy_bind {PROXY_ADDRESS};\n"
        ),
    }
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def _nginx_conf(tmp: Path) -> Path:
    paths = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp / "nginx.conf"
    conf.write_text(
        "user root;\nworker_processes 1;\ndaemon off;\n"
        f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} warn;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log off;\n{paths}    include {tmp / 'eventflow.conf'};\n}}\n"
    )
    return conf


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    openssl = require_service("openssl", "openssl")
    subject = ["-subj", "/CN=events.example.com", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")]
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return tmp_path / "cert.pem"


@pytest.fixture
def proxied(tmp_path: Path, certificate: Path) -> Iterator[str]:
    """``eventflow up`` behind nginx configured as the example; answers the HTTPS base URL."""
    nginx = require_service("/usr/sbin/nginx", "nginx")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    env = {
        **inherited,
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_TRUSTED_PROXIES": PROXY_ADDRESS,
        "EVENTFLOW_LOGIN_RATE_PER_ADDRESS": f"{LOGINS_PER_ADDRESS}/minute",
    }
    server = EventflowProcess("up", env, tmp_path / "up.log")
    https_port = free_port()
    (tmp_path / "eventflow.conf").write_text(
        _adapted(server.port, free_port(), https_port, tmp_path)
    )
    conf = _nginx_conf(tmp_path)
    checked = subprocess.run(
        [nginx, "-t", "-e", "stderr", "-c", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    proxy = subprocess.Popen(
        [nginx, "-e", "stderr", "-c", str(conf)], stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:
        server.start()
        server.wait_ready()
        yield f"https://127.0.0.1:{https_port}"
    finally:
        server.kill()
        proxy.terminate()
        proxy.wait(30)


def _client(base_url: str, certificate: Path, address: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(certificate))
    transport = httpx.HTTPTransport(verify=context, local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=30)


def test_the_api_answers_through_the_proxy_over_tls(proxied: str, certificate: Path) -> None:
    with _client(proxied, certificate, CLIENTS[0]) as client:
        assert client.get("/health").status_code == 200


def test_each_client_is_known_by_its_own_address(proxied: str, certificate: Path) -> None:
    wrong = {"email": "someone@example.com", "password": "not the password"}
    answers: dict[str, list[int]] = {}
    for address in CLIENTS:
        with _client(proxied, certificate, address) as client:
            answers[address] = [
                # A forged header changes nothing: the proxy appends the real address.
                client.post(
                    "/api/v1/auth/login",
                    json=wrong,
                    headers={"X-Forwarded-For": f"10.0.0.{n}"},
                ).status_code
                for n in range(LOGINS_PER_ADDRESS + 2)
            ]
    # Each address has its own quota: behind a proxy EventFlow does not trust, both would share
    # the proxy's, and the second client would be refused from its first attempt. One attempt
    # more is admitted when a minute boundary falls among them (the sliding window weighs the
    # previous minute's count by the part of it still inside the window), never two.
    for address, statuses in answers.items():
        refused = statuses.count(429)
        assert refused in (1, 2), (address, statuses)
        assert statuses == [401] * (len(statuses) - refused) + [429] * refused, (address, statuses)


def test_the_event_stream_flows_frame_by_frame(proxied: str, certificate: Path) -> None:
    account = {"email": "stream@example.com", "password": "correct horse battery"}
    with _client(proxied, certificate, CLIENTS[0]) as client:
        assert client.post("/api/v1/auth/register", json=account).status_code == 201
        token = client.post("/api/v1/auth/login", json=account).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        ticket = client.post("/api/v1/stream/ticket", headers=headers).json()["ticket"]
        events: list[tuple[str, float]] = []
        with client.stream("GET", "/api/v1/stream", params={"ticket": ticket}) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    events.append((line.removeprefix("event: "), time.monotonic()))
                if len(events) == 3:
                    break
    names = [name for name, _ in events]
    assert names[0] == "hello"
    assert "metrics" in names
    # Frames arrive as they are sent, a tick apart, not in one lump when the stream ends.
    assert events[-1][1] - events[0][1] > 0.5
