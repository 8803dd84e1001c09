"""``/docs``: Swagger UI from a vendored copy (the ``fastapi-offline`` package), no CDN.

FastAPI's own page loads Swagger UI from a public CDN and starts it with an inline script: it
is blank without the Internet, and no strict policy can allow it. This page loads the same
Swagger UI from this server and starts it from a file, under a policy that allows only this
origin. The "Authorize" button uses the OAuth2 password flow: Swagger UI posts the form to
``/api/v1/auth/login`` with ``fetch``, so no OAuth2 redirect page is needed.
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import FileResponse, HTMLResponse

from eventflow.dashboard.site import RevalidatedFiles

DOCS_PATH = "/docs"
VENDOR_PATH = DOCS_PATH + "/vendor"
_INIT_SCRIPT = Path(__file__).with_name("docs_assets") / "swagger-init.js"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        # Swagger UI sets styles through the DOM (element.style), which a policy does not
        # govern; the stylesheet is a file.
        "style-src 'self'",
        # swagger-ui.css draws its icons as data: SVG images.
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
# Revalidated by ETag, as the dashboard's assets are: an upgrade brings a new Swagger UI.
_ASSET_HEADERS = {"Cache-Control": "no-cache"}


def swagger_ui_dir() -> Path:
    """Where ``fastapi-offline`` keeps ``swagger-ui-bundle.js`` and ``swagger-ui.css``."""
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI, openapi_url: str) -> None:
    """Serve ``/docs``, its start-up script and the vendored Swagger UI files."""

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return HTMLResponse(_page(root, root + openapi_url, app.title), headers=_PAGE_HEADERS)

    async def init_script() -> FileResponse:
        return FileResponse(
            _INIT_SCRIPT, media_type="text/javascript; charset=utf-8", headers=_ASSET_HEADERS
        )

    app.add_api_route(DOCS_PATH, swagger_ui, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route(
        DOCS_PATH + "/swagger-init.js",
        init_script,
        methods=["GET", "HEAD"],
        include_in_schema=False,
    )
    app.mount(VENDOR_PATH, RevalidatedFiles(directory=swagger_ui_dir()), name="docs-vendor")


def _page(root: str, openapi_url: str, title: str) -> str:
    vendor = html.escape(root + VENDOR_PATH)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} API · Swagger UI</title>
<link rel="stylesheet" href="{vendor}/swagger-ui.css">
<link rel="icon" href="{vendor}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{html.escape(openapi_url)}"></div>
<script src="{vendor}/swagger-ui-bundle.js"></script>
<script src="{html.escape(root + DOCS_PATH)}/swagger-init.js"></script>
</body>
</html>
"""
