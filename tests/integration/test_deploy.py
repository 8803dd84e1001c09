"""The Dockerfile and compose file, checked as far as this machine can (no Docker engine here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from eventflow.config import Settings

ROOT = Path(__file__).resolve().parents[2]
EVENTFLOW = str(Path(sys.executable).with_name("eventflow"))


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_runs_api_and_workers_on_postgres_and_redis() -> None:
    services = _compose()["services"]
    assert {"api", "worker", "postgres", "redis"} <= set(services)
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    for role in ("api", "worker"):
        env = services[role]["environment"]
        assert env["EVENTFLOW_DATABASE_URL"].startswith("postgresql://")
        assert env["EVENTFLOW_REDIS_URL"].startswith("redis://redis:")
        # The secret is required from the operator, never defaulted.
        assert re.fullmatch(r"\$\{EVENTFLOW_JWT_SECRET:\?.+\}", env["EVENTFLOW_JWT_SECRET"])
        known = {f"EVENTFLOW_{name.upper()}" for name in Settings.model_fields}
        assert set(env) <= known, set(env) - known
        assert services[role]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_image_entry_points_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["eventflow"]' in dockerfile
    assert 'CMD ["up"]' in dockerfile
    services = _compose()["services"]
    commands = {"up", services["api"]["command"][0], services["worker"]["command"][0]}
    for command in commands:
        result = subprocess.run(
            [EVENTFLOW, command, "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "--database-url" in result.stdout
