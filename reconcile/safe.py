"""Values from the exports, made safe for whoever reads them next: a spreadsheet or a terminal.

Spreadsheets (Excel, LibreOffice, Google Sheets) run a CSV cell that starts with `=`, `+`, `-`
or `@` as a formula, and strip a leading TAB or CR first, so `\\t=1+1` arrives as a live `=1+1`.
OWASP's rule (CSV injection): prefix such a cell with `'`, which every spreadsheet shows as
text. Numbers stay numbers: `-12.50` is not prefixed.

Terminals obey escape sequences in what is printed: an invoice number holding `ESC [2J` would
clear the screen, and a newline in a file name splits a log line. `shown` writes every control
character (C0, DEL, C1) and the bidirectional overrides as a visible escape.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import polars as pl

    Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

FORMULA_START = r"^(?:[\t\r\n]|[\t\r\n ]*[=+\-@\uff1d\uff0b\uff0d\uff20])"
NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_FORMULA = re.compile(FORMULA_START)
_NUMBER = re.compile(NUMBER)
# C0 and C1 controls, DEL, and the Unicode bidi controls that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def cell(value: str) -> str:
    """One spreadsheet cell: text that a spreadsheet would run as a formula is prefixed `'`."""
    if _FORMULA.match(value) and not _NUMBER.match(value):
        return "'" + value
    return value


def uncell(value: str) -> str:
    """The value `cell` was given: a `'` it added is taken off again (reading back a file
    reconcile wrote, such as `map suggest`'s)."""
    if value.startswith("'") and cell(value[1:]) != value[1:]:
        return value[1:]
    return value


def cell_expr(column: str) -> pl.Expr:
    """`cell` over a String column, as a polars expression (vectorised for large outputs)."""
    import polars as pl  # here, not at the top: errors.py (every command) imports this module

    text = pl.col(column)
    risky = text.str.contains(FORMULA_START) & ~text.str.contains(NUMBER)
    return pl.when(risky.fill_null(False)).then("'" + text).otherwise(text).alias(column)


def neutralise(frame: Frame) -> Frame:
    """Every String column of a frame (or of a lazy frame's plan) made safe for a spreadsheet;
    other columns unchanged."""
    import polars as pl

    strings = [name for name, dtype in frame.collect_schema().items() if dtype == pl.String]
    return frame.with_columns(cell_expr(name) for name in strings) if strings else frame


def shown(value: object) -> str:
    """A value as a terminal or log line may print it: control characters escaped."""
    return _CONTROL.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if char in named:
        return named[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
