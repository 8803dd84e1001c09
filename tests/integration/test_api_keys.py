"""API keys on SQLite and PostgreSQL: made and shown once, stored as a hash, scoped, revoked,
and named as the source of the events they send."""

from __future__ import annotations

import hashlib
from base64 import b64encode
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from eventflow.auth.keys import MAX_ACTIVE_KEYS
from eventflow.config import Settings
from eventflow.db.stores import build_stores
from eventflow.services import Services
from tests.apiclient import Json, running_services, send, signup, wait_for
from tests.conftest import SettingsFactory, each_database
from tests.integration.procs import cluster

KEYS = "/api/v1/keys"
EVENTS = "/api/v1/events"
STATS = "/api/v1/stats"
Headers = dict[str, str]


async def make_key(
    client: httpx.AsyncClient, user: Headers, scope: str, name: str = "checkout"
) -> Json:
    response = await client.post(KEYS, json={"name": name, "scope": scope}, headers=user)
    assert response.status_code == 201, response.text
    made: Json = response.json()
    return made


def bearer(made: Json) -> Headers:
    return {"Authorization": f"Bearer {made['key']}"}


def basic(made: Json) -> Headers:
    return {"Authorization": "Basic " + b64encode(f"{made['key']}:".encode()).decode()}


def assert_problem(response: httpx.Response, status: int) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: Json = response.json()
    assert body["status"] == status and body["detail"]
    return body


async def _stored_keys(services: Services) -> list[dict[str, Any]]:
    async with services.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT * FROM api_keys"))
        return [dict(r._mapping) for r in rows]


@each_database
async def test_a_key_is_shown_once_and_stored_only_as_its_hash(
    make_settings: SettingsFactory,
) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, services):
        user = await signup(client)
        made = await make_key(client, user, "ingest", "checkout service")
        assert set(made) == {"id", "name", "scope", "prefix", "key", "created_at"}
        assert (made["name"], made["scope"]) == ("checkout service", "ingest")
        assert made["key"].startswith("efk_") and len(made["key"]) >= 4 + 43
        assert made["key"].startswith(made["prefix"]) and len(made["prefix"]) == 12

        listed = await client.get(KEYS, headers=user)
        assert listed.status_code == 200
        assert listed.json() == {
            "items": [
                {
                    "id": made["id"],
                    "name": "checkout service",
                    "scope": "ingest",
                    "prefix": made["prefix"],
                    "created_at": made["created_at"],
                    "last_used_at": None,
                }
            ]
        }
        assert made["key"] not in listed.text
        (row,) = await _stored_keys(services)
        assert row["hash"] == hashlib.sha256(made["key"].encode()).hexdigest()
        assert made["key"] not in {str(value) for value in row.values()}
        assert (row["revoked_at"], row["last_used_at"]) == (None, None)

        assert (await client.delete(f"{KEYS}/{made['id']}", headers=user)).status_code == 204
        assert (await client.get(KEYS, headers=user)).json() == {"items": []}
        assert_problem(
            await client.post(EVENTS, json={"type": "A", "payload": {}}, headers=bearer(made)), 401
        )
        (row,) = await _stored_keys(services)
        assert row["revoked_at"] is not None
        # Revoked is gone: a second revocation finds nothing.
        assert_problem(await client.delete(f"{KEYS}/{made['id']}", headers=user), 404)


@each_database
async def test_keys_are_each_accounts_own(make_settings: SettingsFactory) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, _):
        ada, bob = await signup(client), await signup(client)
        adas = await make_key(client, ada, "read")
        assert (await client.get(KEYS, headers=bob)).json() == {"items": []}
        for missing in (adas["id"], "01900000-0000-7000-8000-000000000000", "not-an-id"):
            assert_problem(await client.delete(f"{KEYS}/{missing}", headers=bob), 404)
        assert (await client.get(STATS, headers=bearer(adas))).status_code == 200


@each_database
async def test_bearer_and_basic_keys_ingest_within_their_scope(
    make_settings: SettingsFactory,
) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, _):
        user = await signup(client)
        ingest = await make_key(client, user, "ingest", "sender")
        read = await make_key(client, user, "read", "reader")
        for headers in (bearer(ingest), basic(ingest)):
            await send(client, headers)
            batch = await client.post(
                f"{EVENTS}/batch", json={"events": [{"type": "A", "payload": {}}]}, headers=headers
            )
            assert batch.status_code == 202, batch.text
        some = (await client.get(EVENTS, headers=user)).json()["items"][0]["id"]
        for headers in (bearer(ingest), basic(ingest)):
            for path in (EVENTS, f"{EVENTS}/{some}", STATS):
                assert_problem(await client.get(path, headers=headers), 403)
        for headers in (bearer(read), basic(read)):
            listed = await client.get(EVENTS, headers=headers)
            assert listed.status_code == 200 and len(listed.json()["items"]) == 4
            assert (await client.get(f"{EVENTS}/{some}", headers=headers)).status_code == 200
            assert (await client.get(STATS, headers=headers)).json()["total"] == 4
            refused = await client.post(EVENTS, json={"type": "A", "payload": {}}, headers=headers)
            assert "read" in assert_problem(refused, 403)["detail"]
        # Nothing but the user's own token manages keys, the account or replays.
        for made in (ingest, read):
            for headers in (bearer(made), basic(made)):
                for method, path in (
                    ("GET", KEYS),
                    ("POST", KEYS),
                    ("DELETE", f"{KEYS}/{made['id']}"),
                    ("GET", "/api/v1/auth/me"),
                    ("POST", "/api/v1/auth/logout"),
                    ("POST", "/api/v1/stream/ticket"),
                    ("POST", f"{EVENTS}/retry-failed"),
                    ("POST", f"{EVENTS}/{some}/retry"),
                ):
                    kwargs: Any = (
                        {"json": {"name": "x", "scope": "read"}} if method == "POST" else {}
                    )
                    response = await client.request(method, path, headers=headers, **kwargs)
                    assert_problem(response, 403)
        assert len((await client.get(KEYS, headers=user)).json()["items"]) == 2


@each_database
async def test_wrong_missing_and_malformed_credentials_are_401(
    make_settings: SettingsFactory,
) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, _):
        user = await signup(client)
        made = await make_key(client, user, "ingest")
        key = made["key"]
        wrong = [
            {},
            {"Authorization": "Bearer efk_" + "A" * 43},
            {"Authorization": f"Bearer {key}x"},
            {"Authorization": "Basic " + b64encode(f"{key}:secret".encode()).decode()},
            {"Authorization": "Basic " + b64encode(b"ada@example.com:pw").decode()},
            {"Authorization": "Basic not*base64"},
            {"Authorization": f"Token {key}"},
        ]
        for headers in wrong:
            for method, path in (("POST", EVENTS), ("GET", EVENTS), ("GET", STATS)):
                response = await client.request(
                    method, path, json={"type": "A", "payload": {}}, headers=headers
                )
                assert_problem(response, 401)
                assert key not in response.text


@each_database
async def test_an_event_names_the_key_that_sent_it(make_settings: SettingsFactory) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, _):
        user = await signup(client)
        made = await make_key(client, user, "ingest", "billing")
        by_key = await send(client, bearer(made), "BY_KEY")
        by_basic = await send(client, basic(made), "BY_BASIC")
        by_token = await send(client, user, "BY_TOKEN")
        from_key = {"kind": "key", "key_id": made["id"], "key_name": "billing", "library": None}
        expected = {
            by_key["id"]: from_key,
            by_basic["id"]: from_key,
            by_token["id"]: {"kind": "token"},
        }
        items = (await client.get(EVENTS, headers=user)).json()["items"]
        assert {item["id"]: item["source"] for item in items} == expected
        for event_id, source in expected.items():
            one = await client.get(f"{EVENTS}/{event_id}", headers=user)
            assert one.json()["source"] == source


@each_database
async def test_a_key_of_a_disabled_or_deleted_account_stops_working(
    make_settings: SettingsFactory,
) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, services):
        user = await signup(client)
        made = await make_key(client, user, "ingest")
        user_id = (await client.get("/api/v1/auth/me", headers=user)).json()["id"]
        await send(client, bearer(made))

        async def refused() -> bool:
            response = await client.post(
                EVENTS, json={"type": "A", "payload": {}}, headers=bearer(made)
            )
            return response.status_code == 401

        # As `eventflow user disable` does from another process: only the poll tells this one.
        users = build_stores(services.engine).users
        assert await users.set_disabled(user_id, True) is not None
        await wait_for(refused, within=10)
        assert await users.set_disabled(user_id, False) is not None
        await wait_for(lambda: _accepted(client, made), within=10)

        assert await users.tombstone(user_id) is not None
        await wait_for(refused, within=10)
        assert all(row["revoked_at"] is not None for row in await _stored_keys(services))


async def _accepted(client: httpx.AsyncClient, made: Json) -> bool:
    response = await client.post(EVENTS, json={"type": "A", "payload": {}}, headers=bearer(made))
    return response.status_code == 202


@each_database
async def test_last_use_is_recorded_off_the_request_path(make_settings: SettingsFactory) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, _):
        user = await signup(client)
        made = await make_key(client, user, "read")
        for _ in range(5):
            assert (await client.get(STATS, headers=bearer(made))).status_code == 200

        async def recorded() -> bool:
            (listed,) = (await client.get(KEYS, headers=user)).json()["items"]
            return listed["last_used_at"] is not None

        await wait_for(recorded, within=10)


@each_database
async def test_keys_are_capped_per_account_and_validated(make_settings: SettingsFactory) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, _):
        user = await signup(client)
        made = [await make_key(client, user, "read", f"key {n}") for n in range(MAX_ACTIVE_KEYS)]
        over = await client.post(KEYS, json={"name": "one more", "scope": "read"}, headers=user)
        assert str(MAX_ACTIVE_KEYS) in assert_problem(over, 409)["detail"]
        assert (await client.delete(f"{KEYS}/{made[0]['id']}", headers=user)).status_code == 204
        await make_key(client, user, "ingest", "one more")

        for body in (
            {"name": "", "scope": "read"},
            {"name": "x" * 101, "scope": "read"},
            {"name": "nul\x00", "scope": "read"},
            {"name": "x", "scope": "user"},
            {"name": "x"},
            {"scope": "read"},
            {"name": 5, "scope": "read"},
        ):
            response = await client.post(KEYS, json=body, headers=user)
            assert assert_problem(response, 422)["errors"], body
        assert_problem(await client.post(KEYS, content=b"{", headers=user), 415)
        bad_json = {**user, "Content-Type": "application/json"}
        assert_problem(await client.post(KEYS, content=b"{", headers=bad_json), 400)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_openapi_document_shows_scopes_sources_and_key_schemes(
    make_settings: SettingsFactory,
) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, _):
        spec = (await client.get("/api/v1/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["APIKeyBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyBasic"]["scheme"] == "basic"
    paths = spec["paths"]

    def accepted(path: str, method: str) -> set[str]:
        return {name for option in paths[path][method]["security"] for name in option}

    everything = {"OAuth2PasswordBearer", "APIKeyBearer", "APIKeyBasic"}
    for path, method in ((EVENTS, "post"), (EVENTS, "get"), (STATS, "get")):
        assert accepted(f"/api/v1{path.removeprefix('/api/v1')}", method) == everything
    assert accepted(f"{EVENTS}/{{event_id}}", "get") == everything
    for path, method in ((KEYS, "post"), (KEYS, "get"), (f"{KEYS}/{{key_id}}", "delete")):
        assert accepted(path, method) == {"OAuth2PasswordBearer"}
        assert "403" in paths[path][method]["responses"]
    summary = spec["components"]["schemas"]["EventSummary"]
    assert "source" in summary["required"]


def test_the_revocation_poll_is_a_second_at_most_by_construction() -> None:
    field = Settings.model_fields["key_poll_ms"]
    assert isinstance(field.default, int) and field.default <= 1000
    with pytest.raises(ValidationError):
        Settings(key_poll_ms=1001)
    assert Settings(key_poll_ms=1000).key_poll_ms == 1000


@pytest.mark.slow
async def test_a_revoked_key_is_refused_by_another_api_process(
    fresh_postgres: str, redis_url: str, tmp_path: Path
) -> None:
    with cluster(fresh_postgres, redis_url, tmp_path, log_level="warning") as group:
        procs = [group.spawn("api", {}, wait=False) for _ in range(2)]
        for proc in procs:
            proc.wait_ready()
        async with (
            httpx.AsyncClient(base_url=procs[0].url, timeout=10) as here,
            httpx.AsyncClient(base_url=procs[1].url, timeout=10) as there,
        ):
            user = await signup(here)
            made = await make_key(here, user, "ingest")
            kept = await make_key(here, user, "ingest", "kept")
            # The other process has verified and cached both: only its poll can tell.
            for headers in (bearer(made), basic(made), bearer(kept)):
                assert await _accepted_with(there, headers)

            assert (await here.delete(f"{KEYS}/{made['id']}", headers=user)).status_code == 204
            assert not await _accepted_with(here, bearer(made))

            async def refused_there() -> bool:
                return not await _accepted_with(there, bearer(made))

            await wait_for(refused_there, within=15, interval=0.02)
            assert_problem(
                await there.post(EVENTS, json={"type": "A", "payload": {}}, headers=basic(made)),
                401,
            )
            for client in (here, there):
                assert await _accepted_with(client, bearer(kept))
        assert "Traceback" not in group.logs()


async def _accepted_with(client: httpx.AsyncClient, headers: Headers) -> bool:
    response = await client.post(EVENTS, json={"type": "A", "payload": {}}, headers=headers)
    assert response.status_code in (202, 401), response.text
    return response.status_code == 202
