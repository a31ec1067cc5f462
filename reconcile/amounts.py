"""Amount text as real exports write it, read into exact decimals with polars expressions.

Accepted (one sign at most, one currency at most, whitespace anywhere between the parts):
a currency sign (`$ £ € ¥`) or ISO 4217 code before or after the number, or just inside
brackets; a sign as a leading `+`/`-`, brackets `(12.00)`, or a trailing minus `60.00-`;
U+2212 `−` for minus; one leading apostrophe (Excel text-forcing, formula-injection defusing);
thousands separators in groups of exactly three digits (`,` or `.` opposite the decimal mark,
space, NBSP, narrow NBSP, thin space, Swiss `'`; and Indian lakh grouping `1,23,456.78`);
exponent form `1.5e3` (decimal point only). Refused: two signs (`-(12.00)`, `--5`), two
different currencies, a three-letter code that is no ISO 4217 currency, misplaced separators
(`1,23,4.00`, `12.3.4`), letters, a decimal mark the file does not use.

A file writes either a decimal point or a decimal comma, decided once per file: see
`proofs`. The value is rounded ONCE, half away from zero, from the exact decimal text to the
column's scale; a value too large for DECIMAL(18, scale) is refused, never wrapped or cut.

Every function here returns polars expressions over a String column; nothing raises on data.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

import polars as pl

POINT = "point"
COMMA = "comma"
NUMBER_FORMATS = (POINT, COMMA)
FORMAT_NAMES = {POINT: "decimal point", COMMA: "decimal comma"}
PRECISION = 18  # canonical DECIMAL(18, scale) columns
WIDEST = 38  # polars' widest Decimal: digits before and after the point together
EXPONENT_LIMIT = 40  # |exponent| beyond this is zero (negative) or too large (positive)

CURRENCY_SIGNS = {"£": "GBP", "€": "EUR", "¥": "JPY"} | {
    f"{prefix}$": code
    for code, prefixes in {
        "AUD": ("A", "AU"),
        "CAD": ("C", "CA"),
        "USD": ("US",),
        "NZD": ("NZ",),
        "SGD": ("S",),
        "HKD": ("HK",),
    }.items()
    for prefix in prefixes
}  # fmt: skip  (A$12.00, AU$, C$, US$, NZ$: a dollar that names its country)
# `$` names no one currency: an Australian, Canadian or New Zealand tenant writes its own dollar
# so, as Mexico writes its peso. It stays `$` until the row's currency is known (dollar_of).
DOLLAR = "$"
DOLLAR_SIGN_CURRENCIES = frozenset(
    [
        "USD",
        "AUD",
        "CAD",
        "NZD",
        "SGD",
        "HKD",
        "TWD",
        "BBD",
        "BMD",
        "BND",
        "BSD",
        "BZD",
        "FJD",
        "GYD",
        "JMD",
        "KYD",
        "LRD",
        "NAD",
        "SBD",
        "SRD",
        "TTD",
        "XCD",
        "MXN",
        "ARS",
        "CLP",
        "COP",
        "CUP",
        "DOP",
        "UYU",
    ]
)
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


def dollar_of(currency: str | None) -> str:
    """The currency a `$` is in: `currency` (the row's, or --currency) where a `$` writes it
    (DOLLAR_SIGN_CURRENCIES), else the US dollar."""
    return currency if currency in DOLLAR_SIGN_CURRENCIES else "USD"


def same_money(written: pl.Expr, currency: pl.Expr) -> pl.Expr:
    """An amount written in `written` (a code, or DOLLAR) is in the row's `currency`."""
    return (written == currency) | (
        (written == DOLLAR) & currency.is_in(sorted(DOLLAR_SIGN_CURRENCIES))
    )


SPACES = " \u00a0\u202f\u2009"  # space, no-break space, narrow no-break space, thin space
_WS = f"[{SPACES}\t]*"  # explicit classes: Unicode \s and \d make the regexes slow to build
_CUR = r"(?:(?:AU|CA|US|NZ|HK|A|C|S)\$|[$£€¥]|[A-Za-z]{3})"
_GROUPS = {
    POINT: [",", f"[{SPACES}]", "'"],
    COMMA: [r"\.", f"[{SPACES}]", "'"],
}
_MARK = {POINT: r"\.", COMMA: ","}


def _number(fmt: str) -> str:
    """The number itself: grouped or plain digits, a fraction; exponent form with a point."""
    grouped = "|".join(rf"[1-9][0-9]{{0,2}}(?:{sep}[0-9]{{3}})+" for sep in _GROUPS[fmt])
    if fmt == POINT:  # Indian lakh/crore grouping: 1,23,456.78
        grouped += r"|[1-9][0-9]?(?:,[0-9]{2})+,[0-9]{3}"
    mark = _MARK[fmt]
    forms = [rf"(?:{grouped}|[0-9]+)(?:{mark}[0-9]+)?", rf"{mark}[0-9]+"]
    if fmt == POINT:
        forms.insert(0, r"[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+")
    return "|".join(forms)


def grammar(fmt: str) -> str:
    """The whole cell: currency, sign and brackets around the number, as named groups."""
    num = _number(fmt)
    return (
        rf"^(?P<c1>{_CUR})?{_WS}(?P<s1>[+-])?{_WS}(?P<c2>{_CUR})?{_WS}"
        rf"(?:(?P<open>\(){_WS}(?P<c3>{_CUR})?{_WS}(?P<n1>{num}){_WS}(?P<c4>{_CUR})?{_WS}\)"
        rf"|(?P<n2>{num}))"
        rf"{_WS}(?P<c5>{_CUR})?{_WS}(?P<s2>-)?$"
    )


GRAMMAR = {fmt: grammar(fmt) for fmt in NUMBER_FORMATS}


def int_digits(scale: int) -> int:
    """Digits a DECIMAL(18, scale) column holds before the decimal point."""
    return PRECISION - scale


def plain_decimals(scale: int) -> int:
    """Decimals the fast path reads exactly: what Decimal(38, d) holds beside the integer
    digits plain_pattern allows (23 at scale 2, 25 at scale 4)."""
    return WIDEST - (int_digits(scale) - 1)


def plain_pattern(scale: int, fmt: str) -> str:
    """Text the fast path reads by a plain cast: a sign, digits, at most plain_decimals
    decimals (Autotask writes four on every amount), and few enough digits that rounding
    cannot overflow."""
    whole, decimals = int_digits(scale) - 1, plain_decimals(scale)
    return rf"^[+-]?[0-9]{{1,{whole}}}(?:{_MARK[fmt]}[0-9]{{1,{decimals}}})?$"


def prepared(text: pl.Expr) -> pl.Expr:
    """Trimmed, one leading apostrophe dropped, U+2212 minus as '-'."""
    return (
        text.str.strip_chars()
        .str.strip_prefix("'")
        .str.strip_chars()
        .str.replace_all("\u2212", "-", literal=True)
    )


def plain_value(name: str, scale: int, fmt: str) -> pl.Expr:
    """The value, rounded to `scale`, of a column every value of which matches plain_pattern:
    cast exactly (polars rounds a cast that drops decimals, and rounding twice is wrong:
    1.2349 is 1.23, not 1.235 then 1.24), then rounded once."""
    text = pl.col(name)
    if fmt == COMMA:
        text = text.str.replace(",", ".", literal=True)
    return text.cast(pl.Decimal(WIDEST, plain_decimals(scale)), strict=False).round(
        scale, mode="half_away_from_zero"
    )


FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def read_columns(
    frame: FrameT,
    scales: dict[str, int],
    fmt: str,
    value: str = "_{}",
    why: str = "_why_{}",
    currency: str = "_currency_{}",
) -> FrameT:
    """Read the amount text of each column in `scales` (name -> scale) with the full grammar.

    Adds, per column, `value.format(name)`: Decimal(38, scale), null where the text is null or
    refused; `why.format(name)`: String, null where the value was read (or the text is
    null), else the reason; and `currency.format(name)`: the ISO code the text writes (from a
    sign such as `€` or a code such as `EUR`), null where it writes none.
    Works in a few plain stages over temporary columns (one nested expression would be
    re-planned and re-computed per use, which costs more than the data).
    """
    temps: list[str] = []
    for name, scale in scales.items():
        t = f"__amount_{name}"
        temps += [f"{t}_{k}" for k in ("parts", "n", "w", "f", "x")]
        frame = _read_column(frame, name, scale, fmt, t, value.format(name), why.format(name))
        parts = pl.col(f"{t}_parts").struct
        written = [
            parts.field(c).replace(CURRENCY_SIGNS).str.to_uppercase()
            for c in ("c1", "c2", "c3", "c4", "c5")
        ]
        # A code says more than a `$` beside it ($12 CAD is CAD).
        named = pl.coalesce(pl.when(w != DOLLAR).then(w) for w in written)
        frame = frame.with_columns(pl.coalesce(named, *written).alias(currency.format(name)))
    return frame.drop(temps)


def _read_column(
    frame: FrameT, name: str, scale: int, fmt: str, t: str, value: str, why: str
) -> FrameT:
    text = prepared(pl.col(name))
    frame = frame.with_columns(text.str.extract_groups(GRAMMAR[fmt]).alias(f"{t}_parts"))
    g = pl.col(f"{t}_parts").struct
    number = pl.coalesce(g.field("n1"), g.field("n2"))
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
        pl.element().filter(~pl.element().is_in(sorted(ISO_CURRENCIES | {DOLLAR})))
    ).list.first()
    named = codes.list.eval(pl.element().filter(pl.element() != DOLLAR)).list.unique()
    # Two currencies: two codes, or a `$` beside a code of no dollar ($12 EUR).
    two_currencies = (named.list.len() > 1) | (
        codes.list.contains(DOLLAR)
        & (named.list.len() == 1)
        & ~named.list.first().is_in(sorted(DOLLAR_SIGN_CURRENCIES))
    )
    seps = f"[{SPACES}',]" if fmt == POINT else f"[{SPACES}'.]"
    bare = number.str.replace_all(seps, "")
    if fmt == COMMA:
        bare = bare.str.replace(",", ".", literal=True)
    pieces = bare.str.extract_groups(
        r"^(?P<i>[0-9]*)(?:\.(?P<f>[0-9]*))?(?:[eE](?P<e>[+-]?[0-9]+))?$"
    )
    n = pl.col(f"{t}_n").struct
    frame = frame.with_columns(
        pl.struct(
            number.is_not_null().alias("fits"),
            signs.alias("signs"),
            negative.alias("negative"),
            unknown.alias("unknown"),
            two_currencies.alias("two_currencies"),
            pieces.struct.field("i").alias("i"),
            pieces.struct.field("f").fill_null("").alias("f"),
            pieces.struct.field("e").fill_null("0").alias("e"),
        ).alias(f"{t}_n")
    )
    e_digits = n.field("e").str.strip_chars_start("+-").str.strip_chars_start("0")
    e_size = (
        pl.when(e_digits == "")
        .then(0)
        .when(e_digits.str.len_chars() > 6)
        .then(EXPONENT_LIMIT + 1)
        .otherwise(e_digits.cast(pl.Int64, strict=False))
        .clip(0, EXPONENT_LIMIT + 1)
    )
    exponent = pl.when(n.field("e").str.starts_with("-")).then(-e_size).otherwise(e_size)
    frame = frame.with_columns(
        pl.struct(
            (n.field("i") + n.field("f")).alias("digits"),
            (n.field("i").str.len_chars().cast(pl.Int64) + exponent).alias("point"),
        ).alias(f"{t}_w")
    )
    # Shift the decimal point by the exponent, in text: exact, unlike any float.
    w = pl.col(f"{t}_w").struct
    digits, point = w.field("digits"), w.field("point")
    width = digits.str.len_chars().cast(pl.Int64)
    zeros = pl.lit("0" * (2 * EXPONENT_LIMIT + 40))
    whole = (
        pl.when(point <= 0)
        .then(pl.lit(""))
        .when(point >= width)
        .then(digits + zeros.str.slice(0, (point - width).clip(0, None)))
        .otherwise(digits.str.slice(0, point.clip(0, None)))
    )
    fraction = (
        pl.when(point <= 0)
        .then(zeros.str.slice(0, (-point).clip(0, None)) + digits)
        .when(point >= width)
        .then(pl.lit(""))
        .otherwise(digits.str.slice(point.clip(0, None)))
    )
    frame = frame.with_columns(
        pl.struct(
            whole.str.strip_chars_start("0").alias("whole"),
            fraction.alias("fraction"),
        ).alias(f"{t}_f")
    )
    f = pl.col(f"{t}_f").struct
    too_large = f.field("whole").str.len_chars() > int_digits(scale)
    readable = (
        n.field("fits")
        & (n.field("signs") <= 1)
        & n.field("unknown").is_null()
        & ~n.field("two_currencies")
    )
    # Round once: the first dropped digit alone decides half-up, so keep scale+1 decimals.
    exact = pl.concat_str(
        pl.when(n.field("negative")).then(pl.lit("-")).otherwise(pl.lit("")),
        pl.when(f.field("whole") == "").then(pl.lit("0")).otherwise(f.field("whole")),
        pl.lit("."),
        (f.field("fraction") + pl.lit("0" * (scale + 1))).str.slice(0, scale + 1),
    )
    frame = frame.with_columns(
        pl.when(readable & ~too_large)
        .then(exact)
        .otherwise(None)
        .cast(pl.Decimal(38, scale + 1), strict=False)
        .round(scale, mode="half_away_from_zero")
        .alias(f"{t}_x"),
    )
    x = pl.col(f"{t}_x")
    limit = Decimal(10) ** int_digits(scale)
    in_range = (x.abs() < pl.lit(limit, pl.Decimal(38, 0))).fill_null(False)
    other = COMMA if fmt == POINT else POINT
    other_reads = text.str.contains(GRAMMAR[other])
    largest = f"at most {int_digits(scale)} digits before the decimal point"
    reason = (
        pl.when(pl.col(name).is_null())
        .then(None)
        .when(~n.field("fits") & other_reads)
        .then(
            pl.lit(
                f"written with a {FORMAT_NAMES[other]}, but this file writes a {FORMAT_NAMES[fmt]}"
            )
        )
        .when(~n.field("fits") & text.str.contains(ACCOUNTING_DASH))
        .then(
            pl.lit(
                "a dash with no number, as Excel's accounting format shows zero: the amount is "
                "not stated (format the column as a number, or write 0.00, and save again)"
            )
        )
        .when(~n.field("fits") & text.str.contains(LEDGER_SIDE))
        .then(
            pl.lit(
                "a CR or DR marks the ledger side, not the invoice line's sign: write a credit "
                "as -50.00 or (50.00)"
            )
        )
        .when(~n.field("fits"))
        .then(pl.lit(f"not a number written with a {FORMAT_NAMES[fmt]}"))
        .when(n.field("signs") > 1)
        .then(pl.lit("two signs: use one of -, (…) or a trailing -"))
        .when(n.field("unknown").is_not_null())
        .then(pl.format("'{}' is not a currency code", n.field("unknown")))
        .when(n.field("two_currencies"))
        .then(pl.lit("two different currencies in one value"))
        .when(~in_range)
        .then(pl.lit(f"too large: {largest}"))
        .otherwise(None)
    )
    return frame.with_columns(
        pl.when(in_range).then(x).otherwise(None).alias(value), reason.alias(why)
    )


# Excel's accounting format writes zero as a dash (`$ -`, `-`, `£ -   `); a ledger, CR or DR.
ACCOUNTING_DASH = r"^\s*[$£€¥]?\s*-\s*[$£€¥]?\s*$"
LEDGER_SIDE = r"(?i)^[^A-Za-z]*\d[^A-Za-z]*\s*(CR|DR)\.?$"


def proofs(name: str) -> tuple[pl.Expr, pl.Expr]:
    """Per value: (proves a decimal comma, proves a decimal point). A value proves a format
    when it reads in that format only: `12,50`, `0,1234`, `1.234,56` prove a comma; `12.50`,
    `1,234.56` a point; `1,234` (either) and junk (neither) prove nothing."""
    text = prepared(pl.col(name))
    comma = text.str.contains(GRAMMAR[COMMA])
    point = text.str.contains(GRAMMAR[POINT])
    return (comma & ~point).fill_null(False), (point & ~comma).fill_null(False)


def either(name: str) -> pl.Expr:
    """Per value: reads in both formats, to different numbers, so it proves neither: a value
    with one mark followed by three digits (`1.500` is 1.5 or 1500, `3,000` 3000 or 3)."""
    text = prepared(pl.col(name))
    both = text.str.contains(GRAMMAR[COMMA]) & text.str.contains(GRAMMAR[POINT])
    return (both & text.str.contains("[.,]")).fill_null(False)
