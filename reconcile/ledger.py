"""The finance log: an append-only, hash-chained record of acceptances, withdrawals and sign-offs.

Every entry is kept in the workspace's `ledger` table as

    seq (1, 2, …), kind ("accept" | "unaccept" | "signoff"), cycle (YYYY-MM), actor (the name
    given with --by), at (UTC, "YYYY-MM-DDTHH:MM:SSZ"), body (JSON object), prev, hash

where `hash` is the SHA-256 (hex) of the entry's canonical serialisation (`canonical`: JSON with
sorted keys, no spaces, UTF-8) of {seq, kind, cycle, by, at, body, prev}, and `prev` is the hash
of the entry before it (64 zeros for the first). The one row of `ledger_head` holds the number
of entries and the last hash, so a removed last entry is noticed too. Changing any entry breaks
its own hash or its successor's link; `check_chain` finds the first such break.

The clock is the machine's UTC time; `RECONCILE_NOW` (an ISO 8601 UTC datetime, tests only)
sets it, so an acceptance's --until can be seen to pass without waiting.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import duckdb

from reconcile.wording import counted

GENESIS = "0" * 64
KINDS = ("accept", "unaccept", "signoff")


def now() -> dt.datetime:
    """The current UTC time, to the second (RECONCILE_NOW overrides it for tests)."""
    fixed = os.environ.get("RECONCILE_NOW")
    moment = dt.datetime.fromisoformat(fixed) if fixed else dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def timestamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical(value: Any) -> bytes:
    """The one serialisation that is hashed: JSON, keys sorted, no insignificant space, UTF-8.
    Values must be JSON types already (money as decimal strings, never floats)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(value: Any) -> str:
    """SHA-256 (hex) of a value's canonical serialisation."""
    return hashlib.sha256(canonical(value)).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One log entry as stored; `hash` is what was stored, `computed()` what the content gives."""

    seq: int
    kind: str
    cycle: str
    by: str
    at: str
    body: dict[str, Any]
    prev: str
    hash: str

    def content(self) -> dict[str, Any]:
        """What the hash covers (every field but the hash itself)."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "cycle": self.cycle,
            "by": self.by,
            "at": self.at,
            "body": self.body,
            "prev": self.prev,
        }

    def computed(self) -> str:
        return digest(self.content())

    def record(self) -> dict[str, Any]:
        """The entry as exported (the content plus its hash)."""
        return self.content() | {"hash": self.hash}

    @property
    def label(self) -> str:
        """How messages name the entry: `entry 3 (accept D-1e86afba07 by Ann Lee, 2026-…)`."""
        subject = self.body.get("id") or (f"run #{self.body['run']}" if "run" in self.body else "")
        what = " ".join(str(p) for p in (self.kind, subject) if p)
        return f"entry {self.seq} ({what} by {self.by}, {self.at})"


def append(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    cycle: str,
    by: str,
    body: dict[str, Any],
    at: dt.datetime | None = None,
) -> Entry:
    """Add one entry after the current head, in one transaction with the head's update.

    Raises ValueError for an unknown kind (a programming error, not a user's)."""
    return append_many(con, [(kind, cycle, by, body)], at)[0]


def append_many(
    con: duckdb.DuckDBPyConnection,
    items: list[tuple[str, str, str, dict[str, Any]]],
    at: dt.datetime | None = None,
) -> list[Entry]:
    """Several entries (kind, cycle, by, body) chained in order, all or none (one INSERT)."""
    stamp = timestamp(at or now())
    written: list[Entry] = []
    con.execute("BEGIN TRANSACTION")
    try:
        head = con.execute("SELECT entries, hash FROM ledger_head").fetchall()
        seq, prev = (int(head[0][0]), str(head[0][1])) if head else (0, GENESIS)
        for kind, cycle, by, body in items:
            if kind not in KINDS:
                raise ValueError(f"unknown ledger entry kind {kind!r}")
            seq += 1
            unsealed = Entry(seq, kind, cycle, by, stamp, body, prev, "")
            written.append(Entry(seq, kind, cycle, by, stamp, body, prev, unsealed.computed()))
            prev = written[-1].hash
        con.execute(
            "INSERT INTO ledger SELECT unnest($seq), unnest($kind), unnest($cycle), "
            "unnest($by), $at, unnest($body), unnest($prev), unnest($hash)",
            {
                "seq": [e.seq for e in written],
                "kind": [e.kind for e in written],
                "cycle": [e.cycle for e in written],
                "by": [e.by for e in written],
                "at": stamp,
                "body": [canonical(e.body).decode() for e in written],
                "prev": [e.prev for e in written],
                "hash": [e.hash for e in written],
            },
        )
        con.execute("DELETE FROM ledger_head")
        con.execute("INSERT INTO ledger_head VALUES (?, ?)", [seq, prev])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return written


def entries(con: duckdb.DuckDBPyConnection, cycle: str | None = None) -> list[Entry]:
    """Entries in log order, every cycle's or one cycle's. A body that is not a JSON object
    (an edited entry) is read as {"unreadable": text}, which check_chain reports."""
    rows = con.execute(
        "SELECT seq, kind, cycle, actor, recorded_at, CAST(body AS VARCHAR), prev, hash "
        "FROM ledger " + ("WHERE cycle = ? " if cycle else "") + "ORDER BY seq",
        [cycle] if cycle else [],
    ).fetchall()
    return [
        Entry(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), _body(r[5]), *r[6:8])
        for r in rows
    ]


def _body(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text}
    return value if isinstance(value, dict) else {"unreadable": text}


@dataclass(frozen=True)
class Break:
    """The first place the chain does not hold: the entry (its seq) and what is wrong."""

    seq: int
    problem: str


def check_chain(con: duckdb.DuckDBPyConnection) -> tuple[list[Entry], Break | None]:
    """Re-compute every entry's hash and link, in order, and the head. Returns the entries
    and the first break (None when the whole log holds)."""
    log = entries(con)
    prev, expected_seq = GENESIS, 1
    for entry in log:
        if entry.seq != expected_seq:
            missing = (
                f"entry {expected_seq}"
                if entry.seq == expected_seq + 1
                else f"entries {expected_seq} to {entry.seq - 1}"
            )
            return log, Break(
                expected_seq, f"{missing} removed: the log jumps to entry {entry.seq}"
            )
        if entry.computed() != entry.hash:
            return log, Break(
                entry.seq,
                f"{entry.label} was altered: its content no longer gives its hash "
                f"{entry.hash[:16]}…",
            )
        if entry.prev != prev:
            return log, Break(
                entry.seq - 1,
                f"entry {entry.seq - 1} was replaced: {entry.label} records its hash as "
                f"{entry.prev[:16]}…, but it hashes to {prev[:16]}…",
            )
        prev, expected_seq = entry.hash, expected_seq + 1
    head = con.execute("SELECT entries, hash FROM ledger_head").fetchall()
    count, last = (int(head[0][0]), str(head[0][1])) if head else (0, GENESIS)
    if (count, last) == (len(log), prev):
        return log, None
    if not head:
        return log, Break(len(log), "the log's head record (table ledger_head) was removed")
    if count > len(log):
        gone = f"entry {count}" if count == len(log) + 1 else f"entries {len(log) + 1}-{count}"
        recorded = counted(count, "entry", "entries")
        return log, Break(len(log) + 1, f"{gone} removed: the log's head records {recorded}")
    return log, Break(
        len(log),
        f"the log's head records {counted(count, 'entry', 'entries')} ending in {last[:16]}…, "
        "but the log holds "
        f"{len(log)} ending in {prev[:16]}…",
    )
