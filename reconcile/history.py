"""Run history: the runs a workspace keeps per cycle, and what changed from one run to the next.

A parallel cycle is re-run many times while HaloPSA is corrected. Discrepancy ids come from the
content of the lines involved (rules.DIGEST, made unique by rules._order), so an unchanged
difference keeps its id from run to run: a run's discrepancies are **new** (not in the previous
run of the cycle), **still open** (in both) or, for the previous run's that are gone,
**resolved**.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import duckdb
import orjson
import polars as pl

from reconcile.duck import frame_of
from reconcile.report_model import CLIENT_SCHEMA, ReportData, conform, text_columns
from reconcile.rules import SEVERITY_ORDER

# The findings table's columns a later command reads back (store.SCHEMA).
FINDING_FIELDS = (
    "id", "rule", "severity", "client", "currency", "autotask_amount", "halopsa_amount",
    "difference", "gross_difference", "message", "autotask_refs", "halopsa_refs", "acceptance",
)  # fmt: skip


@dataclass(frozen=True)
class RunRecord:
    """One kept run: its workspace-wide number, fingerprint (run_id), cycle, when it was saved
    (the workspace's clock) and its summary: the whole summary.json from `kept_run`; from the
    listings (`cycle_runs`, `latest_run`) only LISTED_PARTS, since a large cycle's summary
    lists every client."""

    number: int
    run_id: str
    cycle: str
    created_at: dt.datetime
    summary: dict[str, Any]


# What listings read of each summary (a large cycle's summary lists every client, and every
# acceptance; the rest is not parsed in Python): these members, extracted by DuckDB in one
# parse of each summary (LISTED_FROM). An extraction each parsed a summary of 12,000
# acceptances (7 MB) once per member: three such runs ran out of DuckDB's 400MB.
LISTED_PATHS = (
    "$.run_id", "$.reconcile_version", "$.verdict", "$.totals", "$.inputs", "$.controls",
    "$.history.counts", "$.history.previous_run",
)  # fmt: skip
LISTED_FROM = (
    "(SELECT *, json_extract(summary, "
    f"[{', '.join(repr(p) for p in LISTED_PATHS)}]) AS listed FROM runs)"
)
LISTED_PARTS = (
    "json_object('run_id', listed[1], 'reconcile_version', listed[2], 'verdict', listed[3], "
    "'totals', listed[4], 'inputs', listed[5], 'controls', listed[6], 'history', "
    "json_object('counts', listed[7], 'previous_run', listed[8]))"
)


def cycle_runs(con: duckdb.DuckDBPyConnection, cycle: str | None = None) -> list[RunRecord]:
    """The kept runs, oldest first, every cycle's or one cycle's, each with LISTED_PARTS of its
    summary (history: {counts, previous_run}, nulls for a run kept before they were)."""
    where, params = ("WHERE cycle = ?", [cycle]) if cycle else ("", [])
    return _runs(con, LISTED_PARTS, where, params, LISTED_FROM)


def latest_run(con: duckdb.DuckDBPyConnection, cycle: str) -> RunRecord | None:
    runs = cycle_runs(con, cycle)
    return runs[-1] if runs else None


def kept_run(con: duckdb.DuckDBPyConnection, number: int) -> RunRecord | None:
    """A kept run with its whole summary.json, as parsed (None when the workspace does not hold
    it): runs.summary with its clients put back from run_clients (store.Workspace.save_run),
    after unmapped_contracts where summary.json has them; a run kept before they had a table of
    their own holds them in runs.summary."""
    runs = _runs(con, "CAST(summary AS VARCHAR)", "WHERE run_number = ?", [number])
    if not runs:
        return None
    run = runs[0]
    if "clients" in run.summary:
        return run
    clients = frame_of(
        con.sql(
            f"SELECT {', '.join(CLIENT_SCHEMA)} FROM run_clients WHERE run_number = ? "
            "ORDER BY position",
            params=[number],
        )
    )
    records = text_columns(conform(clients, CLIENT_SCHEMA)).to_dicts()
    summary: dict[str, Any] = {}
    for key, value in run.summary.items():
        summary[key] = value
        if key == "unmapped_contracts":
            summary["clients"] = records
    return replace(run, summary=summary)


def _runs(
    con: duckdb.DuckDBPyConnection,
    summary: str,
    where: str,
    params: list[Any],
    runs: str = "runs",
) -> list[RunRecord]:
    """The runs `where` selects, oldest first, with `summary` (an expression over `runs`, the
    runs table or a query of it) parsed."""
    rows = con.execute(
        f"SELECT run_number, run_id, cycle, created_at, {summary} FROM {runs} {where} "
        "ORDER BY run_number",
        params,
    ).fetchall()
    return [RunRecord(int(r[0]), str(r[1]), str(r[2]), r[3], json.loads(r[4])) for r in rows]


# The order a kept run's discrepancies are listed in: severity (SEVERITY_ORDER), then id.
KEPT_ORDER = f"list_position([{', '.join(repr(s) for s in SEVERITY_ORDER)}], severity), id"


def run_findings(con: duckdb.DuckDBPyConnection, number: int) -> pl.DataFrame:
    """A kept run's discrepancies (FINDING_FIELDS; money Decimal(18,2), refs `;`-joined,
    acceptance the ledger entry that accepted it or null), in severity then id order."""
    frame: pl.DataFrame = frame_of(
        con.sql(
            f"SELECT {', '.join(FINDING_FIELDS)} FROM findings WHERE run_number = ? "
            f"ORDER BY {KEPT_ORDER}",
            params=[number],
        )
    )
    return frame


def kept_findings(
    con: duckdb.DuckDBPyConnection, wanted: list[tuple[int, str]]
) -> dict[tuple[int, str], dict[str, Any]]:
    """The kept discrepancies named by (run number, id), each as run_findings gives its rows
    (FINDING_FIELDS as Python values), keyed by (run number, id); pairs the workspace does not
    hold are absent. One query however many pairs: only the named rows reach Python."""
    if not wanted:
        return {}
    rows = frame_of(
        con.sql(
            f"SELECT run_number, {', '.join(FINDING_FIELDS)} FROM findings "
            "SEMI JOIN (SELECT unnest($runs) AS run_number, unnest($ids) AS id) "
            f"USING (run_number, id) ORDER BY run_number, {KEPT_ORDER}",
            params={"runs": [n for n, _ in wanted], "ids": [i for _, i in wanted]},
        )
    )
    return {(r.pop("run_number"), r["id"]): r for r in rows.iter_rows(named=True)}


def changes(con: duckdb.DuckDBPyConnection, cycle: str, number: int, table: str) -> dict[str, Any]:
    """This run (`number`, its discrepancies the relation `table`: id and position) against the
    previous run of the cycle: {run, previous_run (number or null), previous_run_id, counts
    {new, open, resolved}, new, open (ids: String series, in the run's order), resolved [{id,
    rule, severity, client, currency, gross_difference, message}] (in run_findings' order, all
    text)}. The first run of a cycle has every discrepancy new. Worked out by joins in DuckDB:
    the lists are made once, for the summary."""
    previous = latest_run(con, cycle)
    before = "(SELECT id FROM findings WHERE run_number = $run)"
    if previous:
        params = {"run": previous.number}
        new = _ids(con, table, f"ANTI JOIN {before} USING (id)", params)
        still = _ids(con, table, f"SEMI JOIN {before} USING (id)", params)
        resolved = frame_of(
            con.sql(
                "SELECT id, rule, severity, client, currency, "
                "CAST(gross_difference AS VARCHAR) AS gross_difference, message "
                f"FROM findings ANTI JOIN (SELECT id FROM {table}) USING (id) "
                "WHERE run_number = $run "
                f"ORDER BY {KEPT_ORDER}",
                params=params,
            )
        ).to_dicts()
    else:
        new, still, resolved = _ids(con, table, "", {}), pl.Series("id", [], pl.String), []
    return {
        "run": number,
        "previous_run": previous.number if previous else None,
        "previous_run_id": previous.run_id if previous else None,
        "counts": {"new": len(new), "open": len(still), "resolved": len(resolved)},
        "new": new,
        "open": still,
        "resolved": resolved,
    }


def _ids(
    con: duckdb.DuckDBPyConnection, table: str, join: str, params: dict[str, Any]
) -> pl.Series:
    """The ids of `table` (id, position) that `join` keeps, in position order (String)."""
    query = f"SELECT id FROM {table} {join} ORDER BY position"
    found: pl.DataFrame = frame_of(con.sql(query, params=params))
    return found.get_column("id").cast(pl.String)


def trend_point(summary: dict[str, Any], number: int) -> dict[str, Any]:
    """One run's place in the cycle's trend: {run, run_id, blockers, warnings, info, expected,
    accepted (open counts, as the verdict gives them), new, open, resolved (null for a run kept
    before history was recorded), difference {currency: gross difference}}."""
    verdict = summary.get("verdict") or {}
    counts = (summary.get("history") or {}).get("counts") or {}
    return {
        "run": number,
        "run_id": summary.get("run_id"),
        **{k: verdict.get(k, 0) for k in ("blockers", "warnings", "info", "expected", "accepted")},
        **{k: counts.get(k) for k in ("new", "open", "resolved")},
        "difference": {
            code: t["difference"]["gross"] for code, t in (summary.get("totals") or {}).items()
        },
    }


def trend(con: duckdb.DuckDBPyConnection, cycle: str) -> list[dict[str, Any]]:
    """The trend over the cycle's kept runs, oldest first (trend_point each)."""
    return [trend_point(r.summary, r.number) for r in cycle_runs(con, cycle)]


GZIP_WBITS = 31  # zlib's gzip container: gzip.decompress reads it
BLOB_LEVEL = 1  # gzip level of report_blob: at 200k lines 0.1 s for 3.0 MB; level 9 1.5 s, 2.3 MB


def report_blob(data: ReportData) -> Iterator[bytes]:
    """The report's data as kept with the run, a gzip stream of ReportData.json_pieces, piece
    by piece (neither the whole JSON nor the whole stream is ever held), to render it again later.
    Only reconcile reads it back (stored_report), so it is compressed for speed, not size."""
    packer = zlib.compressobj(BLOB_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    for piece in data.json_pieces():
        yield packer.compress(piece)
    yield packer.flush()


def stored_report(con: duckdb.DuckDBPyConnection, number: int) -> ReportData | None:
    """A kept run's report data (None for a run kept without it)."""
    rows = con.execute("SELECT data FROM run_reports WHERE run_number = ?", [number]).fetchall()
    if not rows:
        return None
    return ReportData.from_json_dict(orjson.loads(gzip.decompress(rows[0][0])))
