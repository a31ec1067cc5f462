"""Pair Autotask lines with their HaloPSA counterparts, in stages, each recorded on the match.

Every line of both sides ends in exactly one match group (a group with one side empty is an
unmatched line), so the groups' differences add up exactly to the difference of the totals.
All set work is DuckDB SQL over temp tables; the fuzzy stage scores texts with rapidfuzz over
polars frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import polars as pl
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from reconcile import timing
from reconcile.config import Config
from reconcile.crosswalk import (
    CLIENT,
    NAME_COLUMNS,
    Mapping,
    Resolution,
    mapping_frame,
    name_table,
    normalise_into,
    resolutions,
    resolve_tables,
)
from reconcile.duck import MONEY_MACROS, frame_of, with_frame
from reconcile.ingest import check_cycle
from reconcile.store import ROW_GROUP_ROWS
from reconcile.tables import AUTOTASK_LINES, CROSSWALK, GROUPS, HALOPSA_LINES, SIDES

# Stage names in order, with the label the report shows.
STAGES = {
    "exact": "Exact 1:1 (client, item, period, quantity, price)",
    "split": "Split lines (1:n, n:1) that sum exactly",
    "values": "1:1, same charge with different values",
    "group": "Several lines each side, same charge",
    "period": "Same client and item, service period differs or unknown on one side",
    "fuzzy": "Similar description and amount, same client",
    "unmatched": "Unmatched",
}


@dataclass(frozen=True)
class MatchResult:
    """Counts per stage; the groups themselves live in the connection's temp tables."""

    stages: tuple[dict[str, object], ...]
    # The unmapped HaloPSA entities of the kinds given suggestions (match_cycle's `suggest`)
    # only: an unmapped contract of a run is counted (unmapped_contracts), never one Python
    # object each (at 3M lines a side, 159,000 of them held 85 MiB).
    crosswalk: tuple[tuple[str, Resolution], ...]
    unmapped_contracts: int
    unused_mappings: tuple[MappingProblem, ...]


# The kinds whose unmapped HaloPSA entities a run shows with a similar Autotask name: an
# unmapped contract is only counted (`reconcile map suggest` asks for every kind's).
SUGGESTED_IN_RUN = frozenset({"client", "item"})


def match_cycle(
    con: duckdb.DuckDBPyConnection,
    cycle: str,
    mappings: list[Mapping],
    config: Config,
    suggest: frozenset[str] = SUGGESTED_IN_RUN,
) -> MatchResult:
    """Match the cycle's lines; leaves the tables of reconcile.tables (a, h, groups, crosswalk)
    in the connection and nothing else. `suggest`: the kinds (crosswalk.KINDS) whose unmapped
    entities get similar-name suggestions."""
    _prepare_sides(con, cycle)
    with _one_thread_if_small(con) as small:
        return _matched(con, mappings, config, suggest, small)


@contextmanager
def _one_thread_if_small(con: duckdb.DuckDBPyConnection) -> Iterator[bool]:
    """DuckDB runs one thread while each side's lines fit in a row group (ROW_GROUP_ROWS), the
    unit it scans in parallel: then every table a match reads is scanned by one thread, and a
    second only adds its own work (a copy of 20,000 lines into a temp table took twice the
    CPU-s on two threads as on one). The number of threads in force is restored after. Yields
    whether they fit (the cycle is small)."""
    largest = con.execute(
        "SELECT greatest((SELECT count(*) FROM a_src), (SELECT count(*) FROM h_src)), "
        "current_setting('threads')"
    ).fetchall()[0]
    if largest[0] >= ROW_GROUP_ROWS:
        yield False
        return
    con.execute("SET threads = 1")
    try:
        yield True
    finally:
        con.execute(f"SET threads = {int(largest[1])}")


def _matched(
    con: duckdb.DuckDBPyConnection,
    mappings: list[Mapping],
    config: Config,
    suggest: frozenset[str],
    small: bool,
) -> MatchResult:
    """match_cycle's work once the sides' views are made (small: _one_thread_if_small's)."""
    with timing.stage("crosswalk"):
        unused = _crosswalk(con, mappings, config, suggest, small)
        _assign_keys(con)
        _suggest_by_totals(con)
    _exact(con)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE grp_line "
        "(gid VARCHAR, stage VARCHAR, side VARCHAR, uid BIGINT)"
    )
    for stage, key in (("split", CHARGE_KEY), ("values", CHARGE_KEY), ("group", CHARGE_KEY)):
        STAGE_SQL[stage](con, stage, key)
    # Exports that do not state a service period on every line still pair on client and item.
    for stage in ("split", "values", "group"):
        STAGE_SQL[stage](con, "period", ITEM_KEY)
    _fuzzy(con, config.match.fuzzy_min_score)
    _unmatched(con)
    _group_view(con)
    contracts = con.execute(
        "SELECT count(*) FROM crosswalk WHERE kind = 'contract' AND method = 'unmapped'"
    ).fetchall()[0][0]
    result = MatchResult(
        stages=tuple(_stage_counts(con)),
        crosswalk=_resolutions(con, suggest),
        unmapped_contracts=int(contracts),
        unused_mappings=tuple(unused),
    )
    for view in ("a_src", "h_src"):
        con.execute(f"DROP VIEW IF EXISTS {view}")
    return result


def _prepare_sides(con: duckdb.DuckDBPyConnection, cycle: str) -> None:
    """Each side as a view; the one copy of its lines is made once the keys are known."""
    check_cycle(cycle)  # the view below embeds it
    for side, platform in SIDES.items():
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {side}_src AS "
            f"SELECT * FROM lines WHERE cycle = '{cycle}' AND source = '{platform}'"
        )


ENTITY_COLUMNS = {
    "client": (["client_id", "client_name", "xref_client_id"], "client_id", "client_name"),
    "contract": (
        ["contract_id", "contract_name", "xref_contract_id"],
        "contract_id",
        "contract_name",
    ),
    "item": (["item_code", "item_name", "xref_item_id"], "item_code", "item_name"),
}


def _given(column: str) -> str:
    """SQL: the column's value, null when empty."""
    return f"nullif({column}, '')"


def _distinct(con: duckdb.DuckDBPyConnection, kind: str, side: str) -> None:
    """Temp table _rows_{kind}_{side}: the side's distinct raw entity columns (_entity_columns), n
    (its lines), name (the name it is known by: the name column, for an item else its
    description; null when empty) and id (null when empty). No order, no window over all of
    them: a sort of a million distinct rows ran out of 400MB at 3M lines a side."""
    columns = _entity_columns(kind, side)
    _, id_col, name_col = ENTITY_COLUMNS[kind]
    name = _given(name_col)
    if kind == "item":
        name = f"coalesce({name}, {_given('description')})"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _rows_{kind}_{side} AS
        SELECT {", ".join(columns)}, count(*) AS n, {name} AS name, {_given(id_col)} AS id
        FROM {side}_src GROUP BY ALL
        """
    )


def _normalised(
    con: duckdb.DuckDBPyConnection, places: list[tuple[str, str]], mapped: frozenset[str]
) -> None:
    """Rows of the temp table _norm (crosswalk.NAME_COLUMNS) for every value of the tables
    _rows_{kind}_{side} (_distinct) of the (kind, side) places that is compared as a name:
    names (an item's descriptions too, which name HaloPSA's items) and, of the kinds in
    `mapped` (those mapping rows name), every value a mapping row may name (MAPPED_COLUMNS).
    Normalised once for every use: _entities' keys of entities without an id, resolve_tables'
    names and mapping values, and _named; a chunk of distinct values of every place at a
    time."""
    values = []
    for kind, side in places:
        listed = ["name", _given("description")] if kind == "item" else ["name"]
        if kind in mapped:
            listed += MAPPED_COLUMNS[kind]
        values.append(
            f"SELECT '{kind}' AS kind, unnest([{', '.join(listed)}]) AS name "
            f"FROM _rows_{kind}_{side}"
        )
    normalise_into(
        con, "_norm", f"SELECT {CLIENT} AS client, name FROM ({' UNION ALL '.join(values)})"
    )


def _entities(con: duckdb.DuckDBPyConnection, kind: str, side: str) -> None:
    """Rows of the temp table _entity_{side}: the distinct entities of one kind on one side
    (kind and ENTITY_SCHEMA columns, in no order), from _rows_{kind}_{side} (_distinct, then
    dropped) and the names of _norm (_normalised); and the raw columns → entity key table
    _{kind}_{side}: each row of _rows_{kind}_{side} with its key, row and key_rows (below).

    An entity is its id, or else its normalised name (_distinct's name; "name:" and name_table's
    full: the same for every spelling); on HaloPSA's side the key is prefixed "h:". It is called
    by its two commonest names (by lines; ties: the first row). A HaloPSA item is also known by
    its lines' two commonest descriptions, after its own names: HaloPSA API lines whose item is
    missing from the items page carry the item's code as its name. Its id and kept id are those
    of its last row. Rows are in the order of their raw columns, then
    lines (nulls last), numbered within their key (row): only rows of one key are compared.
    A key of one row (key_rows: nearly all) is its entity as it stands; only the keys of several
    rows are aggregated (at 1M lines a side the aggregates over every key cost 2.5 CPU-s of
    3.0). All in DuckDB: no frame of names or entities is held."""
    prefix = "'h:' || " if side == "h" else ""
    columns = ", ".join(_entity_columns(kind, side))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _{kind}_{side} AS
        SELECT *, row_number() OVER per_key AS row,
               count(*) OVER (per_key ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                   AS key_rows
        FROM (
            SELECT r.*, {prefix}coalesce(r.id, 'name:' || coalesce(m.whole, '')) AS key
            FROM _rows_{kind}_{side} r
            LEFT JOIN _norm m
                ON r.id IS NULL AND m.client = ('{kind}' = 'client') AND m.name = r.name
        )
        WINDOW per_key AS (PARTITION BY key ORDER BY {columns}, n)
        """
    )
    described, sole_described = "", ""
    if kind == "item" and side == "h":
        described = f"""
            UNION ALL
            SELECT * FROM ({_commonest(f"_{kind}_{side}", _given("description"), 1)}) d
            ANTI JOIN named USING (key, name)"""
        description = _given("description")
        sole_described = f", CASE WHEN {description} IS DISTINCT FROM name THEN {description} END"
    xref = ENTITY_COLUMNS[kind][0][2] if side == "h" else "NULL::VARCHAR"
    # A key's names in their places (names, then descriptions; each by rank): aggregates of
    # fixed size, which spill, where a list sorted per key did not at 3M lines a side.
    slots = ", ".join(
        f"any_value(name) FILTER (WHERE src = {src} AND rank = {rank})"
        for src in (0, 1)
        for rank in (1, 2)
    )
    con.execute(
        f"""
        INSERT INTO _entity_{side}
        WITH named AS ({_commonest(f"_{kind}_{side}", "name", 0)}),
        listed AS (
            SELECT key, list_filter([{slots}], lambda x: x IS NOT NULL) AS names
            FROM (SELECT * FROM named{described}) GROUP BY key
        ),
        last AS (
            SELECT key, arg_max_null(id, row) AS id, arg_max_null({xref}, row) AS xref
            FROM _{kind}_{side} WHERE key_rows > 1 GROUP BY key
        )
        SELECT '{kind}', key, CASE WHEN id IS NULL THEN []::VARCHAR[] ELSE [id] END AS ids,
               coalesce(names, []::VARCHAR[]) AS names, xref
        FROM last LEFT JOIN listed USING (key)
        UNION ALL
        SELECT '{kind}', key, CASE WHEN id IS NULL THEN []::VARCHAR[] ELSE [id] END,
               list_filter([name{sole_described}], lambda x: x IS NOT NULL), {xref}
        FROM _{kind}_{side} WHERE key_rows = 1
        """
    )
    con.execute(f"DROP TABLE _rows_{kind}_{side}")


def _commonest(keyed: str, value: str, src: int) -> str:
    """SQL: each key's two commonest values of the expression over the key table `keyed`
    (_entities', by lines, ties: the first row), of the keys of several rows: key, name, src
    (the given number: lists put names first), rank (1, 2)."""
    return f"""
        SELECT key, {value} AS name, {src} AS src,
               row_number() OVER (PARTITION BY key ORDER BY sum(n) DESC, min(row)) AS rank
        FROM {keyed} WHERE key_rows > 1 AND {value} IS NOT NULL GROUP BY key, {value}
        QUALIFY rank <= 2"""


def _crosswalk(
    con: duckdb.DuckDBPyConnection,
    mappings: list[Mapping],
    config: Config,
    suggest: frozenset[str],
    together: bool,
) -> list[MappingProblem]:
    """Every HaloPSA client, item and contract resolved (_resolve, with name suggestions for the
    kinds in `suggest`) into the temp table crosswalk (tables.CROSSWALK), the labels and places
    of the unmapped ones of those kinds into _xw_label; returns the mapping rows that name
    nothing (_unused). Leaves each kind's raw columns → key tables (_{kind}_a, _{kind}_h:
    _entities) in the connection.

    `together`: all kinds are resolved at once, each step one statement (a 20k cycle: 90 fewer
    statements); else one kind at a time, its entities and names let go before the next
    kind's are made (at 1M lines a side all kinds' at once filled DuckDB's 400MB, and what it
    then wrote out cost 3 CPU-s)."""
    CROSSWALK.create(con)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _xw_label (kind VARCHAR, h_key VARCHAR, label VARCHAR, "
        "place BIGINT)"
    )
    wanted = _mapping_values(mappings)
    with_frame(con, "CREATE OR REPLACE TEMP TABLE _xw_wanted AS SELECT * FROM _frame", wanted)
    named, unfit = [], []
    batches = [tuple(ENTITY_COLUMNS)] if together else [(kind,) for kind in ENTITY_COLUMNS]
    for kinds in batches:
        named += _entities_of(con, kinds, mappings)
        unfit.append(_resolve(con, [m for m in mappings if m.kind in kinds], config, suggest))
    con.execute("DROP TABLE _xw_wanted")
    return _unused(mappings, wanted, named, pl.concat(unfit))


def _entities_of(
    con: duckdb.DuckDBPyConnection, kinds: tuple[str, ...], mappings: list[Mapping]
) -> list[pl.DataFrame]:
    """The temp tables _entity_a and _entity_h (kind and ENTITY_SCHEMA columns) and _norm of
    the kinds (_distinct of each kind and side, _normalised, then _entities), and the values
    of both sides' lines that mapping rows name (_named of the kinds a mapping row has; none,
    and no query for them, without one)."""
    _entity_tables(con)
    mapped = frozenset(m.kind for m in mappings) & frozenset(kinds)
    places = [(kind, side) for kind in kinds for side in SIDES]
    for kind, side in places:
        _distinct(con, kind, side)
    _normalised(con, places, mapped)
    for kind, side in places:
        _entities(con, kind, side)
    return [_named(con, [kind for kind in kinds if kind in mapped])] if mapped else []


def _entity_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The temp tables _entity_a, _entity_h (kind and ENTITY_SCHEMA columns) and _norm
    (crosswalk.NAME_COLUMNS, _normalised) empty, for _entities and _normalised to fill."""
    for side in SIDES:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _entity_{side} (kind VARCHAR, key VARCHAR, "
            "ids VARCHAR[], names VARCHAR[], xref VARCHAR)"
        )
    con.execute(f"CREATE OR REPLACE TEMP TABLE _norm ({NAME_COLUMNS})")


PLACES = 1 << 40  # a kind's rows are placed from its number (in ENTITY_COLUMNS) x PLACES on


def _resolve(
    con: duckdb.DuckDBPyConnection, mappings: list[Mapping], config: Config, suggest: frozenset[str]
) -> pl.DataFrame:
    """The entities of _entity_a and _entity_h resolved together by crosswalk.resolve_tables
    (with the mapping rows of their kinds), with name suggestions for the kinds in `suggest`:
    their rows of the crosswalk table (HaloPSA key → Autotask key, which _create_lines joins),
    and the labels of the unmapped entities of the kinds in `suggest`, the only ones read back
    (_resolutions), into _xw_label (kind, h_key, label, place: the kind's number x PLACES + its
    place in key order among them). Names are matched with the config's fuzzy_min_score,
    DuckDB's memory let go (to its [workspace] memory_limit) before they are scored. Drops the
    entity tables and _norm. Returns resolve_tables' mapping values that fit several
    Autotask entities."""
    unfit = resolve_tables(
        con,
        "_entity_a",
        "_entity_h",
        mappings,
        config.match.fuzzy_min_score,
        suggest,
        "_norm",
        config.workspace.memory_limit,
    )
    columns = ", ".join(CROSSWALK.names[3:])
    con.execute(
        f"INSERT INTO crosswalk SELECT kind, halopsa_key, autotask_key, {columns} FROM _resolution"
    )
    # Places in key order among the unmapped only: a sort of those few, not of every entity.
    # Not of the kinds a run does not suggest for: at 1M lines a side the statement placing
    # 53,537 unmapped contracts, never read back, cost 1.3 CPU-s.
    con.execute(
        f"""
        INSERT INTO _xw_label
        SELECT kind, halopsa_key, halopsa_label,
               (list_position($kinds, kind) - 1) * {PLACES}
               + row_number() OVER (PARTITION BY kind ORDER BY halopsa_key)
        FROM _resolution WHERE method = 'unmapped' AND list_contains($suggest, kind)
        """,
        {"kinds": list(ENTITY_COLUMNS), "suggest": sorted(suggest)},
    )
    for table in ("_entity_a", "_entity_h", "_norm", "_resolution"):
        con.execute(f"DROP TABLE {table}")
    return unfit


def _suggest_by_totals(con: duckdb.DuckDBPyConnection) -> None:
    """A client renamed beyond recognition (initials, a new trading name) has no name match, but
    it usually bills exactly what the Autotask client that vanished from HaloPSA billed. A
    client's totals are its net per currency, all of them: GBP 100.00 and EUR 50.00 is not
    GBP 150.00, nor does GBP 100.00 alone match it (the EUR lines would stay missing once the
    pair was mapped). Only a one-to-one coincidence of totals is suggested, and only where no
    name suggestion exists: the crosswalk table's rows of those clients get it (suggestion,
    basis: the totals, each with its currency code) in place."""
    open_ = "suggestion IS NULL AND NOT ambiguous"
    if not con.execute(
        f"SELECT count(*) FROM crosswalk WHERE kind = 'client' AND a_key IS NULL AND {open_}"
    ).fetchall()[0][0]:
        return  # nothing to suggest for: the lines need not be summed
    con.execute(MONEY_MACROS)
    con.execute(
        f"""
        WITH unmapped_sums AS (
            SELECT c_key AS h_key, currency, sum(net_amount) AS net
            FROM h WHERE NOT c_ok GROUP BY ALL
        ),
        vanished_sums AS (
            SELECT c_key AS a_key, currency, min(client_name) AS name, sum(net_amount) AS net
            FROM a WHERE c_key NOT IN (SELECT c_key FROM h WHERE c_ok) GROUP BY ALL
        ),
        unmapped AS (
            SELECT h_key,
                   string_agg(currency || ' ' || fmt_money(net), ' and ' ORDER BY currency) AS net
            FROM unmapped_sums GROUP BY ALL
        ),
        vanished AS (
            SELECT a_key, min(name) AS name,
                   string_agg(currency || ' ' || fmt_money(net), ' and ' ORDER BY currency) AS net
            FROM vanished_sums GROUP BY ALL
        ),
        pairs AS (SELECT u.h_key, v.name, v.net FROM unmapped u JOIN vanished v USING (net)),
        found AS (
            SELECT h_key, name AS by_total,
                   'same net total ' || net || '; none of its lines is in HaloPSA' AS total_basis
            FROM pairs
            QUALIFY count(*) OVER (PARTITION BY h_key) = 1
                AND count(*) OVER (PARTITION BY net) = 1
        )
        UPDATE crosswalk SET suggestion = found.by_total, basis = found.total_basis
        FROM found WHERE crosswalk.kind = 'client' AND crosswalk.h_key = found.h_key AND {open_}
        """
    )


def _resolutions(
    con: duckdb.DuckDBPyConnection, kinds: frozenset[str]
) -> tuple[tuple[str, Resolution], ...]:
    """The unmapped HaloPSA entities of `kinds` as MatchResult holds them, (kind, Resolution)
    in the crosswalk's order (kind, then key): all that a reader of it looks at (the unmapped
    list, suggestions). The resolved ones, and the unmapped ones of other kinds, stay in the
    crosswalk table, never one Python object each. Drops _xw_label."""
    unmapped: pl.DataFrame = frame_of(
        con.sql(
            """
        SELECT x.kind, x.h_key AS halopsa_key, l.label AS halopsa_label, x.a_key AS autotask_key,
               x.* EXCLUDE (kind, h_key, a_key)
        FROM _xw_label l JOIN crosswalk x USING (kind, h_key)
        WHERE list_contains($kinds, x.kind)
        ORDER BY l.place
        """,
            params={"kinds": sorted(kinds)},
        )
    )
    con.execute("DROP TABLE _xw_label")
    return tuple(zip(unmapped["kind"], resolutions(unmapped), strict=True))


def _entity_columns(kind: str, side: str) -> list[str]:
    """The raw columns that identify an entity: Autotask has no kept-id column."""
    columns = ENTITY_COLUMNS[kind][0] if side == "h" else ENTITY_COLUMNS[kind][0][:2]
    return columns + (["description"] if kind == "item" else [])


def _join_on(kind: str, side: str, alias: str) -> str:
    """The line s has the entity table row `alias`'s raw columns: each equal or both null
    (IS NOT DISTINCT FROM), spelled as an equality of the value or '' and of its being null.
    A hash join on IS NOT DISTINCT FROM of every column does not spill: at 1M lines a side
    Autotask's contract join (names, no ids) ran out of a 100MB limit, which this form's
    stays within (as a cycle some times larger would run out of the default 400MB)."""
    return " AND ".join(
        f"coalesce({alias}.{c}, '') = coalesce(s.{c}, '') "
        f"AND ({alias}.{c} IS NULL) = (s.{c} IS NULL)"
        for c in _entity_columns(kind, side)
    )


ROWS_PER_LOAD = 10_000_000_000  # uids stay unique while no export has this many rows


def _identity(side: str) -> str:
    """A uid per line in (load, row) order, and a display ref unique within the side (qualified
    by file name only when two loaded files use the same line id). Arithmetic and hash joins,
    not window functions: sorting a million wide rows costs seconds."""
    return f"""
        WITH load_index AS (
            SELECT load_id, row_number() OVER (ORDER BY load_id) AS idx
            FROM (SELECT DISTINCT load_id FROM {side}_src)
        ),
        repeated AS (SELECT line_ref FROM {side}_src GROUP BY line_ref HAVING count(*) > 1)
        SELECT li.idx * {ROWS_PER_LOAD} + s.row_number AS uid,
               CASE WHEN rp.line_ref IS NULL THEN s.line_ref
                    ELSE s.file_name || ':' || s.line_ref END AS ref,
               s.*"""


def _assign_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Both sides' line tables (reconcile.tables: a, h), with client/item/contract keys in
    Autotask's terms where resolved; the crosswalk's entity tables are dropped once used."""
    with _joins_as_written(con):
        _create_lines(con)
    for kind in ENTITY_COLUMNS:
        for table in SIDES:
            con.execute(f"DROP TABLE _{kind}_{table}")


@contextmanager
def _joins_as_written(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Joins run in the order written, each building its hash table from its right side. The
    line tables join small entity tables, but after a join on several IS NOT DISTINCT FROM
    columns DuckDB's estimate of the lines falls below the entity table's size and it builds
    from the wide lines instead (2 s of 2.5 at 200,000 lines a side)."""
    con.execute("SET disabled_optimizers = 'join_order,build_side_probe_side'")
    try:
        yield
    finally:
        con.execute("RESET disabled_optimizers")


def _create_lines(con: duckdb.DuckDBPyConnection) -> None:
    """Tables a and h: each line with its uid, ref and keys (see _assign_keys); the lines are
    the probe side of every join. HaloPSA's entity tables first take their Autotask keys from
    the crosswalk (_with_autotask_keys). Each side is made in one statement: the wide lines
    are copied once (a first copy keyed by client and item, then joined to the contracts,
    cost 7.5 CPU-s of 3 at 1M lines a side, that copy written out and read back)."""
    _with_autotask_keys(con)
    keys = {
        "a": "c.key AS c_key, i.key AS i_key, k.key AS k_key, true AS c_ok, true AS i_ok",
        "h": "c.key AS c_key, i.key AS i_key, k.a_key AS k_key, c.a_key IS NOT NULL AS c_ok, "
        "i.a_key IS NOT NULL AS i_ok",
    }
    for side, table in (("a", AUTOTASK_LINES), ("h", HALOPSA_LINES)):
        table.create(
            con,
            f"""
            {_identity(side)}, {keys[side]}
            FROM {side}_src s
            JOIN load_index li ON li.load_id = s.load_id
            LEFT JOIN repeated rp ON rp.line_ref = s.line_ref
            JOIN _client_{side} c ON {_join_on("client", side, "c")}
            JOIN _item_{side} i ON {_join_on("item", side, "i")}
            JOIN _contract_{side} k ON {_join_on("contract", side, "k")}
            """,
        )


def _with_autotask_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Each HaloPSA entity table (_{kind}_h) with the key its lines take, key (the Autotask
    key the crosswalk resolved it to, else its own), and a_key (that Autotask key, or null)."""
    for kind in ENTITY_COLUMNS:
        columns = ", ".join(f"e.{c}" for c in _entity_columns(kind, "h"))
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _{kind}_h AS
            SELECT {columns}, coalesce(x.a_key, e.key) AS key, x.a_key
            FROM _{kind}_h e LEFT JOIN crosswalk x ON x.kind = '{kind}' AND x.h_key = e.key
            """
        )


def _left(side: str) -> str:
    """The side's lines that no stage has grouped yet."""
    return (
        f"(SELECT x.* FROM {side}_left x ANTI JOIN grp_line g "
        f"ON g.side = '{side}' AND g.uid = x.uid)"
    )


# Every key holds the currency: lines in different currencies never pair (their amounts cannot
# be compared); the currency_mismatch rule reports a client billed in another currency.
EXACT_KEY = [
    "c_key", "i_key", "currency", "period_start", "period_end", "quantity", "unit_price",
]  # fmt: skip
# What the stages after the exact one read of a line: keys, values, the text fuzzy compares
# and what their groups show (SIDE_COLUMNS: _side_groups reads these, not the whole side).
LEFT_COLUMNS = (
    "uid, ref, c_key, i_key, c_ok, i_ok, currency, period_start, period_end, quantity, "
    "unit_price, net_amount, tax_amount, item_name, description, client_name, contract_type"
)


def _exact(con: duckdb.DuckDBPyConnection) -> None:
    """1:1 pairs on the whole charge; within a key the n-th line of each side pairs, ordered
    by contract (a hint, not a condition), amount and ref, so duplicates pair alike. Most keys
    hold one line a side and pair from a count per key (a hash aggregate); only the lines of
    keys with several are ranked (a window sorts what it ranks). The pairs go to exact_pair
    (a_uid, h_uid, and the group's number, by the Autotask ref), and the lines left, narrowed
    to LEFT_COLUMNS, to a_left and h_left, which the later stages read instead of a and h."""
    part = ", ".join(EXACT_KEY)
    rank = f"row_number() OVER (PARTITION BY {part} ORDER BY k_key NULLS LAST, net_amount, ref)"
    in_several, same_key = _same(EXACT_KEY, "x", "s"), _same(EXACT_KEY, "l", "r")
    # Both sides counted in one aggregate over their union (GROUP BY takes nulls as equal, as
    # IS NOT DISTINCT FROM does): no join of two key tables on seven columns.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE exact_pair AS
        WITH keyed AS (
                 SELECT {part}, count(*) FILTER (WHERE side = 'a') AS n,
                        count(*) FILTER (WHERE side = 'h') AS h_n,
                        any_value(uid) FILTER (WHERE side = 'a') AS uid,
                        any_value(ref) FILTER (WHERE side = 'a') AS ref,
                        any_value(uid) FILTER (WHERE side = 'h') AS h_uid
                 FROM (SELECT 'a' AS side, uid, ref, {part} FROM a
                       UNION ALL
                       SELECT 'h', uid, ref, {part} FROM h WHERE c_ok)
                 GROUP BY ALL HAVING n > 0 AND h_n > 0
             ),
             several AS (SELECT {part} FROM keyed WHERE n > 1 OR h_n > 1),
             l AS (SELECT uid, ref, {part}, {rank} AS rk
                   FROM a x SEMI JOIN several s ON {in_several}),
             r AS (SELECT uid, {part}, {rank} AS rk
                   FROM h x SEMI JOIN several s ON {in_several} WHERE c_ok),
             pairs AS (
                 SELECT uid AS a_uid, h_uid, ref FROM keyed WHERE n = 1 AND h_n = 1
                 UNION ALL
                 SELECT l.uid, r.uid, l.ref FROM l JOIN r ON {same_key} AND l.rk = r.rk
             )
        SELECT row_number() OVER (ORDER BY ref) AS match_id, a_uid, h_uid FROM pairs
        """
    )
    for side in SIDES:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {side}_left AS SELECT {LEFT_COLUMNS} FROM {side} x "
            f"ANTI JOIN exact_pair p ON p.{side}_uid = x.uid"
        )


# The keys the stages after the exact one pair on: a charge (client, item, currency, period),
# and, for lines whose exports do not state a service period alike, client, item and currency.
CHARGE_KEY = ("c_key", "i_key", "currency", "period_start", "period_end")
ITEM_KEY = ("c_key", "i_key", "currency")


def _same(key: tuple[str, ...] | list[str], left: str, right: str) -> str:
    """SQL: the rows `left` and `right` have the same key, each column equal or both null (as
    GROUP BY takes them). Plain columns, not a row of them: grouping and joining on a STRUCT
    cost more."""
    return " AND ".join(f"{left}.{k} IS NOT DISTINCT FROM {right}.{k}" for k in key)


def _per_key(key: tuple[str, ...], aggregates: str) -> str:
    """The CTEs ka and kh: the leftover lines of each side (HaloPSA's of resolved clients) per
    key, its columns and `aggregates` over its lines."""
    columns = ", ".join(key)
    return f"""
        ka AS (SELECT {columns}, {aggregates} FROM {_left("a")} GROUP BY {columns}),
        kh AS (SELECT {columns}, {aggregates} FROM {_left("h")} WHERE c_ok GROUP BY {columns})
    """


def _insert_groups(
    con: duckdb.DuckDBPyConnection, stage: str, key: tuple[str, ...], condition: str
) -> None:
    """Group every leftover line of both sides whose key satisfies `condition` (over ka and kh:
    n lines, net and qty summed). A group is named by the stage and its least Autotask uid."""
    aggregates = "count(*) AS n, sum(net_amount) AS net, sum(quantity) AS qty, min(uid) AS uid"
    con.execute(
        f"""
        INSERT INTO grp_line
        WITH {_per_key(key, aggregates)},
        chosen AS (
            SELECT {", ".join(f"ka.{k}" for k in key)}, '{stage}:' || ka.uid AS gid
            FROM ka JOIN kh ON {_same(key, "ka", "kh")} WHERE {condition}
        )
        SELECT c.gid, '{stage}', x.side, x.uid FROM (
            SELECT *, 'a' AS side FROM {_left("a")}
            UNION ALL
            SELECT *, 'h' FROM {_left("h")} WHERE c_ok
        ) x JOIN chosen c ON {_same(key, "x", "c")}
        """
    )


# One distinct (quantity, unit price, net, tax) over a key's lines, nulls alike: each value
# null on every line or on none, with its least equal to its greatest.
SAME_VALUES = " AND ".join(
    f"(count({v}) = 0 OR (count({v}) = count(*) AND min({v}) = max({v})))"
    for v in ("quantity", "unit_price", "net_amount", "tax_amount")
)


def _one_to_one_by_key(con: duckdb.DuckDBPyConnection, stage: str, key: tuple[str, ...]) -> None:
    """One line against one line of the same charge; when one side repeats an identical line
    of the other side's quantity, the first copy (by ref, unique on a side) pairs and the extra
    copies stay for the duplicate rule. Identical lines of another quantity than the other
    side's one line (a line per device, 1 x 35.00 four times, against 3 x 35.00) are not
    copies of it: the group stage compares their sums. Per key: its lines, whether their values
    are alike, a quantity, its first line."""
    aggregates = (
        f"count(*) AS n, {SAME_VALUES} AS alike, any_value(quantity) AS qty, "
        "arg_min(uid, ref) AS uid"
    )
    con.execute(
        f"""
        INSERT INTO grp_line
        WITH {_per_key(key, aggregates)},
        p AS (SELECT '{stage}:' || ka.uid AS gid, ka.uid AS a_uid, kh.uid AS h_uid
              FROM ka JOIN kh ON {_same(key, "ka", "kh")}
              WHERE (ka.n = 1 AND kh.n = 1)
                 OR (((ka.n = 1 AND kh.alike) OR (kh.n = 1 AND ka.alike))
                     AND ka.qty IS NOT DISTINCT FROM kh.qty))
        SELECT gid, '{stage}', 'a', a_uid FROM p
        UNION ALL SELECT gid, '{stage}', 'h', h_uid FROM p
        """
    )


def _split(con: duckdb.DuckDBPyConnection, stage: str, key: tuple[str, ...]) -> None:
    _insert_groups(
        con,
        stage,
        key,
        "((ka.n = 1 AND kh.n > 1) OR (ka.n > 1 AND kh.n = 1)) "
        "AND ka.net = kh.net AND ka.qty IS NOT DISTINCT FROM kh.qty",
    )
    if "period_start" in key:
        _folded(con, stage)


# The lines _folded compares: both sides' leftovers (HaloPSA's of resolved clients) whose
# quantity, unit price and service period are stated, the period within the cycle (a_src's).
FOLDABLE = """
    SELECT '{side}' AS side, uid, c_key, i_key, currency, unit_price, quantity, net_amount,
           period_start, period_end
    FROM {lines}
    WHERE {resolved} quantity IS NOT NULL AND unit_price IS NOT NULL AND net_amount IS NOT NULL
      AND strftime(period_start, '%Y-%m') = (SELECT cycle FROM a_src LIMIT 1)
      AND strftime(period_end, '%Y-%m') = (SELECT cycle FROM a_src LIMIT 1)
"""


def _folded(con: duckdb.DuckDBPyConnection, stage: str) -> None:
    """A partial-period charge folded into one line on one side and billed apart on the other
    (Autotask's separate prorated line, 0.5 x 35.00 for 16-30 Nov beside 12 x 35.00 for 1-30
    Nov, against HaloPSA's 12.5 x 35.00 for 1-30 Nov; or the other way round): one line (the
    whole) against the two or more leftover lines of the other side (the parts) of its client,
    item, currency and unit price whose periods lie within its own, not all equal to it, whose
    quantities and nets sum exactly to its own; every period within the cycle (FOLDABLE). Never
    a guess: a part whose period lies within that of two lines of the whole's side pairs with
    neither, and a line in two such groups (a whole of one, a part of another) pairs in none.
    A group is named by the stage and its least Autotask uid."""
    key = ("c_key", "i_key", "currency", "unit_price")
    lines = " UNION ALL ".join(
        FOLDABLE.format(side=side, lines=_left(side), resolved=resolved)
        for side, resolved in (("a", ""), ("h", "c_ok AND"))
    )
    con.execute(
        f"""
        INSERT INTO grp_line
        WITH l AS ({lines}),
        inside AS (
            SELECT w.side AS w_side, w.uid AS w_uid, w.quantity AS w_qty, w.net_amount AS w_net,
                   p.side, p.uid, p.quantity, p.net_amount,
                   p.period_start = w.period_start AND p.period_end = w.period_end AS whole_period
            FROM l w JOIN l p ON p.side <> w.side AND {_same(key, "w", "p")}
                 AND p.period_start >= w.period_start AND p.period_end <= w.period_end
        ),
        sole AS (SELECT side, uid FROM inside GROUP BY side, uid HAVING count(*) = 1),
        whole AS (
            SELECT w_side, w_uid FROM inside LEFT JOIN sole USING (side, uid)
            GROUP BY w_side, w_uid, w_qty, w_net
            HAVING count(*) > 1 AND count(sole.uid) = count(*) AND NOT bool_and(whole_period)
               AND sum(quantity) = w_qty AND sum(net_amount) = w_net
        ),
        members AS (
            SELECT w_side, w_uid, w_side AS side, w_uid AS uid FROM whole
            UNION ALL
            SELECT w_side, w_uid, side, uid FROM inside SEMI JOIN whole USING (w_side, w_uid)
        ),
        counted AS (SELECT *, count(*) OVER (PARTITION BY side, uid) AS uses FROM members),
        kept AS (
            SELECT w_side, w_uid, min(uid) FILTER (WHERE side = 'a') AS a_uid FROM counted
            GROUP BY w_side, w_uid HAVING max(uses) = 1
        )
        SELECT '{stage}:' || k.a_uid, '{stage}', m.side, m.uid
        FROM kept k JOIN members m USING (w_side, w_uid)
        """
    )


def _group_by_key(con: duckdb.DuckDBPyConnection, stage: str, key: tuple[str, ...]) -> None:
    _insert_groups(con, stage, key, "true")


STAGE_SQL = {"split": _split, "values": _one_to_one_by_key, "group": _group_by_key}


def _fuzzy_side(con: duckdb.DuckDBPyConnection, side: str) -> pl.DataFrame:
    """The side's lines left for the fuzzy stage (of resolved clients: every Autotask one), only
    of the clients and currencies with lines left on both sides (the others have nothing to pair
    with; at 200,000 lines a side they were 4,000 partitions of 4,250), in no order: uid;
    client (the client key and currency); item: the item's Autotask key where the line's item
    is resolved (every Autotask line's), else null; order (UInt32: the line's place in ref
    order, refs being unique on a side); cents (Int64: the net amount); text (item name and
    description as they stand: _texts normalises both sides' at once)."""
    other = "h" if side == "a" else "a"
    client = "c_key || '|' || coalesce(currency, '')"
    text = "coalesce(item_name, '') || ' ' || coalesce(description, '')"
    frame: pl.DataFrame = frame_of(
        con.sql(
            f"SELECT uid, ref, {client} AS client, {text} AS text, net_amount, "
            f"CASE WHEN i_ok THEN i_key END AS item FROM {_left(side)} "
            f"WHERE c_ok AND {client} IN (SELECT {client} FROM {_left(other)} WHERE c_ok)"
        )
    )
    return frame.select(
        "uid",
        "client",
        "item",
        order=pl.col("ref").rank("ordinal"),
        cents=(pl.col("net_amount") * 100).cast(pl.Int64),
        text="text",
    )


def _texts(a: pl.DataFrame, h: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both sides' lines (_fuzzy_side) with their texts normalised as crosswalk.normalise_text
    (name_table's base) and text_id (UInt32, one per distinct text on the side): one
    name_table of both sides' texts, whose cost is mostly its own (a few ms a call)."""
    texts = name_table("item", pl.concat([a["text"], h["text"]]))["base"]
    return (
        a.with_columns(text=texts.head(len(a))).with_columns(text_id=pl.col("text").rank("dense")),
        h.with_columns(text=texts.tail(len(h))).with_columns(text_id=pl.col("text").rank("dense")),
    )


def _candidates(a: pl.DataFrame, h: pl.DataFrame, min_score: float) -> pl.DataFrame:
    """The pairs of one client's lines (_fuzzy_side of each side) whose texts are at least
    min_score alike (token_set_ratio, 0-100, float32 as rapidfuzz gives it), but never two
    lines of items the crosswalk resolved to different Autotask items (a HaloPSA "Microsoft
    365 Business Premium" line at the price of Autotask's "… Standard" is another product,
    not a renamed one: a pair would report nothing), best first:
    a_uid, h_uid. Best is the highest score, 0.8 x similarity + 20 x amount closeness
    (1 - |a - h| / max(|a|, |h|, 1), at least 0), then the first Autotask ref, then the first
    HaloPSA ref: a total order. Closeness divides whole cents as doubles (exact integers below
    2^53 cents), so the quotient is the correctly rounded one. Each distinct pair of texts is
    scored once, TEXT_PAIRS at a time."""
    pairs = (
        a.drop("text")
        .join(h.drop("text"), on="client", suffix="_h")
        .filter(pl.col("item_h").is_null() | (pl.col("item") == pl.col("item_h")))
        .drop("item", "item_h")
    )
    if pairs.is_empty():
        return pairs.select(a_uid="uid", h_uid="uid_h")
    a_texts = a.select("text_id", "text").unique()
    h_texts = h.select(text_id_h="text_id", text_h="text").unique()
    alike = pl.concat(
        [
            _alike(chunk.join(a_texts, on="text_id").join(h_texts, on="text_id_h"), min_score)
            for chunk in pairs.select("text_id", "text_id_h").unique().iter_slices(TEXT_PAIRS)
        ],
        how="vertical",
    )
    diff = (pl.col("cents") - pl.col("cents_h")).abs().cast(pl.Float64)
    scale = pl.max_horizontal(pl.col("cents").abs(), pl.col("cents_h").abs(), 100)
    closeness = 1 - pl.min_horizontal(1.0, diff / scale.cast(pl.Float64))
    return (
        pairs.join(alike, on=["text_id", "text_id_h"])
        .with_columns(score=0.8 * pl.col("similarity").cast(pl.Float64) + 20 * closeness)
        .sort(["score", "order", "order_h"], descending=[True, False, False])
        .select(a_uid="uid", h_uid="uid_h")
    )


TEXT_PAIRS = 100_000  # pairs of texts scored at once (their strings held as Python objects)


def _alike(texts: pl.DataFrame, min_score: float) -> pl.DataFrame:
    """The pairs of texts (text_id, text_id_h, text, text_h) at least min_score alike:
    text_id, text_id_h, similarity (token_set_ratio, 0-100, Float32 as rapidfuzz gives it)."""
    similarity = cpdist(
        texts["text"].to_list(), texts["text_h"].to_list(), scorer=fuzz.token_set_ratio
    )
    return texts.select(
        "text_id", "text_id_h", similarity=pl.Series(similarity, dtype=pl.Float32)
    ).filter(pl.col("similarity").cast(pl.Float64) >= min_score)


def _greedy(candidates: pl.DataFrame) -> pl.DataFrame:
    """The pairs taken going down the candidates best first (_candidates), each line used once:
    a_uid, h_uid, in that order. A pair that is the best left of both its lines is taken by
    that walk (no better pair can have used either line), and taking it only removes pairs
    after it; so each round takes every such pair at once and drops the pairs of their lines.
    The rounds are vectorised; there are as many as the longest chain of pairs each better
    than the next and sharing a line with it (a few: a client's leftover lines)."""
    left = candidates.with_row_index("rank")
    taken = []
    while not left.is_empty():
        best = pl.col("rank").min()
        round_ = left.filter(
            (pl.col("rank") == best.over("a_uid")) & (pl.col("rank") == best.over("h_uid"))
        )
        taken.append(round_)
        left = left.join(round_, on="a_uid", how="anti").join(round_, on="h_uid", how="anti")
    return pl.concat(taken).sort("rank").drop("rank") if taken else candidates


def _fuzzy(con: duckdb.DuckDBPyConnection, min_score: float) -> None:
    """Within a client and currency, best pairs first by description similarity, then amount
    proximity (_candidates), each line in one pair at most (_greedy)."""
    a, h = _fuzzy_side(con, "a"), _fuzzy_side(con, "h")
    if a.is_empty():  # then so is h: each side holds only clients the other holds
        return
    pairs = _greedy(_candidates(*_texts(a, h), min_score))
    with_frame(
        con,
        "INSERT INTO grp_line SELECT 'fuzzy:' || a_uid, 'fuzzy', s.side, "
        "CASE s.side WHEN 'a' THEN a_uid ELSE h_uid END "
        "FROM _frame, (VALUES ('a'), ('h')) s(side) ORDER BY n, s.side",
        pairs.with_row_index("n"),
    )


def _unmatched(con: duckdb.DuckDBPyConnection) -> None:
    for side in SIDES:
        con.execute(
            f"INSERT INTO grp_line SELECT 'unmatched:{side}' || uid, 'unmatched', '{side}', uid "
            f"FROM {_left(side)}"
        )


# Each side of a group: (the value for a one-line group, the aggregate for several lines), over
# the side's lines as {x}. Most groups hold one line a side, and aggregating strings over a
# million groups costs seconds, so one-line groups take their line's values as they are. min =
# max stands for "one distinct value" (COUNT(DISTINCT) costs a hash table per group). Uids need
# no order here; refs are sorted where people read them. Declared in tables.GROUP_SIDE_COLUMNS.
SIDE_COLUMNS = {
    "uids": ("[{x}.uid]", "list({x}.uid)"),
    "qty": ("{x}.quantity", "sum({x}.quantity)"),
    "price": (
        "{x}.unit_price",
        "CASE WHEN count({x}.unit_price) = count(*) AND min({x}.unit_price) = max({x}.unit_price) "
        "THEN min({x}.unit_price) END",
    ),
    "net": ("{x}.net_amount", "sum({x}.net_amount)"),
    "tax": (
        "{x}.tax_amount",
        "CASE WHEN count({x}.tax_amount) = count(*) THEN sum({x}.tax_amount) END",
    ),
    "currency": (
        "{x}.currency",
        "CASE WHEN min({x}.currency) = max({x}.currency) THEN min({x}.currency) END",
    ),
    "contract_type": (
        "{x}.contract_type",
        "CASE WHEN min({x}.contract_type) = max({x}.contract_type) THEN min({x}.contract_type) END",
    ),
    "period_start": ("{x}.period_start", "min({x}.period_start)"),
    "period_end": ("{x}.period_end", "max({x}.period_end)"),
    "client": ("{x}.client_name", "min({x}.client_name)"),
    "item": (
        "coalesce({x}.item_name, {x}.description)",
        "min(coalesce({x}.item_name, {x}.description))",
    ),
    "c_key": ("{x}.c_key", "min({x}.c_key)"),
    "i_key": ("{x}.i_key", "min({x}.i_key)"),
    "c_ok": ("{x}.c_ok", "bool_and({x}.c_ok)"),
    "i_ok": ("{x}.i_ok", "bool_and({x}.i_ok)"),
}


# The group columns made of EXACT_KEY's columns, on which the two lines of an exact pair agree.
ON_EXACT_KEY = ("qty", "price", "currency", "period_start", "period_end", "c_key", "i_key")


def _side_values(side: str, alias: str, several: bool, keyed: str | None = None) -> str:
    """The side's group columns (a_qty, …) over its lines as `alias`; those ON_EXACT_KEY from
    `keyed` instead, where given (an exact pair's other line: its join carries less)."""
    return ", ".join(
        f"{formulas[several].format(x=keyed if keyed and name in ON_EXACT_KEY else alias)}"
        f" AS {side}_{name}"
        for name, formulas in SIDE_COLUMNS.items()
    )


def _side_groups(side: str) -> str:
    """One row per group of the later stages (grp_line) with lines on this side: gid, stage,
    {side}_n, {side}_first_ref and the side's group columns. Their lines are the side's lines
    the exact stage left ({side}_left)."""
    return f"""
        WITH several AS (
            SELECT gid FROM grp_line WHERE side = '{side}' GROUP BY gid HAVING count(*) > 1
        ),
        members AS (
            SELECT g.gid, g.stage, x.*, s.gid IS NOT NULL AS in_several
            FROM grp_line g
            JOIN {side}_left x ON g.side = '{side}' AND x.uid = g.uid
            LEFT JOIN several s ON s.gid = g.gid
        )
        SELECT gid, stage, 1 AS {side}_n, x.ref AS {side}_first_ref,
               {_side_values(side, "x", several=False)}
        FROM members x WHERE NOT in_several
        UNION ALL
        SELECT gid, any_value(stage), count(*), min(x.ref), {_side_values(side, "x", True)}
        FROM members x WHERE in_several
        GROUP BY gid
    """


def _group_view(con: duckdb.DuckDBPyConnection) -> None:
    """One row per match group, both sides aggregated (tables.GROUPS): the relation every rule
    reads. Group numbers are stable: by stage, then by the first ref each side holds; the exact
    pairs come first, numbered by their Autotask ref, then the later stages' groups. The table
    has no physical order; readers order by match_id.

    Made in steps, each its own statement: the exact pairs' rows; the later stages' groups
    (_later_groups) without numbers; their numbers, sorted over narrow rows; their rows. In one
    statement at 3M lines a side, the pairs' joins, the groups' aggregates and a window sorting
    the wide rows held their memory at once and ran out of DuckDB's 400MB. The matcher's work
    tables are dropped once it is made. Each side's groups are aggregated by a statement of
    their own before the two are joined: at 3M lines a side, the two aggregates and the full
    join in one statement ran out of DuckDB's 400MB."""
    GROUPS.create(con, _exact_groups())
    for side in ("a", "h"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _later_{side} AS {_side_groups(side)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _later AS {_later_groups()}")
    order = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(STAGES))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _later_number AS
        SELECT gid, (SELECT count(*) FROM exact_pair) + row_number() OVER (
                   ORDER BY CASE stage {order} END, a_first_ref NULLS LAST, h_first_ref NULLS LAST
               ) AS match_id
        FROM _later
        """
    )
    GROUPS.insert(con, "SELECT * FROM _later JOIN _later_number USING (gid)")
    for table in (
        *("exact_pair", "a_left", "h_left", "grp_line"),
        *("_later_a", "_later_h", "_later", "_later_number"),
    ):
        con.execute(f"DROP TABLE {table}")


def _exact_groups() -> str:
    """The exact pairs' groups, numbered by their Autotask ref (exact_pair's match_id)."""
    return f"""
        SELECT p.match_id, 'exact' AS stage,
               coalesce(x.client_name, y.client_name) AS client,
               coalesce(x.c_key, y.c_key) AS client_key,
               coalesce(x.item_name, x.description, y.item_name, y.description) AS item,
               1 AS a_n, 1 AS h_n,
               {_side_values("a", "x", several=False)},
               {_side_values("h", "y", several=False, keyed="x")}
        FROM exact_pair p JOIN a x ON x.uid = p.a_uid JOIN h y ON y.uid = p.h_uid
    """


def _later_groups() -> str:
    """The later stages' groups (grp_line), both sides aggregated (_side_groups, made into
    _later_a and _later_h): gid, the
    groups table's columns but match_id, and each side's first ref. A group's client is named
    as Autotask names it: its Autotask lines' name, else, for a HaloPSA-only group of a client
    the crosswalk resolved, the name of that client's Autotask lines (a renamed client's extra
    HaloPSA line is reported under the name the Autotask invoice carries); else HaloPSA's."""
    return """
        WITH halopsa_only AS (
            SELECT x.c_key FROM grp_line g JOIN h_left x ON g.side = 'h' AND x.uid = g.uid
            WHERE x.c_ok AND g.gid NOT IN (SELECT gid FROM grp_line WHERE side = 'a')
        ),
        autotask_name AS (
            SELECT c_key, min(client_name) AS name FROM a
            WHERE c_key IN (SELECT c_key FROM halopsa_only) GROUP BY c_key
        )
        SELECT gid, coalesce(ga.stage, gh.stage) AS stage,
               coalesce(ga.a_client, an.name, gh.h_client) AS client,
               coalesce(ga.a_c_key, gh.h_c_key) AS client_key,
               coalesce(ga.a_item, gh.h_item) AS item,
               coalesce(ga.a_n, 0) AS a_n, coalesce(gh.h_n, 0) AS h_n,
               ga.* EXCLUDE (gid, stage, a_n),
               gh.* EXCLUDE (gid, stage, h_n)
        FROM _later_a ga FULL JOIN _later_h gh USING (gid)
        LEFT JOIN autotask_name an ON ga.gid IS NULL AND gh.h_c_ok AND an.c_key = gh.h_c_key
    """


def _stage_counts(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    rows = con.sql(
        "SELECT stage, count(*) AS groups, sum(a_n) AS autotask_lines, "
        "sum(h_n) AS halopsa_lines FROM groups GROUP BY stage"
    ).fetchall()
    found = {r[0]: r for r in rows}
    return [
        {
            "stage": stage,
            "label": label,
            "groups": int(found[stage][1]) if stage in found else 0,
            "autotask_lines": int(found[stage][2]) if stage in found else 0,
            "halopsa_lines": int(found[stage][3]) if stage in found else 0,
        }
        for stage, label in STAGES.items()
    ]


# The columns a mapping row's value may name, per kind (ids or names, as the file may give).
MAPPED_COLUMNS = {
    "client": ("client_id", "client_name"),
    "item": ("item_code", "item_name", "description"),
    "contract": ("contract_id", "contract_name"),
}


@dataclass(frozen=True)
class MappingProblem:
    """A mapping row that maps nothing in this cycle, and why: a likely typo, or an Autotask
    value several Autotask entities have."""

    mapping: Mapping
    problem: str


def _mapping_values(mappings: list[Mapping]) -> pl.DataFrame:
    """Both values of each mapping row (i: its index in mappings) as they compare (names of the
    row's kind: crosswalk.mapping_frame), row by row, the Autotask value first: i, kind, side,
    value."""
    return (
        mapping_frame(mappings)
        .with_row_index("i")
        .select(pl.col("i").cast(pl.Int64), "kind", a="target", h="value")
        .unpivot(["a", "h"], index=["i", "kind"], variable_name="side")
        .sort("i", "side", maintain_order=True)
    )


def _named(con: duckdb.DuckDBPyConnection, kinds: list[str]) -> pl.DataFrame:
    """The values of both sides' entity columns (the key tables _{kind}_{side}) of the kinds a
    mapping row may name (MAPPED_COLUMNS), as they compare (their keys in _norm, crosswalk's
    name_keys), that a mapping row has (the temp table _xw_wanted: _mapping_values): side,
    kind, value, distinct; no more rows than the mapping file has values, however many names
    the lines hold. One statement over every kind and side."""
    values = " UNION ALL ".join(
        f"SELECT '{side}' AS side, '{kind}' AS kind, "
        f"unnest([{', '.join(MAPPED_COLUMNS[kind])}]) AS value FROM _{kind}_{side}"
        for kind in kinds
        for side in SIDES
    )
    return frame_of(
        con.sql(
            f"""
        SELECT DISTINCT v.side, v.kind, n.key AS value
        FROM ({values}) v JOIN _norm n ON n.client = (v.{CLIENT}) AND n.name = v.value
        SEMI JOIN _xw_wanted w ON w.side = v.side AND w.kind = v.kind AND w.value = n.key
        """
        )
    )


def _unused(
    mappings: list[Mapping], wanted: pl.DataFrame, named: list[pl.DataFrame], unfit: pl.DataFrame
) -> list[MappingProblem]:
    """Mapping rows whose Autotask or HaloPSA value names no client, item or contract (of the
    row's kind) in this cycle's lines (wanted: _mapping_values; named: _named of each side and
    kind): checked on both sides, so a typo in either column is reported with the file and row
    rather than silently leaving its pair unmapped; and those whose Autotask value fits several
    Autotask entities (unfit: kind, target, problem; crosswalk._mapped's). Values compare as
    names of the row's kind (crosswalk.mapping_frame)."""
    if not mappings:
        return []
    missing = (
        wanted.join(pl.concat(named), on=["side", "kind", "value"], how="anti")
        .group_by("i")
        .agg(pl.col("side").sort())
    )
    fits = wanted.filter(pl.col("side") == "a").join(
        unfit, left_on=["kind", "value"], right_on=["kind", "target"]
    )
    labels = {"a": "Autotask", "h": "HaloPSA"}
    texts: dict[int, list[str]] = {}
    for i, sides in missing.iter_rows():
        side_labels = [labels[side] for side in sides]
        texts[i] = [
            " and ".join(f"the {label} value" for label in side_labels)
            + f" name{'s' if len(sides) == 1 else ''} no {mappings[i].kind} in this cycle's "
            f"{' or '.join(side_labels)} lines "
            "(a typo?)"
        ]
    for i, problem in fits.select("i", "problem").iter_rows():
        texts.setdefault(i, []).append(problem)
    return [MappingProblem(mappings[i], "; ".join(texts[i])) for i in sorted(texts)]
