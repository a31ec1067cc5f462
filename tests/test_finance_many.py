"""The finance workflow with many acceptances at once: acceptances made on two runs of a cycle,
a sign-off over all of them, and `verify` reading each run's discrepancies once while still
naming the first broken entry; many acceptances lapsing on one re-run, each with its own
reason."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from finance_cycle import Cycle

CLIENTS = [f"Client {n:02d}" for n in range(24)]
# One managed server per client, billed by HaloPSA at 101.00 rather than 100.00: one
# unit_price_mismatch blocker per client.
AUTOTASK = [(f"A{n}", c, "Managed Server", 1, "100.00") for n, c in enumerate(CLIENTS)]
HALOPSA = {f"H{n}": (c, "Managed Server", 1, "101.00") for n, c in enumerate(CLIENTS)}


@pytest.fixture
def cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cycle:
    monkeypatch.setenv("RECONCILE_NOW", "2026-12-02T09:30:00Z")
    return Cycle(tmp_path, AUTOTASK)


def _ids(cycle: Cycle) -> dict[str, tuple[str, str]]:
    """The last run's discrepancies: (id, rule) by client (one each here)."""
    with (cycle.out / "discrepancies.csv").open(encoding="utf-8") as fh:
        return {r["client"]: (r["id"], r["rule"]) for r in csv.DictReader(fh)}


def _accept_from_file(cycle: Cycle, ids: list[str], name: str) -> None:
    listed = cycle.tmp / name
    listed.write_text("id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    result = cycle.cli("accept", "--from", listed, "--reason", "new list price", "--by", "Ann")
    assert result.exit_code == 0, result.output


def _broken(cycle: Cycle) -> str:
    result = cycle.cli("verify")
    assert result.exit_code == 4, result.output
    return result.output


def test_acceptances_bound_to_two_runs_verify_and_the_first_broken_is_named(
    cycle: Cycle,
) -> None:
    cycle.run(HALOPSA)
    ids = [_ids(cycle)[c][0] for c in CLIENTS]
    _accept_from_file(cycle, ids[:12], "first.csv")  # entries 1-12, on run #1
    cycle.run(HALOPSA)
    more = cycle.cli("accept", *ids[12:], "--reason", "new list price", "--by", "Ann")
    assert more.exit_code == 0, more.output  # entries 13-24, on run #2
    assert cycle.run(HALOPSA, code=0)["verdict"]["accepted"] == 24
    signed = cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith")
    assert signed.exit_code == 0, signed.output  # entry 25, binding run #3
    assert cycle.sql("SELECT DISTINCT CAST(body->>'run' AS INT) FROM ledger ORDER BY 1") == [
        (1,),
        (2,),
        (3,),
    ]
    intact = cycle.cli("verify")
    assert intact.exit_code == 0, intact.output
    assert intact.output.startswith("finance log intact: 25 entries, head ")

    def edit(run: int, id_: str) -> None:
        cycle.sql("UPDATE findings SET message = 'x' WHERE run_number = ? AND id = ?", run, id_)

    # The signed run's discrepancies: the sign-off (entry 25) is broken.
    edit(3, ids[0])
    assert "is broken: entry 25 (signoff run #3 by Jo Smith" in _broken(cycle)
    assert "the discrepancies of run #3 changed since the sign-off" in _broken(cycle)
    # Rows of a run an acceptance does not bind change nothing for it: ids[20] was accepted on
    # run #2, ids[3] on run #1.
    edit(1, ids[20])
    edit(2, ids[3])
    assert "is broken: entry 25 (signoff" in _broken(cycle)
    # A discrepancy accepted on run #2 changed: its entry is named before the sign-off's.
    edit(2, ids[22])
    broken = _broken(cycle)
    assert f"is broken: entry 23 (accept {ids[22]} by Ann" in broken
    assert f"discrepancy {ids[22]} of run #2 is no longer as it was accepted" in broken
    # One accepted on run #1, earlier in the log, changed too: that one is named now.
    edit(1, ids[7])
    broken = _broken(cycle)
    assert f"is broken: entry 8 (accept {ids[7]} by Ann" in broken
    assert f"discrepancy {ids[7]} of run #1 is no longer as it was accepted" in broken
    # Still earlier, one removed from run #1.
    cycle.sql("DELETE FROM findings WHERE run_number = 1 AND id = ?", ids[1])
    broken = _broken(cycle)
    assert f"is broken: entry 2 (accept {ids[1]} by Ann" in broken
    assert f"discrepancy {ids[1]} of run #1 is no longer as it was accepted" in broken
    refused = cycle.cli("export-signoff", "--cycle", "2026-11", "--out", cycle.tmp / "pack")
    assert refused.exit_code == 4 and f"entry 2 (accept {ids[1]}" in refused.output


def test_many_acceptances_lapse_on_one_rerun_each_with_its_own_reason(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    ids = [_ids(cycle)[c][0] for c in CLIENTS]
    _accept_from_file(cycle, ids, "all.csv")
    # Clients 0-9: another price (another id, the same lines); 10-11: HaloPSA drops the line
    # (missing_in_halopsa on the same Autotask line); 12-13: the prices agree (resolved).
    changed = (
        {f"H{n}": (CLIENTS[n], "Managed Server", 1, "102.00") for n in range(10)}
        | {f"H{n}": (CLIENTS[n], "Managed Server", 1, "100.00") for n in (12, 13)}
        | {f"H{n}": HALOPSA[f"H{n}"] for n in range(14, 24)}
    )
    summary = cycle.run(changed)
    now = _ids(cycle)
    assert summary["verdict"]["accepted"] == 10
    why = {lapse["id"]: lapse["why"] for lapse in summary["acceptances"]["lapsed"]}
    assert list(why) == ids[:14]
    for n in range(12):
        successor, rule = now[CLIENTS[n]]
        assert successor != ids[n]
        assert rule == ("unit_price_mismatch" if n < 10 else "missing_in_halopsa")
        assert why[ids[n]].startswith(
            f"its lines or amounts changed: the same lines are now {successor} ({rule}, "
        ), why[ids[n]]
    for n in (12, 13):
        assert why[ids[n]] == (
            "its id is not in this run: the lines or amounts behind it changed, or it is resolved"
        )


def test_accepting_many_names_every_id_the_run_lacks(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    ids = [_ids(cycle)[c][0] for c in CLIENTS]
    unknown = ["D-0000000000", "D-0000000001"]
    refused = cycle.cli(
        "accept", *ids[:5], unknown[0], *ids[5:], unknown[1], "--reason", "r", "--by", "Ann"
    )
    assert refused.exit_code == 2, refused.output
    assert f"{unknown[0]}, {unknown[1]}: not discrepancies of run #1" in refused.output
    assert cycle.sql("SELECT count(*) FROM ledger") == [(0,)]


def test_two_signoffs_of_two_runs_are_each_checked_against_their_own_run(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    _accept_from_file(cycle, [_ids(cycle)[c][0] for c in CLIENTS], "all.csv")  # entries 1-24
    for signing in ("run #2, entry 25", "run #3, entry 26"):
        assert cycle.run(HALOPSA, code=0)["verdict"]["accepted"] == 24
        signed = cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith")
        assert signed.exit_code == 0, (signing, signed.output)
    intact = cycle.cli("verify")
    assert intact.exit_code == 0, intact.output
    assert intact.output.startswith("finance log intact: 26 entries, head ")
    cycle.sql("UPDATE findings SET message = 'x' WHERE run_number = 3")
    assert "is broken: entry 26 (signoff run #3 by Jo Smith" in _broken(cycle)
    cycle.sql("UPDATE findings SET message = 'x' WHERE run_number = 2")
    assert "is broken: entry 25 (signoff run #2 by Jo Smith" in _broken(cycle)
