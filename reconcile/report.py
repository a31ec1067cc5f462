"""Render the reconciliation result as one self-contained HTML file.

The run stage hands over plain JSON-able data (money as exact decimal strings, never floats); this
module only lays it out, so a report can be re-rendered from saved JSON and tested without a
workspace (datacompy's "the result is data, a template renders it").

Safety: the jinja environment autoescapes everything (``select_autoescape`` would skip ``.j2``),
the data the page's script needs travels in ``<script type="application/json" id="report-data">``
with ``<``, ``>``, ``&``, U+2028 and U+2029 written as ``\\uXXXX`` escapes, the script builds DOM
with ``textContent`` only, and a Content-Security-Policy forbids every network fetch.

Size: the discrepancy list is not rendered server-side. It is embedded compactly and the page's
script renders it one page at a time, so 50,000 discrepancies stay well under 25 MB.

Embedded JSON (``report-data``), format 1::

    {"format": 1, "cycle": str, "title": str, "verdict": {...},
     "totals": {currency: {"autotask", "halopsa", "difference"}},   # as given, per currency
     "bridge": {currency: [{"rule", "title", "amount"}, ...]},      # as given, gross amounts
     "rules": {code: {"title", "severity", "explanation"}},  # as given
     "columns": DISCREPANCY_COLUMNS, "line_columns": LINE_COLUMNS,
     "strings": [str, ...],                                  # interned values
     "discrepancies": [[...], ...]}                          # one array per discrepancy

Each discrepancy is an array in ``DISCREPANCY_COLUMNS`` order; each of its lines an array in
``LINE_COLUMNS`` order. Columns named in ``INTERNED`` hold an index into ``strings`` (these values
repeat across thousands of rows); every other value is the exact string from the data, or null.
``decode_discrepancies`` turns the payload back into the input's dicts.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from reconcile import bundled_dir
from reconcile.report_finance import FINANCE_CONTEXT, finance_context

DEFAULT_TEMPLATE_DIR = bundled_dir("reports")
TEMPLATE_NAME = "report.html.j2"
CSS_NAME = "report.css"
JS_NAME = "report.js"

SEVERITIES = ("blocker", "warning", "info", "expected")
WARNINGS_SHOWN = 5  # per input, under the control totals; summary.json has them all
LIST_SEVERITIES = SEVERITIES[:3]  # expected (and accepted) differences have their own sections
EMBED_FORMAT = 1
DISCREPANCY_COLUMNS = (
    "id",
    "rule",
    "severity",
    "client",
    "difference",
    "autotask_amount",
    "halopsa_amount",
    "measure",
    "gross_difference",
    "exposure",
    "root_cause",
    "message",
    "autotask_lines",
    "halopsa_lines",
)
LINE_COLUMNS = (
    "ref",
    "item",
    "description",
    "quantity",
    "unit_price",
    "net_amount",
    "tax_amount",
    "period",
)
INTERNED = frozenset({"rule", "severity", "client", "item", "description", "period", "measure"})
LARGEST_PROBLEMS = 5
# Sections rendered server-side are normally short; a cap keeps a pathological run's file small.
SERVER_ROWS_CAP = 2000

# What every template receives (datasette's TEMPLATE_BASE_CONTEXT); a test keeps this honest.
REPORT_CONTEXT: dict[str, str] = {
    "data": "the report data exactly as given to render_report",
    "title": "report title",
    "cycle": "billing cycle, e.g. 2026-11",
    "run_id": "the run's fingerprint (inputs, mappings, settings, reconcile version), or ''",
    "version": "the reconcile version that produced the report, or ''",
    "inputs": "list of input dicts: platform, source, shape, sha256",
    "verdict": "dict: ready, blockers, warnings, info, expected",
    "totals": "dict per ISO currency (main currency first): autotask/halopsa (net, tax, gross, "
    "lines, tax_unknown) and difference (net, tax, gross); amounts are never added across "
    "currencies",
    "currencies": "the currency codes of the totals, in order",
    "lines": "dict: autotask, halopsa (lines of the side, every currency)",
    "provenance": "dict: config (source, sha256), changed (setting -> value, those differing "
    "from the defaults), lowered_severities ([{rule, default, set}]), mappings ([{file, "
    "sha256}])",
    "stages": "match stages, each with autotask_share/halopsa_share of that side's lines",
    "match_rate": "dict: autotask, halopsa (fractions as decimal strings)",
    "controls": "control totals per input, each with a balanced flag (read = loaded + q + x) "
    "and its load warnings",
    "bridge_charts": "list of (currency, BridgeChart): geometry of each waterfall SVG",
    "bridge": "bridge entries per currency as given (gross amounts summing to that currency's "
    "gross difference)",
    "clients": "per-client rows (one per client and currency), largest absolute difference first",
    "largest": "up to five open blockers, then warnings, that are root causes (no root_cause), "
    "by exposure (the most money at stake on either side), with rule titles",
    "open_variance": "currency -> sum of the open discrepancies' gross differences taken as "
    "positive",
    "rules": "rule code -> {title, severity, explanation}",
    "severity_counts": "severity -> number of discrepancies in the list",
    "discrepancy_total": "number of discrepancies in the list",
    "unmapped": "unmapped clients/items with suggestions",
    "unused_mappings": "mapping rows that map nothing in this cycle: kind, autotask, halopsa, "
    "file, row, problem",
    "expected": "expected differences, retired services (capped at SERVER_ROWS_CAP)",
    "expected_total": "number of expected differences",
    "quarantine": "quarantined rows (capped at SERVER_ROWS_CAP)",
    "quarantine_total": "number of quarantined rows",
    "severities": "the severity names in display order",
    "list_severities": "the severities the discrepancy list can hold (filter checkboxes)",
    "report_json": "Markup: the embedded JSON, already safe inside a script element",
    "css": "Markup: report.css, inlined",
    "js": "Markup: report.js, inlined",
    "csp": "the Content-Security-Policy the page declares",
    **FINANCE_CONTEXT,
}

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_JSON_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


# --- formatting -----------------------------------------------------------------------------


def format_decimal(value: object, min_places: int = 2, signed: bool = False) -> str:
    """Group thousands and keep every digit of an exact decimal string; floats never enter.

    Trailing zeros beyond ``min_places`` are dropped (quantities read "25", not "25.0000"). The
    same algorithm runs in report.js so the server-side and script-rendered parts agree.
    """
    if value is None or value == "":
        return "—"
    text = str(value).strip()
    sign = ""
    if text[:1] in "+-":
        sign, text = ("-" if text[0] == "-" else ""), text[1:]
    whole, _, frac = text.partition(".")
    if not (whole or frac) or not (whole + frac).isdigit() or not whole.isascii():
        return str(value)
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    frac = frac + "0" * (min_places - len(frac)) if len(frac) < min_places else frac
    if set(whole + frac) == {"0"}:
        sign = ""
    elif signed and not sign:
        sign = "+"
    return sign + f"{int(whole):,}" + (f".{frac}" if frac else "")


def money(value: object) -> str:
    """Money with thousands separators and its sign, exactly as the string says."""
    return format_decimal(value, 2)


def signed_money(value: object) -> str:
    """A difference: positive values get a "+" so the direction is never ambiguous."""
    return format_decimal(value, 2, signed=True)


def quantity(value: object) -> str:
    """Quantities and unit prices: no padding beyond what the value needs."""
    return format_decimal(value, 0)


def percent(value: object) -> str:
    """A fraction such as "0.9830" as "98.30%"."""
    try:
        return f"{(Decimal(str(value)) * 100).quantize(Decimal('0.01'))}%"
    except (InvalidOperation, ValueError):
        return "—"


def count(value: object) -> str:
    """Integers with thousands separators."""
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _decimal(value: object) -> Decimal:
    """Parse an exact amount; anything unparseable counts as zero for ordering only."""
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)


def embed_json(payload: object) -> Markup:
    """JSON that cannot end its script element or break a JS string literal."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in _JSON_ESCAPES:  # str.replace is ~10x faster than translate here
        text = text.replace(char, escaped)
    return Markup(text)


# --- embedded discrepancy list --------------------------------------------------------------


class _Interner:
    """Assigns each repeated string (client, item, period, …) one slot in a shared table."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, value: object) -> int | None:
        if value is None:
            return None
        text = str(value)
        slot = self._index.get(text)
        if slot is None:
            slot = self._index[text] = len(self.strings)
            self.strings.append(text)
        return slot


def _encode_line(line: Mapping[str, Any], intern: _Interner) -> list[Any]:
    return [intern(line.get(key)) if key in INTERNED else line.get(key) for key in LINE_COLUMNS]


def encode_discrepancies(
    discrepancies: Iterable[Mapping[str, Any]],
) -> tuple[list[str], list[list[Any]]]:
    """Compact arrays plus a string table: about a third of the size of the dicts as JSON."""
    intern = _Interner()
    rows: list[list[Any]] = []
    for item in discrepancies:
        row: list[Any] = []
        for key in DISCREPANCY_COLUMNS:
            value = item.get(key)
            if key in ("autotask_lines", "halopsa_lines"):
                row.append([_encode_line(line, intern) for line in value or ()])
            elif key in INTERNED:
                row.append(intern(value))
            else:
                row.append(value)
        rows.append(row)
    return intern.strings, rows


def decode_discrepancies(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Invert the embedding (used by tests, and by anyone reading a report's data back)."""
    strings: list[str] = payload["strings"]
    columns: list[str] = payload["columns"]
    line_columns: list[str] = payload["line_columns"]

    def value(key: str, raw: Any) -> Any:
        return strings[raw] if key in INTERNED and raw is not None else raw

    out: list[dict[str, Any]] = []
    for row in payload["discrepancies"]:
        item: dict[str, Any] = {}
        for key, raw in zip(columns, row, strict=True):
            if key in ("autotask_lines", "halopsa_lines"):
                item[key] = [
                    {k: value(k, v) for k, v in zip(line_columns, line, strict=True)}
                    for line in raw
                ]
            else:
                item[key] = value(key, raw)
        out.append(item)
    return out


# --- the waterfall ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeBar:
    """One row of the waterfall: a total (from the axis start) or a step between totals."""

    label: str
    amount: str  # exact, as in the data
    value_text: str  # formatted for the label
    kind: str  # "total", "negative" or "positive"
    x: float
    width: float
    y: float
    end_x: float  # where the running total stands after this bar (for the connector)


@dataclass(frozen=True)
class BridgeChart:
    """Geometry for the inline SVG; computed here so the template stays declarative."""

    bars: tuple[BridgeBar, ...]
    width: int
    height: int
    row_height: int
    bar_height: int
    plot_left: int
    plot_right: int
    axis_broken: bool  # the scale does not start at zero (differences would be invisible)
    omitted_zero: int  # bridge entries of 0.00 left out of the drawing


def bridge_chart(
    totals: Mapping[str, Any], bridge: Sequence[Mapping[str, Any]], currency: str = ""
) -> BridgeChart:
    """Lay out the waterfall from the Autotask gross total to the HaloPSA gross total.

    The differences are usually a fraction of a percent of the totals, so when zero would squash
    them into a hairline the scale starts just below the smallest running total instead; the
    total bars are then drawn broken at the left edge and the chart says so.
    """
    width, row_h, bar_h = 760, 22, 14
    plot_left, plot_right = 250, 620
    start = _decimal(totals["autotask"]["gross"])
    end = _decimal(totals["halopsa"]["gross"])
    steps = [entry for entry in bridge if _decimal(entry.get("amount")) != 0]
    running = [start]
    for entry in steps:
        running.append(running[-1] + _decimal(entry.get("amount")))
    levels = [*running, end]
    lo, hi = min(*levels, Decimal(0)), max(*levels, Decimal(0))
    movement = max(levels) - min(levels)
    axis_broken = lo == 0 and hi > 0 and movement < hi / 2
    if axis_broken:
        pad = max(movement * Decimal("0.25"), Decimal(1))
        lo = max(Decimal(0), min(levels) - pad)
    span = float(hi - lo) or 1.0
    scale = (plot_right - plot_left) / span

    def x_of(value: Decimal) -> float:
        return round(plot_left + float(value - lo) * scale, 2)

    base_x = x_of(max(lo, Decimal(0)) if lo <= 0 <= hi else lo)
    bars: list[BridgeBar] = []
    code = f" {currency}" if currency else ""
    rows: list[tuple[str, str, str, Decimal, Decimal]] = [
        (f"Autotask gross total{code}", str(totals["autotask"]["gross"]), "total", lo, start)
    ]
    for index, entry in enumerate(steps):
        kind = "negative" if _decimal(entry.get("amount")) < 0 else "positive"
        label = str(entry.get("title") or entry.get("rule"))
        rows.append((label, str(entry["amount"]), kind, running[index], running[index + 1]))
    rows.append((f"HaloPSA gross total{code}", str(totals["halopsa"]["gross"]), "total", lo, end))
    for index, (label, amount, kind, before, after) in enumerate(rows):
        if kind == "total":
            x0, x1 = base_x, x_of(after)
        else:
            x0, x1 = x_of(before), x_of(after)
        left, right = min(x0, x1), max(x0, x1)
        text = money(amount) if kind == "total" else signed_money(amount)
        text = f"{currency} {text}" if currency else text
        bars.append(
            BridgeBar(
                label=label,
                amount=amount,
                value_text=text,
                kind=kind,
                x=left,
                width=max(round(right - left, 2), 1.5),
                y=8 + index * row_h,
                end_x=x_of(after),
            )
        )
    return BridgeChart(
        bars=tuple(bars),
        width=width,
        height=16 + len(bars) * row_h,
        row_height=row_h,
        bar_height=bar_h,
        plot_left=plot_left,
        plot_right=plot_right,
        axis_broken=axis_broken,
        omitted_zero=len(bridge) - len(steps),
    )


# --- context ---------------------------------------------------------------------------------


def _rule_title(rules: Mapping[str, Any], code: str) -> str:
    rule = rules.get(code) or {}
    return str(rule.get("title") or code)


def largest_problems(
    discrepancies: Iterable[Mapping[str, Any]], rules: Mapping[str, Any], n: int = 5
) -> list[dict[str, Any]]:
    """The few rows a billing admin should look at first: open blockers, then warnings, that
    are root causes, most money at stake first (exposure; the difference where none is given), so
    a currency or period blocker between equal amounts still shows; the missing lines that
    follow from an unmapped client stay under it."""
    rank = {"blocker": 0, "warning": 1}
    open_items = (d for d in discrepancies if d.get("severity") in rank and not d.get("root_cause"))
    top = heapq.nsmallest(
        n,
        open_items,
        key=lambda d: (
            rank[str(d.get("severity"))],
            -abs(_decimal(d.get("exposure") or d.get("difference"))),
        ),
    )
    return [{**d, "rule_title": _rule_title(rules, str(d.get("rule")))} for d in top]


def _share(lines: object, total: object) -> str | None:
    if not isinstance(lines, int) or not isinstance(total, int) or total <= 0:
        return None
    return str((Decimal(lines) / Decimal(total)).quantize(Decimal("0.0001")))


def _controls(controls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flag inputs whose rows do not add up, so a broken load is visible in the summary; show
    the first few load warnings (the summary must still print on one page)."""
    out = []
    for c in controls:
        keys = ("rows_read", "rows_loaded", "rows_quarantined", "rows_excluded", "rows_skipped")
        parts = [c.get(k) for k in keys]
        ints = [p for p in parts if isinstance(p, int)]
        balanced = len(ints) == len(parts) and ints[0] == sum(ints[1:])
        warnings = list(c.get("warnings") or [])
        out.append(
            {
                **c,
                "balanced": balanced,
                "warnings": warnings[:WARNINGS_SHOWN],
                "more_warnings": max(0, len(warnings) - WARNINGS_SHOWN),
            }
        )
    return out


# Optional fields of list entries, filled in so the templates (StrictUndefined) never guess.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "inputs": {"platform": "", "source": "", "shape": "", "sha256": ""},
    "unmapped": {
        "kind": "",
        "side": "",
        "value": "",
        "suggestion": None,
        "score": None,
        "basis": None,
    },
    "quarantine": {
        "platform": "",
        "file": "",
        "row": None,
        "line_ref": None,
        "disposition": "quarantined",
        "reasons": "",
        "raw": {},
    },
    "expected": {
        "message": "",
        "autotask_amount": None,
        "halopsa_amount": None,
        "autotask_lines": [],
        "halopsa_lines": [],
    },
    "controls": {
        "source": "",
        "shape": "",
        "date_convention": "",
        "number_format": "",
        "dialect": {},
    },
}


def _filled(entries: Iterable[Mapping[str, Any]], section: str) -> list[dict[str, Any]]:
    defaults = _DEFAULTS[section]
    return [{**defaults, **{k: v for k, v in e.items() if v is not None}} for e in entries]


def _provenance(given: Mapping[str, Any]) -> dict[str, Any]:
    config = given.get("config") or {}
    return {
        "config": {"source": config.get("source") or "", "sha256": config.get("sha256") or ""},
        "changed": dict(given.get("changed") or {}),
        "lowered_severities": list(given.get("lowered_severities") or []),
        "mappings": list(given.get("mappings") or []),
    }


def setting_text(value: object) -> str:
    """A setting's value as reconcile.toml would write it."""
    return json.dumps(value, ensure_ascii=False)


def build_context(data: Mapping[str, Any], css: str, js: str) -> dict[str, Any]:
    """Everything the template needs; keys are documented in REPORT_CONTEXT."""
    rules: Mapping[str, Any] = data.get("rules") or {}
    totals: Mapping[str, Any] = data["totals"]
    discrepancies: Sequence[Mapping[str, Any]] = data.get("discrepancies") or []
    expected: Sequence[Mapping[str, Any]] = data.get("expected") or []
    quarantine: Sequence[Mapping[str, Any]] = data.get("quarantine") or []
    bridge: Mapping[str, Sequence[Mapping[str, Any]]] = data.get("bridge") or {}
    lines = data.get("lines") or {
        side: sum(int(t[side].get("lines") or 0) for t in totals.values())
        for side in ("autotask", "halopsa")
    }
    strings, rows = encode_discrepancies(discrepancies)
    payload = {
        "format": EMBED_FORMAT,
        "cycle": data.get("cycle"),
        "title": data.get("title"),
        "verdict": data.get("verdict"),
        "totals": totals,
        "bridge": bridge,
        "rules": rules,
        "columns": DISCREPANCY_COLUMNS,
        "line_columns": LINE_COLUMNS,
        "strings": strings,
        "discrepancies": rows,
    }
    stages = [
        {
            **s,
            "label": s.get("label") or s.get("stage") or "",
            "autotask_share": _share(s.get("autotask_lines"), lines.get("autotask")),
            "halopsa_share": _share(s.get("halopsa_lines"), lines.get("halopsa")),
        }
        for s in data.get("match_stages") or []
    ]
    clients = sorted(
        data.get("clients") or [],
        key=lambda c: (-abs(_decimal(c.get("difference"))), str(c.get("client"))),
    )
    context: dict[str, Any] = {
        "data": data,
        "title": data.get("title") or "Billing reconciliation",
        "cycle": data.get("cycle") or "",
        "run_id": data.get("run_id") or "",
        "version": data.get("reconcile_version") or "",
        "inputs": _filled(data.get("inputs") or [], "inputs"),
        "verdict": data["verdict"],
        "totals": totals,
        "currencies": list(totals),
        "lines": lines,
        "provenance": _provenance(data.get("provenance") or {}),
        "stages": stages,
        "match_rate": data.get("match_rate") or {},
        "controls": _controls(_filled(data.get("controls") or [], "controls")),
        "bridge_charts": [
            (code, bridge_chart(totals[code], bridge.get(code) or [], code)) for code in totals
        ],
        "bridge": bridge,
        "clients": clients,
        "largest": largest_problems(discrepancies, rules, LARGEST_PROBLEMS),
        "open_variance": data.get("open_variance"),
        "rules": rules,
        "severity_counts": Counter(str(d.get("severity")) for d in discrepancies),
        "discrepancy_total": len(discrepancies),
        "unmapped": _filled(data.get("unmapped") or [], "unmapped"),
        "unused_mappings": list(data.get("unused_mappings") or []),
        "expected": [
            {**e, "rule_title": _rule_title(rules, str(e.get("rule")))}
            for e in _filled(expected[:SERVER_ROWS_CAP], "expected")
        ],
        "expected_total": len(expected),
        "quarantine": _filled(quarantine[:SERVER_ROWS_CAP], "quarantine"),
        "quarantine_total": len(quarantine),
        "severities": SEVERITIES,
        "list_severities": LIST_SEVERITIES,
        "report_json": embed_json(payload),
        "css": Markup(css),
        "js": Markup(js),
        "csp": CSP,
    }
    return context | finance_context(data, rules, SERVER_ROWS_CAP)


# --- rendering -------------------------------------------------------------------------------


def make_environment(template_dir: Path | None = None) -> Environment:
    """Autoescaping environment: a user's template_dir first, then the packaged reports/."""
    loaders = [FileSystemLoader(DEFAULT_TEMPLATE_DIR)]
    if template_dir is not None:
        loaders.insert(0, FileSystemLoader(template_dir))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money,
        signed_money=signed_money,
        setting=setting_text,
        quantity=quantity,
        percent=percent,
        count=count,
    )
    return env


def _asset(env: Environment, name: str, closing_tag: str) -> str:
    """Raw text of an inlined asset (not a template: JS braces must not meet jinja syntax)."""
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    if closing_tag in source.lower():
        raise ValueError(f"{name} must not contain {closing_tag!r}; it is inlined into the page")
    return source


def report_html(data: dict[str, Any], template_dir: Path | None = None) -> str:
    """The whole report as one HTML string with inline CSS, JS and SVG."""
    env = make_environment(template_dir)
    css = _asset(env, CSS_NAME, "</style")
    js = _asset(env, JS_NAME, "</script")
    return env.get_template(TEMPLATE_NAME).render(build_context(data, css, js))


def render_report(data: dict[str, Any], path: Path, template_dir: Path | None = None) -> None:
    """Write the report to ``path`` (parents created), UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(data, template_dir), encoding="utf-8")
