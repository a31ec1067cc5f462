"""Whole files that are not what they are named (fixtures/breaks/ findings, over their variants):
a lock file beside an open workbook, each refused with what it is or passed over with a word."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import AT_HEADER
from reconcile.errors import InputError
from reconcile.load import read_inputs

AT_LINE = (
    "71001,INV-8001,02/11/2026,Kestrel Dental Practice,Managed Workstation,12,35.00,420.00,84.00,,"
)
NAMES = st.text(st.characters(codec="utf-8", categories=["L", "N"]), min_size=1, max_size=12)


def lock_file(kind: str, workbook: str) -> str:
    """The name of the lock file kept beside `workbook` open in Excel (`~$`) or LibreOffice."""
    return f"~${workbook}" if kind == "excel" else f".~lock.{workbook}#"


@given(
    kind=st.sampled_from(["excel", "libreoffice"]),
    stem=NAMES,
    suffix=st.sampled_from([".csv", ".xlsx"]),
)
def test_a_lock_file_in_a_folder_is_passed_over_with_a_word(
    kind: str, stem: str, suffix: str
) -> None:
    """Excel's `~$` owner file (or LibreOffice's `.~lock.` file) beside the export is not read,
    and the load's warnings name it once; the export beside it loads."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "items.csv").write_text(f"{AT_HEADER}\n{AT_LINE}\n", encoding="utf-8")
        lock = folder / lock_file(kind, stem + suffix)
        lock.write_bytes(b"\x09Jo Bloggs" + b" " * 44)
        (raw,) = read_inputs([folder], "autotask")
        assert raw.collect(raw.frame).height == 1
    named = [w for w in raw.warnings if str(lock) in w]
    assert len(named) == 1, raw.warnings
    assert "owner (lock) file" in named[0] and "open" in named[0]
    assert repr(stem + suffix) in named[0]


@given(kind=st.sampled_from(["excel", "libreoffice"]), stem=NAMES)
def test_a_lock_file_named_as_the_export_is_refused_naming_the_workbook(
    kind: str, stem: str
) -> None:
    """A lock file given as the side's file holds a user's name, not lines: refused, saying
    what it is and which workbook to give."""
    with tempfile.TemporaryDirectory() as tmp:
        lock = Path(tmp) / lock_file(kind, stem + ".xlsx")
        lock.write_bytes(b"\x09Jo Bloggs" + b" " * 44)
        with pytest.raises(InputError) as refused:
            read_inputs([lock], "autotask")
    message = str(refused.value)
    assert "owner (lock) file" in message and "while it is open" in message
    assert repr(str(Path(tmp) / f"{stem}.xlsx")) in message


HTML_STARTS = [
    "<html>",
    '<html xmlns:o="urn:schemas-microsoft-com:office:office">',
    "<table border=1>",
    "<!DOCTYPE html>",
    '<meta http-equiv="Content-Type" content="text/html">',
]


@given(
    start=st.sampled_from(HTML_STARTS),
    upper=st.booleans(),
    before=st.sampled_from(["", "\ufeff", "\r\n", "  \n\t", "\ufeff\n"]),
    encoding=st.sampled_from(["utf-8", "cp1252", "utf-16"]),
    suffix=st.sampled_from([".xls", ".csv", ".txt"]),
)
def test_an_html_table_under_a_spreadsheet_name_is_refused_as_html(
    start: str, upper: bool, before: str, encoding: str, suffix: str
) -> None:
    """A web grid's "Export to Excel" (an HTML table named .xls), or any HTML page under a
    spreadsheet's name, is refused as what it is, asking for CSV UTF-8 or .xlsx; its tags are
    never read as a header."""
    tag = start.upper() if upper else start
    cells = "".join(f"<th>{c}</th>" for c in AT_HEADER.split(","))
    page = f"{before}{tag}\n<table><tr>{cells}</tr></table>\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"billing_items{suffix}"
        # Windows-1252 has no byte-order mark; UTF-16 writes its own.
        path.write_bytes(page.encode(encoding, errors="ignore"))
        with pytest.raises(InputError) as refused:
            read_inputs([path], "autotask")
    message = str(refused.value)
    assert "is an HTML page" in message, message
    assert "CSV UTF-8" in message and ".xlsx" in message


def test_a_csv_with_markup_in_a_cell_is_read() -> None:
    """Only the file's start tells an HTML page: a cell holding a tag is text."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.csv"
        line = AT_LINE.replace("Managed Workstation", "<table> lamp")
        path.write_text(f"{AT_HEADER}\n{line}\n", encoding="utf-8")
        (raw,) = read_inputs([path], "autotask")
        assert raw.collect(raw.frame)["item_name"].to_list() == ["<table> lamp"]
