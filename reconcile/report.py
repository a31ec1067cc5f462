"""Render the reconciliation result as one self-contained HTML file.

The run stage hands over typed data (reconcile.report_model.ReportData: money exact, never
floats); this module only lays it out, so a report can be tested without a workspace
(datacompy's "the result is data, a template renders it").

Safety: the jinja environment autoescapes everything (``select_autoescape`` would skip ``.j2``),
the data the page's script needs travels in ``<script type="application/json" id="report-data">``
with ``<``, ``>``, ``&``, U+2028 and U+2029 written as ``\\uXXXX`` escapes, the script builds DOM
with ``textContent`` only (the rules' explanations, rendered from Markdown with raw HTML off
by rule_explanations, travel as ``<template>`` elements it copies), and a Content-Security-Policy
forbids every network fetch.

Size: the discrepancy list and the per-client table are not rendered server-side. Their
tables are embedded column by column (repeated values as indexes into one string table), built
by polars from the typed frames without a Python loop over rows, and the page's script renders
one page at a time. Above COMPRESS_ABOVE bytes the tables travel gzip-compressed and
base64-encoded, unpacked by the browser's own DecompressionStream: 165,000 discrepancies and
170,000 clients stay well under 25 MB.

Embedded JSON (``report-data``), format 2::

    {"format": 2, "cycle": str, "title": str, "verdict": {...},
     "totals": {currency: {"autotask", "halopsa", "difference"}},   # per currency
     "bridge": {currency: [{"rule", "title", "amount"}, ...]},      # gross amounts
     "rules": {code: {"title", "severity", "explanation"}},
     "tables": TABLES} or, compressed, "tables_gzip": base64 of gzip of TABLES' JSON

    TABLES = {"strings": [str, ...],                   # interned values, most frequent first
              "discrepancies": {column: [value, ...]},  # DISCREPANCY_COLUMNS, open ones only
              "lines": {column: [value, ...]},          # LINE_COLUMNS; row: index into the above
              "clients": {column: [value, ...]}}        # CLIENT_COLUMNS

Every column is a list with one value per row. Columns named in ``INTERNED`` hold an index into
``strings``; money, quantities and prices are exact decimal strings (never floats); counts are
integers; missing values are null. The discrepancies keep the run's order, each discrepancy's
lines are consecutive (Autotask first, by ref), the clients come largest absolute difference
first. ``read_tables`` turns a page's data back into rows.
"""

from __future__ import annotations

import base64
import codecs
import gzip
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl
from markupsafe import Markup

from reconcile import bundled_dir
from reconcile.ingest import load_warnings
from reconcile.report_finance import FINANCE_CONTEXT, finance_context
from reconcile.report_model import (
    CLIENT_SCHEMA,
    COLUMNWISE_FROM,
    SEVERITIES,
    BridgeEntry,
    Control,
    CurrencyTotals,
    ReportData,
    height,
    json_columns,
    json_list,
    plain,
    text_columns,
    with_ids,
)
from reconcile.wording import UNKNOWN_CURRENCY, format_decimal, in_currency, money, signed_money

if TYPE_CHECKING:
    from jinja2 import Environment

DEFAULT_TEMPLATE_DIR = bundled_dir("reports")
TEMPLATE_NAME = "report.html.j2"
CSS_NAME = "report.css"
JS_NAME = "report.js"

WARNINGS_SHOWN = 5  # per input, under the control totals; summary.json has them all
LIST_SEVERITIES = SEVERITIES[:3]  # expected (and accepted) differences have their own sections
EMBED_FORMAT = 2
COMPRESS_ABOVE = 1_000_000  # bytes of table JSON above which the tables travel compressed
GZIP_LEVEL = 4  # of 9: 165,000 discrepancies in about a third of the time of 9, 10% larger
GZIP_WBITS = zlib.MAX_WBITS | 16  # zlib's gzip container, no timestamp: gzip.compress(mtime=0)
BASE64_CHUNK = 3 * 2**18  # compressed bytes base64-encoded at a time (768 KiB; a multiple of 3)
# Where the embedded JSON goes in the page's context: report_pieces puts the JSON there in pieces
# as the page is written. Text the page escapes cannot hold it (it has a "<").
EMBED_MARK = Markup("<report-json/>")
DISCREPANCY_COLUMNS = (
    "id",
    "rule",
    "severity",
    "client",
    "currency",
    "measure",
    "autotask_amount",
    "halopsa_amount",
    "difference",
    "gross_difference",
    "root_cause",
    "message",
)
LINE_COLUMNS = (
    "row",
    "side",
    "ref",
    "item",
    "description",
    "quantity",
    "unit_price",
    "net_amount",
    "tax_amount",
    "period",
)
CLIENT_COLUMNS = tuple(CLIENT_SCHEMA)
INTERNED = frozenset(
    {"rule", "severity", "client", "currency", "measure", "side", "item", "description", "period"}
)
LARGEST_PROBLEMS = 5
# Sections rendered server-side are normally short; a cap keeps a pathological run's file small.
SERVER_ROWS_CAP = 2000
# Expected and accepted differences are rendered with both sides' lines: some 100 elements
# each, so 2,000 of them (a realistic 1M-line cycle has 1,444 expected) took the browser 3.5 s to
# parse. The sections say how many they show; all are in the discrepancy files.
LINED_ROWS_SHOWN = 200

# What every template receives (datasette's TEMPLATE_BASE_CONTEXT); a test keeps this honest.
REPORT_CONTEXT: dict[str, str] = {
    "data": "the ReportData exactly as given to render_report",
    "title": "report title",
    "cycle": "billing cycle, e.g. 2026-11",
    "run_id": "the run's fingerprint (inputs, mappings, settings, reconcile version)",
    "version": "the reconcile version that produced the report",
    "inputs": "the inputs' Controls (platform, source, shape, load_id: the content hash)",
    "verdict": "Verdict: ready, blockers, warnings, info, expected, accepted",
    "totals": "currency -> CurrencyTotals (main currency first): autotask/halopsa (net, tax, "
    "gross, lines, tax_unknown) and difference (net, tax, gross); amounts are never added "
    "across currencies",
    "currencies": "the currency codes of the totals, in order",
    "settings": "SettingsInForce: source, sha256, changed (setting -> value, those differing "
    "from the defaults), changed_from (setting -> the settings file, RECONCILE_* variable or "
    "flag it came from), lowered_severities (rule, default, set)",
    "mappings": "MappingFiles: file, sha256",
    "workbook": "Workbook: written (whether the run wrote discrepancies.xlsx), note (which, and "
    "how to write it later when it did not)",
    "stages": "match stages but unmatched: {stage: MatchStage, autotask_share, halopsa_share "
    "(that side's lines, fractions as decimal strings or None)}",
    "match_rate": "Sides: autotask, halopsa (fractions, Decimal)",
    "controls": "ControlRows: input (Control, with its balanced flag: read = loaded + q + x + "
    "skipped, and per currency; by_currency: CurrencyControl a currency, None the unknown one), "
    "warnings (the first WARNINGS_SHOWN load warnings), more_warnings",
    "bridge_charts": "list of (currency, BridgeChart): geometry of each waterfall SVG",
    "client_total": "number of per-client rows (one per client and currency; the page's script "
    "renders them)",
    "largest": "up to five open blockers, then warnings, that are root causes (no root_cause), "
    "by exposure (the most money at stake on either side), with rule titles",
    "open_variance": "currency -> sum of the open discrepancies' gross differences taken as "
    "positive",
    "severity_counts": "severity -> number of discrepancies in the list",
    "discrepancy_total": "number of discrepancies in the list",
    "unmapped": "Unmapped clients/items with suggestions",
    "unused_mappings": "UnusedMappings: mapping rows that map nothing in this cycle",
    "expected": "expected differences (retired services) as text with their lines and "
    "rule_title (capped at LINED_ROWS_SHOWN)",
    "expected_total": "number of expected differences",
    "quarantine": "quarantined rows (capped at SERVER_ROWS_CAP), raw as a dict",
    "quarantine_total": "number of quarantined rows",
    "excluded": "the rows excluded by design by platform and reason (report_model.Exclusion)",
    "excluded_total": "number of rows excluded by design",
    "severities": "the severity names in display order",
    "list_severities": "the severities the discrepancy list can hold (filter checkboxes)",
    "rule_explanations": "rule code -> Markup: the rule's explanation rendered from its Markdown "
    "(rule_explanations); the page's script shows a copy in each expanded discrepancy",
    "report_json": "Markup: where the embedded JSON goes (EMBED_MARK: report_pieces puts the "
    "JSON, safe inside a script element, in its place)",
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


def embed_json(payload: object) -> Markup:
    """JSON that cannot end its script element or break a JS string literal."""
    return _script_safe(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))


def _script_safe(text: str) -> Markup:
    for char, escaped in _JSON_ESCAPES:  # str.replace is ~10x faster than translate here
        text = text.replace(char, escaped)
    return Markup(text)


def report_json(data: ReportData, compress: bool | None = None) -> Iterator[str]:
    """The embedded JSON (module docstring), safe inside a script element, in pieces: the
    tables are made, compressed and encoded as the pieces are taken (at 10M lines a side
    95 MB of base64 text, never held whole). The tables travel compressed when `compress` says
    so or, when it is None, when they exceed COMPRESS_ABOVE bytes (gzip without a timestamp:
    the same data gives the same bytes)."""
    summary = data.summary
    head = {
        "format": EMBED_FORMAT,
        "cycle": summary.cycle,
        "title": data.title,
        "verdict": plain(summary.verdict),
        "totals": plain(summary.totals),
        "bridge": plain(summary.bridge),
        "rules": plain(data.rules),
    }
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1]
    packed, tables = _packed(page_tables(data), compress)
    if packed:  # base64 needs no escape, in JSON nor in a script element
        yield _script_safe(f'{text},"tables_gzip":"')
        yield from _base64_pieces(tables)
        yield '"}'
        return
    yield _script_safe(f'{text},"tables":')
    decoder = codecs.getincrementaldecoder("utf-8")()  # a piece may end inside a character
    for piece in tables:
        yield _script_safe(decoder.decode(piece))
    yield _script_safe(decoder.decode(b"", final=True) + "}")


def _packed(pieces: Iterable[bytes], compress: bool | None) -> tuple[bool, Iterator[bytes]]:
    """Whether TABLES' JSON travels compressed, and its bytes as the page carries them, in
    pieces: gzip (GZIP_LEVEL, the bytes of gzip.compress with mtime=0) when `compress` says so
    or, when it is None, when the JSON exceeds COMPRESS_ABOVE bytes (the pieces up to there
    are taken to tell); else the JSON itself. Compressed piece by piece: the whole JSON is
    never held, and a small one never compressed."""
    rest = iter(pieces)
    taken: list[bytes] = []
    if compress is None:
        size = 0
        for piece in rest:
            taken.append(piece)
            size += len(piece)
            if size > COMPRESS_ABOVE:
                break
        compress = size > COMPRESS_ABOVE
    whole = chain(taken, rest)
    return compress, (_gzip_pieces(whole) if compress else whole)


def _gzip_pieces(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """gzip (GZIP_LEVEL, no timestamp) of the pieces' concatenation, a piece at a time."""
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    for piece in pieces:
        yield packer.compress(piece)
    yield packer.flush()


def _base64_pieces(pieces: Iterable[bytes]) -> Iterator[str]:
    """Base64 of the pieces' concatenation as text, BASE64_CHUNK bytes encoded at a time (a
    multiple of 3: each chunk's text is that of the whole, with no padding between)."""
    held = bytearray()
    for piece in pieces:
        held += piece
        if len(held) >= BASE64_CHUNK:
            whole = len(held) - len(held) % 3
            yield base64.b64encode(held[:whole]).decode("ascii")
            del held[:whole]
    yield base64.b64encode(held).decode("ascii")


# --- embedded tables -----------------------------------------------------------------------


def period_text(start: str = "period_start", end: str = "period_end") -> pl.Expr:
    """A service period as the page shows it: `2026-11-01 – 2026-11-30`, or empty."""
    return (
        pl.when(pl.col(start).is_not_null())
        .then(pl.format("{} – {}", start, pl.col(end).cast(pl.String).fill_null("")))
        .otherwise(pl.lit(""))
    )


def _page_frames(data: ReportData) -> dict[str, pl.LazyFrame]:
    """The three tables the page's script renders, in its order, before interning: plans that
    pick their rows by index from the report's frames, so that the page's tables are made a
    column at a time (page_tables), never copied whole."""
    open_ = pl.col("status") == "open"
    rows = (
        data.discrepancies.lazy()
        .filter(open_)
        .select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), "id")
    )
    # Each listed discrepancy's lines (`line`: their index in data.lines), by row: narrow.
    picked = (
        data.lines.lazy()
        .select("id", pl.int_range(pl.len(), dtype=pl.Int64).alias("line"))
        .join(rows, on="id", how="inner", maintain_order="left")
        .sort("row", maintain_order=True)
        .collect()
    )
    lines = (
        data.lines.lazy()
        .select(pl.all().gather(picked["line"]))
        .with_columns(pl.lit(picked["row"]).alias("row"), period_text().alias("period"))
    )
    order = (
        data.summary.clients.lazy()
        .select(
            pl.arg_sort_by(
                pl.col("difference").abs(), "client", descending=[True, False], maintain_order=True
            )
        )
        .collect()
        .to_series()
    )
    return {
        "discrepancies": data.discrepancies.lazy().filter(open_).select(DISCREPANCY_COLUMNS),
        "lines": lines.select(LINE_COLUMNS),
        "clients": data.summary.clients.lazy().select(pl.col(CLIENT_COLUMNS).gather(order)),
    }


def _interned(frames: Mapping[str, pl.DataFrame | pl.LazyFrame]) -> pl.Series:
    """The INTERNED columns' values (String), the most frequent first (then in text order), so
    the slots that fill most of the page are short. Counted a column at a time, then added up,
    so that a plan's columns are never held all at once."""
    counts = pl.collect_all(
        frame.lazy()
        .select(pl.col(name).cast(pl.String).alias("value"))
        .drop_nulls()
        .group_by("value")
        .len(name="n")
        for frame in frames.values()
        for name in frame.collect_schema().names()
        if name in INTERNED
    )
    counted = pl.concat(counts).group_by("value").agg(pl.col("n").sum())
    return counted.sort(["n", "value"], descending=[True, False])["value"]


def page_tables(data: ReportData) -> Iterator[bytes]:
    """TABLES (see the module docstring) as JSON, in pieces: every column made, converted and
    encoded by polars one at a time (report_model.json_columns), with no Python object per
    value."""
    plans = _page_frames(data)
    rows = height(data.discrepancies) + height(data.lines) + height(data.summary.clients)
    # Small tables are made whole: a plan computed a column at a time costs about 1 ms a column.
    frames: Mapping[str, pl.DataFrame | pl.LazyFrame] = (
        dict(zip(plans, pl.collect_all(plans.values()), strict=True))
        if rows < COLUMNWISE_FROM
        else plans
    )
    strings = _interned(frames)
    slots = strings.to_frame().with_row_index("slot")  # a join: far faster than an Enum cast

    def slotted(series: pl.Series) -> pl.Series:
        if series.name not in INTERNED:
            return series
        found = series.cast(pl.String).rename("value").to_frame()
        return found.join(slots, on="value", how="left", maintain_order="left")["slot"].rename(
            series.name
        )

    yield b'{"strings":' + json_list(strings)
    for name, frame in frames.items():
        yield b"," + orjson.dumps(name) + b":"
        yield from json_columns(frame, slotted)
    yield b"}"


def read_tables(payload: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The page's tables back as rows (for tests, and anyone reading a report's data back):
    discrepancies with their autotask_lines and halopsa_lines, and clients."""
    if "tables_gzip" in payload:
        tables = json.loads(gzip.decompress(base64.b64decode(payload["tables_gzip"])))
    else:
        tables = payload["tables"]
    strings = tables["strings"]

    def rows(name: str) -> list[dict[str, Any]]:
        columns = tables[name]
        count = len(next(iter(columns.values()), []))
        return [
            {
                c: strings[v[i]] if c in INTERNED and v[i] is not None else v[i]
                for c, v in columns.items()
            }
            for i in range(count)
        ]

    discrepancies = rows("discrepancies")
    for item in discrepancies:
        item["autotask_lines"], item["halopsa_lines"] = [], []
    for line in rows("lines"):
        item = discrepancies[line.pop("row")]
        item[f"{line.pop('side')}_lines"].append(line)
    return {"discrepancies": discrepancies, "clients": rows("clients")}


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
    totals: CurrencyTotals, bridge: Sequence[BridgeEntry], currency: str = ""
) -> BridgeChart:
    """Lay out the waterfall from the Autotask gross total to the HaloPSA gross total.

    The differences are usually a fraction of a percent of the totals, so when zero would squash
    them into a hairline the scale starts just below the smallest running total instead; the
    total bars are then drawn broken at the left edge and the chart says so.
    """
    width, row_h, bar_h = 760, 22, 14
    plot_left, plot_right = 250, 620
    start = totals.autotask.gross
    end = totals.halopsa.gross
    steps = [entry for entry in bridge if entry.amount != 0]
    running = [start]
    for entry in steps:
        running.append(running[-1] + entry.amount)
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
        (f"Autotask gross total{code}", str(start), "total", lo, start)
    ]
    for index, entry in enumerate(steps):
        kind = "negative" if entry.amount < 0 else "positive"
        label = entry.title or entry.rule
        rows.append((label, str(entry.amount), kind, running[index], running[index + 1]))
    rows.append((f"HaloPSA gross total{code}", str(end), "total", lo, end))
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


def largest_problems(data: ReportData, n: int = LARGEST_PROBLEMS) -> list[dict[str, Any]]:
    """The few rows a billing admin should look at first: open blockers, then warnings, that
    are root causes, most money at stake first (exposure), so a currency or period blocker
    between equal amounts still shows; the missing lines that follow from an unmapped client
    stay under it. Amounts in different currencies are not comparable: each currency's largest
    comes before any currency's second largest (and so on), larger first between them, so a
    cycle billed in JPY and GBP shows both. Dicts of DISCREPANCY_SCHEMA's columns as text, plus
    rule_title."""
    rank = {"blocker": 0, "warning": 1}
    severity = pl.col("severity").replace_strict(rank, return_dtype=pl.Int8)
    at_stake = pl.col("exposure").abs()
    # Ranked by the columns ranking them: only the top rows are read whole, by their ids.
    picked = (
        data.discrepancies.lazy()
        .filter(
            pl.col("severity").is_in(list(rank))
            & (pl.col("status") == "open")
            & pl.col("root_cause").is_null()
        )
        .sort(
            severity,
            at_stake.rank("ordinal", descending=True).over(severity, pl.col("currency")),
            at_stake,
            descending=[False, False, True],
            maintain_order=True,
        )
        .head(n)
        .select("id")
        .collect()
    )
    top = picked.join(with_ids(data.discrepancies, picked["id"]), on="id", maintain_order="left")
    return [
        {**row, "rule_title": rule_title(data, row["rule"])} for row in text_columns(top).to_dicts()
    ]


def rule_title(data: ReportData, code: str) -> str:
    rule = data.rules.get(code)
    return rule.title if rule else code


def _share(lines: int, total: int) -> str | None:
    if total <= 0:
        return None
    return str((Decimal(lines) / Decimal(total)).quantize(Decimal("0.0001")))


@dataclass(frozen=True)
class ControlRow:
    """One input under the control totals, with the first few of its load warnings (the
    summary must still print on one page; summary.json has them all)."""

    input: Control
    warnings: tuple[str, ...]
    more_warnings: int


def _control_row(control: Control) -> ControlRow:
    warnings = load_warnings(
        {"warnings": control.warnings, "invoice_checks": control.invoice_checks}
    )
    return ControlRow(
        input=control,
        warnings=tuple(warnings[:WARNINGS_SHOWN]),
        more_warnings=max(0, len(warnings) - WARNINGS_SHOWN),
    )


def section_rows(data: ReportData, status: str) -> list[dict[str, Any]]:
    """The first LINED_ROWS_SHOWN discrepancies of a status ("expected", "accepted") as text,
    with rule_title and their lines (autotask_lines, halopsa_lines: dicts with the period as
    one text), for the sections rendered server-side."""
    rows = (
        data.discrepancies.lazy()
        .filter(pl.col("status") == status)
        .head(LINED_ROWS_SHOWN)
        .collect()
    )
    lines = text_columns(with_ids(data.lines, rows["id"])).with_columns(
        period_text().alias("period")
    )
    by_id: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in lines.drop("period_start", "period_end").to_dicts():
        by_id.setdefault((line.pop("id"), line.pop("side")), []).append(line)
    return [
        {
            **row,
            "rule_title": rule_title(data, row["rule"]),
            "autotask_lines": by_id.get((row["id"], "autotask"), []),
            "halopsa_lines": by_id.get((row["id"], "halopsa"), []),
        }
        for row in text_columns(rows).to_dicts()
    ]


def rule_explanations(data: ReportData) -> dict[str, Markup]:
    """Each rule's explanation (Markdown: **Example:**, **What to do:**) as HTML, once per rule,
    in code order. CommonMark with raw HTML off, so every character of the source is text:
    `<script>` in an explanation comes out as `&lt;script&gt;`. markdown_it is imported here
    (only a report needs it)."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False})
    return {code: Markup(md.render(data.rules[code].explanation)) for code in sorted(data.rules)}


def setting_text(value: object) -> str:
    """A setting's value as reconcile.toml would write it."""
    return json.dumps(value, ensure_ascii=False)


def build_context(data: ReportData, css: str, js: str) -> dict[str, Any]:
    """Everything the template needs; keys are documented in REPORT_CONTEXT."""
    summary = data.summary
    # Discrepancies per status and severity: the list holds the open ones.
    tally = data.discrepancies.lazy().group_by("status", "severity").len().collect()
    listed = tally.filter(pl.col("status") == "open")
    lines = summary.lines
    stages = [
        {
            "stage": s,
            "autotask_share": _share(s.autotask_lines, lines.autotask),
            "halopsa_share": _share(s.halopsa_lines, lines.halopsa),
        }
        for s in summary.match_stages
        if s.stage != "unmatched"
    ]
    severity_counts = dict.fromkeys(SEVERITIES, 0) | dict(listed.select("severity", "len").rows())
    quarantined = [
        {**q, "raw": json.loads(q["raw"])} for q in data.quarantine.head(SERVER_ROWS_CAP).to_dicts()
    ]
    context: dict[str, Any] = {
        "data": data,
        "title": data.title,
        "cycle": summary.cycle,
        "run_id": summary.run_id,
        "version": summary.reconcile_version,
        "inputs": summary.controls,
        "verdict": summary.verdict,
        "totals": summary.totals,
        "currencies": summary.currencies,
        "settings": summary.config,
        "mappings": summary.mappings,
        "workbook": summary.workbook,
        "stages": stages,
        "match_rate": summary.match_rate,
        "controls": [_control_row(c) for c in summary.controls],
        "bridge_charts": [
            (code, bridge_chart(totals, summary.bridge.get(code, ()), code))
            for code, totals in summary.totals.items()
        ],
        "client_total": height(summary.clients),
        "largest": largest_problems(data),
        "open_variance": summary.open_variance,
        "severity_counts": severity_counts,
        "discrepancy_total": int(listed["len"].sum()),
        "unmapped": summary.unmapped,
        "unused_mappings": summary.unused_mappings,
        "expected": section_rows(data, "expected"),
        "expected_total": int(tally.filter(pl.col("status") == "expected")["len"].sum()),
        "quarantine": quarantined,
        "quarantine_total": data.quarantine.height,
        "excluded": data.excluded,
        "excluded_total": sum(e.rows for e in data.excluded),
        "severities": SEVERITIES,
        "list_severities": LIST_SEVERITIES,
        "rule_explanations": rule_explanations(data),
        "report_json": EMBED_MARK,
        "css": Markup(css),
        "js": Markup(js),
        "csp": CSP,
    }
    return context | finance_context(data, section_rows(data, "accepted"))


# --- rendering -------------------------------------------------------------------------------


def make_environment(template_dir: Path | None = None) -> Environment:
    """Autoescaping environment: a user's template_dir first, then the packaged reports/.
    jinja2 is imported here (0.015 s): a run makes its environment beside its loads
    (run._prepared)."""
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

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
        in_currency=in_currency,
        setting=setting_text,
        quantity=quantity,
        percent=percent,
        count=count,
    )
    env.globals["unknown_currency"] = UNKNOWN_CURRENCY
    return env


def compiled_environment(template_dir: Path | None = None) -> Environment:
    """make_environment with the report's page and the partials it includes (`_*.html.j2`)
    compiled into its cache, as rendering the page would compile them (≈ 0.2 CPU-s of Python:
    a run has it done on another thread while its loads and queries run)."""
    env = make_environment(template_dir)
    for name in env.list_templates(filter_func=lambda n: n == TEMPLATE_NAME or n[:1] == "_"):
        env.get_template(name)
    return env


def _asset(env: Environment, name: str, closing_tag: str) -> str:
    """Raw text of an inlined asset (not a template: JS braces must not meet jinja syntax)."""
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    if closing_tag in source.lower():
        raise ValueError(f"{name} must not contain {closing_tag!r}; it is inlined into the page")
    return source


def report_html(
    data: ReportData,
    template_dir: Path | None = None,
    compress: bool | None = None,
    env: Environment | None = None,
) -> str:
    """The whole report as one HTML string with inline CSS, JS and SVG (`compress`: see
    report_json), rendered in `env` when given (compiled_environment of `template_dir`)."""
    return "".join(report_pieces(data, template_dir, compress, env))


def report_pieces(
    data: ReportData,
    template_dir: Path | None = None,
    compress: bool | None = None,
    env: Environment | None = None,
) -> Iterator[str]:
    """report_html's text in pieces, as the template renders them, so that a run writes the
    page without holding it whole (at 10M lines a side 100 MB, held as text of 2 bytes a
    character once a client's name is not ASCII): the embedded JSON (report_json, `compress`
    as there) made in pieces where the context's EMBED_MARK stands, as it is written. The
    context (build_context) is made before the first piece."""
    env = env or make_environment(template_dir)
    css = _asset(env, CSS_NAME, "</style")
    js = _asset(env, JS_NAME, "</script")
    context = build_context(data, css, js)
    return _embedded(env.get_template(TEMPLATE_NAME).generate(context), data, compress)


def _embedded(pieces: Iterable[str], data: ReportData, compress: bool | None) -> Iterator[str]:
    """The page's pieces with report_json's pieces in place of each EMBED_MARK."""
    for piece in pieces:
        first, *rest = piece.split(EMBED_MARK)
        yield first
        for after in rest:
            yield from report_json(data, compress)
            yield after


def render_report(
    data: ReportData,
    path: Path,
    template_dir: Path | None = None,
    compress: bool | None = None,
) -> None:
    """Write the report to ``path`` (parents created), UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(data, template_dir, compress), encoding="utf-8")
