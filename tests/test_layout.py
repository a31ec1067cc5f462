"""Where the table starts and which rows are no rows: the same export, however Excel dressed it.

A clean export and the same export with title rows, a `sep=` line, blank rows, `="…"` cells,
trailing empty lines or another encoding must give the same lines and amounts; the blank rows
are counted as skipped (fixtures/realworld/layout/ holds the hand-picked cases).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_data import sample_report_data, with_summary

from conftest import AUTOTASK_GRID_HEADER, FIXTURES, invoke
from reconcile.config import Settings
from reconcile.load import read_inputs
from reconcile.report import report_html
from reconcile.validate import normalise

LAYOUT = FIXTURES / "realworld" / "layout"
HEADER = AUTOTASK_GRID_HEADER
IDS = {"Billing Item ID", "Invoice Number", "Organization ID"}
CLIENTS = [("0571", "Acme Widgets Ltd"), ("0032", "Birchwood Dental"), ("239", "Zürich AG")]
ITEMS = ["Managed Workstation", "Microsoft 365 Business Premium", "Remote Support", "Backup"]
TITLES = [
    "Invoice History",
    "Report run on 11/30/2026 09:14 AM",
    '"Prepared for Northwind IT Services, Finance"',
    "",
]
COMPARED = [
    "line_ref",
    "invoice_number",
    "invoice_date",
    "client_id",
    "client_name",
    "item_name",
    "quantity",
    "unit_price",
    "net_amount",
    "tax_amount",
]

money = st.decimals(min_value=-5000, max_value=5000, places=2, allow_nan=False)


@st.composite
def exports(draw: st.DrawFn) -> list[list[str]]:
    rows = []
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        client_id, client_name = draw(st.sampled_from(CLIENTS))
        rows.append(
            [
                str(61000 + i),
                f"INV-{20400 + draw(st.integers(min_value=0, max_value=3))}",
                "11/13/2026",
                client_id,
                client_name,
                draw(st.sampled_from(ITEMS)),
                str(draw(st.decimals(min_value=0, max_value=50, places=2, allow_nan=False))),
                str(draw(st.decimals(min_value=0, max_value=500, places=2, allow_nan=False))),
                str(draw(money)),
                str(draw(money)),
            ]
        )
    return rows


@dataclass(frozen=True)
class Dressing:
    """How a person's Excel or PSA dressed the export up."""

    separator: str
    sep_line: bool
    titles: list[str]
    blanks: list[tuple[int, str]]  # (data row it goes before, blank row text)
    wrapped: list[bool]  # per data row: ids written ="…"
    trailing: int  # empty lines after the last row
    encoding: str
    eol: str


@st.composite
def dressings(draw: st.DrawFn, n_rows: int) -> Dressing:
    separator = draw(st.sampled_from([",", ";", "\t"]))
    blank_kinds = st.sampled_from(["", separator * 9, f"  {separator} {separator}", "   "])
    return Dressing(
        separator=separator,
        sep_line=draw(st.booleans()),
        titles=draw(st.lists(st.sampled_from(TITLES), max_size=3)),
        blanks=draw(
            st.lists(st.tuples(st.integers(min_value=0, max_value=n_rows), blank_kinds), max_size=4)
        ),
        wrapped=draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows)),
        trailing=draw(st.integers(min_value=0, max_value=2)),
        encoding=draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"])),
        eol=draw(st.sampled_from(["\r\n", "\n"])),
    )


def _field(value: str, separator: str) -> str:
    return f'"{value}"' if separator in value or '"' in value else value


def write_clean(path: Path, rows: list[list[str]]) -> None:
    lines = [",".join(_field(v, ",") for v in row) for row in [HEADER, *rows]]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def write_dressed(path: Path, rows: list[list[str]], d: Dressing) -> int:
    """Write the dressed export; returns how many blank rows it holds below the header."""
    sep = d.separator
    lines = [f"sep={sep}"] if d.sep_line else []
    lines += [title if sep == "," else title.replace('"', "") for title in d.titles]
    lines.append(sep.join(HEADER))
    for i, row in enumerate(rows):
        lines += [text for at, text in d.blanks if at == i]
        cells = [
            f'="{v}"' if d.wrapped[i] and HEADER[c] in IDS else _field(v, sep)
            for c, v in enumerate(row)
        ]
        lines.append(sep.join(cells))
    lines += [text for at, text in d.blanks if at == len(rows)]
    lines += [""] * d.trailing
    path.write_bytes((d.eol.join(lines) + d.eol).encode(d.encoding))
    return sum(1 for at, _ in d.blanks) + d.trailing


def load(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    (raw,) = read_inputs([path], None)
    batches = list(normalise(raw, Settings(cycle="2026-11", currency="GBP")))
    return (
        pl.concat([b.lines for b in batches]).select(COMPARED),
        pl.concat([b.rejected for b in batches]),
    )


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_dressed_export_loads_like_the_clean_one(data: st.DataObject) -> None:
    rows = data.draw(exports())
    dressing = data.draw(dressings(len(rows)))
    with tempfile.TemporaryDirectory() as folder:
        clean, dressed = Path(folder) / "clean.csv", Path(folder) / "dressed.csv"
        write_clean(clean, rows)
        blanks = write_dressed(dressed, rows, dressing)
        expected, none_rejected = load(clean)
        got, rejected = load(dressed)
    assert none_rejected.height == 0
    assert got.to_dicts() == expected.to_dicts()
    assert expected["net_amount"].to_list() == [Decimal(r[8]) for r in rows]
    assert expected["client_id"].to_list() == [r[3] for r in rows]
    assert rejected["disposition"].to_list() == ["skipped"] * blanks
    assert set(rejected["reasons"].to_list()) <= {"blank row"}


def _dialect(name: str) -> dict[str, str]:
    (raw,) = read_inputs([LAYOUT / name], None)
    return raw.dialect


def test_the_dialect_records_where_the_header_is() -> None:
    assert _dialect("at_title_rows.csv") == {
        "encoding": "utf-8-sig",
        "separator": "comma",
        "header_row": "5",
    }
    assert _dialect("at_sep_semicolon.csv")["separator"] == "semicolon (from the sep= line)"
    assert _dialect("at_sep_semicolon.csv")["header_row"] == "2"
    assert _dialect("at_sep_and_title_rows.csv")["header_row"] == "4"
    assert _dialect("at_group_header.csv")["header_row"] == "2"
    assert _dialect("at_unicode_text.txt") == {
        "encoding": "utf-16",
        "separator": "tab",
        "header_row": "1",
    }
    assert _dialect("at_unicode_text_semicolon.csv")["header_row"] == "3"
    assert _dialect("at_second_sheet.xlsx") == {
        "workbook": "xlsx",
        "sheet": "Invoice lines",
        "header_row": "4",
    }


def test_xlsx_blank_rows_keep_their_row_numbers() -> None:
    """Data row N is Excel row header_row + N: blank rows are counted, not dropped."""
    lines, rejected = load(LAYOUT / "at_second_sheet.xlsx")
    (raw,) = read_inputs([LAYOUT / "at_second_sheet.xlsx"], None)
    numbers = raw.collect(raw.frame.select("_row", "net_amount"))
    assert numbers.rows() == [(1, "420"), (2, "271.5"), (3, None), (4, "190"), (5, "212.5")]
    assert rejected.select("row_number", "disposition").rows() == [(3, "skipped")]
    assert lines.height == 4


def test_a_file_name_with_glob_characters_is_a_name(ws_path: Path, tmp_path: Path) -> None:
    for name in ("inv*.csv", "billing [2].csv", "inv?.csv"):
        path = tmp_path / name
        path.write_bytes((LAYOUT / "billing [1].csv").read_bytes())
        result = invoke("--workspace", tmp_path / f"{len(name)}.duckdb", "validate", path)
        assert result.exit_code == 0, result.output
        assert "4 valid, 0 invalid" in result.output


def test_a_header_with_only_blank_rows_below_is_refused(ws_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text(",".join(HEADER) + "\n,,,,,,,,,\n\n", encoding="utf-8")
    result = invoke("--workspace", ws_path, "load", "--cycle", "2026-11", path)
    assert result.exit_code == 2
    assert "the file has a header but no data rows" in result.output


def test_a_trailing_comma_row_is_refused_with_row_and_column(ws_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "trailing.csv"
    row = "61000,INV-1,11/13/2026,0571,Acme,Backup,1,10.00,10.00,2.00"
    path.write_text(",".join(HEADER) + f"\n{row}\n{row},,\n", encoding="utf-8")
    result = invoke("--workspace", ws_path, "load", "--cycle", "2026-11", path)
    assert result.exit_code == 2
    assert "row 2, column 'Total Tax'" in result.output
    assert "2 empty field(s) after the last column" in result.output
    assert "Traceback" not in result.output


def test_the_headline_shows_the_dialect_escaped() -> None:
    sample = sample_report_data()
    dialect = {"sheet": "<b>Lines</b>", "header_row": "4"}
    controls = tuple(dataclasses.replace(c, dialect=dialect) for c in sample.summary.controls)
    html = report_html(with_summary(sample, controls=controls))
    assert "header row 4, sheet &lt;b&gt;Lines&lt;/b&gt;" in html
    assert "<b>Lines</b>" not in html
