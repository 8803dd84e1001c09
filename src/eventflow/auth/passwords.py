"""Argon2id password hashing on a bounded thread pool (each hash costs tens of milliseconds)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from eventflow.errors import ServiceUnavailable

T = TypeVar("T")

# Hashes that may wait for a thread, per thread: a short burst of sign-ins waits about this
# many hashes' time instead of being refused, and a flood never builds an unbounded queue.
WAITING_PER_THREAD = 4


class Passwords:
    """Hashes and verifies passwords, never more than ``concurrency`` at once.

    Every hash holds a CPU and 64 MiB for its whole run, so a flood of logins or registrations
    could starve the process of both. At most ``concurrency`` run at once, on threads of their
    own (the event loop's default pool is shared with everything else); a few more may wait for
    a thread, and beyond that the request is refused at once with 503 and ``Retry-After``.
    """

    def __init__(self, hasher: PasswordHasher | None = None, *, concurrency: int = 1) -> None:
        self._hasher = hasher or PasswordHasher()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="argon2")
        self._admitted = 0
        self._most_admitted = concurrency * (1 + WAITING_PER_THREAD)
        # Verified against when the email is unknown, so both failures take the same time.
        self._decoy = self._hasher.hash("decoy password that never matches")

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await self._run(self._verify, password_hash or self._decoy, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, func: Callable[..., T], *args: str) -> T:
        if self._admitted >= self._most_admitted:
            raise ServiceUnavailable(
                "Too many sign-ins and registrations at once; retry in a second", retry_after=1
            )
        loop = asyncio.get_running_loop()
        future: Future[T] = self._pool.submit(func, *args)
        self._admitted += 1
        # Released when the hash itself ends, not when the request stops waiting for it: a
        # client that disconnects mid-hash must not free a slot its hash still holds.
        future.add_done_callback(lambda _: self._release_from(loop))
        return await asyncio.wrap_future(future)

    def _release_from(self, loop: asyncio.AbstractEventLoop) -> None:
        # Runs on the hashing thread; the count belongs to the event loop's thread.
        with contextlib.suppress(RuntimeError):  # the loop closed while the hash ran
            loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        self._admitted -= 1

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
