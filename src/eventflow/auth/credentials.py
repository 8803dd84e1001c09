"""The one check of every ``Authorization`` header: a user's token or an API key, and its scope.

Accepted: ``Bearer <access token>``, ``Bearer efk_…`` and ``Basic base64(efk_…:)`` (the key as
the user name and no password, as HTTP clients and Segment's libraries send a write key).
Both a token and a key also need their account to be active; after the caches that is two
dict lookups, the same for either.
"""

from __future__ import annotations

import binascii
from base64 import b64decode

from eventflow.auth.accounts import AccountStates
from eventflow.auth.keys import KEY_PREFIX, KeyRing
from eventflow.auth.principal import Principal, Scope
from eventflow.auth.tokens import TokenClaims, TokenService
from eventflow.errors import EventflowError, Forbidden, Unauthorized

MISSING = (
    "Missing credentials: send 'Authorization: Bearer <token or API key>', or the API key "
    "as the user name of HTTP Basic authentication"
)
MALFORMED = "Malformed Authorization header: expected 'Bearer <token or API key>' or 'Basic …'"
BAD_BASIC = (
    "Malformed Basic credentials: send an API key as the user name and no password, "
    "base64('efk_…:')"
)
_SCOPE_ROUTES = {
    Scope.INGEST: "an ingest key may only send events",
    Scope.READ: "a read key may only read events and stats",
}


def basic_key(credentials: str) -> str:
    """The API key in Basic credentials (``base64(key:)``); ``Unauthorized`` for anything else."""
    try:
        decoded = b64decode(credentials, validate=True).decode()
    except (binascii.Error, ValueError) as exc:
        raise Unauthorized(BAD_BASIC) from exc
    key, colon, password = decoded.partition(":")
    if not colon or password or not key.startswith(KEY_PREFIX):
        raise Unauthorized(BAD_BASIC)
    return key


def split_authorization(authorization: str | None) -> tuple[str, str]:
    """``(scheme, credentials)`` of a header, the scheme in lower case; ``Unauthorized`` if
    there is none or it has no credentials."""
    if not authorization:
        raise Unauthorized(MISSING)
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if not credentials:
        raise Unauthorized(MALFORMED)
    return scheme.lower(), credentials


def forbidden(principal: Principal, need: Scope) -> Forbidden:
    if need is Scope.USER:
        return Forbidden("API keys cannot use this route: it needs a user's access token (log in)")
    return Forbidden(f"This API key's scope is {principal.scope}: {_SCOPE_ROUTES[principal.scope]}")


class Authenticator:
    """The ``Credentials`` of an API process: access tokens, API keys, and account states."""

    def __init__(self, tokens: TokenService, accounts: AccountStates, keys: KeyRing) -> None:
        self._tokens = tokens
        self._accounts = accounts
        self.keys = keys

    def _read(self, authorization: str | None) -> TokenClaims | str:
        """A verified token's claims, or the API key the header carries (not looked up yet);
        ``Unauthorized`` for anything else."""
        scheme, credentials = split_authorization(authorization)
        if scheme == "bearer":
            if credentials.startswith(KEY_PREFIX):
                return credentials
            return self._tokens.verify(credentials)
        if scheme == "basic":
            return basic_key(credentials)
        raise Unauthorized(MALFORMED)

    async def authenticate(self, authorization: str | None, need: Scope) -> Principal:
        read = self._read(authorization)
        if not isinstance(read, str):
            await self._accounts.ensure(read.user_id, read)
            return Principal(read.user_id, Scope.USER, session=read)
        principal = await self.keys.principal(read)
        # The account's state first: a key of a disabled account is refused, not "forbidden".
        await self._accounts.ensure(principal.user_id, None)
        if principal.scope is not need:
            raise forbidden(principal, need)
        return principal

    def known(self, authorization: str | None, need: Scope) -> Principal | None:
        """What ``authenticate`` would answer when this process's caches settle it and it is a
        principal allowed ``need``; None for everything else (``authenticate`` then says why)."""
        try:
            read = self._read(authorization)
        except EventflowError:
            return None
        if not isinstance(read, str):
            settled = self._accounts.settled(read.user_id, read)
            return Principal(read.user_id, Scope.USER, session=read) if settled else None
        principal = self.keys.cached(read)
        if principal is None or principal.scope is not need:
            return None
        return principal if self._accounts.settled(principal.user_id, None) else None
