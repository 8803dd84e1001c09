"""Liveness of the database and the broker; 503 when either is down."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from fastapi import APIRouter
from starlette.responses import Response

from eventflow.api.deps import ServicesDep
from eventflow.api.schemas import HealthOut

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_S = 1.0


async def _database(services: ServicesDep) -> str:
    async with asyncio.timeout(_CHECK_TIMEOUT_S), services.engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
    return "ok"


async def _broker(services: ServicesDep) -> str:
    async with asyncio.timeout(_CHECK_TIMEOUT_S):
        await services.broker.ping()
    return "ok"


async def _check(name: str, probe: asyncio.Task[str]) -> tuple[str, str]:
    try:
        return name, await probe
    except TimeoutError:
        return name, "timeout"
    except Exception as exc:
        return name, f"error: {type(exc).__name__}"


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "A dependency is down"}},
)
async def health(services: ServicesDep, response: Response) -> HealthOut:
    """No authentication; each check is bounded by one second."""
    results = await asyncio.gather(
        _check("database", asyncio.create_task(_database(services))),
        _check("broker", asyncio.create_task(_broker(services))),
    )
    checks = dict(results)
    healthy = all(v == "ok" for v in checks.values())
    response.status_code = 200 if healthy else 503
    return HealthOut(status="ok" if healthy else "unavailable", checks=checks)
