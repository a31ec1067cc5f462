"""`make demo` as a new user runs it on a fresh clone, with the shared environment standing in
for the one `make install` builds: what it prints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def test_make_demo_prints_the_report_path_once(tmp_path: Path) -> None:
    """`reconcile run` names the report; the recipe adds no second line for it."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "fixtures").symlink_to(ROOT / "fixtures")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    reconcile = bin_dir / "reconcile"
    reconcile.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -c "from reconcile.cli import main; main()" "$@"\n',
        encoding="utf-8",
    )
    reconcile.chmod(0o755)
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", "install", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("report.html") == 1, done.stdout
    assert "\nreport: out/2026-11/report.html\n" in done.stdout
    assert (tmp_path / "out" / "2026-11" / "report.html").is_file()
