"""The report's finance-workflow parts, as template context: the sign-off banner, the accepted
differences (and lapsed acceptances), and what changed since the previous run of the cycle with
the trend over its runs. report.build_context merges `finance_context` into the page's context;
the data comes from the typed report data (report_model: Summary.acceptances, history,
signoffs; the discrepancies' status; ReportData.signed in a sign-off pack).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import polars as pl

from reconcile.report_model import ReportData, height, text_columns, with_ids

LISTED = 200  # new and resolved discrepancies listed by name; summary.json has them all
PLACES = {"open": "list", "accepted": "accepted", "expected": "expected"}  # status -> section

FINANCE_CONTEXT: dict[str, str] = {
    "signoff": "dict: state (unsigned | valid | superseded | signed), sign (the Signoff shown: "
    "the cycle's latest, or the pack's; None when unsigned), ready and blockers (the verdict's)",
    "accepted": "accepted differences as text (capped at LINED_ROWS_SHOWN) with their lines, "
    "rule_title and acceptance (AcceptedDifference: reason, by, at, until, entry, currency, ...)",
    "accepted_total": "number of accepted differences",
    "lapsed": "LapsedAcceptances of this run: id, rule, client, currency, difference, reason, "
    "by, at, until, entry, why",
    "history": "None, or dict: run, previous_run, counts (ChangeCounts: new, open, resolved), "
    "new [{id, rule_title, client, difference, measure, place (list | accepted | expected)}] "
    "and new_total, resolved [ResolvedDiscrepancy fields and rule_title] and resolved_total, "
    "trend [TrendPoint fields and bar (open blockers as a percentage of the most)]",
}


def _title(data: ReportData, code: str) -> str:
    rule = data.rules.get(code)
    return rule.title if rule else code


def finance_context(data: ReportData, accepted: list[dict[str, Any]]) -> dict[str, Any]:
    """The FINANCE_CONTEXT keys. `accepted`: the accepted discrepancies' rows as the report's
    server-side sections take them (report.section_rows)."""
    summary = data.summary
    verdict = summary.verdict
    if data.signed is not None:
        signoff: dict[str, Any] = {"state": "signed", "sign": data.signed}
    elif summary.signoffs:
        signoff = {"state": summary.signoffs[-1].state, "sign": summary.signoffs[-1]}
    else:
        signoff = {"state": "unsigned", "sign": None}
    acceptance = {a.id: a for a in summary.acceptances.accepted}
    return {
        "signoff": signoff | {"ready": verdict.ready, "blockers": verdict.blockers},
        "accepted": [a | {"acceptance": acceptance[a["id"]]} for a in accepted],
        "accepted_total": height(data.discrepancies.lazy().filter(pl.col("status") == "accepted")),
        "lapsed": list(summary.acceptances.lapsed),
        "history": _history(data),
    }


def _history(data: ReportData) -> dict[str, Any] | None:
    history = data.summary.history
    if history is None:
        return None
    # The first run of a cycle has everything new: a list would repeat the whole report.
    listed = list(history.new[:LISTED]) if history.previous_run else []
    found = with_ids(data.discrepancies, pl.Series(listed, dtype=pl.String))
    by_id = {row["id"]: row for row in text_columns(found).to_dicts()}
    new = [
        {
            "id": i,
            "place": PLACES[by_id[i]["status"]],
            "rule_title": _title(data, by_id[i]["rule"]),
            "client": by_id[i]["client"],
            "difference": by_id[i]["difference"],
            "measure": by_id[i]["measure"],
        }
        for i in listed
        if i in by_id
    ]
    most = max((t.blockers for t in history.trend), default=0) or 1
    return {
        "run": history.run,
        "previous_run": history.previous_run,
        "counts": history.counts,
        "new": new,
        "new_total": len(history.new),
        "resolved": [
            dataclasses.asdict(r) | {"rule_title": _title(data, r.rule)}
            for r in history.resolved[:LISTED]
        ],
        "resolved_total": len(history.resolved),
        "trend": [
            dataclasses.asdict(t) | {"bar": round(100 * t.blockers / most)} for t in history.trend
        ],
    }
