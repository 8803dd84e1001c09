"""The headers middleware, and the headers every problem and every page of the app carries."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from eventflow.api.headers import DEFAULT_HTML_POLICY, SecurityHeaders


class Answers:
    """Answers every request with ``content_type`` and the ``headers`` given."""

    def __init__(self, content_type: bytes, headers: list[tuple[bytes, bytes]] | None = None):
        self.head = [(b"content-type", content_type), *(headers or [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.head})
        await send({"type": "http.response.body", "body": b"x"})


async def _get(
    app: Answers, path: str = "/x", headers: dict[str, str] | None = None
) -> httpx.Response:
    secured = SecurityHeaders(app, private_prefixes=("/api/v1/auth/",))
    transport = httpx.ASGITransport(app=secured)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get(path, headers=headers)


async def test_every_response_gets_nosniff_and_no_referrer() -> None:
    response = await _get(Answers(b"application/json"))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "cache-control" not in response.headers
    assert "content-security-policy" not in response.headers


async def test_what_a_route_set_is_kept_and_not_repeated() -> None:
    own = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
    response = await _get(Answers(b"application/json", own), headers={"Authorization": "x"})
    assert response.headers.get_list("x-content-type-options") == ["nosniff"]
    assert response.headers.get_list("referrer-policy") == ["same-origin"]
    assert response.headers["cache-control"] == "no-store"
    kept = await _get(
        Answers(b"text/plain", [(b"cache-control", b"no-cache")]), headers={"Authorization": "x"}
    )
    assert kept.headers.get_list("cache-control") == ["no-cache"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/x", {"Authorization": "Bearer abc"}),
        ("/x", {"Cookie": "session=abc"}),
        ("/api/v1/auth/login", {}),
    ],
)
async def test_private_answers_are_never_stored(path: str, headers: dict[str, str]) -> None:
    response = await _get(Answers(b"application/json"), path, headers)
    assert response.headers["cache-control"] == "no-store"


async def test_html_without_a_policy_gets_one_that_runs_nothing() -> None:
    page = await _get(Answers(b"text/html; charset=utf-8"))
    assert page.headers["content-security-policy"] == DEFAULT_HTML_POLICY
    own = [(b"content-security-policy", b"default-src 'self'")]
    kept = await _get(Answers(b"text/html", own))
    assert kept.headers.get_list("content-security-policy") == ["default-src 'self'"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("DELETE", "/api/v1/events/batch", 405)],
)
async def test_problems_carry_the_headers(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["type"] == "about:blank"


async def test_docs_page_has_a_policy_allowing_only_this_origin(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy
    assert "unsafe" not in policy and "http" not in policy
    assert "<script>" not in page.text  # every script is a file
    assert 'data-openapi-url="/api/v1/openapi.json"' in page.text
    for asset in ("/docs/swagger-init.js", "/docs/vendor/swagger-ui-bundle.js"):
        script = await client.get(asset)
        assert script.status_code == 200, asset
        assert script.headers["content-type"].startswith("text/javascript"), asset
        assert script.headers["x-content-type-options"] == "nosniff", asset
    css = await client.get("/docs/vendor/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")
    # FastAPI's CDN page and its inline OAuth2 redirect script are gone.
    assert (await client.get("/docs/oauth2-redirect")).status_code == 404
