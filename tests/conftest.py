"""Shared fixtures: real files from fixtures/, real DuckDB workspaces in tmp_path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

from reconcile.cli import cli
from reconcile.report_model import CurrencyControl, from_plain
from reconcile.store import Workspace

# Hypothesis examples have no deadline: speed is measured in benchmarks, never in tests, and a
# busy machine (CI, a benchmark beside the suite) made an example of 46 ms take 250.
settings.register_profile("reconcile", deadline=None)
settings.load_profile("reconcile")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
DEMO = FIXTURES / "demo"
QUIRKS = FIXTURES / "quirks"
BAD = FIXTURES / "bad"
# An Autotask billing-items grid export's header as the hypothesis tests of real-world shapes
# write it (test_layout, test_variants).
AUTOTASK_GRID_HEADER = [
    "Billing Item ID",
    "Invoice Number",
    "Invoice Date",
    "Organization ID",
    "Organization Name",
    "Item Name",
    "Quantity",
    "Unit Price",
    "Extended Price",
    "Total Tax",
]
# Headers of small hand-written exports: Autotask's UI CSV and a HaloPSA report CSV.
AT_HEADER = (
    "Billing Item ID,Invoice Number,Invoice Date,Organization Name,Item Name,Quantity,"
    "Unit Price,Extended Price,Total Tax,Service Period Start Date,Service Period End Date"
)
HALO_HEADER = (
    "id,invoicenumber,invoice_date,client_name,item_shortdescription,qty_order,unit_price,"
    "net_amount,tax_amount,startdate,enddate"
)


def invoke(*args: str | Path) -> Result:
    """Run the real CLI; exceptions are not swallowed, so a traceback fails the test."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def demo_run(workspace: Path, out: Path, *flags: str | Path) -> Result:
    """`reconcile run` of the demo cycle (its API pages for HaloPSA, its mapping file) into
    `out`, with any other flags; the result, whatever its exit code."""
    return invoke(
        "--workspace", workspace, "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        "--map", DEMO / "mapping.csv", "--out", out, *flags,
    )  # fmt: skip


def write_exports(tmp_path: Path, autotask: str, halopsa: str) -> dict[str, Path]:
    """A one-file export a side in tmp_path: AT_HEADER over `autotask`'s lines and HALO_HEADER
    over `halopsa`'s (each line's text, newline-ended)."""
    exports = {"autotask": tmp_path / "autotask.csv", "halopsa": tmp_path / "halopsa.csv"}
    exports["autotask"].write_text(f"{AT_HEADER}\n{autotask}", encoding="utf-8")
    exports["halopsa"].write_text(f"{HALO_HEADER}\n{halopsa}", encoding="utf-8")
    return exports


def run_demo(
    tmp_path: Path,
    name: str,
    halopsa: Path = DEMO / "halopsa" / "api",
    config: Path = DEMO / "reconcile.toml",
    *flags: str,
) -> Path:
    """The demo cycle run into tmp_path/name (its blockers remain: exit 1), with any other
    flags of `run` (`--no-workbook`); the output folder."""
    out = tmp_path / name
    result = invoke(
        "--workspace", tmp_path / f"{name}.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", halopsa,
        "--map", DEMO / "mapping.csv", "--config", config, "--out", out, *flags,
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # blockers remain
    assert "NOT READY for cutover" in result.output
    return out


def kill_at(step: str, *args: str | Path) -> None:
    """The console entry point with `args` in a child process, killed (SIGKILL) when it
    reaches `step` (RECONCILE_PAUSE_AT, reconcile.outputs.pause)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from reconcile.cli import main; main()", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "RECONCILE_PAUSE_AT": step},
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    while line and not line.startswith("paused at"):
        line = process.stderr.readline()
    assert line == f"paused at {step}\n", line
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()


def assert_conserved(workspace: Workspace, load: dict[str, Any]) -> tuple[CurrencyControl, ...]:
    """A row of the loads table (`load`, JSON columns as text) against what the workspace holds
    of it: rows read = loaded + quarantined + excluded + skipped, and per currency the rows and
    net amounts read = those stored, to the cent. Its per-currency totals."""
    by_currency: tuple[CurrencyControl, ...] = from_plain(
        tuple[CurrencyControl, ...], json.loads(load["by_currency"])
    )
    skipped, stored = workspace.stored_totals(load["load_id"], load["cycle"])
    assert skipped == load["rows_skipped"]
    assert load["rows_read"] == skipped + sum(c.rows_read for c in by_currency)
    assert set(stored) == {c.currency for c in by_currency}
    for c in by_currency:
        assert c.balanced, c
        s = stored[c.currency]
        assert c.rows_read == s["rows_loaded"] + s["rows_quarantined"] + s["rows_excluded"]
        assert c.net_read == s["net_loaded"] + s["net_quarantined"] + s["net_excluded"]
    return by_currency


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def uk_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture exports are a UK MSP's: those that state no currency (Autotask CSV/XML) are
    in GBP, given as a user would, through RECONCILE_CURRENCY. A run never assumes a currency
    (tests/test_settings.py unsets it to prove the refusal)."""
    for name in [n for n in os.environ if n.startswith("RECONCILE_")]:
        if name != "RECONCILE_UPDATE_GOLDEN":
            monkeypatch.delenv(name)
    monkeypatch.setenv("RECONCILE_CURRENCY", "GBP")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace(tmp_path / "ws.duckdb") as ws:
        yield ws


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    return tmp_path / "ws.duckdb"


# --- headless chromium (Debian's package, driven by playwright; never `playwright install`) ---

CHROMIUM = Path("/usr/bin/chromium")
# The marks of a module of browser tests: `pytestmark = BROWSER_TESTS`.
BROWSER_TESTS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"


@dataclass
class Opened:
    """A page plus everything it tried to fetch or complain about."""

    page: Any
    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_report(browser: Any) -> Iterator[Any]:
    """Open a rendered file in a fresh context, recording requests and errors."""
    contexts: list[Any] = []

    def _open(path: Path, init_script: str | None = None, **context_args: Any) -> Opened:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, **context_args)
        contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.set_default_timeout(120_000)
        opened = Opened(page=page, url=path.resolve().as_uri())
        page.on("request", lambda r: opened.requests.append(r.url))
        page.on(
            "console",
            lambda m: opened.console_errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: opened.page_errors.append(str(e)))
        page.goto(opened.url)
        page.wait_for_selector("body[data-ready='1']", state="attached")
        return opened

    yield _open
    for context in contexts:
        context.close()
