"""``GET /metrics``: this process's metrics (and its worker's, in ``eventflow up``) for Prometheus.

Left out of the OpenAPI document: it is for the monitoring system, not for API clients. With
``EVENTFLOW_METRICS_TOKEN`` set it answers only ``Authorization: Bearer <token>`` (else 401).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from eventflow.api.deps import ServicesDep
from eventflow.errors import Unauthorized
from eventflow.metrics.exposition import CONTENT_TYPE

router = APIRouter(tags=["metrics"], include_in_schema=False)


@router.get("/metrics")
async def metrics(services: ServicesDep, request: Request) -> Response:
    if not services.scrape.authorized(request.headers.get("authorization")):
        raise Unauthorized("GET /metrics needs Authorization: Bearer <EVENTFLOW_METRICS_TOKEN>")
    body = await services.scrape.render()
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
