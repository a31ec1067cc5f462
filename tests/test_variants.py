"""Shapes of real people's files the other fixtures lack, over their variants: exports joined into
one file (a header repeated, with or without its BOM, in the same or another column order, the
same lines twice), Excel for Mac's CSV (bare CR line ends, Mac Roman), year-first dates, ids
Excel rounded into scientific notation and Excel's error values
(fixtures/realworld/variants/ holds one hand-picked file of each, with its source).
"""

from __future__ import annotations

import codecs
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import AUTOTASK_GRID_HEADER, FIXTURES, invoke
from reconcile import amounts, validate
from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.load import read_inputs
from reconcile.load.artefacts import EXCEL_ERRORS, REPEATED_HEADER
from reconcile.validate import normalise

HEADER = AUTOTASK_GRID_HEADER
VARIANTS = FIXTURES / "realworld" / "variants"
IDS = ["Billing Item ID", "Invoice Number", "Organization ID"]
TEXTS = ["Invoice Number", "Organization ID", "Organization Name", "Item Name"]
COMPARED = ["line_ref", "invoice_number", "invoice_date", "client_id", "client_name", "net_amount"]
NAMES = [
    "Acme Widgets Ltd",
    "Café Olé Ltd",
    "Zürich Præsidium AG",
    'The "Corner" Shop',
    "Birch, Hale & Co",
]
CENTS = st.integers(min_value=-500_000, max_value=500_000)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rows(draw: st.DrawFn, first_id: int = 61000, least: int = 1) -> list[dict[str, str]]:
    """`least` to 5 distinct lines of cycle 2026-11, as an export's cells by column name."""
    out = []
    for i in range(draw(st.integers(min_value=least, max_value=5))):
        net, tax = draw(CENTS), draw(CENTS)
        out.append(
            {
                "Billing Item ID": str(first_id + i),
                "Invoice Number": f"INV-{20400 + draw(st.integers(0, 3))}",
                "Invoice Date": f"11/{draw(st.integers(1, 30)):02d}/2026",
                "Organization ID": f"0{draw(st.integers(100, 999))}",
                "Organization Name": draw(st.sampled_from(NAMES)),
                "Item Name": draw(st.sampled_from(["Managed Workstation", "Backup (per TB)"])),
                "Quantity": "1.00",
                "Unit Price": f"{net / 100:.2f}",
                "Extended Price": f"{net / 100:.2f}",
                "Total Tax": f"{tax / 100:.2f}",
            }
        )
    return out


def _field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\r\n') else value


def csv_text(header: list[str], lines: list[dict[str, str]], eol: str = "\r\n") -> str:
    return "".join(
        ",".join(_field(v) for v in row) + eol
        for row in [header, *([line[c] for c in header] for line in lines)]
    )


def load(data: bytes) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(lines, rejected rows) of the export `data`, as reconcile load reads them."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        path.write_bytes(data)
        (raw,) = read_inputs([path], "autotask")
        batches = list(normalise(raw, Settings(cycle="2026-11", currency="GBP")))
    lines = pl.concat([b.lines for b in batches])
    return lines.select(COMPARED), pl.concat([b.rejected for b in batches])


def _clean(lines: list[dict[str, str]]) -> pl.DataFrame:
    return load(csv_text(HEADER, lines).encode())[0]


@SETTINGS
@given(
    first=rows(),
    second=rows(first_id=62000),
    order=st.permutations(HEADER),
    boms=st.booleans(),
    eol=st.sampled_from(["\r\n", "\n"]),
)
def test_joined_exports_load_as_one_or_are_refused(
    first: list[dict[str, str]],
    second: list[dict[str, str]],
    order: list[str],
    boms: bool,
    eol: str,
) -> None:
    """Two exports joined with cat: under the same header they load as one export, the second
    header skipped (its BOM too); a second header in another order is refused, never read
    under the first one's columns."""
    bom = codecs.BOM_UTF8 if boms else b""
    data = (bom + csv_text(HEADER, first, eol).encode()) + (
        bom + csv_text(order, second, eol).encode()
    )
    if order != HEADER:
        with pytest.raises(InputError, match="columns in another order"):
            load(data)
        return
    lines, rejected = load(data)
    assert lines.equals(_clean(first + second))
    assert rejected["reasons"].to_list() == [REPEATED_HEADER]
    assert rejected["row_number"].to_list() == [len(first) + 1]


@SETTINGS
@given(lines=rows(), again=st.data(), ids=st.booleans())
def test_an_export_joined_to_itself_is_refused(
    lines: list[dict[str, str]], again: st.DataObject, ids: bool
) -> None:
    """Any line of the first part repeated below the repeated header would count twice: told
    by its line id, or by the whole row in a grid exported without the id column."""
    repeated = again.draw(st.lists(st.sampled_from(lines), min_size=1, max_size=3))
    header = HEADER if ids else HEADER[1:]
    data = csv_text(header, lines).encode() + csv_text(header, repeated).encode()
    told = "the line id '[0-9]+'" if ids else "the same line, in every column,"
    with pytest.raises(InputError, match=f"{told} of row [0-9]+ is here again, in another part"):
        load(data)


@SETTINGS
@given(
    first=rows(),
    second=rows(first_id=62000),
    ids=st.booleans(),
    label=st.sampled_from(["Total", "Grand Total", "Sub-total", "TOTALS"]),
)
def test_each_part_may_end_in_its_totals_row(
    first: list[dict[str, str]], second: list[dict[str, str]], ids: bool, label: str
) -> None:
    """Two exports joined, each ending in a totals row labelled in the first column: the label
    is no line id, and two totals rows are no repeated line; each adds up to its part's lines
    and is skipped, the lines load once."""
    header = HEADER if ids else HEADER[1:]

    def part(lines: list[dict[str, str]]) -> str:
        net = sum(round(float(line["Extended Price"]) * 100) for line in lines)
        tax = sum(round(float(line["Total Tax"]) * 100) for line in lines)
        total = {c: "" for c in header} | {header[0]: label}
        total |= {"Extended Price": f"{net / 100:.2f}", "Total Tax": f"{tax / 100:.2f}"}
        return csv_text(header, [*lines, total])

    # Other invoices in the second export: without ids, a line alike in every column is the same.
    second = [{**line, "Invoice Number": f"INV-3{line['Invoice Number'][4:]}"} for line in second]
    loaded, rejected = load((part(first) + part(second)).encode())
    assert loaded.height == len(first) + len(second)
    assert rejected.height == 3  # two totals rows and the repeated header, skipped
    assert set(rejected["disposition"]) == {"skipped"}


@SETTINGS
@given(
    lines=rows(),
    name=st.sampled_from(
        ["Total Fitness Ltd", "TOTAL Protection Suite", "Totals Ltd", "Grand Total Logistics",
         "Sub-total Holdings", "Total"]
    ),
    column=st.sampled_from(["Organization Name", "Item Name"]),
    ids=st.booleans(),
    place=st.data(),
)  # fmt: skip
def test_a_line_named_like_a_totals_label_is_a_line(
    lines: list[dict[str, str]], name: str, column: str, ids: bool, place: st.DataObject
) -> None:
    """A client or item whose name starts like a totals label, on a line whose amount is the sum
    of the lines above it (the worst case: a totals row would be told by that sum), loads as a
    line when it has a line id, an invoice number and date of its own, or a quantity and a unit
    price; a grand total row after the lines is still skipped."""
    header = HEADER if ids else HEADER[1:]
    at = place.draw(st.integers(0, len(lines)))
    above = sum(round(float(line["Extended Price"]) * 100) for line in lines[:at])
    named = {**lines[0], "Billing Item ID": "69999", column: name}
    named |= {"Unit Price": f"{above / 100:.2f}", "Extended Price": f"{above / 100:.2f}"}
    if place.draw(st.booleans()):  # unpriced, but a line id or an invoice and date of its own
        named |= {"Quantity": "", "Unit Price": ""}
    every = [*lines[:at], named, *lines[at:]]
    net = sum(round(float(line["Extended Price"]) * 100) for line in every)
    total = {c: "" for c in header} | {header[0]: "Grand Total"}
    total |= {"Extended Price": f"{net / 100:.2f}", "Total Tax": "0.00"}
    loaded, rejected = load(csv_text(header, [*every, total]).encode())
    assert loaded["net_amount"].cast(pl.String).to_list() == [
        line["Extended Price"] for line in every
    ]
    assert rejected["disposition"].to_list() == ["skipped"]


@SETTINGS
@given(lines=rows(), quoted_break=st.sampled_from(["", "\r", "\n", "\r\n"]))
def test_excel_for_mac_csv_loads_like_the_utf8_export(
    lines: list[dict[str, str]], quoted_break: str
) -> None:
    """Bare CR line ends and Mac Roman text: the same lines, names intact; a line break inside
    a quoted item name, CR, LF or both, stays inside its cell."""
    if quoted_break:
        name = f"Managed Workstation{quoted_break}Second line"
        lines = [{**lines[0], "Item Name": name}, *lines[1:]]
    mac = csv_text(HEADER, lines, eol="\r").encode("mac_roman")
    assert load(mac)[0].equals(_clean(lines))


@SETTINGS
@given(
    lines=rows(),
    form=st.sampled_from(["{y}/{m}/{d}", "{y}/{m:02d}/{d:02d}", "{y}.{m:02d}.{d:02d}"]),
    time=st.sampled_from(["", " 0:00", " 00:00:00"]),
)
def test_year_first_dates_read_as_iso(lines: list[dict[str, str]], form: str, time: str) -> None:
    """2026/11/3, 2026/11/03 and 2026.11.03, with or without a time: the date, never a
    day/month question."""
    written = [
        {
            **line,
            "Invoice Date": form.format(y=2026, m=11, d=int(line["Invoice Date"][3:5])) + time,
        }
        for line in lines
    ]
    assert load(csv_text(HEADER, written).encode())[0].equals(_clean(lines))


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@SETTINGS
@given(
    lines=rows(),
    form=st.sampled_from(
        ["{d:02d}-{b}-{y}", "{d}-{b}-{y}", "{d} {b} {y}", "{d:02d}-{B}-{y}", "{d}-{b}-{yy}",
         "{m}/{d}/{yy}", "{m:02d}/{d:02d}/{yy}"]
    ),
    time=st.sampled_from(["", " 0:00", " 12:00:00 AM"]),
    mixed=st.booleans(),
)  # fmt: skip
def test_month_names_and_two_digit_years_read_as_the_date(
    lines: list[dict[str, str]], form: str, time: str, mixed: bool
) -> None:
    """30-Nov-2026 (Excel's dd-mmm-yyyy, any case), 3 Nov 2026 and two-digit years (11/3/26,
    3-Nov-26), alone or beside four-digit US dates in the same file: the date, never the year
    26 nor a quarantined row."""

    def written(line: dict[str, str], at: int) -> str:
        d = int(line["Invoice Date"][3:5])
        if mixed and at % 2:
            return line["Invoice Date"]  # 11/DD/2026, as the export writes the others
        month = MONTHS[10]
        return form.format(d=d, m=11, y=2026, yy=26, b=month, B=month.upper()) + time

    dated = [{**line, "Invoice Date": written(line, at)} for at, line in enumerate(lines)]
    assert load(csv_text(HEADER, dated).encode())[0].equals(_clean(lines))


LONG_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
LONG_FORMS = ["{b} {d}, {y}", "{b} {d} {y}", "{d} {b} {y}", "{d:02d} {b} {y}", "{d}-{b}-{y}"]


@st.composite
def named_dates(draw: st.DrawFn) -> tuple[str, date]:
    """A date of 2000-2099 in a long form with its month's English name, as Excel, Sheets and
    PSA display formats write them (Nov 1, 2026; November 1 2026; 01 November 2026;
    1-NOV-2026; Sept. 3, 2026), and the date it is."""
    day = draw(st.dates(date(2000, 1, 1), date(2099, 12, 31)))
    short, full = MONTHS[day.month - 1], LONG_MONTHS[day.month - 1]
    form = draw(st.sampled_from(LONG_FORMS))
    dotted = [] if short == full or "-" in form else [short + "."]
    sept = ["Sept", "Sept."] if day.month == 9 else []
    name = draw(st.sampled_from([short, full, *dotted, *sept]))
    case = draw(st.sampled_from([str.title, str.upper, str.lower]))
    return form.format(d=day.day, b=case(name), y=day.year), day


@SETTINGS
@given(lines=rows(), drawn=st.data())
def test_long_dates_with_the_months_name_read_as_the_date(
    lines: list[dict[str, str]], drawn: st.DataObject
) -> None:
    """US and UK long forms (Nov 1, 2026; 1 November 2026; Sept. 3, 2026), any case: the date,
    never a quarantined row."""
    written = [drawn.draw(named_dates()) for _ in lines]
    dated = [{**line, "Invoice Date": text} for line, (text, _) in zip(lines, written, strict=True)]
    loaded, rejected = load(csv_text(HEADER, dated).encode())
    assert rejected.height == 0, rejected["reasons"].to_list()
    assert loaded["invoice_date"].to_list() == [day for _, day in written]


SERIALS = (36526, 73050)  # Excel's 1900-system serials of 2000-01-01 and 2099-12-31


@SETTINGS
@given(
    lines=rows(least=2),
    at=st.data(),
    serial=st.one_of(
        st.integers(*SERIALS),
        st.integers(10000, 99999),
        st.sampled_from([SERIALS[0] - 1, SERIALS[1] + 1]),
    ),
)
def test_excel_date_serials_are_quarantined_saying_what_they_are(
    lines: list[dict[str, str]], at: st.DataObject, serial: int
) -> None:
    """A date column formatted General before the CSV was saved writes 46327 for 1 November
    2026: still quarantined (the date depends on the workbook's 1900 or 1904 date system), and
    the reason says what the number is and what to do, for a serial of 2000-2099 only."""
    row = at.draw(st.integers(0, len(lines) - 1))
    written = [
        {**line, "Invoice Date": str(serial)} if i == row else line for i, line in enumerate(lines)
    ]
    loaded, rejected = load(csv_text(HEADER, written).encode())
    assert loaded.equals(_clean([line for i, line in enumerate(lines) if i != row]))
    (reason,) = rejected["reasons"].to_list()
    assert "column 'Invoice Date': expected a date" in reason and f"got '{serial}'" in reason
    said = (
        f"looks like an Excel date serial number: {date(1899, 12, 30) + timedelta(serial)} in "
        f"Excel's 1900 date system, {date(1904, 1, 1) + timedelta(serial)} in its 1904 one; "
        "format the column as a date in Excel and export it again"
    )
    assert (said in reason) == (SERIALS[0] <= serial <= SERIALS[1]), reason
    assert (SERIALS[0] <= serial <= SERIALS[1]) or "Excel date serial" not in reason


def excel_general(digits: str) -> str:
    """A 12-16 digit number as Excel's General format shows it in a standard-width column and
    saves it to CSV: six significant digits, trailing zeros dropped (123456789012 ->
    1.23457E+11)."""
    mantissa, exponent = f"{int(digits):.5E}".split("E")
    return f"{mantissa.rstrip('0').rstrip('.')}E+{int(exponent):02d}"


@SETTINGS
@given(
    lines=rows(least=2),
    at=st.data(),
    column=st.sampled_from(IDS),
    digits=st.from_regex(r"[1-9][0-9]{11,15}", fullmatch=True),
)
def test_ids_in_scientific_notation_are_quarantined(
    lines: list[dict[str, str]], at: st.DataObject, column: str, digits: str
) -> None:
    row = at.draw(st.integers(0, len(lines) - 1))
    mangled = excel_general(digits)
    written = [{**line, column: mangled} if i == row else line for i, line in enumerate(lines)]
    loaded, rejected = load(csv_text(HEADER, written).encode())
    assert loaded.equals(_clean([line for i, line in enumerate(lines) if i != row]))
    (reason,) = rejected["reasons"].to_list()
    assert f"column '{column}': '{mangled}' is an id Excel rounded" in reason


@SETTINGS
@given(
    lines=rows(least=2),
    at=st.data(),
    column=st.sampled_from(TEXTS),
    error=st.sampled_from(EXCEL_ERRORS),
)
def test_excel_error_values_are_quarantined(
    lines: list[dict[str, str]], at: st.DataObject, column: str, error: str
) -> None:
    row = at.draw(st.integers(0, len(lines) - 1))
    written = [{**line, column: error} if i == row else line for i, line in enumerate(lines)]
    loaded, rejected = load(csv_text(HEADER, written).encode())
    assert loaded.equals(_clean([line for i, line in enumerate(lines) if i != row]))
    (reason,) = rejected["reasons"].to_list()
    assert f"column '{column}': Excel's error value '{error}'" in reason


def test_excel_general_writes_as_excel_does() -> None:
    assert excel_general("123456789012") == "1.23457E+11"
    assert excel_general("404000000000") == "4.04E+11"
    assert excel_general("1234567890123456") == "1.23457E+15"


def test_validate_counts_the_skipped_header(ws_path: Path) -> None:
    """`reconcile validate` accounts for every row as `load` does: the repeated header of two
    joined exports is counted as skipped (the rows read add up)."""
    path = VARIANTS / "at_header_repeated_bom.csv"
    result = invoke("--workspace", ws_path, "validate", "--currency", "GBP", path)
    assert result.exit_code == 0, result.output
    assert "5 rows: 4 valid, 0 invalid, 0 excluded, 1 skipped;" in result.output


@SETTINGS
@given(first=rows(), second=rows(first_id=62000), eol=st.sampled_from(["\r\n", "\n"]))
def test_exports_joined_without_a_line_end_are_refused_as_such(
    first: list[dict[str, str]], second: list[dict[str, str]], eol: str
) -> None:
    """The first export's last line not ended: the second header runs on from its last row,
    which is refused naming the join, not as a row with too many fields."""
    head = csv_text(HEADER, first, eol)[: -len(eol)]
    data = (head + csv_text(HEADER, second, eol)).encode()
    with pytest.raises(InputError, match="exports joined without a line end between them"):
        load(data)


def test_the_whole_file_is_read_for_repeated_lines_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports joined in many parts, their headers in several batches: the check of repeated
    lines reads the whole file at the first repeated header only, and every line loads once."""
    from reconcile.load import artefacts, base

    calls = []
    check = artefacts._refuse_repeated_lines

    def counted(*args: object, **kwargs: object) -> None:
        calls.append(1)
        check(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(base, "BATCH_ROWS", 2)
    monkeypatch.setattr(artefacts, "_refuse_repeated_lines", counted)
    line = dict(
        zip(
            HEADER,
            [
                "",
                "INV-20400",
                "11/02/2026",
                "0100",
                "Acme Widgets Ltd",
                "Managed Workstation",
                "1.00",
                "35.00",
                "35.00",
                "7.00",
            ],
            strict=True,
        )
    )
    parts = [
        [{**line, "Billing Item ID": str(61000 + 10 * n + i)} for i in range(size)]
        for n, size in enumerate([2, 1, 3, 1])
    ]
    loaded, rejected = load("".join(csv_text(HEADER, part) for part in parts).encode())
    assert calls == [1]
    assert loaded["line_ref"].to_list() == [line["Billing Item ID"] for p in parts for line in p]
    assert rejected["reasons"].to_list() == [REPEATED_HEADER] * 3


def _lines_in(data: bytes, currency: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(lines with their currency, rejected rows) of an Autotask CSV read with --currency."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        path.write_bytes(data)
        (raw,) = read_inputs([path], "autotask")
        batches = list(normalise(raw, Settings(cycle="2026-11", currency=currency)))
    lines = pl.concat([b.lines for b in batches]).select("net_amount", "currency")
    return lines, pl.concat([b.rejected for b in batches])


@SETTINGS
@given(
    lines=rows(),
    currency=st.sampled_from(["AUD", "NZD", "CAD", "USD", "SGD", "GBP", "EUR"]),
    form=st.sampled_from(["${v}", "$ {v}", "{v} $", "${v} {c}", "{c} ${v}", "{c}{v}"]),
)
def test_a_dollar_sign_is_the_dollar_of_the_rows_currency(
    lines: list[dict[str, str]], currency: str, form: str
) -> None:
    """An Australian, New Zealand or Canadian tenant writes its own dollar `$` (and `$12 AUD`):
    the amounts load in the run's currency. Only where that currency is written with no `$`
    (GBP, EUR) is a `$` amount another currency than the row's, and quarantined."""
    dollars = currency in amounts.DOLLAR_SIGN_CURRENCIES
    charges = [line for line in lines if not line["Extended Price"].startswith("-")]
    if not charges:
        return
    written = [
        {**line, "Extended Price": form.format(v=line["Extended Price"], c=currency)}
        for line in charges
    ]
    loaded, rejected = _lines_in(csv_text(HEADER, written).encode(), currency)
    if dollars or "$" not in form:
        net = [line["Extended Price"] for line in charges]
        assert loaded["net_amount"].cast(pl.String).to_list() == net
        assert set(loaded["currency"]) == {currency}
        assert rejected.height == 0
    else:
        assert loaded.height == 0
        assert rejected["reasons"].str.contains(r"\$|two currencies").all()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=rows(least=2),
    name=st.sampled_from(
        ["Côte d’Azur Ltd", "Café Olé Ltd", "Zürich AG", "Birch – Hale", "CAFÉ’S Olé Ltd"]
    ),
    padding=st.sampled_from([0, 70_000, 5_000_000]),
    encoding=st.sampled_from(["cp1252", "utf-8"]),
)
def test_an_encoding_is_told_from_the_whole_file_not_its_first_bytes(
    lines: list[dict[str, str]], name: str, padding: int, encoding: str
) -> None:
    """A Windows-1252 (or UTF-8) export whose first accented name comes after plain ASCII
    lines, past the 64 KiB sample or a 4 MiB read block: the names load as written (a `’`
    beyond the sample was refused as 'invalid utf-8', with no row). CAFÉ’S in Windows-1252
    is C9 92, shaped like a UTF-8 character: not taken for UTF-8 text in a mixed file."""
    plain = {**lines[0], "Organization Name": "Plain Ltd", "Item Name": "Managed Workstation"}
    filler = [{**plain, "Billing Item ID": str(70000 + i)} for i in range(padding // 120)]
    named = [{**line, "Organization Name": name} for line in lines[1:]]
    data = csv_text(HEADER, [*filler, *named]).encode(encoding)
    loaded = load(data)[0]
    assert loaded["client_name"].to_list()[len(filler) :] == [name] * len(named)


@pytest.mark.parametrize(
    ("padding", "said"),
    [
        (0, r"mixes encodings: UTF-8 text on line 2 and byte 0x92 on line 3"),
        (1000, r"byte 0x92 on line 1003 \(offset [0-9]+\) is not UTF-8, which the text before"),
    ],
)
def test_text_in_two_encodings_is_refused_naming_the_line(padding: int, said: str) -> None:
    """UTF-8 text followed by a part saved as Windows-1252, within the 64 KiB sample or past
    it: refused with the byte's line (past it, polars' 'invalid utf-8' named none)."""
    utf8 = [{**line, "Organization Name": "Café Olé Ltd"} for line in _one()]
    filler = [{**_one()[0], "Billing Item ID": str(70000 + i)} for i in range(padding)]
    head = csv_text(HEADER, [*utf8, *filler])
    tail = "61999,INV-20400,11/02/2026,0123,D’Azur Ltd,Backup (per TB),1.00,5.00,5.00,1.00\r\n"
    with pytest.raises(InputError, match=said):
        load(head.encode() + tail.encode("cp1252"))


def _one() -> list[dict[str, str]]:
    return [
        {
            "Billing Item ID": "61000", "Invoice Number": "INV-20400",
            "Invoice Date": "11/02/2026", "Organization ID": "0123",
            "Organization Name": "Acme Widgets Ltd", "Item Name": "Managed Workstation",
            "Quantity": "1.00", "Unit Price": "35.00", "Extended Price": "35.00",
            "Total Tax": "7.00",
        }
    ]  # fmt: skip


@SETTINGS
@given(
    lines=rows(),
    marked=st.lists(
        st.sampled_from(["Billing Item ID", "Organization ID", "Invoice Date"]), min_size=1
    ),
)
def test_an_apostrophe_typed_before_a_number_or_date_is_not_part_of_it(
    lines: list[dict[str, str]], marked: list[str]
) -> None:
    """'0501 and '11/02/2026 (an apostrophe typed to keep a value as text) are 0501 and the
    date: the same lines as without it, one client, never a quarantined row; a name that
    starts with one ('Tis the Season Ltd) keeps it."""
    written = [{**line, **{c: "'" + line[c] for c in marked}} for line in lines]
    assert load(csv_text(HEADER, written).encode())[0].equals(_clean(lines))
    named = [{**lines[0], "Organization Name": "'Tis the Season Ltd"}]
    assert load(csv_text(HEADER, named).encode())[0]["client_name"].to_list() == [
        "'Tis the Season Ltd"
    ]


@pytest.mark.parametrize(
    ("prefix", "code"),
    [("A$", "AUD"), ("AU$", "AUD"), ("C$", "CAD"), ("CA$", "CAD"), ("US$", "USD"),
     ("NZ$", "NZD"), ("S$", "SGD"), ("HK$", "HKD")],
)  # fmt: skip
def test_a_dollar_that_names_its_country_is_that_currency(prefix: str, code: str) -> None:
    """A$12.50 is AUD, C$ CAD, US$ USD …: read in a file of that currency, another currency's
    row quarantines it as written in that code (it was 'not a number')."""
    line = {**_one()[0], "Extended Price": f"{prefix}12.50", "Unit Price": "12.50"}
    loaded, rejected = _lines_in(csv_text(HEADER, [line]).encode(), code)
    assert loaded.rows() == [(Decimal("12.50"), code)] and rejected.height == 0
    other = "EUR"
    loaded, rejected = _lines_in(csv_text(HEADER, [line]).encode(), other)
    assert loaded.height == 0
    assert f"written in {code} but the row's currency is EUR" in rejected["reasons"][0]


ZONES = ["Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]


@settings(max_examples=200)
@given(
    day=st.dates(min_value=date(2000, 1, 2), max_value=date(2099, 12, 30)),
    zone=st.sampled_from(ZONES),
    form=st.sampled_from(
        [
            "{:%Y-%m-%d %H:%M:%S}.000",
            "{:%Y-%m-%d %H:%M:%S}",
            "{:%Y-%m-%dT%H:%M:%S}Z",
            "{:%Y-%m-%d %H:%M}",
        ]
    ),
    other=st.times(),
)
def test_halo_utc_datetimes_of_a_local_midnight_read_as_that_local_date(
    day: date, zone: str, form: str, other: time
) -> None:
    """Halo stores datetimes in UTC: the instant of a midnight in the tenant's zone, written
    raw, is that local date; any other time keeps the date written (psa-exports.md §3)."""
    midnight = datetime.combine(day, time(0), ZoneInfo(zone)).astimezone(UTC)
    shown = other.replace(microsecond=0, second=other.second if "%S" in form else 0)
    written_other = datetime.combine(day, shown)
    local_other = written_other.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    moves = local_other.time() == time(0) and shown != time(0)
    texts = [form.format(midnight.replace(tzinfo=None)), form.format(written_other)]
    frame = pl.DataFrame({"t": texts}).with_columns(w=pl.col("t").str.slice(0, 10).str.to_date())
    found = frame.select(d=validate._local_midnight(pl.col("t"), pl.col("w"), zone))["d"].to_list()
    assert found[0] == day
    assert found[1] == (local_other.date() if moves else day)
