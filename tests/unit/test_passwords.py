"""Password hashing is bounded: never more hashes at once than configured, a flood refused."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from argon2 import PasswordHasher

from eventflow.auth.passwords import WAITING_PER_THREAD, Passwords
from eventflow.errors import ServiceUnavailable


class GatedHasher(PasswordHasher):
    """Hashes only when the gate opens, and records how many hashes ran at the same time."""

    def __init__(self) -> None:
        # The cheapest parameters: these tests are about scheduling, not cryptography.
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.gate = threading.Event()
        self.gate.set()  # open for the decoy hash made at construction
        self._lock = threading.Lock()
        self.running = 0
        self.most_running = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            assert self.gate.wait(10), "the test never opened the gate"
            return super().hash(password, salt=salt)
        finally:
            with self._lock:
                self.running -= 1


async def _until(condition: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_flood_is_refused_at_once_and_never_hashes_more_than_the_bound() -> None:
    hasher = GatedHasher()
    passwords = Passwords(hasher, concurrency=1)
    try:
        hasher.gate.clear()
        admitted = 1 + WAITING_PER_THREAD
        tasks = [asyncio.create_task(passwords.hash(f"password {n}")) for n in range(admitted)]
        await _until(lambda: hasher.running == 1)

        # Every slot is taken: the next request is refused without waiting for any hash.
        with pytest.raises(ServiceUnavailable) as refused:
            await asyncio.wait_for(passwords.verify(None, "guess"), 0.5)
        assert refused.value.headers["Retry-After"] == "1"

        hasher.gate.set()
        hashes = await asyncio.gather(*tasks)
        assert len(set(hashes)) == admitted
        assert hasher.most_running == 1
        # With the backlog gone, requests are admitted again.
        assert await passwords.verify(hashes[0], "password 0")
    finally:
        hasher.gate.set()
        passwords.close()


async def test_a_request_that_stops_waiting_keeps_its_slot_until_the_hash_ends() -> None:
    hasher = GatedHasher()
    passwords = Passwords(hasher, concurrency=1)
    try:
        hasher.gate.clear()
        waiting = [asyncio.create_task(passwords.hash("p")) for _ in range(1 + WAITING_PER_THREAD)]
        await _until(lambda: hasher.running == 1)
        # The running one's client goes away: its hash still runs, so no slot frees up.
        waiting[0].cancel()
        with pytest.raises(ServiceUnavailable):
            await passwords.hash("p")
        hasher.gate.set()
        await asyncio.gather(*waiting[1:])
        await _until(lambda: hasher.running == 0)
        assert await passwords.hash("p")
    finally:
        hasher.gate.set()
        passwords.close()


async def test_several_hashes_run_at_once_up_to_the_bound() -> None:
    hasher = GatedHasher()
    passwords = Passwords(hasher, concurrency=3)
    try:
        hasher.gate.clear()
        tasks = [asyncio.create_task(passwords.hash("p")) for _ in range(6)]
        await _until(lambda: hasher.running == 3)
        await asyncio.sleep(0.05)
        assert hasher.running == 3
        hasher.gate.set()
        await asyncio.gather(*tasks)
        assert hasher.most_running == 3
    finally:
        hasher.gate.set()
        passwords.close()
