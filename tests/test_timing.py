"""Stage timings: `reconcile run --timings FILE` names every stage. No test here times anything."""

from __future__ import annotations

from pathlib import Path

from conftest import DEMO, invoke, read_json
from reconcile.timing import recording, stage

STAGES = {"load", "crosswalk", "match", "rules", "outputs", "report"}


def test_run_writes_the_seconds_of_every_stage(tmp_path: Path) -> None:
    timings = tmp_path / "timings.json"
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        "--map", DEMO / "mapping.csv", "--config", DEMO / "reconcile.toml",
        "--out", tmp_path / "out", "--timings", timings,
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # the demo's blockers remain
    recorded = read_json(timings)
    assert set(recorded["seconds"]) == set(recorded["peak_mib"]) == STAGES
    assert all(isinstance(v, float) and v >= 0 for v in recorded["seconds"].values())
    # The high-water mark never falls: the stage that ended last has the highest figure.
    peaks = recorded["peak_mib"]
    assert all(isinstance(v, int) and v > 0 for v in peaks.values())
    assert peaks["load"] <= peaks["match"] <= peaks["rules"] <= peaks["outputs"]


def test_stages_record_only_while_recording_and_nest() -> None:
    with stage("outside"):
        pass
    with recording() as clock:
        with stage("outer"), stage("inner"):
            pass
        with stage("outer"):
            pass
    assert set(clock.seconds) == set(clock.peak_mib) == {"outer", "inner"}
    assert all(v >= 0 for v in clock.seconds.values())
    with recording() as again:
        pass
    assert again.seconds == again.peak_mib == {}
