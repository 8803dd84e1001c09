"""Security headers on every response of the FastAPI app, added by one pure ASGI middleware."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: On every response, whoever builds it. Stream tickets travel in URLs and pages link to one
#: another: no URL of this service ever leaves in a ``Referer`` header.
BASELINE = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
#: On answers that are someone's own (credentials sent, tokens, problems): never stored by a
#: browser or a proxy, so a shared computer or cache never hands them to someone else.
NO_STORE = {"Cache-Control": "no-store"}

#: The same, ready for an ASGI ``http.response.start`` message.
BASELINE_RAW = tuple((name.lower().encode(), value.encode()) for name, value in BASELINE.items())
NO_STORE_RAW = (b"cache-control", b"no-store")

#: For an HTML page that sends no policy of its own: text and links, nothing that runs.
DEFAULT_HTML_POLICY = (
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_NOSNIFF, _NO_REFERRER = BASELINE_RAW
_DEFAULT_HTML_POLICY = (b"content-security-policy", DEFAULT_HTML_POLICY.encode())


class SecurityHeaders:
    """Adds what a response lacks of ``BASELINE``, ``no-store`` on private answers, and
    ``DEFAULT_HTML_POLICY`` on HTML without a policy; a header a route set is left as it is.

    A response is private when its request carried credentials (``Authorization``, or a
    cookie) or its path starts with one of ``private_prefixes`` (the auth routes, whose
    answers are tokens and accounts). It is pure ASGI (no ``BaseHTTPMiddleware``, which
    would run every request in a task of its own) and touches only the response head.
    """

    def __init__(self, app: ASGIApp, *, private_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self._private_prefixes = private_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = scope["path"].startswith(self._private_prefixes)
        if not private:
            for name, _ in scope["headers"]:
                if name == b"authorization" or name == b"cookie":
                    private = True
                    break

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _secured(message.get("headers", ()), private)}
            await send(message)

        await self.app(scope, receive, send_secured)


def _secured(raw: Iterable[tuple[bytes, bytes]], private: bool) -> list[tuple[bytes, bytes]]:
    # ASGI header names are lowercase; one pass finds what is there.
    headers = list(raw)
    nosniff = referrer = cache = csp = html = False
    for name, value in headers:
        if name == b"content-type":
            html = value.startswith(b"text/html")
        elif name == b"x-content-type-options":
            nosniff = True
        elif name == b"referrer-policy":
            referrer = True
        elif name == b"cache-control":
            cache = True
        elif name == b"content-security-policy":
            csp = True
    if not nosniff:
        headers.append(_NOSNIFF)
    if not referrer:
        headers.append(_NO_REFERRER)
    if private and not cache:
        headers.append(NO_STORE_RAW)
    if html and not csp:
        headers.append(_DEFAULT_HTML_POLICY)
    return headers
