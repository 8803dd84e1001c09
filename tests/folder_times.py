"""The suite's wall time per test folder, printed at the end of every run."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Generator

import pytest

# Folder -> seconds its tests took from setup to teardown, the fixtures they started included.
_SPENT = pytest.StashKey[dict[str, float]]()
_SESSION_START = pytest.StashKey[float]()


def folder_of(nodeid: str) -> str:
    """``tests/unit`` for ``tests/unit/test_x.py::test_y``: the first two path parts."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else path


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SPENT] = defaultdict(float)
    config.stash[_SESSION_START] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    started = time.monotonic()
    try:
        return (yield)
    finally:
        item.config.stash[_SPENT][folder_of(item.nodeid)] += time.monotonic() - started


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    spent = config.stash[_SPENT]
    if not spent:
        return
    total = time.monotonic() - config.stash[_SESSION_START]
    terminalreporter.write_sep("-", "wall time per folder")
    for folder in sorted(spent):
        terminalreporter.write_line(f"{folder:<24} {spent[folder]:8.1f} s")
    outside = max(0.0, total - sum(spent.values()))
    terminalreporter.write_line(f"{'collection and start-up':<24} {outside:8.1f} s")
    terminalreporter.write_line(f"{'total':<24} {total:8.1f} s")
