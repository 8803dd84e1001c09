"""The dashboard's "Sign out" ends the session on the server, and signs out even without one."""

from __future__ import annotations

import os
import time

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import EventflowServer
from tests.e2e.dashboard import Dashboard

pytestmark = pytest.mark.e2e


def _token(dashboard: Dashboard) -> str:
    token: str = dashboard.page.evaluate(
        "JSON.parse(sessionStorage.getItem('eventflow.session')).token"
    )
    return token


def _me(server: EventflowServer, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{server.url}/api/v1/auth/me", headers=headers, timeout=5).status_code


def test_sign_out_ends_the_token_on_the_server(
    dashboard: Dashboard, shared_server: EventflowServer
) -> None:
    dashboard.register(f"signout-{os.urandom(5).hex()}@example.com")
    token = _token(dashboard)
    assert _me(shared_server, token) == 200

    dashboard.sign_out()
    expect(dashboard.page.locator("#signin-notice")).to_have_text("You signed out.")
    # A copy of the token (another tab, a leaked log) is worth nothing now.
    deadline = time.monotonic() + 5
    while _me(shared_server, token) != 401:
        assert time.monotonic() < deadline, "the token still works after signing out"
        time.sleep(0.05)


def test_sign_out_works_while_the_server_is_away(
    browser: Browser, own_server: EventflowServer
) -> None:
    with Dashboard.open(browser, own_server.url) as dashboard:
        # A request the browser sends as the server shuts down fails in one of three ways:
        # refused after it is gone, no answer, or a reset (the request arrived on a kept-alive
        # connection just as the server closed it, unread).
        dashboard.expected_errors += [
            "ERR_CONNECTION_REFUSED",
            "ERR_EMPTY_RESPONSE",
            "ERR_CONNECTION_RESET",
        ]
        dashboard.register(f"offline-{os.urandom(5).hex()}@example.com")
        own_server.stop()
        dashboard.sign_out()
        expect(dashboard.page.locator("#app")).to_be_hidden()
        assert dashboard.page.evaluate("sessionStorage.getItem('eventflow.session')") is None
