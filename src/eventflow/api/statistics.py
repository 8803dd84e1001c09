"""Per-user statistics from the database's counts: what ``GET /stats`` and the live stream show."""

from __future__ import annotations

from eventflow.api.schemas import Latency, StatsOut, Throughput
from eventflow.db.rows import Status, StatusCounts

_WAITING = (Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.PROCESSING)


def percentile(sorted_values: list[int], q: float) -> int | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, round(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(counts: StatusCounts) -> StatsOut:
    """Counts, success rate, throughput over the last minute, latency and queue depth."""
    by_status = {s.value: counts.by_status.get(s.value, 0) for s in Status}
    finished = by_status["completed"] + by_status["failed"]
    latencies = counts.latencies_ms
    return StatsOut(
        counts=by_status,
        total=sum(by_status.values()),
        success_rate=round(by_status["completed"] / finished, 4) if finished else None,
        throughput=Throughput(
            ingested_per_sec=round(counts.ingested_last_minute / 60, 2),
            completed_per_sec=round(counts.completed_last_minute / 60, 2),
        ),
        latency_ms=Latency(
            p50=percentile(latencies, 0.50),
            p95=percentile(latencies, 0.95),
            p99=percentile(latencies, 0.99),
            samples=len(latencies),
        ),
        queue_depth=sum(by_status[s.value] for s in _WAITING),
    )
