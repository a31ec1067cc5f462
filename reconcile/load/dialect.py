"""How a text export is written: encoding, separator, and whether it is text at all."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

from reconcile.errors import InputError

SAMPLE_BYTES = 1 << 16
SEPARATORS = (",", ";", "\t", "|")
SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass(frozen=True)
class Dialect:
    encoding: str  # "utf-8", "utf-8-sig" or "cp1252"
    separator: str

    def describe(self) -> dict[str, str]:
        return {"encoding": self.encoding, "separator": SEPARATOR_NAMES[self.separator]}


def read_head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(SAMPLE_BYTES)


def is_binary(head: bytes) -> bool:
    """Text exports never hold NUL bytes; many C0 control bytes also mean it is not text."""
    if b"\x00" in head:
        return True
    sample = head[:4096]
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 13))
    return controls > max(8, len(sample) // 100)


def sniff_encoding(path: Path, head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(
            str(path),
            "the file is UTF-16 encoded",
            expected="UTF-8 or Windows-1252 text",
            hint="Save the export again as 'CSV UTF-8'.",
        )
    try:
        # A multi-byte character may be cut at the sample's end; final=False tolerates that.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise InputError(
            str(path),
            "the file is neither UTF-8 nor Windows-1252 text",
            expected="a CSV export",
            got=f"byte 0x{head[exc.start]:02x} at offset {exc.start}",
        ) from None
    return "cp1252"


def sniff_separator(first_line: str) -> str:
    """The separator is the candidate that splits the header into the most fields."""
    counts = {sep: len(next(csv.reader([first_line], delimiter=sep))) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    return best if counts[best] > 1 else ","


def sniff(path: Path) -> Dialect:
    head = read_head(path)
    if not head.strip():
        raise InputError(str(path), "the file is empty", expected="a header row and data rows")
    if is_binary(head):
        raise InputError(
            str(path),
            "the file is not a text export (it contains binary data)",
            expected="a CSV, XLSX, JSON or XML export from Autotask or HaloPSA",
        )
    encoding = sniff_encoding(path, head)
    lines = head.decode(encoding, errors="ignore").splitlines()
    return Dialect(encoding=encoding, separator=sniff_separator(lines[0] if lines else ""))


def utf8_source(path: Path, dialect: Dialect) -> bytes | Path:
    """Polars reads UTF-8 only; a Windows-1252 file is transcoded in memory first."""
    if dialect.encoding == "cp1252":
        return path.read_bytes().decode("cp1252").encode("utf-8")
    return path


def find_ragged_row(path: Path, dialect: Dialect) -> tuple[int, int, int] | None:
    """Slow path, taken only after the fast reader failed: the first record of the wrong width.

    Returns (data row, fields found, fields expected).
    """
    encoding = "utf-8-sig" if dialect.encoding.startswith("utf-8") else dialect.encoding
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=dialect.separator)
        header = next(reader, [])
        for number, record in enumerate(reader, start=1):
            if len(record) != len(header):
                return number, len(record), len(header)
    return None


def short_last_record(path: Path, dialect: Dialect, header_len: int) -> int | None:
    """A download cut off mid-row leaves a last record without its final fields.

    Returns the number of fields in that record when it is short, else None.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - SAMPLE_BYTES))
        tail = fh.read()
    if tail.endswith((b"\n", b"\r")):
        return None
    encoding = "cp1252" if dialect.encoding == "cp1252" else "utf-8"
    last = tail.decode(encoding, errors="replace").splitlines()[-1]
    fields = len(next(csv.reader(io.StringIO(last), delimiter=dialect.separator), []))
    return fields if fields < header_len else None
