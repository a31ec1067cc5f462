"""Ingest: every format and dialect, real files in, canonical lines and control totals out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from conftest import BAD, DEMO, QUIRKS, ROOT, invoke, read_json
from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.ingest import LoadResult, load_paths
from reconcile.store import Workspace

CYCLE = "2026-11"
SETTINGS = Settings(cycle=CYCLE, currency="GBP")
QUIRK_EXPECTED = read_json(QUIRKS / "expected.json")

AUTOTASK_SHAPES = {
    "autotask-api": DEMO / "autotask" / "api",
    "autotask-xml": DEMO / "autotask" / "invoices.xml",
    "autotask-csv": DEMO / "autotask" / "billing_items.csv",
    "autotask-xlsx": DEMO / "autotask" / "billing_items.xlsx",
}
HALOPSA_SHAPES = {
    "halopsa-api": DEMO / "halopsa" / "api",
    "halopsa-csv": DEMO / "halopsa" / "invoice_lines.csv",
    "halopsa-xlsx": DEMO / "halopsa" / "invoice_lines.xlsx",
}
COMPARED = ["line_ref", "client_name", "quantity", "unit_price", "net_amount", "tax_amount"]


def load_one(
    workspace: Workspace, path: Path, platform: str | None = None, currency: str | None = "GBP"
) -> LoadResult:
    """`currency` is --currency (None: the file's own signs are not compared with one)."""
    settings = SETTINGS.model_copy(update={"currency": currency})
    (result,) = load_paths(workspace, [path], platform, settings)
    return result


def assert_conserved(workspace: Workspace, result: LoadResult) -> None:
    """Rows read = loaded + quarantined + excluded, and net amounts agree to the cent,
    checked against what the workspace holds."""
    stored = workspace.stored_totals(result.load_id, CYCLE)
    assert result.rows_read == (
        stored["rows_loaded"]
        + stored["rows_quarantined"]
        + stored["rows_excluded"]
        + stored["rows_skipped"]
    )
    assert result.net_read == (
        stored["net_loaded"] + stored["net_quarantined"] + stored["net_excluded"]
    )


def lines(workspace: Workspace, platform: str) -> pl.DataFrame:
    frame: pl.DataFrame = workspace.lines(CYCLE, platform).pl()
    return frame.select(COMPARED).sort("line_ref")


@pytest.mark.parametrize("shapes", [AUTOTASK_SHAPES, HALOPSA_SHAPES], ids=["autotask", "halopsa"])
def test_every_shape_of_a_platform_loads_the_same_lines(
    tmp_path: Path, shapes: dict[str, Path]
) -> None:
    frames = {}
    for shape, path in shapes.items():
        with Workspace(tmp_path / f"{shape}.duckdb") as ws:
            result = load_one(ws, path)
            assert result.shape == shape
            assert_conserved(ws, result)
            frames[shape] = lines(ws, result.platform)
    first, *others = frames.values()
    assert first.height > 300
    for other in others:
        assert other.equals(first)


def test_demo_control_totals_match_the_generator(workspace: Workspace) -> None:
    totals = read_json(DEMO / "expected_differences.json")["totals"]
    for platform, path in (
        ("autotask", AUTOTASK_SHAPES["autotask-xml"]),
        ("halopsa", HALOPSA_SHAPES["halopsa-api"]),
    ):
        result = load_one(workspace, path)
        assert result.rows_loaded == totals[platform]["lines"]
        assert result.net_loaded == Decimal(totals[platform]["net"])


def test_halo_group_headers_inactive_lines_and_templates_are_excluded_with_reasons(
    workspace: Workspace,
) -> None:
    result = load_one(workspace, HALOPSA_SHAPES["halopsa-api"])
    assert result.rows_excluded > 0
    reasons = workspace.quarantined(CYCLE).filter(pl.col("disposition") == "excluded")["reasons"]
    assert set(reasons.str.extract(r"^(\S+ \S+)").to_list()) >= {
        "HaloPSA group",
        "inactive HaloPSA",
        "HaloPSA recurring-invoice",
    }


def test_autotask_item_not_on_an_invoice_is_excluded(workspace: Workspace) -> None:
    result = load_one(workspace, AUTOTASK_SHAPES["autotask-api"])
    assert result.rows_excluded == 1
    assert "not on an invoice" in workspace.quarantined(CYCLE)["reasons"][0]


@pytest.mark.parametrize("name", sorted(QUIRK_EXPECTED))
def test_quirk_files_load_as_documented(workspace: Workspace, name: str) -> None:
    expected = QUIRK_EXPECTED[name]
    result = load_one(
        workspace, QUIRKS / name, expected["platform"], expected.get("currency", "GBP")
    )
    assert_conserved(workspace, result)
    assert result.rows_read == expected["rows_read"]
    assert result.rows_loaded == expected["rows_loaded"] - expected.get("rows_quarantined", 0)
    assert result.rows_excluded == expected["rows_excluded"]
    assert result.rows_quarantined == expected.get("rows_quarantined", 0)
    assert result.net_loaded + result.net_quarantined == Decimal(expected["net_total"])
    loaded = workspace.lines(CYCLE, expected["platform"]).pl().sort("row_number")
    if "client_names" in expected:
        assert loaded["client_name"].to_list() == expected["client_names"]
    if "invoice_dates" in expected:
        assert sorted(str(d) for d in loaded["invoice_date"]) == sorted(expected["invoice_dates"])


def test_ambiguous_dates_take_the_reading_the_cycle_supports_and_say_so(
    workspace: Workspace,
) -> None:
    result = load_one(workspace, QUIRKS / "at_ambiguous_dates.csv")
    assert result.date_convention == (
        "US MM/DD/YYYY (every day is 12 or less: the reading that puts the dates in or next to "
        "cycle 2026-11)"
    )
    assert load_one(workspace, QUIRKS / "halo_uk_dates.csv").date_convention == "UK DD/MM/YYYY"


def test_period_suffix_moves_into_the_service_period(workspace: Workspace) -> None:
    load_one(workspace, QUIRKS / "at_period_suffix.csv")
    loaded = workspace.lines(CYCLE, "autotask").pl()
    assert not loaded["item_name"].str.contains(r"\[").any()
    with_period = loaded.filter(pl.col("period_start").is_not_null())
    assert with_period.height == loaded.height
    assert str(with_period["period_start"][0]) == "2026-11-01"


def test_autotask_stored_amount_is_kept_not_recomputed(workspace: Workspace) -> None:
    load_one(workspace, QUIRKS / "at_api")
    loaded = workspace.lines(CYCLE, "autotask").pl()
    row = loaded.filter(pl.col("quantity") == Decimal("3.1750"))
    assert row["net_amount"].to_list() == [Decimal("386.65")]  # 3.1750 x 100 would be 317.50


def test_amount_formats_and_credit_notes(workspace: Workspace) -> None:
    load_one(workspace, QUIRKS / "at_amount_formats.csv", currency="GBP")  # $1,234.50 is USD
    amounts = set(workspace.lines(CYCLE, "autotask").pl()["net_amount"].to_list())
    assert {Decimal("99.00"), Decimal("-12.00"), Decimal("2000.00"), Decimal("-90.00")} <= amounts
    assert Decimal("1234.50") not in amounts


def test_amounts_in_another_currency_than_currency_are_quarantined(workspace: Workspace) -> None:
    """With --currency GBP, '$1,234.50' is not 1234.50 GBP (issue #15)."""
    result = load_one(workspace, QUIRKS / "at_amount_formats.csv")
    assert result.rows_quarantined == 1
    assert "written in $ but the row's currency is GBP" in result.quarantine[0]["reasons"]


def test_grid_export_of_exactly_5000_rows_warns(workspace: Workspace) -> None:
    result = load_one(workspace, QUIRKS / "at_grid_5000.csv")
    assert any("probably truncated" in w for w in result.warnings)


def test_loading_the_same_content_twice_is_idempotent(ws_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "renamed.csv"
    copy.write_bytes((DEMO / "autotask" / "billing_items.csv").read_bytes())
    first = invoke(
        "--workspace", ws_path, "load", "--cycle", CYCLE, DEMO / "autotask" / "billing_items.csv"
    )
    second = invoke("--workspace", ws_path, "load", "--cycle", CYCLE, copy)
    assert first.exit_code == 0 and second.exit_code == 0
    assert "already loaded (same content)" in second.output
    loaded = read_json(DEMO / "expected_differences.json")["totals"]["autotask"]["lines"]
    with Workspace(ws_path) as ws:
        assert ws.lines(CYCLE, "autotask").count("*").fetchall()[0][0] == loaded


def test_replace_swaps_a_sides_earlier_load(ws_path: Path) -> None:
    invoke(
        "--workspace", ws_path, "load", "--cycle", CYCLE, DEMO / "autotask" / "billing_items.csv"
    )
    invoke("--workspace", ws_path, "load", "--cycle", CYCLE, "--replace", QUIRKS / "at_tab.tsv")
    with Workspace(ws_path) as ws:
        assert ws.lines(CYCLE, "autotask").count("*").fetchall()[0][0] == 3


def test_validate_reports_without_loading(ws_path: Path) -> None:
    result = invoke("--workspace", ws_path, "validate", DEMO / "halopsa" / "invoice_lines.xlsx")
    assert result.exit_code == 0
    loaded = read_json(DEMO / "expected_differences.json")["totals"]["halopsa"]["lines"]
    assert "halopsa-xlsx, " in result.output and f": {loaded} valid, 0 invalid," in result.output
    assert not ws_path.exists()


@pytest.mark.parametrize(
    "path",
    [
        DEMO / "autotask" / "billing_items.csv",
        DEMO / "halopsa" / "invoice_lines.csv",
        DEMO / "halopsa" / "api",
        QUIRKS / "halo_api_invoices.json",
    ],
)
def test_a_load_in_many_small_batches_equals_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: Path
) -> None:
    """Large exports are validated and stored batch by batch; the result must not change. A
    whole demo export repeats its dates, currencies and item names, so they are read once per
    distinct value and looked up; a batch of 7 rows mostly does not, so they are read row by
    row (validate._by_value): both ways must read the same."""
    with Workspace(tmp_path / "one.duckdb") as ws:
        whole = load_one(ws, path)
        whole_lines = ws.lines(CYCLE, whole.platform).pl().drop("load_id").sort("row_number")
        whole_rejected = ws.quarantined(CYCLE).drop("load_id")
    monkeypatch.setattr("reconcile.load.base.BATCH_ROWS", 7)
    with Workspace(tmp_path / "many.duckdb") as ws:
        batched = load_one(ws, path)
        assert_conserved(ws, batched)
        lines_ = ws.lines(CYCLE, batched.platform).pl().drop("load_id").sort("row_number")
        assert lines_.equals(whole_lines)
        assert ws.quarantined(CYCLE).drop("load_id").equals(whole_rejected)
    assert (batched.rows_read, batched.net_read) == (whole.rows_read, whole.net_read)


def test_quarantine_in_a_later_batch_is_found(
    ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reconcile.load.base.BATCH_ROWS", 1)
    result = invoke("--workspace", ws_path, "load", "--cycle", CYCLE, BAD / "bad_amount.csv")
    assert result.exit_code == 2
    assert "row 3: column 'Extended Price'" in result.output


def held(workspace: Workspace) -> dict[str, int]:
    """Rows of every table a load writes to."""
    return {
        table: workspace.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        for table in ("loads", "lines", "quarantine", "pending_loads")
    }


EMPTY = {"loads": 0, "lines": 0, "quarantine": 0, "pending_loads": 0}


def test_a_load_that_fails_half_way_leaves_nothing_behind(
    ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches commit one by one (bounded memory), yet a load stays all or nothing."""
    monkeypatch.setattr("reconcile.load.base.BATCH_ROWS", 50)
    store_batch = Workspace.insert_batch
    calls = []

    def fail_on_third(self: Workspace, *args: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        store_batch(self, *args)

    monkeypatch.setattr(Workspace, "insert_batch", fail_on_third)
    with Workspace(ws_path) as ws:
        with pytest.raises(OSError, match="disk full"):
            load_one(ws, DEMO / "autotask" / "billing_items.csv")
        assert held(ws) == EMPTY
    monkeypatch.setattr(Workspace, "insert_batch", store_batch)
    with Workspace(ws_path) as ws:
        result = load_one(ws, DEMO / "autotask" / "billing_items.csv")
        assert_conserved(ws, result)
        assert held(ws)["lines"] == result.rows_loaded


KILLED_LOAD = """
import os, signal, sys
from pathlib import Path
from reconcile.ingest import load_paths
from reconcile.store import Workspace
from reconcile.config import Settings

def killed(self, record):
    os.kill(os.getpid(), signal.SIGKILL)

Workspace.insert_load = killed
settings = Settings(cycle="2026-11", currency="GBP")
load_paths(Workspace(sys.argv[1]), [Path(sys.argv[2])], None, settings)
"""


def test_a_load_killed_with_sigkill_is_swept_on_the_next_open(ws_path: Path) -> None:
    export = DEMO / "autotask" / "billing_items.csv"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_LOAD, str(ws_path), str(export)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    with duckdb.connect(str(ws_path), read_only=True) as con:  # as the kill left it
        assert con.execute("SELECT count(*) FROM lines").fetchall()[0][0] > 0
        assert con.execute("SELECT count(*) FROM pending_loads").fetchall()[0][0] == 1
    with Workspace(ws_path) as ws:
        assert held(ws) == EMPTY
        result = load_one(ws, export)
        assert_conserved(ws, result)


def test_an_export_of_another_month_is_refused_unless_allowed(workspace: Workspace) -> None:
    export = DEMO / "autotask" / "invoices.xml"
    (right,) = load_paths(workspace, [export], None, SETTINGS)
    assert not any("outside cycle" in w for w in right.warnings)
    october = Settings(cycle="2026-10", currency="GBP")
    with pytest.raises(InputError, match="every invoice in this export is dated outside cycle"):
        load_paths(workspace, [export], None, october)
    assert workspace.load_ids("2026-10", "autotask") == []
    allowed = Settings(cycle="2026-10", currency="GBP", allow_other_month=True)
    (wrong,) = load_paths(workspace, [export], None, allowed)
    assert wrong.warnings == (
        "352 of 352 lines have an invoice date outside cycle 2026-10 (invoice dates run from "
        "2026-11-01 to 2026-11-01); check that --cycle names the month these invoices bill",
    )


def test_the_same_billing_from_two_exports_is_refused_unless_replaced(ws_path: Path) -> None:
    """The CSV and then the XLSX export of one billing doubled the side (354 false duplicates)."""
    csv_file = DEMO / "autotask" / "billing_items.csv"
    xlsx_file = DEMO / "autotask" / "billing_items.xlsx"
    assert invoke("--workspace", ws_path, "load", "--cycle", CYCLE, csv_file).exit_code == 0
    second = invoke("--workspace", ws_path, "load", "--cycle", CYCLE, xlsx_file)
    assert second.exit_code == 2
    assert f"{xlsx_file}: this export repeats line id" in second.output
    assert "already loaded for cycle 2026-11 from billing_items.csv" in second.output
    assert "--replace" in second.output
    with Workspace(ws_path) as ws:
        assert ws.load_ids(CYCLE, "autotask") and len(ws.load_ids(CYCLE, "autotask")) == 1
    replaced = invoke("--workspace", ws_path, "load", "--cycle", CYCLE, "--replace", xlsx_file)
    assert replaced.exit_code == 0, replaced.output
    with Workspace(ws_path) as ws:
        (source,) = ws.con.sql("SELECT source FROM loads").fetchall()[0]
        assert source == str(xlsx_file)
        assert lines(ws, "autotask").height == lines(ws, "autotask").unique().height > 300
