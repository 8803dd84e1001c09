"""The metrics' own rules: the type-label cap, lean recorders, tokens, reasons, route templates."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventflow.api.ingest_metrics import rejection_reason
from eventflow.api.request_metrics import UNMATCHED, RequestMetrics
from eventflow.broker.memory import MemoryBroker
from eventflow.db.memory import MemoryEvents
from eventflow.errors import (
    MalformedJson,
    Overloaded,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from eventflow.ingest.validation import ValidEvent
from eventflow.ingest.writer import GroupCommitWriter, WriterLimits
from eventflow.metrics import Metrics
from eventflow.metrics.catalog import INGEST_STAGES
from eventflow.metrics.exposition import Scrape
from eventflow.metrics.lean import Observations
from eventflow.metrics.type_labels import OTHER, TypeLabels

TOKEN = "metrics-token-0123456789"


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_first_types_are_labels_and_later_ones_are_other() -> None:
    labels = TypeLabels(limit=3)
    assert [labels(t) for t in ["a", "b", "a", "c", "d", "e", "b"]] == [
        "a",
        "b",
        "a",
        "c",
        OTHER,
        OTHER,
        "b",
    ]


def test_a_type_called_other_takes_no_place_of_its_own() -> None:
    labels = TypeLabels(limit=2)
    assert labels(OTHER) == OTHER
    assert (labels("a"), labels("b"), labels("c")) == ("a", "b", OTHER)


def test_per_type_metrics_stop_growing_at_the_cap() -> None:
    metrics = Metrics(type_limit=5)
    metrics.count_outcomes([(f"T{i}", "completed") for i in range(50)])
    for i in range(50):
        metrics.handler_seconds(f"T{i}").observe(0.01)
    metrics.flush()
    completed = {
        dict(labels)["type"]: value
        for (name, labels), value in _samples(metrics).items()
        if name == "eventflow_events_completed_total"
    }
    assert completed == {"T0": 1, "T1": 1, "T2": 1, "T3": 1, "T4": 1, OTHER: 45}
    handled = {
        dict(labels)["type"]
        for (name, labels), _ in _samples(metrics).items()
        if name == "eventflow_handler_duration_seconds_count"
    }
    assert handled == {"T0", "T1", "T2", "T3", "T4", OTHER}


@pytest.mark.parametrize("values", [[0.0], [0.0005, 0.0005, 0.7, 11.0, 99.0], [0.003] * 40])
def test_lean_observations_expose_what_observe_would(values: Sequence[float]) -> None:
    buckets = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    direct, lean = CollectorRegistry(), CollectorRegistry()
    observed = Histogram("h", "h", buckets=buckets, registry=direct)
    for value in values:
        observed.observe(value)
    # One recorder may feed two histograms and count its observations.
    twin, counted = CollectorRegistry(), CollectorRegistry()
    recorder = Observations(
        [
            Histogram("h", "h", buckets=buckets, registry=lean),
            Histogram("h", "h", buckets=buckets, registry=twin),
        ],
        Counter("n", "n", registry=counted),
    )
    for value in values:
        recorder.observe(value)
    recorder.flush()
    recorder.flush()  # nothing new: nothing added twice

    def counts(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        text = generate_latest(registry).decode()
        return [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert counts(lean) == counts(twin) == counts(direct)
    assert counts(counted) == [("n_total", {}, len(values))]


def test_the_token_is_required_when_set() -> None:
    open_scrape = Scrape(Metrics(), None)
    assert open_scrape.authorized(None)
    guarded = Scrape(Metrics(), TOKEN)
    assert guarded.authorized(f"Bearer {TOKEN}")
    assert guarded.authorized(f"bearer {TOKEN}")
    assert not guarded.authorized(None)
    assert not guarded.authorized("")
    assert not guarded.authorized(TOKEN)
    assert not guarded.authorized(f"Basic {TOKEN}")
    assert not guarded.authorized(f"Bearer {TOKEN}x")
    assert not guarded.authorized(f"Bearer {TOKEN[:-1]}")
    assert not guarded.authorized("Bearer ÿ")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (MalformedJson("x"), "invalid"),
        (ValidationFailed("x"), "invalid"),
        (PayloadTooLarge("x"), "too_large"),
        (Unauthorized("x"), "unauthorized"),
        (TooManyRequests("x", retry_after=1, limit=1, remaining=0), "rate_limited"),
        (ServiceUnavailable("x"), "unavailable"),
        (Overloaded("x"), "overloaded"),
        (RuntimeError("x"), "error"),
    ],
)
def test_each_refusal_has_its_reason(error: Exception, reason: str) -> None:
    status = getattr(error, "status", 500)
    assert rejection_reason(error, status) == reason


async def test_a_group_commit_is_counted_once_per_group() -> None:
    metrics = Metrics()
    writer = GroupCommitWriter(
        MemoryEvents(), MemoryBroker(), WriterLimits(group_commit_ms=5), metrics=metrics
    )
    await writer.start()
    try:
        event = ValidEvent("A", "{}", 0)
        await asyncio.gather(*(writer.submit("u", [event, event]) for _ in range(10)))
        await writer.submit("u", [event], idempotency_key="k")
        await writer.submit("u", [event], idempotency_key="k")
        await asyncio.sleep(0.05)  # the last group's answer stage is measured a turn later
    finally:
        await writer.close()
    metrics.flush()
    samples = _samples(metrics)
    assert samples[("eventflow_events_accepted_total", ())] == 21
    assert samples[("eventflow_events_deduplicated_total", ())] == 1
    groups = samples[("eventflow_group_commit_events_count", ())]
    assert samples[("eventflow_group_commit_events_sum", ())] == 22
    assert groups < 22, "requests that arrived together share a group"
    stages = {
        stage: samples[("eventflow_ingest_stage_seconds_count", (("stage", stage),))]
        for stage in INGEST_STAGES
    }
    # The group of the repeated key alone had nothing new to publish.
    assert stages == {stage: groups - (stage == "publish") for stage in INGEST_STAGES}


async def test_route_templates_keep_their_prefix_and_never_the_raw_path() -> None:
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
    app.include_router(router)
    app.add_middleware(RequestMetrics)
    metrics = Metrics()
    app.state.services = SimpleNamespace(metrics=metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ["/api/v1/items/1", "/api/v1/items/2", "/items/3", "/nothing/4"]:
            await client.get(path)
            await client.request("BREW", path)
    counted = {
        (dict(labels)["route"], dict(labels)["method"], dict(labels)["status"]): value
        for (name, labels), value in _samples(metrics).items()
        if name == "eventflow_http_requests_total"
    }
    assert counted == {
        ("/api/v1/items/{item_id}", "GET", "200"): 2,
        ("/items/{item_id}", "GET", "200"): 1,
        (UNMATCHED, "GET", "404"): 1,
        ("/api/v1/items/{item_id}", "other", "405"): 2,
        ("/items/{item_id}", "other", "405"): 1,
        (UNMATCHED, "other", "404"): 1,
    }
