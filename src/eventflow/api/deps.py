"""Dependencies for the routes, as ``Annotated`` aliases, and the one check of every credential.

Each route states the scope it needs with its alias: ``UserId``/``Session``/``User`` (a
user's access token only), ``Reader`` (a token or a ``read`` key) and ``Sender`` (a token or an
``ingest`` key; the ingest routes' handler makes the same check without FastAPI). The security
schemes below only document the header in the OpenAPI document: ``services.credentials`` reads
it, whatever its scheme.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBasic, HTTPBearer, OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from eventflow.auth.principal import Principal, Scope
from eventflow.auth.tokens import TokenClaims
from eventflow.errors import Unauthorized
from eventflow.services import Services


# Documentation only: each parses nothing, ``services.credentials`` reads the header.
class _UserToken(OAuth2PasswordBearer):
    async def __call__(self, request: HTTPConnection) -> None:
        return None


class _KeyBearer(HTTPBearer):
    async def __call__(self, request: HTTPConnection) -> None:
        return None


class _KeyBasic(HTTPBasic):
    async def __call__(self, request: HTTPConnection) -> None:
        return None


_user_token = _UserToken(
    tokenUrl="/api/v1/auth/login",
    scheme_name="OAuth2PasswordBearer",
    description="A user's access token, from `POST /api/v1/auth/login`",
    auto_error=False,
)
_key_bearer = _KeyBearer(
    scheme_name="APIKeyBearer",
    description="An API key (`efk_…`) as the bearer token: `Authorization: Bearer efk_…`",
    auto_error=False,
)
_key_basic = _KeyBasic(
    scheme_name="APIKeyBasic",
    description="An API key as the user name and no password: `Authorization: Basic "
    "base64(efk_…:)`",
    auto_error=False,
)


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs plain-def dependencies in a thread pool, a thread hop
    # per request on the hot path.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def ensure_access(services: Services, user_id: str, session: TokenClaims | None) -> None:
    """The check every entry point makes: the account is active and the session not signed out.

    ``session`` is the verified token's claims; None only for a credential that is no token of
    its own (a stream ticket), when the account alone is checked. After the token cache this
    is the whole per-request cost: two dict lookups while nothing changed, the database only for
    an account this process has not seen yet (``auth/accounts.py``).
    """
    await services.accounts.ensure(user_id, session)


async def user_principal(
    request: Request, services: ServicesDep, _: Annotated[None, Security(_user_token)]
) -> Principal:
    return await services.credentials.authenticate(request.headers.get("authorization"), Scope.USER)


def _token_or_key(need: Scope) -> Callable[..., Awaitable[Principal]]:
    """The dependency of routes that a user's token or a key of scope ``need`` may call."""

    async def principal(
        request: Request,
        services: ServicesDep,
        _token: Annotated[None, Security(_user_token)],
        _bearer: Annotated[None, Security(_key_bearer)],
        _basic: Annotated[None, Security(_key_basic)],
    ) -> Principal:
        return await services.credentials.authenticate(request.headers.get("authorization"), need)

    return principal


#: A user's access token: the routes that manage the account, its keys and its events.
User = Annotated[Principal, Depends(user_principal)]
#: A user's token or a ``read`` key: the routes that only read events.
Reader = Annotated[Principal, Depends(_token_or_key(Scope.READ))]
#: A user's token or an ``ingest`` key: the ingest routes (documented; their handler checks).
Sender = Annotated[Principal, Depends(_token_or_key(Scope.INGEST))]


async def current_session(principal: User) -> TokenClaims:
    # Scope.USER admits access tokens only, and every one of them carries its claims.
    if principal.session is None:
        raise Unauthorized("This route needs a user's access token")
    return principal.session


Session = Annotated[TokenClaims, Depends(current_session)]


async def current_user_id(principal: User) -> str:
    return principal.user_id


UserId = Annotated[str, Depends(current_user_id)]


async def reader_id(principal: Reader) -> str:
    return principal.user_id


ReaderId = Annotated[str, Depends(reader_id)]
