"""Inputs a stranger sends: each gets a 2xx with the data kept exactly, or a clear 4xx — on every
database. Tests are named after what they caught (a 500, or an event silently changed)."""

from __future__ import annotations

import json

import httpx

from tests.apiclient import running_app, signup
from tests.conftest import SettingsFactory, each_database

EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"
JSON = {"Content-Type": "application/json"}

# What is kept or refused is the database's business; the broker never sees a payload.
pytestmark = each_database


async def _post_raw(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, body: bytes
) -> httpx.Response:
    return await client.post(path, content=body, headers={**headers, **JSON})


async def _stored_count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    page = await client.get(EVENTS, params={"limit": 200}, headers=headers)
    assert page.status_code == 200, page.text
    return len(page.json()["items"])


def _assert_problem(response: httpx.Response, status: int, field: str, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [(e["field"], e["type"]) for e in errors] == [(field, kind)], errors


async def test_non_finite_number_is_refused_instead_of_stored_as_null(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        for literal in ("NaN", "Infinity", "-Infinity", "1e400", "-1e999"):
            single = f'{{"type": "A", "payload": {{"items": [{{"price": {literal}}}]}}}}'
            response = await _post_raw(client, headers, EVENTS, single.encode())
            _assert_problem(response, 422, "payload.items[0].price", "number_not_finite")
            batch = (
                f'{{"events": [{{"type": "A"}}, {{"type": "B", "payload": {{"x": {literal}}}}}]}}'
            )
            response = await _post_raw(client, headers, BATCH, batch.encode())
            _assert_problem(response, 422, "events[1].payload.x", "number_not_finite")
        assert await _stored_count(client, headers) == 0


async def test_integer_wider_than_64_bits_is_422_not_500(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        for value in (2**64, -(2**63) - 1, 10**30):
            body = f'{{"type": "A", "payload": {{"n": {value}}}}}'.encode()
            response = await _post_raw(client, headers, EVENTS, body)
            _assert_problem(response, 422, "payload.n", "int_out_of_range")
        assert await _stored_count(client, headers) == 0


async def test_64_bit_integers_and_unicode_are_kept_exactly(make_settings: SettingsFactory) -> None:
    payload = {
        "max": 2**64 - 1,
        "min": -(2**63),
        "float": 0.1,
        "tiny": 5e-324,
        "text": "naïve 日本 \U0001f600 \u202eRTL\u202c",
        "escaped_nul_text": "\\u0000",
        "control": "tab\there\nnewline\u001f",
    }
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        # ensure_ascii: every non-ASCII character arrives as a \\uXXXX escape.
        body = json.dumps({"type": "A", "payload": payload}).encode()
        accepted = await _post_raw(client, headers, EVENTS, body)
        assert accepted.status_code == 202, accepted.text
        stored = await client.get(f"{EVENTS}/{accepted.json()['id']}", headers=headers)
        assert stored.json()["payload"] == payload
        assert type(stored.json()["payload"]["max"]) is int


async def test_nul_in_payload_is_refused_not_a_database_error(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        response = await _post_raw(
            client, headers, EVENTS, b'{"type":"A","payload":{"a":"x\\u0000"}}'
        )
        _assert_problem(response, 422, "payload.a", "string_nul")
        response = await _post_raw(client, headers, EVENTS, b'{"type":"A","payload":{"\\u0000":1}}')
        _assert_problem(response, 422, "payload.\x00", "string_nul")
        assert await _stored_count(client, headers) == 0


async def test_repeated_key_is_refused_instead_of_last_one_winning(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        body = b'{"type": "A", "payload": {"order": {"total": 1, "total": 100}}}'
        response = await _post_raw(client, headers, EVENTS, body)
        _assert_problem(response, 422, "payload.order.total", "duplicate_key")
        body = b'{"type": "A", "type": "B"}'
        _assert_problem(
            await _post_raw(client, headers, EVENTS, body), 422, "type", "duplicate_key"
        )
        assert await _stored_count(client, headers) == 0


async def test_delay_ms_false_is_refused_not_read_as_zero(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        for delay in ("false", "true", '"5"', "5.0", "-1", "604800001"):
            body = f'{{"type": "A", "delay_ms": {delay}}}'.encode()
            response = await _post_raw(client, headers, EVENTS, body)
            assert response.status_code == 422, (delay, response.text)
            assert response.json()["errors"][0]["field"] == "delay_ms"
        assert await _stored_count(client, headers) == 0


async def test_deep_nesting_is_422_not_malformed_json(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        deep = b'{"type":"A","payload":{"x":' + b"[" * 500 + b"]" * 500 + b"}}"
        response = await _post_raw(client, headers, EVENTS, deep)
        assert response.status_code == 422, response.text
        assert "levels deep" in response.json()["detail"]


async def test_nul_in_query_parameters_is_4xx_not_500(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        typed = await client.get(EVENTS, params={"type": "\x00"}, headers=headers)
        assert typed.status_code == 422, typed.text
        cursor = await client.get(EVENTS, params={"cursor": "\x00"}, headers=headers)
        assert cursor.status_code == 400, cursor.text
        detail = await client.get(f"{EVENTS}/%00", headers=headers)
        assert detail.status_code == 404, detail.text
        retry = await client.post(f"{EVENTS}/%00/retry", headers=headers)
        assert retry.status_code == 404, retry.text


async def test_nul_in_email_is_4xx_not_500(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        email = "a\x00b@example.com"
        register = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": "long enough"}
        )
        assert register.status_code == 422, register.text
        login = await client.post("/api/v1/auth/login", json={"email": email, "password": "x"})
        assert login.status_code == 401, login.text
        form = await client.post(
            "/api/v1/auth/login", data={"username": email, "password": "long enough"}
        )
        assert form.status_code == 401, form.text


async def test_idempotency_key_outside_visible_ascii_is_422(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        raw_headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        for key in ("with space", "é", "x" * 256, "\x01"):
            response = await client.post(
                EVENTS,
                json={"type": "A"},
                headers=[*raw_headers, (b"Idempotency-Key", key.encode("utf-8"))],
            )
            assert response.status_code == 422, (key, response.text)
        assert await _stored_count(client, headers) == 0


async def test_repeated_key_in_an_account_body_is_refused(make_settings: SettingsFactory) -> None:
    # Which password was meant? Neither is guessed.
    async with running_app(make_settings(), run_worker=False) as client:
        body = b'{"email": "a@example.com", "password": "first one!", "password": "second one"}'
        register = await client.post("/api/v1/auth/register", content=body, headers=JSON)
        _assert_problem(register, 422, "password", "duplicate_key")
        login = await client.post("/api/v1/auth/login", content=body, headers=JSON)
        _assert_problem(login, 422, "password", "duplicate_key")
