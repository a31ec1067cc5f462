"""Issue #15: reconcile tried as an adversary would. Every fault kind gives its exit code and a
message naming the path; outputs never attack their reader; `--out` is replaced whole."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from conftest import AT_HEADER, HALO_HEADER, ROOT, demo_run, invoke, kill_at
from reconcile.cli import main
from reconcile.history import stored_report
from reconcile.safe import FORMULA_START, NUMBER, cell, shown

PAYLOADS = [
    '=HYPERLINK("http://evil.example/","click me")',
    "@SUM(1+1)",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=2+2",  # not "\r=1+1": trimmed, the two ids would be one billing item on two invoices
]


def run_main(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The console entry point in a child process: exit 3 (a bug) is observable."""
    code = "from reconcile.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


def main_in_process(monkeypatch: pytest.MonkeyPatch, *args: str | Path) -> int:
    monkeypatch.setattr(sys, "argv", ["reconcile", *map(str, args)])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def hostile_cycle(folder: Path) -> tuple[Path, Path]:
    """A cycle whose client names, refs and values carry formula payloads; one row quarantined."""
    folder.mkdir(parents=True, exist_ok=True)
    at_rows = [AT_HEADER]
    halo_rows = [HALO_HEADER]
    for n, payload in enumerate(PAYLOADS):
        quoted = '"' + payload.replace('"', '""') + '"'
        at_rows.append(
            f"{quoted},INV-{n},11/01/2026,{quoted},Managed Server,1,100.00,100.00,20.00,"
            "11/01/2026,11/30/2026"
        )
        halo_rows.append(
            f"{quoted},NW{n},01/11/2026,{quoted},Managed Server,1,90.00,90.00,18.00,"
            "01/11/2026,30/11/2026"
        )
    at_rows.append(
        '"=1+2",INV-9,11/01/2026,"@Evil Corp",Backup,1,1.00,"=SUM(A1:A9)",0.20,'
        "11/01/2026,11/30/2026"
    )
    at = folder / "autotask.csv"
    halo = folder / "halopsa.csv"
    at.write_text("\n".join(at_rows) + "\n", encoding="utf-8")
    halo.write_text("\n".join(halo_rows) + "\n", encoding="utf-8")
    return at, halo


def assert_safe_cells(cells: list[str], where: str) -> None:
    import re

    for value in cells:
        if value == "" or re.match(NUMBER, value):
            continue
        assert not re.match(FORMULA_START, value), f"{where}: live formula {value!r}"


def test_cell_and_shown() -> None:
    assert cell("=1+1") == "'=1+1"
    assert cell("\t=1+1") == "'\t=1+1"
    assert cell("-12.50") == "-12.50"
    assert cell("-") == "'-"
    assert cell("Acme") == "Acme"
    assert shown("a\x1b[2Jb\nc\x9b") == "a\\x1b[2Jb\\nc\\x9b"
    assert shown("\u202eevil") == "\\u202eevil"


def test_no_output_cell_is_a_live_formula(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at, halo = hostile_cycle(tmp_path / "in")
    out = tmp_path / "out"
    ws = tmp_path / "ws.duckdb"
    code = main_in_process(
        monkeypatch, "--workspace", ws, "run", "--cycle", "2026-11", "--autotask", at,
        "--halopsa", halo, "--out", out, "--currency", "GBP",
    )  # fmt: skip
    assert code == 2  # one row quarantined
    files = [out / "discrepancies.csv", out / "quarantine.csv"]
    load = main_in_process(
        monkeypatch, "--workspace", tmp_path / "ws2.duckdb", "load", "--cycle", "2026-11", at
    )
    assert load == 2
    files += list((tmp_path / "quarantine" / "2026-11").glob("*.csv"))
    suggest = tmp_path / "suggest.csv"
    assert main_in_process(
        monkeypatch, "--workspace", ws, "map", "suggest", "--cycle", "2026-11", "--out", suggest
    ) == 0  # fmt: skip
    files.append(suggest)
    seen = 0
    for path in files:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        cells = [c for row in rows[1:] for c in row]
        seen += sum(1 for c in cells if c.startswith("'"))
        assert_safe_cells(cells, path.name)
        frame = pl.read_csv(path, infer_schema=False)
        for column in frame.columns:
            assert_safe_cells([v for v in frame[column].to_list() if v is not None], path.name)
    assert seen >= len(PAYLOADS)  # the payloads were there, and were defused
    assert "'=HYPERLINK" in (out / "discrepancies.csv").read_text(encoding="utf-8")
    # the workbook finance opens: every text cell is a string cell, which never runs, holding
    # the value unchanged (no `'`: that is the CSVs' guard, and was a changed value here)
    import openpyxl

    sheet = openpyxl.load_workbook(out / "discrepancies.xlsx").active
    texts = [c.value for row in sheet.iter_rows(min_row=2) for c in row if c.data_type == "s"]
    assert not [c for row in sheet.iter_rows() for c in row if c.data_type == "f"]
    assert any(str(t).startswith("=HYPERLINK") for t in texts)
    assert not any(str(t).startswith("'=") for t in texts)
    # the exact values stay in the typed outputs
    assert any(
        c.startswith("=HYPERLINK") for c in pl.read_parquet(out / "discrepancies.parquet")["client"]
    )


def test_terminal_escapes_and_newlines_in_user_values_are_shown_escaped(tmp_path: Path) -> None:
    name = tmp_path / "bill\x1b[2J\x1b[32mREADY for cutover\nx.csv"
    name.write_text(
        AT_HEADER + "\n1,INV-\x1b[2J1,11/01/2026,Acme,Item,1,1.00,bad,0.20,11/01/2026,11/30/2026\n"
        "2,INV-2,11/01/2026,Acme,Item,1,1.00,1.00,0.20,11/01/2026,11/30/2026\n",
        encoding="utf-8",
    )
    code, output = run_main(
        "--workspace", tmp_path / "ws.duckdb", "load", "--cycle", "2026-11", name
    )
    assert code == 2, output
    assert "\x1b" not in output
    assert "\\x1b[2J" in output
    assert "\\nx.csv" in output
    assert "1 row was loaded" in output


def test_nul_after_the_sample_is_binary(tmp_path: Path) -> None:
    path = tmp_path / "late_nul.csv"
    row = "1,INV-1,11/01/2026,Acme,Item,1,1.00,1.00,0.20,11/01/2026,11/30/2026\n"
    body = AT_HEADER + "\n" + row * 1200  # > 64 KiB
    path.write_bytes(body.encode() + b"2,INV-2,11/01/2026,Ac\x00me,Item,1,1,1,0,,\n")
    code, output = run_main(
        "--workspace", tmp_path / "ws.duckdb", "load", "--cycle", "2026-11", path
    )
    assert code == 2, output
    assert "NUL byte at offset" in output and str(path) in output


def test_cycle_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    at, _ = hostile_cycle(tmp_path / "in")
    result = invoke("--workspace", tmp_path / "ws.duckdb", "load", "--cycle", "2026-11\n", at)
    assert result.exit_code == 2
    assert "expected YYYY-MM" in result.output


def test_windows_1252_mapping_file_is_read(tmp_path: Path) -> None:
    at, halo = hostile_cycle(tmp_path / "in")
    mapping = tmp_path / "map.csv"
    mapping.write_bytes("kind,autotask,halopsa\nclient,Café Ltd,Café Limited\n".encode("cp1252"))
    code, output = run_main(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11", "--autotask", at,
        "--halopsa", halo, "--map", mapping, "--out", tmp_path / "out", "--currency", "GBP",
    )  # fmt: skip
    assert code in (1, 2), output
    assert "Internal error" not in output
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"kind,autotask,halopsa\n\x00\x01\x02")
    code, output = run_main(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11", "--map", binary,
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 2 and str(binary) in output and "binary" in output, output


# --- kind 3: environment and damaged files -------------------------------------------------


def _demo_args(tmp_path: Path, out: Path, ws: Path | None = None) -> list[str | Path]:
    at, halo = hostile_cycle(tmp_path / "in")
    return [
        "--workspace", ws or tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", at, "--halopsa", halo, "--out", out, "--currency", "GBP",
    ]  # fmt: skip


def test_out_below_a_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    code, output = run_main(*_demo_args(tmp_path, tmp_path / "afile" / "out"))
    assert code == 2, output
    assert "a file of this name is in the way" in output and "afile" in output


@pytest.mark.parametrize("out", [".", "in"], ids=["the-workspace-folder", "the-exports-folder"])
def test_an_out_folder_holding_other_files_is_refused_and_left_as_it_was(
    tmp_path: Path, out: str
) -> None:
    """--out is replaced whole: pointed at the workspace's folder or the exports' folder, the
    run refuses (exit 2) before writing anything, and every file there is still there."""
    args = _demo_args(tmp_path, tmp_path / out)
    (tmp_path / "notes.txt").write_text("the controller's notes", encoding="utf-8")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, output = run_main(*args)
    assert code == 2, output
    assert "--out holds what reconcile did not write there" in output
    assert "it would be deleted" in output and "Choose another --out" in output
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".lock" not in p.name)
    assert [p for p in after if not p.name.startswith("ws.duckdb")] == [
        p for p in before if not p.name.startswith("ws.duckdb")
    ]
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "the controller's notes"


def test_a_previous_runs_folder_with_a_systems_litter_is_replaced(tmp_path: Path) -> None:
    """A folder a run wrote, opened since (Finder's .DS_Store, an office suite's lock file),
    is replaced as before; the litter goes with it."""
    out = tmp_path / "out"
    code, output = run_main(*_demo_args(tmp_path, out))
    assert code == 2 and "report:" in output, output  # the cycle quarantines a row
    (out / ".DS_Store").write_bytes(b"\0")
    (out / ".~lock.discrepancies.csv#").write_text("someone,host", encoding="utf-8")
    code, output = run_main(*_demo_args(tmp_path, out))
    assert code == 2 and "report:" in output, output  # the cycle quarantines a row
    assert not (out / ".DS_Store").exists() and (out / "report.html").is_file()


@pytest.mark.parametrize("name", ["Billing [2026]", "Billing *2026*"])
def test_folders_named_with_glob_brackets_work(tmp_path: Path, name: str) -> None:
    """A workspace and an --out in folders named `Billing [2026]` or `Billing *2026*`: the
    report's tables and `reconcile workbook` read their Parquet files by name, never as a
    pattern, and the workspace keeps the run's report data (read by DuckDB from its file)."""
    folder = tmp_path / name
    folder.mkdir()
    out = folder / "out [*]"
    code, output = run_main(*_demo_args(tmp_path, out, ws=folder / "ws.duckdb"), "--no-workbook")
    assert code == 2 and "report:" in output, output  # the cycle quarantines a row
    with duckdb.connect(str(folder / "ws.duckdb"), read_only=True) as con:
        kept = stored_report(con, 1)
    assert kept is not None
    assert kept.summary.run_id == json.loads((out / "summary.json").read_bytes())["run_id"]
    code, output = run_main("workbook", out)
    assert code == 0 and "discrepancies written" in output, output
    assert (out / "discrepancies.xlsx").is_file()


@pytest.mark.parametrize("name", ["Billing?2026", "Billing\\2026"])
def test_a_workspace_path_duckdb_cannot_use_exits_2(tmp_path: Path, name: str) -> None:
    """DuckDB reads `?` in a database path as its options and `\\` as a folder separator: such
    a workspace is refused before anything is written (it was an internal error, exit 3). An
    --out there is fine."""
    folder = tmp_path / name
    folder.mkdir()
    code, output = run_main(*_demo_args(tmp_path, folder / "out", ws=folder / "ws.duckdb"))
    assert code == 2, output
    assert "DuckDB cannot keep a workspace in a path holding" in output
    assert "Choose another folder or file name for --workspace." in output
    assert list(folder.iterdir()) == []
    code, output = run_main(*_demo_args(tmp_path, folder / "out", ws=tmp_path / "ws.duckdb"))
    assert code == 2 and "report:" in output, output  # the cycle quarantines a row


def test_workspace_below_a_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    args = _demo_args(tmp_path, tmp_path / "out", ws=tmp_path / "afile" / "ws.duckdb")
    code, output = run_main(*args)
    assert code == 2, output
    assert "afile" in output and "Choose another folder" in output


@pytest.mark.parametrize("damage", ["truncated", "junk"])
def test_damaged_workspace_exits_2(tmp_path: Path, damage: str) -> None:
    ws = tmp_path / "ws.duckdb"
    code, output = run_main(*_demo_args(tmp_path, tmp_path / "out", ws))
    assert code == 2, output
    data = bytearray(ws.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        middle = len(data) // 2
        data[middle : middle + 20000] = os.urandom(20000)
    ws.write_bytes(bytes(data))
    code, output = run_main(*_demo_args(tmp_path, tmp_path / "out2", ws))
    assert code == 2, output
    assert "the workspace file is damaged" in output and str(ws) in output
    assert "Restore the workspace from a backup" in output


def _mount_tmpfs(point: Path, options: str) -> bool:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def mounts(tmp_path: Path) -> object:
    points: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        if not _mount_tmpfs(point, options):
            pytest.skip("mounting a tmpfs needs root")
        points.append(point)
        return point

    yield mount
    for point in points:
        subprocess.run(["umount", str(point)], capture_output=True)


@pytest.mark.parametrize(
    ("where", "options", "expected"),
    [
        ("out", "size=64k", "the disk is full"),
        ("out", "size=1m,ro", "the filesystem is read-only"),
        ("workspace", "size=256k", "the disk is full"),
        ("workspace", "size=1m,ro", "the filesystem is read-only"),
    ],
)
def test_full_or_read_only_disk_exits_2(
    tmp_path: Path, mounts: object, where: str, options: str, expected: str
) -> None:
    point = mounts(where, options)  # type: ignore[operator]
    out = point / "out" if where == "out" else tmp_path / "out"
    ws = point / "ws.duckdb" if where == "workspace" else tmp_path / "ws.duckdb"
    args = _demo_args(tmp_path, out, ws)
    if where == "workspace" and "ro" not in options:  # a cycle larger than the disk
        demo = ROOT / "fixtures" / "demo"
        args = [
            "--workspace", ws, "run", "--cycle", "2026-11", "--autotask",
            demo / "autotask" / "invoices.xml", "--halopsa", demo / "halopsa" / "api", "--out", out,
        ]  # fmt: skip
    code, output = run_main(*args)
    assert code == 2, output
    assert expected in output and str(point) in output
    # The message names the path given (--out, or a file in it), not a hidden one of ours.
    assert ".lock" not in output and ".new-" not in output


def test_a_full_disk_as_polars_words_it_exits_2(tmp_path: Path) -> None:
    """polars' writers (the CSV and Parquet outputs) raise OSError("… (os error 28)") with no
    errno: the disk is full all the same, not a bug (exit 3)."""
    from reconcile.environment import environment_error

    problem = environment_error(OSError("No space left on device (os error 28)"), tmp_path)
    assert problem is not None
    assert "the disk is full" in str(problem) and str(tmp_path) in str(problem)


def test_duckdb_out_of_memory_says_what_it_held_and_the_limit_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real out-of-memory error of DuckDB: the message gives what DuckDB held of what it may
    use at that step (its own figures: a step reading a table through runs lower than the
    limit set) beside RECONCILE_MEMORY_LIMIT, and how to go on."""
    import duckdb

    from reconcile.environment import environment_error

    monkeypatch.setenv("RECONCILE_MEMORY_LIMIT", "3GB")
    con = duckdb.connect()
    con.execute("SET memory_limit = '2MB'")
    with pytest.raises(duckdb.OutOfMemoryException) as raised:
        con.execute("SELECT list(range) FROM range(10000000)").fetchall()
    problem = environment_error(raised.value, tmp_path)
    assert problem is not None
    text = str(problem)
    held = r"DuckDB ran out of memory: it held [\d.]+ MiB of the 1.9 MiB it may use"
    assert re.search(held, text)
    assert "RECONCILE_MEMORY_LIMIT is 3GB" in text and "RECONCILE_MEMORY_LIMIT=2GB" in text


# --- kind 2: outputs replaced whole ----------------------------------------------------------

STEPS = [
    "discrepancies.csv", "discrepancies.parquet", "discrepancies.xlsx", "discrepancies.json",
    "summary.json", "quarantine.csv", "report.html", "swap", "swapped",
]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def _fresh_workspaces(tmp_path: Path) -> None:
    """Forget the runs made so far: a run's outputs also say what changed since the previous
    run of the cycle in its workspace, so only a first run repeats another's bytes."""
    for name in ("a.duckdb", "b.duckdb", "a.duckdb.wal", "b.duckdb.wal"):
        (tmp_path / name).unlink(missing_ok=True)


def _two_sets(tmp_path: Path) -> tuple[list[str | Path], list[str | Path], Path]:
    out = tmp_path / "out"
    first = _demo_args(tmp_path / "a", out, tmp_path / "a.duckdb")
    at, halo = hostile_cycle(tmp_path / "b")
    (tmp_path / "b" / "halopsa.csv").write_text(
        HALO_HEADER + "\n1,NW1,01/11/2026,Acme,Managed Server,1,5.00,5.00,1.00,,\n",
        encoding="utf-8",
    )
    second: list[str | Path] = [
        "--workspace", tmp_path / "b.duckdb", "run", "--cycle", "2026-11", "--autotask", at,
        "--halopsa", halo, "--out", out, "--currency", "GBP",
    ]  # fmt: skip
    return first, second, out


def test_kill_9_while_writing_leaves_the_previous_or_the_new_set(tmp_path: Path) -> None:
    first, second, out = _two_sets(tmp_path)
    assert run_main(*first)[0] == 2
    old = _snapshot(out)
    assert run_main(*second)[0] == 2
    new = _snapshot(out)
    assert old != new and set(old) == set(new) and len(old) == 7
    for step in STEPS:
        _fresh_workspaces(tmp_path)
        shutil.rmtree(out)
        out.mkdir()
        for name, data in old.items():
            (out / name).write_bytes(data)
        kill_at(step, *second)
        assert _snapshot(out) == (new if step == "swapped" else old), step
    leftovers = {p.name for p in out.parent.iterdir() if p.name.startswith(".out.")}
    _fresh_workspaces(tmp_path)
    assert run_main(*first)[0] == 2  # the next run sweeps what the killed ones left
    assert _snapshot(out) == old
    assert not {p.name for p in out.parent.iterdir() if p.name.startswith(".out.new-")}
    assert leftovers is not None


def test_two_runs_into_one_out_leave_one_complete_set(tmp_path: Path) -> None:
    first, second, out = _two_sets(tmp_path)
    assert run_main(*first)[0] == 2
    old = _snapshot(out)
    assert run_main(*second)[0] == 2
    new = _snapshot(out)
    shutil.rmtree(out)
    code = "from reconcile.cli import main; main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(2):
        _fresh_workspaces(tmp_path)
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", code, *map(str, args)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            for args in (first, second)
        ]
        assert [p.wait() for p in runs] == [2, 2]
        assert _snapshot(out) in (old, new)


@pytest.mark.parametrize(
    "stop",
    [KeyboardInterrupt(), RuntimeError("Query interrupted"), duckdb.InterruptException("x")],
    ids=["ctrl-c", "ctrl-c-in-a-query", "duckdb-interrupt"],
)
def test_an_interrupted_command_exits_130_not_as_a_verdict_or_a_bug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stop: BaseException
) -> None:
    """Ctrl-C exits 130 (as shells report it) with a line saying what is not kept: never 1,
    which a nightly job reads as a finished run with blockers, nor 3 "a bug"; DuckDB stops a
    running query with an error of its own, which is Ctrl-C too."""
    from reconcile.cli import cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise stop

    monkeypatch.setattr(cli.commands["history"], "callback", interrupted)
    assert main_in_process(monkeypatch, "history") == 130
    err = capsys.readouterr().err
    assert err.strip().startswith("Interrupted: ") and "bug" not in err


def test_an_interrupted_run_does_not_wait_for_its_background_work() -> None:
    """The run prepares its report beside the loads; when it is interrupted, the process ends
    even if that work never does (a ThreadPoolExecutor's thread is joined at exit: a worker
    stuck on an import lock once held an interrupted run forever)."""
    code = (
        "import threading\n"
        "from reconcile.run import _in_background\n"
        "_in_background(threading.Event().wait)\n"
        "raise KeyboardInterrupt\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0 and b"KeyboardInterrupt" in done.stderr


def test_background_work_hands_its_result_and_its_error_to_the_run() -> None:
    from reconcile.run import _in_background

    assert _in_background(lambda: 42).result(timeout=10) == 42

    def fails() -> None:
        raise KeyboardInterrupt  # BaseException too: never lost on the thread

    with pytest.raises(KeyboardInterrupt):
        _in_background(fails).result(timeout=10)


def test_exit_codes_other_than_an_interrupt_are_as_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--version, a usage error, a missing workspace, --help and a bug keep their codes."""
    from reconcile.cli import cli

    assert main_in_process(monkeypatch, "--version") == 0
    assert main_in_process(monkeypatch, "run", "--no-such-option") == 2
    assert main_in_process(monkeypatch, "--workspace", tmp_path / "w.duckdb", "history") == 2
    assert main_in_process(monkeypatch, "--help") == 0

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something else")

    monkeypatch.setattr(cli.commands["history"], "callback", broken)
    assert main_in_process(monkeypatch, "history") == 3


def test_an_out_folder_removed_during_the_run_is_said_not_called_a_bug(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Someone deletes --out's parent folder while the run writes: exit 2 naming the folder,
    not exit 3 "a bug" (FileNotFoundError)."""
    import reconcile.outputs

    parent = tmp_path / "shared" / "reports"

    def removed(step: str) -> None:
        if step == "swap":
            shutil.rmtree(parent)

    monkeypatch.setattr(reconcile.outputs, "pause", removed)
    result = demo_run(tmp_path / "ws.duckdb", parent / "2026-11")
    assert result.exit_code == 2, result.output
    assert str(parent) in result.output
    assert "the folder was removed during the run" in result.output


def test_a_write_error_names_the_output_file_not_the_hidden_staging_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A full disk while the run writes its outputs: exit 2 naming --out's file, not the
    staging folder (.NAME.new-…) the outputs are written in first."""
    import errno

    import reconcile.run

    out = tmp_path / "2026-11"

    def full(step: str) -> None:
        (staging,) = tmp_path.glob(".2026-11.new-*")
        raise OSError(errno.ENOSPC, "No space left on device", str(staging / step))

    monkeypatch.setattr(reconcile.run, "pause", full)
    result = demo_run(tmp_path / "ws.duckdb", out)
    assert result.exit_code == 2, result.output
    assert f"{out / 'discrepancies.parquet'}: the disk is full" in result.output
    assert ".new-" not in result.output
