"""The dashboard page and its assets: security headers, no inline code, every file it names."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx

from eventflow.auth.principal import Scope
from eventflow.dashboard import STATIC_DIR

ASSETS = STATIC_DIR / "assets"
MODULES = sorted((ASSETS / "js").glob("*.js"))


def _csp(header: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


async def test_page_is_served_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>EventFlow Prime</title>" in response.text
    policy = _csp(response.headers["content-security-policy"])
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "img-src", "font-src", "connect-src"):
        assert policy[directive] == "'self'", directive
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert (await client.head("/")).status_code == 200


async def test_assets_are_served_and_confined(client: httpx.AsyncClient) -> None:
    script = await client.get("/assets/js/main.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert script.headers["cache-control"] == "no-cache"
    etag = script.headers["etag"]
    assert (
        await client.get("/assets/js/main.js", headers={"If-None-Match": etag})
    ).status_code == 304
    assert (await client.get("/assets/app.css")).headers["content-type"].startswith("text/css")
    for escape in ("/assets/../site.py", "/assets/%2e%2e/site.py", "/assets/nope.js"):
        assert (await client.get(escape)).status_code == 404, escape


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            if not named.get("src"):
                self.inline.append("<script> without src")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"{tag} {name}=")
            if name in ("src", "href") and value:
                self.references.append(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script text")


def test_page_has_no_inline_code_and_only_local_references() -> None:
    page = _Page()
    page.feed((STATIC_DIR / "index.html").read_text())
    assert page.inline == []
    assert page.references
    for reference in page.references:
        assert not re.match(r"^([a-z]+:)?//", reference), f"{reference} is not local"
        assert (STATIC_DIR / reference).is_file(), reference


def test_modules_import_only_files_that_exist() -> None:
    assert {m.stem for m in MODULES} >= {
        "api", "stream", "charts", "feed", "injector", "drawer", "particles", "main", "keys",
        "source",
    }  # fmt: skip
    for module in MODULES:
        for target in re.findall(r'^import .* from "(\.{1,2}/[^"]+)";$', module.read_text(), re.M):
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target}"


def test_modules_never_turn_strings_into_markup_or_code() -> None:
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
    )
    for module in MODULES:
        assert not forbidden.search(module.read_text()), module.name


class _Controls(HTMLParser):
    """The page's form controls, its labels' targets, and the options of each select."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: dict[str, dict[str, str | None]] = {}
        self.labelled: set[str] = set()
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "label" and named.get("for"):
            self.labelled.add(str(named["for"]))
        if tag in ("input", "select", "textarea") and named.get("id"):
            self.controls[str(named["id"])] = named
        if tag == "select":
            self._select = named.get("id")
            self.options[str(self._select)] = []
        if tag == "option" and self._select:
            self.options[self._select].append(str(named.get("value")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def test_the_keys_form_is_labelled_and_offers_the_scopes_a_key_can_have() -> None:
    page = _Controls()
    page.feed((STATIC_DIR / "index.html").read_text())
    assert {"key-name", "key-scope"} <= page.labelled
    assert page.controls["key-name"]["maxlength"] == "100"
    assert "key-name-error" in str(page.controls["key-name"]["aria-describedby"])
    assert set(page.options["key-scope"]) == {s.value for s in Scope if s is not Scope.USER}
    for name, attrs in page.controls.items():
        assert name in page.labelled or attrs.get("aria-label"), f"#{name} has no label"


def test_only_the_session_is_kept_in_web_storage() -> None:
    """A key's secret is shown once: no module but sign-in's may store anything."""
    storage = re.compile(r"sessionStorage|localStorage|indexedDB|document\.cookie|caches\.")
    keepers = {m.name for m in MODULES if storage.search(m.read_text())}
    assert keepers == {"auth.js"}


def test_vendored_files_carry_their_licences() -> None:
    vendor = ASSETS / "vendor"
    for path in (
        "uplot/uPlot.esm.js",
        "uplot/uPlot.min.css",
        "uplot/LICENSE",
        "fonts/inter-latin-wght-normal.woff2",
        "fonts/LICENSE-Inter.txt",
        "fonts/jetbrains-mono-latin-wght-normal.woff2",
        "fonts/LICENSE-JetBrainsMono.txt",
    ):
        assert (vendor / path).is_file(), path
    assert "MIT" in Path(vendor / "uplot/LICENSE").read_text()
