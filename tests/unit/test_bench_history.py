"""The bench's history scenario: growth ratios, the CPU dashboards add, its targets and table."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bench.dashboards import accounts_for
from bench.history_report import (
    DASHBOARDS_TARGET,
    LISTS_TARGET,
    READS,
    STATS_TARGET,
    Latency,
    SizeFigures,
    added_cpu,
    checks,
    growth,
    history_json,
    history_table,
)
from bench.report import RunResult, ScenarioResult, target_checks


def test_growth_is_the_ratio_of_the_larger_size_to_the_smaller() -> None:
    assert growth(2.0, 5.0) == 2.5
    assert growth(4.0, 3.0) == 0.75
    assert growth(3.0, 10.0) == 3.33


def test_growth_is_unknown_without_both_figures_or_from_nothing() -> None:
    assert growth(None, 5.0) is None
    assert growth(2.0, None) is None
    assert growth(0.0, 5.0) is None, "no ratio to a period that used nothing"
    assert growth(-0.4, 5.0) is None, "a negative difference is noise, not a base"


def test_added_cpu_sums_the_roles_difference_from_the_baseline() -> None:
    baseline = {"api": 8.0, "worker": 3.0, "postgres": 2.5, "redis": 1.0}
    busy = {"api": 20.5, "worker": 3.5, "postgres": 9.0, "redis": 0.5}
    assert added_cpu(baseline, busy, ["postgres"]) == 6.5
    assert added_cpu(baseline, busy, ["api", "worker"]) == 13.0
    assert added_cpu(baseline, busy, ["redis"]) == -0.5, "noise is shown, not hidden"


def test_added_cpu_is_unknown_for_roles_that_were_not_sampled() -> None:
    assert added_cpu({"up": 1.0}, {"up": 2.0}, ["postgres"]) is None
    assert added_cpu({"postgres": 1.0}, {}, ["postgres"]) is None


def test_dashboards_spread_over_as_few_accounts_as_the_stream_cap_allows() -> None:
    # EventFlow lets one account hold 8 live streams.
    assert accounts_for(1) == 1
    assert accounts_for(8) == 1
    assert accounts_for(9) == 2
    assert accounts_for(20) == 3


def _size(events: int, p99_ms: float, database: tuple[float, float]) -> SizeFigures:
    return SizeFigures(
        events=events,
        latency={name: Latency(p99_ms / 3, p99_ms, 1000, 0) for name in READS},
        baseline_cpu={"api": 10.0, "postgres": database[0]},
        dashboards_cpu={"api": 16.0, "postgres": database[1]},
        api_roles=("api",),
        database_roles=("postgres",),
        dashboards_open_s=0.5,
        dashboard_frames=200,
        ingest_per_s=20.0,
    )


def test_history_json_holds_both_sizes_their_growth_and_the_targets() -> None:
    sizes = [_size(1000, 6.0, (2.0, 5.0)), _size(10_000, 18.0, (2.0, 14.0))]
    found = history_json(sizes, accounts=3, dashboards=20)

    assert found["events_per_account"] == [1000, 10_000]
    assert found["sizes"][1]["latency"]["queued"] == {
        "p50_ms": 6.0,
        "p99_ms": 18.0,
        "requests": 1000,
        "errors": 0,
    }
    assert found["sizes"][0]["cpu"]["database_added"] == 3.0
    assert found["sizes"][1]["cpu"]["api_added"] == 6.0
    assert found["growth"]["stats"] == {"p50": 3.0, "p99": 3.0}
    assert found["growth"]["database_cpu_added"] == 4.0
    assert found["growth"]["api_cpu_added"] == 1.0
    # Latency within 20 ms at both sizes; the dashboards' 12 % at the larger one is too much.
    assert found["targets"] == [
        {"target": STATS_TARGET, "met": True},
        {"target": LISTS_TARGET, "met": True},
        {"target": DASHBOARDS_TARGET, "met": False},
    ]


def test_a_target_holds_only_if_it_holds_at_every_size() -> None:
    slow_at_ten_times = [_size(1000, 6.0, (2.0, 3.0)), _size(10_000, 25.0, (2.0, 3.0))]
    assert dict(checks(slow_at_ten_times)) == {
        STATS_TARGET: False,
        LISTS_TARGET: False,
        DASHBOARDS_TARGET: True,
    }


def test_the_table_shows_each_measure_at_both_sizes_and_the_main_table_its_targets() -> None:
    sizes = [_size(1000, 6.0, (2.0, 5.0)), _size(10_000, 18.0, (2.0, 14.0))]
    found = history_json(sizes, accounts=3, dashboards=20)
    out = Console(file=io.StringIO(), width=200)
    out.print(history_table("postgres", found))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "1,000 events" in text and "10,000 events" in text
    assert "2.0 / 6.0" in text and "6.0 / 18.0" in text and "x3.00 / x3.00" in text
    assert "+3.0 (2 → 5)" in text and "+12.0 (2 → 14)" in text and "x4.00" in text
    assert "fewest requests of a read" in text

    run = RunResult(20.0, 6.0, 18.0, {}, "", 0.0, details={"history": found})
    verdicts = dict(target_checks(ScenarioResult("postgres", "history", [run]), None))
    assert verdicts == {STATS_TARGET: True, LISTS_TARGET: True, DASHBOARDS_TARGET: False}


@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_every_mode_is_judged_on_the_history_targets(mode: str) -> None:
    run = RunResult(20.0, 6.0, 18.0, {}, "", 0.0)
    verdicts = dict(target_checks(ScenarioResult(mode, "history", [run]), None))
    assert verdicts == dict.fromkeys((STATS_TARGET, LISTS_TARGET, DASHBOARDS_TARGET))
