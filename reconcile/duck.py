"""Polars frames in and out of DuckDB a bounded piece at a time: DuckDB's temp tables spill to
disk beyond its memory limit, polars frames do not."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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


def column_chunks(con: duckdb.DuckDBPyConnection, query: str) -> Iterator[pl.Series]:
    """The distinct values of the query's one column (a string), CHUNK_ROWS at a time, in no
    order: kept once in a temp table (which spills) and read a range of its row ids at a time
    (each row has one), so only a chunk is ever a frame. Not numbered by a window: a window
    over every distinct value (3M contracts' names at 10M lines a side) ran out of DuckDB's
    400MB. Not reentrant: the values are the temp table _chunked."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _chunked AS SELECT DISTINCT * FROM ({query}) q(v)")
    try:
        end = con.execute("SELECT coalesce(max(rowid) + 1, 0) FROM _chunked").fetchall()[0][0]
        for start in range(0, int(end), CHUNK_ROWS):
            chunk: pl.DataFrame = con.sql(
                f"SELECT v FROM _chunked WHERE rowid >= {start} AND rowid < {start + CHUNK_ROWS}"
            ).pl()
            yield chunk["v"]
    finally:
        con.execute("DROP TABLE IF EXISTS _chunked")


def char_class(chars: str | list[str]) -> str:
    """A regular-expression class (for DuckDB's regexp functions) of exactly these characters,
    each written as its code point (`\\x{a0}`), so none is read as regex syntax or SQL quoting."""
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


def with_frame(con: duckdb.DuckDBPyConnection, sql: str, frame: pl.DataFrame) -> None:
    """The SQL statement run with the frame registered as _frame (a table into DuckDB), which it
    may read once: an Arrow C stream, so no pyarrow table is built (nor pyarrow imported)."""
    con.register("_frame", frame.__arrow_c_stream__())
    try:
        con.execute(sql)
    finally:
        con.unregister("_frame")


def folded(
    con: duckdb.DuckDBPyConnection,
    query: str,
    table: str,
    fold: Callable[[pl.Expr], pl.Expr],
    sql_fold: str,
    by_fold: str,
) -> str:
    """SQL: the rows of the query (a string column `value` among others) with `folded`, fold of
    the value. A value folds in SQL, by the expression sql_fold of v.value, unless the SQL
    condition by_fold holds of it (sql_fold must give what fold gives where it does not); the
    distinct others by fold, a chunk at a time, into the temp table `table` (value, folded),
    which the SQL joins (and the caller drops)."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (value VARCHAR, folded VARCHAR)")
    for chunk in column_chunks(con, f"SELECT value FROM ({query}) WHERE ({by_fold})"):
        frame = chunk.to_frame("value").with_columns(folded=fold(pl.col("value")))
        with_frame(con, f"INSERT INTO {table} SELECT * FROM _frame", frame)
    return (
        f"SELECT v.*, coalesce(f.folded, {sql_fold}) AS folded "
        f"FROM ({query}) v LEFT JOIN {table} f ON f.value = v.value"
    )
