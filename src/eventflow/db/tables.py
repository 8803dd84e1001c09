"""Table definitions (SQLAlchemy Core); migrations/ creates the same schema on both databases.

Timestamps are integer milliseconds since the Unix epoch: they compare, subtract and index the
same way on SQLite and PostgreSQL, which keeps every query dialect-neutral.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_Id = sa.Uuid(as_uuid=False)
_BigSerial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The predicates of the partial indexes, as literal SQL. Queries repeat them word for word:
# SQLite uses a partial index only when the query's WHERE contains its condition with the same
# constants; a bound parameter ("status IN (?, ?, ?)") never qualifies and turns each claim into
# a scan of the whole table.
#: Claimable rows (ix_events_ready), delayed ones (ix_events_scheduled), and claimable rows
#: without a hint in the broker (ix_events_unhinted): migration 0010.
READY = "status IN ('queued', 'retrying')"
SCHEDULED = "status = 'scheduled'"
UNHINTED = f"dispatched_at IS NULL AND {READY}"
PROCESSING = "status = 'processing'"
#: The statuses in ix_events_user_status: every one but ``completed``. A user's events of any of
#: them may be few and old among millions (queued and processing are usually none at all, and a
#: replay queues old ids), so a listing must find them directly, not by walking the history.
#: Completed events, nearly all of a history, are found by a newest-first walk of (user_id, id).
LISTED_STATUSES = ("scheduled", "queued", "processing", "retrying", "failed")
# Equalities joined by OR, not an IN list: SQLite proves that a query's ``status = 'failed'``
# implies an OR of which it is one arm, never that it implies an IN list (migration 0008).
LISTED = " OR ".join(f"status = '{s}'" for s in LISTED_STATUSES)
#: The predicate of ix_events_finished: the events retention may delete (migration 0006).
FINISHED = "status IN ('completed', 'failed')"

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", _Id, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # Tokens carry the generation they were issued under; bumping it ends all of them at once
    # (sign out everywhere, disable, delete).
    sa.Column("token_generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("disabled_at", sa.BigInteger, nullable=True),
    # A deleted account stays as a tombstone (email freed, no password): events accepted for it
    # while the deletion spread still have a parent row, so no group commit ever fails for them.
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    # Every API process polls the rows changed since it last looked (auth/accounts.py).
    sa.Column("updated_at", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_users_updated_at", "updated_at"),
)

# Signed-out sessions until their token would have expired anyway; every API process polls
# the ones revoked since it last looked.
revoked_tokens = sa.Table(
    "revoked_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("user_id", _Id, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=False),
    sa.Index("ix_revoked_tokens_revoked_at", "revoked_at"),
    sa.Index("ix_revoked_tokens_expires_at", "expires_at"),
)

# API keys: only the SHA-256 of each key is kept (docs/api-keys.md). Every API process polls
# the keys revoked since it last looked (auth/keys.py), by ``revoked_at``.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", _Id, primary_key=True),
    sa.Column("user_id", _Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Index("uq_api_keys_hash", "hash", unique=True),
    sa.Index("ix_api_keys_user_id_id", "user_id", "id"),
    sa.Index("ix_api_keys_revoked_at", "revoked_at"),
)

events = sa.Table(
    "events",
    metadata,
    # UUIDv7: time-ordered, so "newest first" is "highest id first" and ids make stable cursors.
    sa.Column("id", _Id, primary_key=True),
    # A declared foreign key on SQLite only; on PostgreSQL its row-by-row locking checks cost a
    # fifth of ingest throughput, and the reference holds by construction (migration 0003).
    sa.Column("user_id", _Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    # The exact compact JSON text that was accepted; decoded only when read back.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # The value of ``attempts`` when the event was last replayed: a replay gets a fresh budget of
    # EVENTFLOW_MAX_ATTEMPTS while the attempt numbers in the history keep counting up.
    sa.Column("attempt_base", sa.Integer, nullable=False, server_default="0"),
    sa.Column("available_at", sa.BigInteger, nullable=False),
    sa.Column("lease_until", sa.BigInteger, nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    # When a "ready" hint was last handed to the broker; the dispatcher re-publishes rows whose
    # hint is older than EVENTFLOW_REDISPATCH_AFTER_MS (a lost message, a flushed Redis).
    sa.Column("dispatched_at", sa.BigInteger, nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=True),
    sa.Column("completed_at", sa.BigInteger, nullable=True),
    # Who sent it: NULL for a user's token, else compact JSON naming the API key (and the
    # sending library), as ``auth.principal.event_source`` writes it (migration 0009).
    sa.Column("source", sa.Text, nullable=True),
    sa.Index("ix_events_user_id_id", "user_id", "id"),
    sa.Index("ix_events_user_id_type_id", "user_id", "type", "id"),
    # Every claim and outcome writes a new row version into every index whose predicate it
    # meets (the status changes, so no update is HOT); the indexes behind rare lookups skip
    # the rows that never need them (migration 0002). This one skips completed rows, nearly all
    # of a history; listings of completed events walk (user_id, id) (migration 0008).
    sa.Index(
        "ix_events_user_status",
        "user_id",
        "status",
        "id",
        postgresql_where=sa.text(LISTED),
        sqlite_where=sa.text(LISTED),
    ),
    sa.Index(
        "ix_events_user_id_completed_at",
        "user_id",
        "completed_at",
        postgresql_where=sa.text("completed_at IS NOT NULL"),
        sqlite_where=sa.text("completed_at IS NOT NULL"),
    ),
    sa.Index(
        "uq_events_user_id_idempotency_key",
        "user_id",
        "idempotency_key",
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    # Partial indexes keep the claimer's scans proportional to the work waiting, not to the
    # size of the history, and the dispatcher's to the work it finds (migration 0010).
    *(
        sa.Index(name, "available_at", postgresql_where=sa.text(c), sqlite_where=sa.text(c))
        for name, c in (
            ("ix_events_ready", READY),
            ("ix_events_scheduled", SCHEDULED),
            ("ix_events_unhinted", UNHINTED),
        )
    ),
    sa.Index(
        "ix_events_lease",
        "lease_until",
        postgresql_where=sa.text(PROCESSING),
        sqlite_where=sa.text(PROCESSING),
    ),
    # Retention's purge walks the oldest finished rows of one status (migration 0006).
    sa.Index(
        "ix_events_finished",
        "status",
        "completed_at",
        postgresql_where=sa.text(FINISHED),
        sqlite_where=sa.text(FINISHED),
    ),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", _BigSerial, primary_key=True, autoincrement=True),
    # Declared on SQLite only, like events.user_id (migration 0003).
    sa.Column("event_id", _Id, sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("worker", sa.String(64), nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger, nullable=False),
    sa.Index("ix_attempts_event_id_number", "event_id", "number"),
)

# Each user's events by status, throughput per second and latency per minute, kept exact by
# triggers on events (migration 0007, docs/architecture.md "Tallies"). PostgreSQL's triggers
# append to event_tally_changes, which the dispatcher folds in; a reader sums both.
event_tallies = sa.Table(
    "event_tallies",
    metadata,
    sa.Column("user_id", _Id, primary_key=True),
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("at", sa.BigInteger, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Index("ix_event_tallies_at", "at"),
)

event_tally_changes = sa.Table(
    "event_tally_changes",
    metadata,
    sa.Column("id", _BigSerial, primary_key=True, autoincrement=True),
    sa.Column("user_id", _Id, nullable=False),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Index("ix_event_tally_changes_user_id_name_at", "user_id", "name", "at"),
)

# Redeemed stream tickets when there is no Redis: the primary key makes a ticket's second
# redemption fail in any process. Rows are deleted lazily once expired (migration 0005).
spent_tickets = sa.Table(
    "spent_tickets",
    metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
)


def status_is(value: str) -> sa.ColumnElement[bool]:
    """``status = 'value'``, the value written into the SQL so that partial indexes serve it.

    SQLite, and PostgreSQL in a generic plan, never use a partial index for a comparison with a
    bound parameter: only a constant proves the index's predicate.
    """
    return events.c.status == sa.literal(value, literal_execute=True)
