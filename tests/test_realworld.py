"""Exports as people hand them over: every file in fixtures/realworld/ in, its exact outcome out.

Each sub-folder's expected.json states what `reconcile load` must do with each file (see
fixtures/realworld/README.md): the control totals and amounts loaded, or exit 2 with a message
naming the problem. Conservation is checked against the workspace for every load.
"""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, assert_conserved, invoke, read_json
from reconcile.store import Workspace

REALWORLD = FIXTURES / "realworld"


def cases() -> list[Any]:
    found = []
    for expected in sorted(REALWORLD.glob("*/expected.json")):
        for name, spec in read_json(expected).items():
            found.append(
                pytest.param(expected.parent / name, spec, id=f"{expected.parent.name}/{name}")
            )
    return found


def _money(value: Any) -> str | None:
    return None if value is None else str(Decimal(value).quantize(Decimal("0.01")))


@pytest.mark.parametrize(("path", "spec"), cases())
def test_real_world_export(ws_path: Path, path: Path, spec: dict[str, Any]) -> None:
    args: list[str | Path] = [
        "--workspace",
        ws_path,
        "load",
        "--cycle",
        spec.get("cycle", "2026-11"),
    ]
    if spec.get("platform"):
        args += ["--platform", spec["platform"]]
    args += [*spec.get("args", []), path]
    result = invoke(*args)
    output = result.output
    assert "Traceback" not in output and "Internal error" not in output, output
    assert result.exit_code == spec["exit"], output
    for fragment in spec.get("message", []):
        assert fragment in output, f"{fragment!r} not in {output!r}"
    if not spec.get("rows_loaded") and not ws_path.exists():
        return
    with Workspace(ws_path) as ws:
        loads = ws.frame("SELECT * FROM loads", []).to_dicts()
        lines = ws.frame("SELECT * FROM lines ORDER BY load_id, row_number", []).to_dicts()
        dispositions = dict(
            ws.con.sql("SELECT disposition, count(*) FROM quarantine GROUP BY ALL").fetchall()
        )
    if "rows_loaded" not in spec and spec["exit"] == 2:
        assert not lines, "a refused file must leave nothing loaded"
        return
    assert len(loads) == 1, loads
    (load,) = loads
    counts = {
        "rows_read": load["rows_read"],
        "rows_loaded": len(lines),
        "rows_quarantined": dispositions.get("quarantined", 0),
        "rows_excluded": dispositions.get("excluded", 0),
        "rows_skipped": dispositions.get("skipped", 0),
    }
    assert counts["rows_read"] == sum(v for k, v in counts.items() if k != "rows_read")
    with Workspace(ws_path) as ws:
        assert_conserved(ws, load)
    for key, value in counts.items():
        if key in spec:
            assert value == spec[key], (key, value, spec[key])
    nets = [_money(line["net_amount"]) for line in lines]
    taxes = [_money(line["tax_amount"]) for line in lines]
    if "net_loaded" in spec:
        assert _money(sum(Decimal(n) for n in nets if n is not None)) == spec["net_loaded"]
    if "tax_loaded" in spec:
        assert _money(sum(Decimal(t) for t in taxes if t is not None)) == spec["tax_loaded"]
    if "net_amounts" in spec:
        assert nets == spec["net_amounts"]
    if "tax_amounts" in spec:
        assert taxes == spec["tax_amounts"]
    if "client_ids" in spec:
        assert [line["client_id"] for line in lines] == spec["client_ids"]
    if "dates" in spec:
        assert [str(line["invoice_date"]) for line in lines] == spec["dates"]


def test_every_realworld_file_has_an_expected_outcome() -> None:
    for folder in sorted(p for p in REALWORLD.iterdir() if p.is_dir()):
        expected = set(read_json(folder / "expected.json"))
        present = {
            p.name
            for p in folder.iterdir()
            if p.name not in ("expected.json", "README.md", "make_files.py", "__pycache__")
        }
        assert present == expected, folder.name


def test_the_documents_generator_leaves_files_it_does_not_write_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make_files.py deleted every file it did not write, the hand-made
    halo_lines_without_tax.json among them; each file it writes is the one in the folder."""
    folder = REALWORLD / "documents"
    spec = importlib.util.spec_from_file_location("documents_make_files", folder / "make_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    hand_made = folder / "halo_lines_without_tax.json"
    (tmp_path / hand_made.name).write_bytes(hand_made.read_bytes())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "kept.txt").write_text("mine", encoding="utf-8")
    module.main()
    assert (tmp_path / hand_made.name).read_bytes() == hand_made.read_bytes()
    assert (tmp_path / "notes" / "kept.txt").read_text(encoding="utf-8") == "mine"
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != "notes"]
    assert len(written) > 30
    for path in written:
        assert path.read_bytes() == (folder / path.relative_to(tmp_path)).read_bytes(), path


CYCLES = FIXTURES / "cycles"


def _finding(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": row["rule"],
        "severity": row["severity"],
        "client": row["client"],
        "autotask_amount": _money(row["autotask_amount"]),
        "halopsa_amount": _money(row["halopsa_amount"]),
        "difference": _money(row["difference"]),
    }


@pytest.mark.parametrize(
    "folder", sorted(p for p in CYCLES.iterdir() if p.is_dir()), ids=lambda p: p.name
)
def test_real_world_cycle(tmp_path: Path, folder: Path) -> None:
    """A whole small cycle: exactly the expected discrepancies, no more, no fewer."""
    spec = read_json(folder / "expected.json")
    (autotask,) = folder.glob("autotask.*")
    (halopsa,) = folder.glob("halopsa.*")
    args: list[str | Path] = ["--workspace", tmp_path / "ws.duckdb", "run", "--cycle"]
    args += [spec.get("cycle", "2026-11"), "--autotask", autotask, "--halopsa", halopsa]
    args += ["--out", tmp_path / "out", *spec.get("args", [])]
    for extra, option in (("mapping.csv", "--map"), ("reconcile.toml", "--config")):
        if (folder / extra).exists():
            args += [option, folder / extra]
    result = invoke(*args)
    assert result.exit_code == spec["exit"], result.output
    for fragment in spec.get("output", []):
        assert fragment in result.output, f"{fragment!r} not in {result.output!r}"
    rows = read_json(tmp_path / "out" / "discrepancies.json")
    found = [_finding(row) for row in rows]
    expected = [{k: v for k, v in f.items() if k != "message"} for f in spec["findings"]]
    assert sorted(found, key=_order) == sorted(expected, key=_order)
    # Where a finding states its message, it is asserted word for word.
    messages = {(row["rule"], row["client"]): row["message"] for row in rows}
    for finding in spec["findings"]:
        if "message" in finding:
            assert messages[(finding["rule"], finding["client"])] == finding["message"]


def _order(finding: dict[str, Any]) -> tuple[str, str, str]:
    return finding["rule"], finding["client"] or "", finding["difference"] or ""
