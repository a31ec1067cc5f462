"""CSV and XLSX exports of either platform: one header row (not always the first), one line per
row."""

from __future__ import annotations

import functools
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING

import defusedxml.ElementTree as DefusedET
import polars as pl
from defusedxml import DefusedXmlException

from reconcile import amounts
from reconcile.errors import InputError
from reconcile.load import artefacts
from reconcile.load.base import (
    CONSUMPTION_SHOWN,
    CUSTOMER_CURRENCY,
    CUSTOMER_MONEY,
    EVIDENCE,
    EXCEL_TEXT_PATTERN,
    EXCLUDE,
    FLAGS,
    FOREIGN,
    HEADER_SEARCH_ROWS,
    HOME_TWIN,
    PROBLEM,
    ROW,
    SKIP,
    VOCABULARY,
    RawFrame,
    consumption_warning,
    detect_platform,
    find_header,
    header_fit,
    map_headers,
    normalise_header,
    refuse_headerless,
    unread_money,
    unwrap_excel_text,
)
from reconcile.load.dialect import (
    Dialect,
    find_ragged_row,
    line_of,
    short_last_record,
    sniff,
    utf8_source,
)
from reconcile.load.workbook import DAMAGED_ARCHIVE, OVERLAP, check_workbook

if TYPE_CHECKING:
    import fastexcel

GRID_EXPORT_LIMIT = 5000  # Autotask grid exports stop at this many rows
# polars reads a CSV file in chunks of 32 MiB, several ahead of the rows asked for, and hands
# on what they parse into: reads of a large export then hold far more than a batch. Smaller
# chunks keep a read's memory flat in the file's size at the same speed. The setting is polars'
# own, read when a scan starts; a value already in the environment is left as it is.
CSV_CHUNK_SETTING = "POLARS_CSV_CHUNK_SIZE"
CSV_CHUNK_BYTES = 4 << 20
# How a true/false flag is written: English, SQL Server's bit (1/0), Access's -1, PostgreSQL's
# t/f, and Excel's TRUE/FALSE as a non-English Excel writes them when it saves a CSV (German,
# French, Dutch, Italian, Spanish, Portuguese, Swedish, Danish, Norwegian, Finnish, Polish).
TRUE_WORDS = (
    "true", "1", "yes", "y", "-1", "t", "wahr", "vrai", "waar", "vero", "verdadero",
    "verdadeiro", "sant", "sand", "sann", "tosi", "prawda",
)  # fmt: skip
FALSE_WORDS = (
    "false", "0", "no", "n", "f", "falsch", "faux", "onwaar", "falso", "falskt", "falsk",
    "usann", "epätosi", "fałsz",
)  # fmt: skip


def read_csv(path: Path, claimed: str | None) -> RawFrame:
    """A CSV (or TSV, or Excel "Unicode Text") export as a RawFrame.

    The header is found below any `sep=` line, title rows or group-header row (dialect.sniff);
    ROW counts data rows from the record below it, blank rows included. Raises InputError for
    a file that is not a readable export.
    """
    dialect = sniff(path)
    headers = list(dialect.header)
    positional = [f"c{i}" for i in range(len(headers))]
    os.environ.setdefault(CSV_CHUNK_SETTING, str(CSV_CHUNK_BYTES))
    frame = pl.scan_csv(
        utf8_source(path, dialect),
        separator=dialect.separator,
        has_header=True,
        skip_lines=dialect.header_line - 1,
        eol_char=dialect.eol,
        new_columns=positional,
        infer_schema=False,
        empty_string_is_null=True,
        row_index_name=ROW,
        row_index_offset=1,
        raise_if_empty=False,
        glob=False,  # 'billing [1].csv' is a file name, not a pattern
    )

    def on_error(exc: Exception) -> InputError:
        return _unreadable(path, dialect, headers, exc)

    short = short_last_record(path, dialect, len(headers))
    problems = None
    if short is not None:
        last = _collect(frame.select(pl.len()), on_error).item()
        problems = (
            pl.when(pl.col(ROW) == last)
            .then(pl.lit(f"the row is cut off: it has {short} of {len(headers)} fields"))
            .otherwise(None)
        )
    return _to_raw(
        path,
        claimed,
        headers,
        frame,
        dialect.describe(),
        "csv",
        problems,
        on_error,
        excel_text=dialect.excel_text,
    )


def _collect(query: pl.LazyFrame, on_error: Callable[[Exception], InputError]) -> pl.DataFrame:
    try:
        return query.collect()
    except pl.exceptions.PolarsError as exc:
        raise on_error(exc) from None


def read_xlsx(path: Path, claimed: str | None) -> RawFrame:
    """An XLSX export as a RawFrame: the visible sheet holding a header row (a "Read me" cover
    sheet is passed over), read from the row below that header (_pick_sheet).

    ROW counts data rows from the row below the header (Excel row header_row + ROW); blank rows
    are kept and marked SKIP; formula cells without a trustworthy saved value mark their row
    PROBLEM. A hidden sheet with a header row is not read, and the load warns of it; hidden
    rows of the sheet read (by a filter or by hand) are read, and the load warns of them. Raises
    InputError for a workbook that cannot be read or holds no rows, one with lines on several
    visible sheets, or one whose only lines are on hidden sheets.
    """
    import fastexcel  # only when a workbook is read

    check_workbook(path)
    try:
        sheet, index, hidden = _pick_sheet(path, fastexcel.read_excel(str(path)))
    except InputError:
        raise
    except Exception as exc:  # fastexcel raises its own error types for damaged workbooks
        raise _unreadable_workbook(path, exc) from None
    grid = sheet.grid
    if grid.height == 0:
        raise InputError(str(path), "the worksheet is empty", expected="a header row and data rows")
    erring, merges = scan_sheet(path, sheet.name)
    headers, index = _header_names(grid, index, merges, sheet.columns)
    positional = [f"c{i}" for i in range(len(headers))]
    frame = (
        grid.slice(index + 1)
        .rename(dict(zip(grid.columns, positional, strict=True)))
        .with_row_index(ROW, offset=1)
    )
    header_row = index + 1  # Excel's row number of the header
    table = _Table(path, sheet, header_row, headers, claimed)
    frame, merged = _with_sheet_cells(table, frame, erring, merges)
    frame, problems = _without_unsaved_formulas(path, sheet.name, header_row, frame, sheet.columns)
    frame, timed = _hours_of_time_cells(table, frame)
    problems = _either(problems, timed)
    dialect = {"workbook": "xlsx", "sheet": sheet.name, "header_row": str(header_row)}
    raw = _to_raw(path, claimed, headers, frame.lazy(), dialect, "xlsx", problems, None)
    passed_over = tuple(
        f"hidden sheet {name!r} has a header row and was not read: only visible sheets are "
        f"(sheet {sheet.name!r} was)"
        for name in hidden
    )
    rows_hidden = hidden_rows_warning(path, sheet.name, header_row)
    return replace(raw, warnings=raw.warnings + passed_over + rows_hidden + merged)


# Fields that hold what a whole invoice shares: a cell merged down over an invoice's lines in
# one of their columns is each line's (Excel shows it once for them all). A line's own fields
# (its id, item, quantity, price and amounts) are never taken from another row.
INVOICE_FIELDS = frozenset(
    {
        "invoice_number", "invoice_date", "client_id", "client_name", "contract_id",
        "contract_name", "contract_type", "currency", "period_start", "period_end",
        "xref_client_id", "xref_contract_id",
    }
)  # fmt: skip


def _header_names(
    grid: pl.DataFrame, index: int, merges: list[Merge], columns: list[int]
) -> tuple[list[str], int]:
    """(the header's column names, the grid index of its last row). A header of two rows, a
    group's name merged across the columns it heads ('Service Period' over two) above their own
    names ('Start Date', 'End Date'), is read as one: each such column is named by both
    ('Service Period Start Date'), or by its own name where only that is a known column name
    ('Amounts' over 'Extended Price'), the others by the first row (merged down over the
    second).
    Read as the first row alone, the grouped columns went unread without a word and the
    second row was taken for a line. Else the row at `index` alone."""
    top = [unwrap_excel_text(_text(v)).strip() for v in grid.row(index)]
    groups = [
        m for m in merges if m.first == m.last == index + 1 and m.right > m.left
    ]  # Excel row index + 1 is the header's
    if not groups or index + 1 >= grid.height:
        return top, index
    below = [unwrap_excel_text(_text(v)).strip() for v in grid.row(index + 1)]
    grouped = {
        i: m for i, absolute in enumerate(columns) for m in groups if m.left <= absolute <= m.right
    }
    if any(text for i, text in enumerate(below) if i not in grouped) or not any(
        below[i] for i in grouped
    ):
        return top, index  # the row below is no second header row: names outside the groups
    position = {absolute: i for i, absolute in enumerate(columns)}
    names = list(top)
    known = set().union(*VOCABULARY.values())
    for i, m in grouped.items():
        group = top[position[m.left]] if m.left in position else ""
        both = f"{group} {below[i]}".strip()
        own = normalise_header(below[i]) in known and normalise_header(both) not in known
        names[i] = (below[i] if own else both) if below[i] else top[i]
    return names, index + 1


@dataclass(frozen=True)
class _Table:
    """Where a workbook's lines are: the file, its sheet, the Excel row of the header, the
    header's names and --platform (None: detected)."""

    path: Path
    sheet: _Sheet
    header_row: int
    headers: list[str]
    claimed: str | None

    @functools.cached_property
    def mapping(self) -> dict[str, str]:
        """The raw fields' columns (map_headers of the detected platform)."""
        file = str(self.path)
        return map_headers(file, detect_platform(file, self.headers, self.claimed), self.headers)


def _with_sheet_cells(
    table: _Table, frame: pl.DataFrame, erring: bool, merges: list[Merge]
) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """The data rows with what fastexcel does not read of their cells, from the sheet's XML
    (scan_sheet's `erring` and `merges`, cells_apart): an error cell (#N/A, #REF!: §18.3.1.4
    `t="e"`), read as empty, holds its error's text, which the load then quarantines as it
    does in a CSV (load.artefacts);
    a number in a money column formatted with a currency (`[$€-x-euro2] #,##0.00`) is written
    with it (`1664.4 €`), as a CSV of the sheet shows it, so that the load quarantines an amount
    in another currency than the row's (read as a plain number, euros loaded as pounds);
    a cell of a range merged down over several rows (§18.3.1.55 <mergeCell>) in a column of
    INVOICE_FIELDS holds the range's value (Excel shows it once, in the range's first cell,
    and keeps the others empty; read so, every line but the first had no invoice and was
    excluded as not invoiced). Also returns the warning naming the columns so read."""
    path, sheet, header_row, headers = table.path, table.sheet, table.header_row, table.headers
    mapping = table.mapping
    position = {absolute: i for i, absolute in enumerate(sheet.columns)}
    money = {sheet.columns[headers.index(mapping[f])] for f in MONEY_FIELDS if f in mapping}
    errors, currencies = cells_apart(path, sheet.name, money, erring)
    invoice_wide = {column for field, column in mapping.items() if field in INVOICE_FIELDS}
    filled: dict[int, dict[int, int]] = {}  # column: {row covered: the range's first row}
    for merge in merges:
        at = position.get(merge.left)
        if at is None or merge.first <= header_row or headers[at] not in invoice_wide:
            continue
        for row in range(merge.first + 1, merge.last + 1):
            filled.setdefault(at, {})[row - header_row] = merge.first - header_row
    cells: dict[int, dict[int, str]] = {}  # column: {row: its error}
    for row, column, error in errors:
        if column in position and row > header_row:
            cells.setdefault(position[column], {})[row - header_row] = error
    written: dict[int, dict[int, str]] = {}  # column: {row: the currency its number is in}
    for row, column, currency in currencies:
        if row > header_row:
            written.setdefault(position[column], {})[row - header_row] = currency
    if not cells and not filled and not written:
        return frame, ()
    rows = pl.col(ROW).cast(pl.Int64)
    frame = frame.with_columns(
        pl.format(
            "{} {}",
            pl.col(f"c{i}"),
            rows.replace_strict(currency_of, default=None, return_dtype=pl.String),
        )
        .fill_null(pl.col(f"c{i}"))
        .alias(f"c{i}")
        for i, currency_of in written.items()
    )
    frame = frame.with_columns(
        rows.replace_strict(
            cells.get(i, {}), default=pl.col(f"c{i}"), return_dtype=pl.String
        ).alias(f"c{i}")
        for i in set(cells) | set(filled)
    )
    if filled:
        # Data row N is the frame's row N - 1 (numbered from 1, none left out yet).
        frame = frame.with_columns(
            rows.replace_strict(
                {row: frame[f"c{i}"][first - 1] for row, first in covered.items()},
                default=pl.col(f"c{i}"),
                return_dtype=pl.String,
            ).alias(f"c{i}")
            for i, covered in filled.items()
        )
        named = ", ".join(repr(headers[i]) for i in sorted(filled))
        return frame, (
            f"{path.name}: cells merged down over several rows in {named} of sheet "
            f"{sheet.name!r}: each row is read with the merged cell's value (Excel shows it "
            "once, for all of them)",
        )
    return frame, ()


def _without_unsaved_formulas(
    path: Path, sheet: str, header_row: int, frame: pl.DataFrame, columns: list[int]
) -> tuple[pl.DataFrame, pl.Expr | None]:
    """Cells holding a formula without a trustworthy saved value are made empty (the value is
    unknown, never a cached 0) and their rows get a PROBLEM naming the cells."""
    cells = [(r - header_row, c, why) for r, c, why in unsaved_formulas(path, sheet)]
    cells = [(row, column, why) for row, column, why in cells if row > 0]
    if not cells:
        return frame, None
    reasons: dict[int, list[str]] = {}
    emptied: dict[str, list[int]] = {}
    position = {absolute: f"c{i}" for i, absolute in enumerate(columns)}
    for row, column, why in cells:
        reasons.setdefault(row, []).append(why)
        if column in position:
            emptied.setdefault(position[column], []).append(row)
    frame = frame.with_columns(
        pl.when(pl.col(ROW).is_in(rows)).then(None).otherwise(pl.col(name)).alias(name)
        for name, rows in emptied.items()
    )
    problem = (
        pl.col(ROW)
        .cast(pl.Int64)
        .replace_strict(
            {row: "; ".join(whys) for row, whys in reasons.items()},
            default=None,
            return_dtype=pl.String,
        )
    )
    return frame, problem


def _either(first: pl.Expr | None, second: pl.Expr | None) -> pl.Expr | None:
    """A row's PROBLEM from two sources (each null where it finds none): both joined by "; "."""
    if first is None or second is None:
        return first if second is None else second
    return (
        pl.when(first.is_null())
        .then(second)
        .when(second.is_null())
        .then(first)
        .otherwise(pl.format("{}; {}", first, second))
    )


# How fastexcel writes a number formatted as a date, a time or a duration when the sheet is
# read as text: the instant that many days after Excel's day zero, to the millisecond.
CALAMINE_DATETIME = r"^-?\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$"
MS_PER_DAY = 86_400_000
MS_PER_HOUR_PLACE = 360  # 0.0001 hour: a quantity's last place (model.QTY has 4)


def _hours_of_time_cells(table: _Table, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Expr | None]:
    """The quantity column's cells that hold a number formatted as a time or a duration
    (1:30 in `[h]:mm`, `h:mm` or `[h]:mm:ss`, hours as an export or a person formatted them),
    as hours: Excel keeps such a cell as days (1:30 is 0.0625), and fastexcel reads it as an
    instant (1899-12-31 01:30:00), which no amount reads. Each is replaced by its hours
    exactly (`1.5`: the day count from the sheet's XML, to the millisecond, Excel's finest
    time) when they fit a quantity's four places; a duration that does not (0:20 is
    0.3333… hours) and a number formatted as a date (5 shown as 1900-01-05: days, or units?)
    are emptied and their rows get a PROBLEM naming the cell and what was expected. Rows
    without such cells are untouched and the sheet's XML is not read (the usual case)."""
    path, sheet, header_row, headers = table.path, table.sheet, table.header_row, table.headers
    label = table.mapping.get("quantity")
    if label is None:
        return frame, None
    position = headers.index(label)
    name = f"c{position}"
    timed = frame.filter(pl.col(name).str.contains(CALAMINE_DATETIME))
    if timed.is_empty():
        return frame, None
    rows = timed[ROW].to_list()
    column = sheet.columns[position]
    cells = sheet_cells(path, sheet.name, column, {header_row + row for row in rows})
    hours: dict[int, str] = {}
    reasons: dict[int, str] = {}
    for row, shown in zip(rows, timed[name].to_list(), strict=True):
        cell = cells.get(header_row + row)
        if cell is None or cell.value is None:
            continue  # a text cell that reads so: the amount reader refuses it as written
        ref = f"{_column_letters(column)}{header_row + row}"
        read = time_cell_hours(cell, shown)
        if isinstance(read, Decimal):
            hours[row] = format(read, "f")
        else:
            reasons[row] = f"column '{label}': cell {ref} {read}"
    frame = frame.with_columns(
        pl.when(pl.col(ROW).is_in(list(reasons)))
        .then(None)
        .otherwise(
            pl.col(ROW)
            .cast(pl.Int64)
            .replace_strict(hours, default=pl.col(name), return_dtype=pl.String)
        )
        .alias(name)
    )
    if not reasons:
        return frame, None
    problem = (
        pl.col(ROW).cast(pl.Int64).replace_strict(reasons, default=None, return_dtype=pl.String)
    )
    return frame, problem


@dataclass(frozen=True)
class Cell:
    """A numeric cell as the sheet's XML holds it: its value as written (`<v>`, days for a
    date or time) and its number format's code ("General" when it has none)."""

    value: str | None
    format: str


def time_cell_hours(cell: Cell, shown: str) -> Decimal | str:
    """A cell formatted as a time or a duration, as hours: its days x 24, exact at a
    quantity's four places (Decimal, without trailing zeros). Otherwise why not, to finish
    "cell F3 …" (`shown`: the cell as fastexcel read it): a date format, or hours with more
    places than four."""
    if not is_time_format(cell.format):
        return (
            f"holds the number {cell.value} formatted as a date ({cell.format}), read as "
            f"'{shown}': expected hours or units as a number, or hours formatted as a time "
            "such as [h]:mm; format the column as a number in Excel and export it again"
        )
    ms = int((Decimal(cell.value or "0") * MS_PER_DAY).to_integral_value(ROUND_HALF_EVEN))
    if ms % MS_PER_HOUR_PLACE == 0:
        return Decimal(ms // MS_PER_HOUR_PLACE).scaleb(-4).normalize()
    return (
        f"holds the duration {_clock(ms)} ({cell.format}), {Decimal(ms) / 3_600_000:.6f}… "
        "hours: more places than a quantity's four, so no exact number of hours; "
        "write the hours as a number (such as 0.3333) in Excel and export it again"
    )


def _clock(ms: int) -> str:
    """Milliseconds as Excel's [h]:mm:ss(.000) shows them: 5400000 -> '1:30:00'."""
    sign, ms = ("-" if ms < 0 else ""), abs(ms)
    seconds, fraction = divmod(ms, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    tail = f".{fraction:03d}" if fraction else ""
    return f"{sign}{hour}:{minute:02d}:{second:02d}{tail}"


# Excel's built-in number formats General and those that are dates or times (ECMA-376 part 1,
# §18.8.30); the other built-in ids fastexcel reads as dates are locale dates (27-36, 50-58).
BUILTIN_FORMATS = {
    0: "General",
    14: "mm-dd-yy",
    15: "d-mmm-yy",
    16: "d-mmm",
    17: "mmm-yy",
    18: "h:mm AM/PM",
    19: "h:mm:ss AM/PM",
    20: "h:mm",
    21: "h:mm:ss",
    22: "m/d/yy h:mm",
    45: "mm:ss",
    46: "[h]:mm:ss",
    47: "mmss.0",
}
# What a format code shows besides its date and time parts: quoted text, escaped and padding
# characters, and bracketed colours, conditions and locales (elapsed [h], [mm], [ss] stay).
FORMAT_LITERALS = r'"[^"]*"|\\.|_.|\*.|\[(?![hms]+\])[^\]]*\]|(?i:am/pm|a/p)'


def is_time_format(code: str) -> bool:
    """Whether a number format shows a time of day or a duration only (h:mm, [h]:mm:ss,
    mm:ss, h:mm AM/PM): hours, minutes or seconds, no year, month name or day. Its first
    section is looked at (the one for positive numbers)."""
    section = re.sub(FORMAT_LITERALS, "", code).split(";")[0].lower()
    return not re.search(r"[ydegb]", section) and bool(re.search(r"h|s|\[m+\]", section))


def sheet_cells(path: Path, sheet: str, column: int, rows: set[int]) -> dict[int, Cell]:
    """The numeric cells of one column (0-based index) in the given Excel rows, by row: value
    and number format, from the sheet's XML and the workbook's styles (§18.3.1.4 <c>, its `s`
    an index into §18.8.10 cellXfs, whose numFmtId is a built-in or a §18.8.31 numFmt). Text,
    boolean and error cells are left out. Raises InputError for a damaged workbook."""
    try:
        with zipfile.ZipFile(path) as book:
            member = _sheet_member(book, sheet)
            if member is None:
                return {}
            formats = _cell_formats(book)
            found: dict[int, Cell] = {}
            with book.open(member) as stream:
                for row, at, _, node in _sheet_cells_of(stream):
                    if at != column or row not in rows or node.get("t", "n") != "n":
                        continue
                    value = node.find(f"{{{SHEET_NS}}}v")
                    style = int(node.get("s") or 0)
                    code = formats[style] if style < len(formats) else "General"
                    found[row] = Cell(None if value is None else value.text, code)
            return found
    except UNREADABLE_SHEET as exc:
        raise _unreadable_workbook(path, exc) from None


def _cell_formats(book: zipfile.ZipFile) -> list[str]:
    """Each cell style's number format code (cellXfs in xl/styles.xml, in order)."""
    try:
        styles = DefusedET.fromstring(book.read("xl/styles.xml"), forbid_dtd=True)
    except KeyError:
        return []
    custom = {
        int(f.get("numFmtId", "0")): f.get("formatCode", "")
        for f in styles.iter(f"{{{SHEET_NS}}}numFmt")
    }
    xfs = styles.find(f"{{{SHEET_NS}}}cellXfs")
    codes = []
    for xf in [] if xfs is None else xfs.iter(f"{{{SHEET_NS}}}xf"):
        number = int(xf.get("numFmtId", "0"))
        codes.append(custom.get(number) or BUILTIN_FORMATS.get(number, f"built-in format {number}"))
    return codes


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _unreadable_workbook(path: Path, exc: Exception) -> InputError:
    return InputError(
        str(path),
        "the workbook cannot be read",
        expected="an .xlsx file saved by Excel or exported by the PSA",
        got=(str(exc).splitlines() or [type(exc).__name__])[0],
    )


@dataclass(frozen=True)
class _Sheet:
    """One worksheet read whole: every cell as text (`grid`, one column per sheet column) and
    each column's 0-based index in the sheet (`columns`)."""

    name: str
    grid: pl.DataFrame
    columns: list[int]
    visible: bool


def _load(reader: fastexcel.ExcelReader, name: str) -> _Sheet:
    """The whole sheet: fastexcel parses all of it whatever rows are asked for (n_rows and
    skip_rows only cut the parsed cells), so a sheet is loaded once and its top rows read
    from that."""
    loaded = reader.load_sheet(name, header_row=None, skip_rows=0, dtypes="string")
    columns = [c.absolute_index for c in loaded.selected_columns]
    return _Sheet(name, loaded.to_polars(), columns, loaded.visible == "visible")


def _pick_sheet(path: Path, reader: fastexcel.ExcelReader) -> tuple[_Sheet, int, list[str]]:
    """(the sheet, its header row index, the hidden sheets with a header row, passed over):
    the visible sheet with a complete header row, else the first visible one with a likely
    one, else the first sheet's first row (detection then says why). Every sheet is looked
    at: an export split over sheets (grid exports stop at a few thousand rows a sheet) read
    one sheet only would lose the others' lines, and a hidden sheet (an older copy) read in
    place of the visible one would load the wrong lines. InputError when several visible
    sheets hold a complete header, when a visible sheet without one holds rows as wide as the
    lines (_refuse_headerless_rows), or only hidden sheets hold one."""
    complete: list[tuple[_Sheet, int]] = []
    likely: tuple[_Sheet, int] | None = None
    hidden: list[str] = []
    headerless: list[tuple[str, int]] = []  # visible sheets without a header: widest row
    for name in reader.sheet_names:
        sheet = _load(reader, name)
        top = _top_rows(sheet.grid)
        rows = [
            [unwrap_excel_text(_text(v)).strip() for v in top.row(i)] for i in range(top.height)
        ]
        index = find_header(rows)
        if index is None:
            if sheet.visible:
                headerless.append((name, max((sum(map(bool, r)) for r in rows), default=0)))
            continue
        if not sheet.visible:
            hidden.append(name)
        elif header_fit(rows[index])[1]:
            complete.append((sheet, index))
        else:
            likely = likely or (sheet, index)
    if len(complete) > 1:
        listed = ", ".join(repr(s.name) for s, _ in complete)
        raise InputError(
            str(path),
            f"invoice lines are on {len(complete)} sheets ({listed}): a workbook is read one "
            "sheet at a time, and reading one would leave out the others' lines",
            expected="the lines on one sheet",
            hint="Save each sheet as a workbook (or CSV) of its own and load them together, "
            "or copy the lines onto one sheet.",
        )
    found = complete[0] if complete else likely
    if found:
        _refuse_headerless_rows(path, found[0], found[1], headerless)
        return found[0], found[1], hidden
    if hidden:
        raise InputError(
            str(path),
            "the only sheets with a header row are hidden "
            f"({', '.join(repr(n) for n in hidden)}), and hidden sheets are not read",
            hint="Unhide the sheet in Excel if it holds the lines to load, and save the file.",
        )
    names = reader.sheet_names
    if not names:
        raise ValueError("the workbook has no worksheets")
    first = _load(reader, names[0])
    return first, _first_filled_row(_top_rows(first.grid)), hidden


def _top_rows(grid: pl.DataFrame) -> pl.DataFrame:
    """The rows of a sheet the header is looked for in: down to its HEADER_SEARCH_ROWS-th row
    that is not blank (find_header passes blank ones over without counting them, as in a CSV:
    a report saved with 40 empty rows above its header was refused for want of one)."""
    if not grid.width:
        return grid
    filled = grid.select(
        pl.any_horizontal(pl.all().cast(pl.String).str.strip_chars().fill_null("") != "")
    ).to_series()
    found = filled.arg_true().head(HEADER_SEARCH_ROWS)
    return grid.head(int(found[-1]) + 1 if found.len() else 0)


def _refuse_headerless_rows(
    path: Path, sheet: _Sheet, index: int, headerless: list[tuple[str, int]]
) -> None:
    """InputError when another visible sheet has no header but rows nearly as wide as the
    header of the sheet read (`headerless`: name, its widest row's filled cells): the lines
    go on there (an export pasted onto a second sheet without its header), and reading one
    sheet would leave them out without a word. A cover or notes sheet has narrower rows."""
    width = sum(bool(_text(v).strip()) for v in sheet.grid.row(index))
    wide = [name for name, cells in headerless if cells >= max(3, width - 1)]
    if wide:
        raise InputError(
            str(path),
            f"sheet {wide[0]!r} has no header row but rows as wide as the lines on sheet "
            f"{sheet.name!r}: the lines may go on there, and a workbook is read one sheet at "
            "a time",
            expected="the lines on one sheet, under its header",
            hint="Copy those rows under the lines on the first sheet (or give the sheet the "
            "same header and save each sheet as a file of its own), or delete the sheet if "
            "it holds no lines.",
        )


def _first_filled_row(top: pl.DataFrame) -> int:
    for i in range(top.height):
        if any(_text(v).strip() for v in top.row(i)):
            return i
    return 0


def _unreadable(path: Path, dialect: Dialect, headers: list[str], exc: Exception) -> InputError:
    ragged = find_ragged_row(path, dialect)
    if ragged is not None:
        row, fields, expected = ragged
        if _header_follows(fields, expected, headers):
            return InputError(
                str(path),
                "the header of another export follows this row's last column on the same line: "
                "exports joined without a line end between them (the first does not end in one)",
                row=row,
                column=headers[-1],
                expected=f"{expected} fields, then a line end",
                got=dialect.separator.join(fields[expected:]),
                hint="Load each export as its own file, or end the first one with a line end "
                "before joining them.",
            )
        return InputError(
            str(path),
            f"the row has {len(fields)} fields but the header (line {dialect.header_line}) "
            f"has {expected}: values follow its last column",
            row=row,
            column=headers[-1] if headers else None,
            expected=f"{expected} fields separated by {dialect.separator_name}",
            got=dialect.separator.join(fields[expected:])
            if any(f.strip() for f in fields[expected:])
            else f"{len(fields) - expected} empty field(s) after the last column",
            hint="A value may contain an unquoted separator, or the file was damaged; "
            "export it again.",
        )
    bare_cr = None if dialect.cr_lines or dialect.encoding == "utf-16" else _first_bare_cr(path)
    if bare_cr is not None:
        return InputError(
            str(path),
            f"line {bare_cr} ends in a bare CR (a carriage return without a line feed) where "
            "the other lines end in LF or CRLF: the file mixes line ends (edited in two "
            "programs?), so its rows cannot be told apart",
            expected="one kind of line end throughout the file",
            hint="Save the file again from Excel, or from a text editor with one kind of line end.",
        )
    if "utf-8" in str(exc).lower() and dialect.encoding.startswith("utf-8"):
        data = path.read_bytes()
        try:
            data.decode(dialect.encoding)
        except UnicodeDecodeError as bad:
            line = line_of(data, bad.start)
            return InputError(
                str(path),
                f"byte 0x{data[bad.start]:02x} on line {line} (offset {bad.start}) is not "
                "UTF-8, which the text before it is: the file "
                "mixes encodings (a part saved as Windows-1252?)",
                expected="one encoding for the whole file",
                hint="Save the file again as CSV UTF-8 and load that.",
            )
    return InputError(
        str(path),
        "the file cannot be read as CSV",
        expected="a CSV export with one header row",
        got=(str(exc).splitlines() or [type(exc).__name__])[0],
    )


def _first_bare_cr(path: Path) -> int | None:
    """The line (counted by LFs) of the file's first CR that ends a line: one followed by text,
    not by an LF (nor by another control character: a CR inside a line's junk), or None. Read
    only when the fast reader failed on a file whose lines end in LF or CRLF."""
    data = path.read_bytes()
    found = re.search(rb"\r(?=[^\x00-\x1f])", data)
    return None if found is None else line_of(data, found.start())


def _header_follows(fields: list[str], expected: int, headers: list[str]) -> bool:
    """Whether a row of `fields` (more than the header's `expected`) is a last row with a second
    export's header run on from it: its last cell ends in the header's first name and the cells
    after it are the header's next names (at least two compared, as normalise_header compares
    names)."""
    glued, after = fields[expected - 1], fields[expected:]
    names = headers[1 : 1 + min(len(after), 3)]
    return (
        len(names) >= 2
        and normalise_header(glued).endswith(normalise_header(headers[0]))
        and all(
            normalise_header(cell) == normalise_header(name)
            for cell, name in zip(after, names, strict=False)
        )
    )


def _to_raw(
    path: Path,
    claimed: str | None,
    headers: list[str],
    frame: pl.LazyFrame,
    dialect: dict[str, str],
    kind: str,
    problems: pl.Expr | None,
    on_error: Callable[[Exception], InputError] | None,
    excel_text: bool = True,
) -> RawFrame:
    """`frame` holds the cells as read (`c0`, `c1`, … and ROW); `excel_text` False says that no
    cell is written `="…"`, so each is only trimmed."""
    file = str(path)
    refuse_headerless(file, headers)
    platform = detect_platform(file, headers, claimed)
    mapping = map_headers(file, platform, headers)
    positional = [f"c{i}" for i in range(len(headers))]
    problem = problems if problems is not None else pl.lit(None, pl.String)
    # Each cell's text is worked out once; the blank check and the raw fields both use it.
    frame = _unwrapped(frame, positional, excel_text)
    blank = pl.all_horizontal(
        [pl.col(c).is_null() | (pl.col(c) == "") for c in positional] or [pl.lit(True)]
    )
    frame = frame.with_columns(
        problem.alias(PROBLEM),
        pl.when(blank & problem.is_null()).then(pl.lit(BLANK_REASON)).alias(SKIP),
    )
    if not _has_data_row(frame, on_error):
        raise InputError(file, "the file has a header but no data rows", expected="invoice lines")
    position = {h: f"c{i}" for i, h in enumerate(headers)}
    twins = home_twins(headers, mapping) if platform == "autotask" else {}
    columns = [pl.col(ROW).cast(pl.Int64), pl.col(PROBLEM), pl.col(SKIP)]
    columns += [pl.col(position[column]).alias(raw_field) for raw_field, column in mapping.items()]
    columns += [pl.col(position[twin]).alias(HOME + raw_field) for raw_field, twin in twins.items()]
    raw = frame.select(columns)
    names = raw.collect_schema().names()
    warnings: tuple[str, ...] = ()
    if platform == "halopsa":
        raw = raw.with_columns(
            _halo_exclusions(names), _unread_flags(mapping, names).alias(PROBLEM)
        )
    else:
        consumed = _consumed(names)
        raw = raw.with_columns(
            pl.lit(None, pl.String).alias(EXCLUDE), *_customer_currency(mapping, twins, names)
        )
        if consumed is not None:
            warnings = _consumption(raw, consumed, mapping, names, on_error)
            raw = raw.with_columns(
                pl.when(consumed).then(pl.lit("0")).otherwise("net_amount").alias("net_amount")
            )
    raw = raw.drop([c for c in [*FLAGS[platform], *(HOME + f for f in twins)] if c in names])
    read = {**mapping, **{HOME + f: twin for f, twin in twins.items()}}
    return RawFrame(
        file=file,
        platform=platform,
        shape=f"{platform}-{kind}",
        frame=raw,
        columns=mapping,
        files=(path,),
        dialect=dialect,
        warnings=warnings + unread_money(headers, read),
        on_error=on_error,
        screen=artefacts.Screen(file, platform, mapping, raw),
    )


BLANK_REASON = "blank row"


# Excel's other keep-as-text mark, typed before a number or a date ('0501, '11/01/2026):
# taken off where the rest is digits and date marks only ('Tis the Season Ltd keeps it).
APOSTROPHE_TEXT = r"^'[0-9][0-9/.\-: ]*$"


def _unwrapped(frame: pl.LazyFrame, columns: list[str], excel_text: bool = True) -> pl.LazyFrame:
    """Each cell of `columns` as its text: trimmed, `'0501` (an apostrophe typed before a
    number or date to keep it as text) without its apostrophe, and `="0571"` (Excel's
    keep-leading-zeros trick) unwrapped unless `excel_text` is False (no cell of the file is
    written so). One step at a time over all the columns: an expression that uses a step's
    result several times (a condition, then a branch) would work it out again for each use.
    The patterns are matched only in the cells starting as they do (a null elsewhere): a
    regex over every cell costs more than the rest of the step."""
    text = [pl.col(c) for c in columns]
    frame = frame.with_columns(t.str.strip_chars() for t in text)
    frame = frame.with_columns(
        pl.when(_starting(t, "'").str.contains(APOSTROPHE_TEXT).fill_null(False))
        .then(t.str.slice(1))
        .otherwise(t)
        for t in text
    )
    if not excel_text:
        return frame
    return frame.with_columns(
        pl.coalesce(_starting(t, '="').str.replace(EXCEL_TEXT_PATTERN, "${1}").str.strip_chars(), t)
        for t in text
    )


def _starting(text: pl.Expr, prefix: str) -> pl.Expr:
    """`text` where it starts with `prefix`, else null."""
    return pl.when(text.str.starts_with(prefix)).then(text)


DATA_ROW_PROBE = 10  # rows read first when looking for a data row (a 1000 cost 4 ms more at 20k)


def _has_data_row(frame: pl.LazyFrame, on_error: Callable[[Exception], InputError] | None) -> bool:
    """Whether any row is not skipped: the first rows are read alone (the slice reaches the
    reader), the whole file only when they are all blank."""
    for query in (frame.head(DATA_ROW_PROBE), frame):
        found = query.filter(pl.col(SKIP).is_null()).select(ROW).head(1)
        if _check(found, on_error).height:
            return True
    return False


def _check(query: pl.LazyFrame, on_error: Callable[[Exception], InputError] | None) -> pl.DataFrame:
    if on_error is None:
        return query.collect()
    return _collect(query, on_error)


# A sheet's XML that cannot be read: a damaged archive, a missing member, XML not well formed.
UNREADABLE_SHEET: tuple[type[Exception], ...] = (
    *DAMAGED_ARCHIVE,
    KeyError,
    ET.ParseError,
    DefusedXmlException,
)


def unsaved_formulas(path: Path, sheet: str) -> list[tuple[int, int, str]]:
    """Formula cells of one sheet whose saved value cannot be trusted: (Excel row number,
    0-based column index, reason naming the cell).

    Read from the sheet's XML inside the .xlsx zip (ECMA-376 part 1, §18.3.1.4 <c>, §18.3.1.40
    <f>, §18.3.1.96 <v>; §18.2.2 calcPr): a <c> holding an <f> but no (or an empty) <v> has no
    saved value at all (openpyxl, pandas), and a workbook flagged `fullCalcOnLoad` was written
    by a program that never calculated, so its cached values (XlsxWriter writes 0) are not
    results. Either would be read as empty or 0: a value silently lost. Returns [] fast when the
    sheet holds no formula; raises InputError for a damaged workbook.
    """
    try:
        with zipfile.ZipFile(path) as book:
            member = _sheet_member(book, sheet)
            if member is None or not _holds(book, member, _FORMULA):  # most exports hold none
                return []
            workbook = book.read("xl/workbook.xml")
            recalc = bool(re.search(rb"<(?:\w+:)?calcPr[^>]*fullCalcOnLoad=\"(1|true)\"", workbook))
            found: list[tuple[int, int, str]] = []
            with book.open(member) as stream:
                for row, column, ref, node in _sheet_cells_of(stream):
                    reason = _formula_problem(node, ref, recalc)
                    if reason:
                        found.append((row, column, reason))
            return found
    except UNREADABLE_SHEET as exc:
        raise _unreadable_workbook(path, exc) from None


_ERROR_TYPE = b't="e"'
_ERROR_CELL = re.compile(rb'\st="e"')  # an error cell's type, or these bytes in a text
_MERGE_TAG = b"mergeCell "
MONEY_FIELDS = ("unit_price", "net_amount", "tax_amount")
# Where a number format code writes a currency (ECMA-376 §18.8.31): a locale tag `[$€-x-euro2]`,
# `[$£-809]`, `[$USD]`; a quoted literal `"EUR "`; a bare sign outside quotes and brackets.
_FORMAT_CURRENCY = re.compile(r'\[\$([^\]-]*)[^\]]*\]|"([^"]*)"|\[[^\]]*\]|\\.|([$£€¥])')


def format_currency(code: str) -> str | None:
    """The currency a number format code writes its numbers in, as it writes it (`€`, `£`,
    `USD`, `kr.`), or None: a locale tag's text, a quoted literal that is a currency sign or
    an ISO 4217 code, or a bare sign. Excel's built-in currency formats (ids 5-8) are the
    locale's and name none in the file: they are not looked at."""
    for match in _FORMAT_CURRENCY.finditer(code):
        tagged, quoted, bare = match.groups()
        if tagged:
            return tagged
        text = (quoted or "").strip()
        if text in amounts.CURRENCY_SIGNS or text == "$" or text.upper() in amounts.ISO_CURRENCIES:
            return text
        if bare:
            return bare
    return None


_MERGED = re.compile(rb'<(?:\w+:)?mergeCell\s+ref="([A-Z]+[0-9]+):([A-Z]+[0-9]+)"')


@dataclass(frozen=True)
class Merge:
    """A merged range of a sheet (§18.3.1.55 <mergeCell ref="A2:B5">): Excel rows `first` to
    `last`, 0-based columns `left` to `right`; its value is in its first cell."""

    first: int
    left: int
    last: int
    right: int


def scan_sheet(path: Path, sheet: str) -> tuple[bool, list[Merge]]:
    """(whether the sheet's XML may hold an error cell, its merged ranges in order): one
    literal scan of the XML, no parse. Raises InputError for a damaged workbook."""
    try:
        with zipfile.ZipFile(path) as book:
            member = _sheet_member(book, sheet)
            if member is None:
                return False, []
            erring, ranges = False, set[tuple[bytes, bytes]]()
            tail = b""
            with book.open(member) as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    chunk = tail + block
                    # Literal searches first (memchr's speed): most sheets hold neither.
                    erring = erring or (_ERROR_TYPE in chunk and bool(_ERROR_CELL.search(chunk)))
                    if _MERGE_TAG in chunk:
                        ranges.update((m[1], m[2]) for m in _MERGED.finditer(chunk))
                    tail = chunk[-OVERLAP:]
    except UNREADABLE_SHEET as exc:
        raise _unreadable_workbook(path, exc) from None
    merges = []
    for start, end in ranges:
        (first, left), (last, right) = _cell_position(start.decode()), _cell_position(end.decode())
        merges.append(Merge(first, left, last, right))
    return erring, sorted(merges, key=lambda m: (m.first, m.left))


def cells_apart(
    path: Path, sheet: str, money: set[int], erring: bool
) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """What fastexcel does not read of a sheet's cells, as (Excel row, 0-based column, text):
    its error cells (`erring`: scan_sheet found one may be there), which it reads as empty,
    with their error ('#N/A'); and the numbers of the `money` columns (0-based) whose format
    writes a currency (format_currency), which it reads as plain numbers, with that currency
    ('€', 'USD'). From the sheet's XML (§18.3.1.4 <c t="e">, its `s` an index into §18.8.10
    cellXfs) and the workbook's number formats; the cells are parsed only when the sheet may
    hold an error cell or the workbook holds a currency format. Raises InputError for a
    damaged workbook."""
    errors: list[tuple[int, int, str]] = []
    written: list[tuple[int, int, str]] = []
    try:
        with zipfile.ZipFile(path) as book:
            member = _sheet_member(book, sheet)
            currencies = {
                style: currency
                for style, code in enumerate(_cell_formats(book) if money else [])
                if (currency := format_currency(code)) is not None
            }
            if member is None or not (erring or currencies):
                return errors, written
            with book.open(member) as stream:
                for row, column, _, node in _sheet_cells_of(stream):
                    kind = node.get("t", "n")
                    if kind == "e":
                        value = node.find(f"{{{SHEET_NS}}}v")
                        errors.append((row, column, "" if value is None else value.text or ""))
                    elif kind == "n" and column in money:
                        currency = currencies.get(int(node.get("s") or 0))
                        if currency is not None:
                            written.append((row, column, currency))
            return errors, written
    except UNREADABLE_SHEET as exc:
        raise _unreadable_workbook(path, exc) from None


# A hidden <row> (§18.3.1.73 `hidden`, an xsd:boolean: by hand, by a filter, by an outline),
# or these bytes in a cell's text: a literal scan (a tenth of the time of one anchored on
# `<row`), the XML parse then tells which.
_HIDDEN_ROW = re.compile(rb'hidden="(?:1|true)"')
HIDDEN_ROWS_NAMED = 5  # row numbers a warning names


def hidden_rows_warning(path: Path, sheet: str, header_row: int) -> tuple[str, ...]:
    """A warning naming the rows below the header that hold a value and are hidden in Excel,
    and that they were read: a file filtered to some clients (an AutoFilter, §18.3.1.2, hides
    the rows it filters out) or with rows hidden by hand holds every row, not only those shown.
    () when none is; fastexcel reads hidden rows as it reads the others (it cannot tell them)."""
    rows, filtered = hidden_rows(path, sheet)
    rows = [row for row in rows if row > header_row]
    if not rows:
        return ()
    named = ", ".join(str(row) for row in rows[:HIDDEN_ROWS_NAMED])
    more = f" and {len(rows) - HIDDEN_ROWS_NAMED:,} more" if len(rows) > HIDDEN_ROWS_NAMED else ""
    how = "filtered out by the sheet's AutoFilter or hidden" if filtered else "hidden"
    many = len(rows) > 1
    return (
        f"{path.name}: {len(rows):,} row{'s' * many} of sheet {sheet!r} "
        f"{'are' if many else 'is'} {how} in Excel (row{'s' * many} {named}{more}) and "
        f"{'were' if many else 'was'} read with the others: the file holds every row, not "
        "only the ones shown",
    )


def hidden_rows(path: Path, sheet: str) -> tuple[list[int], bool]:
    """(the Excel row numbers of the sheet's hidden rows that hold a value, whether the sheet
    has an AutoFilter with a filter set, §18.3.1.2 <autoFilter> holding a <filterColumn>).
    A cheap byte scan first: most sheets hide no row. Raises InputError for a damaged
    workbook."""
    try:
        with zipfile.ZipFile(path) as book:
            member = _sheet_member(book, sheet)
            if member is None or not _holds(book, member, _HIDDEN_ROW):
                return [], False
            found: list[int] = []
            filtered = False
            row, hidden, filled = 0, False, False
            with book.open(member) as stream:
                events = DefusedET.iterparse(stream, events=("start", "end"), forbid_dtd=True)
                for event, node in events:
                    tag = node.tag.rsplit("}", 1)[-1]
                    if tag == "row" and event == "start":
                        row, filled = int(node.get("r") or row + 1), False
                        hidden = node.get("hidden") in ("1", "true")
                    elif tag in ("v", "is") and event == "end":
                        filled = filled or hidden
                    elif tag == "row":
                        if filled:
                            found.append(row)
                        node.clear()
                    elif tag == "autoFilter" and event == "end":
                        filtered = node.find(f"{{{SHEET_NS}}}filterColumn") is not None
            return found, filtered
    except UNREADABLE_SHEET as exc:
        raise _unreadable_workbook(path, exc) from None


def _sheet_cells_of(stream: IO[bytes]) -> Iterator[tuple[int, int, str, ET.Element]]:
    """Each <c> of a sheet's XML stream, parsed (§18.3.1.4), with its Excel row number,
    0-based column index and reference (`B7`): where it stands is its `r`, else the cell after
    the last one (`r` is optional on <row> and <c>). A row's cells are let go after it."""
    row, column = 0, -1
    events = DefusedET.iterparse(stream, events=("start", "end"), forbid_dtd=True)
    for event, node in events:
        if node.tag.endswith("}row"):
            if event == "start":
                row, column = int(node.get("r") or row + 1), -1
            else:
                node.clear()
            continue
        if event != "end" or not node.tag.endswith("}c"):
            continue
        ref = node.get("r")
        row, column = _cell_position(ref) if ref else (row, column + 1)
        yield row, column, ref or f"{_column_letters(column)}{row}", node


def _formula_problem(cell: ET.Element, ref: str, recalc: bool) -> str | None:
    if cell.find(f"{{{SHEET_NS}}}f") is None:
        return None
    value = cell.find(f"{{{SHEET_NS}}}v")
    if value is None or not (value.text or "").strip():
        reason = f"cell {ref} holds a formula with no saved value"
    elif recalc:
        reason = (
            f"cell {ref} holds a formula whose saved value was never calculated "
            "(the workbook was written by a program, not saved by Excel)"
        )
    else:
        return None
    return reason + "; open the file in Excel and save it"


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _cell_position(ref: str) -> tuple[int, int]:
    """'F3' -> (3, 5): the Excel row number and the 0-based column index."""
    match = re.match(r"^([A-Z]+)(\d+)$", ref)
    if not match:
        return 0, -1
    column = 0
    for letter in match.group(1):
        column = column * 26 + ord(letter) - ord("A") + 1
    return int(match.group(2)), column - 1


SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"


def _sheet_member(book: zipfile.ZipFile, sheet: str) -> str | None:
    """The zip member holding the named sheet, through workbook.xml and its relationships."""
    workbook = DefusedET.fromstring(book.read("xl/workbook.xml"), forbid_dtd=True)
    rels = DefusedET.fromstring(book.read("xl/_rels/workbook.xml.rels"), forbid_dtd=True)
    rel_id = next(
        (
            s.get(f"{{{REL_NS}}}id")
            for s in workbook.iter(f"{{{SHEET_NS}}}sheet")
            if s.get("name") == sheet
        ),
        None,
    )
    for rel in rels.iter(f"{{{PKG_REL_NS}}}Relationship"):
        if rel.get("Id") == rel_id:
            target = rel.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    return None


_FORMULA = re.compile(rb"<(?:\w+:)?f[ >/]")


def _holds(book: zipfile.ZipFile, member: str, pattern: re.Pattern[bytes]) -> bool:
    """Whether the member's bytes match `pattern` (a tag's start, at most OVERLAP bytes)."""
    tail = b""
    with book.open(member) as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            chunk = tail + block
            if pattern.search(chunk):
                return True
            tail = chunk[-OVERLAP:]
    return False


def grid_warning(raw: RawFrame, rows_read: int) -> str | None:
    """Autotask grid exports stop at 5,000 rows: a file of exactly that many is suspect."""
    if raw.shape in ("autotask-csv", "autotask-xlsx") and rows_read == GRID_EXPORT_LIMIT:
        return (
            f"{Path(raw.file).name} has exactly {GRID_EXPORT_LIMIT} rows, the limit of Autotask "
            "grid exports: it is probably truncated. Export with the export wizard instead."
        )
    return None


def _flag_text(name: str) -> pl.Expr:
    """A true/false flag's cell as its spellings are compared (TRUE_WORDS, FALSE_WORDS)."""
    return pl.col(name).str.strip_chars().str.to_lowercase()


def _truthy(name: str) -> pl.Expr:
    return _flag_text(name).is_in(TRUE_WORDS).fill_null(False)


def _unread_flags(mapping: dict[str, str], names: list[str]) -> pl.Expr:
    """PROBLEM with, per true/false flag of HaloPSA's (group header, inactive, voided) whose
    cell is neither empty nor a spelling of TRUE_WORDS or FALSE_WORDS, what it holds: read as
    false, a group header or a voided invoice's line would be billed."""
    known = [*TRUE_WORDS, *FALSE_WORDS, ""]
    unread = {
        flag: ~_flag_text(flag).is_in(known).fill_null(True)
        for flag in ("isgroupdesc", "isinactive", "voided")
        if flag in names
    }
    if not unread:
        return pl.col(PROBLEM)
    reasons = [
        pl.when(found).then(pl.format(UNREAD_FLAG, pl.lit(mapping[flag]), pl.col(flag)))
        for flag, found in unread.items()
    ]
    problem = pl.concat_str([pl.col(PROBLEM), *reasons], separator="; ", ignore_nulls=True)
    return pl.when(pl.any_horizontal(unread.values())).then(problem).otherwise(pl.col(PROBLEM))


UNREAD_FLAG = "column '{}': expected TRUE or FALSE (1/0, yes/no), got '{}'"


# A written zero: "0", "0.00", "0,0000", "£0.00", "-0.00", "(0.00)", "0.00 EUR".
ZERO_TEXT = r"^[^0-9]*0+(?:[.,]0+)?[^0-9]*$"


def _consumed(names: list[str]) -> pl.Expr | None:
    """Per row: an Autotask line whose carried amount (Total Amount, Billed Amount) is a written
    zero while its net has a non-zero digit is prepaid consumption: nothing reached the
    invoice, so its net is "0" (documents.carried_net, the API's rule). None without that
    column (the net as written)."""
    if "carried_amount" not in names or "net_amount" not in names:
        return None
    zero = pl.col("carried_amount").str.contains(ZERO_TEXT).fill_null(False)
    return zero & pl.col("net_amount").str.contains("[1-9]").fill_null(False)


def _consumption(
    raw: pl.LazyFrame,
    consumed: pl.Expr,
    mapping: dict[str, str],
    names: list[str],
    on_error: Callable[[Exception], InputError] | None,
) -> tuple[str, ...]:
    """The load's warning naming the `consumed` rows (base.consumption_warning: each by its
    Billing Item ID, else its row, with its name and net as written), from one read of the
    export."""
    ref = pl.col("line_ref") if "line_ref" in names else pl.lit(None, pl.String)
    labels = [pl.col(f) for f in ("item_name", "description") if f in names]
    shown = pl.struct(
        pl.coalesce(ref, pl.format("row {}", ROW)).alias("ref"),
        pl.coalesce(*labels, pl.lit("no name")).alias("name"),
        pl.col("net_amount").alias("net"),
    )
    found = _check(
        raw.filter(consumed).select(
            pl.len().alias("count"), shown.head(CONSUMPTION_SHOWN).implode().alias("shown")
        ),
        on_error,
    ).row(0, named=True)
    items = [(s["ref"], s["name"], s["net"]) for s in found["shown"]]
    return consumption_warning(
        found["count"], items, mapping["carried_amount"], mapping["net_amount"]
    )


HOME = "_home_"  # prefix of the home-currency twin of a raw field while a row is read


def home_twins(headers: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """Raw field -> the export's home-currency twin of its column (base.CUSTOMER_MONEY:
    'Internal Currency Extended Price' beside 'Extended Price', compared as normalise_header
    compares names), for the fields that have one: an Autotask export of a multi-currency
    tenant (psa-exports.md §1.12b)."""
    named = {normalise_header(h): h for h in headers}
    return {
        field: twin
        for field in CUSTOMER_MONEY
        if field in mapping
        and (twin := named.get(normalise_header(HOME_TWIN + mapping[field]))) is not None
    }


UNNAMED_REMEDY = (
    "Add a Currency column giving each line's currency (an ISO code such as EUR) and load the "
    "file again, or load the REST API's BillingItems, Companies and Currencies query pages "
    "instead, so its currency can be read"
)


def _customer_currency(
    mapping: dict[str, str], twins: dict[str, str], names: list[str]
) -> list[pl.Expr]:
    """FOREIGN and PROBLEM of an Autotask export with home-currency twins (`twins`, home_twins):
    a row whose amount differs from its twin is in a customer currency, not the home one
    (psa-exports.md §1.3, §1.12b); unless its currency column names it, it is FOREIGN and its
    problem names the client, both amounts and what to export. [] without twins."""
    if not twins:
        return []
    differs = {field: _differs(field, HOME + field) for field in twins}
    evidence = pl.coalesce(
        pl.when(differs[field]).then(
            pl.format(EVIDENCE, pl.lit(mapping[field]), field, pl.lit(twin), HOME + field)
        )
        for field, twin in twins.items()
    )
    unnamed = (
        pl.col("currency").fill_null("").str.strip_chars() == ""
        if "currency" in names
        else pl.lit(True)
    )
    foreign = pl.any_horizontal(differs.values()) & unnamed
    reason = pl.format(CUSTOMER_CURRENCY, _client(mapping, names), evidence, pl.lit(UNNAMED_REMEDY))
    problem = pl.concat_str([pl.col(PROBLEM), reason], separator="; ", ignore_nulls=True)
    return [
        foreign.alias(FOREIGN),
        pl.when(foreign).then(problem).otherwise(pl.col(PROBLEM)).alias(PROBLEM),
    ]


def _client(mapping: dict[str, str], names: list[str]) -> pl.Expr:
    """The row's client as a reason names it: 'Brasserie Azur SARL (Organization ID 330)', or
    whichever of the name and id the row gives."""
    none = pl.lit(None, pl.String)
    name = pl.col("client_name") if "client_name" in names else none
    ident = (
        pl.format("{} {}", pl.lit(mapping["client_id"]), "client_id")
        if "client_id" in names
        else none
    )
    return pl.coalesce(pl.format("{} ({})", name, ident), name, ident, pl.lit("a client"))


def _magnitudes(name: str) -> tuple[pl.Expr, pl.Expr]:
    """The cell's amount without sign or currency, read with a decimal point and with a decimal
    comma (the other mark taken for grouping); null where that reading is no number."""
    digits = pl.col(name).str.replace_all(r"[^0-9.,]", "")
    exact = pl.Decimal(38, 12)
    point = digits.str.replace_all(",", "", literal=True).cast(exact, strict=False)
    comma = (
        digits.str.replace_all(".", "", literal=True)
        .str.replace(",", ".", literal=True)
        .cast(exact, strict=False)
    )
    return point, comma


def _differs(name: str, twin: str) -> pl.Expr:
    """Per row: the two cells hold different amounts whichever decimal mark the export writes
    (the twins are written alike, so equal amounts read equal under the export's own mark);
    False where either is empty or no number."""
    (point, comma), (twin_point, twin_comma) = _magnitudes(name), _magnitudes(twin)
    return ((point != twin_point) & (comma != twin_comma)).fill_null(False)


def _halo_exclusions(names: list[str]) -> pl.Expr:
    """Group headers, inactive lines, recurring templates and voided invoices' lines are not
    billed lines."""
    expr = pl.lit(None, pl.String)
    if "voided" in names:
        expr = pl.when(_truthy("voided")).then(pl.lit(VOIDED_REASON)).otherwise(expr)
    if "invoice_id" in names:
        template = pl.col("invoice_id").str.strip_chars().str.starts_with("-")
        expr = pl.when(template).then(pl.lit(TEMPLATE_REASON)).otherwise(expr)
    if "isinactive" in names:
        expr = pl.when(_truthy("isinactive")).then(pl.lit(INACTIVE_REASON)).otherwise(expr)
    if "isgroupdesc" in names:
        expr = pl.when(_truthy("isgroupdesc")).then(pl.lit(GROUP_REASON)).otherwise(expr)
    return expr.alias(EXCLUDE)


GROUP_REASON = "HaloPSA group header (isgroupdesc): a heading on the invoice, not a billed line"
INACTIVE_REASON = "inactive HaloPSA line (isinactive): shown on the template, not billed"
TEMPLATE_REASON = "HaloPSA recurring-invoice template (negative invoice id), not an invoice"
VOIDED_REASON = "HaloPSA invoice is voided"
