"""The run's result as typed data: built once from the run's queries (reconcile.run), rendered by
the report templates (reconcile.report) and exported as summary.json.

Scalars and short lists are frozen dataclasses. The long tables (one row per discrepancy, per
line of a discrepancy, per client, per quarantined row) are polars frames whose schemas are
declared here and checked when the data is built, so nothing downstream guesses a column and
nothing loops over their rows in Python. Money is exact throughout: ``Decimal`` in the
dataclasses, ``Decimal(18, 2)`` in the frames, exact decimal strings in summary.json and in the
page, never floats. Every amount is in the currency its row or key names, never added across
currencies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

import orjson
import polars as pl

SEVERITIES = ("blocker", "warning", "info", "expected")
MONEY = pl.Decimal(18, 2)
QUANTITY = pl.Decimal(18, 4)  # quantities and unit prices

# A value as read from a JSON column of the workspace (file lists, dialects, invoice checks) or
# a setting as reconcile.toml writes it: kept as given.
JSONValue = Any

T = TypeVar("T")

# --- the long tables --------------------------------------------------------------------------

# One row per discrepancy (accepted ones too), in the run's order (severity, then the size of
# the difference). status: "open", "accepted" (reconcile accept: an acceptance in force) or
# "expected" (a retired service). autotask_amount, halopsa_amount and difference are the
# rule's own figures in `measure` (net, tax or gross), HaloPSA − Autotask; gross_difference is
# the part of the totals' gross difference the row accounts for (each match group counted
# once, as in the bridge); exposure the most gross money at stake on either side. Money in
# the row's `currency` (null when the lines involved are in several). root_cause: the id of
# the discrepancy this one follows from, or null.
DISCREPANCY_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "rule": pl.String(),
    "severity": pl.String(),
    "status": pl.String(),
    "client": pl.String(),
    "currency": pl.String(),
    "measure": pl.String(),
    "autotask_amount": MONEY,
    "halopsa_amount": MONEY,
    "difference": MONEY,
    "gross_difference": MONEY,
    "exposure": MONEY,
    "root_cause": pl.String(),
    "message": pl.String(),
}

# The lines a discrepancy involves, each side ordered by ref (at most a cap per side, see
# reconcile.run.REPORT_LINE_CAP). `id` is the discrepancy's, `side` "autotask" or "halopsa";
# item is the line's item name (its description where it has none); amounts net and tax as the
# export states them, in the line's currency; dates inclusive.
LINE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "side": pl.String(),
    "ref": pl.String(),
    "item": pl.String(),
    "description": pl.String(),
    "quantity": QUANTITY,
    "unit_price": QUANTITY,
    "net_amount": MONEY,
    "tax_amount": MONEY,
    "period_start": pl.Date(),
    "period_end": pl.Date(),
}

# One row per client and currency (a client billed in two currencies has two rows), ordered by
# client name: gross totals of each side in that currency and their difference (HaloPSA −
# Autotask); the discrepancy counts per severity are the client's, on each of its rows.
CLIENT_SCHEMA: dict[str, pl.DataType] = {
    "client": pl.String(),
    "currency": pl.String(),
    "autotask_gross": MONEY,
    "halopsa_gross": MONEY,
    "difference": MONEY,
    **{severity: pl.Int64() for severity in SEVERITIES},
}

# Rows an input could not load: platform, file and row number as read, the reasons, and the
# raw values as a JSON object (text).
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "platform": pl.String(),
    "file": pl.String(),
    "row": pl.Int64(),
    "line_ref": pl.String(),
    "disposition": pl.String(),
    "reasons": pl.String(),
    "raw": pl.String(),
}


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def check_schema(
    frame: pl.DataFrame | pl.LazyFrame, schema: Mapping[str, pl.DataType], name: str
) -> None:
    """Refuse a frame whose columns or types differ from its declared schema (a lazy frame's
    as its plan gives them, without computing it)."""
    found = dict(frame.collect_schema())
    if found != dict(schema):
        raise TypeError(f"{name}: columns {found} differ from {dict(schema)}")


def height(frame: pl.DataFrame | pl.LazyFrame) -> int:
    """The number of rows of a frame, a lazy one counted by its plan (a Parquet scan from the
    file's metadata)."""
    if isinstance(frame, pl.DataFrame):
        return frame.height
    return int(frame.select(pl.len()).collect().item())


# Rows (discrepancies, their lines and clients) from which a report's tables are read a column at
# a time rather than whole (held, page_tables).
COLUMNWISE_FROM = 200_000


def held(*frames: pl.LazyFrame) -> list[pl.DataFrame] | tuple[pl.LazyFrame, ...]:
    """The lazy frames (a run's scans of Parquet files) computed whole, all at once, when they
    hold fewer than COLUMNWISE_FROM rows together: every column, count and filter a report
    then makes of them is read from memory (at 20,000 lines a side, a plan computed for each
    of about a hundred cost 1 ms or more each); larger ones as they are."""
    counts = pl.collect_all(frame.select(pl.len()) for frame in frames)
    if sum(int(count.item()) for count in counts) >= COLUMNWISE_FROM:
        return frames
    return pl.collect_all(frames)


def empty_frame(schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(schema))


def from_text_columns(
    data: Mapping[str, list[Any]] | list[dict[str, Any]], schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """The inverse of text_columns: a frame of the schema from its columns as lists, or from
    its rows as dicts (compact_records, parsed), decimals and dates as their exact text; other
    keys are left out."""

    def typed(name: str, dtype: pl.DataType) -> pl.Expr:
        if isinstance(dtype, pl.Date):
            return pl.col(name).str.to_date("%Y-%m-%d")
        return pl.col(name).cast(dtype)

    texts = {
        name: pl.String() if isinstance(dtype, AS_TEXT) else dtype for name, dtype in schema.items()
    }
    frame = (
        pl.DataFrame({name: data[name] for name in schema}, schema=texts)
        if isinstance(data, Mapping)
        else pl.from_dicts(data, schema=texts)
    )
    return frame.select(typed(name, dtype) for name, dtype in schema.items())


def conform(frame: Frame, schema: Mapping[str, pl.DataType]) -> Frame:
    """The schema's columns of a frame (or of a lazy frame's plan), in its order, cast to its
    types."""
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def with_ids(frame: pl.DataFrame | pl.LazyFrame, ids: pl.Series) -> pl.DataFrame:
    """The rows of `frame` whose id is among `ids` (String), in the frame's order: a filter
    (of a Parquet scan, the other columns are read only where an id is found)."""
    return frame.lazy().filter(pl.col("id").is_in(ids.implode())).collect()


# The types carried as their exact text (`-1690.50`, `79.0000`, `2026-11-01`) in summary.json,
# discrepancies.json and the page.
AS_TEXT = (pl.Decimal, pl.Date)


def text_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimals and dates as their exact text (AS_TEXT); other columns unchanged."""
    return frame.with_columns(
        pl.col(name).cast(pl.String)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, AS_TEXT)
    )


# --- summary parts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sides(Generic[T]):
    """One value per platform."""

    autotask: T
    halopsa: T


@dataclass(frozen=True)
class SideTotals:
    """One side's lines in one currency. tax and gross add up only the tax the lines state;
    tax_unknown counts the lines whose tax is not stated (never taken as zero)."""

    net: Decimal
    tax: Decimal
    gross: Decimal
    lines: int
    tax_unknown: int


@dataclass(frozen=True)
class Amounts:
    """HaloPSA − Autotask, net, tax and gross, in one currency."""

    net: Decimal
    tax: Decimal
    gross: Decimal


@dataclass(frozen=True)
class CurrencyTotals:
    autotask: SideTotals
    halopsa: SideTotals
    difference: Amounts


@dataclass(frozen=True)
class Verdict:
    """Ready for cutover when no blocker is open and no row is quarantined; counts of the open
    discrepancies per severity (expected: retired services), and of the accepted ones
    (reconcile accept), whatever their severity: they leave the open counts."""

    ready: bool
    blockers: int
    warnings: int
    info: int
    expected: int
    accepted: int


@dataclass(frozen=True)
class MatchStage:
    """One matching stage: the match groups it formed and the lines of each side in them."""

    stage: str
    label: str
    groups: int
    autotask_lines: int
    halopsa_lines: int


@dataclass(frozen=True)
class BridgeEntry:
    """One bar of a currency's variance bridge: the gross difference (HaloPSA − Autotask, in
    that currency) of the match groups a rule explains first."""

    rule: str
    title: str
    amount: Decimal


@dataclass(frozen=True)
class Counts:
    """Everything the rules found per severity, of it what was accepted per severity, and per
    rule and severity (every rule, zeros included)."""

    by_severity: Mapping[str, int]
    accepted: Mapping[str, int]
    by_rule: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class CurrencyControl:
    """One input's control totals in one currency: its rows (skipped ones aside) read = loaded +
    quarantined + excluded, and their net amounts alike, in `currency` (None: the rows whose
    currency could not be read, all quarantined, never counted under another currency).
    rows_unreadable_amount of the rows quarantined or excluded have no net amount to count;
    tax_loaded is the loaded lines' tax."""

    currency: str | None
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_excluded: int
    rows_unreadable_amount: int
    net_read: Decimal
    net_loaded: Decimal
    net_quarantined: Decimal
    net_excluded: Decimal
    tax_loaded: Decimal

    @property
    def balanced(self) -> bool:
        """Rows and net read = loaded + quarantined + excluded."""
        rows = self.rows_loaded + self.rows_quarantined + self.rows_excluded
        net = self.net_loaded + self.net_quarantined + self.net_excluded
        return self.rows_read == rows and self.net_read == net


@dataclass(frozen=True)
class Control:
    """One input's control totals: every row read is loaded, quarantined, excluded or skipped
    (counts), and per currency the rows and net amounts of each (by_currency: by currency code,
    the unknown currency last; empty for a run kept before they were). files, invoice_checks
    and dialect as the load recorded them; warnings are the load's own."""

    load_id: str
    platform: str
    shape: str
    source: str
    date_convention: str
    number_format: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_excluded: int
    rows_skipped: int
    rows_unreadable_amount: int
    files: tuple[Mapping[str, JSONValue], ...]
    warnings: tuple[str, ...]
    invoice_checks: tuple[Mapping[str, JSONValue], ...]
    dialect: Mapping[str, JSONValue]
    by_currency: tuple[CurrencyControl, ...] = ()

    @property
    def balanced(self) -> bool:
        """Rows read = loaded + quarantined + excluded + skipped, and each currency's rows and
        net amounts add up (CurrencyControl.balanced) to the input's rows but the skipped."""
        parts = (self.rows_loaded, self.rows_quarantined, self.rows_excluded, self.rows_skipped)
        counted = sum(c.rows_read for c in self.by_currency) + self.rows_skipped
        return (
            self.rows_read == sum(parts)
            and (not self.by_currency or counted == self.rows_read)
            and all(c.balanced for c in self.by_currency)
        )


@dataclass(frozen=True)
class MappingFile:
    file: str
    sha256: str


@dataclass(frozen=True)
class UnusedMapping:
    """A mapping row that maps nothing in this cycle (a likely typo), and why."""

    kind: str
    autotask: str
    halopsa: str
    file: str
    line: int  # the line of the file the row starts on (the header is usually line 1)
    problem: str


@dataclass(frozen=True)
class Unmapped:
    """A client or item without a mapping; the suggested match and why (or why none)."""

    kind: str
    side: str
    value: str
    suggestion: str | None
    score: str | None  # name similarity as printed, 0-100
    basis: str | None


@dataclass(frozen=True)
class LoweredSeverity:
    rule: str
    default: str
    set: str


@dataclass(frozen=True)
class RuleInForce:
    """A rule's severity and tolerances as configured."""

    severity: str
    tolerances: Mapping[str, Decimal]


@dataclass(frozen=True)
class SettingsInForce:
    """The settings the verdict was measured against: the settings file (path and content
    hash, or none), every setting differing from its default and where it came from, every
    lowered severity."""

    source: str | None
    sha256: str | None
    currency: str | None
    retired_items: tuple[str, ...]
    retired_clients: tuple[str, ...]
    fuzzy_min_score: float
    changed: Mapping[str, JSONValue]
    # Where each changed setting came from: the settings file's path, an environment variable
    # (RECONCILE_CURRENCY) or a flag (--currency). Not part of the run's fingerprint.
    changed_from: Mapping[str, str]
    lowered_severities: tuple[LoweredSeverity, ...]
    rules: Mapping[str, RuleInForce]

    def as_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = plain(self)
        out["rules"] = {
            code: {"severity": r.severity, **{k: str(v) for k, v in r.tolerances.items()}}
            for code, r in self.rules.items()
        }
        return out

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> SettingsInForce:
        """The settings back from as_json_dict."""
        rules = {
            code: RuleInForce(
                severity=r["severity"],
                tolerances={k: Decimal(v) for k, v in r.items() if k != "severity"},
            )
            for code, r in data["rules"].items()
        }
        hints = field_types(cls)
        return cls(
            **{
                # A run kept before changed_from was recorded: the sources are unknown.
                f.name: from_plain(hints[f.name], data.get(f.name, {}))
                if f.name == "changed_from"
                else from_plain(hints[f.name], data[f.name])
                for f in dataclasses.fields(cls)
                if f.name != "rules"
            },
            rules=rules,
        )


# --- the finance workflow (reconcile.acceptance, reconcile.history, reconcile.signoff) ------


@dataclass(frozen=True)
class AcceptedDifference:
    """An acceptance in force (reconcile accept): the discrepancy as accepted (money in its
    currency, refs `;`-joined), why, who, when (UTC text), the last day it holds (or None), the
    run it was accepted on and its ledger entry with that entry's hash."""

    id: str
    rule: str
    severity: str
    client: str | None
    currency: str | None
    autotask_amount: Decimal | None
    halopsa_amount: Decimal | None
    difference: Decimal | None
    gross_difference: Decimal | None
    message: str | None
    autotask_refs: str | None
    halopsa_refs: str | None
    reason: str
    by: str
    at: str
    until: str | None
    accepted_on_run: int
    entry: int
    entry_hash: str


@dataclass(frozen=True)
class LapsedAcceptance(AcceptedDifference):
    """An acceptance that no longer applies in this run, and why (its day passed, the
    discrepancy changed or is gone)."""

    why: str


@dataclass(frozen=True)
class Acceptances:
    accepted: tuple[AcceptedDifference, ...] = ()
    lapsed: tuple[LapsedAcceptance, ...] = ()


WORKBOOK_FILE = "discrepancies.xlsx"


@dataclass(frozen=True)
class Workbook:
    """What the run did with the Excel workbook of its discrepancies (WORKBOOK_FILE): written
    with the other outputs, or left out ([outputs] workbook = false, `run --no-workbook`); note
    says which in a sentence for people and, when it was left out, how to write it later."""

    written: bool = True
    note: str = f"{WORKBOOK_FILE} written with the other outputs"

    @classmethod
    def left_out(cls) -> Workbook:
        return cls(
            written=False,
            note=f"{WORKBOOK_FILE} not written ([outputs] workbook = false, or --no-workbook); "
            "`reconcile workbook OUT_DIR` writes it into the run's output folder from its "
            "discrepancies.parquet",
        )


@dataclass(frozen=True)
class ChangeCounts:
    new: int
    open: int
    resolved: int


@dataclass(frozen=True)
class ResolvedDiscrepancy:
    """A discrepancy of the previous run that is gone from this one, as it was."""

    id: str
    rule: str
    severity: str
    client: str | None
    currency: str | None
    gross_difference: Decimal | None
    message: str


@dataclass(frozen=True)
class TrendPoint:
    """One run of the cycle: its open counts (as its verdict gave them), what was new, still
    open and resolved (None for a run kept before history was recorded), and its gross
    difference per currency."""

    run: int
    run_id: str
    blockers: int
    warnings: int
    info: int
    expected: int
    accepted: int
    new: int | None
    open: int | None
    resolved: int | None
    difference: Mapping[str, Decimal]


@dataclass(frozen=True, eq=False)
class History:
    """This run (its number in the workspace) against the previous run of its cycle (None for
    the first): discrepancy ids new and still open in this run's order (String series: a
    large run's first has a million new, 16 bytes each in polars, about 80 as Python
    strings), those resolved, and the trend over the cycle's runs, this one last."""

    run: int
    previous_run: int | None
    previous_run_id: str | None
    counts: ChangeCounts
    new: pl.Series
    open: pl.Series
    resolved: tuple[ResolvedDiscrepancy, ...]
    trend: tuple[TrendPoint, ...]


@dataclass(frozen=True)
class Signoff:
    """A sign-off of the cycle (reconcile signoff): who, in what role, when, with what note,
    the run and fingerprint signed, the log entry and its hash, the accepted differences the
    signer accepted too; its standing against this run: state "valid" or "superseded" (by run
    superseded_by), and why."""

    entry: int
    hash: str
    run: int
    run_id: str
    by: str
    role: str | None
    note: str | None
    at: str
    accepted_by_signer: tuple[str, ...]
    state: str
    why: str
    superseded_by: int | None


@dataclass(frozen=True, eq=False)
class Summary:
    """The run's summary, exported as summary.json (see as_json_dict for its shape).

    totals: per ISO currency, the main one first; open_variance: per currency, the open
    discrepancies' gross differences each taken as positive; lines: lines per side, every
    currency; match_rate: the share of each side's lines matched (a decimal fraction);
    bridge: per currency, gross amounts adding up to that currency's gross difference;
    clients: CLIENT_SCHEMA, a frame or a lazy frame (a run's scans a Parquet file:
    run._clients) read a chunk of rows at a time; unmapped_contracts: how many contracts are
    unmapped (contracts only order candidates, so they are counted, not listed); acceptances
    applied and lapsed, history (None until the run is numbered in its workspace) and the
    cycle's signoffs, oldest first: the run's place in the finance workflow; workbook: whether
    the run wrote discrepancies.xlsx (Workbook)."""

    run_id: str
    reconcile_version: str
    cycle: str
    verdict: Verdict
    totals: Mapping[str, CurrencyTotals]
    open_variance: Mapping[str, Decimal]
    lines: Sides[int]
    match_stages: tuple[MatchStage, ...]
    match_rate: Sides[Decimal]
    counts: Counts
    bridge: Mapping[str, tuple[BridgeEntry, ...]]
    controls: tuple[Control, ...]
    mappings: tuple[MappingFile, ...]
    unused_mappings: tuple[UnusedMapping, ...]
    unmapped: tuple[Unmapped, ...]
    unmapped_contracts: int
    clients: pl.DataFrame | pl.LazyFrame
    config: SettingsInForce
    acceptances: Acceptances = Acceptances()
    history: History | None = None
    signoffs: tuple[Signoff, ...] = ()
    workbook: Workbook = Workbook()

    def __post_init__(self) -> None:
        check_schema(self.clients, CLIENT_SCHEMA, "clients")

    @property
    def currencies(self) -> list[str]:
        return list(self.totals)

    @cached_property
    def _json_parts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """summary.json's content but the clients, as the members before and after them:
        JSON-able values, money as exact strings (made once; not to be modified)."""
        before = {
            "run_id": self.run_id,
            "reconcile_version": self.reconcile_version,
            "cycle": self.cycle,
            "verdict": plain(self.verdict),
            "currencies": self.currencies,
            "totals": plain(self.totals),
            "open_variance": plain(self.open_variance),
            "lines": plain(self.lines),
            "match_stages": plain(self.match_stages),
            "match_rate": plain(self.match_rate),
            "counts": plain(self.counts),
            "bridge": plain(self.bridge),
            "controls": plain(self.controls),
            "inputs": [
                {
                    "platform": c.platform,
                    "shape": c.shape,
                    "source": c.source,
                    "load_id": c.load_id,
                    "files": plain(c.files),
                }
                for c in self.controls
            ],
            "mappings": plain(self.mappings),
            "unused_mappings": plain(self.unused_mappings),
            "unmapped": plain(self.unmapped),
            "unmapped_contracts": self.unmapped_contracts,
        }
        after = {
            "config": self.config.as_json_dict(),
            "workbook": plain(self.workbook),
            "acceptances": plain(self.acceptances),
            "history": plain(self.history),
            "signoffs": plain(self.signoffs),
        }
        return before, after

    def json_pieces(self, indent: bool = False) -> Iterator[bytes]:
        """summary.json's content as JSON, in pieces: indented for people with one trailing
        newline (the file), or compact (the workspace's runs table, the kept report data).
        {run_id, …, unmapped_contracts, clients: [{CLIENT_SCHEMA's columns}], config, …,
        signoffs}; the clients (one per client and currency: 170,000 at 1M lines) are encoded
        by polars a chunk at a time (json_records), and so are history's ids (json_value), the
        rest by orjson, then all joined."""
        before, after = self._json_parts
        clients = row_chunks(self.clients)
        if indent:
            option = orjson.OPT_INDENT_2
            yield orjson.dumps(before, option=option)[: -len(b"\n}")] + b',\n  "clients": '
            yield from json_records(clients, depth=1)
            yield b","
            yield from json_members(after, 0)
            yield b"\n}\n"
        else:
            yield orjson.dumps(before)[:-1] + b',"clients":'
            yield from compact_records(clients)
            yield b","
            yield from json_members(after, None)
            yield b"}"

    def json_without_clients(self) -> bytes:
        """summary.json's content, compact, without its `clients` member: what the workspace
        keeps in runs.summary (the clients go to its run_clients table; history.kept_run puts
        them back in their place, after unmapped_contracts)."""
        before, after = self._json_parts
        return b"".join(json_value({**before, **after}, None))

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Summary:
        """The summary back from its JSON (json_pieces) as parsed (the derived currencies and
        inputs left out; a member with a default that a run kept before it existed, such as
        workbook, takes its default)."""
        hints = get_type_hints(cls)
        special = {"clients", "config"}
        return cls(
            **{
                f.name: from_plain(hints[f.name], data[f.name])
                for f in dataclasses.fields(cls)
                if f.name not in special and (f.name in data or f.default is dataclasses.MISSING)
            },
            clients=from_text_columns(data["clients"], CLIENT_SCHEMA),
            config=SettingsInForce.from_json_dict(data["config"]),
        )


@dataclass(frozen=True)
class RuleText:
    """What the report says about a rule: its title, default severity and explanation."""

    title: str
    severity: str
    explanation: str


@dataclass(frozen=True)
class Exclusion:
    """Rows of one platform excluded by design for one reason (quarantine.csv's disposition
    `excluded`: HaloPSA group headers, Autotask items posted but not invoiced, …): in the
    export, not billed lines, compared with nothing."""

    platform: str
    reason: str
    rows: int


@dataclass(frozen=True, eq=False)
class ReportData:
    """Everything the report shows: the run's summary, the rules' texts, every discrepancy
    (DISCREPANCY_SCHEMA) with its lines (LINE_SCHEMA), and the quarantined rows
    (QUARANTINE_SCHEMA). The discrepancies and their lines are frames, or lazy frames (a run's
    scan Parquet files: run.report_data) that the report reads a column, a count or a few rows
    at a time, never whole."""

    summary: Summary
    rules: Mapping[str, RuleText]
    discrepancies: pl.DataFrame | pl.LazyFrame
    lines: pl.DataFrame | pl.LazyFrame
    quarantine: pl.DataFrame
    title: str = "Parallel billing reconciliation"
    signed: Signoff | None = None  # the sign-off a sign-off pack's copy of the report shows
    excluded: tuple[Exclusion, ...] = ()  # the rows excluded by design, by platform and reason

    def __post_init__(self) -> None:
        check_schema(self.discrepancies, DISCREPANCY_SCHEMA, "discrepancies")
        check_schema(self.lines, LINE_SCHEMA, "lines")
        check_schema(self.quarantine, QUARANTINE_SCHEMA, "quarantine")

    def json_pieces(self) -> Iterator[bytes]:
        """The whole report data as compact JSON, in pieces, as the workspace keeps it with the
        run (history.report_blob): {summary: Summary.json_pieces, rules: {code: RuleText}, title,
        signed, excluded: [Exclusion], discrepancies, lines, quarantine: {column: [value, ...]}},
        decimals and dates as their exact text; the tables encoded by polars a column at a time
        (json_columns). from_json_dict reads it back."""
        yield b'{"summary":'
        yield from self.summary.json_pieces()
        head = {
            "rules": plain(self.rules),
            "title": self.title,
            "signed": plain(self.signed),
            "excluded": plain(self.excluded),
        }
        yield b"," + orjson.dumps(head)[1:-1]
        for name in FRAMES:
            yield b"," + orjson.dumps(name) + b":"
            yield from json_columns(getattr(self, name))
        yield b"}"

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> ReportData:
        return cls(
            summary=Summary.from_json_dict(data["summary"]),
            rules=from_plain(Mapping[str, RuleText], data["rules"]),
            title=data["title"],
            signed=from_plain(Signoff | None, data["signed"]),
            # Kept by runs since the report shows them; none from earlier ones.
            excluded=from_plain(tuple[Exclusion, ...], data.get("excluded", [])),
            **{name: from_text_columns(data[name], schema) for name, schema in FRAMES.items()},
        )


FRAMES = {
    "discrepancies": DISCREPANCY_SCHEMA,
    "lines": LINE_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
}


# --- JSON -------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A dataclass, mapping or sequence as JSON-able values: fields in declaration order,
    decimals and dates as their exact text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Decimal | dt.date):
        return str(value)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    return value


PLAIN_ITEMS = (str, int, bool)  # types from_plain returns as they are
# Each dataclass's field types, resolved once (from_plain makes one object per accepted
# difference, thousands a run: resolving them each time was most of a re-run's Python time).
_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    """get_type_hints(cls), resolved on first use and kept (the same dict each time: read it
    only)."""
    if cls not in _FIELD_TYPES:
        _FIELD_TYPES[cls] = get_type_hints(cls)
    return _FIELD_TYPES[cls]


def from_plain(kind: Any, value: Any) -> Any:
    """The inverse of plain: `value` (JSON-able) as the type `kind` a field declares:
    dataclasses (generic ones too) from their fields, Decimal from its text, tuples and
    mappings item by item, None where the type allows it; other values as they are."""
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        return from_plain(next(a for a in args if a is not type(None)), value)
    cls = origin or kind
    if dataclasses.is_dataclass(cls) and isinstance(cls, type):
        bound = dict(zip(getattr(cls, "__parameters__", ()), args, strict=False))
        hints = field_types(cls)
        # A field with a default that a kept value predates (Control.by_currency) takes it.
        return cls(
            **{
                f.name: from_plain(bound.get(hints[f.name], hints[f.name]), value[f.name])
                for f in dataclasses.fields(cls)
                if f.name in value or f.default is dataclasses.MISSING
            }
        )
    if cls is Decimal:
        return Decimal(value)
    if cls is tuple:
        if args[0] in PLAIN_ITEMS:  # as they are: one tuple, not a call per item (ids)
            return tuple(value)
        return tuple(from_plain(args[0], item) for item in value)
    if cls in (Mapping, dict):
        return {key: from_plain(args[1], item) for key, item in value.items()}
    if cls is pl.Series:  # History's ids: a list of text, or a series as it is
        return value if isinstance(value, pl.Series) else pl.Series(value, dtype=pl.String)
    return value


def json_list(series: pl.Series) -> bytes:
    """`orjson.dumps(series.to_list())`, byte for byte, encoded by polars (no Python object per
    value): a list of String, integer or boolean values, nulls `null`, escaped as json_records."""
    return b"".join(json_list_pieces(series))


LIST_CHUNK = 131_072  # values encoded at a time by json_list_pieces (a few MB of JSON)


def json_list_pieces(series: pl.Series) -> Iterator[bytes]:
    """json_list in pieces, LIST_CHUNK values at a time: a long column's JSON is never held
    whole (as polars' text, then as bytes)."""
    if series.is_empty():
        yield b"[]"
        return
    for start in range(0, len(series), LIST_CHUNK):
        part = series.slice(start, LIST_CHUNK).rename("v").to_frame()
        member = part.select(_json_object("v")).item()
        # `{"v":[a,b]}` less `{"v":[` (`{"v":` first) and `]}` (`}` last): `[a,b` ... `,c]`.
        head = len(b'{"v":') if start == 0 else len(b'{"v":[')
        tail = 1 if start + LIST_CHUNK >= len(series) else 2
        yield (b"," if start else b"") + member[head:-tail]


def _json_object(column: str) -> pl.Expr:
    """A frame's column (at most LIST_CHUNK values) as the JSON object `{"v":[a,b]}`, Binary,
    encoded by polars (one value: its name the column's)."""
    struct = pl.struct(pl.col(column).implode().alias("v"))
    return struct.struct.json_encode().cast(pl.Binary).alias(column)


def json_lines_list(series: pl.Series, depth: int) -> Iterator[bytes]:
    """`orjson.dumps(series.to_list(), option=OPT_INDENT_2)` in pieces, byte for byte, as it
    stands `depth` levels deep in an indented document (json_records' `depth`): one value a
    line, encoded by polars LIST_CHUNK values at a time (values as json_list's)."""
    if series.is_empty():
        yield b"[]"
        return
    item = "\n" + "  " * (depth + 1)
    for start in range(0, len(series), LIST_CHUNK):
        part = series.slice(start, LIST_CHUNK).rename("v").to_frame()
        lines = part.select(_json_values(part)).select(
            (pl.lit(item) + pl.col("v")).str.join(",").cast(pl.Binary)
        )
        yield (b"," if start else b"[") + lines.item()
    yield ("\n" + "  " * depth + "]").encode()


def json_value(value: Any, depth: int | None) -> Iterator[bytes]:
    """orjson's JSON of a JSON-able `value` in pieces, byte for byte: indented (OPT_INDENT_2) as
    it stands `depth` levels deep in an indented document, or compact when `depth` is None;
    but that `value`, or a value of a mapping in it (at any depth), may be a series of String,
    integer or boolean values, encoded as a list by polars (json_list_pieces,
    json_lines_list): no Python object per value. Other values are encoded by orjson."""
    if isinstance(value, pl.Series):
        yield from json_list_pieces(value) if depth is None else json_lines_list(value, depth)
    elif isinstance(value, Mapping) and value:
        yield b"{"
        yield from json_members(value, depth)
        yield b"}" if depth is None else ("\n" + "  " * depth + "}").encode()
    elif depth is None:
        yield orjson.dumps(value)
    else:
        # JSON text holds no raw newline (a string's is escaped): each one starts a line.
        yield orjson.dumps(value, option=orjson.OPT_INDENT_2).replace(
            b"\n", ("\n" + "  " * depth).encode()
        )


def json_members(members: Mapping[str, Any], depth: int | None) -> Iterator[bytes]:
    """The members of a non-empty mapping of JSON-able values (json_value's), in its order, as
    json_value writes them between the mapping's braces: `"a":1,"b":…` compact (`depth` None),
    or each on a line of its own one level in from `depth`."""
    for n, (key, member) in enumerate(members.items()):
        comma = b"," if n else b""
        if depth is None:
            yield comma + orjson.dumps(key) + b":"
        else:
            yield comma + ("\n" + "  " * (depth + 1)).encode() + orjson.dumps(key) + b": "
        yield from json_value(member, None if depth is None else depth + 1)


def json_columns(
    frame: pl.DataFrame | pl.LazyFrame,
    convert: Callable[[pl.Series], pl.Series] | None = None,
) -> Iterator[bytes]:
    """`orjson.dumps(text_columns(frame).to_dict(as_series=False))` in pieces, byte for byte:
    {column: [value, ...]} in the frame's column order, decimals and dates as their exact text,
    each column passed through `convert` (when given) before it is encoded. A frame of at most
    LIST_CHUNK rows is converted whole and its columns encoded by one select (a select a column
    cost about 0.3 ms each, most of a small report's tables); a larger frame, or a lazy frame
    (computed a column at a time), a column at a time (json_list_pieces): such a table is never
    held converted."""

    def converted(series: pl.Series) -> pl.Series:
        if convert is not None:
            series = convert(series)
        return series.cast(pl.String) if isinstance(series.dtype, AS_TEXT) else series

    yield b"{"
    names = frame.collect_schema().names()
    if isinstance(frame, pl.DataFrame) and frame.height <= LIST_CHUNK:
        ready = pl.DataFrame([converted(s).rename(f"c{n}") for n, s in enumerate(frame)])
        encoded = ready.select(_json_object(c) for c in ready.columns).row(0)
        for n, (name, member) in enumerate(zip(names, encoded, strict=True)):
            # `{"v":[a,b]}` less `{"v":` and `}`, as json_list_pieces.
            yield (b"," if n else b"") + orjson.dumps(name) + b":" + member[len(b'{"v":') : -1]
    else:
        for n, name in enumerate(names):
            yield (b"," if n else b"") + orjson.dumps(name) + b":"
            series = (
                frame.select(name).collect().to_series()
                if isinstance(frame, pl.LazyFrame)
                else frame.get_column(name)
            )
            yield from json_list_pieces(converted(series))
    yield b"}"


# A table whole, or as consecutive frames of one schema in its order (read back in chunks).
Chunked = pl.DataFrame | Iterable[pl.DataFrame]


def chunks(table: Chunked) -> Iterable[pl.DataFrame]:
    """A table as consecutive frames: a frame is one."""
    return [table] if isinstance(table, pl.DataFrame) else table


RECORDS_CHUNK = 8192  # rows encoded at a time by json_records (about 10 MB of JSON)


def json_records(frame: Chunked, depth: int = 0) -> Iterator[bytes]:
    """`orjson.dumps(frame.to_dicts(), option=OPT_INDENT_2)` in pieces, byte for byte, as it
    stands `depth` levels deep in an indented document (each line but the first indented by
    two spaces a level), encoded by polars a chunk of rows at a time (no Python object per
    value). `frame`: a frame, or a table as consecutive frames of one schema (the bytes of
    their concatenation, however it is chunked, holding one frame); at least one column, of
    String, integer, boolean, decimal or date values, decimals and dates written as their
    exact text (text_columns, a chunk at a time: the whole frame is never held as text); nulls
    are `null`. Values are escaped as orjson escapes them: `"`, `\\` and control characters,
    nothing else."""
    pad = "  " * depth
    opened = False
    for part in chunks(frame):
        for start in range(0, part.height, RECORDS_CHUNK):
            # Two steps: polars encodes the columns in parallel, then joins each row's parts.
            encoded = part.slice(start, RECORDS_CHUNK).select(_json_values(part))
            yield b",\n" if opened else b"[\n"
            yield encoded.select(_json_rows(part.columns, pad).cast(pl.Binary)).item()
            opened = True
    yield ("\n" + pad + "]").encode() if opened else b"[]"


def _json_rows(columns: list[str], pad: str) -> pl.Expr:
    """The rows of a frame of JSON values (_json_values) as one indented array's items, `pad`
    before each line, joined by `,\\n` into one value."""
    keys = [orjson.dumps(name).decode() for name in columns]
    return pl.concat_str(
        [
            *(
                part
                for n, (name, key) in enumerate(zip(columns, keys, strict=True))
                for part in (
                    pl.lit((",\n" if n else pad + "  {\n") + pad + "    " + key + ": "),
                    pl.col(name),
                )
            ),
            pl.lit("\n" + pad + "  }"),
        ]
    ).str.join(",\n")


def compact_records(frame: Chunked) -> Iterator[bytes]:
    """`orjson.dumps(text_columns(frame).to_dicts())` in pieces, byte for byte (values as
    json_records, converted to text a chunk at a time; `frame` a frame or a table as
    consecutive frames, as json_records)."""
    yield b"["
    opened = False
    for part in chunks(frame):
        for start in range(0, part.height, RECORDS_CHUNK):
            rows = text_columns(part.slice(start, RECORDS_CHUNK)).select(
                pl.struct(pl.all()).struct.json_encode().str.join(",").cast(pl.Binary)
            )
            yield (b"," if opened else b"") + rows.item()
            opened = True
    yield b"]"


SCAN_ROWS = 100_000  # rows of a lazy frame computed at a time by row_chunks


def row_chunks(frame: pl.DataFrame | pl.LazyFrame) -> Chunked:
    """A frame as it is, or a lazy frame as consecutive frames of at most SCAN_ROWS rows,
    each computed when it is reached (a scan reads only its rows)."""
    if isinstance(frame, pl.DataFrame):
        return frame
    rows = height(frame)
    return (frame.slice(start, SCAN_ROWS).collect() for start in range(0, rows, SCAN_ROWS))


def _json_values(frame: pl.DataFrame) -> list[pl.Expr]:
    """Each column's values as JSON text: decimals and dates their exact text (text_columns)
    in quotes (it holds nothing JSON escapes), nulls `null`; other values a one-field object
    encoded by polars, less its `{"name":` and `}`."""
    return [
        (
            ('"' + pl.col(name).cast(pl.String) + '"').fill_null("null")
            if isinstance(dtype, AS_TEXT)
            else pl.struct(pl.col(name))
            .struct.json_encode()
            .str.strip_prefix("{" + orjson.dumps(name).decode() + ":")
            .str.strip_suffix("}")
        ).alias(name)
        for name, dtype in frame.schema.items()
    ]
