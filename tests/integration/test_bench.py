"""A tiny run of the benchmark (``make bench``) so that it cannot rot (figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import REPO_ROOT

pytestmark = pytest.mark.slow

SCENARIOS = {"ceiling", "ingest-single", "ingest-batch", "end-to-end", "worker-drain"}


@pytest.mark.timeout(300)
def test_bench_embedded_reports_every_scenario(tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    args = [sys.executable, "-m", "bench", "--mode", "embedded", "--runs", "1", "--duration", "1"]
    args += ["--warmup", "0", "--connections", "8", "--batch-connections", "2"]
    args += ["--batch-size", "50", "--drain-events", "1000", "--json", str(report_path)]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=280, check=False, cwd=REPO_ROOT
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
