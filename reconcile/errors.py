"""Errors a user can act on. Each carries what a billing admin needs to fix the input."""

from __future__ import annotations

from dataclasses import dataclass

from reconcile.safe import shown

EXIT_OK = 0
EXIT_BLOCKERS = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_TAMPERED = 4
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report a command it ended


class RefusedError(Exception):
    """A finance step that cannot be taken yet (a sign-off with blockers open, a pack of a
    superseded sign-off): each reason says what is in the way. The CLI exits 1."""

    def __init__(self, summary: str, reasons: list[str]) -> None:
        super().__init__(summary)
        self.summary = summary
        self.reasons = reasons

    def __str__(self) -> str:
        return "\n".join(
            shown(line) for line in [self.summary, *(f"  - {r}" for r in self.reasons)]
        )


class TamperedError(Exception):
    """The finance log or a hash it binds no longer holds: `verify` names the first broken
    entry. The CLI exits 4."""


@dataclass
class InputError(Exception):
    """An input file cannot be used as it is; the CLI prints it and exits with 2."""

    file: str
    problem: str
    row: int | None = None
    column: str | None = None
    expected: str | None = None
    got: str | None = None
    hint: str | None = None
    line: int | None = None  # the file's line (1-based), for a file read line by line

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.line is not None:
            where += f", line {self.line}"
        if self.column is not None:
            where += f", column '{self.column}'"
        text = f"{where}: {self.problem}"
        if self.expected is not None:
            text += f"; expected {self.expected}"
        if self.got is not None:
            text += f", got {_quote(self.got)}"
        text += "" if text.endswith(("?", ".")) else "."
        if self.hint:
            text += f" {self.hint}"
        return shown(text)


def _quote(value: str, limit: int = 60) -> str:
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    return repr(shown)
