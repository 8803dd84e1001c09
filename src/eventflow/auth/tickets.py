"""Stream tickets: short-lived, HMAC-signed, and redeemable once in the whole deployment."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

from eventflow.auth.tokens import TokenClaims
from eventflow.broker.keys import RedisKeys
from eventflow.errors import Unauthorized

TICKET_TTL_S = 30
#: How long a spent nonce is remembered beyond its ticket's expiry. A replica whose clock runs
#: behind still takes the ticket for that long after it expired elsewhere, so it must still find
#: the nonce spent.
SPENT_MARGIN_MS = 60_000
# v2 tickets name the session (jti, generation) they were issued for, so a stream ends with it.
_SCOPE = "stream.v2"
_KEY_LABEL = b"eventflow/stream-ticket/v1"


class SpentTickets(Protocol):
    """The record of redeemed tickets that every process redeeming them shares."""

    async def spend(self, nonce: str, keep_until_ms: int) -> bool:
        """Record ``nonce`` until ``keep_until_ms``; False if it was recorded already.

        Atomic across processes: of two concurrent calls with one nonce exactly one is True.
        """
        ...


class StreamTickets:
    """Issues and redeems stream tickets: ``base64url(claims) "." base64url(hmac)``."""

    def __init__(
        self,
        secret: str,
        spent: SpentTickets,
        *,
        ttl_s: int = TICKET_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # A key of its own, so nothing signed for tickets can ever pass as an access token.
        self._key = hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self._spent = spent
        self._ttl = ttl_s
        self._clock = clock

    def issue(self, session: TokenClaims) -> str:
        """A ticket for ``session``: the stream it opens lasts as long as the session does."""
        expires_ms = int((self._clock() + self._ttl) * 1000)
        claims = "|".join(
            (
                _SCOPE,
                session.user_id,
                str(expires_ms),
                str(session.expires_at),
                session.jti,
                str(session.generation),
                secrets.token_urlsafe(16),
            )
        )
        raw = claims.encode()
        return f"{_b64(raw)}.{_b64(self._sign(raw))}"

    async def redeem(self, ticket: str) -> TokenClaims:
        """The session the ticket was issued for; ``Unauthorized`` if forged, expired, or
        already used anywhere."""
        encoded, _, signature = ticket.partition(".")
        try:
            raw, mac = _unb64(encoded), _unb64(signature)
        except (binascii.Error, ValueError) as exc:
            raise Unauthorized("The stream ticket is invalid") from exc
        if not hmac.compare_digest(mac, self._sign(raw)):
            raise Unauthorized("The stream ticket is invalid")
        # Signed by us, so well-formed: nothing below runs for a forged ticket, and no
        # attacker-chosen text ever reaches the shared record.
        fields = raw.decode().split("|")
        if len(fields) != 7 or fields[0] != _SCOPE:
            raise Unauthorized("The stream ticket is invalid")
        _, user_id, expires_ms, session_expires, jti, generation, nonce = fields
        if int(expires_ms) <= self._clock() * 1000:
            raise Unauthorized("The stream ticket has expired; ask for a new one")
        if not await self._spent.spend(nonce, int(expires_ms) + SPENT_MARGIN_MS):
            raise Unauthorized("The stream ticket was already used; ask for a new one")
        return TokenClaims(user_id, jti, int(session_expires), int(generation))

    def _sign(self, raw: bytes) -> bytes:
        return hmac.new(self._key, raw, hashlib.sha256).digest()


class RedisSpentTickets:
    """Spent nonces as Redis keys that expire by themselves: one ``SET NX PX`` per redemption."""

    def __init__(self, redis: Redis, keys: RedisKeys, clock: Callable[[], float] = time.time):
        self._redis = redis
        self._keys = keys
        self._clock = clock

    async def spend(self, nonce: str, keep_until_ms: int) -> bool:
        ttl_ms = max(1, keep_until_ms - int(self._clock() * 1000))
        # NX makes Redis the arbiter: of concurrent SETs of one key exactly one answers OK.
        created = await self._redis.set(self._keys.spent_ticket(nonce), 1, nx=True, px=ttl_ms)
        return bool(created)


class MemorySpentTickets:
    """One process's record, for unit tests: it cannot see what another process redeemed."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._spent: dict[str, int] = {}

    async def spend(self, nonce: str, keep_until_ms: int) -> bool:
        self._forget_expired(int(self._clock() * 1000))
        if nonce in self._spent:
            return False
        self._spent[nonce] = keep_until_ms
        return True

    def __len__(self) -> int:
        return len(self._spent)

    def _forget_expired(self, now_ms: int) -> None:
        # Every ticket has the same lifetime, so insertion order is expiry order.
        for nonce, keep_until in list(self._spent.items()):
            if keep_until > now_ms:
                break
            del self._spent[nonce]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Only the one canonical spelling: the decoder ignores a last character's unused bits, so
    # several texts would otherwise redeem as the same ticket.
    if _b64(raw) != text:
        raise ValueError("not canonical base64url")
    return raw
