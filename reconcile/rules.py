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

from reconcile import bundled_dir
from reconcile.config import Config, tolerance_setting
from reconcile.crosswalk import casefold
from reconcile.store import release_memory
from reconcile.tables import SIDES

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


def run_rules(con: duckdb.DuckDBPyConnection, config: Config, rules: list[Rule]) -> pl.DataFrame:
    """All findings of all rules, superseded ones removed, expected ones marked, ids stable."""
    con.execute(MACROS)
    # Each step's result replaces the frame it was made from (no name keeps an earlier one).
    # The rules' frames, each in the chunks its query returned, are gathered into one chunk a
    # column at a time as the superseded findings go: polars copies the whole of a frame whose
    # columns are chunked apart when a column is added (at 1M lines a side, 100 MiB).
    findings = (
        pl.concat([_rule_findings(con, config, rule) for rule in rules])
        if rules
        else pl.DataFrame()
    )
    findings = _gathered(findings, _kept(findings, rules))
    findings = _with_refs(con, findings)
    # The lines the queries read let go before the looked-up columns, in the chunks of their
    # lookups, are put in one chunk too.
    release_memory(con, config.workspace.memory_limit)
    findings = _mark_expected(findings.rechunk(), config)
    findings = _with_ids(findings)
    return _accounted(con, findings)


def _rule_findings(con: duckdb.DuckDBPyConnection, config: Config, rule: Rule) -> pl.DataFrame:
    """One rule's findings (FINDING_COLUMNS) with its code, severity, precedence and measure."""
    found = rule.module.check(RuleContext(con, rule.settings(config), config))
    return conform(found).with_columns(
        pl.lit(rule.code).alias("rule"),
        pl.lit(rule.severity(config)).alias("severity"),
        pl.lit(rule.precedence).alias("precedence"),
        pl.lit(rule.measure).alias("measure"),
    )


def _kept(findings: pl.DataFrame, rules: list[Rule]) -> pl.Series:
    """The row numbers of the findings no other rule's finding supersedes (a rule's
    SUPERSEDES: the superseding rule found something on one of the same match groups), in
    order."""
    rows = pl.int_range(pl.len(), dtype=pl.UInt32)
    pairs = [(r.code, s) for r in rules for s in r.supersedes]
    if findings.is_empty() or not pairs:
        return findings.select(rows).to_series()
    covered = findings.select(rows.alias("_f"), "rule", "match_ids").explode("match_ids")
    winners = pl.DataFrame(pairs, schema={"rule": pl.String, "loser": pl.String}, orient="row")
    beaten = (
        covered.join(winners, on="rule")
        .select(pl.col("loser").alias("rule"), "match_ids")
        .join(covered, on=["rule", "match_ids"])
        .get_column("_f")
    )
    return findings.select(rows.filter(~rows.is_in(beaten.implode()))).to_series()


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
# get a suffix later (_with_ids).
DIGEST = """
    'D-' || substr(sha256(array_to_string(list_concat(
        [f.rule], coalesce(sa.a_fps, []), ['|'], coalesce(sh.h_fps, []),
        CASE WHEN coalesce(len(sa.a_fps), 0) = 0 AND coalesce(len(sh.h_fps), 0) = 0
             THEN [coalesce(f.client, '')] ELSE [] END
    ), chr(31))), 1, 10)
"""


FINDINGS_PER_LOOKUP = 100_000  # findings whose lines _with_refs looks up in one query


def _with_refs(con: duckdb.DuckDBPyConnection, findings: pl.DataFrame) -> pl.DataFrame:
    """Line refs for people, the id (DIGEST over the lines' content fingerprints) for stable
    ids, EXPECTATION_NAMES for expectations, CONTEXT_COLUMNS and the match stages, added beside
    the findings' own columns (one row per finding, in their order: the findings are not
    copied). Looked up FINDINGS_PER_LOOKUP findings at a time (_looked_up): each finding's row
    depends on its own lines only, and the lists aggregated per finding over all of them at
    once ran out of DuckDB's 400MB at 3M lines a side. The fingerprints stay in DuckDB."""
    if findings.is_empty():
        return findings.with_columns(
            *(
                pl.lit(None, pl.List(pl.String)).alias(c)
                for c in ("autotask_refs", "halopsa_refs", *EXPECTATION_NAMES)
            ),
            pl.lit(None, pl.String).alias("id"),
        )
    keys = findings.select("rule", "client", "a_uids", "h_uids", "match_ids")
    looked_up = pl.concat(
        [
            _looked_up(con, keys.slice(start, FINDINGS_PER_LOOKUP))
            for start in range(0, keys.height, FINDINGS_PER_LOOKUP)
        ]
    )
    return findings.hstack(looked_up.rename({"a_refs": "autotask_refs", "h_refs": "halopsa_refs"}))


def _looked_up(con: duckdb.DuckDBPyConnection, keys: pl.DataFrame) -> pl.DataFrame:
    """_with_refs' columns of the findings `keys` (rule, client, a_uids, h_uids, match_ids),
    one row each in their order."""
    con.register("_findings", keys.with_row_index("_f"))
    try:
        looked_up: pl.DataFrame = con.sql(
            f"""
            WITH sa AS ({_side_lines("a")}),
            sh AS ({_side_lines("h")}),
            st AS (
                SELECT f._f, array_to_string(list_sort(list_distinct(list(g.stage))), ';') AS stage
                FROM (SELECT _f, unnest(match_ids) AS match_id FROM _findings) f
                JOIN groups g USING (match_id) GROUP BY f._f
            )
            SELECT sa.* EXCLUDE (_f, a_fps), sh.* EXCLUDE (_f, h_fps), st.stage, {DIGEST} AS id
            FROM _findings f LEFT JOIN sa USING (_f) LEFT JOIN sh USING (_f)
            LEFT JOIN st USING (_f)
            ORDER BY f._f
            """
        ).pl()
    finally:
        con.unregister("_findings")
    return looked_up


def _mark_expected(findings: pl.DataFrame, config: Config) -> pl.DataFrame:
    """Autotask charges deliberately not billed in HaloPSA (retired services) are expected:
    findings with Autotask lines only, all of whose item names (or item codes) are retired
    items, or all of whose client names are retired clients (compared casefolded). The names
    compared (EXPECTATION_NAMES) are dropped: nothing after needs them."""
    retired_items = sorted({v.casefold() for v in config.expected.retired_items})
    retired_clients = sorted({v.casefold() for v in config.expected.retired_clients})
    if findings.is_empty() or not (retired_items or retired_clients):
        return findings.drop(*EXPECTATION_NAMES)

    def retired(names: str, wanted: list[str]) -> pl.Expr:
        every = pl.col(names).list.eval(casefold(pl.element()).is_in(wanted)).list.all()
        return (pl.col(names).list.len() > 0) & every

    expected = (
        (pl.col("a_uids").list.len() > 0)
        & (pl.col("h_uids").list.len().fill_null(0) == 0)
        & (
            retired("a_items", retired_items)
            | retired("a_codes", retired_items)
            | retired("a_clients", retired_clients)
        ).fill_null(False)
    ).fill_null(False)
    return (
        findings.with_columns(expected.alias("_expected"))
        .with_columns(
            pl.when("_expected").then(pl.lit("expected")).otherwise("severity").alias("severity"),
            pl.when("_expected")
            .then(pl.col("message") + ". Expected: a retired service, deliberately not migrated.")
            .otherwise("message")
            .alias("message"),
        )
        .drop("_expected", *EXPECTATION_NAMES)
    )


def _with_ids(findings: pl.DataFrame) -> pl.DataFrame:
    """Findings in their order (severity, size of the difference, client, rule, id, message,
    refs), each id (DIGEST) made unique by a suffix (-2, -3) in that order: stable across
    re-runs. The rows are moved, not copied: `findings` is left empty (_gathered)."""
    if findings.is_empty():
        return findings
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    order = findings.select(
        pl.arg_sort_by(
            # The refs last: findings alike in all else (identical lines, twice) are told apart
            # by their lines, not by the order a query happened to return them in.
            pl.col("severity").replace_strict(rank, return_dtype=pl.Int64),
            pl.col("difference").abs(),
            *("client", "rule", "id", "message", "autotask_refs", "halopsa_refs"),
            descending=[False, True, False, False, False, False, False, False],
            nulls_last=True,
            maintain_order=True,
        )
    ).to_series()
    findings = _gathered(findings, order)  # the caller's frame is emptied
    seen = pl.col("id").cum_count().over("id")
    return findings.with_columns(
        pl.when(seen > 1)
        .then(pl.col("id") + "-" + seen.cast(pl.String))
        .otherwise("id")
        .alias("id")
    )


def _gathered(frame: pl.DataFrame, order: pl.Series) -> pl.DataFrame:
    """The frame's rows in the order of the row numbers `order`, made a column at a time.
    `frame` is emptied: each of its columns is taken out of it (drop_in_place) and let go once
    its copy is made, so the rows are never held twice (a sort of the whole frame held both:
    at 3M lines a side, 450 MiB more than the findings themselves)."""
    columns = [frame.drop_in_place(name).gather(order) for name in frame.columns]
    return pl.DataFrame(columns)


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


def _accounted(con: duckdb.DuckDBPyConnection, findings: pl.DataFrame) -> pl.DataFrame:
    """net_difference, tax_difference and gross_difference: the part of the difference between
    the two sides' totals that each finding accounts for (HaloPSA − Autotask). Every match
    group is accounted for once, by the first finding in precedence order that covers it (the
    attribution of the variance bridge), so the columns add up over all findings, with the
    groups no rule explains, to the totals' difference in every measure."""
    measures = ("net_difference", "tax_difference", "gross_difference", "exposure")
    if findings.is_empty():
        return findings.with_columns(pl.lit(None, MONEY).alias(m) for m in measures)
    covering = (
        findings.select("precedence", "rule", "id", "match_ids")
        .with_row_index("_f")
        .explode("match_ids")
        .drop_nulls("match_ids")
        .sort(["precedence", "rule", "id"])
        .unique(subset="match_ids", keep="first", maintain_order=True)
        .select("_f", pl.col("match_ids").alias("match_id"))
    )
    con.register("_covering", covering)
    # One row per finding, in their order, so the columns go beside the findings' own.
    money = con.sql(
        f"""
        SELECT sum(m.net) AS net, sum(m.tax) AS tax
        FROM range($findings) f(_f) LEFT JOIN _covering c ON c._f = f._f
        LEFT JOIN ({COVERED_MONEY}) m USING (match_id)
        GROUP BY f._f ORDER BY f._f
        """,
        params={"findings": findings.height},
    ).pl()
    con.unregister("_covering")
    zero = pl.lit(0).cast(MONEY)

    def gross(side: str) -> pl.Expr:
        return (pl.col(f"{side}_net").fill_null(zero) + pl.col(f"{side}_tax").fill_null(zero)).abs()

    return (
        findings.hstack(money)
        .with_columns(
            pl.col("net").fill_null(zero).cast(MONEY).alias("net_difference"),
            pl.col("tax").fill_null(zero).cast(MONEY).alias("tax_difference"),
            (pl.col("net").fill_null(zero) + pl.col("tax").fill_null(zero))
            .cast(MONEY)
            .alias("gross_difference"),
            # The most money at stake on either side: a period or currency mismatch between
            # equal amounts differs by nothing and still puts its whole amount at risk.
            pl.max_horizontal(gross("a"), gross("h")).cast(MONEY).alias("exposure"),
        )
        .drop("net", "tax")
    )


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
