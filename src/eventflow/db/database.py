"""What the stores need of a database: its transactions and the few statements that differ."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_Row = TypeVar("_Row", bound=tuple[Any, ...])


class Database(ABC):
    """One implementation per database (``sqlite/``, ``postgres/``), chosen by ``build_stores``.

    Everything else the stores run is Core SQL that SQLAlchemy compiles for either database.
    The group-commit and retention defaults are the database's too: ``EVENTFLOW_GROUP_COMMIT_MS``,
    ``EVENTFLOW_GROUP_COMMITS_IN_FLIGHT`` and ``EVENTFLOW_RETENTION_BATCH`` override them.
    """

    #: How long the writer gathers requests into one transaction, by default.
    group_commit_ms: float
    #: Group commits the writer runs at once, by default.
    group_commits_in_flight: int
    #: Events retention deletes per transaction, by default (``EVENTFLOW_RETENTION_BATCH``).
    retention_batch: int
    #: How long a worker waits after claiming a small batch before it claims again, and how long
    #: its outcomes gather before they are written (worker/runner.py).
    claim_gather_ms: float = 5.0
    outcome_gather_ms: float = 2.0
    #: Claims a busy worker keeps in flight at once, each for its share of the batch size: a
    #: database that runs statements side by side works on the next batch while the last one
    #: is still being claimed.
    claims_in_flight: int = 2
    #: Outcome writes a worker keeps in flight at once while outcomes pile up faster than one
    #: write at a time commits them.
    outcome_writes_in_flight: int = 2

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for queries."""
        return self.engine.connect()

    @abstractmethod
    def migrating(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction for schema changes, which other processes migrating wait for."""

    @abstractmethod
    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction."""

    @abstractmethod
    def one_statement(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for a write that is a single statement (atomic on its own)."""

    @abstractmethod
    def skip_locked(self, query: sa.Select[_Row]) -> sa.Select[_Row]:
        """``query`` (a scan for rows to update) made safe for concurrent updaters."""

    @abstractmethod
    def taken_once(self, column: sa.Column[str], query: sa.Select[_Row]) -> sa.ColumnElement[bool]:
        """``column`` is one of the ids ``query`` selects, run once per statement and made safe
        for concurrent updaters (``skip_locked``).

        A plain ``IN (subquery)`` may be planned as a join that runs the subquery again for
        each row: with ``LIMIT`` and ``SKIP LOCKED`` each run after the first skips the rows the
        statement has already changed and takes others, past the limit.
        """

    @abstractmethod
    def id_in(self, column: sa.Column[str], ids: Sequence[str]) -> sa.ColumnElement[bool]:
        """``column`` is one of ``ids`` (a batch of any size)."""

    @abstractmethod
    def insert_or_skip(
        self, table: sa.Table, conflict: Sequence[str], where: sa.ColumnElement[bool] | None = None
    ) -> sa.Insert:
        """``INSERT … ON CONFLICT (conflict) [WHERE where] DO NOTHING`` into ``table``."""

    async def fold_tallies(self, limit: int) -> int:
        """Fold up to ``limit`` pending tally changes into the tallies; answers how many.

        Only PostgreSQL's triggers leave changes to fold (migration 0007); SQLite's add to the
        tallies in place. Answers 0 also while another process folds.
        """
        return 0
