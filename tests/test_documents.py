"""API documents with their structure broken: the load succeeds and conserves, or exits 2.

Valid HaloPSA and Autotask API responses (fixtures/realworld/documents/halo_complete.json and
at_pages_complete/, written in the image of psa-exports.md §1.1, §1.3 and §2.1-2.3) are mutated:
any value replaced by a list, an object, a text, a number or null; keys dropped or repeated;
values nested deeply; lists truncated while their counts stay. Each mutated set of pages is
written to files and read as `reconcile load` reads them. It must either validate with
conservation (rows read = loaded + quarantined + excluded + skipped) or be refused with an
InputError naming a file; anything else would be exit 3, a bug.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, invoke
from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.ingest import load_paths, read_only
from reconcile.load.documents import XML_FIELDS, XML_NS
from reconcile.store import Workspace

DOCUMENTS = FIXTURES / "realworld" / "documents"
BASES: dict[str, dict[str, Any]] = {
    "halopsa": {"invoices.json": json.loads((DOCUMENTS / "halo_complete.json").read_text())},
    "autotask": {
        p.name: json.loads(p.read_text())
        for p in sorted((DOCUMENTS / "at_pages_complete").iterdir())
    },
}
REPLACEMENTS: list[Any] = [
    [],
    [1],
    [{"id": 1}],
    {},
    {"value": 1},
    "",
    "x",
    "12.50",
    7,
    -1,
    0.5,
    None,
    True,
]
DUP = "\u0000dup"
# CI runs a few seconds' worth; DOCUMENTS_EXAMPLES=5000 explores further (as was done once).
EXAMPLES = int(os.environ.get("DOCUMENTS_EXAMPLES", "150"))

Step = str | int


def _paths(value: Any, path: tuple[Step, ...] = ()) -> Iterator[tuple[Step, ...]]:
    if path:
        yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


def _parent(doc: Any, path: tuple[Step, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A platform's pages as file texts, with one to three structural mutations."""
    platform = draw(st.sampled_from(sorted(BASES)))
    docs = copy.deepcopy(BASES[platform])
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(docs)))
        doc = docs[name]
        paths = list(_paths(doc))
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent, key = _parent(doc, path), path[-1]
        how = draw(st.sampled_from(["replace", "drop", "repeat", "nest", "truncate"]))
        if how == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(REPLACEMENTS)))
        elif how == "drop":
            del parent[key]
        elif how == "repeat" and isinstance(key, str):
            parent[key + DUP] = copy.deepcopy(draw(st.sampled_from(REPLACEMENTS)))
        elif how == "nest":
            value = parent[key]
            for _ in range(draw(st.sampled_from([3, 40, 200]))):
                value = [value]
            parent[key] = value
        elif how == "truncate":
            lists = [p for p in paths if isinstance(_parent(doc, (*p, 0)), list)]
            if lists:
                target = _parent(doc, (*draw(st.sampled_from(lists)), 0))
                if target:
                    del target[draw(st.integers(0, len(target) - 1))]
    texts = {}
    for name, doc in docs.items():
        text = json.dumps(doc, indent=1, ensure_ascii=False)
        texts[name] = text.replace(json.dumps(DUP)[1:-1] + '"', '"')
    return platform, texts


def _write(folder: Path, texts: dict[str, str]) -> None:
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_documents_load_or_are_refused(case: tuple[str, dict[str, str]]) -> None:
    platform, texts = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pages"
        folder.mkdir()
        _write(folder, texts)
        try:
            checked = read_only([folder], None, Settings(cycle="2026-11"))
        except InputError as exc:
            assert str(folder) in exc.file, exc
            return
    for raw, tally in checked:
        assert raw.platform == platform
        assert tally.rows_read == (
            tally.rows_loaded + tally.rows_quarantined + tally.rows_excluded + tally.rows_skipped
        )
        by_currency = tally.by_currency()
        assert all(c.balanced for c in by_currency), by_currency
        assert sum(c.rows_read for c in by_currency) == tally.rows_read - tally.rows_skipped


@settings(
    max_examples=max(12, EXAMPLES // 12),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutated())
def test_mutated_documents_through_the_cli(case: tuple[str, dict[str, str]]) -> None:
    _, texts = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pages"
        folder.mkdir()
        _write(folder, texts)
        ws_path = Path(tmp) / "ws.duckdb"
        result = invoke("--workspace", ws_path, "load", "--cycle", "2026-11", folder)
        assert "Traceback" not in result.output and "Internal error" not in result.output
        assert result.exit_code in (0, 2), result.output
        if not ws_path.exists():
            assert result.exit_code == 2 and str(folder) in result.output
            return
        with Workspace(ws_path) as ws:
            loads = ws.frame("SELECT * FROM loads", []).to_dicts()
            lines = ws.con.sql("SELECT count(*) FROM lines").fetchall()[0][0]
            held = ws.con.sql("SELECT count(*) FROM quarantine").fetchall()[0][0]
        if not loads:
            assert result.exit_code == 2 and str(folder) in result.output
            assert lines == 0
            return
        (load,) = loads
        assert load["rows_read"] == lines + held


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(untaxed=st.lists(st.booleans(), min_size=5, max_size=5), as_null=st.booleans())
def test_invoice_total_warnings_print_no_tax_the_lines_do_not_give(
    untaxed: list[bool], as_null: bool
) -> None:
    """HaloPSA lines without their tax (keys absent or null) under invoices that state their
    totals: an invoice whose lines no longer add up is warned of with the lines' net and the
    tax they give, never a 0.00 tax they do not give."""
    doc = copy.deepcopy(BASES["halopsa"]["invoices.json"])
    lines = [line for invoice in doc["invoices"] for line in invoice["lines"]]
    assert len(lines) == len(untaxed)
    for line, drop in zip(lines, untaxed, strict=True):
        for key in ("tax_amount", "total_tax") if drop else ():
            if as_null:
                line[key] = None
            else:
                del line[key]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "invoices.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        result = invoke("--workspace", Path(tmp) / "ws.duckdb", "load", "--cycle", "2026-11", path)
    assert result.exit_code == 0, result.output
    for invoice in doc["invoices"]:
        net = sum(line["net_amount"] for line in invoice["lines"])
        taxes = [line["tax_amount"] for line in invoice["lines"] if line.get("tax_amount")]
        missing = len(invoice["lines"]) - len(taxes)
        said = f"invoice {invoice['invoicenumber']}: the export states {invoice['total']:.2f}"
        if not missing:
            assert said not in result.output
            continue
        shown = f"{net:.2f} net; tax not given"
        if taxes:
            gives = "gives" if missing == 1 else "give"
            line_s = "line" if missing == 1 else "lines"
            shown = f"{net:.2f} net + {sum(taxes):.2f} tax; {missing} {line_s} {gives} no tax"
        assert f"{said} but its lines add up to {net + sum(taxes):.2f} ({shown})" in result.output


# How a true/false field comes out of an API page as a script or middleware writes it (JSON
# true/false, text in any case, SQL Server's bit, a number), and values that are neither.
API_TRUE: list[Any] = [True, "true", "True", "TRUE", 1, "1", "-1", "yes", "Y", "t", "WAHR"]
API_FALSE: list[Any] = [False, "false", "False", 0, "0", "no", "N", "f", None, "", "ABSENT"]
API_UNREAD: list[Any] = ["maybe", "?", 2, "0.5", "#N/A", "ja"]
FLAG_KINDS = ["open", "true", "unread"]


def _set_flag(record: dict[str, Any], key: str, value: Any) -> None:
    if value == "ABSENT":
        record.pop(key, None)
    else:
        record[key] = value


def _loaded(platform: str, texts: dict[str, str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Each row's disposition in row order (loaded, quarantined or excluded) and the reasons
    of the rows not loaded, as `reconcile load` stores them."""
    with tempfile.TemporaryDirectory() as tmp, Workspace(":memory:") as ws:
        folder = Path(tmp) / "pages"
        folder.mkdir()
        _write(folder, texts)
        (result,) = load_paths(ws, [folder], platform, Settings(cycle="2026-11", currency="GBP"))
        rejected = ws.quarantined("2026-11").sort("row_number")
    assert result.rows_skipped == 0
    by_row = dict(zip(rejected["row_number"], rejected["disposition"], strict=True))
    dispositions = [by_row.get(n, "loaded") for n in range(1, result.rows_read + 1)]
    return dispositions, list(zip(rejected["disposition"], rejected["reasons"], strict=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    invoices=st.lists(
        st.tuples(st.sampled_from(["open", "voided", "template", "unread"]), st.integers(0, 99)),
        min_size=3,
        max_size=3,
    ),
    lines=st.lists(
        st.tuples(st.sampled_from(["line", "group", "inactive", "unread"]), st.integers(0, 99)),
        min_size=5,
        max_size=5,
    ),
)
def test_halopsa_api_flags_are_read_however_they_are_spelled(
    invoices: list[tuple[str, int]], lines: list[tuple[str, int]]
) -> None:
    """HaloPSA's flags (voided, is_recurring_invoice on the invoice; isgroupdesc, isinactive on
    the line) in any spelling of true or false the CSV reports' flags are read in, JSON or
    text or number: an invoice voided or a template excludes its lines, a group header or an
    inactive line is excluded, a line whose flags are all false loads. A flag that is neither
    is quarantined with the field and what it holds, never read as false (the line would be
    billed); a line excluded by a flag that is true stays excluded."""
    doc = copy.deepcopy(BASES["halopsa"]["invoices.json"])
    expected: list[str] = []
    unread: list[tuple[int, str]] = []  # a row's index, what its quarantine reason must say
    for invoice, (state, pick) in zip(doc["invoices"], invoices, strict=True):
        for key in ("voided", "is_recurring_invoice"):
            _set_flag(invoice, key, API_FALSE[(pick + len(key)) % len(API_FALSE)])
        if state == "voided":
            _set_flag(invoice, "voided", API_TRUE[pick % len(API_TRUE)])
        elif state == "template":
            _set_flag(invoice, "is_recurring_invoice", API_TRUE[pick % len(API_TRUE)])
        elif state == "unread":
            _set_flag(invoice, "voided", API_UNREAD[pick % len(API_UNREAD)])
        for line in invoice["lines"]:
            kind, line_pick = lines[len(expected)]
            for key in ("isgroupdesc", "isinactive"):
                _set_flag(line, key, API_FALSE[(line_pick + len(key)) % len(API_FALSE)])
            if kind in ("group", "inactive"):
                key = "isgroupdesc" if kind == "group" else "isinactive"
                _set_flag(line, key, API_TRUE[line_pick % len(API_TRUE)])
            elif kind == "unread":
                _set_flag(line, "isinactive", API_UNREAD[line_pick % len(API_UNREAD)])
            if state in ("voided", "template") or kind in ("group", "inactive"):
                expected.append("excluded")
                continue
            for holder, key, bad in ((invoice, "voided", state), (line, "isinactive", kind)):
                if bad == "unread":
                    said = f"column '{key}': expected TRUE or FALSE (1/0, yes/no), got "
                    unread.append((len(expected), f"{said}'{holder[key]}'"))
            expected.append("quarantined" if "unread" in (state, kind) else "loaded")
    dispositions, reasons = _loaded("halopsa", {"invoices.json": json.dumps(doc)})
    assert dispositions == expected
    quarantined = [r for d, r in reasons if d == "quarantined"]
    for n, said in unread:
        assert said in quarantined[expected[:n].count("quarantined")]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    states=st.lists(
        st.tuples(st.sampled_from(FLAG_KINDS), st.integers(0, 99)), min_size=3, max_size=3
    )
)
def test_autotask_api_is_voided_is_read_however_it_is_spelled(
    states: list[tuple[str, int]],
) -> None:
    """Autotask's Invoices.isVoided in any spelling of true or false (JSON, text in any case,
    a number): a voided invoice's billing items are excluded, an invoice not voided loads its
    items, and a value that is neither quarantines its items with the field and the value."""
    docs = copy.deepcopy(BASES["autotask"])
    invoices = docs["Invoices.json"]["items"]
    voided: dict[int, str] = {}
    for invoice, (state, pick) in zip(invoices, states, strict=True):
        value = {"open": API_FALSE, "true": API_TRUE, "unread": API_UNREAD}[state]
        _set_flag(invoice, "isVoided", value[pick % len(value)])
        voided[invoice["id"]] = state
    items = [i for name in sorted(docs) if name.startswith("Billing") for i in docs[name]["items"]]
    disposition = {"open": "loaded", "true": "excluded", "unread": "quarantined"}
    expected = [disposition[voided[item["invoiceID"]]] for item in items]
    texts = {name: json.dumps(doc) for name, doc in docs.items()}
    dispositions, reasons = _loaded("autotask", texts)
    assert dispositions == expected
    said = " ".join(r for _, r in reasons)
    for (state, _), invoice in zip(states, invoices, strict=True):
        value = invoice.get("isVoided")
        unread = f"column 'isVoided': expected TRUE or FALSE (1/0, yes/no), got '{value}'"
        assert (unread in said) == (state == "unread")


AT_XML = FIXTURES / "quirks" / "at_invoice.xml"
XML_PLACES = ["account", "invoice", "invoice_item 1", "invoice_item 2"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    places=st.sets(st.sampled_from(XML_PLACES)),
    moved=st.sampled_from(["every field", "the fields read", "one field read"]),
    pick=st.integers(0, 99),
    namespaced=st.booleans(),
    dropped=st.sets(st.sampled_from(["item_id", "invoice_item_id", "invoice_id"])),
)
def test_autotask_xml_with_values_as_attributes_is_refused(
    places: set[str], moved: str, pick: int, namespaced: bool, dropped: set[str]
) -> None:
    """Autotask's generic XML export (fixtures/quirks/at_invoice.xml) converted so that some
    element's fields are attributes (<invoice_item item_id="61073" .../>, as SQL Server's FOR
    XML AUTO or a converter writes them), whichever element and however many of its fields, with
    or without the namespace: refused, naming the file, the first such element and its fields,
    never loaded as items "posted but not invoiced". Unconverted, with item ids missing, it
    loads and no line ref is built from an absent field ("None.None")."""
    root = ET.fromstring(AT_XML.read_bytes())
    ns = XML_NS
    elements = {
        "account": root.find(f"{ns}account"),
        "invoice": root.find(f".//{ns}invoice"),
        **{f"invoice_item {n}": e for n, e in enumerate(root.iter(f"{ns}invoice_item"), 1)},
    }
    first = None
    for place in XML_PLACES:  # the order the loader meets them in
        element = elements[place]
        assert element is not None
        tag = place.split()[0]
        if place not in places:
            if tag == "invoice_item":
                for child in [c for c in element if c.tag.removeprefix(ns) in dropped]:
                    element.remove(child)
            continue
        leaves = [c for c in element if len(c) == 0]
        read = [c for c in leaves if c.tag.removeprefix(ns) in XML_FIELDS[tag]]
        chosen = {"every field": leaves, "the fields read": read}.get(
            moved, [read[pick % len(read)]]
        )
        for child in chosen:
            element.attrib[child.tag.removeprefix(ns)] = child.text or ""
            element.remove(child)
        first = first or (tag, [c.tag.removeprefix(ns) for c in chosen if c in read])
    text = ET.tostring(root, encoding="unicode")
    if not namespaced:
        text = text.replace(ns[1:-1], "").replace(' xmlns:ns0=""', "").replace("ns0:", "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "invoices.xml"
        path.write_text(text, encoding="utf-8")
        if first is None:
            with Workspace(":memory:") as ws:
                load_paths(ws, [path], "autotask", Settings(cycle="2026-11", currency="GBP"))
                refs = ws.con.sql("SELECT line_ref FROM lines ORDER BY row_number").fetchall()
            assert len(refs) == 2 and not [r for (r,) in refs if "None" in r]
            return
        with pytest.raises(InputError) as refused:
            read_only([path], "autotask", Settings(cycle="2026-11", currency="GBP"))
    said = str(refused.value)
    tag, fields = first
    assert said.startswith(f"{path}: the fields are attributes of <{tag}> (")
    assert fields[0] in said and "expected each field as a child element" in said
