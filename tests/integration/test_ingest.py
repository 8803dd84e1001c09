"""POST /events and /events/batch: validation, limits, idempotency, all-or-nothing batches."""

from __future__ import annotations

import asyncio
import functools

import httpx
from asgi_lifespan import LifespanManager

from eventflow.api.app import create_app
from eventflow.runtime import open_runtime
from tests.apiclient import running_app, send, signup
from tests.conftest import SettingsFactory, each_database

EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"


async def _count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    page = await client.get(EVENTS, params={"limit": 200}, headers=headers)
    assert page.status_code == 200
    return len(page.json()["items"])


async def test_single_event_is_accepted_and_stored(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        response = await client.post(
            EVENTS, json={"type": "ORDER_CREATED", "payload": {"order": 7}}, headers=headers
        )
        assert response.status_code == 202
        body = response.json()
        assert set(body) == {"id", "status", "created_at"}
        assert body["status"] == "queued"
        stored = await client.get(f"{EVENTS}/{body['id']}", headers=headers)
        assert stored.status_code == 200
        assert stored.json()["payload"] == {"order": 7}
        assert stored.json()["type"] == "ORDER_CREATED"


async def test_delayed_event_is_scheduled(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        body = await send(client, headers, delay_ms=60_000)
        assert body["status"] == "scheduled"


@each_database
async def test_invalid_events_get_clear_4xx(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(max_payload_bytes=1024), run_worker=False) as client:
        headers = await signup(client)
        json_headers = {**headers, "Content-Type": "application/json"}
        cases: list[tuple[int, bytes, dict[str, str], str]] = [
            (422, b'{"type": "1starts-with-digit"}', json_headers, "type"),
            (422, b'{"type": "has space"}', json_headers, "type"),
            (422, b'{"type": "' + b"A" * 101 + b'"}', json_headers, "type"),
            (422, b'{"payload": {}}', json_headers, "type"),
            (422, b'{"type": "A", "payload": [1, 2]}', json_headers, "payload"),
            (422, b'{"type": "A", "payload": "text"}', json_headers, "payload"),
            (422, b'{"type": "A", "delay_ms": -1}', json_headers, "delay_ms"),
            (422, b'{"type": "A", "delay_ms": 604800001}', json_headers, "delay_ms"),
            (422, b'{"type": "A", "surprise": 1}', json_headers, "surprise"),
            (422, b"[1, 2, 3]", json_headers, "body"),
            (400, b'{"type": "A", "payload": {', json_headers, "JSON"),
            (400, b"", json_headers, "empty"),
            (413, b'{"type": "A", "payload": {"x": "' + b"y" * 2000 + b'"}}', json_headers, "1024"),
            (413, b'{"type": "A", "pad": "' + b" " * 40_000 + b'"}', json_headers, "limit"),
            (415, b'{"type": "A"}', {**headers, "Content-Type": "text/plain"}, "application/json"),
            (415, b'{"type": "A"}', headers, "Content-Type"),
        ]
        for status, body, request_headers, hint in cases:
            response = await client.post(EVENTS, content=body, headers=request_headers)
            assert response.status_code == status, (body[:60], response.text)
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["status"] == status
            assert hint in problem["detail"], (hint, problem["detail"])
        assert await _count(client, headers) == 0


async def test_payload_at_the_limit_is_accepted(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(max_payload_bytes=1024), run_worker=False) as client:
        headers = await signup(client)
        payload = {"x": "y" * (1024 - len('{"x":""}'))}
        response = await client.post(
            EVENTS, json={"type": "A", "payload": payload}, headers=headers
        )
        assert response.status_code == 202


async def test_batch_is_all_or_nothing(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        good = [{"type": "ORDER_CREATED", "payload": {"n": i}} for i in range(5)]
        accepted = await client.post(BATCH, json={"events": good}, headers=headers)
        assert accepted.status_code == 202
        body = accepted.json()
        assert body["accepted"] == 5
        assert len({e["id"] for e in body["events"]}) == 5
        assert all(e["status"] == "queued" for e in body["events"])

        bad = [*good, {"type": "ok"}, {"type": "bad type"}, {"type": "fine"}]
        refused = await client.post(BATCH, json={"events": bad}, headers=headers)
        assert refused.status_code == 422
        assert "events[6].type" in refused.json()["detail"]
        assert refused.json()["errors"][0]["loc"] == ["events", 6, "type"]
        assert await _count(client, headers) == 5


async def test_batch_size_limits(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        empty = await client.post(BATCH, json={"events": []}, headers=headers)
        too_many = await client.post(
            BATCH, json={"events": [{"type": "A"}] * 1001}, headers=headers
        )
        full = await client.post(BATCH, json={"events": [{"type": "A"}] * 1000}, headers=headers)
        assert (empty.status_code, too_many.status_code, full.status_code) == (422, 422, 202)
        assert full.json()["accepted"] == 1000


async def test_idempotency_key_returns_the_first_event(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        keyed = {**headers, "Idempotency-Key": "order-42"}
        first = await client.post(EVENTS, json={"type": "A", "payload": {"n": 1}}, headers=keyed)
        second = await client.post(EVENTS, json={"type": "A", "payload": {"n": 1}}, headers=keyed)
        assert first.status_code == second.status_code == 202
        assert first.json()["id"] == second.json()["id"]
        other = await client.post(
            EVENTS, json={"type": "A"}, headers={**headers, "Idempotency-Key": "order-43"}
        )
        assert other.json()["id"] != first.json()["id"]
        assert await _count(client, headers) == 2


async def test_idempotency_key_concurrently(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        keyed = {**headers, "Idempotency-Key": "same-key"}
        responses = await asyncio.gather(
            *[client.post(EVENTS, json={"type": "A"}, headers=keyed) for _ in range(20)]
        )
        assert {r.status_code for r in responses} == {202}
        assert len({r.json()["id"] for r in responses}) == 1
        assert await _count(client, headers) == 1


async def test_idempotency_keys_are_per_user(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        alice, bob = await signup(client), await signup(client)
        a = await client.post(EVENTS, json={"type": "A"}, headers={**alice, "Idempotency-Key": "k"})
        b = await client.post(EVENTS, json={"type": "A"}, headers={**bob, "Idempotency-Key": "k"})
        assert a.json()["id"] != b.json()["id"]


@each_database
async def test_bad_idempotency_key_is_422(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        response = await client.post(
            EVENTS, json={"type": "A"}, headers={**headers, "Idempotency-Key": "x" * 256}
        )
        assert response.status_code == 422


async def test_browser_requests_get_cors_headers(make_settings: SettingsFactory) -> None:
    origin = "http://dashboard.example"
    async with running_app(make_settings(cors_origins=origin), run_worker=False) as client:
        headers = await signup(client)
        browser = {**headers, "Origin": origin}
        response = await client.post(EVENTS, json={"type": "A"}, headers=browser)
        assert response.status_code == 202
        assert response.headers["access-control-allow-origin"] == origin
        refused = await client.post(EVENTS, json={"type": "1"}, headers=browser)
        assert refused.status_code == 422
        assert refused.headers["access-control-allow-origin"] == origin
        batch = await client.post(BATCH, json={"events": [{"type": "A"}]}, headers=browser)
        assert batch.status_code == 202
        assert batch.headers["access-control-allow-origin"] == origin
        server = await client.post(EVENTS, json={"type": "A"}, headers=headers)
        assert server.status_code == 202
        assert "access-control-allow-origin" not in server.headers


async def test_browser_preflights_of_ingest_are_answered(make_settings: SettingsFactory) -> None:
    origin = "http://dashboard.example"
    async with running_app(make_settings(cors_origins=origin), run_worker=False) as client:
        for path in (EVENTS, BATCH):
            preflight = await client.options(
                path,
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
                },
            )
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] == origin
            assert "POST" in preflight.headers["access-control-allow-methods"]
            allowed = preflight.headers["access-control-allow-headers"].lower()
            assert "idempotency-key" in allowed
        stranger = await client.options(
            EVENTS,
            headers={"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"},
        )
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers


async def test_the_ingest_routes_serve_from_inside_the_app(make_settings: SettingsFactory) -> None:
    # The server puts DirectIngest in front of the app; the routes answer on their own as well.
    factory = functools.partial(open_runtime, run_worker=False)
    app = create_app(make_settings(), factory)
    async with (
        LifespanManager(app, startup_timeout=30, shutdown_timeout=60) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),
            base_url="http://eventflow.test",
            timeout=30,
        ) as client,
    ):
        headers = await signup(client)
        one = await send(client, headers)
        batch = await client.post(BATCH, json={"events": [{"type": "A"}] * 2}, headers=headers)
        assert batch.status_code == 202, batch.text
        assert batch.json()["accepted"] == 2
        assert await _count(client, headers) == 3
        detail = await client.get(f"{EVENTS}/{one['id']}", headers=headers)
        assert detail.status_code == 200
        refused = await client.post(EVENTS, json={"type": "1"}, headers=headers)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
