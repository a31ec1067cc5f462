"""CSV and XLSX exports of either platform: one header row, one line per row."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import fastexcel
import polars as pl

from reconcile.errors import InputError
from reconcile.load.base import (
    EXCLUDE,
    PROBLEM,
    ROW,
    SKIP,
    RawFrame,
    detect_platform,
    map_headers,
)
from reconcile.load.dialect import (
    Dialect,
    find_ragged_row,
    short_last_record,
    sniff,
    utf8_source,
)

GRID_EXPORT_LIMIT = 5000  # Autotask grid exports stop at this many rows
TRUE_WORDS = ("true", "1", "yes", "y", "-1")


def read_csv(path: Path, claimed: str | None) -> RawFrame:
    dialect = sniff(path)
    headers = _csv_header(path, dialect)
    positional = [f"c{i}" for i in range(len(headers))]
    frame = pl.scan_csv(
        utf8_source(path, dialect),
        separator=dialect.separator,
        has_header=True,
        new_columns=positional,
        infer_schema=False,
        empty_string_is_null=True,
        row_index_name=ROW,
        row_index_offset=1,
        raise_if_empty=False,
    )

    def on_error(exc: Exception) -> InputError:
        return _unreadable(path, dialect, exc)

    short = short_last_record(path, dialect, len(headers))
    problems = None
    if short is not None:
        last = _collect(frame.select(pl.len()), on_error).item()
        problems = (
            pl.when(pl.col(ROW) == last)
            .then(pl.lit(f"the row is cut off: it has {short} of {len(headers)} fields"))
            .otherwise(None)
        )
    return _to_raw(path, claimed, headers, frame, dialect.describe(), "csv", problems, on_error)


def _collect(query: pl.LazyFrame, on_error: Callable[[Exception], InputError]) -> pl.DataFrame:
    try:
        return query.collect()
    except pl.exceptions.PolarsError as exc:
        raise on_error(exc) from None


def read_xlsx(path: Path, claimed: str | None) -> RawFrame:
    try:
        sheet = fastexcel.read_excel(str(path)).load_sheet(0, header_row=None, dtypes="string")
        grid = sheet.to_polars()
    except Exception as exc:  # fastexcel raises its own error types for damaged workbooks
        raise InputError(
            str(path),
            "the workbook cannot be read",
            expected="an .xlsx file saved by Excel or exported by the PSA",
            got=str(exc).splitlines()[0],
        ) from None
    if grid.height == 0:
        raise InputError(str(path), "the worksheet is empty", expected="a header row and data rows")
    headers = [str(v).strip() if v is not None else "" for v in grid.row(0)]
    positional = [f"c{i}" for i in range(len(headers))]
    frame = (
        grid.slice(1)
        .rename(dict(zip(grid.columns, positional, strict=True)))
        .with_row_index(ROW, offset=1)
        .filter(~pl.all_horizontal(pl.col(c).is_null() for c in positional))
    )
    return _to_raw(path, claimed, headers, frame.lazy(), {"workbook": "xlsx"}, "xlsx", None, None)


def _csv_header(path: Path, dialect: Dialect) -> list[str]:
    encoding = "utf-8-sig" if dialect.encoding.startswith("utf-8") else dialect.encoding
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        header = next(csv.reader(fh, delimiter=dialect.separator), [])
    return [h.strip() for h in header]


def _unreadable(path: Path, dialect: Dialect, exc: Exception) -> InputError:
    ragged = find_ragged_row(path, dialect)
    if ragged is not None:
        row, found, expected = ragged
        return InputError(
            str(path),
            f"the row has {found} fields but the header has {expected}",
            row=row,
            expected=f"{expected} fields separated by {dialect.describe()['separator']}",
            hint="A value may contain an unquoted separator, or the file was damaged; "
            "export it again.",
        )
    return InputError(
        str(path),
        "the file cannot be read as CSV",
        expected="a CSV export with one header row",
        got=str(exc).splitlines()[0],
    )


def _to_raw(
    path: Path,
    claimed: str | None,
    headers: list[str],
    frame: pl.LazyFrame,
    dialect: dict[str, str],
    kind: str,
    problems: pl.Expr | None,
    on_error: Callable[[Exception], InputError] | None,
) -> RawFrame:
    file = str(path)
    platform = detect_platform(file, headers, claimed)
    mapping = map_headers(file, platform, headers)
    if frame.head(1).collect().height == 0:
        raise InputError(file, "the file has a header but no data rows", expected="invoice lines")
    position = {h: f"c{i}" for i, h in enumerate(headers)}
    columns = [pl.col(ROW).cast(pl.Int64)]
    columns += [
        pl.col(position[column]).str.strip_chars().alias(raw_field)
        for raw_field, column in mapping.items()
    ]
    raw = frame.select(columns)
    names = raw.collect_schema().names()
    raw = raw.with_columns(
        _halo_exclusions(names)
        if platform == "halopsa"
        else pl.lit(None, pl.String).alias(EXCLUDE),
        (problems if problems is not None else pl.lit(None, pl.String)).alias(PROBLEM),
        pl.lit(None, pl.String).alias(SKIP),
    ).drop([c for c in ("isgroupdesc", "isinactive", "invoice_id") if c in names])
    return RawFrame(
        file=file,
        platform=platform,
        shape=f"{platform}-{kind}",
        frame=raw,
        columns=mapping,
        files=(path,),
        dialect=dialect,
        on_error=on_error,
    )


def grid_warning(raw: RawFrame, rows_read: int) -> str | None:
    """Autotask grid exports stop at 5,000 rows: a file of exactly that many is suspect."""
    if raw.shape in ("autotask-csv", "autotask-xlsx") and rows_read == GRID_EXPORT_LIMIT:
        return (
            f"{Path(raw.file).name} has exactly {GRID_EXPORT_LIMIT} rows, the limit of Autotask "
            "grid exports: it is probably truncated. Export with the export wizard instead."
        )
    return None


def _truthy(name: str) -> pl.Expr:
    return pl.col(name).str.to_lowercase().is_in(TRUE_WORDS).fill_null(False)


def _halo_exclusions(names: list[str]) -> pl.Expr:
    """Group headers, inactive lines and recurring templates are not billed lines."""
    expr = pl.lit(None, pl.String)
    if "invoice_id" in names:
        template = pl.col("invoice_id").str.strip_chars().str.starts_with("-")
        expr = pl.when(template).then(pl.lit(TEMPLATE_REASON)).otherwise(expr)
    if "isinactive" in names:
        expr = pl.when(_truthy("isinactive")).then(pl.lit(INACTIVE_REASON)).otherwise(expr)
    if "isgroupdesc" in names:
        expr = pl.when(_truthy("isgroupdesc")).then(pl.lit(GROUP_REASON)).otherwise(expr)
    return expr.alias(EXCLUDE)


GROUP_REASON = "HaloPSA group header (isgroupdesc): a heading on the invoice, not a billed line"
INACTIVE_REASON = "inactive HaloPSA line (isinactive): shown on the template, not billed"
TEMPLATE_REASON = "HaloPSA recurring-invoice template (negative invoice id), not an invoice"
