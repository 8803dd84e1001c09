"""Per-user statistics: counts, success rate, throughput, latency, queue depth."""

from __future__ import annotations

from fastapi import APIRouter

from eventflow.api.deps import ReaderId, ServicesDep
from eventflow.api.schemas import StatsOut
from eventflow.api.statistics import summarize

router = APIRouter(tags=["stats"])


@router.get("/stats", response_model=StatsOut)
async def stats(services: ServicesDep, user_id: ReaderId) -> StatsOut:
    """Your events at a glance."""
    return summarize(await services.reading.counts(user_id))
