"""The suite's time per test folder and its wall time, printed at the end of every run."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest


def folder_of(nodeid: str) -> str:
    """``tests/unit`` for ``tests/unit/test_x.py::test_y``: the first two path parts."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else path


class FolderTimes:
    """Sums each folder's setup, call and teardown times from the test reports.

    The reports reach the controlling process also when pytest-xdist runs the tests in several
    workers; the folders' times then add up to more than the wall time.
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._started = time.monotonic()
        self._spent: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._spent[folder_of(report.nodeid)] += report.duration

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self._spent:
            return
        parallel = f" (tests in {self._workers} parallel workers)" if self._workers > 1 else ""
        terminalreporter.write_sep("-", "time per folder" + parallel)
        for folder in sorted(self._spent):
            terminalreporter.write_line(f"{folder:<24} {self._spent[folder]:8.1f} s")
        wall = time.monotonic() - self._started
        terminalreporter.write_line(f"{'wall time':<24} {wall:8.1f} s")


def pytest_configure(config: pytest.Config) -> None:
    workers = getattr(config.option, "numprocesses", None)
    config.pluginmanager.register(
        FolderTimes(workers if isinstance(workers, int) else 1), "eventflow-folder-times"
    )
