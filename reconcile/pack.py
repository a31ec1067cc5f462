"""The sign-off pack: what goes into the migration file once finance has signed a cycle off.

`export` writes, into one folder replaced whole (outputs.output_folder):

- `report.html`: the signed run's report, rendered again from the data kept with the run,
  with the sign-off banner;
- `summary.json`: the run's summary.json, as the run wrote it;
- `accepted-differences.csv`: the accepted differences the sign-off binds (discrepancy,
  reason, who, when, until, log entry);
- `accepted-differences.xlsx`: the workbook finance opens, one sheet per section (Sign-off,
  Totals, Bridge, Accepted differences, Finance log), money as numbers in each row's currency;
- `finance-log.jsonl`: the cycle's log entries up to the sign-off, one canonical JSON object
  a line with its hash;
- `signoff.pdf`: one printed page (verdict, totals, bridge, who signed, when, fingerprint)
  printed by headless chromium; without chromium, `signoff-print.html`, the page ready to
  print;
- `README.txt`: what each file is, with its SHA-256, and how to check the log.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson
import polars as pl
from markupsafe import Markup

from reconcile import acceptance, ledger, signoff
from reconcile.errors import RefusedError
from reconcile.history import RunRecord, kept_run, latest_run, stored_report
from reconcile.ingest import sha256
from reconcile.outputs import output_folder, write_workbook
from reconcile.report import (
    CSP,
    CSS_NAME,
    bridge_chart,
    make_environment,
    report_html,
    rule_title,
)
from reconcile.report_model import ReportData, Signoff, from_plain
from reconcile.safe import neutralise

PRINT_TEMPLATE = "signoff.html.j2"
PDF_NAME, PRINT_NAME = "signoff.pdf", "signoff-print.html"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PRINT_TIMEOUT = 180  # seconds chromium may take to print one page
PRINTED_ACCEPTED = 10  # accepted differences listed on the printed page (it is one page)
MONEY = pl.Decimal(18, 2)
ACCEPTED_COLUMNS = (
    "id", "rule", "severity", "client", "currency", "autotask_amount", "halopsa_amount",
    "difference", "gross_difference", "reason", "by", "at", "until", "accepted_on_run", "entry",
    "entry_hash", "message", "autotask_refs", "halopsa_refs",
)  # fmt: skip
MONEY_FIELDS = ("autotask_amount", "halopsa_amount", "difference", "gross_difference")
ABOUT = {
    "report.html": "the signed run's report, with the sign-off banner",
    "summary.json": "the run's summary.json, as the run wrote it",
    "accepted-differences.csv": "the accepted differences the sign-off binds",
    "accepted-differences.xlsx": "the same, with the sign-off, totals, bridge and log, for Excel",
    "finance-log.jsonl": "the cycle's log entries up to the sign-off, with their hashes",
    PDF_NAME: "the one-page sign-off summary",
    PRINT_NAME: "the one-page sign-off summary, ready to print (chromium was not available)",
}

# The file of the pack that holds each workbook sheet's text whole (a cell cut at Excel's
# limit names it: outputs.cut).
WHOLE_TEXT = {
    "Sign-off": "finance-log.jsonl",
    "Totals": "summary.json",
    "Bridge": "summary.json",
    "Accepted differences": "accepted-differences.csv",
    "Finance log": "finance-log.jsonl",
}


@dataclass(frozen=True)
class Pack:
    """A written pack: its folder, the files in it, the sign-off it holds, and why the summary
    page is HTML rather than PDF (None when the PDF was printed)."""

    folder: Path
    files: tuple[str, ...]
    signed: signoff.State
    no_pdf: str | None


def export(con: duckdb.DuckDBPyConnection, cycle: str, out: Path) -> Pack:
    """Write the pack of the cycle's latest sign-off into `out`.

    Raises TamperedError when the log or a hash it binds is broken (signoff.verify),
    InputError when the workspace holds no run of the cycle, RefusedError when the cycle has no
    sign-off, its latest is superseded, or the signed run's report data is not kept (a run made
    by an earlier version)."""
    log = signoff.verify(con)
    if latest_run(con, cycle) is None:
        raise acceptance.no_run(cycle)
    states = signoff.states(con, cycle)
    if not states:
        raise RefusedError(
            f"cycle {cycle} has no sign-off",
            [f"sign the latest run first: reconcile signoff --cycle {cycle} --by NAME"],
        )
    signed = states[-1]
    if signed.state != "valid":
        raise RefusedError(
            f"the sign-off of cycle {cycle} (log entry {signed.entry.seq}) is superseded",
            [signed.why, f"sign the latest run again: reconcile signoff --cycle {cycle}"],
        )
    body = signed.entry.body
    run = kept_run(con, int(body["run"]))
    assert run is not None  # verify() checked that the workspace holds the signed run
    data = stored_report(con, run.number)
    if data is None:
        raise RefusedError(
            f"run #{run.number}'s report is not kept (it was made by an earlier version)",
            [f"run the cycle again and sign that run: reconcile run --cycle {cycle}"],
        )
    excerpt = [e for e in log if e.cycle == cycle and e.seq <= signed.entry.seq]
    accepted = accepted_frame(body["accepted"])
    signed_record = signed_view(signed.entry)
    html = report_html(dataclasses.replace(data, signed=from_plain(Signoff, signed.record())))
    page = print_page(data, signed.entry, signed_record)
    writers: dict[str, Callable[[Path], object]] = {
        "report.html": lambda path: path.write_text(html, encoding="utf-8"),
        "summary.json": lambda path: path.write_bytes(
            orjson.dumps(run.summary, option=orjson.OPT_INDENT_2) + b"\n"
        ),
        "accepted-differences.csv": neutralise(accepted).write_csv,
        "accepted-differences.xlsx": lambda path: write_workbook(
            path, workbook_sheets(run, signed.entry, accepted, excerpt), WHOLE_TEXT
        ),
        "finance-log.jsonl": lambda path: path.write_bytes(
            b"".join(ledger.canonical(e.record()) + b"\n" for e in excerpt)
        ),
    }
    with output_folder(out, frozenset({*ABOUT, "README.txt"})) as folder:
        for name, write in writers.items():
            write(folder / name)
        no_pdf = print_pdf(page, folder / PDF_NAME)
        if no_pdf is not None:
            (folder / PRINT_NAME).write_text(page, encoding="utf-8")
        files = tuple(sorted(p.name for p in folder.iterdir()))
        (folder / "README.txt").write_text(
            readme(cycle, signed, folder, files, no_pdf), encoding="utf-8"
        )
    return Pack(out, (*files, "README.txt"), signed, no_pdf)


def signed_view(entry: ledger.Entry) -> dict[str, Any]:
    """The sign-off as the report's banner and the printed page show it."""
    body = entry.body
    return {
        "by": entry.by,
        "role": body.get("role"),
        "note": body.get("note"),
        "at": entry.at,
        "entry": entry.seq,
        "hash": entry.hash,
        "run": body["run"],
        "run_id": body["run_id"],
        "accepted_by_signer": list(body.get("accepted_by_signer") or []),
    }


def accepted_frame(accepted: list[dict[str, Any]]) -> pl.DataFrame:
    """The accepted differences a sign-off binds, one row each (ACCEPTED_COLUMNS; money
    Decimal(18,2) in the row's currency, entry and accepted_on_run integers)."""
    schema: dict[str, pl.DataType] = {c: pl.String() for c in ACCEPTED_COLUMNS}
    schema |= {c: MONEY for c in MONEY_FIELDS} | {
        "entry": pl.Int64(),
        "accepted_on_run": pl.Int64(),
    }
    rows = [
        {
            c: Decimal(a[c]) if c in MONEY_FIELDS and a.get(c) is not None else a.get(c)
            for c in ACCEPTED_COLUMNS
        }
        for a in accepted
    ]
    return pl.DataFrame(rows, schema=schema, orient="row")


def workbook_sheets(
    run: RunRecord, entry: ledger.Entry, accepted: pl.DataFrame, excerpt: list[ledger.Entry]
) -> dict[str, pl.DataFrame]:
    """One sheet per section of the pack: the sign-off record (item, value), the totals and
    the bridge per currency (money Decimal(18,2)), the accepted differences, the log excerpt."""
    view = signed_view(entry)
    summary = run.summary
    record = [
        ("Cycle", run.cycle),
        ("Signed off by", view["by"]),
        ("Role", view["role"] or ""),
        ("When (UTC)", view["at"]),
        ("Note", view["note"] or ""),
        ("Run", f"#{run.number}"),
        ("Run fingerprint", run.run_id),
        ("Log entry", f"#{entry.seq}"),
        ("Log entry SHA-256", entry.hash),
        ("Open blockers", str(summary["verdict"]["blockers"])),
        ("Accepted differences", str(summary["verdict"].get("accepted", 0))),
        *(
            (f"Input {i['platform']}: {f['name']}", f"SHA-256 {f['sha256']}")
            for i in summary["inputs"]
            for f in i["files"]
        ),
    ]
    if view["accepted_by_signer"]:
        record.append(
            (
                "Separation of duties",
                f"{view['by']} also accepted {len(view['accepted_by_signer'])} of the "
                f"accepted differences: {', '.join(view['accepted_by_signer'])}",
            )
        )
    totals = [
        {
            "currency": code,
            "side": label,
            **{k: Decimal(t[side][k]) for k in ("net", "tax", "gross")},
        }
        for code, t in summary["totals"].items()
        for side, label in (
            ("autotask", "Autotask"),
            ("halopsa", "HaloPSA"),
            ("difference", "Difference"),
        )
    ]
    bridge = [
        {
            "currency": code,
            "bar": bar["title"],
            "rule": bar["rule"],
            "gross": Decimal(bar["amount"]),
        }
        for code, bars in summary["bridge"].items()
        for bar in bars
    ]
    log = [
        {
            "entry": e.seq,
            "kind": e.kind,
            "by": e.by,
            "at": e.at,
            "subject": str(e.body.get("id") or f"run #{e.body.get('run')}"),
            "reason": str(e.body.get("reason") or e.body.get("note") or ""),
            "prev": e.prev,
            "hash": e.hash,
        }
        for e in excerpt
    ]
    money: dict[str, pl.DataType] = {"net": MONEY, "tax": MONEY, "gross": MONEY}
    text: dict[str, pl.DataType] = {"currency": pl.String(), "side": pl.String()}
    return {
        "Sign-off": pl.DataFrame(record, schema=["item", "value"], orient="row"),
        "Totals": pl.DataFrame(totals, schema=text | money),
        "Bridge": pl.DataFrame(
            bridge,
            schema={"currency": pl.String, "bar": pl.String, "rule": pl.String, "gross": MONEY},
        ),
        "Accepted differences": accepted,
        "Finance log": pl.DataFrame(
            log,
            schema={"entry": pl.Int64}
            | {k: pl.String for k in ("kind", "by", "at", "subject", "reason", "prev", "hash")},
        ),
    }


def print_page(data: ReportData, entry: ledger.Entry, view: dict[str, Any]) -> str:
    """The one-page sign-off summary as HTML (reports/signoff.html.j2), inline CSS, no script:
    the signed run's report data, its sign-off's log entry and signed_view."""
    summary = data.summary
    env = make_environment()
    assert env.loader is not None
    css, _, _ = env.loader.get_source(env, CSS_NAME)
    accepted = entry.body["accepted"]
    context = {
        "cycle": summary.cycle,
        "csp": CSP,
        "css": Markup(css),
        "version": summary.reconcile_version,
        "verdict": summary.verdict,
        "totals": summary.totals,
        "bridge_charts": [
            (code, bridge_chart(t, summary.bridge.get(code, ()), code))
            for code, t in summary.totals.items()
        ],
        "signed": view,
        "inputs": [
            {
                "platform": c.platform,
                "shape": c.shape,
                "name": Path(c.source).name,
                "load_id": c.load_id,
            }
            for c in summary.controls
        ],
        "accepted": [
            a | {"rule_title": rule_title(data, a["rule"])} for a in accepted[:PRINTED_ACCEPTED]
        ],
        "accepted_total": len(accepted),
        "same_person": view["accepted_by_signer"],
    }
    return env.get_template(PRINT_TEMPLATE).render(context)


def chromium() -> str | None:
    """The chromium (or Chrome) on PATH, if any."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html: str, pdf: Path) -> str | None:
    """Print the page to `pdf` with headless chromium. Returns None when printed, else why not
    (no chromium on PATH, or chromium failed): the caller keeps the HTML instead."""
    browser = chromium()
    if browser is None:
        return "chromium was not found on PATH"
    with tempfile.TemporaryDirectory(prefix="reconcile-print-") as scratch:
        page = Path(scratch) / "signoff.html"
        page.write_text(html, encoding="utf-8")
        args = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={Path(scratch) / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            page.as_uri(),
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        try:
            done = subprocess.run(
                args, capture_output=True, timeout=PRINT_TIMEOUT, check=False, text=True
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"chromium could not print the page ({type(exc).__name__})"
    if done.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        pdf.unlink(missing_ok=True)
        return f"chromium could not print the page (exit {done.returncode})"
    return None


def readme(
    cycle: str, signed: signoff.State, folder: Path, files: tuple[str, ...], no_pdf: str | None
) -> str:
    """README.txt of the pack: the sign-off, each file with its SHA-256, how to check."""
    view = signed_view(signed.entry)
    role = f" ({view['role']})" if view["role"] else ""
    width = max(len(f) for f in files)
    lines = [
        f"Sign-off pack: parallel billing cycle {cycle}",
        "",
        f"Run #{view['run']} (fingerprint {view['run_id']}) signed off by {view['by']}{role}",
        f"at {view['at']}: finance log entry {view['entry']}, SHA-256 {view['hash']}.",
    ]
    if view["accepted_by_signer"]:
        lines.append(
            f"Separation of duties: {view['by']} also accepted "
            f"{len(view['accepted_by_signer'])} of the accepted differences "
            f"({', '.join(view['accepted_by_signer'])})."
        )
    if no_pdf:
        lines.append(f"No PDF: {no_pdf}; {PRINT_NAME} is the page to print (A4, one page).")
    lines += ["", "Files (SHA-256):"]
    lines += [f"  {f:<{width}}  {sha256(folder / f)}  {ABOUT.get(f, '')}" for f in files]
    lines += [
        "",
        "Checking: each line of finance-log.jsonl is one log entry; its hash is the SHA-256 of",
        "the line's JSON without the hash member, written with sorted keys, no spaces, UTF-8,",
        "and each entry's prev is the hash of the entry before it in the workspace's log.",
        "`reconcile --workspace WORKSPACE verify` re-computes the whole log and what it binds.",
        "",
    ]
    return "\n".join(lines)
