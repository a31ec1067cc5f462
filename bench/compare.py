"""Same outputs? `make compare AGAINST=REV [COMPARE_SIZE=100k]`.

Runs the demo cycle and a realistic cycle (fixtures/generate.py, 100,000 lines per side unless
told) twice: with the code of git revision REV (checked out into a temporary worktree) and with
this checkout, on the same input paths, each in a fresh workspace; then compares every output
file byte for byte. A speed change must leave every byte as it was; where bytes differ the
comparison says how far: only the run id (rule files or templates changed, so the engine digest
in the run id did), the same cells in another XLSX layout, the same rows and types in another
Parquet layout, or the first differing line.

Exit 0 when every file is byte-identical, 1 when any differs (each listed), 2 when a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import openpyxl
import polars as pl

from bench import ROOT, parse_size, realistic

DEMO = ROOT / "fixtures" / "demo"
CYCLE = "2026-11"


def run(code: Path, case: str, inputs: list[str], out: Path) -> None:
    """`reconcile run` with the code in `code` (run from that folder; the inputs are absolute
    paths, so both runs record the same), into `out`."""
    workspace = out.parent / f"{out.name}.duckdb"
    workspace.unlink(missing_ok=True)
    done = subprocess.run(
        [
            sys.executable, "-c", "from reconcile.cli import main; main()",
            "--workspace", str(workspace), "run", "--cycle", CYCLE, *inputs, "--out", str(out),
        ],
        cwd=code,  # `-c` puts the working folder first on sys.path, before PYTHONPATH
        env={**os.environ, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
    )  # fmt: skip
    workspace.unlink(missing_ok=True)
    if done.returncode > 1:  # 1: blockers remain, as in every realistic cycle
        sys.exit(f"{case}: the run with {code} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def cells(path: Path) -> list[tuple[str, list[tuple[object, str]]]]:
    """Each sheet's name and its cells' values and number formats, row by row."""
    book = openpyxl.load_workbook(path, read_only=True)
    return [
        (sheet.title, [(c.value, c.number_format) for row in sheet.iter_rows() for c in row])
        for sheet in book.worksheets
    ]


def same_rows(before: Path, after: Path) -> bool:
    """Two Parquet files hold the same rows in the same order with the same column types (their
    bytes may differ: row groups, compression, writer)."""
    old, new = pl.read_parquet(before), pl.read_parquet(after)
    return old.schema == new.schema and old.equals(new)


def run_id(summary: Path) -> str:
    return str(json.loads(summary.read_text(encoding="utf-8"))["run_id"])


def difference(before: Path, after: Path, ids: tuple[str, str]) -> str | None:
    """None when the files are byte-identical, else how they differ."""
    if not before.exists() or not after.exists():
        return "only in " + ("the new run" if after.exists() else "the old run")
    old, new = before.read_bytes(), after.read_bytes()
    if old == new:
        return None
    if ids[0] != ids[1] and old.replace(ids[0].encode(), ids[1].encode()) == new:
        return "differs only in the run id"
    if before.suffix == ".xlsx":
        same = cells(before) == cells(after)
        return "same sheets, cells and formats; other bytes" if same else "cells differ"
    if before.suffix == ".parquet":
        return "same rows and types; other bytes" if same_rows(before, after) else "rows differ"
    if before.suffix in {".csv", ".json"}:
        for n, (a, b) in enumerate(zip(old.splitlines(), new.splitlines(), strict=False), 1):
            if a != b:
                return f"line {n} differs: {a[:80]!r} -> {b[:80]!r}"
        return f"{len(old.splitlines())} lines -> {len(new.splitlines())} lines"
    return f"{len(old):,} bytes -> {len(new):,} bytes, other content"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("against", help="git revision whose outputs are the reference")
    parser.add_argument("--size", default="100k", help="realistic cycle lines per side")
    args = parser.parse_args()
    cycle = realistic(parse_size(args.size))
    cases = {
        "demo": [
            "--autotask", str(DEMO / "autotask" / "invoices.xml"),
            "--halopsa", str(DEMO / "halopsa" / "api"), "--map", str(DEMO / "mapping.csv"),
            "--config", str(DEMO / "reconcile.toml"),
        ],
        args.size: [
            "--autotask", str(cycle.autotask), "--halopsa", str(cycle.halopsa),
            "--map", str(cycle.mapping), "--config", str(cycle.config),
        ],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="reconcile-compare-") as tmp:
        old_code = Path(tmp) / "code"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_code), args.against],
            check=True,
            capture_output=True,
        )
        differing = 0
        try:
            for case, inputs in cases.items():
                outs = [Path(tmp) / f"{case}-{label}" for label in ("old", "new")]
                for code, out in zip((old_code, ROOT), outs, strict=True):
                    run(code, case, inputs, out)
                ids = (run_id(outs[0] / "summary.json"), run_id(outs[1] / "summary.json"))
                names = sorted({p.name for out in outs for p in out.iterdir()})
                for name in names:
                    found = difference(outs[0] / name, outs[1] / name, ids)
                    differing += found is not None
                    print(f"{case:>6} {name:<24} {found or 'byte-identical'}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_code)])
            shutil.rmtree(old_code, ignore_errors=True)
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
