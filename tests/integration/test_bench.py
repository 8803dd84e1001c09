"""A tiny run of the benchmark (``make bench``) so that it cannot rot (figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.history_report import READS
from testkit import REPO_ROOT

pytestmark = pytest.mark.slow

SCENARIOS = {
    "ceiling",
    "ingest-single",
    "ingest-single-key",
    "ingest-batch",
    "end-to-end",
    "worker-drain",
    "history",
}
# The history scenario at a tenth of its smallest size: 2,000 events per account, then 20,000.
HISTORY = ["--history-events", "2000", "--history-dashboards", "9", "--history-rate", "5"]


@pytest.mark.timeout(400)
def test_bench_embedded_reports_every_scenario(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    args = [sys.executable, "-m", "bench", "--mode", "embedded", "--runs", "1", "--duration", "1"]
    args += ["--warmup", "0", "--connections", "8", "--batch-connections", "2"]
    args += ["--batch-size", "50", "--drain-events", "1000", *HISTORY, "--json", str(report_path)]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=380, check=False, cwd=REPO_ROOT
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ingest-single" in done.stdout  # the table
    report = json.loads(report_path.read_text())
    assert report["failures"] == []
    results = {r["scenario"]: r for r in report["results"]}
    assert set(results) == SCENARIOS
    for name, result in results.items():
        assert result["events_per_s"] > 0, name
        assert result["ok"], (name, result["runs"])
    single = results["ingest-single"]["runs"][0]
    assert single["verified"] is True
    assert single["acknowledged_events"] == single["wrk"]["accepted"] > 0
    # The same load sent with an API key: every 202'd event is stored too.
    with_key = results["ingest-single-key"]["runs"][0]
    assert with_key["verified"] is True and with_key["wrk"]["accepted"] > 0
    drain = results["worker-drain"]["runs"][0]
    assert drain["completed"] == drain["prefilled"] == 1000

    # The machine is named, with how fast its disk flushes.
    machine = report["machine"]
    assert machine["cpu_model"] and machine["kernel"] and machine["virtualisation"]
    assert machine["fsync"]["probes"] > 0 and machine["fsync"]["p99_ms"] > 0
    assert "Machine: " in done.stdout and "fdatasync p50" in done.stdout
    # Every stage an event passes is timed, beside the database's own commits.
    assert "Stages, p50 / p99 ms" in done.stdout
    assert {"request", "wait", "insert", "answer"} <= set(single["stages"])
    assert single["stages"]["insert"]["count"] > 0
    assert single["commit_probe"]["commits"] > 0 and single["commit_probe"]["p99_ms"] > 0
    end_to_end = results["end-to-end"]["runs"][0]
    assert {"wait", "insert", "claim", "handler", "outcome_write"} <= set(end_to_end["stages"])
    assert {"claim", "handler", "outcome_write"} <= set(drain["stages"])
    # Targets are ratios to the same run's ceiling.
    labels = {t["target"] for t in report["targets"]}
    assert "≥0.2x ceiling" in labels
    assert_history(results["history"], done.stdout)


def assert_history(result: dict[str, Any], table: str) -> None:
    """Both sizes measured, every figure present and plausible, each growth computed."""
    (run,) = result["runs"]
    found = run["history"]
    assert found["accounts"] == 2, "9 dashboards: 8 on one account, the cap, and 1 on another"
    assert found["events_per_account"] == [2000, 20_000]
    assert found["stats_equal_full_count"] is True
    for size in found["sizes"]:
        assert set(size["latency"]) == set(READS)
        for name, latency in size["latency"].items():
            assert latency["requests"] > 10, name
            assert latency["errors"] == 0, name
            assert 0 < latency["p50_ms"] <= latency["p99_ms"] < 5000, name
        assert size["ingest_per_s"] > 0
        assert size["dashboard_frames"] > 0, "the dashboards were live while measured"
        cpu = size["cpu"]
        assert cpu["api_added"] is not None and cpu["database_added"] is not None
        assert all(0 <= v < 400 for v in (*cpu["baseline"].values(), *cpu["dashboards"].values()))
    for name in READS:
        assert found["growth"][name]["p99"] > 0, name
        assert found["growth"][name]["p50"] > 0, name
    assert {t["target"] for t in found["targets"]} == {
        "stats p99≤20ms",
        "lists p99≤20ms",
        "dashboards: database +≤10% core",
    }
    assert "2,000 events" in table and "20,000 events" in table
    assert "list status=queued" in table and "database CPU, dashboards" in table


@pytest.mark.timeout(300)
def test_bench_history_on_postgres_measures_both_sizes(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    args = [sys.executable, "-m", "bench", "--mode", "postgres", "--scenarios", "history"]
    args += ["--duration", "1", *HISTORY, "--json", str(report_path)]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=280, check=False, cwd=REPO_ROOT
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["failures"] == []
    (result,) = report["results"]
    assert result["scenario"] == "history" and result["ok"], result["runs"]
    assert_history(result, done.stdout)
    # The database is PostgreSQL's processes, apart from the API's.
    assert report["results"][0]["runs"][0]["history"]["roles"] == {
        "api": ["api"],
        "database": ["postgres"],
    }
