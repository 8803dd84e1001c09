"""Tallies: each user's events by status, per-second throughput and a latency histogram, kept
exact by triggers in the transactions that change the events.

``GET /stats`` and every open dashboard read a few dozen rows of ``event_tallies`` instead of
counting a user's whole history. The rows are keyed by (user, name, at):

- ``status.<status>`` at 0: how many of the user's events are in that status now;
- ``ingested``, ``completed``, ``failed`` at an epoch second: events stored, and events that
  entered that status, in that second;
- ``latency.<bound>`` (``latency.more`` past the last bound) at the epoch second a minute
  starts: completions in that minute whose ``completed_at - created_at`` was at most ``bound``
  milliseconds (and more than the bound before it).

On SQLite, one writer at a time, row triggers add to the tallies in place. On PostgreSQL many
transactions change one user's events at once (group commits in flight, workers); adding to a
shared row would make each wait for the other's commit, so statement triggers append their
changes to ``event_tally_changes`` instead (no row is contended), and the dispatcher folds them
into the tallies. A reader sums both tables in one statement: exact at every snapshot.

Existing events are counted here, with writes to ``events`` blocked while the count runs
(seconds per ten million events on PostgreSQL); the throughput series starts empty.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: The latency histogram's bucket bounds in milliseconds (db/tallies.py reads the same list).
LATENCY_BOUNDS_MS = (
    *(1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700),
    *(1_000, 1_500, 2_000, 3_000, 5_000, 7_000, 10_000, 15_000, 20_000, 30_000),
    *(60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000),
)

_Id = sa.Uuid(as_uuid=False)


def _latency_bucket(row: str) -> str:
    """The bucket name of a completed row's latency, as SQL both databases speak."""
    took = f"({row}.completed_at - {row}.created_at)"
    cases = " ".join(f"WHEN {took} <= {b} THEN 'latency.{b}'" for b in LATENCY_BOUNDS_MS)
    return f"CASE {cases} ELSE 'latency.more' END"


# SQLite: one upsert per tally a row change touches.
_SQLITE_ADD = "ON CONFLICT (user_id, name, at) DO UPDATE SET n = n + excluded.n"
_SQLITE_TRIGGERS = (
    f"""
    CREATE TRIGGER events_tally_insert AFTER INSERT ON events BEGIN
        INSERT INTO event_tallies (user_id, name, at, n) VALUES
            (NEW.user_id, 'status.' || NEW.status, 0, 1),
            (NEW.user_id, 'ingested', NEW.created_at / 1000, 1)
        {_SQLITE_ADD};
    END
    """,
    f"""
    CREATE TRIGGER events_tally_update AFTER UPDATE OF status ON events
    WHEN OLD.status <> NEW.status BEGIN
        INSERT INTO event_tallies (user_id, name, at, n) VALUES
            (NEW.user_id, 'status.' || OLD.status, 0, -1),
            (NEW.user_id, 'status.' || NEW.status, 0, 1)
        {_SQLITE_ADD};
        INSERT INTO event_tallies (user_id, name, at, n)
            SELECT NEW.user_id, NEW.status, NEW.completed_at / 1000, 1
            WHERE NEW.status IN ('completed', 'failed') AND NEW.completed_at IS NOT NULL
        {_SQLITE_ADD};
        INSERT INTO event_tallies (user_id, name, at, n)
            SELECT NEW.user_id, {_latency_bucket("NEW")}, NEW.completed_at / 60000 * 60, 1
            WHERE NEW.status = 'completed' AND NEW.completed_at IS NOT NULL
        {_SQLITE_ADD};
    END
    """,
    f"""
    CREATE TRIGGER events_tally_delete AFTER DELETE ON events BEGIN
        INSERT INTO event_tallies (user_id, name, at, n) VALUES
            (OLD.user_id, 'status.' || OLD.status, 0, -1)
        {_SQLITE_ADD};
    END
    """,
)

# PostgreSQL: one INSERT of the statement's net changes into event_tally_changes.
_POSTGRES_FUNCTIONS = {
    "insert": """
        INSERT INTO event_tally_changes (user_id, name, at, n)
        SELECT user_id, 'status.' || status, 0, count(*) FROM new_rows GROUP BY 1, 2
        UNION ALL
        SELECT user_id, 'ingested', created_at / 1000, count(*) FROM new_rows GROUP BY 1, 3
    """,
    "update": f"""
        WITH moved AS (
            SELECT n.user_id, o.status AS was, n.status AS became, n.created_at, n.completed_at
            FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
            WHERE o.status <> n.status
        )
        INSERT INTO event_tally_changes (user_id, name, at, n)
        SELECT user_id, name, at, sum(n) FROM (
            SELECT user_id, 'status.' || was AS name, 0::bigint AS at, -1 AS n FROM moved
            UNION ALL
            SELECT user_id, 'status.' || became, 0, 1 FROM moved
            UNION ALL
            SELECT user_id, became, completed_at / 1000, 1 FROM moved
            WHERE became IN ('completed', 'failed') AND completed_at IS NOT NULL
            UNION ALL
            SELECT user_id, {_latency_bucket("moved")}, completed_at / 60000 * 60, 1 FROM moved
            WHERE became = 'completed' AND completed_at IS NOT NULL
        ) AS changes
        GROUP BY 1, 2, 3
        HAVING sum(n) <> 0
    """,
    "delete": """
        INSERT INTO event_tally_changes (user_id, name, at, n)
        SELECT user_id, 'status.' || status, 0, -count(*) FROM old_rows GROUP BY 1, 2
    """,
}
_TRANSITION_TABLES = {
    "insert": "NEW TABLE AS new_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
}


def upgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    op.create_table(
        "event_tallies",
        sa.Column("user_id", _Id, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "name", "at", name="pk_event_tallies"),
    )
    # The dispatcher deletes the per-second and per-minute tallies past their time.
    op.create_index("ix_event_tallies_at", "event_tallies", ["at"])
    op.create_table(
        "event_tally_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("user_id", _Id, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_tally_changes"),
    )
    op.create_index(
        "ix_event_tally_changes_user_id_name_at", "event_tally_changes", ["user_id", "name", "at"]
    )
    if postgres:
        # No event may change between the count below and the triggers taking over.
        op.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        for kind, body in _POSTGRES_FUNCTIONS.items():
            op.execute(
                f"CREATE FUNCTION eventflow_tally_{kind}() RETURNS trigger LANGUAGE plpgsql "
                f"AS $$ BEGIN {body}; RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER events_tally_{kind} AFTER {kind.upper()} ON events "
                f"REFERENCING {_TRANSITION_TABLES[kind]} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION eventflow_tally_{kind}()"
            )
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)
    op.execute(
        "INSERT INTO event_tallies (user_id, name, at, n) "
        "SELECT user_id, 'status.' || status, 0, count(*) FROM events GROUP BY user_id, status"
    )


def downgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for kind in _TRANSITION_TABLES:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS events_tally_{kind} ON events")
            op.execute(f"DROP FUNCTION IF EXISTS eventflow_tally_{kind}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS events_tally_{kind}")
    op.drop_table("event_tally_changes")
    op.drop_table("event_tallies")
