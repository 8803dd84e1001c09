"""``/docs`` in headless Chromium with every other host unreachable: Swagger UI from this server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect

from tests.e2e.conftest import EventflowServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
TIMEOUT_MS = 15_000
# Records what the browser refused under the page's policy, whether or not it logs it.
_RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@dataclass
class OfflinePage:
    """A page that can reach the EventFlow server and nothing else."""

    page: Page
    origin: str
    elsewhere: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = route.request.url
        if url == self.origin or url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.elsewhere.append(url)
            route.abort("internetdisconnected")

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.cspViolations")
        return found


@pytest.fixture
def offline(browser: Browser, shared_server: EventflowServer) -> Iterator[OfflinePage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        offline = OfflinePage(page, shared_server.url)
        page.route("**/*", offline.route)
        page.on("console", offline.on_console)
        page.add_init_script(_RECORD_VIOLATIONS)
        yield offline
    finally:
        context.close()


def _policy(header: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def test_swagger_ui_renders_with_no_other_host_and_a_strict_policy(
    offline: OfflinePage, artifacts: Path
) -> None:
    page = offline.page
    response = page.goto(offline.origin + "/docs")
    assert response is not None and response.status == 200
    header = response.headers["content-security-policy"]
    policy = _policy(header)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert "unsafe" not in header
    assert response.headers["x-content-type-options"] == "nosniff"

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("EventFlow")
    for path in ("/api/v1/events", "/api/v1/auth/login", "/api/v1/stats"):
        expect(page.locator(f'.opblock-summary-path[data-path="{path}"]').first).to_be_visible()
    paths = httpx.get(offline.origin + "/api/v1/openapi.json").json()["paths"]
    expect(page.locator(".opblock")).to_have_count(sum(len(ops) for ops in paths.values()))
    page.screenshot(path=str(artifacts / "api-docs-offline.png"))

    assert offline.elsewhere == [], f"requests to other hosts: {offline.elsewhere}"
    assert offline.violations() == []
    assert offline.console_errors == []


def test_authorize_signs_in_with_the_password_flow_and_try_it_out_works(
    offline: OfflinePage, shared_server: EventflowServer
) -> None:
    email = f"docs-{os.urandom(5).hex()}@example.com"
    account = {"email": email, "password": PASSWORD}
    registered = httpx.post(f"{shared_server.url}/api/v1/auth/register", json=account)
    assert registered.status_code == 201, registered.text
    page = offline.page
    page.goto(offline.origin + "/docs")

    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    # The password flow's form, beside those of the API keys (Bearer and Basic).
    password_flow = dialog.locator(".auth-container").filter(has_text="OAuth2PasswordBearer")
    password_flow.locator("input[data-name=username]").fill(email)
    password_flow.locator("input[data-name=password]").fill(PASSWORD)
    password_flow.locator("button.modal-btn.authorize").click()
    expect(password_flow.locator("button.modal-btn", has_text="Logout")).to_be_visible()
    password_flow.locator("button.btn-done").click()

    me = page.locator(".opblock-get").filter(
        has=page.locator('.opblock-summary-path[data-path="/api/v1/auth/me"]')
    )
    me.locator(".opblock-summary").click()
    me.get_by_role("button", name="Try it out").click()
    me.get_by_role("button", name="Execute").click()
    answer = me.locator(".live-responses-table tr.response")
    expect(answer.locator(".response-col_status")).to_have_text("200")
    expect(answer.locator(".microlight").first).to_contain_text(email)

    assert offline.elsewhere == []
    assert offline.violations() == []
    assert offline.console_errors == []
