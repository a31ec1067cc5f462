"""How a text export is written: encoding, separator, where its header is, and whether it is
text at all.

Row numbers: the header's physical line in the file is `Dialect.header_line` (1-based, as a text
editor counts); data rows are numbered from 1 on the record below the header, blank rows
included, so data row N sits on line header_line + N when no value spans lines.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from reconcile.errors import InputError
from reconcile.load.base import HEADER_SEARCH_ROWS, find_header, header_fit, unwrap_excel_text

SAMPLE_BYTES = 1 << 16
SEPARATORS = (",", ";", "\t", "|")
SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# Excel's delimiter hint: a first line `sep=;` (sometimes quoted) names the separator.
SEP_LINE = re.compile(r'^\ufeff?"?sep=(.)"?\s*$', re.IGNORECASE)
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


def bom_codec(head: bytes) -> str | None:
    """The codec a byte-order mark at the start of `head` names ("utf-8-sig", "utf-16",
    "utf-32"; each drops the BOM), or None without one. UTF-32 LE's BOM begins with UTF-16
    LE's, so it is looked for first."""
    if head.startswith(UTF32_BOMS):
        return "utf-32"
    if head.startswith(UTF16_BOMS):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    return None


MAC_ROMAN = "mac_roman"
SINGLE_BYTE = {"cp1252": "Windows-1252", MAC_ROMAN: "Mac Roman"}  # encodings polars cannot read


@dataclass(frozen=True)
class Dialect:
    """How one CSV export is written.

    `encoding` is "utf-8", "utf-8-sig", "cp1252", "mac_roman" (Excel for Mac's "CSV
    (Macintosh)") or "utf-16" (Excel's "Unicode Text": UTF-16 with a BOM). `header_line` is
    the header's physical line (1-based); the lines above it (a `sep=` line, title rows, a
    group-header row) are skipped. `header` holds its cells.
    `excel_text` is False when the bytes `="` occur nowhere in the file, so that no cell needs
    Excel's keep-the-leading-zeros wrapping taken off (base.unwrap_excel_text). `cr_lines` is
    True when the lines end in a CR alone (read with CR as the end of line: eol).
    """

    encoding: str
    separator: str
    header_line: int = 1
    header: tuple[str, ...] = ()
    sep_line: bool = False
    excel_text: bool = True  # some cell may be written `="0571"`; False only when none can be
    cr_lines: bool = False  # lines end in a bare CR (Excel for Mac's "CSV (Macintosh)")

    @property
    def text_encoding(self) -> str:
        """The codec to open the file with as text (a BOM is dropped)."""
        return "utf-8-sig" if self.encoding.startswith("utf-8") else self.encoding

    @property
    def separator_name(self) -> str:
        return SEPARATOR_NAMES.get(self.separator, repr(self.separator))

    @property
    def eol(self) -> str:
        """The byte polars ends a line at: CR for a file whose lines end in a bare CR (quoted
        values may hold CRs and LFs: a line break inside a cell), else LF (a CRLF's CR is
        dropped)."""
        return "\r" if self.cr_lines else "\n"

    def describe(self) -> dict[str, str]:
        """The dialect as the control totals show it; `header_row` is a file line number."""
        separator = self.separator_name + (" (from the sep= line)" if self.sep_line else "")
        described = {
            "encoding": self.encoding,
            "separator": separator,
            "header_row": str(self.header_line),
        }
        if self.cr_lines:
            described["line_ends"] = "CR (Excel for Mac)"
        return described


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


UTF16_PROBE = 1024  # bytes of a file's start looked at for UTF-16 text without a BOM


def utf16_order(head: bytes) -> str | None:
    """The byte order, "little-endian" or "big-endian", when the first UTF16_PROBE bytes of
    `head` are UTF-16 text without a byte-order mark (Latin-1 characters: every other byte
    NUL, the bytes between them neither NUL nor a control byte but tab and line ends), else
    None."""
    sample = head[: min(len(head), UTF16_PROBE) // 2 * 2]
    text = bytes(range(32, 256)) + b"\t\r\n"
    for order, chars, nuls in (
        ("little-endian", sample[0::2], sample[1::2]),
        ("big-endian", sample[1::2], sample[0::2]),
    ):
        if chars and not nuls.strip(b"\x00") and not chars.translate(None, text):
            return order
    return None


def _refuse_utf16_without_bom(path: Path, head: bytes) -> None:
    """InputError for UTF-16 text without a byte-order mark, which would be refused as binary
    data: Excel's "Unicode Text" writes the mark, and without it the byte order is a guess."""
    order = utf16_order(head)
    if order is not None:
        raise InputError(
            str(path),
            f"the file is UTF-16 text ({order}) without a byte-order mark, so its encoding "
            "cannot be told for certain",
            expected="UTF-8 text, or UTF-16 with a byte-order mark (Excel's Unicode Text)",
            hint="Open it in Excel or a text editor and save it as CSV UTF-8, and load that.",
        )


EXCEL_TEXT_MARK = b'="'


@dataclass(frozen=True)
class Scan:
    """What one read of a whole file found: where its first NUL byte is (None: none), whether
    the bytes `="` occur in it, and where its first byte beyond ASCII is (None: none)."""

    nul: int | None
    marked: bool
    beyond_ascii: int | None


def scan_bytes(path: Path) -> Scan:
    """Read the whole file once, in blocks (Scan). A NUL after the sample would otherwise
    reach the outputs; a file without `="` has no cell to unwrap, which spares a pass over
    every cell; a file whose sample is ASCII may hold another encoding's bytes further on."""
    beyond: int | None = None
    with path.open("rb") as fh:
        offset, marked, tail = 0, False, b""
        for block in iter(lambda: fh.read(1 << 22), b""):
            if beyond is None and not block.isascii():
                beyond = offset + next(i for i, b in enumerate(block) if b > 0x7F)
            # A block without `=` (memchr, the speed of reading it) has no `="` to look for;
            # the two-byte search costs five times that (0.25 CPU-s for a 260 MB export).
            marked = (
                marked
                or EXCEL_TEXT_MARK in tail + block[:1]
                or (b"=" in block and EXCEL_TEXT_MARK in block)
            )
            found = block.find(b"\x00")
            if found >= 0:
                return Scan(offset + found, marked, beyond)
            tail = block[-1:]
            offset += len(block)
    return Scan(None, marked, beyond)


def _refuse_nul(path: Path) -> Scan:
    """Refuse a file holding a NUL byte; else what scan_bytes found."""
    scan = scan_bytes(path)
    offset = scan.nul
    if offset is not None:
        raise InputError(
            str(path),
            f"the file is not a text export (it contains binary data: a NUL byte at offset "
            f"{offset})",
            expected="a CSV, XLSX, JSON or XML export from Autotask or HaloPSA",
            hint="The file may be damaged; export it again.",
        )
    return scan


def line_of(data: bytes, offset: int) -> int:
    """The 1-based line (counted by LFs) that the byte at `offset` of `data` is on."""
    return data.count(b"\n", 0, offset) + 1


def _encoding_beyond(path: Path, start: int) -> str:
    """The encoding of a file whose bytes before `start` are ASCII (its sample's, which said
    UTF-8) and whose byte at `start` is not: UTF-8 when the rest is UTF-8, else Windows-1252
    when the whole file is (a Windows-1252 export whose first 64 KiB are plain ASCII: its
    `’` further down was refused as 'invalid utf-8'). InputError naming the line of the first
    byte neither reads."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as fh:
        fh.seek(start)
        try:
            for block in iter(lambda: fh.read(1 << 22), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
    data = path.read_bytes()
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError as exc:
        line = line_of(data, exc.start)
        raise InputError(
            str(path),
            f"the file is neither UTF-8 nor Windows-1252 text throughout: byte "
            f"0x{data[exc.start]:02x} on line {line} (offset {exc.start})",
            expected="one encoding for the whole file",
            hint="Save the file again as CSV UTF-8 and load that.",
        ) from None


# A character of a billing export's text as UTF-8 writes it: a Latin-1 letter or sign (é, £,
# no-break space), a dash or curly quote, the euro. Windows-1252 text spells these bytes only
# as mojibake ("Ã©", "Â£", "â€™"); other UTF-8-shaped pairs occur in it by chance ("CAFÉ’S" is
# C9 92), so they prove nothing.
UTF8_CHARACTER = re.compile(rb"\xc3[\x80-\xbf]|\xc2[\xa0-\xbf]|\xe2\x80[\x90-\xbf]|\xe2\x82\xac")


def sniff_encoding(path: Path, head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith(UTF16_BOMS):
        return "utf-16"
    try:
        # A multi-byte character may be cut at the sample's end; final=False tolerates that.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError as exc:
        bad = exc.start
    utf8 = UTF8_CHARACTER.search(head)
    if utf8 is not None:  # UTF-8 text and a byte UTF-8 cannot hold: read as either, it is wrong
        text_line, bad_line = line_of(head, utf8.start()), line_of(head, bad)
        raise InputError(
            str(path),
            f"the file mixes encodings: UTF-8 text on line {text_line} and byte "
            f"0x{head[bad]:02x} on line {bad_line}, which UTF-8 cannot hold (a part saved as "
            "Windows-1252?)",
            expected="one encoding for the whole file",
            hint="Save the file again as CSV UTF-8 and load that.",
        )
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


def _head_text(path: Path, head: bytes, encoding: str) -> str:
    if encoding == "utf-16":
        text = codecs.getincrementaldecoder("utf-16")(errors="replace").decode(head, final=False)
        if is_binary(text.encode("utf-8")):
            raise InputError(
                str(path),
                "the file is not a text export (it contains binary data)",
                expected="a CSV, XLSX, JSON or XML export from Autotask or HaloPSA",
            )
        return text
    return head.decode(encoding, errors="ignore")


# How an HTML page begins, after a BOM and white space: a web grid's "Export to Excel" often
# writes its table as one under an .xls name (Excel 2000's HTML format), which Excel opens
# after a warning that the format and the extension do not match.
HTML_START = re.compile(r"^[\ufeff\s]*<(?:html|table|!doctype\s+html|meta)\b", re.IGNORECASE)


def _refuse_html(path: Path, text: str) -> None:
    """InputError for a file whose text (`text`, its start) is an HTML page: its table is not
    read as CSV (its tags would make a header it does not have)."""
    if HTML_START.match(text):
        raise InputError(
            str(path),
            "the file is an HTML page (a web table saved under a spreadsheet's name), not a CSV "
            "export or an Excel workbook",
            expected="a CSV or XLSX export",
            hint="Open it in Excel and save it as CSV UTF-8 (Comma delimited) or as an Excel "
            "Workbook (.xlsx), and load that.",
        )


def _records(text: str, separator: str) -> tuple[list[list[str]], list[int]]:
    """The first records of the text (up to HEADER_SEARCH_ROWS that are not blank), each with
    the number of physical lines before it."""
    stream = io.StringIO(text, newline="")
    reader = csv.reader(stream, delimiter=separator)
    records: list[list[str]] = []
    starts: list[int] = []
    filled = 0  # records not blank: blank lines above the header do not count (find_header)
    try:
        while filled < HEADER_SEARCH_ROWS:
            starts.append(reader.line_num)
            record = next(reader, None)
            if record is None:
                starts.pop()
                break
            records.append([unwrap_excel_text(c).strip() for c in record])
            filled += any(records[-1])
    except csv.Error:
        starts = starts[: len(records)]
    return records, starts


def declared_separator(path: Path, first: str) -> str | None:
    """The separator a `sep=` first line (`first`, its line end included or not) names, else
    None. Raises InputError for one that cannot be read (a quote, a line end, not ASCII)."""
    declared = SEP_LINE.match(first.rstrip("\r\n"))
    if not declared:
        return None
    named = declared.group(1)
    if not named.isascii() or named in ('"', "\r", "\n"):
        raise InputError(
            str(path),
            "the sep= line on line 1 names a separator reconcile cannot read",
            expected="a comma, semicolon, tab, pipe or another ASCII character",
            got=first.rstrip("\r\n"),
        )
    return named


def sniff(path: Path) -> Dialect:
    """Encoding, separator and header line of a CSV export; refuses what is not text.

    The separator is the one a `sep=` first line names, else the candidate under which a row
    of known column names (base.find_header) appears, else the one that splits the first line
    into most fields. Raises InputError for an empty, binary or undecodable file.
    """
    head = read_head(path)
    if not head.strip():
        raise InputError(str(path), "the file is empty", expected="a header row and data rows")
    if not head.startswith(UTF16_BOMS) and is_binary(head):
        _refuse_utf16_without_bom(path, head)
        raise InputError(
            str(path),
            "the file is not a text export (it contains binary data)",
            expected="a CSV, XLSX, JSON or XML export from Autotask or HaloPSA",
        )
    excel_text = True  # UTF-16 text spells `="` with NULs between: not looked for
    beyond: int | None = None
    if not head.startswith(UTF16_BOMS):
        scan = _refuse_nul(path)
        excel_text, beyond = scan.marked, scan.beyond_ascii
    encoding = sniff_encoding(path, head)
    if encoding == "utf-8" and beyond is not None and beyond >= len(head):
        encoding = _encoding_beyond(path, beyond)
    # Excel for Mac's "CSV (Macintosh)" ends lines in a bare CR (an LF or CRLF in it is a line
    # break inside a quoted cell: fewer than the lines) and writes Mac Roman, not Windows-1252:
    # read as Windows-1252, 'Café' would load as 'CafŽ'.
    cr_lines = head.count(b"\r") - head.count(b"\r\n") > head.count(b"\n")
    if cr_lines and encoding == "cp1252":
        encoding = MAC_ROMAN
    text = _head_text(path, head, encoding)
    _refuse_html(path, text)
    first, _, rest = text.partition("\n")
    if not text.strip("\ufeff \t\r\n"):
        raise InputError(str(path), "the file is empty", expected="a header row and data rows")
    candidates: tuple[str, ...] = SEPARATORS
    body, offset = text, 0
    named = declared_separator(path, first)
    declared = named is not None
    if named is not None:
        body, offset, candidates = rest, 1, (named,)
    best: tuple[tuple[bool, int], str, int, list[str]] | None = None
    for separator in candidates:
        records, starts = _records(body, separator)
        index = find_header(records)
        if index is None:
            continue
        known, complete = header_fit(records[index])
        if best is None or (complete, known) > best[0]:
            best = ((complete, known), separator, starts[index], records[index])
    if best is None:
        lines = body.splitlines()
        separator = candidates[0] if declared else sniff_separator(lines[0] if lines else "")
        records, _ = _records(body, separator)
        header = records[0] if records else []
        return Dialect(
            encoding, separator, 1 + offset, tuple(header), declared, excel_text, cr_lines
        )
    _, separator, before, header = best
    return Dialect(
        encoding,
        separator,
        1 + offset + before,
        tuple(header),
        declared,
        excel_text,
        cr_lines,
    )


def utf8_source(path: Path, dialect: Dialect) -> bytes | Path:
    """Polars reads UTF-8 only; a Windows-1252, Mac Roman or UTF-16 file is transcoded in
    memory first (lines ending in a bare CR are read with CR as polars' end of line:
    Dialect.eol).

    Raises InputError naming the offset of a byte the encoding cannot hold.
    """
    if dialect.encoding not in ("utf-16", *SINGLE_BYTE):
        return path
    data = path.read_bytes()
    try:
        text = data.decode(dialect.encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            str(path),
            f"the file is not valid {SINGLE_BYTE.get(dialect.encoding, 'UTF-16')} text throughout",
            expected="one encoding for the whole file",
            got=f"byte 0x{data[exc.start]:02x} at offset {exc.start}",
        ) from None
    if "\x00" in text:
        raise InputError(
            str(path),
            "the file is not a text export (it contains a NUL character)",
            expected="a CSV, XLSX, JSON or XML export from Autotask or HaloPSA",
            hint="The file may be damaged; export it again.",
        )
    return text.encode("utf-8")


TEXT_FILE_LIMIT = 64 << 20  # a mapping file is a few hundred rows; beyond this it is not one


def text_file(
    path: Path, kind: str = "mapping file", header: str = "kind,autotask,halopsa"
) -> io.StringIO:
    """A small text file (a mapping CSV, a list of discrepancy ids) decoded the way exports
    are: UTF-8 with or without a BOM, UTF-16 with a BOM, else Windows-1252. Raises InputError
    for a binary, undecodable or oversized file, naming it (`kind`, and the `header` of rows it
    should hold)."""
    if path.stat().st_size > TEXT_FILE_LIMIT:
        raise InputError(
            str(path),
            f"the file is too large for a {kind}",
            expected=f"at most {TEXT_FILE_LIMIT >> 20} MiB of {header} rows",
        )
    data = path.read_bytes()
    if not data.startswith(UTF16_BOMS) and is_binary(data):
        raise InputError(
            str(path),
            "the file is not text (it contains binary data)",
            expected=f"a CSV file with the header {header}",
        )
    encoding = sniff_encoding(path, data)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            str(path),
            "the file is not valid text in one encoding",
            expected="UTF-8 or Windows-1252 text",
            got=f"byte 0x{data[exc.start]:02x} at offset {exc.start}",
        ) from None
    if "\x00" in text:
        raise InputError(str(path), "the file contains a NUL character", expected="text")
    return io.StringIO(text.removeprefix("\ufeff"), newline="")


def _open_text(path: Path, dialect: Dialect) -> io.TextIOWrapper:
    """The file as text positioned on its header line."""
    fh = path.open(encoding=dialect.text_encoding, errors="replace", newline="")
    for _ in range(dialect.header_line - 1):
        fh.readline()
    return fh


def find_ragged_row(path: Path, dialect: Dialect) -> tuple[int, list[str], int] | None:
    """Slow path, taken only after the fast reader failed: the first record with more fields
    than the header (a shorter one is read with empty cells, as polars does).

    Returns (data row, the record's fields, fields expected).
    """
    with _open_text(path, dialect) as fh:
        reader = csv.reader(fh, delimiter=dialect.separator)
        try:
            header = next(reader, [])
            for number, record in enumerate(reader, start=1):
                if len(record) > len(header):
                    return number, record, len(header)
        except csv.Error:  # e.g. a field beyond the csv module's limit: not a ragged row
            return None
    return None


def _is_blank(fields: list[str]) -> bool:
    return all(not unwrap_excel_text(f).strip() for f in fields)


def short_last_record(path: Path, dialect: Dialect, header_len: int) -> int | None:
    """A download cut off mid-row leaves a last record without its final fields.

    Returns the number of fields in that record when it is short, else None (a blank last row
    is a blank row, not a cut-off one).
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        start = max(0, size - SAMPLE_BYTES)
        if dialect.encoding == "utf-16":
            fh.seek(0)
            bom = fh.read(2)
            start = max(2, start - start % 2)
            fh.seek(start)
            tail = fh.read().decode(
                "utf-16-le" if bom == codecs.BOM_UTF16_LE else "utf-16-be", errors="replace"
            )
        else:
            fh.seek(start)
            encoding = dialect.encoding if dialect.encoding in SINGLE_BYTE else "utf-8"
            tail = fh.read().decode(encoding, errors="replace")
    if tail.endswith(("\n", "\r")) or not tail:
        return None
    last = tail.splitlines()[-1]
    fields = next(csv.reader(io.StringIO(last), delimiter=dialect.separator), [])
    if _is_blank(fields):
        return None
    return len(fields) if len(fields) < header_len else None
