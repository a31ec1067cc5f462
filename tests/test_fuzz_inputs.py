"""Hypothesis writes valid exports of both platforms in every format and dialect, then corrupts
them; `reconcile load` must end in a loaded, conserving cycle or exit 2 naming the file, never a
traceback or exit 3. RECONCILE_FUZZ_EXAMPLES sets the number of examples (CI default: 25)."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, assert_conserved
from reconcile.cli import main
from reconcile.store import Workspace

EXAMPLES = int(os.environ.get("RECONCILE_FUZZ_EXAMPLES", "25"))
AT = ["Billing Item ID", "Invoice Number", "Invoice Date", "Organization Name", "Item Name",
      "Quantity", "Unit Price", "Extended Price", "Total Tax"]  # fmt: skip
HALO = ["id", "invoicenumber", "invoice_date", "client_name", "item_shortdescription",
        "qty_order", "unit_price", "net_amount", "tax_amount"]  # fmt: skip
SEEDS = {
    "halo.json": (FIXTURES / "realworld" / "documents" / "halo_complete.json").read_bytes(),
    "at.xml": (FIXTURES / "quirks" / "at_invoice.xml").read_bytes(),
}
NUMBERS = st.sampled_from(
    ["12.50", "-3.00", "(4.00)", "£1,234.56", "€9.99", "1e400", "99999999999999999999.99",
     "NaN", "12,50", "--5", "=1+1", "", " 7 ", "1.5e3", "0.005", "\u221212.00"]
)  # fmt: skip
TEXT = st.text(min_size=0, max_size=12).filter(lambda t: "\x00" not in t) | st.sampled_from(
    ["Acme Ltd", '=HYPERLINK("x")', "\x1b[2J", "Café", "a\nb"]
)


@st.composite
def rows(draw: st.DrawFn, platform: str) -> list[list[str]]:
    out = []
    for n in range(draw(st.integers(1, 6))):
        date = "11/03/2026" if platform == "autotask" else "03/11/2026"
        out.append(
            [
                str(n + 1),
                f"INV-{draw(st.integers(1, 3))}",
                draw(st.sampled_from([date, "x"])),
                draw(TEXT),
                draw(TEXT),
                draw(NUMBERS),
                draw(NUMBERS),
                draw(NUMBERS),
                draw(NUMBERS),
            ]
        )
    return out


def _csv(header: list[str], body: list[list[str]], sep: str) -> str:
    def q(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in f'{sep}"\n\r') else v

    return "\r\n".join(sep.join(q(v) for v in r) for r in [header, *body]) + "\r\n"


def _xlsx(header: list[str], body: list[list[str]]) -> bytes:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    # A fixed creation time: the same draw gives the same bytes (hypothesis replays draws; the
    # clock in docProps/core.xml changed a compressed length between two, a flaky test).
    book.set_properties({"created": datetime(2026, 11, 1)})
    sheet = book.add_worksheet("Billing")
    for r, values in enumerate([header, *body]):
        for c, value in enumerate(values):
            sheet.write_string(r, c, value)
    book.close()
    return buffer.getvalue()


@st.composite
def exports(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["csv", "xlsx", "json", "xml"]))
    if kind in ("json", "xml"):
        name = "halo.json" if kind == "json" else "at.xml"
        data = SEEDS[name]
        if kind == "json" and draw(st.booleans()):
            doc = json.loads(data)
            doc[draw(st.sampled_from(["invoices", "record_count", "x"]))] = draw(
                st.sampled_from([None, 1, "s", [], {}, [[[[[[]]]]]], -1e308])
            )
            data = json.dumps(doc).encode()
        return name, data
    platform = draw(st.sampled_from(["autotask", "halopsa"]))
    header = list(AT if platform == "autotask" else HALO)
    body = draw(rows(platform))
    if draw(st.booleans()):
        drop = draw(st.integers(0, len(header) - 1))
        header.pop(drop)
        body = [r[:drop] + r[drop + 1 :] for r in body]
    if draw(st.booleans()):
        perm = draw(st.permutations(range(len(header))))
        header = [header[i] for i in perm]
        body = [[r[i] for i in perm] for r in body]
    if draw(st.booleans()):
        body.insert(draw(st.integers(0, len(body))), [draw(TEXT)] * draw(st.integers(0, 12)))
    if draw(st.booleans()):
        body.append(["x" * draw(st.sampled_from([10, 200_000]))] * len(header))
    if kind == "xlsx":
        return "export.xlsx", _xlsx(header, body)
    text = _csv(header, body, draw(st.sampled_from([",", ";", "\t"])))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    return "export.csv", text.encode(encoding, errors="replace")


def _bomb(data: bytes, how: str) -> bytes:
    """The workbook rewritten as an archive bomb would be: a sheet declaring its dimension up to
    XFD1048576, a shared-string table claiming two billion strings, or a sheet member padded to
    17 MiB that compresses a thousandfold."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename.endswith("sheet1.xml") and how == "dimension":
                body = re.sub(
                    rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1:XFD1048576"/>', body
                )
            elif info.filename.endswith("sharedStrings.xml") and how == "strings":
                body = re.sub(rb'count="\d+" uniqueCount="\d+"', b'count="2000000000" '
                              b'uniqueCount="2000000000"', body)  # fmt: skip
            elif info.filename.endswith("sheet1.xml") and how == "ratio":
                body = body.replace(b"</worksheet>", b" " * (17 << 20) + b"</worksheet>")
            dst.writestr(info.filename, body)
    return out.getvalue()


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[str, bytes]:
    name, data = draw(exports())
    how = draw(st.sampled_from(["none", "cut", "nul", "flip", "junk", "duplicate", "bomb"]))
    if how == "bomb" and name.endswith(".xlsx"):
        data = _bomb(data, draw(st.sampled_from(["dimension", "strings", "ratio"])))
    elif how == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "nul" and data:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    elif how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    elif how == "junk":
        data += draw(st.binary(min_size=1, max_size=64))
    elif how == "duplicate" and name.endswith(".json"):
        data = data.replace(b'"net_amount":', b'"net_amount": 1, "net_amount":', 1)
    return name, data


@settings(
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=corrupted())
def test_any_export_loads_conserving_or_exits_2(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, bytes],
) -> None:
    name, data = case
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / name
    path.write_bytes(data)
    ws = folder / "ws.duckdb"
    monkeypatch.setattr(sys, "argv", ["reconcile", "--workspace", str(ws), "load", "--cycle",
                                      "2026-11", "--allow-other-month", str(path)])  # fmt: skip
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    output = capsys.readouterr()
    text = output.out + output.err
    assert code in (0, 2), f"exit {code} for {name}: {text}"
    assert "Traceback" not in text and "Internal error" not in text, text
    if code == 2:
        assert name in text, text  # the message names the file
    if not ws.exists():
        return
    with Workspace(ws) as workspace:
        loads = workspace.frame("SELECT * FROM loads", []).to_dicts()
        for load in loads:
            assert_conserved(workspace, load)


def _damaged_member(data: bytes, how: str) -> bytes:
    """The workbook with its first worksheet's member damaged as a disk or a transfer damages
    an archive whose directory is intact: bytes changed inside its compressed data (the
    deflate stream no longer decodes, or decodes to data failing its CRC), the member marked
    encrypted, or stored with a compression method zipfile does not know."""
    book = zipfile.ZipFile(io.BytesIO(data))
    info = book.getinfo("xl/worksheets/sheet1.xml")
    local = info.header_offset
    name_len, extra_len = struct.unpack("<HH", data[local + 26 : local + 30])
    start = local + 30 + name_len + extra_len
    damaged = bytearray(data)
    if how == "inflate":
        damaged[start : start + 8] = b"\xff" * 8  # an invalid deflate block type
    elif how == "crc":
        damaged[start + info.compress_size // 2] ^= 0x01
    else:
        # flags (local +6, central +8) or method (local +8, central +10) of this member
        centrals = [m.start() for m in re.finditer(rb"PK\x01\x02", data)]
        entry = next(c for c in centrals if struct.unpack("<I", data[c + 42 : c + 46])[0] == local)
        if how == "encrypted":
            for at in (local + 6, entry + 8):
                damaged[at] |= 0x01
        else:  # method
            for at in (local + 8, entry + 10):
                damaged[at : at + 2] = struct.pack("<H", 97)
    return bytes(damaged)


@pytest.mark.parametrize(
    ("how", "name"),
    [
        ("inflate", "export.xlsx"),
        ("crc", "export.xlsx"),
        ("encrypted", "export.xlsx"),
        ("method", "export.xlsx"),
        ("password", "export.xlsx"),
        ("password", "export.xls"),  # also an Excel 97-2003 workbook, refused alike
        ("password", "export.csv"),
    ],
)
def test_damaged_workbook_member_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    how: str,
    name: str,
) -> None:
    """A workbook whose archive directory reads but whose sheet does not (found by the fuzz
    test: a changed byte inside the compressed sheet raised zlib.error, exit 3) is refused as
    damaged, exit 2, naming the file."""
    header = list(AT)
    body = [["x"] * len(header) for _ in range(50)]
    path = tmp_path / name
    xlsx = _xlsx(header, body)
    # Saved with a password, Excel wraps the package in an OLE compound file (MS-OFFCRYPTO).
    compound = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504) + xlsx
    path.write_bytes(compound if how == "password" else _damaged_member(xlsx, how))
    ws = tmp_path / "ws.duckdb"
    given = tmp_path if name.endswith(".xls") else path  # a folder stands for its .xls too
    monkeypatch.setattr(sys, "argv", ["reconcile", "--workspace", str(ws), "load", "--cycle",
                                      "2026-11", "--allow-other-month", str(given)])  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main()
    output = capsys.readouterr()
    text = output.out + output.err
    assert exit_.value.code == 2, text
    assert name in text, text
    assert ("password" if how == "password" else "cannot be read") in text, text
    assert "Traceback" not in text, text
