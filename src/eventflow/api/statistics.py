"""Per-user statistics from the database's counts: what ``GET /stats`` and the live stream show."""

from __future__ import annotations

from collections.abc import Sequence

from eventflow.api.schemas import Latency, StatsOut, Throughput
from eventflow.db.rows import LatencyBucket, Status, StatusCounts

_WAITING = (Status.SCHEDULED, Status.QUEUED, Status.RETRYING, Status.PROCESSING)


def percentile(buckets: Sequence[LatencyBucket], q: float) -> int | None:
    """The ``q`` quantile of a histogram, interpolated linearly inside its bucket (as
    Prometheus' ``histogram_quantile``); the lower bound in the open-ended last bucket."""
    total = sum(b.count for b in buckets)
    if not total:
        return None
    rank, seen = q * total, 0
    # The rank falls in the first bucket whose running count reaches it, else in the last.
    for b in buckets[:-1]:
        if seen + b.count >= rank:
            break
        seen += b.count
    else:
        b = buckets[-1]
    if b.upto_ms is None:
        return b.above_ms
    return round(b.above_ms + (b.upto_ms - b.above_ms) * (rank - seen) / b.count)


def summarize(counts: StatusCounts) -> StatsOut:
    """Counts, success rate, throughput over the last minute, latency and queue depth."""
    by_status = {s.value: counts.by_status.get(s.value, 0) for s in Status}
    finished = by_status["completed"] + by_status["failed"]
    latencies = counts.latency
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
            samples=sum(b.count for b in latencies),
        ),
        queue_depth=sum(by_status[s.value] for s in _WAITING),
    )
