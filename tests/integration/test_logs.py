"""Logs of real ``eventflow`` processes: JSON lines carrying the request id each answer returned
and the event and attempt of the worker's lines, never a secret; one line for a bad setting."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from testkit import EVENTFLOW, REPO_ROOT, EventflowProcess
from tests.conftest import TEST_SECRET
from tests.integration.log_handlers import HANDLED, LOGGED

pytestmark = pytest.mark.slow

Json = dict[str, Any]

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
EVENTS = "/api/v1/events"
TICKET = "/api/v1/stream/ticket"
STREAM = "/api/v1/stream"
# Secrets with a marker each, to be looked for in the logs.
PASSWORD = "pw-MARKER-7f3a9c correct horse"
WRONG_PASSWORD = "pw-MARKER-wrong-2b8e"
PAYLOAD = "payload-MARKER-91d0"
FORGED_TICKET = "ticket-MARKER-55aa"
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
PATIENCE_S = 60.0


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This test's settings alone (none of the caller's EVENTFLOW_*), at INFO, with the logging
    handler; the log format is left to its default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    env |= {
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_LOG_LEVEL": "info",
        "EVENTFLOW_HANDLERS": "tests.integration.log_handlers",
        "EVENTFLOW_RETRY_BASE_MS": "20",
        "EVENTFLOW_DISPATCH_INTERVAL_MS": "50",
        "PYTHONPATH": str(REPO_ROOT),  # the handler module under tests/
    }
    return env | {f"EVENTFLOW_{k.upper()}": v for k, v in settings.items()}


def json_lines(text: str) -> list[Json]:
    """Every line of a log as JSON; fails naming the first line that is not."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            lines.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\n{text[-3000:]}") from None
    for line in lines:
        assert RFC3339_UTC.fullmatch(line["time"]), line
        assert {"level", "logger", "message", "pid"} <= line.keys(), line
    return lines


def _access_lines(lines: list[Json]) -> dict[str, Json]:
    return {line["request_id"]: line for line in lines if line["logger"] == "eventflow.access"}


def _check_access(access: dict[str, Json], answers: list[httpx.Response]) -> None:
    """Each answer's request id names its request's access line."""
    for answer in answers:
        line = access[answer.headers["x-request-id"]]
        assert line["method"] == answer.request.method
        assert line["path"] == answer.request.url.path
        assert line["status"] == answer.status_code
        assert line["client"] == "127.0.0.1"
        assert line["duration_ms"] >= 0


async def _wait_completed(
    client: httpx.AsyncClient, headers: dict[str, str], event_id: str
) -> None:
    async with asyncio.timeout(PATIENCE_S):
        while True:
            response = await client.get(f"{EVENTS}/{event_id}", headers=headers)
            if response.json()["status"] == "completed":
                return
            await asyncio.sleep(0.1)


async def _sign_up(client: httpx.AsyncClient, answers: list[httpx.Response]) -> str:
    """An account, through refusals that carry the passwords; answers its token."""
    email = f"logs-{os.urandom(4).hex()}@example.com"
    refused = await client.post(REGISTER, json={"email": "not an email", "password": PASSWORD})
    assert refused.status_code == 422
    created = await client.post(REGISTER, json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    wrong = await client.post(LOGIN, json={"email": email, "password": WRONG_PASSWORD})
    assert wrong.status_code == 401
    login = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    answers += [refused, created, wrong, login]
    token: str = login.json()["access_token"]
    return token


async def test_a_run_logs_json_lines_with_each_answers_request_id_and_no_secret(
    tmp_path: Path,
) -> None:
    # stderr is a file: JSON lines by default.
    proc = EventflowProcess("up", _env(tmp_path, max_headers="12"), tmp_path / "up.log")
    proc.start()
    answers: list[httpx.Response] = []
    try:
        proc.wait_ready()
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as client:
            token = await _sign_up(client, answers)
            auth = {"Authorization": f"Bearer {token}"}
            event = {"type": LOGGED, "payload": {"note": PAYLOAD}}
            chosen = await client.post(
                EVENTS, json=event, headers={**auth, "X-Request-ID": "client-chosen.id:1"}
            )
            assert chosen.status_code == 202
            assert chosen.headers["x-request-id"] == "client-chosen.id:1"
            insane = await client.post(
                EVENTS, json=event, headers={**auth, "X-Request-ID": "x" * 129}
            )
            assert insane.status_code == 202
            assert insane.headers["x-request-id"] not in ("x" * 129, chosen.headers["x-request-id"])
            through_app = await client.post(
                EVENTS, json=event, headers={**auth, "Origin": "http://elsewhere.example"}
            )
            assert through_app.status_code == 202
            unauthorised = await client.post(EVENTS, json=event)
            assert unauthorised.status_code == 401
            answers += [chosen, insane, through_app, unauthorised]

            ticket = (await client.post(TICKET, headers=auth)).json()["ticket"]
            async with client.stream("GET", STREAM, params={"ticket": ticket}) as stream:
                assert stream.status_code == 200
                await anext(stream.aiter_lines())
            answers.append(stream)
            forged = await client.get(STREAM, params={"ticket": FORGED_TICKET})
            assert forged.status_code == 401
            answers.append(forged)
            flood = await client.get(
                "/health",
                headers={"X-Request-ID": "flood-1", **{f"x-h{i}": "1" for i in range(20)}},
            )
            assert flood.status_code == 431
            assert flood.headers["x-request-id"] == "flood-1"

            event_id = chosen.json()["id"]
            await _wait_completed(client, auth, event_id)
        assert await asyncio.to_thread(proc.terminate) == 0
    finally:
        proc.kill()
    text = proc.log(limit=None)
    for secret in (PASSWORD, WRONG_PASSWORD, token, ticket, FORGED_TICKET, PAYLOAD):
        assert secret not in text, secret
    lines = json_lines(text)
    _check_access(_access_lines(lines), answers)
    assert any("431" in line["message"] for line in lines if line.get("request_id") == "flood-1")
    # The handler's own line and the worker's note of its failure carry the event and attempt.
    runs = [line for line in lines if line.get("event_id") == event_id]
    assert {(line["message"], line["attempt"]) for line in runs} >= {(HANDLED, 2)}
    failed = [line for line in runs if line["attempt"] == 1]
    assert any("RuntimeError" in line["message"] for line in failed), runs
    assert "uvicorn.error" in {line["logger"] for line in lines}


async def test_several_http_processes_and_a_worker_without_the_secret_log_json(
    fresh_postgres: str, tmp_path: Path
) -> None:
    # No JWT secret: neither `migrate` nor `worker` signs or checks a token.
    env = _env(tmp_path, database_url=fresh_postgres)
    migrated = await asyncio.to_thread(
        subprocess.run, [EVENTFLOW, "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    assert any(line["message"] == "database is up to date" for line in json_lines(migrated.stderr))
    worker = EventflowProcess("worker", env, tmp_path / "worker.log")
    api_env = env | {"EVENTFLOW_JWT_SECRET": TEST_SECRET, "EVENTFLOW_HTTP_WORKERS": "2"}
    api = EventflowProcess("api", api_env, tmp_path / "api.log")
    answers: list[httpx.Response] = []
    try:
        worker.start()
        api.start()
        worker.wait_ready()
        api.wait_ready()
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            auth = {"Authorization": f"Bearer {await _sign_up(client, answers)}"}
            event = {"type": LOGGED, "payload": {"note": PAYLOAD}}
            for _ in range(10):
                # A connection each, so that both HTTP processes are likely to answer some.
                async with httpx.AsyncClient(base_url=api.url, timeout=10) as one:
                    answers.append(await one.post(EVENTS, json=event, headers=auth))
            assert {answer.status_code for answer in answers[-10:]} == {202}
            for answer in answers[-10:]:
                await _wait_completed(client, auth, answer.json()["id"])
        assert await asyncio.to_thread(api.terminate) == 0
        assert await asyncio.to_thread(worker.terminate) == 0
    finally:
        api.kill()
        worker.kill()
    api_lines = json_lines(api.log(limit=None))
    _check_access(_access_lines(api_lines), answers)
    # The supervisor and the HTTP processes it started, uvicorn's lines included: one format.
    # (On a loaded machine the supervisor may replace a process that was slow to answer its
    # health check: how many wrote is not the point.)
    [supervisor] = {
        line["pid"] for line in api_lines if line["message"].startswith("Started parent")
    }
    served = {line["pid"] for line in api_lines if line["message"].startswith("Started server")}
    assert served and supervisor not in served
    worker_text = worker.log(limit=None)
    assert PAYLOAD not in worker_text + api.log(limit=None)
    handled = {line["event_id"] for line in json_lines(worker_text) if line["message"] == HANDLED}
    assert handled == {answer.json()["id"] for answer in answers[-10:]}


@pytest.mark.parametrize(
    ("argv", "settings", "expected"),
    [
        (["api", "--log-level", "verbose"], {}, "EVENTFLOW_LOG_LEVEL"),
        (["worker"], {"port": "abc"}, "EVENTFLOW_PORT"),
        (["up"], {"log_format": "xml"}, "EVENTFLOW_LOG_FORMAT"),
        (["worker"], {"access_log": "sometimes"}, "EVENTFLOW_ACCESS_LOG"),
        (["api"], {"database_url": "mysql://root:db-MARKER@db/app"}, "scheme 'mysql'"),
        (["up"], {"database_url": "postgresql://u:db-MARKER@db:port/x"}, "not a valid URL"),
        (["worker"], {"redis_url": "http://cache:6379"}, "EVENTFLOW_REDIS_URL"),
        (["worker"], {"jwt_secret": "short-secret-MARKER"}, "EVENTFLOW_JWT_SECRET is too weak"),
        (
            ["api"],
            {"database_url": "postgresql://nobody@127.0.0.1:1/none"},
            "EVENTFLOW_JWT_SECRET is required with PostgreSQL",
        ),
        (["up"], {"handlers": "no_such_handlers"}, "EVENTFLOW_HANDLERS: cannot import"),
        (["worker", "--concurrency-of-doom", "3"], {}, "No such option"),
    ],
)
async def test_a_bad_setting_is_one_line_and_exit_code_2(
    tmp_path: Path, argv: list[str], settings: dict[str, str], expected: str
) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [EVENTFLOW, *argv],
        env=_env(tmp_path, **settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("eventflow: ")
    assert expected in lines[0]
    assert "MARKER" not in lines[0]


def test_the_text_format_is_for_people(tmp_path: Path) -> None:
    result = subprocess.run(
        [EVENTFLOW, "migrate"],
        env=_env(tmp_path, log_format="text"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\S+Z INFO +eventflow\.cli: database is up to date", lines[-1]
    ), lines
    for line in lines:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(line)
