"""Ingest: every format and dialect, real files in, canonical lines and control totals out."""

from __future__ import annotations

import dataclasses
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import BAD, DEMO, QUIRKS, ROOT, invoke, read_json
from conftest import assert_conserved as assert_conserved_load
from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.ingest import LoadResult, load_paths
from reconcile.report_model import CurrencyControl
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
    """conftest.assert_conserved of the load `result` reports, whose control totals are the
    load's."""
    load = workspace.frame("SELECT * FROM loads WHERE load_id = ?", [result.load_id]).row(
        0, named=True
    )
    assert assert_conserved_load(workspace, load) == result.by_currency


def one_currency(result: LoadResult, currency: str = "GBP") -> CurrencyControl:
    """The control totals of an export all in `currency`."""
    (only,) = result.by_currency
    assert only.currency == currency
    return only


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
        # Per currency: the generator never adds amounts of different currencies.
        loaded = {
            c.currency: {"lines": c.rows_loaded, "net": c.net_loaded, "tax": c.tax_loaded}
            for c in result.by_currency
        }
        stated = {
            code: {"lines": t["lines"], "net": Decimal(t["net"]), "tax": Decimal(t["tax"])}
            for code, t in totals[platform]["by_currency"].items()
        }
        assert loaded == stated


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
    totals = one_currency(result, expected.get("currency", "GBP"))
    assert totals.net_loaded + totals.net_quarantined == Decimal(expected["net_total"])
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
    assert (batched.rows_read, batched.by_currency) == (whole.rows_read, whole.by_currency)


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
    monkeypatch.setattr("reconcile.ingest.ROW_GROUP_ROWS", 50)  # a batch stores its lines
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


HALO_CURRENCY_HEADER = (
    "id,invoicenumber,invoice_date,client_id,client_name,item_shortdescription,qty_order,"
    "unit_price,net_amount,tax_amount,currency,startdate,enddate,isinactive"
)
# A row's currency as written: three codes, and two that are none (the unknown currency).
WRITTEN_CURRENCIES = ["GBP", "EUR", "USD", "EURO", "pounds"]
# What becomes of a row: loaded, or quarantined for a reason, or excluded.
ROW_KINDS = ["loaded", "no client", "period reversed", "unreadable net", "excluded"]


@st.composite
def mixed_rows(draw: st.DrawFn) -> list[tuple[str, str, int]]:
    """(currency as written, kind, net in cents) for 1-25 rows."""
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(WRITTEN_CURRENCIES),
                st.sampled_from(ROW_KINDS),
                st.integers(-(10**9), 10**9),
            ),
            min_size=1,
            max_size=25,
        )
    )


def _halo_row(n: int, currency: str, kind: str, cents: int) -> str:
    net = str(Decimal(cents).scaleb(-2))
    client = ",," if kind == "no client" else f"{1000 + n % 3},Client {n % 3},"
    period = "30/11/2026,01/11/2026" if kind == "period reversed" else "01/11/2026,30/11/2026"
    written = "12.3.4" if kind == "unreadable net" else net
    inactive = "true" if kind == "excluded" else "false"
    return (
        f"{70000 + n},INV-{n % 4},01/11/2026,{client}Managed Workstation,1,{net},{written},0.00,"
        f"{currency},{period},{inactive}"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=mixed_rows())
def test_control_totals_reconcile_per_currency_for_any_mix(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, int]]
) -> None:
    """For any mix of currencies (unreadable ones too) and dispositions, each currency's rows
    and nets read = loaded + quarantined + excluded, equal to what each row of that currency
    alone adds up to: no currency's sums hold another's amounts (a row whose currency cannot
    be read counts under the unknown currency only)."""
    path = tmp_path_factory.mktemp("mix") / "halopsa.csv"
    lines = [_halo_row(n, *row) for n, row in enumerate(rows)]
    path.write_text("\n".join([HALO_CURRENCY_HEADER, *lines]) + "\n", encoding="utf-8")
    expected: dict[str | None, dict[str, Any]] = {}
    for currency, kind, cents in rows:
        code = currency if currency in ("GBP", "EUR", "USD") else None
        fate = (
            "excluded"
            if kind == "excluded"
            else "loaded"
            if kind == "loaded" and code
            else "quarantined"
        )
        net = Decimal(0) if kind == "unreadable net" else Decimal(cents).scaleb(-2)
        totals = expected.setdefault(code, {"rows_read": 0, "net_read": Decimal(0)})
        totals["rows_read"] += 1
        totals["net_read"] += net
        totals[f"rows_{fate}"] = totals.get(f"rows_{fate}", 0) + 1
        totals[f"net_{fate}"] = totals.get(f"net_{fate}", Decimal(0)) + net
    with Workspace(":memory:") as ws:
        (result,) = load_paths(ws, [path], "halopsa", Settings(cycle=CYCLE, currency=None))
        assert_conserved(ws, result)
    found = {
        c.currency: {
            k: v
            for k, v in dataclasses.asdict(c).items()
            if k.startswith(("rows_", "net_")) and k != "rows_unreadable_amount"
        }
        for c in result.by_currency
    }
    for totals in expected.values():
        for fate in ("loaded", "quarantined", "excluded"):
            totals.setdefault(f"rows_{fate}", 0)
            totals.setdefault(f"net_{fate}", Decimal(0))
    assert found == expected
    assert [c.currency for c in result.by_currency] == sorted(
        expected, key=lambda c: (c is None, c or "")
    )


def test_a_workspace_kept_before_per_currency_totals_opens_and_reads_its_loads_again(
    tmp_path: Path,
) -> None:
    """A workspace of an earlier version (one net a load over all its currencies, no currency
    on quarantined rows) opens: the summed nets go, a run on its loads alone is refused with
    what to do, and a run given the exports reads them again, per currency."""
    ws_path = tmp_path / "ws.duckdb"
    demo: list[str | Path] = [
        "--cycle",
        "2026-11",
        "--map",
        DEMO / "mapping.csv",
        "--config",
        DEMO / "reconcile.toml",
    ]
    exports: list[str | Path] = [
        "--autotask",
        DEMO / "autotask" / "invoices.xml",
        "--halopsa",
        DEMO / "halopsa" / "api",
    ]
    assert (
        invoke("--workspace", ws_path, "run", *demo, *exports, "--out", tmp_path / "a").exit_code
        == 1
    )
    with duckdb.connect(str(ws_path)) as con:  # as the earlier version left it
        con.execute("ALTER TABLE loads ADD COLUMN net_read DECIMAL(18,2) NOT NULL DEFAULT 0")
        con.execute("ALTER TABLE quarantine DROP COLUMN currency")
        con.execute("UPDATE loads SET by_currency = NULL")
    refused = invoke("--workspace", ws_path, "run", *demo, "--out", tmp_path / "b")
    assert refused.exit_code == 2
    assert "was loaded by an earlier version of reconcile" in refused.output
    assert "Give the export again (--autotask FILE)" in refused.output
    again = invoke("--workspace", ws_path, "run", *demo, *exports, "--out", tmp_path / "c")
    assert again.exit_code == 1, again.output
    assert "EUR: 5 rows = 3 + 0 + 2, net EUR 1,664.40" in again.output
    with Workspace(ws_path) as ws:
        columns = ws.frame("DESCRIBE loads", [])["column_name"].to_list()
        assert "net_read" not in columns and "by_currency" in columns
        assert ws.frame("SELECT * FROM loads WHERE by_currency IS NULL", []).is_empty()
