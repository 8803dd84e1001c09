"""``GET /metrics`` on real processes: exact counts, several HTTP processes, the worker's port,
the token, rejections by reason; and the dashboard and alert rules name only real metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from eventflow.metrics import Metrics
from testkit import EventflowProcess, free_port
from tests.conftest import TEST_SECRET
from tests.integration.procs import cluster, login, post_many, processes_that_answer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-for-tests-0123456789"
Samples = list[Sample]


async def scrape(url: str, token: str | None = TOKEN) -> Samples:
    """The samples of one ``GET /metrics``, parsed as Prometheus parses them."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def until(
    url: str, done: Callable[[Samples], bool], within: float = 90, token: str | None = TOKEN
) -> Samples:
    """Scrape until ``done`` holds (workers run at their own pace); fails after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        samples = await scrape(url, token)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, "the metrics never got there"
        await asyncio.sleep(0.3)


def _bodies(event_type: str, count: int) -> list[bytes]:
    return [orjson.dumps({"type": event_type, "payload": {"n": n}}) for n in range(count)]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventflowProcess]:
    """One ``eventflow up`` on SQLite with a metrics token; each test counts its own deltas and
    its own event type."""
    workdir = tmp_path_factory.mktemp("embedded")
    env = {
        **os.environ,
        "EVENTFLOW_DATA_DIR": str(workdir / "data"),
        "EVENTFLOW_METRICS_TOKEN": TOKEN,
        "EVENTFLOW_MAX_PAYLOAD_BYTES": "1024",
        "EVENTFLOW_LOG_LEVEL": "warning",
    }
    with _serving(env, workdir / "up.log") as process:
        yield process


@contextmanager
def _serving(env: dict[str, str], log_path: Path) -> Iterator[EventflowProcess]:
    """``eventflow up``, ready; killed on the way out if it still runs."""
    process = EventflowProcess("up", env, log_path)
    process.start()
    try:
        process.wait_ready(60)
        yield process
    finally:
        process.kill()


async def _headers(url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await login(client)


async def test_embedded_counts_each_accepted_and_completed_event_once(
    embedded: EventflowProcess,
) -> None:
    before = await scrape(embedded.url)
    headers = await _headers(embedded.url)
    await post_many([embedded.url], headers, _bodies("METRICS_EMBEDDED", 100))
    after = await until(
        embedded.url,
        lambda s: value(s, "eventflow_events_completed_total", type="METRICS_EMBEDDED") >= 100,
    )
    accepted = "eventflow_events_accepted_total"
    assert value(after, accepted) - value(before, accepted) == 100
    assert value(after, "eventflow_events_completed_total", type="METRICS_EMBEDDED") == 100
    assert value(after, "eventflow_handler_duration_seconds_count", type="METRICS_EMBEDDED") == 100
    for name, labels in [
        ("eventflow_ingest_latency_seconds_count", {"route": "/api/v1/events"}),
        ("eventflow_http_requests_total", {"route": "/api/v1/events", "status": "202"}),
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == 100, name
    # Every event is done: nothing waits, and both dependencies answer.
    assert value(after, "eventflow_queue_depth") == 0
    assert value(after, "eventflow_queue_oldest_age_seconds") == 0
    assert value(after, "eventflow_dependency_up", dependency="database") == 1
    assert value(after, "eventflow_dependency_up", dependency="broker") == 1
    assert value(after, "eventflow_group_commit_events_sum") >= 100


async def test_metrics_answer_only_the_right_token(embedded: EventflowProcess) -> None:
    async with httpx.AsyncClient(base_url=embedded.url, timeout=10) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        basic = await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "eventflow_" not in refused.text
    assert right.status_code == 200
    assert "eventflow_events_accepted_total" in right.text
    assert right.headers["cache-control"] == "no-store"


async def test_rejections_are_counted_by_reason(embedded: EventflowProcess) -> None:
    before = await scrape(embedded.url)
    headers = {**await _headers(embedded.url), "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=embedded.url, timeout=10) as client:
        for body in (b"{", b'{"type": "bad type!"}', b'{"payload": 1}'):
            assert (await client.post("/api/v1/events", content=body, headers=headers)).is_error
        # The same through the app, where a browser's request goes (it has an Origin).
        browser = {**headers, "Origin": "http://example.com"}
        response = await client.post("/api/v1/events", content=b"[", headers=browser)
        assert response.status_code == 400
        big = {"type": "A", "payload": {"x": "y" * 2000}}
        assert (await client.post("/api/v1/events", json=big, headers=headers)).status_code == 413
        anonymous = await client.post("/api/v1/events", json={"type": "A"})
        assert anonymous.status_code == 401
    after = await scrape(embedded.url)

    def moved(reason: str) -> float:
        name = "eventflow_events_rejected_total"
        return value(after, name, reason=reason) - value(before, name, reason=reason)

    assert (moved("invalid"), moved("too_large"), moved("unauthorized")) == (4, 1, 1)
    assert moved("unavailable") == moved("overloaded") == moved("rate_limited") == 0
    requests = "eventflow_http_requests_total"
    counted = {
        status: value(after, requests, route="/api/v1/events", status=status)
        - value(before, requests, route="/api/v1/events", status=status)
        for status in ("400", "401", "413", "422")
    }
    # Whether a middleware or the lean handler counted it, each request counts once.
    assert counted == {"400": 2, "401": 1, "413": 1, "422": 2}


async def test_api_and_worker_processes_on_postgres_and_redis(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    with cluster(fresh_postgres, redis_url, tmp_path, metrics_token=TOKEN) as group:
        api = group.api()
        metrics_port = free_port()
        group.worker(metrics_port=metrics_port)
        worker_url = f"http://127.0.0.1:{metrics_port}"
        headers = await _headers(api.url)
        await post_many([api.url], headers, _bodies("METRICS_SPLIT", 100))
        done = await until(
            worker_url,
            lambda s: value(s, "eventflow_events_completed_total", type="METRICS_SPLIT") >= 100,
        )
        assert value(done, "eventflow_events_completed_total", type="METRICS_SPLIT") == 100
        assert value(done, "eventflow_events_accepted_total") == 0, "workers accept nothing"
        assert value(done, "eventflow_dependency_up", dependency="database") == 1
        assert value(done, "eventflow_dependency_up", dependency="broker") == 1
        ingested = await scrape(api.url)
        assert value(ingested, "eventflow_events_accepted_total") == 100
        assert value(ingested, "eventflow_events_completed_total") == 0, "the API runs no worker"
        async with httpx.AsyncClient(timeout=10) as client:
            refused = await client.get(worker_url + "/metrics")
            elsewhere = await client.get(worker_url + "/", headers={"Authorization": TOKEN})
        assert refused.status_code == 401
        assert elsewhere.status_code == 404


async def test_several_http_processes_add_up(fresh_postgres: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "EVENTFLOW_DATABASE_URL": fresh_postgres,
        "EVENTFLOW_JWT_SECRET": TEST_SECRET,
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_HTTP_WORKERS": "2",
        "EVENTFLOW_LOG_LEVEL": "warning",
    }
    with _serving(env, tmp_path / "up.log") as process:
        # Both processes serve before any event is sent (a loaded machine may start the
        # second one seconds after the first answers).
        assert len(await processes_that_answer(process, wanted=2, within=60)) == 2
        headers = await _headers(process.url)
        sent = 0
        per_process: dict[str, float] = {}
        # The kernel decides which process accepts a connection: send rounds over many
        # connections until both have answered some.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            await post_many([process.url], headers, _bodies("METRICS_SHARED", 64))
            sent += 64
            samples = await scrape(process.url, token=None)
            per_process = {
                s.labels["pid"]: s.value
                for s in samples
                if s.name == "eventflow_process_events_accepted"
            }
            if sum(1 for count in per_process.values() if count > 0) >= 2:
                break
        assert len([p for p, count in per_process.items() if count > 0]) >= 2, (
            f"one process answered everything: {per_process}\n{process.log()}"
        )
        # Each process flushes its counts once a second: whichever answers the scrape, the
        # count comes to the sum over both, and stays there.
        accepted = "eventflow_events_accepted_total"
        await until(process.url, lambda s: value(s, accepted) >= sent, within=10, token=None)
        for _ in range(4):
            samples = await scrape(process.url, token=None)
            assert value(samples, accepted) == sent
            by_pid = [s.value for s in samples if s.name == "eventflow_process_events_accepted"]
            assert sum(by_pid) == sent
        await until(
            process.url,
            lambda s: value(s, "eventflow_events_completed_total", type="METRICS_SHARED") == sent,
            token=None,
        )
        assert await asyncio.to_thread(process.terminate, 30) == 0, process.log()


def _exported_names() -> set[str]:
    """Every sample name EventFlow's metrics can produce."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
    }
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes[family.type]
    }


def _metric_names(text: str) -> set[str]:
    return set(re.findall(r"\beventflow_[a-z0-9_]+", text))


def _dashboard_expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for child in node.values() for e in _dashboard_expressions(child)]
    if isinstance(node, list):
        return [e for child in node for e in _dashboard_expressions(child)]
    return []


def test_alert_rules_parse_and_name_exported_metrics() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"EventflowBacklogGrowing", "EventflowOldestEventTooOld"} <= {a["alert"] for a in alerts}
    used: set[str] = set()
    for alert in alerts:
        assert alert["expr"].strip() and alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        used |= _metric_names(alert["expr"])
    assert used, "the rules name no metric"
    assert used <= _exported_names(), used - _exported_names()


def test_dashboard_names_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "eventflow.json").read_text())
    expressions = _dashboard_expressions(dashboard["panels"])
    used = {name for expr in expressions for name in _metric_names(expr)}
    assert len(expressions) >= 10
    assert used <= _exported_names(), used - _exported_names()
    # Every metric family is on the dashboard.
    families = {family.name for family in Metrics().registry.collect()}
    shown = {name for name in families if any(name in expr for expr in expressions)}
    assert shown == families, families - shown
