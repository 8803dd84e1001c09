"""The Dockerfile and the systemd units: what they run, run here for real (no Docker engine and
no systemd as init on this machine; the compose file has tests/integration/test_compose.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from eventflow.config import Settings
from eventflow.runtime import shutdown_deadline_s
from eventflow.serve import GRACEFUL_SHUTDOWN_S
from testkit import EVENTFLOW, REPO_ROOT, EventflowProcess, require_service

DOCKERFILE = REPO_ROOT / "Dockerfile"
SYSTEMD = REPO_ROOT / "deploy" / "systemd"
UNITS = {"api": "eventflow-api.service", "worker": "eventflow-worker@.service"}
#: Where deploy/systemd's units expect the installed command.
INSTALLED = "/opt/eventflow/venv/bin/eventflow"


def _instructions() -> dict[str, str]:
    """The Dockerfile's final stage: each instruction's last argument text, ENV's joined."""
    stage = DOCKERFILE.read_text().replace("\\\n", " ").split("\nFROM ")[-1]
    found: dict[str, str] = {}
    for line in stage.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword.isupper() and keyword:
            found[keyword] = (found.get(keyword, "") + " " + rest).strip()
    return found


def _image_env() -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", _instructions()["ENV"]))


def _image_argv(text: str) -> list[str]:
    """An exec-form command of the image, with this checkout's `eventflow` in it."""
    argv: list[str] = json.loads(text)
    return [EVENTFLOW if arg == "eventflow" else arg for arg in argv]


def test_the_image_serves_its_default_command_and_its_health_check_sees_it(
    tmp_path: Path,
) -> None:
    steps = _instructions()
    assert steps["ENTRYPOINT"] == '["eventflow"]'
    command = _image_argv(steps["ENTRYPOINT"]) + json.loads(steps["CMD"])
    health = _image_argv(steps["HEALTHCHECK"].split(" CMD ", 1)[1])
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    env = {
        **inherited,
        **_image_env(),
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        # The image binds 0.0.0.0; on this shared machine, loopback.
        "EVENTFLOW_HOST": "127.0.0.1",
    }
    server = EventflowProcess(command[1], env, tmp_path / "up.log", argv=command)
    check = {**env, "EVENTFLOW_PORT": str(server.port)}
    try:
        server.start()
        server.wait_ready()
        done = subprocess.run(health, env=check, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, f"ok: {server.url}/health\n"), done.stderr
        assert server.terminate() == 0
    finally:
        server.kill()
    done = subprocess.run(health, env=check, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout.startswith(f"unhealthy: {server.url}/health: ")


def test_health_in_embedded_mode_reports_a_missing_database_without_making_one(
    tmp_path: Path,
) -> None:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    data = tmp_path / "data"
    done = subprocess.run(
        [EVENTFLOW, "health"],
        env={**inherited, "EVENTFLOW_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (
        1,
        f"unhealthy: database: no database at {data}/eventflow.db\n",
    )
    assert not data.exists()


@pytest.mark.parametrize("command", ["up", "api", "worker", "migrate", "health"])
def test_every_command_the_deployments_run_exists(command: str) -> None:
    result = subprocess.run(
        [EVENTFLOW, command, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--database-url" in result.stdout


def _unit(role: str) -> str:
    return (SYSTEMD / UNITS[role]).read_text()


def _setting(unit: str, key: str) -> str:
    found = re.search(rf"^{key}=(.*)$", unit, re.MULTILINE)
    assert found is not None, key
    return found[1]


@pytest.mark.parametrize("role", UNITS)
def test_systemd_units_verify_and_run_the_right_command(role: str, tmp_path: Path) -> None:
    verify = require_service("systemd-analyze", "systemd")
    unit = _unit(role)
    assert _setting(unit, "ExecStart") == f"{INSTALLED} {role}"
    # systemd checks that the command exists: this checkout's stands in for the installed one.
    installed = tmp_path / UNITS[role].replace("@.", "@1.")
    installed.write_text(unit.replace(INSTALLED, EVENTFLOW))
    done = subprocess.run(
        [verify, "verify", "--man=no", str(installed)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_systemd_waits_longer_than_the_shutdown_takes() -> None:
    api = float(_setting(_unit("api"), "TimeoutStopSec"))
    worker = float(_setting(_unit("worker"), "TimeoutStopSec"))

    assert api > GRACEFUL_SHUTDOWN_S + shutdown_deadline_s(serve_api=True, run_worker=False)
    assert worker > shutdown_deadline_s(serve_api=False, run_worker=True)


def test_the_systemd_environment_file_holds_settings_and_no_secret() -> None:
    lines = (SYSTEMD / "eventflow.env").read_text().splitlines()
    variables = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    known = {f"EVENTFLOW_{name.upper()}" for name in Settings.model_fields}

    assert set(variables) <= known, set(variables) - known
    assert variables["EVENTFLOW_JWT_SECRET"] == ""
    assert variables["EVENTFLOW_REGISTRATION"] == "closed"
    for name in ("EVENTFLOW_DATABASE_URL", "EVENTFLOW_REDIS_URL"):
        assert ":REPLACE_ME@" in variables[name]


@pytest.mark.parametrize(
    "path",
    ["systemd/eventflow-api.service", "systemd/eventflow-worker@.service", "nginx/eventflow.conf"],
)
def test_the_operations_guide_shows_the_files_as_they_are(path: str) -> None:
    guide = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert (
        f"```{'nginx' if path.endswith('.conf') else 'ini'}\n"
        + (REPO_ROOT / "deploy" / path).read_text()
        + "```\n"
        in guide
    )
