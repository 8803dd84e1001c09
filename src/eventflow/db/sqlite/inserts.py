"""Multi-row statements for SQLite: one statement per few dozen rows, not one step per row.

sqlite3 lets go of the GIL around every step of a statement and must take it back from the
event loop's thread after it; under load each of those waits up to the interpreter's switch
interval (5 ms). An ``executemany`` of a group commit's rows is a step per row. Measured with
``make bench`` (embedded ingest-batch, docs/performance.md): 12,000 events/s and a 175 ms
insert became 17,000 to 21,000 events/s and an 82 to 99 ms one.

The statements are written here rather than compiled by SQLAlchemy, for which a multi-row
VALUES costs more to compile than the insert takes. The columns' own bind processors convert
the values (ids are stored as 32 hex digits), as SQLAlchemy would.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

# The parameter limit of SQLite builds before 3.32; later ones allow 32,766.
_MAX_PARAMETERS = 999


def rows_per_statement(width: int, others: int = 0) -> int:
    """How many rows of ``width`` values fit in one statement beside ``others`` parameters."""
    return (_MAX_PARAMETERS - others) // width


@functools.cache
def value_rows(width: int, rows: int) -> str:
    """``(?, ?), (?, ?)``: the placeholders of ``rows`` rows of ``width`` values."""
    return ", ".join(["(" + ", ".join("?" * width) + ")"] * rows)


def flat_values(
    dialect: Dialect, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[Any]:
    """The values of ``rows`` (each in ``columns`` order) one after another, each converted by
    its column's bind processor."""
    convert = [table.c[name].type.bind_processor(dialect) for name in columns]
    return [
        value if to_db is None else to_db(value)
        for row in rows
        for value, to_db in zip(row, convert, strict=True)
    ]


#: A statement's text and its parameters, for ``run_statements``.
Statement = tuple[str, Sequence[Any]]


def insert_statements(
    dialect: Dialect, table: sa.Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> list[Statement]:
    """The inserts of ``rows``, each its values in ``columns`` order, in as few statements as
    fit."""
    into = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
    step = rows_per_statement(len(columns))
    return [
        (
            into + value_rows(len(columns), len(rows[at : at + step])),
            flat_values(dialect, table, columns, rows[at : at + step]),
        )
        for at in range(0, len(rows), step)
    ]


async def insert_rows(
    conn: AsyncConnection, table: sa.Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """``insert_statements`` run in ``conn``'s transaction."""
    for sql, values in insert_statements(conn.dialect, table, columns, rows):
        await conn.exec_driver_sql(sql, tuple(values))


def run_statements(db: sqlite3.Connection, statements: Sequence[Statement]) -> None:
    """Run ``statements`` one after another (in ``SqliteDatabase.transact``)."""
    for sql, values in statements:
        db.execute(sql, values)
