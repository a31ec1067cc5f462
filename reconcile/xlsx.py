"""discrepancies.xlsx: one sheet of SpreadsheetML written directly, its rows built by polars.

XlsxWriter spends some 20 µs of Python on every cell: 165,000 discrepancies of 34 columns took
two and a half minutes. Here the sheet's XML is made a block of rows at a time by polars string
expressions (no Python loop over rows or cells) and streamed into the archive; the other parts
of the workbook are a few fixed lines. Text goes in inline strings (<is>), numbers as their
exact decimal text, every member of the archive with a fixed timestamp: the same frame gives
the same bytes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import polars as pl

from reconcile.safe import cell_expr

# Columns of the discrepancy outputs written as numbers in the workbook: money with the row's
# currency code, quantities and prices with four places.
MONEY_COLUMNS = frozenset(
    {
        "autotask_amount", "halopsa_amount", "difference", "autotask_net", "autotask_tax",
        "autotask_gross", "halopsa_net", "halopsa_tax", "halopsa_gross", "net_difference",
        "tax_difference", "gross_difference", "exposure",
    }
)  # fmt: skip
FOUR_PLACES = frozenset(
    {"autotask_quantity", "halopsa_quantity", "autotask_unit_price", "halopsa_unit_price"}
)
XLSX_BLOCK = 20_000  # rows turned into sheet XML at a time (bounds the memory used)
XLSX_TEXT_LIMIT = 32_767  # characters Excel keeps in one cell
XLSX_LEVEL = 1  # deflate level: the sheet is mostly markup, compressed 8-10x even at 1
# Excel's escape for characters XML 1.0 cannot carry (_xHHHH_), and for text that already
# looks like one (its underscore written _x005F_).
XML_UNSAFE = "[\x00-\x08\x0b-\x1f\ufffe\uffff]"
UNSAFE_CHARS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0xFFFE, 0xFFFF)]
XLSX_DATE = (1980, 1, 1, 0, 0, 0)  # every member's timestamp: the same run gives the same bytes
XLSX_CREATED = "2000-01-01T00:00:00Z"
NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
PAGE_MARGINS = (
    '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
)
# Cell styles (cellXfs): 0 default, 1 header (bold, bottom border), 2 four places, 3 money
# without a currency code, 4… money in each currency of the sheet.
STYLE_HEADER, STYLE_PLACES, STYLE_MONEY = 1, 2, 3


def write_xlsx(frame: pl.DataFrame, path: Path, sheet: str = "Discrepancies") -> None:
    """The discrepancy table as the workbook finance opens: a frozen header row with filters;
    money as numbers formatted with the row's currency code (`1,234.50 GBP`), quantities and
    unit prices as numbers to four places; every text cell written as text (never a formula),
    and text a spreadsheet would run as one prefixed `'` as in the CSV (safe.cell).

    `frame`: the columns of run.OUTPUT_COLUMNS (money Decimal(18,2) in the row's `currency`).
    Numbers are written as their exact decimal text; a spreadsheet reads them as IEEE doubles,
    exact to the cent for any invoice amount. The sheet's XML is built by polars a block of rows
    at a time (no Python loop over rows or cells) and streamed into the archive."""
    codes = (
        frame["currency"].drop_nulls().unique().sort().to_list()
        if "currency" in frame.columns
        else []
    )
    codes = [c for c in codes if c.isascii() and c.isalpha()]
    money_style = {code: STYLE_MONEY + 1 + i for i, code in enumerate(codes)}
    last = _column_letter(len(frame.columns) - 1)
    span = f"A1:{last}{max(frame.height, 1) + 1}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=XLSX_LEVEL) as book:
        for name, text in _xlsx_parts(sheet, span, codes).items():
            book.writestr(_member(name), text.encode("utf-8"))
        big = frame.height > 500_000  # zip64 only where the sheet could pass 2 GiB
        with book.open(_member("xl/worksheets/sheet1.xml"), "w", force_zip64=big) as out:
            out.write(_sheet_head(frame.columns, span).encode("utf-8"))
            header = pl.DataFrame({name: [name] for name in frame.columns})
            out.write(_sheet_rows(header, 1, header=True, money_style={}).encode("utf-8"))
            for offset in range(0, frame.height, XLSX_BLOCK):
                block = frame.slice(offset, XLSX_BLOCK)
                out.write(_sheet_rows(block, offset + 2, False, money_style).encode("utf-8"))
            out.write(f'</sheetData><autoFilter ref="{span}"/>{PAGE_MARGINS}</worksheet>'.encode())


def _member(name: str) -> zipfile.ZipInfo:
    """A member of the archive with a fixed timestamp, deflated at XLSX_LEVEL."""
    info = zipfile.ZipInfo(name, date_time=XLSX_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    # An explicit ZipInfo does not take the archive's level: Python 3.13 names the field
    # compress_level, 3.11 and 3.12 _compresslevel.
    level = "compress_level" if hasattr(info, "compress_level") else "_compresslevel"
    setattr(info, level, XLSX_LEVEL)
    return info


def _column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


# What a block's text column may need, each tested once per block.
TEXT_CHECKS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "long": lambda t: (t.str.len_chars() > XLSX_TEXT_LIMIT).any(),
    "unsafe": lambda t: t.str.contains(XML_UNSAFE).any(),
    "markup": lambda t: t.str.contains("[&<>]").any(),
    "spaced": lambda t: t.str.contains(r"^\s|\s$").any(),
}


def _xml_text(text: pl.Expr, needs: dict[str, bool]) -> tuple[pl.Expr, str]:
    """Text as the content of a <t> element, and the element's opening tag: cut to Excel's
    limit, Excel's _xHHHH_ escapes for characters XML cannot carry, then &, <, >; whitespace
    kept where a value starts or ends with it. Each step only where `needs` says so."""
    if needs["long"]:
        text = text.str.slice(0, XLSX_TEXT_LIMIT)
    if needs["unsafe"]:
        text = text.str.replace_all(r"(_x[0-9A-Fa-f]{4}_)", "_x005F$1")
        for char in UNSAFE_CHARS:
            text = text.str.replace_all(char, f"_x{ord(char):04X}_", literal=True)
    if needs["markup"]:
        for char, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
            text = text.str.replace_all(char, escaped, literal=True)
    return text, '<t xml:space="preserve">' if needs["spaced"] else "<t>"


def _sheet_rows(
    block: pl.DataFrame, first_row: int, header: bool, money_style: dict[str, int]
) -> str:
    """The <row> elements of a block of rows, numbered from first_row (1-based); `header`: the
    block is the header row (bold, every cell text, as given)."""
    row = pl.int_range(first_row, first_row + block.height).cast(pl.String)
    texts = {
        name: pl.col(name)
        if header
        else cell_expr(name)
        if dtype == pl.String
        else pl.col(name).cast(pl.String)
        for name, dtype in block.schema.items()
        if header or not (name in MONEY_COLUMNS or name in FOUR_PLACES)
    }
    checks = block.select(
        check(text).alias(f"{name}\0{kind}")
        for name, text in texts.items()
        for kind, check in TEXT_CHECKS.items()
    ).row(0, named=True)
    cells = []
    for index, name in enumerate(block.columns):
        at = [pl.lit(f'<c r="{_column_letter(index)}'), row]
        if name not in texts:
            cells.append(_number_cell(block, name, at, money_style))
            continue
        needs = {kind: bool(checks[f"{name}\0{kind}"]) for kind in TEXT_CHECKS}
        content, tag = _xml_text(texts[name], needs)
        style = f' s="{STYLE_HEADER}"' if header else ""
        opening = pl.lit(f'"{style} t="inlineStr"><is>{tag}')
        shown = pl.when(texts[name] != "").then(content)
        cells.append(pl.concat_str([*at, opening, shown, pl.lit("</t></is></c>")]))
    rows = pl.concat_str(
        [pl.lit('<row r="'), row, pl.lit('">'), *cells, pl.lit("</row>")], ignore_nulls=True
    )
    joined: str = block.select(rows.str.join("")).item()
    return joined


def _number_cell(
    block: pl.DataFrame, name: str, at: list[pl.Expr], money_style: dict[str, int]
) -> pl.Expr:
    """A number cell (null where the value is): money styled by the row's currency."""
    style: pl.Expr = pl.lit(str(STYLE_PLACES))
    if name in MONEY_COLUMNS:
        currency = pl.col("currency") if "currency" in block.columns else pl.lit(None, pl.String)
        style = currency.replace_strict(
            money_style, default=STYLE_MONEY, return_dtype=pl.Int64
        ).cast(pl.String)
    value = pl.col(name).cast(pl.String)
    return pl.concat_str([*at, pl.lit('" s="'), style, pl.lit('"><v>'), value, pl.lit("</v></c>")])


def _sheet_head(columns: list[str], span: str) -> str:
    widths = "".join(
        f'<col min="{i}" max="{i}" width="{_width(name) + 0.7109375}" customWidth="1"/>'
        for i, name in enumerate(columns, start=1)
    )
    return (
        f'{XML_HEAD}<worksheet xmlns="{NS_MAIN}" xmlns:r="{NS_REL}"><dimension ref="{span}"/>'
        '<sheetViews><sheetView tabSelected="1" workbookViewId="0"><pane ySplit="1" '
        'topLeftCell="A2" activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft"/>'
        '</sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/>'
        f"<cols>{widths}</cols><sheetData>"
    )


def _width(name: str) -> int:
    return 60 if name == "message" else max(12, min(len(name) + 2, 30))


OFFICE = "application/vnd.openxmlformats-officedocument"
PARTS = (  # (name, content type) of every part; the sheet is written on its own
    ("/docProps/app.xml", f"{OFFICE}.extended-properties+xml"),
    ("/docProps/core.xml", "application/vnd.openxmlformats-package.core-properties+xml"),
    ("/xl/styles.xml", f"{OFFICE}.spreadsheetml.styles+xml"),
    ("/xl/workbook.xml", f"{OFFICE}.spreadsheetml.sheet.main+xml"),
    ("/xl/worksheets/sheet1.xml", f"{OFFICE}.spreadsheetml.worksheet+xml"),
)
RELS = "application/vnd.openxmlformats-package.relationships+xml"
CORE = "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties"


def _rels(*targets: tuple[str, str]) -> str:
    links = "".join(
        f'<Relationship Id="rId{i}" Type="{kind}" Target="{target}"/>'
        for i, (kind, target) in enumerate(targets, start=1)
    )
    return f'{XML_HEAD}<Relationships xmlns="{NS_PKG}">{links}</Relationships>'


def _xlsx_parts(sheet: str, span: str, codes: list[str]) -> dict[str, str]:
    """Every part of the workbook but the sheet: package, properties, workbook, styles (the
    money formats: without a code, then one per currency code of the sheet)."""
    overrides = "".join(f'<Override PartName="{n}" ContentType="{t}"/>' for n, t in PARTS)
    name = sheet.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    start, end = (_cell_parts(ref) for ref in span.split(":"))
    quoted = "'" + sheet.replace("'", "''") + "'"
    filtered = f"{quoted}!${start[0]}${start[1]}:${end[0]}${end[1]}".replace("&", "&amp;")
    money = ["#,##0.00;-#,##0.00"] + [f'#,##0.00 "{c}";-#,##0.00 "{c}"' for c in codes]
    formats = "".join(
        f'<numFmt numFmtId="{164 + i}" formatCode="{code.replace(chr(34), "&quot;")}"/>'
        for i, code in enumerate(["#,##0.0000", *money])
    )
    plain = 'fontId="0" fillId="0" borderId="0" xfId="0"'
    xfs = [
        f'<xf numFmtId="0" {plain}/>',
        '<xf numFmtId="0" fontId="1" fillId="0" borderId="1" xfId="0" applyFont="1" '
        'applyBorder="1"/>',
        *(
            f'<xf numFmtId="{164 + i}" {plain} applyNumberFormat="1"/>'
            for i in range(len(money) + 1)
        ),
    ]
    font = '<sz val="11"/><name val="Calibri"/><family val="2"/>'
    created = f'xsi:type="dcterms:W3CDTF">{XLSX_CREATED}'
    return {
        "[Content_Types].xml": (
            f'{XML_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            f'content-types"><Default Extension="rels" ContentType="{RELS}"/>'
            f'<Default Extension="xml" ContentType="application/xml"/>{overrides}</Types>'
        ),
        "_rels/.rels": _rels(
            (f"{NS_REL}/officeDocument", "xl/workbook.xml"),
            (CORE, "docProps/core.xml"),
            (f"{NS_REL}/extended-properties", "docProps/app.xml"),
        ),
        "docProps/app.xml": (
            f'{XML_HEAD}<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/'
            '2006/extended-properties"><Application>reconcile</Application></Properties>'
        ),
        "docProps/core.xml": (
            f'{XML_HEAD}<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/'
            '2006/metadata/core-properties" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f"<dcterms:created {created}</dcterms:created>"
            f"<dcterms:modified {created}</dcterms:modified></cp:coreProperties>"
        ),
        "xl/workbook.xml": (
            f'{XML_HEAD}<workbook xmlns="{NS_MAIN}" xmlns:r="{NS_REL}"><bookViews><workbookView/>'
            f'</bookViews><sheets><sheet name="{name}" sheetId="1" r:id="rId1"/></sheets>'
            '<definedNames><definedName name="_xlnm._FilterDatabase" localSheetId="0" '
            f'hidden="1">{filtered}</definedName></definedNames></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": _rels(
            (f"{NS_REL}/worksheet", "worksheets/sheet1.xml"), (f"{NS_REL}/styles", "styles.xml")
        ),
        "xl/styles.xml": (
            f'{XML_HEAD}<styleSheet xmlns="{NS_MAIN}">'
            f'<numFmts count="{len(money) + 1}">{formats}</numFmts>'
            f'<fonts count="2"><font>{font}</font><font><b/>{font}</font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill>'
            '<fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="2"><border><left/><right/><top/><bottom/><diagonal/></border>'
            '<border><left/><right/><top/><bottom style="thin"><color auto="1"/></bottom>'
            "<diagonal/></border></borders>"
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
            f'</cellStyleXfs><cellXfs count="{len(xfs)}">{"".join(xfs)}</cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
            "</styleSheet>"
        ),
    }


def _cell_parts(ref: str) -> tuple[str, str]:
    """A1-style reference as (column letters, row digits)."""
    digits = ref.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return ref[: len(ref) - len(digits)], digits
