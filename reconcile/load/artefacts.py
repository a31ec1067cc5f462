"""What joined files and spreadsheets leave in the rows of a tabular export, found batch by batch:
the header repeated below the data (two exports joined into one file), Excel's error values
(`#N/A`) and ids Excel rounded into scientific notation (`2.02609E+11`).

Each check first asks one cheap question of the batch (a net amount without a digit, a cell
starting with `#`, a cell holding `E+`); the few rows that answer yes are looked at closely.
"""

from __future__ import annotations

import polars as pl

from reconcile.errors import InputError
from reconcile.load.base import PROBLEM, ROW, SKIP, VOCABULARY, normalise_header
from reconcile.model import DATE_FIELDS, DECIMAL_FIELDS, ID_FIELDS

REPEATED_HEADER = "the header repeated (exports joined into one file): not a line"
# Excel's error values: what a cell whose formula failed shows, and what a CSV saves of it.
EXCEL_ERRORS = (
    "#N/A",
    "#REF!",
    "#VALUE!",
    "#NAME?",
    "#DIV/0!",
    "#NUM!",
    "#NULL!",
    "#SPILL!",
    "#CALC!",
    "#FIELD!",
    "#BLOCKED!",
    "#CONNECT!",
    "#BUSY!",
    "#UNKNOWN!",
    "#GETTING_DATA",
)
# A long number Excel showed in its General format and saved as shown: 4.04E+11. The digits
# after the sixth are gone, so the id it was cannot be told.
EXCEL_EXPONENT = r"^[+-]?[0-9](?:\.[0-9]+)?E\+[0-9]{2,3}$"
ID_COLUMNS = ("line_ref", "invoice_number", *ID_FIELDS)
HEADER_LIKE = 3  # cells naming known columns that make a row a header row


def screen(
    batch: pl.DataFrame, file: str, platform: str, columns: dict[str, str], rows: pl.LazyFrame
) -> pl.DataFrame:
    """The batch with repeated header rows marked SKIP and Excel artefacts as PROBLEMs.

    `batch` holds ROW, PROBLEM, SKIP and a String column per raw field in `columns` (raw field
    -> the export's column name); `rows` is the whole export the batch is part of. Raises
    InputError for a header repeated in another column order (the rows below it would be read
    under the wrong columns), and for a file with a repeated header whose line ids repeat too
    (the same export joined to itself: every line would count twice).
    """
    fields = [f for f in columns if f in batch.columns]
    batch = _repeated_header(batch, file, platform, columns, fields, rows)
    return _excel_artefacts(batch, columns, fields)


def _normalised(name: str) -> pl.Expr:
    """The cell compared as normalise_header compares column names."""
    return pl.col(name).str.to_lowercase().str.replace_all("[^a-z0-9]", "")


def _repeated_header(
    batch: pl.DataFrame,
    file: str,
    platform: str,
    columns: dict[str, str],
    fields: list[str],
    rows: pl.LazyFrame,
) -> pl.DataFrame:
    if "net_amount" not in batch.columns:
        return batch
    wordy = batch["net_amount"].str.contains("[0-9]").not_()  # null (blank) stays null
    if not wordy.any():
        return batch
    suspects = batch.filter(wordy)
    known = sorted(VOCABULARY[platform] | {normalise_header(c) for c in columns.values()})
    named = pl.sum_horizontal(_normalised(f).is_in(known).cast(pl.Int32) for f in fields)
    own = pl.all_horizontal(
        _normalised(f).eq_missing(pl.lit(normalise_header(columns[f]))) for f in fields
    )
    header_rows = suspects.filter(named >= HEADER_LIKE).with_columns(own.alias("_own"))
    if not header_rows.height:
        return batch
    moved = header_rows.filter(~pl.col("_own"))
    if moved.height:
        row = moved.row(0, named=True)
        field = next(
            f for f in fields if normalise_header(row[f] or "") != normalise_header(columns[f])
        )
        raise InputError(
            file,
            "the header is repeated on this row with its columns in another order (exports "
            "joined into one file?): the rows below it would be read under the wrong columns",
            row=row[ROW],
            column=columns[field],
            expected=f"the column '{columns[field]}' where the first header has it",
            got=row[field] or "",
            hint="Load each export as its own file, or join them under one header.",
        )
    if "line_ref" in fields:
        _refuse_repeated_lines(rows, file, columns["line_ref"], int(header_rows[ROW][0]))
    again = pl.col(ROW).is_in(header_rows[ROW].implode())
    return batch.with_columns(
        pl.when(again).then(pl.lit(REPEATED_HEADER)).otherwise(pl.col(SKIP)).alias(SKIP)
    )


def _refuse_repeated_lines(rows: pl.LazyFrame, file: str, column: str, header_row: int) -> None:
    """A file that repeats its header is files joined together; when a line id is in it twice,
    (part of) one export was joined to itself or to an overlapping one."""
    ids = pl.col("line_ref")
    twice = (
        rows.select(ROW, "line_ref")
        .filter(ids.is_not_null() & (_normalised("line_ref") != normalise_header(column)))
        .group_by("line_ref")
        .agg(
            pl.col(ROW).min().alias("first"), pl.col(ROW).sort().slice(1, 1).first().alias("again")
        )
        .filter(pl.col("again").is_not_null())
        .sort("again")
        .head(1)
        .collect()
    )
    if not twice.height:
        return
    line, first, again = twice.row(0)
    raise InputError(
        file,
        f"the line id {line!r} of row {first} is here again, below the header repeated on row "
        f"{header_row}: the file holds (part of) the same export twice, and every repeated line "
        "would count twice",
        row=again,
        column=column,
        expected="each line once",
        hint="Load each export once, as its own file.",
    )


def _excel_artefacts(
    batch: pl.DataFrame, columns: dict[str, str], fields: list[str]
) -> pl.DataFrame:
    ids = [f for f in ID_COLUMNS if f in fields]
    # Amount and date columns refuse an error value as no number or no date already.
    texts = [f for f in fields if f not in DECIMAL_FIELDS and f not in DATE_FIELDS]
    errors = pl.any_horizontal(pl.col(f).str.starts_with("#") for f in texts)
    exponents = pl.any_horizontal(pl.col(f).str.contains("E+", literal=True) for f in ids)
    hit = batch.select(
        errors.fill_null(False).any().alias("errors"),
        (exponents.fill_null(False).any() if ids else pl.lit(False)).alias("exponents"),
    ).row(0)
    if not any(hit):
        return batch
    reasons = []
    if hit[0]:
        reasons += [
            pl.when(pl.col(f).is_in(EXCEL_ERRORS)).then(
                pl.format(
                    "column '{}': Excel's error value '{}' (the cell's formula failed), not a "
                    "value; correct the formula in Excel and save again",
                    pl.lit(columns[f]),
                    pl.col(f),
                )
            )
            for f in texts
        ]
    if hit[1]:
        reasons += [
            pl.when(pl.col(f).str.contains(EXCEL_EXPONENT)).then(
                pl.format(
                    "column '{}': '{}' is an id Excel rounded into scientific notation (its "
                    "digits are lost); format the column as Text in Excel, or export again",
                    pl.lit(columns[f]),
                    pl.col(f),
                )
            )
            for f in ids
        ]
    found = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    problem = (
        pl.when(found == "")
        .then(pl.col(PROBLEM))
        .otherwise(pl.concat_str([pl.col(PROBLEM), found], separator="; ", ignore_nulls=True))
    )
    return batch.with_columns(problem.alias(PROBLEM))
