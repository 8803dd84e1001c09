"""The Keys panel in Chromium against a real ``eventflow up``: a key's secret is shown once, the
key sends events whose source the feed and the drawer show, and a revoked key is refused."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Request, expect

from tests.e2e.conftest import EventflowServer
from tests.e2e.dashboard import Dashboard

pytestmark = pytest.mark.e2e

XSS = "<img src=x onerror=alert(1)>"
SCREENSHOTS = Path("/tmp/eventflow-keys-screenshots")


def new_email() -> str:
    return f"keys-{os.urandom(5).hex()}@example.com"


def send_with_key(server: EventflowServer, key: str) -> httpx.Response:
    """What an app holding the key gets when it sends an event."""
    return httpx.post(
        f"{server.url}/api/v1/events",
        json={"type": "ORDER_CREATED", "payload": {"sent_by": "an app holding a key"}},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def ingest_with_key(server: EventflowServer, key: str) -> str:
    answer = send_with_key(server, key)
    assert answer.status_code == 202, answer.text
    event_id: str = answer.json()["id"]
    return event_id


def expect_refused(server: EventflowServer, key: str) -> None:
    deadline = time.monotonic() + 10
    while send_with_key(server, key).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key is still accepted"
        time.sleep(0.1)


def page_holds(dashboard: Dashboard, secret: str) -> bool:
    """Whether the secret is anywhere in the page's DOM or web storage."""
    page = dashboard.page
    stored = page.evaluate(
        "JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage)])"
    )
    return secret in page.content() or secret in stored


def test_a_key_is_shown_once_sends_events_and_is_revoked(
    dashboard: Dashboard, shared_server: EventflowServer
) -> None:
    page = dashboard.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    dashboard.register(new_email())
    expect(dashboard.keys_panel.locator("#keys-empty")).to_be_visible()

    secret = dashboard.create_key("checkout-service")
    box = dashboard.key_secret.locator(".key-secret")
    expect(box).to_be_focused()
    expect(box).to_contain_text("you will not see it again")
    box.get_by_role("button", name="Copy").click()
    dashboard.toast("Key copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    item = dashboard.key_item("checkout-service")
    expect(item.locator(".scope")).to_have_text("ingest")
    expect(item.locator(".last-used")).to_have_text("Last used never")
    prefix = item.locator(".key-prefix").inner_text().removesuffix("…")
    assert prefix and secret.startswith(prefix), (prefix, secret[:8])

    assert page_holds(dashboard, secret)  # the check below would see it
    dashboard.dismiss_secret()
    expect(dashboard.keys_panel.get_by_label("Name")).to_be_focused()
    assert not page_holds(dashboard, secret)
    page.reload()
    dashboard.expect_live()
    expect(dashboard.key_item("checkout-service")).to_be_visible()
    assert not page_holds(dashboard, secret)

    # The app holding the key sends an event: the feed and the drawer name the key, and the
    # key's "last used" moves without taking the focus from a keyboard user on the panel.
    revoke = item.get_by_role("button", name="Revoke key checkout-service")
    revoke.focus()
    sent = ingest_with_key(shared_server, secret)
    expect(dashboard.row(sent).locator(".source")).to_have_text("checkout-service")
    expect(item.locator(".last-used")).not_to_contain_text("never")
    expect(revoke).to_be_focused()
    dashboard.expect_status(sent, "completed")
    drawer = dashboard.open_drawer(sent)
    source = drawer.locator(".source-field dd")
    expect(source).to_contain_text("checkout-service")
    expect(source).to_contain_text(f"{prefix}…")
    expect(source).to_contain_text("No SDK library reported")
    page.keyboard.press("Escape")

    # The dashboard's own events come from the user's token.
    own = dashboard.inject("USER_SIGNUP")
    expect(dashboard.row(own).locator(".source")).to_have_text("token")
    drawer = dashboard.open_drawer(own)
    expect(drawer.locator(".source-field dd")).to_contain_text("User token")
    page.keyboard.press("Escape")

    # Cancelling the confirmation revokes nothing.
    item.get_by_role("button", name="Revoke key checkout-service").click()
    dialog = page.locator("#revoke-confirm")
    expect(dialog).to_contain_text("cannot be undone")
    dialog.get_by_role("button", name="Cancel").click()
    ingest_with_key(shared_server, secret)

    dashboard.revoke_key("checkout-service")
    # Gone from the list, or kept there marked as revoked: never listed as active.
    active = page.locator('#key-list li.key[data-revoked="false"]', has_text="checkout-service")
    expect(active).to_have_count(0)
    expect_refused(shared_server, secret)


def test_key_names_and_sources_stay_text(
    dashboard: Dashboard, shared_server: EventflowServer
) -> None:
    dialogs: list[str] = []

    def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page = dashboard.page
    page.on("dialog", refuse)
    dashboard.register(new_email())

    posted: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/api/v1/keys"):
            posted.append(request.url)

    page.on("request", record)
    dashboard.keys_panel.get_by_role("button", name="Create key").click()
    expect(page.locator("#key-name-error")).to_have_text(
        "Give the key a name, like the app that will use it"
    )
    expect(dashboard.keys_panel.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    assert posted == []

    secret = dashboard.create_key(XSS, "ingest")
    expect(dashboard.key_secret.locator("h3")).to_have_text(f"New key “{XSS}”")
    expect(dashboard.key_item(XSS).locator(".key-name")).to_have_text(XSS)

    # Without the clipboard API the secret is selected for the user to copy.
    page.evaluate(
        "Object.defineProperty(navigator, 'clipboard', {value: undefined, configurable: true})"
    )
    dashboard.key_secret.get_by_role("button", name="Copy").click()
    dashboard.toast("press Ctrl+C")
    assert page.evaluate("getSelection().toString()") == secret
    dashboard.dismiss_secret()

    sent = ingest_with_key(shared_server, secret)
    expect(dashboard.row(sent).locator(".source")).to_have_text(XSS)
    drawer = dashboard.open_drawer(sent)
    expect(drawer.locator(".source-field dd")).to_contain_text(XSS)
    assert page.locator("img[src=x]").count() == 0
    page.wait_for_timeout(500)
    assert dialogs == []


def test_an_event_from_a_segment_library_names_the_library(
    dashboard: Dashboard, shared_server: EventflowServer
) -> None:
    dashboard.register(new_email())
    write_key = dashboard.create_key("web-shop", "ingest")
    dashboard.dismiss_secret()
    reader = dashboard.create_key("reporting", "read")
    dashboard.dismiss_secret()

    # What a Segment library sends for one track call: the key as Basic user, no password.
    message = {
        "userId": "user-1",
        "event": "Order Completed",
        "properties": {"revenue": 42.5},
        "messageId": f"m-{os.urandom(6).hex()}",
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
    }
    sent = httpx.post(
        f"{shared_server.url}/v1/track", json=message, auth=(write_key, ""), timeout=10
    )
    assert sent.status_code == 200 and sent.json() == {"success": True}, sent.text
    listed = httpx.get(
        f"{shared_server.url}/api/v1/events",
        params={"type": "Order_Completed"},
        headers={"Authorization": f"Bearer {reader}"},
        timeout=10,
    )
    assert listed.status_code == 200, listed.text
    (event,) = listed.json()["items"]

    chip = dashboard.row(event["id"]).locator(".source")
    expect(chip).to_have_text("web-shop")
    expect(chip).to_have_attribute("title", "Sent with key web-shop by analytics-python 2.4.0")
    drawer = dashboard.open_drawer(event["id"])
    source = drawer.locator(".source-field dd")
    expect(source).to_contain_text("web-shop")
    expect(source).to_contain_text("SDK analytics-python 2.4.0")


def test_the_panel_works_from_the_keyboard_and_reports_api_errors(
    dashboard: Dashboard, shared_server: EventflowServer
) -> None:
    page = dashboard.page
    dashboard.expected_errors.append("status of 404")
    dashboard.register(new_email())
    name = dashboard.keys_panel.get_by_label("Name")
    name.focus()
    page.keyboard.type("keyboard-app")
    page.keyboard.press("Tab")
    expect(dashboard.keys_panel.get_by_label("Scope")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dashboard.keys_panel.get_by_role("button", name="Create key")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dashboard.key_secret.locator(".key-secret")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dashboard.key_secret.get_by_role("button", name="Copy")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(dashboard.key_secret).to_be_empty()
    expect(name).to_be_focused()

    revoke = dashboard.key_item("keyboard-app").get_by_role("button", name="Revoke key")
    expect(revoke).to_be_visible()
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(revoke).to_be_focused()
    page.keyboard.press("Enter")
    dialog = page.locator("#revoke-confirm")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(revoke).to_be_focused()

    # Revoked meanwhile elsewhere (another tab, the API): the page says so and catches up.
    token = page.evaluate("JSON.parse(sessionStorage.getItem('eventflow.session')).token")
    key_id = dashboard.key_item("keyboard-app").get_attribute("data-id")
    gone = httpx.delete(
        f"{shared_server.url}/api/v1/keys/{key_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert gone.status_code == 204, gone.text
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Revoke key")).to_be_focused()
    # The cancel's "close" event arriving only now, as a browser busy with input may deliver it:
    # the dialog still revokes the key it asks about.
    dialog.evaluate("d => d.dispatchEvent(new Event('close'))")
    page.keyboard.press("Enter")
    expect(dashboard.toast("Key not revoked")).to_contain_text("No active API key")
    expect(dashboard.key_item("keyboard-app")).to_have_count(0)


def test_keys_are_managed_from_another_static_server(browser: Browser, static_site: str) -> None:
    """The panel's create, list and revoke also pass CORS (revoking is a DELETE)."""
    with Dashboard.open(browser, static_site) as dashboard:
        dashboard.register(new_email())
        dashboard.create_key("from-elsewhere")
        dashboard.dismiss_secret()
        dashboard.revoke_key("from-elsewhere")
        active = dashboard.page.locator('#key-list li.key[data-revoked="false"]')
        expect(active).to_have_count(0)


def test_screenshots_of_the_keys_panel_and_a_key_source(
    browser: Browser, shared_server: EventflowServer
) -> None:
    """For a person to look at (not compared): the panel with keys, the one-time secret and
    the drawer of an event sent with a key, at desktop and phone widths."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    email = new_email()
    with Dashboard.open(browser, shared_server.url) as desk:
        desk.register(email)
        long_name = "nightly warehouse export reading every event of the account since last week"
        desk.create_key(long_name, "read")
        desk.dismiss_secret()
        doomed = desk.create_key("legacy importer")
        desk.dismiss_secret()
        desk.revoke_key("legacy importer")
        secret = desk.create_key("checkout-service")
        sent = ingest_with_key(shared_server, secret)
        desk.inject("ORDER_CREATED")
        desk.expect_status(sent, "completed")
        expect_refused(shared_server, doomed)
        expect(desk.page.locator(".toast")).to_have_count(0)
        desk.keys_panel.screenshot(path=SCREENSHOTS / "keys-secret-1440.png")
        desk.dismiss_secret()
        desk.keys_panel.screenshot(path=SCREENSHOTS / "keys-1440.png")
        desk.page.locator(".feed-panel").screenshot(path=SCREENSHOTS / "feed-1440.png")
        desk.open_drawer(sent)
        desk.page.screenshot(path=SCREENSHOTS / "drawer-key-1440.png")

    with Dashboard.open(browser, shared_server.url, width=390, height=844) as phone:
        phone.sign_in(email)
        expect(phone.key_item("checkout-service")).to_be_visible()
        phone.keys_panel.screenshot(path=SCREENSHOTS / "keys-390.png")
        overflow = phone.page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390, f"the page is {overflow}px wide on a 390px screen"
        phone.open_drawer(sent)
        phone.page.screenshot(path=SCREENSHOTS / "drawer-key-390.png")
