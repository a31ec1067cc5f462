"""The canonical invoice line both platforms normalise into, and its pandera schema."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import pandera.polars as pa
import polars as pl

PLATFORMS = ("autotask", "halopsa")

QTY = pl.Decimal(18, 4)
PRICE = pl.Decimal(18, 4)
MONEY = pl.Decimal(18, 2)

# Raw fields a reader maps export columns onto; values stay text until validate parses them.
RAW_FIELDS = (
    "line_ref",
    "invoice_number",
    "invoice_date",
    "client_id",
    "client_name",
    "contract_id",
    "contract_name",
    "contract_type",
    "item_code",
    "item_name",
    "description",
    "quantity",
    "unit_price",
    "net_amount",
    "tax_amount",
    "currency",
    "period_start",
    "period_end",
    "xref_client_id",
    "xref_contract_id",
    "xref_item_id",
)
DATE_FIELDS = ("invoice_date", "period_start", "period_end")
ID_FIELDS = (
    "client_id",
    "contract_id",
    "item_code",
    "xref_client_id",
    "xref_contract_id",
    "xref_item_id",
)
DECIMAL_FIELDS: dict[str, pl.Decimal] = {
    "quantity": QTY,
    "unit_price": PRICE,
    "net_amount": MONEY,
    "tax_amount": MONEY,
}

CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "cycle": pl.String(),
    "source": pl.String(),
    "load_id": pl.String(),
    "file_name": pl.String(),
    "row_number": pl.Int64(),
    "line_ref": pl.String(),
    "invoice_number": pl.String(),
    "invoice_date": pl.Date(),
    "client_id": pl.String(),
    "client_name": pl.String(),
    "contract_id": pl.String(),
    "contract_name": pl.String(),
    "contract_type": pl.String(),
    "item_code": pl.String(),
    "item_name": pl.String(),
    "description": pl.String(),
    "quantity": QTY,
    "unit_price": PRICE,
    "net_amount": MONEY,
    "tax_amount": MONEY,
    "currency": pl.String(),
    "period_start": pl.Date(),
    "period_end": pl.Date(),
    "xref_client_id": pl.String(),
    "xref_contract_id": pl.String(),
    "xref_item_id": pl.String(),
}

# Contract types differ in name between the platforms; both map onto this vocabulary.
CONTRACT_TYPES: dict[str, str] = {
    "1": "time_and_materials",
    "time & materials": "time_and_materials",
    "time and materials": "time_and_materials",
    "t&m": "time_and_materials",
    "3": "fixed_price",
    "fixed price": "fixed_price",
    "4": "block_hours",
    "block hours": "block_hours",
    "6": "retainer",
    "retainer": "retainer",
    "7": "recurring_service",
    "recurring service": "recurring_service",
    "recurring": "recurring_service",
    "managed service agreement": "recurring_service",
    "8": "per_ticket",
    "per ticket": "per_ticket",
    "incident": "per_ticket",
    "9": "umbrella",
    "per device": "per_device",
    "per user": "per_user",
    "prepay": "block_hours",
}


class CanonicalLine(pa.DataFrameModel):
    """One billable invoice line, the same shape whichever platform it came from."""

    cycle: str = pa.Field(str_matches=r"^\d{4}-(0[1-9]|1[0-2])$")
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
    currency: str = pa.Field(str_matches=r"^[A-Z]{3}$")  # a missing one is quarantined
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
