"""The DuckDB workspace: loaded cycles, quarantined rows and runs, kept between commands."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from reconcile.config import load_config
from reconcile.duck import frame_of
from reconcile.errors import InputError
from reconcile.model import CANONICAL_SCHEMA
from reconcile.options import DEFAULT_MEMORY_LIMIT, DEFAULT_WORKSPACE
from reconcile.outputs import pause
from reconcile.report_model import CLIENT_SCHEMA
from reconcile.safe import neutralise

__all__ = ["DEFAULT_MEMORY_LIMIT", "DEFAULT_WORKSPACE", "Workspace"]


def memory_limit() -> str:
    """DuckDB's share of memory (it spills to disk beyond it): the settings' [workspace]
    memory_limit, which RECONCILE_MEMORY_LIMIT overrides, e.g. '4GB' on a large machine."""
    return load_config(None).workspace.memory_limit


DUCK_TYPES = {
    pl.String(): "VARCHAR",
    pl.Date(): "DATE",
    pl.Int64(): "BIGINT",
    pl.Decimal(18, 4): "DECIMAL(18,4)",
    pl.Decimal(18, 2): "DECIMAL(18,2)",
}

PENDING_TABLES = ("lines", "quarantine", "pending_loads")  # what an unfinished load has written
ROW_GROUP_ROWS = 122_880  # rows in a DuckDB row group (its default size); see insert_batch
LOAD_CONSTANTS = ("cycle", "source", "load_id", "file_name")  # the first columns of `lines`
LINE_COLUMNS = ",\n    ".join(f"{n} {DUCK_TYPES[t]}" for n, t in CANONICAL_SCHEMA.items())

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS loads (
    load_id VARCHAR NOT NULL,
    cycle VARCHAR NOT NULL,
    platform VARCHAR NOT NULL,
    shape VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    files JSON NOT NULL,
    dialect JSON NOT NULL,
    date_convention VARCHAR NOT NULL,
    number_format VARCHAR DEFAULT '',
    read_with VARCHAR,  -- config.Settings.reading of the load (null: loaded before it was kept)
    rows_read BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    rows_excluded BIGINT NOT NULL,
    rows_skipped BIGINT NOT NULL DEFAULT 0,
    rows_unreadable_amount BIGINT NOT NULL,
    invoice_checks JSON NOT NULL,
    warnings JSON NOT NULL,
    loaded_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    -- The control totals per currency: a list of report_model.CurrencyControl, money as text
    -- (null: loaded before they were kept; such a load is read again, see readings).
    by_currency JSON,
    PRIMARY KEY (load_id, cycle)
);
CREATE TABLE IF NOT EXISTS lines (
    {LINE_COLUMNS}
);
CREATE TABLE IF NOT EXISTS pending_loads (
    load_id VARCHAR NOT NULL,
    cycle VARCHAR NOT NULL,
    started_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE SEQUENCE IF NOT EXISTS run_number;
CREATE TABLE IF NOT EXISTS runs (
    run_number BIGINT PRIMARY KEY DEFAULT nextval('run_number'),
    run_id VARCHAR NOT NULL,
    cycle VARCHAR NOT NULL,
    summary JSON NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS findings (
    run_number BIGINT NOT NULL,
    id VARCHAR NOT NULL,
    rule VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    client VARCHAR,
    autotask_refs VARCHAR NOT NULL,
    halopsa_refs VARCHAR NOT NULL,
    autotask_amount DECIMAL(18,2),
    halopsa_amount DECIMAL(18,2),
    difference DECIMAL(18,2),
    message VARCHAR NOT NULL,
    currency VARCHAR,
    gross_difference DECIMAL(18,2),
    acceptance BIGINT
);
-- A kept run's clients (summary.json's `clients`, report_model.CLIENT_SCHEMA), one row each in
-- the summary's order (`position`): kept beside runs.summary, not in it, since a large cycle
-- lists millions and DuckDB turns a JSON value of hundreds of MB into one allocation it cannot
-- spill (a 3M-line run failed there). history.kept_run puts them back in the summary.
CREATE TABLE IF NOT EXISTS run_clients (
    run_number BIGINT NOT NULL,
    position BIGINT NOT NULL,
    client VARCHAR,
    currency VARCHAR,
    autotask_gross DECIMAL(18,2),
    halopsa_gross DECIMAL(18,2),
    difference DECIMAL(18,2),
    blocker BIGINT,
    warning BIGINT,
    info BIGINT,
    expected BIGINT
);
CREATE TABLE IF NOT EXISTS run_reports (
    run_number BIGINT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    seq BIGINT PRIMARY KEY,
    kind VARCHAR NOT NULL,
    cycle VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    recorded_at VARCHAR NOT NULL,
    body JSON NOT NULL,
    prev VARCHAR NOT NULL,
    hash VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_head (
    entries BIGINT NOT NULL,
    hash VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    load_id VARCHAR NOT NULL,
    cycle VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    file_name VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    line_ref VARCHAR NOT NULL,
    disposition VARCHAR NOT NULL,
    reasons VARCHAR NOT NULL,
    raw JSON NOT NULL,
    net_amount DECIMAL(18,2),
    currency VARCHAR  -- null: none could be read (validate.QUARANTINE_SCHEMA)
);
"""

# Columns added since the first release: a workspace made by an earlier version gains them.
MIGRATIONS = """
ALTER TABLE loads ADD COLUMN IF NOT EXISTS rows_skipped BIGINT DEFAULT 0;
ALTER TABLE loads ADD COLUMN IF NOT EXISTS number_format VARCHAR DEFAULT '';
ALTER TABLE loads ADD COLUMN IF NOT EXISTS read_with VARCHAR;
ALTER TABLE findings ADD COLUMN IF NOT EXISTS currency VARCHAR;
ALTER TABLE findings ADD COLUMN IF NOT EXISTS gross_difference DECIMAL(18,2);
ALTER TABLE findings ADD COLUMN IF NOT EXISTS acceptance BIGINT;
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS currency VARCHAR;
ALTER TABLE loads ADD COLUMN IF NOT EXISTS by_currency JSON;
"""
# Net amounts of all currencies summed into one (before the control totals were kept per
# currency): gone from a workspace that has them; its loads are read again (readings).
DROPPED = """
ALTER TABLE loads DROP COLUMN IF EXISTS net_read;
ALTER TABLE loads DROP COLUMN IF EXISTS net_loaded;
ALTER TABLE loads DROP COLUMN IF EXISTS net_quarantined;
ALTER TABLE loads DROP COLUMN IF EXISTS net_excluded;
ALTER TABLE loads DROP COLUMN IF EXISTS tax_loaded;
"""


RELEASE_FROM = 64 * 2**20  # bytes DuckDB holds below which release_memory leaves them


def release_memory(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """Let DuckDB give back the memory it holds between queries: lowering its limit for a
    moment writes its tables' blocks to its temporary files (read back when a query needs
    them; at 1M lines about 440 MiB let go in 0.7 CPU-s), then the limit is set to `limit`
    (a memory size: the one in force). What cannot be let go (an in-memory database's own
    tables) is kept. Less than RELEASE_FROM held is left (a 20k cycle holds 7-54 MiB at these
    points: writing it out cost 150 ms a run for nothing)."""
    held = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchall()[0][0]
    if (held or 0) < RELEASE_FROM:
        return
    with contextlib.suppress(duckdb.OutOfMemoryException):
        con.execute("SET memory_limit = '1MB'")
    con.execute(f"SET memory_limit = '{limit}'")


SCAN_MEMORY = "200MB"  # DuckDB's limit while a table is read through once (scanning)


def size_bytes(size: str) -> int:
    """A memory size as DuckDB reads it ('400MB': 400 * 10**6, '2GiB': 2 * 2**30) in bytes."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B\s*", size, flags=re.IGNORECASE)
    if found is None:
        raise ValueError(f"not a memory size: {size!r}")
    number, unit, binary = found.groups()
    power = " KMGT".index(unit.upper() or " ")
    return int(float(number) * (1024 if binary else 1000) ** power)


@contextlib.contextmanager
def scanning(con: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """For a block that reads a table through once (read_ranges over a run's discrepancies,
    written to a file as it goes): DuckDB's limit lowered to SCAN_MEMORY (never above `limit`,
    the one in force, which is restored after), so the table's blocks are let go as the read
    moves on rather than kept up to the limit beside the frames being written (at 3M lines a
    side, 290 MiB more at the end of a read of 400k discrepancies)."""
    if size_bytes(limit) > size_bytes(SCAN_MEMORY):
        con.execute(f"SET memory_limit = '{SCAN_MEMORY}'")
    try:
        yield
    finally:
        con.execute(f"SET memory_limit = '{limit}'")


@contextlib.contextmanager
def insertion_order_kept(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Inserts store their query's rows in its order while this holds: the workspace lets
    DuckDB store them in any order (Workspace), but a table read a range of positions at a
    time (read_ranges) is stored in position order. The setting in force is restored after."""
    before = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if before else 'false'}")


RANGE_ROWS = 100_000  # rows read_ranges reads at a time: about 60 MB of a run's kept table


def read_ranges(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: str,
    order: str = "position",
    rows: int | None = None,
) -> Iterator[pl.DataFrame]:
    """The select list `columns` over `table`, stored in the order of its `position` (1 … n,
    as rules.run_rules leaves the discrepancies), as frames of the rows of `rows` (RANGE_ROWS
    unless given) consecutive positions each, in that order (`order`: the ORDER BY within a
    range, `position` first). Each is one range of the table's storage (its zone maps skip
    the rest) sorted within itself, so the table is never read or sorted whole: at 10M lines
    a side, 1.36M discrepancies are about 900 MiB in Python and could not be sorted within
    DuckDB's 400MB. Always at least one frame: an empty table gives one empty frame with the
    select list's types."""
    ranges = position_ranges(con, table, rows)
    if not ranges:
        yield frame_of(con.sql(f"SELECT {columns} FROM {table} LIMIT 0"))
    for start, stop in ranges:
        yield frame_of(
            con.sql(
                f"SELECT {columns} FROM {table} "
                f"WHERE position >= {start} AND position < {stop} ORDER BY {order}"
            )
        )


def position_ranges(
    con: duckdb.DuckDBPyConnection, table: str, rows: int | None = None
) -> list[tuple[int, int]]:
    """The ranges [start, stop) of `rows` (RANGE_ROWS unless given) consecutive values of
    `table`'s `position` (1 … its largest) that read_ranges reads it by; none for a table
    with no rows."""
    last = con.execute(f"SELECT coalesce(max(position), 0) FROM {table}").fetchall()[0][0]
    step = rows or RANGE_ROWS
    return [(start, start + step) for start in range(1, int(last) + 1, step)]


# Workspace.stored_totals' figures per currency.
STORED_TOTALS = (
    "rows_loaded", "net_loaded", "rows_quarantined", "net_quarantined", "rows_excluded",
    "net_excluded",
)  # fmt: skip
QUARANTINE_ORDER = "source, file_name, row_number"  # file order: quarantine.csv's


# The discrepancy columns a run keeps in the findings table (save_run).
KEPT_FINDINGS = (
    "id", "rule", "severity", "client", "autotask_refs", "halopsa_refs", "autotask_amount",
    "halopsa_amount", "difference", "message", "currency", "gross_difference", "acceptance",
)  # fmt: skip


# Characters DuckDB cannot have in a database file's path: it reads `?` as the start of the
# path's options (the write-ahead log lands elsewhere) and `\` as a folder separator.
UNUSABLE_IN_PATH = ("?", "\\")


LINE_ID_PART = 500_000  # line ids Workspace.line_on_two_invoices groups at a time


class Workspace:
    """One DuckDB file. A load is all or nothing: its batches are pending until its record is
    written, and a load that failed or was killed is swept away. Raises InputError for a path
    DuckDB cannot use (UNUSABLE_IN_PATH), a file that is not a workspace, or a workspace
    another process holds."""

    def __init__(self, path: Path | str = DEFAULT_WORKSPACE, memory: str | None = None) -> None:
        self.path = Path(path)
        self.memory_limit = memory or memory_limit()
        unusable = [c for c in UNUSABLE_IN_PATH if c in str(path)]
        if unusable:
            raise InputError(
                str(path),
                "DuckDB cannot keep a workspace in a path holding "
                + " or ".join(f"`{c}`" for c in unusable),
                hint="Choose another folder or file name for --workspace.",
            )
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _refuse_foreign_file(self.path)
        try:
            self.con = duckdb.connect(str(path))
        except duckdb.IOException as exc:
            holder = re.search(r"PID (\d+)", str(exc))
            if "lock" not in str(exc).lower():
                raise
            raise InputError(
                str(path),
                "the workspace is in use by another process"
                + (f" (PID {holder.group(1)})" if holder else ""),
                hint="Wait for the other reconcile command to finish, or use another --workspace.",
            ) from None
        try:
            # Bounded memory: DuckDB spills to disk beyond the limit rather than growing with
            # the cycle; inserts need not keep their rows' order, except where a statement asks
            # for it (insertion_order_kept).
            self.con.execute(f"SET memory_limit = '{self.memory_limit}'")
            self.con.execute("SET preserve_insertion_order = false")
            # DuckDB draws a progress bar on standard output for a query over 2 s: a nightly
            # run's log (and a 10M run's: 260 KB of bars) would hold it between our lines.
            self.con.execute("SET enable_progress_bar = false")
            # One transaction: each statement on its own would commit (and sync the file) on its
            # own, 17 syncs in a new workspace.
            with self.transaction():
                self.con.execute(SCHEMA)
                self.con.execute(MIGRATIONS)
                self.con.execute(DROPPED)
            self._sweep_pending()
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self.con.close()
            raise

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()
            return
        with contextlib.suppress(duckdb.Error):  # the error in flight says more than this
            self.close()

    def readings(self, cycle: str) -> list[tuple[str, str, str | None]]:
        """(platform, load id, the settings it was read with: config.Settings.reading, or None
        for a load kept before they were or before its control totals were kept per currency:
        such a load is to be read again) of each of the cycle's loads, by platform and id."""
        rows = self.con.execute(
            "SELECT platform, load_id, CASE WHEN by_currency IS NOT NULL THEN read_with END "
            "FROM loads WHERE cycle = ? ORDER BY ALL",
            [cycle],
        ).fetchall()
        return [(str(p), str(i), None if r is None else str(r)) for p, i, r in rows]

    def drop_load(self, load_id: str, cycle: str) -> None:
        """A load's lines, quarantined rows and record removed (to be read again)."""
        self._delete(load_id, cycle, ("lines", "quarantine", "loads"))

    def load_ids(self, cycle: str, platform: str) -> list[str]:
        rows = self.con.execute(
            "SELECT load_id FROM loads WHERE cycle = ? AND platform = ? ORDER BY load_id",
            [cycle, platform],
        ).fetchall()
        return [r[0] for r in rows]

    def forget(self, cycle: str, platform: str, keep: set[str]) -> None:
        """Drop a side's earlier loads for the cycle, so a re-export replaces, not adds."""
        for load_id in set(self.load_ids(cycle, platform)) - keep:
            self.drop_load(load_id, cycle)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction of the workspace's connection: committed when the block ends, rolled
        back when it raises."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def insert_batch(
        self, lines: pl.DataFrame, rejected: pl.DataFrame, constants: dict[str, str]
    ) -> None:
        """One batch of a load. Per-load constants travel as parameters, not as columns; the
        frames reach DuckDB as Arrow, their columns already of the table's types.

        `lines` should hold whole row groups (a multiple of ROW_GROUP_ROWS) but in a load's
        last call: DuckDB writes a large insert's row groups straight to the file, and a partial
        group left between whole ones makes its next checkpoint rewrite them (about twice the
        work, and a larger file). For the same reason one DuckDB thread writes: each thread
        appends a partial group of its own. DuckDB keeps what it wrote cached up to its memory
        limit, and a load reads none of it back: the cache is let go after each batch (lowering
        the limit for a moment evicts it), so that a load's memory stays flat in the size of
        the export. A load's last part of a row group (less than ROW_GROUP_ROWS lines and no
        quarantined rows: all of a small export) stays cached, at most one row group a load;
        a batch with nothing to store costs no query.
        """
        varying = [c for c in CANONICAL_SCHEMA if c not in LOAD_CONSTANTS]
        inserts = {
            "_lines": (
                lines.select(varying),
                f"INSERT INTO lines SELECT $cycle, $source, $load_id, $file_name, "
                f"{', '.join(varying)} FROM _lines",
            ),
            "_rejected": (
                rejected,
                "INSERT INTO quarantine SELECT $load_id, $cycle, $source, $file_name, row_number, "
                "line_ref, disposition, reasons, raw, net_amount, currency FROM _rejected",
            ),
        }
        stored = {name: work for name, work in inserts.items() if work[0].height}
        if not stored:
            return
        self.con.execute("SET threads = 1")
        try:
            # One commit (a write-ahead log write and sync) for both tables.
            with self.transaction():
                for name, (frame, insert) in stored.items():
                    # An Arrow C stream: no pyarrow table is built, nor pyarrow imported.
                    self.con.register(name, frame.__arrow_c_stream__())
                    try:
                        self.con.execute(insert, constants)
                    finally:
                        self.con.unregister(name)
        finally:
            self.con.execute("RESET threads")
            if lines.height >= ROW_GROUP_ROWS or rejected.height:
                self.release_memory()

    @contextlib.contextmanager
    def staged_load(self, load_id: str, cycle: str) -> Iterator[None]:
        """Batches commit one at a time, because DuckDB's memory grows with a transaction's size
        (one transaction over a 3M-line export took 1.4 GB). Until insert_load the load is
        pending: a failure discards it at once; a killed process leaves it for the next open."""
        pending = [load_id, cycle]
        self.con.execute("INSERT INTO pending_loads (load_id, cycle) VALUES (?, ?)", pending)
        try:
            yield
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self._delete(load_id, cycle, PENDING_TABLES)
            raise

    def discard_rows(self, load_id: str, cycle: str) -> None:
        """The lines and quarantined rows a pending load has stored so far go (it stays
        pending): its batches are to be stored again."""
        self._delete(load_id, cycle, ("lines", "quarantine"))

    def insert_load(self, record: dict[str, Any]) -> None:
        """The load's record; writing it ends the pending state in the same transaction."""
        columns = list(record)
        values = [json.dumps(v) if isinstance(v, (dict, list)) else v for v in record.values()]
        with self.transaction():
            self.con.execute(
                f"INSERT INTO loads ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})",
                values,
            )
            self.con.execute(
                "DELETE FROM pending_loads WHERE load_id = ? AND cycle = ?",
                [record["load_id"], record["cycle"]],
            )

    def dates_outside_cycle(
        self, load_id: str, cycle: str
    ) -> tuple[int, int, dt.date | None, dt.date | None]:
        """Lines of a load invoiced outside the cycle's month, lines with an invoice date, and
        the first and last invoice date."""
        row = self.con.execute(
            """
            SELECT count(*) FILTER (WHERE strftime(invoice_date, '%Y-%m') <> $cycle),
                   count(invoice_date), min(invoice_date), max(invoice_date)
            FROM lines WHERE load_id = $id AND cycle = $cycle
            """,
            {"id": load_id, "cycle": cycle},
        ).fetchall()[0]
        return int(row[0]), int(row[1]), row[2], row[3]

    def repeated_lines(
        self, load_id: str, cycle: str, platform: str, others: set[str] | None
    ) -> tuple[str, str, str] | None:
        """A line id or invoice number of this load that another load of the same side and
        cycle already holds (all of them, or only `others`): (what, value, the other file).

        Row-number refs ('row:N', given to lines of exports without ids) are not ids."""
        scope = "" if others is None else "AND load_id IN (SELECT unnest($others))"
        for what, column, own in (
            ("line id", "line_ref", "AND line_ref NOT LIKE 'row:%'"),
            ("invoice", "invoice_number", ""),
        ):
            # Distinct values each side first: an invoice's many lines must not multiply.
            found = self.con.execute(
                f"""
                WITH mine AS (
                    SELECT {column} AS value, min(row_number) AS row_number FROM lines
                    WHERE load_id = $id AND cycle = $cycle AND source = $platform
                      AND {column} IS NOT NULL {own}
                    GROUP BY ALL
                ), theirs AS (
                    SELECT DISTINCT {column} AS value, file_name FROM lines
                    WHERE load_id <> $id AND cycle = $cycle AND source = $platform {scope}
                )
                SELECT mine.value, theirs.file_name FROM mine JOIN theirs USING (value)
                ORDER BY mine.row_number, theirs.file_name LIMIT 1
                """,
                {"id": load_id, "cycle": cycle, "platform": platform}
                | ({} if others is None else {"others": sorted(others)}),
            ).fetchall()
            if found:
                return what, str(found[0][0]), str(found[0][1])
        return None

    def line_on_two_invoices(self, load_id: str, cycle: str) -> tuple[str, str, str] | None:
        """A line id this load holds on two invoices: (the id, the first and the last of its
        invoice numbers in text order), of the id first in the export; None when every id is
        on one invoice. Row-number refs ('row:N') are not ids. The ids are looked at in parts
        of about LINE_ID_PART lines (by their hash), so memory stays flat in the load's size;
        a part is grouped by id only when it repeats one (an export usually repeats none)."""
        scope = "load_id = $id AND cycle = $cycle AND line_ref NOT LIKE 'row:%'"
        params: dict[str, Any] = {"id": load_id, "cycle": cycle}
        rows = self.con.execute(f"SELECT count(*) FROM lines WHERE {scope}", params).fetchall()
        parts = max(1, -(-int(rows[0][0]) // LINE_ID_PART))
        found = []
        for part in range(parts):
            # Hashing each id costs more than the rest of the query: only to part them.
            where = scope if parts == 1 else f"{scope} AND hash(line_ref) % {parts} = {part}"
            repeats = self.con.execute(
                f"SELECT count(*) > count(DISTINCT line_ref) FROM lines WHERE {where}", params
            ).fetchall()
            if repeats[0][0]:
                found += self.con.execute(
                    f"""
                    SELECT min(row_number), line_ref, min(invoice_number), max(invoice_number)
                    FROM lines WHERE {where}
                    GROUP BY line_ref HAVING min(invoice_number) <> max(invoice_number)
                    ORDER BY 1 LIMIT 1
                    """,
                    params,
                ).fetchall()
        if not found:
            return None
        _, line_ref, first, last = min(found)
        return str(line_ref), str(first), str(last)

    def _sweep_pending(self) -> None:
        pending = self.con.execute("SELECT load_id, cycle FROM pending_loads").fetchall()
        for load_id, cycle in pending:
            self._delete(load_id, cycle, PENDING_TABLES)

    def _delete(self, load_id: str, cycle: str, tables: tuple[str, ...]) -> None:
        with self.transaction():
            for table in tables:
                self.con.execute(
                    f"DELETE FROM {table} WHERE load_id = ? AND cycle = ?", [load_id, cycle]
                )

    def next_run_number(self) -> int:
        """The number the next saved run takes (reserved: an unsaved run leaves a gap)."""
        return int(self.con.execute("SELECT nextval('run_number')").fetchall()[0][0])

    def save_run(
        self,
        number: int,
        run_id: str,
        cycle: str,
        summary: bytes,
        clients: str,
        findings: str,
        report: Path,
    ) -> None:
        """Keep every run: history (new, open, resolved), acceptances and sign-offs are built
        from these rows. `summary`: summary.json's content but its clients, compact
        (Summary.json_without_clients); `clients`: the query of its clients, kept in
        run_clients: `position` (in the summary's order, from 0) and report_model.CLIENT_SCHEMA's
        columns; `findings`: the query of the run's
        discrepancies with (at least) the columns KEPT_FINDINGS (run.OUTPUT_COLUMNS' and
        `acceptance`, the ledger entry accepting it, or null), inserted by DuckDB from the
        query; `report`: the file holding the report's data, compressed (history.report_blob),
        so a sign-off pack can render it again, read by DuckDB (not through Python's memory).
        The report's data is kept first, in a transaction of its own, and DuckDB's memory let
        go before the run's rows are: committed with them, a 126 MB blob (10M lines a side)
        raised the commit's peak by about 500 MiB; in its own transaction it still raises
        it by about 480 MiB (a 126 MB blob alone: 363 in the insert, 120 in the commit), the
        peak of a 10M-line run (983-987 MiB). The run's rows are inserted at DuckDB's scanning
        limit (scanning: each table is read through once; at 3M lines a side the save's peak
        went from 695 to 536 MiB). Kept data whose run is not kept (a run killed between the two; a
        run number is never used twice) is removed by the next save.
        Raises RuntimeError when that file is not read back as one file."""
        with self.transaction():
            # read_blob takes a glob: the file is picked out by its name, and must be there.
            (inserted,) = self.con.execute(
                "INSERT INTO run_reports SELECT ?, content FROM read_blob(?) WHERE filename = ?",
                [number, str(report), str(report)],
            ).fetchall()[0]
            if inserted != 1:
                raise RuntimeError(f"the report's data was not read back from {report}")
        pause("report data kept")
        self.release_memory()
        with scanning(self.con, self.memory_limit), self.transaction():
            self.con.execute(
                "DELETE FROM run_reports WHERE run_number <> ? "
                "AND run_number NOT IN (SELECT run_number FROM runs)",
                [number],
            )
            self.con.execute(
                "INSERT INTO runs (run_number, run_id, cycle, summary) VALUES (?, ?, ?, ?)",
                [number, run_id, cycle, summary.decode()],
            )
            names = ", ".join(["position", *CLIENT_SCHEMA])
            self.con.execute(
                f"INSERT INTO run_clients (run_number, {names}) SELECT ?, {names} FROM ({clients})",
                [number],
            )
            kept = ", ".join(KEPT_FINDINGS)
            self.con.execute(
                f"INSERT INTO findings (run_number, {kept}) SELECT ?, {kept} FROM ({findings})",
                [number],
            )

    def logged_bytes(self) -> int:
        """The size of the workspace's write-ahead log in bytes (0: none, or in memory)."""
        log = self.path.with_name(f"{self.path.name}.wal")
        return log.stat().st_size if str(self.path) != ":memory:" and log.exists() else 0

    def checkpoint(self) -> None:
        """Write what the write-ahead log holds into the workspace's file (DuckDB's CHECKPOINT)
        on a cursor of its own, so that it may run on another thread while the connection
        goes on reading and writing temporary tables (run._checkpoint_beside)."""
        with self.con.cursor() as cursor:
            cursor.execute("CHECKPOINT")

    def release_memory(self) -> None:
        """release_memory of the workspace's connection, its limit left where it was."""
        release_memory(self.con, self.memory_limit)

    def stored_totals(
        self, load_id: str, cycle: str
    ) -> tuple[int, dict[str | None, dict[str, Any]]]:
        """Read back what was written, so control totals check the store, not memory: the
        rows skipped, and per currency (None: the rows whose currency could not be read) the
        rows and net amounts loaded, quarantined and excluded (STORED_TOTALS: int, Decimal)."""
        # One scan of each table: the quarantine's dispositions counted and summed apart.
        rows = self.con.execute(
            """
            WITH l AS (
                SELECT currency, count(*) AS rows_loaded, sum(net_amount) AS net_loaded
                FROM lines WHERE load_id = $id AND cycle = $cycle GROUP BY currency
            ), q AS (
                SELECT currency,
                       count(*) FILTER (WHERE disposition = 'quarantined') AS rows_quarantined,
                       sum(net_amount) FILTER (WHERE disposition = 'quarantined')
                           AS net_quarantined,
                       count(*) FILTER (WHERE disposition = 'excluded') AS rows_excluded,
                       sum(net_amount) FILTER (WHERE disposition = 'excluded') AS net_excluded,
                       count(*) FILTER (WHERE disposition = 'skipped') AS rows_skipped
                FROM quarantine WHERE load_id = $id AND cycle = $cycle GROUP BY currency
            )
            SELECT currency, coalesce(sum(COLUMNS(* EXCLUDE (currency))), 0)
            FROM (SELECT * FROM l UNION ALL BY NAME SELECT * FROM q)
            GROUP BY currency
            """,
            {"id": load_id, "cycle": cycle},
        ).fetchall()
        keys = ("currency", *STORED_TOTALS, "rows_skipped")
        found = [dict(zip(keys, row, strict=True)) for row in rows]
        skipped = sum(f.pop("rows_skipped") for f in found)
        counted = {
            f.pop("currency"): f
            for f in found
            if any(f[k] for k in STORED_TOTALS if k.startswith("rows_"))
        }
        return int(skipped), counted

    def write_quarantine(self, load_id: str, cycle: str) -> Path:
        """The quarantine as a file beside the workspace, for people without a SQL client."""
        folder = self.path.parent / "quarantine" / cycle
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{load_id[:16]}.csv"
        frame = self.frame(
            "SELECT source, file_name, row_number, line_ref, disposition, reasons, raw, "
            "net_amount, currency FROM quarantine WHERE load_id = ? AND cycle = ? "
            "ORDER BY row_number",
            [load_id, cycle],
        )
        neutralise(frame).write_csv(path)
        return path

    def loads(self, cycle: str) -> pl.DataFrame:
        return self.frame(
            "SELECT * EXCLUDE (loaded_at) FROM loads WHERE cycle = ? ORDER BY platform, load_id",
            [cycle],
        )

    def quarantined(self, cycle: str, disposition: str | None = None) -> pl.DataFrame:
        """The cycle's rows of the quarantine table (those of `disposition` when given), in
        file order."""
        return self.frame(
            "SELECT * FROM quarantine WHERE cycle = $cycle "
            "AND ($disposition IS NULL OR disposition = $disposition) "
            f"ORDER BY {QUARANTINE_ORDER}",
            {"cycle": cycle, "disposition": disposition},
        )

    def copy_quarantine(self, cycle: str, path: Path) -> None:
        """The cycle's rows of the quarantine table as quarantine.csv holds them (less load_id
        and cycle), in file order, written by DuckDB into the Parquet file `path` (never whole
        in memory: a 10M-line HaloPSA export has some 200,000 excluded rows, each with its raw
        values); the file has the columns also when there are no rows, raw (JSON) as its text.
        Sorted and written at DuckDB's scanning limit (scanning): at its full limit the copy
        raised a 10M-line run's memory by 290 MiB, held after it."""
        with scanning(self.con, self.memory_limit), insertion_order_kept(self.con):
            self.con.execute(
                "COPY (SELECT * EXCLUDE (load_id, cycle) REPLACE (raw::VARCHAR AS raw) "
                f"FROM quarantine WHERE cycle = '{_literal(cycle)}' ORDER BY {QUARANTINE_ORDER}) "
                f"TO '{_literal(str(path))}' (FORMAT parquet)"
            )

    def frame(self, query: str, params: list[Any] | dict[str, Any]) -> pl.DataFrame:
        frame: pl.DataFrame = frame_of(self.con.sql(query, params=params))
        return frame

    def lines(self, cycle: str, platform: str) -> duckdb.DuckDBPyRelation:
        return self.con.sql(
            f"SELECT * FROM lines WHERE cycle = '{_literal(cycle)}' "
            f"AND source = '{_literal(platform)}'"
        )


DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file


def _refuse_foreign_file(path: Path) -> None:
    """DuckDB opens an existing CSV or Parquet file as a throw-away in-memory database, so a
    mistyped --workspace would lose every load silently; refuse anything not a DuckDB file."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        magic = fh.read(12)[8:12]
    if magic != DUCKDB_MAGIC:
        raise InputError(
            str(path),
            "this file is not a reconcile workspace",
            expected="a DuckDB database file, or the name of a new one",
            hint="--workspace names the DuckDB file reconcile keeps its state in; exports are "
            "given to load and run themselves.",
        )


def _literal(value: str) -> str:
    return value.replace("'", "''")
