"""The demo cycle's own report, opened from disk in Debian's chromium as a billing admin would."""

from __future__ import annotations

import csv
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_report_browser import pytestmark, row_attr, row_ids, wait_count  # noqa: F401

from conftest import ARTIFACTS, DEMO, invoke
from reconcile.wording import money, signed_money


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


@pytest.mark.parametrize("width", [1300, 700, 420])
def test_demo_report_largest_problems_show_the_amount_they_are_ranked_by(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any, width: int
) -> None:
    """The list is ranked by the money at stake (exposure): each problem shows that amount
    first (`GBP 1,997.28 at stake` for the demo's currency mismatch, whose net difference is
    smaller), with its currency, and its net difference under it; each on one line ending
    within its row, on a wide screen and a narrow one. Within a severity and currency, the
    amounts shown never increase down the list."""
    path, rows = demo
    page = open_report(path).page
    page.set_viewport_size({"width": width, "height": 900})
    problems = page.locator(".problems a.jump")
    assert problems.count() == 5
    by_id = {r["id"]: r for r in rows}
    # Each amount's text within its own box, its box within its row and clear of the rule's
    # title beside it (a phone puts the amounts under the message).
    shown = problems.evaluate_all(
        """els => els.map(a => {
            const row = a.getBoundingClientRect(), rule = a.querySelector(".p-rule")
                .getBoundingClientRect();
            return [a.dataset.target, ...[".p-stake", ".p-diff"].map(s => a.querySelector(s))
                .flatMap(e => {
                    const r = e.getBoundingClientRect();
                    const clear = r.right <= row.right && (r.left >= rule.right
                        || r.top >= rule.bottom || r.bottom <= rule.top);
                    return [e.textContent.trim(), e.scrollWidth <= e.clientWidth && clear,
                            e.clientHeight];
                })];
        })"""
    )
    for target, stake, stake_fits, stake_high, diff, diff_fits, diff_high in shown:
        row = by_id[target]
        code = row["currency"]
        assert stake == f"{code} {money(row['exposure'])} at stake", stake
        assert diff == f"difference {code} {signed_money(row['difference'])} {row['measure']}"
        assert stake_fits and diff_fits and stake_high < 30 and diff_high < 30, shown
    first = by_id[shown[0][0]]
    assert Decimal(first["exposure"]) > abs(Decimal(first["difference"]))
    listed = [by_id[s[0]] for s in shown]
    for kind in {(r["severity"], r["currency"]) for r in listed}:
        stakes = [Decimal(r["exposure"]) for r in listed if (r["severity"], r["currency"]) == kind]
        assert stakes == sorted(stakes, reverse=True)
    # Printed, both amounts share one line, neither cut off.
    page.emulate_media(media="print")
    page.set_viewport_size({"width": 718, "height": 980})
    boxes = page.locator(".problems .p-amounts")
    assert boxes.evaluate_all("els => els.every(e => e.scrollWidth <= e.clientWidth)")


def test_demo_report_fits_a_phone_screen_without_scrolling_sideways(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any
) -> None:
    """At 420 px the page is no wider than the screen: wide tables scroll inside their own box
    (the control totals do), the page does not; with a discrepancy opened too. The sections
    laid out only when scrolled to (content-visibility) are laid out first, so that none hides
    an overflow by clipping it."""
    path, _ = demo
    page = open_report(path).page
    page.set_viewport_size({"width": 420, "height": 900})
    page.evaluate(
        """document.querySelectorAll("[id]").forEach(e => {
            if (getComputedStyle(e).contentVisibility === "auto") {
                e.style.contentVisibility = "visible";
            }
        })"""
    )
    page.locator("#disc-body tr.disc-row").first.click()
    widths = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], widths
    controls = page.locator(".controls").locator("xpath=..")
    assert controls.evaluate("e => e.scrollWidth > e.clientWidth")  # scrolls in its own box
    assert controls.evaluate("e => getComputedStyle(e).overflowX") == "auto"


def test_demo_report_explains_a_rule_in_rendered_markdown_and_names_every_currency(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any
) -> None:
    """An expanded row explains its rule in bold sections (**Example:** rendered, no
    asterisks); every amount of the list, and of the expanded row's lines, carries the
    discrepancy's currency code, so the two currency-mismatch rows (GBP −1,664.40 and
    EUR +1,664.40) never read as netting to zero."""
    path, rows = demo
    page = open_report(path).page
    page.locator("#disc-body tr.disc-row").first.click()
    detail = page.locator("#disc-body tr.detail")
    why = detail.locator(".why")
    assert why.locator("strong").all_inner_texts()[:2] == ["Example:", "What to do:"]
    assert "**" not in why.inner_text()
    currency = {r["id"]: r["currency"] for r in rows}
    cells = page.locator("#disc-body tr.disc-row").evaluate_all(
        """trs => trs.map(tr => [tr.dataset.id,
             [...tr.querySelectorAll('td.c-at, td.c-hp, td.c-diff, td.c-gross')]
               .map(td => td.textContent)])"""
    )
    assert len(cells) == len(rows)
    for id_, amounts in cells:
        assert len(amounts) == 4
        assert all(a == "—" or a.startswith(currency[id_] + " ") for a in amounts), (id_, amounts)
    assert {c for _, amounts in cells for c in amounts} >= {"GBP -1,664.40", "EUR +1,664.40"}
    shown = detail.evaluate(
        """tr => [...tr.querySelectorAll('table.cmp tbody tr')]
             .filter(r => ['Unit price', 'Net', 'Tax'].includes(r.querySelector('th').textContent))
             .flatMap(r => [...r.querySelectorAll('td.num')].map(td => td.textContent))"""
    )
    first = page.locator("#disc-body tr.disc-row").first.get_attribute("data-id")
    assert shown and all(s.startswith(currency[str(first)] + " ") for s in shown), shown


def test_demo_discrepancy_table_fits_its_card_at_1400_px(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any
) -> None:
    """No column (the Message column was) is cut off behind a scroll bar at the page's widest."""
    path, _ = demo
    page = open_report(path).page
    page.set_viewport_size({"width": 1400, "height": 900})
    widths = page.evaluate(
        """() => { const box = document.querySelector('#discrepancies .scroll');
                   return [document.getElementById('disc-table').scrollWidth, box.clientWidth]; }"""
    )
    assert widths[0] <= widths[1], widths


def test_demo_report_counts_the_rows_excluded_beside_the_quarantined(
    demo: tuple[Path, list[dict[str, Any]]], open_report: Any
) -> None:
    """The demo's HaloPSA export holds group headers, templates and inactive lines, excluded by
    design: the Quarantine link says how many beside its 0, and the section lists them by
    reason as quarantine.csv holds them."""
    path, _ = demo
    with (path.parent / "quarantine.csv").open(encoding="utf-8") as fh:
        kept = [r for r in csv.DictReader(fh)]
    reasons = Counter((r["source"], r["reasons"]) for r in kept if r["disposition"] == "excluded")
    assert reasons and not [r for r in kept if r["disposition"] == "quarantined"]
    page = open_report(path).page
    link = "nav.toc a[href='#quarantine']"
    total = sum(reasons.values())
    assert " ".join(page.text_content(link).split()) == f"Quarantine 0 {total} excluded"
    page.click(link)
    assert page.is_visible("#excluded")
    cells = page.eval_on_selector_all(
        "#quarantine table.data tbody tr",
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))",
    )
    names = {"autotask": "Autotask", "halopsa": "HaloPSA"}
    assert Counter({(p, r): int(n) for p, r, n in cells}) == Counter(
        {(names[p], r): n for (p, r), n in reasons.items()}
    )
