"""Wrong results once found on real-world input (fixtures/breaks/): each test states the right
answer; a break still standing is marked xfail(strict=True) until reconcile gives it."""

from __future__ import annotations

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
    """The run's exit code, totals per currency and findings above info are expected.json's."""
    spec = read_json(folder / "expected.json")
    result, summary, rows = _run(tmp_path, folder)
    assert result.exit_code == spec["exit"], result.output
    assert _totals(summary) == spec["totals"]
    assert [r for r in rows if r["severity"] != "info"] == spec["findings_above_info"]


def test_block_hours_consumption_is_not_billed(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "at_block_hours_consumption")


def test_halo_currency_symbol_resolved_by_client_iso_code(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "halo_rand_symbol")


def test_autotask_customer_currency_is_not_assumed(tmp_path: Path) -> None:
    result, summary, rows = _run(tmp_path, BREAKS / "at_api_customer_currency")
    if result.exit_code == 2:
        assert "currency" in result.output.lower(), result.output
        assert "/V1.0/Currencies" in result.output, result.output
        return
    assert "GBP" not in summary["totals"], summary["totals"]
    assert summary["totals"]["EUR"]["autotask"]["net"] == "400.00"
    assert not [r for r in rows if r["rule"] == "currency_mismatch"]


def test_autotask_customer_currency_named_by_the_currencies_page(tmp_path: Path) -> None:
    _check_outcome(tmp_path, BREAKS / "at_api_customer_currency_named")
