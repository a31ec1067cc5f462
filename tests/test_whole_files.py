"""Whole files read for what they are (fixtures/breaks/ findings, over their variants): a lock
file beside an open workbook, an HTML page under a spreadsheet's name and a file whose decimal
mark no value proves are each refused with what they are, or passed over with a word."""

from __future__ import annotations

import csv
import io
import tempfile
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import AT_HEADER
from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.load import read_inputs
from reconcile.validate import normalise

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


# One mark followed by three digits: 1.500 is 1.5 or 1500, 3,000 is 3000 or 3.
WHOLE = st.integers(min_value=1000, max_value=999_999)
MARKED = ("Unit Price", "Extended Price")


def whole_amounts_csv(values: list[int], mark: str, separator: str, extra: str | None) -> str:
    """An Autotask CSV whose unit prices and net amounts are `values` written with `mark`
    between thousands and no decimals (a '#,##0' cell format), tax and quantity without a mark,
    dates dd.mm.yyyy; `extra`, when given, is one more line's net amount."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, lineterminator="\r\n")
    writer.writerow(AT_HEADER.split(","))
    nets = [f"{v:,}".replace(",", mark) for v in values] + ([extra] if extra else [])
    for i, net in enumerate(nets):
        writer.writerow([72001 + i, "INV-20110", "02.11.2026", "Müller & Söhne GmbH", "Switch",
                         "1", net, net, "285", "01.11.2026", "30.11.2026"])  # fmt: skip
    return out.getvalue()


def read_lines(text: str, encoding: str, number_format: str | None) -> tuple[list[Decimal], str]:
    """(the net amounts loaded, the number format reported) of the export `text`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "billing_items.csv"
        path.write_bytes(text.encode(encoding))
        (raw,) = read_inputs([path], "autotask")
        settings = Settings(cycle="2026-11", currency="EUR", number_format=number_format)
        batches = list(normalise(raw, settings))
    nets = [n for b in batches for n in b.lines["net_amount"].to_list()]
    return nets, batches[0].number_format


@settings(max_examples=40)  # each example reads and validates a file: 0.3 s
@given(
    values=st.lists(WHOLE, min_size=1, max_size=4),
    mark=st.sampled_from([".", ","]),
    separator=st.sampled_from([";", ",", "\t"]),
    encoding=st.sampled_from(["cp1252", "utf-8"]),
)
def test_amounts_whose_decimal_mark_no_value_proves_are_refused_not_guessed(
    values: list[int], mark: str, separator: str, encoding: str
) -> None:
    """Every amount with a mark reads with either (`1.500`, `3,000`): the file is refused,
    naming the columns, a value of each and --number-format, whatever its separator and dates
    hint; given the format, the amounts are read in it."""
    text = whole_amounts_csv(values, mark, separator, None)
    with pytest.raises(InputError) as refused:
        read_lines(text, encoding, None)
    message = str(refused.value)
    assert "cannot be read with certainty" in message and "--number-format" in message
    first = f"{values[0]:,}".replace(",", mark)
    for column in MARKED:
        assert f"{first!r} in '{column}' (row 1)" in message, message
    thousands = "comma" if mark == "." else "point"
    assert read_lines(text, encoding, thousands) == (
        [Decimal(v) for v in values],
        f"decimal {thousands} (given)",
    )


@settings(max_examples=40)  # each example reads and validates a file: 0.3 s
@given(
    values=st.lists(WHOLE, min_size=1, max_size=4),
    mark=st.sampled_from([".", ","]),
    proof=st.sampled_from(["comma", "point"]),
    at=st.integers(min_value=0, max_value=4),
)
def test_one_value_that_proves_the_mark_decides_the_file(
    values: list[int], mark: str, proof: str, at: int
) -> None:
    """One value readable with one mark only (`1.500,00`, `12.5`), on any row, decides the
    file, and its ambiguous values are read with that mark."""
    extra = "1.500,00" if proof == "comma" else "12.5"
    text = whole_amounts_csv(values, mark, ";", extra)
    lines = text.splitlines(keepends=True)
    lines.insert(1 + min(at, len(values)), lines.pop())  # the proof on another row
    nets, reported = read_lines("".join(lines), "utf-8", None)
    as_thousands = (proof == "comma") == (mark == ".")
    cent = Decimal("0.01")
    written = [
        Decimal(v) if as_thousands else (Decimal(v) / 1000).quantize(cent, ROUND_HALF_UP)
        for v in values
    ]
    proved = Decimal("1500.00") if proof == "comma" else Decimal("12.5")
    assert sorted(nets) == sorted([*written, proved])
    assert reported == ("decimal comma (detected)" if proof == "comma" else "decimal point")


LATIN_NAMES = st.sampled_from(["Kestrel Dental", "Café Olé Ltd", "Zürich AG", "Müller & Söhne"])


@given(
    order=st.sampled_from(["utf-16-le", "utf-16-be"]),
    separator=st.sampled_from([",", "\t", ";"]),
    eol=st.sampled_from(["\r\n", "\n"]),
    names=st.lists(LATIN_NAMES, min_size=1, max_size=3),
)
def test_utf16_text_without_a_byte_order_mark_is_named_as_such(
    order: str, separator: str, eol: str, names: list[str]
) -> None:
    """UTF-16 text without its byte-order mark is refused as what it is (not as binary data),
    asking for CSV UTF-8; with the mark, the same text loads."""
    rows = [
        AT_HEADER.split(","),
        *(AT_LINE.replace("Kestrel Dental Practice", n).split(",") for n in names),
    ]
    text = "".join(separator.join(row) + eol for row in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.txt"
        path.write_bytes(text.encode(order))
        with pytest.raises(InputError) as refused:
            read_inputs([path], "autotask")
        path.write_bytes(text.encode("utf-16"))
        (raw,) = read_inputs([path], "autotask")
        assert raw.collect(raw.frame)["client_name"].to_list() == names
    message = str(refused.value)
    endian = order.removeprefix("utf-16-")
    assert (
        f"UTF-16 text ({'little' if endian == 'le' else 'big'}-endian) without a byte-order mark"
        in message
    )
    assert "binary" not in message and "CSV UTF-8" in message


@given(
    lines=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10**9),
            st.sampled_from(["2026-11-02 00:00:00.000", "02/11/2026", "2026-11-02"]),
            st.decimals(min_value=0, max_value=10**6, places=2),
        ),
        min_size=1,
        max_size=4,
    ),
    separator=st.sampled_from([",", ";", "\t"]),
    null=st.sampled_from(["NULL", ""]),
)
def test_a_file_without_its_header_row_is_named_as_such(
    lines: list[tuple[int, str, Decimal]], separator: str, null: str
) -> None:
    """A results grid saved without its column names (SSMS's default): the first line is read
    as data where the header should be and refused as a file without a header row, quoting
    its values, never as one missing a column; with the header above, the lines load."""
    rows = [
        [
            str(ref),
            "INV-1",
            date,
            "Kestrel Dental",
            "Workstation",
            "1",
            str(net),
            str(net),
            "0",
            null,
            null,
        ]
        for ref, date, net in lines
    ]
    text = "".join(separator.join(row) + "\r\n" for row in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.csv"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InputError) as refused:
            read_inputs([path], "autotask")
        path.write_text(separator.join(AT_HEADER.split(",")) + "\r\n" + text, encoding="utf-8")
        (raw,) = read_inputs([path], "autotask")
        assert raw.collect(raw.frame).height == len(lines)
    message = str(refused.value)
    assert "seems to have no header row" in message, message
    assert f"{rows[0][0]!r}, {rows[0][2]!r}" in message
