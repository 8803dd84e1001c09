"""A test that lacks a system binary: a loud notice locally, a failure under CI=true."""

from __future__ import annotations

import pytest

from testkit import REPO_ROOT

pytest_plugins = ["pytester"]

NEEDS_REDIS = """
import pytest

from testkit import REPO_ROOT
from testkit import require_service

REDIS = "/nonexistent/redis-server"

@pytest.fixture
def redis() -> str:
    return require_service(REDIS, "redis-server")

def test_in_body() -> None:
    require_service(REDIS, "redis-server")

def test_in_fixture(redis: str) -> None:
    pass

def test_unaffected() -> None:
    assert require_service("/bin/sh", "dash") == "/bin/sh"
"""


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest("-p", "tests.services_policy", "-p", "no:asyncio")


def test_locally_a_missing_binary_skips_with_the_install_command(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(test_needs_redis=NEEDS_REDIS)

    result = _run(pytester)

    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "*! missing system packages: tests skipped !*",
            "/nonexistent/redis-server (Debian package redis-server): 2 tests skipped",
            "    sudo apt-get install -y redis-server",
            "*sudo scripts/system-packages.sh",
            "*EVENTFLOW_TEST_REDIS_URL*",
        ]
    )


def test_under_ci_a_missing_binary_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(test_needs_redis=NEEDS_REDIS)

    result = _run(pytester)

    result.assert_outcomes(passed=1, failed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*CI=true and /nonexistent/redis-server is not installed*",
            "*! missing system packages: tests failed (CI=true) !*",
            "    sudo apt-get install -y redis-server",
        ]
    )


def test_no_notice_when_nothing_is_missing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile("def test_plain() -> None:\n    pass\n")

    result = _run(pytester)

    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "missing system packages" not in result.stdout.str()


def test_under_ci_the_policy_holds_when_xdist_runs_the_tests_in_workers(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    # The workers are new interpreters: they import the plugin and testkit from the repository.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makepyfile(test_needs_redis=NEEDS_REDIS)

    result = pytester.runpytest_subprocess(
        "-p", "tests.services_policy", "-p", "no:asyncio", "-p", "no:cacheprovider", "-n", "2"
    )

    result.assert_outcomes(passed=1, failed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*! missing system packages: tests failed (CI=true) !*",
            "/nonexistent/redis-server (Debian package redis-server): 2 tests failed (CI=true)",
        ]
    )
