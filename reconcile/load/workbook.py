"""An .xlsx archive checked before any reader opens it.

fastexcel (calamine) reads a sheet whole and trusts what the archive declares: a sheet's
`<dimension>` or a far-away cell reference makes it allocate every cell of that rectangle, a
`uniqueCount` makes it reserve that many shared strings, and a zip bomb decompresses into
millions of rows. Each limit below is far beyond a real billing export and well within Excel's
own (1,048,576 rows, 32,767 characters a cell); README "Input limits" states them.
"""

from __future__ import annotations

import lzma
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconcile.errors import InputError

MAX_UNCOMPRESSED = 1 << 30  # all members together, bytes
MAX_RATIO = 200  # uncompressed / compressed, for members above RATIO_FLOOR
RATIO_FLOOR = 16 << 20
MAX_ROWS = 1_048_576  # Excel's own limit
MAX_COLUMNS = 702  # column ZZ; a billing export has a few dozen
MAX_CELLS = 25_000_000  # rows x columns of a sheet's rectangle (1M rows x 24 columns)
MAX_CELL_BYTES = 1 << 20  # one cell's XML: Excel caps a cell at 32,767 characters
CHUNK = 1 << 22

# What zipfile raises for an archive whose directory reads but whose members do not: a deflate
# stream that does not decode (zlib.error) or ends early (EOFError), a compression method it
# does not know (NotImplementedError), a damaged lzma member (lzma.LZMAError), a member marked
# encrypted (RuntimeError, "password required"); BadZipFile for the rest (bad CRC, no directory).
DAMAGED_ARCHIVE: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    lzma.LZMAError,
    RuntimeError,
)
# An OLE compound file (MS-CFB §2.2): what Excel writes for a workbook saved with a password
# (the .xlsx package encrypted inside it, MS-OFFCRYPTO) and for the old .xls format.
COMPOUND_FILE = bytes.fromhex("d0cf11e0a1b11ae1")

_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\s+ref="([A-Z]*)([0-9]*)(?::([A-Z]*)([0-9]*))?"')
_SST = re.compile(rb"<(?:\w+:)?sst\b[^>]*>")
_UNIQUE = re.compile(rb'uniqueCount="([0-9]+)"')
_BIG_COLUMN = re.compile(rb'<(?:\w+:)?c\s[^>]*?r="([A-Z]{2,})[0-9]')
_ROW_NUMBER = re.compile(rb'<(?:\w+:)?row\s[^>]*?r="([0-9]+)"')


def column_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + ord(letter) - ord("A") + 1
    return number


def check_workbook(path: Path) -> None:
    """Refuse, with InputError naming the file and the limit, an archive beyond sane limits;
    and, naming the file, a workbook saved with a password or in the old .xls format, or one
    whose archive is damaged."""
    with path.open("rb") as head:
        if head.read(len(COMPOUND_FILE)) == COMPOUND_FILE:
            raise InputError(
                str(path),
                "the workbook is protected with a password, or is an Excel 97-2003 (.xls) file",
                expected="an .xlsx file saved by Excel or exported by the PSA, without a password",
                hint="Open it in Excel and save a copy as Excel Workbook (.xlsx), with no "
                "password (File > Info > Protect Workbook), then give reconcile the copy.",
            )
    try:
        with zipfile.ZipFile(path) as book:
            members = book.infolist()
            total = sum(m.file_size for m in members)
            if total > MAX_UNCOMPRESSED:
                _refuse(path, f"it would unpack to {total:,} bytes", _mib(MAX_UNCOMPRESSED))
            for member in members:
                if member.file_size > RATIO_FLOOR and member.file_size > MAX_RATIO * max(
                    member.compress_size, 1
                ):
                    ratio = member.file_size // max(member.compress_size, 1)
                    _refuse(
                        path,
                        f"{member.filename} is compressed {ratio:,} to 1, the mark of a zip bomb",
                        f"at most {MAX_RATIO} to 1",
                    )
            for member in members:
                name = member.filename
                if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                    _check_sheet(path, book, name)
                elif name == "xl/sharedStrings.xml":
                    _check_shared_strings(path, book, name)
    except DAMAGED_ARCHIVE as exc:
        raise InputError(
            str(path),
            "the workbook cannot be read (the archive is damaged)",
            expected="an .xlsx file saved by Excel or exported by the PSA",
            got=(str(exc).splitlines() or [type(exc).__name__])[0],
        ) from None


def _check_sheet(path: Path, book: zipfile.ZipFile, name: str) -> None:
    rows = 0
    gaps = _Gaps(path, name, _CELL)
    with book.open(name) as stream:
        for chunk, block in gaps.chunks(stream):
            if gaps.offset == len(block):
                _check_dimension(path, name, chunk[:8192])
            rows += len(_ROW.findall(block))
            if rows > MAX_ROWS:
                _refuse(path, f"{name} holds more than {MAX_ROWS:,} rows", _rows())
            for found in _ROW_NUMBER.finditer(chunk):
                if int(found.group(1)) > MAX_ROWS:
                    _refuse(path, f"{name} has a row numbered {int(found.group(1)):,}", _rows())
            for found in _BIG_COLUMN.finditer(chunk):
                letters = found.group(1).decode()
                if len(letters) > 2 or column_number(letters) > MAX_COLUMNS:
                    _refuse(path, f"{name} has a cell in column {letters}", _columns())


_CELL = re.compile(rb"<(?:\w+:)?c[\s>/]")
_STRING = re.compile(rb"<(?:\w+:)?si[\s>/]")
_ROW = re.compile(rb"<(?:\w+:)?row[\s>/]")
OVERLAP = 256  # bytes of the previous block searched again, for tags cut at a block's end


class _Gaps:
    """Streams a member in blocks, refusing a single cell or string (the bytes between two
    tags) beyond MAX_CELL_BYTES."""

    def __init__(self, path: Path, name: str, tag: re.Pattern[bytes]) -> None:
        self.path, self.name, self.tag = path, name, tag
        self.offset = 0  # bytes read so far
        self.last = 0  # where the last tag started, from the member's start

    def chunks(self, stream: Any) -> Iterator[tuple[bytes, bytes]]:
        tail = b""
        for block in iter(lambda: stream.read(CHUNK), b""):
            chunk = tail + block
            start = self.offset - len(tail)
            self.offset += len(block)
            for found in self.tag.finditer(chunk):
                self._gap(start + found.start())
            self._gap(self.offset, end=True)
            yield chunk, block
            tail = chunk[-OVERLAP:]

    def _gap(self, position: int, end: bool = False) -> None:
        if position - self.last > MAX_CELL_BYTES:
            what = "string" if self.tag is _STRING else "cell"
            _refuse(
                self.path,
                f"{self.name} holds a {what} of more than {MAX_CELL_BYTES:,} bytes",
                "at most 32,767 characters a cell (Excel's own limit)",
            )
        if not end:
            self.last = max(self.last, position)


def _check_dimension(path: Path, name: str, head: bytes) -> None:
    found = _DIMENSION.search(head)
    if not found:
        return
    first_col, first_row, last_col, last_row = (g.decode() if g else "" for g in found.groups())
    last_col, last_row = last_col or first_col, last_row or first_row
    if len(last_col) > 3 or not last_row or len(last_row) > 8:
        _refuse(path, f"{name} declares its cells up to {last_col}{last_row}", _columns())
    columns = column_number(last_col) - column_number(first_col or "A") + 1
    rows = int(last_row) - int(first_row or "1") + 1
    if columns > MAX_COLUMNS:
        _refuse(path, f"{name} declares its cells up to column {last_col}", _columns())
    if int(last_row) > MAX_ROWS:
        _refuse(path, f"{name} declares its cells down to row {int(last_row):,}", _rows())
    if rows * columns > MAX_CELLS:
        _refuse(
            path,
            f"{name} declares {rows:,} rows by {columns:,} columns",
            f"at most {MAX_CELLS:,} cells a sheet",
        )


def _check_shared_strings(path: Path, book: zipfile.ZipFile, name: str) -> None:
    declared: int | None = None
    counted = 0
    gaps = _Gaps(path, name, _STRING)
    with book.open(name) as stream:
        for chunk, block in gaps.chunks(stream):
            if declared is None:
                sst = _SST.search(chunk)
                unique = _UNIQUE.search(sst.group(0)) if sst else None
                declared = int(unique.group(1)) if unique else -1
            counted += len(_STRING.findall(block))
    if declared is not None and declared > MAX_CELLS and declared > 2 * counted + 1000:
        _refuse(
            path,
            f"{name} declares {declared:,} shared strings but holds {counted:,}",
            f"at most {MAX_CELLS:,} shared strings, as many as it holds",
        )


def _rows() -> str:
    return f"at most {MAX_ROWS:,} rows (Excel's own limit)"


def _columns() -> str:
    return f"at most {MAX_COLUMNS} columns (up to column ZZ)"


def _mib(size: int) -> str:
    return f"at most {size >> 20:,} MiB unpacked"


def _refuse(path: Path, got: str, limit: str) -> None:
    raise InputError(
        str(path),
        f"the workbook is beyond reconcile's limits for an export and was not read: {got}",
        expected=limit,
        hint="Export the data again (as CSV for a very large export); see README 'Input limits'.",
    )
