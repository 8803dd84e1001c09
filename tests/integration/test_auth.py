"""Accounts and tokens, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from tests.apiclient import running_app, signup
from tests.conftest import TEST_SECRET, SettingsFactory, each_database

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"

# Accounts live in the database; limits shared through Redis are test_rate_limits.py's.
pytestmark = each_database


async def test_register_login_me(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        created = await client.post(
            REGISTER, json={"email": "Ada@Example.com", "password": "12345678"}
        )
        assert created.status_code == 201
        body = created.json()
        assert body["email"] == "ada@example.com"
        assert set(body) == {"id", "email", "created_at"}

        login = await client.post(LOGIN, json={"email": "ADA@example.com", "password": "12345678"})
        assert login.status_code == 200
        token = login.json()
        assert token["token_type"] == "bearer"
        assert token["expires_in"] == 3600

        me = await client.get(ME, headers={"Authorization": f"Bearer {token['access_token']}"})
        assert me.status_code == 200
        assert me.json() == body


async def test_login_accepts_oauth2_form(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        created = await client.post(
            REGISTER, json={"email": "form@example.com", "password": "12345678"}
        )
        assert created.status_code == 201, created.text
        login = await client.post(
            LOGIN, data={"username": "form@example.com", "password": "12345678"}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        me = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json() == created.json()
        # The token is what opened the door: without it the same request is refused.
        assert (await client.get(ME)).status_code == 401


async def test_duplicate_email_is_409_case_insensitive(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        first = await client.post(
            REGISTER, json={"email": "dup@example.com", "password": "12345678"}
        )
        again = await client.post(
            REGISTER, json={"email": "DUP@example.com", "password": "abcdefgh"}
        )
        assert first.status_code == 201
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"


async def test_concurrent_duplicate_registrations(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        responses = await asyncio.gather(
            *[
                client.post(REGISTER, json={"email": "race@example.com", "password": "12345678"})
                for _ in range(6)
            ]
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [201, 409, 409, 409, 409, 409]


async def test_register_validation(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        short = await client.post(REGISTER, json={"email": "a@example.com", "password": "short"})
        bad_email = await client.post(REGISTER, json={"email": "nope", "password": "12345678"})
        missing = await client.post(REGISTER, json={"email": "a@example.com"})
        assert (short.status_code, bad_email.status_code, missing.status_code) == (422, 422, 422)
        assert "password" in short.json()["detail"]
        assert "email" in bad_email.json()["detail"]


async def test_same_401_for_unknown_user_and_wrong_password(
    make_settings: SettingsFactory,
) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        await client.post(REGISTER, json={"email": "known@example.com", "password": "12345678"})
        wrong = await client.post(
            LOGIN, json={"email": "known@example.com", "password": "nopenope"}
        )
        unknown = await client.post(LOGIN, json={"email": "ghost@example.com", "password": "x"})
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json()


async def test_tokens_are_verified_strictly(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        user_id = (await client.get(ME, headers=headers)).json()["id"]
        now = int(time.time())
        claims = {"sub": user_id, "iat": now, "exp": now + 60, "jti": "x"}
        forged = jwt.encode(claims, "another-secret-another-secret-another-secret!", "HS256")
        expired = jwt.encode({**claims, "exp": now - 10}, TEST_SECRET, "HS256")
        no_jti = jwt.encode({"sub": user_id, "iat": now, "exp": now + 60}, TEST_SECRET, "HS256")
        unsigned = jwt.encode(claims, "", algorithm="none")
        # The server's own secret under another algorithm; PyJWT warns it is short for HS512.
        with pytest.warns(InsecureKeyLengthWarning):
            hs512 = jwt.encode(claims, TEST_SECRET, "HS512")
        for token in (forged, expired, no_jti, unsigned, hs512, "garbage", ""):
            response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, token
        assert (
            "expired"
            in (await client.get(ME, headers={"Authorization": f"Bearer {expired}"})).json()[
                "detail"
            ]
        )
        assert (await client.get(ME)).status_code == 401
        basic = await client.get(ME, headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert basic.status_code == 401


async def test_token_for_unknown_account_is_401(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        now = int(time.time())
        ghost = "01900000-0000-7000-8000-000000000000"
        token = jwt.encode(
            {"sub": ghost, "iat": now, "exp": now + 60, "jti": "j"}, TEST_SECRET, "HS256"
        )
        response = await client.post(
            "/api/v1/events",
            json={"type": "A", "payload": {}},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401
