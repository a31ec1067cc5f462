"""Read export files of either platform into RawFrames; the shape is found from the content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconcile.errors import InputError
from reconcile.load.base import PLATFORM_NAMES, RawFrame
from reconcile.load.documents import api_bundles, autotask_xml, read_json
from reconcile.load.tabular import read_csv, read_xlsx
from reconcile.load.workbook import COMPOUND_FILE

# A folder stands for these files; .xls is among them to be refused with what to do (an Excel
# 97-2003 workbook is not read), never skipped unseen.
EXPORT_SUFFIXES = {".csv", ".tsv", ".txt", ".xlsx", ".xls", ".json", ".xml"}
ZIP_MAGIC = b"PK\x03\x04"

__all__ = ["RawFrame", "expand", "read_inputs"]


def expand(paths: list[Path]) -> list[Path]:
    """A folder stands for the export files directly inside it, in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.is_file()
                and p.suffix.lower() in EXPORT_SUFFIXES
                and not p.name.startswith(".")
            )
            if not found:
                raise InputError(
                    str(path),
                    "the folder holds no export files",
                    expected="CSV, XLSX, JSON or XML files",
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(str(path), "no such file or folder")
    return files


def read_inputs(paths: list[Path], claimed: str | None) -> list[RawFrame]:
    """One RawFrame per tabular/XML file, and one per platform for all JSON pages together."""
    frames: list[RawFrame] = []
    json_docs: list[tuple[Path, Any]] = []
    for path in expand(paths):
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
