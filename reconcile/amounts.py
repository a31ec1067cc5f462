"""Amount text as real exports write it, read into exact decimals with polars expressions.

Accepted (one sign at most, one currency at most, whitespace anywhere between the parts):
a currency sign (`$ £ € ¥`) or ISO 4217 code before or after the number, or just inside
brackets; a sign as a leading `+`/`-`, brackets `(12.00)`, or a trailing minus `60.00-`;
U+2212 `−` for minus; one leading apostrophe (Excel text-forcing, formula-injection defusing);
thousands separators in groups of exactly three digits (`,` or `.` opposite the decimal mark,
space, NBSP, narrow NBSP, thin space, Swiss `'`); exponent form `1.5e3` (decimal point only).

A file writes either a decimal point or a decimal comma, decided once per file: see
`proofs`. The value is rounded ONCE, half away from zero, from the exact decimal text to the
column's scale; a value too large for DECIMAL(18, scale) is refused, never wrapped or cut.

Every function here returns polars expressions over a String column; nothing raises on data.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

POINT = "point"
COMMA = "comma"
NUMBER_FORMATS = (POINT, COMMA)
FORMAT_NAMES = {POINT: "decimal point", COMMA: "decimal comma"}
PRECISION = 18  # canonical DECIMAL(18, scale) columns
EXPONENT_LIMIT = 40  # |exponent| beyond this is zero (negative) or too large (positive)

CURRENCY_SIGNS = {"$": "USD", "£": "GBP", "€": "EUR", "¥": "JPY"}
# ISO 4217 active codes (plus a few still seen in old ledgers).
_ISO_TEXT = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU
    MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD
    RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP
    TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL"""
ISO_CURRENCIES = frozenset(_ISO_TEXT.split())

SPACES = " \u00a0\u202f\u2009"  # space, no-break space, narrow no-break space, thin space
_CUR = r"(?:[$£€¥]|[A-Za-z]{3})"
_GROUPS = {
    POINT: [",", f"[{SPACES}]", "'"],
    COMMA: [r"\.", f"[{SPACES}]", "'"],
}
_MARK = {POINT: r"\.", COMMA: ","}


def _number(fmt: str) -> str:
    """The number itself: grouped or plain digits, a fraction; exponent form with a point."""
    grouped = "|".join(rf"[1-9]\d{{0,2}}(?:{sep}\d{{3}})+" for sep in _GROUPS[fmt])
    mark = _MARK[fmt]
    forms = [rf"(?:{grouped}|\d+)(?:{mark}\d+)?", rf"{mark}\d+"]
    if fmt == POINT:
        forms.insert(0, r"\d+(?:\.\d+)?[eE][+-]?\d+")
    return "|".join(forms)


def grammar(fmt: str) -> str:
    """The whole cell: currency, sign and brackets around the number, as named groups."""
    num = _number(fmt)
    return (
        rf"^(?P<c1>{_CUR})?\s*(?P<s1>[+-])?\s*(?P<c2>{_CUR})?\s*"
        rf"(?:(?P<open>\()\s*(?P<c3>{_CUR})?\s*(?P<n1>{num})\s*(?P<c4>{_CUR})?\s*\)"
        rf"|(?P<n2>{num}))"
        rf"\s*(?P<c5>{_CUR})?\s*(?P<s2>-)?$"
    )


GRAMMAR = {fmt: grammar(fmt) for fmt in NUMBER_FORMATS}


def int_digits(scale: int) -> int:
    """Digits a DECIMAL(18, scale) column holds before the decimal point."""
    return PRECISION - scale


def plain_pattern(scale: int, fmt: str) -> str:
    """Text the fast path reads by a plain cast: a sign, digits, at most scale+1 decimals,
    and few enough digits that rounding cannot overflow."""
    return rf"^[+-]?\d{{1,{int_digits(scale) - 1}}}(?:{_MARK[fmt]}\d{{1,{scale + 1}}})?$"


def prepared(text: pl.Expr) -> pl.Expr:
    """Trimmed, one leading apostrophe dropped, U+2212 minus as '-'."""
    return (
        text.str.strip_chars()
        .str.strip_prefix("'")
        .str.strip_chars()
        .str.replace_all("\u2212", "-", literal=True)
    )


def plain_value(name: str, scale: int, fmt: str) -> pl.Expr:
    """Decimal(38, scale) of a column every value of which matches plain_pattern."""
    text = pl.col(name)
    if fmt == COMMA:
        text = text.str.replace(",", ".", literal=True)
    return text.cast(pl.Decimal(38, scale + 1), strict=False).round(
        scale, mode="half_away_from_zero"
    )


@dataclass(frozen=True)
class Parsed:
    """The two expressions a column of amount text becomes.

    `value`: Decimal(38, scale), null where the text is null or refused.
    `why`: String, null where the value was read (or the text is null), else the reason.
    """

    value: pl.Expr
    why: pl.Expr


def parts(name: str, fmt: str) -> pl.Expr:
    """A struct of the grammar's groups (all null when the text does not fit the grammar);
    computed once into a column, then read by `parse`."""
    return prepared(pl.col(name)).str.extract_groups(GRAMMAR[fmt])


def parse(name: str, tmp: str, scale: int, fmt: str) -> Parsed:
    """Read column `name` whose grammar groups are in struct column `tmp` (see `parts`)."""
    g = pl.col(tmp).struct
    number = pl.coalesce(g.field("n1"), g.field("n2"))
    fits = number.is_not_null()
    signs = (
        g.field("s1").is_not_null().cast(pl.Int8)
        + g.field("open").is_not_null().cast(pl.Int8)
        + g.field("s2").is_not_null().cast(pl.Int8)
    )
    negative = (
        (g.field("s1") == "-").fill_null(False)
        | g.field("open").is_not_null()
        | g.field("s2").is_not_null()
    )
    codes = pl.concat_list(
        [
            g.field(c).replace(CURRENCY_SIGNS).str.to_uppercase()
            for c in ("c1", "c2", "c3", "c4", "c5")
        ]
    ).list.drop_nulls()
    unknown = codes.list.eval(
        pl.element().filter(~pl.element().is_in(sorted(ISO_CURRENCIES)))
    ).list.first()
    two_currencies = codes.list.n_unique() > 1

    seps = f"[{SPACES}',]" if fmt == POINT else f"[{SPACES}'.]"
    bare = number.str.replace_all(seps, "")
    if fmt == COMMA:
        bare = bare.str.replace(",", ".", literal=True)
    pieces = bare.str.extract_groups(r"^(?P<i>\d*)(?:\.(?P<f>\d*))?(?:[eE](?P<e>[+-]?\d+))?$")
    digits, frac = pieces.struct.field("i"), pieces.struct.field("f").fill_null("")
    exponent = (
        pieces.struct.field("e")
        .str.slice(0, 8)
        .cast(pl.Int64, strict=False)
        .fill_null(0)
        .clip(-EXPONENT_LIMIT - 1, EXPONENT_LIMIT + 1)
    )
    # Shift the decimal point by the exponent, in text: exact, unlike any float.
    all_digits = digits + frac
    point = digits.str.len_chars().cast(pl.Int64) + exponent
    width = all_digits.str.len_chars().cast(pl.Int64)
    zeros = pl.lit("0" * (2 * EXPONENT_LIMIT + 40))
    whole = (
        pl.when(point <= 0)
        .then(pl.lit(""))
        .when(point >= width)
        .then(all_digits + zeros.str.slice(0, (point - width).clip(0, None)))
        .otherwise(all_digits.str.slice(0, point.clip(0, None)))
    )
    fraction = (
        pl.when(point <= 0)
        .then(zeros.str.slice(0, (-point).clip(0, None)) + all_digits)
        .when(point >= width)
        .then(pl.lit(""))
        .otherwise(all_digits.str.slice(point.clip(0, None)))
    )
    whole = whole.str.strip_chars_start("0")
    too_large = whole.str.len_chars() > int_digits(scale)
    # Round once: the first dropped digit alone decides half-up, so keep scale+1 decimals.
    exact = pl.concat_str(
        pl.when(negative).then(pl.lit("-")).otherwise(pl.lit("")),
        pl.when(whole == "").then(pl.lit("0")).otherwise(whole),
        pl.lit("."),
        (fraction + pl.lit("0" * (scale + 1))).str.slice(0, scale + 1),
    )
    readable = fits & (signs <= 1) & unknown.is_null() & ~two_currencies
    value = (
        pl.when(readable & ~too_large)
        .then(exact)
        .otherwise(None)
        .cast(pl.Decimal(38, scale + 1), strict=False)
        .round(scale, mode="half_away_from_zero")
    )
    limit = Decimal(10) ** int_digits(scale)
    in_range = value.abs() < pl.lit(limit, pl.Decimal(38, 0))
    largest = f"at most {int_digits(scale)} digits before the decimal point"
    other = COMMA if fmt == POINT else POINT
    other_reads = prepared(pl.col(name)).str.contains(GRAMMAR[other])
    why = (
        pl.when(pl.col(name).is_null())
        .then(None)
        .when(~fits & other_reads)
        .then(
            pl.lit(
                f"written with a {FORMAT_NAMES[other]}, but this file writes a {FORMAT_NAMES[fmt]}"
            )
        )
        .when(~fits)
        .then(pl.lit(f"not a number written with a {FORMAT_NAMES[fmt]}"))
        .when(signs > 1)
        .then(pl.lit("two signs: use one of -, (…) or a trailing -"))
        .when(unknown.is_not_null())
        .then(pl.format("'{}' is not a currency code", unknown))
        .when(two_currencies)
        .then(pl.lit("two different currencies in one value"))
        .when(too_large | ~in_range)
        .then(pl.lit(f"too large: {largest}"))
        .otherwise(None)
    )
    return Parsed(
        value=pl.when(in_range).then(value).otherwise(None),
        why=why,
    )


def proofs(name: str) -> tuple[pl.Expr, pl.Expr]:
    """Per value: (proves a decimal comma, proves a decimal point). A value proves a format
    when it reads in that format only: `12,50`, `0,1234`, `1.234,56` prove a comma; `12.50`,
    `1,234.56` a point; `1,234` (either) and junk (neither) prove nothing."""
    text = prepared(pl.col(name))
    comma = text.str.contains(GRAMMAR[COMMA])
    point = text.str.contains(GRAMMAR[POINT])
    return (comma & ~point).fill_null(False), (point & ~comma).fill_null(False)
