"""`reconcile workbook OUT_DIR`: the Excel workbook of a run's discrepancies, written after the
run from the discrepancies.parquet in its output folder, byte for byte as `reconcile run`
writes it (outputs.write_xlsx on the same table), for a run made without it
([outputs] workbook = false, `run --no-workbook`).

The file is written under the output folder's lock (outputs.locked_folder: a run swapping the
folder waits, and so does this) and replaced whole (outputs.replace_file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from reconcile.errors import InputError
from reconcile.outputs import locked_folder, replace_file, write_xlsx
from reconcile.report_model import WORKBOOK_FILE

PARQUET_FILE = "discrepancies.parquet"
SUMMARY_FILE = "summary.json"  # every run's output folder holds one


def write_later(out: Path) -> tuple[Path, int]:
    """Write out/discrepancies.xlsx from out/discrepancies.parquet: (the workbook's path, its
    number of discrepancy rows). InputError (exit 2) when `out` is not a folder, not a run's
    output folder (no summary.json), or its discrepancies.parquet is missing, cannot be read,
    does not hold the table a run writes (check_table) or holds another number of rows than
    the summary counts (_check_count). The table is read a chunk at a time
    (read_chunks) as the workbook is written: memory is flat in its number of rows."""
    if not out.is_dir():
        raise InputError(
            str(out),
            "no such folder" if not out.exists() else "not a folder",
            expected="the output folder of a `reconcile run` (its --out)",
        )
    if not (out / SUMMARY_FILE).is_file():
        raise InputError(
            str(out),
            f"not the output folder of a `reconcile run` (it holds no {SUMMARY_FILE})",
            hint="Give the folder a run wrote its outputs into (its --out).",
        )
    with locked_folder(out):
        parquet = out / PARQUET_FILE
        if not parquet.is_file():
            raise InputError(
                str(parquet),
                "the run's discrepancy table is missing: the workbook is written from it",
                hint="Run `reconcile run` again into this folder (with --workbook, or without "
                "--no-workbook, to have the workbook written by the run).",
            )
        rows = table_rows(parquet)
        _check_count(out / SUMMARY_FILE, parquet, rows)
        workbook = out / WORKBOOK_FILE
        replace_file(workbook, lambda path: write_xlsx(read_chunks(parquet, rows), path))
    return workbook, rows


def _check_count(summary: Path, parquet: Path, rows: int) -> None:
    """Refuse (InputError) a table that is not the one the folder's summary.json counts: its
    number of rows per rule and severity (counts.by_rule) and of accepted ones per severity
    (counts.accepted) must be the summary's. Another run's table (one made before the
    acceptances, of the same size), or one cut short, would make a workbook that is not the
    run's."""
    try:
        counts = json.loads(summary.read_bytes())["counts"]
        expected = {
            (rule, severity): int(n)
            for rule, by_severity in counts["by_rule"].items()
            for severity, n in by_severity.items()
            if n
        }
        accepted = {severity: int(n) for severity, n in counts["accepted"].items() if n}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            str(summary),
            "cannot be read as a run's summary (its counts of discrepancies)",
            got=(str(exc).splitlines() or [type(exc).__name__])[0],
            hint="Run `reconcile run` again into this folder.",
        ) from None
    table = pl.scan_parquet(parquet, glob=False)
    try:
        found = table.group_by("rule", "severity").len().collect().rows()
        taken = table.filter(pl.col("status") == "accepted").group_by("severity").len().collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _unreadable(parquet, exc) from None
    if {(r, s): n for r, s, n in found} != expected or dict(taken.rows()) != accepted:
        counted = sum(expected.values())
        raise InputError(
            str(parquet),
            f"holds {rows:,} discrepancies that are not the {counted:,} the run's "
            f"{SUMMARY_FILE} counts (per rule, severity and acceptance): the two files are not "
            "of the same run",
            hint="Run `reconcile run` again into this folder.",
        )


READ_ROWS = 100_000  # rows read from the Parquet file at a time (about 60 MB of the table)


def table_rows(parquet: Path) -> int:
    """The number of rows of a run's discrepancies.parquet, its schema checked first
    (check_table); read from the file's metadata, not its rows. InputError when the file
    cannot be read as Parquet."""
    try:
        # By name, never as a pattern: a folder may be named `Billing [2026]`.
        scan = pl.scan_parquet(parquet, glob=False)
        schema = dict(scan.collect_schema())
        rows = scan.select(pl.len()).collect().item()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _unreadable(parquet, exc) from None
    check_table(schema, rows, str(parquet))
    return int(rows)


def read_chunks(parquet: Path, rows: int) -> Iterator[pl.DataFrame]:
    """The table of a Parquet file of `rows` rows (table_rows), READ_ROWS rows at a time, in
    its order; one empty frame of its schema when it has none. Each chunk is read when asked
    for (a slice of the scan: only the row groups it covers), so one is held at a time.
    InputError when the file cannot be read as Parquet (a damaged page is found as it is
    read)."""
    for start in range(0, max(rows, 1), READ_ROWS):
        try:
            chunk = pl.scan_parquet(parquet, glob=False).slice(start, READ_ROWS).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise _unreadable(parquet, exc) from None
        yield chunk


def _unreadable(parquet: Path, exc: Exception) -> InputError:
    return InputError(
        str(parquet),
        "cannot be read as a Parquet file",
        got=(str(exc).splitlines() or [type(exc).__name__])[0],
        hint="Run `reconcile run` again into this folder to write it anew.",
    )


def check_table(schema: Mapping[str, pl.DataType], rows: int, source: str) -> None:
    """Refuse (InputError) a table other than the one a run writes (`schema`: its columns and
    types, `rows`: its number of rows): its columns exactly run.OUTPUT_SCHEMA's, in order, and
    each column of the kind the workbook writes from its type (text, date, or a decimal of
    OUTPUT_SCHEMA's places: money to 2, quantities and unit prices to 4; the precision is not
    the workbook's concern). A run without discrepancies wrote every column as text before
    2026-12, so an empty table of text columns is a run's too."""
    from reconcile.run import OUTPUT_SCHEMA  # here: the run's workbook child imports this module

    columns = list(schema)
    expected = list(OUTPUT_SCHEMA)
    if columns != expected:
        missing = [c for c in expected if c not in columns]
        extra = [c for c in columns if c not in expected]
        found = (
            f"missing {', '.join(missing) or 'none'}; unexpected {', '.join(extra) or 'none'}"
            if missing or extra
            else "the same columns in another order"
        )
        raise InputError(
            source,
            "does not hold the discrepancy table a run writes",
            expected=f"the {len(expected)} columns {', '.join(expected)}",
            got=found,
        )
    if rows == 0 and all(t == pl.String for t in schema.values()):
        return
    for name, dtype in schema.items():
        if _kind(dtype) != _kind(OUTPUT_SCHEMA[name]):
            raise InputError(
                source,
                "does not hold the discrepancy table a run writes",
                column=name,
                expected=str(OUTPUT_SCHEMA[name]),
                got=str(dtype),
            )


def _kind(dtype: pl.DataType) -> object:
    """What decides how the workbook writes a column: a decimal's places, else the type."""
    return ("decimal", dtype.scale) if isinstance(dtype, pl.Decimal) else dtype
