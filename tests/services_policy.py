"""No quiet skips for a missing system binary: a failure under CI=true, a loud notice else."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from testkit.binaries import PG_PACKAGE, MissingService
from testkit.postgres import DATABASE_URL_ENV
from testkit.redis import REDIS_URL_ENV

INSTALL_SCRIPT = "scripts/system-packages.sh"
# Packages whose servers the tests can reach elsewhere instead (see testkit/).
URL_OVERRIDES = {PG_PACKAGE: DATABASE_URL_ENV, "redis-server": REDIS_URL_ENV}
# The report's user property naming the missing (binary, package): reports reach the
# controlling process also when pytest-xdist runs the tests in workers.
_MISSING_SERVICE = "missing-service"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.excinfo is None or not isinstance(call.excinfo.value, MissingService):
        return report
    missing = call.excinfo.value
    report.user_properties.append((_MISSING_SERVICE, [missing.binary, missing.package]))
    if in_ci():
        report.outcome = "failed"
        report.longrepr = f"CI=true and {missing.msg}"
    return report


class MissingServices:
    """The tests that could not run for want of a system binary, and the summary about them."""

    def __init__(self) -> None:
        # (binary, package) -> node ids of the tests that could not run without it.
        self._missing: dict[tuple[str, str], list[str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == _MISSING_SERVICE and isinstance(value, list):
                binary, package = (str(part) for part in value)
                self._missing.setdefault((binary, package), []).append(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if in_ci() and self._missing and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self._missing:
            return
        write = terminalreporter.write_line
        outcome = "failed (CI=true)" if in_ci() else "skipped"
        terminalreporter.section(f"missing system packages: tests {outcome}", sep="!", red=True)
        for (binary, package), node_ids in self._missing.items():
            count = len(set(node_ids))
            tests = "1 test" if count == 1 else f"{count} tests"
            write(f"{binary} (Debian package {package}): {tests} {outcome}")
        packages = list(dict.fromkeys(package for _, package in self._missing))
        write("Install the missing packages with:", bold=True)
        write(f"    sudo apt-get install -y {' '.join(packages)}", bold=True)
        write(f"or all that the suite needs at once: sudo {INSTALL_SCRIPT}")
        urls = [URL_OVERRIDES[package] for package in packages if package in URL_OVERRIDES]
        if urls:
            write(f"or point the tests at existing servers with {' / '.join(urls)}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(MissingServices(), "eventflow-missing-services")
