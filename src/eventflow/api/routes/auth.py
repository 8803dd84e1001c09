"""Accounts: register, log in (JSON or OAuth2 form), who am I, and sign out."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from pydantic_core import ErrorDetails
from starlette.responses import Response

from eventflow.api.body import error_item, read_body, validated
from eventflow.api.deps import ServicesDep, Session, UserId
from eventflow.api.openapi import errors
from eventflow.api.schemas import EMAIL_CORE, EMAIL_SPACE, LoginIn, RegisterIn, TokenOut, UserOut
from eventflow.auth.accounts import DISABLED
from eventflow.clock import iso, now_ms
from eventflow.db.rows import UserRow
from eventflow.db.users import EmailTaken
from eventflow.errors import (
    Conflict,
    MalformedJson,
    NotFound,
    RegistrationClosed,
    Unauthorized,
    ValidationFailed,
)
from eventflow.ids import new_id
from eventflow.ingest.validation import check_json_content_type, parse_json_object

router = APIRouter(prefix="/auth", tags=["auth"])

_EMAIL_RE = re.compile(rf"^{EMAIL_CORE}$")
_MAX_AUTH_BODY = 16 * 1024
_BAD_LOGIN = "Incorrect email or password"


def _user_out(user: UserRow) -> UserOut:
    return UserOut(id=user.id, email=user.email, created_at=iso(user.created_at) or "")


def _error_item(error: ErrorDetails) -> dict[str, Any]:
    if error["type"] == "string_pattern_mismatch" and error["loc"] == ("email",):
        # The pattern means little to a reader.
        return {"loc": ["email"], "msg": "not a valid email address", "type": "email"}
    return error_item(error)


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RegisterIn.model_json_schema()}},
        }
    },
    responses={
        403: {"description": "Registration is closed here: an operator creates accounts"},
        409: {"description": "The email is taken"},
        **errors(429),
    },
)
async def register(request: Request, services: ServicesDep) -> UserOut:
    """Create an account. Emails are case-insensitive; passwords need 8 characters or more."""
    if services.settings.registration == "closed":
        raise RegistrationClosed(
            "Registration is closed on this server; ask an operator to create your account "
            "(eventflow user create)"
        )
    check_json_content_type(request.headers.get("content-type"))
    data = parse_json_object(await read_body(request, _MAX_AUTH_BODY))
    form = validated(RegisterIn, data, _error_item)
    email = form.email.strip(EMAIL_SPACE).lower()
    if not _EMAIL_RE.match(email):
        raise ValidationFailed(
            "email: not a valid email address",
            errors=[{"loc": ["email"], "msg": "not a valid email address", "type": "email"}],
        )
    await services.limiter.register(request, email)
    user = UserRow(
        id=new_id(),
        email=email,
        password_hash=await services.passwords.hash(form.password),
        created_at=now_ms(),
    )
    try:
        created = await services.users.create(user)
    except EmailTaken as exc:
        raise Conflict("An account with this email already exists") from exc
    return _user_out(created)


@router.post(
    "/login",
    response_model=TokenOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": LoginIn.model_json_schema()},
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "username": {"type": "string", "description": "Your email"},
                            "password": {"type": "string"},
                        },
                        "required": ["username", "password"],
                    }
                },
            },
        }
    },
    responses={401: {"description": "Unknown email or wrong password"}, **errors(429)},
)
async def login(request: Request, services: ServicesDep) -> TokenOut:
    """Exchange email and password for a bearer token (JSON, or the OAuth2 password form)."""
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    body = await read_body(request, _MAX_AUTH_BODY)
    if content_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode(), strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise MalformedJson("The form body is not valid UTF-8") from exc
        data: dict[str, Any] = {
            "email": (fields.get("username") or fields.get("email") or [""])[0],
            "password": (fields.get("password") or [""])[0],
        }
    else:
        check_json_content_type(request.headers.get("content-type"))
        data = parse_json_object(body)
    form = validated(LoginIn, data, _error_item)
    email = form.email.strip(EMAIL_SPACE).lower()
    await services.limiter.login(request, email)
    # An address registration would refuse cannot belong to anyone: no lookup (a NUL in it
    # would not even reach PostgreSQL), and the same answer as for an unknown one.
    user = await services.users.by_email(email) if _EMAIL_RE.match(email) else None
    valid = await services.passwords.verify(user.password_hash if user else None, form.password)
    if user is None or not valid:
        raise Unauthorized(_BAD_LOGIN)
    if user.disabled_at is not None:
        # Said only to whoever knows the password.
        raise Unauthorized(DISABLED)
    issued = services.tokens.issue(user.id, user.token_generation)
    return TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)


@router.get(
    "/me", response_model=UserOut, responses={404: {"description": "The account no longer exists"}}
)
async def me(user_id: UserId, services: ServicesDep) -> UserOut:
    """The account the token belongs to."""
    user = await services.users.by_id(user_id)
    if user is None:
        raise NotFound("The account no longer exists")
    return _user_out(user)


@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Signed out: this token no longer works anywhere"}},
)
async def logout(session: Session, services: ServicesDep) -> Response:
    """Sign out: this token stops working at once here, and within a second on every server."""
    expires_ms = session.expires_at * 1000
    await services.revocations.revoke(session.jti, session.user_id, expires_ms, now_ms())
    services.accounts.revoke(session.jti, expires_ms)
    return Response(status_code=204)


@router.post(
    "/logout-all",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Every token of this account was signed out"}},
)
async def logout_all(session: Session, services: ServicesDep) -> Response:
    """Sign out everywhere: every token of this account stops working, this one included."""
    account = await services.users.end_sessions(session.user_id)
    if account is not None:
        services.accounts.apply(account)
    return Response(status_code=204)
