"""What the command line tells a billing admin on the demo cycle: money written as the report
writes it, and each refusal naming the command that comes next."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from finance_cycle import AUTOTASK, HALOPSA, Cycle, write_cycle

from conftest import demo_run, invoke


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """The demo cycle run once into tmp_path (its blockers remain): the workspace and the
    run's output."""
    monkeypatch.setenv("RECONCILE_NOW", "2026-12-02T09:30:00Z")
    workspace = tmp_path / "ws.duckdb"
    result = demo_run(workspace, tmp_path / "out")
    assert result.exit_code == 1, result.output
    return workspace, result.output


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "discrepancies.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_amounts_in_messages_are_written_as_the_report_writes_them(
    demo: tuple[Path, str],
) -> None:
    """Thousands grouped and the currency code before the amount (`GBP 126,256.08`), a
    difference signed, in `run`, `accept`, the sign-off refusal and `history`."""
    workspace, output = demo
    assert (
        "GBP: Autotask GBP 126,256.08 gross in 352 lines, HaloPSA GBP 124,176.80 in 359 lines, "
        "difference GBP -2,079.28; EUR: Autotask EUR 0.00 gross in 0 lines, "
        "HaloPSA EUR 1,997.28 in 3 lines, difference EUR +1,997.28"
    ) in output
    assert (
        "GBP: 352 rows = 352 + 0 + 0, net GBP 105,213.35 = GBP 105,213.35 + GBP 0.00 + " in output
    )
    assert (
        "EUR: 5 rows = 3 + 0 + 2, net EUR 1,664.40 = EUR 1,664.40 + EUR 0.00 + EUR 0.00" in output
    )
    mismatch = next(
        r for r in _rows(workspace.parent / "out")
        if r["rule"] == "currency_mismatch" and r["currency"] == "GBP"
    )  # fmt: skip
    refused = invoke("--workspace", workspace, "signoff", "--cycle", "2026-11", "--by", "Jo")
    assert refused.exit_code == 1
    assert f"open blocker {mismatch['id']}: currency_mismatch" in refused.output
    assert "difference GBP -1,664.40: " in refused.output
    accepted = invoke(
        "--workspace", workspace, "accept", mismatch["id"], "--reason", "r", "--by", "Ann"
    )
    assert accepted.exit_code == 0, accepted.output
    assert "Brasserie Côte d'Azur Ltd, difference GBP -1,664.40)" in accepted.output
    history = invoke("--workspace", workspace, "history")
    assert (
        "totals (gross): Autotask GBP 126,256.08, HaloPSA GBP 124,176.80, difference "
        "GBP -2,079.28; Autotask EUR 0.00, HaloPSA EUR 1,997.28, difference EUR +1,997.28"
    ) in history.output


def test_a_refused_signoff_names_the_command_that_comes_next(demo: tuple[Path, str]) -> None:
    """Open blockers: correct and run again, or accept (the command with its options)."""
    workspace, _ = demo
    refused = invoke("--workspace", workspace, "signoff", "--cycle", "2026-11", "--by", "Jo")
    assert refused.exit_code == 1
    assert refused.output.startswith(
        "Error: sign-off refused: run #1 of cycle 2026-11 is not ready\n"
    )
    assert refused.output.endswith(
        "  - next: correct each open blocker in HaloPSA and run again with the re-export "
        "(`reconcile run --cycle 2026-11 --halopsa EXPORT`), or accept those that are "
        "intended: `reconcile accept ID --reason TEXT --by NAME` (several at once: "
        "`--from discrepancies.csv`)\n"
    )


def test_a_signoff_refused_for_quarantined_rows_says_how_to_load_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_NOW", "2026-12-02T09:30:00Z")
    cycle = Cycle(tmp_path, AUTOTASK[:1])
    at, halo = write_cycle(tmp_path / "exports", {"H1": HALOPSA["H1"]}, AUTOTASK[:1])
    with halo.open("a", encoding="utf-8") as fh:
        fh.write("H9,NW1,01/11/2026,Acme Ltd,Backup,1,12.3.4,50.00,10.00,01/11/2026,30/11/2026\n")
    ran = cycle.cli(
        "run", "--cycle", "2026-11", "--autotask", at, "--halopsa", halo, "--out", cycle.out
    )
    assert ran.exit_code != 0 and "1 quarantined" in ran.output, ran.output
    refused = cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo")
    assert refused.exit_code == 1, refused.output
    assert (
        "  - 1 row of the inputs is quarantined (quarantine.csv lists each with its reasons); "
        "correct them in the export and run again with it: "
        "`reconcile run --cycle 2026-11 --halopsa CORRECTED_EXPORT`\n"
    ) in refused.output


def test_export_signoff_of_a_cycle_without_runs_says_how_to_make_one(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    """Not 'sign the latest run first' (there is none): no run of the cycle, and the command
    that makes one; exit 2 (a mistyped cycle, most likely), as `signoff` answers it."""
    workspace, _ = demo
    for command in (["export-signoff", "--out", tmp_path / "pack"], ["signoff", "--by", "Jo"]):
        result = invoke("--workspace", workspace, *command, "--cycle", "2026-10")
        assert result.exit_code == 2, result.output
        assert result.output == (
            "Error: --cycle: no run of cycle 2026-10 is kept in this workspace. Make one with "
            "`reconcile run --cycle 2026-10 --autotask EXPORT --halopsa EXPORT` "
            "(`reconcile history` lists the runs kept).\n"
        )
    assert not (tmp_path / "pack").exists()


def test_discrepancy_ids_are_taken_in_any_case(demo: tuple[Path, str]) -> None:
    """Ids are "D-" and lower-case hex digits: `d-1E86AFBA07` is D-1e86afba07 in accept and
    unaccept (one spelling per id, so no ambiguity); the same id in two cases is listed twice."""
    workspace, _ = demo
    found = _rows(workspace.parent / "out")[0]["id"]
    shouted = found.upper().replace("D-", "d-")
    assert shouted != found
    twice = invoke(
        "--workspace", workspace, "accept", found, shouted, "--reason", "r", "--by", "Ann"
    )
    assert twice.exit_code == 2 and f"{found} is listed twice" in twice.output, twice.output
    accepted = invoke(
        "--workspace", workspace, "accept", f" {shouted} ", "--reason", "r", "--by", "Ann"
    )
    assert accepted.exit_code == 0, accepted.output
    assert accepted.output.startswith(f"accepted {found} (")
    withdrawn = invoke(
        "--workspace", workspace, "unaccept", shouted, "--reason", "no", "--by", "Jo"
    )
    assert withdrawn.exit_code == 0, withdrawn.output
    assert withdrawn.output.startswith(f"withdrew the acceptance of {found} (log entry 1)")


def test_usage_lines_name_the_id_argument_as_people_write_it() -> None:
    """ID, not click's `ID_` (the parameter's Python name), in usage and in the error."""
    usage = invoke("unaccept", "--help")
    assert usage.output.startswith("Usage: cli unaccept [OPTIONS] ID\n"), usage.output
    missing = invoke("unaccept", "--by", "Jo", "--reason", "r")
    assert missing.exit_code == 2 and "Missing argument 'ID'." in missing.output
    assert invoke("accept", "--help").output.startswith("Usage: cli accept [OPTIONS] [ID]...\n")
