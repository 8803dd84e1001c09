"""Serves the dashboard: ``/`` is the page, ``/assets/…`` its files, all under a strict CSP.

The page talks to the API only with ``fetch`` and ``EventSource``; every script, style, font
and library is one of these files, so the policy allows nothing but this origin. The headers
every response carries (``nosniff``, ``Referrer-Policy``) come from ``api/headers.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PATH = "/assets"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        # The forms are sent by script; this stops a password ever landing in a URL.
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

# Revalidate every time (answered by a 304 from the ETag): after an upgrade the browser must
# not mix cached ES modules of two versions.
_ASSET_HEADERS = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> Response:
    """The single page; everything else it needs is under ``/assets``."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
    )


class RevalidatedFiles(StaticFiles):
    """Static files a browser revalidates by ETag on every use, so an upgrade shows at once."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_ASSET_HEADERS)
        return response


def assets() -> StaticFiles:
    """The app for ``ASSETS_PATH``: CSS, ES modules, config.js, vendored fonts and uPlot."""
    return RevalidatedFiles(directory=STATIC_DIR / "assets")
