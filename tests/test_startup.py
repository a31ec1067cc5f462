"""Start-up: the command line imports what a command works with only when it runs, so that
`reconcile --help`, a usage error or a mistyped cycle answers without loading the data stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import DEMO, ROOT

HEAVY = (
    "duckdb", "pandera", "pydantic", "jinja2", "xlsxwriter", "rapidfuzz", "fastexcel", "numpy",
    "polars", "pyarrow",
)  # fmt: skip


def _python(code: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter from the project's root, its output captured (an
    exit other than 0 raises when `check`)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=check,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )


def _imported_after(code: str) -> list[str]:
    """The HEAVY packages imported in a fresh interpreter once `code` has run."""
    probe = (
        f"import json, sys\ntry:\n    {code}\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = _python(probe)
    found: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_help_and_usage_errors_load_no_data_stack() -> None:
    assert _imported_after("import reconcile.cli") == []
    for args in (["--help"], ["run", "--help"], ["run"], ["load", "--cycle", "2026-11"]):
        code = f"from reconcile.cli import cli; cli({args!r})"
        assert _imported_after(code) == [], args


def test_a_mistyped_cycle_is_told_before_the_pipeline_loads() -> None:
    code = "from reconcile.cli import main; import sys; sys.argv[1:] = {!r}; main()".format(
        ["run", "--cycle", "2026-13", "--autotask", "README.md"]
    )
    assert "duckdb" not in _imported_after(code)


def test_a_run_imports_the_workbook_writer_reader_and_pandera_only_when_it_uses_them() -> None:
    """xlsxwriter when a workbook is written, fastexcel when one is read, pandera when suspect
    rows are validated, numpy beside the loads (run.LATER_MODULES): importing the pipeline
    loads none of them."""
    found = _imported_after("import reconcile.run, reconcile.pack, reconcile.workbook")
    assert not {"xlsxwriter", "fastexcel", "pandera", "numpy"} & set(found), found


def test_a_run_reads_duckdb_results_without_pyarrow(tmp_path: Path) -> None:
    """A whole run of the demo cycle (its quarantine and findings included) takes DuckDB's
    results into polars through the Arrow C stream (duck.frame_of, duck.with_frame): pyarrow,
    which DuckDB's own .pl() imports, is never loaded."""
    args = [
        "--workspace", str(tmp_path / "ws.duckdb"), "run", "--cycle", "2026-11",
        "--autotask", str(DEMO / "autotask" / "invoices.xml"),
        "--halopsa", str(DEMO / "halopsa" / "api"), "--map", str(DEMO / "mapping.csv"),
        "--config", str(DEMO / "reconcile.toml"), "--out", str(tmp_path / "out"), "--no-workbook",
    ]  # fmt: skip
    found = _imported_after(f"from reconcile.cli import cli; cli({args!r})")
    assert (tmp_path / "out" / "quarantine.csv").exists()
    assert "polars" in found and "pyarrow" not in found, found


def test_the_pipeline_is_imported_with_the_collector_paused_and_its_objects_frozen() -> None:
    """cli.imports_uncollected: no collection runs in the block, what it imported is frozen
    out of later collections, and the collector is on again after it (off, if it was off)."""
    probe = (
        "import gc\n"
        "from reconcile.cli import imports_uncollected\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(phase))\n"
        "with imports_uncollected():\n"
        "    import reconcile.run\n"
        "    inside = len(runs)\n"
        "print(inside, gc.get_freeze_count() > 0, gc.isenabled())\n"
        "gc.disable()\n"
        "with imports_uncollected():\n"
        "    pass\n"
        "print(gc.isenabled())\n"
    )
    done = _python(probe)
    assert done.stdout.split() == ["0", "True", "True", "False"], done.stderr


def test_a_command_ends_with_its_objects_frozen_out_of_the_collector() -> None:
    """The interpreter's final garbage collections are skipped (gc.freeze, after every other
    exit handler); the command's output and exit code are as ever."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "from reconcile.cli import main\n"
        "sys.argv[1:] = ['run', '--cycle', '2026-13', '--autotask', 'README.md']\n"
        "main()\n"
    )
    done = _python(probe, check=False)
    assert done.returncode == 2, done.stderr
    assert "2026-13" in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "frozen True"


def test_the_readers_import_none_of_the_writers() -> None:
    """reconcile.load (the export readers) and reconcile.outputs (the output folder and files)
    share what a system leaves in a folder through reconcile.litter: reading exports imports
    neither the output writers nor the report's model."""
    probe = (
        "import json, sys, reconcile.load\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('reconcile.'))))"
    )
    found = json.loads(_python(probe).stdout.strip().splitlines()[-1])
    assert "reconcile.litter" in found
    assert not {"reconcile.outputs", "reconcile.report_model"} & set(found), found
