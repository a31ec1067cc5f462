"""The report's finance-workflow parts, as template context: the sign-off banner, the accepted
differences (and lapsed acceptances), and what changed since the previous run of the cycle with
the trend over its runs. report.build_context merges `finance_context` into the page's context;
the data comes from run.report_data (keys signoff, accepted, lapsed, history), each optional so
a report rendered from older data still renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

LISTED = 200  # new and resolved discrepancies listed by name; summary.json has them all

FINANCE_CONTEXT: dict[str, str] = {
    "signoff": "dict: state (unsigned | valid | superseded | signed), sign (the cycle's latest "
    "sign-off: by, role, at, entry, hash, run, run_id; why when valid or superseded; note and "
    "accepted_by_signer when signed; None when unsigned), ready and blockers (the verdict's)",
    "accepted": "accepted differences (capped): the discrepancy's fields, rule_title and "
    "acceptance {reason, by, at, until, entry, currency, ...}",
    "accepted_total": "number of accepted differences",
    "lapsed": "acceptances that lapsed in this run: id, rule, client, currency, "
    "gross_difference, reason, by, at, until, entry, why",
    "history": "None, or dict: run, previous_run, counts {new, open, resolved}, new [{id, "
    "rule_title, client, difference, measure, place (list | accepted | expected)}] and "
    "new_total, resolved [{id, rule_title, client, currency, gross_difference, message}] and "
    "resolved_total, trend [{run, run_id, blockers, warnings, accepted, new, resolved, "
    "difference {currency: gross}, bar (open blockers as a percentage of the most)}]",
}


def _title(rules: Mapping[str, Any], code: object) -> str:
    rule = rules.get(str(code)) or {}
    return str(rule.get("title") or code)


def finance_context(data: Mapping[str, Any], rules: Mapping[str, Any], cap: int) -> dict[str, Any]:
    """The FINANCE_CONTEXT keys from the report data; lists capped at `cap` rows."""
    verdict = data["verdict"]
    accepted: Sequence[Mapping[str, Any]] = data.get("accepted") or []
    signoff = dict(data.get("signoff") or {"state": "unsigned", "sign": None})
    signoff |= {"ready": bool(verdict.get("ready")), "blockers": verdict.get("blockers", 0)}
    return {
        "signoff": signoff,
        "accepted": [{**a, "rule_title": _title(rules, a.get("rule"))} for a in accepted[:cap]],
        "accepted_total": len(accepted),
        "lapsed": list(data.get("lapsed") or [])[:cap],
        "history": _history(data, rules),
    }


def _history(data: Mapping[str, Any], rules: Mapping[str, Any]) -> dict[str, Any] | None:
    history = data.get("history")
    if not history:
        return None
    places = {
        "list": data.get("discrepancies") or [],
        "accepted": data.get("accepted") or [],
        "expected": data.get("expected") or [],
    }
    where = {d["id"]: (place, d) for place, items in places.items() for d in items}
    new = [
        {
            "id": i,
            "place": where[i][0],
            "rule_title": _title(rules, where[i][1].get("rule")),
            "client": where[i][1].get("client"),
            "difference": where[i][1].get("difference"),
            "measure": where[i][1].get("measure"),
        }
        for i in history.get("new") or []
        if i in where
    ]
    resolved = [
        {**r, "rule_title": _title(rules, r.get("rule"))} for r in history.get("resolved") or []
    ]
    trend = list(history.get("trend") or [])
    most = max((int(t.get("blockers") or 0) for t in trend), default=0) or 1
    return {
        "run": history.get("run"),
        "previous_run": history.get("previous_run"),
        "counts": history.get("counts") or {},
        # The first run of a cycle has everything new: a list would repeat the whole report.
        "new": new[:LISTED] if history.get("previous_run") else [],
        "new_total": len(new),
        "resolved": resolved[:LISTED],
        "resolved_total": len(resolved),
        "trend": [t | {"bar": round(100 * int(t.get("blockers") or 0) / most)} for t in trend],
    }
