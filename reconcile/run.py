"""One reconciliation run: load both sides, match, apply the rules, write every output."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from reconcile import __version__, acceptance, history, ledger, signoff
from reconcile.config import Config, Settings
from reconcile.crosswalk import Mapping, read_mappings
from reconcile.errors import EXIT_BAD_INPUT, EXIT_BLOCKERS, EXIT_OK, InputError
from reconcile.ingest import (
    LoadResult,
    check_currencies,
    check_cycle,
    load_paths,
    load_warnings,
    sha256,
)
from reconcile.match import MatchResult, match_cycle
from reconcile.outputs import output_folder, pause, write_xlsx
from reconcile.report import DEFAULT_TEMPLATE_DIR, report_html
from reconcile.rules import SEVERITY_ORDER, Rule, bridge, discover, run_rules
from reconcile.safe import neutralise
from reconcile.store import Workspace

CENT = Decimal("0.01")
# One row per discrepancy. `measure` says what autotask_amount/halopsa_amount/difference are
# (the rule's own figures: net, tax or gross); autotask_net … halopsa_gross are the sums of the
# lines involved on each side; net/tax/gross_difference are the part of the totals' difference
# the discrepancy accounts for (each line group counted once, as in the variance bridge), so
# they add up to the totals' difference. Money in the line's currency.
OUTPUT_COLUMNS = [
    "id", "rule", "severity", "status", "client", "currency", "stage", "item", "contract",
    "service_period_start", "service_period_end", "autotask_invoices", "halopsa_invoices",
    "autotask_quantity", "halopsa_quantity", "autotask_unit_price", "halopsa_unit_price",
    "measure", "autotask_amount", "halopsa_amount", "difference",
    "autotask_net", "autotask_tax", "autotask_gross", "halopsa_net", "halopsa_tax",
    "halopsa_gross", "net_difference", "tax_difference", "gross_difference", "exposure",
    "root_cause", "autotask_refs", "halopsa_refs", "message",
]  # fmt: skip
REPORT_LINE_CAP = 50  # lines shown per side of one discrepancy in the report
REPORT_CLIENT_CAP = 1000  # clients listed in the report's per-client table before filtering


@dataclass(frozen=True)
class RunResult:
    cycle: str
    out_dir: Path
    findings: pl.DataFrame
    summary: dict[str, Any]
    loads: tuple[LoadResult, ...]

    @property
    def open_blockers(self) -> int:
        """Blockers not accepted (acceptance.py): what keeps the run from exiting 0."""
        open_ = (self.findings["severity"] == "blocker") & self.findings["acceptance"].is_null()
        return int(open_.sum())

    @property
    def quarantined(self) -> int:
        return sum(c["rows_quarantined"] for c in self.summary["controls"])

    @property
    def exit_code(self) -> int:
        if self.quarantined:
            return EXIT_BAD_INPUT
        return EXIT_BLOCKERS if self.open_blockers else EXIT_OK


def run_cycle(
    workspace: Workspace,
    settings: Settings,
    autotask: list[Path],
    halopsa: list[Path],
    maps: list[Path],
    config: Config,
    out_dir: Path,
) -> RunResult:
    cycle = check_cycle(settings.cycle)
    loads: list[LoadResult] = []
    # An export that states no currency, with none configured, stops the run before any load.
    check_currencies([("autotask", autotask), ("halopsa", halopsa)], settings)
    for platform, paths in (("autotask", autotask), ("halopsa", halopsa)):
        if paths:
            loads += load_paths(workspace, paths, platform, settings, replace=True)
        elif not workspace.load_ids(cycle, platform):
            raise InputError(
                f"--{platform}",
                f"no {platform} export is loaded for cycle {cycle}",
                expected=f"--{platform} FILE, or an earlier `reconcile load` for the cycle",
            )
    mappings = read_mappings(maps)
    rules = discover()
    con = workspace.con
    matched = match_cycle(con, cycle, mappings, config)
    findings, applied, lapsed = acceptance.apply(
        with_root_causes(run_rules(con, config, rules), matched),
        acceptance.standing(ledger.entries(con, cycle), cycle),
        ledger.now().date(),
    )
    bars = bridge(con, findings, rules)
    summary = _summary(workspace, cycle, findings, matched, bars, rules, maps, config)
    summary = {"run_id": run_id(summary, rules), "reconcile_version": __version__, **summary}
    number = workspace.next_run_number()
    summary |= _workflow(workspace, number, summary, findings, applied, lapsed)
    result = RunResult(cycle, out_dir, findings, summary, tuple(loads))
    data = write_outputs(result, workspace, rules)
    kept = _output_frame(findings).with_columns(findings["acceptance"])
    workspace.save_run(number, summary["run_id"], cycle, summary, kept, history.report_blob(data))
    return result


def _workflow(
    workspace: Workspace,
    number: int,
    summary: dict[str, Any],
    findings: pl.DataFrame,
    applied: list[acceptance.Acceptance],
    lapsed: list[acceptance.Lapse],
) -> dict[str, Any]:
    """The run's place in its cycle's finance workflow, for summary.json and the report:
    acceptances applied and lapsed, what is new / still open / resolved since the previous
    run with the trend over the cycle's runs, and the cycle's sign-offs against this run."""
    con, cycle = workspace.con, summary["cycle"]
    changes = history.changes(con, cycle, number, findings["id"].to_list())
    point = history.trend_point(summary | {"history": changes}, number)
    results = signoff.results_of(summary["run_id"], findings)
    return {
        "acceptances": {
            "accepted": [a.record() for a in applied],
            "lapsed": [lapse.record() for lapse in lapsed],
        },
        "history": changes | {"trend": [*history.trend(con, cycle), point]},
        "signoffs": [s.record() for s in signoff.states(con, cycle, (number, results))],
    }


def _open_variance(findings: pl.DataFrame, currencies: list[str]) -> dict[str, str]:
    """Per currency (in the totals' order), the open discrepancies' gross differences each
    taken as positive."""
    if findings.is_empty():
        return {}
    open_rows = findings.filter(
        (pl.col("severity") != "expected") & pl.col("acceptance").is_null()
    ).with_columns(pl.coalesce("a_currency", "h_currency").alias("_currency"))
    sums = open_rows.group_by("_currency").agg(pl.col("gross_difference").abs().sum())
    found = {str(c): _money(v) for c, v in sums.iter_rows()}
    return {c: found[c] for c in dict.fromkeys([*currencies, *sorted(found)]) if c in found}


def with_root_causes(findings: pl.DataFrame, matched: MatchResult) -> pl.DataFrame:
    """root_cause: the id of the finding a discrepancy follows from, or null. An Autotask
    client's lines reported missing in HaloPSA follow from the unmapped HaloPSA client
    suggested as that client (by name or by the same net total): map the client and they
    match. The consequences keep their severity; the report groups them under their cause."""
    if findings.is_empty():
        return findings.with_columns(pl.lit(None, pl.String).alias("root_cause"))
    suggested = {
        r.halopsa_label: r.suggestion
        for kind, r in matched.crosswalk
        if kind == "client" and r.method == "unmapped" and r.suggestion
    }
    causes = (
        findings.filter(pl.col("rule") == "unmapped_client")
        .select(
            pl.col("client")
            .replace_strict(suggested, default=None, return_dtype=pl.String)
            .alias("_suggested"),
            pl.col("id").alias("root_cause"),
        )
        .drop_nulls("_suggested")
        .unique("_suggested", keep="first", maintain_order=True)
    )
    return findings.join(causes, left_on="client", right_on="_suggested", how="left").with_columns(
        pl.when(pl.col("rule") == "missing_in_halopsa")
        .then(pl.col("root_cause"))
        .alias("root_cause")
    )


def _money(value: Any) -> str:
    return str(Decimal(value or 0).quantize(CENT))


def _side_totals(workspace: Workspace, cycle: str) -> dict[str, dict[str, Any]]:
    """Net, tax and gross per currency and side: amounts in different currencies are never
    added up. Tax (and so gross) adds up only the tax the lines state: `tax_unknown` counts the
    lines whose tax is not stated, so the figure says what it leaves out rather than taking an
    unknown as zero. Currencies in order of their number of lines, the main one first."""
    rows = workspace.con.sql(
        "SELECT currency, source, count(*), sum(net_amount), sum(coalesce(tax_amount, 0)), "
        "count(*) - count(tax_amount) FROM lines WHERE cycle = ? GROUP BY ALL",
        params=[cycle],
    ).fetchall()
    found = {(r[0], r[1]): r[2:] for r in rows}
    lines: dict[str, int] = {}
    for (currency, _), (count, *_rest) in found.items():
        lines[currency] = lines.get(currency, 0) + count
    totals: dict[str, dict[str, Any]] = {}
    for currency in sorted(lines, key=lambda c: (-lines[c], c)) or ["(none)"]:
        per: dict[str, Any] = {}
        for side in ("autotask", "halopsa"):
            count, net, tax, tax_unknown = found.get((currency, side), (0, 0, 0, 0))
            per[side] = {
                "net": _money(net),
                "tax": _money(tax),
                "gross": _money(Decimal(net or 0) + Decimal(tax or 0)),
                "lines": count,
                "tax_unknown": tax_unknown,
            }
        per["difference"] = {
            k: _money(Decimal(per["halopsa"][k]) - Decimal(per["autotask"][k]))
            for k in ("net", "tax", "gross")
        }
        totals[currency] = per
    return totals


def _line_counts(totals: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {
        side: sum(int(t[side]["lines"]) for t in totals.values())
        for side in ("autotask", "halopsa")
    }


def _clients(workspace: Workspace, findings: pl.DataFrame) -> list[dict[str, Any]]:
    """One row per client and currency (a client billed in two currencies has two rows); the
    discrepancy counts are the client's, on each of its rows."""
    rows = workspace.con.sql(
        """
        SELECT client_key, min(client) AS client, coalesce(a_currency, h_currency) AS currency,
               sum(coalesce(a_net, 0) + coalesce(a_tax, 0)) AS a_gross,
               sum(coalesce(h_net, 0) + coalesce(h_tax, 0)) AS h_gross
        FROM groups GROUP BY client_key, coalesce(a_currency, h_currency)
        ORDER BY client, client_key, currency
        """
    ).fetchall()
    counts = (
        findings.group_by("client", "severity").len().iter_rows() if not findings.is_empty() else []
    )
    by_client: dict[str, dict[str, int]] = {}
    for client, severity, n in counts:
        by_client.setdefault(client, {})[severity] = n
    clients = []
    for _, client, currency, a_gross, h_gross in rows:
        severity = by_client.get(client, {})
        clients.append(
            {
                "client": client,
                "currency": currency,
                "autotask_gross": _money(a_gross),
                "halopsa_gross": _money(h_gross),
                "difference": _money(Decimal(h_gross) - Decimal(a_gross)),
                **{s: severity.get(s, 0) for s in SEVERITY_ORDER},
            }
        )
    return clients


def _summary(
    workspace: Workspace,
    cycle: str,
    findings: pl.DataFrame,
    matched: MatchResult,
    bars: dict[str, list[dict[str, str]]],
    rules: list[Rule],
    maps: list[Path],
    config: Config,
) -> dict[str, Any]:
    found = {
        s: int((findings["severity"] == s).sum()) if not findings.is_empty() else 0
        for s in SEVERITY_ORDER
    }
    # Accepted discrepancies (acceptance.py) leave the open counts and the verdict.
    accepted = {
        s: int(((findings["severity"] == s) & findings["acceptance"].is_not_null()).sum())
        if not findings.is_empty()
        else 0
        for s in SEVERITY_ORDER
    }
    counts = {s: found[s] - accepted[s] for s in SEVERITY_ORDER}
    per_rule = (
        {
            r.code: {
                s: int(((findings["rule"] == r.code) & (findings["severity"] == s)).sum())
                for s in SEVERITY_ORDER
            }
            for r in rules
        }
        if not findings.is_empty()
        else {r.code: dict.fromkeys(SEVERITY_ORDER, 0) for r in rules}
    )
    totals = _side_totals(workspace, cycle)
    lines: dict[str, Any] = _line_counts(totals)
    unmatched = {s["stage"]: s for s in matched.stages}["unmatched"]
    rate = {
        side: str(
            (Decimal(lines[side] - unmatched[f"{side}_lines"]) / lines[side]).quantize(
                Decimal("0.0001")
            )
            if lines[side]
            else Decimal(0)
        )
        for side in lines
    }
    loads = workspace.loads(cycle)
    controls = [
        {
            k: (str(v) if isinstance(v, Decimal) else v)
            for k, v in row.items()
            if k not in ("files", "dialect", "invoice_checks", "warnings", "cycle")
        }
        | {
            "files": json.loads(row["files"]),
            "warnings": json.loads(row["warnings"]),
            "invoice_checks": json.loads(row["invoice_checks"]),
            "dialect": json.loads(row["dialect"]),
        }
        for row in loads.iter_rows(named=True)
    ]
    return {
        "cycle": cycle,
        "verdict": {
            "ready": counts["blocker"] == 0 and not any(c["rows_quarantined"] for c in controls),
            "blockers": counts["blocker"],
            "warnings": counts["warning"],
            "info": counts["info"],
            "expected": counts["expected"],
            "accepted": sum(accepted.values()),
        },
        "currencies": list(totals),
        "totals": totals,
        # What is still open, however it nets out, per currency: the sum of the gross
        # differences, each taken as positive, that open discrepancies (not accepted) account for.
        "open_variance": _open_variance(findings, list(totals)),
        "lines": lines,
        "match_stages": list(matched.stages),
        "match_rate": rate,
        # Everything the rules found, and of it what was accepted.
        "counts": {"by_severity": found, "accepted": accepted, "by_rule": per_rule},
        "bridge": {currency: bars.get(currency, []) for currency in totals},
        "controls": controls,
        "inputs": [
            {
                "platform": c["platform"],
                "shape": c["shape"],
                "source": c["source"],
                "load_id": c["load_id"],
                "files": c["files"],
            }
            for c in controls
        ],
        "mappings": [{"file": str(p), "sha256": sha256(p)} for p in maps],
        "unused_mappings": [
            _mapping_dict(u.mapping) | {"problem": u.problem} for u in matched.unused_mappings
        ],
        "unmapped": [
            {
                "kind": kind,
                "side": "halopsa",
                "value": r.halopsa_label,
                "suggestion": r.suggestion,
                "score": None if r.score is None else str(r.score),
                # Why this suggestion; without one, why none (a name collision, nothing similar).
                "basis": r.basis if r.suggestion else r.note,
            }
            for kind, r in matched.crosswalk
            if r.method == "unmapped" and kind != "contract"
        ],
        # Contracts only order candidates in matching: an unmapped one is counted, not listed.
        "unmapped_contracts": sum(
            1 for kind, r in matched.crosswalk if kind == "contract" and r.method == "unmapped"
        ),
        "clients": _clients(workspace, findings),
        # The settings in force, as evidence of what the verdict was measured against.
        "config": {
            "source": config.source,
            "sha256": sha256(Path(config.source)) if config.source else None,
            "currency": config.cycle.currency,
            "retired_items": list(config.expected.retired_items),
            "retired_clients": list(config.expected.retired_clients),
            "fuzzy_min_score": config.match.fuzzy_min_score,
            # Every setting that differs from its default, and every rule made less severe.
            "changed": config.changed(),
            "lowered_severities": config.lowered_severities(),
            "rules": {
                r.code: {
                    "severity": r.severity(config),
                    **{k: str(v) for k, v in r.settings(config).items()},
                }
                for r in rules
            },
        },
    }


def _mapping_dict(mapping: Mapping) -> dict[str, Any]:
    return {
        "kind": mapping.kind,
        "autotask": mapping.autotask,
        "halopsa": mapping.halopsa,
        "file": mapping.source,
        "row": mapping.row,
    }


def _output_frame(findings: pl.DataFrame) -> pl.DataFrame:
    if findings.is_empty():
        return pl.DataFrame(schema={c: pl.String for c in OUTPUT_COLUMNS})

    def names(name: str) -> pl.Expr:
        both = pl.concat_list(
            pl.col(f"a_{name}").fill_null(pl.lit([], pl.List(pl.String))),
            pl.col(f"h_{name}").fill_null(pl.lit([], pl.List(pl.String))),
        )
        return both.list.unique(maintain_order=True).list.join("; ")

    def joined(name: str) -> pl.Expr:
        return pl.col(name).list.join(";").fill_null("")

    def gross(side: str) -> pl.Expr:
        return pl.col(f"{side}_net") + pl.col(f"{side}_tax").fill_null(0)

    return findings.with_columns(
        pl.when(pl.col("severity") == "expected")
        .then(pl.lit("expected"))
        .when(pl.col("acceptance").is_not_null())
        .then(pl.lit("accepted"))
        .otherwise(pl.lit("open"))
        .alias("status"),
        pl.coalesce("a_currency", "h_currency").alias("currency"),
        names("item_names").alias("item"),
        names("contracts").alias("contract"),
        pl.min_horizontal("a_period_start", "h_period_start").alias("service_period_start"),
        pl.max_horizontal("a_period_end", "h_period_end").alias("service_period_end"),
        joined("a_invoices").alias("autotask_invoices"),
        joined("h_invoices").alias("halopsa_invoices"),
        *(
            pl.col(f"{s}_{m}").alias(f"{side}_{m}")
            for s, side in (("a", "autotask"), ("h", "halopsa"))
            for m in ("quantity", "unit_price", "net", "tax")
        ),
        gross("a").cast(pl.Decimal(18, 2)).alias("autotask_gross"),
        gross("h").cast(pl.Decimal(18, 2)).alias("halopsa_gross"),
        joined("autotask_refs").alias("autotask_refs"),
        joined("halopsa_refs").alias("halopsa_refs"),
    ).select(OUTPUT_COLUMNS)


def write_outputs(result: RunResult, workspace: Workspace, rules: list[Rule]) -> dict[str, Any]:
    """CSV, Parquet and JSON of the discrepancies, summary.json, quarantine.csv, report.html:
    written into a staging folder and swapped in whole (outputs.output_folder), so `--out` holds
    the previous complete set until the new one is complete. Text cells of the CSVs are made
    safe for spreadsheets (safe.neutralise); the Parquet and JSON keep the exact values.
    Returns the report's data (report_data), which the run keeps to render it again."""
    frame = _output_frame(result.findings)
    records = [
        {k: (str(v) if isinstance(v, Decimal) else v) for k, v in row.items()}
        for row in frame.iter_rows(named=True)
    ]
    quarantine = workspace.quarantined(result.cycle)
    data = report_data(result, workspace, rules, quarantine)
    html = report_html(data)
    writers: dict[str, Callable[[Path], object]] = {
        "discrepancies.csv": neutralise(frame).write_csv,
        "discrepancies.parquet": frame.write_parquet,
        "discrepancies.xlsx": lambda path: write_xlsx(frame, path),
        "discrepancies.json": lambda path: _write_json(path, records),
        "summary.json": lambda path: _write_json(path, result.summary),
        "quarantine.csv": neutralise(quarantine.drop("load_id", "cycle")).write_csv,
        "report.html": lambda path: path.write_text(html, encoding="utf-8"),
    }
    with output_folder(result.out_dir) as out:
        for name, write in writers.items():
            write(out / name)
            pause(name)
    return data


def _write_json(path: Path, data: Any) -> None:
    """Indented for people; orjson because the standard encoder is slow when indenting."""
    path.write_bytes(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2) + b"\n")


def _line_details(
    workspace: Workspace, findings: pl.DataFrame, side: str
) -> dict[int, list[dict[str, Any]]]:
    """Each finding's lines on one side (at most REPORT_LINE_CAP), fetched in one query."""
    if findings.is_empty():
        return {}
    workspace.con.register(
        "_wanted",
        findings.select(pl.int_range(pl.len()).alias("f"), pl.col(f"{side}_uids").alias("uids")),
    )
    rows = workspace.con.sql(
        f"""
        SELECT f, ref, coalesce(item_name, description), description, quantity, unit_price,
               net_amount, tax_amount, period_start, period_end
        FROM (SELECT f, unnest(uids) AS uid FROM _wanted) JOIN {side} USING (uid)
        QUALIFY row_number() OVER (PARTITION BY f ORDER BY ref) <= {REPORT_LINE_CAP}
        ORDER BY f, ref
        """
    ).fetchall()
    workspace.con.unregister("_wanted")
    details: dict[int, list[dict[str, Any]]] = {}
    for f, *r in rows:
        details.setdefault(f, []).append(
            {
                "ref": r[0],
                "item": r[1],
                "description": r[2],
                "quantity": _text(r[3]),
                "unit_price": _text(r[4]),
                "net_amount": str(r[5]),
                "tax_amount": _text(r[6]),
                "period": f"{r[7]} – {r[8]}" if r[7] else "",
            }
        )
    return details


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _report_clients(clients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every client for a normal MSP; past REPORT_CLIENT_CAP only those with something to see
    (summary.json always lists them all)."""
    if len(clients) <= REPORT_CLIENT_CAP:
        return clients
    return [
        c for c in clients if Decimal(c["difference"]) != 0 or any(c[s] for s in SEVERITY_ORDER)
    ]


def report_data(
    result: RunResult, workspace: Workspace, rules: list[Rule], quarantine: pl.DataFrame
) -> dict[str, Any]:
    """The report's whole context as plain data (the contract report.py documents)."""
    summary = result.summary
    accepted = {a["id"]: a for a in summary["acceptances"]["accepted"]}
    discrepancies = []
    a_lines = _line_details(workspace, result.findings, "a")
    h_lines = _line_details(workspace, result.findings, "h")
    for f, row in enumerate(result.findings.iter_rows(named=True)):
        discrepancies.append(
            {
                "id": row["id"],
                "rule": row["rule"],
                "severity": row["severity"],
                "client": row["client"],
                "message": row["message"],
                "autotask_amount": _text(row["autotask_amount"]),
                "halopsa_amount": _text(row["halopsa_amount"]),
                "difference": str(row["difference"]),
                "measure": row["measure"],
                "gross_difference": str(row["gross_difference"]),
                "exposure": str(row["exposure"]),
                "root_cause": row["root_cause"],
                "autotask_lines": a_lines.get(f, []),
                "halopsa_lines": h_lines.get(f, []),
            }
        )
    return {
        "cycle": result.cycle,
        "run_id": summary["run_id"],
        "reconcile_version": summary["reconcile_version"],
        "title": "Parallel billing reconciliation",
        "inputs": [
            {
                "platform": i["platform"],
                "source": i["source"],
                "shape": i["shape"],
                "sha256": i["load_id"],
            }
            for i in summary["inputs"]
        ],
        "verdict": {
            "ready": summary["verdict"]["ready"],
            "blockers": summary["verdict"]["blockers"],
            "warnings": summary["verdict"]["warnings"],
            "info": summary["verdict"]["info"],
            "expected": summary["verdict"]["expected"],
            "accepted": summary["verdict"]["accepted"],
        },
        "totals": summary["totals"],
        "open_variance": summary["open_variance"],
        "currencies": summary["currencies"],
        "lines": summary["lines"],
        "provenance": {
            "config": {
                "source": summary["config"]["source"],
                "sha256": summary["config"]["sha256"],
            },
            "changed": summary["config"]["changed"],
            "lowered_severities": summary["config"]["lowered_severities"],
            "mappings": summary["mappings"],
        },
        "match_stages": [s for s in summary["match_stages"] if s["stage"] != "unmatched"],
        "match_rate": summary["match_rate"],
        "controls": [
            {
                k: c[k]
                for k in (
                    "platform",
                    "source",
                    "shape",
                    "date_convention",
                    "number_format",
                    "dialect",
                    "rows_read",
                    "rows_loaded",
                    "rows_quarantined",
                    "rows_excluded",
                    "rows_skipped",
                    "net_read",
                    "net_loaded",
                    "net_quarantined",
                    "net_excluded",
                )
            }
            | {"warnings": load_warnings(c)}
            for c in summary["controls"]
        ],
        "quarantine": [
            {
                "platform": q["source"],
                "file": q["file_name"],
                "row": q["row_number"],
                "line_ref": q["line_ref"],
                "disposition": q["disposition"],
                "reasons": q["reasons"],
                "raw": json.loads(q["raw"]),
            }
            for q in quarantine.filter(pl.col("disposition") == "quarantined").iter_rows(named=True)
        ],
        "bridge": summary["bridge"],
        "clients": _report_clients(summary["clients"]),
        "discrepancies": [
            d for d in discrepancies if d["severity"] != "expected" and d["id"] not in accepted
        ],
        "expected": [d for d in discrepancies if d["severity"] == "expected"],
        # The finance workflow (report_finance.py): accepted differences with who, why and
        # when, lapsed acceptances, changes since the previous run, the cycle's sign-off.
        "accepted": [
            d | {"acceptance": accepted[d["id"]]} for d in discrepancies if d["id"] in accepted
        ],
        "lapsed": summary["acceptances"]["lapsed"],
        "history": summary["history"],
        "signoff": {
            "state": summary["signoffs"][-1]["state"] if summary["signoffs"] else "unsigned",
            "sign": summary["signoffs"][-1] if summary["signoffs"] else None,
        },
        "rules": {
            r.code: {"title": r.title, "severity": r.default_severity, "explanation": r.explanation}
            for r in rules
        },
        "unmapped": summary["unmapped"],
        "unused_mappings": summary["unused_mappings"],
    }


def engine_digest(rules: list[Rule]) -> str:
    """SHA-256 over the content of every rule file and report template in force (name and
    bytes, in name order): an edited rule or template is a different engine."""
    digest = hashlib.sha256()
    files = [("rule", Path(str(r.module.__file__))) for r in rules]
    files += [
        ("template", p)
        for p in DEFAULT_TEMPLATE_DIR.rglob("*")
        if p.is_file() and "__" not in p.name
    ]
    # Named by kind and file name, not folder: a checkout and an installed wheel (which keeps
    # rules/ and reports/ as reconcile/_rules, _reports) give the same digest.
    for kind, path in sorted(files, key=lambda f: (f[0], f[1].name)):
        digest.update(f"{kind}/{path.name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_id(summary: dict[str, Any], rules: list[Rule]) -> str:
    """Runs of the same content share an id, wherever the files lie: the inputs' content hashes,
    the mapping files' content, the settings in force after defaults, and the engine (the
    reconcile version and the content of every rule file and template). Evidence a controller
    can cite: the same id always means the same discrepancies. History keeps each execution."""
    engine = [__version__, engine_digest(rules)]
    inputs = sorted((i["platform"], i["load_id"]) for i in summary["inputs"])
    mappings = [m["sha256"] for m in summary["mappings"]]
    settings = {k: v for k, v in summary["config"].items() if k != "source"}
    key = json.dumps([engine, inputs, mappings, settings], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]
