"""Sign-off: finance signs the latest run of a cycle as "parallel billing cycle completed and
output verified", and `verify` proves the record has not been changed since.

A sign-off is a `signoff` entry of the finance log (ledger.py). It is refused while the run has
an unaccepted blocker or quarantined rows, when the run's inputs are no longer the ones loaded
in the workspace, and when acceptances changed after the run (re-run first, so the report shows
them). The entry binds the run: its number and fingerprint, the SHA-256 of its summary and of
its discrepancies, the inputs' content hashes, mapping and settings hashes, the totals, the
verdict and the accepted differences with their reasons.

A sign-off stays valid while every later run of the cycle has the same results (the same run
fingerprint and the same acceptances); the first later run that differs supersedes it for good.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from reconcile import acceptance, ledger
from reconcile.duck import with_frame
from reconcile.errors import RefusedError, TamperedError
from reconcile.history import (
    RunRecord,
    cycle_runs,
    kept_findings,
    kept_run,
    latest_run,
    run_findings,
)
from reconcile.ingest import content_id
from reconcile.safe import shown
from reconcile.wording import amount_text, counted

LISTED = 20  # open items named in a refusal before "and N more"
# A run's results: its fingerprint and the acceptances it applied ((id, ledger entry), by id).
Results = tuple[str, tuple[tuple[str, int], ...]]


def same_name(a: str, b: str) -> bool:
    """Two --by names are the same person's when equal ignoring case and spacing."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def results_of(run_id: str, findings: pl.DataFrame) -> Results:
    """`findings`: id and acceptance (ledger entry or null) of every discrepancy of a run."""
    pairs = findings.filter(pl.col("acceptance").is_not_null()).select("id", "acceptance")
    return run_id, tuple(sorted((str(i), int(e)) for i, e in pairs.iter_rows()))


def kept_results(con: duckdb.DuckDBPyConnection, runs: list[RunRecord]) -> dict[int, Results]:
    return {r.number: results_of(r.run_id, run_findings(con, r.number)) for r in runs}


def signed_results(entry: ledger.Entry) -> Results:
    accepted = entry.body.get("accepted") or []
    return str(entry.body["run_id"]), tuple(sorted((a["id"], int(a["entry"])) for a in accepted))


@dataclass(frozen=True)
class State:
    """A sign-off's standing: "valid" or "superseded" (by the run `superseded_by`), and why."""

    entry: ledger.Entry
    state: str
    why: str
    superseded_by: int | None = None

    def record(self) -> dict[str, Any]:
        body = self.entry.body
        return {
            "entry": self.entry.seq,
            "hash": self.entry.hash,
            "run": body["run"],
            "run_id": body["run_id"],
            "by": self.entry.by,
            "role": body.get("role"),
            "note": body.get("note"),
            "at": self.entry.at,
            "accepted_by_signer": list(body.get("accepted_by_signer") or []),
            "state": self.state,
            "why": self.why,
            "superseded_by": self.superseded_by,
        }


def state(entry: ledger.Entry, later: list[tuple[int, Results]]) -> State:
    """The sign-off against the runs kept after its run (number, results), oldest first."""
    signed = signed_results(entry)
    for number, results in later:
        if results != signed:
            what = (
                "its inputs, mappings, settings or reconcile version differ"
                if results[0] != signed[0]
                else "its accepted differences differ"
            )
            why = f"run #{number} has different results: {what}"
            return State(entry, "superseded", why, number)
    same = [n for n, _ in later]
    return State(
        entry,
        "valid",
        f"run{'s' if len(same) > 1 else ''} {', '.join(f'#{n}' for n in same)} had the same results"
        if same
        else "",
    )


def states(
    con: duckdb.DuckDBPyConnection,
    cycle: str,
    current: tuple[int, Results] | None = None,
) -> list[State]:
    """Every sign-off of the cycle, oldest first, against the runs kept after it (and the
    run being made, `current`, when given)."""
    signed = [e for e in ledger.entries(con, cycle) if e.kind == "signoff"]
    if not signed:
        return []
    results = kept_results(con, cycle_runs(con, cycle))
    ordered = sorted(results.items()) + ([current] if current else [])
    found = [state(e, [(n, r) for n, r in ordered if n > int(e.body["run"])]) for e in signed]
    if current is None and any(s.state == "valid" for s in found):
        # The latest run's acceptances as the finance log stands now: one withdrawn (or
        # lapsed, or added) since supersedes a sign-off no run has yet shown it to.
        latest = ordered[-1][0]
        now = accepted_now(con, latest, cycle, ledger.now().date())
        found = [_stale(s, latest, now, cycle) if s.state == "valid" else s for s in found]
    return found


def _stale(signed: State, latest: int, now: set[tuple[str, int]], cycle: str) -> State:
    """The valid sign-off `signed`, superseded when the acceptances in force `now` on the run
    `latest` are not those it signed."""
    if set(signed_results(signed.entry)[1]) == now:
        return signed
    why = (
        f"acceptances changed since run #{latest} (accepted, withdrawn or lapsed after it); "
        f"run `reconcile run --cycle {cycle}` again"
    )
    return State(signed.entry, "superseded", why)


def accepted_now(
    con: duckdb.DuckDBPyConnection, number: int, cycle: str, today: dt.date
) -> set[tuple[str, int]]:
    """The discrepancies of the kept run `number` the finance log's acceptances cover today:
    (id, ledger entry) pairs."""
    findings = run_findings(con, number)
    standing_now = acceptance.standing(ledger.entries(con, cycle), cycle)
    kept = _with_lists(findings.drop("acceptance"))
    with_frame(con, "CREATE OR REPLACE TEMP TABLE _kept_now AS FROM _frame", kept)
    try:
        applied, _ = acceptance.apply(con, "_kept_now", standing_now, today)
    finally:
        con.execute("DROP TABLE _kept_now")
    return {(a.id, a.entry) for a in applied}


def blocking(
    con: duckdb.DuckDBPyConnection, run: RunRecord, loaded: dict[str, list[str]], today: dt.date
) -> list[str]:
    """What stands in the way of signing `run` (empty when nothing does). `loaded`: the load
    ids the workspace holds for the cycle, per platform."""
    reasons = []
    bound = _input_ids(run.summary)
    if bound != {p: sorted(ids) for p, ids in loaded.items() if ids}:
        reasons.append(
            f"the inputs changed since run #{run.number}: it reconciled "
            f"{_describe(bound)}, the workspace now holds {_describe(loaded)}; run "
            f"`reconcile run --cycle {run.cycle}` again"
        )
    quarantined = {
        str(c["platform"]): int(c.get("rows_quarantined") or 0)
        for c in run.summary["controls"]
        if c.get("rows_quarantined")
    }
    if quarantined:
        rows = sum(quarantined.values())
        sides = " ".join(f"--{p} CORRECTED_EXPORT" for p in sorted(quarantined))
        reasons.append(
            f"{counted(rows, 'row')} of the inputs {'is' if rows == 1 else 'are'} "
            "quarantined (quarantine.csv lists each with its reasons); correct them in the "
            f"export and run again with it: `reconcile run --cycle {run.cycle} {sides}`"
        )
    findings = run_findings(con, run.number)
    if accepted_now(con, run.number, run.cycle, today) != set(results_of("", findings)[1]):
        reasons.append(
            f"acceptances changed since run #{run.number} (accepted, withdrawn or lapsed "
            f"after it); run `reconcile run --cycle {run.cycle}` again so the report shows them"
        )
    open_blockers = findings.filter(
        (pl.col("severity") == "blocker") & pl.col("acceptance").is_null()
    )
    for row in open_blockers.head(LISTED).iter_rows(named=True):
        amount = amount_text(row["currency"], row["difference"], signed=True)
        reasons.append(
            f"open blocker {row['id']}: {row['rule']}, {row['client']}, difference {amount}: "
            f"{row['message']}"
        )
    if open_blockers.height > LISTED:
        reasons.append(f"and {open_blockers.height - LISTED} more open blockers")
    if open_blockers.height:
        reasons.append(
            "next: correct each open blocker in HaloPSA and run again with the re-export "
            f"(`reconcile run --cycle {run.cycle} --halopsa EXPORT`), or accept those that are "
            "intended: `reconcile accept ID --reason TEXT --by NAME` (several at once: "
            "`--from discrepancies.csv`)"
        )
    return reasons


def sign(
    con: duckdb.DuckDBPyConnection,
    cycle: str,
    loaded: dict[str, list[str]],
    by: str,
    role: str | None,
    note: str | None,
    today: dt.date,
) -> ledger.Entry:
    """Sign the latest run of the cycle. Raises InputError when no run is kept, TamperedError when
    the log is broken, RefusedError (with every reason) when the run cannot be signed."""
    log, broken = ledger.check_chain(con)
    if broken:
        raise TamperedError(broken.problem)
    run = latest_run(con, cycle)
    if run is None:
        raise acceptance.no_run(cycle)
    reasons = blocking(con, run, loaded, today)
    if reasons:
        raise RefusedError(
            f"sign-off refused: run #{run.number} of cycle {cycle} is not ready", reasons
        )
    run = _whole(con, run.number)
    findings = run_findings(con, run.number)
    standing_now = acceptance.standing(log, cycle)
    accepted_ids = set(findings.filter(pl.col("acceptance").is_not_null())["id"].to_list())
    accepted = [a.record() for i, a in standing_now.items() if i in accepted_ids]
    body = {
        "run": run.number,
        "role": role,
        "note": note,
        **bound_run(run, findings, report_digest(con, run.number)),
        "totals": run.summary["totals"],
        "verdict": run.summary["verdict"],
        "accepted": accepted,
        # Separation of duties, light: allowed, and flagged in the pack.
        "accepted_by_signer": [a["id"] for a in accepted if same_name(a["by"], by)],
    }
    return ledger.append(con, "signoff", cycle, by, body)


def bound_run(run: RunRecord, findings: pl.DataFrame, report_sha256: str | None) -> dict[str, Any]:
    """What a sign-off binds of its run, re-computable from the workspace (verify); with the
    SHA-256 of the report data kept with it (report_digest), which a sign-off pack renders."""
    return {
        "run_id": run.run_id,
        "summary_sha256": ledger.digest(run.summary),
        "findings_sha256": findings_digest(findings),
        "report_sha256": report_sha256,
        "inputs": [
            {k: i.get(k) for k in ("platform", "shape", "source", "load_id", "files")}
            for i in run.summary["inputs"]
        ],
        "mappings": run.summary["mappings"],
        "config_sha256": run.summary["config"]["sha256"],
    }


def report_digest(con: duckdb.DuckDBPyConnection, number: int) -> str | None:
    """SHA-256 (hex) of the report data kept with run `number` (history.stored_report's
    bytes), computed by DuckDB; None for a run kept without it."""
    rows = con.execute(
        "SELECT sha256(data) FROM run_reports WHERE run_number = ?", [number]
    ).fetchall()
    return str(rows[0][0]) if rows else None


def findings_digest(findings: pl.DataFrame) -> str:
    """SHA-256 over a run's discrepancies as kept (every column as text, in id order)."""
    rows = findings.sort("id").cast(pl.String).rows()
    return ledger.digest([list(findings.columns), [list(r) for r in rows]])


def verify(con: duckdb.DuckDBPyConnection) -> list[ledger.Entry]:
    """Re-compute the chain, then every hash the entries bind against the workspace: each
    acceptance's run and discrepancy, each sign-off's run summary, discrepancies and inputs
    (each load id is the content hash of its files; a load still held has the same files).
    Returns the entries; raises TamperedError naming the first broken entry."""
    log, broken = ledger.check_chain(con)
    if broken:
        raise TamperedError(broken.problem)
    kept = _Kept(con, log)
    for entry in log:
        problem = _binding_problem(entry, kept)
        if problem:
            raise TamperedError(f"{entry.label}: {problem}")
    return log


class _Kept:
    """What verify checks the log's entries against, each part read from the workspace once
    per call: the kept runs (by number), the log's entries (by seq), the discrepancies the
    acceptances name (by run number and id, one query) and, per run a sign-off binds, what
    bound_run gives for it now (read when first needed)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list[ledger.Entry]) -> None:
        self.con = con
        self.runs = {r.number: r for r in cycle_runs(con)}
        self.by_seq = {e.seq: e for e in log}
        self.findings = kept_findings(
            con, [(int(e.body["run"]), str(e.body["id"])) for e in log if e.kind == "accept"]
        )
        self._bound: dict[int, dict[str, Any]] = {}

    def bound(self, number: int) -> dict[str, Any]:
        """bound_run of kept run `number`, as the workspace holds it now."""
        if number not in self._bound:
            run = _whole(self.con, number)
            self._bound[number] = bound_run(
                run, run_findings(self.con, number), report_digest(self.con, number)
            )
        return self._bound[number]


def _binding_problem(entry: ledger.Entry, kept: _Kept) -> str | None:
    body = entry.body
    if entry.kind == "unaccept":
        withdrawn = kept.by_seq.get(int(body.get("withdraws", 0)))
        if withdrawn is None or withdrawn.kind != "accept" or withdrawn.body["id"] != body["id"]:
            return f"it withdraws entry {body.get('withdraws')}, which is no acceptance of it"
        return None
    run = kept.runs.get(int(body["run"]))
    if run is None or run.run_id != body["run_id"]:
        return (
            f"it binds run #{body['run']} (fingerprint {body['run_id']}), which the workspace "
            + ("no longer holds" if run is None else f"holds with fingerprint {run.run_id}")
        )
    if entry.kind == "accept":
        found = kept.findings.get((run.number, body["id"]))
        snapshot = body["finding"]
        if found is None or any(
            snapshot[k] != (None if found[k] is None else str(found[k])) for k in snapshot
        ):
            return f"discrepancy {body['id']} of run #{run.number} is no longer as it was accepted"
        return None
    bound = kept.bound(run.number)
    # A sign-off made before it bound the report data has no report_sha256.
    bound_parts = {"summary_sha256": "summary", "findings_sha256": "discrepancies"}
    if "report_sha256" in body:
        bound_parts["report_sha256"] = "report data"
    for key, what in bound_parts.items():
        if body[key] != bound[key]:
            return f"the {what} of run #{run.number} changed since the sign-off ({key})"
    if body["inputs"] != bound["inputs"]:
        return f"the inputs recorded for run #{run.number} changed since the sign-off"
    for given in body["inputs"]:
        files = _file_hashes(given["files"])
        if content_id({Path(str(n)): h for n, (_, h) in enumerate(files)}) != given["load_id"]:
            return f"input {given['source']}: its files' hashes do not give its load id"
        held = _held_files(kept.con, run.cycle, given["load_id"])
        if held is not None and held != files:
            return f"input {given['source']}: the workspace's record of its files changed"
    return None


def _whole(con: duckdb.DuckDBPyConnection, number: int) -> RunRecord:
    """A run known to be kept, with its whole summary (what a sign-off hashes)."""
    run = kept_run(con, number)
    assert run is not None, f"run #{number} is listed but not kept"
    return run


def _file_hashes(files: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((str(f["name"]), str(f["sha256"])) for f in files)


def _held_files(
    con: duckdb.DuckDBPyConnection, cycle: str, load_id: str
) -> list[tuple[str, str]] | None:
    """The files the workspace records for a load still held (None when it was replaced)."""
    rows = con.execute(
        "SELECT CAST(files AS VARCHAR) FROM loads WHERE cycle = ? AND load_id = ?",
        [cycle, load_id],
    ).fetchall()
    return _file_hashes(json.loads(rows[0][0])) if rows else None


def _input_ids(summary: dict[str, Any]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for i in summary["inputs"]:
        ids.setdefault(i["platform"], []).append(i["load_id"])
    return {p: sorted(v) for p, v in ids.items()}


def _describe(ids: dict[str, list[str]]) -> str:
    return "; ".join(
        f"{platform} {', '.join(i[:12] for i in ids.get(platform, [])) or 'nothing'}"
        for platform in ("autotask", "halopsa")
    )


def _with_lists(findings: pl.DataFrame) -> pl.DataFrame:
    """Kept discrepancies with their refs as lists and their position in the frame's order, as
    acceptance.apply reads a run's."""
    return findings.with_row_index("position").with_columns(
        pl.col(c).str.split(";").list.eval(pl.element().filter(pl.element() != ""))
        for c in ("autotask_refs", "halopsa_refs")
    )


def shown_state(s: State) -> str:
    body = s.entry.body
    role = f" ({body['role']})" if body.get("role") else ""
    return shown(
        f"run #{body['run']} signed off by {s.entry.by}{role} at {s.entry.at} "
        f"(log entry {s.entry.seq}): {s.state}" + (f", {s.why}" if s.why else "")
    )
