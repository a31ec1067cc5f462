"""Money read from what the export says it is (fixtures/breaks/ findings, over their variants):
what reached the invoice, in the currency the export names."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import xlsxwriter
from hypothesis import example, given
from hypothesis import strategies as st

from conftest import FIXTURES
from reconcile.duck import MONEY_MACROS
from reconcile.load import read_inputs
from reconcile.load.base import RawFrame
from reconcile.wording import money

# Spellings of a zero as exports write it (API JSON numbers, CSV cells).
ZERO_SPELLINGS = ["0", "0.00", "0.0000", "-0.00", "£0.00", "0,00", "(0.00)", "0.00 GBP"]
CARRIED_HEADERS = ["Total Amount", "totalAmount", "Billed Amount", "TOTAL_AMOUNT"]
PRICES = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=4)


def read(folder: Path, files: dict[str, str]) -> tuple[RawFrame, pl.DataFrame]:
    """What the loader reads from `files` (name -> text) written into `folder`: the RawFrame
    and its rows."""
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    (raw,) = read_inputs([folder], "autotask")
    return raw, raw.collect(raw.frame)


def api_page(items: list[dict[str, Any]]) -> str:
    page = {"items": items, "pageDetails": {"count": len(items), "requestCount": 500,
            "prevPageUrl": None, "nextPageUrl": None}}  # fmt: skip
    return json.dumps(page)


INVOICES = api_page(
    [{"id": 4710, "companyID": 221, "invoiceDateTime": "2026-11-01T00:00:00Z",
      "invoiceNumber": "INV-1", "invoiceTotal": 0, "isVoided": False, "totalTaxValue": 0}]
)  # fmt: skip


def api_item(extended: str, total: str | None) -> str:
    item: dict[str, Any] = {"id": 1, "companyID": 221, "itemName": "ICT Coaching",
                            "extendedPrice": extended, "taxDollars": "0",
                            "invoiceID": 4710}  # fmt: skip
    if total is not None:
        item["totalAmount"] = total
    # Numbers as the API writes them (unquoted), whatever their spelling.
    return api_page([item]).replace(f'"{extended}"', extended).replace(f'"{total}"', str(total))


@given(
    price=PRICES,
    total=st.sampled_from(["0", "0.0", "0.0000", "-0.0", "0E-4", None]),
    non_billable=st.booleans(),
)
def test_api_item_carried_at_zero_is_a_zero_line(
    price: Decimal, total: str | None, non_billable: bool
) -> None:
    """totalAmount 0 (block-hours consumption, a non-billable item): net "0"; totalAmount
    absent: extendedPrice as written (nothing is guessed)."""
    with tempfile.TemporaryDirectory() as folder:
        page = api_item(str(price), total)
        if non_billable:
            page = page.replace('"invoiceID"', '"nonBillable": 1, "invoiceID"')
        raw, frame = read(Path(folder), {"BillingItems.json": page, "Invoices.json": INVOICES})
    assert frame["net_amount"].to_list() == ["0" if total is not None else str(price)]
    assert bool(raw.warnings) is (total is not None)
    if total is not None:
        assert f"extendedPrice {price}" in raw.warnings[0]


@given(
    price=PRICES,
    header=st.sampled_from(CARRIED_HEADERS),
    carried=st.one_of(st.sampled_from(ZERO_SPELLINGS), st.just(""), st.just("12.50")),
)
def test_csv_item_carried_at_zero_is_a_zero_line(price: Decimal, header: str, carried: str) -> None:
    """The export wizard's carried-amount column beside Extended Price: a written zero makes
    the line a zero line; an empty cell or another amount leaves Extended Price as written."""
    text = (
        "Billing Item ID,Invoice Number,Invoice Date,Organization Name,Item Name,"
        f"Extended Price,Total Tax,{header}\n"
        f'1,INV-1,2026-11-01,Acme,Coaching,{price},0,"{carried}"\n'
    )
    with tempfile.TemporaryDirectory() as folder:
        raw, frame = read(Path(folder), {"items.csv": text})
    zero = carried in ZERO_SPELLINGS
    assert frame["net_amount"].to_list() == ["0" if zero else str(price)]
    assert "carried_amount" not in frame.columns
    # Named as the API path names its items (one wording), by the file's own columns.
    assert raw.warnings == (
        (
            f"1 Autotask billing item(s) carried 0.00 to the invoice ({header} 0: prepaid "
            "block-hours consumption or non-billable) are loaded as 0.00 lines, not at their "
            f"Extended Price: 1 (Coaching, Extended Price {price})",
        )
        if zero
        else ()
    )


@given(consumed=st.integers(min_value=0, max_value=8), billed=st.integers(min_value=0, max_value=3))
def test_csv_consumption_warning_counts_every_item_and_names_the_first(
    consumed: int, billed: int
) -> None:
    """Every consumed item is counted, the first five named (by Billing Item ID, else by row);
    billed items are not."""
    rows = [f"{n},INV-1,2026-11-01,Acme,Coaching,386.65,0.00" for n in range(1, consumed + 1)]
    rows += [f",INV-1,2026-11-01,Acme,Support,{n + 1}0.00,{n + 1}0.00" for n in range(billed)]
    header = "Billing Item ID,Invoice Number,Invoice Date,Organization Name,Item Name,"
    text = header + "Extended Price,Billed Amount\n" + "\n".join(rows) + "\n"
    if not rows:
        return
    with tempfile.TemporaryDirectory() as folder:
        raw, _ = read(Path(folder), {"items.csv": text})
    if not consumed:
        assert raw.warnings == ()
        return
    (warning,) = raw.warnings
    assert warning.startswith(f"{consumed} Autotask billing item(s) carried 0.00")
    named = ", ".join(
        f"{n} (Coaching, Extended Price 386.65)" for n in range(1, min(consumed, 5) + 1)
    )
    more = f" and {consumed - 5} more" if consumed > 5 else ""
    assert warning.endswith(f": {named}{more}")


def currencies(home: object, other: object) -> Any:
    """The Currencies page: GBP the internal (home) currency, EUR not, the flag spelled
    `home` and `other` (JSON true/false, or as a tool re-saving the page writes them)."""
    return api_page(
        [{"id": 1, "name": "GBP", "isInternalCurrency": home, "isActive": True},
         {"id": 2, "name": "EUR", "isInternalCurrency": other, "isActive": True}]
    )  # fmt: skip


# How a true/false flag of the API pages is spelled: JSON, or re-saved by another tool.
FLAG_SPELLINGS = [(True, False), ("true", "false"), ("True", "False"), (1, 0), ("1", "0")]


def customer_item(ref: int, company: int, extended: Decimal, internal: Decimal) -> dict[str, Any]:
    return {"id": ref, "companyID": company, "itemName": "Managed Workstation",
            "extendedPrice": str(extended), "internalCurrencyExtendedPrice": str(internal),
            "taxDollars": "0", "totalAmount": str(extended), "invoiceID": 4710}  # fmt: skip


@given(
    extended=PRICES,
    converted=st.booleans(),
    currency_ids=st.tuples(st.sampled_from([None, 1, 2, 3]), st.sampled_from([None, 1, 2, 3])),
    named=st.booleans(),
    spelled=st.sampled_from(FLAG_SPELLINGS),
)
def test_autotask_customer_currency_is_read_or_the_line_quarantined(
    extended: Decimal,
    converted: bool,
    currency_ids: tuple[int | None, int | None],
    named: bool,
    spelled: tuple[object, object],
) -> None:
    """Company 221's item is in its customer currency when its amounts differ from the home
    ones; company 222's item (a 0.00 line, its amounts equal) shares its currencyID or not. A
    line is read in the currency the Currencies page names for its company's currencyID, and
    a line shown in a currency not the home one that nothing names (3: not on the page) is
    quarantined: EUR money is never read as --currency, however the page spells which
    currency is the home one ("True" was read as false: no home, and currency 3 was taken
    for --currency)."""
    internal = (extended * Decimal("0.8621")).quantize(Decimal("0.0001")) if converted else extended
    companies = [
        {"id": c, "companyName": f"Company {c}", **({"currencyID": i} if i else {})}
        for c, i in zip((221, 222), currency_ids, strict=True)
    ]
    files = {
        "BillingItems.json": api_page(
            [
                customer_item(1, 221, extended, internal),
                customer_item(2, 222, Decimal(0), Decimal(0)),
            ]
        ),
        "Invoices.json": INVOICES,
        "Companies.json": api_page(companies),
    }
    if named:
        files["Currencies.json"] = currencies(*spelled)
    with tempfile.TemporaryDirectory() as folder:
        _, frame = read(Path(folder), files)
    names = {1: "GBP", 2: "EUR"} if named else {}
    first, second = currency_ids
    away = (
        converted or (named and first in (2, 3)),
        (converted and second is not None and second == first) or (named and second in (2, 3)),
    )
    for row, currency_id, shown_away in zip(
        frame.iter_rows(named=True), currency_ids, away, strict=True
    ):
        expected = names.get(currency_id) if currency_id else None
        assert row["currency"] == expected
        assert (row["_problem"] is not None) is (shown_away and expected is None), row


TWIN_HEADERS = [
    "Internal Currency Extended Price",
    "internalCurrencyExtendedPrice",
    "INTERNAL_CURRENCY_EXTENDED_PRICE",
]


def wizard_csv(
    extended: str, internal: str, twin: str, named: str | None, separator: str = ","
) -> str:
    """An export-wizard CSV of one Brasserie Azur line (psa-exports.md §1.12b): Extended Price
    in the customer's currency, its twin `twin` (the home currency's) appended at the end, and
    a Currency column holding `named` when it is not None."""
    columns = [
        "Billing Item ID", "Invoice Number", "Invoice Date", "Organization ID",
        "Organization Name", "Item Name", "Extended Price", "Total Tax",
        *(["Currency"] if named is not None else []), twin,
    ]  # fmt: skip
    cells = ["6101", "INV-1", "11/01/2026", "330", "Brasserie Azur SARL", "Managed Workstation",
             extended, "0", *([named] if named is not None else []), internal]  # fmt: skip
    return "\n".join(separator.join(f'"{c}"' for c in row) for row in (columns, cells)) + "\n"


@given(
    extended=PRICES,
    rate=st.sampled_from([Decimal(1), Decimal("0.8621"), Decimal("1.1734")]),
    twin=st.sampled_from(TWIN_HEADERS),
    named=st.sampled_from([None, "", "EUR"]),
    comma=st.booleans(),
    sign=st.sampled_from(["", "€", "EUR "]),
)
def test_csv_customer_currency_is_read_or_the_line_quarantined(
    extended: Decimal, rate: Decimal, twin: str, named: str | None, comma: bool, sign: str
) -> None:
    """An export-wizard line whose Extended Price differs from its Internal Currency twin is in
    a customer currency: read in the currency its Currency cell names, else FOREIGN (never
    --currency) with a problem naming the client, both amounts and what to export. Equal twins
    (a home-currency line, or a file of one currency) load as written, whatever the decimal
    mark or currency sign."""
    internal = (extended * rate).quantize(Decimal("0.01"))
    written = [f"{v}".replace(".", ",") if comma else f"{v}" for v in (extended, internal)]
    customer = f"{sign}{written[0]}"
    text = wizard_csv(customer, written[1], twin, named, ";" if comma else ",")
    with tempfile.TemporaryDirectory() as folder:
        _, frame = read(Path(folder), {"items.csv": text})
    (row,) = frame.iter_rows(named=True)
    foreign = internal != extended and not named
    assert (row.get("currency") or None) == (named or None)
    assert row["_foreign"] is foreign
    if foreign:
        for part in ("Brasserie Azur SARL (Organization ID 330)", f"Extended Price {customer}",
                     f"{twin} {written[1]}", "Currency column", "Currencies"):  # fmt: skip
            assert part in row["_problem"], row["_problem"]
    else:
        assert row["_problem"] is None


def test_xlsx_customer_currency_line_is_quarantined(tmp_path: Path) -> None:
    """The same in an .xlsx export (numeric cells): the EUR line is FOREIGN, the GBP one whose
    twin is equal is not."""
    source = FIXTURES / "breaks" / "at_csv_customer_currency" / "autotask" / "export_wizard.csv"
    table = pl.read_csv(source, infer_schema_length=0)
    book = xlsxwriter.Workbook(tmp_path / "export_wizard.xlsx")
    sheet = book.add_worksheet()
    for c, name in enumerate(table.columns):
        sheet.write(0, c, name)
        for r, value in enumerate(table[name], start=1):
            number = re.fullmatch(r"\d+\.\d+", value or "")
            sheet.write_number(r, c, float(value)) if number else sheet.write(r, c, value)
    book.close()
    (raw,) = read_inputs([tmp_path / "export_wizard.xlsx"], "autotask")
    frame = raw.collect(raw.frame)
    assert frame["_foreign"].to_list() == [True, False]
    assert "Internal Currency Extended Price 344.83" in frame["_problem"][0]


UNKNOWN_SYMBOLS = ["R", "kr", "zł", "₹", "Fr.", "Lei", "Kč", "R$"]


@given(
    symbol=st.sampled_from(UNKNOWN_SYMBOLS),
    iso=st.sampled_from([None, "ZAR", "SEK", "PLN", "INR", "CHF"]),
    name=st.sampled_from([None, "South African Rand", "swedish krona", "Swiss Franc", "Dong"]),
)
def test_halo_unknown_symbol_takes_the_client_code_or_the_currency_name(
    symbol: str, iso: str | None, name: str | None
) -> None:
    """An invoice whose symbol is no known one takes its client's currencyisocode, else the
    currency name beside it; when nothing names it, its lines are quarantined with the symbol
    shown and what to export."""
    client: dict[str, Any] = {
        "id": 77,
        "name": "Kestrel Dental",
        **({"currencyisocode": iso} if iso else {}),
    }
    invoice: dict[str, Any] = {
        "id": 3001, "invoicenumber": "HP-1", "client_id": 77, "invoice_date": "2026-11-02T00:00:00",
        "currency": symbol, "total": 120, "tax_total": 20,
        "lines": [{"id": 9, "item_shortdescription": "Onsite", "qty_order": 1, "unit_price": 100,
                   "net_amount": 100, "tax_amount": 20}],
        **({"currency_code_name": name} if name else {}),
    }  # fmt: skip
    files = {
        "clients.json": json.dumps({"record_count": 1, "clients": [client]}),
        "invoices.json": json.dumps({"record_count": 1, "invoices": [invoice]}),
    }
    with tempfile.TemporaryDirectory() as folder:
        for file, text in files.items():
            (Path(folder) / file).write_text(text, encoding="utf-8")
        (raw,) = read_inputs([Path(folder)], "halopsa")
        (row,) = raw.collect(raw.frame).iter_rows(named=True)
    by_name = {"South African Rand": "ZAR", "swedish krona": "SEK", "Swiss Franc": "CHF"}
    expected = iso or by_name.get(name or "")
    assert row["currency"] == expected
    if expected is None:
        assert f"'{symbol}'" in row["_problem"] and "currencyisocode" in row["_problem"]
    else:
        assert row["_problem"] is None


BOMS = {  # codec (writes no BOM) -> the BOM written before the text
    "utf-8": b"\xef\xbb\xbf",
    "utf-16-le": b"\xff\xfe",
    "utf-16-be": b"\xfe\xff",
    "utf-32-le": b"\xff\xfe\x00\x00",
    "utf-32-be": b"\x00\x00\xfe\xff",
}


@given(encoding=st.sampled_from(sorted(BOMS)), name=st.sampled_from(["Café Olé £", "Acme"]))
def test_json_with_a_byte_order_mark_reads_as_utf8(encoding: str, name: str) -> None:
    """An API response saved as UTF-16 or UTF-32 with a BOM (Windows PowerShell 5.1's Out-File)
    reads as the same records as its UTF-8 text."""
    page = api_item("100.00", "100.00").replace("ICT Coaching", name)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "BillingItems.json").write_bytes(BOMS[encoding] + page.encode(encoding))
        _, frame = read(Path(folder), {"Invoices.json": INVOICES})
    assert frame["item_name"].to_list() == [name]
    assert frame["net_amount"].to_list() == ["100.00"]


@given(
    day=st.dates(min_value=date(2026, 10, 1), max_value=date(2026, 12, 31)),
    minutes=st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: m - m % 15),
    zulu=st.booleans(),
)
def test_autotask_datetime_with_an_offset_is_its_utc_date(
    day: date, minutes: int, zulu: bool
) -> None:
    """Autotask stores dates as UTC midnights; written in another zone (SOAP and XML: US
    Eastern, 2026-10-31T20:00:00-04:00) the date is the UTC instant's."""
    instant = datetime(day.year, day.month, day.day, tzinfo=UTC)
    written = (
        instant.strftime("%Y-%m-%dT%H:%M:%SZ")
        if zulu
        else instant.astimezone(timezone(timedelta(minutes=minutes))).isoformat()
    )
    invoices = INVOICES.replace("2026-11-01T00:00:00Z", written)
    with tempfile.TemporaryDirectory() as folder:
        items = api_item("1", None)
        _, frame = read(Path(folder), {"BillingItems.json": items, "Invoices.json": invoices})
    assert frame["invoice_date"].to_list() == [day.isoformat()]


MONEY_SQL = duckdb.connect()
MONEY_SQL.execute(MONEY_MACROS)


def sql_money(value: str | None) -> str:
    """fmt_money of `value` (exact text, up to 4 places) in DuckDB."""
    row = MONEY_SQL.execute("SELECT fmt_money(CAST(? AS DECIMAL(38, 4)))", [value]).fetchone()
    assert row is not None
    return str(row[0])


@example(Decimal("1234567890123456.05"))
@example(Decimal("-0.05"))
@example(Decimal("-0.9999"))
@example(Decimal("-0.0049"))
@example(Decimal("-0.005"))
@example(Decimal("999.995"))
@example(Decimal("0"))
@given(st.decimals(min_value=-(10**20), max_value=10**20, places=4))
def test_messages_write_money_as_the_report_does(value: Decimal) -> None:
    """The rules' messages (fmt_money in SQL) write an amount as wording.money does: rounded to
    the cent (half away from zero, as DuckDB casts), thousands grouped, every digit kept, and
    no sign on an amount that rounds to zero."""
    cents = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert sql_money(str(value)) == money(cents)


def test_messages_write_a_missing_amount_as_a_question_mark() -> None:
    assert sql_money(None) == "?"
