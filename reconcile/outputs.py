"""An output folder replaced whole or not at all.

The set of files is written into a staging folder beside `--out` (same filesystem), then swapped
in with one rename: Linux's renameat2(RENAME_EXCHANGE) trades the two folders atomically, so a
reader (or a `kill -9` at any instant) sees the previous complete set or the new complete set,
never a mix or a truncated file. Elsewhere two renames are used and an interrupted swap is
undone the next time the folder is written. A lock file beside the folder (`.<name>.lock`,
filelock) makes two runs writing the same `--out` take turns, and `reconcile workbook`, which
adds one file to a run's folder (replace_file), wait for them.

`RECONCILE_PAUSE_AT` (tests only) names steps (`discrepancies.csv`, …, `swap`, `swapped`,
`replace discrepancies.xlsx`) at which the writer prints `paused at STEP` to stderr and sleeps,
so a test can kill it there.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain, count
from pathlib import Path
from typing import Any

import polars as pl
from filelock import FileLock, Timeout

from reconcile.errors import InputError
from reconcile.litter import LITTER_NAMES, LITTER_PREFIXES
from reconcile.report_model import Chunked, chunks
from reconcile.safe import neutralise

LOCK_TIMEOUT = 600.0  # seconds to wait for another run writing the same folder
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def pause(step: str) -> None:
    """Test hook: stop at `step` when RECONCILE_PAUSE_AT names it."""
    wanted = os.environ.get("RECONCILE_PAUSE_AT", "")
    if wanted and step in wanted.split(","):
        sys.stderr.write(f"paused at {step}\n")
        sys.stderr.flush()
        time.sleep(float(os.environ.get("RECONCILE_PAUSE_SECONDS", "3600")))


def _names(out: Path) -> tuple[Path, Path, str]:
    """(lock file, folder of the previous set during a two-rename swap, staging prefix)."""
    return (
        out.parent / f".{out.name}.lock",
        out.parent / f".{out.name}.previous",
        f".{out.name}.new-",
    )


@contextlib.contextmanager
def output_folder(out: Path, holds: frozenset[str]) -> Iterator[Path]:
    """Yield an empty staging folder; when the block completes, it becomes `out` in one step.
    `holds`: the names a folder of this kind holds (every file the writer may write). An
    existing `out` holding anything else is refused (InputError, exit 2) before anything is
    written: it is replaced whole, so a mistyped --out (`.`, the workspace's folder, the
    exports' folder) would delete a workspace, its finance log or an export.

    On an exception (or a kill) `out` keeps its previous contents and the staging folder is
    removed (now, or by the next writer of the same folder)."""
    out = out.absolute()
    if out.exists() and not out.is_dir():
        raise InputError(
            str(out),
            "--out names a file, not a folder",
            expected="a folder for the outputs (created if missing)",
            hint="Choose another --out.",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _, previous, prefix = _names(out)
    with locked_folder(out):
        refuse_foreign(out, holds)
        staging = out.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            yield staging
            _sync(staging)
            pause("swap")
            _swap(staging, out, previous)
            pause("swapped")
        except OSError as error:
            if isinstance(error, FileNotFoundError) and not out.parent.is_dir():
                raise InputError(
                    str(out.parent),
                    "the folder was removed during the run, and the outputs with it",
                    hint="Run again, with --out in a folder that stays in place.",
                ) from error
            named = _named_as_out(error, staging, out)
            if named is error:
                raise
            raise named from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(previous, ignore_errors=True)


def _named_as_out(error: OSError, staging: Path, out: Path) -> OSError:
    """`error` naming the file where it was to end up (a full disk while writing
    `out`/discrepancies.csv), not in the hidden staging folder no one sees; as it is when it
    names another file."""
    name = error.filename
    if not isinstance(name, str) or not Path(name).is_relative_to(staging):
        return error
    return type(error)(error.errno, error.strerror, str(out / Path(name).relative_to(staging)))


def refuse_foreign(out: Path, holds: frozenset[str]) -> None:
    """InputError when the folder `out` holds anything but `holds` and a system's litter
    (output_folder checks it under the folder's lock; a run checks it first too, so that a
    mistyped --out fails before the run's work)."""
    out = out.absolute()
    if not out.is_dir():
        return
    foreign = sorted(
        p.name
        for p in out.iterdir()
        if p.name not in holds
        and p.name not in LITTER_NAMES
        and not p.name.startswith(LITTER_PREFIXES)
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise InputError(
            str(out),
            f"--out holds what reconcile did not write there ({shown}); the folder is "
            "replaced whole, so it would be deleted",
            expected="a new or empty folder, or one a previous run of the same kind wrote",
            hint="Choose another --out (for example out/CYCLE), or move those files away.",
        )


@contextlib.contextmanager
def locked_folder(out: Path) -> Iterator[None]:
    """Hold the output folder's lock (`.<name>.lock` beside it) for the block, so no other
    writer of `out` (a run swapping it, `reconcile workbook` adding to it) works at the same
    time; what a killed writer left is undone first. A fault of the machine in the block (a
    full disk, a read-only folder) is raised as the InputError naming it, and a lock held
    longer than LOCK_TIMEOUT seconds as an InputError saying so."""
    out = out.absolute()
    lock_path, previous, prefix = _names(out)
    try:
        with FileLock(str(lock_path), timeout=LOCK_TIMEOUT):
            _recover(out, previous, prefix)
            yield
    except OSError as exc:
        from reconcile.environment import environment_error

        if exc.filename == str(lock_path):  # the lock is ours: the user named `out`
            exc = type(exc)(exc.errno, exc.strerror, str(out))
        problem = environment_error(exc, out)
        if problem is None:
            raise
        raise problem from None
    except Timeout:
        raise InputError(
            str(out),
            f"another reconcile run has been writing this folder for over {LOCK_TIMEOUT:.0f} s",
            hint="Wait for it to finish, or choose another --out.",
        ) from None


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` whole or not at all: `write` writes a temporary file beside it (the same
    folder, so the same filesystem), which is flushed to disk and renamed over `path` in one
    step (os.replace); on an exception it is removed and `path` is as it was. The caller holds
    the folder's lock (locked_folder): temporary files a killed writer left are removed first."""
    stem = f".{path.stem}.new-"
    for stale in path.parent.glob(f"{stem}*{path.suffix}"):
        stale.unlink(missing_ok=True)
    temporary = path.with_name(f"{stem}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        write(temporary)
        with temporary.open("rb") as fh:
            os.fsync(fh.fileno())
        pause(f"replace {path.name}")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def _recover(out: Path, previous: Path, prefix: str) -> None:
    """Undo what a killed writer left: an interrupted two-rename swap, staging folders."""
    if previous.exists():
        if out.exists():
            shutil.rmtree(previous, ignore_errors=True)
        else:
            previous.rename(out)
    for stale in out.parent.glob(f"{prefix}*"):
        shutil.rmtree(stale, ignore_errors=True)


def _sync(folder: Path) -> None:
    """Flush the new files to disk before they replace the old ones."""
    for path in folder.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())


def _swap(staging: Path, out: Path, previous: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    if _exchange(staging, out):
        return  # staging now holds the previous set, removed by the caller
    out.rename(previous)
    staging.rename(out)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically trade two paths (Linux renameat2); False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    return bool(result == 0)


FIXED_DATE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
WIDE_COLUMNS = frozenset({"message", "reason", "value", "why"})  # sentences: 60 characters


CSV_ROWS = 100_000  # rows written to a CSV at a time (about 60 MB of a run's discrepancies)


def write_csv_scan(table: pl.LazyFrame, path: Path) -> None:
    """A table as one CSV, its text made safe for a spreadsheet (safe.neutralise), written
    CSV_ROWS rows at a time from the lazy frame's plan (a Parquet scan: a slice reads only the
    row groups it covers), in its order, the header once: the bytes of
    `neutralise(table.collect()).write_csv(path)`, one slice held at a time. (polars'
    sink_csv from a Parquet scan held most of the table: 900 MiB for 1.36M discrepancies.)"""
    rows = table.select(pl.len()).collect().item()
    with path.open("wb") as fh:
        for start in range(0, max(rows, 1), CSV_ROWS):
            part = table.slice(start, CSV_ROWS).collect()
            neutralise(part).write_csv(fh, include_header=start == 0)


PARQUET_ROW_GROUP = 100_000  # rows a row group: the file's bytes do not depend on the chunking


def write_parquet_parts(parts: Iterable[pl.DataFrame], path: Path) -> None:
    """A table given in consecutive chunks as one Parquet file, streamed: polars' streaming
    engine writes (sink_parquet, zstd as write_parquet) from the chunks as they come, holding
    about one chunk. Row groups of PARQUET_ROW_GROUP rows, so the same rows give the same bytes
    however they are chunked (not the bytes of write_parquet on the whole frame, whose row
    groups follow the frame's memory layout; pl.read_parquet reads back the same rows and
    types).

    `parts`: frames of one schema, in the table's order; at least one (its schema is the
    file's, also when it has no rows)."""
    from polars.io.plugins import register_io_source

    chunks = iter(parts)
    first = next(chunks)
    taken = False

    def source(*_: object) -> Iterator[pl.DataFrame]:
        nonlocal taken
        if taken:  # the chunks can be read once: a second scan would find none
            raise RuntimeError("write_parquet_parts: the chunks were asked for twice")
        taken = True
        return chain([first], chunks)

    scan = register_io_source(source, schema=first.schema, validate_schema=True)
    scan.sink_parquet(path, row_group_size=PARQUET_ROW_GROUP)


EXCEL_DATA_ROWS = 1_048_575  # a sheet's 1,048,576 rows less the header row


def write_xlsx(
    table: Chunked,
    path: Path,
    sheet: str = "Discrepancies",
    rows_per_sheet: int = EXCEL_DATA_ROWS,
    full_text: str = "discrepancies.csv",
) -> None:
    """The discrepancy table as the workbook finance opens (write_workbook): one sheet, or,
    beyond Excel's rows a sheet, consecutive sheets `Discrepancies`, `Discrepancies 2`, … in
    the table's order (XlsxWriter would otherwise drop the rows past the limit silently).
    Written as the chunks come, whatever their sizes: the same rows give the same bytes
    however they are chunked, and only one chunk is held.

    `table`: a frame, or consecutive chunks of the table (at least one: an empty table is one
    empty frame, written as one sheet with its header), with the columns of
    run.OUTPUT_COLUMNS (money Decimal(18,2) in the row's `currency`, quantities and unit
    prices Decimal(·,4)). `full_text` names the file a cell cut at Excel's limit points to
    (_cut)."""
    names = (sheet if n == 1 else f"{sheet} {n}" for n in count(1))
    with _workbook(path) as formats:
        page: _Sheet | None = None
        for part in chunks(table):
            page = page or _Sheet(formats, next(names), part.columns, full_text)
            rest = part
            while not rest.is_empty():
                if page.rows == rows_per_sheet:
                    page.close()
                    page = _Sheet(formats, next(names), part.columns, full_text)
                taken = rest.slice(0, rows_per_sheet - page.rows)
                page.write(taken)
                rest = rest.slice(taken.height)
        if page is None:
            raise ValueError("write_xlsx: no chunks (an empty table is one empty frame)")
        page.close()


def write_workbook(
    path: Path, sheets: Mapping[str, pl.DataFrame], full_text: Mapping[str, str]
) -> None:
    """A workbook, one sheet per frame, as finance opens it: a frozen header row with filters;
    money (Decimal columns with 2 places) as numbers formatted with the row's currency code
    (`1,234.50 GBP`, from the frame's `currency` column when it has one), quantities and prices
    (Decimal with 4 places) as numbers to four places, integers as numbers; every other cell
    written as a string cell, its text unchanged (a string cell never runs as a formula: no
    `'` as in the CSVs), text longer than a cell holds cut with a note naming the file that
    holds it whole (`full_text`: per sheet's name, _cut). Numbers are IEEE doubles in XLSX,
    exact to the cent for any invoice amount. The document date is fixed, so the same frames
    give the same bytes."""
    with _workbook(path) as formats:
        for name, frame in sheets.items():
            page = _Sheet(formats, name, frame.columns, full_text[name])
            page.write(frame)
            page.close()


@contextlib.contextmanager
def _workbook(path: Path) -> Iterator[_Formats]:
    """A workbook written at the end of the block (its sheets added through the formats
    yielded), in XlsxWriter's constant_memory mode: each row goes to a temporary file (the
    system's temporary folder) as soon as the next one starts, so memory stays flat whatever
    the number of rows; strings are written inline in their cells (no shared-strings table).
    The document date is fixed (XlsxWriter stamps "now"), so the same rows give the same
    bytes."""
    import xlsxwriter  # 0.03 s to import: only when a workbook is written

    options = {"strings_to_formulas": False, "constant_memory": True}
    workbook = xlsxwriter.Workbook(str(path), options)
    workbook.set_properties({"created": FIXED_DATE})
    try:
        yield _Formats(workbook)
    finally:
        _close(workbook)


def _close(workbook: Any) -> None:
    """Close (write) the workbook. XlsxWriter wraps the OSError of a full disk or a missing
    folder in its FileCreateError; the OSError itself is raised, so the run reports it as the
    environment problem it is (environment.environment_error) rather than as a bug."""
    from xlsxwriter.exceptions import FileCreateError

    try:
        workbook.close()
    except FileCreateError as exc:
        cause = exc.args[0] if exc.args else None
        if isinstance(cause, OSError):
            raise cause from None
        raise


class _Formats:
    """The workbook's cell formats, each made once."""

    def __init__(self, workbook: Any) -> None:
        self.workbook = workbook
        self.bold = workbook.add_format({"bold": True, "bottom": 1})
        self.places = workbook.add_format({"num_format": "#,##0.0000"})
        self._money: dict[str, Any] = {}

    def money(self, code: str | None) -> Any:
        key = code or ""
        if key not in self._money:
            suffix = f' "{key}"' if key.isalpha() else ""
            self._money[key] = self.workbook.add_format(
                {"num_format": f"#,##0.00{suffix};-#,##0.00{suffix}"}
            )
        return self._money[key]


CHUNK_ROWS = 8192  # rows converted to Python values at a time (memory flat in the row count)
# How a column's cells are written (_column): text, or numbers with no format, four places or
# the row's currency.
TEXT, NUMBER, FOUR_PLACES, MONEY = range(4)


def _column(series: pl.Series) -> tuple[int, list[Any]]:
    """(kind, one value per row): numbers as floats, text as it is, nulls None. Text is written
    unchanged: an XLSX string cell is never run as a formula, whatever it starts with (only the
    CSVs, which a spreadsheet parses, need safe.cell's `'`); `'=1+2` here was a changed value."""
    dtype = series.dtype
    if isinstance(dtype, pl.Decimal):
        kind = FOUR_PLACES if (dtype.scale or 0) > 2 else MONEY
        return kind, series.cast(pl.Float64).to_list()
    if dtype.is_integer():
        return NUMBER, series.cast(pl.Float64).to_list()
    return TEXT, series.cast(pl.String).to_list()


class _Sheet:
    """One sheet written row after row (constant_memory takes the rows in order): the header,
    then each frame given to `write` CHUNK_ROWS rows at a time, so only one chunk's cells are
    ever held as Python values; `close` sets its frozen header, filter and widths. A text
    longer than a cell holds is cut with a note naming `full_text`, the file holding it whole."""

    def __init__(self, formats: _Formats, name: str, columns: list[str], full_text: str) -> None:
        self.formats, self.columns, self.full_text = formats, columns, full_text
        self.rows = 0  # data rows written so far
        self.ws = formats.workbook.add_worksheet(name)
        for col, column in enumerate(columns):
            self.ws.write_string(0, col, column, formats.bold)

    def write(self, frame: pl.DataFrame) -> None:
        """The frame's rows after those written so far (its columns: the sheet's)."""
        first = self.rows + 1
        for start in range(0, frame.height, CHUNK_ROWS):
            chunk = frame.slice(start, CHUNK_ROWS)
            _write_rows(self.ws, chunk, first + start, self.formats, self.full_text)
        self.rows += frame.height

    def close(self) -> None:
        ws, columns = self.ws, self.columns
        ws.freeze_panes(1, 0)
        ws.autofilter(0, 0, max(self.rows, 1), max(len(columns) - 1, 0))
        for col, name in enumerate(columns):
            ws.set_column(col, col, 60 if name in WIDE_COLUMNS else max(12, min(len(name) + 2, 30)))


def _write_rows(
    ws: Any, frame: pl.DataFrame, first_row: int, formats: _Formats, full_text: str
) -> None:
    """The frame's rows from sheet row `first_row` on, each row's non-empty cells, in the XML
    XlsxWriter's constant_memory mode writes for them (Worksheet._write_single_row), put
    straight into the sheet's row file: its write_number/write_string calls cost ≈ 7 µs a
    cell (0.6 CPU-s for a 20k cycle's 87k cells), this about a sixth. The sheet's state (its
    dimensions, the last row written) is kept as those calls keep it, and each format's index
    is taken in the order they take it (rows, then columns), so the workbook's bytes are those
    of the calls (tests/test_workbook.py compares them on awkward cells). Numbers come from
    Decimal and integer columns: never NaN nor infinite, which XlsxWriter refuses."""
    from xlsxwriter.utility import xl_col_to_name

    codes = frame["currency"].to_list() if "currency" in frame.columns else []
    row_money = [formats.money(c) for c in codes] or [formats.money(None)] * frame.height
    columns, used = [], []
    for col, name in enumerate(frame.columns):
        kind, values = _column(frame[name])
        # A text column's cells, each distinct value's XML made once (rules, clients repeat).
        texts = _inline_strings(values, full_text) if kind == TEXT else {}
        columns.append((xl_col_to_name(col), kind, values, texts))
        if texts or (kind != TEXT and any(v is not None for v in values)):
            used.append(col)
    styles: dict[int, Any] = {NUMBER: None, FOUR_PLACES: formats.places}
    attributes: dict[Any, str] = {None: ""}  # per format its ` s="…"`, made at its first cell
    if first_row > ws.previous_row:
        ws._write_single_row(first_row)  # the row XlsxWriter still holds (the header)
    rows: list[str] = []
    written: list[int] = []  # the sheet rows written (0-based)
    for index, money in enumerate(row_money):
        number = first_row + index + 1  # as the sheet's XML counts rows
        styles[MONEY] = money
        cells = []
        for letter, kind, values, texts in columns:
            value = values[index]
            if kind == TEXT:
                if value:
                    cells.append(f'<c r="{letter}{number}" {texts[value]}')
            elif value is not None:
                style = styles[kind]
                if style not in attributes:
                    attributes[style] = f' s="{style._get_xf_index()}"'
                cells.append(f'<c r="{letter}{number}"{attributes[style]}><v>{value:.16G}</v></c>')
        if cells:
            rows.append(f'<row r="{number}">{"".join(cells)}</row>')
            written.append(number - 1)
    if not written:
        return
    ws._opt_reopen()
    ws.fh.write("".join(rows))
    ws._check_dimensions(written[0], used[0])
    ws._check_dimensions(written[-1], used[-1])
    ws.previous_row = written[-1]


EXCEL_STRING_UNITS = 32_767  # a cell's longest text, in UTF-16 units (Worksheet.xls_strmax)
CUT_NOTE = "… [cut: {:,} more characters; full text in {}]"


def cut(text: str, full_text: str) -> str:
    """`text` as a cell holds it: whole when it fits EXCEL_STRING_UNITS, else its start and
    CUT_NOTE saying how many characters were left out and which file (`full_text`) holds them,
    within the limit (a list of refs cut short never reads as complete)."""
    if len(text) <= EXCEL_STRING_UNITS // 2:  # fits whatever its characters (nearly all)
        return text
    from xlsxwriter.utility import _utf16_len, _utf16_truncate

    if _utf16_len(text) <= EXCEL_STRING_UNITS:
        return text
    longest = _utf16_len(CUT_NOTE.format(len(text), full_text))  # the note with most digits
    kept: str = _utf16_truncate(text, EXCEL_STRING_UNITS - longest)
    return kept + CUT_NOTE.format(len(text) - len(kept), full_text)


def _inline_strings(values: list[str | None], full_text: str) -> dict[str, str]:
    """Per distinct non-empty text of `values`, its in-line string cell's XML after the cell's
    reference (`t="inlineStr">…</c>`), as XlsxWriter writes it in constant_memory mode
    (Worksheet._write_string, then _write_cell): cut at EXCEL_STRING_UNITS with a note naming
    `full_text` (cut; XlsxWriter cuts without one), control characters escaped (_xHHHH_),
    whitespace kept at either end, `&`, `<` and `>` escaped.
    Unlike XlsxWriter, a text written `<r>…</r>` is escaped too: XlsxWriter writes it into the
    sheet's XML as it is (as rich text), so a client named so in an export broke the
    workbook's XML, or wrote cells of its own into it."""
    from xlsxwriter.utility import _preserve_whitespace
    from xlsxwriter.xmlwriter import XMLwriter

    cells = {}
    for value in set(values):
        if not value:
            continue
        text = XMLwriter._escape_control_characters(cut(value, full_text))
        space = ' xml:space="preserve"' if _preserve_whitespace(text) else ""
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        cells[value] = f't="inlineStr"><is><t{space}>{text}</t></is></c>'
    return cells
