"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import OAuth2PasswordBearer

from eventflow.errors import Unauthorized
from eventflow.services import Services

# auto_error=False: the token is checked by TokenService, which owns the error messages.
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs plain-def dependencies in a thread pool, a thread hop
    # per request on the hot path.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_user_id(
    services: ServicesDep, token: Annotated[str | None, Security(_bearer)]
) -> str:
    # OAuth2PasswordBearer has already taken the token out of "Bearer …" (None if absent).
    user_id = services.tokens.verify(token) if token else services.tokens.from_header(None)
    await ensure_known_user(services, user_id)
    return user_id


async def ensure_known_user(services: Services, user_id: str) -> None:
    """A validly signed token for an account that no longer exists (a reset database) is a 401."""
    if user_id in services.known_users:
        return
    if await services.users.by_id(user_id) is None:
        raise Unauthorized("The account behind this token no longer exists; register again")
    services.known_users.add(user_id)


UserId = Annotated[str, Depends(current_user_id)]
