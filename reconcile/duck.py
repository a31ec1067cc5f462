"""Polars frames in and out of DuckDB a bounded piece at a time: DuckDB's temp tables spill to
disk beyond its memory limit, polars frames do not."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import polars as pl

CHUNK_ROWS = 200_000  # distinct values handed to Python at once (e.g. name_table's frames held)

# fmt_money(x): money in messages as the report writes it (wording.money): rounded to the cent,
# thousands grouped, every digit kept ('1,234,567,890,123,456.05': in whole cents, never through
# a double), '-' only on an amount that is below zero once rounded, '?' for null.
MONEY_MACROS = """
CREATE OR REPLACE TEMP MACRO fmt_cents(c) AS
    CASE WHEN c < 0 THEN '-' ELSE '' END || format('{:,}', abs(c) // 100) || '.'
    || lpad(CAST(abs(c) % 100 AS VARCHAR), 2, '0');
CREATE OR REPLACE TEMP MACRO fmt_money(x) AS
    CASE WHEN x IS NULL THEN '?'
    ELSE fmt_cents(CAST(CAST(x AS DECIMAL(38, 2)) * 100 AS HUGEINT)) END;
"""


def distinct_chunks(con: duckdb.DuckDBPyConnection, query: str) -> Iterator[pl.DataFrame]:
    """The distinct rows of the query (its columns, by name), CHUNK_ROWS at a time, in no order:
    kept once in a temp table (which spills) and read a range of its row ids at a time (each
    row has one), so only a chunk is ever a frame. Not numbered by a window: a window over
    every distinct value (3M contracts' names at 10M lines a side) ran out of DuckDB's 400MB.
    Not reentrant: the rows are the temp table _chunked."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _chunked AS SELECT DISTINCT * FROM ({query})")
    try:
        end = con.execute("SELECT coalesce(max(rowid) + 1, 0) FROM _chunked").fetchall()[0][0]
        for start in range(0, int(end), CHUNK_ROWS):
            rows = f"rowid >= {start} AND rowid < {start + CHUNK_ROWS}"
            yield frame_of(con.sql(f"SELECT * FROM _chunked WHERE {rows}"))
    finally:
        con.execute("DROP TABLE IF EXISTS _chunked")


def frame_of(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """The relation's rows as a polars frame, read through its Arrow C stream: DuckDB's own
    .pl() builds a pyarrow table first, and importing pyarrow cost a 20,000-line run about
    0.15 CPU-s. The same columns and types as .pl() gives (decimals, lists, structs, dates)."""
    return pl.DataFrame(relation)


def with_frame(con: duckdb.DuckDBPyConnection, sql: str, frame: pl.DataFrame) -> None:
    """The SQL statement run with the frame registered as _frame (a table into DuckDB), which it
    may read once: an Arrow C stream, so no pyarrow table is built (nor pyarrow imported)."""
    con.register("_frame", frame.__arrow_c_stream__())
    try:
        con.execute(sql)
    finally:
        con.unregister("_frame")
