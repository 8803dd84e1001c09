"""Schema fuzzing: schemathesis against the live OpenAPI document of a running server, signed in,
on embedded SQLite and on PostgreSQL + Redis.

Every operation is exercised (examples, boundary coverage, random fuzzing and link-following
sequences) with the checks that hold the server to its document: no 5xx, only documented
statuses and content types, responses matching their schemas, and invalid input refused. The
short run here uses a fixed seed so that CI is reproducible; ``make fuzz`` runs a long one with a
fresh seed (EVENTFLOW_FUZZ_* variables below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import REPO_ROOT, EventflowProcess
from tests.conftest import TEST_SECRET

ST = str(Path(sys.executable).with_name("st"))
CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
MAX_EXAMPLES = int(os.environ.get("EVENTFLOW_FUZZ_MAX_EXAMPLES", "6"))
MIN_CASES = int(os.environ.get("EVENTFLOW_FUZZ_MIN_CASES", "300"))
# "random": a new seed each run (the long run); otherwise this fixed one.
SEED = os.environ.get("EVENTFLOW_FUZZ_SEED", "20261202")
TIMEOUT_S = float(os.environ.get("EVENTFLOW_FUZZ_TIMEOUT_S", "600"))

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres+redis"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventflowProcess]:
    env = {
        **os.environ,
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_LOG_LEVEL": "info",
        "PYTHONPATH": str(REPO_ROOT),
        # Every case comes from one address: at the default rate limits (30 logins, 20
        # registrations a minute) most account requests would be answered 429 after the first
        # few seconds, so the fuzzing would exercise the limiter instead of the routes. The
        # limits have tests of their own (test_rate_limits.py).
        "EVENTFLOW_LOGIN_RATE_PER_EMAIL": "100000/minute",
        "EVENTFLOW_LOGIN_RATE_PER_ADDRESS": "100000/minute",
        "EVENTFLOW_REGISTER_RATE_PER_EMAIL": "100000/minute",
        "EVENTFLOW_REGISTER_RATE_PER_ADDRESS": "100000/minute",
    }
    if request.param == "postgres+redis":
        env |= {
            "EVENTFLOW_DATABASE_URL": request.getfixturevalue("fresh_postgres"),
            "EVENTFLOW_REDIS_URL": request.getfixturevalue("redis_url"),
            "EVENTFLOW_REDIS_PREFIX": "fuzz" + os.urandom(4).hex(),
            "EVENTFLOW_JWT_SECRET": TEST_SECRET,
        }
    proc = EventflowProcess("up", env, tmp_path / "server.log")
    proc.start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        if proc.alive:
            proc.terminate()


def _token(url: str) -> str:
    account = {"email": f"fuzz-{os.urandom(4).hex()}@example.com", "password": "fuzzing-1234"}
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/api/v1/auth/register", json=account).status_code == 201
        login = client.post("/api/v1/auth/login", json=account)
        assert login.status_code == 200, login.text
        token: str = login.json()["access_token"]
        return token


#: Operations that end the token every request shares: fuzzed on their own, after the rest,
#: since signing out mid-run would turn every later request into a 401.
SIGN_OUTS = ("logout", "logout_all")


def _run(
    server: EventflowProcess, report: Path, operations: list[str]
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    command = [
        ST,
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {_token(server.url)}",
        *operations,
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--request-timeout",
        "10",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    if SEED != "random":
        command += ["--seed", SEED]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
        # Schemathesis keeps its example database and default report folder in the cwd.
        cwd=report.parent,
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def test_every_operation_conforms_to_the_schema(server: EventflowProcess, tmp_path: Path) -> None:
    excluded = [arg for name in SIGN_OUTS for arg in ("--exclude-operation-id", name)]
    result, report = _run(server, tmp_path / "schemathesis.json", excluded)
    _assert_conforms(result, report, server)
    operations = report["operations"]
    assert operations["tested"] == operations["total"] - len(SIGN_OUTS), operations
    assert report["test_cases"]["generated"] >= MIN_CASES, report["test_cases"]
    # Every phase ran, and the stateful one followed the links from created events.
    assert {name: phase["status"] for name, phase in report["phases"].items()} == {
        "examples": "success",
        "coverage": "success",
        "fuzzing": "success",
        "stateful": "success",
    }, report["phases"]
    included = [arg for name in SIGN_OUTS for arg in ("--include-operation-id", name)]
    # No links lead to or from them: the stateful phase would have nothing to follow. After
    # the first sign-out the token answers 401, a documented status, to every later case.
    included += ["--phases", "examples,coverage,fuzzing"]
    result, report = _run(server, tmp_path / "sign-outs.json", included)
    _assert_conforms(result, report, server)
    assert report["operations"]["tested"] == len(SIGN_OUTS), report["operations"]


def _assert_conforms(
    result: subprocess.CompletedProcess[str], report: dict[str, Any], server: EventflowProcess
) -> None:
    output = result.stdout[-12_000:] + result.stderr[-4_000:]
    assert result.returncode == 0, output
    assert report["failures"] == [] and report["errors"] == [], output
    assert "Traceback" not in server.log(), server.log()
