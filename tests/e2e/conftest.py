"""Fixtures for browser tests: a real ``eventflow up`` process and Debian's headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from eventflow.dashboard import STATIC_DIR
from testkit import EventflowProcess, free_port, require_service
from tests.e2e.dashboard import Dashboard

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
START_TIMEOUT_S = 30.0

# Fast processing so a test sees every state change within a second or two.
SERVER_ENV = {
    "EVENTFLOW_SIMULATE_LATENCY_MS": "30",
    "EVENTFLOW_RETRY_BASE_MS": "50",
    "EVENTFLOW_RETRY_MAX_MS": "200",
    "EVENTFLOW_MAX_ATTEMPTS": "3",
    "EVENTFLOW_DISPATCH_INTERVAL_MS": "50",
    "EVENTFLOW_LOG_LEVEL": "warning",
    # The suite runs load tests (the bench's) beside these on the same disk; a commit they stall
    # for over the default second would be a 503 that no dashboard test is about (outages have
    # tests of their own).
    "EVENTFLOW_COMMIT_TIMEOUT_MS": "10000",
}


class EventflowServer:
    """``eventflow up`` on a free port, embedded (SQLite) in a data directory of its own; it
    can be stopped and started again on the same port."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = env or {}
        self.port = free_port()
        self.data_dir = root / "data"
        self._proc: EventflowProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
        env |= SERVER_ENV | self.env | {"EVENTFLOW_DATA_DIR": str(self.data_dir)}
        self._proc = EventflowProcess("up", env, self.root / "server.log", port=self.port)
        self._proc.start()
        try:
            self._proc.wait_ready()
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=15)
            self._proc = None

    def reset_data(self) -> None:
        """A new data directory: a new database and a new JWT secret (every token is void)."""
        self.data_dir = self.root / f"data-{time.monotonic_ns()}"


@pytest.fixture(scope="package")
def chromium_path() -> str:
    return require_service(CHROMIUM, "chromium")


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    # Package scope, not session: Playwright's sync API runs an event loop in this thread for
    # as long as it is open, and the async tests that follow need the thread to themselves.
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


def _server(prefix: str, env: dict[str, str] | None = None) -> Iterator[EventflowServer]:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    server = EventflowServer(root, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="package")
def shared_server(chromium_path: str) -> Iterator[EventflowServer]:
    """One server for the suite; every test signs up a user of its own, so none share events."""
    yield from _server("eventflow-e2e-")


@pytest.fixture
def own_server(chromium_path: str) -> Iterator[EventflowServer]:
    """A server this test may stop, restart and wipe."""
    yield from _server("eventflow-e2e-own-")


@pytest.fixture
def static_origin() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def cors_server(chromium_path: str, static_origin: str) -> Iterator[EventflowServer]:
    """A server that lets a page from ``static_origin`` call it."""
    yield from _server("eventflow-e2e-cors-", {"EVENTFLOW_CORS_ORIGINS": static_origin})


@pytest.fixture
def static_site(static_origin: str, cors_server: EventflowServer, tmp_path: Path) -> Iterator[str]:
    """The dashboard folder served by Python's plain http.server, configured for ``cors_server``."""
    site = tmp_path / "site"
    shutil.copytree(STATIC_DIR, site)
    (site / "assets" / "config.js").write_text(
        f'export default {{ apiBase: "{cors_server.url}" }};\n'
    )
    port = static_origin.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            port,
            "--bind",
            "127.0.0.1",
            "--directory",
            str(site),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                httpx.get(static_origin, timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.05)
        yield static_origin
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def dashboard(browser: Browser, shared_server: EventflowServer) -> Iterator[Dashboard]:
    with Dashboard.open(browser, shared_server.url) as dash:
        yield dash


@pytest.fixture(scope="package")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
