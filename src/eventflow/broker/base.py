"""The Broker protocol that every broker implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventflow.db.rows import ClaimedEvent


class Broker(Protocol):
    """Moves ready events from writers to workers.

    The database stays the system of record: a broker only carries hints, and ``claim`` always
    goes through the database's conditional update, so a lost or duplicated hint costs latency,
    never an event or a double run.
    """

    name: str
    #: Whether hints must be published for workers to see events (False: workers scan the table).
    carries_hints: bool

    async def start(self) -> None: ...

    async def publish(self, event_ids: Sequence[str]) -> None:
        """Tell workers these events are ready; one round trip for the whole batch."""

    async def claim(
        self, limit: int, owner: str, lease_ms: int, wait_s: float
    ) -> list[ClaimedEvent]:
        """Up to ``limit`` events now owned by ``owner``; waits up to ``wait_s`` for work."""

    async def settle(self, events: Sequence[ClaimedEvent]) -> None:
        """The outcomes of ``events`` are committed: drop their hints for good."""

    async def depth(self) -> int:
        """Events waiting to be processed (the backpressure signal)."""

    async def ping(self) -> None:
        """Raise if the broker cannot be reached."""

    async def close(self) -> None: ...


class HintClaimStore(Protocol):
    """What a broker that carries hints asks of the database: claims of the hinted events."""

    async def claim_ids(
        self, ids: Sequence[str], owner: str, lease_ms: int
    ) -> list[ClaimedEvent]: ...
