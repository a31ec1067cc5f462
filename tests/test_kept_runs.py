"""A kept run gives back the summary.json its run wrote: the clients kept in run_clients, one
row each, and put back in their place (runs.summary without them: a large cycle's clients made
one JSON value DuckDB could not allocate)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import DEMO, kill_at, run_demo
from reconcile.history import cycle_runs, kept_run
from reconcile.store import Workspace


def test_a_kept_run_gives_back_its_whole_summary(tmp_path: Path) -> None:
    out = run_demo(tmp_path, "demo")
    written = json.loads((out / "summary.json").read_bytes())
    with Workspace(tmp_path / "demo.duckdb") as workspace:
        con = workspace.con
        rows = con.execute("SELECT run_number, CAST(summary AS VARCHAR) FROM runs").fetchall()
        assert len(rows) == 1
        number, stored = rows[0]
        assert "clients" not in json.loads(stored)
        kept = con.execute("SELECT count(*) FROM run_clients WHERE run_number = ?", [number])
        assert kept.fetchall() == [(len(written["clients"]),)]
        assert len(written["clients"]) > 1
        run = kept_run(con, number)
        assert run is not None
        assert run.summary == written
        assert list(run.summary) == list(written)  # the clients in their place

        # A run kept before the clients had their table holds them in runs.summary.
        con.execute("UPDATE runs SET summary = ?", [json.dumps(written)])
        con.execute("DELETE FROM run_clients")
        before = kept_run(con, number)
        assert before is not None and before.summary == written


def test_a_run_killed_between_its_report_and_its_rows_is_not_kept(tmp_path: Path) -> None:
    """The workspace keeps a run's report data first, in a transaction of its own, then the
    run's rows (store.Workspace.save_run): a run killed between the two is not kept, and the
    report data it left is removed by the next run's save."""
    run_demo(tmp_path, "demo")
    again: list[str | Path] = [
        "--workspace", tmp_path / "demo.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        "--map", DEMO / "mapping.csv", "--config", DEMO / "reconcile.toml",
        "--out", tmp_path / "demo",
    ]  # fmt: skip
    kill_at("report data kept", *again)
    assert _kept(tmp_path / "demo.duckdb") == ([1], [1, 2])
    run_demo(tmp_path, "demo")
    assert _kept(tmp_path / "demo.duckdb") == ([1, 3], [1, 3])


def _kept(path: Path) -> tuple[list[int], list[int]]:
    """The run numbers of the workspace's kept runs and of its kept report data."""
    with Workspace(path) as workspace:
        con = workspace.con
        runs = con.execute("SELECT run_number FROM runs ORDER BY 1").fetchall()
        reports = con.execute("SELECT run_number FROM run_reports ORDER BY 1").fetchall()
    return [r for (r,) in runs], [r for (r,) in reports]


def test_listing_runs_parses_each_summary_once(tmp_path: Path) -> None:
    """`history`, `verify` and every run list the kept runs from their summaries, which list
    every acceptance: the listed members are extracted in one parse of each summary (an
    extraction per member ran a workspace of three runs with 12,000 acceptances each out of
    DuckDB's memory), and are the members as kept."""
    accepted = [{"id": f"D-{n:010x}", "reason": "agreed " * 20, "entry": n} for n in range(20_000)]
    with Workspace(tmp_path / "ws.duckdb", memory="100MB") as workspace:
        con = workspace.con
        for number in (1, 2, 3):
            summary = {
                "run_id": f"r{number}", "reconcile_version": "0.1.0",
                "verdict": {"ready": True, "blockers": 0}, "totals": {"GBP": {"n": number}},
                "inputs": [{"platform": "autotask"}], "controls": [], "history": None,
                "acceptances": {"accepted": accepted, "lapsed": []},
            }  # fmt: skip
            con.execute(
                "INSERT INTO runs (run_number, run_id, cycle, summary) VALUES (?, ?, ?, ?)",
                [number, f"r{number}", "2026-11", json.dumps(summary)],
            )
        listed = cycle_runs(con, "2026-11")
    assert [r.summary for r in listed] == [
        {
            "run_id": f"r{n}", "reconcile_version": "0.1.0",
            "verdict": {"ready": True, "blockers": 0}, "totals": {"GBP": {"n": n}},
            "inputs": [{"platform": "autotask"}], "controls": [],
            "history": {"counts": None, "previous_run": None},
        }
        for n in (1, 2, 3)
    ]  # fmt: skip
