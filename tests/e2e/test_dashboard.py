"""EventFlow Prime in headless Chromium against a real ``eventflow up``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Request, expect

from tests.e2e.conftest import EventflowServer
from tests.e2e.dashboard import Dashboard

pytestmark = pytest.mark.e2e

XSS = "<img src=x onerror=alert(1)>"


def new_email() -> str:
    return f"prime-{os.urandom(5).hex()}@example.com"


def test_register_sign_in_and_watch_an_order_complete(dashboard: Dashboard) -> None:
    page = dashboard.page
    expect(dashboard.sign_in_screen).to_be_visible()
    page.get_by_role("tab", name="Create account").click()
    page.locator("#signin-form").get_by_label("Email").fill("not-an-email")
    page.locator("#signin-form").get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("[data-error-for=email]")).to_contain_text("email address")
    expect(page.locator("[data-error-for=password]")).to_contain_text("8 characters")

    email = new_email()
    dashboard.register(email)
    expect(page.locator("#who")).to_have_text(email)
    dashboard.sign_out()
    expect(page.locator("#signin-notice")).to_have_text("You signed out.")
    dashboard.sign_in(email)
    expect(dashboard.kpi("completed")).to_have_text("0")

    page.evaluate("window.notReloaded = true")
    order = dashboard.inject("ORDER_CREATED")
    dashboard.expect_status(order, "completed")
    expect(dashboard.kpi("completed")).to_have_text("1")
    expect(dashboard.kpi("total")).to_have_text("1")
    expect(dashboard.kpi("success")).to_have_text("100%")
    expect(dashboard.row(order).locator(".type")).to_have_text("ORDER_CREATED")
    assert page.evaluate("window.notReloaded") is True

    # The same template twice is two events.
    second = dashboard.inject("ORDER_CREATED")
    assert second != order
    expect(dashboard.kpi("completed")).to_have_text("2")


def test_the_injector_checks_the_payload_before_sending(dashboard: Dashboard) -> None:
    dashboard.register(new_email())
    page = dashboard.page
    sent: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and "/api/v1/events" in request.url:
            sent.append(request.url)

    page.on("request", record)
    editor = page.locator("#payload")
    editor.fill('{\n  "sku": "A-1",\n  "paid": tru\n}')
    expect(page.locator("#payload-error")).to_have_text(
        "Line 3, column 11: Expected a value (string, number, object, array, true, false or null)"
    )
    expect(editor).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Send").click()
    editor.fill("[1, 2]")
    expect(page.locator("#payload-error")).to_contain_text("must be a JSON object")
    page.get_by_role("button", name="Send").click()

    page.locator('[data-type="custom"]').click()
    page.get_by_label("Custom event type").fill("9 lives")
    editor.fill('{"ok": true}')
    expect(page.locator("#payload-error")).to_be_empty()
    page.get_by_role("button", name="Send").click()
    dashboard.toast("A type starts with a letter")
    assert sent == []

    custom = dashboard.inject("billing.invoice:paid", {"ok": True})
    dashboard.expect_status(custom, "completed")
    expect(dashboard.row(custom).locator(".type")).to_have_text("billing.invoice:paid")


def test_a_failing_event_fails_and_is_retried_from_the_drawer(dashboard: Dashboard) -> None:
    dashboard.register(new_email())
    failing = dashboard.inject("FAIL_TEST")
    dashboard.expect_status(failing, "failed")
    expect(dashboard.kpi("failed")).to_have_text("1")

    drawer = dashboard.open_drawer(failing)
    expect(drawer.locator("#drawer-title")).to_have_text("FAIL_TEST")
    expect(drawer.locator(".error-text").first).to_have_text("Simulated failure")
    expect(drawer.get_by_text("Attempts (3)")).to_be_visible()
    drawer.get_by_role("button", name="Retry").click()
    dashboard.toast("Retry queued")
    # Replayed with a fresh budget of three attempts, which FAIL_TEST spends again.
    expect(drawer.get_by_text("Attempts (6)")).to_be_visible()
    expect(drawer.locator("#drawer-status .badge")).to_have_text("failed")
    dashboard.page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()

    other = dashboard.inject("FAIL_TEST")
    dashboard.expect_status(other, "failed")
    expect(dashboard.kpi("failed")).to_have_text("2")
    dashboard.page.get_by_role("button", name="Retry all failed").click()
    dialog = dashboard.page.locator("#confirm")
    expect(dialog).to_contain_text("Queue all 2 failed events again?")
    dialog.get_by_role("button", name="Retry all").click()
    dashboard.toast("2 failed events queued again")
    dashboard.expect_status(other, "failed")
    expect(dashboard.row(other).locator(".attempts")).to_have_text("\N{MULTIPLICATION SIGN}6")


def test_a_burst_of_200_moves_the_throughput_chart(dashboard: Dashboard) -> None:
    dashboard.register(new_email())
    expect(dashboard.chart_summary).to_contain_text("0 ingested")
    expect(dashboard.page.locator("#chart-empty")).to_be_visible()

    dashboard.inject("USER_SIGNUP", count=200)
    expect(dashboard.chart_summary).to_contain_text("200 ingested · 200 completed")
    expect(dashboard.page.locator("#chart-empty")).to_be_hidden()
    peak = re.search(r"peak\s(\d+)/s", dashboard.chart_summary.inner_text())
    assert peak is not None
    assert int(peak.group(1)) >= 20
    expect(dashboard.kpi("total")).to_have_text("200")
    expect(dashboard.rows).to_have_count(200)
    expect(dashboard.page.locator('#feed-list li[data-status="completed"]')).to_have_count(200)


def test_the_feed_filters_by_status_type_and_id(dashboard: Dashboard) -> None:
    dashboard.register(new_email())
    signup = dashboard.inject("USER_SIGNUP")
    order = dashboard.inject("ORDER_CREATED")
    failing = dashboard.inject("FAIL_TEST")
    dashboard.expect_status(failing, "failed")
    dashboard.expect_status(order, "completed")
    dashboard.expect_status(signup, "completed")

    dashboard.filter_status("Failed")
    expect(dashboard.rows).to_have_count(1)
    expect(dashboard.row(failing)).to_be_visible()
    # Live arrivals respect the filter: a new order never shows, a new failure does.
    later_order = dashboard.inject("ORDER_CREATED")
    later_failure = dashboard.inject("FAIL_TEST")
    dashboard.expect_status(later_failure, "failed")
    expect(dashboard.rows).to_have_count(2)
    expect(dashboard.row(later_order)).to_have_count(0)

    dashboard.filter_status("All")
    expect(dashboard.rows).to_have_count(5)
    dashboard.page.get_by_label("Filter by type").fill("USER_SIGNUP")
    expect(dashboard.rows).to_have_count(1)
    expect(dashboard.row(signup)).to_be_visible()

    dashboard.page.get_by_label("Filter by type").fill("")
    dashboard.page.get_by_label("Search by id").fill(order[-6:])
    expect(dashboard.rows).to_have_count(1)
    expect(dashboard.row(order)).to_be_visible()
    dashboard.page.get_by_label("Search by id").fill(later_order)
    expect(dashboard.rows).to_have_count(1)
    expect(dashboard.row(later_order)).to_be_visible()


def test_an_xss_payload_stays_text(dashboard: Dashboard) -> None:
    dialogs: list[str] = []

    def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    dashboard.page.on("dialog", refuse)
    dashboard.register(new_email())
    event_id = dashboard.inject("SYSTEM_ALERT", {"message": XSS, "html": "<b>bold</b>"})
    row = dashboard.row(event_id)
    expect(row.locator(".preview")).to_contain_text(XSS)
    drawer = dashboard.open_drawer(event_id)
    expect(drawer.locator(".json").first).to_contain_text(XSS)
    expect(drawer.get_by_text(XSS)).to_be_visible()
    assert dashboard.page.locator("img[src=x], #feed-list b, #drawer b").count() == 0
    dashboard.page.wait_for_timeout(500)
    assert dialogs == []


def test_a_401_sends_the_user_back_to_sign_in(
    browser: Browser, own_server: EventflowServer
) -> None:
    with Dashboard.open(browser, own_server.url) as dashboard:
        # The server going away on purpose: the refused, unanswered or reset connections are
        # expected noise.
        dashboard.expected_errors += [
            "ERR_CONNECTION_REFUSED",
            "ERR_EMPTY_RESPONSE",
            "ERR_CONNECTION_RESET",
            "status of 401",
        ]
        dashboard.register(new_email())

        own_server.stop()
        expect(dashboard.connection).to_have_attribute(
            "data-state", re.compile("reconnecting|connecting")
        )
        expect(dashboard.connection).to_contain_text("connecting")
        own_server.start()
        expect(dashboard.connection).to_have_attribute("data-state", "live")

        # A new data directory means a new signing secret: the token in the page is now void.
        own_server.stop()
        own_server.reset_data()
        own_server.start()
        expect(dashboard.sign_in_screen).to_be_visible()
        expect(dashboard.page.locator("#signin-notice")).to_contain_text("You were signed out")
        expect(dashboard.page.locator("#app")).to_be_hidden()


def test_the_folder_works_from_another_static_server(browser: Browser, static_site: str) -> None:
    """The static folder on Python's http.server, config.js pointing at the API (CORS on)."""
    with Dashboard.open(browser, static_site) as dashboard:
        dashboard.register(new_email())
        order = dashboard.inject("ORDER_CREATED")
        dashboard.expect_status(order, "completed")
        expect(dashboard.kpi("completed")).to_have_text("1")


def test_screenshots_at_desktop_and_phone_widths(
    browser: Browser, shared_server: EventflowServer, artifacts: Path
) -> None:
    email = new_email()
    with Dashboard.open(browser, shared_server.url) as desk:
        desk.page.screenshot(path=artifacts / "signin-1440x900.png")
        desk.register(email)
        desk.inject("USER_SIGNUP", count=120)
        for kind in ("ORDER_CREATED", "PAYMENT_PROCESSED", "ORDER_CREATED", "SYSTEM_ALERT"):
            desk.inject(kind)
        failing = desk.inject("FAIL_TEST")
        desk.inject("ORDER_CREATED", {"note": "ships tomorrow"}, delay_ms=86_400_000)
        desk.expect_status(failing, "failed")
        expect(desk.kpi("total")).to_have_text("126")
        expect(desk.page.locator(".toast")).to_have_count(0)  # the page as it settles
        desk.page.evaluate("window.scrollTo(0, 0)")
        desk.page.screenshot(path=artifacts / "dashboard-1440x900.png")
        desk.open_drawer(failing)
        desk.page.screenshot(path=artifacts / "drawer-1440x900.png")

    with Dashboard.open(browser, shared_server.url, width=390, height=844) as phone:
        phone.page.screenshot(path=artifacts / "signin-390x844.png")
        phone.sign_in(email)
        expect(phone.kpi("total")).to_have_text("126")
        phone.page.wait_for_timeout(1200)
        phone.page.screenshot(path=artifacts / "dashboard-390x844.png")
        phone.page.screenshot(path=artifacts / "dashboard-390x844-full.png", full_page=True)
        overflow = phone.page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390, f"the page is {overflow}px wide on a 390px screen"
        phone.open_drawer(failing)
        phone.page.screenshot(path=artifacts / "drawer-390x844.png")
