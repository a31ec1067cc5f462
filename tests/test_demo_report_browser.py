"""The demo cycle's own report, opened from disk in Debian's chromium as a billing admin would."""

from __future__ import annotations

import csv
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_report_browser import pytestmark, row_attr, row_ids, wait_count  # noqa: F401

from conftest import ARTIFACTS, DEMO, invoke


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("demo")
    out = folder / "out"  # not the workspace's folder: --out is replaced whole
    result = invoke(
        "--workspace", folder / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        "--map", DEMO / "mapping.csv", "--config", DEMO / "reconcile.toml", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 1
    with (out / "discrepancies.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["severity"] != "expected"]
    return out / "report.html", rows


def test_demo_report_verdict_offline_and_screenshot(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any
) -> None:
    path, rows = demo
    opened = open_report(path)
    page = opened.page
    assert page.text_content("#verdict h2").strip() == "Not ready for cutover"
    blockers = sum(1 for r in rows if r["severity"] == "blocker")
    assert f"{blockers} open blockers" in " ".join(page.text_content("#verdict").split())
    assert set(row_ids(page)) == {r["id"] for r in rows}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-report.png"), full_page=True)
    assert opened.requests == [opened.url]
    assert opened.console_errors == [] and opened.page_errors == []


def test_demo_report_filters_to_one_client(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any
) -> None:
    path, rows = demo
    page = open_report(path).page
    client, count = Counter(r["client"] for r in rows).most_common(1)[0]
    assert count > 1
    page.fill("#f-client", client)
    wait_count(page, count, len(rows))
    assert set(row_ids(page)) == {r["id"] for r in rows if r["client"] == client}


def test_demo_report_sorts_by_difference(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any
) -> None:
    path, rows = demo
    page = open_report(path).page
    page.click("#disc-table button.sort[data-key='difference']")
    shown = [Decimal(v) for v in row_attr(page, "diff")]
    assert shown == sorted(Decimal(r["difference"]) for r in rows)


def test_demo_report_shows_lowered_severities_and_provenance(
    tmp_path: Path, open_report: Any
) -> None:
    config = tmp_path / "reconcile.toml"
    config.write_text(
        (DEMO / "reconcile.toml").read_text(encoding="utf-8")
        + '\n[rules.unmapped_client]\nseverity = "info"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        "--map", DEMO / "mapping.csv", "--config", config, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    page = open_report(out / "report.html").page
    banner = page.locator("#lowered-severities")
    assert banner.is_visible()
    text = " ".join(banner.inner_text().split())
    assert "Severities lowered from the defaults: unmapped_client blocker → info" in text
    provenance = " ".join(page.locator("#provenance").inner_text().split())
    assert 'rules.unmapped_client.severity = "info"' in provenance
    assert "mapping.csv" in provenance and "invoices.xml" in provenance
    # Totals per currency, each amount with its code.
    totals = " ".join(page.locator(".totals").inner_text().split())
    assert "EUR 1,997.28" in totals and "GBP 126,256.08" in totals
    # Printed, the banner stays on the first page.
    page.emulate_media(media="print")
    assert banner.is_visible()


@pytest.mark.parametrize("width", [1300, 700])
def test_demo_report_largest_problems_amounts_stay_inside_their_rows(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any, width: int
) -> None:
    """Each largest problem's amount (`+1,664.40 GBP net` in the demo) carries its currency
    (the list ranks across currencies) and is on one line ending within its row, on a wide
    screen and a narrow one."""
    path, _ = demo
    page = open_report(path).page
    page.set_viewport_size({"width": width, "height": 900})
    amounts = page.locator(".problems .p-diff")
    assert amounts.count() == 5
    # Each amount's text within its own box (its grid column): no wider (overflowing into the
    # next column or the card's edge), no taller than one line.
    fits = amounts.evaluate_all(
        "els => els.map(e => [e.textContent, e.scrollWidth <= e.clientWidth, e.clientHeight])"
    )
    assert all(wide and high < 30 for _, wide, high in fits), fits
    assert all(re.search(r" (GBP|EUR) (net|gross|tax)$", text.strip()) for text, _, _ in fits), fits
