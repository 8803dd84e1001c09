"""Rate limits on logins, registrations and ingest: in memory, or in Redis for all replicas."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import RateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection

from eventflow.broker.keys import rate_limit_prefix
from eventflow.config import Settings, parse_rate
from eventflow.errors import PayloadTooLarge, TooManyRequests

log = logging.getLogger(__name__)

# A limit check sits in front of every login: an unreachable Redis must cost milliseconds.
_CONNECT_TIMEOUT_S = 0.25
_SOCKET_TIMEOUT_S = 0.5
# After Redis failed, limits are counted in this process alone for this long before Redis is
# tried again, so an outage costs one failed call per interval, not one per request.
_SHARED_RETRY_S = 1.0
_STORAGE_ERRORS = (StorageError, RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit: what it counts (``scope``, part of the key), how many per window, and what a
    refused client is told."""

    scope: str
    item: RateLimitItem
    refusal: str


@dataclass(frozen=True, slots=True)
class Rules:
    """Every configured limit; None where a setting is empty (no limit)."""

    login_email: Rule | None
    login_address: Rule | None
    register_email: Rule | None
    register_address: Rule | None
    ingest: Rule | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        def rule(field: str, scope: str, refusal: str) -> Rule | None:
            item = parse_rate(f"EVENTFLOW_{field.upper()}", getattr(settings, field))
            return Rule(scope, item, refusal) if item is not None else None

        return cls(
            login_email=rule(
                "login_rate_per_email", "login-email", "Too many sign-in attempts for this email"
            ),
            login_address=rule(
                "login_rate_per_address",
                "login-address",
                "Too many sign-in attempts from your address",
            ),
            register_email=rule(
                "register_rate_per_email",
                "register-email",
                "Too many registration attempts for this email",
            ),
            register_address=rule(
                "register_rate_per_address",
                "register-address",
                "Too many registrations from your address",
            ),
            ingest=rule("ingest_rate_per_user", "ingest-user", "Too many events for this account"),
        )


class Limiter:
    """Counts requests against the configured limits; a refusal raises ``TooManyRequests``.

    Sliding window counters: about as cheap as fixed windows (one counter per window and key,
    one atomic script in Redis) but without their edge burst, where a client spends a whole
    window's quota just before the boundary and another just after it. Refused requests do not
    count, so a client that stops sending gets its quota back as the window slides.

    With Redis the counts are shared by every API process. If Redis fails, counting falls back
    to this process's memory (checked again after a second): an outage of the limiter's storage
    neither takes logins and ingest down with it nor turns the limits off.
    """

    def __init__(
        self, rules: Rules, shared: RedisStorage | None = None, pool: ConnectionPool | None = None
    ) -> None:
        self._rules = rules
        #: Read on the ingest hot path: None when no per-user limit is set.
        self.ingest_rule = rules.ingest
        self._local: RateLimiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._shared = SlidingWindowCounterRateLimiter(shared) if shared is not None else None
        self._pool = pool
        self._shared_down_until = 0.0
        self._shared_up = True

    @property
    def for_ingest(self) -> Limiter | None:
        """This limiter where ingest needs one: None when no per-user limit is set."""
        return self if self.ingest_rule is not None else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiter:
        rules = Rules.from_settings(settings)
        if not settings.redis_url:
            return cls(rules)
        # A pool of its own, to set the retry policy: redis-py's default retries ten times with
        # backoff, seconds in all, on every request while Redis is unreachable.
        pool = ConnectionPool.from_url(
            settings.redis_url,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            socket_timeout=_SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        # Typed as a dict: the library annotates its pass-through options as scalars only.
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            "async+" + settings.redis_url,
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=rate_limit_prefix(settings.redis_prefix),
            **options,
        )
        return cls(rules, storage, pool)

    async def login(self, connection: HTTPConnection, email: str) -> None:
        await self._hit(self._rules.login_address, client_address(connection))
        await self._hit(self._rules.login_email, _email_key(email))

    async def register(self, connection: HTTPConnection, email: str) -> None:
        await self._hit(self._rules.register_address, client_address(connection))
        await self._hit(self._rules.register_email, _email_key(email))

    async def ingest(self, user_id: str, events: int) -> None:
        """Counts ``events`` against the account's limit (callers check ``ingest_rule`` first)."""
        rule = self.ingest_rule
        if rule is not None and events > rule.item.amount:
            # No wait would make room for it: say so rather than answer "retry later" forever.
            raise PayloadTooLarge(
                f"A batch of {events} events is more than this account may send in one window "
                f"({rule.item.amount} per {_window(rule.item)}); send smaller batches"
            )
        await self._hit(rule, user_id, events)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def _hit(self, rule: Rule | None, identity: str, cost: int = 1) -> None:
        if rule is None:
            return
        limiter = self._limiter()
        keys = (rule.scope, identity)
        try:
            allowed = await limiter.hit(rule.item, *keys, cost=cost)
            stats = None if allowed else await limiter.get_window_stats(rule.item, *keys)
        except _STORAGE_ERRORS as exc:
            if limiter is self._local:
                raise
            self._shared_failed(exc)
            await self._hit(rule, identity, cost)
            return
        if limiter is not self._local and not self._shared_up:
            self._shared_up = True
            log.info("rate limits: Redis reachable again; counting there")
        if stats is None:
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests(
            f"{rule.refusal}: at most {rule.item.amount} per {_window(rule.item)}; "
            f"retry in {retry_after} s",
            retry_after=retry_after,
            limit=rule.item.amount,
            remaining=max(0, stats.remaining),
        )

    def _limiter(self) -> RateLimiter:
        if self._shared is None or time.monotonic() < self._shared_down_until:
            return self._local
        return self._shared

    def _shared_failed(self, exc: BaseException) -> None:
        if self._shared_up:
            cause = exc.storage_error if isinstance(exc, StorageError) else exc
            log.warning("rate limits: Redis unreachable (%r); counting in this process", cause)
            self._shared_up = False
        self._shared_down_until = time.monotonic() + _SHARED_RETRY_S


def client_address(connection: HTTPConnection) -> str:
    """Whom a per-address limit counts: the client's IP (already taken from X-Forwarded-For when
    the peer is a trusted proxy), or for IPv6 its /64, which one subscriber usually holds whole."""
    host = connection.client.host if connection.client is not None else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _email_key(email: str) -> str:
    # A digest, so that no email address is written to Redis in clear.
    return hashlib.blake2b(email.encode(), digest_size=16).hexdigest()


def _window(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"
