"""Diff rules: discover the rule files in `rules/`, run them, and make their findings final.

A rule is one module `rules/<code>.py`. Its docstring's first line is the title and the rest is
the explanation a billing admin reads (with **Example** and **What to do** sections). It declares
SEVERITY, PRECEDENCE (lower explains money first in the variance bridge), SUPERSEDES (rules whose
findings on the same match groups it replaces), CONFIG ({key: (default, definition)}) and
`check(ctx) -> polars.DataFrame` of findings (FINDING_COLUMNS). Adding a rule touches no other
file.
"""

from __future__ import annotations

import hashlib
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

RULES_DIR = Path(os.environ.get("RECONCILE_RULES_DIR", bundled_dir("rules")))
SEVERITY_ORDER = ("blocker", "warning", "info", "expected")
EXPECTED_TITLE = "Expected differences (retired services)"
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
    if problems:
        raise RuleError(f"{path}: " + "; ".join(problems))
    return Rule(
        code=path.stem,
        title=title.strip().rstrip("."),
        explanation=" ".join(explanation.split()),
        default_severity=str(severity),
        precedence=module.PRECEDENCE,
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
    frames = []
    for rule in rules:
        found = rule.module.check(RuleContext(con, rule.settings(config), config))
        frames.append(
            conform(found).with_columns(
                pl.lit(rule.code).alias("rule"),
                pl.lit(rule.severity(config)).alias("severity"),
                pl.lit(rule.precedence).alias("precedence"),
            )
        )
    findings = pl.concat(frames) if frames else pl.DataFrame()
    findings = _drop_superseded(findings, rules)
    findings = _with_refs(con, findings)
    findings = _mark_expected(findings, config)
    return _with_ids(findings)


def _drop_superseded(findings: pl.DataFrame, rules: list[Rule]) -> pl.DataFrame:
    pairs = [(r.code, s) for r in rules for s in r.supersedes]
    if findings.is_empty() or not pairs:
        return findings
    findings = findings.with_row_index("_f")
    covered = findings.select("_f", "rule", pl.col("match_ids")).explode("match_ids")
    winners = pl.DataFrame(pairs, schema={"rule": pl.String, "loser": pl.String}, orient="row")
    beaten = (
        covered.join(winners, on="rule")
        .select(pl.col("loser").alias("rule"), "match_ids")
        .join(covered, on=["rule", "match_ids"])
        .select("_f")
        .unique()
    )
    return findings.join(beaten, on="_f", how="anti").drop("_f")


# What a line says, not where it sits: a row number is left out so that re-ordering an export
# keeps every id; NULLs keep their place, so two different lines never hash alike.
FINGERPRINT_FIELDS = (
    "source", "client_id", "client_name", "contract_id", "contract_name", "item_code",
    "item_name", "description", "quantity", "unit_price", "net_amount", "tax_amount", "currency",
    "period_start", "period_end", "invoice_number",
    "CASE WHEN line_ref LIKE 'row:%' THEN NULL ELSE line_ref END",
)  # fmt: skip
FINGERPRINT = "md5(to_json([{}]))".format(
    ", ".join(f"CAST({f} AS VARCHAR)" for f in FINGERPRINT_FIELDS)
)


def _with_refs(con: duckdb.DuckDBPyConnection, findings: pl.DataFrame) -> pl.DataFrame:
    """Line refs for people, content fingerprints for stable ids, item names for expectations."""
    if findings.is_empty():
        return findings.with_columns(
            *(
                pl.lit(None, pl.List(pl.String)).alias(c)
                for c in ("autotask_refs", "halopsa_refs", "a_fps", "h_fps", "a_items", "a_clients")
            ),
        )
    findings = findings.with_row_index("_f")
    con.register("_findings", findings.select("_f", "a_uids", "h_uids"))
    looked_up = {}
    for side in ("a", "h"):
        looked_up[side] = con.sql(
            f"""
            SELECT f._f,
                   list(x.ref ORDER BY x.ref) AS {side}_refs,
                   list({FINGERPRINT} ORDER BY {FINGERPRINT}) AS {side}_fps,
                   list(DISTINCT coalesce(x.item_name, '')) AS {side}_items,
                   list(DISTINCT coalesce(x.item_code, '')) AS {side}_codes,
                   list(DISTINCT coalesce(x.client_name, '')) AS {side}_clients
            FROM (SELECT _f, unnest({side}_uids) AS uid FROM _findings) f
            JOIN {side} x USING (uid)
            GROUP BY f._f
            """
        ).pl()
    con.unregister("_findings")
    for side in ("a", "h"):
        findings = findings.join(looked_up[side], on="_f", how="left")
    return findings.rename({"a_refs": "autotask_refs", "h_refs": "halopsa_refs"}).drop("_f")


def _mark_expected(findings: pl.DataFrame, config: Config) -> pl.DataFrame:
    """Autotask charges deliberately not billed in HaloPSA (retired services) are expected."""
    retired_items = {v.casefold() for v in config.expected.retired_items}
    retired_clients = {v.casefold() for v in config.expected.retired_clients}
    if findings.is_empty() or not (retired_items or retired_clients):
        return findings

    def retired(names: list[str] | None, wanted: set[str]) -> bool:
        return bool(names) and all(n.casefold() in wanted for n in names or [])

    flags = [
        bool(row["a_uids"])
        and not row["h_uids"]
        and (
            retired(row["a_items"], retired_items)
            or retired(row["a_codes"], retired_items)
            or retired(row["a_clients"], retired_clients)
        )
        for row in findings.select("a_uids", "h_uids", "a_items", "a_codes", "a_clients").iter_rows(
            named=True
        )
    ]
    expected = pl.Series("_expected", flags, dtype=pl.Boolean)
    return (
        findings.with_columns(expected)
        .with_columns(
            pl.when("_expected").then(pl.lit("expected")).otherwise("severity").alias("severity"),
            pl.when("_expected")
            .then(pl.col("message") + ". Expected: a retired service, deliberately not migrated.")
            .otherwise("message")
            .alias("message"),
        )
        .drop("_expected")
    )


def _with_ids(findings: pl.DataFrame) -> pl.DataFrame:
    """An id from the rule and the content of the lines involved: stable across re-runs."""
    if findings.is_empty():
        return findings.with_columns(pl.lit(None, pl.String).alias("id"))

    def digest(row: dict[str, Any]) -> str:
        parts = [row["rule"], *(row["a_fps"] or []), "|", *(row["h_fps"] or [])]
        if not row["a_fps"] and not row["h_fps"]:
            parts.append(row["client"] or "")
        return "D-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]

    ids = [
        digest(r) for r in findings.select("rule", "a_fps", "h_fps", "client").iter_rows(named=True)
    ]
    findings = findings.with_columns(pl.Series("id", ids))
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    findings = findings.with_columns(
        pl.col("severity").replace_strict(rank, return_dtype=pl.Int64).alias("_rank"),
        pl.col("difference").abs().alias("_size"),
    ).sort(
        ["_rank", "_size", "client", "rule", "id"],
        descending=[False, True, False, False, False],
        nulls_last=True,
    )
    seen = pl.col("id").cum_count().over("id")
    return findings.with_columns(
        pl.when(seen > 1)
        .then(pl.col("id") + "-" + seen.cast(pl.String))
        .otherwise("id")
        .alias("id")
    ).drop("_rank", "_size")


def bridge(
    con: duckdb.DuckDBPyConnection, findings: pl.DataFrame, rules: list[Rule]
) -> dict[str, list[dict[str, str]]]:
    """Per currency, attribute each match group's gross difference to the first-precedence rule
    that fired on it; each currency's bars then add up exactly to the difference between its
    two totals (a group's lines share one currency: matching keys include it)."""
    titles = {r.code: r.title for r in rules} | {"expected": EXPECTED_TITLE}
    covering = (
        (
            findings.with_columns(
                pl.when(pl.col("severity") == "expected")
                .then(pl.lit("expected"))
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
