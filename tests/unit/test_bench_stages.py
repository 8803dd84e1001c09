"""The bench's stage percentiles (estimated from histogram buckets), its ratio targets, and
the bound its CPU per event puts on them."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from bench.report import RunResult, ScenarioResult, cpu_table, results_json, target_checks
from bench.stages import difference, quantile, summarise
from bench.usage import Usage


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


def _run(events_per_s: float, cpu: dict[str, float], wrk_cpu_s: float | None) -> RunResult:
    details: dict[str, object] = {}
    if wrk_cpu_s is not None:
        details["wrk"] = {"duration_s": 6.0, "wrk_cpu_s": wrk_cpu_s}
    return RunResult(
        events_per_s=events_per_s,
        p50_ms=None,
        p99_ms=None,
        usage={
            role: Usage(cpu_percent=p, peak_rss_mb=50.0, waiting_percent=0.0)
            for role, p in cpu.items()
        },
        notes="",
        others_cpu_percent=0.0,
        details=details,
    )


def test_each_process_s_cpu_per_event_bounds_the_rate_at_full_cpu() -> None:
    # 10,000 events/s: the API half a core, PostgreSQL 40 %, Redis 10 %, wrk 0.6 s of 6 s.
    run = _run(10_000, {"api": 50.0, "postgres": 40.0, "redis": 10.0}, wrk_cpu_s=0.6)
    assert run.cpu_us_by_process() == pytest.approx(
        {"api": 50.0, "postgres": 40.0, "redis": 10.0, "wrk": 10.0}
    )
    # 110 µs of CPU per event in all: two CPUs doing nothing else manage 18,182 a second.
    assert run.events_per_s_at_full_cpu(2) == pytest.approx(2e6 / 110)
    assert run.events_per_s_at_full_cpu(4) == pytest.approx(4e6 / 110)
    # A drain has no wrk; a run that moved nothing has no bound at all.
    assert _run(10_000, {"worker": 50.0}, None).events_per_s_at_full_cpu(2) == pytest.approx(40_000)
    assert _run(0, {"worker": 50.0}, None).events_per_s_at_full_cpu(2) is None


def _rendered(table: object) -> str:
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_the_cpu_table_says_which_ratio_targets_the_cpu_per_event_leaves_within_reach() -> None:
    ceiling = ScenarioResult("—", "ceiling", [_run(20_000, {"ceiling": 99.0}, wrk_cpu_s=0.9)])
    # 80 + 20 + 10 µs an event: at most 18,182/s on two CPUs, 0.91 times the ceiling.
    single = ScenarioResult(
        "distributed", "ingest-single", [_run(8_000, {"api": 64.0, "postgres": 16.0}, 0.48)]
    )
    # 50 + 100 µs an event: at most 13,333/s, 0.67 times the ceiling, short of 1.
    drain = ScenarioResult(
        "distributed", "worker-drain", [_run(6_000, {"worker": 30.0, "postgres": 60.0}, None)]
    )
    results = [ceiling, single, drain]
    assert single.of_ceiling_at_full_cpu(20_000, 2) == pytest.approx(0.909, abs=1e-3)
    assert drain.of_ceiling_at_full_cpu(20_000, 2) == pytest.approx(0.667, abs=1e-3)
    text = _rendered(cpu_table(results, 2))
    lines = {line.split("│")[2].strip(): line for line in text.splitlines() if "│" in line}
    assert "0.91" in lines["ingest-single"] and "✓ ≥0.45x ceiling" in lines["ingest-single"]
    assert "0.67" in lines["worker-drain"] and "✗ ≥1x ceiling" in lines["worker-drain"]
    assert set(lines) == {"ingest-single", "worker-drain"}, "never the ceiling"
    report = results_json(results, {}, 2)
    assert [r["of_ceiling_at_full_cpu"] for r in report["results"]][1:] == [0.909, 0.667]
    assert report["results"][2]["runs"][0]["cpu_us_per_event_by_process"] == {
        "worker": 50.0,
        "postgres": 100.0,
    }
