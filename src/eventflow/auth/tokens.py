"""HS256 access tokens: issued at login, verified strictly, cached until they expire."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt

from eventflow.errors import Unauthorized
from eventflow.ids import new_id, parse_id

if TYPE_CHECKING:
    from jwt.types import Options  # PyJWT 2.10+; older ones take the same plain dict

_ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["sub", "iat", "exp", "jti"]
# PyJWT reads the system clock for ``exp`` and ``iat``; both are checked against the service's.
_DECODE_OPTIONS: Options = {"require": _REQUIRED_CLAIMS, "verify_exp": False, "verify_iat": False}

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says: whose it is, which session, until when, which generation."""

    user_id: str
    #: The session's id: signing out revokes it.
    jti: str
    #: The ``exp`` claim, in seconds since the epoch.
    expires_at: int
    #: The account's token generation at login: signing out everywhere bumps the account's,
    #: which ends every token of an older one.
    generation: int


class TokenService:
    """Signs and verifies access tokens.

    Verification costs about 20 µs of HMAC and JSON work; the hot ingest path sees the same
    token thousands of times a second, so verified tokens are remembered, never past ``exp``.
    Whether a verified token was signed out since is ``AccountStates``'s question, asked after.
    """

    def __init__(
        self,
        secret: str,
        ttl_seconds: int,
        cache_size: int = 10_000,
        clock: Clock = time.time,
    ) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        #: Seconds since the epoch; tests pass one they move by hand.
        self._clock = clock
        # The expiry again as a float: the clock's float compares with a float several times
        # faster than with an int, and this runs on every request.
        self._cache: OrderedDict[str, tuple[TokenClaims, float]] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, user_id: str, generation: int = 0) -> IssuedToken:
        now = int(self._clock())
        claims = {
            "sub": user_id,
            "iat": now,
            "exp": now + self._ttl,
            "jti": new_id(),
            "gen": generation,
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=_ALGORITHM), self._ttl)

    def verify(self, token: str) -> TokenClaims:
        """The token's claims; ``Unauthorized`` for anything but a valid, unexpired token."""
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            claims, expires = cached
            if now < expires:
                return claims
            del self._cache[token]
        try:
            raw = jwt.decode(token, self._secret, algorithms=[_ALGORITHM], options=_DECODE_OPTIONS)
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is invalid") from exc
        claims = _claims(raw)
        issued_at = raw["iat"]
        if type(issued_at) is not int or issued_at > now:
            raise Unauthorized("The access token is invalid")
        if now >= claims.expires_at:
            raise Unauthorized("The access token has expired; log in again")
        self._cache[token] = (claims, float(claims.expires_at))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def from_header(self, authorization: str | None) -> TokenClaims:
        """The claims of the token in an ``Authorization: Bearer …`` header."""
        if not authorization:
            raise Unauthorized("Missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Malformed Authorization header: expected 'Bearer <token>'")
        return self.verify(token.strip())


def _claims(raw: dict[str, object]) -> TokenClaims:
    user_id = parse_id(str(raw["sub"]))
    jti, exp = raw["jti"], raw["exp"]
    # Tokens issued before generations existed carry none: they belong to the first one.
    generation = raw.get("gen", 0)
    # ``type(…) is int``: a bool is an int to Python, never to a token.
    if (
        user_id is None
        or type(jti) is not str
        or not jti
        or type(exp) is not int
        or type(generation) is not int
        or generation < 0
    ):
        raise Unauthorized("The access token is invalid")
    return TokenClaims(user_id, jti, exp, generation)
