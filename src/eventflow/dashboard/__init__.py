"""EventFlow Prime: the live dashboard, a static single-page app served by the API at ``/``."""

from eventflow.dashboard.site import ASSETS_PATH, SECURITY_HEADERS, STATIC_DIR, assets, router

__all__ = ["ASSETS_PATH", "SECURITY_HEADERS", "STATIC_DIR", "assets", "router"]
