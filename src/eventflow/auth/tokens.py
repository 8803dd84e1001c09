"""HS256 access tokens: issued at login, verified strictly, cached until they expire."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from eventflow.errors import Unauthorized
from eventflow.ids import new_id, parse_id

_ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["sub", "iat", "exp", "jti"]


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

    def __init__(self, secret: str, ttl_seconds: int, cache_size: int = 10_000) -> None:
        self._secret = secret
        self._ttl = ttl_seconds
        # The expiry again as a float: time.time() compares with a float several times faster
        # than with an int, and this runs on every request.
        self._cache: OrderedDict[str, tuple[TokenClaims, float]] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, user_id: str, generation: int = 0) -> IssuedToken:
        now = int(time.time())
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
        cached = self._cache.get(token)
        if cached is not None:
            claims, expires = cached
            if time.time() < expires:
                return claims
            del self._cache[token]
        try:
            raw = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired; log in again") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is invalid") from exc
        claims = _claims(raw)
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
