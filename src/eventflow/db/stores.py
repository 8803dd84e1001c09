"""The store factory: the one place that looks at which database the engine speaks to."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.db.database import Database
from eventflow.db.erasure import EventErasure
from eventflow.db.feed import FeedStore
from eventflow.db.ingest import EventIngest
from eventflow.db.keys import KeyStore
from eventflow.db.outcomes import EventOutcomes
from eventflow.db.postgres.database import PostgresDatabase
from eventflow.db.postgres.ingest import PostgresIngest
from eventflow.db.postgres.outcomes import PostgresOutcomes
from eventflow.db.postgres.queue import PostgresQueue
from eventflow.db.queue import QueueStore
from eventflow.db.reading import ReadingStore
from eventflow.db.revocations import RevocationStore
from eventflow.db.spent_tickets import SqlSpentTickets
from eventflow.db.sqlite.database import SqliteDatabase
from eventflow.db.sqlite.ingest import SqliteIngest
from eventflow.db.sqlite.outcomes import SqliteOutcomes
from eventflow.db.sqlite.queue import SqliteQueue
from eventflow.db.upkeep import UpkeepStore
from eventflow.db.users import UserStore


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store of one database, each a small protocol's implementation for its caller."""

    database: Database
    ingest: EventIngest
    queue: QueueStore
    outcomes: EventOutcomes
    upkeep: UpkeepStore
    reading: ReadingStore
    feed: FeedStore
    users: UserStore
    keys: KeyStore
    revocations: RevocationStore
    spent_tickets: SqlSpentTickets
    erasure: EventErasure


def database_for(engine: AsyncEngine) -> Database:
    """``engine``'s database: its transactions and statement variants."""
    return build_stores(engine).database


def build_stores(engine: AsyncEngine) -> Stores:
    """The stores for ``engine``'s database (SQLite or PostgreSQL)."""
    db: Database
    ingest: EventIngest
    queue: QueueStore
    outcomes: EventOutcomes
    if engine.dialect.name == "postgresql":
        db = PostgresDatabase(engine)
        ingest, queue, outcomes = PostgresIngest(db), PostgresQueue(db), PostgresOutcomes(db)
    else:
        db = SqliteDatabase(engine)
        ingest, queue, outcomes = SqliteIngest(db), SqliteQueue(db), SqliteOutcomes(db)
    return Stores(
        database=db,
        ingest=ingest,
        queue=queue,
        outcomes=outcomes,
        upkeep=UpkeepStore(db),
        reading=ReadingStore(db),
        feed=FeedStore(db),
        users=UserStore(db),
        keys=KeyStore(db),
        revocations=RevocationStore(db),
        spent_tickets=SqlSpentTickets(db),
        erasure=EventErasure(db),
    )
