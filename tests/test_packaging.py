"""An installed wheel must reconcile as a checkout does: rules and report templates travel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_carries_every_rule_and_report_template(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("reconcile-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("rules", "reports"):
        expected = {
            f"reconcile/_{folder}/{p.name}" for p in (ROOT / folder).iterdir() if p.is_file()
        }
        assert expected, folder
        assert expected <= names
    assert "reconcile/cli.py" in names
