"""What joined files and spreadsheets leave in the rows of a tabular export, found batch by batch:
the header repeated below the data (two exports joined into one file), Excel's error values
(`#N/A`) and ids Excel rounded into scientific notation (`2.02609E+11`).

Each check first asks one cheap question of the batch (a net amount without a digit, a cell
starting with `#`, a cell holding `E+`); the few rows that answer yes are looked at closely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from reconcile.errors import InputError
from reconcile.load.base import (
    PROBLEM,
    ROW,
    SKIP,
    TOTAL_LABEL,
    VOCABULARY,
    normalise_header,
)
from reconcile.model import ID_FIELDS

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


@dataclass
class Screen:
    """RawFrame.screen of one tabular export: each batch with repeated header rows marked SKIP
    and Excel artefacts as PROBLEMs.

    A batch holds ROW, PROBLEM, SKIP and a String column per raw field in `columns` (raw field
    -> the export's column name); `rows` is the whole export. Raises InputError for a header
    repeated in another column order (the rows below it would be read under the wrong
    columns), and for a file that repeats its header and holds a line of one part in another
    (the same export joined to itself: every line would count twice). That check reads the
    whole export, once: at the first batch holding a repeated header.
    """

    file: str
    platform: str
    columns: dict[str, str]
    rows: pl.LazyFrame
    lines_checked: bool = field(default=False, init=False)

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame:
        fields = [f for f in self.columns if f in batch.columns]
        header_rows = _repeated_header(batch, self.file, self.platform, self.columns, fields)
        if len(header_rows):
            if not self.lines_checked:
                _refuse_repeated_lines(self.rows, self.file, self.columns, fields)
                self.lines_checked = True
            again = pl.col(ROW).is_in(header_rows.implode())
            batch = batch.with_columns(
                pl.when(again).then(pl.lit(REPEATED_HEADER)).otherwise(pl.col(SKIP)).alias(SKIP)
            )
        return _excel_artefacts(batch, self.columns, fields)


def _normalised(name: str) -> pl.Expr:
    """The cell compared as normalise_header compares column names."""
    return pl.col(name).str.to_lowercase().str.replace_all("[^a-z0-9]", "")


def _repeated_header(
    batch: pl.DataFrame, file: str, platform: str, columns: dict[str, str], fields: list[str]
) -> pl.Series:
    """The ROW of each of the batch's rows that is the export's header again (no digit in its
    net amount, HEADER_LIKE cells naming known columns); InputError when one names them in
    another order."""
    none = pl.Series(ROW, [], dtype=batch.schema[ROW])
    if "net_amount" not in batch.columns:
        return none
    wordy = batch["net_amount"].str.contains("[0-9]").not_()  # null (blank) stays null
    if not wordy.any():
        return none
    suspects = batch.filter(wordy)
    known = sorted(VOCABULARY[platform] | {normalise_header(c) for c in columns.values()})
    named = pl.sum_horizontal(_normalised(f).is_in(known).cast(pl.Int32) for f in fields)
    header_rows = suspects.filter(named >= HEADER_LIKE).with_columns(
        _own_header(columns, fields).alias("_own")
    )
    moved = header_rows.filter(~pl.col("_own"))
    if moved.height:
        row = moved.row(0, named=True)
        misplaced = next(
            f for f in fields if normalise_header(row[f] or "") != normalise_header(columns[f])
        )
        raise InputError(
            file,
            "the header is repeated on this row with its columns in another order (exports "
            "joined into one file?): the rows below it would be read under the wrong columns",
            row=row[ROW],
            column=columns[misplaced],
            expected=f"the column '{columns[misplaced]}' where the first header has it",
            got=row[misplaced] or "",
            hint="Load each export as its own file, or join them under one header.",
        )
    return header_rows[ROW]


def _own_header(columns: dict[str, str], fields: list[str]) -> pl.Expr:
    """Whether a row is the export's own header again: every cell its column's name."""
    return pl.all_horizontal(
        _normalised(f).eq_missing(pl.lit(normalise_header(columns[f]))) for f in fields
    )


def _refuse_repeated_lines(
    rows: pl.LazyFrame, file: str, columns: dict[str, str], fields: list[str]
) -> None:
    """A file that repeats its header is exports joined together (its parts: the rows from one
    header to the next). When a line of one part is in another too, (part of) one export was
    joined to itself or to an overlapping one, and every repeated line would count twice: the
    file is refused. A line is told by its line id where the export has one, else by the whole
    row; a row labelled as a totals row ("Total", "Grand Total" in any cell) is no line."""
    keyed = "line_ref" in fields
    key = pl.col("line_ref") if keyed else pl.struct(fields)
    present = (
        pl.col("line_ref").is_not_null()
        if keyed
        else pl.any_horizontal(pl.col(f).is_not_null() for f in fields)
    )
    # A line id is a line's whatever its names say ("Total Fitness Ltd"); without ids, a row
    # labelled like a totals row is taken for one here (validate decides by its amount).
    labels = ["line_ref"] if keyed else fields
    labelled = pl.any_horizontal(pl.col(f).str.contains(TOTAL_LABEL) for f in labels)
    line = present & ~labelled.fill_null(False)
    header = _own_header(columns, fields)
    twice = (
        rows.select(ROW, *fields)
        .with_columns(header.cast(pl.Int32).cum_sum().alias("_part"), key.alias("_key"))
        .filter(line & ~header)
        .group_by("_key")
        .agg(
            pl.col(ROW).first().alias("first"),
            pl.col(ROW).filter(pl.col("_part") != pl.col("_part").first()).first().alias("again"),
        )
        .drop_nulls("again")
        .sort("again")
        .head(1)
        .collect()
    )
    if not twice.height:
        return
    _, first, again = twice.row(0)
    what = f"the line id {twice['_key'][0]!r}" if keyed else "the same line, in every column,"
    raise InputError(
        file,
        f"{what} of row {first} is here again, in another part of a file that repeats its "
        "header: the file holds (part of) the same export twice, and every repeated line "
        "would count twice",
        row=again,
        column=columns["line_ref"] if keyed else None,
        expected="each line once",
        hint="Load each export once, as its own file.",
    )


def _excel_artefacts(
    batch: pl.DataFrame, columns: dict[str, str], fields: list[str]
) -> pl.DataFrame:
    ids = [f for f in ID_COLUMNS if f in fields]
    errors = pl.any_horizontal(pl.col(f).str.starts_with("#") for f in fields)
    exponents = pl.any_horizontal(pl.col(f).str.contains("E+", literal=True) for f in ids)
    hit = batch.select(
        errors.fill_null(False).any().alias("errors"),
        (exponents.fill_null(False).any() if ids else pl.lit(False)).alias("exponents"),
    ).row(0)
    if not any(hit):
        return batch
    reasons = []
    if hit[0]:
        reasons += _cell_reasons(
            columns,
            fields,
            lambda f: pl.col(f).is_in(EXCEL_ERRORS),
            "column '{}': Excel's error value '{}' (the cell's formula failed), not a value; "
            "correct the formula in Excel and save again",
        )
    if hit[1]:
        reasons += _cell_reasons(
            columns,
            ids,
            lambda f: pl.col(f).str.contains(EXCEL_EXPONENT),
            "column '{}': '{}' is an id Excel rounded into scientific notation (its digits are "
            "lost); format the column as Text in Excel, or export again",
        )
    found = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    problem = (
        pl.when(found == "")
        .then(pl.col(PROBLEM))
        .otherwise(pl.concat_str([pl.col(PROBLEM), found], separator="; ", ignore_nulls=True))
    )
    return batch.with_columns(problem.alias(PROBLEM))


def _cell_reasons(
    columns: dict[str, str], fields: list[str], found: Callable[[str], pl.Expr], reason: str
) -> list[pl.Expr]:
    """Per field, the reason (a format of the column's name and the cell) where `found` holds
    for the cell, else null."""
    return [
        pl.when(found(f)).then(pl.format(reason, pl.lit(columns[f]), pl.col(f))) for f in fields
    ]
