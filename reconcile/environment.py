"""Faults of the machine, not of reconcile: a full disk, a read-only or misnamed folder, a
damaged workspace, DuckDB's memory cap. Each becomes an InputError (exit 2) naming the path and
what to do; anything not recognised here stays a bug (exit 3)."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import duckdb

from reconcile.errors import InputError
from reconcile.store import memory_limit

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
ADVICE = {
    errno.ENOSPC: ("the disk is full", "Free some space, or choose a folder on another disk."),
    errno.EDQUOT: ("the disk quota is used up", "Free some space, or choose another folder."),
    errno.EFBIG: ("the file grew beyond what the filesystem allows", "Choose another folder."),
    errno.EROFS: (
        "the filesystem is read-only",
        "Choose a folder you can write to (--out, --workspace or RECONCILE_WORKSPACE).",
    ),
    errno.EACCES: (
        "permission denied",
        "Choose a folder you can write to, or ask for write access to this one.",
    ),
    errno.EPERM: (
        "the operation is not permitted here",
        "Choose a folder you can write to, or ask for write access to this one.",
    ),
    errno.ENOTDIR: (
        "a part of this path is a file, not a folder",
        "Choose another folder, or move the file out of the way.",
    ),
    errno.EEXIST: (
        "a file of this name is in the way of a folder",
        "Choose another folder, or move the file out of the way.",
    ),
    errno.EISDIR: ("this is a folder, where a file was expected", "Choose a file name."),
    errno.ENAMETOOLONG: ("the path is too long", "Choose a shorter path."),
    errno.ELOOP: ("the path loops through symbolic links", "Choose another path."),
    errno.EIO: (
        "the disk reported an input/output error",
        "Check the disk, or choose a folder on another one.",
    ),
}
# DuckDB reports operating-system failures in its message text only.
DUCKDB_OS_MESSAGES = (
    ("no space left on device", errno.ENOSPC),
    ("disk quota exceeded", errno.EDQUOT),
    ("read-only file system", errno.EROFS),
    ("permission denied", errno.EACCES),
    ("not a directory", errno.ENOTDIR),
    ("file exists", errno.EEXIST),
    ("file name too long", errno.ENAMETOOLONG),
)
DAMAGED = (
    "corrupt database file",
    "could not read enough bytes",
    "checksum",
    "not a valid duckdb database",
    "the file is not a valid",
    "failed to read database header",
    "invalid block",
    "database file is truncated",
)


def environment_error(exc: BaseException, workspace: Path | None) -> InputError | None:
    """The fault as a message a user can act on, or None when it is not one of these.

    `workspace` names the path when the error does not (the workspace, or the output folder)."""
    code = _errno(exc) if isinstance(exc, OSError) else None
    if isinstance(exc, OSError) and code is not None and code in ADVICE:
        what, todo = ADVICE[code]
        path = exc.filename or workspace or "the output"
        return InputError(str(path), what, hint=todo)
    if isinstance(exc, duckdb.OutOfMemoryException):
        return InputError(
            str(workspace or "the workspace"),
            f"DuckDB ran out of memory{_held(exc)} and could not spill to disk "
            f"(RECONCILE_MEMORY_LIMIT is {_limit()}; a step that reads a table through "
            "once runs at less)",
            hint="Raise RECONCILE_MEMORY_LIMIT (e.g. RECONCILE_MEMORY_LIMIT=2GB) on a machine "
            "with more memory, and check the disk holding the workspace has free space.",
        )
    if isinstance(exc, duckdb.Error):
        text = str(exc)
        lower = text.lower()
        for fragment, code in DUCKDB_OS_MESSAGES:
            if fragment in lower:
                what, todo = ADVICE[code]
                return InputError(_duckdb_path(text) or str(workspace), what, hint=todo)
        if any(fragment in lower for fragment in DAMAGED):
            return InputError(
                str(workspace or _duckdb_path(text) or "the workspace"),
                "the workspace file is damaged (DuckDB cannot read it)",
                got=_first_line(exc),
                hint="Restore the workspace from a backup, or start a new one with another "
                "--workspace and load the cycle's exports again.",
            )
    return None


def _errno(exc: OSError) -> int | None:
    """The error number; libraries that raise OSError(message) leave it only in the text:
    `[Errno 28] …` (Python's wording), `… (os error 28)` (Rust's: polars' writers)."""
    if exc.errno is not None:
        return exc.errno
    found = re.match(r"\[Errno (\d+)\]", str(exc)) or re.search(r"\(os error (\d+)\)", str(exc))
    return int(found.group(1)) if found else None


def _limit() -> str:
    try:
        return memory_limit()
    except InputError:
        return "RECONCILE_MEMORY_LIMIT"


def _duckdb_path(text: str) -> str | None:
    found = re.search(r'"([^"]+)"', text)
    return found.group(1) if found else None


def _held(exc: BaseException) -> str:
    """What DuckDB's out-of-memory message says it held of what it may use ('(1.0 MiB/1.9
    MiB used)'), as a clause; empty when it does not say."""
    found = re.search(r"\(([\d.]+ \w+)/([\d.]+ \w+) used\)", str(exc))
    return f": it held {found[1]} of the {found[2]} it may use" if found else ""


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
