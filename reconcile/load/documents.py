"""API JSON pages and Autotask's generic XML export: nested documents flattened to lines.

A JSON page is checked before a line is read from it, so an incomplete or malformed export is
refused (InputError, exit 2) rather than loaded as a set of false "missing line" differences:

* structure: every list, object and value the loader reads has the type the API gives it; the
  error names the file and the JSON path (`invoices[3].lines[0].net_amount`), what was expected
  and what was found. Keys repeated in one object, JSON constants (NaN, Infinity) and nesting
  deeper than any API response are refused while reading.
* completeness: Autotask's `pageDetails` (count, prevPageUrl, nextPageUrl; psa-exports.md §1.1)
  and HaloPSA's `record_count`, `page_no`, `page_size` (§2.1) must agree with the pages in hand;
  HaloPSA invoices with totals but no `lines` were listed without `includelines=true` (§2.1).
* the same records twice (a page saved twice, `page1.json` and `page1 (1).json`) are refused.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as DefusedET
import polars as pl
from defusedxml import DefusedXmlException

from reconcile.amounts import DOLLAR, DOLLAR_SIGN_CURRENCIES, ISO_CURRENCIES
from reconcile.errors import InputError
from reconcile.load.base import (
    CONSUMPTION_SHOWN,
    CUSTOMER_CURRENCY,
    EVIDENCE,
    EXCLUDE,
    FOREIGN,
    NOT_INVOICED,
    PROBLEM,
    ROW,
    SKIP,
    RawFrame,
    consumption_warning,
)
from reconcile.load.dialect import bom_codec
from reconcile.load.tabular import (
    FALSE_WORDS,
    GROUP_REASON,
    INACTIVE_REASON,
    TEMPLATE_REASON,
    TRUE_WORDS,
    UNREAD_FLAG,
    VOIDED_REASON,
)
from reconcile.model import RAW_FIELDS

Record = dict[str, Any]

# `$` is left as it is: the client's currency says which dollar, else the run's (validate).
CURRENCY_SYMBOLS = {"£": "GBP", "€": "EUR", "US$": "USD", "A$": "AUD", "C$": "CAD", "NZ$": "NZD"}

# Autotask pages nest items > userDefinedFields > field (3 levels; psa-exports.md §1.1, §1.8),
# HaloPSA invoices nest invoice > lines > line > a few sub-objects (about 5; §2.2, §2.3).
MAX_DEPTH = 32

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NUMBER_TEXT = re.compile(r'"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"')
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_AUTOTASK_ENTITY = re.compile(r"/v1\.0/(\w+)/query", re.IGNORECASE)

SCALAR = "a number, text, true/false or null"


class _Duplicated(dict[str, Any]):
    """An object in which the document repeats a key (json keeps only the last value)."""

    duplicate: str = ""


class _ConstantError(ValueError):
    pass


def read_json(path: Path) -> Any:
    """Numbers keep their exact text: money never passes through a float.

    The text is UTF-8, or what a byte-order mark names (Windows PowerShell 5.1's Out-File writes
    UTF-16 LE with a BOM). Refused while reading: text that is not valid in that encoding,
    nesting deeper than MAX_DEPTH (no API response comes near it; Python's parser would
    overflow its stack), NaN/Infinity (not JSON, and not an amount), and a key repeated in one
    object (the reader would keep only the last value: a second `invoices` array silently
    replaces the first).
    """
    file = str(path)
    data = path.read_bytes()
    codec = bom_codec(data[:4]) or "utf-8"
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        raise InputError(
            file,
            f"the file is not {codec.upper().removesuffix('-SIG')} JSON",
            expected="an API response saved as JSON: UTF-8, or UTF-16/UTF-32 with a byte-order "
            "mark (PowerShell's Out-File)",
        ) from None
    depth = _nesting(text)
    if depth > MAX_DEPTH:
        raise _too_deep(file, f"{depth} levels")
    repeated: list[bool] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        dup = _Duplicated(obj)
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                dup.duplicate = key
                break
            seen.add(key)
        repeated.append(True)
        return dup

    try:
        doc = json.loads(
            text,
            parse_float=str,
            parse_int=str,
            parse_constant=_no_constant,
            object_pairs_hook=pairs,
        )
    except _ConstantError as exc:
        raise InputError(
            file,
            f"the JSON holds the constant {exc.args[0]}, which is not a JSON number",
            expected="amounts and quantities written as numbers, as the API returns them",
            got=str(exc.args[0]),
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            file,
            f"the JSON is not well formed at line {exc.lineno}, column {exc.colno} ({exc.msg})",
            expected="a complete JSON document as the API returned it",
            hint="The file may have been cut off; save the API response again.",
        ) from None
    except RecursionError:
        raise _too_deep(file, "too many levels for the parser") from None
    if repeated:
        _refuse_repeated_key(file, doc)
    return doc


def _no_constant(name: str) -> Any:
    raise _ConstantError(name)


def _nesting(text: str) -> int:
    """How deep the document's lists and objects nest (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _too_deep(file: str, got: str) -> InputError:
    return InputError(
        file,
        f"the JSON nests lists and objects deeper than {MAX_DEPTH} levels; it was refused unread",
        expected="an Autotask or HaloPSA API response, which nests a few levels at most",
        got=got,
        hint="Save the API response again rather than using a generated or edited file.",
    )


def _refuse_repeated_key(file: str, doc: Any) -> None:
    queue: deque[tuple[str, Any]] = deque([("", doc)])
    while queue:
        path, value = queue.popleft()
        if isinstance(value, _Duplicated):
            raise InputError(
                file,
                f"the key '{value.duplicate}' appears twice in the object at {_shown(path)}; "
                "a JSON reader keeps only the last one and silently drops the other",
                expected="each key once per object, as the API writes it",
                got=_join(path, value.duplicate),
                hint="The file was edited or two responses were pasted together: save the API "
                "response again.",
            )
        if isinstance(value, dict):
            queue.extend((_join(path, k), v) for k, v in value.items())
        elif isinstance(value, list):
            queue.extend((_join(path, i), v) for i, v in enumerate(value))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _IDENT.match(key):
        return f"{path}[{json.dumps(key, ensure_ascii=False)}]"
    return f"{path}.{key}" if path else key


def _shown(path: str) -> str:
    return path or "the top level"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    return "a number or text"


def _wrong(file: str, path: str, value: Any, expected: str) -> InputError:
    """The value at a JSON path has the wrong type: file, path, expected and got."""
    return InputError(
        file,
        f"the value at {_shown(path)} is {_kind(value)}",
        expected=expected,
        got=_show(value),
        hint="The file is not the API response as the platform returns it: save it again.",
    )


def _show(value: Any) -> str:
    """The value as the file writes it (numbers were read as their text: unquote them)."""
    if isinstance(value, str):
        return value
    return _NUMBER_TEXT.sub(r"\1", json.dumps(value, ensure_ascii=False))


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class Rec:
    """One record (item, invoice, line) of a page, with the file and JSON path it came from."""

    file: str
    path: str
    data: Record

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def text(self, key: str) -> str | None:
        """A field the loader reads: a list or an object there is refused, never read as empty."""
        value = self.data.get(key)
        if isinstance(value, (dict, list)):
            raise _wrong(self.file, _join(self.path, key), value, SCALAR)
        return _text(value)

    def flag(self, key: str) -> tuple[bool, str | None]:
        """A true/false field (Autotask isVoided, psa-exports.md §1.2; HaloPSA
        is_recurring_invoice and voided, §2.2, isgroupdesc and isinactive, §2.3) read as the
        exports' flag columns are (TRUE_WORDS, FALSE_WORDS, any case): JSON true or false, a
        spelling of either as text or number ("True", 1, "0"), null or absent (false).
        (value, None), or for anything else (False, UNREAD_FLAG with the field and what it
        holds): the row is quarantined, never read as false (a voided invoice's items, an
        inactive line or a group header would be billed)."""
        text = self.text(key)
        if text is None:
            return False, None
        word = text.strip().lower()  # compared as the CSV path's _flag_text compares a cell
        if word in TRUE_WORDS:
            return True, None
        if word in FALSE_WORDS:
            return False, None
        return False, UNREAD_FLAG.format(key, text)


def _record(file: str, path: str, value: Any) -> Rec:
    if not isinstance(value, dict):
        raise _wrong(file, path, value, "an object (one record)")
    return Rec(file, path, value)


def _records(file: str, path: str, value: Any, what: str) -> list[Rec]:
    if not isinstance(value, list):
        raise _wrong(file, path, value, f"a list of {what}")
    return [_record(file, _join(path, i), v) for i, v in enumerate(value)]


def _whole(file: str, path: str, value: Any) -> int | None:
    """A count or page number (pageDetails.count §1.1; record_count, page_no, page_size §2.1);
    numbers arrive as their text (parse_int=str)."""
    if value is None:
        return None
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral() or number < 0:
        raise _wrong(file, path, value, "a whole number")
    return int(number)


def _url(file: str, path: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise _wrong(file, path, value, "a URL or null")


AUTOTASK_MARKERS = (
    ("autotask:billingitems", "extendedPrice"),
    ("autotask:invoices", "invoiceNumber"),
    ("autotask:companies", "companyName"),
    ("autotask:contracts", "contractName"),
    ("autotask:currencies", "isInternalCurrency"),
)
AUTOTASK_ENTITIES = {
    "billingitems": "autotask:billingitems",
    "invoices": "autotask:invoices",
    "companies": "autotask:companies",
    "contracts": "autotask:contracts",
    "currencies": "autotask:currencies",
}
HALOPSA_LISTS = ("invoices", "clients", "contracts", "items")


@dataclass
class Page:
    """One saved API response: its records and the paging facts it states about itself."""

    path: Path
    kind: str  # "autotask:billingitems", "halopsa:invoices", ...
    records: list[Rec]
    entity: str = ""  # Autotask entity the page belongs to (for paging)
    count: int | None = None  # Autotask pageDetails.count
    next_url: str | None = None
    prev_url: str | None = None
    record_count: int | None = None  # HaloPSA record_count (all pages of the export)
    page_no: int | None = None
    page_size: int | None = None
    listed: bool = False  # a HaloPSA list response (not a single GET /Invoice/{id})

    @property
    def file(self) -> str:
        return str(self.path)


def parse_page(path: Path, doc: Any) -> Page:
    """Name the platform entity a JSON document holds, from its envelope and field names."""
    if isinstance(doc, dict) and "pageDetails" in doc:
        return _autotask_page(path, doc)
    if isinstance(doc, dict):
        for key in HALOPSA_LISTS:
            if key in doc and ("record_count" in doc or key == "invoices"):
                return _halopsa_list(path, doc, key)
        if "lines" in doc:
            return Page(path, "halopsa:invoices", [_record(str(path), "", doc)])
    if isinstance(doc, list) and any(isinstance(d, dict) and "lines" in d for d in doc):
        return Page(path, "halopsa:invoices", _records(str(path), "", doc, "invoices"))
    raise InputError(
        str(path),
        "this JSON is not an Autotask or HaloPSA API response",
        expected="Autotask query pages ({'items': [...], 'pageDetails': {...}}) or HaloPSA "
        "invoices ({'record_count': n, 'invoices': [...]})",
    )


def _autotask_page(path: Path, doc: Record) -> Page:
    """Autotask's envelope {"items": [...], "pageDetails": {count, requestCount, prevPageUrl,
    nextPageUrl}}, at most 500 items a page (psa-exports.md §1.1)."""
    file = str(path)
    details = doc["pageDetails"]
    if not isinstance(details, dict):
        raise _wrong(
            file,
            "pageDetails",
            details,
            "an object with count, requestCount, prevPageUrl and nextPageUrl",
        )
    records = _records(file, "items", doc.get("items"), "records")
    next_url = _url(file, "pageDetails.nextPageUrl", details.get("nextPageUrl"))
    prev_url = _url(file, "pageDetails.prevPageUrl", details.get("prevPageUrl"))
    found = {kind for kind, marker in AUTOTASK_MARKERS for r in records if marker in r.data}
    entity = ""
    for url in (next_url, prev_url):
        match = _AUTOTASK_ENTITY.search(url or "")
        entity = entity or (match.group(1).lower() if match else "")
    if len(found) > 1:
        raise InputError(
            file,
            "the page mixes records of different Autotask entities",
            expected="one entity per query page (BillingItems, Invoices, Companies or Contracts)",
            got=", ".join(sorted(k.split(":")[1] for k in found)),
        )
    if found:
        kind = found.pop()
    elif entity in AUTOTASK_ENTITIES and records:
        kind = AUTOTASK_ENTITIES[entity]
    else:
        kind = "autotask:other" if records else "autotask:empty"
    return Page(
        path,
        kind,
        records,
        entity=entity or kind.split(":")[1],
        count=_whole(file, "pageDetails.count", details.get("count")),
        next_url=next_url,
        prev_url=prev_url,
    )


def _halopsa_list(path: Path, doc: Record, key: str) -> Page:
    """HaloPSA's list envelope {"record_count": n, "<entity>": [...]}, with page_no and
    page_size when paginated (pageinate=true); record_count counts every page (§2.1)."""
    file = str(path)
    return Page(
        path,
        f"halopsa:{key}",
        _records(file, key, doc[key], key),
        record_count=_whole(file, "record_count", doc.get("record_count")),
        page_no=_whole(file, "page_no", doc.get("page_no")),
        page_size=_whole(file, "page_size", doc.get("page_size")),
        listed=True,
    )


@dataclass
class Bundle:
    """The records of every page of one platform, by kind, with the files they came from."""

    files: list[Path] = field(default_factory=list)
    records: dict[str, list[Rec]] = field(default_factory=lambda: defaultdict(list))
    pages: list[Page] = field(default_factory=list)


def api_bundles(label: str, docs: list[tuple[Path, Any]]) -> list[RawFrame]:
    """All JSON pages of a load: checked complete and consistent, one RawFrame per platform."""
    bundles: dict[str, Bundle] = defaultdict(Bundle)
    for path, doc in docs:
        page = parse_page(path, doc)
        bundle = bundles[page.kind.split(":")[0]]
        bundle.files.append(path)
        bundle.pages.append(page)
        bundle.records[page.kind].extend(page.records)
    frames = []
    if "autotask" in bundles:
        bundle = bundles["autotask"]
        _check_autotask_pages(label, bundle.pages)
        if not bundle.records.get("autotask:billingitems"):
            raise InputError(
                label,
                "the Autotask API pages hold no BillingItems",
                expected="BillingItems query pages (the invoice lines)",
            )
        frames.append(autotask_bundle(label, bundle.records, tuple(bundle.files)))
    if "halopsa" in bundles:
        bundle = bundles["halopsa"]
        if not bundle.records.get("halopsa:invoices"):
            raise InputError(
                label,
                "the HaloPSA API pages hold no invoices",
                expected="an invoice list ({'invoices': [...]}) or an invoice with 'lines'",
            )
        _check_halopsa_pages(label, bundle.pages)
        frames.append(halopsa_invoices(label, bundle.records, tuple(bundle.files)))
    return frames


def _once(records: list[Rec], what: str) -> None:
    """The same record twice means a page was saved (or copied into the folder) twice."""
    seen: dict[str, Rec] = {}
    for rec in records:
        key = rec.text("id")
        if key is None:
            continue
        first = seen.setdefault(key, rec)
        if first is rec:
            continue
        where = (
            f"twice in {Path(rec.file).name} ({first.path} and {rec.path})"
            if first.file == rec.file
            else f"in both {Path(first.file).name} ({first.path}) and {Path(rec.file).name} "
            f"({rec.path})"
        )
        ids = {f: {r.text("id") for r in records if r.file == f} for f in (first.file, rec.file)}
        if first.file != rec.file and ids[first.file] != ids[rec.file]:
            raise InputError(
                rec.file,
                f"{what} id {key} appears {where}, pages that hold different {what}s: the pages "
                "overlap, as they do when records are added or removed while the pages are "
                "downloaded, and a shifted page leaves another record out",
                expected=f"each {what} once",
                hint="Download all the pages again in one go (sorted by id), and load them.",
            )
        raise InputError(
            rec.file,
            f"{what} id {key} appears {where}: the same page was saved twice, so every line on "
            "it would be counted twice",
            expected=f"each {what} once",
            hint="Remove the duplicate file (e.g. 'page1 (1).json') and load the folder again.",
        )


def _check_autotask_pages(label: str, pages: list[Page]) -> None:
    """pageDetails.count is the number of items on the page; a page with a nextPageUrl is
    followed by another page of the same entity, one with a prevPageUrl is preceded by one
    (psa-exports.md §1.1: at most 500 records a page, follow nextPageUrl)."""
    _once(
        [r for p in pages if p.kind == "autotask:billingitems" for r in p.records],
        "BillingItems item",
    )
    for page in pages:
        if page.count is not None and page.count != len(page.records):
            raise InputError(
                page.file,
                f"the Autotask page is incomplete: pageDetails.count says {page.count} records "
                f"but the page holds {len(page.records)}",
                expected=f"{page.count} items",
                got=f"{len(page.records)} items",
                hint="The file was cut short or edited: save the API response again.",
            )
    by_entity: dict[str, list[Page]] = defaultdict(list)
    for page in pages:
        by_entity[page.entity].append(page)
    for group in by_entity.values():
        with_next = [p for p in group if p.next_url]
        with_prev = [p for p in group if p.prev_url]
        name = _entity_name(group)
        if len(with_next) >= len(group) or len(with_next) > len(with_prev):
            page = with_next[-1]
            raise InputError(
                page.file,
                f"the Autotask {name} export is incomplete: {len(with_next)} of the "
                f"{len(group)} {name} page(s) name a next page (pageDetails.nextPageUrl) but no "
                f"other {name} page follows {Path(page.file).name} in what was loaded",
                expected=f"every {name} page, up to the one whose nextPageUrl is null",
                got=page.next_url,
                hint="Fetch every page: follow nextPageUrl until it is null and save each "
                "response into the folder.",
            )
        if len(with_prev) > len(with_next):
            page = with_prev[0]
            raise InputError(
                page.file,
                f"the Autotask {name} export is incomplete: {Path(page.file).name} names an "
                f"earlier page (pageDetails.prevPageUrl) that is not among the {name} pages loaded",
                expected=f"every {name} page, from the one whose prevPageUrl is null",
                got=page.prev_url,
                hint="Fetch every page from the first query and save each response into the "
                "folder.",
            )


def _entity_name(pages: list[Page]) -> str:
    kind = pages[0].kind
    names = {
        "autotask:billingitems": "BillingItems",
        "autotask:invoices": "Invoices",
        "autotask:companies": "Companies",
        "autotask:contracts": "Contracts",
        "autotask:currencies": "Currencies",
    }
    return names.get(kind, pages[0].entity)


def _check_halopsa_pages(label: str, pages: list[Page]) -> None:
    """record_count counts the records of every page of one list export; page_no runs from 1
    (psa-exports.md §2.1; HALO-PS computes the pages as ceil(record_count / page_size)).
    Invoices listed without includelines=true carry their totals but no `lines` (§2.1, §2.2)."""
    invoices = [r for p in pages if p.kind == "halopsa:invoices" for r in p.records]
    _once(invoices, "HaloPSA invoice")
    exports: dict[tuple[str, int], list[Page]] = defaultdict(list)
    for page in pages:
        if page.record_count is not None:
            exports[(page.kind, page.record_count)].append(page)
    for (kind, record_count), group in exports.items():
        _check_halopsa_export(label, kind.split(":")[1], record_count, group)
    unlisted = [r for r in invoices if _lines_missing(r) and _has_totals(r)]
    if unlisted:
        first = unlisted[0]
        raise InputError(
            first.file,
            f"the HaloPSA export is incomplete: {len(unlisted)} invoice(s) have totals but no "
            f"lines (first: {_shown(first.path)}, invoice {first.text('invoicenumber')}, "
            f"total {first.text('total')})",
            expected="each invoice with its 'lines' list",
            got="no lines" if "lines" not in first.data else json.dumps(first.get("lines")),
            hint="The invoice list was fetched without its lines: export them with "
            "includelines=true (GET /Invoice?includelines=true), or GET /Invoice/{id}?"
            "includedetails=true for one invoice.",
        )


def _check_halopsa_export(label: str, what: str, record_count: int, group: list[Page]) -> None:
    held = sum(len(p.records) for p in group)
    numbers = sorted(p.page_no for p in group if p.page_no is not None)
    names = ", ".join(Path(p.file).name for p in group)
    file = group[0].file if len(group) == 1 else label
    size = next((p.page_size for p in group if p.page_size), None)
    if numbers:
        last = max(numbers[-1], math.ceil(record_count / size) if size else 0)
        missing = sorted(set(range(1, last + 1)) - set(numbers))
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        if twice:
            raise InputError(
                file,
                f"HaloPSA page_no {twice[0]} of the {what} export is loaded twice ({names})",
                expected="each page once",
                hint="Remove the duplicate page and load the folder again.",
            )
        if missing:
            raise InputError(
                file,
                f"the HaloPSA {what} export is incomplete: page_no "
                f"{', '.join(map(str, missing))} of {last} is missing (record_count says "
                f"{record_count} {what}; pages loaded: {names})",
                expected=f"pages 1 to {last}",
                got=", ".join(map(str, numbers)),
                hint=f"Fetch every page (page_no 1 to {last}) or pass pageinate=false.",
            )
    if held != record_count:
        holds = "the file holds" if len(group) == 1 else f"the {len(group)} pages ({names}) hold"
        raise InputError(
            file,
            f"the HaloPSA {what} export is incomplete: HaloPSA's record_count says "
            f"{record_count} {what} but {holds} {held}",
            expected=f"{record_count} {what}",
            got=str(held),
            hint="Fetch every page (pageinate=true&page_size=…&page_no=1, 2, … up to "
            "record_count ÷ page_size) or pass pageinate=false, and save each response.",
        )


def _lines_missing(invoice: Rec) -> bool:
    lines = invoice.get("lines")
    return lines is None or lines == []


def _has_totals(invoice: Rec) -> bool:
    for key in ("total", "subtotal", "tax_total"):
        text = invoice.text(key)
        if text is None:
            continue
        try:
            if Decimal(text) != 0:
                return True
        except InvalidOperation:
            return True
    return False


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """The bundle's rows (ROW, RAW_FIELDS, EXCLUDE and, where a row has one, PROBLEM and
    FOREIGN)."""
    schema = {ROW: pl.Int64, **dict.fromkeys(RAW_FIELDS, pl.String), EXCLUDE: pl.String}
    schema[PROBLEM] = pl.String
    schema[FOREIGN] = pl.Boolean
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return frame.with_columns(pl.lit(None, pl.String).alias(SKIP))


def _index(records: list[Rec], key: str = "id") -> dict[str, Rec]:
    return {k: r for r in records if (k := r.text(key)) is not None}


EMPTY = Rec("", "", {})


def _invoice_totals(rows: list[tuple[str | None, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"invoice_number": pl.String, "total": pl.String, "tax": pl.String},
        orient="row",
    )


def autotask_bundle(file: str, docs: dict[str, list[Rec]], files: tuple[Path, ...]) -> RawFrame:
    """BillingItems pages, with Invoices, Companies and Contracts pages resolving names
    (psa-exports.md §1.2-1.4, §1.8; invoiceID 0 is a posted item not yet invoiced, §1.1)."""
    items = docs.get("autotask:billingitems", [])
    _refuse_without_invoices(file, items, docs)
    invoices = _index(docs.get("autotask:invoices", []))
    companies = _index(docs.get("autotask:companies", []))
    contracts = _index(docs.get("autotask:contracts", []))
    currency_of = CustomerCurrencies.of(items, companies, docs.get("autotask:currencies", []))
    rows = []
    consumed: list[Rec] = []
    for number, item in enumerate(items, start=1):
        invoice_id = item.text("invoiceID")
        invoice = invoices.get(invoice_id or "", EMPTY)
        contract = contracts.get(item.text("contractID") or "", EMPTY)
        exclude = None
        currency, unnamed = currency_of(item)
        problems = [unnamed] if unnamed else []
        if invoice_id in (None, "0"):
            exclude = f"{NOT_INVOICED} (invoiceID 0)"
        elif invoice is EMPTY:
            problems.append(
                f"its invoice (invoiceID {invoice_id}) is in none of the Invoices pages: "
                "whether it was voided, and its number and date, are unknown"
            )
        else:
            voided, unread = invoice.flag("isVoided")
            if voided:
                exclude = "Autotask billing item on a voided invoice"
            elif unread:
                problems.append(unread)
        net = carried_net(item.text("extendedPrice"), item.text("totalAmount"))
        if net != item.text("extendedPrice"):
            consumed.append(item)
        rows.append(
            {
                ROW: number,
                "line_ref": item.text("id"),
                "invoice_number": invoice.text("invoiceNumber") or invoice_id,
                "invoice_date": _date_part(invoice.text("invoiceDateTime")),
                "client_id": item.text("companyID"),
                "client_name": companies.get(item.text("companyID") or "", EMPTY).text(
                    "companyName"
                ),
                "contract_id": item.text("contractID"),
                "contract_name": contract.text("contractName"),
                "contract_type": contract.text("contractType"),
                "item_code": item.text("serviceID")
                or item.text("serviceBundleID")
                or item.text("billingCodeID"),
                "item_name": item.text("itemName"),
                "description": item.text("description"),
                "quantity": item.text("quantity"),
                "unit_price": item.text("rate"),
                "net_amount": net,
                "tax_amount": item.text("taxDollars"),
                "currency": currency,
                EXCLUDE: exclude,
                PROBLEM: "; ".join(problems) or None,
                FOREIGN: unnamed is not None,
            }
        )
    totals = [
        (inv.text("invoiceNumber"), inv.text("invoiceTotal"), inv.text("totalTaxValue"))
        for inv in invoices.values()
    ]
    return RawFrame(
        file=file,
        platform="autotask",
        shape="autotask-api",
        frame=_frame(rows).lazy(),
        columns=_api_columns(AUTOTASK_API_COLUMNS),
        files=files,
        dates_iso=True,
        invoice_totals=_invoice_totals(totals),
        warnings=consumption_warning(
            len(consumed),
            [
                (r.text("id"), r.text("itemName") or r.text("description"), r.text("extendedPrice"))
                for r in consumed[:CONSUMPTION_SHOWN]
            ],
            "totalAmount",
            "extendedPrice",
        ),
    )


@dataclass(frozen=True)
class CustomerCurrencies:
    """The currency of each Autotask billing item, where the export says it (psa-exports.md
    §1.3: with multi-currency on, extendedPrice, rate, taxDollars and totalAmount are in the
    customer's currency, internalCurrency* in the home one; §1.8 Companies.currencyID; §1.9
    Currencies: id, name, isInternalCurrency).

    `names`: Currencies id -> name (its ISO code); `home`: the ids marked isInternalCurrency;
    `company_currency`: company id -> currencyID; `foreign`: the companies billed in another
    currency than the home one, as their items' amounts or their currencyID show.
    """

    names: dict[str, str]
    home: frozenset[str]
    company_currency: dict[str, str]
    foreign: frozenset[str]
    company_names: dict[str, str]

    @classmethod
    def of(
        cls, items: list[Rec], companies: dict[str, Rec], currencies: list[Rec]
    ) -> CustomerCurrencies:
        listed = _index(currencies)
        names = {k: n for k, c in listed.items() if (n := c.text("name"))}
        # A spelling of true as flag() reads it ("True", 1); a value that is none is no home:
        # then a company billed in it unnamed is away from home and quarantined, not taken
        # for --currency.
        home = frozenset(k for k, c in listed.items() if c.flag("isInternalCurrency")[0])
        company_currency = {k: c for k, r in companies.items() if (c := r.text("currencyID"))}
        # A currency id one company is shown billed in away from home is away from home for all.
        converted = {c for i in items if (c := i.text("companyID")) and _converted(i)}
        away = {company_currency[c] for c in converted if c in company_currency}
        away |= {c for c in company_currency.values() if home and c not in home}
        foreign = converted | {k for k, c in company_currency.items() if c in away}
        company_names = {k: n for k, r in companies.items() if (n := r.text("companyName"))}
        return cls(names, home, company_currency, frozenset(foreign), company_names)

    def __call__(self, item: Rec) -> tuple[str | None, str | None]:
        """(the item's currency, or None for the run's --currency; a quarantine reason, or
        None). Named: Currencies' name for the company's currencyID. Not named and billed away
        from home: quarantined, as --currency names the home currency."""
        company = item.text("companyID") or ""
        currency_id = self.company_currency.get(company)
        if currency_id in self.names:
            return self.names[currency_id], None
        if company not in self.foreign:
            return None, None
        shown = f"currencyID {currency_id}" if currency_id else "no currencyID in Companies"
        name = f" ({self.company_names[company]})" if company in self.company_names else ""
        amounts = EVIDENCE.format(
            "extendedPrice",
            item.text("extendedPrice") or "(none)",
            "internalCurrencyExtendedPrice",
            item.text("internalCurrencyExtendedPrice") or "(none)",
        )
        return None, CUSTOMER_CURRENCY.format(
            f"company {company}{name}",
            f"{shown}; {amounts}",
            "Save the Currencies query pages (/V1.0/Currencies) and the Companies pages beside "
            "the BillingItems pages, so its currency can be read",
        )


def _converted(item: Rec) -> bool:
    """The item's extendedPrice and internalCurrencyExtendedPrice differ: a customer currency
    other than the home one (both must be numbers; an absent one shows nothing)."""
    try:
        extended = Decimal(item.text("extendedPrice") or "")
        internal = Decimal(item.text("internalCurrencyExtendedPrice") or "")
    except InvalidOperation:
        return False
    return extended != internal


def carried_net(extended: str | None, total: str | None) -> str | None:
    """The net of an Autotask billing item: what reached the invoice (psa-exports.md §1.3, §3
    "Prepaid"). An item whose totalAmount is 0 while its extendedPrice is not is prepaid
    consumption (block-hours labour, or a non-billable item): nothing is billed, so its net is
    "0". Otherwise (totalAmount absent, unreadable or not 0) the extendedPrice as written."""
    if _is_zero(total) and not _is_zero(extended) and extended is not None:
        return "0"
    return extended


def _is_zero(text: str | None) -> bool:
    """`text` is a number equal to 0 ("0.0000", "0", "-0.00"); None and non-numbers are not."""
    try:
        return text is not None and Decimal(text) == 0
    except InvalidOperation:
        return False


def _refuse_without_invoices(file: str, items: list[Rec], docs: dict[str, list[Rec]]) -> None:
    """BillingItems pages on invoices (invoiceID not 0) need the Invoices pages beside them:
    only an invoice says it was voided (isVoided, §1.2), and gives the number and date the
    cycle check reads. Without any, a voided invoice's items would load as billed (InputError);
    an item whose invoice the pages lack is quarantined instead (autotask_bundle)."""
    if "autotask:invoices" in docs:
        return
    named = sorted({i for item in items if (i := item.text("invoiceID")) not in (None, "0")})
    if named:
        listed = ", ".join(named[:3]) + (f" and {len(named) - 3:,} more" if len(named) > 3 else "")
        raise InputError(
            file,
            f"the BillingItems pages are on invoices ({listed}) but no Invoices page is given: "
            "without it a voided invoice's items cannot be told from billed ones, and the "
            "invoices' numbers and dates are unknown",
            expected="the Invoices pages (Invoices.json) beside the BillingItems pages",
            hint="Query /V1.0/Invoices for the invoices the items name and save the pages in "
            "the same folder.",
        )


AUTOTASK_API_COLUMNS = {
    "line_ref": "id",
    "client_id": "companyID",
    "contract_id": "contractID",
    "item_code": "serviceID",
    "item_name": "itemName",
    "description": "description",
    "quantity": "quantity",
    "unit_price": "rate",
    "net_amount": "extendedPrice",
    "tax_amount": "taxDollars",
    "invoice_date": "Invoices.invoiceDateTime",
    "period_start": "itemName [period start]",
    "period_end": "itemName [period end]",
}

HALOPSA_API_COLUMNS = {
    "line_ref": "lines.id",
    "invoice_date": "invoice_date",
    "client_id": "client_id",
    "item_code": "lines._itemid",
    "description": "lines.item_shortdescription",
    "quantity": "lines.qty_order",
    "unit_price": "lines.unit_price",
    "net_amount": "lines.net_amount",
    "tax_amount": "lines.tax_amount",
    "period_start": "lines.startdate",
    "period_end": "lines.enddate",
    "currency": "currency",
}


def _api_columns(columns: dict[str, str]) -> dict[str, str]:
    return {f: columns.get(f, f) for f in RAW_FIELDS}


def _date_part(value: Any) -> str | None:
    """The date of an Autotask date value, YYYY-MM-DD. Autotask stores dates as UTC midnights
    (psa-exports.md §1.1); the REST API writes them with `Z`, SOAP and the XML export in US
    Eastern time with its offset (2026-10-31T20:00:00-04:00 is 2026-11-01T00:00Z): a datetime
    with an offset is converted to UTC before its date is taken. Anything else keeps its first
    ten characters (validation refuses them if they are no date)."""
    text = _text(value)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text[:10]
    if moment.tzinfo is None:
        return text[:10]
    return moment.astimezone(UTC).date().isoformat()


def _halo_id(text: str | None) -> str | None:
    """Halo writes -1 or 0 for 'none' in id fields (psa-exports.md §2.1, null sentinels)."""
    return None if text in (None, "-1", "0") else text


def halopsa_invoices(file: str, docs: dict[str, list[Rec]], files: tuple[Path, ...]) -> RawFrame:
    """Invoice lists or single invoices with their lines; client/contract/item pages add ids
    (GET /Invoice list and GET /Invoice/{id} shapes, psa-exports.md §2.1; Autotask ids kept on
    clients, contracts and items, §2.8)."""
    clients = _index(docs.get("halopsa:clients", []))
    contracts = _index(docs.get("halopsa:contracts", []))
    items = _index(docs.get("halopsa:items", []))
    rows: list[dict[str, Any]] = []
    totals = []
    for invoice in docs.get("halopsa:invoices", []):
        totals.append(
            (invoice.text("invoicenumber"), invoice.text("total"), invoice.text("tax_total"))
        )
        rows.extend(_halo_lines(invoice, clients, contracts, items, start=len(rows) + 1))
    return RawFrame(
        file=file,
        platform="halopsa",
        shape="halopsa-api",
        frame=_frame(rows).lazy(),
        columns=_api_columns(HALOPSA_API_COLUMNS),
        files=files,
        dates_iso=True,
        dialect={"datetimes": "naive UTC"},
        invoice_totals=_invoice_totals(totals),
    )


def _halo_lines(
    invoice: Rec,
    clients: dict[str, Rec],
    contracts: dict[str, Rec],
    items: dict[str, Rec],
    start: int,
) -> Iterator[dict[str, Any]]:
    """An invoice's `lines` (InvoiceDetail, psa-exports.md §2.3): a list of objects or absent."""
    lines_value = invoice.get("lines")
    path = _join(invoice.path, "lines")
    lines = [] if lines_value is None else _records(invoice.file, path, lines_value, "lines")
    client_id = _halo_id(invoice.text("client_id"))
    client = clients.get(client_id or "", EMPTY)
    currency, currency_problem = _halo_currency(invoice, client)
    invoice_id = invoice.text("id") or ""
    invoice_exclude = None
    template, template_unread = invoice.flag("is_recurring_invoice")
    voided, voided_unread = invoice.flag("voided")
    if invoice_id.startswith("-") or template:
        invoice_exclude = TEMPLATE_REASON
    elif voided:
        invoice_exclude = VOIDED_REASON
    for offset, line in enumerate(lines):
        contract_id = _halo_id(line.text("contract_id")) or _halo_id(invoice.text("contract_id"))
        contract = contracts.get(contract_id or "", EMPTY)
        item = items.get(_halo_id(line.text("_itemid")) or "", EMPTY)
        group, group_unread = line.flag("isgroupdesc")
        inactive, inactive_unread = line.flag("isinactive")
        exclude = invoice_exclude
        if exclude is None and group:
            exclude = GROUP_REASON
        elif exclude is None and inactive:
            exclude = INACTIVE_REASON
        # An excluded row's problems are not its reasons (validate reads them on billable rows
        # only), as in the CSV reports: an inactive line is not billed whatever else it holds.
        problems = [currency_problem, template_unread, voided_unread, group_unread, inactive_unread]
        yield {
            ROW: start + offset,
            "line_ref": line.text("id"),
            "invoice_number": invoice.text("invoicenumber"),
            "invoice_date": invoice.text("invoice_date"),
            "client_id": client_id,
            "client_name": invoice.text("client_name") or client.text("name"),
            "contract_id": contract_id,
            "contract_name": contract.text("ref") or invoice.text("contract_ref"),
            "contract_type": contract.text("contract_type"),
            "item_code": _halo_id(line.text("_itemid")),
            "item_name": item.text("name") or line.text("item_code"),
            "description": line.text("item_shortdescription"),
            "quantity": line.text("qty_order"),
            "unit_price": line.text("unit_price"),
            "net_amount": line.text("net_amount"),
            "tax_amount": line.text("tax_amount"),
            "currency": currency,
            "period_start": line.text("startdate"),
            "period_end": line.text("enddate"),
            "xref_client_id": _halo_id(client.text("autotaskid")),
            "xref_contract_id": _halo_id(contract.text("autotaskid")),
            "xref_item_id": _halo_id(item.text("autotaskserviceid"))
            or _halo_id(item.text("autotaskproductid")),
            EXCLUDE: exclude,
            PROBLEM: "; ".join(p for p in problems if p) or None,
        }


# Currency names as HaloPSA writes them (invoice currency_code_name, client
# default_currency_code_name; psa-exports.md §2.2, §2.7) for the currencies whose symbol is no
# code: 'R', 'kr', 'zł', '₹', 'Fr.' and the symbols CURRENCY_SYMBOLS reads.
CURRENCY_NAMES = {
    "british pound sterling": "GBP", "pound sterling": "GBP", "euro": "EUR",
    "us dollar": "USD", "australian dollar": "AUD", "canadian dollar": "CAD",
    "new zealand dollar": "NZD", "south african rand": "ZAR", "swedish krona": "SEK",
    "norwegian krone": "NOK", "danish krone": "DKK", "icelandic krona": "ISK",
    "polish zloty": "PLN", "polish złoty": "PLN", "indian rupee": "INR", "swiss franc": "CHF",
}  # fmt: skip


def _halo_currency(invoice: Rec, client: Rec) -> tuple[str | None, str | None]:
    """(the invoice's currency, a quarantine reason or None). The header holds a symbol
    (psa-exports.md §2.2, §2.11), the ISO code lives on the client (§2.7): a known symbol
    (CURRENCY_SYMBOLS) or a three-letter code is read as written; `$` takes the client's
    dollar currency (else validate's); any other symbol the client's currencyisocode, else the
    invoice's (or client's) currency name. A symbol nothing names is quarantined, shown."""
    symbol = invoice.text("currency")
    code = client.text("currencyisocode")
    if symbol == DOLLAR:
        return (code if code in DOLLAR_SIGN_CURRENCIES else symbol), None
    if symbol is None or symbol in CURRENCY_SYMBOLS or symbol.upper() in ISO_CURRENCIES:
        return CURRENCY_SYMBOLS.get(symbol or "", symbol) or code, None
    names = (invoice.text("currency_code_name"), client.text("default_currency_code_name"))
    named = next(
        (CURRENCY_NAMES[n.lower()] for n in names if n and n.lower() in CURRENCY_NAMES), None
    )
    if code or named:
        return code or named, None
    return None, (
        f"the invoice's currency is written '{symbol}', a symbol that names no one currency, "
        "and neither its client's currencyisocode nor a currency name beside it says which: "
        "save the clients pages (GET /Client, with currencyisocode) beside the invoices, or "
        "export the invoices with their currency_code_name"
    )


XML_NS = "{http://tempuri.org/invoice_batch_generic.xsd}"
# The child elements autotask_xml reads, per element (psa-exports.md §1.12a: the generic XML
# export's element inventory; its fields are child elements, never attributes).
XML_FIELDS = {
    "account": ("account_id", "cust_name"),
    "invoice": ("invoice_id", "invoice_number", "invoice_date", "invoice_total", "total_tax_value"),
    "invoice_item": (
        "item_id", "invoice_id", "invoice_item_id", "contract_name", "contract_type",
        "service_or_bundle_id", "allocation_code_id", "item_name", "service_invoice_description",
        "time_entry_summary_notes", "quantity", "hourly_billing_rate", "extended_price",
        "total_tax_amount", "service_period_start_date", "service_period_end_date",
    ),
}  # fmt: skip


def _refuse_attributes(path: Path, node: ET.Element, tag: str) -> None:
    """An export converted to another XML form (<invoice_item item_id="31207" .../>) is refused:
    its values are attributes, which the export never writes (XML_FIELDS), so every field read
    as a child element would be empty and every item "posted but not invoiced"."""
    found = [name for name in node.attrib if name.rpartition("}")[2] in XML_FIELDS[tag]]
    if not found:
        return
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    first = found[0].rpartition("}")[2]
    raise InputError(
        str(path),
        f"the fields are attributes of <{tag}> ({shown}), not child elements as Autotask's "
        "generic XML export writes them, so none of them could be read",
        expected=f"each field as a child element, <{tag}><{first}>…</{first}>…</{tag}>",
        got=f'<{tag} {first}="{node.attrib[found[0]]}" …>',
        hint="Export the invoices from Autotask again rather than using a converted copy.",
    )


def autotask_xml(path: Path) -> RawFrame:
    """Autotask's generic XML invoice export (invoice_batch_generic)."""
    try:
        root = DefusedET.fromstring(path.read_bytes())
    except DefusedXmlException:
        raise InputError(
            str(path),
            "the XML declares entities (a DOCTYPE with <!ENTITY ...>), which Autotask's export "
            "never does; it was refused unread, as entities can expand without limit",
            expected="Autotask's generic XML invoice export",
            hint="Export the invoices from Autotask again rather than using an edited copy.",
        ) from None
    except ET.ParseError as exc:
        raise InputError(
            str(path),
            f"the XML is not well formed ({exc})",
            expected="Autotask's generic XML invoice export",
            hint="The file may have been cut off or edited by hand; export it again.",
        ) from None
    ns = XML_NS if root.tag.startswith(XML_NS) else ""
    if root.tag != f"{ns}invoice_batch_generic":
        raise InputError(
            str(path),
            "this XML is not an Autotask invoice export",
            expected="root element <invoice_batch_generic>",
            got=f"<{root.tag.removeprefix(ns)}>",
        )

    def get(node: ET.Element, tag: str) -> str | None:
        return _text(node.findtext(f"{ns}{tag}"))

    rows: list[dict[str, Any]] = []
    totals = []
    for account in root.iter(f"{ns}account"):
        _refuse_attributes(path, account, "account")
        for invoice in account.iter(f"{ns}invoice"):
            _refuse_attributes(path, invoice, "invoice")
            number = get(invoice, "invoice_number") or get(invoice, "invoice_id")
            totals.append((number, get(invoice, "invoice_total"), get(invoice, "total_tax_value")))
            for item in invoice.iter(f"{ns}invoice_item"):
                _refuse_attributes(path, item, "invoice_item")
                ref = get(item, "item_id")
                invoice_id, item_id = get(item, "invoice_id"), get(item, "invoice_item_id")
                if ref is None and invoice_id is not None and item_id is not None:
                    ref = f"{invoice_id}.{item_id}"  # never built from a field that is absent
                rows.append(
                    {
                        ROW: len(rows) + 1,
                        "line_ref": ref,
                        "invoice_number": number,
                        "invoice_date": _date_part(get(invoice, "invoice_date")),
                        "client_id": get(account, "account_id"),
                        "client_name": get(account, "cust_name"),
                        "contract_name": get(item, "contract_name"),
                        "contract_type": get(item, "contract_type"),
                        "item_code": get(item, "service_or_bundle_id")
                        or get(item, "allocation_code_id"),
                        "item_name": get(item, "item_name"),
                        "description": get(item, "service_invoice_description")
                        or get(item, "time_entry_summary_notes"),
                        "quantity": get(item, "quantity"),
                        "unit_price": get(item, "hourly_billing_rate"),
                        "net_amount": get(item, "extended_price"),
                        "tax_amount": get(item, "total_tax_amount"),
                        "period_start": _date_part(get(item, "service_period_start_date")),
                        "period_end": _date_part(get(item, "service_period_end_date")),
                        EXCLUDE: None,
                    }
                )
    if not rows:
        raise InputError(
            str(path), "the XML export holds no invoice items", expected="<invoice_item> elements"
        )
    columns = {f: f for f in RAW_FIELDS} | {
        "line_ref": "item_id",
        "client_id": "account_id",
        "client_name": "cust_name",
        "item_code": "service_or_bundle_id",
        "description": "service_invoice_description",
        "unit_price": "hourly_billing_rate",
        "net_amount": "extended_price",
        "tax_amount": "total_tax_amount",
        "period_start": "service_period_start_date",
        "period_end": "service_period_end_date",
    }
    return RawFrame(
        file=str(path),
        platform="autotask",
        shape="autotask-xml",
        frame=_frame(rows).lazy(),
        columns=columns,
        files=(path,),
        dates_iso=True,
        invoice_totals=_invoice_totals(totals),
    )
