"""Golden outputs of the demo run: every intended change to what reconcile writes is a reviewed
diff of tests/golden/demo/, every unintended one a failing test.

`make golden` rewrites the files (RECONCILE_UPDATE_GOLDEN=1); review the diff before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT, invoke, read_json
from reconcile.run import RUN_FILES

GOLDEN = ROOT / "tests" / "golden" / "demo"
# The parquet file holds the same table as discrepancies.json; it is compared by content.
COMPARED = (
    "discrepancies.csv",
    "discrepancies.json",
    "summary.json",
    "quarantine.csv",
    "report.html",
)


@pytest.mark.parametrize("part", [None, 3], ids=["whole", "parts-of-3"])
def test_demo_outputs_match_the_golden_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part: int | None
) -> None:
    """The golden files whatever the number of findings the rules stage looks up and stores
    at once (rules.FINDINGS_PER_LOOKUP) and inserts at once (rules.INSERT_ROWS), of positions
    the outputs and the report read at once (store.RANGE_ROWS) and of clients summary.json
    reads at once (report_model.SCAN_ROWS): a large cycle is done in parts, each part in the
    run's order."""
    from reconcile import report_model, rules, store

    if part is not None:
        monkeypatch.setattr(rules, "FINDINGS_PER_LOOKUP", part)
        monkeypatch.setattr(rules, "INSERT_ROWS", 2)
        monkeypatch.setattr(store, "RANGE_ROWS", part)
        monkeypatch.setattr(report_model, "SCAN_ROWS", part)
    # Inputs named relative to the checkout, as `make demo` names them: summary.json and the
    # report record the paths given.
    monkeypatch.chdir(ROOT)
    # As `make demo` runs it: the demo's reconcile.toml states the currency, so the report
    # and summary.json say it came from the file (the suite's RECONCILE_CURRENCY would be named).
    monkeypatch.delenv("RECONCILE_CURRENCY")
    out = tmp_path / "out"
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", "fixtures/demo/autotask/invoices.xml",
        "--halopsa", "fixtures/demo/halopsa/api",
        "--map", "fixtures/demo/mapping.csv", "--config", "fixtures/demo/reconcile.toml",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    # Exactly the files a run may replace its --out with (others there are refused).
    assert {p.name for p in out.iterdir()} == RUN_FILES
    if os.environ.get("RECONCILE_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name in COMPARED:
            (GOLDEN / name).write_bytes((out / name).read_bytes())
    changed = [n for n in COMPARED if (out / n).read_bytes() != (GOLDEN / n).read_bytes()]
    assert not changed, (
        f"{changed} differ from tests/golden/demo/: run `make golden` and review the diff"
    )
    parquet = pl.read_parquet(out / "discrepancies.parquet")
    assert parquet["id"].to_list() == [d["id"] for d in read_json(out / "discrepancies.json")]
