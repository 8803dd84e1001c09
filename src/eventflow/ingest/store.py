"""What the group-commit writer asks of the database."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from eventflow.db.rows import NewEvent, StoredEvent


class IngestStore(Protocol):
    async def insert_many(
        self, new: Sequence[NewEvent], written: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        """Store ``new`` in one transaction; answers in input order (duplicates: the original).

        ``written`` is called once the rows are written and only the commit remains (never for
        a statement that commits by itself), so the writer can time the two apart.
        """

    async def forget_dispatch(self, ids: Sequence[str]) -> None:
        """These committed events' hints never reached the broker."""

    async def queue_depth(self) -> int:
        """Events ready to run now (also the cheapest proof that the database answers)."""
