"""The Excel workbook as an explicit output: `[outputs] workbook` and `run --no-workbook` leave
discrepancies.xlsx out (summary.json and the report say so, and how to write it), and
`reconcile workbook OUT_DIR` writes it later from the run's discrepancies.parquet, byte for byte
as the run would have; real runs, real files, the workbook read back with openpyxl."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import openpyxl
import polars as pl
import pytest

from conftest import DEMO, FIXTURES, demo_run, invoke, kill_at, read_json, run_demo
from reconcile.errors import EXIT_BAD_INPUT
from reconcile.report_model import Summary, Workbook
from reconcile.run import OUTPUT_COLUMNS, OUTPUT_SCHEMA
from reconcile.workbook import check_table

sys.path.insert(0, str(FIXTURES))
import generate

XLSX = "discrepancies.xlsx"


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _config(tmp_path: Path, workbook: str) -> Path:
    """The demo's reconcile.toml with an [outputs] section."""
    config = tmp_path / "reconcile.toml"
    text = (DEMO / "reconcile.toml").read_text(encoding="utf-8")
    config.write_text(f"{text}\n[outputs]\nworkbook = {workbook}\n", encoding="utf-8")
    return config


def test_without_the_workbook_then_the_command_writes_the_runs_bytes(tmp_path: Path) -> None:
    with_it = run_demo(tmp_path, "with")
    without = run_demo(tmp_path, "without", DEMO / "halopsa" / "api", DEMO / "reconcile.toml",
                       "--no-workbook")  # fmt: skip
    assert XLSX in _files(with_it) and XLSX not in _files(without)
    # Every other discrepancy file is the same; the fingerprint too (the workbook is not part
    # of what was found), so a sign-off is not superseded by a run without it.
    for name in ("discrepancies.csv", "discrepancies.json", "discrepancies.parquet"):
        assert (with_it / name).read_bytes() == (without / name).read_bytes(), name
    summary, plain = read_json(without / "summary.json"), read_json(with_it / "summary.json")
    assert summary["run_id"] == plain["run_id"]
    assert summary["workbook"] == {"written": False, "note": Workbook.left_out().note}
    assert plain["workbook"] == {"written": True, "note": Workbook().note}
    assert summary["config"]["changed"]["outputs.workbook"] is False
    assert "outputs.workbook" not in plain["config"]["changed"]
    assert "`reconcile workbook OUT_DIR`" in summary["workbook"]["note"]
    report = (without / "report.html").read_text(encoding="utf-8")
    assert "<dt>Excel workbook</dt>" in report
    assert "discrepancies.xlsx not written" in report and "outputs.workbook = false" in report
    # Written, the workbook is one of the outputs beside the report: no row says so (the
    # summary's first printed page has no line to spare).
    assert "<dt>Excel workbook</dt>" not in (with_it / "report.html").read_text(encoding="utf-8")

    result = invoke("workbook", without)
    assert result.exit_code == 0, result.output
    assert result.output == f"{without / XLSX}: 25 discrepancies written\n"
    assert (without / XLSX).read_bytes() == (with_it / XLSX).read_bytes()
    assert sorted(p.name for p in without.iterdir() if p.name.startswith(".")) == []
    sheet = openpyxl.load_workbook(without / XLSX, read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    parquet = pl.read_parquet(without / "discrepancies.parquet")
    assert dict(parquet.schema) == OUTPUT_SCHEMA  # what the command checks it against
    assert list(rows[0]) == OUTPUT_COLUMNS
    assert [r[0] for r in rows[1:]] == parquet["id"].to_list()


def test_the_run_says_how_to_write_it_and_leaves_no_earlier_workbook(tmp_path: Path) -> None:
    out = run_demo(tmp_path, "out")
    assert (out / XLSX).exists()
    result = invoke(
        "--workspace", tmp_path / "again.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        "--map", DEMO / "mapping.csv", "--config", _config(tmp_path, "false"), "--out", out,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"workbook: not written; write it with `reconcile workbook {out}`" in result.output
    # The folder is replaced whole: the first run's workbook is not left beside the new set.
    assert XLSX not in _files(out)
    assert read_json(out / "summary.json")["workbook"]["written"] is False


def test_the_flag_overrides_the_setting(tmp_path: Path) -> None:
    off = _config(tmp_path, "false")
    assert XLSX not in _files(run_demo(tmp_path, "off", DEMO / "halopsa" / "api", off))
    on = run_demo(tmp_path, "on", DEMO / "halopsa" / "api", off, "--workbook")
    assert XLSX in _files(on)
    summary = read_json(on / "summary.json")
    assert summary["workbook"]["written"] is True
    assert "outputs.workbook" not in summary["config"]["changed"]


def test_a_setting_that_is_not_a_boolean_is_refused(tmp_path: Path) -> None:
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--config", _config(tmp_path, '"no"'), "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_INPUT
    assert "[outputs] workbook is not valid; expected true or false, got 'no'" in result.output


def test_a_summary_kept_before_the_workbook_member_reads_back_as_written(
    tmp_path: Path,
) -> None:
    kept = read_json(run_demo(tmp_path, "out") / "summary.json")
    del kept["workbook"]
    assert Summary.from_json_dict(kept).workbook == Workbook()


def test_what_the_command_refuses(tmp_path: Path) -> None:
    def refused(folder: Path, message: str) -> None:
        result = invoke("workbook", folder)
        assert result.exit_code == EXIT_BAD_INPUT, result.output
        assert message in result.output, result.output

    refused(tmp_path / "missing", f"{tmp_path / 'missing'}: no such folder")
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    refused(tmp_path / "a-file", "not a folder")
    (tmp_path / "other").mkdir()
    refused(tmp_path / "other", "not the output folder of a `reconcile run`")

    out = run_demo(tmp_path, "out")
    before = (out / XLSX).read_bytes()
    parquet = out / "discrepancies.parquet"
    table = pl.read_parquet(parquet)
    cases = {
        "missing": (None, "the run's discrepancy table is missing"),
        "junk": (b"PAR1 this is not parquet", "cannot be read as a Parquet file"),
        "column dropped": (table.drop("exposure"), "missing exposure; unexpected none"),
        "columns reordered": (
            table.select(reversed(table.columns)),
            "the same columns in another order",
        ),
        "a row short": (table.slice(1), "holds 24 discrepancies that are not the 25"),
        "another run's, as many rows": (
            table.with_columns(pl.lit("accepted").alias("status")),
            "that are not the 25 the run's summary.json counts",
        ),
        "money as float": (
            table.with_columns(pl.col("difference").cast(pl.Float64)),
            "column 'difference': does not hold the discrepancy table a run writes; expected "
            "Decimal(precision=18, scale=2), got 'Float64'",
        ),
    }
    for case, (content, message) in cases.items():
        parquet.unlink(missing_ok=True)
        if isinstance(content, bytes):
            parquet.write_bytes(content)
        elif content is not None:
            content.write_parquet(parquet)
        refused(out, message)
        assert (out / XLSX).read_bytes() == before, case  # left as it was
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [], case
    table.write_parquet(parquet)
    (out / "summary.json").write_text('{"counts": "cut sh', encoding="utf-8")
    refused(out, "summary.json: cannot be read as a run's summary (its counts of discrepancies)")
    assert (out / XLSX).read_bytes() == before


def test_the_command_reads_the_table_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconcile workbook` reads the Parquet file READ_ROWS rows at a time: a file of many row
    groups, read in chunks that straddle them, gives every row, in order, the run's workbook
    byte for byte; a page damaged past the first chunk is refused as the file that cannot be
    read, found as it is read, and the workbook is left as it was."""
    from reconcile import workbook

    reference = run_demo(tmp_path, "reference")
    out = run_demo(tmp_path, "out", DEMO / "halopsa" / "api", DEMO / "reconcile.toml",
                   "--no-workbook")  # fmt: skip
    parquet = out / "discrepancies.parquet"
    pl.read_parquet(parquet).write_parquet(parquet, row_group_size=4)
    # Each row group's first column: (rows, first byte, bytes).
    groups = duckdb.execute(
        f"SELECT row_group_num_rows, data_page_offset, total_compressed_size "
        f"FROM parquet_metadata('{parquet}') WHERE column_id = 0 ORDER BY row_group_id"
    ).fetchall()
    assert [rows for rows, _, _ in groups] == [4] * 6 + [1]
    monkeypatch.setattr(workbook, "READ_ROWS", 6)
    result = invoke("workbook", out)
    assert result.exit_code == 0, result.output
    assert result.output == f"{out / XLSX}: 25 discrepancies written\n"
    written = (out / XLSX).read_bytes()
    assert written == (reference / XLSX).read_bytes()

    # Row group 5's first column (rows 20 to 23) damaged: the first chunks read, then not.
    _, start, size = groups[5]
    data = bytearray(parquet.read_bytes())
    data[start : start + size] = bytes(b ^ 0x5A for b in data[start : start + size])
    parquet.write_bytes(bytes(data))
    result = invoke("workbook", out)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert f"{parquet}: cannot be read as a Parquet file" in result.output
    assert (out / XLSX).read_bytes() == written
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_a_run_without_discrepancies_writes_text_columns_the_check_accepts() -> None:
    check_table(dict.fromkeys(OUTPUT_COLUMNS, pl.String()), 0, "empty")


def test_a_killed_command_leaves_the_folder_as_it_was_and_the_next_one_sweeps_up(
    tmp_path: Path,
) -> None:
    reference = run_demo(tmp_path, "reference")
    out = run_demo(tmp_path, "out", DEMO / "halopsa" / "api", DEMO / "reconcile.toml",
                   "--no-workbook")  # fmt: skip
    kill_at("replace discrepancies.xlsx", "workbook", out)
    assert XLSX not in _files(out)  # never a partial workbook under its own name
    assert len([p for p in out.iterdir() if p.name.startswith(".discrepancies.new-")]) == 1
    assert invoke("workbook", out).exit_code == 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert (out / XLSX).read_bytes() == (reference / XLSX).read_bytes()


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> generate.RealisticCycle:
    return generate.realistic_cycle(3_000, 17, tmp_path_factory.mktemp("realistic"))


def test_a_generated_cycle_gets_the_same_workbook_either_way(
    cycle: generate.RealisticCycle, tmp_path: Path
) -> None:
    outs = []
    for name, flag in (("with", "--workbook"), ("without", "--no-workbook")):
        result = invoke(
            "--workspace", tmp_path / f"{name}.duckdb", "run", "--cycle", generate.REAL_CYCLE,
            "--autotask", cycle.autotask, "--halopsa", cycle.halopsa, "--map", cycle.mapping,
            "--config", cycle.config, "--out", tmp_path / name, flag,
        )  # fmt: skip
        assert result.exit_code == 1, result.output
        outs.append(tmp_path / name)
    with_it, without = outs
    assert XLSX not in _files(without)
    assert invoke("workbook", without).exit_code == 0
    written = (without / XLSX).read_bytes()
    assert written == (with_it / XLSX).read_bytes()
    rows = openpyxl.load_workbook(without / XLSX, read_only=True).worksheets[0].max_row
    assert rows == pl.read_parquet(without / "discrepancies.parquet").height + 1 > 300


def test_the_runs_child_writes_the_workbook_the_run_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run on large exports has its workbook written by a child process (workbook_child)
    from the run's Parquet file, byte for byte the workbook it writes itself."""
    from reconcile import run, workbook_child

    reference = run_demo(tmp_path, "reference")
    waited: list[None] = []
    wait = workbook_child.WorkbookChild.wait
    monkeypatch.setattr(run, "CHILD_FROM_BYTES", 0)
    monkeypatch.setattr(
        workbook_child.WorkbookChild, "wait", lambda self: waited.append(wait(self))
    )
    out = run_demo(tmp_path, "child")
    assert waited == [None]
    assert _files(out) == _files(reference) | {"summary.json": (out / "summary.json").read_bytes()}
    assert (out / XLSX).read_bytes() == (reference / XLSX).read_bytes()


def test_a_child_that_dies_fails_the_run_and_leaves_the_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workbook child killed (the out-of-memory killer's SIGKILL) fails the run with exit 2
    and what to do, not as a bug; --out keeps its previous set, with no partial workbook."""
    from reconcile import run, workbook_child

    out = run_demo(tmp_path, "out")
    before = _files(out)
    write = workbook_child.WorkbookChild.write

    def killed(self: workbook_child.WorkbookChild, parquet: Path, xlsx: Path) -> None:
        write(self, parquet, xlsx)
        self.process.kill()

    monkeypatch.setattr(run, "CHILD_FROM_BYTES", 0)
    monkeypatch.setattr(workbook_child.WorkbookChild, "write", killed)
    result = demo_run(tmp_path / "out.duckdb", out)
    assert result.exit_code == 2, result.output
    assert "discrepancies.xlsx: the workbook's writer was killed (SIGKILL)" in result.output
    assert "--no-workbook" in result.output
    assert _files(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.new-")] == []


def test_the_childs_system_errors_are_raised_as_the_run_would_meet_them(tmp_path: Path) -> None:
    """An OSError in the child (a full disk, a missing folder) is raised in the run as that
    OSError, so the run reports it as the environment problem it is (exit 2); anything else
    is a bug."""
    from reconcile.environment import environment_error
    from reconcile.workbook_child import WorkbookChild, _failure

    out = run_demo(tmp_path, "out", DEMO / "halopsa" / "api", DEMO / "reconcile.toml",
                   "--no-workbook")  # fmt: skip
    child = WorkbookChild()
    try:
        child.write(out / "discrepancies.parquet", tmp_path / "no such folder" / XLSX)
        with pytest.raises(FileNotFoundError):
            child.wait()
    finally:
        child.stop()
    full = _failure(b'{"errno": 28, "strerror": "No space left on device", "filename": "x"}', 1)
    assert isinstance(full, OSError) and full.errno == 28
    problem = environment_error(full, tmp_path)
    assert problem is not None and "the disk is full" in str(problem)
    worded = _failure(b'{"errno": null, "strerror": "No space (os error 28)", "filename": null}', 1)
    assert isinstance(worded, OSError) and str(worded) == "No space (os error 28)"
    assert isinstance(_failure(b'{"error": "KeyError: 1"}', 1), RuntimeError)
    assert isinstance(_failure(b"", 1), RuntimeError)
    assert _failure(b"{}", 0) is None
