"""Read export files of either platform into RawFrames; the shape is found from the content."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from reconcile.errors import InputError
from reconcile.litter import LITTER_PREFIXES
from reconcile.load.base import PLATFORM_NAMES, RawFrame
from reconcile.load.documents import api_bundles, autotask_xml, read_json
from reconcile.load.tabular import read_csv, read_xlsx
from reconcile.load.workbook import COMPOUND_FILE

# A folder stands for these files; .xls is among them to be refused with what to do (an Excel
# 97-2003 workbook is not read), never skipped unseen.
EXPORT_SUFFIXES = {".csv", ".tsv", ".txt", ".xlsx", ".xls", ".json", ".xml"}
ZIP_MAGIC = b"PK\x03\x04"

__all__ = ["RawFrame", "expand", "read_inputs"]


def expand(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """A folder stands for the export files directly inside it, in name order. Returns (the
    files, a note per lock file passed over in a folder: Excel's `~$` owner file or
    LibreOffice's `.~lock.` file beside a workbook open in it). A lock file named as a file
    is refused (_refuse_lock_file)."""
    files: list[Path] = []
    notes: list[str] = []
    for path in paths:
        if path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.is_file())
            locks = [p for p in entries if p.name.startswith(LITTER_PREFIXES)]
            found = [
                p
                for p in entries
                if p.suffix.lower() in EXPORT_SUFFIXES
                and not p.name.startswith(".")
                and p not in locks
            ]
            if not found:
                raise InputError(
                    str(path),
                    "the folder holds no export files",
                    expected="CSV, XLSX, JSON or XML files",
                )
            files.extend(found)
            notes += [f"{p} was not read: it is {_lock_file_of(p.name)}" for p in locks]
        elif path.is_file():
            _refuse_lock_file(path)
            files.append(path)
        else:
            raise InputError(str(path), "no such file or folder")
    return files, notes


def _locked_name(lock: str) -> str:
    """The name of the workbook a lock file stands beside: Excel's owner file is `~$` and the
    workbook's name, LibreOffice's `.~lock.`, the name and `#` (LITTER_PREFIXES)."""
    prefix = next(p for p in LITTER_PREFIXES if lock.startswith(p))
    return lock.removeprefix(prefix).removesuffix("#")


def _lock_file_of(lock: str) -> str:
    """What a lock file named `lock` is, as messages say it."""
    return (
        f"the owner (lock) file Excel (or LibreOffice) keeps beside the workbook "
        f"{_locked_name(lock)!r} while it is open, not an export"
    )


def _refuse_lock_file(path: Path) -> None:
    """InputError for a lock file named as an export: it holds a user's name, not lines."""
    if path.name.startswith(LITTER_PREFIXES):
        workbook = path.with_name(_locked_name(path.name))
        raise InputError(
            str(path),
            f"this is {_lock_file_of(path.name)}",
            expected="the workbook itself",
            hint=f"Save the workbook in Excel and give {str(workbook)!r}.",
        )


def read_inputs(paths: list[Path], claimed: str | None) -> list[RawFrame]:
    """One RawFrame per tabular/XML file, and one per platform for all JSON pages together.
    Lock files passed over in a folder are named in the warnings of the first frame."""
    frames: list[RawFrame] = []
    json_docs: list[tuple[Path, Any]] = []
    files, notes = expand(paths)
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".json":
            json_docs.append((path, read_json(path)))
        elif suffix == ".xml":
            frames.append(_check_platform(autotask_xml(path), claimed))
        elif suffix == ".xlsx" or _is_workbook(path):
            frames.append(read_xlsx(path, claimed))
        else:
            frames.append(read_csv(path, claimed))
    if json_docs:
        label = str(paths[0]) if len(paths) == 1 else str(json_docs[0][0])
        frames.extend(_check_platform(f, claimed) for f in api_bundles(label, json_docs))
    if notes:
        frames[0] = replace(frames[0], warnings=(*notes, *frames[0].warnings))
    return frames


def _is_workbook(path: Path) -> bool:
    """Whatever its name: a zip package (an .xlsx renamed), or an OLE compound file (a workbook
    saved with a password, or an .xls), which read_xlsx's check refuses with what to do."""
    with path.open("rb") as fh:
        head = fh.read(len(COMPOUND_FILE))
    return head.startswith(ZIP_MAGIC) or head == COMPOUND_FILE


def _check_platform(frame: RawFrame, claimed: str | None) -> RawFrame:
    if claimed and claimed != frame.platform:
        raise InputError(
            frame.file,
            f"this looks like a {PLATFORM_NAMES[frame.platform]} export, "
            f"not {PLATFORM_NAMES[claimed]}",
            expected=f"{PLATFORM_NAMES[claimed]} data",
            got=frame.shape,
            hint=f"Load it with --platform {frame.platform}, or check you picked the right file.",
        )
    return frame
