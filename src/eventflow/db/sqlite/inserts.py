"""Multi-row INSERTs for SQLite: one statement per few dozen rows, not one step per row.

sqlite3 lets go of the GIL around every step of a statement and must take it back from the
event loop's thread after it; under load each of those waits up to the interpreter's switch
interval (5 ms). An ``executemany`` of a group commit's rows is a step per row. Measured with
``make bench`` (embedded ingest-batch, docs/performance.md): 12,000 events/s and a 175 ms
insert became 17,000 to 21,000 events/s and an 82 to 99 ms one.

The statement is written here rather than compiled by SQLAlchemy, for which a multi-row VALUES
costs more to compile than the insert takes. The columns' own bind processors convert the
values (ids are stored as 32 hex digits), as SQLAlchemy would.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

# The parameter limit of SQLite builds before 3.32; later ones allow 32,766.
_MAX_PARAMETERS = 999


async def insert_rows(
    conn: AsyncConnection, table: sa.Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows``, each its values in ``columns`` order, in as few statements as fit."""
    convert = _converters(conn.dialect, table, columns)
    per_statement = _MAX_PARAMETERS // len(columns)
    for at in range(0, len(rows), per_statement):
        chunk = rows[at : at + per_statement]
        values = tuple(
            value if to_db is None else to_db(value)
            for row in chunk
            for value, to_db in zip(row, convert, strict=True)
        )
        await conn.exec_driver_sql(_statement(table.name, columns, len(chunk)), values)


@functools.cache
def _statement(table: str, columns: tuple[str, ...], rows: int) -> str:
    one = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * rows)


@functools.cache
def _converters(
    dialect: Dialect, table: sa.Table, columns: tuple[str, ...]
) -> list[Callable[[Any], Any] | None]:
    return [table.c[name].type.bind_processor(dialect) for name in columns]
