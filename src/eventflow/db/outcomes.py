"""Settling attempts: what both databases' outcome stores promise the worker."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from eventflow.db.rows import Outcome


class EventOutcomes(ABC):
    """Writes a worker's batch of attempt outcomes; the statement differs per database."""

    @abstractmethod
    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        """Settle ``outcomes`` and append their attempts, in one transaction.

        Each update is guarded by the lease (``owner``) and the attempt number, so a worker that
        lost its lease never overwrites what a newer attempt wrote.
        """
