"""Bad input: exit 2 and one paragraph naming file, row, column and what was expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BAD, DEMO, invoke
from reconcile.store import Workspace

DEMO_XML = DEMO / "autotask" / "invoices.xml"

# file -> (platform to claim, fragments the message must contain, rows loaded)
CASES: dict[str, tuple[str, list[str], int]] = {
    "empty.csv": ("autotask", ["empty.csv: the file is empty", "expected a header row"], 0),
    "header_only.csv": ("autotask", ["header but no data rows"], 0),
    "missing_column.csv": (
        "autotask",
        ["a required column is missing: net amount", "'Extended Price'"],
        0,
    ),
    "bad_date.csv": (
        "autotask",
        [
            "1 of 3 rows cannot be used",
            "row 2: column 'Invoice Date'",
            "expected a date in the file's convention (US MM/DD/YYYY)",
            "got 'not a date'",
        ],
        2,
    ),
    "bad_amount.csv": (
        "autotask",
        ["row 3: column 'Extended Price'", "expected an amount such as 1234.56", "got '12.3.4'"],
        2,
    ),
    "wrong_platform.csv": (
        "autotask",
        ["looks like a HaloPSA export, not Autotask", "--platform halopsa"],
        0,
    ),
    "mixed_dates.csv": (
        "autotask",
        [
            "mixes date conventions",
            "row 1 has '11/13/2026'",
            "row 2 has '13/11/2026'",
            "column 'Invoice Date'",
            "--date-format",
        ],
        0,
    ),
    "duplicate_header.csv": ("autotask", ["'Extended Price' appears twice in the header"], 0),
    "truncated_row.csv": (
        "autotask",
        ["row 3: column 'Extended Price': a value is required", "cut off: it has 11 of 19"],
        2,
    ),
    "binary_junk.csv": ("autotask", ["not a text export (it contains binary data)"], 0),
    "truncated.json": ("halopsa", ["JSON is not well formed at line", "cut off"], 0),
    "malformed.xml": ("autotask", ["XML is not well formed", "mismatched tag"], 0),
    "entity_bomb.xml": ("autotask", ["the XML declares entities", "refused unread"], 0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_a_clear_message(ws_path: Path, name: str) -> None:
    platform, fragments, loaded = CASES[name]
    result = invoke(
        "--workspace", ws_path, "load", "--platform", platform, "--cycle", "2026-11", BAD / name
    )
    assert result.exit_code == 2
    message = result.stderr if result.stderr else result.output
    assert "Traceback" not in result.output
    assert str(BAD / name) in message
    for fragment in fragments:
        assert fragment in message, fragment
    with Workspace(ws_path) as ws:
        count = ws.con.sql("SELECT count(*) FROM lines").fetchall()[0][0]
        quarantined = ws.con.sql(
            "SELECT count(*) FROM quarantine WHERE disposition = 'quarantined'"
        ).fetchall()[0][0]
    assert count == loaded
    assert quarantined == (1 if loaded else 0)
    if loaded:
        (file,) = (ws_path.parent / "quarantine" / "2026-11").glob("*.csv")
        assert "quarantined" in file.read_text(encoding="utf-8")


def test_every_bad_fixture_has_a_case() -> None:
    files = {
        p.name for p in BAD.iterdir() if p.suffix not in (".md",) and p.name != "expected.json"
    }
    assert files == set(CASES)


def test_validate_also_exits_2_and_loads_nothing(ws_path: Path) -> None:
    result = invoke("--workspace", ws_path, "validate", BAD / "bad_amount.csv")
    assert result.exit_code == 2
    assert "validate loads nothing: `reconcile load` would load the other rows" in result.output
    assert not ws_path.exists()


def test_bad_cycle_is_a_usage_error(ws_path: Path) -> None:
    result = invoke("--workspace", ws_path, "load", "--cycle", "Nov-2026", BAD / "bad_amount.csv")
    assert result.exit_code == 2
    assert "expected YYYY-MM" in result.output


def test_a_file_that_is_not_a_workspace_is_refused_untouched(tmp_path: Path) -> None:
    """DuckDB would open a CSV as a throw-away in-memory database and lose the load silently."""
    mistaken = tmp_path / "mapping.csv"
    mistaken.write_bytes((DEMO / "mapping.csv").read_bytes())
    result = invoke("--workspace", mistaken, "load", "--cycle", "2026-11", DEMO_XML)
    assert result.exit_code == 2
    assert "this file is not a reconcile workspace" in result.output
    assert mistaken.read_bytes() == (DEMO / "mapping.csv").read_bytes()


HOLD_WORKSPACE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(120)
"""


def test_a_workspace_held_by_another_process_is_refused(ws_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_WORKSPACE, str(ws_path)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
            result = invoke("--workspace", ws_path, "load", "--cycle", "2026-11", DEMO_XML)
        finally:
            holder.kill()
    assert result.exit_code == 2
    assert f"the workspace is in use by another process (PID {holder.pid})" in result.output
