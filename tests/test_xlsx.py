"""discrepancies.xlsx as a spreadsheet reads it: values, formats, safety, the same bytes twice."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import polars as pl
import pytest

from reconcile import xlsx
from reconcile.xlsx import XLSX_TEXT_LIMIT, write_xlsx

MONEY = pl.Decimal(18, 2)
PLACES = pl.Decimal(18, 4)
AWKWARD = [
    "=1+1",  # a formula: written as text, prefixed '
    "<b>Acme</b> & Sons",  # markup
    "  padded  ",  # whitespace kept
    "bell\x07 and _x0041_",  # a control character, and text that looks like Excel's escape
    "Zürich – 東京 \U0001f4b7",  # beyond ASCII
    "x" * (XLSX_TEXT_LIMIT + 10),  # longer than a cell holds
    "",  # empty: no cell
    None,
]


def frame() -> pl.DataFrame:
    n = len(AWKWARD)
    return pl.DataFrame(
        {
            "id": [f"D-{i}" for i in range(n)],
            "currency": ["GBP", "EUR", None, "GBP", "US$", "GBP", "EUR", "GBP"],
            "service_period_start": [dt.date(2026, 11, 1)] * (n - 1) + [None],
            "autotask_quantity": [Decimal("1.5000"), None, *[Decimal("2.0000")] * (n - 2)],
            "difference": [
                Decimal("-1234.56"),
                Decimal("0.01"),
                None,
                *[Decimal("9.99")] * (n - 3),
            ],
            "message": AWKWARD,
        },
        schema_overrides={"autotask_quantity": PLACES, "difference": MONEY},
    )


@pytest.fixture
def written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(xlsx, "XLSX_BLOCK", 3)  # several blocks: row numbers carry on
    path = tmp_path / "d.xlsx"
    write_xlsx(frame(), path)
    return path


def test_values_read_back_exactly(written: Path) -> None:
    expected = frame()
    got = pl.read_excel(written, schema_overrides={"difference": pl.String})
    assert got.columns == expected.columns
    assert got["id"].to_list() == expected["id"].to_list()
    assert got["currency"].to_list() == expected["currency"].to_list()
    messages = got["message"].to_list()
    assert messages[0] == "'=1+1"
    assert messages[1:5] == AWKWARD[1:5]
    assert messages[5] == "x" * XLSX_TEXT_LIMIT
    assert messages[6:] == [None, None]
    assert [None if v is None else Decimal(v) for v in got["difference"].to_list()] == [
        None if v is None else Decimal(v) for v in expected["difference"].to_list()
    ]


def test_the_sheet_is_what_finance_opens(written: Path) -> None:
    sheet: Any = openpyxl.load_workbook(written).active
    assert sheet.title == "Discrepancies"
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:F{len(AWKWARD) + 1}"
    assert [c.value for c in sheet[1]] == frame().columns
    assert all(c.font.b for c in sheet[1])
    rows = list(sheet.iter_rows(min_row=2))
    assert rows[0][4].value == -1234.56 and '"GBP"' in rows[0][4].number_format
    assert '"EUR"' in rows[1][4].number_format
    assert rows[4][4].number_format == "#,##0.00;-#,##0.00"  # "US$" is no currency code
    assert rows[0][3].value == 1.5 and rows[0][3].number_format == "#,##0.0000"
    assert rows[0][2].value == "2026-11-01" and rows[0][2].data_type == "s"
    assert rows[0][5].data_type == "s"  # never a formula
    assert sheet.column_dimensions["F"].width > 60


def test_the_same_frame_gives_the_same_bytes(tmp_path: Path) -> None:
    write_xlsx(frame(), tmp_path / "a.xlsx")
    write_xlsx(frame(), tmp_path / "b.xlsx")
    assert (tmp_path / "a.xlsx").read_bytes() == (tmp_path / "b.xlsx").read_bytes()


def test_an_empty_table_is_a_header(tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    write_xlsx(frame().clear(), path)
    sheet: Any = openpyxl.load_workbook(path).active
    assert [c.value for c in sheet[1]] == frame().columns
    assert sheet.max_row == 1
