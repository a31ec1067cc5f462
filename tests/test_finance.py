"""The finance workflow on real files and a real workspace: run history (new, still open,
resolved), accepted differences that follow or lapse, sign-off, and the hash-chained log that
`verify` checks after the DuckDB file is edited behind reconcile's back."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest
from finance_cycle import (
    HALOPSA,
    HOSTILE_REASON,
    Cycle,
    accept_everything,
    signed_for_pack,
    write_cycle,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import invoke
from reconcile import ledger, pack
from reconcile.acceptance import read_requests


@pytest.fixture
def cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cycle:
    monkeypatch.setenv("RECONCILE_NOW", "2026-12-02T09:30:00Z")
    return Cycle(tmp_path)


def test_new_open_and_resolved_across_three_runs(cycle: Cycle) -> None:
    first = cycle.run(HALOPSA)
    ids = {rule: f["id"] for rule, f in cycle.findings().items()}
    assert set(ids) == {"unit_price_mismatch", "missing_in_halopsa", "quantity_mismatch"}
    assert first["history"]["previous_run"] is None
    assert first["history"]["counts"] == {"new": 3, "open": 0, "resolved": 0}
    assert set(first["history"]["new"]) == set(ids.values())

    # The backup line is set up in HaloPSA and the workstation count changes again (4 -> 5).
    second = cycle.run(HALOPSA | {"H3": ("Beta LLP", "Backup", 1, "50.00")} | {
        "H4": ("Beta LLP", "Managed Workstation", 5, "35.00")
    })  # fmt: skip
    now = {rule: f["id"] for rule, f in cycle.findings().items()}
    assert set(now) == {"unit_price_mismatch", "quantity_mismatch"}
    assert now["quantity_mismatch"] != ids["quantity_mismatch"]  # other amounts, another id
    history = second["history"]
    assert history["previous_run"] == first["history"]["run"]
    assert history["new"] == [now["quantity_mismatch"]]
    assert history["open"] == [ids["unit_price_mismatch"]]
    assert {r["id"]: r["rule"] for r in history["resolved"]} == {
        ids["missing_in_halopsa"]: "missing_in_halopsa",
        ids["quantity_mismatch"]: "quantity_mismatch",
    }

    # The workstation count is corrected: only the intended price change is left.
    third = cycle.run(HALOPSA | {"H3": ("Beta LLP", "Backup", 1, "50.00")} | {
        "H4": ("Beta LLP", "Managed Workstation", 3, "35.00")
    })  # fmt: skip
    assert third["history"]["counts"] == {"new": 0, "open": 1, "resolved": 1}
    assert [r["id"] for r in third["history"]["resolved"]] == [now["quantity_mismatch"]]
    trend = third["history"]["trend"]
    assert [(t["blockers"], t["new"], t["open"], t["resolved"]) for t in trend] == [
        (3, 3, 0, 0),
        (2, 1, 1, 2),
        (1, 0, 1, 1),
    ]
    assert [t["difference"]["GBP"] for t in trend] == ["-12.00", "90.00", "6.00"]

    listed = cycle.cli("history", "--cycle", "2026-11")
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("fingerprint ") == 3
    assert "since run #2: 0 new, 1 in both runs, 1 resolved" in listed.output
    assert "Autotask GBP 408.00, HaloPSA GBP 414.00, difference GBP +6.00" in listed.output
    # The count agrees with its noun ("1 blocker"), and each run says whether it is ready.
    assert (
        "open: 1 blocker, 0 warnings, 0 info; 0 expected, 0 accepted -> NOT READY for cutover"
        in listed.output
    )


def test_an_acceptance_follows_an_unchanged_rerun_and_lapses_on_an_amount_change(
    cycle: Cycle,
) -> None:
    cycle.run(HALOPSA)
    price = cycle.findings()["unit_price_mismatch"]["id"]
    accepted = cycle.cli(
        "accept", price, "--reason", "list price from 2026-11, agreed with the client",
        "--by", "Ann Lee",
    )  # fmt: skip
    assert accepted.exit_code == 0, accepted.output
    assert f"accepted {price} (blocker unit_price_mismatch, Acme Ltd" in accepted.output

    again = cycle.run(HALOPSA)  # unchanged: the acceptance follows
    assert again["verdict"]["blockers"] == 2 and again["verdict"]["accepted"] == 1
    assert again["counts"]["accepted"]["blocker"] == 1
    (applied,) = again["acceptances"]["accepted"]
    assert (applied["id"], applied["by"], applied["reason"]) == (
        price,
        "Ann Lee",
        "list price from 2026-11, agreed with the client",
    )
    assert cycle.findings()["unit_price_mismatch"]["status"] == "accepted"
    bars = {b["rule"]: b["amount"] for b in again["bridge"]["GBP"]}
    assert bars["accepted"] == "6.00" and "unit_price_mismatch" not in bars

    # HaloPSA's price changes again: other amounts, another id, and the acceptance lapses.
    changed = cycle.run(HALOPSA | {"H2": ("Acme Ltd", "Firewall management", 2, "46.00")})
    assert changed["verdict"]["accepted"] == 0 and changed["verdict"]["blockers"] == 3
    (lapse,) = changed["acceptances"]["lapsed"]
    now = cycle.findings()["unit_price_mismatch"]["id"]
    assert now != price
    assert lapse["id"] == price
    assert lapse["why"].startswith(f"its lines or amounts changed: the same lines are now {now}")


@pytest.mark.parametrize(
    ("accepted", "now", "lapses"),
    [
        ("01/10/2026,31/10/2026", "01/12/2026,31/12/2026", True),  # billed a month late now
        ("01/10/2026,31/10/2026", "01/10/2026,30/10/2026", True),  # a day short of it
        ("01/10/2026,31/10/2026", "01/10/2026,31/10/2026", False),  # re-exported as it was
    ],
)
def test_an_acceptance_lapses_when_what_it_says_changes_under_the_same_id(
    cycle: Cycle, accepted: str, now: str, lapses: bool
) -> None:
    """A discrepancy's id stands for its lines' amounts, client and item, not for the service
    period a rule found different: an accepted period_mismatch (HaloPSA billed October) kept
    its id when HaloPSA moved on to bill December, and the acceptance covered the new problem
    without a word. It lapses now, saying what the discrepancy said and says."""
    cycle.run(HALOPSA, periods={"H1": accepted})
    period = cycle.findings()["period_mismatch"]
    ok = cycle.cli("accept", period["id"], "--reason", "October billed by mistake", "--by", "Ann")
    assert ok.exit_code == 0, ok.output
    later = cycle.run(HALOPSA, periods={"H1": now})
    assert cycle.findings()["period_mismatch"]["id"] == period["id"]
    if not lapses:
        assert later["verdict"]["accepted"] == 1 and later["acceptances"]["lapsed"] == []
        return
    assert later["verdict"]["accepted"] == 0
    (lapse,) = later["acceptances"]["lapsed"]
    said = cycle.findings()["period_mismatch"]["message"]
    assert lapse["why"] == (
        f"what it says changed since it was accepted: it said {period['message']!r}, "
        f"it now says {said!r}"
    )


def test_an_acceptance_lapses_after_its_last_day(
    cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    cycle.run(HALOPSA)
    price = cycle.findings()["unit_price_mismatch"]["id"]
    past = cycle.cli("accept", price, "--reason", "r", "--by", "Ann", "--until", "2026-12-01")
    assert past.exit_code == 2 and "--until: is in the past" in past.output
    ok = cycle.cli("accept", price, "--reason", "r", "--by", "Ann", "--until", "2026-12-31")
    assert ok.exit_code == 0, ok.output
    assert cycle.run(HALOPSA)["verdict"]["accepted"] == 1
    monkeypatch.setenv("RECONCILE_NOW", "2027-01-01T00:00:00Z")
    later = cycle.run(HALOPSA)
    assert later["verdict"]["accepted"] == 0
    (lapse,) = later["acceptances"]["lapsed"]
    assert lapse["why"] == "its last day, 2026-12-31, has passed"
    run = cycle.cli("run", "--cycle", "2026-11", "--out", cycle.out)
    assert f"acceptance lapsed: {price} (accepted by Ann, log entry 1)" in run.output


def test_signoff_is_refused_with_blockers_and_given_without(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    found = {rule: f["id"] for rule, f in cycle.findings().items()}
    refused = cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith")
    assert refused.exit_code == 1, refused.output
    assert "sign-off refused: run #1 of cycle 2026-11 is not ready" in refused.output
    assert all(f"open blocker {i}" in refused.output for i in found.values())

    # Bulk acceptance from discrepancies.csv, filtered as a spreadsheet would leave it.
    chosen = cycle.tmp / "accept.csv"
    with (cycle.out / "discrepancies.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["rule"] != "missing_in_halopsa"]
    chosen.write_text(
        "id,reason\n" + "".join(f"{r['id']},agreed change {r['rule']}\n" for r in rows),
        encoding="utf-8",
    )
    bulk = cycle.cli("accept", "--from", chosen, "--by", "Ann Lee")
    assert bulk.exit_code == 0, bulk.output
    stale = cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith")
    assert stale.exit_code == 1 and "acceptances changed since run #1" in stale.output

    cycle.run(HALOPSA)
    one_left = cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith")
    assert one_left.exit_code == 1
    assert f"open blocker {found['missing_in_halopsa']}" in one_left.output
    assert f"open blocker {found['unit_price_mismatch']}" not in one_left.output

    assert cycle.cli(
        "accept", found["missing_in_halopsa"], "--reason", "backup retired at renewal",
        "--by", "Jo Smith",
    ).exit_code == 0  # fmt: skip
    summary = cycle.run(HALOPSA, code=0)
    assert summary["verdict"] == {
        "ready": True, "blockers": 0, "warnings": 0, "info": 0, "expected": 0, "accepted": 3,
    }  # fmt: skip
    # The clients' counts are the verdict's: an accepted blocker is no client's blocker.
    clients = summary["clients"]
    assert sum(c["blocker"] for c in clients) == 0 and sum(c["warning"] for c in clients) == 0
    signed = cycle.cli(
        "signoff", "--cycle", "2026-11", "--by", "Jo Smith", "--role", "Finance Controller"
    )
    assert signed.exit_code == 0, signed.output
    assert f"signed off run #3 of cycle 2026-11 (fingerprint {summary['run_id']})" in (
        signed.output
    )
    # Separation of duties, light: allowed and flagged.
    assert "Jo Smith also accepted 1 of the 3 accepted differences" in signed.output
    ((body,),) = cycle.sql("SELECT body FROM ledger WHERE kind = 'signoff'")
    record = json.loads(body)
    assert record["run_id"] == summary["run_id"] and record["totals"] == summary["totals"]
    assert {a["id"]: a["reason"] for a in record["accepted"]} == {
        r["id"]: f"agreed change {r['rule']}" for r in rows
    } | {found["missing_in_halopsa"]: "backup retired at renewal"}
    assert [i["load_id"] for i in record["inputs"]] == [i["load_id"] for i in summary["inputs"]]
    assert record["accepted_by_signer"] == [found["missing_in_halopsa"]]
    listed = cycle.cli("history")
    assert "run #3 signed off by Jo Smith (Finance Controller)" in listed.output
    assert (
        "open: 0 blockers, 0 warnings, 0 info; 0 expected, 3 accepted -> READY for cutover"
        in listed.output
    )
    assert listed.output.endswith("finance log: 4 entries (`reconcile verify` checks the log)\n")


def test_a_run_tuned_otherwise_keeps_the_fingerprint_and_the_signoff(cycle: Cycle) -> None:
    """DuckDB's memory limit, the workbook and the settings file's comments change how a run
    works or what it writes, not what it finds: the fingerprint stays and so does the sign-off.
    A setting that changes what is found changes the fingerprint."""
    cycle.run(HALOPSA)
    accept_everything(cycle)
    signed = cycle.run(HALOPSA, code=0)
    assert cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith").exit_code == 0
    tuned = cycle.tmp / "nightly.toml"
    tuned.write_text(
        '# the nightly box has less memory\n[workspace]\nmemory_limit = "150MB"\n\n'
        "[outputs]\nworkbook = false\n",
        encoding="utf-8",
    )
    same = cycle.run(HALOPSA, 0, "--config", tuned)
    changed = same["config"]["changed"]
    assert (changed["workspace.memory_limit"], changed["outputs.workbook"]) == ("150MB", False)
    assert same["run_id"] == signed["run_id"]
    (standing,) = same["signoffs"]
    assert (standing["state"], standing["why"]) == ("valid", "run #3 had the same results")

    stricter = cycle.tmp / "stricter.toml"
    stricter.write_text("[match]\nfuzzy_min_score = 95\n", encoding="utf-8")
    other = cycle.run(HALOPSA, 0, "--config", stricter)
    assert other["run_id"] != signed["run_id"]
    assert other["signoffs"][0]["state"] == "superseded"


def test_a_later_run_with_other_results_supersedes_the_signoff(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    accept_everything(cycle)
    cycle.run(HALOPSA, code=0)
    assert cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith").exit_code == 0

    same = cycle.run(HALOPSA, code=0)  # the same results: the sign-off stands
    (standing,) = same["signoffs"]
    assert (standing["run"], standing["state"]) == (2, "valid")
    assert standing["why"] == "run #3 had the same results"
    page = " ".join((cycle.out / "report.html").read_text(encoding="utf-8").split())
    assert '<div class="banner signoff signed" id="signoff" role="note">' in page
    assert "<strong>Signed off</strong> as run #2 by Jo Smith" in page
    assert "this run has the same results, so the sign-off stands" in page

    changed = cycle.run(HALOPSA | {"H1": ("Acme Ltd", "Managed Server", 1, "110.00")})
    (superseded,) = changed["signoffs"]
    assert superseded["state"] == "superseded" and superseded["superseded_by"] == 4
    assert superseded["why"] == (
        "run #4 has different results: its inputs, mappings, settings or reconcile version differ"
    )
    back = cycle.run(HALOPSA, code=0)  # superseded for good, even by identical results later
    assert back["signoffs"][0]["state"] == "superseded"
    listed = cycle.cli("history")
    assert "run #2 signed off by Jo Smith" in listed.output and ": superseded, run #4" in (
        listed.output
    )


def test_signoff_is_refused_when_the_inputs_changed_since_the_run(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    accept_everything(cycle)
    cycle.run(HALOPSA, code=0)
    _, halo = write_cycle(cycle.tmp / "reexport", HALOPSA | {"H9": ("Acme Ltd", "Extra", 1, "1")})
    loaded = cycle.cli("load", "--cycle", "2026-11", "--replace", halo)
    assert loaded.exit_code == 0, loaded.output
    refused = cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith")
    assert refused.exit_code == 1
    assert "the inputs changed since run #2" in refused.output
    assert "run `reconcile run --cycle 2026-11` again" in refused.output


def _signed_cycle(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    accept_everything(cycle)  # entries 1-3
    cycle.run(HALOPSA, code=0)
    assert cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith").exit_code == 0  # 4
    intact = cycle.cli("verify")
    assert intact.exit_code == 0, intact.output
    assert intact.output.startswith("finance log intact: 4 entries, head ")


def _rehash_after_edit(cycle: Cycle) -> None:
    """Edit entry 1 and write the hash its new content gives, as a careful forger would."""
    with duckdb.connect(str(cycle.ws)) as con:
        first = ledger.entries(con)[0]
        forged = replace(first, body=first.body | {"reason": "approved by the board"})
        con.execute(
            "UPDATE ledger SET body = ?, hash = ? WHERE seq = 1",
            [ledger.canonical(forged.body).decode(), forged.computed()],
        )


TAMPERING: dict[str, tuple[str | Callable[[Cycle], None], str, str]] = {
    "edited": (
        "UPDATE ledger SET body = replace(CAST(body AS VARCHAR), 'agreed', 'approved') "
        "WHERE seq = 2",
        "entry 2 (accept D-",
        "was altered: its content no longer gives its hash",
    ),
    "rehashed": (_rehash_after_edit, "entry 1 was replaced: entry 2 (accept D-", "its hash as"),
    "deleted": ("DELETE FROM ledger WHERE seq = 2", "entry 2 removed", "log jumps to entry 3"),
    "last deleted": (
        "DELETE FROM ledger WHERE seq = 4",
        "entry 4 removed",
        "the log's head records 4 entries",
    ),
}


@pytest.mark.parametrize("how", TAMPERING)
def test_verify_names_the_first_broken_entry(cycle: Cycle, how: str) -> None:
    """Entries edited or deleted directly in the DuckDB file, behind reconcile's back."""
    _signed_cycle(cycle)
    edit, where, what = TAMPERING[how]
    if callable(edit):
        edit(cycle)
    else:
        cycle.sql(edit)
    broken = cycle.cli("verify")
    assert broken.exit_code == 4, broken.output
    assert broken.output.startswith("Error: the finance log is broken: ")
    assert where in broken.output and what in broken.output, broken.output
    refused = cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith")
    assert refused.exit_code == 4 and "the finance log is broken" in refused.output


def test_verify_catches_a_signed_runs_report_data_changed(cycle: Cycle, tmp_path: Path) -> None:
    """The sign-off binds the report data kept with its run, which the sign-off pack renders
    under its banner: an amount changed in it breaks the log, and the pack is refused."""
    _signed_cycle(cycle)
    ((data,),) = cycle.sql("SELECT data FROM run_reports WHERE run_number = 2")
    changed = gzip.compress(gzip.decompress(data).replace(b"408.00", b"400.00"), mtime=0)
    assert changed != data
    cycle.sql("UPDATE run_reports SET data = ? WHERE run_number = 2", changed)
    broken = cycle.cli("verify")
    assert broken.exit_code == 4, broken.output
    assert "is broken: entry 4 (signoff run #2 by Jo Smith" in broken.output
    assert "the report data of run #2 changed since the sign-off (report_sha256)" in (broken.output)
    refused = cycle.cli("export-signoff", "--cycle", "2026-11", "--out", tmp_path / "pack")
    assert refused.exit_code == 4, refused.output


def test_verify_catches_a_signed_runs_record_changed(cycle: Cycle) -> None:
    _signed_cycle(cycle)
    cycle.sql("UPDATE runs SET summary = replace(CAST(summary AS VARCHAR), '408.00', '400.00')")
    broken = cycle.cli("verify")
    assert broken.exit_code == 4
    assert "is broken: entry 4 (signoff run #2 by Jo Smith" in broken.output
    assert "the summary of run #2 changed since the sign-off" in broken.output
    # The discrepancies an acceptance was made on (run #1) are bound too.
    cycle.sql("UPDATE findings SET message = 'nothing to see' WHERE run_number = 1")
    broken = cycle.cli("verify")
    assert "is broken: entry 1 (accept D-" in broken.output
    assert "of run #1 is no longer as it was accepted" in broken.output


def test_unaccept_withdraws_and_the_blocker_is_back(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    price = cycle.findings()["unit_price_mismatch"]["id"]
    assert cycle.cli("accept", price, "--reason", "r", "--by", "Ann").exit_code == 0
    assert cycle.run(HALOPSA)["verdict"]["accepted"] == 1
    withdrawn = cycle.cli("unaccept", price, "--by", "Jo", "--reason", "not agreed after all")
    assert withdrawn.exit_code == 0, withdrawn.output
    assert f"withdrew the acceptance of {price} (log entry 1): log entry 2" in withdrawn.output
    assert cycle.run(HALOPSA)["verdict"] == {
        "ready": False, "blockers": 3, "warnings": 0, "info": 0, "expected": 0, "accepted": 0,
    }  # fmt: skip
    again = cycle.cli("unaccept", price, "--by", "Jo", "--reason", "twice")
    assert again.exit_code == 2 and "has no acceptance standing" in again.output


NO_SUCH = "D-0000000000"
BAD_INPUT = [
    (
        ["accept", NO_SUCH, "--reason", "r", "--by", "A"],
        f"{NO_SUCH}: not a discrepancy of run #1, the latest of cycle 2026-11",
    ),
    (
        ["accept", "nonsense", "--reason", "r", "--by", "A"],
        "ID argument nonsense: is not a discrepancy id",
    ),
    (["accept", NO_SUCH, "--by", "A"], "--reason: is required"),
    (["accept", NO_SUCH, "--reason", "r", "--by", "  "], "--by: must not be empty"),
    (
        ["accept", NO_SUCH, "--reason", "r", "--by", "A", "--until", "31/12/2026"],
        "--until: is not a date; expected YYYY-MM-DD, got '31/12/2026'",
    ),
    (
        ["accept", NO_SUCH, "--reason", "r", "--by", "A", "--cycle", "2026-10"],
        "no run of cycle 2026-10 is kept",
    ),
    (["signoff", "--cycle", "2026-13", "--by", "A"], "--cycle: the billing cycle is not a month"),
    (["signoff", "--cycle", "2026-10", "--by", "A"], "--cycle: no run of cycle 2026-10 is kept"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_finance_commands_refuse_bad_input_with_exit_2(
    cycle: Cycle, args: list[str], message: str
) -> None:
    cycle.run(HALOPSA)
    result = cycle.cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_bad_ids_file_is_named_with_its_line(cycle: Cycle) -> None:
    """Rows are named by the file's line, as mapping files name theirs (the header is line 1;
    data rows were counted from 1, so line 3 was "row 2")."""
    cycle.run(HALOPSA)
    bad = cycle.tmp / "ids.csv"
    bad.write_text("id,reason\nD-0123456789,fine\n=cmd(),evil\n", encoding="utf-8")
    result = cycle.cli("accept", "--from", bad, "--by", "Ann")
    assert result.exit_code == 2
    assert f"{bad} line 3: is not a discrepancy id" in result.output
    spread = cycle.tmp / "spread.csv"
    spread.write_text("sep=;\nid;reason;until\n\n;;\nD-0123456789;;2099-01-01\n", "utf-8")
    result = cycle.cli("accept", "--from", spread, "--by", "Ann")
    assert result.exit_code == 2
    assert f"{spread}, line 5, column 'reason': no reason is given for this id" in result.output
    spread.write_text("sep=;\nid;reason;until\nD-0123456789;r;someday\n", "utf-8")
    result = cycle.cli("accept", "--from", spread, "--by", "Ann")
    assert result.exit_code == 2 and f"{spread}, line 3, column 'until'" in result.output
    headless = cycle.tmp / "headless.csv"
    headless.write_text("D-0123456789\n", encoding="utf-8")
    result = cycle.cli("accept", "--from", headless, "--by", "Ann", "--reason", "r")
    assert result.exit_code == 2 and "the file has no id column" in result.output
    assert cycle.sql("SELECT count(*) FROM ledger") == [(0,)]  # nothing was written


def test_finance_commands_need_an_existing_workspace(tmp_path: Path) -> None:
    result = invoke("--workspace", tmp_path / "none.duckdb", "history")
    assert result.exit_code == 2 and "no workspace here" in result.output
    assert not (tmp_path / "none.duckdb").exists()


# --- the sign-off pack ------------------------------------------------------------------------


def test_the_pack_holds_the_signed_run_and_a_workbook_of_numbers(cycle: Cycle) -> None:
    import openpyxl

    summary = signed_for_pack(cycle)
    folder = cycle.tmp / "pack"
    result = cycle.cli("export-signoff", "--cycle", "2026-11", "--out", folder)
    assert result.exit_code == 0, result.output
    names = {p.name for p in folder.iterdir()}
    assert {
        "report.html", "summary.json", "accepted-differences.csv", "accepted-differences.xlsx",
        "finance-log.jsonl", "README.txt",
    } <= names  # fmt: skip
    assert ("signoff.pdf" in names) != ("signoff-print.html" in names)
    assert (folder / "summary.json").read_bytes() == (cycle.out / "summary.json").read_bytes()

    book = openpyxl.load_workbook(folder / "accepted-differences.xlsx")
    assert book.sheetnames == [
        "Sign-off", "Totals", "Bridge", "Accepted differences", "Finance log",
    ]  # fmt: skip
    accepted = book["Accepted differences"]
    header = [c.value for c in accepted[1]]
    rows = [dict(zip(header, r, strict=True)) for r in accepted.iter_rows(min_row=2)]
    assert len(rows) == 3 and accepted.freeze_panes == "A2"
    by_rule = {r["rule"].value: r for r in rows}
    quantity = by_rule["quantity_mismatch"]
    assert isinstance(quantity["difference"].value, int | float)  # a number, not text
    assert quantity["difference"].value == 35.0 and quantity["gross_difference"].value == 42.0
    assert quantity["difference"].number_format == '#,##0.00 "GBP";-#,##0.00 "GBP"'
    # a string cell, never a live formula, holding the reason as written (no CSV's `'`)
    assert quantity["reason"].value == HOSTILE_REASON and quantity["reason"].data_type == "s"
    assert quantity["reason"].data_type == "s" and quantity["by"].value == "Jo Smith"
    assert isinstance(quantity["entry"].value, int)
    assert by_rule["missing_in_halopsa"]["halopsa_amount"].value is None
    totals = {(r[0].value, r[1].value): r for r in book["Totals"].iter_rows(min_row=2)}
    gross = totals[("GBP", "Difference")][4]
    assert gross.value == float(summary["totals"]["GBP"]["difference"]["gross"]) == -12.0
    assert '"GBP"' in gross.number_format
    bridge = {r[2].value: r[3].value for r in book["Bridge"].iter_rows(min_row=2)}
    assert bridge == {"accepted": -12.0}
    record = {r[0].value: r[1].value for r in book["Sign-off"].iter_rows(min_row=2)}
    assert record["Signed off by"] == "Jo Smith" and record["Role"] == "Finance Controller"
    assert record["Run fingerprint"] == summary["run_id"]
    assert record["Separation of duties"].startswith("Jo Smith also accepted 1 of the")
    with (folder / "accepted-differences.csv").open(encoding="utf-8") as fh:
        csv_rows = {r["rule"]: r for r in csv.DictReader(fh)}
    assert csv_rows["quantity_mismatch"]["reason"] == "'" + HOSTILE_REASON
    assert csv_rows["quantity_mismatch"]["gross_difference"] == "42.00"

    # The log excerpt: every entry of the cycle with the hash its canonical content gives.
    entries = [json.loads(line) for line in (folder / "finance-log.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in entries] == ["accept", "accept", "accept", "signoff"]
    for entry in entries:
        content = {k: v for k, v in entry.items() if k != "hash"}
        assert hashlib.sha256(ledger.canonical(content)).hexdigest() == entry["hash"]
    assert [e["prev"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    readme = (folder / "README.txt").read_text(encoding="utf-8")
    assert f"SHA-256 {entries[-1]['hash']}" in readme
    assert "Separation of duties: Jo Smith also accepted 1 of the accepted differences" in readme
    assert all(f"  {n}" in readme for n in names - {"README.txt"})


def test_the_summary_page_is_printed_on_one_page(cycle: Cycle) -> None:
    if pack.chromium() is None:
        pytest.skip("no chromium on PATH: the fallback is tested below")
    signed_for_pack(cycle)
    out = cycle.tmp / "pack"
    assert cycle.cli("export-signoff", "--cycle", "2026-11", "--out", out).exit_code == 0
    pdf = (out / "signoff.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == 1


def test_without_chromium_the_pack_has_a_print_ready_page_and_says_so(
    cycle: Cycle, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_for_pack(cycle)
    monkeypatch.setenv("PATH", str(cycle.tmp))  # no chromium here
    out = cycle.tmp / "pack"
    result = cycle.cli("export-signoff", "--cycle", "2026-11", "--out", out)
    assert result.exit_code == 0, result.output
    assert "no PDF: chromium was not found on PATH; wrote signoff-print.html" in result.output
    assert not (out / "signoff.pdf").exists()
    page = (out / "signoff-print.html").read_text(encoding="utf-8")
    assert "Parallel cycle reviewed &lt;b&gt;line by line&lt;/b&gt;" in page  # escaped
    assert "<b>" not in page and "<script" not in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page)  # nothing fetched
    assert "Separation of duties:" in page and "@page { size: A4" in page
    assert "No PDF: chromium was not found on PATH" in (out / "README.txt").read_text()


def test_the_pack_is_refused_unless_a_valid_signoff_stands(cycle: Cycle) -> None:
    cycle.run(HALOPSA)
    out = cycle.tmp / "pack"
    unsigned = cycle.cli("export-signoff", "--cycle", "2026-11", "--out", out)
    assert unsigned.exit_code == 1 and "cycle 2026-11 has no sign-off" in unsigned.output
    accept_everything(cycle)
    cycle.run(HALOPSA, code=0)
    assert cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith").exit_code == 0
    cycle.run(HALOPSA | {"H1": ("Acme Ltd", "Managed Server", 1, "110.00")})
    superseded = cycle.cli("export-signoff", "--cycle", "2026-11", "--out", out)
    assert superseded.exit_code == 1
    assert "the sign-off of cycle 2026-11 (log entry 4) is superseded" in superseded.output
    assert "run #3 has different results" in superseded.output
    assert not out.exists()
    cycle.sql("DELETE FROM ledger WHERE seq = 1")
    broken = cycle.cli("export-signoff", "--cycle", "2026-11", "--out", out)
    assert broken.exit_code == 4 and "entry 1 removed" in broken.output


def test_an_acceptance_withdrawn_after_the_signoff_supersedes_it(cycle: Cycle) -> None:
    """No run has shown the withdrawal yet: history and the pack must not call the sign-off
    valid, and the pack is refused (new-user check: it exported with the withdrawn one)."""
    cycle.run(HALOPSA)
    found = cycle.findings()
    accept_everything(cycle)
    cycle.run(HALOPSA, code=0)
    assert cycle.cli("signoff", "--cycle", "2026-11", "--by", "Jo Smith").exit_code == 0
    some = next(iter(found.values()))["id"]
    withdrawn = cycle.cli("unaccept", some, "--by", "Ann Lee", "--reason", "client disputes it")
    assert withdrawn.exit_code == 0, withdrawn.output
    listed = cycle.cli("history")
    assert "acceptances changed since run #2" in listed.output and "valid" not in listed.output
    out = cycle.tmp / "pack"
    refused = cycle.cli("export-signoff", "--cycle", "2026-11", "--out", out)
    assert refused.exit_code == 1, refused.output
    assert "superseded" in refused.output and "acceptances changed since run #2" in refused.output
    assert not out.exists()


@settings(max_examples=60, deadline=None)
@given(
    sep_line=st.booleans(),
    separator=st.sampled_from([",", ";", "\t"]),
    header=st.permutations(["id", "reason", "until"]).flatmap(
        lambda names: st.tuples(
            st.just(names),
            st.lists(st.sampled_from(["", " ", "  "]), min_size=3, max_size=3),
            st.lists(st.booleans(), min_size=3, max_size=3),
        )
    ),
    gaps=st.lists(st.sampled_from(["", "blank", "separators"]), min_size=3, max_size=3),
    line_end=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_an_ids_file_is_read_as_a_mapping_file_is(
    sep_line: bool,
    separator: str,
    header: tuple[list[str], list[str], list[bool]],
    gaps: list[str],
    line_end: str,
    bom: bool,
) -> None:
    """`accept --from` reads what Excel saves as a mapping file is read (crosswalk's
    header_records): a `sep=` first line (refused before: "no id column ... got 'sep=;'"), a
    semicolon or tab, a header in any case and spacing, any column order, rows left empty
    passed over, CRLF, a BOM; each id named by its line of the file."""
    names, pads, upper = header
    cells = [p + (n.upper() if u else n) + p for n, p, u in zip(names, pads, upper, strict=True)]
    ids = ["D-0123456789", "D-abcdef0123", "D-9999999999"]
    lines = [f"sep={separator}"] if sep_line else []
    lines.append(separator.join(cells))
    expected = []
    for number, (id_, gap) in enumerate(zip(ids, gaps, strict=True)):
        if gap:
            lines.append("" if gap == "blank" else separator * 2)
        values = {"id": id_, "reason": f"reason {number}; agreed, in writing", "until": ""}
        row = [values[n] for n in names]
        lines.append(separator.join(f'"{v}"' if separator in v or "," in v else v for v in row))
        expected.append((id_, values["reason"], len(lines)))
    text = line_end.join(lines) + line_end
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ids.csv"
        path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
        requests = read_requests(path, None, None, dt.date(2026, 12, 2))
    assert [(r.id, r.reason, r.where) for r in requests] == [
        (i, reason, f"{path} line {line}") for i, reason, line in expected
    ]
