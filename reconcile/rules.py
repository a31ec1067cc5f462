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

import importlib.util
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import polars as pl

from reconcile import bundled_dir, tables
from reconcile.config import Config, tolerance_setting
from reconcile.crosswalk import casefold
from reconcile.store import release_memory
from reconcile.tables import SIDES, Column, Table

RULES_DIR = Path(os.environ.get("RECONCILE_RULES_DIR", bundled_dir("rules")))
SEVERITY_ORDER = ("blocker", "warning", "info", "expected")
MEASURES = ("net", "tax", "gross")
EXPECTED_TITLE = "Expected differences (retired services)"
ACCEPTED_TITLE = "Accepted differences"
MONEY = pl.Decimal(18, 2)
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

MACROS = """
CREATE OR REPLACE TEMP MACRO within(a, b, abs_tol, rel_tol) AS
    abs(coalesce(b, 0) - coalesce(a, 0)) <= abs_tol + rel_tol * abs(coalesce(a, 0));
CREATE OR REPLACE TEMP MACRO fmt_qty(x) AS
    CASE WHEN x IS NULL THEN '?' ELSE
    rtrim(rtrim(CAST(x AS VARCHAR), '0'), '.') END;
CREATE OR REPLACE TEMP MACRO fmt_money(x) AS
    CASE WHEN x IS NULL THEN '?' ELSE CAST(CAST(x AS DECIMAL(18, 2)) AS VARCHAR) END;
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
        frame: pl.DataFrame = self.con.sql(sql, params=params).pl()
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


# The findings as the rules stage builds them in DuckDB, where they spill to disk rather than
# grow the process: one row per finding, `_f` its place in the rules' order (rule files sorted by
# name, each rule's rows as its query returned them).
FOUND = Table(
    "_found",
    "The rules' findings, one row each, in the order the rules returned them.",
    (
        Column("_f", "BIGINT", "The finding's place in the rules' order."),
        Column("match_ids", "BIGINT[]", "The match groups the finding covers."),
        Column("client", "VARCHAR", "The client as the finding names it."),
        Column("a_uids", "BIGINT[]", "The Autotask lines involved (uid)."),
        Column("h_uids", "BIGINT[]", "The HaloPSA lines involved (uid)."),
        Column("autotask_amount", tables.MONEY, "Autotask's amount, in the rule's MEASURE."),
        Column("halopsa_amount", tables.MONEY, "HaloPSA's amount, in the rule's MEASURE."),
        Column("difference", tables.MONEY, "HaloPSA − Autotask, in the rule's MEASURE."),
        Column("message", "VARCHAR", "What the rule says about it."),
        Column("rule", "VARCHAR", "The rule's code."),
        Column("severity", "VARCHAR", "The rule's severity as configured."),
        Column("precedence", "INTEGER", "The rule's PRECEDENCE."),
        Column("measure", "VARCHAR", "The rule's MEASURE."),
    ),
)
# The work tables of the rules stage, dropped when it ends: only RULE_TABLES stay behind.
WORK_TABLES = ("_found", "_findings", "_looked", "_expected", "_ordered", "_money")


def run_rules(con: duckdb.DuckDBPyConnection, config: Config, rules: list[Rule]) -> pl.DataFrame:
    """All findings of all rules, superseded ones removed, expected ones marked, ids stable:
    FINDING_COLUMNS, rule, severity, precedence, measure, autotask_refs, CONTEXT_COLUMNS of
    each side (a_*, halopsa_refs, h_*), stage, id and the differences each accounts for
    (_accounted) and the most money at stake, one row per finding in their order (_order).

    Each rule's findings go into a DuckDB table as soon as it has run, and every step after is
    a query over it: the findings spill to disk where a polars frame would have been copied by
    each step (at 3M lines a side the sort alone took 500 MiB). Only the result is a frame."""
    con.execute(MACROS)
    FOUND.create(con)
    try:
        for rule in rules:
            _keep(con, _rule_findings(con, config, rule))
        _drop_superseded(con, rules)
        _with_refs(con)
        # The lines the queries read let go before the findings are sorted.
        release_memory(con, config.workspace.memory_limit)
        _mark_expected(con, config)
        _order(con)
        _accounted(con)
        return _result(con)
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


def _keep(con: duckdb.DuckDBPyConnection, found: pl.DataFrame) -> None:
    """Add one rule's findings (_rule_findings) to FOUND, numbered on from those already in."""
    count = con.sql("SELECT count(*) FROM _found").fetchall()[0][0]
    con.register("_rule_found", found.with_row_index("_f", offset=count))
    try:
        FOUND.insert(con, "SELECT * FROM _rule_found")
    finally:
        con.unregister("_rule_found")


def _drop_superseded(con: duckdb.DuckDBPyConnection, rules: list[Rule]) -> None:
    """Delete from FOUND the findings of a rule another one SUPERSEDES on a match group both
    cover."""
    pairs = [(r.code, s) for r in rules for s in r.supersedes]
    if not pairs:
        return
    con.execute(
        """
        DELETE FROM _found WHERE _f IN (
            WITH covered AS (SELECT _f, rule, unnest(match_ids) AS match_id FROM _found),
            winners AS (SELECT unnest($winners) AS rule, unnest($losers) AS loser)
            SELECT DISTINCT l._f
            FROM covered w JOIN winners USING (rule)
            JOIN covered l ON l.rule = winners.loser AND l.match_id = w.match_id
        )
        """,
        {"winners": [w for w, _ in pairs], "losers": [loser for _, loser in pairs]},
    )


# What a line bills, in both systems' common terms: its platform, then client and item after the
# crosswalk (keys in Autotask's terms where resolved), quantity, unit price, amounts, currency.
# Not invoice numbers, line refs, row numbers or text as one export spells it, and not the
# service period, which Autotask's API states only for some lines (psa-exports.md §1.3, the
# item-name suffix): the same billing exported as XML, CSV, XLSX or API pages keeps every id,
# and so does a re-ordered export. NULLs keep their place. Lines alike in all of this are told
# apart by a suffix (-2, -3) in a fixed order (_order).
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


def _side_lines(side: str) -> str:
    """Per finding (_f) of _findings with lines on side `side`, what they are: refs and
    fingerprints (sorted), CONTEXT_COLUMNS and, for Autotask, EXPECTATION_NAMES (distinct, in
    no order)."""
    fingerprint = _fingerprint(side)
    names = EXPECTATION_NAMES if side == "a" else {}
    one_names = "".join(f", [{value}] AS {name}" for name, value in names.items())
    distinct_names = "".join(
        f", list_distinct(list({value})) AS {name}" for name, value in names.items()
    )
    return f"""
        SELECT f._f, [x.ref] AS {side}_refs, [{fingerprint}] AS {side}_fps{one_names},
               {_context(side, several=False)}
        FROM (SELECT _f, {side}_uids[1] AS uid FROM _findings WHERE len({side}_uids) = 1) f
        JOIN {side} x USING (uid)
        UNION ALL BY NAME
        SELECT f._f,
               list_sort(list(x.ref)) AS {side}_refs,
               list_sort(list({fingerprint})) AS {side}_fps{distinct_names},
               {_context(side, several=True)}
        FROM (SELECT _f, unnest({side}_uids) AS uid FROM _findings WHERE len({side}_uids) > 1) f
        JOIN {side} x USING (uid)
        GROUP BY f._f
    """


# A finding's id: "D-" and the first 10 hex digits of the SHA-256 of its rule, its Autotask
# lines' fingerprints, "|" and its HaloPSA lines' fingerprints (each side sorted), joined by
# U+001F; a finding with no line on either side adds its client. Findings alike in all of this
# get a suffix later (_order).
DIGEST = """
    'D-' || substr(sha256(array_to_string(list_concat(
        [f.rule], coalesce(sa.a_fps, []), ['|'], coalesce(sh.h_fps, []),
        CASE WHEN coalesce(len(sa.a_fps), 0) = 0 AND coalesce(len(sh.h_fps), 0) = 0
             THEN [coalesce(f.client, '')] ELSE [] END
    ), chr(31))), 1, 10)
"""


FINDINGS_PER_LOOKUP = 100_000  # findings whose lines _with_refs looks up in one query


def _with_refs(con: duckdb.DuckDBPyConnection) -> None:
    """The table _looked, which replaces FOUND: each finding of FOUND with its line refs for
    people (a_refs, h_refs), EXPECTATION_NAMES for expectations, CONTEXT_COLUMNS, its match
    stages (`stage`) and its id (DIGEST over the lines' content fingerprints, not yet unique).
    Looked up FINDINGS_PER_LOOKUP findings at a time (by _f): each finding's row depends on its
    own lines only, and the lists aggregated per finding over all of them at once ran out of
    DuckDB's 400MB at 3M lines a side. The fingerprints stay in DuckDB."""
    first, last = con.sql("SELECT min(_f), max(_f) FROM _found").fetchall()[0]
    # No findings: one lookup of none, which makes the table.
    starts = range(first, last + 1, FINDINGS_PER_LOOKUP) if first is not None else range(1)
    for n, start in enumerate(starts):
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _findings AS "
            "SELECT * FROM _found WHERE _f >= $start AND _f < $end",
            {"start": start, "end": start + FINDINGS_PER_LOOKUP},
        )
        looked_up = f"""
            WITH sa AS ({_side_lines("a")}),
            sh AS ({_side_lines("h")}),
            st AS (
                SELECT f._f, array_to_string(list_sort(list_distinct(list(g.stage))), ';') AS stage
                FROM (SELECT _f, unnest(match_ids) AS match_id FROM _findings) f
                JOIN groups g USING (match_id) GROUP BY f._f
            )
            SELECT f.*, sa.* EXCLUDE (_f, a_fps), sh.* EXCLUDE (_f, h_fps), st.stage,
                   {DIGEST} AS id
            FROM _findings f LEFT JOIN sa USING (_f) LEFT JOIN sh USING (_f)
            LEFT JOIN st USING (_f)
        """
        if n == 0:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _looked AS {looked_up}")
        else:
            con.execute(f"INSERT INTO _looked {looked_up}")
    con.execute("DROP TABLE _findings")
    con.execute("DROP TABLE _found")


def _mark_expected(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """The table _expected: the findings (_f) that are Autotask charges deliberately not billed
    in HaloPSA (retired services), per `expected_findings`."""
    con.execute("CREATE OR REPLACE TEMP TABLE _expected (_f BIGINT)")
    if not (config.expected.retired_items or config.expected.retired_clients):
        return
    names = con.sql(
        f"""
        SELECT _f, {", ".join(EXPECTATION_NAMES)} FROM _looked
        WHERE len(a_uids) > 0 AND coalesce(len(h_uids), 0) = 0
        """
    ).pl()
    con.register("_expected_found", expected_findings(names, config))
    try:
        con.execute("INSERT INTO _expected SELECT _f FROM _expected_found")
    finally:
        con.unregister("_expected_found")


def expected_findings(names: pl.DataFrame, config: Config) -> pl.DataFrame:
    """Of findings with Autotask lines only (`names`: _f and EXPECTATION_NAMES, lists of text),
    those (_f) all of whose item names (or item codes) are retired items, or all of whose client
    names are retired clients, compared casefolded."""
    retired_items = sorted({v.casefold() for v in config.expected.retired_items})
    retired_clients = sorted({v.casefold() for v in config.expected.retired_clients})

    def retired(column: str, wanted: list[str]) -> pl.Expr:
        every = pl.col(column).list.eval(casefold(pl.element()).is_in(wanted)).list.all()
        return (pl.col(column).list.len() > 0) & every

    expected = (
        retired("a_items", retired_items)
        | retired("a_codes", retired_items)
        | retired("a_clients", retired_clients)
    ).fill_null(False)
    return names.filter(expected).select("_f")


# A finding's severity and message once _mark_expected has marked it (as f, with e from
# _expected).
SEVERITY = "CASE WHEN e._f IS NOT NULL THEN 'expected' ELSE f.severity END"
MESSAGE = (
    "CASE WHEN e._f IS NOT NULL THEN f.message || '. Expected: a retired service, deliberately "
    "not migrated.' ELSE f.message END"
)


def _order(con: duckdb.DuckDBPyConnection) -> None:
    """The table _ordered: each finding's (_f) place in the run's order (`position`: severity,
    size of the difference, client, rule, id, message, refs) and its id (DIGEST) made unique by
    a suffix (-2, -3) in that order: stable across re-runs."""
    ranks = ", ".join(f"'{s}'" for s in SEVERITY_ORDER)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _ordered AS
        WITH placed AS (
            SELECT f._f, f.id, row_number() OVER (
                ORDER BY list_position([{ranks}], {SEVERITY}), abs(f.difference) DESC,
                         f.client, f.rule, f.id, {MESSAGE},
                         -- The refs last: findings alike in all else (identical lines, twice)
                         -- are told apart by their lines, not by the order a query happened
                         -- to return them in; then by the rules' order.
                         f.a_refs, f.h_refs, f._f
            ) AS position
            FROM _looked f LEFT JOIN _expected e USING (_f)
        )
        SELECT _f, position, CASE WHEN n > 1 THEN id || '-' || n ELSE id END AS id
        FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY position) AS n FROM placed)
        """
    )


# The money of each match group a finding covers (_covering), from its lines: tax as the
# totals count it (an unknown tax adds 0).
COVERED_MONEY = """
    WITH covered AS (
        SELECT g.match_id, g.a_uids, g.h_uids FROM groups g SEMI JOIN _covering c USING (match_id)
    ),
    gl AS (
        SELECT match_id, -1 AS sign, x.net_amount AS net, coalesce(x.tax_amount, 0) AS tax
        FROM (SELECT match_id, unnest(a_uids) AS uid FROM covered) g JOIN a x USING (uid)
        UNION ALL
        SELECT match_id, 1, x.net_amount, coalesce(x.tax_amount, 0)
        FROM (SELECT match_id, unnest(h_uids) AS uid FROM covered) g JOIN h x USING (uid)
    )
    SELECT match_id, sum(sign * net) AS net, sum(sign * tax) AS tax FROM gl GROUP BY match_id
"""


def _accounted(con: duckdb.DuckDBPyConnection) -> None:
    """The table _money: per finding (_f), the part of the difference between the two sides'
    totals it accounts for (HaloPSA − Autotask; net and tax, null for none). Every match group is
    accounted for once, by the first finding in precedence order that covers it (the attribution
    of the variance bridge), so the amounts add up over all findings, with the groups no rule
    explains, to the totals' difference in every measure."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _money AS
        WITH _covering AS (
            SELECT arg_min(f._f, (f.precedence, f.rule, o.id)) AS _f, match_id
            FROM (SELECT _f, precedence, rule, unnest(match_ids) AS match_id FROM _looked) f
            JOIN _ordered o USING (_f)
            WHERE match_id IS NOT NULL
            GROUP BY match_id
        )
        SELECT c._f, sum(m.net) AS net, sum(m.tax) AS tax
        FROM _covering c JOIN ({COVERED_MONEY}) m USING (match_id)
        GROUP BY c._f
        """
    )


def _result(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The findings (run_rules' columns) in their order, one chunk. Read FINDINGS_PER_LOOKUP at
    a time: a sort of all of them, as wide as they are, ran out of DuckDB's 400MB at 3M lines a
    side."""
    context = ", ".join(
        f"f.{side}_refs AS {platform}_refs, "
        + ", ".join(f"f.{side}_{name}" for name in CONTEXT_COLUMNS)
        for side, platform in SIDES.items()
    )
    count = con.sql("SELECT count(*) FROM _ordered").fetchall()[0][0]
    parts: list[pl.DataFrame] = [
        con.sql(
            f"""
            SELECT f.match_ids, f.client, f.a_uids, f.h_uids, f.autotask_amount,
                   f.halopsa_amount, f.difference, {MESSAGE} AS message, f.rule,
                   {SEVERITY} AS severity, f.precedence, f.measure, {context}, f.stage, o.id,
                   CAST(coalesce(m.net, 0) AS {tables.MONEY}) AS net_difference,
                   CAST(coalesce(m.tax, 0) AS {tables.MONEY}) AS tax_difference,
                   CAST(coalesce(m.net, 0) + coalesce(m.tax, 0) AS {tables.MONEY})
                       AS gross_difference,
                   -- The most money at stake on either side: a period or currency mismatch
                   -- between equal amounts differs by nothing and still puts its whole amount
                   -- at risk.
                   CAST(greatest(abs(coalesce(f.a_net, 0) + coalesce(f.a_tax, 0)),
                                 abs(coalesce(f.h_net, 0) + coalesce(f.h_tax, 0)))
                        AS {tables.MONEY}) AS exposure
            FROM (SELECT * FROM _ordered WHERE position > $start AND position <= $end) o
            JOIN _looked f USING (_f) LEFT JOIN _expected e USING (_f)
            LEFT JOIN _money m USING (_f)
            ORDER BY o.position
            """,
            params={"start": start, "end": start + FINDINGS_PER_LOOKUP},
        ).pl()
        # No findings: one read of none, which gives the columns.
        for start in range(0, max(count, 1), FINDINGS_PER_LOOKUP)
    ]
    # Copied once into one chunk of polars' own buffers (gather): a frame read from DuckDB keeps
    # DuckDB's buffers alive, and one of several chunks is copied by each polars expression
    # over it; either way the report stage took 250 MiB more at 3M lines a side.
    result: pl.DataFrame = pl.concat(parts).select(pl.all().gather(pl.int_range(pl.len())))
    return result


def bridge(
    con: duckdb.DuckDBPyConnection, findings: pl.DataFrame, rules: list[Rule]
) -> dict[str, list[dict[str, str]]]:
    """Per currency, attribute each match group's gross difference to the first-precedence rule
    that fired on it; each currency's bars then add up exactly to the difference between its
    two totals (a group's lines share one currency: matching keys include it). Expected
    differences, and accepted ones (a non-null `acceptance`), have a bar each of their own."""
    titles = {r.code: r.title for r in rules} | {
        "expected": EXPECTED_TITLE,
        "accepted": ACCEPTED_TITLE,
    }
    covering = (
        (
            findings.with_columns(
                pl.when(pl.col("severity") == "expected")
                .then(pl.lit("expected"))
                .when(pl.col("acceptance").is_not_null())
                .then(pl.lit("accepted"))
                .otherwise("rule")
                .alias("rule")
            )
            .select("rule", "precedence", "match_ids")
            .explode("match_ids")
            .drop_nulls("match_ids")
            .sort(["precedence", "rule"])
            .unique(subset="match_ids", keep="first", maintain_order=True)
            .rename({"match_ids": "match_id"})
        )
        if not findings.is_empty()
        else pl.DataFrame(schema={"rule": pl.String, "precedence": pl.Int32, "match_id": pl.Int64})
    )
    con.register("_covering", covering)
    rows = con.sql(
        """
        SELECT coalesce(g.a_currency, g.h_currency) AS currency,
               coalesce(c.rule, 'unexplained') AS rule, min(coalesce(c.precedence, 1000)) AS p,
               sum((coalesce(g.h_net, 0) + coalesce(g.h_tax, 0))
                 - (coalesce(g.a_net, 0) + coalesce(g.a_tax, 0))) AS amount
        FROM groups g LEFT JOIN _covering c USING (match_id)
        GROUP BY ALL
        HAVING amount <> 0 OR c.rule IS NOT NULL
        ORDER BY currency, p, rule
        """
    ).fetchall()
    con.unregister("_covering")
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
