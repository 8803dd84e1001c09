"""API keys held in memory, with the keys store's rules (a cap, revocation, hashes only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from eventflow.db.keys import TooManyKeys
from eventflow.db.rows import KeyRow


class MemoryKeys:
    def __init__(self) -> None:
        self._keys: dict[str, KeyRow] = {}

    async def create(self, key: KeyRow, cap: int) -> KeyRow:
        if len(await self.active(key.user_id)) >= cap:
            raise TooManyKeys(key.user_id)
        self._keys[key.id] = key
        return key

    async def active(self, user_id: str) -> list[KeyRow]:
        mine = (k for k in self._keys.values() if k.user_id == user_id and k.revoked_at is None)
        return sorted(mine, key=lambda k: k.id, reverse=True)

    async def revoke(self, user_id: str, key_id: str, now: int) -> bool:
        found = self._keys.get(key_id)
        if found is None or found.user_id != user_id or found.revoked_at is not None:
            return False
        self._keys[key_id] = dataclasses.replace(found, revoked_at=now)
        return True

    async def by_hash(self, digest: str) -> KeyRow | None:
        return next(
            (k for k in self._keys.values() if k.hash == digest and k.revoked_at is None), None
        )

    async def revoked_since(self, since_ms: int) -> list[tuple[str, int]]:
        return [
            (k.id, k.revoked_at)
            for k in self._keys.values()
            if k.revoked_at is not None and k.revoked_at > since_ms
        ]

    async def mark_used(self, used: Mapping[str, int]) -> None:
        for key_id, used_at in used.items():
            if key_id in self._keys:
                self._keys[key_id] = dataclasses.replace(self._keys[key_id], last_used_at=used_at)
