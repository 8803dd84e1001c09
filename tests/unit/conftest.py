"""Unit fixtures: the app without services, for routes that must not need a database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from eventflow.api.app import create_app
from eventflow.config import Settings
from eventflow.services import Services
from tests.conftest import TEST_SECRET


@asynccontextmanager
async def _no_services(_: Settings) -> AsyncIterator[Services]:
    raise AssertionError("these routes need no services")
    yield  # pragma: no cover


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app whose lifespan never runs: what it serves needs no database."""
    app = create_app(Settings(jwt_secret=TEST_SECRET), _no_services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://eventflow.test") as c:
        yield c
