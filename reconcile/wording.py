"""How counts and money read in messages to people: "1 blocker", "2 blockers", "0 entries";
"GBP 1,664.40". The report's page, its script (report.js) and the command line's messages write
money through the same functions, so an amount reads the same everywhere."""

from __future__ import annotations

# The control totals' name for the rows whose currency could not be read (their currency is
# None): never counted as any currency's.
UNKNOWN_CURRENCY = "unknown currency"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun agreeing with it: `noun` for exactly 1, else `plural` (default: `noun`
    + "s"). counted(1, "row") is "1 row", counted(3, "entry", "entries") "3 entries"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def format_decimal(value: object, min_places: int = 2, signed: bool = False) -> str:
    """Group thousands and keep every digit of an exact decimal string; floats never enter.

    Trailing zeros beyond ``min_places`` are dropped (quantities read "25", not "25.0000"). The
    same algorithm runs in report.js so the server-side and script-rendered parts agree.
    """
    if value is None or value == "":
        return "—"
    text = str(value).strip()
    sign = ""
    if text[:1] in "+-":
        sign, text = ("-" if text[0] == "-" else ""), text[1:]
    whole, _, frac = text.partition(".")
    if not (whole or frac) or not (whole + frac).isdigit() or not whole.isascii():
        return str(value)
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    frac = frac + "0" * (min_places - len(frac)) if len(frac) < min_places else frac
    if set(whole + frac) == {"0"}:
        sign = ""
    elif signed and not sign:
        sign = "+"
    return sign + f"{int(whole):,}" + (f".{frac}" if frac else "")


def money(value: object) -> str:
    """Money with thousands separators and its sign, exactly as the string says."""
    return format_decimal(value, 2)


def signed_money(value: object) -> str:
    """A difference: positive values get a "+" so the direction is never ambiguous."""
    return format_decimal(value, 2, signed=True)


def in_currency(text: str, code: str | None) -> str:
    """A formatted amount with its currency code before it ("GBP 1,664.40"), as the page's
    script writes it (inCurrency); a missing amount ("—") or code leaves the text alone."""
    return f"{code} {text}" if code and text != "—" else text


def amount_text(currency: object, amount: object, signed: bool = False) -> str:
    """An amount with its currency code as messages print it: `GBP 1,664.40`, `GBP -5.00`, or
    `5.00` when no currency is known (a run kept before findings recorded their currency). A
    difference is `signed`: `GBP +954.20`, as the report writes it."""
    text = signed_money(amount) if signed else money(amount)
    return in_currency(text, None if currency is None else str(currency))
