"""Build a cycle from a few inline lines and reconcile it: the harness for rule cases."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import polars as pl

from reconcile.config import Config
from reconcile.crosswalk import Mapping
from reconcile.match import match_cycle
from reconcile.model import CANONICAL_SCHEMA
from reconcile.rules import discover, run_rules
from reconcile.store import Workspace
from reconcile.tables import DISCREPANCIES

CYCLE = "2026-11"
RULES = discover()


def _period(value: Any) -> tuple[dt.date | None, dt.date | None]:
    """'2026-11' is the whole month; 'YYYY-MM-DD..YYYY-MM-DD' a range; None no period."""
    if value is None:
        return None, None
    text = str(value)
    if ".." in text:
        start, end = text.split("..")
        return dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    year, month = map(int, text.split("-"))
    first = dt.date(year, month, 1)
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)


def _money(value: Any, places: str) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal(places))


def canonical(side: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    records = []
    for number, row in enumerate(rows, start=1):
        start, end = _period(row.get("period", "2026-11"))
        qty = _money(row.get("qty", 1), "0.0001")
        price = _money(row.get("price"), "0.0001")
        net = row.get("net")
        if net is None and qty is not None and price is not None:
            net = qty * price
        records.append(
            {
                "cycle": CYCLE,
                "source": side,
                "load_id": f"case-{side}",
                "file_name": "case",
                "row_number": number,
                "line_ref": str(row["ref"]),
                "invoice_number": row.get("invoice", "INV-1"),
                "invoice_date": dt.date(2026, 11, 1),
                "client_id": row.get("client_id"),
                "client_name": row.get("client", "Acme Ltd"),
                "contract_id": None,
                "contract_name": row.get("contract"),
                "contract_type": row.get("contract_type"),
                "item_code": row.get("item_code"),
                "item_name": row.get("item", "Managed Workstation"),
                "description": row.get("description"),
                "quantity": qty,
                "unit_price": price,
                "net_amount": _money(net, "0.01"),
                "tax_amount": _money(row.get("tax"), "0.01"),
                "currency": row.get("currency", "GBP"),
                "period_start": start,
                "period_end": end,
                "xref_client_id": row.get("xref_client_id"),
                "xref_contract_id": None,
                "xref_item_id": row.get("xref_item_id"),
            }
        )
    return pl.DataFrame(records, schema=CANONICAL_SCHEMA)


def reconcile_case(case: dict[str, Any], config: Config | None = None) -> pl.DataFrame:
    """All findings for the case, as the real run produces them (tables.DISCREPANCIES' columns,
    in the run's order)."""
    with Workspace(":memory:") as ws:
        for side in ("autotask", "halopsa"):
            frame = canonical(side, case.get(side) or [])
            ws.con.register("_case", frame)
            ws.con.execute(f"INSERT INTO lines SELECT {', '.join(CANONICAL_SCHEMA)} FROM _case")
            ws.con.unregister("_case")
        mappings = [
            Mapping(m["kind"], m["autotask"], m["halopsa"], "case", i)
            for i, m in enumerate(case.get("mappings", []), start=1)
        ]
        cfg = config or Config(**case.get("config", {}))
        match_cycle(ws.con, CYCLE, mappings, cfg)
        run_rules(ws.con, cfg, RULES)
        found: pl.DataFrame = ws.con.sql(
            f"SELECT * FROM {DISCREPANCIES.name} ORDER BY position"
        ).pl()
        return found
