"""The latency histogram the tallies keep, and the percentiles ``GET /stats`` reads from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import eventflow.db
from eventflow.api.statistics import percentile
from eventflow.db.rows import LatencyBucket
from eventflow.db.tallies import LATENCY_BOUNDS_MS, latency_buckets, latency_name


def test_each_latency_falls_in_the_first_bucket_that_bounds_it() -> None:
    assert [latency_name(ms) for ms in (0, 1, 2, 4, 1_000, 1_001)] == [
        "latency.1",
        "latency.1",
        "latency.2",
        "latency.5",
        "latency.1000",
        "latency.1500",
    ]
    assert latency_name(10**9) == "latency.more"


def test_buckets_come_in_bound_order_with_their_lower_bounds() -> None:
    counts = {"latency.more": 1, "latency.10": 4, "latency.2": 3}
    assert latency_buckets(counts) == [
        LatencyBucket(1, 2, 3),
        LatencyBucket(7, 10, 4),
        LatencyBucket(3_600_000, None, 1),
    ]


def test_percentiles_interpolate_inside_their_bucket() -> None:
    buckets = [LatencyBucket(10, 20, 50), LatencyBucket(20, 30, 50)]
    assert percentile(buckets, 0.25) == 15
    assert percentile(buckets, 0.5) == 20
    assert percentile(buckets, 0.99) == 30
    assert percentile([], 0.5) is None
    assert percentile([LatencyBucket(3_600_000, None, 2)], 0.5) == 3_600_000


def test_the_readers_buckets_are_the_ones_the_triggers_write() -> None:
    path = Path(eventflow.db.__file__).parent / "migrations/versions/0007_event_tallies.py"
    spec = importlib.util.spec_from_file_location("tallies_migration", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.LATENCY_BOUNDS_MS == LATENCY_BOUNDS_MS
