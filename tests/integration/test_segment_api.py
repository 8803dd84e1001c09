"""The Segment-compatible routes over HTTP: answers, limits, encodings, idempotency, listing."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import httpx
import orjson

from tests.apiclient import running_app, signup
from tests.conftest import SettingsFactory, each_database

BATCH = "/v1/batch"
PROBLEM_JSON = "application/problem+json"


def basic(key: str) -> dict[str, str]:
    """The Authorization of a Segment library whose write key is ``key``."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def new_key(client: httpx.AsyncClient, token: dict[str, str], scope: str = "ingest") -> str:
    return (await _create_key(client, token, scope))["key"]


async def _create_key(
    client: httpx.AsyncClient, token: dict[str, str], scope: str
) -> dict[str, str]:
    created = await client.post("/api/v1/keys", json={"name": scope, "scope": scope}, headers=token)
    assert created.status_code == 201, created.text
    made: dict[str, str] = created.json()
    return made


def track(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"m-{n}",
        "userId": "ada",
        "timestamp": "2026-01-02T03:04:05.678Z",
        "properties": {"n": n},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        **fields,
    }


async def _events(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    page = await client.get("/api/v1/events", params={"limit": 200}, headers=headers)
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    # What Segment's libraries read.
    assert problem["code"] == problem["type"].removeprefix("/problems/")
    assert problem["message"] == problem["detail"]
    return problem


@each_database
async def test_a_batch_is_stored_once_and_shown_like_any_event(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        token = await signup(client)
        key = await new_key(client, token)
        body = {"batch": [track(1), track(2), track(2)], "sentAt": "2026-01-02T03:04:06Z"}

        first = await client.post(BATCH, json=body, headers=basic(key))
        again = await client.post(
            BATCH,
            content=gzip.compress(orjson.dumps(body)),
            headers={
                **basic(key),
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            },
        )

        assert (first.status_code, first.json()) == (200, {"success": True})
        assert (again.status_code, again.json()) == (200, {"success": True})
        items = await _events(client, token)
        assert sorted(i["type"] for i in items) == ["Order_Completed", "Order_Completed"]
        detail = await client.get(f"/api/v1/events/{items[0]['id']}", headers=token)
        payload = detail.json()["payload"]
        assert payload["timestamp"] == "2026-01-02T03:04:05.678Z"
        assert payload["messageId"] in ("m-1", "m-2")
        source = detail.json()["source"]
        assert (source["kind"], source["key_name"]) == ("key", "ingest")
        assert source["library"] == {"name": "analytics-python", "version": "2.4.0"}


async def test_each_call_route_stores_its_kind(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        token = await signup(client)
        key = await new_key(client, token)
        for kind in ("track", "identify", "page", "screen", "group", "alias"):
            response = await client.post(
                f"/v1/{kind}", json={"event": "Signed Up", "userId": "u"}, headers=basic(key)
            )
            assert (response.status_code, response.json()) == (200, {"success": True})
        imported = await client.post("/v1/import", json={"batch": [track(9)]}, headers=token)
        assert imported.status_code == 200, imported.text

        types = sorted(i["type"] for i in await _events(client, token))
        assert types == sorted(
            ["Signed_Up", "Order_Completed"]
            + [f"segment.{k}" for k in ("identify", "page", "screen", "group", "alias")]
        )


async def test_credentials_are_checked_first(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        token = await signup(client)
        read_key = await new_key(client, token, "read")
        revoked = await _create_key(client, token, "ingest")
        gone = await client.delete(f"/api/v1/keys/{revoked['id']}", headers=token)
        assert gone.status_code == 204, gone.text
        refused = [
            {},
            basic("efk_not-a-key"),
            basic(revoked["key"]),
            basic(token["Authorization"].removeprefix("Bearer ")),
            {"Authorization": "Basic !!!"},
            {"Authorization": "Basic Og=="},
        ]
        for headers in refused:
            response = await client.post(BATCH, json={"batch": [track(1)]}, headers=headers)
            _problem(response, 401)
        forbidden = await client.post(BATCH, json={"batch": [track(1)]}, headers=basic(read_key))
        assert "read" in _problem(forbidden, 403)["detail"]
        assert await _events(client, token) == []


async def test_limits_encodings_and_invalid_messages_get_problems(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        token = await signup(client)
        key = await new_key(client, token)
        auth = {**basic(key), "Content-Type": "application/json"}
        big = track(1, properties={"pad": "x" * 33 * 1024})
        many = {"batch": [track(n, properties={"pad": "y" * 1000}) for n in range(501)]}
        cases: list[tuple[int, str, bytes, dict[str, str], str]] = [
            (400, BATCH, orjson.dumps({"batch": [track(0), big]}), auth, "batch[1]"),
            (413, "/v1/track", orjson.dumps(big), auth, "limit"),
            (413, BATCH, orjson.dumps(many), auth, "limit"),
            (
                413,
                BATCH,
                gzip.compress(orjson.dumps(many)),
                {**auth, "Content-Encoding": "gzip"},
                "inflates",
            ),
            (400, BATCH, b"\x1f\x8b not really", {**auth, "Content-Encoding": "gzip"}, "gzip"),
            (415, BATCH, orjson.dumps({"batch": []}), {**auth, "Content-Encoding": "br"}, "br"),
            (
                415,
                BATCH,
                orjson.dumps({"batch": []}),
                {**basic(key), "Content-Type": "text/plain"},
                "JSON",
            ),
            (400, BATCH, orjson.dumps({"batch": [{"type": "purchase"}]}), auth, "batch[0].type"),
            (400, BATCH, orjson.dumps({"batch": [track(1, messageId="")]}), auth, "messageId"),
            (400, BATCH, b'{"batch": [', auth, "JSON"),
        ]
        for status, path, body, headers, hint in cases:
            response = await client.post(path, content=body, headers=headers)
            assert hint in _problem(response, status)["detail"], (hint, response.text)
        assert await _events(client, token) == []
