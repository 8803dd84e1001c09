"""Settling attempts: what both databases' outcome stores promise the worker."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from eventflow.db.rows import Outcome

#: What each kind of outcome writes into its event ``e``, in the UPDATE that joins a batch's
#: outcomes ``o`` (id, attempt, status, result, error, retry_at, finished_at) to their events:
#: the same statement on both databases, its values sent the way each driver takes them.
SETTLED_COLUMNS = """
    status = o.status,
    result = CASE WHEN o.status = 'completed' THEN o.result ELSE e.result END,
    last_error = CASE WHEN o.status = 'completed' THEN e.last_error ELSE o.error END,
    completed_at = CASE WHEN o.status = 'retrying' THEN e.completed_at ELSE o.finished_at END,
    available_at = CASE WHEN o.status = 'retrying' THEN o.retry_at ELSE e.available_at END,
    dispatched_at = CASE WHEN o.status = 'retrying' THEN NULL ELSE e.dispatched_at END,
    lease_owner = NULL,
    lease_until = NULL"""


class EventOutcomes(ABC):
    """Writes a worker's batch of attempt outcomes; the statement differs per database."""

    @abstractmethod
    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        """Settle ``outcomes`` and append their attempts, in one transaction.

        Each update is guarded by the lease (``owner``) and the attempt number, so a worker that
        lost its lease never overwrites what a newer attempt wrote.
        """
