"""The canonical invoice line both platforms normalise into: its fields and types (the pandera
schema that checks a line is contracts.CanonicalLine)."""

from __future__ import annotations

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
