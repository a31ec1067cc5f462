"""DuckDB's memory let go between a run's stages (store.release_memory): the blocks go to its
temporary files, the tables and the limit stay as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from conftest import DEMO, run_demo
from reconcile import POLARS_ALLOCATOR, crosswalk
from reconcile.config import load_config
from reconcile.crosswalk import read_mappings
from reconcile.match import match_cycle
from reconcile.store import Workspace, release_memory


def test_release_memory_keeps_the_tables_and_the_limit(tmp_path: Path) -> None:
    with Workspace(tmp_path / "ws.duckdb", "256MB") as ws:
        ws.con.execute(
            "CREATE TEMP TABLE t AS SELECT range AS n, md5(range::VARCHAR) AS s FROM range(2000000)"
        )

        def held() -> int:
            rows = ws.con.sql(
                "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'"
            ).fetchall()
            return int(rows[0][0])

        def state() -> list[object]:
            query = "SELECT current_setting('memory_limit'), count(*), sum(n), max(s) FROM t"
            return list(ws.con.sql(query).fetchall()[0])

        before, cached = state(), held()
        ws.release_memory()
        assert held() < cached // 10
        assert state() == before


def test_a_little_held_memory_is_left_where_it_is(tmp_path: Path) -> None:
    """Below store.RELEASE_FROM nothing is written out: the limit is not touched."""
    with Workspace(tmp_path / "ws.duckdb", "256MB") as ws:
        ws.con.execute("CREATE TEMP TABLE t AS SELECT range AS n FROM range(100000)")
        query = "SELECT sum(temporary_storage_bytes) FROM duckdb_memory()"
        ws.release_memory()
        assert ws.con.sql(query).fetchall()[0][0] == 0


def test_the_crosswalk_lets_go_before_names_are_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's name suggestions (crosswalk._suggest) are scored in Python after DuckDB's memory
    is let go to the settings' limit (at 10M lines a side the client names' scoring is the
    crosswalk's peak); what the crosswalk decides is the same as without."""
    run_demo(tmp_path, "out")
    config = load_config(DEMO / "reconcile.toml")
    mappings = read_mappings([DEMO / "mapping.csv"])
    limits: list[str] = []

    def recorded(con: duckdb.DuckDBPyConnection, limit: str) -> None:
        limits.append(limit)
        release_memory(con, limit)

    with Workspace(tmp_path / "out.duckdb") as ws:
        kept = match_cycle(ws.con, "2026-11", mappings, config).crosswalk
        monkeypatch.setattr(crosswalk, "release_memory", recorded)
        assert match_cycle(ws.con, "2026-11", mappings, config).crosswalk == kept
    # Once per kind the run suggests names for, when any of its HaloPSA entities is left.
    assert limits and set(limits) == {config.workspace.memory_limit}
    assert any(r.suggestion for _, r in kept)


def test_polars_hands_back_freed_memory_unless_told_otherwise() -> None:
    """Importing reconcile, before polars, sets polars' allocator to hand freed memory back at
    once (reconcile.POLARS_ALLOCATOR); a value the environment gives is kept. polars puts its
    own defaults first and the variable's value last, which jemalloc lets win."""
    show = "import os, reconcile, polars; print(os.environ['_RJEM_MALLOC_CONF'])"
    for given in (None, "dirty_decay_ms:5000"):
        env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
        if given is not None:
            env["_RJEM_MALLOC_CONF"] = given
        found = subprocess.run(
            [sys.executable, "-c", show], env=env, capture_output=True, text=True, check=True
        )
        assert found.stdout.strip().endswith("," + (given or POLARS_ALLOCATOR))
