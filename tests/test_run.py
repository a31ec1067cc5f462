"""`reconcile run` end to end on the demo cycle: documented differences in, exact findings out."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from chunked import chunked
from click.testing import Result
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (
    AT_HEADER,
    BAD,
    DEMO,
    FIXTURES,
    HALO_HEADER,
    ROOT,
    demo_run,
    invoke,
    read_json,
    run_demo,
    write_exports,
)
from reconcile.report_model import json_records
from reconcile.run import OUTPUT_COLUMNS, OUTPUT_SCHEMA
from reconcile.safe import neutralise

DOCUMENTED = read_json(DEMO / "expected_differences.json")["differences"]
NET_BASIS = {
    "missing_in_halopsa", "missing_in_autotask", "quantity_mismatch", "unit_price_mismatch",
    "amount_mismatch", "period_mismatch", "proration_mismatch", "currency_mismatch",
    "contract_type_mismatch",
}  # fmt: skip


def run_loaded(ws: Path, out: Path, *maps: Path) -> Result:
    """`run` on what the workspace already holds, with the demo's mapping (and more) and config."""
    extra = [a for m in maps for a in ("--map", m)]
    return invoke(
        "--workspace", ws, "run", "--cycle", "2026-11", "--map", DEMO / "mapping.csv", *extra,
        "--config", DEMO / "reconcile.toml", "--out", out,
    )  # fmt: skip


def findings(out: Path) -> list[dict[str, Any]]:
    with (out / "discrepancies.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def key(rule: str, at: list[str], halo: list[str]) -> tuple[str, frozenset[str], frozenset[str]]:
    return rule, frozenset(at), frozenset(halo)


def documented_findings() -> dict[tuple[str, frozenset[str], frozenset[str]], dict[str, Any]]:
    """The generator's documented differences, in reconcile's chosen semantics."""
    parents = {d["id"]: d for d in DOCUMENTED}
    wanted = {}
    for d in DOCUMENTED:
        parent = parents.get(d.get("related_to") or "")
        if parent and parent["rule"] == "unmapped_client" and d["rule"] == "missing_in_autotask":
            continue  # an unmapped client's lines are reported once, by unmapped_client
        if parent and parent["rule"] == "unmapped_item":
            continue  # the renamed item pairs by description; unmapped_item says so
        at, halo = d["autotask_refs"], d["halopsa_refs"]
        if d["rule"] == "duplicate_line":
            at, halo = [], [max(halo)]  # the extra copy; its twin matches the Autotask line
        wanted[key(d["rule"], at, halo)] = d
    return wanted


def _per_difference(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A difference across currencies is reported once per currency (each row in its own);
    the demo documents it once: merge a client's currency_mismatch rows."""
    merged: dict[str, dict[str, Any]] = {}
    others = []
    for f in rows:
        if f["rule"] != "currency_mismatch":
            others.append(f)
            continue
        into = merged.setdefault(f["client"], {**f, "autotask_refs": "", "halopsa_refs": ""})
        for side in ("autotask_refs", "halopsa_refs"):
            into[side] = ";".join(r for r in (into[side], f[side]) if r)
            amount = side.replace("refs", "amount")
            into[amount] = into[amount] or f[amount]
    return others + list(merged.values())


def test_demo_finds_exactly_the_documented_differences(tmp_path: Path) -> None:
    got = {
        key(f["rule"], f["autotask_refs"].split(";") if f["autotask_refs"] else [],
            f["halopsa_refs"].split(";") if f["halopsa_refs"] else []): f
        for f in _per_difference(findings(run_demo(tmp_path, "demo")))
    }  # fmt: skip
    wanted = documented_findings()
    assert set(got) == set(wanted)
    for k, doc in wanted.items():
        assert got[k]["severity"] == ("expected" if doc["expected"] else got[k]["severity"])
        if doc["expected"]:
            continue
        assert got[k]["severity"] != "expected"
        if k[0] in NET_BASIS:
            for side in ("autotask_amount", "halopsa_amount"):
                assert (got[k][side] or None) == doc[side], (k, side)


def test_rerun_gives_identical_outputs(tmp_path: Path) -> None:
    first, second = run_demo(tmp_path, "one"), run_demo(tmp_path, "two")
    for name in ("discrepancies.csv", "discrepancies.json", "summary.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    fingerprint = read_json(first / "summary.json")["run_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert f'<code class="hash">{fingerprint}</code>' in (first / "report.html").read_text(
        encoding="utf-8"
    )


def test_row_order_changes_nothing(tmp_path: Path) -> None:
    source = DEMO / "halopsa" / "invoice_lines.csv"
    header, *rows = source.read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(7).shuffle(rows)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text(header + "".join(rows), encoding="utf-8")
    plain = run_demo(tmp_path, "plain", source)
    mixed = run_demo(tmp_path, "mixed", shuffled)
    assert (plain / "discrepancies.csv").read_bytes() == (mixed / "discrepancies.csv").read_bytes()


def test_outputs_agree_and_the_bridge_adds_up(tmp_path: Path) -> None:
    out = run_demo(tmp_path, "demo")
    csv_frame = pl.read_csv(out / "discrepancies.csv", infer_schema=False)
    parquet = pl.read_parquet(out / "discrepancies.parquet").cast(pl.String)
    assert csv_frame.fill_null("").equals(parquet.fill_null(""))
    assert len(read_json(out / "discrepancies.json")) == csv_frame.height
    summary = read_json(out / "summary.json")
    assert list(summary["bridge"]) == list(summary["totals"]) == ["GBP", "EUR"]
    for code, bars in summary["bridge"].items():
        bridge = sum(Decimal(b["amount"]) for b in bars)
        assert bridge == Decimal(summary["totals"][code]["difference"]["gross"]), code
    assert {c["platform"] for c in summary["controls"]} == {"autotask", "halopsa"}
    for control in summary["controls"]:
        assert control["rows_read"] == (
            control["rows_loaded"]
            + control["rows_quarantined"]
            + control["rows_excluded"]
            + control["rows_skipped"]
        )
    assert [(u["kind"], u["value"], u["suggestion"]) for u in summary["unmapped"]] == [
        ("client", "PSJ Woodworks Ltd", "Pemberton & Sons Joinery"),
        ("item", "SentinelOne Complete", "EDR – SentinelOne"),
    ]
    by_severity = summary["counts"]["by_severity"]
    assert by_severity["blocker"] == sum(1 for f in findings(out) if f["severity"] == "blocker")
    assert (out / "report.html").stat().st_size > 10_000


def test_run_on_what_is_already_loaded(tmp_path: Path) -> None:
    ws = tmp_path / "ws.duckdb"
    for path in (DEMO / "autotask" / "invoices.xml", DEMO / "halopsa" / "api"):
        loaded = invoke("--workspace", ws, "load", "--cycle", "2026-11", "--currency", "GBP", path)
        assert loaded.exit_code == 0
    result = run_loaded(ws, tmp_path / "out")
    assert result.exit_code == 1
    assert findings(tmp_path / "out") == findings(run_demo(tmp_path, "fresh"))


@pytest.mark.parametrize(
    ("sides", "message"),
    [
        (["--autotask", BAD / "missing_column.csv"], "a required column is missing"),
        ([], "no autotask export is loaded for cycle 2026-11"),
    ],
    ids=["unusable-file", "nothing-loaded"],
)
def test_run_with_unusable_input_exits_2(
    tmp_path: Path, sides: list[str | Path], message: str
) -> None:
    args = ["--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11", *sides]
    result = invoke(*args, "--halopsa", DEMO / "halopsa" / "api", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert message in result.output


def test_map_suggest_writes_reviewable_suggestions(tmp_path: Path) -> None:
    ws = tmp_path / "ws.duckdb"
    for path in (DEMO / "autotask" / "invoices.xml", DEMO / "halopsa" / "api"):
        invoke("--workspace", ws, "load", "--cycle", "2026-11", path)
    target = tmp_path / "suggested.csv"
    result = invoke(
        "--workspace",
        ws,
        "map",
        "suggest",
        "--cycle",
        "2026-11",
        "--map",
        DEMO / "mapping.csv",
        "--out",
        target,
    )
    assert result.exit_code == 0
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert {(r["kind"], r["autotask"], r["halopsa"], r["basis"]) for r in rows} == {
        ("item", "EDR – SentinelOne", "SentinelOne Complete", "name similarity 74.3"),
        # Renamed beyond recognition, found by its total: the Autotask client vanished.
        (
            "client",
            "Pemberton & Sons Joinery",
            "PSJ Woodworks Ltd",
            "same net total GBP 954.20; none of its lines is in HaloPSA",
        ),
    }
    # The suggestions file is itself a valid mapping file.
    rerun = run_loaded(ws, tmp_path / "o", target)
    assert rerun.exit_code == 1
    after = findings(tmp_path / "o")
    assert not any(f["rule"] in ("unmapped_item", "unmapped_client") for f in after)
    assert not any(f["client"] == "Pemberton & Sons Joinery" for f in after)


@pytest.mark.parametrize("severity", ["blocker", "warning"])
def test_a_strict_config_can_change_severity(tmp_path: Path, severity: str) -> None:
    config = tmp_path / "reconcile.toml"
    config.write_text(
        (DEMO / "reconcile.toml").read_text(encoding="utf-8")
        + f'\n[rules.proration_mismatch]\nseverity = "{severity}"\n',
        encoding="utf-8",
    )
    out = run_demo(tmp_path, "strict", config=config)
    (proration,) = [f for f in findings(out) if f["rule"] == "proration_mismatch"]
    assert proration["severity"] == severity
    # The fingerprint follows the settings in force, not paths or text: the demo's settings
    # copied elsewhere keep it, a severity set to the rule's default (warning) keeps it too,
    # a severity changed changes it.
    demo = read_json(run_demo(tmp_path, "demo") / "summary.json")["run_id"]
    assert (read_json(out / "summary.json")["run_id"] == demo) == (severity == "warning")
    config.write_text((DEMO / "reconcile.toml").read_text(encoding="utf-8"), encoding="utf-8")
    assert read_json(run_demo(tmp_path, "copy", config=config) / "summary.json")["run_id"] == demo


def test_ids_survive_a_change_elsewhere(tmp_path: Path) -> None:
    """Accepted differences will follow ids across re-runs: an unrelated edit keeps them."""
    source = DEMO / "halopsa" / "invoice_lines.csv"
    before = {f["id"]: f for f in findings(run_demo(tmp_path, "before", source))}
    frame = pl.read_csv(source, infer_schema=False)
    clean_client = "Castleford Dental Care"
    target = frame.filter(
        (pl.col("client_name").str.starts_with("Castleford"))
        & (pl.col("isgroupdesc") == "false")
        & (pl.col("isinactive") == "false")
    )["id"][0]
    edited = tmp_path / "edited.csv"
    frame.with_columns(
        pl.when(pl.col("id") == target)
        .then(pl.lit("999.99"))
        .otherwise("net_amount")
        .alias("net_amount")
    ).write_csv(edited)
    after = {f["id"]: f for f in findings(run_demo(tmp_path, "after", edited))}
    new = set(after) - set(before)
    assert set(before) <= set(after)
    assert len(new) == 1
    (changed,) = (after[i] for i in new)
    assert changed["halopsa_refs"] == target and changed["client"].startswith(clean_client[:10])


def test_the_report_embeds_a_bridge_that_adds_up(tmp_path: Path) -> None:
    html = (run_demo(tmp_path, "demo") / "report.html").read_text(encoding="utf-8")
    embedded = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S
    )
    assert embedded is not None
    data = json.loads(embedded.group(1))
    # Per currency: the EUR client's lines leave the GBP totals and form their own.
    gbp = sum(Decimal(bar["amount"]) for bar in data["bridge"]["GBP"])
    assert gbp == Decimal(data["totals"]["GBP"]["difference"]["gross"]) == Decimal("-2079.28")
    eur = sum(Decimal(bar["amount"]) for bar in data["bridge"]["EUR"])
    assert eur == Decimal(data["totals"]["EUR"]["difference"]["gross"]) == Decimal("1997.28")


@pytest.mark.parametrize("fault", [ZeroDivisionError, pl.exceptions.PanicException])
def test_a_bug_exits_3_with_a_paragraph_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fault: type[BaseException],
) -> None:
    """Exit 1 means "blockers remain"; a crash must never be mistaken for that verdict, nor a
    panic in polars' Rust code (pyo3's PanicException, a BaseException)."""
    import reconcile.run
    from reconcile.cli import main

    def broken(*_: object, **__: object) -> None:
        raise fault("simulated")

    monkeypatch.setattr(reconcile.run, "run_cycle", broken)
    monkeypatch.setattr(
        sys,
        "argv",
        ["reconcile", "--workspace", str(tmp_path / "w.duckdb"), "run", "--cycle", "2026-11"],
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert err.startswith(f"Internal error: {fault.__name__}: simulated.")
    assert "Traceback" not in err


def test_each_autotask_export_shape_gives_the_same_ids(tmp_path: Path) -> None:
    """An id keyed on what a line bills survives a change of export format: anything a person
    attaches to a discrepancy (an acceptance, a note) follows it from the XML to the CSV."""
    ids = {}
    for name in ("invoices.xml", "billing_items.csv", "billing_items.xlsx", "api"):
        out = tmp_path / name
        result = invoke(
            "--workspace", tmp_path / f"{name}.duckdb", "run", "--cycle", "2026-11",
            "--autotask", DEMO / "autotask" / name, "--halopsa", DEMO / "halopsa" / "api",
            "--map", DEMO / "mapping.csv", "--config", DEMO / "reconcile.toml", "--out", out,
        )  # fmt: skip
        assert result.exit_code == 1, result.output
        ids[name] = sorted((f["id"], f["rule"]) for f in findings(out))
    first, *others = ids.values()
    assert len(first) == 25
    for other in others:
        assert other == first


def test_differences_add_up_to_the_totals_in_every_measure(tmp_path: Path) -> None:
    """Each line group is accounted for once, so the discrepancies' net, tax and gross
    differences add up to the difference of the totals; the rule's own figures say which
    measure they are."""
    out = run_demo(tmp_path, "measures")
    rows = read_json(out / "discrepancies.json")
    totals = read_json(out / "summary.json")["totals"]
    assert set(totals) == {"GBP", "EUR"}
    for currency, figures in totals.items():
        for measure in ("net", "tax", "gross"):
            added = sum(
                Decimal(r[f"{measure}_difference"]) for r in rows if r["currency"] == currency
            )
            assert added == Decimal(figures["difference"][measure]), (currency, measure)
    assert {r["rule"]: r["measure"] for r in rows if r["rule"].startswith("tax")} == {
        "tax_mismatch": "tax"
    }
    for r in rows:
        for side in ("autotask", "halopsa"):
            if r[f"{side}_net"] is not None and r[f"{side}_tax"] is not None:
                gross = Decimal(r[f"{side}_net"]) + Decimal(r[f"{side}_tax"])
                assert Decimal(r[f"{side}_gross"]) == gross


def test_an_edited_rule_or_template_changes_the_fingerprint(tmp_path: Path) -> None:
    """The same fingerprint must mean the same discrepancies: editing a rule's logic (without
    renaming it) or a template is a different engine."""
    import shutil

    from reconcile.rules import RULES_DIR, discover
    from reconcile.run import engine_digest

    copied = tmp_path / "rules"
    shutil.copytree(RULES_DIR, copied)
    assert engine_digest(discover(copied)) == engine_digest(discover())
    rule = copied / "quantity_mismatch.py"
    rule.write_text(rule.read_text().replace("$abs_tol", "$abs_tol + 1"), encoding="utf-8")
    assert engine_digest(discover(copied)) != engine_digest(discover())


def test_an_unmapped_clients_missing_lines_follow_from_it(tmp_path: Path) -> None:
    """Root causes first: the Autotask client's lines missing in HaloPSA point at the unmapped
    HaloPSA client suggested as that client, and the headline states the open variance."""
    out = run_demo(tmp_path, "roots")
    rows = read_json(out / "discrepancies.json")
    (cause,) = [r for r in rows if r["rule"] == "unmapped_client"]
    led = [r for r in rows if r["root_cause"]]
    assert {r["rule"] for r in led} == {"missing_in_halopsa"}
    assert {r["client"] for r in led} == {"Pemberton & Sons Joinery"}
    assert {r["root_cause"] for r in led} == {cause["id"]}
    assert sum(Decimal(r["net_difference"]) for r in led) == Decimal("-954.20")
    summary = read_json(out / "summary.json")
    open_rows = [r for r in rows if r["severity"] != "expected"]
    for currency, variance in summary["open_variance"].items():
        assert Decimal(variance) == sum(
            abs(Decimal(r["gross_difference"])) for r in open_rows if r["currency"] == currency
        )
    html = (out / "report.html").read_text(encoding="utf-8")
    largest = re.findall(r'class="jump" href="#row-([^"]+)"', html)
    assert cause["id"] in largest and not set(largest) & {r["id"] for r in led}


def test_the_workbook_holds_money_as_numbers_in_each_rows_currency(tmp_path: Path) -> None:
    """discrepancies.xlsx is what finance opens: a frozen header with filters, money as numbers
    formatted with the row's currency, quantities and prices to four places, text as string
    cells, the same rows and values as the JSON, cell by cell."""
    import openpyxl

    out = run_demo(tmp_path, "xlsx")
    rows = read_json(out / "discrepancies.json")
    schema = pl.read_parquet_schema(out / "discrepancies.parquet")
    sheet = openpyxl.load_workbook(out / "discrepancies.xlsx").active
    header = [c.value for c in sheet[1]]
    assert header == list(rows[0]) == list(schema)
    assert all(c.font.b and c.border.bottom.style == "thin" for c in sheet[1])
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:AI{len(rows) + 1}"
    assert sheet.column_dimensions["A"].width == pytest.approx(12.71, abs=0.01)
    assert sheet.max_row == len(rows) + 1
    for excel, row in zip(sheet.iter_rows(min_row=2), rows, strict=True):
        for c, name in zip(excel, header, strict=True):
            value, dtype = row[name], schema[name]
            if value is None or value == "":
                assert c.value is None, (c.coordinate, c.value)
            elif isinstance(dtype, pl.Decimal):
                assert isinstance(c.value, int | float)
                places = Decimal(10) ** -(dtype.scale or 0)
                assert Decimal(str(c.value)).quantize(places) == Decimal(value)
                money = f'#,##0.00 "{row["currency"]}";-#,##0.00 "{row["currency"]}"'
                assert c.number_format == (money if dtype.scale == 2 else "#,##0.0000")
            else:
                assert c.data_type == "s" and c.value == str(value), c.coordinate


def test_the_workbook_writes_any_text_inert_and_every_number_formatted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text a CSV would have run is written unchanged, as a string cell (an XLSX string cell
    never runs; `'=1+1` was a changed value); quotes, backslashes, markup, control
    characters, non-BMP characters and padding read back as written; nulls and empty text are
    empty cells; money without a currency, integers and dates keep their formats; past the rows
    a sheet, the next sheet goes on with the same formats (and rows converted in chunks that
    straddle the sheets keep their order)."""
    import openpyxl

    from reconcile import outputs
    from reconcile.outputs import write_xlsx

    monkeypatch.setattr(outputs, "CHUNK_ROWS", 4)

    texts = [
        "=1+1", "\t=SUM(A1)", "-12.50", "@cmd", 'say "hi" \\ back', "<b>&amp;</b>",
        "bell\x07 tab\t", "emoji \U0001f600 \u2028", "  padded  ", "", None,
    ]  # fmt: skip
    n = len(texts)
    frame = pl.DataFrame(
        {
            "message": texts,
            "currency": ["GBP", "EUR", None, "GBP", "USD", "GBP", "EUR", "GBP", "GBP", None, "GBP"],
            "difference": [Decimal("-1690.50"), Decimal("0.01"), Decimal("1234567.8"), *[None] * 8],
            "quantity": [Decimal("2.5000"), None, Decimal("-0.0001")] + [Decimal(1)] * 8,
            "count": list(range(n)),
            "day": [date(2026, 11, 1)] * n,
        },
        schema_overrides={"difference": pl.Decimal(18, 2), "quantity": pl.Decimal(18, 4)},
    )
    write_xlsx(frame, tmp_path / "edge.xlsx", rows_per_sheet=6)
    book = openpyxl.load_workbook(tmp_path / "edge.xlsx")
    assert book.sheetnames == ["Discrepancies", "Discrepancies 2"]
    cells = [row for sheet in book.worksheets for row in sheet.iter_rows(min_row=2)]
    assert len(cells) == n
    # XLSX keeps a control character as `_x0007_` (Excel shows the character).
    expected_text = [
        "=1+1", "\t=SUM(A1)", "-12.50", "@cmd", 'say "hi" \\ back', "<b>&amp;</b>",
        "bell_x0007_ tab\t", "emoji \U0001f600 \u2028", "  padded  ", None, None,
    ]  # fmt: skip
    assert [r[0].value for r in cells] == expected_text
    assert {r[0].data_type for r in cells if r[0].value is not None} == {"s"}  # never a formula
    assert [r[2].value for r in cells][:3] == [-1690.5, 0.01, 1234567.8]
    assert [r[2].number_format for r in cells][:3] == [
        '#,##0.00 "GBP";-#,##0.00 "GBP"', '#,##0.00 "EUR";-#,##0.00 "EUR"', "#,##0.00;-#,##0.00",
    ]  # fmt: skip
    assert [(r[3].value, r[3].number_format) for r in cells][:3] == [
        (2.5, "#,##0.0000"), (None, "General"), (-0.0001, "#,##0.0000"),
    ]  # fmt: skip
    assert [r[4].value for r in cells] == list(range(n))
    assert {r[5].value for r in cells} == {"2026-11-01"}
    for sheet in book.worksheets:
        assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref
        assert sheet.column_dimensions["A"].width == pytest.approx(60.71, abs=0.01)


def test_the_rows_xml_is_what_xlsxwriters_own_calls_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sheet rows are written as XML straight into XlsxWriter's row file (_write_rows):
    the workbook is byte for byte the one XlsxWriter's write_number/write_string calls make of
    the same cells (text too long for a cell cut with its note first, as `cut` writes it), on
    text it escapes, cuts or keeps whitespace in, rows without a cell, and formats first used
    in the middle of a chunk."""
    from reconcile import outputs
    from reconcile.outputs import FOUR_PLACES, MONEY, NUMBER, TEXT, _column, cut, write_xlsx

    def by_calls(ws: Any, frame: pl.DataFrame, first_row: int, formats: Any, whole: str) -> None:
        styles = {NUMBER: None, FOUR_PLACES: formats.places}
        kinds = [_column(frame[name]) for name in frame.columns]
        for index, code in enumerate(frame["currency"].to_list()):
            styles[MONEY] = formats.money(code)
            for col, (kind, values) in enumerate(kinds):
                if kind == TEXT and values[index]:
                    ws.write_string(first_row + index, col, cut(values[index], whole))
                elif kind != TEXT and values[index] is not None:
                    ws.write_number(first_row + index, col, values[index], styles[kind])

    texts = [
        None, "_x0041_ kept", "nul\x00 and \x1f", " lead", "trail\n", "\u00a0nbsp",
        "non\ufffe\uffff", 'a & b < c > "d"', "x" * 40_000, "\U0001f600" * 20_000, "",
        "plain", "plain",
    ]  # fmt: skip
    n = len(texts)
    frame = pl.DataFrame(
        {
            "id": [None, "D-1", *[f"D-{i}" for i in range(2, n)]],
            "message": texts,
            "currency": [None, "GBP", "EUR", "JPY", *["GBP"] * (n - 4)],
            "difference": [None, Decimal("-1690.50"), *[Decimal("0.10")] * (n - 2)],
            "quantity": [None, None, Decimal("1e-4"), *[Decimal("123456789.1234")] * (n - 3)],
            "count": [None, *range(1, n)],
        },
        schema_overrides={"difference": pl.Decimal(18, 2), "quantity": pl.Decimal(18, 4)},
    )
    monkeypatch.setattr(outputs, "CHUNK_ROWS", 3)
    write_xlsx(frame, tmp_path / "rows.xlsx", rows_per_sheet=8)
    monkeypatch.setattr(outputs, "_write_rows", by_calls)
    write_xlsx(frame, tmp_path / "calls.xlsx", rows_per_sheet=8)
    assert (tmp_path / "rows.xlsx").read_bytes() == (tmp_path / "calls.xlsx").read_bytes()


def test_text_written_as_xml_stays_text_in_the_workbook(tmp_path: Path) -> None:
    """A client or item an export names `<r>…</r>` (XlsxWriter writes such text into the
    sheet's XML as rich text, unescaped) is the cell's text: the workbook reads back, every
    cell as written (a name closing the sheet's XML broke the file)."""
    import openpyxl

    from reconcile.outputs import write_xlsx

    names = [
        "<r><t>Acme</t></r>",
        "<r></t></is></c></row></sheetData><x></r>",
        '<r><t>a</t></r><c r="Z9"><v>1</v></c><r></r>',
        "plain",
    ]
    write_xlsx(pl.DataFrame({"client": names, "currency": ["GBP"] * 4}), tmp_path / "x.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "x.xlsx").active
    assert sheet is not None
    assert [c.value for c in sheet["A"]] == ["client", *names]
    assert sheet.max_column == 2


def test_a_table_longer_than_a_sheet_continues_on_further_sheets(tmp_path: Path) -> None:
    """Past Excel's rows a sheet the workbook goes on in `Discrepancies 2`, … in the table's
    order, each sheet with its header: no row is dropped (XlsxWriter would drop them)."""
    import openpyxl

    from reconcile.outputs import write_xlsx

    out = run_demo(tmp_path, "sheets")
    frame = pl.read_parquet(out / "discrepancies.parquet")
    write_xlsx(frame, tmp_path / "split.xlsx", rows_per_sheet=4)
    book = openpyxl.load_workbook(tmp_path / "split.xlsx")
    pages = -(-frame.height // 4)
    assert book.sheetnames == ["Discrepancies"] + [
        f"Discrepancies {n}" for n in range(2, pages + 1)
    ]
    ids = []
    for sheet in book.worksheets:
        header = [c.value for c in sheet[1]]
        assert header == frame.columns
        ids += [row[header.index("id")].value for row in sheet.iter_rows(min_row=2)]
    assert ids == frame["id"].to_list()


@settings(max_examples=60)
@given(case=chunked(), rows_per_sheet=st.integers(1, 5))
def test_the_workbook_of_chunks_is_the_workbook_of_the_whole_table(
    case: tuple[pl.DataFrame, list[pl.DataFrame]], rows_per_sheet: int
) -> None:
    """The run reads the discrepancy table back in chunks: the workbook written from them is
    byte for byte the workbook of the whole table, the sheets split at the same rows across
    chunk boundaries (and converted CHUNK_ROWS rows at a time across both), each sheet with one
    header, every row once and in order."""
    import openpyxl

    from reconcile import outputs
    from reconcile.outputs import write_xlsx

    frame, parts = case
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(outputs, "CHUNK_ROWS", 2)
        whole, chunks = Path(tmp) / "whole.xlsx", Path(tmp) / "chunks.xlsx"
        write_xlsx(frame, whole, rows_per_sheet=rows_per_sheet)
        write_xlsx(iter(parts), chunks, rows_per_sheet=rows_per_sheet)
        assert chunks.read_bytes() == whole.read_bytes()
        book = openpyxl.load_workbook(chunks, read_only=True)
        pages = max(-(-frame.height // rows_per_sheet), 1)
        names = [f"Discrepancies {n}" for n in range(2, pages + 1)]
        assert book.sheetnames == ["Discrepancies", *names]
        firsts = [r[0] for sheet in book.worksheets for r in sheet.iter_rows(values_only=True)]
    assert firsts.count("id") == pages  # one header a sheet
    assert [v for v in firsts if v != "id"] == frame["id"].to_list()


@settings(max_examples=100)
@given(case=chunked())
def test_the_csv_of_chunks_is_the_csv_of_the_whole_table(
    case: tuple[pl.DataFrame, list[pl.DataFrame]],
) -> None:
    """discrepancies.csv written a slice at a time from the Parquet file the chunks were
    written to: the bytes of the whole table made safe (safe.neutralise) and written at once,
    the header once, for any chunking of either."""
    from reconcile import outputs
    from reconcile.outputs import write_csv_scan, write_parquet_parts

    frame, parts = case
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(outputs, "CSV_ROWS", 3)  # several slices, the header written once
        whole, chunks = Path(tmp) / "whole.csv", Path(tmp) / "chunks.csv"
        neutralise(frame).write_csv(whole)
        write_parquet_parts(iter(parts), Path(tmp) / "t.parquet")
        write_csv_scan(pl.scan_parquet(Path(tmp) / "t.parquet"), chunks)
        assert chunks.read_bytes() == whole.read_bytes()
        back = pl.read_csv(chunks, schema=OUTPUT_SCHEMA)
    assert back.height == frame.height  # one header: every other line is a row


@settings(max_examples=60)
@given(case=chunked(), other=chunked())
def test_the_parquet_of_chunks_reads_back_as_the_whole_table(
    case: tuple[pl.DataFrame, list[pl.DataFrame]],
    other: tuple[pl.DataFrame, list[pl.DataFrame]],
) -> None:
    """discrepancies.parquet streamed from the chunks reads back as the whole table with
    exactly OUTPUT_SCHEMA's types (no rows too), and its bytes do not depend on the chunking:
    the same rows cut elsewhere (over several row groups) give the same file."""
    from reconcile import outputs
    from reconcile.outputs import write_parquet_parts

    frame, parts = case
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setattr(outputs, "PARQUET_ROW_GROUP", 3)
        chunks, once = Path(tmp) / "chunks.parquet", Path(tmp) / "once.parquet"
        write_parquet_parts(iter(parts), chunks)
        write_parquet_parts([frame], once)
        back = pl.read_parquet(chunks)
        assert chunks.read_bytes() == once.read_bytes()
        # Another table's chunks: the file is the rows', not the last file's.
        write_parquet_parts(other[1], once)
        assert pl.read_parquet(once).equals(other[0])
    assert dict(back.schema) == OUTPUT_SCHEMA
    assert back.equals(frame)


def test_an_empty_table_as_one_empty_chunk(tmp_path: Path) -> None:
    """No discrepancies: the CSV is its header, the JSON `[]`, the Parquet OUTPUT_SCHEMA's
    typed columns with no rows, the workbook one sheet with its header."""
    import openpyxl

    from reconcile.outputs import write_csv_scan, write_parquet_parts, write_xlsx

    empty = pl.DataFrame(schema=OUTPUT_SCHEMA)
    assert b"".join(json_records(iter([empty, empty]))) == b"[]"
    write_parquet_parts([empty], tmp_path / "t.parquet")
    write_csv_scan(pl.scan_parquet(tmp_path / "t.parquet"), tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text(encoding="utf-8") == ",".join(OUTPUT_COLUMNS) + "\n"
    assert dict(pl.read_parquet(tmp_path / "t.parquet").schema) == OUTPUT_SCHEMA
    write_xlsx(iter([empty]), tmp_path / "t.xlsx")
    write_xlsx(empty, tmp_path / "whole.xlsx")
    assert (tmp_path / "t.xlsx").read_bytes() == (tmp_path / "whole.xlsx").read_bytes()
    sheets = openpyxl.load_workbook(tmp_path / "t.xlsx", read_only=True).worksheets
    assert [list(r) for s in sheets for r in s.iter_rows(values_only=True)] == [OUTPUT_COLUMNS]


def test_mapping_rows_that_map_nothing_are_named_on_both_sides(tmp_path: Path) -> None:
    """A typo in either column of the mapping file is printed and shown with file and line (the
    header is line 1)."""
    typos = tmp_path / "typos.csv"
    typos.write_text(
        "kind,autotask,halopsa\n"
        "client,Pemberton & Sons Joinry,PSJ Woodworks Ltd\n"
        "client,Pemberton & Sons Joinery,PSJ Woodworkz Ltd\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = demo_run(
        tmp_path / "ws.duckdb", out, "--map", typos, "--config", DEMO / "reconcile.toml"
    )
    assert result.exit_code == 1, result.output
    assert (
        f"{typos} line 2: client mapping 'Pemberton & Sons Joinry' -> 'PSJ Woodworks Ltd': the "
        "Autotask value names no client in this cycle's Autotask lines (a typo?); the row was "
        "not used" in result.output
    )
    assert f"{typos} line 3:" in result.output and "the HaloPSA value names no client" in (
        result.output
    )
    unused = read_json(out / "summary.json")["unused_mappings"]
    assert [(u["line"], u["autotask"]) for u in unused if u["file"] == str(typos)] == [
        (2, "Pemberton & Sons Joinry"),
        (3, "Pemberton & Sons Joinery"),
    ]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Mapping rows that map nothing" in html and "PSJ Woodworkz Ltd" in html


def test_an_unused_mapping_row_prints_a_control_character_escaped_once(tmp_path: Path) -> None:
    """shown() escapes ESC as \\x1b; a repr on top of it printed '\\\\x1b[2J...'."""
    hostile = tmp_path / "hostile.csv"
    hostile.write_text(
        "kind,autotask,halopsa\nclient,\x1b[2JNo Such Client,Nobody\u202eLtd\n", encoding="utf-8"
    )
    config, out = DEMO / "reconcile.toml", tmp_path / "out"
    result = demo_run(tmp_path / "ws.duckdb", out, "--map", hostile, "--config", config)
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert (
        f"{hostile} line 2: client mapping '\\x1b[2JNo Such Client' -> 'Nobody\\u202eLtd': "
    ) in result.output, result.output


def test_many_mapping_rows_that_map_nothing_print_the_first_few_and_a_count(
    tmp_path: Path,
) -> None:
    """A mapping file kept for all clients, run on a cycle of a few: five rows are printed and
    the rest counted, every one of them is in summary.json."""
    kept = tmp_path / "all-clients.csv"
    kept.write_text(
        "kind,autotask,halopsa\n"
        + "".join(f"client,Former Client {n:02},Former Client {n:02} Ltd\n" for n in range(12)),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = demo_run(
        tmp_path / "ws.duckdb", out, "--map", kept, "--config", DEMO / "reconcile.toml"
    )
    assert result.exit_code == 1, result.output
    printed = re.findall(r"line (\d+): client mapping 'Former Client", result.output)
    assert printed == ["2", "3", "4", "5", "6"]  # the header is line 1
    assert "warning: 7 more mapping rows were not used; all are listed in report.html" in (
        result.output
    )
    unused = read_json(out / "summary.json")["unused_mappings"]
    assert [u["line"] for u in unused if u["file"] == str(kept)] == list(range(2, 14))


def test_a_workbook_that_cannot_be_written_raises_the_os_error_not_xlsxwriters(
    tmp_path: Path,
) -> None:
    # XlsxWriter wraps the OSError (full disk, missing folder) in its own FileCreateError, which
    # the run would report as a bug (exit 3); the OSError is what the environment check reads.
    from reconcile.outputs import write_workbook

    frame = pl.DataFrame({"currency": ["GBP"], "net": [Decimal("1.00")]})
    with pytest.raises(FileNotFoundError):
        write_workbook(
            tmp_path / "no such folder" / "book.xlsx", {"Sheet": frame}, {"Sheet": "a.csv"}
        )


def test_a_run_without_discrepancies_writes_typed_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle where everything matches (here: no rule to find anything) writes the tables with
    the same types as any run, so finance's sums over an empty file give 0, not a type error."""
    from reconcile import run
    from reconcile.run import OUTPUT_SCHEMA

    monkeypatch.setattr(run, "discover", lambda: [])
    out = tmp_path / "out"
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        "--map", DEMO / "mapping.csv", "--config", DEMO / "reconcile.toml", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(out / "discrepancies.parquet")
    assert table.is_empty() and dict(table.schema) == OUTPUT_SCHEMA
    assert table["gross_difference"].sum() == 0


@pytest.mark.parametrize("scanned", [True, False], ids=["scanned", "held"])
def test_the_report_scans_the_runs_parquet_files_as_the_tables_held_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scanned: bool
) -> None:
    """The run's report data scan the Parquet files DuckDB wrote (run.report_data, and the
    summary's clients: run._clients) when they hold COLUMNWISE_FROM rows or more (here: when
    it is 0), else they are read whole (report_model.held); either way its page and kept blob
    are the bytes of the same tables held whole as frames: the discrepancies as
    the run's discrepancies.parquet orders them (a range of positions at a time), their lines
    put in the report's order here (by discrepancy, side, ref)."""
    from reconcile import history, report_model, run
    from reconcile.report import report_html as render
    from reconcile.report_model import DISCREPANCY_SCHEMA, ReportData, conform

    if scanned:
        monkeypatch.setattr(report_model, "COLUMNWISE_FROM", 0)
    made: dict[str, Any] = {}
    blob = history.report_blob

    def rendered(data: ReportData, **kwargs: Any) -> Iterator[str]:
        kind = pl.LazyFrame if scanned else pl.DataFrame
        assert isinstance(data.discrepancies, kind)
        assert isinstance(data.lines, kind)
        assert isinstance(data.summary.clients, kind)
        clients = data.summary.clients.lazy().collect()
        summary = dataclasses.replace(data.summary, clients=clients)
        made.update(data=data, lines=data.lines.lazy().collect(), summary=summary)
        made["html"] = render(data, **kwargs)
        yield str(made["html"])

    def kept(data: ReportData) -> Iterator[bytes]:
        made["blob"] = b"".join(blob(data))
        yield made["blob"]

    monkeypatch.setattr(run, "report_pieces", rendered)
    monkeypatch.setattr(history, "report_blob", kept)
    out = run_demo(tmp_path, "out")
    discrepancies = conform(pl.read_parquet(out / "discrepancies.parquet"), DISCREPANCY_SCHEMA)
    place = discrepancies.select("id", pl.int_range(pl.len()).alias("place"))
    lines = made["lines"]
    assert lines.height > discrepancies.height > 20
    whole = ReportData(
        summary=made["summary"],
        rules=made["data"].rules,
        discrepancies=discrepancies,
        lines=lines.join(place, on="id", maintain_order="left")
        .sort("place", "side", "ref", maintain_order=True)
        .drop("place"),
        quarantine=made["data"].quarantine,
        excluded=made["data"].excluded,
    )
    assert render(whole) == made["html"] == (out / "report.html").read_text(encoding="utf-8")
    assert b"".join(blob(whole)) == made["blob"]


@pytest.mark.parametrize("fails", [False, True], ids=["run", "template-error"])
def test_the_reports_temporary_folder_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """The report's Parquet files (run.report_folder, beside the workspace, named after it)
    are there while the report is made, and gone after the run, also when its template fails
    to render. What a killed run of the same workspace left is removed too; another
    workspace's folder beside it is left alone."""
    from jinja2 import UndefinedError

    from reconcile import run
    from reconcile.report import compiled_environment, report_pieces

    seen: list[set[str]] = []

    def rendered(data: Any, **kwargs: Any) -> Iterator[str]:
        seen.append({p.name for p in tmp_path.glob(".out.duckdb.report-*/*")})
        return report_pieces(data, **kwargs)

    monkeypatch.setattr(run, "report_pieces", rendered)
    killed, other = tmp_path / ".out.duckdb.report-k1ll3d", tmp_path / ".other.duckdb.report-x"
    for folder in (killed, other):
        folder.mkdir()
        (folder / "lines.parquet").write_bytes(b"left by a killed run")
    if fails:
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "report.html.j2").write_text("{{ no_such_value }}", encoding="utf-8")
        monkeypatch.setattr(run, "_prepared", lambda: compiled_environment(templates))
        with pytest.raises(UndefinedError):
            run_demo(tmp_path, "out")
    else:
        run_demo(tmp_path, "out")
    # The discrepancies are scanned from the run's own discrepancies.parquet (in --out).
    assert seen == [{"clients.parquet", "lines-00000.parquet", "report-data.json.gz"}]
    assert [p.name for p in tmp_path.glob(".*.report-*")] == [other.name]


@pytest.mark.parametrize(
    ("bad_side", "rule", "label"),
    [("halopsa", "missing_in_halopsa", "HaloPSA"), ("autotask", "missing_in_autotask", "Autotask")],
)
def test_a_line_missing_where_rows_are_quarantined_says_so(
    tmp_path: Path, bad_side: str, rule: str, label: str
) -> None:
    """The backup line is in both exports, but one side's row has an amount that cannot be read
    and is quarantined: the other side's line is reported missing (exit 2 for the quarantine),
    and its message says a row of that side of its client was quarantined, where it is and why,
    under the id it has when the row is simply absent. `run` writes the quarantined row to
    quarantine.csv in --out, as the README says, and nothing beside the workspace (that is
    `load`'s per-load file)."""
    header = {"autotask": AT_HEADER, "halopsa": HALO_HEADER}
    rows = {
        "autotask": [
            "A1,INV-1,11/01/2026,Acme Ltd,Server,1,100.00,100.00,20.00,11/01/2026,11/30/2026",
            "A2,INV-1,11/01/2026,Acme Ltd,Backup,1,50.00,50.00,10.00,11/01/2026,11/30/2026",
        ],
        "halopsa": [
            "H1,NW1,01/11/2026,Acme Ltd,Server,1,100.00,100.00,20.00,01/11/2026,30/11/2026",
            "H2,NW1,01/11/2026,Acme Ltd,Backup,1,50.00,50.00,10.00,01/11/2026,30/11/2026",
        ],
    }
    # The bad side's backup row as one that cannot be read, or left out.
    broken = rows[bad_side][1].replace(",50.00,10.00,", ",5x0.00,10.00,")
    found = {}
    for name, backup in (("quarantined", [broken]), ("absent", [])):
        folder = tmp_path / name
        folder.mkdir()
        exports = {side: folder / f"{side}.csv" for side in header}
        for side, path in exports.items():
            lines = [*rows[side][:1], *backup] if side == bad_side else rows[side]
            path.write_text("\n".join([header[side], *lines]) + "\n", encoding="utf-8")
        result = invoke(
            "--workspace", folder / "ws.duckdb", "run", "--cycle", "2026-11",
            "--autotask", exports["autotask"], "--halopsa", exports["halopsa"],
            "--out", folder / "out",
        )  # fmt: skip
        assert result.exit_code == (2 if backup else 1), result.output
        (found[name],) = [f for f in findings(folder / "out") if f["rule"] == rule]

    assert found["quarantined"]["id"] == found["absent"]["id"]
    assert found["absent"]["message"].endswith(f"; no {label} line matches it")
    column = "Extended Price" if bad_side == "autotask" else "net_amount"
    assert found["quarantined"]["message"] == (
        f"{found['absent']['message']}, but 1 {label} row of client 'Acme Ltd' was quarantined "
        f"at load and not compared: it may be this line (quarantine.csv; {bad_side}.csv row 2: "
        f"column '{column}': expected an amount such as 1234.56, -12.00, (12.00), 12.00-, "
        "$1,234.50 or USD 12.00, got '5x0.00' (not a number written with a decimal point))"
    )
    assert "5x0.00" in (tmp_path / "quarantined" / "out" / "quarantine.csv").read_text("utf-8")
    assert not (tmp_path / "quarantined" / "quarantine").exists()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`reconcile run` writes the cycle's to `quarantine.csv` in `--out`" in readme


QUARANTINE_ITEMS = ("Backup", "Firewall", "Email Security")


@settings(max_examples=12, deadline=None)
@given(
    side=st.sampled_from(["autotask", "halopsa"]),
    quarantined=st.integers(1, 3),
    kept=st.booleans(),
    spelling=st.sampled_from(
        ["Harbour Cafe Ltd", "HARBOUR CAFE LTD", "Harbour Café Limited", "harbour cafe ltd."]
    ),
    stranger=st.booleans(),
)
def test_a_clients_quarantined_rows_are_named_in_its_findings(
    tmp_path_factory: pytest.TempPathFactory,
    side: str,
    quarantined: int,
    kept: bool,
    spelling: str,
    stranger: bool,
) -> None:
    """A client's rows of one side quarantined (an amount that cannot be read), however that
    side spells the client's name: every finding they leave on the other side (its lines
    missing, or the HaloPSA client matching no Autotask client when all its Autotask rows are
    gone) says how many of the client's rows were quarantined, where the first is in
    quarantine.csv and why (never the platform's count for the cycle besides), a quarantined
    row of another client (`stranger`) not counted; a client whose lines pair has no finding."""
    folder = tmp_path_factory.mktemp("q")
    label = {"autotask": "Autotask", "halopsa": "HaloPSA"}[side]
    at_row = "A{},INV-{},11/01/2026,{},{},1,50.00,{},10.00,11/01/2026,11/30/2026"
    halo_row = "H{},NW{},01/11/2026,{},{},1,50.00,{},10.00,01/11/2026,30/11/2026"
    line = {"autotask": at_row, "halopsa": halo_row}
    rows: dict[str, list[str]] = {
        s: [line[s].format(1, 1, "Acme Ltd", "Server", "50.00")] for s in line
    }
    other = "halopsa" if side == "autotask" else "autotask"
    items = QUARANTINE_ITEMS[:quarantined]
    for i, item in enumerate(["Managed Server", *items] if kept else items, 2):
        rows[other].append(line[other].format(i, 2, "Harbour Cafe Ltd", item, "50.00"))
    if kept:
        rows[side].append(line[side].format(2, 2, spelling, "Managed Server", "50.00"))
    first = len(rows[side]) + 1  # the first quarantined row's data row number
    for i, item in enumerate(items, 10):
        rows[side].append(line[side].format(i, 2, spelling, item, "5x0.00"))
    if stranger:
        rows[side].append(line[side].format(20, 3, "Kestrel Dental", "Server", "5x0.00"))
    exports = write_exports(
        folder, "\n".join(rows["autotask"]) + "\n", "\n".join(rows["halopsa"]) + "\n"
    )
    result = invoke(
        "--workspace", folder / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", exports["autotask"], "--halopsa", exports["halopsa"],
        "--out", folder / "out", "--no-workbook",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    found = findings(folder / "out")
    assert not [f for f in found if f["client"] == "Acme Ltd"]
    rule = "unmapped_client" if side == "autotask" and not kept else f"missing_in_{side}"
    noted = [f for f in found if f["rule"] == rule]
    assert len(noted) == (1 if rule == "unmapped_client" else quarantined), found
    was = "was" if quarantined == 1 else "were"
    told = (
        f"{quarantined} {label} row{'s' * (quarantined > 1)} of client {spelling!r} {was} "
        f"quarantined at load and not compared"
    )
    where = f" (quarantine.csv; {'the first, ' * (quarantined > 1)}{side}.csv row {first}: column "
    if rule == "unmapped_client":
        then = ", so no Autotask line of it was loaded"
    else:
        then = f": it may be {'this line' if quarantined == 1 else 'one of them'}"
    for finding in noted:
        assert f"{told}{then}{where}" in finding["message"], finding["message"]
        assert "got '5x0.00'" in finding["message"]
        assert "of this cycle" not in finding["message"]


def test_quarantine_files_give_each_rows_currency(tmp_path: Path) -> None:
    """quarantine.csv (run) and `load`'s per-load file give each quarantined row's currency as
    read: EUR from the row's currency column, --currency (GBP) where the row states none."""
    halopsa = tmp_path / "halopsa.csv"
    halopsa.write_text(
        f"{HALO_HEADER},currency\n"
        "H1,NW1,01/11/2026,Acme Ltd,Server,1,100.00,1x00.00,20.00,01/11/2026,30/11/2026,EUR\n"
        "H2,NW1,01/11/2026,Acme Ltd,Backup,1,50.00,5x0.00,10.00,01/11/2026,30/11/2026,\n",
        encoding="utf-8",
    )
    autotask = tmp_path / "autotask.csv"
    autotask.write_text(
        f"{AT_HEADER}\nA1,INV-1,11/01/2026,Acme Ltd,Server,1,100.00,100.00,20.00,11/01/2026,"
        "11/30/2026\n",
        encoding="utf-8",
    )
    settings = ("--cycle", "2026-11", "--currency", "GBP")
    result = invoke(
        "--workspace", tmp_path / "run" / "ws.duckdb", "run", *settings, "--autotask", autotask,
        "--halopsa", halopsa, "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    result = invoke("--workspace", tmp_path / "ws.duckdb", "load", *settings, halopsa)
    assert result.exit_code == 2, result.output
    (per_load,) = (tmp_path / "quarantine" / "2026-11").glob("*.csv")
    for file in (tmp_path / "out" / "quarantine.csv", per_load):
        with file.open(encoding="utf-8") as fh:
            rows = [(r["line_ref"], r["currency"]) for r in csv.DictReader(fh)]
        assert rows == [("H1", "EUR"), ("H2", "GBP")], file


def test_an_export_loaded_with_other_settings_is_read_again(tmp_path: Path) -> None:
    """A load is kept with the settings it was read with (currency, time zone, date and number
    formats): the same exports given again with another currency are read again, so the run
    holds what it says and its fingerprint means its findings (a fresh workspace gives the
    same); a run on loads read with other settings than its own is refused (exit 2)."""

    def run(name: str, *flags: str, files: bool = True) -> Result:
        given: list[str | Path] = [
            "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        ] if files else []  # fmt: skip
        return invoke(
            "--workspace", tmp_path / f"{name}.duckdb", "run", "--cycle", "2026-11", *given,
            "--map", DEMO / "mapping.csv", "--config", DEMO / "reconcile.toml",
            "--out", tmp_path / name, *flags,
        )  # fmt: skip

    assert run("ws").exit_code == 1
    gbp = read_json(tmp_path / "ws" / "summary.json")
    assert run("ws", "--currency", "EUR").exit_code == 1
    again = read_json(tmp_path / "ws" / "summary.json")
    assert run("fresh", "--currency", "EUR").exit_code == 1
    fresh = read_json(tmp_path / "fresh" / "summary.json")
    assert again["run_id"] == fresh["run_id"] != gbp["run_id"]
    assert again["verdict"] == fresh["verdict"] != gbp["verdict"]
    assert (tmp_path / "ws" / "discrepancies.csv").read_bytes() == (
        tmp_path / "fresh" / "discrepancies.csv"
    ).read_bytes()
    refused = run("ws", "--currency", "GBP", files=False)
    assert refused.exit_code == 2, refused.output
    assert "was read with other settings than this run's: currency EUR (now GBP)" in (
        refused.output
    )


@pytest.mark.parametrize("currency", ["GBP", "EUR"])
def test_a_renamed_clients_row_carries_the_autotask_name(tmp_path: Path, currency: str) -> None:
    """A client renamed in HaloPSA (mapped) whose extra HaloPSA line is missing in Autotask: the
    finding and its per-client rows are named as Autotask names it, whichever name sorts first,
    also the row of a currency only HaloPSA bills it in; the missing line is counted on its
    currency's row."""
    exports = write_exports(
        tmp_path,
        "A1,INV-1,11/01/2026,Zeta Holdings Ltd,Server,1,100.00,100.00,20.00,11/01/2026,"
        "11/30/2026\n",
        "H1,NW1,01/11/2026,Alpha Renamed Ltd,Server,1,100.00,100.00,20.00,01/11/2026,30/11/2026\n"
        "H2,NW1,01/11/2026,Alpha Renamed Ltd,Backup,1,50.00,50.00,10.00,01/11/2026,30/11/2026\n",
    )
    if currency == "EUR":  # the extra line on an invoice in euros (a currency column added)
        for path in exports.values():
            head, *rows = path.read_text(encoding="utf-8").splitlines()
            cells = [f"{row},{'EUR' if row.startswith('H2') else 'GBP'}" for row in rows]
            path.write_text("\n".join([f"{head},Currency", *cells]) + "\n", encoding="utf-8")
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(
        "kind,autotask,halopsa\nclient,Zeta Holdings Ltd,Alpha Renamed Ltd\n", encoding="utf-8"
    )
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", exports["autotask"], "--halopsa", exports["halopsa"], "--map", mapping,
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    # The finding, too, names the client as the Autotask invoice does.
    assert [(f["rule"], f["client"]) for f in findings(tmp_path / "out")] == [
        ("missing_in_autotask", "Zeta Holdings Ltd")
    ]
    clients = [
        (r["client"], r["currency"], r["autotask_gross"], r["halopsa_gross"], r["blocker"])
        for r in read_json(tmp_path / "out" / "summary.json")["clients"]
    ]
    assert clients == (
        [("Zeta Holdings Ltd", "GBP", "120.00", "180.00", 1)]
        if currency == "GBP"
        else [
            ("Zeta Holdings Ltd", "EUR", "0.00", "60.00", 1),
            ("Zeta Holdings Ltd", "GBP", "120.00", "120.00", 0),
        ]
    )


def test_a_missing_line_follows_from_an_unmapped_client_only_in_its_currency(
    tmp_path: Path,
) -> None:
    """Apex Ltd bills in pounds and euros in Autotask; HaloPSA's unmapped Apex Inc. (suggested
    as Apex Ltd by name) bills only the pounds. Mapping it pairs the pound line, so that
    missing line follows from it; the euro line stays missing once mapped: no root cause."""
    exports = {"autotask": tmp_path / "autotask.csv", "halopsa": tmp_path / "halopsa.csv"}
    exports["autotask"].write_text(
        f"{AT_HEADER},Currency\n"
        "A1,INV-1,11/01/2026,Apex Ltd,Server,1,100.00,100.00,20.00,11/01/2026,11/30/2026,GBP\n"
        "A2,INV-2,11/01/2026,Apex Ltd,Backup,1,50.00,50.00,10.00,11/01/2026,11/30/2026,EUR\n",
        encoding="utf-8",
    )
    exports["halopsa"].write_text(
        f"{HALO_HEADER},Currency\n"
        "H1,NW1,01/11/2026,Apex Inc.,Server,1,100.00,100.00,20.00,01/11/2026,30/11/2026,GBP\n",
        encoding="utf-8",
    )
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", exports["autotask"], "--halopsa", exports["halopsa"],
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    rows = findings(tmp_path / "out")
    (cause,) = [r["id"] for r in rows if r["rule"] == "unmapped_client"]
    assert sorted((r["rule"], r["currency"], r["root_cause"]) for r in rows) == [
        ("missing_in_halopsa", "EUR", ""),
        ("missing_in_halopsa", "GBP", cause),
        ("unmapped_client", "GBP", ""),
    ]


TWO_CURRENCIES = FIXTURES / "realworld" / "amounts" / "halo_two_currencies.csv"


def test_control_totals_are_kept_per_currency_end_to_end(tmp_path: Path) -> None:
    """An export billing GBP and EUR, with rows of each quarantined, one excluded and two whose
    currency cannot be read ('EURO', 'pounds'): summary.json, the `run` output and the report
    give the control totals per currency, the unreadable ones apart, never one sum of all."""
    out = tmp_path / "out"
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", TWO_CURRENCIES,
        "--map", DEMO / "mapping.csv", "--config", DEMO / "reconcile.toml", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 2, result.output  # rows quarantined
    assert (
        "8 rows read = 3 loaded + 4 quarantined + 1 excluded; "
        "EUR: 3 rows = 1 + 1 + 1, net EUR 885.00 = EUR 800.00 + EUR 60.00 + EUR 25.00; "
        "GBP: 3 rows = 2 + 1 + 0, net GBP 3,540.50 = GBP 3,500.50 + GBP 40.00 + GBP 0.00; "
        "unknown currency: 2 rows = 0 + 2 + 0, net 75.00 = 0.00 + 75.00 + 0.00; dates"
    ) in result.output
    (halopsa,) = [
        c for c in read_json(out / "summary.json")["controls"] if c["platform"] == "halopsa"
    ]
    figures = ("rows_read", "rows_loaded", "rows_quarantined", "rows_excluded", "net_read")
    assert [[c["currency"], *(c[f] for f in figures)] for c in halopsa["by_currency"]] == [
        ["EUR", 3, 1, 1, 1, "885.00"],
        ["GBP", 3, 2, 1, 0, "3540.50"],
        [None, 2, 0, 2, 0, "75.00"],
    ]
    assert [c["net_quarantined"] for c in halopsa["by_currency"]] == ["60.00", "40.00", "75.00"]
    assert [c["tax_loaded"] for c in halopsa["by_currency"]] == ["0.00", "700.10", "0.00"]
    assert "net_read" not in halopsa  # no sum over currencies
    html = (out / "report.html").read_text(encoding="utf-8")
    table = html[html.index('<table class="figures controls">') :]
    table = table[: table.index("</table>")]
    table = table[table.index('<th scope="row" rowspan="3">') :]  # HaloPSA's rows
    for currency, net_read in (
        ("EUR", "885.00"),
        ("GBP", "3,540.50"),
        ("unknown currency", "75.00"),
    ):
        row = table[table.index(f"<td>{currency}</td>") :]
        assert f'<td class="num">{net_read}</td>' in row[: row.index("</tr>")], currency


def test_a_small_cycles_log_is_checkpointed_beside_the_run(tmp_path: Path) -> None:
    """The write-ahead log of a small cycle's loads is written into the workspace's file beside
    the match and the rules (run._checkpoint_beside), not by the run's last commit; a large
    cycle's (exports of CHILD_FROM_BYTES or more) is left to DuckDB, as is a log too small to
    be worth a thread. Nothing of the workspace is lost either way."""
    from reconcile.run import LOGGED_FROM, _checkpoint_beside
    from reconcile.store import Workspace
    from reconcile.workbook_child import CHILD_FROM_BYTES

    with Workspace(tmp_path / "ws.duckdb") as workspace:
        workspace.con.execute(
            "CREATE TABLE t AS SELECT range AS n, 'x' || range AS s FROM range(1)"
        )
        with _checkpoint_beside(workspace, 0) as checkpointed:  # a log too small: no thread
            checkpointed()
        assert 0 < workspace.logged_bytes() < LOGGED_FROM
        workspace.con.execute("INSERT INTO t SELECT range, 'x' || range FROM range(100000)")
        logged = workspace.logged_bytes()
        assert logged >= LOGGED_FROM
        with _checkpoint_beside(workspace, CHILD_FROM_BYTES) as checkpointed:
            checkpointed()
        assert workspace.logged_bytes() == logged
        with _checkpoint_beside(workspace, CHILD_FROM_BYTES - 1) as checkpointed:
            workspace.con.execute("CREATE TEMP TABLE beside AS SELECT count(*) AS n FROM t")
            checkpointed()
            assert workspace.logged_bytes() < LOGGED_FROM
    with Workspace(tmp_path / "ws.duckdb") as workspace:
        assert workspace.con.execute("SELECT count(*) FROM t").fetchall() == [(100001,)]
