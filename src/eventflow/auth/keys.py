"""API keys: made and shown once, kept as their SHA-256, checked from a cache every revocation
reaches within a poll.

A key is ``efk_`` and 32 random bytes (base64url, 43 characters). With 256 random bits no
key can be guessed or brute-forced from its hash, so one SHA-256 is the right hash: a slow
password hash (Argon2id) would add tens of milliseconds to every cache miss and protect nothing
more. A verified key is remembered in this process (``KeyRing``), so checking it again is a
dict lookup, like a cached access token; a revocation made anywhere reaches every process
through one poll every ``EVENTFLOW_KEY_POLL_MS`` (at most a second), and the process that
revoked it forgets it at once. When each key was last used is written in batches by the same
poll, at most once a minute per key and process: never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from eventflow.auth.polling import CLOCK_MARGIN_MS, advance, poll_forever
from eventflow.auth.principal import Principal, Scope
from eventflow.clock import now_ms
from eventflow.db.rows import KeyRow
from eventflow.errors import Unauthorized

log = logging.getLogger(__name__)

KEY_PREFIX = "efk_"
_RANDOM_BYTES = 32
#: Characters of the random part that the key's ``prefix`` shows, to tell keys apart.
_SHOWN = 8
_KEY_RE = re.compile(r"efk_[A-Za-z0-9_-]{43}")
#: Active keys an account may have at once.
MAX_ACTIVE_KEYS = 100
#: How often a key's ``last_used_at`` is written, at most, per process.
MARK_USED_EVERY_MS = 60_000
# A revoked key is remembered this long after the poll saw it, for the lookups that read its
# row just before it was revoked and come back after.
_FORGET_REVOKED_MS = 60_000

INVALID_KEY = "The API key is invalid or revoked"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as made: the key itself (shown once), what is shown of it later, and its hash."""

    key: str
    prefix: str
    hash: str


def new_key() -> NewKey:
    random_part = secrets.token_urlsafe(_RANDOM_BYTES)
    key = KEY_PREFIX + random_part
    return NewKey(key, KEY_PREFIX + random_part[:_SHOWN], key_hash(key))


def key_hash(key: str) -> str:
    """What the database keeps of a key: its SHA-256, in hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def is_key(text: str) -> bool:
    """Whether ``text`` is shaped like a key (anything else is refused without a lookup)."""
    return _KEY_RE.fullmatch(text) is not None


class KeyReader(Protocol):
    async def by_hash(self, digest: str) -> KeyRow | None: ...

    async def revoked_since(self, since_ms: int) -> list[tuple[str, int]]: ...

    async def mark_used(self, used: Mapping[str, int]) -> None: ...


class _Verified:
    __slots__ = ("marked_at", "principal")

    def __init__(self, principal: Principal, marked_at: int) -> None:
        self.principal = principal
        #: When this process last queued the key's ``last_used_at``.
        self.marked_at = marked_at


class KeyRing:
    """The keys this process has verified, and the revocations it has seen."""

    def __init__(
        self,
        store: KeyReader,
        *,
        poll_ms: int = 250,
        cache_size: int = 10_000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._poll_s = poll_ms / 1000
        self._cache_size = cache_size
        self._clock = clock
        #: The key itself → what it resolves to (a key is its own cache key, as a token is).
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self._by_id: dict[str, str] = {}
        #: Key ids revoked recently → when this process learned it.
        self._revoked: dict[str, int] = {}
        #: Key id → when it was used, to be written by the next poll.
        self._used: dict[str, int] = {}
        self._seen = 0
        self._poller: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._verified)

    async def start(self) -> None:
        # Nothing is cached yet, and lookups skip revoked rows: only later revocations matter.
        self._seen = self._clock()
        self._poller = asyncio.create_task(
            poll_forever(self.refresh, self._poll_s, "key revocations"), name="key-ring"
        )

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        with contextlib.suppress(Exception):
            await self._store.mark_used(self._take_used())

    def cached(self, key: str) -> Principal | None:
        """Who ``key`` acts for if this process verified it already (noting its use), else None."""
        found = self._verified.get(key)
        if found is None:
            return None
        now = self._clock()
        if now - found.marked_at >= MARK_USED_EVERY_MS:
            found.marked_at = now
            self._used[found.principal.key_id or ""] = now
        return found.principal

    async def principal(self, key: str) -> Principal:
        """Who ``key`` acts for; ``Unauthorized`` for a malformed, unknown or revoked key."""
        found = self.cached(key)
        if found is not None:
            return found
        if not is_key(key):
            raise Unauthorized(INVALID_KEY)
        row = await self._store.by_hash(key_hash(key))
        if row is None or row.id in self._revoked:
            raise Unauthorized(INVALID_KEY)
        principal = Principal(row.user_id, Scope(row.scope), key_id=row.id, key_name=row.name)
        now = self._clock()
        self._verified[key] = _Verified(principal, now)
        self._by_id[row.id] = key
        self._used[row.id] = now
        if len(self._verified) > self._cache_size:
            _, oldest = self._verified.popitem(last=False)
            self._by_id.pop(oldest.principal.key_id or "", None)
        return principal

    def revoke(self, key_id: str) -> None:
        """Forget a revoked key: at once in the process that revoked it, by the poll elsewhere."""
        self._revoked[key_id] = self._clock()
        key = self._by_id.pop(key_id, None)
        if key is not None:
            self._verified.pop(key, None)

    async def refresh(self) -> None:
        """One poll: forget the keys revoked since the last one, and write the uses queued."""
        now = self._clock()
        revoked = await self._store.revoked_since(self._seen - CLOCK_MARGIN_MS)
        for key_id, _ in revoked:
            if key_id not in self._revoked:
                self.revoke(key_id)
        self._seen = advance(self._seen, (at for _, at in revoked), now)
        for key_id in [k for k, at in self._revoked.items() if at < now - _FORGET_REVOKED_MS]:
            del self._revoked[key_id]
        used = self._take_used()
        try:
            await self._store.mark_used(used)
        except Exception:
            # Written with the next poll instead; only a timestamp is at stake.
            for key_id, at in used.items():
                self._used.setdefault(key_id, at)
            raise

    def _take_used(self) -> dict[str, int]:
        used, self._used = self._used, {}
        return used
