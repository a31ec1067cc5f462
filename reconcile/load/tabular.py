"""CSV and XLSX exports of either platform: one header row (not always the first), one line per
row."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import defusedxml.ElementTree as DefusedET
import polars as pl
from defusedxml import DefusedXmlException

from reconcile.errors import InputError
from reconcile.load import artefacts
from reconcile.load.base import (
    EXCEL_TEXT_PATTERN,
    EXCLUDE,
    FLAGS,
    HEADER_SEARCH_ROWS,
    PROBLEM,
    ROW,
    SKIP,
    RawFrame,
    detect_platform,
    find_header,
    header_fit,
    map_headers,
    normalise_header,
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
from reconcile.load.workbook import DAMAGED_ARCHIVE, check_workbook

if TYPE_CHECKING:
    import fastexcel

GRID_EXPORT_LIMIT = 5000  # Autotask grid exports stop at this many rows
# polars reads a CSV file in chunks of 32 MiB, several ahead of the rows asked for, and hands
# on what they parse into: reads of a large export then hold far more than a batch. Smaller
# chunks keep a read's memory flat in the file's size at the same speed. The setting is polars'
# own, read when a scan starts; a value already in the environment is left as it is.
CSV_CHUNK_SETTING = "POLARS_CSV_CHUNK_SIZE"
CSV_CHUNK_BYTES = 4 << 20
TRUE_WORDS = ("true", "1", "yes", "y", "-1")


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
    PROBLEM. A hidden sheet with a header row is not read, and the load warns of it. Raises
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
    headers = [unwrap_excel_text(_text(v)).strip() for v in grid.row(index)]
    positional = [f"c{i}" for i in range(len(headers))]
    frame = (
        grid.slice(index + 1)
        .rename(dict(zip(grid.columns, positional, strict=True)))
        .with_row_index(ROW, offset=1)
    )
    header_row = index + 1  # Excel's row number of the header
    frame, problems = _without_unsaved_formulas(path, sheet.name, header_row, frame, sheet.columns)
    dialect = {"workbook": "xlsx", "sheet": sheet.name, "header_row": str(header_row)}
    raw = _to_raw(path, claimed, headers, frame.lazy(), dialect, "xlsx", problems, None)
    passed_over = tuple(
        f"hidden sheet {name!r} has a header row and was not read: only visible sheets are "
        f"(sheet {sheet.name!r} was)"
        for name in hidden
    )
    return replace(raw, warnings=raw.warnings + passed_over)


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
        top = sheet.grid.head(HEADER_SEARCH_ROWS)
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
    return first, _first_filled_row(first.grid.head(HEADER_SEARCH_ROWS)), hidden


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
    platform = detect_platform(file, headers, claimed)
    mapping = map_headers(file, platform, headers)
    positional = [f"c{i}" for i in range(len(headers))]
    problem = problems if problems is not None else pl.lit(None, pl.String)
    # Each cell's text is worked out once; the blank check and the raw fields both use it.
    frame = frame.with_columns(_unwrapped(c, excel_text) for c in positional)
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
    columns = [pl.col(ROW).cast(pl.Int64), pl.col(PROBLEM), pl.col(SKIP)]
    columns += [pl.col(position[column]).alias(raw_field) for raw_field, column in mapping.items()]
    raw = frame.select(columns)
    names = raw.collect_schema().names()
    if platform == "halopsa":
        raw = raw.with_columns(_halo_exclusions(names))
    else:
        raw = raw.with_columns(pl.lit(None, pl.String).alias(EXCLUDE), *_carried(names))
    raw = raw.drop([c for c in FLAGS[platform] if c in names])
    return RawFrame(
        file=file,
        platform=platform,
        shape=f"{platform}-{kind}",
        frame=raw,
        columns=mapping,
        files=(path,),
        dialect=dialect,
        on_error=on_error,
        screen=artefacts.Screen(file, platform, mapping, raw),
        warnings=unread_money(headers, mapping),
    )


BLANK_REASON = "blank row"


# Excel's other keep-as-text mark, typed before a number or a date ('0501, '11/01/2026):
# taken off where the rest is digits and date marks only ('Tis the Season Ltd keeps it).
APOSTROPHE_TEXT = r"^'[0-9][0-9/.\-: ]*$"


def _unwrapped(column: str, excel_text: bool = True) -> pl.Expr:
    """The cell's text: trimmed, `'0501` (an apostrophe typed before a number or date to keep
    it as text) without its apostrophe, and `="0571"` (Excel's keep-leading-zeros trick)
    unwrapped unless `excel_text` is False (no cell of the file is written so)."""
    text = pl.col(column).str.strip_chars()
    text = (
        pl.when(text.str.starts_with("'") & text.str.contains(APOSTROPHE_TEXT))
        .then(text.str.slice(1))
        .otherwise(text)
    )
    if not excel_text:
        return text.alias(column)
    return (
        pl.when(text.str.starts_with('="'))
        .then(text.str.replace(EXCEL_TEXT_PATTERN, "${1}").str.strip_chars())
        .otherwise(text)
        .alias(column)
    )


DATA_ROW_PROBE = 1000  # rows read first when looking for a data row: a whole read is rarely due


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
            if member is None or not _has_formula(book, member):
                return []
            workbook = book.read("xl/workbook.xml")
            recalc = bool(re.search(rb"<(?:\w+:)?calcPr[^>]*fullCalcOnLoad=\"(1|true)\"", workbook))
            found: list[tuple[int, int, str]] = []
            with book.open(member) as stream:
                row, column = 0, -1  # where the last cell was: r is optional on <row> and <c>
                events = DefusedET.iterparse(stream, events=("start", "end"), forbid_dtd=True)
                for event, node in events:
                    if node.tag.endswith("}row"):
                        if event == "start":
                            row = int(node.get("r") or row + 1)
                            column = -1
                        else:
                            node.clear()
                        continue
                    if event != "end" or not node.tag.endswith("}c"):
                        continue
                    ref = node.get("r")
                    row, column = _cell_position(ref) if ref else (row, column + 1)
                    ref = ref or f"{_column_letters(column)}{row}"
                    reason = _formula_problem(node, ref, recalc)
                    if reason:
                        found.append((row, column, reason))
            return found
    except UNREADABLE_SHEET as exc:
        raise _unreadable_workbook(path, exc) from None


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


def _has_formula(book: zipfile.ZipFile, member: str) -> bool:
    """A cheap byte scan first: most exports hold no formula at all."""
    tail = b""
    with book.open(member) as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            chunk = tail + block
            if re.search(rb"<(?:\w+:)?f[ >/]", chunk):
                return True
            tail = chunk[-16:]
    return False


def grid_warning(raw: RawFrame, rows_read: int) -> str | None:
    """Autotask grid exports stop at 5,000 rows: a file of exactly that many is suspect."""
    if raw.shape in ("autotask-csv", "autotask-xlsx") and rows_read == GRID_EXPORT_LIMIT:
        return (
            f"{Path(raw.file).name} has exactly {GRID_EXPORT_LIMIT} rows, the limit of Autotask "
            "grid exports: it is probably truncated. Export with the export wizard instead."
        )
    return None


def _truthy(name: str) -> pl.Expr:
    return pl.col(name).str.to_lowercase().is_in(TRUE_WORDS).fill_null(False)


# A written zero: "0", "0.00", "0,0000", "£0.00", "-0.00", "(0.00)", "0.00 EUR".
ZERO_TEXT = r"^[^0-9]*0+(?:[.,]0+)?[^0-9]*$"


def _carried(names: list[str]) -> list[pl.Expr]:
    """An Autotask line whose carried amount (Total Amount, Billed Amount) is a written zero
    while its net has a non-zero digit is prepaid consumption: nothing reached the invoice, so
    its net is "0" (documents.carried_net, the API's rule). Without that column: as written."""
    if "carried_amount" not in names or "net_amount" not in names:
        return []
    zero = pl.col("carried_amount").str.contains(ZERO_TEXT).fill_null(False)
    priced = pl.col("net_amount").str.contains("[1-9]").fill_null(False)
    return [pl.when(zero & priced).then(pl.lit("0")).otherwise("net_amount").alias("net_amount")]


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
