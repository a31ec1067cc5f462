"""bench/bench.py's tables: each size shows the run as the default settings make it (the
workbook written) and the run with --no-workbook, side by side with the hand-written diff;
figures kept from before the second run was measured still print."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench


def _run(seconds: float, peak: int) -> dict[str, Any]:
    stages = dict.fromkeys((*bench.STAGES, "other"), 1.0)
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "load_average": 1.0,
        "stages": stages,
        "stage_peak_mib": dict.fromkeys(bench.STAGES, peak),
    }


def _cycle(run: dict[str, Any], lean: dict[str, Any] | None) -> dict[str, Any]:
    figures = {"seconds": 8.0, "peak_mb": 1390, "load_average": 1.0}
    cycle: dict[str, Any] = {
        "measured": "2026-11-30T19:00",
        "facts": {"clients": 170_143, "discrepancies": 135_723},
        "read_csv": figures,
        "hand_diff": figures,
        "run": {
            **run,
            "accuracy": {
                "truth": 10,
                "findings": 10,
                "recall": 1.0,
                "precision": 1.0,
                "right_rule": 1.0,
            },
        },
    }
    if lean is not None:
        cycle["run_no_workbook"] = lean
    return cycle


def test_both_runs_are_printed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    cycles = {
        "1000000": _cycle(_run(120.0, 1471), _run(12.0, 900)),
        "20000": _cycle(_run(6.0, 359), None),  # measured before --no-workbook was
    }
    bench.print_cycles(cycles)
    bench.print_targets(cycles)
    out = capsys.readouterr().out
    lines = out.splitlines()
    big = next(i for i, line in enumerate(lines) if line.startswith("  1,000,000"))
    assert "| workbook      120.00 s 1,471 MiB |    15.0x | 2026-11-30 19:00 (1.0)" in lines[big]
    assert lines[big + 1].split()[:4] == ["|", "|", "|", "no"]
    assert "| no workbook    12.00 s   900 MiB |     1.5x | (1.0)" in lines[big + 1]
    assert len({len(lines[big]) - len("2026-11-30 19:00 "), len(lines[big + 1])}) == 1
    small = next(i for i, line in enumerate(lines) if line.startswith("     20,000"))
    assert "no workbook" not in lines[small + 1]
    assert sum("1,000,000 no workbook" in line for line in lines) == 2  # stages and peaks
    assert "  1M: run (workbook) 15.0x the hand-written diff (<= 1.5x): NOT MET" in lines
    assert "  1M: run (no workbook) 1.5x the hand-written diff (<= 1.5x): met" in lines
    assert "  1M: run (no workbook) peak 900 MiB (<= 1,024 MiB): met" in lines
    assert "  20k: run (workbook) 6.00 s (< 2.0 s): NOT MET" in lines


def test_the_finance_steps_are_printed_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    steps = {
        step: {"seconds": 2.5, "peak_mb": 1200, "load_average": 1.0}
        for step in ("run", "accept", "verify")
    }
    finance = {"measured": "2026-12-01T18:00", "lines": 100_000, "accepted": 11_971}
    bench.print_finance(finance | {"steps": steps})
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        "finance commands, realistic cycle of 100,000 lines per side, 11,971 blockers accepted "
        "(2026-12-01 18:00)"
    )
    assert [line.split()[0] for line in lines[2:]] == ["run", "accept", "verify"]
    assert lines[4] == "          verify     2.50 s  1,200 MiB (1.0)"
