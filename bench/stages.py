"""Per-stage latencies of a run, read from the processes' own ``/metrics`` histograms.

The API and the worker time every stage of an event's way (metrics/catalog.py:
``eventflow_ingest_stage_seconds``, ``eventflow_worker_stage_seconds``); the bench scrapes them
before and after the measured load and estimates each stage's p50 and p99 from the difference,
as Prometheus' ``histogram_quantile`` would: so a slow machine shows which stage is slow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.client import request
from eventflow.metrics.catalog import INGEST_STAGES, WORKER_STAGES

#: (histogram, stage) → cumulative count per upper bound (``le``), +Inf included.
Buckets = dict[tuple[str, str], dict[float, float]]
#: A whole ingest request inside EventFlow, from its handler's start to its 202 (any route):
#: beside the load generator's latency it shows what the HTTP server, the kernel and the
#: scheduler add outside EventFlow's own code.
REQUEST = "request"
_STAGED = ("eventflow_ingest_stage_seconds", "eventflow_worker_stage_seconds")
_REQUESTS = "eventflow_ingest_latency_seconds"
#: The order the table shows them in: an event's way through the system.
STAGES = (REQUEST, *INGEST_STAGES, *WORKER_STAGES)


async def scrape(ports: Iterable[int]) -> Buckets:
    """The stage histograms of every process listening on ``ports``, summed."""
    total: Buckets = {}
    for port in ports:
        reply = await request(port, "GET", "/metrics", timeout_s=10)
        if reply.status != 200:
            continue
        for family in text_string_to_metric_families(reply.body.decode()):
            if family.name not in _STAGED and family.name != _REQUESTS:
                continue
            for sample in family.samples:
                if not sample.name.endswith("_bucket"):
                    continue
                stage = REQUEST if family.name == _REQUESTS else sample.labels["stage"]
                key = (family.name, stage)
                bound = float(sample.labels["le"])
                counts = total.setdefault(key, {})
                counts[bound] = counts.get(bound, 0.0) + sample.value
    return total


def difference(after: Buckets, before: Buckets) -> Buckets:
    return {
        key: {le: n - before.get(key, {}).get(le, 0.0) for le, n in counts.items()}
        for key, counts in after.items()
    }


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """``histogram_quantile``: linear inside the bucket that holds rank ``q``; None if empty.

    Answers the largest finite bound when the rank falls in the +Inf bucket."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def summarise(buckets: Buckets) -> dict[str, dict[str, Any]]:
    """Per stage: observations, p50 and p99 in ms; stages that saw nothing are left out."""
    found: dict[str, dict[str, Any]] = {}
    for (_, stage), counts in buckets.items():
        count = max(counts.values(), default=0.0)
        if count <= 0:
            continue
        p50, p99 = quantile(0.5, counts), quantile(0.99, counts)
        found[stage] = {
            "count": int(count),
            "p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "p99_ms": None if p99 is None else round(p99 * 1000, 2),
        }
    return {stage: found[stage] for stage in STAGES if stage in found}
