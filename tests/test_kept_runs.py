"""A kept run gives back the summary.json its run wrote: the clients kept in run_clients, one
row each, and put back in their place (runs.summary without them: a large cycle's clients made
one JSON value DuckDB could not allocate)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_demo
from reconcile.history import kept_run
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
