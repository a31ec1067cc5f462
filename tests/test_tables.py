"""The tables a rule may read are the declared ones (reconcile.tables), column for column."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DEMO, ROOT
from reconcile import match, rules
from reconcile.config import Config, load_config
from reconcile.crosswalk import read_mappings
from reconcile.duck import MONEY_MACROS
from reconcile.match import match_cycle
from reconcile.rules import MACROS, RuleContext, bridge, discover, run_rules
from reconcile.run import run_cycle
from reconcile.store import (
    ROW_GROUP_ROWS,
    SCAN_MEMORY,
    Workspace,
    insertion_order_kept,
    read_ranges,
    scanning,
    size_bytes,
)
from reconcile.tables import DISCREPANCIES, RULE_TABLES, Table, tables_markdown

TEMPORARY = (
    "SELECT table_name FROM duckdb_tables() WHERE temporary "
    "UNION ALL SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The demo cycle loaded by a real run (run_cycle, as `reconcile run` calls it): the
    workspace, and the temporary tables and views its connection held after the run."""
    folder = tmp_path_factory.mktemp("tables")
    config = load_config(DEMO / "reconcile.toml")
    with Workspace(folder / "ws.duckdb") as ws:
        result = run_cycle(
            ws,
            config.settings("2026-11"),
            [DEMO / "autotask" / "invoices.xml"],
            [DEMO / "halopsa" / "api"],
            [DEMO / "mapping.csv"],
            config,
            folder / "out",
        )
        left = sorted(r[0] for r in ws.con.sql(TEMPORARY).fetchall())
    assert result.exit_code == 1  # the demo keeps blockers
    assert result.summary.counts.by_severity["blocker"] > 0
    return folder / "ws.duckdb", left


def test_a_run_leaves_exactly_the_declared_tables(demo_run: tuple[Path, list[str]]) -> None:
    workspace, left = demo_run
    # The run itself drops the discrepancies once it has kept them.
    assert left == sorted(t.name for t in RULE_TABLES)
    config = load_config(DEMO / "reconcile.toml")
    with Workspace(workspace) as ws:
        match_cycle(ws.con, "2026-11", read_mappings([DEMO / "mapping.csv"]), config)
        setting = "SELECT current_setting('preserve_insertion_order')"
        assert ws.con.execute(setting).fetchall() == [(False,)]  # the workspace's
        # No DuckDB progress bar between the run's lines on standard output (a nightly log).
        bar = "SELECT current_setting('enable_progress_bar')"
        assert ws.con.execute(bar).fetchall() == [(False,)]
        assert run_rules(ws.con, config, discover()) > 0
        # The rules keep their tables' insertion order only while they need it.
        assert ws.con.execute(setting).fetchall() == [(False,)]
        for table in (*RULE_TABLES, DISCREPANCIES):
            described = ws.con.sql(f"DESCRIBE {table.name}").fetchall()
            assert [(r[0], r[1]) for r in described] == [(c.name, c.type) for c in table.columns]
            assert ws.con.sql(f"SELECT count(*) FROM {table.name}").fetchall()[0][0] > 0
        # Nothing else is left behind by the matcher or the rules: no work table, no view.
        temporary = ws.con.sql(TEMPORARY).fetchall()
        assert sorted(r[0] for r in temporary) == sorted(
            t.name for t in (*RULE_TABLES, DISCREPANCIES)
        )


def test_the_discrepancies_are_stored_in_the_runs_order(
    demo_run: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_rules stores DISCREPANCIES in `position` order, a part of FINDINGS_PER_LOOKUP
    positions at a time, so read_ranges reads each range from one stretch of the table."""
    monkeypatch.setattr(rules, "FINDINGS_PER_LOOKUP", 3)
    config = load_config(DEMO / "reconcile.toml")
    with Workspace(demo_run[0]) as ws:
        match_cycle(ws.con, "2026-11", read_mappings([DEMO / "mapping.csv"]), config)
        count = run_rules(ws.con, config, discover())
        assert count > 6  # several parts
        with insertion_order_kept(ws.con):  # a scan then returns the rows as stored
            stored = ws.con.sql(f"SELECT position FROM {DISCREPANCIES.name}").fetchall()
        assert [p for (p,) in stored] == list(range(1, count + 1))


@settings(max_examples=40, deadline=None)
@given(
    order=st.integers(0, 23).flatmap(lambda n: st.permutations(list(range(1, n + 1)))),
    rows=st.integers(1, 30),
)
def test_read_ranges_gives_every_row_once_in_position_order(order: list[int], rows: int) -> None:
    """Whatever order a table's positions 1 … n are stored in and however many positions a
    range holds, the ranges together are the table ordered by position; an empty table is
    one empty, typed frame."""
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (position BIGINT, label VARCHAR)")
        if order:
            con.executemany("INSERT INTO t VALUES (?, ?)", [(p, f"row {p}") for p in order])
        parts = list(read_ranges(con, "t", "label, position", rows=rows))
    assert len(parts) == max(1, -(-len(order) // rows))
    whole = pl.concat(parts)
    assert whole.schema == pl.Schema({"label": pl.String, "position": pl.Int64})
    assert whole["position"].to_list() == sorted(order)
    assert whole["label"].to_list() == [f"row {p}" for p in sorted(order)]


def memory_setting(con: duckdb.DuckDBPyConnection) -> str:
    """DuckDB's memory limit in force as it shows it ('381.4 MiB')."""
    return str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])


def test_memory_sizes_are_read_as_duckdb_reads_them() -> None:
    """size_bytes gives the bytes DuckDB takes a memory size for: KB, MB, GB, TB in powers of
    1000, KiB … TiB in powers of 1024, any case, spaces allowed."""
    with duckdb.connect() as con:
        for size in ("400MB", "2GiB", "1.5 gb", "512 KiB", "3TB"):
            con.execute(f"SET memory_limit = '{size}'")
            given = memory_setting(con)
            con.execute(f"SET memory_limit = '{size_bytes(size)}B'")
            assert memory_setting(con) == given
    with pytest.raises(ValueError, match="not a memory size"):
        size_bytes("lots")


@pytest.mark.parametrize("limit", ["400MB", "1GiB", "100MB"])
def test_a_read_through_lowers_duckdbs_limit_and_restores_it(limit: str) -> None:
    """store.scanning: SCAN_MEMORY while a table is read through, never more than the limit in
    force; that limit after, also when the reading stops on an exception."""
    with duckdb.connect() as con:
        con.execute(f"SET memory_limit = '{SCAN_MEMORY}'")
        scan = memory_setting(con)
        con.execute(f"SET memory_limit = '{limit}'")
        before = memory_setting(con)
        lowered = size_bytes(limit) > size_bytes(SCAN_MEMORY)
        with pytest.raises(KeyError), scanning(con, limit):
            assert memory_setting(con) == (scan if lowered else before)
            raise KeyError("stopped")
        assert memory_setting(con) == before


def test_a_small_cycle_is_matched_on_one_duckdb_thread_and_the_threads_are_restored(
    demo_run: tuple[Path, list[str]],
) -> None:
    """match._one_thread_if_small: one thread while each side's lines fit in a row group (the
    demo's few lines), the setting in force before restored after, as it is for a larger one."""
    with Workspace(demo_run[0]) as ws:
        match._prepare_sides(ws.con, "2026-11")
        for limit, inside in ((ROW_GROUP_ROWS, 1), (1, 3)):
            ws.con.execute("SET threads = 3")
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(match, "ROW_GROUP_ROWS", limit)
                with match._one_thread_if_small(ws.con):
                    assert ws.con.execute("SELECT current_setting('threads')").fetchone() == (
                        inside,
                    )
            assert ws.con.execute("SELECT current_setting('threads')").fetchone() == (3,)


def test_every_rule_reads_only_declared_columns() -> None:
    """Each rule file's queries bind against empty tables made from the declarations alone:
    a column a rule names and the declaration lacks fails here, not in a customer's run."""
    config = Config()
    rules = discover()
    with duckdb.connect() as con:
        for table in RULE_TABLES:
            table.create(con)
        con.execute(MONEY_MACROS)
        con.execute(MACROS)
        for rule in rules:
            found = rule.module.check(RuleContext(con, rule.settings(config), config))
            assert found.is_empty(), rule.code
        assert run_rules(con, config, rules) == 0
        described = con.sql(f"DESCRIBE {DISCREPANCIES.name}").fetchall()
        assert [(r[0], r[1]) for r in described] == [
            (c.name, c.type) for c in DISCREPANCIES.columns
        ]
        assert bridge(con, rules) == {}


def test_a_declared_table_refuses_rows_without_a_declared_column() -> None:
    with duckdb.connect() as con:
        table = Table("t", "", (*RULE_TABLES[0].columns[:2],))
        table.create(con, "SELECT 1 AS uid, 'r1' AS ref, 'extra' AS ignored")
        assert con.sql("SELECT * FROM t").fetchall() == [(1, "r1")]
        with pytest.raises(duckdb.BinderException):
            table.create(con, "SELECT 1 AS uid")


def test_every_column_has_a_meaning_and_the_readme_lists_them() -> None:
    for table in (*RULE_TABLES, DISCREPANCIES):
        assert table.meaning
        assert len(set(table.names)) == len(table.names), table.name
        for column in table.columns:
            assert column.meaning.strip(), f"{table.name}.{column.name}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert tables_markdown() in readme, "README's table of rule columns is out of date"


def test_a_line_joins_its_entity_row_as_is_not_distinct_from_would() -> None:
    """match._join_on: each raw column equal or both null, so a null and an empty value stay
    apart, as IS NOT DISTINCT FROM keeps them."""
    from reconcile.match import _entity_columns, _join_on

    columns = _entity_columns("contract", "h")
    values = [None, "", "x"]
    con = duckdb.connect()
    for table in ("s", "e"):
        con.execute(f"CREATE TABLE {table} ({', '.join(f'{c} VARCHAR' for c in columns)})")
        rows = [(a, b, c) for a in values for b in values for c in values]
        con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", rows)
    same = " AND ".join(f"e.{c} IS NOT DISTINCT FROM s.{c}" for c in columns)
    pairs = "SELECT s.*, e.* FROM s JOIN e ON {} ORDER BY ALL"
    expected = con.sql(pairs.format(same)).fetchall()
    assert len(expected) == 27
    assert con.sql(pairs.format(_join_on("contract", "h", "e"))).fetchall() == expected


def _item_entities(
    chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[tuple[tuple[object, ...], ...], list[tuple[object, ...]]]:
    """match._entities of HaloPSA items on a few lines, normalising chunk_rows names at once:
    the entity rows and each raw row's key."""
    from reconcile import duck, match

    monkeypatch.setattr(duck, "CHUNK_ROWS", chunk_rows)
    con = duckdb.connect()
    lines = [
        *[("I1", "Widget", "", "desc a")] * 2,
        ("I1", "Widget Pro", "", "desc b"),
        ("I1", "Widget", "", "desc b"),
        ("", "Acme Ltd.", "", None),
        *[("", "ACME  LIMITED", "", None)] * 2,
        ("", None, "X9", "Only described"),
        ("", "", None, None),
    ]
    con.execute(
        "CREATE TEMP TABLE h_src "
        "(item_code VARCHAR, item_name VARCHAR, xref_item_id VARCHAR, description VARCHAR)"
    )
    con.executemany("INSERT INTO h_src VALUES (?, ?, ?, ?)", lines)
    match._entity_tables(con)
    match._distinct(con, "item", "h")
    match._normalised(con, [("item", "h")], frozenset())
    match._entities(con, "item", "h")
    entities = con.sql("SELECT * EXCLUDE (kind) FROM _entity_h ORDER BY key").fetchall()
    assert con.sql("SELECT DISTINCT kind FROM _entity_h").fetchall() == [("item",)]
    keys = con.sql(
        "SELECT item_code, item_name, xref_item_id, description, key FROM _item_h ORDER BY ALL"
    ).fetchall()
    return tuple(entities), keys


def test_entities_are_keyed_and_named_in_duckdb_alike_in_any_chunking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """match._entities: an id keys its entity, else the normalised name (both spellings of
    Acme one entity); names by lines then first row, an item's descriptions after its names;
    the last row's kept id. Normalising a name at a time gives the same as all at once."""
    entities, keys = _item_entities(200_000, monkeypatch)
    assert entities == (
        ("h:I1", ["I1"], ["Widget", "Widget Pro", "desc a", "desc b"], ""),
        ("h:name:", [], [], None),
        ("h:name:acme ltd", [], ["ACME  LIMITED", "Acme Ltd."], ""),
        ("h:name:only described", [], ["Only described"], "X9"),
    )
    assert len(keys) == 7
    assert ("", "Acme Ltd.", "", None, "h:name:acme ltd") in keys
    assert (entities, keys) == _item_entities(1, monkeypatch)
