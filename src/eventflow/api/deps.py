"""Dependencies for the routes, as ``Annotated`` aliases, and the one check of every credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import OAuth2PasswordBearer

from eventflow.auth.tokens import TokenClaims
from eventflow.services import Services

# auto_error=False: the token is checked by TokenService, which owns the error messages.
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


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
    if session is not None and services.accounts.admits(session):
        return
    await services.accounts.check(user_id, session)


async def current_session(
    services: ServicesDep, token: Annotated[str | None, Security(_bearer)]
) -> TokenClaims:
    # OAuth2PasswordBearer has already taken the token out of "Bearer …" (None if absent).
    claims = services.tokens.verify(token) if token else services.tokens.from_header(None)
    await ensure_access(services, claims.user_id, claims)
    return claims


Session = Annotated[TokenClaims, Depends(current_session)]


async def current_user_id(session: Session) -> str:
    return session.user_id


UserId = Annotated[str, Depends(current_user_id)]
