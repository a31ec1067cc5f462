"""The report in headless Chromium: filters, sorting, safety, no network, and a large MSP's
cycle (165,000 discrepancies, 170,000 clients) opened, filtered and paged.

Drives Debian's /usr/bin/chromium through playwright (never `playwright install`). A full-page
screenshot lands in test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from report_data import client_rows, large_sample, listed, sample_report_data

from conftest import ARTIFACTS, BROWSER_TESTS
from reconcile.report import render_report
from reconcile.report_model import ReportData
from reconcile.wording import format_decimal

PAGE_SIZE = 100
CLIENT_PAGE_SIZE = 25
MAX_BYTES = 25 * 1024 * 1024
SEV_RANK = {"blocker": 0, "warning": 1, "info": 2}
# Printable area at 96 px/in with 10 mm margins: A4 is 718 px wide, Letter 980 px tall.
PRINT_WIDTH, PRINT_HEIGHT = 718, 980

pytestmark = BROWSER_TESTS


@dataclass(frozen=True)
class Rendered:
    """A rendered report, the data it was rendered from, and its discrepancy list as dicts."""

    path: Path
    data: ReportData
    items: list[dict[str, Any]]

    @property
    def rules(self) -> dict[str, Any]:
        return {code: dataclasses.asdict(r) for code, r in self.data.rules.items()}


Reports = dict[str, Rendered]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    """name -> the rendered file and the data it was rendered from."""
    root = tmp_path_factory.mktemp("reports")
    out: Reports = {}
    for name, data in {
        "default": sample_report_data(),
        "paged": sample_report_data(250),
        "hostile": sample_report_data(60, hostile=True),
        "hostile-packed": sample_report_data(60, hostile=True),
        "large": large_sample(),
    }.items():
        path = root / f"{name}.html"
        render_report(data, path, compress=True if name == "hostile-packed" else None)
        out[name] = Rendered(path, data, listed(data))
    return out


def row_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#disc-body tr.disc-row", "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def row_attr(page: Any, name: str) -> list[str]:
    values: list[str] = page.eval_on_selector_all(
        "#disc-body tr.disc-row", f"rows => rows.map(r => r.dataset.{name})"
    )
    return values


def client_names(page: Any) -> list[str]:
    """The client rows on the client table's current page."""
    names: list[str] = page.eval_on_selector_all(
        "#client-table tr.client-row", "rows => rows.map(r => r.dataset.client)"
    )
    return names


def wait_count(page: Any, shown: int, total: int) -> None:
    """Wait until the list says "N of M discrepancies" (the search box is debounced)."""
    text = f"{shown:,} of {total:,} discrepancies"
    page.wait_for_function("t => document.getElementById('disc-count').textContent === t", arg=text)


def haystack(d: dict[str, Any], rules: dict[str, Any]) -> str:
    """What the search box matches, as documented in report.js."""
    parts = [d["id"], d["rule"], rules.get(d["rule"], {}).get("title", d["rule"]), d["client"]]
    parts.append(d["message"])
    for line in d["autotask_lines"] + d["halopsa_lines"]:
        parts += [line["ref"], line["item"], line["description"]]
    return "\n".join(p for p in parts if p is not None).lower()


# --- tests -----------------------------------------------------------------------------------


def test_opens_offline_without_errors_and_screenshot(reports: Reports, open_report: Any) -> None:
    report = reports["default"]
    opened = open_report(report.path)
    page = opened.page
    assert page.text_content("#verdict h2").strip() == "Not ready for cutover"
    counts = page.text_content("#verdict .verdict-counts")
    assert f"{report.data.summary.verdict.blockers} open blockers" in " ".join(counts.split())
    assert page.locator("ol.problems li").count() == 5
    assert len(row_ids(page)) == len(report.items)
    assert page.locator("svg.waterfall rect.bar").count() >= 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert opened.requests == [opened.url]
    assert opened.console_errors == []
    assert opened.page_errors == []


def test_summary_fits_one_printed_page(reports: Reports, open_report: Any) -> None:
    opened = open_report(reports["default"].path)
    page = opened.page
    page.emulate_media(media="print")
    page.set_viewport_size({"width": PRINT_WIDTH, "height": PRINT_HEIGHT})
    bottom = page.evaluate(
        """() => {
          const rows = document.querySelectorAll('#client-table tbody tr');
          const top = rows[Math.min(4, rows.length - 1)];
          return top.getBoundingClientRect().bottom + window.scrollY;
        }"""
    )
    assert bottom <= PRINT_HEIGHT, f"summary ends at {bottom}px, page holds {PRINT_HEIGHT}px"
    assert page.is_hidden("#filters")
    assert page.evaluate("getComputedStyle(document.querySelector('.pager')).display") == "none"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report-print.png"), full_page=False)


def test_client_row_filters_to_that_client(reports: Reports, open_report: Any) -> None:
    report = reports["paged"]
    page = open_report(report.path).page
    total = len(report.items)
    clients = client_names(page)
    index = 2
    client = clients[index]
    expected = {d["id"] for d in report.items if d["client"] == client}
    assert 0 < len(expected) <= PAGE_SIZE
    page.locator("#client-table tr.client-row").nth(index).locator("td").nth(2).click()
    wait_count(page, len(expected), total)
    assert set(row_ids(page)) == expected
    assert len(row_ids(page)) == len(expected)
    assert page.input_value("#f-client") == client
    assert page.is_visible("#clear-filters")
    page.click("#clear-filters")
    wait_count(page, total, total)
    assert page.is_hidden("#clear-filters")
    assert len(row_ids(page)) == PAGE_SIZE


def test_sort_by_difference(reports: Reports, open_report: Any) -> None:
    report = reports["paged"]
    page = open_report(report.path).page
    everything = sorted(Decimal(d["difference"]) for d in report.items)
    header = "#disc-table button.sort[data-key='difference']"
    page.click(header)
    shown = [Decimal(v) for v in row_attr(page, "diff")]
    assert shown == sorted(shown)
    assert shown == everything[:PAGE_SIZE]
    assert page.get_attribute("#disc-table th:has(button[data-key='difference'])", "aria-sort") == (
        "ascending"
    )
    page.click(header)
    shown = [Decimal(v) for v in row_attr(page, "diff")]
    assert shown == sorted(everything, reverse=True)[:PAGE_SIZE]


def test_sort_client_table_by_difference(reports: Reports, open_report: Any) -> None:
    page = open_report(reports["paged"].path).page
    page.click("#client-table button.sort[data-key='difference']")
    values = page.eval_on_selector_all(
        "#client-table tbody tr", "rows => rows.map(r => r.cells[3].dataset.v)"
    )
    assert [Decimal(v) for v in values] == sorted(Decimal(v) for v in values)


def test_severity_filter(reports: Reports, open_report: Any) -> None:
    report = reports["paged"]
    page = open_report(report.path).page
    total = len(report.items)
    boxes = page.locator("#filters input[name='severity']")
    # Accepted differences are listed in their own section, so the list offers no filter for them.
    assert [boxes.nth(i).get_attribute("value") for i in range(boxes.count())] == [
        "blocker",
        "warning",
        "info",
    ]
    for severity in ("blocker", "info"):
        page.uncheck(f"#filters input[name='severity'][value='{severity}']")
    warnings = [d["id"] for d in report.items if d["severity"] == "warning"]
    assert 0 < len(warnings) <= PAGE_SIZE
    wait_count(page, len(warnings), total)
    assert set(row_attr(page, "severity")) == {"warning"}
    assert set(row_ids(page)) == set(warnings)


def test_text_search(reports: Reports, open_report: Any) -> None:
    report = reports["paged"]
    opened = open_report(report.path)
    page = opened.page
    total = len(report.items)
    target = report.items[17]
    page.fill("#f-search", target["id"])
    wait_count(page, 1, total)
    assert row_ids(page) == [target["id"]]
    term = "Microsoft 365"
    hits = {d["id"] for d in report.items if term.lower() in haystack(d, report.rules)}
    assert 0 < len(hits) <= PAGE_SIZE
    page.fill("#f-search", term.upper())
    wait_count(page, len(hits), total)
    assert set(row_ids(page)) == hits
    page.press("#f-search", "Enter")  # must not submit the form (a reload is a request)
    page.wait_for_timeout(300)
    wait_count(page, len(hits), total)
    assert opened.requests == [opened.url]


def test_paging(reports: Reports, open_report: Any) -> None:
    report = reports["paged"]
    page = open_report(report.path).page
    total = len(report.items)
    first = row_ids(page)
    assert len(first) == PAGE_SIZE
    page.locator("[data-pager] button.next").first.click()
    second = row_ids(page)
    assert len(second) == PAGE_SIZE and not set(first) & set(second)
    page.locator("[data-pager] button.last").first.click()
    assert len(row_ids(page)) == total - 2 * PAGE_SIZE


def test_largest_problem_link_opens_its_row(reports: Reports, open_report: Any) -> None:
    report = reports["paged"]
    page = open_report(report.path).page
    page.click("#f-search")
    page.fill("#f-search", "no such thing at all")
    wait_count(page, 0, len(report.items))
    link = page.locator("ol.problems a.jump").first
    target = link.get_attribute("data-target")
    link.click()
    assert target in row_ids(page)
    detail = page.locator(f"[id='detail-{target}']")
    assert detail.is_visible()
    rule = next(d for d in report.items if d["id"] == target)["rule"]
    assert report.data.rules[rule].explanation[:40] in detail.text_content()


def test_row_expands_to_both_sides(reports: Reports, open_report: Any) -> None:
    report = reports["default"]
    page = open_report(report.path).page
    first = row_ids(page)[0]
    page.locator("#disc-body tr.disc-row").first.click()
    detail = page.locator(f"[id='detail-{first}']")
    headers = detail.locator("table.cmp thead th").all_text_contents()
    item = next(d for d in report.items if d["id"] == first)
    for line in item["autotask_lines"]:
        assert any(line["ref"] in h and "Autotask" in h for h in headers)
    for line in item["halopsa_lines"]:
        assert any(line["ref"] in h and "HaloPSA" in h for h in headers)
    assert detail.locator("table.cmp tbody tr").count() == 7


@pytest.mark.parametrize("name", ["hostile", "hostile-packed"])
def test_hostile_report_runs_no_script(reports: Reports, open_report: Any, name: str) -> None:
    """Markup in every field stays text, whether the tables travel as JSON or compressed."""
    report = reports[name]
    hook = """
      window.__calls = [];
      for (const name of ['alert', 'confirm', 'prompt']) {
        window[name] = (...args) => { window.__calls.push([name, String(args[0])]); };
      }
    """
    opened = open_report(report.path, init_script=hook)
    page = opened.page
    for row in page.locator("#disc-body tr.disc-row").all()[:30]:
        row.click()
    page.fill("#f-search", "<script>")
    page.wait_for_function("document.getElementById('disc-count').textContent.indexOf('of') > 0")
    page.locator("#client-table tr.client-row").first.click()
    page.locator("#expected details").first.click()
    page.wait_for_timeout(200)
    assert page.evaluate("window.__calls") == []
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.scripts.length") == 2
    assert "{{ 7*7 }} {% raw %} Holdings" in page.text_content("#client-table")
    page.click("#clear-filters")
    wait_count(page, len(report.items), len(report.items))
    page.fill("#f-client", "<img")
    suggested = {d["client"] for d in report.items if "<img" in d["client"]}
    wait_count(page, sum(1 for d in report.items if d["client"] in suggested), len(report.items))
    assert "Client contains: “<img”" in page.text_content("#active-filter-text")
    options = page.eval_on_selector_all("#f-client-names option", "os => os.map(o => o.value)")
    assert set(options) == suggested
    assert opened.requests == [opened.url]
    assert opened.console_errors == [] and opened.page_errors == []


def test_formatting_matches_python(reports: Reports, open_report: Any) -> None:
    page = open_report(reports["default"].path).page
    values = ["-1234.50", "0.00", "-0.00", "1234567.891", "22.0000", "5", "+7.10", "abc", ""]
    for places, signed in ((2, False), (2, True), (0, False)):
        got = page.evaluate(
            "([vs, p, s]) => vs.map(v => window.reconcileReport.formatDecimal(v, p, s))",
            [values, places, signed],
        )
        assert got == [format_decimal(v, places, signed) for v in values]


def in_list_order(items: list[dict[str, Any]]) -> list[str]:
    """Ids in the list's first order: severity, then the largest absolute difference."""
    ranked = sorted(
        enumerate(items),
        key=lambda e: (SEV_RANK[e[1]["severity"]], -abs(Decimal(e[1]["difference"])), e[0]),
    )
    return [d["id"] for _, d in ranked]


def test_a_large_msps_report_opens_filters_and_pages(reports: Reports, open_report: Any) -> None:
    """165,000 discrepancies among 170,000 clients: the file stays under 25 MB, opens offline,
    filters to one client and pages through that client's discrepancies and the whole list."""
    report = reports["large"]
    assert report.path.stat().st_size < MAX_BYTES
    opened = open_report(report.path)
    page = opened.page
    total = len(report.items)
    assert total == 165_000
    wait_count(page, total, total)
    order = in_list_order(report.items)
    assert row_ids(page) == order[:PAGE_SIZE]
    page.locator("[data-pager] button.next").first.click()
    assert row_ids(page) == order[PAGE_SIZE : 2 * PAGE_SIZE]
    page.locator("[data-pager] button.last").first.click()
    last = total - (total - 1) // PAGE_SIZE * PAGE_SIZE
    assert row_ids(page) == order[-last:]

    # The largest client, by its exact name: thousands of rows.
    items = {d["id"]: d for d in report.items}
    client = Counter(d["client"] for d in report.items).most_common(1)[0][0]
    mine = [i for i in order if items[i]["client"] == client]
    assert len(mine) > 2 * PAGE_SIZE
    page.fill("#f-client", client)
    wait_count(page, len(mine), total)
    assert row_ids(page) == mine[:PAGE_SIZE]
    page.locator("[data-pager] button.next").first.click()
    assert row_ids(page) == mine[PAGE_SIZE : 2 * PAGE_SIZE]
    page.locator("[data-pager] button.last").first.click()
    assert set(row_attr(page, "client")) == {client}
    info = page.locator("[data-pager] .page-info").first.text_content()
    pages = -(-len(mine) // PAGE_SIZE)
    assert f"Page {pages:,} of {pages:,}" in info
    page.uncheck("#filters input[name='severity'][value='blocker']")
    wait_count(page, sum(1 for i in mine if items[i]["severity"] != "blocker"), total)
    page.click("#clear-filters")
    wait_count(page, total, total)
    assert opened.requests == [opened.url]
    assert opened.page_errors == [] and opened.console_errors == []


def test_the_client_table_pages_and_finds_every_client(reports: Reports, open_report: Any) -> None:
    """All 170,000 client rows are in the page: paged, found by name, each one a filter."""
    report = reports["large"]
    clients = client_rows(report.data)
    page = open_report(report.path).page
    count = page.locator("#client-count")
    assert count.text_content() == f"{len(clients):,} of {len(clients):,} clients"
    assert client_names(page) == [c["client"] for c in clients[:CLIENT_PAGE_SIZE]]
    page.locator("[data-client-pager] button.last").first.click()
    tail = len(clients) % CLIENT_PAGE_SIZE or CLIENT_PAGE_SIZE
    assert client_names(page) == [c["client"] for c in clients[-tail:]]
    # A client without discrepancies lists none (its name is exact, not a fragment).
    quiet = clients[-1]["client"]
    assert not any(d["client"] == quiet for d in report.items)
    page.locator("#client-table tr.client-row").last.locator("td").nth(2).click()
    wait_count(page, 0, len(report.items))
    assert page.input_value("#f-client") == quiet
    page.click("#clear-filters")
    target = clients[len(clients) // 2]
    page.fill("#client-search", target["client"].lower())
    page.wait_for_function(
        "n => document.getElementById('client-count').textContent.startsWith(n + ' of')",
        arg=f"{sum(1 for c in clients if target['client'].lower() in c['client'].lower()):,}",
    )
    row = page.locator("#client-table tr.client-row", has_text=target["client"]).first
    row.locator("td").nth(1).click()
    mine = sum(1 for d in report.items if d["client"] == target["client"])
    wait_count(page, mine, len(report.items))
    assert page.input_value("#f-client") == target["client"]
