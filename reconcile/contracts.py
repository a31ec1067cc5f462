"""The pandera schemas export rows and canonical lines are checked against. Imported only for
a batch with rows that may fail them (validate's suspects): pandera takes about 0.2 s to
import, and most batches have none."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import pandera.polars as pa
import polars as pl

from reconcile.load.base import RawFrame
from reconcile.model import PLATFORMS, RAW_FIELDS
from reconcile.validate import (
    CURRENCY_PATTERN,
    CYCLE_PATTERN,
    EXPECTED,
    REQUIRED_RAW,
    _parsed_where_given,
)

# What validate reads of pandera's failure cases: the column, the check (its name, or the
# error a check states) and the failing row's place in the frame (null: a case of no row).
FAILURE_CASES = pl.Schema({"column": pl.String(), "check": pl.String(), "index": pl.Int32()})


def raw_schema(raw: RawFrame, convention: str) -> pa.DataFrameSchema:
    """The raw source shape's contract: which text each column must hold to be usable."""

    def parsed_where_given(name: str) -> pa.Check:
        return pa.Check(
            lambda data: data.lazyframe.select(_parsed_where_given(data.key)),
            error=EXPECTED[name].format(convention=convention.split(" (")[0]),
            name=f"parses_{name}",
        )

    columns = {
        name: pa.Column(
            pl.String,
            nullable=name not in REQUIRED_RAW,
            checks=[parsed_where_given(name)] if name in EXPECTED else [],
        )
        for name in RAW_FIELDS
    }
    return pa.DataFrameSchema(columns, name=f"{raw.shape}-raw", strict=False)


class CanonicalLine(pa.DataFrameModel):
    """One billable invoice line, the same shape whichever platform it came from."""

    cycle: str = pa.Field(str_matches=CYCLE_PATTERN)
    source: str = pa.Field(isin=list(PLATFORMS))
    load_id: str
    file_name: str
    row_number: int = pa.Field(ge=1)
    line_ref: str
    invoice_number: str = pa.Field(nullable=True)
    invoice_date: dt.date = pa.Field(nullable=True)
    client_id: str = pa.Field(nullable=True)
    client_name: str = pa.Field(nullable=True)
    contract_id: str = pa.Field(nullable=True)
    contract_name: str = pa.Field(nullable=True)
    contract_type: str = pa.Field(nullable=True)
    item_code: str = pa.Field(nullable=True)
    item_name: str = pa.Field(nullable=True)
    description: str = pa.Field(nullable=True)
    quantity: Annotated[pl.Decimal, 18, 4] = pa.Field(nullable=True)
    unit_price: Annotated[pl.Decimal, 18, 4] = pa.Field(nullable=True)
    net_amount: Annotated[pl.Decimal, 18, 2]
    tax_amount: Annotated[pl.Decimal, 18, 2] = pa.Field(nullable=True)
    currency: str = pa.Field(str_matches=CURRENCY_PATTERN)  # a missing one is quarantined
    period_start: dt.date = pa.Field(nullable=True)
    period_end: dt.date = pa.Field(nullable=True)
    xref_client_id: str = pa.Field(nullable=True)
    xref_contract_id: str = pa.Field(nullable=True)
    xref_item_id: str = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True

    @pa.dataframe_check
    @classmethod
    def has_client(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A line with neither client id nor name cannot be matched to anyone."""
        return data.lazyframe.select(
            pl.col("client_id").is_not_null() | pl.col("client_name").is_not_null()
        )

    @pa.dataframe_check
    @classmethod
    def period_in_order(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A service period that ends before it starts is a broken export, not a charge."""
        return data.lazyframe.select(
            pl.col("period_end").is_null()
            | pl.col("period_start").is_null()
            | (pl.col("period_start") <= pl.col("period_end"))
        )


def raw_failure_cases(raw: RawFrame, suspects: pl.DataFrame, convention: str) -> pl.DataFrame:
    """FAILURE_CASES of the rows against raw_schema, in pandera's order."""
    return _failure_cases(raw_schema(raw, convention), suspects)


def canonical_failure_cases(lines: pl.DataFrame) -> pl.DataFrame:
    """FAILURE_CASES of the lines (model.CANONICAL_SCHEMA's columns) against CanonicalLine, in
    pandera's order."""
    return _failure_cases(CanonicalLine.to_schema(), lines)


def _failure_cases(schema: pa.DataFrameSchema, frame: pl.DataFrame) -> pl.DataFrame:
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases: pl.DataFrame = err.failure_cases
        return cases.select(pl.col(name).cast(dtype) for name, dtype in FAILURE_CASES.items())
    return pl.DataFrame(schema=FAILURE_CASES)
