"""A page object for EventFlow Prime: what a user does, named as a user would say it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect

PASSWORD = "correct horse battery"
TIMEOUT_MS = 15_000


class Dashboard:
    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        # Substrings of console errors a test expects (the server going away, a 401).
        self.expected_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)

    @classmethod
    @contextmanager
    def open(
        cls, browser: Browser, url: str, *, width: int = 1440, height: int = 900
    ) -> Iterator[Dashboard]:
        context = browser.new_context(viewport={"width": width, "height": height})
        try:
            dashboard = cls(context.new_page(), url)
            dashboard.page.goto(url)
            yield dashboard
            dashboard.assert_no_console_errors()
        finally:
            context.close()

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def assert_no_console_errors(self) -> None:
        unexpected = [e for e in self.errors if not any(x in e for x in self.expected_errors)]
        assert unexpected == [], f"browser console errors: {unexpected}"

    # -- signing in ---------------------------------------------------------------------------

    def register(self, email: str, password: str = PASSWORD) -> None:
        self.page.get_by_role("tab", name="Create account").click()
        self._submit_credentials(email, password, "Create account")
        self.expect_live()

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        self.page.get_by_role("tab", name="Sign in").click()
        self._submit_credentials(email, password, "Sign in")
        self.expect_live()

    def _submit_credentials(self, email: str, password: str, button: str) -> None:
        form = self.page.locator("#signin-form")
        form.get_by_label("Email").fill(email)
        form.get_by_label("Password").fill(password)
        form.get_by_role("button", name=button).click()

    def sign_out(self) -> None:
        self.page.get_by_role("button", name="Sign out").click()
        expect(self.sign_in_screen).to_be_visible()

    @property
    def sign_in_screen(self) -> Locator:
        return self.page.locator("#signin")

    def expect_live(self) -> None:
        expect(self.page.locator("#app")).to_be_visible()
        expect(self.connection).to_have_attribute("data-state", "live")

    @property
    def connection(self) -> Locator:
        return self.page.locator("#connection")

    # -- metrics ------------------------------------------------------------------------------

    def kpi(self, name: str) -> Locator:
        return self.page.locator(f"[data-kpi={name}] .value")

    @property
    def chart_summary(self) -> Locator:
        return self.page.locator("#chart-summary")

    # -- injecting ----------------------------------------------------------------------------

    def inject(
        self,
        event_type: str,
        payload: dict[str, Any] | None = None,
        *,
        count: int = 1,
        delay_ms: int = 0,
    ) -> str:
        """Send from the injector; answers the new event's id (or '' for a batch)."""
        form = self.page.locator("#injector")
        chip = form.locator(f'[data-type="{event_type}"]')
        if chip.count():
            chip.click()
        else:
            form.locator('[data-type="custom"]').click()
            form.get_by_label("Custom event type").fill(event_type)
        if payload is not None:
            form.locator("#payload").fill(json.dumps(payload))
        form.locator("input[name=count]").fill(str(count))
        form.locator("input[name=delay_ms]").fill(str(delay_ms) if delay_ms else "")
        path = "/api/v1/events" if count == 1 else "/api/v1/events/batch"
        with self.page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith(path)
        ) as answer:
            form.get_by_role("button", name="Send").click()
        assert answer.value.status == 202, answer.value.text()
        if count > 1:
            self.toast(f"{count} events accepted")
            return ""
        event_id: str = answer.value.json()["id"]
        self.toast(event_id)
        return event_id

    def toast(self, text: str) -> Locator:
        toast = self.page.locator(".toast", has_text=text).last
        expect(toast).to_be_visible()
        return toast

    # -- feed and drawer ----------------------------------------------------------------------

    def row(self, event_id: str) -> Locator:
        return self.page.locator(f'#feed-list li[data-id="{event_id}"]')

    @property
    def rows(self) -> Locator:
        return self.page.locator("#feed-list li")

    def expect_status(self, event_id: str, status: str) -> None:
        row = self.row(event_id)
        expect(row).to_have_attribute("data-status", status)
        expect(row.locator(".badge")).to_have_text(status)

    def filter_status(self, label: str) -> None:
        self.page.locator("#status-chips").get_by_role(
            "button", name=re.compile(f"^{label}")
        ).click()

    def open_drawer(self, event_id: str) -> Locator:
        self.row(event_id).get_by_role("button").click()
        drawer = self.page.locator("#drawer")
        expect(drawer.locator(".fields")).to_contain_text(event_id)
        return drawer

    # -- keys ---------------------------------------------------------------------------------

    @property
    def keys_panel(self) -> Locator:
        return self.page.locator("#keys")

    @property
    def key_secret(self) -> Locator:
        """The one-time view of a new key's secret."""
        return self.page.locator("#key-secret")

    def key_item(self, name: str) -> Locator:
        return self.page.locator("#key-list li.key").filter(
            has=self.page.locator(".key-name", has_text=re.compile(f"^{re.escape(name)}$"))
        )

    def create_key(self, name: str, scope: str = "ingest") -> str:
        """Create a key in the Keys panel; answers the secret as the one-time view shows it."""
        panel = self.keys_panel
        panel.get_by_label("Name").fill(name)
        panel.get_by_label("Scope").select_option(scope)
        with self.page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/api/v1/keys")
        ) as answer:
            panel.get_by_role("button", name="Create key").click()
        assert answer.value.status == 201, answer.value.text()
        secret = self.key_secret.locator("code")
        expect(secret).to_have_text(re.compile(r"^efk_\S+$"))
        expect(self.key_item(name)).to_be_visible()
        return secret.inner_text()

    def dismiss_secret(self) -> None:
        self.key_secret.get_by_role("button", name="Done").click()
        expect(self.key_secret).to_be_empty()

    def revoke_key(self, name: str) -> None:
        self.key_item(name).get_by_role("button", name=f"Revoke key {name}").click()
        dialog = self.page.locator("#revoke-confirm")
        expect(dialog).to_contain_text(name)
        dialog.get_by_role("button", name="Revoke key").click()
        self.toast("Key revoked")
