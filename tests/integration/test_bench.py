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
