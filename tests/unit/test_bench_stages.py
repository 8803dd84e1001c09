"""The bench's stage percentiles (estimated from histogram buckets) and its ratio targets."""

from __future__ import annotations

import math

import pytest

from bench.report import RunResult, ScenarioResult, target_checks
from bench.stages import difference, quantile, summarise


def test_quantile_interpolates_inside_the_bucket_that_holds_the_rank() -> None:
    # 100 observations: 50 under 1 ms, 40 between 1 and 2 ms, 10 between 2 and 5 ms.
    cumulative = {0.001: 50.0, 0.002: 90.0, 0.005: 100.0, math.inf: 100.0}
    assert quantile(0.5, cumulative) == pytest.approx(0.001)
    assert quantile(0.7, cumulative) == pytest.approx(0.0015)
    assert quantile(0.99, cumulative) == pytest.approx(0.002 + 0.003 * 0.9)


def test_quantile_in_the_open_bucket_answers_the_largest_bound_and_none_when_empty() -> None:
    assert quantile(0.99, {0.01: 1.0, math.inf: 10.0}) == 0.01
    assert quantile(0.5, {0.01: 0.0, math.inf: 0.0}) is None


def test_summarise_takes_the_difference_and_orders_stages_along_the_way() -> None:
    before = {("eventflow_ingest_stage_seconds", "insert"): {0.001: 10.0, math.inf: 10.0}}
    after = {
        ("eventflow_worker_stage_seconds", "claim"): {0.001: 4.0, math.inf: 4.0},
        ("eventflow_ingest_stage_seconds", "insert"): {0.001: 10.0, math.inf: 20.0},
        ("eventflow_ingest_stage_seconds", "publish"): {0.001: 0.0, math.inf: 0.0},
    }
    found = summarise(difference(after, before))
    assert list(found) == ["insert", "claim"], "stages that saw nothing are left out"
    # The ten new inserts all took over 1 ms: the estimate cannot place them above it.
    assert found["insert"] == {"count": 10, "p50_ms": 1.0, "p99_ms": 1.0}


def _single(events_per_s: float, p99_ms: float, commit_p99_ms: float) -> ScenarioResult:
    run = RunResult(
        events_per_s=events_per_s,
        p50_ms=1.0,
        p99_ms=p99_ms,
        usage={},
        notes="",
        others_cpu_percent=0.0,
        details={"commit_probe": {"p99_ms": commit_p99_ms}},
    )
    return ScenarioResult("embedded", "ingest-single", [run])


@pytest.mark.parametrize(
    ("events_per_s", "p99_ms", "commit_p99_ms", "expected"),
    [
        (2_000, 20.0, 1.0, {"≥0.2x ceiling": True, "p99≤25ms or commit p99+10ms": True}),
        (1_999, 20.0, 1.0, {"≥0.2x ceiling": False, "p99≤25ms or commit p99+10ms": True}),
        # A slow disk: 60 ms is fine when the database's own commits take 55 ms.
        (3_000, 60.0, 55.0, {"≥0.2x ceiling": True, "p99≤25ms or commit p99+10ms": True}),
        (3_000, 60.0, 45.0, {"≥0.2x ceiling": True, "p99≤25ms or commit p99+10ms": False}),
    ],
)
def test_targets_are_ratios_to_the_same_runs_ceiling_and_tails_allow_for_the_disk(
    events_per_s: float, p99_ms: float, commit_p99_ms: float, expected: dict[str, bool]
) -> None:
    checks = dict(target_checks(_single(events_per_s, p99_ms, commit_p99_ms), 10_000.0))
    assert checks == expected
