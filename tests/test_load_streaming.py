"""Large exports are read, surveyed, validated and stored in streamed batches with flat memory;
the shortcuts that make that fast must not change a single result."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastexcel
import polars as pl
import pytest
import xlsxwriter
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import BAD, DEMO, FIXTURES, QUIRKS
from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.ingest import LoadResult, load_paths, read_only
from reconcile.load import RawFrame, read_inputs
from reconcile.load.dialect import Scan, scan_bytes, sniff
from reconcile.model import CANONICAL_SCHEMA
from reconcile.store import Workspace
from reconcile.validate import QUARANTINE_SCHEMA

CYCLE = "2026-11"
SETTINGS = Settings(cycle=CYCLE, currency="GBP")
BLOCK = 1 << 22  # dialect.scan_bytes reads the file in blocks of this size
AUTOTASK_HEADER = "Invoice Number,Invoice Date,Organization ID,Organization Name,Item Name,"
AUTOTASK_HEADER += "Quantity,Unit Price,Extended Price\n"
LINE = "INV-1,11/01/2026,0571,Acme Widgets Ltd,Managed Workstation,2,35.00,70.00\n"


def load(workspace: Workspace, path: Path, settings: Settings = SETTINGS) -> LoadResult:
    (result,) = load_paths(workspace, [path], None, settings)
    return result


def stored(workspace: Workspace, result: LoadResult) -> tuple[pl.DataFrame, pl.DataFrame]:
    lines = workspace.lines(CYCLE, result.platform).pl().drop("load_id").sort("row_number")
    return lines, workspace.quarantined(CYCLE).drop("load_id")


@pytest.mark.parametrize("gap", [-2, -1, 0])
def test_excel_text_is_found_wherever_it_falls_against_a_block(tmp_path: Path, gap: int) -> None:
    """`="` split by a block boundary (or next to it) is still seen; without it cells are only
    trimmed, so the scan must never miss one."""
    path = tmp_path / "big.csv"
    path.write_bytes(b"a" * (BLOCK + gap) + b'="0571"\n')
    assert scan_bytes(path) == Scan(None, True, None)
    path.write_bytes(b"a" * (BLOCK + gap) + b'= "0571"\n')
    assert scan_bytes(path) == Scan(None, False, None)
    path.write_bytes(b"a" * (BLOCK + gap) + b'="0571"\x00\n')
    assert scan_bytes(path) == Scan(BLOCK + gap + 7, True, None)
    path.write_bytes(b"a" * (BLOCK + gap) + b'="Caf\xc3\xa9"\n')
    assert scan_bytes(path) == Scan(None, True, BLOCK + gap + 5)


def test_excel_text_cells_are_unwrapped_and_plain_files_only_trimmed(tmp_path: Path) -> None:
    wrapped = FIXTURES / "realworld" / "layout" / "at_excel_text_ids.csv"
    assert sniff(wrapped).excel_text
    (raw,) = read_inputs([wrapped], "autotask")
    ids = raw.collect(raw.frame.select("client_id", "invoice_number"))
    assert ids.row(0) == ("0571", "020411")
    plain = tmp_path / "plain.csv"
    plain.write_text(AUTOTASK_HEADER + LINE.replace("0571", "  0571 "), encoding="utf-8")
    assert not sniff(plain).excel_text
    (raw,) = read_inputs([plain], "autotask")
    assert raw.collect(raw.frame.select("client_id")).item() == "0571"


def test_a_data_row_below_many_blank_rows_is_found(workspace: Workspace, tmp_path: Path) -> None:
    """The first rows are probed for a data row; only when all are blank is the whole file."""
    path = tmp_path / "late.csv"
    path.write_text(AUTOTASK_HEADER + ",,,,,,,\n" * 1500 + LINE, encoding="utf-8")
    result = load(workspace, path)
    assert (result.rows_read, result.rows_loaded, result.rows_skipped) == (1501, 1, 1500)
    blank = tmp_path / "blank.csv"
    blank.write_text(AUTOTASK_HEADER + ",,,,,,,\n" * 1500, encoding="utf-8")
    with pytest.raises(InputError, match="header but no data rows"):
        read_inputs([blank], "autotask")


@settings(max_examples=15, deadline=None)
@given(
    blanks=st.lists(st.sampled_from(["\n", ",,,,,,,\n", " \n", ",,\n"]), max_size=300),
    titles=st.lists(st.sampled_from(["Billing items\n", "Report run on 02/12/2026\n"]), max_size=3),
)
@example(blanks=["\n"] * 30, titles=[])
@example(blanks=[",,,,,,,\n"] * 40, titles=["Billing items\n"])
def test_the_header_is_found_below_any_number_of_blank_lines(
    blanks: list[str], titles: list[str]
) -> None:
    """Blank lines (empty, spaces, separators only) above the header do not count against the
    rows the header is looked for in: 30 empty lines and the header on line 31 were refused as
    a file without a net amount column, naming no columns."""
    with tempfile.TemporaryDirectory() as folder, Workspace(":memory:") as workspace:
        path = Path(folder) / "billing_items.csv"
        path.write_text("".join(titles + blanks) + AUTOTASK_HEADER + LINE * 2, encoding="utf-8")
        result = load(workspace, path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 0)


# How a workbook's row can be blank: no cells, a formatted cell with no value, or text of spaces
# or of nothing.
BLANK_CELLS: dict[str, str | None] = {"absent": None, "formatted": None, "spaces": "   ", "": ""}


@settings(max_examples=15, deadline=None)
@given(
    blanks=st.lists(st.sampled_from(sorted(BLANK_CELLS)), max_size=120),
    titles=st.lists(st.sampled_from(["Billing items", "Report run on 02/12/2026"]), max_size=3),
)
@example(blanks=["formatted"] * 45, titles=["Billing items"])
@example(blanks=["spaces"] * 30, titles=[])
@example(blanks=["absent"] * 40, titles=["Billing items"])
def test_a_workbooks_header_is_found_below_any_number_of_blank_rows(
    blanks: list[str], titles: list[str]
) -> None:
    """As in a CSV, a sheet's blank rows above the header do not count against the rows the
    header is looked for in: a report with a title and 45 formatted empty rows above its header
    was refused as an export of neither platform."""
    with tempfile.TemporaryDirectory() as folder, Workspace(":memory:") as workspace:
        path = Path(folder) / "billing_items.xlsx"
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet("Lines")
        for row, title in enumerate(titles):
            sheet.write_string(row, 0, title)
        bold = book.add_format({"bold": True})
        for row, kind in enumerate(blanks, len(titles)):
            if kind == "formatted":
                sheet.write_blank(row, 0, None, bold)
            elif (text := BLANK_CELLS[kind]) is not None:
                sheet.write_string(row, 2, text)
        header = len(titles) + len(blanks)
        sheet.write_row(header, 0, AUTOTASK_HEADER.strip().split(","))
        for row in (header + 1, header + 2):
            sheet.write_row(row, 0, LINE.strip().split(","))
        book.close()
        result = load(workspace, path)
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (2, 2, 0)


# Rows of an Autotask CSV by what the load makes of them: loaded, excluded (posted, not
# invoiced: §1.12b), quarantined (an amount that is not one), skipped (a blank row).
ROW_KINDS = {
    "loaded": LINE,
    "excluded": LINE.replace("INV-1,11/01/2026", ","),
    "quarantined": LINE.replace(",70.00", ",seventy"),
    "skipped": ",,,,,,,\n",
}


@settings(max_examples=12, deadline=None)
@given(
    runs=st.lists(
        st.tuples(st.sampled_from(sorted(ROW_KINDS)), st.sampled_from([1, 2, 3, 9_000, 25_000])),
        min_size=2,
        max_size=4,
    ).filter(lambda runs: any(kind == "loaded" for kind, _ in runs))
)
@example(runs=[("excluded", 25_000), ("loaded", 2)])
@example(runs=[("skipped", 25_000), ("quarantined", 2), ("loaded", 3)])
@example(runs=[("loaded", 25_000), ("excluded", 2), ("quarantined", 2)])
def test_runs_of_rows_of_each_kind_load_whatever_their_lengths(
    runs: list[tuple[str, int]],
) -> None:
    """Long and short runs of rows the load keeps, excludes, quarantines or skips, in any
    order, are each counted where they belong: what a filter leaves of a batch read in many
    chunks (a few rows after a run long enough to fill the first ones) once made polars 2.1
    panic (RawFrame.batches)."""
    with tempfile.TemporaryDirectory() as folder, Workspace(":memory:") as workspace:
        path = Path(folder) / "billing_items.csv"
        text = AUTOTASK_HEADER + "".join(ROW_KINDS[kind] * n for kind, n in runs)
        path.write_text(text, encoding="utf-8")
        result = load(workspace, path)
    count = {kind: sum(n for k, n in runs if k == kind) for kind in ROW_KINDS}
    assert (result.rows_loaded, result.rows_excluded) == (count["loaded"], count["excluded"])
    assert (result.rows_quarantined, result.rows_skipped) == (
        count["quarantined"],
        count["skipped"],
    )


@pytest.mark.parametrize("uninvoiced", [30_000, 59_998])
def test_a_few_invoiced_rows_after_a_run_of_uninvoiced_ones_load(
    workspace: Workspace, tmp_path: Path, uninvoiced: int
) -> None:
    """The export wizard exports posted items whether invoiced or not (§1.12b): a run of
    uninvoiced rows long enough to fill the reader's first chunks, then two invoiced rows,
    loads those two and excludes the rest. The batches come in one chunk (RawFrame.batches):
    in the reader's chunks polars 2.1 panicked on the two rows left after the filter."""
    path = tmp_path / "billing_items.csv"
    unbilled = LINE.replace("INV-1,11/01/2026", ",")
    path.write_text(AUTOTASK_HEADER + unbilled * uninvoiced + LINE * 2, encoding="utf-8")
    (raw,) = read_inputs([path], "autotask")
    assert {n for batch in raw.batches() for n in batch.n_chunks("all")} == {1}
    result = load(workspace, path)
    assert (result.rows_loaded, result.rows_excluded) == (2, uninvoiced)


SURVEYED = [
    FIXTURES / "realworld" / "amounts" / "at_decimal_comma.csv",
    FIXTURES / "realworld" / "amounts" / "halo_decimal_comma.csv",
    FIXTURES / "realworld" / "amounts" / "at_comma_in_point_file.csv",
    QUIRKS / "at_ambiguous_dates.csv",
    QUIRKS / "at_us_dates.csv",
    QUIRKS / "halo_uk_dates.csv",
]


@pytest.mark.parametrize("path", SURVEYED, ids=lambda p: p.name)
def test_the_survey_decides_the_same_row_by_row_as_in_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    """Dates and decimal marks are surveyed batch by batch; one row a batch must decide as the
    whole file in one batch does."""
    with Workspace(tmp_path / "one.duckdb") as ws:
        whole = load(ws, path)
        whole_stored = stored(ws, whole)
    monkeypatch.setattr("reconcile.load.base.BATCH_ROWS", 1)
    with Workspace(tmp_path / "rows.duckdb") as ws:
        rows = load(ws, path)
        assert stored(ws, rows)[0].equals(whole_stored[0])
        assert stored(ws, rows)[1].equals(whole_stored[1])
    assert (rows.date_convention, rows.number_format) == (
        whole.date_convention,
        whole.number_format,
    )


# First rows that do not show the file's date order (the first one's day is 12 or less; the
# second's reading is in neither month next to the cycle), then a row that does, and a date
# no convention reads: its quarantine reason quotes the convention all the rows decided.
UNDECIDED_FIRST = {
    "ambiguous": ["11/01/2026", "11/13/2026", "11/31/2026"],
    "uncertain": ["05/06/2026", "11/13/2026", "11/31/2026"],
}


@pytest.mark.parametrize("dates", list(UNDECIDED_FIRST.values()), ids=list(UNDECIDED_FIRST))
def test_rows_after_the_first_batch_that_decide_otherwise_are_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dates: list[str]
) -> None:
    """Conventions are decided on the first batch and checked on all rows: where all rows
    decide otherwise, the file is read once more and nothing of the first read is kept."""
    path = tmp_path / "later.csv"
    path.write_text(
        AUTOTASK_HEADER
        + "".join(LINE.replace("INV-1,11/01/2026", f"INV-{i},{d}") for i, d in enumerate(dates)),
        encoding="utf-8",
    )
    reads: list[int] = []
    batches = RawFrame.batches

    def counted(self: RawFrame, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        reads.append(1)
        return batches(self, columns)

    monkeypatch.setattr(RawFrame, "batches", counted)
    with Workspace(tmp_path / "one.duckdb") as ws:
        whole = load(ws, path)
        whole_stored = stored(ws, whole)
    assert len(reads) == 1  # one batch decides for all rows: the file is read once
    monkeypatch.setattr("reconcile.load.base.BATCH_ROWS", 1)
    with Workspace(tmp_path / "rows.duckdb") as ws:
        rows = load(ws, path)
        assert stored(ws, rows)[0].equals(whole_stored[0])
        assert stored(ws, rows)[1].equals(whole_stored[1])
    assert len(reads) == 3
    assert rows == whole
    assert whole.date_convention == "US MM/DD/YYYY"
    assert whole.rows_quarantined == 1
    assert "a date in the file's convention (US MM/DD/YYYY)" in str(whole.quarantine[0])
    ((_, tally),) = read_only([path], None, SETTINGS)
    assert (tally.rows_read, tally.rows_loaded, tally.date_convention) == (3, 2, "US MM/DD/YYYY")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (BAD / "mixed_dates.csv", "row 1 has '11/13/2026'"),
        (FIXTURES / "realworld" / "amounts" / "at_mixed_marks.csv", "the file mixes decimal marks"),
    ],
)
def test_a_file_mixing_conventions_is_refused_however_it_is_batched(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, path: Path, message: str
) -> None:
    with pytest.raises(InputError, match=message) as whole:
        load(workspace, path)
    monkeypatch.setattr("reconcile.load.base.BATCH_ROWS", 1)
    with pytest.raises(InputError) as rows:
        load(workspace, path)
    assert str(rows.value) == str(whole.value)


def test_lines_are_stored_in_whole_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every insert but the last holds whole DuckDB row groups (the rest of a batch waits for
    the next one), and what is stored equals one insert of everything."""
    path = DEMO / "autotask" / "billing_items.csv"
    with Workspace(tmp_path / "one.duckdb") as ws:
        whole = stored(ws, load(ws, path))
    monkeypatch.setattr("reconcile.load.base.BATCH_ROWS", 7)
    monkeypatch.setattr("reconcile.ingest.ROW_GROUP_ROWS", 5)
    heights: list[int] = []
    insert = Workspace.insert_batch

    def counted(self: Workspace, lines: pl.DataFrame, *args: Any) -> None:
        heights.append(lines.height)
        insert(self, lines, *args)

    monkeypatch.setattr(Workspace, "insert_batch", counted)
    with Workspace(tmp_path / "groups.duckdb") as ws:
        grouped = stored(ws, load(ws, path))
    assert all(h % 5 == 0 for h in heights[:-1])
    assert 0 < heights[-1] < 5 or heights[-1] % 5 == 0
    assert sum(heights) == whole[0].height
    assert grouped[0].equals(whole[0])
    assert grouped[1].equals(whole[1])


@pytest.mark.parametrize("group", [1000, 100])
def test_an_export_smaller_than_a_row_group_is_stored_in_one_insert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: int
) -> None:
    """Batches without a whole row group of lines hold their rejected rows back with their
    lines: an export of fewer lines than a row group (362 loaded, 153 rejected) is stored by one
    insert, unless its rejected rows held back reach a row group; what is stored is the same."""
    path = DEMO / "halopsa" / "invoice_lines.csv"
    with Workspace(tmp_path / "one.duckdb") as ws:
        whole = stored(ws, load(ws, path))
    monkeypatch.setattr("reconcile.load.base.BATCH_ROWS", 60)
    monkeypatch.setattr("reconcile.ingest.ROW_GROUP_ROWS", group)
    inserts: list[tuple[int, int]] = []
    insert = Workspace.insert_batch

    def counted(self: Workspace, lines: pl.DataFrame, rejected: pl.DataFrame, *args: Any) -> None:
        inserts.append((lines.height, rejected.height))
        insert(self, lines, rejected, *args)

    monkeypatch.setattr(Workspace, "insert_batch", counted)
    with Workspace(tmp_path / "batches.duckdb") as ws:
        batched = stored(ws, load(ws, path))
    if group == 1000:
        assert inserts == [(362, 153)]
    else:
        assert len(inserts) > 1
        assert all(rejected < 2 * group for _, rejected in inserts)
    assert sum(lines for lines, _ in inserts) == 362
    assert sum(rejected for _, rejected in inserts) == 153
    assert batched[0].equals(whole[0])
    assert batched[1].equals(whole[1])


def test_a_batch_leaves_duckdb_settings_as_they_were(workspace: Workspace) -> None:
    """A batch is written by one DuckDB thread and its cached blocks let go by lowering the
    memory limit for a moment: both settings come back."""

    def settings() -> list[Any]:
        query = "SELECT current_setting('threads'), current_setting('memory_limit')"
        return list(workspace.con.execute(query).fetchall()[0])

    before = settings()
    load(workspace, DEMO / "halopsa" / "invoice_lines.csv")
    assert settings() == before


class _Recording:
    """A DuckDB connection that notes every statement executed."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.statements: list[str] = []

    def execute(self, query: str, *args: Any) -> Any:
        self.statements.append(query)
        return self.con.execute(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def test_a_batch_stores_only_what_it_holds_and_lets_go_only_whole_groups(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch with nothing to store costs no query; a load's last part of a row group (all of
    a small export) stays cached, at most one row group a load, instead of being evicted."""
    recording = _Recording(workspace.con)
    monkeypatch.setattr(workspace, "con", recording)
    constants = {"cycle": "2026-11", "source": "autotask", "load_id": "x", "file_name": "f.csv"}
    nothing = pl.DataFrame(schema=CANONICAL_SCHEMA)
    workspace.insert_batch(nothing, pl.DataFrame(schema=QUARANTINE_SCHEMA), constants)
    assert recording.statements == []
    one = nothing.clear(n=1).with_columns(line_ref=pl.lit("1"))
    workspace.insert_batch(one, pl.DataFrame(schema=QUARANTINE_SCHEMA), constants)
    assert [q for q in recording.statements if q.startswith("INSERT")] == [
        q for q in recording.statements if q.startswith("INSERT INTO lines")
    ]
    assert not [q for q in recording.statements if "1MB" in q]
    stored = recording.con.execute("SELECT count(*), min(line_ref) FROM lines").fetchall()
    assert stored == [(1, "1")]


def test_each_sheet_of_a_workbook_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """fastexcel parses a whole sheet whatever rows are asked for: the header search and the
    read share one parse."""
    loaded: list[str | int] = []
    load_sheet = fastexcel.ExcelReader.load_sheet

    def counted(self: fastexcel.ExcelReader, name: str | int, **kwargs: Any) -> Any:
        loaded.append(name)
        return load_sheet(self, name, **kwargs)

    monkeypatch.setattr(fastexcel.ExcelReader, "load_sheet", counted)
    for path in (QUIRKS / "halo_reporting.xlsx", DEMO / "autotask" / "billing_items.xlsx"):
        loaded.clear()
        read_inputs([path], None)
        assert len(loaded) == len(set(loaded)), loaded


def test_a_load_hands_duckdb_arrow_streams_without_pyarrow(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches reach DuckDB as Arrow C streams exported by polars: a load builds no pyarrow
    table (a conversion a batch, and pyarrow's import, about 0.25 s, for a small export)."""

    def refused(*_: Any, **__: Any) -> Any:
        raise AssertionError("a load converted a frame to a pyarrow table")

    monkeypatch.setattr(pl.DataFrame, "to_arrow", refused)
    result = load(workspace, DEMO / "halopsa" / "invoice_lines.csv")
    lines, rejected = stored(workspace, result)
    assert lines.height == result.rows_loaded > 0
    assert rejected.height == result.rows_excluded > 0
