"""API JSON pages and Autotask's generic XML export: nested documents flattened to lines."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as DefusedET
import polars as pl
from defusedxml import DefusedXmlException

from reconcile.errors import InputError
from reconcile.load.base import EXCLUDE, PROBLEM, ROW, SKIP, RawFrame
from reconcile.load.tabular import GROUP_REASON, INACTIVE_REASON, TEMPLATE_REASON
from reconcile.model import RAW_FIELDS

Record = dict[str, Any]

CURRENCY_SYMBOLS = {"£": "GBP", "€": "EUR", "$": "USD", "US$": "USD", "A$": "AUD", "C$": "CAD"}


def read_json(path: Path) -> Any:
    """Numbers keep their exact text: money never passes through a float."""
    try:
        with path.open(encoding="utf-8-sig") as fh:
            return json.load(fh, parse_float=str, parse_int=str)
    except json.JSONDecodeError as exc:
        raise InputError(
            str(path),
            f"the JSON is not well formed at line {exc.lineno}, column {exc.colno} ({exc.msg})",
            expected="a complete JSON document as the API returned it",
            hint="The file may have been cut off; save the API response again.",
        ) from None
    except UnicodeDecodeError:
        raise InputError(
            str(path), "the file is not UTF-8 JSON", expected="an API response saved as JSON"
        ) from None


def json_kind(doc: Any) -> str:
    """Name the platform entity a JSON document holds, from its envelope and field names."""
    if isinstance(doc, dict) and "pageDetails" in doc and isinstance(doc.get("items"), list):
        first = doc["items"][0] if doc["items"] else {}
        for kind, marker in (
            ("autotask:billingitems", "extendedPrice"),
            ("autotask:invoices", "invoiceNumber"),
            ("autotask:companies", "companyName"),
            ("autotask:contracts", "contractName"),
        ):
            if marker in first:
                return kind
        return "autotask:empty" if not doc["items"] else "autotask:other"
    if isinstance(doc, dict):
        for key in ("invoices", "clients", "contracts", "items"):
            if isinstance(doc.get(key), list) and ("record_count" in doc or key == "invoices"):
                return f"halopsa:{key}"
        if isinstance(doc.get("lines"), list):
            return "halopsa:invoice"
    if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "lines" in doc[0]:
        return "halopsa:invoicelist"
    return "unknown"


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = {ROW: pl.Int64, **dict.fromkeys(RAW_FIELDS, pl.String), EXCLUDE: pl.String}
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return frame.with_columns(
        pl.lit(None, pl.String).alias(PROBLEM), pl.lit(None, pl.String).alias(SKIP)
    )


def _index(records: Iterable[Record], key: str = "id") -> dict[str, Record]:
    return {str(r.get(key)): r for r in records if r.get(key) is not None}


def _invoice_totals(rows: list[tuple[str | None, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"invoice_number": pl.String, "total": pl.String, "tax": pl.String},
        orient="row",
    )


def autotask_bundle(file: str, docs: dict[str, list[Record]], files: tuple[Path, ...]) -> RawFrame:
    """BillingItems pages, with Invoices, Companies and Contracts pages resolving names."""
    invoices = _index(docs.get("autotask:invoices", []))
    companies = _index(docs.get("autotask:companies", []))
    contracts = _index(docs.get("autotask:contracts", []))
    rows = []
    for number, item in enumerate(docs.get("autotask:billingitems", []), start=1):
        invoice_id = _text(item.get("invoiceID"))
        invoice = invoices.get(invoice_id or "", {})
        contract = contracts.get(_text(item.get("contractID")) or "", {})
        exclude = None
        if invoice_id in (None, "0"):
            exclude = "Autotask billing item posted but not on an invoice (invoiceID 0)"
        elif _text(invoice.get("isVoided")) == "true":
            exclude = "Autotask billing item on a voided invoice"
        rows.append(
            {
                ROW: number,
                "line_ref": _text(item.get("id")),
                "invoice_number": _text(invoice.get("invoiceNumber")) or invoice_id,
                "invoice_date": _date_part(invoice.get("invoiceDateTime")),
                "client_id": _text(item.get("companyID")),
                "client_name": _text(
                    companies.get(_text(item.get("companyID")) or "", {}).get("companyName")
                ),
                "contract_id": _text(item.get("contractID")),
                "contract_name": _text(contract.get("contractName")),
                "contract_type": _text(contract.get("contractType")),
                "item_code": _text(item.get("serviceID"))
                or _text(item.get("serviceBundleID"))
                or _text(item.get("billingCodeID")),
                "item_name": _text(item.get("itemName")),
                "description": _text(item.get("description")),
                "quantity": _text(item.get("quantity")),
                "unit_price": _text(item.get("rate")),
                "net_amount": _text(item.get("extendedPrice")),
                "tax_amount": _text(item.get("taxDollars")),
                EXCLUDE: exclude,
            }
        )
    totals = [
        (
            _text(inv.get("invoiceNumber")),
            _text(inv.get("invoiceTotal")),
            _text(inv.get("totalTaxValue")),
        )
        for inv in invoices.values()
    ]
    return RawFrame(
        file=file,
        platform="autotask",
        shape="autotask-api",
        frame=_frame(rows).lazy(),
        columns=_api_columns(AUTOTASK_API_COLUMNS),
        files=files,
        dates_iso=True,
        invoice_totals=_invoice_totals(totals),
    )


AUTOTASK_API_COLUMNS = {
    "line_ref": "id",
    "client_id": "companyID",
    "contract_id": "contractID",
    "item_code": "serviceID",
    "item_name": "itemName",
    "description": "description",
    "quantity": "quantity",
    "unit_price": "rate",
    "net_amount": "extendedPrice",
    "tax_amount": "taxDollars",
    "invoice_date": "Invoices.invoiceDateTime",
    "period_start": "itemName [period start]",
    "period_end": "itemName [period end]",
}

HALOPSA_API_COLUMNS = {
    "line_ref": "lines.id",
    "invoice_date": "invoice_date",
    "client_id": "client_id",
    "item_code": "lines._itemid",
    "description": "lines.item_shortdescription",
    "quantity": "lines.qty_order",
    "unit_price": "lines.unit_price",
    "net_amount": "lines.net_amount",
    "tax_amount": "lines.tax_amount",
    "period_start": "lines.startdate",
    "period_end": "lines.enddate",
    "currency": "currency",
}


def _api_columns(columns: dict[str, str]) -> dict[str, str]:
    return {f: columns.get(f, f) for f in RAW_FIELDS}


def _date_part(value: Any) -> str | None:
    """Autotask writes date-only values as midnight UTC or with a local offset: keep the date."""
    text = _text(value)
    return text[:10] if text else None


def _halo_id(value: Any) -> str | None:
    """Halo writes -1 or 0 for 'none' in id fields."""
    text = _text(value)
    return None if text in (None, "-1", "0") else text


def halopsa_invoices(file: str, docs: dict[str, list[Record]], files: tuple[Path, ...]) -> RawFrame:
    """Invoice lists or single invoices with their lines; client/contract/item pages add ids."""
    clients = _index(docs.get("halopsa:clients", []))
    contracts = _index(docs.get("halopsa:contracts", []))
    items = _index(docs.get("halopsa:items", []))
    rows: list[dict[str, Any]] = []
    totals = []
    for invoice in docs.get("halopsa:invoices", []):
        totals.append(
            (
                _text(invoice.get("invoicenumber")),
                _text(invoice.get("total")),
                _text(invoice.get("tax_total")),
            )
        )
        rows.extend(_halo_lines(invoice, clients, contracts, items, start=len(rows) + 1))
    return RawFrame(
        file=file,
        platform="halopsa",
        shape="halopsa-api",
        frame=_frame(rows).lazy(),
        columns=_api_columns(HALOPSA_API_COLUMNS),
        files=files,
        dates_iso=True,
        dialect={"datetimes": "naive UTC"},
        invoice_totals=_invoice_totals(totals),
    )


def _halo_lines(
    invoice: Record,
    clients: dict[str, Record],
    contracts: dict[str, Record],
    items: dict[str, Record],
    start: int,
) -> Iterator[dict[str, Any]]:
    client_id = _halo_id(invoice.get("client_id"))
    client = clients.get(client_id or "", {})
    symbol = _text(invoice.get("currency"))
    currency = CURRENCY_SYMBOLS.get(symbol or "", symbol) or _text(client.get("currencyisocode"))
    invoice_id = _text(invoice.get("id")) or ""
    invoice_exclude = None
    if invoice_id.startswith("-") or _text(invoice.get("is_recurring_invoice")) == "true":
        invoice_exclude = TEMPLATE_REASON
    elif _text(invoice.get("voided")) == "true":
        invoice_exclude = "HaloPSA invoice is voided"
    for offset, line in enumerate(invoice.get("lines") or []):
        contract_id = _halo_id(line.get("contract_id")) or _halo_id(invoice.get("contract_id"))
        contract = contracts.get(contract_id or "", {})
        item = items.get(_halo_id(line.get("_itemid")) or "", {})
        exclude = invoice_exclude
        if exclude is None and _text(line.get("isgroupdesc")) == "true":
            exclude = GROUP_REASON
        elif exclude is None and _text(line.get("isinactive")) == "true":
            exclude = INACTIVE_REASON
        yield {
            ROW: start + offset,
            "line_ref": _text(line.get("id")),
            "invoice_number": _text(invoice.get("invoicenumber")),
            "invoice_date": _text(invoice.get("invoice_date")),
            "client_id": client_id,
            "client_name": _text(invoice.get("client_name")) or _text(client.get("name")),
            "contract_id": contract_id,
            "contract_name": _text(contract.get("ref")) or _text(invoice.get("contract_ref")),
            "contract_type": _text(contract.get("contract_type")),
            "item_code": _halo_id(line.get("_itemid")),
            "item_name": _text(item.get("name")) or _text(line.get("item_code")),
            "description": _text(line.get("item_shortdescription")),
            "quantity": _text(line.get("qty_order")),
            "unit_price": _text(line.get("unit_price")),
            "net_amount": _text(line.get("net_amount")),
            "tax_amount": _text(line.get("tax_amount")),
            "currency": currency,
            "period_start": _text(line.get("startdate")),
            "period_end": _text(line.get("enddate")),
            "xref_client_id": _halo_id(client.get("autotaskid")),
            "xref_contract_id": _halo_id(contract.get("autotaskid")),
            "xref_item_id": _halo_id(item.get("autotaskserviceid"))
            or _halo_id(item.get("autotaskproductid")),
            EXCLUDE: exclude,
        }


XML_NS = "{http://tempuri.org/invoice_batch_generic.xsd}"


def autotask_xml(path: Path) -> RawFrame:
    """Autotask's generic XML invoice export (invoice_batch_generic)."""
    try:
        root = DefusedET.fromstring(path.read_bytes())
    except DefusedXmlException:
        raise InputError(
            str(path),
            "the XML declares entities (a DOCTYPE with <!ENTITY ...>), which Autotask's export "
            "never does; it was refused unread, as entities can expand without limit",
            expected="Autotask's generic XML invoice export",
            hint="Export the invoices from Autotask again rather than using an edited copy.",
        ) from None
    except ET.ParseError as exc:
        raise InputError(
            str(path),
            f"the XML is not well formed ({exc})",
            expected="Autotask's generic XML invoice export",
            hint="The file may have been cut off or edited by hand; export it again.",
        ) from None
    ns = XML_NS if root.tag.startswith(XML_NS) else ""
    if root.tag != f"{ns}invoice_batch_generic":
        raise InputError(
            str(path),
            "this XML is not an Autotask invoice export",
            expected="root element <invoice_batch_generic>",
            got=f"<{root.tag.removeprefix(ns)}>",
        )

    def get(node: ET.Element, tag: str) -> str | None:
        return _text(node.findtext(f"{ns}{tag}"))

    rows: list[dict[str, Any]] = []
    totals = []
    for account in root.iter(f"{ns}account"):
        for invoice in account.iter(f"{ns}invoice"):
            number = get(invoice, "invoice_number") or get(invoice, "invoice_id")
            totals.append((number, get(invoice, "invoice_total"), get(invoice, "total_tax_value")))
            for item in invoice.iter(f"{ns}invoice_item"):
                ref = (
                    get(item, "item_id")
                    or f"{get(item, 'invoice_id')}.{get(item, 'invoice_item_id')}"
                )
                rows.append(
                    {
                        ROW: len(rows) + 1,
                        "line_ref": ref,
                        "invoice_number": number,
                        "invoice_date": _date_part(get(invoice, "invoice_date")),
                        "client_id": get(account, "account_id"),
                        "client_name": get(account, "cust_name"),
                        "contract_name": get(item, "contract_name"),
                        "contract_type": get(item, "contract_type"),
                        "item_code": get(item, "service_or_bundle_id")
                        or get(item, "allocation_code_id"),
                        "item_name": get(item, "item_name"),
                        "description": get(item, "service_invoice_description")
                        or get(item, "time_entry_summary_notes"),
                        "quantity": get(item, "quantity"),
                        "unit_price": get(item, "hourly_billing_rate"),
                        "net_amount": get(item, "extended_price"),
                        "tax_amount": get(item, "total_tax_amount"),
                        "period_start": _date_part(get(item, "service_period_start_date")),
                        "period_end": _date_part(get(item, "service_period_end_date")),
                        EXCLUDE: None,
                    }
                )
    if not rows:
        raise InputError(
            str(path), "the XML export holds no invoice items", expected="<invoice_item> elements"
        )
    columns = {f: f for f in RAW_FIELDS} | {
        "line_ref": "item_id",
        "client_id": "account_id",
        "client_name": "cust_name",
        "item_code": "service_or_bundle_id",
        "description": "service_invoice_description",
        "unit_price": "hourly_billing_rate",
        "net_amount": "extended_price",
        "tax_amount": "total_tax_amount",
        "period_start": "service_period_start_date",
        "period_end": "service_period_end_date",
    }
    return RawFrame(
        file=str(path),
        platform="autotask",
        shape="autotask-xml",
        frame=_frame(rows).lazy(),
        columns=columns,
        files=(path,),
        dates_iso=True,
        invoice_totals=_invoice_totals(totals),
    )
