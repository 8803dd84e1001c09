"""Listing, detail, stats, health, isolation between users, and problem details for errors."""

from __future__ import annotations

from tests.apiclient import running_app, send, signup, wait_for
from tests.conftest import SettingsFactory, each_database

EVENTS = "/api/v1/events"


@each_database
async def test_list_is_newest_first_with_cursor_paging(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        ids = [(await send(client, headers, "A", payload={"n": i}))["id"] for i in range(7)]
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get(EVENTS, params=params, headers=headers)).json()
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        assert pages == 3


@each_database
async def test_list_filters(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(max_attempts=1)) as client:
        headers = await signup(client)
        failing = await send(client, headers, "FAIL_TEST")
        ok = await send(client, headers, "ORDER_CREATED")
        await send(client, headers, "USER_SIGNUP", delay_ms=600_000)

        async def settled() -> bool:
            page = (await client.get(EVENTS, params={"status": "failed"}, headers=headers)).json()
            return [i["id"] for i in page["items"]] == [failing["id"]]

        await wait_for(settled, within=15)
        by_type = (
            await client.get(EVENTS, params={"type": "ORDER_CREATED"}, headers=headers)
        ).json()
        assert [i["id"] for i in by_type["items"]] == [ok["id"]]
        scheduled = (
            await client.get(EVENTS, params={"status": "scheduled"}, headers=headers)
        ).json()
        assert [i["type"] for i in scheduled["items"]] == ["USER_SIGNUP"]
        both = await client.get(
            EVENTS, params={"status": "failed", "type": "ORDER_CREATED"}, headers=headers
        )
        assert both.json()["items"] == []


@each_database
async def test_list_parameters_are_validated(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        for params in (
            {"limit": 0},
            {"limit": 201},
            {"status": "lost"},
            {"type": "no spaces"},
            {"type": "A\x00"},
        ):
            response = await client.get(EVENTS, params=params, headers=headers)
            assert response.status_code == 422, params
            assert response.headers["content-type"] == "application/problem+json"
        # A cursor is opaque: one this API did not hand out is a bad request, not a field error.
        for cursor in ("nope", "\x00", "0" * 36):
            response = await client.get(EVENTS, params={"cursor": cursor}, headers=headers)
            assert response.status_code == 400, cursor
            assert response.json()["detail"] == "cursor: not a cursor this API returned"


@each_database
async def test_stats(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(max_attempts=1)) as client:
        headers = await signup(client)
        for _ in range(3):
            await send(client, headers, "ORDER_CREATED")
        await send(client, headers, "FAIL_TEST")

        async def settled() -> bool:
            stats = (await client.get("/api/v1/stats", headers=headers)).json()
            return bool(stats["counts"]["completed"] == 3 and stats["counts"]["failed"] == 1)

        await wait_for(settled, within=15)
        stats = (await client.get("/api/v1/stats", headers=headers)).json()
        assert stats["total"] == 4
        assert stats["success_rate"] == 0.75
        assert stats["queue_depth"] == 0
        assert stats["throughput"]["ingested_per_sec"] > 0
        assert stats["latency_ms"]["samples"] == 3
        assert stats["latency_ms"]["p50"] is not None


@each_database
async def test_users_only_see_their_own_events(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(max_attempts=1)) as client:
        alice, bob = await signup(client), await signup(client)
        secret = await send(client, alice, "FAIL_TEST", payload={"card": "4242"})

        async def failed() -> bool:
            r = await client.get(f"{EVENTS}/{secret['id']}", headers=alice)
            return bool(r.json()["status"] == "failed")

        await wait_for(failed, within=15)
        assert (await client.get(f"{EVENTS}/{secret['id']}", headers=bob)).status_code == 404
        assert (await client.post(f"{EVENTS}/{secret['id']}/retry", headers=bob)).status_code == 404
        assert (await client.get(EVENTS, headers=bob)).json()["items"] == []
        assert (await client.post(f"{EVENTS}/retry-failed", headers=bob)).json()["replayed"] == 0
        bob_stats = (await client.get("/api/v1/stats", headers=bob)).json()
        assert bob_stats["total"] == 0
        # And Alice's event was left alone by Bob's attempts.
        assert (await client.get(f"{EVENTS}/{secret['id']}", headers=alice)).json()[
            "attempt_count"
        ] == 1


@each_database
async def test_malformed_and_unknown_ids_are_404(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        for bad in ("not-a-uuid", "01900000-0000-7000-8000-000000000000", "1' OR '1'='1"):
            response = await client.get(f"{EVENTS}/{bad}", headers=headers)
            assert response.status_code == 404, bad
            assert response.headers["content-type"] == "application/problem+json"


@each_database
async def test_every_route_needs_a_token(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        some_id = "01900000-0000-7000-8000-000000000000"
        for method, path in (
            ("GET", EVENTS),
            ("POST", EVENTS),
            ("POST", f"{EVENTS}/batch"),
            ("GET", f"{EVENTS}/{some_id}"),
            ("POST", f"{EVENTS}/{some_id}/retry"),
            ("POST", f"{EVENTS}/retry-failed"),
            ("GET", "/api/v1/stats"),
            ("GET", "/api/v1/auth/me"),
        ):
            response = await client.request(method, path, json={"type": "A"})
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == "Bearer"


async def test_health(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        for path in ("/health", "/api/v1/health"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.json() == {
                "status": "ok",
                "checks": {"database": "ok", "broker": "ok"},
            }


@each_database
async def test_unknown_routes_and_methods_are_problem_details(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        missing = await client.get("/api/v1/nothing-here")
        wrong = await client.delete("/api/v1/events")
        assert (missing.status_code, wrong.status_code) == (404, 405)
        for response in (missing, wrong):
            assert response.headers["content-type"] == "application/problem+json"
            assert {"type", "title", "status", "detail"} <= set(response.json())


@each_database
async def test_openapi_documents_every_endpoint(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        spec = (await client.get("/api/v1/openapi.json")).json()
        paths = spec["paths"]
        for path, method in (
            ("/api/v1/auth/register", "post"),
            ("/api/v1/auth/login", "post"),
            ("/api/v1/auth/me", "get"),
            ("/api/v1/events", "post"),
            ("/api/v1/events", "get"),
            ("/api/v1/events/batch", "post"),
            ("/api/v1/events/{event_id}", "get"),
            ("/api/v1/events/{event_id}/retry", "post"),
            ("/api/v1/stats", "get"),
            ("/api/v1/health", "get"),
        ):
            assert method in paths[path], (path, method)
        ingest = paths["/api/v1/events"]["post"]
        schema_ref = ingest["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert schema_ref == "#/components/schemas/EventIn"
        assert "type" in spec["components"]["schemas"]["EventIn"]["properties"]
        assert "202" in ingest["responses"]
        login_body = paths["/api/v1/auth/login"]["post"]["requestBody"]["content"]
        assert "application/x-www-form-urlencoded" in login_body
        oauth = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]
        assert oauth["flows"]["password"]["tokenUrl"] == "/api/v1/auth/login"
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
