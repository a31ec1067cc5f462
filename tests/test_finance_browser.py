"""The finance workflow's report parts in headless Chromium: the sign-off banner (signed in the
pack, superseded in a later run), the accepted differences and lapsed acceptances, the changes
since the previous run with the trend, and the printed one-page summary. Screenshots land in
test-artifacts/ for a human to look at."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from finance_cycle import HALOPSA, HOSTILE_REASON, Cycle, signed_for_pack

from conftest import ARTIFACTS, BROWSER_TESTS

A4_WIDTH, A4_HEIGHT = 703, 1040
pytestmark = BROWSER_TESTS


@pytest.fixture
def cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cycle:
    monkeypatch.setenv("RECONCILE_NOW", "2026-12-02T09:30:00Z")
    return Cycle(tmp_path)


def text_of(page: Any, selector: str) -> str:
    """The text a reader sees after scrolling to it (sections below the fold are laid out when
    scrolled to: content-visibility, so their innerText is empty until then)."""
    locator = page.locator(selector)
    locator.scroll_into_view_if_needed()
    return " ".join(locator.inner_text().split())


def list_ids(page: Any) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#disc-body tr.disc-row", "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def test_the_signed_report_shows_the_signoff_and_the_accepted_differences(
    cycle: Cycle, open_report: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = signed_for_pack(cycle)
    monkeypatch.setenv("PATH", str(cycle.tmp))  # the printed page stays HTML, looked at below
    folder = cycle.tmp / "pack"
    assert cycle.cli("export-signoff", "--cycle", "2026-11", "--out", folder).exit_code == 0
    opened = open_report(folder / "report.html")
    page = opened.page

    banner = text_of(page, "#signoff")
    assert page.locator("#signoff.signed").is_visible()
    assert banner.startswith("Signed off by Jo Smith, Finance Controller, 2026-12-02T09:30:00Z:")
    assert "parallel billing cycle completed and output verified" in banner
    assert f"Run #2 · fingerprint {summary['run_id']} · log entry #4" in banner
    assert "Note: Parallel cycle reviewed <b>line by line</b>" in banner  # shown, not markup
    assert page.locator("#signoff b").count() == 0
    assert "Separation of duties: Jo Smith also accepted 1 of the 3 accepted differences" in banner
    assert "0 open blockers" in text_of(page, "#verdict") and "3 accepted" in text_of(
        page, "#verdict"
    )

    accepted = page.locator("#accepted tbody.accepted-item")
    assert accepted.count() == 3
    ids = [accepted.nth(i).get_attribute("data-id") for i in range(3)]
    assert list_ids(page) == []  # accepted items have left the discrepancy list
    hostile = text_of(page, "#accepted tbody.accepted-item:has-text('Quantity differs')")
    assert HOSTILE_REASON in hostile and "Jo Smith" in hostile
    assert "2026-12-02T09:30:00Z" in hostile and "GBP +35.00" in hostile
    page.locator(f"#acc-{ids[0]} details summary").click()
    assert page.locator(f"#acc-{ids[0]} table.cmp").is_visible()
    bridge = page.eval_on_selector_all(
        "svg.waterfall rect.bar",
        "bars => bars.map(b => [b.closest('g').querySelector('.bar-label').firstChild.textContent,"
        " b.dataset.amount])",
    )
    assert ["Accepted differences", "-12.00"] in bridge
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "finance-signed-report.png"), full_page=True)
    assert opened.requests == [opened.url]
    assert opened.console_errors == [] and opened.page_errors == []

    printed = page.context.new_page()
    printed.goto((folder / "signoff-print.html").resolve().as_uri())
    printed.emulate_media(media="print")
    # A4 at 96 px/in less the page's margins (12 mm each side, 11 mm top and bottom).
    printed.set_viewport_size({"width": A4_WIDTH, "height": A4_HEIGHT})
    assert text_of(printed, "#signoff-verdict") == "Signed off: no open blocker"
    record = text_of(printed, ".record")
    assert "Jo Smith, Finance Controller" in record and summary["run_id"] in record
    assert printed.locator("svg.waterfall").count() == 1
    assert printed.locator("table.accepted tbody tr").count() == 3
    assert printed.locator("#separation-of-duties").is_visible()
    bottom = printed.evaluate("document.querySelector('main').getBoundingClientRect().bottom")
    assert bottom <= A4_HEIGHT, f"the printed summary ends at {bottom}px, a page holds {A4_HEIGHT}"
    printed.screenshot(path=str(ARTIFACTS / "finance-signoff-page.png"), full_page=True)


def test_the_next_runs_report_shows_the_signoff_superseded_and_what_changed(
    cycle: Cycle, open_report: Any
) -> None:
    signed_for_pack(cycle)
    price = cycle.findings()["unit_price_mismatch"]["id"]
    # HaloPSA's firewall price changes again and a server line is corrected: other results.
    cycle.run(
        HALOPSA
        | {"H2": ("Acme Ltd", "Firewall management", 2, "46.00")}
        | {"H1": ("Acme Ltd", "Managed Server", 1, "110.00")}
    )
    opened = open_report(cycle.out / "report.html")
    page = opened.page
    assert page.locator("#signoff.superseded").is_visible()
    banner = text_of(page, "#signoff")
    assert banner.startswith("Sign-off superseded: run #2 was signed off by Jo Smith")
    assert "run #3 has different results" in banner
    assert "sign-off is refused until every blocker is resolved or accepted" in banner
    assert "since run #2: 2 new, 2 in both runs, 1 resolved" in text_of(page, "#since")

    lapsed = text_of(page, f"#lapsed ~ .scroll tr.lapsed-item[data-id='{price}']")
    assert "Ann Lee" in lapsed
    assert re.search(r"its lines or amounts changed: the same lines are now D-[0-9a-f]{10}", lapsed)

    changes = text_of(page, "#changes .changes-counts")
    assert changes == "2 new 2 in both runs 1 resolved since run #2"
    assert page.locator("#changes tr.resolved-item").get_attribute("data-id") == price
    trend = page.locator("#changes tr.trend-run")
    assert trend.count() == 3
    assert " ".join(trend.nth(2).inner_text().split()).startswith("#3 (this run)")
    new = page.locator("#changes ul.new a.jump").first
    target = new.get_attribute("data-target")
    new.click()
    row = page.locator(f"#row-{target}")
    row.wait_for(state="visible")
    assert target in list_ids(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "finance-superseded-report.png"), full_page=True)
    assert opened.console_errors == [] and opened.page_errors == []
