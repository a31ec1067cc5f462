"""What a row means, over the variants of fixtures/breaks/ findings: a line on no invoice or
with no invoice date is never taken into the cycle, a billing item on two invoices of one
export is never counted twice, and a tax column is read whatever the report calls it."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import AUTOTASK_GRID_HEADER
from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.ingest import LoadResult, load_paths
from reconcile.load.base import NOT_INVOICED, TAX_NAMES
from reconcile.store import Workspace

CYCLE = "2026-11"
SETTINGS = Settings(cycle=CYCLE, currency="GBP")
CENTS = st.integers(min_value=1, max_value=10**8)


@contextmanager
def loaded(files: dict[str, str], platform: str) -> Iterator[tuple[LoadResult, pl.DataFrame]]:
    """`files` (name -> text) written into a folder and loaded as one export of `platform`:
    the load's result and its quarantined and excluded rows (row_number, disposition,
    reasons, net_amount), in row order."""
    with tempfile.TemporaryDirectory() as folder, Workspace(":memory:") as ws:
        for name, text in files.items():
            (Path(folder) / name).write_text(text, encoding="utf-8")
        (result,) = load_paths(ws, [Path(folder)], platform, SETTINGS)
        rejected = ws.quarantined(CYCLE).sort("row_number")
        yield result, rejected.select("row_number", "disposition", "reasons", "net_amount")


def money(cents: int) -> str:
    return str(Decimal(cents).scaleb(-2))


def csv(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(",".join(r) for r in [header, *rows]) + "\n"


def grid_row(n: int, number: str, day: str, cents: int) -> list[str]:
    """A row under AUTOTASK_GRID_HEADER: billing item 71000 + n of `cents` net."""
    return [str(71000 + n), number, day, "221", "Kestrel Dental", "Remote Support", "1",
            money(cents), money(cents), "0.00"]  # fmt: skip


# The export wizard's invoice columns (psa-exports.md §1.12b: same vocabulary as the UI labels
# and the XML tags); None: the export has no invoice number column.
NUMBER_HEADERS = ["Invoice Number", "Invoice #", "invoice_number", None]
DATE_HEADERS = ["Invoice Date", "invoiceDateTime", "Invoice Date Time"]
EMPTY_CELLS = ["", '""', "   ", '=""']


@settings(max_examples=15, deadline=None)
@given(
    invoiced=st.lists(st.tuples(st.booleans(), CENTS), min_size=1, max_size=8).filter(
        lambda rows: any(on for on, _ in rows)
    ),
    number_header=st.sampled_from(NUMBER_HEADERS),
    date_header=st.sampled_from(DATE_HEADERS),
    empty=st.sampled_from(EMPTY_CELLS),
)
# Excluded rows before the invoiced ones: polars 2.1 panicked on what a filter left of a batch
# in several chunks (validate._read_dates).
@example(
    invoiced=[(False, 100)] * 4 + [(True, 100)] * 2,
    number_header="Invoice Number",
    date_header="Invoice Date",
    empty="   ",
)
def test_autotask_csv_row_on_no_invoice_is_excluded(
    invoiced: list[tuple[bool, int]], number_header: str | None, date_header: str, empty: str
) -> None:
    """The export wizard exports posted items whether invoiced or not (§1.12b): a row with an
    empty invoice date (and number) is excluded as posted, not invoiced (the API's invoiceID 0
    wording), its amount in the excluded column; the invoiced rows load."""
    header = [date_header if h == "Invoice Date" else h for h in AUTOTASK_GRID_HEADER]
    rows = [
        grid_row(n, "INV-1" if on else empty, "11/02/2026" if on else empty, cents)
        for n, (on, cents) in enumerate(invoiced)
    ]
    if number_header is None:
        header.remove("Invoice Number")
        rows = [r[:1] + r[2:] for r in rows]
    else:
        header[header.index("Invoice Number")] = number_header
    named = [h for h in (number_header, date_header) if h]
    with loaded({"billing_items.csv": csv(header, rows)}, "autotask") as (result, rejected):
        left_out = [(n + 1, cents) for n, (on, cents) in enumerate(invoiced) if not on]
        assert rejected["row_number"].to_list() == [n for n, _ in left_out]
        assert set(rejected["disposition"]) <= {"excluded"}
        empty_columns = " and ".join(f"'{h}'" for h in named)
        assert set(rejected["reasons"]) <= {f"{NOT_INVOICED} ({empty_columns} empty)"}
        (control,) = result.by_currency
        assert control.rows_loaded == len(invoiced) - len(left_out)
        assert control.net_excluded == sum(Decimal(money(c)) for _, c in left_out)


def autotask_api(invoice_date: str | None) -> dict[str, str]:
    item = {
        "id": 61001,
        "companyID": 221,
        "itemName": "Remote Support",
        "quantity": 1,
        "rate": 95,
        "extendedPrice": 95,
        "taxDollars": 19,
        "invoiceID": 4710,
    }
    invoice = {"id": 4710, "companyID": 221, "invoiceDateTime": invoice_date,
               "invoiceNumber": "INV-1", "invoiceTotal": 114, "isVoided": False,
               "totalTaxValue": 19}  # fmt: skip
    return {"BillingItems.json": _page([item]), "Invoices.json": _page([invoice])}


def _page(items: list[dict[str, Any]]) -> str:
    return json.dumps({"items": items, "pageDetails": {"count": len(items), "nextPageUrl": None}})


def halo_api(invoice_date: str | None) -> dict[str, str]:
    invoice = {"id": 3001, "invoicenumber": "HP-1", "client_id": 77, "client_name": "Kestrel",
               "invoice_date": invoice_date, "currency": "£", "total": 114, "tax_total": 19,
               "lines": [{"id": 9, "item_shortdescription": "Onsite", "qty_order": 1,
                          "unit_price": 95, "net_amount": 95, "tax_amount": 19}]}  # fmt: skip
    return {"invoices.json": json.dumps({"record_count": 1, "invoices": [invoice]})}


def autotask_csv(invoice_date: str | None) -> dict[str, str]:
    row = grid_row(1, "INV-1", invoice_date or "", 9500)
    return {"billing_items.csv": csv(AUTOTASK_GRID_HEADER, [row])}


def halo_csv(invoice_date: str | None) -> dict[str, str]:
    header = ["id", "invoicenumber", "invoice_date", "client_name", "item_shortdescription",
              "qty_order", "unit_price", "net_amount", "tax_amount"]  # fmt: skip
    row = ["90001", "HP-1", invoice_date or "", "Kestrel", "Onsite", "1", "95.00", "95.00", "19"]
    return {"invoice_lines.csv": csv(header, [row])}


# Per shape: how it writes an invoice date that is none (None: null or an empty cell) and the
# reason's column. psa-exports.md §2.1: HaloPSA's null date is 1899-12-30T00:00:00; .NET
# writes DateTime.MinValue as 0001-01-01; Excel's day 0 is 12/30/1899.
UNDATED = {
    "autotask-api": (autotask_api, [None, "0001-01-01T00:00:00Z"], "Invoices.invoiceDateTime"),
    "autotask-csv": (
        autotask_csv,
        [None, "12/30/1899", "1899-12-30", "0001-01-01"],
        "Invoice Date",
    ),
    "halopsa-api": (halo_api, [None, "1899-12-30T00:00:00", "0001-01-01T00:00:00"], "invoice_date"),
    "halopsa-csv": (
        halo_csv,
        [None, "1899-12-30T00:00:00", "30/12/1899", "0001-01-01 00:00:00"],
        "invoice_date",
    ),
}


@settings(max_examples=15, deadline=None)
@given(case=st.sampled_from([(s, d) for s, (_, dates, _) in UNDATED.items() for d in dates]))
def test_line_on_an_invoice_with_no_invoice_date_is_quarantined_with_the_value(
    case: tuple[str, str | None],
) -> None:
    """A line on an invoice whose date is empty or a placeholder for none cannot be placed in
    a cycle: quarantined, the reason naming the column and the value (the Autotask API's as
    its date part: a datetime is read as its UTC date), never loaded as the cycle's."""
    shape, written = case
    files, _, column = UNDATED[shape]
    with loaded(files(written), shape.split("-")[0]) as (result, rejected):
        assert result.shape == shape
        assert result.rows_loaded == 0
        (reason,) = rejected.filter(pl.col("disposition") == "quarantined")["reasons"]
    if written is None:
        assert f"no invoice date: column '{column}' is empty" in reason
    else:
        shown = written[:10] if shape == "autotask-api" else written
        assert f"column '{column}' holds '{shown}', a placeholder for no date" in reason


def test_line_dated_in_the_cycle_still_loads() -> None:
    """The same exports with a date load their line (the cases above fail for the date)."""
    dated = {
        "autotask-api": "2026-11-02T00:00:00Z",
        "autotask-csv": "11/02/2026",
        "halopsa-api": "2026-11-02T00:00:00",
        "halopsa-csv": "02/11/2026",
    }
    for shape, day in dated.items():
        with loaded(UNDATED[shape][0](day), shape.split("-")[0]) as (result, rejected):
            assert (result.rows_loaded, rejected.height) == (1, 0), shape


@settings(max_examples=15, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(["INV-10111", "INV-10112", "INV-10200"])),
        min_size=1,
        max_size=10,
    )
)
def test_billing_item_on_two_invoices_of_one_export_is_refused(
    rows: list[tuple[int, str]],
) -> None:
    """Within one Autotask CSV, a billing item id on two invoices (a voided invoice and its
    reissue: the export has no voided flag) is refused, naming the file, the id and both
    invoices; an id on one invoice only, however often, is left to the rules."""
    lines = [grid_row(item, number, "11/02/2026", 10000) for item, number in rows]
    invoices: dict[int, set[str]] = {}
    for item, number in rows:
        invoices.setdefault(item, set()).add(number)
    twice = [item for item, _ in rows if len(invoices[item]) > 1]
    files = {"billing_items.csv": csv(AUTOTASK_GRID_HEADER, lines)}
    if not twice:
        with loaded(files, "autotask") as (result, _):
            assert result.rows_loaded == len(rows)
        return
    with pytest.raises(InputError) as refused, loaded(files, "autotask"):
        pass
    message = str(refused.value)
    first = sorted(invoices[twice[0]])
    assert "billing_items.csv: this export repeats billing item id" in message
    assert f"'{71000 + twice[0]}' on two invoices, {first[0]} and {first[-1]}" in message
    assert "without the voided invoice" in message


def xml_invoice(number: str, items: list[int]) -> str:
    lines = "".join(
        f"<invoice_item><invoice_item_id>{n}</invoice_item_id><item_id>{item}</item_id>"
        "<item_name>Managed Server</item_name><quantity>1</quantity>"
        "<extended_price>100.0000</extended_price><total_tax_amount>20.0000</total_tax_amount>"
        "</invoice_item>"
        for n, item in enumerate(items, start=1)
    )
    return (
        f"<invoice><invoice_number>{number}</invoice_number>"
        f"<invoice_date>2026-11-01T00:00:00-04:00</invoice_date>{lines}</invoice>"
    )


def test_xml_billing_item_under_two_invoices_is_refused() -> None:
    """The generic XML export's voided invoice and its reissue (fixtures/breaks/
    at_xml_voided_and_reissued, small): refused, naming item and both invoice numbers."""
    invoices = xml_invoice("INV-10111", [61073, 61075]) + xml_invoice("INV-10112", [61073, 61075])
    xml = (
        '<invoice_batch_generic xmlns="http://tempuri.org/invoice_batch_generic.xsd"><account>'
        f"<account_id>221</account_id><cust_name>Kestrel</cust_name>{invoices}</account>"
        "</invoice_batch_generic>"
    )
    refused = pytest.raises(InputError, match="'61073' on two invoices, INV-10111 and INV-10112")
    with refused, loaded({"invoices.xml": xml}, "autotask"):
        pass


def spelled(name: str, style: int) -> str:
    """A column name as report authors write it: as is, upper, lower, or snake case."""
    return [name, name.upper(), name.lower(), name.replace(" ", "_")][style]


@settings(max_examples=15, deadline=None)
@given(
    tax=st.sampled_from(TAX_NAMES),
    style=st.integers(0, 3),
    platform=st.sampled_from(["autotask", "halopsa"]),
    cents=st.lists(CENTS, min_size=1, max_size=5),
)
def test_tax_column_named_as_the_report_names_it_is_read(
    tax: str, style: int, platform: str, cents: list[int]
) -> None:
    """VAT, GST, Sales Tax and their Amount forms are the line's tax on both platforms
    (psa-exports.md §2.9: report columns carry the author's names): nothing reads as not
    stated, and no amount column is left unread without a word."""
    if platform == "autotask":
        header = [*AUTOTASK_GRID_HEADER[:-1], spelled(tax, style)]
        rows = [grid_row(n, "INV-1", "11/02/2026", c) for n, c in enumerate(cents)]
    else:
        header = ["IDid", "IHInvoicenumber", "IHInvoice_Date", "Aareadesc",
                  "IDItem_ShortDescription", "Net", spelled(tax, style)]  # fmt: skip
        rows = [[str(90000 + n), "HP-1", "02/11/2026", "Kestrel", "Onsite", money(c), "0.00"]
                for n, c in enumerate(cents)]  # fmt: skip
    for row, c in zip(rows, cents, strict=True):
        row[-1] = money(c // 5)
    with loaded({"export.csv": csv(header, rows)}, platform) as (result, _):
        (control,) = result.by_currency
        assert control.tax_loaded == sum(Decimal(money(c // 5)) for c in cents)
        assert not [w for w in result.warnings if "named like an amount" in w]


# Report columns named like an amount that no field is read from, and columns that are not
# amounts (a rate, a code, a count of hours) though their names hold a money word. (An
# "Internal Currency ..." twin is read: the home-currency check of test_money.py.)
UNREAD_MONEY = ["Gross", "Our Cost", "Invoice Total", "Internal Currency Setup Fee"]
NOT_AMOUNTS = ["IDTax_rate", "Tax Code", "Billable Hours", "Allocation Code Taxable"]


@settings(max_examples=12, deadline=None)
@given(
    unread=st.lists(st.sampled_from(UNREAD_MONEY), unique=True, max_size=3),
    others=st.lists(st.sampled_from(NOT_AMOUNTS), unique=True, max_size=3),
)
def test_amount_column_not_read_is_named_in_a_warning(unread: list[str], others: list[str]) -> None:
    """Every column named like an amount that is not read is named, with the columns the
    net and the tax are read from; columns that are no amount are not."""
    header = [*AUTOTASK_GRID_HEADER, *unread, *others]
    row = grid_row(1, "INV-1", "11/02/2026", 9500) + ["1"] * (len(unread) + len(others))
    with loaded({"export.csv": csv(header, [row])}, "autotask") as (result, _):
        named = [w for w in result.warnings if "named like an amount" in w]
    if not unread:
        assert named == []
        return
    (warning,) = named
    assert all(f"'{h}'" in warning for h in unread)
    assert not [h for h in others if f"'{h}'" in warning]
    assert "read from 'Extended Price', the tax from 'Total Tax'" in warning


@pytest.mark.parametrize("part", [1, 2, 3, 1000])
def test_billing_item_on_two_invoices_is_found_in_any_part(
    monkeypatch: pytest.MonkeyPatch, part: int
) -> None:
    """However many parts the ids are looked at in, the id first in the export is named."""
    monkeypatch.setattr("reconcile.store.LINE_ID_PART", part)
    items = [(4, "INV-2"), (1, "INV-1"), (2, "INV-1"), (4, "INV-3"), (2, "INV-2"), (3, "INV-1")]
    lines = [grid_row(item, number, "11/02/2026", 10000) for item, number in items]
    files = {"billing_items.csv": csv(AUTOTASK_GRID_HEADER, lines)}
    refused = pytest.raises(InputError, match="'71004' on two invoices, INV-2 and INV-3")
    with refused, loaded(files, "autotask"):
        pass


# How HaloPSA's true/false flags come out of a report re-saved by Excel in another language,
# or read from a database (SQL Server's bit, PostgreSQL's t/f), any case, padded.
TRUE_FLAGS = ["TRUE", "true", "1", "-1", "Yes", "T", "WAHR", "VRAI", "WAAR", "VERO", "VERDADERO"]
FALSE_FLAGS = ["FALSE", "false", "0", "No", "F", "FALSCH", "FAUX", "ONWAAR", "FALSO", ""]
UNREAD_FLAGS = ["JA", "oui", "?", "2", "#N/A"]


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["group", "inactive", "line", "unread", "inactive unread"]),
            st.sampled_from(TRUE_FLAGS),
            st.sampled_from(FALSE_FLAGS),
            st.sampled_from(UNREAD_FLAGS),
            st.sampled_from(["", " "]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_halopsa_flags_are_read_however_they_are_spelled(
    rows: list[tuple[str, str, str, str, str]],
) -> None:
    """A group header or inactive line (isgroupdesc, isinactive true) is excluded whichever
    spelling of true the file uses; a line whose flags are false loads; a flag that is no
    spelling of true or false is quarantined with its value, never read as false (a heading
    or a template line would be billed). An inactive line is excluded whatever its other flag
    holds: true or false, it is not billed."""
    header = ["id", "invoicenumber", "invoice_date", "client_name", "item_shortdescription",
              "qty_order", "unit_price", "net_amount", "tax_amount", "isgroupdesc",
              "isinactive"]  # fmt: skip
    lines = []
    for n, (kind, true, false, unread, pad) in enumerate(rows):
        group = {"group": true, "unread": unread, "inactive unread": unread}.get(kind, false)
        inactive = true if kind.startswith("inactive") else false
        lines.append([str(90001 + n), "HP-1", "2026-11-02", "Kestrel", "Onsite", "1", "95.00",
                      "95.00", "19.00", pad + group + pad, inactive])  # fmt: skip
    with loaded({"invoice_lines.csv": csv(header, lines)}, "halopsa") as (result, rejected):
        kinds = [kind for kind, *_ in rows]
        assert result.rows_loaded == kinds.count("line")
        excluded = ("group", "inactive", "inactive unread")
        assert result.rows_excluded == sum(kinds.count(kind) for kind in excluded)
        assert result.rows_quarantined == kinds.count("unread")
        quarantined = rejected.filter(pl.col("disposition") == "quarantined")
        for reason, (*_, unread, _) in zip(
            quarantined["reasons"], [r for r in rows if r[0] == "unread"], strict=True
        ):
            assert "column 'isgroupdesc': expected TRUE or FALSE (1/0, yes/no), got '" in reason
            assert unread.strip() in reason


# A tax or VAT rate column as exports and spreadsheets name it, beside the tax amount.
RATE_HEADERS = ["Tax %", "VAT %", "VAT%", "% VAT", "Tax Rate", "GST %", "Tax (%)", "VAT Rate %"]
TAX_AMOUNT_HEADERS = ["Total Tax", "Tax Amount", "VAT Amount", "Tax", "VAT"]


@settings(max_examples=20, deadline=None)
@given(
    rate=st.sampled_from(RATE_HEADERS),
    tax=st.sampled_from(TAX_AMOUNT_HEADERS),
    before=st.booleans(),
)
def test_a_rate_column_is_never_read_as_the_tax(rate: str, tax: str, before: bool) -> None:
    """'Tax %' beside 'Tax Amount' (or 'VAT %' beside 'VAT'): the percent sign is a word of the
    name, so the rate is no tax column, and the tax is read from the amount (19.00 on a 95.00
    line at 20%), wherever the rate column stands. It was read as 'Tax' and billed 20.00."""
    header = [tax if h == "Total Tax" else h for h in AUTOTASK_GRID_HEADER]
    row = grid_row(1, "INV-1", "11/02/2026", 9500)
    row[header.index(tax)] = "19.00"
    at = header.index(tax) + (0 if before else 1)
    header.insert(at, rate)
    row.insert(at, "20")
    with loaded({"billing_items.csv": csv(header, [row])}, "autotask") as (result, _):
        (control,) = result.by_currency
        assert (result.rows_loaded, control.tax_loaded) == (1, Decimal("19.00"))


# Excel's Data > Subtotal: the label it writes after each group, and its grand total's, by
# language (English, German, Dutch).
SUBTOTAL_WORDS = [("{} Total", "Grand Total"), ("{} Ergebnis", "Gesamtergebnis"),
                  ("{} Totaal", "Eindtotaal")]  # fmt: skip


@settings(max_examples=15, deadline=None)
@given(
    invoices=st.lists(st.lists(CENTS, min_size=1, max_size=4), min_size=1, max_size=4),
    words=st.sampled_from(SUBTOTAL_WORDS),
    column=st.sampled_from(["Invoice Number", "Organization Name"]),
)
def test_excel_subtotal_rows_are_skipped_as_totals(
    invoices: list[list[int]], words: tuple[str, str], column: str
) -> None:
    """A grid export run through Excel's Data > Subtotal (by invoice number or by client): each
    group's subtotal row ("INV-1 Total", "Kestrel Dental Ergebnis") and the grand total are
    skipped as totals rows, their amounts the sums of the lines above; the lines load. The
    subtotals by invoice were quarantined as lines with no date and no client."""
    subtotal, grand = words
    rows, n = [], 0
    for number, lines in enumerate(invoices, start=1):
        for cents in lines:
            rows.append(grid_row(n, f"INV-{number}", "11/02/2026", cents))
            n += 1
        label = f"INV-{number}" if column == "Invoice Number" else "Kestrel Dental"
        total = [""] * len(AUTOTASK_GRID_HEADER)
        total[AUTOTASK_GRID_HEADER.index(column)] = subtotal.format(label)
        total[AUTOTASK_GRID_HEADER.index("Extended Price")] = money(sum(lines))
        rows.append(total)
    last = [""] * len(AUTOTASK_GRID_HEADER)
    last[AUTOTASK_GRID_HEADER.index(column)] = grand
    last[AUTOTASK_GRID_HEADER.index("Extended Price")] = money(sum(map(sum, invoices)))
    rows.append(last)
    with loaded({"billing_items.csv": csv(AUTOTASK_GRID_HEADER, rows)}, "autotask") as (
        result,
        _,
    ):
        (control,) = result.by_currency
        assert (result.rows_loaded, result.rows_skipped) == (n, len(invoices) + 1)
        assert result.rows_quarantined == 0
        assert control.net_loaded == sum(Decimal(money(sum(lines))) for lines in invoices)


# The word a person writes beside a =SUM() under an export, in the languages of the Excel
# versions the flags are read for; and names that only begin like one.
SUM_WORDS = ["Sum", "SUM", "sum:", "Summe", "Gesamt", "Totaal", "Somme", "Totale", "Somma",
             "Suma", "Soma", "Summa", "Totalt", "I alt", "Yhteensä", "Razem",
             "Suma końcowa"]  # fmt: skip
SUM_NAMES = ["Summit IT Ltd", "Sumo Logic", "Summe Consulting", "Somme Valley Farms", "Totalis"]


@settings(max_examples=30, deadline=None)
@given(
    lines=st.lists(CENTS, min_size=1, max_size=5),
    at=st.integers(min_value=1, max_value=5),
    label=st.sampled_from(SUM_WORDS + SUM_NAMES),
    column=st.sampled_from(["Item Name", "Description", "Organization Name", "Invoice Number"]),
    pad=st.sampled_from(["", " ", "  "]),
    adds_up=st.booleans(),
)
def test_sum_rows_labelled_in_other_words_are_totals(
    lines: list[int], at: int, label: str, column: str, pad: str, adds_up: bool
) -> None:
    """A row a person added under (or among) the lines, labelled "Sum", "Summe", "Somme",
    "Suma", "Totale" … as the cell's whole text in any column and carrying only the sum of the
    amounts: skipped as a totals row when its amount is the sum of the lines above it, else
    quarantined as a total that does not add up (it was excluded as an item posted but not
    invoiced, and its amount, the file's total, added to the excluded money). A name that only
    begins like such a word ("Summit IT Ltd") labels no total: the row stays as it was read."""
    header = [*AUTOTASK_GRID_HEADER, "Description"]
    at = min(at, len(lines))
    rows = [
        [*grid_row(n, "INV-1", "11/02/2026", cents), "Monthly"] for n, cents in enumerate(lines)
    ]
    total = [""] * len(header)
    total[header.index(column)] = pad + label + pad
    above = sum(lines[:at])
    total[header.index("Extended Price")] = money(above if adds_up else above + 100)
    rows.insert(at, total)
    with loaded({"billing_items.csv": csv(header, rows)}, "autotask") as (result, rejected):
        assert result.rows_loaded == len(lines)
        (reason,) = rejected["reasons"]
        (disposition,) = rejected["disposition"]
    if label in SUM_NAMES:
        # A row naming only a client names no line: skipped as an unlabelled sum if it is one.
        assert "labelled as a total" not in reason
        assert disposition != "skipped" or (column == "Organization Name" and adds_up)
    elif adds_up:
        assert (disposition, result.rows_skipped) == ("skipped", 1)
        assert reason.startswith("totals row:")
    else:
        assert disposition == "quarantined"
        assert "labelled as a total but its amount" in reason
