"""What the command line tells a billing admin on the demo cycle: money written as the report
writes it, and each refusal naming the command that comes next."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import demo_run, invoke


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """The demo cycle run once into tmp_path (its blockers remain): the workspace and the
    run's output."""
    monkeypatch.setenv("RECONCILE_NOW", "2026-12-02T09:30:00Z")
    workspace = tmp_path / "ws.duckdb"
    result = demo_run(workspace, tmp_path / "out")
    assert result.exit_code == 1, result.output
    return workspace, result.output


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "discrepancies.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_amounts_in_messages_are_written_as_the_report_writes_them(
    demo: tuple[Path, str],
) -> None:
    """Thousands grouped and the currency code before the amount (`GBP 126,256.08`), a
    difference signed, in `run`, `accept`, the sign-off refusal and `history`."""
    workspace, output = demo
    assert (
        "GBP: Autotask GBP 126,256.08 gross in 352 lines, HaloPSA GBP 124,176.80 in 359 lines, "
        "difference GBP -2,079.28; EUR: Autotask EUR 0.00 gross in 0 lines, "
        "HaloPSA EUR 1,997.28 in 3 lines, difference EUR +1,997.28"
    ) in output
    assert "= 105,213.35 + 0.00 + 0.00" in output
    mismatch = next(
        r for r in _rows(workspace.parent / "out")
        if r["rule"] == "currency_mismatch" and r["currency"] == "GBP"
    )  # fmt: skip
    refused = invoke("--workspace", workspace, "signoff", "--cycle", "2026-11", "--by", "Jo")
    assert refused.exit_code == 1
    assert f"open blocker {mismatch['id']}: currency_mismatch" in refused.output
    assert "difference GBP -1,664.40: " in refused.output
    accepted = invoke(
        "--workspace", workspace, "accept", mismatch["id"], "--reason", "r", "--by", "Ann"
    )
    assert accepted.exit_code == 0, accepted.output
    assert "Brasserie Côte d'Azur Ltd, difference GBP -1,664.40)" in accepted.output
    history = invoke("--workspace", workspace, "history")
    assert (
        "totals (gross): Autotask GBP 126,256.08, HaloPSA GBP 124,176.80, difference "
        "GBP -2,079.28; Autotask EUR 0.00, HaloPSA EUR 1,997.28, difference EUR +1,997.28"
    ) in history.output
