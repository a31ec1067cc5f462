"""Amount text in every accepted spelling reads back as the intended value, or is refused.

Never a different number: an amount is written from an intended Decimal in a random accepted
form (currency before/after/inside brackets, brackets, leading/trailing/Unicode minus, leading
apostrophe, thousands separators, decimal point or comma, exponent), then read by the polars
expressions of reconcile.amounts; it must equal the intended value rounded once, half away from
zero, to the column's scale. Junk text must be refused or read as an independent reference
parser reads it, and must never raise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile import amounts

SCALES = (2, 4)
EXAMPLES = 200  # batches of up to 40 values each: a few seconds per test


def read(texts: Sequence[str | None], scale: int, fmt: str) -> list[Decimal | None]:
    """The slow (grammar) path over a column of texts, as validate._parse runs it."""
    frame = pl.DataFrame({"a": list(texts)}, schema={"a": pl.String})
    frame = amounts.read_columns(frame, {"a": scale}, fmt, value="v", why="why")
    out = frame.select(pl.col("v").cast(pl.Decimal(18, scale)), "why")
    for text, (value, why) in zip(texts, out.iter_rows(), strict=True):
        assert text is None or (value is None) == (why is not None), (text, value, why)
    return list(out["v"])


def read_plain(texts: list[str], scale: int, fmt: str) -> list[Decimal | None]:
    """The fast path, for texts every one of which matches plain_pattern."""
    frame = pl.DataFrame({"a": texts}, schema={"a": pl.String})
    return list(frame.select(amounts.plain_value("a", scale, fmt).cast(pl.Decimal(18, scale)))["a"])


def rounded(value: Decimal, scale: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


# --- writing an intended value in an accepted form --------------------------------------------

SEPARATORS = {
    amounts.POINT: [",", " ", "\u00a0", "\u202f", "\u2009", "'"],
    amounts.COMMA: [".", " ", "\u00a0", "\u202f", "\u2009", "'"],
}
SIGNS = ["$", "£", "€", "¥"]
CODES = ["USD", "GBP", "EUR", "CHF", "usd"]


def group(digits: str, sep: str) -> str:
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return sep.join(parts)


@st.composite
def written(draw: st.DrawFn, fmt: str) -> tuple[str, Decimal]:
    places = draw(st.integers(0, 9))
    unit = Decimal(1).scaleb(-places)
    value = Decimal(draw(st.integers(-(10**12), 10**12))) * unit
    magnitude = abs(value)
    mark = "." if fmt == amounts.POINT else ","
    if fmt == amounts.POINT and draw(st.booleans()) and magnitude:
        shift = draw(st.integers(-20, 20))
        mantissa = format(magnitude.scaleb(-shift), "f")
        exp_sign = "-" if shift < 0 else draw(st.sampled_from(["", "+"]))
        exp_digits = str(abs(shift)).zfill(draw(st.integers(1, 3)))
        body = f"{mantissa}{draw(st.sampled_from(['e', 'E']))}{exp_sign}{exp_digits}"
    else:
        whole, _, frac = format(magnitude, "f").partition(".")
        if len(whole) > 3 and draw(st.booleans()):
            whole = group(whole, draw(st.sampled_from(SEPARATORS[fmt])))
        body = whole + (mark + frac if frac else "")
    currency = draw(st.sampled_from(["", "", *SIGNS, *CODES]))
    where = draw(st.sampled_from(["before", "after", "inside"]))
    gap = draw(st.sampled_from(["", " "]))
    negative = value < 0
    style = (
        draw(st.sampled_from(["-", "- ", "\u2212", "()", "trailing"]))
        if negative
        else draw(st.sampled_from(["", "+"]))
    )
    if style == "()":
        inner = body
        if currency and where == "inside":
            inner = f"{currency}{gap}{body}" if len(currency) == 1 else f"{currency} {body}"
        text = f"({inner})"
        if currency and where != "inside":
            text = f"{currency}{gap}{text}" if where == "before" else f"{text}{gap}{currency}"
    else:
        sign = {"-": "-", "- ": "- ", "\u2212": "\u2212", "+": "+", "": ""}.get(style, "")
        if currency and where in ("before", "inside"):
            spaced = gap if len(currency) == 1 else " "
            cur_first = draw(st.booleans())
            text = (
                f"{currency}{spaced}{sign}{body}"
                if cur_first
                else f"{sign}{currency}{spaced}{body}"
            )
        elif currency:
            text = f"{sign}{body} {currency}" if len(currency) == 3 else f"{sign}{body}{currency}"
        else:
            text = f"{sign}{body}"
        if style == "trailing":
            text += "-"
    if draw(st.booleans()):
        text = "'" + text
    text = draw(st.sampled_from(["", " ", "\u00a0"])) + text + draw(st.sampled_from(["", " "]))
    return text, value


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(amounts.NUMBER_FORMATS),
    scale=st.sampled_from(SCALES),
    data=st.data(),
)
def test_every_accepted_form_reads_as_the_intended_value(
    fmt: str, scale: int, data: st.DataObject
) -> None:
    cases = data.draw(st.lists(written(fmt), min_size=1, max_size=40))
    texts = [t for t, _ in cases]
    got = read(list(texts), scale, fmt)
    for (text, value), parsed in zip(cases, got, strict=True):
        assert parsed == rounded(value, scale), (text, value, parsed)
    plain = [t for t in texts if re.search(amounts.plain_pattern(scale, fmt), t)]
    if plain:
        assert read_plain(plain, scale, fmt) == read(plain, scale, fmt), plain


# --- junk: refused, or read exactly as an independent reference reads it ----------------------

CURRENCY_OF = {"$": "$", "£": "GBP", "€": "EUR", "¥": "JPY"}  # `$`: a dollar, of no one code
PREFIXED = {"AU$": "AUD", "CA$": "CAD", "US$": "USD", "NZ$": "NZD", "HK$": "HKD"} | {
    "A$": "AUD",
    "C$": "CAD",
    "S$": "SGD",
}  # longest first, as the grammar tries them


def reference(text: str, scale: int, fmt: str) -> Decimal | None:
    """A plain-Python reading, peeling currencies and signs off the ends (more lenient about
    their order than the grammar): what the grammar reads, this must read the same."""
    t = text.strip()
    if t.startswith("'"):
        t = t[1:].strip()
    t = t.replace("\u2212", "-")
    codes: set[str] = set()
    signs = 0
    negative = False
    while True:
        t = t.strip()
        front = next((p for p in PREFIXED if t.startswith(p)), None)
        back = next((p for p in PREFIXED if t.endswith(p)), None)
        if front:
            codes.add(PREFIXED[front])
            t = t[len(front) :]
        elif back:
            codes.add(PREFIXED[back])
            t = t[: -len(back)]
        elif t[:1] in CURRENCY_OF:
            codes.add(CURRENCY_OF[t[0]])
            t = t[1:]
        elif t[-1:] in CURRENCY_OF:
            codes.add(CURRENCY_OF[t[-1]])
            t = t[:-1]
        elif re.match(r"^[A-Za-z]{3}(?![A-Za-z])", t):
            codes.add(t[:3].upper())
            t = t[3:]
        elif re.search(r"(?<![A-Za-z])[A-Za-z]{3}$", t) and not re.search(r"\d[eE]\S*$", t):
            codes.add(t[-3:].upper())
            t = t[:-3]
        elif t[:1] in "+-" and t[:1]:
            signs += 1
            negative |= t[0] == "-"
            t = t[1:]
        elif t.endswith("-"):
            signs += 1
            negative = True
            t = t[:-1]
        elif t.startswith("(") and t.endswith(")"):
            signs += 1
            negative = True
            t = t[1:-1]
        else:
            break
    named = codes - {"$"}
    two = len(named) > 1 or ("$" in codes and not named <= amounts.DOLLAR_SIGN_CURRENCIES)
    if signs > 1 or two or not named <= amounts.ISO_CURRENCIES:
        return None
    number = _reference_number(t, fmt)
    if number is None or abs(number) >= Decimal(10) ** (18 - scale):
        return None
    value = rounded(-number if negative else number, scale)
    return value if abs(value) < Decimal(10) ** (18 - scale) else None


def _reference_number(t: str, fmt: str) -> Decimal | None:
    mark, other = (".", ",") if fmt == amounts.POINT else (",", ".")
    if fmt == amounts.POINT and re.fullmatch(r"\d+(\.\d+)?[eE][+-]?\d+", t):
        try:
            return Decimal(t)
        except InvalidOperation:
            return None
    whole, found, frac = t.partition(mark)
    if found and not (frac.isascii() and frac.isdigit()):
        return None
    if whole == "" and found:
        return Decimal("0." + frac)
    for sep in [other, " ", "\u00a0", "\u202f", "\u2009", "'"]:
        if sep in whole:
            groups = whole.split(sep)
            lakh = sep == "," and len(groups[-1]) == 3 and all(len(g) == 2 for g in groups[1:-1])
            if not all(g.isascii() and g.isdigit() for g in groups):
                return None
            if groups[0].startswith("0") or not 1 <= len(groups[0]) <= (2 if lakh else 3):
                return None
            if not (lakh or all(len(g) == 3 for g in groups[1:])):
                return None
            whole = "".join(groups)
            break
    if not (whole.isascii() and whole.isdigit()):
        return None
    return Decimal(whole + ("." + frac if found else ""))


JUNK = st.text(
    alphabet=st.sampled_from([*"0123456789.,-+()$£€' eEUSDXYZ", "\u00a0", "\u2212"]),
    max_size=16,
)


@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(amounts.NUMBER_FORMATS),
    scale=st.sampled_from(SCALES),
    texts=st.lists(JUNK, min_size=1, max_size=40),
)
def test_junk_is_refused_or_read_as_the_reference_reads_it(
    fmt: str, scale: int, texts: list[str]
) -> None:
    for text, parsed in zip(texts, read(list(texts), scale, fmt), strict=True):
        if parsed is not None:
            assert parsed == reference(text, scale, fmt), (text, parsed)


def test_examples_from_the_issue() -> None:
    point = {
        "-$12.00": "-12.00",
        "$-16.00": "-16.00",
        "1,018.00 USD": "1018.00",
        "USD 1,018.00": "1018.00",
        "- 19.00": "-19.00",
        "+12.00": "12.00",
        "(12.00)": "-12.00",
        "$(13.00)": "-13.00",
        "£(12.00)": "-12.00",
        "($14.00)": "-14.00",
        "(£14.00)": "-14.00",
        "USD (12.00)": "-12.00",
        "(12.00) USD": "-12.00",
        "60.00-": "-60.00",
        "\u221225.00": "-25.00",
        "'-30.00": "-30.00",
        "1'234.56": "1234.56",
        "2.7755575615628914E-17": "0.00",
        "1.5e3": "1500.00",
        "0.30000000000000004": "0.30",
        "10.004999999999": "10.00",
        "0.0049999999": "0.00",
        "1,234": "1234.00",
        "1,23,456.78": "123456.78",
    }
    refused = ["-(12.00)", "--5", "USD 12.00 EUR", "12.00 ABC", "1,23,4.00", "12.3.4", "abc"]
    refused += ["0,1234", "1,2345", "12345678901234567", "$12 CHF"]
    got = read([*point, *refused], 2, amounts.POINT)
    assert got == [Decimal(v) for v in point.values()] + [None] * len(refused)
    comma = {"1 234,56": "1234.56", "1\u202f234,56": "1234.56", "1.234,56": "1234.56"}
    comma |= {"12,50": "12.50", "0,1234": "0.12", "(12,00) €": "-12.00", "1.234": "1234.00"}
    assert read(list(comma), 2, amounts.COMMA) == [Decimal(v) for v in comma.values()]
    assert read(["0,1234", "12345678901234"], 4, amounts.COMMA) == [
        Decimal("0.1234"),
        Decimal("12345678901234"),
    ]
    assert read(["123456789012345", "12.50"], 4, amounts.COMMA) == [None, None]


def test_the_fast_path_rounds_many_decimals_once() -> None:
    """Autotask writes four places on every amount: read by the plain cast, rounded once from
    the whole text (1.2349 is 1.23; rounding it to 1.235 first would give 1.24)."""
    texts = ["17.0000", "1.2349", "1.2350", "-1.2350", "-0.0049", "0.12345678901234567890123"]
    assert all(re.search(amounts.plain_pattern(2, amounts.POINT), t) for t in texts)
    expected = [Decimal(v) for v in ("17.00", "1.23", "1.24", "-1.24", "0.00", "0.12")]
    assert read_plain(texts, 2, amounts.POINT) == expected == read(texts, 2, amounts.POINT)
    comma = [t.replace(".", ",") for t in texts]
    assert read_plain(comma, 2, amounts.COMMA) == expected
    assert read_plain(["2.00005", "-0.00005"], 4, amounts.POINT) == [
        Decimal("2.0001"),
        Decimal("-0.0001"),
    ]
