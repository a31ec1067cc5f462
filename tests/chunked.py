"""Discrepancy tables for the chunked writers' tests: frames of run.OUTPUT_SCHEMA (every
column's type) with hostile text (formulas, a TAB before `=`, quotes, newlines, non-BMP
characters, empty text), nulls in every column, money to 2 places, quantities and prices to 4,
dates; and cut into consecutive chunks at random boundaries, empty chunks included, as the run
reads the table back from DuckDB."""

from __future__ import annotations

import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

import polars as pl
from hypothesis import strategies as st

from reconcile.run import OUTPUT_SCHEMA

TEXTS = st.one_of(
    st.none(),
    st.text(max_size=12),  # any code point but surrogates: controls, quotes, non-BMP
    st.sampled_from(
        ["", "=1+1", "\t=x", "-12.50", "+1", "@cmd", '"quoted", comma', "two\nlines", "\r\n",
         "\\", "é\U0001f600\u2028", "'=already"]
    ),
)  # fmt: skip
CURRENCIES = st.sampled_from([None, "GBP", "EUR", "USD", ""])
DATES = st.none() | st.dates(datetime.date(1990, 1, 1), datetime.date(2100, 12, 31))


def _decimals(places: int) -> st.SearchStrategy[Decimal | None]:
    # Up to 12 digits before the point: within Decimal(18, ·) and exact as an XLSX double.
    bound = 10**12 - 1
    return st.none() | st.decimals(-bound, bound, places=places, allow_nan=False)


ROWS = st.tuples(TEXTS, TEXTS, CURRENCIES, DATES, _decimals(2), _decimals(4))


def table(rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """OUTPUT_SCHEMA's columns from rows of (text, text, currency, date, money, places): `id`
    the row's number (D0000, D0001, …: every row has a cell, and the order can be read back),
    other text columns the two texts in turn (`currency` the currency), dates the date,
    decimals the money or the places by their scale."""
    fields = [list(c) for c in zip(*rows, strict=True)] or [[] for _ in range(6)]
    text, other, currency, day, money, places = fields
    columns: dict[str, list[Any]] = {}
    for n, (name, dtype) in enumerate(OUTPUT_SCHEMA.items()):
        if name == "id":
            columns[name] = [f"D{row:04d}" for row in range(len(rows))]
        elif name == "currency":
            columns[name] = currency
        elif isinstance(dtype, pl.Decimal):
            columns[name] = money if dtype.scale == 2 else places
        elif dtype == pl.Date:
            columns[name] = day
        else:
            columns[name] = other if n % 2 else text
    return pl.DataFrame(columns, schema=OUTPUT_SCHEMA)


@st.composite
def chunked(draw: st.DrawFn, max_rows: int = 12) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """(a table, the same table as consecutive chunks cut at random rows, empty ones too; at
    least one chunk)."""
    frame = table(draw(st.lists(ROWS, max_size=max_rows)))
    cuts = sorted(draw(st.lists(st.integers(0, frame.height), max_size=5)))
    bounds = [0, *cuts, frame.height]
    return frame, [frame.slice(a, b - a) for a, b in pairwise(bounds)]
