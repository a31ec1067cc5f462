"""Excel's cell shapes on the way in and out: hours formatted as times or durations in an XLSX
export (Excel keeps them as days), and text longer than a cell holds in the workbook written."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import AUTOTASK_GRID_HEADER
from reconcile.config import Settings
from reconcile.load import read_inputs
from reconcile.load.artefacts import EXCEL_ERRORS
from reconcile.load.tabular import is_time_format
from reconcile.validate import normalise

MS_PER_DAY = 86_400_000
EXCEL_LIMIT = 32_767  # a cell's longest text, in UTF-16 units
QUANTITY = AUTOTASK_GRID_HEADER.index("Quantity")
DURATION_FORMATS = ["[h]:mm", "h:mm", "[h]:mm:ss", "hh:mm:ss", "[mm]:ss", "h:mm AM/PM", "mm:ss"]
DATE_FORMATS = ["yyyy-mm-dd", "mm/dd/yyyy", "d-mmm-yy", "m/d/yy h:mm", "yyyy-mm-dd hh:mm"]


def _export(path: Path, quantities: list[tuple[float, str]]) -> Path:
    """An Autotask grid export as XLSX, one line per (days or plain number, number format):
    the quantity cell written as a number in that format."""
    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"created": datetime(2026, 11, 1)})
    sheet = book.add_worksheet("Lines")
    sheet.write_row(0, 0, AUTOTASK_GRID_HEADER)
    for row, (value, code) in enumerate(quantities, 1):
        sheet.write_row(row, 0, [str(1000 + row), "INV-1", "11/13/2026", "0571", "Acme", "Work"])
        sheet.write_number(row, QUANTITY, value, book.add_format({"num_format": code}))
        sheet.write_row(row, QUANTITY + 1, ["85.00", "127.50", "0.00"])
    book.close()
    return path


def _load(path: Path) -> tuple[dict[int, Decimal], dict[int, str]]:
    """(quantity per loaded row, reasons per quarantined row)."""
    (raw,) = read_inputs([path], None)
    batches = list(normalise(raw, Settings(cycle="2026-11", currency="GBP")))
    lines = pl.concat([b.lines for b in batches])
    rejected = pl.concat([b.rejected for b in batches])
    return (
        dict(zip(lines["row_number"], lines["quantity"], strict=True)),
        dict(zip(rejected["row_number"], rejected["reasons"], strict=True)),
    )


def test_hours_formatted_as_times_load_as_hours(tmp_path: Path) -> None:
    """1:30 in [h]:mm is 0.0625 days in the file, read by fastexcel as 1899-12-31 01:30:00:
    the line bills 1.5 hours. A duration past 24 hours, a credit and hours that were a
    four-place number before they were formatted keep their value; a plain number is as
    written."""
    path = _export(
        tmp_path / "hours.xlsx",
        [
            (1.5 / 24, "[h]:mm"),
            (1.1 / 24, "h:mm"),
            (25 / 24, "[h]:mm:ss"),
            (-1.5 / 24, "[h]:mm"),
            (0.3333 / 24, "[h]:mm"),
            (0, "h:mm"),
            (2.5, "0.00"),
        ],
    )
    quantities, reasons = _load(path)
    assert reasons == {}
    assert quantities == {
        1: Decimal("1.5"),
        2: Decimal("1.1"),
        3: Decimal("25"),
        4: Decimal("-1.5"),
        5: Decimal("0.3333"),
        6: Decimal("0"),
        7: Decimal("2.5"),
    }


def test_hours_a_quantity_cannot_hold_and_dates_are_quarantined(tmp_path: Path) -> None:
    """0:20 is a third of an hour: no four-place quantity is that, so the row waits with why
    (never 0.3333 nor 0.33 picked for it). A number formatted as a date (5 shown as
    1900-01-05) is not hours: 120 hours or 5 units, the file does not say."""
    cells = [(20 / 1440, "h:mm"), (5, "yyyy-mm-dd"), (1 / 24, "h:mm")]
    quantities, reasons = _load(_export(tmp_path / "odd.xlsx", cells))
    assert quantities == {3: Decimal("1")}
    assert reasons[1] == (
        "column 'Quantity': cell G2 holds the duration 0:20:00 (h:mm), 0.333333… hours: more "
        "places than a quantity's four, so no exact number of hours; write the hours as a "
        "number (such as 0.3333) in Excel and export it again"
    )
    assert reasons[2] == (
        "column 'Quantity': cell G3 holds the number 5 formatted as a date (yyyy-mm-dd), read "
        "as '1900-01-05 00:00:00': expected hours or units as a number, or hours formatted as "
        "a time such as [h]:mm; format the column as a number in Excel and export it again"
    )


@pytest.mark.parametrize("code", [*DURATION_FORMATS, "[$-409]h:mm:ss AM/PM", '[h]" h "mm" m"'])
def test_time_formats_are_told_from_date_formats(code: str) -> None:
    assert is_time_format(code)


@pytest.mark.parametrize("code", [*DATE_FORMATS, "General", "0.00", "mmm", '"h"yyyy', "dd"])
def test_date_and_number_formats_are_not_time_formats(code: str) -> None:
    assert not is_time_format(code)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.lists(
        st.tuples(
            st.integers(-50 * 3_600_000, 200 * 3_600_000),  # milliseconds
            st.booleans(),  # on a 0.0001-hour step (0.36 s)
            st.sampled_from([*DURATION_FORMATS, *DATE_FORMATS]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_a_time_cell_is_its_exact_hours_or_quarantined(
    tmp_path_factory: pytest.TempPathFactory, cells: list[tuple[int, bool, str]]
) -> None:
    """Whatever the duration and its format: a line's quantity is the cell's hours exactly,
    or the row is quarantined naming the cell; never another number."""
    cells = [(ms - ms % 360 if stepped else ms, stepped, code) for ms, stepped, code in cells]
    path = _export(
        tmp_path_factory.mktemp("t") / "t.xlsx", [(ms / MS_PER_DAY, code) for ms, _, code in cells]
    )
    quantities, reasons = _load(path)
    assert set(quantities) | set(reasons) == set(range(1, len(cells) + 1))
    for row, (ms, _, code) in enumerate(cells, 1):
        if code in DATE_FORMATS:
            assert "formatted as a date" in reasons[row]
        elif ms % 360:
            assert f"cell G{row + 1} holds the duration" in reasons[row]
        else:
            assert quantities[row] == Decimal(ms) / 3_600_000


def _first_column(path: Path) -> list[object]:
    """The first sheet's first column below the header, read back with openpyxl."""
    import openpyxl

    sheet = openpyxl.load_workbook(path, read_only=True).active
    assert sheet is not None
    return [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)]


def test_a_cell_cut_at_excels_limit_says_so(tmp_path: Path) -> None:
    """Excel's cells hold 32,767 UTF-16 units: refs past that are cut, and the cell ends by
    saying how many characters were left out and that discrepancies.csv holds them (a list of
    refs cut short never reads as complete); a text that fits is as written."""
    from reconcile.outputs import EXCEL_STRING_UNITS, write_xlsx

    refs = "; ".join(f"AT-{i:06d}" for i in range(4000))  # 39,998 characters
    fits = "y" * EXCEL_STRING_UNITS
    emoji = "\U0001f600" * 20_000  # two UTF-16 units each
    frame = pl.DataFrame({"autotask_refs": [refs, fits, emoji], "currency": ["GBP"] * 3})
    write_xlsx(frame, tmp_path / "d.xlsx")
    cut_refs, whole, cut_emoji = _first_column(tmp_path / "d.xlsx")
    assert isinstance(cut_refs, str) and isinstance(cut_emoji, str)
    note = "… [cut: {:,} more characters; full text in discrepancies.csv]"
    kept = cut_refs[: cut_refs.rindex("… [cut: ")]
    assert refs.startswith(kept) and len(kept) > 30_000
    assert cut_refs == kept + note.format(len(refs) - len(kept))
    assert len(cut_refs) <= EXCEL_STRING_UNITS
    assert whole == fits
    kept_emoji = cut_emoji[: cut_emoji.rindex("… [cut: ")]
    assert cut_emoji == kept_emoji + note.format(20_000 - len(kept_emoji))
    assert len(cut_emoji.encode("utf-16-le")) // 2 <= EXCEL_STRING_UNITS


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    length=st.integers(EXCEL_LIMIT - 3, EXCEL_LIMIT + 70_000),
    wide=st.integers(0, 3),
    place=st.sampled_from(["discrepancies.csv", "accepted-differences.csv"]),
)
def test_a_cut_text_is_its_start_and_a_true_note(length: int, wide: int, place: str) -> None:
    """Whatever the text's length and its characters' widths in UTF-16: a text over the limit
    is cut to its start and a note that counts exactly the characters left out and fits the
    cell; one within it is untouched."""
    from reconcile.outputs import CUT_NOTE, cut

    text = ("a" * wide + "\U0001f600") * (length // (wide + 2)) + "z" * (length % (wide + 2))
    written = cut(text, place)
    units = len(text.encode("utf-16-le")) // 2
    if units <= EXCEL_LIMIT:
        assert written == text
        return
    kept = written[: written.rindex("… [cut: ")]
    assert text.startswith(kept)
    assert written == kept + CUT_NOTE.format(len(text) - len(kept), place)
    assert EXCEL_LIMIT - 40 <= len(written.encode("utf-16-le")) // 2 <= EXCEL_LIMIT


def test_a_cells_format_code_comes_from_its_style(tmp_path: Path) -> None:
    """sheet_cells gives each numeric cell's value and number format: a custom code, a
    built-in one (XlsxWriter writes `h:mm` as built-in 20) or General for a cell without one."""
    from reconcile.load.tabular import sheet_cells

    path = _export(tmp_path / "f.xlsx", [(0.0625, "[h]:mm"), (0.0625, "h:mm"), (2.5, "General")])
    cells = sheet_cells(path, "Lines", QUANTITY, {2, 3, 4})
    assert [(c.value, c.format) for _, c in sorted(cells.items())] == [
        ("0.0625", "[h]:mm"),
        ("0.0625", "h:mm"),
        ("2.5", "General"),
    ]


ORGANIZATION = AUTOTASK_GRID_HEADER.index("Organization Name")


def _hidden_rows_export(
    path: Path, hidden: list[bool], titles: int, filtered: bool, spelling: str
) -> Path:
    """An Autotask grid export below `titles` title rows (the first one hidden), one line per
    entry of `hidden`, those marked hidden in Excel: by an AutoFilter on Organization Name
    (showing the other rows' clients) or by hand; then a hidden blank row. `spelling` is how
    the sheet's XML writes the attribute (`1` as Excel does, or xsd:boolean's `true`)."""
    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"created": datetime(2026, 11, 1)})
    sheet = book.add_worksheet("Lines")
    for row in range(titles):
        sheet.write(row, 0, "Billing Items" if row == 0 else "Run 11/30/2026 09:14")
    if titles:
        sheet.set_row(0, None, None, {"hidden": True})
    sheet.write_row(titles, 0, AUTOTASK_GRID_HEADER)
    for i, _ in enumerate(hidden, 1):
        line = [str(1000 + i), "INV-1", "11/13/2026", str(i), f"Client {i}", "Work", "1"]
        sheet.write_row(titles + i, 0, [*line, "85.00", "85.00", "0.00"])
    shown = [f"Client {i}" for i, h in enumerate(hidden, 1) if not h]
    if filtered:
        sheet.autofilter(titles, 0, titles + len(hidden), len(AUTOTASK_GRID_HEADER) - 1)
        sheet.filter_column_list(ORGANIZATION, shown or ["Nobody"])
    for i, h in enumerate([*hidden, True], 1):
        if h:
            sheet.set_row(titles + i, None, None, {"hidden": True})
    book.close()
    if spelling != "1":
        import zipfile

        member = "xl/worksheets/sheet1.xml"
        with zipfile.ZipFile(path) as source:
            parts = {name: source.read(name) for name in source.namelist()}
        parts[member] = parts[member].replace(b'hidden="1"', f'hidden="{spelling}"'.encode())
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
            for name, data in parts.items():
                target.writestr(name, data)
    return path


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hidden=st.lists(st.booleans(), min_size=1, max_size=12),
    titles=st.integers(0, 2),
    filtered=st.booleans(),
    spelling=st.sampled_from(["1", "true"]),
)
def test_hidden_rows_are_read_and_named_in_a_warning(
    tmp_path_factory: pytest.TempPathFactory,
    hidden: list[bool],
    titles: int,
    filtered: bool,
    spelling: str,
) -> None:
    """Rows hidden in Excel (filtered out or hidden by hand) are in the file: every line is
    loaded, and the load warns how many lines are hidden and which Excel rows (the first five),
    never counting a hidden title row above the header or a hidden blank row."""
    path = tmp_path_factory.mktemp("h") / "billing.xlsx"
    (raw,) = read_inputs([_hidden_rows_export(path, hidden, titles, filtered, spelling)], None)
    batches = list(normalise(raw, Settings(cycle="2026-11", currency="GBP")))
    assert sum(b.lines.height for b in batches) == len(hidden)
    rows = [titles + 1 + i for i, h in enumerate(hidden, 1) if h]
    about = [w for w in raw.warnings if "in Excel" in w]
    if not rows:
        assert about == []
        return
    (warning,) = about
    named = ", ".join(map(str, rows[:5])) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    counted = (
        "1 row of sheet 'Lines' is" if len(rows) == 1 else f"{len(rows)} rows of sheet 'Lines' are"
    )
    how = "filtered out by the sheet's AutoFilter or hidden" if filtered else "hidden"
    assert warning.startswith(f"billing.xlsx: {counted} {how} in Excel (row")
    assert f" {named}) and w" in warning and "read with the others" in warning


def _as_calculated(path: Path) -> Path:
    """The workbook without XlsxWriter's request to recalculate on opening, as Excel saves one
    it calculated: its formulas' cached values are then results, as in a real export."""
    import zipfile

    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(b' fullCalcOnLoad="1"', b"")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in parts.items():
            target.writestr(name, data)
    return path


def _lines_and_reasons(path: Path, currency: str = "GBP") -> tuple[pl.DataFrame, dict[int, str]]:
    """(the loaded lines' row_number, invoice_number, client_id, net_amount; reasons per
    quarantined row), the export's currency `currency`."""
    (raw,) = read_inputs([path], None)
    batches = list(normalise(raw, Settings(cycle="2026-11", currency=currency)))
    lines = pl.concat([b.lines for b in batches])
    rejected = pl.concat([b.rejected for b in batches])
    quarantined = rejected.filter(pl.col("disposition") == "quarantined")
    return (
        lines.select("row_number", "invoice_number", "client_id", "net_amount"),
        dict(zip(quarantined["row_number"], quarantined["reasons"], strict=True)),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    errors=st.dictionaries(
        st.integers(1, 6),
        st.tuples(st.sampled_from(AUTOTASK_GRID_HEADER), st.sampled_from(EXCEL_ERRORS[:7])),
        max_size=4,
    )
)
def test_an_error_cell_quarantines_its_row_as_in_a_csv(
    tmp_path_factory: pytest.TempPathFactory, errors: dict[int, tuple[str, str]]
) -> None:
    """A formula that failed (#N/A of a lookup, #REF! of a deleted reference, ...) is saved as
    an error cell, which fastexcel reads as empty: a line with no client, a tax 'not stated',
    an inactive flag read as false. Its row is quarantined naming the column and the error,
    as the same cell saved to CSV is; the other lines load."""
    path = tmp_path_factory.mktemp("e") / "billing.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Lines")
    sheet.write_row(0, 0, AUTOTASK_GRID_HEADER)
    for row in range(1, 7):
        line = [str(1000 + row), "INV-1", "11/13/2026", "571", "Acme", "Work", "1"]
        sheet.write_row(row, 0, [*line, "85.00", "85.00", "17.00"])
    for row, (column, error) in errors.items():
        sheet.write_formula(row, AUTOTASK_GRID_HEADER.index(column), "=NA()", None, error)
    book.close()
    lines, reasons = _lines_and_reasons(_as_calculated(path))
    assert sorted(reasons) == sorted(errors)
    assert sorted(lines["row_number"]) == [r for r in range(1, 7) if r not in errors]
    for row, (column, error) in errors.items():
        assert f"column '{column}': Excel's error value '{error}'" in reasons[row]


INVOICE_WIDE = ["Invoice Number", "Invoice Date", "Organization ID", "Organization Name"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=5),
    merged=st.sets(st.sampled_from(INVOICE_WIDE), min_size=1),
    amount_merged=st.booleans(),
)
def test_cells_merged_down_an_invoice_are_each_of_its_lines(
    tmp_path_factory: pytest.TempPathFactory,
    sizes: list[int],
    merged: set[str],
    amount_merged: bool,
) -> None:
    """A report laid out for reading merges an invoice's number, date and client down over its
    lines; Excel keeps the value in the range's first cell only, and every other line read as
    not invoiced (excluded). Each line now takes the merged value of such a column. A merged
    amount is never copied: a line's own amount read from another row would bill money twice,
    so the lines under the first stay without one and are quarantined."""
    path = tmp_path_factory.mktemp("m") / "billing.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Lines")
    sheet.write_row(0, 0, AUTOTASK_GRID_HEADER)
    columns = [AUTOTASK_GRID_HEADER.index(c) for c in merged]
    amount = AUTOTASK_GRID_HEADER.index("Extended Price")
    row, invoices, covered = 1, {}, set[int]()
    for k, size in enumerate(sizes):
        first, money = row, amount_merged and size > 1 and not covered
        for _ in range(size):
            line = [str(1000 + row), f"INV-{k}", f"11/{k + 10}/2026", str(500 + k), f"Client {k}"]
            line += ["Work", "1", "85.00", f"{80 + row}.00", "0.00"]
            # Excel keeps a merged range's value in its first cell; the others are empty.
            shown = columns + [amount] * money if row > first else []
            sheet.write_row(row, 0, [None if i in shown else v for i, v in enumerate(line)])
            invoices[row] = f"INV-{k}"
            row += 1
        for at in columns + [amount] * money if size > 1 else []:
            sheet.merge_range(first, at, row - 1, at, None)
        if money:
            covered = set(range(first + 1, row))
    book.close()
    lines, reasons = _lines_and_reasons(path)
    assert sorted(reasons) == sorted(covered)
    assert lines.sort("row_number").rows() == [
        (r, invoices[r], str(500 + int(invoices[r][4:])), Decimal(f"{80 + r}.00"))
        for r in sorted(invoices)
        if r not in covered
    ]


# Number formats as Excel writes them for a currency (locale tags, quoted literals, bare signs,
# accounting layouts), with the currency each writes; None: no currency.
CURRENCY_FORMATS = [
    ("[$€-x-euro2] #,##0.00", "€"),
    ("#,##0.00 [$€-407]", "€"),
    ("[$£-809]#,##0.00", "£"),
    ("[$$-409]#,##0.00_);([$$-409]#,##0.00)", "$"),
    ("#,##0.00 [$EUR]", "EUR"),
    ('"€"#,##0.00', "€"),
    ('#,##0.00" EUR"', "EUR"),
    ("€#,##0.00;[Red]-€#,##0.00", "€"),
    ("£#,##0.00", "£"),
    ('_-[$€-2]\\ * #,##0.00_-;\\-[$€-2]\\ * #,##0.00_-;_-[$€-2]\\ * "-"??_-;_-@_-', "€"),
    ("[$kr.-406] #,##0.00", "kr."),
    ("#,##0.00", None),
    ("0.00", None),
    ('#,##0.00" hrs"', None),
    ("[Red]#,##0.00;[Blue]-#,##0.00", None),
    ("[>=1000]#,##0.00;0.00", None),
]


@pytest.mark.parametrize(("code", "currency"), CURRENCY_FORMATS)
def test_the_currency_a_number_format_writes(code: str, currency: str | None) -> None:
    from reconcile.load.tabular import format_currency

    assert format_currency(code) == currency


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    formats=st.lists(st.sampled_from(CURRENCY_FORMATS), min_size=1, max_size=6),
    configured=st.sampled_from(["GBP", "EUR", "USD"]),
)
def test_an_amount_formatted_in_another_currency_is_quarantined(
    tmp_path_factory: pytest.TempPathFactory,
    formats: list[tuple[str, str | None]],
    configured: str,
) -> None:
    """A number formatted with a currency (a workbook whose clients are billed in two) is in
    that currency, as a CSV of the sheet shows it: an amount in another than the row's is
    quarantined (read as a plain number, euros loaded as pounds), one in the row's loads, and a
    currency the load cannot name (kr.) is quarantined as an amount it cannot read."""
    path = tmp_path_factory.mktemp("c") / "billing.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Lines")
    sheet.write_row(0, 0, AUTOTASK_GRID_HEADER)
    price = AUTOTASK_GRID_HEADER.index("Unit Price")
    for row, (code, _) in enumerate(formats, 1):
        line = [str(1000 + row), "INV-1", "11/13/2026", "571", "Acme", "Work", "2"]
        sheet.write_row(row, 0, line)
        money = book.add_format({"num_format": code})
        sheet.write_row(row, price, [42.5, 85.0, -17.25], money)
    book.close()
    dollar = {"USD": "$"}.get(configured)
    same = {configured, dollar, {"GBP": "£", "EUR": "€"}.get(configured), None}
    lines, reasons = _lines_and_reasons(path, configured)
    expected = [row for row, (_, currency) in enumerate(formats, 1) if currency in same]
    assert sorted(lines["row_number"]) == expected
    assert all(n == Decimal("85.00") for n in lines["net_amount"])
    for row, (_, currency) in enumerate(formats, 1):
        if row in expected:
            continue
        if currency == "kr.":
            assert "got '85 kr.'" in reasons[row] or "got '42.5 kr.'" in reasons[row]
        else:
            assert "column 'Extended Price': the amount is written in" in reasons[row]


# The columns of an Autotask export and the groups a report may head two rows of names with:
# a group's name merged across the columns it heads, above their own names.
TWO_ROW_COLUMNS = [*AUTOTASK_GRID_HEADER, "Service Period Start Date", "Service Period End Date"]
HEADER_GROUPS = {
    "Service Period": (10, ["Start Date", "End Date"]),
    "Invoice": (1, ["Number", "Date"]),
    "Amounts": (7, ["Unit Price", "Extended Price", "Total Tax"]),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.sets(st.sampled_from(sorted(HEADER_GROUPS)), min_size=1),
    titles=st.integers(0, 2),
    merged_down=st.booleans(),
    lines=st.integers(1, 4),
)
def test_a_header_of_two_rows_is_read_as_one(
    tmp_path_factory: pytest.TempPathFactory,
    groups: set[str],
    titles: int,
    merged_down: bool,
    lines: int,
) -> None:
    """A report heads some columns with a group's name merged across them ('Service Period'
    over 'Start Date' and 'End Date'), the others' names on the first row (merged down over
    the second, or not). Read as the first row alone, the grouped columns went unread without
    a word and the second row was excluded as a line not invoiced; each grouped column is now
    named by both rows (or by its own name where that alone is a column's: 'Amounts' over
    'Extended Price'), and every line loads with its service period and amounts."""
    path = tmp_path_factory.mktemp("t") / "billing.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Lines")
    for row in range(titles):
        sheet.write(row, 0, "Billing items" if row == 0 else "Run 11/30/2026 09:14")
    top = titles
    grouped = {
        start + k: own for name in groups for k, own in enumerate(HEADER_GROUPS[name][1])
        for start in [HEADER_GROUPS[name][0]]
    }  # fmt: skip
    for name in groups:
        start, own = HEADER_GROUPS[name]
        sheet.merge_range(top, start, top, start + len(own) - 1, name)
        sheet.write_row(top + 1, start, own)
    for column, name in enumerate(TWO_ROW_COLUMNS):
        if column in grouped:
            continue
        if merged_down:
            sheet.merge_range(top, column, top + 1, column, name)
        else:
            sheet.write(top, column, name)
    for n in range(1, lines + 1):
        line = [str(1000 + n), "INV-1", "11/13/2026", "571", "Acme", "Work", "2", "42.50"]
        line += [f"{80 + n}.00", "17.00", "11/01/2026", "11/30/2026"]
        sheet.write_row(top + 1 + n, 0, line)
    book.close()
    (raw,) = read_inputs([path], None)
    batches = list(normalise(raw, Settings(cycle="2026-11", currency="GBP")))
    loaded = pl.concat([b.lines for b in batches])
    assert sum(b.rejected.height for b in batches) == 0
    assert loaded.select("row_number", "net_amount", "period_start", "period_end").rows() == [
        (n, Decimal(f"{80 + n}.00"), date(2026, 11, 1), date(2026, 11, 30))
        for n in range(1, lines + 1)
    ]
    assert raw.dialect["header_row"] == str(titles + 2)
