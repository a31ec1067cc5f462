"""One reconciliation run: load both sides, match, apply the rules, write every output."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import polars as pl

from reconcile import __version__, acceptance, history, ledger, signoff
from reconcile.config import UNFINGERPRINTED_SECTIONS, Config, Settings
from reconcile.crosswalk import name_keys, read_mappings
from reconcile.duck import frame_of
from reconcile.errors import EXIT_BAD_INPUT, EXIT_BLOCKERS, EXIT_OK, InputError
from reconcile.ingest import (
    LoadResult,
    check_currencies,
    check_cycle,
    load_paths,
    refuse_other_readings,
    sha256,
)
from reconcile.load.base import HEADERS, PLATFORM_NAMES, normalise_header
from reconcile.match import MatchResult, match_cycle
from reconcile.outputs import (
    output_folder,
    pause,
    refuse_foreign,
    write_csv_scan,
    write_parquet_parts,
    write_xlsx,
)
from reconcile.report import DEFAULT_TEMPLATE_DIR, compiled_environment, report_pieces
from reconcile.report_model import (
    CLIENT_SCHEMA,
    DISCREPANCY_SCHEMA,
    LINE_SCHEMA,
    QUARANTINE_SCHEMA,
    WORKBOOK_FILE,
    Acceptances,
    AcceptedDifference,
    Amounts,
    BridgeEntry,
    Control,
    Counts,
    CurrencyControl,
    CurrencyTotals,
    Exclusion,
    History,
    LapsedAcceptance,
    LoweredSeverity,
    MappingFile,
    MatchStage,
    ReportData,
    RuleInForce,
    RuleText,
    SettingsInForce,
    Sides,
    SideTotals,
    Signoff,
    Summary,
    Unmapped,
    UnusedMapping,
    Verdict,
    Workbook,
    conform,
    from_plain,
    held,
    json_records,
    plain,
)
from reconcile.rules import SEVERITY_ORDER, Rule, bridge, discover, run_rules
from reconcile.store import (
    Workspace,
    insertion_order_kept,
    position_ranges,
    read_ranges,
    scanning,
)
from reconcile.tables import DISCREPANCIES
from reconcile.timing import stage
from reconcile.wording import counted
from reconcile.workbook import PARQUET_FILE, read_chunks, table_rows
from reconcile.workbook_child import CHILD_FROM_BYTES, WorkbookChild

if TYPE_CHECKING:
    from jinja2 import Environment

T = TypeVar("T")

CENT = Decimal("0.01")
TEXT, DATE = pl.String(), pl.Date()
MONEY, MONEY_SUM = pl.Decimal(18, 2), pl.Decimal(38, 2)
PLACES, PLACES_SUM = pl.Decimal(18, 4), pl.Decimal(38, 4)  # quantities and unit prices
# One row per discrepancy. `measure` says what autotask_amount/halopsa_amount/difference are
# (the rule's own figures: net, tax or gross); autotask_net … halopsa_gross are the sums of the
# lines involved on each side; net/tax/gross_difference are the part of the totals' difference
# the discrepancy accounts for (each line group counted once, as in the variance bridge), so
# they add up to the totals' difference. Money in the line's currency. A run without
# discrepancies writes the same types (a finance query summing an empty file gets 0, not a type
# error); the workbook is written from them (outputs.write_xlsx), and `reconcile workbook`
# checks the Parquet file against them.
OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "id": TEXT, "rule": TEXT, "severity": TEXT, "status": TEXT, "client": TEXT,
    "currency": TEXT, "stage": TEXT, "item": TEXT, "contract": TEXT,
    "service_period_start": DATE, "service_period_end": DATE,
    "autotask_invoices": TEXT, "halopsa_invoices": TEXT,
    "autotask_quantity": PLACES_SUM, "halopsa_quantity": PLACES_SUM,
    "autotask_unit_price": PLACES, "halopsa_unit_price": PLACES,
    "measure": TEXT, "autotask_amount": MONEY, "halopsa_amount": MONEY, "difference": MONEY,
    "autotask_net": MONEY_SUM, "autotask_tax": MONEY_SUM, "autotask_gross": MONEY,
    "halopsa_net": MONEY_SUM, "halopsa_tax": MONEY_SUM, "halopsa_gross": MONEY,
    "net_difference": MONEY, "tax_difference": MONEY, "gross_difference": MONEY,
    "exposure": MONEY, "root_cause": TEXT, "autotask_refs": TEXT, "halopsa_refs": TEXT,
    "message": TEXT,
}  # fmt: skip
OUTPUT_COLUMNS = list(OUTPUT_SCHEMA)
REPORT_LINE_CAP = 50  # lines shown per side of one discrepancy in the report
# The files a run writes into --out (write_outputs): a folder holding anything else is refused.
RUN_FILES = frozenset({
    "report.html", "discrepancies.csv", PARQUET_FILE, WORKBOOK_FILE,
    "discrepancies.json", "summary.json", "quarantine.csv",
})  # fmt: skip


@dataclass(frozen=True)
class RunResult:
    """A run's result: its summary and loads. Its discrepancies are in its outputs and in the
    workspace's kept run (history.run_findings), never whole in Python's memory."""

    cycle: str
    out_dir: Path
    summary: Summary
    loads: tuple[LoadResult, ...]

    @property
    def open_blockers(self) -> int:
        """Blockers not accepted (acceptance.py): what keeps the run from exiting 0."""
        return self.summary.verdict.blockers

    @property
    def quarantined(self) -> int:
        return sum(c.rows_quarantined for c in self.summary.controls)

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
    refuse_foreign(out_dir, RUN_FILES)
    # A mapping file that cannot be used (a wrong header, two targets for one value) stops the
    # run before any load.
    mappings = read_mappings(maps)
    templates = _in_background(_prepared)
    loads: list[LoadResult] = []
    # An export that states no currency, with none configured, stops the run before any load.
    check_currencies([("autotask", autotask), ("halopsa", halopsa)], settings)
    for platform, paths in (("autotask", autotask), ("halopsa", halopsa)):
        if paths:
            with stage("load"):
                loads += load_paths(workspace, paths, platform, settings, replace=True)
        elif not workspace.load_ids(cycle, platform):
            raise InputError(
                f"--{platform}",
                f"no {platform} export is loaded for cycle {cycle}",
                expected=f"--{platform} FILE, or an earlier `reconcile load` for the cycle",
            )
    # Every load the run holds (given now or earlier) read with the run's settings.
    refuse_other_readings(workspace, settings)
    size = exports_bytes([*autotask, *halopsa])
    # Started once the loads are done: they use both cores, the match and the rules one.
    with (
        _workbook_child(config, size) as child,
        _checkpoint_beside(workspace, size) as checkpointed,
    ):
        rules = discover()
        con = workspace.con
        with stage("match"):
            matched = match_cycle(con, cycle, mappings, config)
        with stage("rules"):
            run_rules(con, config, rules)
            with_root_causes(con, matched)
            with_quarantine_notes(con, cycle)
            applied, lapsed = acceptance.apply(
                con,
                DISCREPANCIES.name,
                acceptance.standing(ledger.entries(con, cycle), cycle),
                ledger.now().date(),
            )
            acceptance.mark(con, applied)
            bars = bridge(con, rules)
        with stage("outputs"), report_folder(workspace) as folder:
            # Done before the outputs set DuckDB's memory limit (store.scanning) and write.
            checkpointed()
            with output_folder(out_dir, RUN_FILES) as out:
                # The table first: the workbook's writer writes from it while the run goes on.
                write_parquet_parts(
                    discrepancy_parts(workspace, OUTPUT_COLUMNS), out / PARQUET_FILE
                )
                pause(PARQUET_FILE)
                if child is not None:
                    child.write(out / PARQUET_FILE, out / WORKBOOK_FILE)
                # What the rules' queries left in DuckDB's memory let go before the summary's run.
                workspace.release_memory()
                summary = _summary(workspace, cycle, matched, bars, rules, maps, config, folder)
                number = workspace.next_run_number()
                summary = _workflow(workspace, number, summary, applied, lapsed)
                # What the summary's queries left let go before the outputs are read.
                workspace.release_memory()
                result = RunResult(cycle, out_dir, summary, tuple(loads))
                env = templates.result()
                report = write_outputs(result, workspace, rules, folder, out, child, env)
            # What the outputs' queries left in DuckDB's memory let go before it takes the run in.
            workspace.release_memory()
            workspace.save_run(
                number,
                summary.run_id,
                cycle,
                summary.json_without_clients(),
                f"SELECT position, {', '.join(CLIENT_SCHEMA)} FROM {RUN_CLIENTS}",
                f"SELECT {kept_columns([*OUTPUT_COLUMNS, 'acceptance'])} FROM {DISCREPANCIES.name}",
                report,
            )
            con.execute(f"DROP TABLE {DISCREPANCIES.name}")
            con.execute(f"DROP TABLE {RUN_CLIENTS}")
    return result


def exports_bytes(exports: list[Path]) -> int:
    """The size in bytes of the export files given (a folder's files counted)."""
    return sum(f.stat().st_size for p in exports for f in (p.rglob("*") if p.is_dir() else [p]))


@contextmanager
def _workbook_child(config: Config, size: int) -> Iterator[WorkbookChild | WorkbookThread | None]:
    """What writes the run's workbook beside its summary, report and other outputs, once given
    its job (`write`), stopped when the run ends however it ends; None when the workbook is left
    out. The child process (workbook_child), started now so that its imports are done by the
    run's outputs (beside the match and the rules, which use one core); a thread of the run
    (WorkbookThread) when the exports (`size` bytes, exports_bytes) are small enough
    (CHILD_FROM_BYTES) that the child's start costs more than it saves."""
    if not config.outputs.workbook:
        yield None
        return
    child = WorkbookThread() if size < CHILD_FROM_BYTES else WorkbookChild()
    try:
        yield child
    finally:
        child.stop()


class WorkbookThread:
    """The run's workbook written on a thread of its own process (_in_background), beside the
    run's summary, report and other outputs: XlsxWriter's Python runs while the run's thread
    waits on DuckDB or polars. WorkbookChild's interface: `write` gives the job, `wait` for
    it (its error raised as written inline), `stop` always (waits for a job given: nothing of
    the run goes on writing after it)."""

    def __init__(self) -> None:
        self.job: Future[None] | None = None

    def write(self, parquet: Path, xlsx: Path) -> None:
        """Start writing the workbook `xlsx` from the discrepancy table `parquet`."""
        self.job = _in_background(lambda: write_xlsx(_written(parquet), xlsx))

    def wait(self) -> None:
        """Return when the workbook is written, else raise what stopped it."""
        assert self.job is not None
        self.job.result()

    def stop(self) -> None:
        """Wait for a job given (its error, if any, is the run's to report through `wait`, or
        follows one the run raises already). Idempotent."""
        if self.job is not None:
            futures.wait([self.job])


# DuckDB's checkpoint_threshold (its default): a commit that leaves more in the write-ahead log
# writes the log into the file (checkpoints) before it returns.
CHECKPOINT_THRESHOLD = 16 * 2**20
LOGGED_FROM = 2**20  # bytes of log from which a run checkpoints beside its match and rules


@contextmanager
def _checkpoint_beside(workspace: Workspace, size: int) -> Iterator[Callable[[], None]]:
    """The loads' write-ahead log written into the workspace's file (Workspace.checkpoint) on a
    thread of its own (_in_background), beside the match and the rules (one core; they write
    temporary tables only), for a small cycle (exports of `size` < CHILD_FROM_BYTES bytes: a
    large one's stages let DuckDB's memory go, store.release_memory, which a checkpoint beside
    them would hold) whose log holds from LOGGED_FROM to CHECKPOINT_THRESHOLD bytes (16 MB at
    20k lines a side), which the run's last commit or the workspace's close would otherwise
    write while the run waits (0.1-0.7 s at 20k lines). Yields what waits for it, called
    before the run next sets DuckDB's memory limit or writes the workspace; waited for on
    leaving however the block ends, so the connection is never closed under it. A checkpoint
    that fails leaves the log in place (DuckDB drops it once a checkpoint is complete) for
    those later ones to write."""
    if (
        size >= CHILD_FROM_BYTES
        or not LOGGED_FROM <= workspace.logged_bytes() < CHECKPOINT_THRESHOLD
    ):
        yield lambda: None
        return
    job = _in_background(workspace.checkpoint)

    def checkpointed() -> None:
        futures.wait([job])

    try:
        yield checkpointed
    finally:
        checkpointed()


def _workflow(
    workspace: Workspace,
    number: int,
    summary: Summary,
    applied: list[acceptance.Acceptance],
    lapsed: list[acceptance.Lapse],
) -> Summary:
    """The summary with the run's place in its cycle's finance workflow: acceptances applied
    and lapsed, what is new / still open / resolved since the previous run (the run being
    number `number`) with the trend over the cycle's runs, and the cycle's sign-offs against
    this run. The run's discrepancies are read from DISCREPANCIES."""
    con, cycle = workspace.con, summary.cycle
    changes = history.changes(con, cycle, number, DISCREPANCIES.name)
    point = history.trend_point(
        {
            "run_id": summary.run_id,
            "verdict": plain(summary.verdict),
            "totals": plain(summary.totals),
            "history": changes,
        },
        number,
    )
    accepted = frame_of(
        con.sql(f"SELECT id, acceptance FROM {DISCREPANCIES.name} WHERE acceptance IS NOT NULL")
    )
    results = signoff.results_of(summary.run_id, accepted)
    return dataclasses.replace(
        summary,
        acceptances=Acceptances(
            accepted=tuple(from_plain(AcceptedDifference, a.record()) for a in applied),
            lapsed=tuple(from_plain(LapsedAcceptance, lapse.record()) for lapse in lapsed),
        ),
        history=from_plain(History, changes | {"trend": [*history.trend(con, cycle), point]}),
        signoffs=tuple(
            from_plain(Signoff, s.record()) for s in signoff.states(con, cycle, (number, results))
        ),
    )


def _open_variance(con: duckdb.DuckDBPyConnection, currencies: list[str]) -> dict[str, Decimal]:
    """Per currency (in the totals' order), the open discrepancies' gross differences each
    taken as positive."""
    sums = con.execute(
        f"""
        SELECT coalesce(a_currency, h_currency), sum(abs(gross_difference))
        FROM {DISCREPANCIES.name} WHERE severity <> 'expected' AND acceptance IS NULL
        GROUP BY 1
        """
    ).fetchall()
    found = {str(c): _cents(v) for c, v in sums}
    return {c: found[c] for c in dict.fromkeys([*currencies, *sorted(found)]) if c in found}


def with_root_causes(con: duckdb.DuckDBPyConnection, matched: MatchResult) -> None:
    """Set root_cause of the run's discrepancies (DISCREPANCIES): the id of the finding a
    discrepancy follows from. An Autotask client's lines reported missing in HaloPSA follow
    from the unmapped HaloPSA client suggested as that client (by name or by the same net
    total): map the client and they match; the first such finding in the run's order, in the
    line's currency, is the cause (a line in a currency the HaloPSA client does not bill in stays
    missing once mapped: it has no cause). The consequences keep their severity; the report
    groups them under their cause."""
    suggested = {
        r.halopsa_label: r.suggestion
        for kind, r in matched.crosswalk
        if kind == "client" and r.method == "unmapped" and r.suggestion
    }
    if not suggested:
        return
    table = DISCREPANCIES.name
    con.execute(
        f"""
        UPDATE {table} SET root_cause = c.cause
        FROM (
            SELECT s.suggestion, d.h_currency AS currency, arg_min(d.id, d.position) AS cause
            FROM {table} d
            JOIN (SELECT unnest($labels) AS label, unnest($suggestions) AS suggestion) s
                ON d.client = s.label
            WHERE d.rule = 'unmapped_client'
            GROUP BY ALL
        ) c
        WHERE {table}.rule = 'missing_in_halopsa' AND {table}.client = c.suggestion
            AND {table}.a_currency = c.currency
        """,
        {"labels": list(suggested), "suggestions": list(suggested.values())},
    )


# The rule reporting a line that no line of a platform matches, by that platform.
MISSING_IN = {"halopsa": "missing_in_halopsa", "autotask": "missing_in_autotask"}


def with_quarantine_notes(con: duckdb.DuckDBPyConnection, cycle: str) -> None:
    """Add to the message of the run's discrepancies (DISCREPANCIES) that a platform's rows the
    cycle's loads quarantined may explain (not the expected ones) that they were quarantined:
    a quarantined row is in the export but compared with nothing. A finding whose client's
    rows of that platform were quarantined (_client_quarantine_notes) names them and where to
    look; any other of a MISSING_IN rule gets how many rows of the platform no line matches in
    were quarantined, the platform's count for the cycle (the loads table's, as the verdict
    counts them). Ids never depend on the message."""
    noted = _client_quarantine_notes(con, cycle)
    quarantined = con.execute(
        "SELECT platform, sum(rows_quarantined) FROM loads WHERE cycle = ? "
        "GROUP BY platform HAVING sum(rows_quarantined) > 0 ORDER BY platform",
        [cycle],
    ).fetchall()
    for platform, rows in quarantined:
        n = int(rows)
        note = (
            f", but {counted(n, f'{PLATFORM_NAMES[platform]} row')} of this cycle "
            f"{'was' if n == 1 else 'were'} quarantined at load and not compared "
            f"(quarantine.csv): {'it may be this line' if n == 1 else 'it may be one of them'}"
        )
        con.execute(
            f"UPDATE {DISCREPANCIES.name} SET message = message || $note "
            "WHERE rule = $rule AND severity <> 'expected' AND NOT list_contains($noted, id)",
            {"note": note, "rule": MISSING_IN[platform], "noted": noted},
        )


# The rules whose findings a platform's quarantined rows of the finding's client may explain:
# lines no line of the platform matches, and (Autotask) a HaloPSA client matching no Autotask
# client, which is what is left when all of the client's Autotask rows were quarantined.
EXPLAINED_BY_QUARANTINE = {
    "unmapped_client": "autotask",
    **{rule: platform for platform, rule in MISSING_IN.items()},
}


def _client_quarantine_notes(con: duckdb.DuckDBPyConnection, cycle: str) -> list[str]:
    """Add to the message of each finding of EXPLAINED_BY_QUARANTINE (not the expected ones)
    whose client has rows of the rule's platform that the cycle's loads quarantined how many,
    and where to look: quarantine.csv, the file and row of the first and its reasons. A
    quarantined row's client is its client name as its export spells it (never resolved by the
    crosswalk), compared with the finding's client as mapping rows compare names
    (crosswalk.name_keys). The ids of the findings noted."""
    quarantined = _quarantined_clients(con, cycle)
    if quarantined.is_empty():
        return []
    clients = frame_of(
        con.sql(
            f"SELECT DISTINCT client FROM {DISCREPANCIES.name} WHERE list_contains(?, rule) "
            "AND severity <> 'expected' AND client IS NOT NULL ORDER BY client",
            params=[list(EXPLAINED_BY_QUARANTINE)],
        )
    )["client"]
    rules = pl.DataFrame(
        {"rule": list(EXPLAINED_BY_QUARANTINE), "platform": list(EXPLAINED_BY_QUARANTINE.values())}
    )
    found = (
        pl.DataFrame({"client": clients, "key": name_keys("client", clients)})
        .join(quarantined, on="key")
        .join(rules, on="platform")
    )
    if found.is_empty():
        return []
    notes = [
        _quarantine_note(q["rule"], q["platform"], q["name"], q["rows"])
        + f" (quarantine.csv; {'' if q['rows'] == 1 else 'the first, '}{q['file_name']} row "
        f"{q['row_number']}: {q['reasons']})"
        for q in found.iter_rows(named=True)
    ]
    noted = con.execute(
        f"""
        UPDATE {DISCREPANCIES.name} d SET message = d.message || n.note
        FROM (SELECT unnest($clients) AS client, unnest($rules) AS rule, unnest($notes) AS note) n
        WHERE d.client = n.client AND d.rule = n.rule AND d.severity <> 'expected'
        RETURNING d.id
        """,
        {"clients": found["client"].to_list(), "rules": found["rule"].to_list(), "notes": notes},
    ).fetchall()
    return [row[0] for row in noted]


def _quarantine_note(rule: str, platform: str, name: str, rows: int) -> str:
    """What a finding of `rule` is told of its client's `rows` quarantined rows of `platform`."""
    one = rows == 1
    quarantined = (
        f"{counted(rows, f'{PLATFORM_NAMES[platform]} row')} of client {name!r} "
        f"{'was' if one else 'were'} quarantined at load and not compared"
    )
    if rule == "unmapped_client":
        return f"; {quarantined}, so no Autotask line of it was loaded"
    return f", but {quarantined}: {'it may be this line' if one else 'it may be one of them'}"


def _quarantined_clients(con: duckdb.DuckDBPyConnection, cycle: str) -> pl.DataFrame:
    """The cycle's quarantined rows by platform and client name (its export's client-name
    column, found in each file's raw values by the platform's header names): platform, name
    (the first spelling), key (crosswalk.name_keys), rows, and the file name, row number and
    reasons of the first in quarantine.csv's order."""
    files = con.execute(
        "SELECT DISTINCT source, file_name, json_keys(raw) FROM quarantine "
        "WHERE cycle = ? AND disposition = 'quarantined' ORDER BY ALL",
        [cycle],
    ).fetchall()
    parts = []
    for platform, file_name, keys in files:
        names = {normalise_header(a) for a in ("client_name", *HEADERS[platform]["client_name"])}
        key = next((k for k in keys if normalise_header(k) in names), None)
        if key is None:
            continue
        query = (
            "SELECT source AS platform, raw->>? AS name, row_number, file_name, reasons "
            "FROM quarantine WHERE cycle = ? AND disposition = 'quarantined' AND source = ? "
            "AND file_name = ? AND json_keys(raw) = ? AND name IS NOT NULL"
        )
        parts.append(frame_of(con.sql(query, params=[key, cycle, platform, file_name, keys])))
    if not parts:
        return pl.DataFrame()
    rows = pl.concat(parts).sort("platform", "file_name", "row_number")
    return (
        rows.with_columns(key=name_keys("client", rows["name"]))
        .filter(pl.col("key") != "")
        .group_by("platform", "key", maintain_order=True)
        .agg(pl.col("name", "file_name", "row_number", "reasons").first(), rows=pl.len())
    )


def _cents(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(CENT)


def _side_totals(workspace: Workspace, cycle: str) -> dict[str, CurrencyTotals]:
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
    totals: dict[str, CurrencyTotals] = {}
    for currency in sorted(lines, key=lambda c: (-lines[c], c)) or ["(none)"]:
        sides: dict[str, SideTotals] = {}
        for side in ("autotask", "halopsa"):
            count, net, tax, tax_unknown = found.get((currency, side), (0, 0, 0, 0))
            sides[side] = SideTotals(
                net=_cents(net),
                tax=_cents(tax),
                gross=_cents(Decimal(net or 0) + Decimal(tax or 0)),
                lines=count,
                tax_unknown=tax_unknown,
            )
        at, hp = sides["autotask"], sides["halopsa"]
        totals[currency] = CurrencyTotals(
            autotask=at,
            halopsa=hp,
            difference=Amounts(net=hp.net - at.net, tax=hp.tax - at.tax, gross=hp.gross - at.gross),
        )
    return totals


# The run's clients (CLIENT_SCHEMA and their `position` in the summary's order, from 0), made
# by _clients, kept with the run (store.Workspace.save_run) and dropped after.
RUN_CLIENTS = "_run_clients"


def _clients(workspace: Workspace, folder: Path) -> pl.DataFrame | pl.LazyFrame:
    """CLIENT_SCHEMA: one row per client and currency (a client billed in two currencies has
    two rows), from the match groups, named as Autotask names the client where it bills it in
    any currency (groups.client is HaloPSA's name on a group of HaloPSA lines alone); with the
    counts of DISCREPANCIES each counted once, on the row of its groups' client key (the first;
    for one made of no group, a client's total, the key of the client it names) and its
    currency (its lines', else its groups'), accepted ones left out (they are in the verdict's
    accepted count, not its blockers). Ordered by client name. Made by DuckDB into the
    temp table RUN_CLIENTS (which spills; 1.7M rows at 10M lines a side), and scanned from a
    Parquet file of it in `folder` (_scanned): never held whole in Python, unless it is
    small (report_model.held)."""
    counts = ", ".join(f"coalesce(n.{s}, 0) AS {s}" for s in SEVERITY_ORDER)
    # Open ones only: an accepted blocker is no blocker of its client (the verdict's count).
    per_severity = ", ".join(
        f"count(*) FILTER (WHERE severity = '{s}' AND acceptance IS NULL) AS {s}"
        for s in SEVERITY_ORDER
    )
    con = workspace.con
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {RUN_CLIENTS} AS
        WITH named AS (
            SELECT client_key,
                   coalesce(min(client) FILTER (WHERE a_n > 0), min(client)) AS client
            FROM groups GROUP BY client_key
        ), g AS (
            SELECT client_key, any_value(named.client) AS client,
                   coalesce(a_currency, h_currency) AS currency,
                   CAST(sum(coalesce(a_net, 0) + coalesce(a_tax, 0)) AS DECIMAL(18, 2)) AS a,
                   CAST(sum(coalesce(h_net, 0) + coalesce(h_tax, 0)) AS DECIMAL(18, 2)) AS h
            FROM groups JOIN named USING (client_key)
            GROUP BY client_key, coalesce(a_currency, h_currency)
        ), by_group AS (
            SELECT m.id, min(x.client_key) AS client_key,
                   min(coalesce(x.a_currency, x.h_currency)) AS currency
            FROM (SELECT id, unnest(match_ids) AS match_id FROM {DISCREPANCIES.name}) m
            JOIN groups x USING (match_id)
            GROUP BY m.id
        ), by_name AS (
            SELECT client, min(client_key) AS client_key FROM g GROUP BY client
        ), keyed AS (
            SELECT d.severity, d.acceptance, coalesce(b.client_key, k.client_key) AS client_key,
                   coalesce(d.a_currency, d.h_currency, b.currency) AS currency
            FROM {DISCREPANCIES.name} d
            LEFT JOIN by_group b ON b.id = d.id
            LEFT JOIN by_name k ON len(d.match_ids) = 0 AND k.client = d.client
        ), n AS (SELECT client_key, currency, {per_severity} FROM keyed GROUP BY ALL)
        SELECT row_number() OVER (ORDER BY g.client, g.client_key, g.currency) - 1 AS position,
               g.client, g.currency, g.a AS autotask_gross, g.h AS halopsa_gross,
               CAST(g.h - g.a AS DECIMAL(18, 2)) AS difference, {counts}
        FROM g LEFT JOIN n ON n.client_key = g.client_key AND n.currency = g.currency
        """
    )
    (clients,) = held(
        _scanned(
            con,
            f"SELECT {', '.join(CLIENT_SCHEMA)} FROM {RUN_CLIENTS} ORDER BY position",
            folder / "clients.parquet",
            CLIENT_SCHEMA,
        )
    )
    return clients


def _summary(
    workspace: Workspace,
    cycle: str,
    matched: MatchResult,
    bars: dict[str, list[dict[str, str]]],
    rules: list[Rule],
    maps: list[Path],
    config: Config,
    folder: Path,
) -> Summary:
    """The run's summary (summary.json), built once from the workspace and the discrepancies
    (DISCREPANCIES); its clients scanned from a file in `folder` (_clients)."""
    # Per rule and severity, the discrepancies found and of them those accepted.
    tallies = workspace.con.execute(
        f"SELECT rule, severity, count(*), count(acceptance) FROM {DISCREPANCIES.name} GROUP BY ALL"
    ).fetchall()
    by_rule_severity = {(str(r), str(s)): int(n) for r, s, n, _ in tallies}
    found = {
        s: sum(n for (_, sev), n in by_rule_severity.items() if sev == s) for s in SEVERITY_ORDER
    }
    # Accepted discrepancies (acceptance.py) leave the open counts and the verdict.
    accepted = dict.fromkeys(SEVERITY_ORDER, 0)
    for _, severity, _, n in tallies:
        accepted[str(severity)] += int(n)
    counts = {s: found[s] - accepted[s] for s in SEVERITY_ORDER}
    per_rule = {
        r.code: {s: by_rule_severity.get((r.code, s), 0) for s in SEVERITY_ORDER} for r in rules
    }
    totals = _side_totals(workspace, cycle)
    lines = Sides(
        autotask=sum(t.autotask.lines for t in totals.values()),
        halopsa=sum(t.halopsa.lines for t in totals.values()),
    )
    unmatched = {s["stage"]: s for s in matched.stages}["unmatched"]

    def rate(side: str, count: int) -> Decimal:
        matched_lines = count - int(str(unmatched[f"{side}_lines"]))
        return (Decimal(matched_lines) / count).quantize(Decimal("0.0001")) if count else Decimal(0)

    controls = tuple(_control(row) for row in workspace.loads(cycle).iter_rows(named=True))
    mapping_files = tuple(MappingFile(file=str(p), sha256=sha256(p)) for p in maps)
    settings = SettingsInForce(
        source=config.source,
        sha256=sha256(Path(config.source)) if config.source else None,
        currency=config.cycle.currency,
        retired_items=tuple(config.expected.retired_items),
        retired_clients=tuple(config.expected.retired_clients),
        fuzzy_min_score=config.match.fuzzy_min_score,
        # Every setting that differs from its default, and every rule made less severe.
        changed=config.changed(),
        changed_from=config.changed_from(),
        lowered_severities=tuple(LoweredSeverity(**r) for r in config.lowered_severities()),
        rules={
            r.code: RuleInForce(severity=r.severity(config), tolerances=r.settings(config))
            for r in rules
        },
    )
    return Summary(
        run_id=run_id(controls, mapping_files, settings, rules),
        reconcile_version=__version__,
        cycle=cycle,
        verdict=Verdict(
            ready=counts["blocker"] == 0 and not any(c.rows_quarantined for c in controls),
            blockers=counts["blocker"],
            warnings=counts["warning"],
            info=counts["info"],
            expected=counts["expected"],
            accepted=sum(accepted.values()),
        ),
        totals=totals,
        # What is still open, however it nets out, per currency: the sum of the gross
        # differences, each taken as positive, that open discrepancies (not accepted) account for.
        open_variance=_open_variance(workspace.con, list(totals)),
        lines=lines,
        match_stages=tuple(
            MatchStage(
                stage=str(s["stage"]),
                label=str(s["label"]),
                groups=int(str(s["groups"])),
                autotask_lines=int(str(s["autotask_lines"])),
                halopsa_lines=int(str(s["halopsa_lines"])),
            )
            for s in matched.stages
        ),
        match_rate=Sides(
            autotask=rate("autotask", lines.autotask), halopsa=rate("halopsa", lines.halopsa)
        ),
        # Everything the rules found, and of it what was accepted.
        counts=Counts(by_severity=found, accepted=accepted, by_rule=per_rule),
        bridge={
            currency: tuple(
                BridgeEntry(rule=b["rule"], title=b["title"], amount=Decimal(b["amount"]))
                for b in bars.get(currency, [])
            )
            for currency in totals
        },
        controls=controls,
        mappings=mapping_files,
        unused_mappings=tuple(
            UnusedMapping(
                kind=u.mapping.kind,
                autotask=u.mapping.autotask,
                halopsa=u.mapping.halopsa,
                file=u.mapping.source,
                line=u.mapping.line,
                problem=u.problem,
            )
            for u in matched.unused_mappings
        ),
        unmapped=tuple(
            Unmapped(
                kind=kind,
                side="halopsa",
                value=r.halopsa_label,
                suggestion=r.suggestion,
                score=None if r.score is None else str(r.score),
                # Why this suggestion; without one, why none (a name collision, nothing similar).
                basis=r.basis if r.suggestion else r.note,
            )
            for kind, r in matched.crosswalk
            if r.method == "unmapped" and kind != "contract"
        ),
        # Contracts only order candidates in matching: an unmapped one is counted, not listed.
        unmapped_contracts=matched.unmapped_contracts,
        clients=_clients(workspace, folder),
        # The settings in force, as evidence of what the verdict was measured against.
        config=settings,
        workbook=Workbook() if config.outputs.workbook else Workbook.left_out(),
    )


def _control(row: dict[str, Any]) -> Control:
    """One row of the workspace's loads table (JSON columns as text)."""
    return Control(
        **{f: row[f] for f in Control.__dataclass_fields__ if f not in CONTROL_JSON},
        **{f: _json_value(json.loads(row[f])) for f in CONTROL_JSON if f != "by_currency"},
        by_currency=from_plain(tuple[CurrencyControl, ...], json.loads(row["by_currency"])),
    )


CONTROL_JSON = ("files", "warnings", "invoice_checks", "dialect", "by_currency")


def _json_value(value: Any) -> Any:
    """JSON lists as tuples (the dataclasses' sequences), the rest as parsed."""
    return tuple(value) if isinstance(value, list) else value


def _first_seen(side_lists: str) -> str:
    """The a_… and h_… lists `side_lists` (e.g. item_names), a missing one as empty, put
    together: each value once, where first seen, `; `-joined ('' for none)."""
    both = f"list_concat(coalesce(a_{side_lists}, []), coalesce(h_{side_lists}, []))"
    return f"array_to_string(list_filter({both}, lambda v, i: list_position({both}, v) = i), '; ')"


def _joined(name: str) -> str:
    """The list column `name` `;`-joined, '' when null."""
    return f"coalesce(array_to_string({name}, ';'), '')"


def _gross(side: str) -> str:
    return f"CAST({side}_net + coalesce({side}_tax, 0) AS DECIMAL(18, 2))"


# The discrepancies as the run keeps them (RunResult.findings), from DISCREPANCIES: per column
# of OUTPUT_COLUMNS (and acceptance) its value. A discrepancy's status: expected (a retired
# service), accepted (an acceptance in force) or open.
KEPT = {
    "status": "CASE WHEN severity = 'expected' THEN 'expected' "
    "WHEN acceptance IS NOT NULL THEN 'accepted' ELSE 'open' END",
    "currency": "coalesce(a_currency, h_currency)",
    "item": _first_seen("item_names"),
    "contract": _first_seen("contracts"),
    # The earliest start and the latest end of both sides' lines (a null side left out).
    "service_period_start": "least(a_period_start, h_period_start)",
    "service_period_end": "greatest(a_period_end, h_period_end)",
    "autotask_invoices": _joined("a_invoices"),
    "halopsa_invoices": _joined("h_invoices"),
    **{
        f"{side}_{m}": f"{s}_{m}"
        for s, side in (("a", "autotask"), ("h", "halopsa"))
        for m in ("quantity", "unit_price", "net", "tax")
    },
    "autotask_gross": _gross("a"),
    "halopsa_gross": _gross("h"),
    "autotask_refs": _joined("autotask_refs"),
    "halopsa_refs": _joined("halopsa_refs"),
}


def kept_columns(names: list[str]) -> str:
    """The select list over DISCREPANCIES of the columns `names` of OUTPUT_COLUMNS (and
    `acceptance`) as KEPT makes them."""
    return ", ".join(f"{KEPT.get(c, c)} AS {c}" for c in names)


def discrepancy_parts(workspace: Workspace, names: list[str]) -> Iterator[pl.DataFrame]:
    """The run's discrepancies (DISCREPANCIES) as the outputs hold them, the columns `names`
    of OUTPUT_SCHEMA with its types, in the run's order, a range of positions at a time
    (store.read_ranges, with DuckDB's memory held down while they are read: store.scanning):
    at least one frame, empty when there are none."""
    schema = {name: OUTPUT_SCHEMA[name] for name in names}
    con = workspace.con
    with scanning(con, workspace.memory_limit):
        for part in read_ranges(con, DISCREPANCIES.name, kept_columns(names)):
            yield conform(part, schema)


# Modules a run imports in its later stages (name suggestions, DuckDB's frames: ≈ 0.16 s;
# numpy.ma, which polars imports to make a Series of a numpy array, the crosswalk's name
# scores: 11 ms; the report's rule explanations, report.rule_explanations: ≈ 0.08 s).
LATER_MODULES = ("numpy", "numpy.ma", "markdown_it")


def _prepared() -> Environment:
    """What the run needs after its loads and takes Python time to make, made beside the
    loads (on _in_background's thread): LATER_MODULES imported, the report's environment with
    its templates compiled."""
    for name in LATER_MODULES:
        importlib.import_module(name)
    return compiled_environment()


def _in_background(work: Callable[[], T]) -> Future[T]:
    """`work` started on a thread of its own: Python there runs while this thread waits on
    DuckDB or polars, which let go of the GIL (the machine's second core). A daemon thread, not
    a ThreadPoolExecutor's, which the interpreter joins at exit: after a Ctrl-C, a worker
    waiting on an import lock held the interrupted run forever (once in about 25 tries)."""
    future: Future[T] = Future()

    def perform() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(work())
        except BaseException as error:  # handed to the waiting thread by future.result()
            future.set_exception(error)

    threading.Thread(target=perform, name="reconcile-prepare", daemon=True).start()
    return future


def write_outputs(
    result: RunResult,
    workspace: Workspace,
    rules: list[Rule],
    folder: Path,
    out: Path,
    child: WorkbookChild | WorkbookThread | None = None,
    env: Environment | None = None,
) -> Path:
    """CSV, JSON and (unless the summary's workbook says it is left out) XLSX of the
    discrepancies, summary.json, quarantine.csv, report.html, written into the staging folder
    `out` (outputs.output_folder: swapped in whole, so `--out` holds the previous complete set
    until the new one is complete, and never a workbook of an earlier run), which holds the
    run's discrepancies.parquet already (written from DISCREPANCIES, discrepancy_parts). The
    other discrepancy files and the report are written from that file, never from the whole
    table in memory: the CSVs a slice at a time (write_csv_scan), the JSON a chunk at a
    time (_written), the workbook by `child` (a WorkbookChild or WorkbookThread, given its job
    once the Parquet file was written), waited for last. Text cells of the CSVs are made safe
    for spreadsheets (safe.neutralise), each as its file is written; the Parquet and JSON keep
    the exact values. The report's tables and its
    data as the run keeps it are written into `folder` (report_folder). Returns the path of
    that data (history.report_blob), which the workspace keeps with the run to render it again
    for a sign-off pack."""
    parquet = out / PARQUET_FILE
    with stage("report"):  # report.html, its embedded tables made as it is written
        html, report = _report(result, workspace, rules, folder, parquet, env)
        with (out / "report.html").open("w", encoding="utf-8") as page:
            page.writelines(html)

    writers: dict[str, Callable[[Path], object]] = {
        "discrepancies.csv": lambda path: write_csv_scan(_scan(parquet, OUTPUT_SCHEMA), path),
        "discrepancies.json": lambda path: _write_pieces(
            path, chain(json_records(_written(parquet)), [b"\n"])
        ),
        "summary.json": lambda path: _write_pieces(path, result.summary.json_pieces(indent=True)),
        "quarantine.csv": lambda path: write_csv_scan(_quarantine(workspace, result, folder), path),
    }
    if result.summary.workbook.written:
        assert child is not None, "a run writing its workbook has its writer (_workbook_child)"
        writers[WORKBOOK_FILE] = lambda _: child.wait()
    pause("report.html")
    for name, write in writers.items():
        write(out / name)
        pause(name)
    return report


def _quarantine(workspace: Workspace, result: RunResult, folder: Path) -> pl.LazyFrame:
    """The cycle's quarantined rows (quarantine.csv's columns, file order) as a lazy scan of a
    Parquet file DuckDB writes into `folder` (Workspace.copy_quarantine)."""
    path = folder / "quarantine.parquet"
    workspace.copy_quarantine(result.cycle, path)
    return pl.scan_parquet(path, glob=False)


def _scan(parquet: Path, schema: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    """The columns `schema` of the run's discrepancies.parquet (`parquet`), with its types, as
    a lazy scan of the file: read as the plan needs them, in the file's order (the run's)."""
    return conform(pl.scan_parquet(parquet, glob=False), schema)


def _written(parquet: Path) -> Iterator[pl.DataFrame]:
    """The run's discrepancies as discrepancy_parts gave them to the Parquet file `parquet`
    (OUTPUT_SCHEMA, the run's order), read back a chunk at a time (workbook.read_chunks: one
    held at a time, at least one frame): the outputs written after it are not each read from
    DuckDB again."""
    for part in read_chunks(parquet, table_rows(parquet)):
        yield conform(part, OUTPUT_SCHEMA)


def _report(
    result: RunResult,
    workspace: Workspace,
    rules: list[Rule],
    folder: Path,
    parquet: Path,
    env: Environment | None,
) -> tuple[Iterator[str], Path]:
    """report.html's text in pieces (report_pieces: its context made, the page rendered as
    it is written), and the report's data as the run keeps it (history.report_blob)
    written into `folder` as it is compressed (never whole in memory), with its path. The
    discrepancies are scanned from the run's discrepancies.parquet (`parquet`); their lines
    are a Parquet file in `folder` (report_data), written by DuckDB at its scanning limit
    (store.scanning): at 10M lines a side the report stage set the run's peak while its tables
    were written at the full limit beside what Python held."""
    with scanning(workspace.con, workspace.memory_limit):
        data = report_data(result, workspace, rules, folder, parquet)
    # What DuckDB held to write the Parquet files (at 1M lines a side 370 MiB, the lines'
    # sort) let go before the kept data and the page's tables are made from them.
    workspace.release_memory()
    path = folder / "report-data.json.gz"
    _write_pieces(path, history.report_blob(data))
    return report_pieces(data, env=env), path


@contextmanager
def report_folder(workspace: Workspace) -> Iterator[Path]:
    """A temporary folder for the report's tables and kept data, removed with its files on
    leaving (the run keeps it until the workspace has kept the run): beside
    the workspace's file (where a large run has the disk its workspace needs), named after it
    (`.<workspace file>.report-…`), or the system's temporary folder for an in-memory
    workspace. Such folders a killed run of the same workspace left (it holds client billing
    data) are removed first: the run holds the workspace's lock, so none is in use."""
    if str(workspace.path) == ":memory:":
        beside, prefix = None, ".reconcile-report-"
    else:
        beside, prefix = workspace.path.parent, f".{workspace.path.name}.report-"
        for left in beside.glob(f"{glob.escape(prefix)}*"):
            shutil.rmtree(left, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=beside) as folder:
        yield Path(folder)


def _write_pieces(path: Path, pieces: Iterable[bytes]) -> None:
    with path.open("wb") as fh:
        fh.writelines(pieces)


REPORT_LINES = "_report_lines"  # temp table: the report's lines before they are put in order


def _line_details(workspace: Workspace, folder: Path) -> pl.LazyFrame:
    """LINE_SCHEMA: each discrepancy's (DISCREPANCIES') lines on both sides (at most
    REPORT_LINE_CAP per side, by ref), in the run's order, Autotask's before HaloPSA's,
    scanned from Parquet files in `folder` (lines-00000.parquet, …; in that order). Joined
    by DuckDB into the temp table REPORT_LINES (which spills), then sorted and written a
    range of discrepancies at a time (store.position_ranges), a file each: the memory a range
    needs does not grow with the cycle. One sort of all the lines did: at 10M lines a side
    (3.3M lines), DuckDB's sort and window ran out of memory at the scanning limit (200MB) in
    two runs of six. Only a discrepancy with more lines than the cap is ranked (a window)."""
    columns = """w.position, w.id, '{side}' AS side, x.uid, x.ref,
        coalesce(x.item_name, x.description) AS item, x.description, x.quantity,
        x.unit_price, x.net_amount, x.tax_amount, x.period_start, x.period_end"""
    cap = REPORT_LINE_CAP
    ranked = f"QUALIFY row_number() OVER (PARTITION BY w.position ORDER BY x.ref, x.uid) <= {cap}"
    sides = " UNION ALL ".join(
        f"""
        SELECT {columns.format(side=side)}
        FROM (SELECT position, id, unnest({s}_uids) AS uid FROM {DISCREPANCIES.name}
              WHERE len({s}_uids) {test} {cap}) w
        JOIN {s} x USING (uid) {rank}
        """
        for s, side in (("a", "autotask"), ("h", "halopsa"))
        for test, rank in (("<=", ""), (">", ranked))
    )
    # What the summary's queries left let go first: the query reads both sides' lines back.
    workspace.release_memory()
    con = workspace.con
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REPORT_LINES} AS {sides}")
    try:
        parts = [
            _copied(
                con,
                f"SELECT {', '.join(LINE_SCHEMA)} FROM {REPORT_LINES} "
                f"WHERE position >= {start} AND position < {stop} "
                "ORDER BY position, side, ref, uid",
                folder / f"lines-{n:05d}.parquet",
            )
            for n, (start, stop) in enumerate(position_ranges(con, REPORT_LINES) or [(0, 0)])
        ]
    finally:
        con.execute(f"DROP TABLE {REPORT_LINES}")
    return conform(pl.scan_parquet(parts, glob=False), LINE_SCHEMA)


def _copied(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> Path:
    """The rows of `query` written by DuckDB into the Parquet file `path` (streamed, a row
    group at a time) in the query's order, which a COPY keeps while insertion order is kept
    (store.insertion_order_kept); for a table's scan that is its storage order. The path."""
    quoted = str(path).replace("'", "''")
    with insertion_order_kept(con):
        con.execute(f"COPY ({query}) TO '{quoted}' (FORMAT parquet)")
    return path


def _scanned(
    con: duckdb.DuckDBPyConnection, query: str, path: Path, schema: Mapping[str, pl.DataType]
) -> pl.LazyFrame:
    """The rows of `query` written by DuckDB into the Parquet file `path` (_copied), scanned
    from it with the types of `schema` (its columns, in its order)."""
    return conform(pl.scan_parquet(_copied(con, query, path), glob=False), schema)


def report_data(
    result: RunResult,
    workspace: Workspace,
    rules: list[Rule],
    folder: Path,
    parquet: Path,
) -> ReportData:
    """The report's data, typed (reconcile.report_model), from the run's discrepancies (the
    Parquet file `parquet`, the run's discrepancies.parquet, in the outputs' order), their lines
    (DISCREPANCIES' lines, a Parquet file written into `folder`) and its quarantined rows (read
    here: the rows excluded by design, such as HaloPSA's group headers, are in quarantine.csv
    only, counted here by platform and reason). The discrepancies and their lines are scanned
    (read a column, or a few rows, at a time): the ReportData holds only while those files are
    there; unless they are few, then read whole (report_model.held)."""
    quarantined = workspace.quarantined(result.cycle, "quarantined").select(
        pl.col("source").alias("platform"),
        pl.col("file_name").alias("file"),
        pl.col("row_number").alias("row"),
        "line_ref",
        "disposition",
        "reasons",
        "raw",
    )
    excluded = workspace.con.execute(
        "SELECT source, reasons, count(*) FROM quarantine WHERE cycle = ? "
        "AND disposition = 'excluded' GROUP BY ALL ORDER BY source, count(*) DESC, reasons",
        [result.cycle],
    ).fetchall()
    discrepancies, lines = held(
        _scan(parquet, DISCREPANCY_SCHEMA), _line_details(workspace, folder)
    )
    return ReportData(
        summary=result.summary,
        rules={
            r.code: RuleText(title=r.title, severity=r.default_severity, explanation=r.explanation)
            for r in rules
        },
        discrepancies=discrepancies,
        lines=lines,
        quarantine=conform(quarantined, QUARANTINE_SCHEMA),
        excluded=tuple(Exclusion(*row) for row in excluded),
    )


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


def run_id(
    controls: tuple[Control, ...],
    mappings: tuple[MappingFile, ...],
    settings: SettingsInForce,
    rules: list[Rule],
) -> str:
    """Runs of the same content share an id, wherever the files lie: the inputs' content hashes,
    the mapping files' content, the settings in force after defaults (but those choosing how
    the run works or which files it writes, config.UNFINGERPRINTED_SECTIONS; the settings
    file's path and hash are left out too, its settings being in, and where each setting came
    from: GBP from the file or RECONCILE_CURRENCY is the same run), and the engine (the
    reconcile version and the content of every rule file and template). Evidence a controller
    can cite: the same id always means the same discrepancies. History keeps each execution."""
    engine = [__version__, engine_digest(rules)]
    inputs = sorted((c.platform, c.load_id) for c in controls)
    hashes = [m.sha256 for m in mappings]
    in_force = {
        k: v
        for k, v in settings.as_json_dict().items()
        if k not in ("source", "sha256", "changed_from")
    }
    in_force["changed"] = {
        k: v
        for k, v in in_force["changed"].items()
        if k.split(".")[0] not in UNFINGERPRINTED_SECTIONS
    }
    key = json.dumps([engine, inputs, hashes, in_force], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]
