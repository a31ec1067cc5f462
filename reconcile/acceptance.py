"""Accepted differences: a discrepancy a person has decided is intended (a deliberate price
change in HaloPSA), with the reason, who and until when.

An acceptance is an `accept` entry of the finance log (ledger.py) for one discrepancy id of one
cycle; an `unaccept` entry withdraws it. Because ids come from the content of the lines involved
(client, item, quantity, unit price, net, tax, currency), an acceptance follows its discrepancy
across re-runs exactly while those lines and amounts are unchanged. It lapses, and is shown as
lapsed with the reason, when the id is no longer found in a run (the lines or amounts changed,
or the difference is gone) or when its --until date has passed; it applies again only if the
very same content comes back within its dates.

Accepted discrepancies keep their rule and severity; they leave the open counts, the verdict
and the exit code, and get their own section in the report and their own bar in the bridge.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from reconcile import ledger
from reconcile.errors import InputError
from reconcile.history import RunRecord, cycle_runs, kept_findings, latest_run
from reconcile.load.dialect import text_file
from reconcile.safe import shown, uncell
from reconcile.tables import DISCREPANCIES

ID_PATTERN = re.compile(r"D-[0-9a-f]{10}(?:-[0-9]+)?")
# An id as people may type it: rules.DIGEST writes "D-" and lower-case hex digits, so an id in
# any case has exactly one canonical spelling (canonical_id).
ID_ANY_CASE = re.compile(ID_PATTERN.pattern, re.IGNORECASE)
LISTED = 10  # ids named in one message before "and N more"
# What an acceptance records of its discrepancy, as the run that was accepted showed it.
SNAPSHOT_FIELDS = (
    "id", "rule", "severity", "client", "currency", "autotask_amount", "halopsa_amount",
    "difference", "gross_difference", "message", "autotask_refs", "halopsa_refs",
)  # fmt: skip


@dataclass(frozen=True)
class Request:
    """One id to accept, with its reason and last day (a CSV row may give its own)."""

    id: str
    reason: str
    until: dt.date | None
    where: str  # how messages name where the id came from ("ID argument", "ids.csv line 3")


@dataclass(frozen=True)
class Acceptance:
    """An acceptance in the log that has not been withdrawn (ledger entry `entry`).

    `finding`: the discrepancy as accepted (SNAPSHOT_FIELDS, money as decimal strings, refs
    `;`-joined), and `run`, the run number it was accepted on."""

    entry: int
    hash: str
    cycle: str
    by: str
    at: str
    reason: str
    until: str | None
    run: int
    finding: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.finding["id"])

    def expired(self, today: dt.date) -> bool:
        return self.until is not None and dt.date.fromisoformat(self.until) < today

    def record(self) -> dict[str, Any]:
        """As summary.json and the sign-off pack list it."""
        return {
            **{k: self.finding.get(k) for k in SNAPSHOT_FIELDS},
            "reason": self.reason,
            "by": self.by,
            "at": self.at,
            "until": self.until,
            "accepted_on_run": self.run,
            "entry": self.entry,
            "entry_hash": self.hash,
        }


@dataclass(frozen=True)
class Lapse:
    acceptance: Acceptance
    why: str

    def record(self) -> dict[str, Any]:
        return self.acceptance.record() | {"why": self.why}


def standing(log: list[ledger.Entry], cycle: str) -> dict[str, Acceptance]:
    """Per discrepancy id of the cycle, the latest acceptance not withdrawn since, in log
    order of the ids' first acceptance."""
    found: dict[str, Acceptance] = {}
    for entry in log:
        if entry.cycle != cycle:
            continue
        if entry.kind == "accept":
            body = entry.body
            found[str(body["id"])] = Acceptance(
                entry=entry.seq,
                hash=entry.hash,
                cycle=entry.cycle,
                by=entry.by,
                at=entry.at,
                reason=str(body["reason"]),
                until=body.get("until"),
                run=int(body["run"]),
                finding=dict(body["finding"]),
            )
        elif entry.kind == "unaccept":
            found.pop(str(entry.body["id"]), None)
    return found


def apply(
    con: duckdb.DuckDBPyConnection, table: str, accepted: dict[str, Acceptance], today: dt.date
) -> tuple[list[Acceptance], list[Lapse]]:
    """The acceptances in force on a run's discrepancies, and those that lapse, each with why:
    its --until date passed, the discrepancy is now an expected difference, what it says changed
    (_said_otherwise), or its id is not in the run (then the run's discrepancy on the same
    client and lines is named if there is one: its lines or amounts changed).

    `table`: a relation of the run's discrepancies (position, id, rule, severity, client,
    difference, message, autotask_refs and halopsa_refs as lists of text). Only the accepted
    ids' rows are read, and for a lapse its client's."""
    present = {
        id_: (severity, message)
        for id_, severity, message in (
            con.execute(
                f"SELECT id, severity, message FROM {table} WHERE id IN (SELECT unnest($ids))",
                {"ids": list(accepted)},
            ).fetchall()
            if accepted
            else []
        )
    }
    gone = [a for a in accepted.values() if not a.expired(today) and a.id not in present]
    successors = _successors(con, table, gone)
    applied: list[Acceptance] = []
    lapsed: list[Lapse] = []
    for acceptance in accepted.values():
        severity, message = present.get(acceptance.id, (None, None))
        if acceptance.expired(today):
            lapsed.append(Lapse(acceptance, f"its last day, {acceptance.until}, has passed"))
        elif severity is None:
            lapsed.append(Lapse(acceptance, _why_gone(successors.get(acceptance.id))))
        elif severity == "expected":
            lapsed.append(Lapse(acceptance, "it is now an expected difference ([expected])"))
        elif (said := _said_otherwise(acceptance, message)) is not None:
            lapsed.append(Lapse(acceptance, said))
        else:
            applied.append(acceptance)
    return applied, lapsed


def mark(con: duckdb.DuckDBPyConnection, applied: list[Acceptance]) -> None:
    """Set the acceptance column of the run's discrepancies (tables.DISCREPANCIES) to the ledger
    entry of the acceptance applied to each (`applied`, from `apply`)."""
    if not applied:
        return
    con.execute(
        f"""
        UPDATE {DISCREPANCIES.name} SET acceptance = a.entry
        FROM (SELECT unnest($ids) AS id, unnest($entries) AS entry) a
        WHERE {DISCREPANCIES.name}.id = a.id
        """,
        {"ids": [a.id for a in applied], "entries": [a.entry for a in applied]},
    )


def _successors(
    con: duckdb.DuckDBPyConnection, table: str, gone: list[Acceptance]
) -> dict[str, tuple[str, str, Any]]:
    """For accepted ids missing from a run (`gone`), the discrepancy that replaced each: the
    first in the run's order (position) on the same client that involves any of the same
    lines, as (id, rule, difference), by accepted id; ids with none are absent. One query."""
    if not gone:
        return {}
    refs = {
        side: [
            sorted(set(filter(None, str(a.finding.get(f"{side}_refs") or "").split(";"))))
            for a in gone
        ]
        for side in ("autotask", "halopsa")
    }
    found = con.execute(
        f"""
        WITH gone AS (
            SELECT unnest($ids) AS gone_id, unnest($clients) AS gone_client,
                   unnest($autotask::VARCHAR[][]) AS gone_autotask,
                   unnest($halopsa::VARCHAR[][]) AS gone_halopsa
        )
        SELECT gone_id, t.id, t.rule, t.difference
        FROM gone JOIN {table} t ON t.client = gone_client
        WHERE coalesce(list_has_any(t.autotask_refs, gone_autotask), false)
           OR coalesce(list_has_any(t.halopsa_refs, gone_halopsa), false)
        QUALIFY row_number() OVER (PARTITION BY gone_id ORDER BY t.position) = 1
        """,
        {
            "ids": [a.id for a in gone],
            "clients": [a.finding.get("client") for a in gone],
            **refs,
        },
    ).fetchall()
    return {str(g): (str(i), str(rule), difference) for g, i, rule, difference in found}


def _said_otherwise(acceptance: Acceptance, message: str | None) -> str | None:
    """Why an accepted discrepancy still in the run lapses when what it says changed since it
    was accepted (its message, in the acceptance's snapshot), else None. Its id stands for the
    lines' amounts, quantities, prices, client and item (rules.FINGERPRINT_FIELDS), not for
    what else a rule found: a service period moved from October to December, a contract type
    changed. Accepted for one of those, it covered the other without a word."""
    accepted = acceptance.finding.get("message")
    if accepted is None or message is None or accepted == message:
        return None
    return (
        f"what it says changed since it was accepted: it said {accepted!r}, it now says {message!r}"
    )


def _why_gone(successor: tuple[str, str, Any] | None) -> str:
    """Why an accepted id missing from a run lapsed: naming the discrepancy that replaced it
    (id, rule, difference; from _successors) when there is one."""
    if successor:
        id_, rule, difference = successor
        return (
            f"its lines or amounts changed: the same lines are now {id_} "
            f"({rule}, difference {difference})"
        )
    return "its id is not in this run: the lines or amounts behind it changed, or it is resolved"


def resolve_cycle(con: duckdb.DuckDBPyConnection, ids: list[str], cycle: str | None) -> str:
    """The cycle the ids belong to: --cycle, else the one cycle whose latest run holds them
    (or the only cycle kept). Raises InputError when no run is kept, or the ids are in several
    cycles' latest runs or in none."""
    if cycle:
        return cycle
    latest = _latest_per_cycle(con)
    held = kept_findings(con, [(r.number, i) for r in latest for i in ids])
    holders = sorted({r.cycle for r in latest if any((r.number, i) in held for i in ids)})
    if len(holders) == 1:
        return holders[0]
    if not holders and len(latest) == 1:
        return latest[0].cycle  # accept() names the ids its latest run lacks
    if holders:
        raise InputError(
            "--cycle",
            f"the cycle is needed: the ids are discrepancies of cycles {', '.join(holders)}",
            expected="--cycle YYYY-MM",
        )
    raise InputError(
        _named(ids),
        "not a discrepancy of the latest run of any cycle"
        if latest
        else "no run is kept in this workspace",
        hint="`reconcile history` lists the runs kept in the workspace.",
    )


def _latest_per_cycle(con: duckdb.DuckDBPyConnection) -> list[RunRecord]:
    latest: dict[str, RunRecord] = {}
    for run in cycle_runs(con):
        latest[run.cycle] = run
    return list(latest.values())


def checked_text(value: str, option: str) -> str:
    """A name or reason as given: stripped, one line, not empty (InputError otherwise)."""
    text = " ".join(value.split())
    if not text:
        raise InputError(option, "must not be empty", expected="a name or a sentence")
    return text


def checked_until(value: str | None, today: dt.date, where: str = "--until") -> dt.date | None:
    """--until YYYY-MM-DD: the last day the acceptance holds, today or later."""
    if value is None or not value.strip():
        return None
    try:
        day = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise InputError(where, "is not a date", expected="YYYY-MM-DD", got=value) from None
    if day < today:
        raise InputError(
            where, "is in the past", expected=f"today ({today}) or a later day", got=value
        )
    return day


def read_requests(
    path: Path, reason: str | None, until: dt.date | None, today: dt.date
) -> list[Request]:
    """Ids to accept from a CSV file (comma, semicolon or tab) with an `id` column
    (discrepancies.csv filtered in a spreadsheet will do) and optional `reason` and `until`
    columns that override --reason and --until for their row; blank rows are passed over.
    Read as a mapping file is (crosswalk.header_records): Excel's `sep=` first line, the
    separator under which the header holds `id`, rows named by the file's line. Raises
    InputError naming the file, line and column of a problem."""
    from reconcile.crosswalk import column_name, header_records  # polars: only for --from

    try:
        with text_file(path, kind="list of discrepancy ids", header="id[,reason][,until]") as fh:
            records = header_records(path, fh, ("id",))
            line, header = next(records, (1, []))
            places: dict[str, int] = {}
            for place, name in enumerate(header):
                places.setdefault(column_name(name), place)
            if "id" not in places:
                raise InputError(
                    str(path),
                    "the file has no id column",
                    line=line,
                    expected="a header with id (and optionally reason, until)",
                    got=",".join(header)[:80],
                )
            requests = []
            for line, record in records:
                cells = {
                    name: uncell(record[place].strip() if place < len(record) else "")
                    for name, place in places.items()
                }
                if cells["id"]:  # a row without an id is passed over
                    requests.append(_request(path, line, cells, reason, until, today))
    except csv.Error as exc:
        raise InputError(str(path), "the file cannot be read as CSV", got=str(exc)) from None
    if not requests:
        raise InputError(str(path), "the file lists no ids", expected="rows with an id")
    return requests


def _request(
    path: Path,
    line: int,
    cells: dict[str, str],
    reason: str | None,
    until: dt.date | None,
    today: dt.date,
) -> Request:
    """One row of an ids file (cells by column name, column_name), on the file's line
    `line`, as a Request."""
    own_reason, own_until = cells.get("reason", ""), cells.get("until", "")
    if not (own_reason or reason):
        raise InputError(
            str(path),
            "no reason is given for this id",
            line=line,
            column="reason",
            expected="a reason in the row, or --reason",
        )
    where = f"{path}, line {line}, column 'until'"
    return Request(
        cells["id"],
        checked_text(own_reason or reason or "", "reason"),
        checked_until(own_until, today, where) if own_until else until,
        f"{path} line {line}",
    )


def accept(
    con: duckdb.DuckDBPyConnection,
    requests: list[Request],
    cycle: str | None,
    by: str,
    today: dt.date,
) -> list[ledger.Entry]:
    """Record the acceptances (one log entry each, all or none) of discrepancies of the latest
    run of the cycle. Raises InputError, writing nothing, for an id that is not well formed,
    listed twice, not in that run, or an expected difference."""
    requests = [dataclasses.replace(r, id=canonical_id(r.id)) for r in requests]
    ids = [r.id for r in requests]
    _check_ids(requests)
    cycle = resolve_cycle(con, ids, cycle)
    run = _latest(con, cycle)
    present = {i: row for (_, i), row in kept_findings(con, [(run.number, i) for i in ids]).items()}
    missing = [i for i in ids if i not in present]
    if missing:
        raise InputError(
            _named(missing),
            f"not {'a discrepancy' if len(missing) == 1 else 'discrepancies'} of run "
            f"#{run.number}, the latest of cycle {cycle}",
            hint="Accept ids from that run's discrepancies.csv or report; an id changes when the "
            "lines or amounts behind it change.",
        )
    expected = [i for i in ids if present[i]["severity"] == "expected"]
    if expected:
        raise InputError(
            _named(expected),
            "already an expected difference (retired service in [expected]); nothing to accept",
        )
    body = [
        {
            "id": r.id,
            "reason": r.reason,
            "until": r.until.isoformat() if r.until else None,
            "run": run.number,
            "run_id": run.run_id,
            "finding": _snapshot(present[r.id]),
        }
        for r in requests
    ]
    return ledger.append_many(con, [("accept", cycle, by, b) for b in body])


def unaccept(
    con: duckdb.DuckDBPyConnection, id_: str, cycle: str | None, by: str, reason: str
) -> ledger.Entry:
    """Withdraw the acceptance of one discrepancy (an `unaccept` log entry naming the
    acceptance's entry), the id in any case. Raises InputError when it has no acceptance
    standing."""
    id_ = canonical_id(id_)
    cycle = cycle or _cycle_of_acceptance(con, id_)
    standing_now = standing(ledger.entries(con, cycle), cycle)
    if id_ not in standing_now:
        raise InputError(
            shown(id_), f"has no acceptance standing in cycle {cycle}", hint="Nothing to withdraw."
        )
    body = {"id": id_, "reason": reason, "withdraws": standing_now[id_].entry}
    return ledger.append(con, "unaccept", cycle, by, body)


def _cycle_of_acceptance(con: duckdb.DuckDBPyConnection, id_: str) -> str:
    log = ledger.entries(con)
    accepted_in = {e.cycle for e in log if e.kind == "accept" and e.body.get("id") == id_}
    cycles = sorted(c for c in accepted_in if id_ in standing(log, c))
    if len(cycles) == 1:
        return cycles[0]
    raise InputError(
        shown(id_),
        f"is accepted in cycles {', '.join(cycles)}" if cycles else "has no acceptance standing",
        expected="--cycle YYYY-MM" if cycles else None,
    )


def canonical_id(text: str) -> str:
    """A discrepancy id as given (`d-1E86AFBA07`, surrounding blanks) as the runs write it
    (`D-1e86afba07`); text that is no id in any case comes back stripped, for _check_ids to
    name."""
    text = text.strip()
    return "D-" + text[2:].lower() if ID_ANY_CASE.fullmatch(text) else text


def _check_ids(requests: list[Request]) -> None:
    seen: dict[str, str] = {}
    for r in requests:
        if not ID_PATTERN.fullmatch(r.id):
            raise InputError(
                r.where,
                "is not a discrepancy id",
                expected="an id such as D-1e86afba07 (the id column of discrepancies.csv)",
                got=r.id,
            )
        if r.id in seen:
            raise InputError(r.where, f"{r.id} is listed twice (also {seen[r.id]})")
        seen[r.id] = r.where


def no_run(cycle: str) -> InputError:
    """The error for a cycle the workspace holds no run of (often a mistyped cycle), with the
    command that makes one."""
    return InputError(
        "--cycle",
        f"no run of cycle {cycle} is kept in this workspace",
        hint=f"Make one with `reconcile run --cycle {cycle} --autotask EXPORT --halopsa EXPORT` "
        "(`reconcile history` lists the runs kept).",
    )


def _latest(con: duckdb.DuckDBPyConnection, cycle: str) -> RunRecord:
    run = latest_run(con, cycle)
    if run is None:
        raise no_run(cycle)
    return run


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if row.get(k) is None else str(row[k]) for k in SNAPSHOT_FIELDS}


def _named(ids: list[str]) -> str:
    more = f" and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
    return ", ".join(shown(i) for i in ids[:LISTED]) + more
