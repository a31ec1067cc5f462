"""The HTML report without a browser: escaping, self-containment, exact bridge, size."""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from chunked import chunked
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape
from report_data import (
    HOSTILE,
    client_rows,
    large_sample,
    listed,
    sample_report_data,
    with_summary,
)

from conftest import read_json, run_demo
from reconcile import report, report_model, run, store
from reconcile.history import report_blob
from reconcile.report import (
    CSP,
    DEFAULT_TEMPLATE_DIR,
    REPORT_CONTEXT,
    build_context,
    embed_json,
    largest_problems,
    make_environment,
    percent,
    quantity,
    read_tables,
    render_report,
    report_html,
)
from reconcile.report_model import (
    DISCREPANCY_SCHEMA,
    LINE_SCHEMA,
    Amounts,
    BridgeEntry,
    CurrencyTotals,
    Exclusion,
    ReportData,
    RuleText,
    SideTotals,
    compact_records,
    conform,
    json_columns,
    json_list,
    json_records,
    json_value,
    plain,
    row_chunks,
    text_columns,
)
from reconcile.wording import format_decimal, money, signed_money

MAX_BYTES = 25 * 1024 * 1024
EMBED_RE = re.compile(r'<script type="application/json" id="report-data">(.*?)</script>', re.S)


def embedded(html: str) -> dict[str, Any]:
    """The JSON the page's script reads, parsed as the browser would."""
    match = EMBED_RE.search(html)
    assert match, "report-data script element missing"
    payload: dict[str, Any] = json.loads(match.group(1))
    return payload


def outside_embedded(html: str) -> str:
    """The page with the embedded JSON removed: everything the HTML parser renders."""
    return EMBED_RE.sub("", html)


@pytest.fixture(scope="module")
def sample() -> ReportData:
    return sample_report_data()


@pytest.fixture(scope="module")
def html(sample: ReportData) -> str:
    return report_html(sample)


@pytest.fixture(scope="module")
def hostile() -> ReportData:
    return sample_report_data(60, hostile=True)


@pytest.fixture(scope="module")
def hostile_html(hostile: ReportData) -> str:
    return report_html(hostile)


# --- formatting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1234.50", "-1,234.50"),
        ("41250.00", "41,250.00"),
        ("1234567.5", "1,234,567.50"),
        ("0.00", "0.00"),
        ("-0.00", "0.00"),
        ("12.345", "12.345"),  # never rounds away a digit it was given
        ("22.0000", "22.00"),
        ("7", "7.00"),
        ("", "—"),
        (None, "—"),
        ("n/a", "n/a"),
    ],
)
def test_money_keeps_sign_and_digits(value: str | None, expected: str) -> None:
    assert money(value) == expected


def test_signed_money_and_quantity() -> None:
    assert signed_money("44.00") == "+44.00"
    assert signed_money("-237.60") == "-237.60"
    assert signed_money("0.00") == "0.00"
    assert quantity("25.0000") == "25"
    assert quantity("1.5000") == "1.5"
    assert quantity("12000.2500") == "12,000.25"
    assert percent("0.9830") == "98.30%"
    assert format_decimal("+5", 2) == "5.00"


def test_embed_json_cannot_break_out() -> None:
    value = {"a": "</script><!-- & > \u2028\u2029 <script>"}
    text = str(embed_json(value))
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == value


# --- environment -----------------------------------------------------------------------------


def test_environment_autoescapes_j2_templates() -> None:
    env = make_environment()
    assert env.autoescape is True
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert Path(__file__).resolve().parent.parent / "reports" == DEFAULT_TEMPLATE_DIR


def test_template_dir_override_comes_first(tmp_path: Path, sample: ReportData) -> None:
    (tmp_path / "_inputs.html.j2").write_text(
        "<footer id='inputs'>Custom footer for {{ cycle }}</footer>", encoding="utf-8"
    )
    html = report_html(sample, template_dir=tmp_path)
    assert "Custom footer for 2026-11" in html
    assert "Not ready for cutover" in html  # everything else still from reports/


def test_context_keys_are_documented(sample: ReportData) -> None:
    assert set(build_context(sample, "", "")) == set(REPORT_CONTEXT)


def test_script_never_uses_innerhtml() -> None:
    js = (DEFAULT_TEMPLATE_DIR / "report.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js


# --- content -------------------------------------------------------------------------------


def test_report_renders_every_section(html: str, sample: ReportData) -> None:
    assert html.startswith("<!doctype html>")
    assert "Not ready for cutover" in html
    assert "Largest problems" in html
    for section in ("summary", "bridge", "clients", "discrepancies", "unmapped", "expected"):
        assert f'id="{section}"' in html
    assert 'id="quarantine"' in html
    assert 'href="#quarantine"' in html
    gbp = sample.summary.totals["GBP"]
    assert "GBP " + money(gbp.autotask.gross) in html
    assert "GBP " + signed_money(gbp.difference.gross) in html
    assert read_tables(embedded(html))["clients"] == client_rows(sample)


def test_load_warnings_show_under_the_control_totals(html: str, sample: ReportData) -> None:
    (halopsa,) = [c for c in sample.summary.controls if c.platform == "halopsa"]
    (warning,) = halopsa.warnings
    assert escape(warning) in html
    assert html.count('class="load-warnings"') == 1  # the Autotask input has none


def test_load_warnings_are_capped_per_input(sample: ReportData) -> None:
    many = tuple(f"invoice INV-{n}: the export states 10.00, its lines 9.00" for n in range(8))
    controls = tuple(dataclasses.replace(c, warnings=many) for c in sample.summary.controls)
    html = report_html(with_summary(sample, controls=controls))
    assert "INV-4:" in html and "INV-5:" not in html
    assert html.count("… and 3 more, listed in summary.json") == 2


def test_net_read_says_what_it_leaves_out(sample: ReportData) -> None:
    """Net read sums the amounts that could be read: a quarantined row whose net is `#N/A` or
    `12.3.4` is in the row counts but not in the money, and the control totals say so."""
    autotask, halopsa = sample.summary.controls
    (gbp,) = autotask.by_currency
    unread = dataclasses.replace(gbp, rows_unreadable_amount=4)
    controls = (dataclasses.replace(autotask, by_currency=(unread,)), halopsa)
    html = report_html(with_summary(sample, controls=controls))
    assert "not counted: 4 quarantined rows whose net could not be read" in html
    assert html.count('class="small unreadable"') == 1
    assert 'class="small unreadable"' not in report_html(sample)


def test_control_totals_show_a_row_per_input_and_currency(html: str, sample: ReportData) -> None:
    """Net amounts are never added across currencies: each input has a row per currency (the
    rows whose currency could not be read under "unknown currency"), its own rows' counts and
    nets, the input named once beside them."""
    table = html[html.index('<table class="figures controls">') :]
    table = table[: table.index("</table>")]
    halopsa = next(c for c in sample.summary.controls if c.platform == "halopsa")
    assert [c.currency for c in halopsa.by_currency] == ["GBP", None]
    assert table.count("<tr") == 1 + 1 + 2  # the head, Autotask's GBP, HaloPSA's GBP and unknown
    assert table.count('rowspan="2"') == 2  # HaloPSA's name and its skipped rows
    unknown = table[table.index("<td>unknown currency</td>") :]
    cells = [
        re.sub(r"<[^>]+>", "", cell)
        for cell in re.findall(r'<td class="num">(.*?)</td>', unknown[: unknown.index("</tr>")])
    ]
    assert cells == ["1", "0", "1", "0", "-5.00", "0.00", "-5.00", "0.00"]
    assert "12.00" in table and "96.00" in table


def test_ready_verdict(sample: ReportData) -> None:
    verdict = dataclasses.replace(sample.summary.verdict, ready=True, blockers=0)
    html = report_html(with_summary(sample, verdict=verdict))
    assert "Ready for cutover" in html
    assert "Not ready for cutover" not in html
    assert 'class="verdict ready"' in html


def test_counts_of_one_read_in_the_singular(sample: ReportData) -> None:
    """One client and one discrepancy: "1 client", "1 of 1 discrepancy", and the page's script
    counts them alike when it re-renders."""
    data = dataclasses.replace(
        with_summary(sample, clients=sample.summary.clients.head(1)),
        discrepancies=sample.discrepancies.head(1),
    )
    html = report_html(data)
    assert 'id="client-count" aria-live="polite">1 client</p>' in html
    assert 'id="disc-count" aria-live="polite">1 of 1 discrepancy</p>' in html
    assert 'counted(cn, "client", "clients")' in html
    assert 'counted(n, "discrepancy", "discrepancies")' in html


def test_empty_sections_say_so(sample: ReportData) -> None:
    data = dataclasses.replace(
        with_summary(sample, unmapped=()),
        quarantine=sample.quarantine.clear(),
        discrepancies=sample.discrepancies.filter(pl.col("severity") != "expected"),
    )
    html = report_html(data)
    assert "No rows were quarantined." in html
    assert "Every client and item is mapped." in html
    assert "No expected differences." in html


REASONS = (
    "HaloPSA group header (isgroupdesc): a heading on the invoice, not a billed line",
    "inactive HaloPSA line (isinactive): shown on the template, not billed",
    "Autotask billing item posted but not on an invoice (invoiceID 0)",
    "Autotask billing item posted but not on an invoice ('Invoice Number' and 'Invoice Date' "
    "empty)",
)


@settings(max_examples=25, deadline=None)
@given(
    excluded=st.lists(
        st.tuples(
            st.sampled_from(["autotask", "halopsa"]),
            st.sampled_from(REASONS),
            st.integers(1, 2_000_000),
        ),
        unique_by=lambda e: e[:2],
        max_size=4,
    ),
    quarantined=st.booleans(),
)
def test_rows_excluded_by_design_are_counted_beside_the_quarantined(
    sample: ReportData, excluded: list[tuple[str, str, int]], quarantined: bool
) -> None:
    """Rows excluded by design (HaloPSA group headers, items posted but not invoiced) are never
    hidden behind "Quarantine 0": the section link and the control totals' link say how many
    beside the quarantined count, and the quarantine section lists each platform's reasons and
    rows; with none excluded, none of that is shown."""
    data = dataclasses.replace(
        sample,
        excluded=tuple(Exclusion(*e) for e in excluded),
        quarantine=sample.quarantine if quarantined else sample.quarantine.clear(),
    )
    page = outside_embedded(report_html(data))
    total = sum(rows for _, _, rows in excluded)
    shown = data.quarantine.height
    nav = re.search(r'<a href="#quarantine">Quarantine .*?</a>', page)
    assert nav is not None
    link = re.search(r'<p class="small"><a href="#quarantine">(.*?)</a></p>', page)
    assert link is not None
    section = page.partition('id="excluded"')[2].partition("</section>")[0]
    rows = re.findall(
        r"<tr>\s*<td>(Autotask|HaloPSA)</td>\s*<td>([^<]*)</td>\s*<td class=\"num\">([\d,]+)</td>",
        section,
    )
    if not excluded:
        assert nav.group(0).endswith(f'<span class="pill">{shown}</span></a>')
        assert link.group(1) == f"Quarantined rows ({shown})"
        assert 'id="excluded"' not in page and not rows
        return
    assert nav.group(0).endswith(
        f'<span class="pill" title="rows excluded by design: not billed '
        f'lines">{total:,} excluded</span></a>'
    )
    assert link.group(1) == f"Quarantined rows ({shown}); excluded by design ({total:,})"
    assert f"{total:,} row{'s' * (total != 1)} of the exports, not billed lines" in page
    names = {"autotask": "Autotask", "halopsa": "HaloPSA"}
    assert rows == [(names[p], str(escape(r)), f"{n:,}") for p, r, n in excluded]


def test_frames_must_have_their_declared_columns(sample: ReportData) -> None:
    """The report's tables are typed: a frame with a column missing or of another type is
    refused when the data is built, not found out by a template."""
    with pytest.raises(TypeError, match="lines"):
        dataclasses.replace(sample, lines=sample.lines.drop("period_end"))
    with pytest.raises(TypeError, match="discrepancies"):
        dataclasses.replace(
            sample,
            discrepancies=sample.discrepancies.with_columns(pl.col("difference").cast(float)),
        )


def test_largest_problems_are_the_open_root_causes_most_at_stake(
    html: str, sample: ReportData
) -> None:
    rows = text_columns(sample.discrepancies.lazy().collect()).to_dicts()
    open_items = [d for d in rows if d["severity"] in ("blocker", "warning")]
    rank = {"blocker": 0, "warning": 1}
    biggest = sorted(open_items, key=lambda d: (rank[d["severity"]], -Decimal(d["exposure"])))[:5]
    linked = re.findall(r'class="jump" href="#row-([^"]+)" data-target=', html)
    assert [(d["severity"], Decimal(d["exposure"])) for d in biggest] == [
        (d["severity"], Decimal(d["exposure"]))
        for d in (next(d for d in open_items if d["id"] == i) for i in linked)
    ]
    assert len(linked) == 5


def test_consequences_stay_under_their_root_cause() -> None:
    """A missing line that follows from an unmapped client is not a 'largest problem' of its
    own, however large; a zero difference with money at stake still ranks."""
    base = {
        "rule": "r",
        "client": "c",
        "message": "m",
        "measure": "net",
        "severity": "blocker",
        "status": "open",
    }
    items = [
        {**base, "id": "D-root", "difference": "100.00", "exposure": "100"},
        {**base, "id": "D-led", "difference": "-900.00", "exposure": "900", "root_cause": "D-root"},
        {**base, "id": "D-period", "difference": "0.00", "exposure": "630"},
    ]
    assert [d["id"] for d in largest_problems(_listing(items))] == ["D-period", "D-root"]


def _listing(items: list[dict[str, str]]) -> ReportData:
    """Report data of these discrepancies (their given columns as text, the others null), with
    no lines."""
    columns = {c for item in items for c in item}
    frame = pl.DataFrame(items).with_columns(
        pl.lit(None, pl.String).alias(c) for c in DISCREPANCY_SCHEMA if c not in columns
    )
    return dataclasses.replace(
        sample_report_data(0),
        discrepancies=conform(frame, DISCREPANCY_SCHEMA),
        lines=pl.DataFrame(schema=LINE_SCHEMA),
    )


def test_largest_problems_show_each_currency_s_largest_before_any_second_largest() -> None:
    """Yen amounts are not larger problems than pounds because their numbers are larger: each
    currency's largest comes first, then each one's second largest, larger first between
    them."""
    base = {"rule": "r", "client": "c", "message": "m", "measure": "net", "status": "open"}
    amounts = [("JPY", "900000"), ("JPY", "800000"), ("JPY", "700000"), ("GBP", "500")]
    amounts += [("GBP", "400"), ("JPY", "600000"), ("EUR", "450")]
    items = [
        {**base, "id": f"D-{currency}-{exposure}", "severity": "blocker", "currency": currency,
         "difference": exposure, "exposure": exposure}
        for currency, exposure in amounts
    ]  # fmt: skip
    items.append(
        {**base, "id": "D-warning", "severity": "warning", "currency": "GBP",
         "difference": "9000", "exposure": "9000"}
    )  # fmt: skip
    data = _listing(items)
    assert [d["id"] for d in largest_problems(data)] == [
        "D-JPY-900000",
        "D-GBP-500",
        "D-EUR-450",
        "D-JPY-800000",
        "D-GBP-400",
    ]
    assert [d["id"] for d in largest_problems(data, 9)][-2:] == ["D-JPY-600000", "D-warning"]


def test_embedded_tables_round_trip(html: str, sample: ReportData) -> None:
    payload = embedded(html)
    assert "tables" in payload and "tables_gzip" not in payload  # small: plain JSON
    tables = read_tables(payload)
    assert tables["discrepancies"] == listed(sample)
    assert tables["clients"] == client_rows(sample)
    assert payload["rules"] == {code: dataclasses.asdict(r) for code, r in sample.rules.items()}


def test_compressed_tables_carry_the_same_rows(sample: ReportData, html: str) -> None:
    """Compressed (gzip, base64) or not, the page's tables are the same; compressing twice
    gives the same bytes (no timestamp in the gzip header)."""
    packed = report_html(sample, compress=True)
    payload = embedded(packed)
    assert "tables_gzip" in payload and "tables" not in payload
    assert read_tables(payload) == read_tables(embedded(html))
    assert report_html(sample, compress=True) == packed


@pytest.mark.parametrize("name", ["sample", "hostile"])
def test_tables_made_a_column_at_a_time_are_the_same(
    name: str, request: pytest.FixtureRequest
) -> None:
    """A large report's tables, made a column at a time from plans, and long columns encoded
    in chunks (report_model.LIST_CHUNK) in them and in the kept report data, are the same
    bytes as a small report's, made whole (the hostile data: escapes, non-BMP text)."""
    data: ReportData = request.getfixturevalue(name)
    tables, kept = b"".join(report.page_tables(data)), b"".join(data.json_pieces())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "COLUMNWISE_FROM", 0)
        patch.setattr(report_model, "LIST_CHUNK", 2)
        assert b"".join(report.page_tables(data)) == tables
        assert b"".join(data.json_pieces()) == kept


def test_rows_are_not_rendered_server_side(html: str) -> None:
    assert 'class="disc-row' not in html and 'class="client-row' not in html
    assert '<tbody id="disc-body"></tbody>' in html
    assert '<tbody id="client-body"></tbody>' in html


# --- safety --------------------------------------------------------------------------------


def test_hostile_values_are_escaped(hostile_html: str, hostile: ReportData) -> None:
    page = outside_embedded(hostile_html)
    assert "<script>alert(1)</script>" not in hostile_html
    assert "alert(1)</script>" not in hostile_html
    assert "<img" not in hostile_html
    assert '"><img' not in hostile_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    # Only the page's own two script elements exist.
    assert len(re.findall(r"<script\b", hostile_html, re.I)) == 2
    # Template syntax in data is shown literally, never evaluated.
    assert "{{ 7*7 }} {% raw %} Holdings" in page
    assert "49 Holdings" not in page
    # The embedded JSON carries the payloads intact, with no raw angle brackets.
    match = EMBED_RE.search(hostile_html)
    assert match is not None
    assert "<" not in match.group(1) and ">" not in match.group(1)
    tables = read_tables(embedded(hostile_html))
    assert tables["discrepancies"] == listed(hostile)
    assert any(HOSTILE[0] in d["client"] for d in tables["discrepancies"])
    assert read_tables(embedded(report_html(hostile, compress=True))) == tables


def test_rule_explanations_are_rendered_from_markdown_once_per_rule(sample: ReportData) -> None:
    """Each rule's explanation is HTML made from its Markdown (**Example:** in bold, no
    asterisks left), one <template> per rule however many rows it has; the embedded JSON keeps
    the source text."""
    rules = {
        **sample.rules,
        "amount_mismatch": RuleText(
            "Amount differs", "warning", "A discount. **Example:** 10% off. **What to do:** ask."
        ),
    }
    html = report_html(dataclasses.replace(sample, rules=rules))
    shown = re.findall(r'<template class="rule-explanation" data-rule="([^"]+)">', html)
    assert shown == sorted(rules)
    part = html.split('data-rule="amount_mismatch">', 1)[1].split("</template>", 1)[0]
    assert part.strip() == (
        "<p>A discount. <strong>Example:</strong> 10% off. <strong>What to do:</strong> ask.</p>"
    )
    assert "**" not in outside_embedded(html)
    assert (
        embedded(html)["rules"]["amount_mismatch"]["explanation"]
        == rules["amount_mismatch"].explanation
    )


def test_raw_html_in_a_rule_explanation_comes_out_escaped(sample: ReportData) -> None:
    hostile = "**Example:** <script>alert(1)</script> <img src=x onerror=alert(1)> & <b>bold</b>"
    rules = {"amount_mismatch": RuleText("Amount differs", "warning", hostile)}
    html = report_html(dataclasses.replace(sample, rules=rules))
    rendered = report.rule_explanations(dataclasses.replace(sample, rules=rules))
    assert str(rendered["amount_mismatch"]).strip() == (
        "<p><strong>Example:</strong> &lt;script&gt;alert(1)&lt;/script&gt; "
        "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;bold&lt;/b&gt;</p>"
    )
    assert "<script>alert(1)" not in html and "<img" not in html and "<b>" not in html
    assert len(re.findall(r"<script\b", html, re.I)) == 2


def test_expected_differences_name_the_currency_of_their_amounts() -> None:
    data = sample_report_data(60)
    html = report_html(data)
    section = outside_embedded(html).split('id="expected"', 1)[1].split("</section>", 1)[0]
    rows = data.discrepancies.lazy().filter(pl.col("status") == "expected").collect()
    assert rows.height > 0
    row = rows.row(0, named=True)
    code = row["currency"]
    assert f"{code} {money(row['autotask_amount'])}" in section
    assert f"{code} {signed_money(row['difference'])}" in section
    # The lines' unit prices, nets and taxes carry it too.
    first = section.split("</tbody>", 1)[0]
    money_rows = re.findall(r'<th scope="row">(?:Unit price|Net|Tax)</th>(.*?)</tr>', first, re.S)
    cells = [c for r in money_rows for c in re.findall(r'<td class="side-\w+ num">([^<]*)</td>', r)]
    assert len(money_rows) == 3 and cells
    assert all(c.startswith(f"{code} ") for c in cells), cells


def test_csp_forbids_network(html: str) -> None:
    policy = CSP.replace("'", "&#39;")
    assert f'<meta http-equiv="Content-Security-Policy" content="{policy}">' in html
    assert "default-src 'none'" in CSP


@pytest.mark.parametrize("fixture", ["html", "hostile_html"])
def test_no_external_resources(fixture: str, request: pytest.FixtureRequest) -> None:
    html: str = request.getfixturevalue(fixture)
    lowered = html.lower()
    for pattern in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import"):
        assert pattern not in lowered
    assert "http://" not in lowered
    assert "https://" not in lowered


# --- the bridge ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 40, 1000])
def test_bridge_sums_exactly_to_gross_difference(n: int) -> None:
    html = report_html(sample_report_data(n))
    payload = embedded(html)
    totals = payload["totals"]["GBP"]
    bars = sum((Decimal(b["amount"]) for b in payload["bridge"]["GBP"]), Decimal(0))
    difference = Decimal(totals["difference"]["gross"])
    assert bars == difference
    assert Decimal(totals["autotask"]["gross"]) + bars == Decimal(totals["halopsa"]["gross"])
    # The drawn bars agree too: zero bars may be left out, totals come first and last.
    drawn = re.findall(r'data-amount="([^"]*)" data-kind="([a-z]+)"', html)
    assert drawn[0] == (totals["autotask"]["gross"], "total")
    assert drawn[-1] == (totals["halopsa"]["gross"], "total")
    steps = [Decimal(a) for a, kind in drawn[1:-1]]
    assert sum(steps, Decimal(0)) == difference
    assert len(steps) == sum(1 for b in payload["bridge"]["GBP"] if Decimal(b["amount"]) != 0)


def test_every_amount_of_two_currencies_names_its_code() -> None:
    """Totals, bridge and client rows per currency; nothing adds EUR into GBP."""
    data = sample_report_data(10)
    gbp = data.summary.totals["GBP"]
    zero = Decimal("0.00")
    eur = CurrencyTotals(
        autotask=SideTotals(zero, zero, zero, 0, 0),
        halopsa=SideTotals(Decimal("100.00"), Decimal("20.00"), Decimal("120.00"), 1, 0),
        difference=Amounts(Decimal("100.00"), Decimal("20.00"), Decimal("120.00")),
    )
    bridge = {
        **data.summary.bridge,
        "EUR": (BridgeEntry("currency_mismatch", "Currency differs", Decimal("120.00")),),
    }
    clients = data.summary.clients.lazy().collect()
    eur_client = clients.head(1).with_columns(
        pl.lit("EUR").alias("currency"),
        pl.lit(Decimal("120.00")).cast(clients.schema["halopsa_gross"]).alias("halopsa_gross"),
    )
    html = report_html(
        with_summary(
            data,
            totals={"GBP": gbp, "EUR": eur},
            bridge=bridge,
            clients=pl.concat([clients, eur_client]),
        )
    )
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "EUR 120.00" in text and "GBP " + money(gbp.autotask.gross) in text
    assert "Autotask gross total EUR" in text and "Autotask gross total GBP" in text
    assert 'data-currency="EUR"' in html
    assert "amounts in different currencies are never added up" in text


def test_the_summary_names_its_provenance(html: str) -> None:
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Severities lowered from the defaults: unmapped_item warning → info" in text
    assert "rules.unmapped_item.severity = &#34;info&#34;" in html or (
        'rules.unmapped_item.severity = "info"' in text
    )
    assert "mapping.csv" in text and "reconcile.toml" in text


# --- size --------------------------------------------------------------------------------


def test_a_large_msps_cycle_stays_under_25_mb(tmp_path: Path) -> None:
    """165,000 discrepancies among 170,000 clients (the issue's cycle): one file, compressed
    tables, every row still there."""
    path = tmp_path / "report.html"
    render_report(large_sample(), path)
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{size / 1e6:.1f} MB"
    tables = read_tables(embedded(path.read_text(encoding="utf-8")))
    assert len(tables["discrepancies"]) == 165_000
    assert len(tables["clients"]) == 170_000


def test_totals_say_how_many_lines_state_no_tax(html: str) -> None:
    """An unknown tax is left out of tax and gross, and the page says so, side by side."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Tax and gross leave out tax that is not stated: HaloPSA 1 line " in text


@pytest.mark.parametrize("cap, range_rows", [(run.REPORT_LINE_CAP, None), (2, 3)])
def test_the_demo_reports_tables_are_its_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cap: int, range_rows: int | None
) -> None:
    """The real run's page carries exactly the open discrepancies of discrepancies.json (same
    order, same exact amounts), each side's lines the first of its refs up to the cap (read
    a few discrepancies at a time, store.read_ranges, they come out the same), and every row
    of summary.json's client table."""
    monkeypatch.setattr(run, "REPORT_LINE_CAP", cap)
    if range_rows:
        monkeypatch.setattr(store, "RANGE_ROWS", range_rows)
    out = run_demo(tmp_path, "out")
    tables = read_tables(embedded((out / "report.html").read_text(encoding="utf-8")))
    rows = [r for r in read_json(out / "discrepancies.json") if r["severity"] != "expected"]
    shown = tables["discrepancies"]
    assert [d["id"] for d in shown] == [r["id"] for r in rows]
    for d, r in zip(shown, rows, strict=True):
        assert {k: d[k] for k in ("rule", "client", "currency", "measure", "message")} == {
            k: r[k] for k in ("rule", "client", "currency", "measure", "message")
        }
        for key in ("autotask_amount", "halopsa_amount", "difference", "gross_difference"):
            assert d[key] == r[key]
        for side in ("autotask", "halopsa"):
            refs = r[f"{side}_refs"].split(";") if r[f"{side}_refs"] else []
            assert [line["ref"] for line in d[f"{side}_lines"]] == refs[:cap]
    assert any(len(r["autotask_refs"].split(";")) > 2 for r in rows)  # the cap of 2 binds
    clients = read_json(out / "summary.json")["clients"]
    assert sorted(tables["clients"], key=json.dumps) == sorted(clients, key=json.dumps)


def test_differences_shown_with_their_lines_are_capped(
    sample: ReportData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each expected (and accepted) difference is rendered with both sides' lines; past a cap
    the page says how many it shows (all of them are in the discrepancy files)."""
    monkeypatch.setattr(report, "LINED_ROWS_SHOWN", 2)
    html = report_html(sample)
    assert html.count('class="expected-item"') == 2
    assert "Showing the first 2 of 3." in html


def test_report_data_round_trips_through_json(hostile: ReportData) -> None:
    """The run keeps its report data as JSON (history.report_blob) so a sign-off pack can
    render the report again: read back, it renders the same page and the same summary.json."""
    kept = orjson.loads(gzip.decompress(b"".join(report_blob(hostile))))
    assert kept == {
        "summary": orjson.loads(b"".join(hostile.summary.json_pieces())),
        "rules": plain(hostile.rules),
        "title": hostile.title,
        "signed": None,
        "excluded": plain(hostile.excluded),
        **{
            name: text_columns(getattr(hostile, name)).to_dict(as_series=False)
            for name in ("discrepancies", "lines", "quarantine")
        },
    }
    back = ReportData.from_json_dict(kept)
    indented = [b"".join(d.summary.json_pieces(indent=True)) for d in (back, hostile)]
    assert indented[0] == indented[1]
    for name in ("discrepancies", "lines", "quarantine"):
        assert getattr(back, name).equals(getattr(hostile, name))
    assert back.excluded == hostile.excluded
    assert report_html(back) == report_html(hostile)
    # A run kept before the report showed its excluded rows reads back with none.
    earlier = {k: v for k, v in kept.items() if k != "excluded"}
    assert ReportData.from_json_dict(earlier).excluded == ()


def json_bytes(data: Any) -> bytes:
    """The reference: orjson's indented JSON with one trailing newline."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"


TEXTS = st.one_of(
    st.none(),
    st.text(),  # any code point but surrogates: controls, quotes, backslashes, non-BMP
    st.sampled_from(["", "=1+1", '"', "\\", "\x00\x1f\x7f\x80\x9f", "\u2028\u2029", "\U0001f600"]),
)


@settings(max_examples=200)
@given(
    rows=st.lists(st.tuples(TEXTS, TEXTS, st.none() | st.integers(-(2**63), 2**63 - 1)), max_size=9)
)
def test_json_records_are_the_bytes_orjson_writes(rows: list[tuple[Any, ...]]) -> None:
    """discrepancies.json is encoded by polars a chunk at a time (json_records): the same bytes
    as orjson's indented rows for any text (escapes, controls, non-BMP), nulls and integers,
    across chunk boundaries, and for no rows at all; and so are columns (json_columns)."""
    frame = pl.DataFrame(
        rows, schema={"id": pl.String, 'we"ird\\ké': pl.String, "n": pl.Int64}, orient="row"
    )
    expected = json_bytes(frame.to_dicts())
    nested = json_bytes({"a": 1, "rows": frame.to_dicts()})
    for chunk in (report_model.RECORDS_CHUNK, 2):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(report_model, "RECORDS_CHUNK", chunk)
            assert b"".join(json_records(frame)) + b"\n" == expected
            # One level deep, as summary.json holds its clients.
            inner = b"".join(json_records(frame, depth=1))
            assert b'{\n  "a": 1,\n  "rows": ' + inner + b"\n}\n" == nested
            assert b"".join(compact_records(frame)) == orjson.dumps(frame.to_dicts())
    # The report's tables and the kept report data travel as columns, encoded the same way.
    assert b"".join(json_columns(frame)) == orjson.dumps(frame.to_dict(as_series=False))
    assert json_list(frame["id"]) == orjson.dumps(frame["id"].to_list())


@settings(max_examples=200)
@given(
    ids=st.lists(TEXTS, max_size=7),
    others=st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), max_size=3),
    depth=st.integers(0, 3),
)
def test_json_values_with_series_are_the_bytes_orjson_writes(
    ids: list[str | None], others: list[int | None], depth: int
) -> None:
    """History's ids are series in the summary (json_value encodes them by polars, LIST_CHUNK
    values at a time): summary.json and the kept summary hold the bytes orjson writes of them
    as lists, for any text and across chunk boundaries, beside orjson's values, in mappings
    at any depth, empty lists and mappings included."""
    series = pl.Series("id", ids, dtype=pl.String)

    def nested(new: Any, open_: Any) -> Any:
        value: Any = {"run": 1, "history": {"new": new, "open": open_, "n": others, "e": {}}}
        for _ in range(depth):
            value = {"a": [1, {"k": []}], "b": value, "c": []}
        return value

    expected = nested(ids, [])
    with_series = nested(series, series.clear())
    for chunk in (report_model.LIST_CHUNK, 2):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(report_model, "LIST_CHUNK", chunk)
            assert b"".join(json_value(with_series, None)) == orjson.dumps(expected)
            indented = b"".join(json_value(with_series, 0)) + b"\n"
            assert indented == json_bytes(expected)
            # Standing one level deep in an indented document, as summary.json's members do.
            inner = b"".join(json_value(with_series, 1))
            assert b'{\n  "x": ' + inner + b"\n}\n" == json_bytes({"x": expected})


@settings(max_examples=100)
@given(case=chunked())
def test_json_records_of_chunks_are_the_bytes_of_the_whole_table(
    case: tuple[pl.DataFrame, list[pl.DataFrame]],
) -> None:
    """The run reads the discrepancy table back in chunks: discrepancies.json encoded from
    them is byte for byte the whole table's (orjson's indented rows of its text), for any
    chunking, across RECORDS_CHUNK inside a chunk, empty chunks and no rows (`[]`); and as it
    stands one level deep. So are the compact records (the kept summary's clients), and a lazy
    frame read SCAN_ROWS rows at a time (row_chunks, as a run reads its clients)."""
    frame, parts = case
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report_model, "RECORDS_CHUNK", 2)
        whole = b"".join(json_records(frame))
        assert b"".join(json_records(iter(parts))) == whole
        nested = b"".join(json_records(frame, depth=1))
        assert b"".join(json_records(iter(parts), depth=1)) == nested
        compact = b"".join(compact_records(iter(parts)))
        assert compact == orjson.dumps(text_columns(frame).to_dicts())
        patch.setattr(report_model, "SCAN_ROWS", max(1, len(parts)))
        assert b"".join(json_records(row_chunks(frame.lazy()))) == whole
        assert b"".join(compact_records(row_chunks(frame.lazy()))) == compact
    assert whole + b"\n" == json_bytes(text_columns(frame).to_dicts())


def test_json_records_of_the_demo_are_its_discrepancies_json(tmp_path: Path) -> None:
    """Every column type of the discrepancy table (decimals and dates as text) encodes as the
    run's discrepancies.json holds it."""
    out = run_demo(tmp_path, "out")
    frame = text_columns(pl.read_parquet(out / "discrepancies.parquet"))
    assert b"".join(json_records(frame)) + b"\n" == json_bytes(frame.to_dicts())
    assert json_bytes(frame.to_dicts()) == (out / "discrepancies.json").read_bytes()
    summary = read_json(out / "summary.json")
    assert (out / "summary.json").read_bytes() == json_bytes(summary)  # clients spliced in
