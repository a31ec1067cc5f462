"""Quarantine reasons, byte for byte as quarantine.csv holds them: a cell quoted as Python's
repr does (validate.python_repr, a column at a time); the canonical schema's reasons from the
suspect lines alone (validate._canonical_suspects) as from validating every line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pandera.polars as pa
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.contracts import CanonicalLine
from reconcile.model import CANONICAL_SCHEMA
from reconcile.validate import (
    CANONICAL_REASONS,
    NO_CURRENCY,
    REASONS_SCHEMA,
    _canonical_failures,
    python_repr,
)

CELLS = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(list("ab1 .,$()-'\"\\\t\n\x7fé€\u200b\u00a0")), max_size=8),
    st.text(max_size=8),
)


@given(st.lists(CELLS, max_size=20))
def test_python_repr_is_repr(cells: list[str | None]) -> None:
    assert python_repr(pl.Series("cell", cells, dtype=pl.String)).to_list() == [
        repr(c) for c in cells
    ]


def _validated_whole(canonical: pl.DataFrame) -> pl.DataFrame:
    """The reasons as pandera gives them validating every line (the reference): row, reason."""
    frame = canonical.with_columns(load_id=pl.lit("pending"), file_name=pl.lit("pending"))
    try:
        CanonicalLine.validate(frame.select(list(CANONICAL_SCHEMA)), lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases.filter(
            pl.col("index").is_not_null() & (pl.col("check") != "not_nullable")
        )
        rows = canonical["row_number"]
        reasons = [
            (
                rows[c["index"]],
                CANONICAL_REASONS.get(c["check"], f"{c['column'] or 'line'}: failed {c['check']}"),
            )
            for c in cases.iter_rows(named=True)
        ]
        return pl.DataFrame(reasons, schema=REASONS_SCHEMA, orient="row")
    return pl.DataFrame(schema=REASONS_SCHEMA)


DAYS = [None, dt.date(2026, 11, 1), dt.date(2026, 11, 30), dt.date(2026, 10, 31)]


def _value(good: object, *others: object) -> st.SearchStrategy[Any]:
    """The good value half the time, else one of the others."""
    return st.one_of(st.just(good), st.sampled_from(others))


LINE = st.fixed_dictionaries(
    {
        "cycle": _value("2026-11", "2026-13", "26-11", "２０２６-11", None),
        "source": _value("autotask", "halopsa", "psa", None),
        "row_number": _value(1, 2, 7, 0, -1, None),
        "line_ref": _value("r1", None),
        "client_id": _value("c1", None),
        "client_name": _value("Acme", None),
        "net_amount": _value(Decimal("1.00"), None),
        "currency": _value("GBP", "EUR", "gbp", "GBPX", "ＧＢＰ", "", None),
        "period_start": st.sampled_from(DAYS),
        "period_end": st.sampled_from(DAYS),
    }
)


@settings(max_examples=200)
@given(st.lists(LINE, max_size=12))
def test_canonical_failures_validate_the_suspects_as_the_whole(lines: list[dict[str, Any]]) -> None:
    schema = {n: t for n, t in CANONICAL_SCHEMA.items() if n not in ("load_id", "file_name")}
    canonical = pl.DataFrame(lines, schema=schema)
    expected = _validated_whole(canonical)
    found = _canonical_failures(canonical, pl.Series([False] * canonical.height, dtype=pl.Boolean))
    assert found.filter(pl.col("reason") != NO_CURRENCY).equals(expected)
