"""What every reader hands to validation: the export's rows as text, mapped to raw fields."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import polars as pl

from reconcile.errors import InputError
from reconcile.wording import counted

ROW = "_row"  # 1-based data row (record) number in the file
EXCLUDE = "_exclude"  # why a row is deliberately not a billable line (None: it is one)
PROBLEM = "_problem"  # what the reader already found wrong with the row (None: nothing)
SKIP = "_skip"  # why a row is no line at all, e.g. a blank row (None: it is a row of data)
# True: the row's amounts are in a customer currency other than the home one that the export
# does not name (it gets a PROBLEM saying so): --currency does not apply, its currency is
# unknown. Absent or null: False.
FOREIGN = "_foreign"
# EXCLUDE's reason for an Autotask billing item on no invoice yet (psa-exports.md §1.3: posted
# items are billing items whether invoiced or not), followed by what shows it.
NOT_INVOICED = "Autotask billing item posted but not on an invoice"
# A label that marks a report's totals or subtotals row ("Grand Total", "Total", "Sub-total").
TOTAL_LABEL = r"(?i)^\s*(grand\s+|sub\s*-?\s*)?totals?\b"
# Excel's Data > Subtotal labels a subtotal after its group, in the group's column ("INV-0 Total",
# "Acme Ltd Total"; a German Excel "INV-0 Ergebnis" and "Gesamtergebnis", a Dutch one
# "INV-0 Totaal" and "Eindtotaal"); its grand total matches TOTAL_LABEL or names itself here.
SUBTOTAL_LABEL = r"(?i)^\s*(\S.*\s(total|totaal|ergebnis)|gesamtergebnis|eindtotaal)\s*$"
# A sum row a person adds under an export (=SUM() beside a word) labels it with the cell's whole
# text, in English or the languages of the Excel versions whose TRUE/FALSE tabular.TRUE_WORDS
# reads: "Sum", German "Summe"/"Gesamt", Dutch "Totaal", French "Somme", Italian "Totale"/
# "Somma", Spanish and Polish "Suma", Portuguese "Soma", Swedish/Finnish "Summa", Swedish and
# Norwegian "Totalt", Danish "I alt", Finnish "Yhteensä", Polish "Razem" (a trailing colon
# allowed). Whole cells only: "Summit IT Ltd", "Sumo" or "Summe Consulting" are names.
SUM_LABEL = (
    r"(?i)^\s*(sum(\s+total)?|summe|gesamt|gesamtsumme|insgesamt|endsumme|totaal"
    r"|somme(\s+totale)?|somma|totale(\s+(complessivo|generale))?|suma(\s+(total|końcowa))?"
    r"|soma(\s+total)?|summa|totalsumma|totalt|totalsum|i\s+alt|hovedtotal|yhteensä"
    r"|kokonaissumma|razem|ogółem)\s*:?\s*$"
)


BATCH_ROWS = 122_880  # rows validated and stored at a time (a DuckDB row group): memory stays flat


@dataclass(frozen=True)
class RawFrame:
    """One export file (or one bundle of API pages) as text, before any parsing.

    `frame` is lazy, so a large export is read in batches: a String column per raw field the
    export carries, plus ROW, EXCLUDE, PROBLEM and SKIP.
    `columns` names the export's own column for each raw field, for error messages.
    `dates_iso` is True when the export writes dates in ISO form (APIs, XML).
    `on_error` turns a parse failure met while reading into an InputError naming the row.
    """

    file: str
    platform: str
    shape: str
    frame: pl.LazyFrame
    columns: dict[str, str]
    files: tuple[Path, ...]
    dates_iso: bool = False
    dialect: dict[str, str] = field(default_factory=dict)
    invoice_totals: pl.DataFrame | None = None  # invoice_number, total (String), tax (String)
    warnings: tuple[str, ...] = ()
    on_error: Callable[[Exception], InputError] | None = None
    # Marks (or refuses) rows of each whole batch that the reader cannot tell alone, such as a
    # header repeated below the data (load.artefacts.Screen); None: nothing to look for.
    screen: Callable[[pl.DataFrame], pl.DataFrame] | None = None

    def batches(self, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        """The export BATCH_ROWS rows at a time, in row order; `columns` (default all) are the
        only ones read into text. Whole batches (`columns` None) pass through `screen`."""
        frame = self.frame if columns is None else self.frame.select(columns)
        screen = self.screen if columns is None else None
        try:
            for batch in frame.collect_batches(chunk_size=BATCH_ROWS):
                # In one chunk: the streaming engine gives a batch in many (14 for 100k CSV
                # rows), and polars 2.1 panics ("binview: i < self.len()") in pl.format over a
                # frame whose filter emptied its first chunks and kept a few rows, which the
                # checks that follow do (an Autotask export's two invoiced rows after a chunk
                # of uninvoiced ones).
                batch = batch.rechunk()
                yield batch if screen is None else screen(batch)
        except pl.exceptions.PolarsError as exc:
            raise self._error(exc) from None

    def collect(self, query: pl.LazyFrame) -> pl.DataFrame:
        """Run a query over the export, with the same error translation as batches()."""
        try:
            return query.collect()
        except pl.exceptions.PolarsError as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> Exception:
        return self.on_error(exc) if self.on_error else exc


def normalise_header(name: str) -> str:
    """'Extended Price', 'extended_price', 'extendedPrice' and 'IDNet_Amount' compare equal. A
    percent sign is a word ('Tax %' is 'taxpercent', a rate): dropped with the other marks, a
    VAT rate column read as the tax ('VAT %' as 'VAT'), billing 20.00 tax on a 70.00 line."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("%", "percent"))


def _aliases(*names: str) -> tuple[str, ...]:
    """Display names; lookups compare them through normalise_header."""
    return names


# What a report's author or a tenant's locale calls a line's tax (psa-exports.md §2.3, §2.9:
# UK invoices call it VAT, report columns are aliased at will), on both platforms.
TAX_NAMES = ("VAT", "VAT Amount", "GST", "GST Amount", "Sales Tax", "Sales Tax Amount")

# Header variants per raw field, as the platforms' UI, API and reporting exports spell them.
AUTOTASK_HEADERS: dict[str, tuple[str, ...]] = {
    "line_ref": _aliases("Billing Item ID", "BillingItemID", "Item ID", "id"),
    "invoice_number": _aliases("Invoice Number", "Invoice #", "Invoice No", "invoiceNumber"),
    "invoice_date": _aliases("Invoice Date", "invoiceDateTime", "Invoice Date Time"),
    "client_id": _aliases(
        "Organization ID", "Account ID", "Company ID", "companyID", "Customer ID"
    ),
    "client_name": _aliases(
        "Organization Name",
        "Organization",
        "Account Name",
        "Account",
        "Company Name",
        "Company",
        "cust_name",
        "Customer Name",
        "Customer",
    ),
    "contract_id": _aliases("Contract ID", "contractID"),
    "contract_name": _aliases("Contract Name", "Contract", "contract_name"),
    "contract_type": _aliases("Contract Type", "contract_type", "contractType"),
    "item_code": _aliases(
        "Service ID",
        "service_or_bundle_id",
        "serviceID",
        "Billing Code ID",
        "billingCodeID",
        "Allocation Code ID",
        "Product ID",
        "Item Code",
        "allocation_code_id",
    ),
    "item_name": _aliases("Item Name", "itemName", "Item", "Service Name"),
    "description": _aliases(
        "Description",
        "Service Invoice Description",
        "Line Item Description",
        "Line Item Full Description",
        "Summary",
    ),
    "quantity": _aliases("Quantity", "Units", "Service Units", "Billable Hours", "Hours"),
    "unit_price": _aliases(
        "Unit Price", "Rate", "Hourly Billing Rate", "Service Unit Price", "hourly_billing_rate"
    ),
    "net_amount": _aliases(
        "Extended Price",
        "extendedPrice",
        "Billed Amount",
        "Amount",
        "Net Amount",
        "Total",
        "service_extended_price",
    ),
    "tax_amount": _aliases(
        "Total Tax",
        "Tax",
        "Tax Amount",
        "Tax Dollars",
        "taxDollars",
        "total_tax_amount",
        *TAX_NAMES,
    ),
    "currency": _aliases("Currency", "Currency Code", "Customer Currency"),
    "period_start": _aliases(
        "Service Period Start Date", "Service Period Start", "Period Start", "Period From"
    ),
    "period_end": _aliases(
        "Service Period End Date", "Service Period End", "Period End", "Period To"
    ),
}

HALOPSA_HEADERS: dict[str, tuple[str, ...]] = {
    "line_ref": _aliases("id", "IDid", "Line ID", "Invoice Line ID"),
    "invoice_number": _aliases(
        "invoicenumber", "IHInvoicenumber", "Invoice Number", "thirdpartyinvoicenumber"
    ),
    "invoice_date": _aliases("invoice_date", "IHInvoice_Date", "Invoice Date"),
    "client_id": _aliases("client_id", "IHaarea", "Aarea", "Client ID"),
    "client_name": _aliases("client_name", "Aareadesc", "Client Name", "Client", "Customer"),
    "contract_id": _aliases("contract_id", "IDchid", "IHchid", "Contract ID"),
    "contract_name": _aliases("contract_ref", "Chcontractref", "Contract Ref", "Contract"),
    "contract_type": _aliases("contract_type", "Contract Type", "Chbillingdescription"),
    "item_code": _aliases("_itemid", "ID_ItemID", "item_id", "Item ID"),
    "item_name": _aliases("item_name", "Item Name"),
    "description": _aliases(
        "item_shortdescription", "IDItem_ShortDescription", "Description", "Short Description"
    ),
    "quantity": _aliases("qty_order", "IDQty_Order", "Quantity", "Qty"),
    "unit_price": _aliases("unit_price", "IDUnit_Price", "Unit Price", "Price"),
    "net_amount": _aliases("net_amount", "IDNet_Amount", "Net Amount", "Net", "total_price"),
    "tax_amount": _aliases(
        "tax_amount", "IDTax_Amount", "Tax Amount", "Tax", "total_tax", *TAX_NAMES
    ),
    "currency": _aliases("currency", "Currency", "currency_code_name", "currencyisocode"),
    "period_start": _aliases("startdate", "IDstartdate", "Start Date", "Period Start"),
    "period_end": _aliases("enddate", "IDenddate", "End Date", "Period End"),
    "xref_client_id": _aliases("autotaskid", "Client Autotask ID", "Aautotaskid"),
    "xref_contract_id": _aliases("contract_autotaskid", "Contract Autotask ID"),
    "xref_item_id": _aliases("autotaskserviceid", "Item Autotask Service ID"),
}

# Halo flags that mark rows which are not billable lines; Autotask exports have none.
HALOPSA_FLAGS: dict[str, tuple[str, ...]] = {
    "isgroupdesc": _aliases("isgroupdesc", "IDisGroupDesc", "Group Header"),
    "isinactive": _aliases("isinactive", "IDisInactive", "Inactive"),
    "invoice_id": _aliases("ihid", "IDihid", "IHid", "Invoice ID"),
    # The invoice's voided flag, on each line of a report joined to INVOICEHEADER (§2.9).
    "voided": _aliases("voided", "IHvoided", "Voided", "Invoice Voided"),
}

# The amount an Autotask item carried to the invoice (REST totalAmount; the export wizard's
# Billed Amount, where Extended Price is the net column): 0 on prepaid consumption (§1.3, §3).
AUTOTASK_FLAGS: dict[str, tuple[str, ...]] = {
    "carried_amount": _aliases("Total Amount", "totalAmount", "Billed Amount"),
}

# Autotask's money columns that carry the customer's currency when multi-currency is on, each
# with its home-currency twin under the same name after "Internal Currency" (the export
# wizard appends those columns at the end; REST: internalCurrencyExtendedPrice…; §1.3, §1.12b).
CUSTOMER_MONEY = ("net_amount", "carried_amount", "tax_amount", "unit_price")
HOME_TWIN = "Internal Currency "

# Why an Autotask line billed in a customer currency the export does not name is quarantined:
# who is billed, the evidence (EVIDENCE) and what to export (positional {} for str.format and
# pl.format alike).
CUSTOMER_CURRENCY = (
    "Autotask bills {} in a currency of its own ({}), which the export does not name: reading "
    "it as --currency would count it as the wrong money. {}"
)
EVIDENCE = "its {} {} is in that currency, {} {} in the home currency"

HEADERS = {"autotask": AUTOTASK_HEADERS, "halopsa": HALOPSA_HEADERS}
FLAGS = {"autotask": AUTOTASK_FLAGS, "halopsa": HALOPSA_FLAGS}

# Columns only one platform writes: they tell the platforms apart when the user does not say.
DISTINCTIVE = {
    "autotask": _aliases(
        "Extended Price",
        "extendedPrice",
        "Billing Item ID",
        "Organization Name",
        "Organization ID",
        "Hourly Billing Rate",
        "Total Tax",
        "Billing Code ID",
        "Service ID",
        "taxDollars",
        "Allocation Code Name",
        "Type of Transaction",
        # The generic XML export's tag names, also seen as CSV headers (psa-exports.md §1.12a)
        "cust_name",
        "total_tax_amount",
        "service_or_bundle_id",
        "service_period_start_date",
        "service_period_end_date",
        "service_extended_price",
        "allocation_code_id",
    ),
    "halopsa": _aliases(
        "qty_order",
        "net_amount",
        "item_shortdescription",
        "IDQty_Order",
        "IDNet_Amount",
        "IHInvoice_Date",
        "IDItem_ShortDescription",
        "isgroupdesc",
        "IDisGroupDesc",
        "ihid",
        "_itemid",
        "Aareadesc",
        "invoicenumber",
    ),
}

REQUIRED = (
    ("net_amount",),
    ("client_id", "client_name"),
    ("item_code", "item_name", "description"),
)

FIELD_LABELS = {
    "net_amount": "net amount",
    "client_id": "client id",
    "client_name": "client name",
    "item_code": "item code",
    "item_name": "item name",
    "description": "description",
}

PLATFORM_NAMES = {"autotask": "Autotask", "halopsa": "HaloPSA"}


@cache  # the header tables are constants: sniffing asks for the same sets for every row
def _norm_set(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(normalise_header(n) for n in names)


def detect_platform(file: str, headers: list[str], claimed: str | None) -> str:
    """Pick the platform whose distinctive columns the header carries; refuse a mismatch."""
    norm = {normalise_header(h) for h in headers}
    scores = {p: len(norm & _norm_set(cols)) for p, cols in DISTINCTIVE.items()}
    best = max(scores, key=lambda p: scores[p])
    other = "halopsa" if best == "autotask" else "autotask"
    if scores[best] == scores[other]:
        if claimed:
            return claimed
        raise InputError(
            file,
            "cannot tell whether this is an Autotask or a HaloPSA export",
            expected="columns such as 'Extended Price' (Autotask) or 'net_amount' (HaloPSA)",
            got=", ".join(headers[:8]),
            hint="Say which with --platform.",
        )
    if claimed and claimed != best:
        marks = _norm_set(DISTINCTIVE[best])
        found = [h for h in headers if normalise_header(h) in marks]
        raise InputError(
            file,
            f"this looks like a {PLATFORM_NAMES[best]} export, not {PLATFORM_NAMES[claimed]}",
            expected=f"{PLATFORM_NAMES[claimed]} columns",
            got=", ".join(found[:5]),
            hint=f"Load it with --platform {best}, or check you picked the right file.",
        )
    return best


def map_headers(file: str, platform: str, headers: list[str]) -> dict[str, str]:
    """Map raw fields to the export's column names; refuse duplicates and missing essentials."""
    seen: dict[str, str] = {}
    for header in headers:
        key = normalise_header(header)
        if key and key in seen:
            raise InputError(
                file,
                f"the column '{header}' appears twice in the header",
                expected="each column once",
                hint="Remove the duplicate column; reconcile cannot tell which one is right.",
            )
        seen[key] = header
    tables = HEADERS[platform] | FLAGS[platform]
    mapping: dict[str, str] = {}
    for raw_field, aliases in tables.items():
        for alias in aliases:
            column = seen.get(normalise_header(alias))
            if column is not None and column not in mapping.values():
                mapping[raw_field] = column
                break
    for group in REQUIRED:
        if not any(f in mapping for f in group):
            wanted = " or ".join(FIELD_LABELS[f] for f in group)
            examples = " or ".join(f"'{HEADERS[platform][f][0]}'" for f in group)
            raise InputError(
                file,
                f"a required column is missing: {wanted}",
                expected=f"a column such as {examples}",
                got="the columns " + ", ".join(headers[:12]),
            )
    return mapping


CONSUMPTION_SHOWN = 5  # items a consumption warning names


def consumption_warning(
    count: int, shown: list[tuple[str | None, str | None, str | None]], carried: str, net: str
) -> tuple[str, ...]:
    """The load's warning for Autotask items carried 0 to the invoice whose net was not
    (prepaid block-hours consumption or non-billable, loaded as 0.00 lines; §1.3, §3): `count`
    items, `shown` the first CONSUMPTION_SHOWN as (item id, name, net as written); `carried`
    and `net` the export's columns (totalAmount and extendedPrice in the API, Billed Amount and
    Extended Price in the export wizard's). () when `count` is 0."""
    if not count:
        return ()
    listed = ", ".join(f"{ref} ({name}, {net} {value})" for ref, name, value in shown)
    more = f" and {count - len(shown):,} more" if count > len(shown) else ""
    return (
        f"{count:,} Autotask billing item(s) carried 0.00 to the invoice ({carried} 0: prepaid "
        f"block-hours consumption or non-billable) are loaded as 0.00 lines, not at their "
        f"{net}: {listed}{more}",
    )


# A column name that reads as an amount of money (in the lower-case letters and digits
# normalise_header keeps: 'Gross', 'VAT Amount', 'Our Cost', 'IHamountdue') unless it also
# names a rate, a code, a date or a count ('IDTax_rate', 'Tax Code', 'Billable Hours').
MONEY_WORDS = re.compile(
    r"amount|amt|total|gross|net|tax|vat|gst|price|cost|value|fee|charge|due|paid|balance"
    r"|revenue|discount"
)
NOT_MONEY_WORDS = re.compile(
    r"rate|percent|pct|code|name|date|type|region|category|desc|number|qty|quantity|hour"
    r"|unit(?!price)|count|status|taxable|id$"
)


def unread_money(headers: list[str], mapping: dict[str, str]) -> tuple[str, ...]:
    """A warning naming the columns whose names read as amounts of money (MONEY_WORDS) that no
    raw field is read from (`mapping`: raw field -> column), with the columns the net amount
    and the tax are read from; () when there are none. A report may alias its tax or net column
    as it likes (psa-exports.md §2.9): an amount left unread must be seen, not ignored."""
    read = set(mapping.values())
    unread = [
        h
        for h in headers
        if h not in read
        and MONEY_WORDS.search(key := normalise_header(h))
        and not NOT_MONEY_WORDS.search(key)
    ]
    if not unread:
        return ()
    tax = f"the tax from '{mapping['tax_amount']}'" if "tax_amount" in mapping else "no tax"
    named = ", ".join(f"'{h}'" for h in unread)
    return (
        f"{counted(len(unread), 'column')} named like an amount not read: {named} (the net "
        f"amount is read from '{mapping['net_amount']}', {tax}); if one of them holds the "
        "lines' net amount or tax, rename it 'Net Amount' or 'Tax Amount' and load it again",
    )


HEADER_SEARCH_ROWS = 30  # rows the header is looked for in (blank ones not counted)
HEADER_MIN_KNOWN = 3  # known column names a row needs to be taken for the header


def _vocabulary() -> dict[str, set[str]]:
    """Every column name each platform's exports are known to use (psa-exports.md §1.12, §2.9)."""
    vocab: dict[str, set[str]] = {}
    for platform, table in HEADERS.items():
        names = {normalise_header(a) for aliases in table.values() for a in aliases}
        names |= _norm_set(DISTINCTIVE[platform])
        names |= {normalise_header(a) for aliases in FLAGS[platform].values() for a in aliases}
        vocab[platform] = names
    return vocab


VOCABULARY = _vocabulary()


def _covers_required(platform: str, norm: set[str]) -> bool:
    table = HEADERS[platform]
    return all(any(_norm_set(table[f]) & norm for f in group) for group in REQUIRED)


def header_fit(cells: list[str]) -> tuple[int, bool]:
    """(how many cells are known column names of the better-fitting platform, whether that
    platform's required columns are all among them)."""
    norm = {normalise_header(c) for c in cells if c and c.strip()}
    norm.discard("")
    best = (0, False)
    for platform, names in VOCABULARY.items():
        fit = (len(norm & names), _covers_required(platform, norm))
        best = max(best, fit, key=lambda f: (f[1], f[0]))
    return best


def find_header(rows: list[list[str]]) -> int | None:
    """Index of the header among the first rows of a sheet, or None when no row looks like one.

    A header is the first row with at least HEADER_MIN_KNOWN known column names that include a
    platform's required columns; title rows ("Invoice history", "Report run on …"), Excel's
    `sep=` line, blank rows and merged group-header rows (`,Invoice,,,Amounts,,`) above it are
    passed over. When no row has the required columns (a header missing one), the row with the
    most known names is taken, so that map_headers can name what is missing.
    """
    counts: list[int] = []  # known names of each row looked at, in order
    filled = 0  # blank rows are passed over without counting against HEADER_SEARCH_ROWS
    for index, cells in enumerate(rows):
        filled += any(cells)
        if filled > HEADER_SEARCH_ROWS:
            break
        known, complete = header_fit(cells)
        if complete and known >= HEADER_MIN_KNOWN:
            return index
        counts.append(known)
    most = max(counts, default=0)
    return counts.index(most) if most >= HEADER_MIN_KNOWN else None


# A cell that is a value, never a column's name: a number, an amount, a date or a time.
DATA_CELL = re.compile(r"^[(+\-]?[$£€¥]?[0-9][0-9.,:/\- T]*\)?$")


def refuse_headerless(file: str, headers: list[str]) -> None:
    """InputError when the row read as the header is a row of lines: fewer than
    HEADER_MIN_KNOWN known column names and at least two cells that are values (DATA_CELL).
    SQL Server Management Studio saves results without their column names unless told to;
    read so, the file would be refused for a required column it does have."""
    if header_fit(headers)[0] >= HEADER_MIN_KNOWN:
        return
    values = [h for h in headers if DATA_CELL.match(h.strip())]
    if len(values) >= 2:
        raise InputError(
            file,
            "the file seems to have no header row: its first row holds values ("
            + ", ".join(repr(v) for v in values[:3])
            + ") where the column names should be",
            expected="a header row naming the columns (such as 'Extended Price' or "
            "'net_amount') above the lines",
            hint="Export it again with its column names (SQL Server Management Studio: Tools > "
            "Options > Query Results > SQL Server > Results to Grid > 'Include column headers "
            "when copying or saving the results'), or add the header row.",
        )


EXCEL_TEXT = re.compile(r'^="(.*)"$', re.DOTALL)
EXCEL_TEXT_PATTERN = r'(?s)^="(.*)"$'


def unwrap_excel_text(value: str) -> str:
    """`="0571"` is Excel's keep-the-leading-zeros trick in CSV: the cell's text is `0571`."""
    match = EXCEL_TEXT.match(value.strip())
    return match.group(1) if match else value
