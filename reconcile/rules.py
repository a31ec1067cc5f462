"""Diff rules: discover the rule files in `rules/`, run them, and make their findings final.

A rule is one module `rules/<code>.py`. Its docstring's first line is the title and the rest is
the explanation a billing admin reads (with **Example** and **What to do** sections). It declares
SEVERITY, PRECEDENCE (lower explains money first in the variance bridge), MEASURE (what its
autotask_amount and halopsa_amount are: "net", "tax" or "gross"), SUPERSEDES (rules whose
findings on the same match groups it replaces), CONFIG ({key: (default, definition)}) and
`check(ctx) -> polars.DataFrame` of findings (FINDING_COLUMNS). Adding a rule touches no other
file.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import polars as pl

from reconcile import bundled_dir
from reconcile.config import Config, tolerance_setting
from reconcile.crosswalk import name_table
from reconcile.duck import MONEY_MACROS, frame_of, with_frame
from reconcile.store import insertion_order_kept, release_memory
from reconcile.tables import DISCREPANCIES, SIDES

RULES_DIR = Path(os.environ.get("RECONCILE_RULES_DIR", bundled_dir("rules")))
SEVERITY_ORDER = ("blocker", "warning", "info", "expected")
MEASURES = ("net", "tax", "gross")
EXPECTED_TITLE = "Expected differences (retired services)"
ACCEPTED_TITLE = "Accepted differences"
MONEY = pl.Decimal(18, 2)
MONEY_SQL = "DECIMAL(18, 2)"
FINDING_COLUMNS: dict[str, pl.DataType] = {
    "match_ids": pl.List(pl.Int64()),
    "client": pl.String(),
    "a_uids": pl.List(pl.Int64()),
    "h_uids": pl.List(pl.Int64()),
    "autotask_amount": MONEY,
    "halopsa_amount": MONEY,
    "difference": MONEY,
    "message": pl.String(),
}

# within: |b - a| <= abs_tol + rel_tol * |a|, the tolerances in DECIMAL(38, 10) so that the sum
# is exact for any line (config.TOLERANCE_LIMIT and TOLERANCE_PLACES bound what a setting gives).
MACROS = """
CREATE OR REPLACE TEMP MACRO within(a, b, abs_tol, rel_tol) AS
    abs(coalesce(b, 0) - coalesce(a, 0))
    <= CAST(abs_tol AS DECIMAL(38, 10)) + CAST(rel_tol AS DECIMAL(38, 10)) * abs(coalesce(a, 0));
CREATE OR REPLACE TEMP MACRO fmt_qty(x) AS
    CASE WHEN x IS NULL THEN '?' ELSE
    rtrim(rtrim(CAST(x AS VARCHAR), '0'), '.') END;
CREATE OR REPLACE TEMP MACRO fmt_period(ps, pe) AS
    CASE WHEN ps IS NULL THEN 'no service period'
         ELSE strftime(ps, '%Y-%m-%d') || ' to ' || strftime(pe, '%Y-%m-%d') END;
CREATE OR REPLACE TEMP MACRO is_partial(ps, pe) AS
    ps IS NOT NULL AND pe IS NOT NULL AND NOT (day(ps) = 1 AND pe = last_day(ps));
CREATE OR REPLACE TEMP MACRO matched(g) AS g.a_n > 0 AND g.h_n > 0;
"""


@dataclass(frozen=True)
class Rule:
    code: str
    title: str
    explanation: str
    default_severity: str
    precedence: int
    measure: str
    supersedes: tuple[str, ...]
    config_keywords: dict[str, tuple[Any, str]]
    module: ModuleType = field(repr=False)

    def severity(self, config: Config) -> str:
        return str(config.rule(self.code).get("severity", self.default_severity))

    def settings(self, config: Config) -> dict[str, Decimal]:
        """The rule's tolerances (CONFIG keys with a decimal default), as configured."""
        return {
            key: tolerance_setting(config, self.code, key, default)
            for key, (default, _) in self.config_keywords.items()
            if isinstance(default, str)
        }


class RuleError(Exception):
    """A rule file breaks the rule contract: a developer's mistake, caught at load time."""


def discover(directory: Path = RULES_DIR) -> list[Rule]:
    rules = [
        _load_rule(path) for path in sorted(directory.glob("*.py")) if not path.name.startswith("_")
    ]
    codes = [r.code for r in rules]
    if len(codes) != len(set(codes)):
        raise RuleError(f"duplicate rule codes in {directory}")
    return rules


def _load_rule(path: Path) -> Rule:
    spec = importlib.util.spec_from_file_location(f"reconcile_rules.{path.stem}", path)
    if spec is None or spec.loader is None:
        raise RuleError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = (module.__doc__ or "").strip()
    title, _, explanation = doc.partition("\n")
    problems = []
    if not title or not explanation.strip():
        problems.append("the docstring needs a title line and an explanation")
    if "**Example" not in explanation or "**What to do" not in explanation:
        problems.append("the explanation needs **Example** and **What to do** sections")
    severity = getattr(module, "SEVERITY", None)
    if severity not in SEVERITY_ORDER[:3]:
        problems.append(f"SEVERITY must be one of {SEVERITY_ORDER[:3]}")
    if not callable(getattr(module, "check", None)):
        problems.append("a check(ctx) function is missing")
    if not isinstance(getattr(module, "PRECEDENCE", None), int):
        problems.append("PRECEDENCE must be an int")
    if getattr(module, "MEASURE", None) not in MEASURES:
        problems.append(f"MEASURE must be one of {MEASURES}")
    if problems:
        raise RuleError(f"{path}: " + "; ".join(problems))
    return Rule(
        code=path.stem,
        title=title.strip().rstrip("."),
        explanation=" ".join(explanation.split()),
        default_severity=str(severity),
        precedence=module.PRECEDENCE,
        measure=module.MEASURE,
        supersedes=tuple(getattr(module, "SUPERSEDES", ())),
        config_keywords=dict(getattr(module, "CONFIG", {})),
        module=module,
    )


@dataclass(frozen=True)
class RuleContext:
    """What a rule sees: the match groups and both sides' lines in DuckDB, and its settings."""

    con: duckdb.DuckDBPyConnection
    settings: dict[str, Decimal]
    config: Config

    def findings(self, sql: str, **extra: Any) -> pl.DataFrame:
        """Run a rule's query; $name parameters come from the rule's CONFIG and `extra`."""
        params = {k: v for k, v in {**self.settings, **extra}.items() if f"${k}" in sql}
        frame: pl.DataFrame = frame_of(self.con.sql(sql, params=params))
        return conform(frame)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Give a rule's result the finding columns; a missing difference is HaloPSA − Autotask."""
    missing = [pl.lit(None).alias(c) for c in FINDING_COLUMNS if c not in frame.columns]
    frame = frame.with_columns(missing)
    if frame["difference"].null_count() == frame.height:
        frame = frame.with_columns(
            (
                pl.col("halopsa_amount").cast(MONEY).fill_null(0)
                - pl.col("autotask_amount").cast(MONEY).fill_null(0)
            ).alias("difference")
        )
    return frame.select(pl.col(c).cast(t) for c, t in FINDING_COLUMNS.items())


# The rules stage's work tables (temporary, dropped when the stage ends): _found holds every
# rule's findings (_rule_findings' columns and _n, their number in the order the rules and their
# queries gave them), _described the same findings with what _with_refs looks up for each,
# _expected, _order and _placed what _mark_expected, _order and _accounted make of them. They are
# in DuckDB, not in Python's memory, so the stage spills to disk as the findings grow (at 10M
# lines a side, 1.36M findings of about 700 bytes each). The wide table is only ever scanned,
# or sorted a part at a time: never built into a join's hash table nor sorted whole by DuckDB,
# neither of which could spill at 10M.
WORK_TABLES = (
    "_found", "_lines_a", "_lines_h", "_described", "_supersedes", "_expected", "_candidates",
    "_order", "_placed",
)  # fmt: skip


def run_rules(con: duckdb.DuckDBPyConnection, config: Config, rules: list[Rule]) -> int:
    """All findings of all rules, superseded ones removed, expected ones marked, ids stable,
    left in the temporary table DISCREPANCIES (reconcile.tables), stored in the run's order
    (its `position`), root_cause and acceptance null; money DECIMAL in the lines' currency.
    Returns their number. Each rule's frame goes into DuckDB as soon as the rule has run;
    everything after is done there, so the findings never need to fit in memory."""
    con.execute(MONEY_MACROS)
    con.execute(MACROS)
    try:
        if not _found(con, config, rules):
            DISCREPANCIES.create(con)
            return 0
        _drop_superseded(con, rules)
        _with_refs(con)
        # What the lookups' queries held let go before the findings are ordered.
        release_memory(con, config.workspace.memory_limit)
        _mark_expected(con, config)
        _order(con)
        _accounted(con)
        return _in_position_order(con)
    finally:
        for table in WORK_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")


def _rule_findings(con: duckdb.DuckDBPyConnection, config: Config, rule: Rule) -> pl.DataFrame:
    """One rule's findings (FINDING_COLUMNS) with its code, severity, precedence and measure."""
    found = rule.module.check(RuleContext(con, rule.settings(config), config))
    return conform(found).with_columns(
        pl.lit(rule.code).alias("rule"),
        pl.lit(rule.severity(config)).alias("severity"),
        pl.lit(rule.precedence).alias("precedence"),
        pl.lit(rule.measure).alias("measure"),
    )


def _found(con: duckdb.DuckDBPyConnection, config: Config, rules: list[Rule]) -> int:
    """Table _found: every rule's findings (_rule_findings) numbered _n in the rules' order.
    The rules' frames go into it together (_insert_found) once they hold FINDINGS_PER_LOOKUP
    findings, and after the last rule: a large cycle's findings never wait in Python, and a
    small cycle's are inserted in one statement. Returns their number."""
    count, pending = 0, 0
    frames: list[pl.DataFrame] = []
    for number, rule in enumerate(rules, start=1):
        frames.append(_rule_findings(con, config, rule))
        pending += frames[-1].height
        if pending < FINDINGS_PER_LOOKUP and number < len(rules):
            continue
        _insert_found(con, pl.concat(frames).with_row_index("_n", offset=count), count == 0)
        frames.clear()
        count, pending = count + pending, 0
    return count


def _insert_found(con: duckdb.DuckDBPyConnection, found: pl.DataFrame, create: bool) -> None:
    """The rows of `found` (_found's columns) added to _found, made from them when `create`
    (also when there are none), INSERT_ROWS at a time: a frame inserted whole took DuckDB
    about its size again at the peak (400k findings, 66 MB: 60-90 MiB more than in parts)."""
    for start in range(0, found.height or 1, INSERT_ROWS):
        first = create and start == 0
        make = "CREATE OR REPLACE TEMP TABLE _found AS" if first else "INSERT INTO _found"
        with_frame(con, f"{make} FROM _frame", found.slice(start, INSERT_ROWS))


def _drop_superseded(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> None:
    """Delete from _found the findings another rule's finding supersedes (a rule's SUPERSEDES:
    the superseding rule found something on one of the same match groups)."""
    pairs = [(r.code, s) for r in rules for s in r.supersedes]
    if not pairs:
        return
    con.execute("CREATE OR REPLACE TEMP TABLE _supersedes (rule VARCHAR, loser VARCHAR)")
    con.executemany("INSERT INTO _supersedes VALUES (?, ?)", pairs)
    con.execute(
        """
        DELETE FROM _found WHERE _n IN (
            WITH covered AS (SELECT _n, rule, unnest(match_ids) AS match_id FROM _found)
            SELECT loser._n
            FROM covered winner JOIN _supersedes s USING (rule)
            JOIN covered loser ON loser.rule = s.loser AND loser.match_id = winner.match_id
        )
        """
    )


# What a line bills, in both systems' common terms: its platform, then client and item after the
# crosswalk (keys in Autotask's terms where resolved), quantity, unit price, amounts, currency.
# Not invoice numbers, line refs, row numbers or text as one export spells it, and not the
# service period, which Autotask's API states only for some lines (psa-exports.md §1.3, the
# item-name suffix): the same billing exported as XML, CSV, XLSX or API pages keeps every id,
# and so does a re-ordered export. NULLs keep their place. Lines alike in all of this are told
# apart by a suffix (-2, -3) in a fixed order (_with_ids).
FINGERPRINT_FIELDS = (
    "c_key", "i_key", "currency", "quantity", "unit_price", "net_amount", "tax_amount",
)  # fmt: skip


def _fingerprint(side: str) -> str:
    """The fingerprint of a line of side `side` ('a' or 'h') as x: md5 of a JSON list of text."""
    fields = [f"'{SIDES[side]}'", *(f"CAST(x.{f} AS VARCHAR)" for f in FINGERPRINT_FIELDS)]
    return f"md5(to_json([{', '.join(fields)}]))"


def _sorted_set(value: str) -> str:
    """The distinct non-null values of `value` over a group, sorted; null when there are none
    (as list(DISTINCT … ORDER BY …) FILTER (WHERE … IS NOT NULL), without DISTINCT's extra
    aggregate and join per column)."""
    return f"CASE WHEN count({value}) > 0 THEN list_sort(list_distinct(list({value}))) END"


def _one_set(value: str) -> str:
    """_sorted_set of one line's value."""
    return f"CASE WHEN {value} IS NOT NULL THEN [{value}] END"


# What a controller filters on, per side, from the lines a finding involves: (the value for
# one line, the aggregate over several). Most findings involve one line a side, and list
# aggregates cost a hash table of lists, so one line's values are taken as they are.
CONTEXT_COLUMNS = {
    "invoices": ("x.invoice_number", "set"),
    "item_names": ("coalesce(x.item_name, x.description)", "set"),
    "contracts": ("x.contract_name", "set"),
    "period_start": ("x.period_start", "min(x.period_start)"),
    "period_end": ("x.period_end", "max(x.period_end)"),
    "quantity": ("x.quantity", "sum(x.quantity)"),
    "unit_price": (
        "x.unit_price",
        "CASE WHEN count(x.unit_price) = count(*) AND min(x.unit_price) = "
        "max(x.unit_price) THEN min(x.unit_price) END",
    ),
    "net": ("x.net_amount", "sum(x.net_amount)"),
    "tax": ("x.tax_amount", "CASE WHEN count(x.tax_amount) = count(*) THEN sum(x.tax_amount) END"),
    "currency": (
        "x.currency",
        "CASE WHEN min(x.currency) = max(x.currency) THEN min(x.currency) END",
    ),
}


def _context(side: str, several: bool) -> str:
    """CONTEXT_COLUMNS over the side's lines as x: aggregated when `several`."""
    columns = []
    for name, (value, aggregate) in CONTEXT_COLUMNS.items():
        if aggregate == "set":
            sql = _sorted_set(value) if several else _one_set(value)
        else:
            sql = aggregate if several else value
        columns.append(f"{sql} AS {side}_{name}")
    return ", ".join(columns)


# What _mark_expected compares with the retired items and clients, per Autotask line: its item
# name, item code and client name as the export spells them.
EXPECTATION_NAMES = {
    "a_items": "coalesce(x.item_name, '')",
    "a_codes": "coalesce(x.item_code, '')",
    "a_clients": "coalesce(x.client_name, '')",
}


# The kind of name each of EXPECTATION_NAMES is read as (name_table): item names and codes as
# items, client names as clients.
EXPECTATION_KINDS = {"a_items": "item", "a_codes": "item", "a_clients": "client"}


def _line_columns(side: str) -> list[str]:
    """The columns of side `side`'s lines (as x) that CONTEXT_COLUMNS and, for Autotask,
    EXPECTATION_NAMES read, sorted."""
    names = EXPECTATION_NAMES if side == "a" else {}
    sql = " ".join([*(v for pair in CONTEXT_COLUMNS.values() for v in pair), *names.values()])
    return sorted(set(re.findall(r"\bx\.(\w+)", sql)))


def _involved_lines(con: duckdb.DuckDBPyConnection) -> None:
    """Tables _lines_a and _lines_h: per line of the side that a finding of _found involves,
    its uid, ref, fingerprint fp (_fingerprint) and _line_columns. Each side's table is read
    once for all the findings: _with_refs' lookups of each part of the findings read these."""
    for side in SIDES:
        columns = "".join(f", x.{c}" for c in _line_columns(side))
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _lines_{side} AS
            SELECT x.uid, x.ref, {_fingerprint(side)} AS fp{columns}
            FROM {side} x SEMI JOIN (SELECT unnest({side}_uids) AS uid FROM _found) f
                USING (uid)
            """
        )


def _side_lines(side: str) -> str:
    """Per finding (_f) of _findings with lines on side `side`, what they are: refs and
    fingerprints (sorted), CONTEXT_COLUMNS and, for Autotask, EXPECTATION_NAMES (distinct, in
    no order), from the lines as _involved_lines holds them."""
    fingerprint = "x.fp"
    names = EXPECTATION_NAMES if side == "a" else {}
    one_names = "".join(f", [{value}] AS {name}" for name, value in names.items())
    distinct_names = "".join(
        f", list_distinct(list({value})) AS {name}" for name, value in names.items()
    )
    return f"""
        SELECT f._f, [x.ref] AS {side}_refs, [{fingerprint}] AS {side}_fps{one_names},
               {_context(side, several=False)}
        FROM (SELECT _f, {side}_uids[1] AS uid FROM _findings WHERE len({side}_uids) = 1) f
        JOIN _lines_{side} x USING (uid)
        UNION ALL BY NAME
        SELECT f._f,
               list_sort(list(x.ref)) AS {side}_refs,
               list_sort(list({fingerprint})) AS {side}_fps{distinct_names},
               {_context(side, several=True)}
        FROM (SELECT _f, unnest({side}_uids) AS uid FROM _findings WHERE len({side}_uids) > 1) f
        JOIN _lines_{side} x USING (uid)
        GROUP BY f._f
    """


# A finding's id: "D-" and the first 10 hex digits of the SHA-256 of its rule, its Autotask
# lines' fingerprints, "|" and its HaloPSA lines' fingerprints (each side sorted), joined by
# U+001F; a finding with no line on either side adds its client. Findings alike in all of this
# get a suffix later (_with_ids).
DIGEST = """
    'D-' || substr(sha256(array_to_string(list_concat(
        [f.rule], coalesce(sa.a_fps, []), ['|'], coalesce(sh.h_fps, []),
        CASE WHEN coalesce(len(sa.a_fps), 0) = 0 AND coalesce(len(sh.h_fps), 0) = 0
             THEN [coalesce(f.client, '')] ELSE [] END
    ), chr(31))), 1, 10)
"""


FINDINGS_PER_LOOKUP = 100_000  # findings a statement takes: _found's inserts, _with_refs' lookups
INSERT_ROWS = 25_000  # findings an insert into _found takes at most (_found)


def _with_refs(con: duckdb.DuckDBPyConnection) -> None:
    """Table _described: the findings of _found (which is dropped) each with its line refs for
    people, the id (DIGEST over the lines' content fingerprints) for stable ids,
    EXPECTATION_NAMES for expectations, CONTEXT_COLUMNS and the match stages. Looked up
    FINDINGS_PER_LOOKUP numbers of _n at a time: each finding's row depends on its own lines
    only, and the lists aggregated per finding over all of them at once ran out of DuckDB's
    400MB at 3M lines a side. The lines are read from _involved_lines' tables (each side's
    lines read once, not once a part). The fingerprints stay in DuckDB."""
    _involved_lines(con)
    last = con.execute("SELECT max(_n) FROM _found").fetchall()[0][0]
    for start in range(0, last + 1, FINDINGS_PER_LOOKUP):
        keys = f"""
            SELECT _n AS _f, * EXCLUDE (_n) FROM _found
            WHERE _n >= {start} AND _n < {start + FINDINGS_PER_LOOKUP}
        """
        make = "CREATE TEMP TABLE _described AS" if start == 0 else "INSERT INTO _described"
        con.execute(f"{make} {_looked_up(keys)}")
    for table in ("_found", "_lines_a", "_lines_h"):
        con.execute(f"DROP TABLE {table}")


def _looked_up(keys: str) -> str:
    """The query of _described's rows of the findings the query `keys` gives (_f: their _n,
    and _found's other columns)."""
    return f"""
        WITH _findings AS ({keys}),
        sa AS ({_side_lines("a")}),
        sh AS ({_side_lines("h")}),
        st AS (
            -- Most findings cover one group: its stage as it is, not a list aggregated.
            SELECT f._f, coalesce(g.stage, '') AS stage
            FROM (SELECT _f, match_ids[1] AS match_id FROM _findings WHERE len(match_ids) = 1) f
            JOIN groups g USING (match_id)
            UNION ALL
            SELECT f._f, array_to_string(list_sort(list_distinct(list(g.stage))), ';') AS stage
            FROM (
                SELECT _f, unnest(match_ids) AS match_id FROM _findings WHERE len(match_ids) > 1
            ) f
            JOIN groups g USING (match_id) GROUP BY f._f
        )
        SELECT f._f AS _n, f.* EXCLUDE (_f),
               sa.a_refs AS autotask_refs, sa.* EXCLUDE (_f, a_fps, a_refs),
               sh.h_refs AS halopsa_refs, sh.* EXCLUDE (_f, h_fps, h_refs), st.stage,
               {DIGEST} AS id
        FROM _findings f LEFT JOIN sa USING (_f) LEFT JOIN sh USING (_f)
        LEFT JOIN st USING (_f)
    """


EXPECTED_NOTE = ". Expected: a retired service, deliberately not migrated."


def retired_full_names(kind: str, retired: list[str] | tuple[str, ...]) -> list[str]:
    """The retired names of a kind ("item" or "client") as name_table's full names, sorted; an
    entry of nothing but marks reads as no name and is left out."""
    return list(_full_names(kind, tuple(retired)))


@functools.lru_cache(maxsize=8)
def _full_names(kind: str, retired: tuple[str, ...]) -> tuple[str, ...]:
    """retired_full_names, made once per list: a run asks for them in a rule and in
    _mark_expected (a name_table each, ≈ 5 ms)."""
    return tuple(sorted(set(name_table(kind, pl.Series(retired, dtype=pl.String))["full"]) - {""}))


def is_retired(kind: str, names: pl.Series, retired: list[str] | tuple[str, ...]) -> pl.Series:
    """Whether each of `names` (String) is one of `retired`, both of the kind, compared as the
    crosswalk pairs names (name_table's full name); a name of nothing but marks is none."""
    return name_table(kind, names)["full"].is_in(retired_full_names(kind, retired))


def _mark_expected(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """Table _expected: the findings (_n) that are expected, Autotask charges deliberately not
    billed in HaloPSA (retired services): findings with Autotask lines only, all of whose item
    names (or item codes) are retired items, or all of whose client names are retired clients.
    Names compare as the crosswalk pairs names (name_table's full name: item names and codes
    read as items, client names as clients): case, accents, spacing (repeated, leading,
    trailing, non-breaking), punctuation, `&`/`and` and, for clients, legal-form spellings
    (Ltd./Limited) aside. A name of nothing but marks is retired by no entry; an entry that
    reads as no name (only marks) retires nothing."""
    con.execute("CREATE OR REPLACE TEMP TABLE _expected (_n BIGINT)")
    kinds = {"item": config.expected.retired_items, "client": config.expected.retired_clients}
    # Only the names of a kind with a retired name are compared: no other retires a finding
    # (a cycle with retired items only reads no client's name).
    columns = [c for c, kind in EXPECTATION_KINDS.items() if retired_full_names(kind, kinds[kind])]
    if not columns:
        return
    names = " UNION ALL ".join(
        f"SELECT _n, '{column}' AS kind, unnest({column}) AS name FROM autotask_only"
        for column in columns
    )
    con.execute(
        f"""
        CREATE TEMP TABLE _candidates AS
        WITH autotask_only AS (
            SELECT _n, {", ".join(columns)} FROM _described
            WHERE len(a_uids) > 0 AND coalesce(len(h_uids), 0) = 0
        )
        {names}
        """
    )
    candidates = frame_of(con.sql("SELECT DISTINCT kind, name FROM _candidates"))
    retired = pl.concat(
        part.with_columns(is_retired(kind, part["name"], kinds[kind]).alias("retired"))
        for kind in dict.fromkeys(EXPECTATION_KINDS[column] for column in columns)
        for part in [
            candidates.filter(
                pl.col("kind").is_in([c for c in columns if EXPECTATION_KINDS[c] == kind])
            )
        ]
    )
    with_frame(
        con,
        """
        INSERT INTO _expected
        SELECT DISTINCT _n FROM (
            SELECT _n FROM _candidates JOIN _frame USING (kind, name)
            GROUP BY _n, kind HAVING bool_and(retired)
        )
        """,
        retired,
    )
    con.execute("DROP TABLE _candidates")


def _order(con: duckdb.DuckDBPyConnection) -> None:
    """Table _order: per finding of _described (_n), its place _o in the findings' order
    (severity, size of the difference, client, rule, id, message, refs; then the order found,
    with expected findings' severity and message as _positioned marks them), whether it is expected,
    and its id made unique by a suffix (-2, -3) in that order: stable across re-runs. Narrow,
    so the joins with it build their hash tables from it, not from the findings."""
    rank = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SEVERITY_ORDER))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _order AS
        WITH marked AS (
            SELECT d._n, d.difference, d.client, d.rule, d.id, d.autotask_refs, d.halopsa_refs,
                   e._n IS NOT NULL AS expected, {_marked("d", "e._n IS NOT NULL")}
            FROM _described d LEFT JOIN _expected e USING (_n)
        ),
        ordered AS (
            -- The refs last: findings alike in all else (identical lines, twice) are told
            -- apart by their lines, not by the order a query happened to return them in.
            SELECT _n, id, expected, row_number() OVER (
                ORDER BY CASE severity {rank} END NULLS LAST, abs(difference) DESC NULLS LAST,
                         client NULLS LAST, rule NULLS LAST, id NULLS LAST,
                         message NULLS LAST, autotask_refs NULLS LAST, halopsa_refs NULLS LAST,
                         _n
            ) AS _o
            FROM marked
        )
        SELECT * REPLACE (
            CASE WHEN row_number() OVER (PARTITION BY id ORDER BY _o) > 1
                 THEN id || '-' || row_number() OVER (PARTITION BY id ORDER BY _o)
                 ELSE id END AS id
        )
        FROM ordered
        """
    )


def _marked(findings: str, expected: str) -> str:
    """The severity and message of the findings `findings` (an alias) with expected ones
    (where the condition `expected` holds) marked: severity 'expected', EXPECTED_NOTE after the
    message."""
    return f"""
        CASE WHEN {expected} THEN 'expected' ELSE {findings}.severity END AS severity,
        CASE WHEN {expected} THEN {findings}.message || '{EXPECTED_NOTE}'
             ELSE {findings}.message END AS message
    """


def _accounted(con: duckdb.DuckDBPyConnection) -> None:
    """Table _placed: per finding (_n), _order's place _o, unique id
    and whether it is expected, and the part of the difference between the two sides' totals
    (HaloPSA − Autotask) it accounts for, net and tax (null for none). Every match group is
    accounted for once, by the first finding in precedence order that covers it (the
    attribution of the variance bridge), so the amounts add up over all findings, with the
    groups no rule explains, to the totals' difference; a group's money is its lines', tax as
    the totals count it (an unknown tax adds 0)."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _placed AS
        WITH covering AS (
            SELECT match_id, _o FROM (
                SELECT o._o, unnest(d.match_ids) AS match_id, d.precedence, d.rule, o.id
                FROM _described d JOIN _order o USING (_n)
            )
            WHERE match_id IS NOT NULL
            QUALIFY row_number() OVER (
                PARTITION BY match_id ORDER BY precedence, rule, id, _o
            ) = 1
        ),
        group_lines AS (
            SELECT l._o, -1 AS sign, x.net_amount AS net, coalesce(x.tax_amount, 0) AS tax
            FROM (
                SELECT c._o, unnest(g.a_uids) AS uid
                FROM covering c JOIN groups g USING (match_id)
            ) l JOIN a x USING (uid)
            UNION ALL
            SELECT l._o, 1, x.net_amount, coalesce(x.tax_amount, 0)
            FROM (
                SELECT c._o, unnest(g.h_uids) AS uid
                FROM covering c JOIN groups g USING (match_id)
            ) l JOIN h x USING (uid)
        ),
        money AS (
            SELECT _o, sum(sign * net) AS net, sum(sign * tax) AS tax
            FROM group_lines GROUP BY _o
        )
        SELECT o._n, o._o, o.id, o.expected, m.net, m.tax
        FROM _order o LEFT JOIN money m USING (_o)
        """
    )


def _in_position_order(con: duckdb.DuckDBPyConnection) -> int:
    """DISCREPANCIES' rows (_positioned) inserted FINDINGS_PER_LOOKUP places at a time, each
    part ordered, with the insertion order kept: the table is stored in `position` order, so a
    reader takes it a range of positions at a time (store.read_ranges) and never sorts it
    whole. DuckDB could not spill a sort of these rows (lists of text) at 10M lines a side,
    nor a hash table built from them: each part's join builds from _placed's part (narrow)
    and scans _described. Returns the number of rows."""
    count = int(con.execute("SELECT count(*) FROM _placed").fetchall()[0][0])
    DISCREPANCIES.create(con)
    with insertion_order_kept(con):
        for start in range(1, count + 1, FINDINGS_PER_LOOKUP):
            DISCREPANCIES.insert(con, _positioned(start, start + FINDINGS_PER_LOOKUP))
    return count


def _positioned(start: int, stop: int) -> str:
    """The query of DISCREPANCIES' rows at positions start ≤ _o < stop, in that order:
    _described's columns (EXPECTATION_NAMES dropped; the severity and message marked, the id
    unique, as _placed has them, `position` its _o), then net_difference, tax_difference and
    gross_difference from _placed (0 for a finding that accounts for none), exposure, and
    root_cause and acceptance null."""
    return f"""
        SELECT d.* EXCLUDE (_n, {", ".join(EXPECTATION_NAMES)})
                   REPLACE ({_marked("d", "p.expected")}, p.id AS id),
               CAST(coalesce(p.net, 0) AS {MONEY_SQL}) AS net_difference,
               CAST(coalesce(p.tax, 0) AS {MONEY_SQL}) AS tax_difference,
               CAST(coalesce(p.net, 0) + coalesce(p.tax, 0) AS {MONEY_SQL}) AS gross_difference,
               -- The most money at stake on either side: a period or currency mismatch
               -- between equal amounts differs by nothing and still puts its whole amount at
               -- risk.
               CAST(greatest(abs(coalesce(d.a_net, 0) + coalesce(d.a_tax, 0)),
                             abs(coalesce(d.h_net, 0) + coalesce(d.h_tax, 0))) AS {MONEY_SQL})
                   AS exposure,
               p._o AS position, NULL AS root_cause, NULL AS acceptance
        FROM (SELECT * FROM _placed WHERE _o >= {start} AND _o < {stop}) p
        JOIN _described d USING (_n)
        ORDER BY p._o
    """


def bridge(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> dict[str, list[dict[str, str]]]:
    """Per currency, attribute each match group's gross difference to the first-precedence rule
    that fired on it (DISCREPANCIES' rows); each currency's bars then add up exactly to the
    difference between its two totals (a group's lines share one currency: matching keys
    include it). Expected differences, and accepted ones (a non-null `acceptance`), have a bar
    each of their own."""
    titles = {r.code: r.title for r in rules} | {
        "expected": EXPECTED_TITLE,
        "accepted": ACCEPTED_TITLE,
    }
    rows = con.sql(
        f"""
        WITH covering AS (
            SELECT match_id, rule, precedence FROM (
                SELECT CASE WHEN severity = 'expected' THEN 'expected'
                            WHEN acceptance IS NOT NULL THEN 'accepted'
                            ELSE rule END AS rule,
                       precedence, unnest(match_ids) AS match_id
                FROM {DISCREPANCIES.name}
            )
            WHERE match_id IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY match_id ORDER BY precedence, rule) = 1
        )
        SELECT coalesce(g.a_currency, g.h_currency) AS currency,
               coalesce(c.rule, 'unexplained') AS rule, min(coalesce(c.precedence, 1000)) AS p,
               sum((coalesce(g.h_net, 0) + coalesce(g.h_tax, 0))
                 - (coalesce(g.a_net, 0) + coalesce(g.a_tax, 0))) AS amount
        FROM groups g LEFT JOIN covering c USING (match_id)
        GROUP BY ALL
        HAVING amount <> 0 OR c.rule IS NOT NULL
        ORDER BY currency, p, rule
        """
    ).fetchall()
    bars: dict[str, list[dict[str, str]]] = {}
    for currency, rule, _, amount in rows:
        bars.setdefault(currency, []).append(
            {
                "rule": rule,
                "title": titles.get(rule, "Not explained by any rule"),
                "amount": str(Decimal(amount).quantize(Decimal("0.01"))),
            }
        )
    return bars
