"""Wrong results once found on real-world input (fixtures/breaks/): each test states the right
answer; a break still standing is marked xfail(strict=True) until reconcile gives it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from conftest import FIXTURES, invoke, read_json

BREAKS = FIXTURES / "breaks"


def _run(tmp_path: Path, folder: Path) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """`reconcile run` of the folder's cycle: (click result, summary.json or {}, discrepancies)."""
    spec = read_json(folder / "expected.json")
    out = tmp_path / "out"
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", folder / "autotask", "--halopsa", folder / "halopsa",
        "--out", out, "--no-workbook", *spec.get("args", []),
    )  # fmt: skip
    summary = read_json(out / "summary.json") if (out / "summary.json").exists() else {}
    rows = read_json(out / "discrepancies.json") if (out / "discrepancies.json").exists() else []
    return result, summary, rows


def _totals(summary: dict[str, Any]) -> dict[str, Any]:
    """Per currency and side: net, tax and gross (the keys expected.json states)."""
    return {
        currency: {
            side: {k: sides[side][k] for k in ("net", "tax", "gross")}
            for side in ("autotask", "halopsa")
        }
        for currency, sides in summary["totals"].items()
    }


def _check_outcome(tmp_path: Path, folder: Path) -> None:
    """The run's exit code, totals per currency and findings above info are expected.json's,
    and so are the Autotask load's warnings where it states them."""
    _assert_outcome(read_json(folder / "expected.json"), *_run(tmp_path, folder))


def _assert_outcome(
    spec: dict[str, Any], result: Any, summary: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """A run's (click result, summary, discrepancies) give expected.json's exit code, totals
    per currency and findings above info, and the Autotask load's warnings where it states them."""
    assert result.exit_code == spec["exit"], result.output
    assert _totals(summary) == spec["totals"]
    assert [r for r in rows if r["severity"] != "info"] == spec["findings_above_info"]
    if "warnings" in spec:
        assert _control(summary, "autotask")["warnings"] == spec["warnings"]


def _control(summary: dict[str, Any], platform: str) -> dict[str, Any]:
    (control,) = [c for c in summary["controls"] if c["platform"] == platform]
    found: dict[str, Any] = control
    return found


def test_block_hours_consumption_is_not_billed(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "at_block_hours_consumption")


def test_block_hours_consumption_in_the_export_wizard_csv_is_named(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "at_csv_block_hours_consumption")


def test_halo_currency_symbol_resolved_by_client_iso_code(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "halo_rand_symbol")


def test_autotask_customer_currency_is_not_assumed(tmp_path: Path) -> None:
    result, summary, rows = _run(tmp_path, BREAKS / "at_api_customer_currency")
    if result.exit_code == 2:
        assert "currency" in result.output.lower(), result.output
        assert "/V1.0/Currencies" in result.output, result.output
        # Its money is counted under no currency in the control totals, never as GBP.
        (control,) = _control(summary, "autotask")["by_currency"]
        assert (control["currency"], control["net_quarantined"]) == (None, "400.00")
        return
    assert "GBP" not in summary["totals"], summary["totals"]
    assert summary["totals"]["EUR"]["autotask"]["net"] == "400.00"
    assert not [r for r in rows if r["rule"] == "currency_mismatch"]


def test_autotask_customer_currency_named_by_the_currencies_page(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "at_api_customer_currency_named")


def test_autotask_csv_customer_currency_is_not_assumed(tmp_path: Path) -> None:
    """The export wizard's CSV of a multi-currency tenant: the line whose Extended Price differs
    from its Internal Currency twin, in a file that names no currency, is quarantined with the
    client, both amounts and what to export; the GBP line loads; no currency's totals hold
    another's money (its control row is the unknown currency's); the HaloPSA client left
    unmatched says its Autotask row was quarantined, where and why."""
    folder = BREAKS / "at_csv_customer_currency"
    spec = read_json(folder / "expected.json")
    result, summary, rows = _run(tmp_path, folder)
    assert result.exit_code == spec["exit"], result.output
    assert _totals(summary) == spec["totals"]
    assert not [r for r in rows if r["rule"] == "currency_mismatch"]
    with (tmp_path / "out" / "quarantine.csv").open(encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert [{k: row[k] for k in spec["quarantined"][0]}] == spec["quarantined"]
    for part in spec["reason_names"]:
        assert part in row["reasons"], row["reasons"]
    # HaloPSA's EUR line is left matching no Autotask client: the finding says why.
    (unmapped,) = [r for r in rows if r["rule"] == "unmapped_client"]
    for part in spec["unmapped_client_names"]:
        assert part in unmapped["message"], unmapped["message"]
    controls = {c["currency"]: c for c in _control(summary, "autotask")["by_currency"]}
    assert {c: controls[c]["net_read"] for c in controls} == {"GBP": "100.00", None: "400.00"}


def _refused_naming(tmp_path: Path, folder: Path, *named: str) -> str:
    """The folder's run refuses a side before any output (exit 2, no summary), and its
    message names each of `named`; returns the message."""
    result, summary, _ = _run(tmp_path, folder)
    assert (result.exit_code, summary) == (2, {}), result.output
    for part in named:
        assert part in result.output, result.output
    output: str = result.output
    return output


def test_autotask_csv_internal_currency_columns_are_not_ignored(tmp_path: Path) -> None:
    """The row billed in the customer's currency is quarantined (exit 2, naming currency); the
    GBP row loads alone, and no currency_mismatch is made of EUR money read as GBP."""
    result, summary, rows = _run(tmp_path, BREAKS / "at_csv_internal_currency_columns")
    assert result.exit_code == 2 and "currency" in result.output.lower(), result.output
    assert summary["totals"]["GBP"]["autotask"]["net"] == "420.00", summary["totals"]
    assert not [r for r in rows if r["rule"] == "currency_mismatch"]


def test_autotask_csv_posted_not_invoiced_is_not_billed(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "at_csv_posted_not_invoiced")


def test_decimal_comma_whole_amounts_are_not_guessed(tmp_path: Path) -> None:
    _refused_naming(tmp_path, BREAKS / "at_decimal_comma_whole_amounts", "--number-format")


def test_halo_report_vat_column_is_read(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "halo_report_vat_column")


def test_proration_folded_into_quantity_pairs(tmp_path: Path) -> None:
    folder = BREAKS / "proration_folded_into_quantity"
    spec = read_json(folder / "expected.json")
    result, summary, rows = _run(tmp_path, folder)
    assert result.exit_code == spec["exit"], result.output
    assert _totals(summary) == spec["totals"]
    assert not [r for r in rows if r["severity"] == "blocker"], rows


def test_excel_owner_file_is_passed_over(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "at_excel_owner_file")


def test_html_table_saved_as_xls_is_named(tmp_path: Path) -> None:
    said = _refused_naming(tmp_path, BREAKS / "at_html_table_saved_as_xls", "HTML")
    assert "appears twice" not in said


def test_xml_billing_item_on_voided_and_reissued_invoice_is_refused(tmp_path: Path) -> None:
    folder = BREAKS / "at_xml_voided_and_reissued"
    _refused_naming(tmp_path, folder, "61073", "INV-10111", "INV-10112")
