"""Validate raw export rows and normalise them into canonical invoice lines.

Every row ends in exactly one place: a canonical line, the quarantine (with every reason it
failed), or the excluded rows (deliberately not billable, with the reason). Nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar

import polars as pl

from reconcile import amounts
from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.load.base import (
    EXCLUDE,
    FOREIGN,
    NOT_INVOICED,
    PROBLEM,
    ROW,
    SKIP,
    SUBTOTAL_LABEL,
    SUM_LABEL,
    TOTAL_LABEL,
    RawFrame,
)
from reconcile.model import (
    CANONICAL_SCHEMA,
    CONTRACT_TYPES,
    DATE_FIELDS,
    DECIMAL_FIELDS,
    ID_FIELDS,
    MONEY,
    PLATFORMS,
    RAW_FIELDS,
)

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)
T = TypeVar("T")
PLATFORM_DATE_DEFAULT = {"autotask": "us", "halopsa": "uk"}
DATE_FORMATS = {"us": "%m/%d/%Y", "uk": "%d/%m/%Y"}
DATE_NAMES = {
    "us": "US MM/DD/YYYY",
    "uk": "UK DD/MM/YYYY",
    "iso": "ISO YYYY-MM-DD",
    "named": "month named",
}
PERIOD_SUFFIX = r"\s*\[([A-Z][a-z]{2} \d{1,2}, \d{4}) - ([A-Z][a-z]{2} \d{1,2}, \d{4})\]\s*$"
TIME_OF_DAY = r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[AP]M|[+-]\d{2}:?\d{2})?$"
# The forms _date_text writes a date in: slash-written, month-named and ISO.
SLASH_DATE = r"^\d{1,2}/\d{1,2}/\d{4}$"
NAMED_DATE = r"^\d{1,2}/[A-Za-z]{3}/\d{4}$"
ISO_DATE = r"^\d{4}-\d{1,2}-\d{1,2}$"
YEAR_FIRST = r"^(\d{4})[/.\-](\d{1,2})[/.\-](\d{1,2})$"
TWO_DIGIT_YEAR = r"^(\d{1,2})/(\d{1,2}|[A-Za-z]{3})/(\d{2})$"  # as _date_text writes dates
# An English month's name or abbreviation, any case, an abbreviation with or without its dot.
MONTH_NAME = (
    r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t|tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
# 1 November 2026, 01-Nov-2026, 1-November-2026, 3 Sept. 26 (UK long forms, Excel's dd-mmm-yyyy)
DAY_MONTH_NAME = rf"(?i)^(\d{{1,2}})[\s\-/.]*{MONTH_NAME}[\s\-/.,]*(\d{{4}}|\d{{2}})$"
# Nov 1, 2026, November 1, 2026, Nov. 1 2026 (US long forms)
MONTH_NAME_DAY = rf"(?i)^{MONTH_NAME}[\s\-/.]*(\d{{1,2}}),?[\s\-/.]+(\d{{4}}|\d{{2}})$"
MONTH_NAMED = "%d/%b/%Y"  # 30/Nov/2026: every month-named date as _date_text writes it
NULL_DATE = "1899-12-30"
# What exports write for a date that is none: OLE's zero date (HaloPSA's null, psa-exports.md
# §2.1; Excel's day 0) and .NET's DateTime.MinValue.
PLACEHOLDER_DATES = (date(1899, 12, 30), date(1, 1, 1))

QUARANTINE_SCHEMA = pl.Schema(
    {
        "row_number": pl.Int64(),
        "line_ref": pl.String(),
        "disposition": pl.String(),
        "reasons": pl.String(),
        "raw": pl.String(),
        "net_amount": MONEY,
        # The row's currency as read (null: none could be read, or not a three-letter code).
        "currency": pl.String(),
    }
)
CURRENCY = "_currency"  # the currency a row of `parsed` is in, as its line would hold it
# The control totals of one batch per currency: rows not skipped and the net amounts of those
# that have one (`currency` null: the rows whose currency could not be read).
READ_SCHEMA = pl.Schema({"currency": pl.String(), "rows": pl.UInt32(), "net": MONEY})


@dataclass(frozen=True)
class Normalised:
    """One batch of an export, validated: every row of the batch is in lines or rejected."""

    lines: pl.DataFrame  # canonical schema, minus load_id and file_name
    rejected: pl.DataFrame  # QUARANTINE_SCHEMA: quarantined, excluded and skipped rows
    date_convention: str
    rows_read: int  # every row of the batch, skipped ones included
    read: pl.DataFrame  # READ_SCHEMA: the rows not skipped and their net amounts per currency
    number_format: str = amounts.FORMAT_NAMES[amounts.POINT]  # e.g. "decimal comma (detected)"


@dataclass(frozen=True)
class Conventions:
    """How a file writes its dates and numbers, decided once over all its rows."""

    date_convention: str  # as reported and quoted in reasons, e.g. "UK DD/MM/YYYY"
    formats: dict[str, str]  # _parse_date's: {"slash": "%d/%m/%Y"}, or {} (ISO only)
    number_format: str  # as reported, e.g. "decimal comma (detected)"
    fmt: str  # amounts.POINT or amounts.COMMA


class Reread(Exception):  # noqa: N818 (a signal to the caller, not an error)
    """normalise decided a file's conventions from its first batch and its later rows decide
    otherwise: every batch it yielded is void; read the file again with `conventions`."""

    def __init__(self, conventions: Conventions) -> None:
        super().__init__(conventions)
        self.conventions = conventions


def normalise(
    raw: RawFrame, settings: Settings, decided: Conventions | None = None
) -> Iterator[Normalised]:
    """Batch by batch, in one read of the file, so memory stays bounded. The date convention
    and the decimal mark are the file's, decided over all its rows (`decided`, when a read
    before decided them): tentatively on the first batch, then checked on all rows once the
    last is read. Raises InputError as _date_convention and _number_format do, and Reread when
    all the rows decide other than the first batch did (rare: only a file whose first batch
    neither shows its date order nor proves its decimal mark, and whose later rows do)."""
    survey = None if decided else Survey.of(raw, settings)
    if survey is None:
        decided = decided or _decide(raw, settings, None, None)
    sums = RunningSums()
    read = 0
    for batch in raw.batches():
        if survey is not None:
            survey.add(batch)
            if not read:
                decided = _tentative(raw, settings, survey)
        read += 1
        if decided is None:
            continue
        norm = _normalise_batch(
            raw,
            _clean(_complete(batch), raw.platform),
            settings,
            decided.date_convention,
            decided.formats,
            decided.fmt,
            sums,
        )
        yield replace(norm, number_format=decided.number_format)
    # After one batch the survey holds what the tentative decision saw: it stands.
    if survey is not None and (read > 1 or decided is None):
        final = _decide(raw, settings, survey, decided)
        if read and final != decided:
            raise Reread(final)


def normalised(
    raw: RawFrame,
    settings: Settings,
    consume: Callable[[Iterator[Normalised]], T],
    void: Callable[[], None],
) -> T:
    """consume(normalise(raw, settings)); on Reread, void() (what consume kept of the void
    batches goes) and consume once more, with the conventions the whole file decided."""
    try:
        return consume(normalise(raw, settings))
    except Reread as again:
        void()
        return consume(normalise(raw, settings, again.conventions))


def _tentative(raw: RawFrame, settings: Settings, survey: Survey) -> Conventions | None:
    """The conventions of the first batch; None when it cannot decide them or refuses them:
    then only all the rows can."""
    try:
        return _decide(raw, settings, survey, None)
    except InputError:
        return None


def _decide(
    raw: RawFrame, settings: Settings, survey: Survey | None, tentative: Conventions | None
) -> Conventions:
    """The conventions of the rows surveyed. A decimal comma proved in the first batch is the
    file's (or the file mixes marks: _number_format read all its rows to tell), so a tentative
    comma stands without that read again."""
    texts, comma_at, undecided = survey.facts() if survey else (None, None, None)
    convention, formats = _date_convention(raw, settings, texts)
    if tentative is not None and tentative.fmt == amounts.COMMA:
        number_format, fmt = tentative.number_format, tentative.fmt
    else:
        number_format, fmt = _number_format(raw, settings, comma_at, undecided)
    return Conventions(convention, formats, number_format, fmt)


@dataclass
class RunningSums:
    """Net amounts of the rows read so far (all rows, and billable rows only), and their values
    at the last totals row: what a totals row further down must equal."""

    all: Decimal = Decimal(0)
    billable: Decimal = Decimal(0)
    all_at_total: Decimal = Decimal(0)
    billable_at_total: Decimal = Decimal(0)


# Without any of these a row names no line: with an amount it can only be a sum of lines.
LINE_IDENTITY = (
    "line_ref",
    "invoice_number",
    "invoice_date",
    "period_start",
    "period_end",
    "item_code",
    "item_name",
    "description",
)
LABEL_FIELDS = (
    "line_ref",
    "invoice_number",
    "client_id",
    "client_name",
    "item_name",
    "description",
)


def _mark_totals(parsed: pl.DataFrame, sums: RunningSums) -> pl.DataFrame:
    """Report exports end with a "Grand Total" row (or carry subtotals, or a "Sum" row a person
    added: SUM_LABEL) that is no line: loading it would double the side. A row is a totals row
    when it is labelled like one or names no line (no id, invoice, date or item), and its net
    amount equals the sum of the rows above it, or of those since the previous totals row. It
    is skipped, its amount checked as a control total. A labelled row whose amount is not such
    a sum is quarantined: it is neither a line nor a total one can trust. A row whose label is
    a name ("Total Fitness Ltd", the item "Total Protection Suite") is a line when it says so
    otherwise: a line id of its own, an invoice number and date of its own, or a quantity and
    a unit price (no report's totals row prices a charge, or dates and numbers an invoice)."""
    net = pl.col("_net_amount")
    priced = pl.col("_quantity").is_not_null() & pl.col("_unit_price").is_not_null()

    def label(field: str) -> pl.Expr:
        # Read only where the row is not priced (null elsewhere): a priced row is a line
        # whatever its labels say, and a regex over every cell of six columns costs.
        text = pl.when(~priced).then(pl.col(field))
        return (
            text.str.contains(TOTAL_LABEL)
            | text.str.contains(SUBTOTAL_LABEL)
            | text.str.contains(SUM_LABEL)
        )

    labelled = pl.any_horizontal(label(f) for f in LABEL_FIELDS)

    def own(field: str) -> pl.Expr:
        return pl.col(field).is_not_null() & ~label(field)

    invoiced = own("invoice_number") & pl.col("_invoice_date").is_not_null()
    labelled = labelled.fill_null(False) & ~own("line_ref") & ~invoiced & ~priced
    bare = pl.all_horizontal(pl.col(f).is_null() for f in LINE_IDENTITY) & (net != 0)
    candidate = (
        (labelled | bare) & net.is_not_null() & pl.col(EXCLUDE).is_null() & pl.col(SKIP).is_null()
    )
    # Whether any row is a candidate, and the sums a batch without one adds: one pass.
    found = parsed.select(
        candidate.any().alias("any"),
        net.sum().alias("all"),
        net.filter(pl.col(EXCLUDE).is_null()).sum().alias("billable"),
    ).row(0, named=True)
    if not found["any"]:
        sums.all += _decimal(found["all"])
        sums.billable += _decimal(found["billable"])
        return parsed
    flagged = parsed.with_columns(candidate.alias("_candidate"))
    amount = pl.when(pl.col("_candidate")).then(0).otherwise(net.fill_null(0))
    cum = {
        "all": amount.cum_sum() + pl.lit(sums.all),
        "billable": pl.when(pl.col(EXCLUDE).is_null()).then(amount).otherwise(0).cum_sum()
        + pl.lit(sums.billable),
    }
    at_total = {"all": sums.all_at_total, "billable": sums.billable_at_total}
    with_sums = flagged.with_columns(
        [cum[k].alias(f"_above_{k}") for k in cum]
        + [
            pl.when(pl.col("_candidate"))
            .then(cum[k])
            .shift(1)
            .forward_fill()
            .fill_null(pl.lit(at_total[k]))
            .alias(f"_previous_{k}")
            for k in cum
        ]
    )
    sums_of_lines = [pl.col(f"_above_{k}") for k in cum] + [
        pl.col(f"_above_{k}") - pl.col(f"_previous_{k}") for k in cum
    ]
    is_total = pl.col("_candidate") & pl.any_horizontal(net == s for s in sums_of_lines)
    marked = with_sums.with_columns(
        pl.when(is_total)
        .then(
            pl.format(
                "totals row: {} is the sum of the lines above it, a control total, not a line",
                net.cast(pl.String),
            )
        )
        .otherwise(pl.col(SKIP))
        .alias(SKIP),
        pl.when(pl.col("_candidate") & labelled & ~is_total)
        .then(
            pl.format(
                "the row is labelled as a total but its amount {} is not the sum of the lines "
                "above it ({})",
                net.cast(pl.String),
                pl.col("_above_all").cast(pl.String),
            )
        )
        .otherwise(pl.col(PROBLEM))
        .alias(PROBLEM),
    )
    last = marked.row(-1, named=True)
    totals = marked.filter(is_total)
    sums.all, sums.billable = _decimal(last["_above_all"]), _decimal(last["_above_billable"])
    if totals.height:
        sums.all_at_total = _decimal(totals["_above_all"][-1])
        sums.billable_at_total = _decimal(totals["_above_billable"][-1])
    return marked.drop("_candidate", *[f"_{w}_{k}" for w in ("above", "previous") for k in cum])


def _decimal(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(value)


def _normalise_batch(
    raw: RawFrame,
    frame: pl.DataFrame,
    settings: Settings,
    convention: str,
    formats: dict[str, str],
    fmt: str,
    sums: RunningSums,
) -> Normalised:
    parsed = _mark_totals(_parse(frame, raw, formats, settings, fmt), sums)
    parsed = parsed.with_columns(_currency(parsed, settings).alias(CURRENCY))
    parsed = _mark_undated(parsed, raw)
    skipped = parsed.filter(pl.col(SKIP).is_not_null())
    if skipped.height:
        parsed = parsed.filter(pl.col(SKIP).is_null())
    billable = _keep(parsed, pl.col(EXCLUDE).is_null())
    reasons = _raw_failures(raw, billable, convention)
    canonical = _canonical(billable, raw, settings)
    reasons = pl.concat([reasons, _currency_failures(raw, billable, canonical)])
    reasons = _merge(reasons, _canonical_failures(canonical, billable[FOREIGN]))
    bad_rows = reasons[ROW]
    lines = _keep(canonical, ~pl.col("row_number").is_in(bad_rows.implode()))
    rejected = pl.concat(
        [
            _rejected(raw, parsed.join(reasons, on=ROW, how="inner"), "quarantined", "_reasons"),
            _rejected(raw, parsed.filter(pl.col(EXCLUDE).is_not_null()), "excluded", EXCLUDE),
            _rejected(raw, skipped, "skipped", SKIP),
        ]
    ).sort("row_number")
    return Normalised(
        lines=lines,
        rejected=rejected,
        date_convention=convention,
        rows_read=frame.height,
        # By currency as written first: the few currencies' texts are checked, not each row's.
        read=parsed.group_by(CURRENCY)
        .agg(pl.len().alias("rows"), pl.col("_net_amount").sum().alias("net"))
        .group_by(_readable_currency().alias("currency"))
        .agg(pl.col("rows", "net").sum())
        .cast(READ_SCHEMA),
    )


def _mark_undated(parsed: pl.DataFrame, raw: RawFrame) -> pl.DataFrame:
    """A line with no invoice date is never taken into the cycle as if it were invoiced in
    it. Autotask's export wizard exports posted items whether invoiced or not (psa-exports.md
    §1.12b): a row whose invoice date and invoice number (where the export has that column)
    are empty is posted, not invoiced, and excluded as the API's invoiceID 0 is. Any other row
    of an export with an invoice date column (a line on an invoice, or a HaloPSA line: on an
    invoice by what it is) whose date is null or PLACEHOLDER_DATES is quarantined with the
    value (an empty text, `""` in a CSV, is refused as no date by the raw checks): which cycle
    it bills cannot be told. Rows skipped, excluded or already refused by the reader are left
    as they are."""
    if "invoice_date" not in raw.columns:
        return parsed
    date = pl.col("invoice_date")
    # As written (an API's 0001-01-01T00:00:00, read in the tenant's zone, is no such day) or
    # as read (Excel's 12/30/1899).
    placeholder = pl.any_horizontal(date.str.starts_with(d.isoformat()) for d in PLACEHOLDER_DATES)
    placeholder |= pl.col("_invoice_date").is_in(PLACEHOLDER_DATES)
    open_row = pl.all_horizontal(pl.col(c).is_null() for c in (SKIP, EXCLUDE, PROBLEM))
    not_invoiced = pl.lit(False)
    if raw.platform == "autotask":
        not_invoiced = pl.all_horizontal(
            pl.col(f).is_null() | (pl.col(f) == "") for f in ("invoice_number", "invoice_date")
        )
    marks = parsed.select(
        (open_row & not_invoiced).fill_null(False).alias("excluded"),
        (open_row & ~not_invoiced & (date.is_null() | placeholder)).fill_null(False).alias("bad"),
    )
    if not marks.select(pl.any_horizontal(pl.all().any())).item():
        return parsed
    named = [raw.columns[f] for f in ("invoice_number", "invoice_date") if f in raw.columns]
    empty = " and ".join(f"'{c}'" for c in named)
    written = (
        pl.when(date.is_null())
        .then(pl.lit("is empty"))
        .otherwise(pl.format("holds '{}', a placeholder for no date", date))
    )
    problem = pl.format(
        "no invoice date: column '{}' {}, so the cycle the line is billed in cannot be told",
        pl.lit(raw.columns["invoice_date"]),
        written,
    )
    return parsed.with_columns(
        pl.when(marks["excluded"])
        .then(pl.lit(f"{NOT_INVOICED} ({empty} empty)"))
        .otherwise(pl.col(EXCLUDE))
        .alias(EXCLUDE),
        pl.when(marks["bad"]).then(problem).otherwise(pl.col(PROBLEM)).alias(PROBLEM),
    )


def _keep(frame: pl.DataFrame, condition: pl.Expr) -> pl.DataFrame:
    """Filter, but without copying a million rows when every row stays (the usual case)."""
    keep = frame.select(condition.alias("keep"))["keep"]
    return frame if keep.all() else frame.filter(keep)


def _complete(frame: FrameT) -> FrameT:
    """Every raw field (null where the export has none) and FOREIGN (False where not null)."""
    names = frame.collect_schema().names()
    missing = [pl.lit(None, pl.String).alias(f) for f in RAW_FIELDS if f not in names]
    foreign = pl.col(FOREIGN).fill_null(False) if FOREIGN in names else pl.lit(False)
    return frame.with_columns(*missing, foreign.alias(FOREIGN))


def _clean(frame: pl.DataFrame, platform: str) -> pl.DataFrame:
    """Sentinels become nulls and Autotask's period suffix moves out of the item name."""
    sentinel_ids = ["-1", "0", ""]
    frame = frame.with_columns(
        [
            pl.when(pl.col(f).is_in(sentinel_ids)).then(None).otherwise(pl.col(f)).alias(f)
            for f in ID_FIELDS
        ]
        + [
            pl.when(pl.col(f).str.starts_with(NULL_DATE)).then(None).otherwise(pl.col(f)).alias(f)
            for f in DATE_FIELDS
            if f != "invoice_date"  # a placeholder invoice date is _mark_undated's to refuse
        ]
    )
    # The suffix is written in brackets: a batch without one spares two regexes per row.
    if not frame["item_name"].str.contains("[", literal=True).any():
        return frame
    # Item names repeat (an item's name and its period): each distinct one is read once.
    suffix = pl.col("item_name").str.extract_groups(PERIOD_SUFFIX)
    name, start, end = _by_value(
        frame,
        "item_name",
        pl.col("item_name").str.replace(PERIOD_SUFFIX, ""),
        *(_suffix_date(suffix.struct.field(part)) for part in ("1", "2")),
    )
    return frame.with_columns(
        name,
        pl.coalesce("period_start", start).alias("period_start"),
        pl.coalesce("period_end", end).alias("period_end"),
    )


def _suffix_date(text: pl.Expr) -> pl.Expr:
    return text.str.strptime(pl.Date, "%b %d, %Y", strict=False).dt.to_string("%Y-%m-%d")


@cache  # an expression of a dozen regexes, built once per column name (1.4 ms a batch)
def _date_text(name: str) -> pl.Expr:
    """The date part of a value: a time of day, if any, is dropped; a year-first date becomes
    ISO (2026/11/3 and 2026.11.03 as Excel writes dates in Japanese, Chinese or Korean
    settings); a date with its month's English name becomes day/Mon/year, MONTH_NAMED's form
    (Nov 1, 2026 and 1 November 2026 as 1/Nov/2026, 30-Nov-2026 as 30/Nov/2026, Sept as Sep);
    in others ., - and spaces become /; and a two-digit year is of this century (11/1/26 as
    11/1/2026: read with a four-digit year's format it was the year 26; the cycle check
    refuses a century wrongly taken)."""
    text = pl.col(name).str.replace(TIME_OF_DAY, "")
    day_first, month_first = text.str.contains(DAY_MONTH_NAME), text.str.contains(MONTH_NAME_DAY)
    named = (
        pl.when(day_first)
        .then(text.str.replace(DAY_MONTH_NAME, "${1}/${2}/${3}"))
        .otherwise(text.str.replace(MONTH_NAME_DAY, "${2}/${1}/${3}"))
        # The month's first three letters (Sept and September as Sep): MONTH_NAMED's %b.
        .str.replace(r"^(\d{1,2})/([A-Za-z]{3})[A-Za-z]*/", "${1}/${2}/")
    )
    return (
        pl.when(text.str.contains(YEAR_FIRST))
        .then(text.str.replace(YEAR_FIRST, "${1}-${2}-${3}"))
        .when(day_first | month_first)
        .then(named)
        .otherwise(text.str.replace_all(r"[.\-]|\s+", "/"))
        .str.replace(TWO_DIGIT_YEAR, "${1}/${2}/20${3}")
    )


# Survey.facts' date texts: each distinct one (`text`) as _date_text writes it (`d`), with
# the first row it is on and its field.
DATE_TEXTS = pl.Schema({"d": pl.String, ROW: pl.Int64, "f": pl.String, "text": pl.String})


@dataclass
class Survey:
    """What a file's conventions are decided on, gathered batch by batch (memory stays flat
    however long the file): its distinct date texts (_date_convention's `texts`), the values
    proving a decimal comma (_number_format's `comma_at`) and, until a value proves either
    mark, whether one proves a point and the values that read with either (`undecided`).
    `dated` are the date fields to survey and `amount` the amount fields; none when ISO
    exports or given formats decide."""

    dates: bool
    dated: list[str]
    amount: list[str]
    found: list[pl.DataFrame] = field(default_factory=list)
    first: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    point: bool = False  # a value proving a decimal point was seen
    either: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: RawFrame, settings: Settings) -> Survey | None:
        """The survey the file needs (None: nothing is left to decide)."""
        dates = not (raw.dates_iso or settings.date_format)
        amount = [] if settings.number_format or raw.dates_iso else _amount_fields(raw)
        if not dates and not amount:
            return None
        # An absent field holds no date.
        return cls(dates, [f for f in DATE_FIELDS if dates and f in raw.columns], amount)

    def add(self, batch: pl.DataFrame) -> None:
        """A batch of the raw rows (as RawFrame.batches gives them), in row order."""
        # The date texts and the comma proofs in one go (a collect each costs more than its
        # work at a cycle's size).
        queries = [_batch_date_texts(batch.lazy(), f) for f in self.dated]
        if self.amount:
            queries.append(_batch_comma_proofs(batch.lazy(), self.amount))
        found = pl.collect_all(queries)
        self.found += found[: len(self.dated)]
        if self.amount:
            for row, name, text in _firsts(found[-1], self.amount):
                self.first.setdefault(name, (row, name, text))
        if self.amount and not (self.first or self.point):
            self.point, either = _batch_point_facts(batch, self.amount)
            for row, name, text in either:
                self.either.setdefault(name, (row, name, text))

    def facts(
        self,
    ) -> tuple[
        pl.DataFrame | None, list[tuple[int, str, str]] | None, list[tuple[int, str, str]] | None
    ]:
        """(texts, comma_at, undecided) of the rows added so far: None for what is not
        surveyed; `undecided` is per amount field the first value reading with either mark
        (row, field, value), empty once a value proves a point."""
        texts = None
        if self.dates:
            texts = (
                pl.concat(self.found, how="vertical")
                .group_by("f", "text")
                .agg(pl.col(ROW).min())
                .select(_date_text("text").alias("d"), pl.col(ROW), pl.col("f"), pl.col("text"))
                .sort(ROW, "f")
                if self.found
                else pl.DataFrame(schema=DATE_TEXTS)
            )
        if not self.amount:
            return texts, None, None
        return (
            texts,
            sorted(self.first.values()),
            [] if self.point else sorted(self.either.values()),
        )


def _batch_date_texts(batch: pl.LazyFrame, field: str) -> pl.LazyFrame:
    """Each distinct text of a date field in a batch, with the first row it is on; a cycle
    holds few distinct dates, so the convention is decided on those."""
    return (
        batch.group_by(field)
        .agg(pl.col(ROW).min())
        .select(pl.lit(field).alias("f"), pl.col(field).alias("text"), pl.col(ROW).cast(pl.Int64))
    )


def _batch_comma_proofs(batch: pl.LazyFrame, fields: list[str]) -> pl.LazyFrame:
    """Per amount field, the first row of the batch whose value proves a decimal comma, as
    _first_where finds it (_firsts reads it); only rows with a comma in an amount are looked at
    closely."""
    has_comma = pl.any_horizontal(
        [pl.col(f).str.contains(",", literal=True).fill_null(False) for f in fields]
    )
    return _first_where(batch.filter(has_comma), [(f, amounts.proofs(f)[0]) for f in fields])


POINT_PROBE = 1000  # rows of a batch looked at first for a value proving a decimal point


def _batch_point_facts(
    batch: pl.DataFrame, fields: list[str]
) -> tuple[bool, list[tuple[int, str, str]]]:
    """(whether a value of the batch proves a decimal point; if none does, per amount field
    the first value reading with either mark, amounts.either, as (row, field, value)). Only
    values with a mark are looked at, the first POINT_PROBE rows first: in a point file they
    prove it."""
    marked = batch.filter(
        pl.any_horizontal([pl.col(f).str.contains("[.,]").fill_null(False) for f in fields])
    )
    proved = pl.any_horizontal([amounts.proofs(f)[1] for f in fields]).any()
    if any(rows.select(proved).item() for rows in (marked.head(POINT_PROBE), marked)):
        return True, []
    either = _first_where(marked, [(f, amounts.either(f)) for f in fields])
    return False, _firsts(either, fields)


def _first_where(frame: FrameT, conditions: list[tuple[str, pl.Expr]]) -> FrameT:
    """Per (field, condition): the first row of `frame` where the condition holds, as one row
    (_firsts reads it)."""
    return frame.select(
        [pl.col(ROW).filter(c).min().alias(f) for f, c in conditions]
        + [pl.col(f).filter(c).first().alias(f"{f}:text") for f, c in conditions]
    )


def _firsts(found: pl.DataFrame, fields: list[str]) -> list[tuple[int, str, str]]:
    """_first_where's row as (row, field, value) per field; fields where the condition holds
    nowhere are left out."""
    row = found.row(0, named=True)
    return [(row[f], f, row[f"{f}:text"]) for f in fields if row[f] is not None]


def _date_convention(
    raw: RawFrame, settings: Settings, texts: pl.DataFrame | None
) -> tuple[str, dict[str, str]]:
    """Decide once per file how its dates are written, never row by row; `texts` is what
    Survey.facts found (DATE_TEXTS; None: it was not needed). Only slash-written dates leave
    anything to decide; a file without any is reported as what it writes."""
    if texts is None:
        if raw.dates_iso or not settings.date_format:
            return DATE_NAMES["iso"], {}
        fmt = settings.date_format
        return DATE_NAMES[fmt] + " (given)", {} if fmt == "iso" else {"slash": DATE_FORMATS[fmt]}
    every = texts
    texts = every.filter(pl.col("d").str.contains(SLASH_DATE))
    if texts.height == 0:
        return _unslashed_convention(every), {}
    ok = {
        name: texts.select(
            pl.col("d").str.strptime(pl.Date, fmt, strict=False).is_not_null()
        ).to_series()
        for name, fmt in DATE_FORMATS.items()
    }
    us_all, uk_all = bool(ok["us"].all()), bool(ok["uk"].all())
    default = PLATFORM_DATE_DEFAULT[raw.platform]
    if us_all and uk_all and not settings.cycle:
        return (
            f"{DATE_NAMES[default]} (ambiguous: every day is 12 or less; the {raw.platform} "
            "default was used for this check, --cycle decides on load)",
            {"slash": DATE_FORMATS[default]},
        )
    if us_all and uk_all:
        chosen = _cycle_reading(raw, texts, settings.cycle) or default
        return (
            f"{DATE_NAMES[chosen]} (every day is 12 or less: the reading that puts the dates "
            f"in or next to cycle {settings.cycle})",
            {"slash": DATE_FORMATS[chosen]},
        )
    only_us = texts.filter(ok["us"] & ~ok["uk"])
    only_uk = texts.filter(ok["uk"] & ~ok["us"])
    if only_us.height and only_uk.height:
        us_row, uk_row = only_us.row(0, named=True), only_uk.row(0, named=True)
        raise InputError(
            raw.file,
            "the file mixes date conventions: "
            f"row {us_row[ROW]} has {us_row['d']!r} (only valid as US MM/DD/YYYY) and "
            f"row {uk_row[ROW]} has {uk_row['d']!r} (only valid as UK DD/MM/YYYY)",
            column=raw.columns.get(uk_row["f"]),
            expected="one date convention throughout a file",
            hint="Export it again with one date format, or say which with --date-format.",
        )
    chosen = "us" if us_all or only_us.height else "uk" if uk_all or only_uk.height else default
    return DATE_NAMES[chosen], {"slash": DATE_FORMATS[chosen]}


def _unslashed_convention(texts: pl.DataFrame) -> str:
    """The date convention reported for a file without slash-written dates (DATE_TEXTS): ISO,
    month-named with the first such date quoted, or both; ISO when it holds no date."""
    named = texts.filter(pl.col("d").str.contains(NAMED_DATE))
    if named.height == 0:
        return DATE_NAMES["iso"]
    first = named.row(0, named=True)
    convention = f"{DATE_NAMES['named']} (as {first['text']!r}, row {first[ROW]})"
    if texts.filter(pl.col("d").str.contains(ISO_DATE)).height:
        return f"{DATE_NAMES['iso']} and {convention}"
    return convention


def _cycle_reading(raw: RawFrame, texts: pl.DataFrame, cycle: str) -> str | None:
    """Day and month cannot be told apart when every day is 12 or less; the billing cycle can:
    an export for cycle 2026-11 dates its invoices in November and its service periods in or
    next to it. Take the reading that puts every date within a month of the cycle and more of
    them in the cycle's month; when the cycle does not decide, refuse rather than guess
    (psa-exports.md §3, "never guess on ambiguous dd <= 12"). None: both readings give the
    same dates (every day equals its month), so there is nothing to decide."""
    year, month = (int(part) for part in cycle.split("-"))
    centre = year * 12 + month - 1
    readings = {
        name: texts.select(pl.col("d").str.strptime(pl.Date, fmt, strict=False)).to_series()
        for name, fmt in DATE_FORMATS.items()
    }
    if readings["us"].equals(readings["uk"]):
        return None
    scores = {}
    for name, dates in readings.items():
        offsets = [abs(d.year * 12 + d.month - 1 - centre) for d in dates]
        scores[name] = (all(o <= 1 for o in offsets), sum(o == 0 for o in offsets))
    us, uk = scores["us"], scores["uk"]
    if us != uk and (us[0] or uk[0]):
        if us[0] != uk[0]:
            return "us" if us[0] else "uk"
        return "us" if us[1] > uk[1] else "uk"
    example = texts.row(0, named=True)
    raise InputError(
        raw.file,
        f"the dates cannot be read with certainty: every day is 12 or less, so "
        f"{example['d']!r} (row {example[ROW]}) could be day/month or month/day, and neither "
        f"reading puts the dates in or next to cycle {cycle} more than the other",
        column=raw.columns.get(example["f"]),
        expected="dates that show their order (a day above 12), or a stated date format",
        hint="Say how the file writes dates with --date-format us or --date-format uk "
        "(or date_format in reconcile.toml), and check that --cycle is the month billed.",
    )


def _amount_fields(raw: RawFrame) -> list[str]:
    return [f for f in DECIMAL_FIELDS if f in raw.columns]


def _number_format(
    raw: RawFrame,
    settings: Settings,
    comma_at: list[tuple[int, str, str]] | None,
    undecided: list[tuple[int, str, str]] | None,
) -> tuple[str, str]:
    """Decide once per file whether its numbers write a decimal point or a decimal comma;
    `comma_at` and `undecided` are what Survey.facts found: per amount field, the first value
    proving a comma, and (no value proving either mark) the first reading with either, as
    (row, field, value) (None: it was not needed).

    Returns (the decision as reported, "point" or "comma"). A value such as `12,50`, `0,1234`
    or `1.234,56` proves a comma and `12.50` or `1,234.56` a point; a file with both is refused
    (InputError naming a row of each), and so is one with neither whose values with a mark
    read with either (`1.500`, `1,234`: _undecided_marks); a file without any mark (`12`)
    reads a point. A `;` separator or dates written dd.mm.yyyy are no proof.
    """
    if settings.number_format:
        fmt = settings.number_format
        return f"{amounts.FORMAT_NAMES[fmt]} (given)", fmt
    point_name = amounts.FORMAT_NAMES[amounts.POINT]
    if not comma_at:
        if undecided:
            raise _undecided_marks(raw, undecided)
        return point_name, amounts.POINT
    fields = _amount_fields(raw)
    frame = _complete(raw.frame)
    proofs = [(f, *amounts.proofs(f)) for f in fields]
    point_rows = raw.collect(
        frame.select(
            [pl.col(ROW).filter(p).min().alias(f) for f, _, p in proofs]
            + [pl.col(f).filter(p).first().alias(f"{f}:text") for f, _, p in proofs]
        )
    ).row(0, named=True)
    point_at = [(point_rows[f], f, point_rows[f"{f}:text"]) for f in fields if point_rows[f]]
    if point_at:
        c_row, c_field, c_text = min(comma_at)
        p_row, p_field, p_text = min(point_at)
        raise InputError(
            raw.file,
            "the file mixes decimal marks: "
            f"row {c_row} has {c_text!r} in '{raw.columns[c_field]}' (only readable with a "
            f"decimal comma) and row {p_row} has {p_text!r} in '{raw.columns[p_field]}' "
            "(only readable with a decimal point)",
            column=raw.columns[c_field],
            expected="one decimal mark throughout a file",
            hint="Export it again with one number format, or say which with --number-format.",
        )
    return f"{amounts.FORMAT_NAMES[amounts.COMMA]} (detected)", amounts.COMMA


def _undecided_marks(raw: RawFrame, undecided: list[tuple[int, str, str]]) -> InputError:
    """The refusal of a file whose every value with a mark reads with either (`undecided`, per
    amount field the first such value, as (row, field, value)), naming the columns and values."""
    examples = ", ".join(
        f"{text!r} in '{raw.columns[name]}' (row {row})" for row, name, text in undecided
    )
    return InputError(
        raw.file,
        "the numbers cannot be read with certainty: every amount written with a mark has one "
        f"'.' or ',' followed by three digits ({examples}), which is a decimal mark in one "
        "format and a thousands separator in the other, and no amount shows which the file uses",
        column=raw.columns[undecided[0][1]],
        expected="amounts that show their decimal mark (such as 12.50 or 12,50), or a stated "
        "number format",
        hint="Say how the file writes numbers with --number-format point or --number-format "
        "comma (or number_format in reconcile.toml).",
    )


def _parse(
    frame: pl.DataFrame,
    raw: RawFrame,
    formats: dict[str, str],
    settings: Settings,
    fmt: str = amounts.POINT,
) -> pl.DataFrame:
    """Typed `_<field>` columns beside the text; `_why_<field>` says why an amount was refused."""
    plain = _plain_columns(frame, fmt)
    typed: list[pl.Expr] = []
    # Most exports write plain numbers: symbols, separators and signs only where needed.
    dirty = {n: t.scale or 0 for n, t in DECIMAL_FIELDS.items() if not plain[n]}
    if dirty:
        frame = amounts.read_columns(frame, dirty, fmt)
    for name, dtype in DECIMAL_FIELDS.items():
        if name in dirty:
            typed.append(pl.col(f"_{name}").cast(dtype))
        else:
            value = amounts.plain_value(name, dtype.scale or 0, fmt)
            typed += [
                value.cast(dtype).alias(f"_{name}"),
                pl.lit(None, pl.String).alias(f"_why_{name}"),
            ]
    return _read_dates(frame.with_columns(typed), raw, formats, settings)


def _read_dates(
    frame: pl.DataFrame, raw: RawFrame, formats: dict[str, str], settings: Settings
) -> pl.DataFrame:
    """`frame` with the Date `_<field>` of each date field (_parse_date's). An export repeats
    its dates (a cycle's invoice and period days): the distinct texts of the fields that repeat
    theirs (as _by_value decides) are read once, all fields' together, and looked up per row;
    a field of mostly distinct texts is read row by row."""
    distinct = frame.select(pl.col(n).unique().drop_nulls().implode() for n in DATE_FIELDS)
    texts = {n: distinct[n][0] for n in DATE_FIELDS}
    looked_up = [n for n in DATE_FIELDS if len(texts[n]) * LOOKUP_SHARE <= frame.height]
    by_row = [n for n in DATE_FIELDS if n not in looked_up]
    if by_row:
        # Read from a frame of those fields alone and put beside the batch's columns in one
        # chunk: a lazy plan's result comes in several, which a filter can leave with empty
        # first chunks that pl.format panics on (RawFrame.batches).
        row_dates = _parse_date(frame.select(by_row).lazy(), by_row, raw, formats, settings)
        frame = frame.hstack(
            row_dates.select(DATE_READ.format(n) for n in by_row).collect().rechunk()
        )
    read = {n: pl.col(DATE_READ.format(n)) for n in by_row}
    if looked_up:
        found = pl.concat([texts[n] for n in looked_up]).unique().alias(DATE_TEXT).to_frame()
        dates = _parse_date(found.lazy(), [DATE_TEXT], raw, formats, settings).collect()
        text, date = dates[DATE_TEXT], dates[DATE_READ.format(DATE_TEXT)]
        for name in looked_up:
            read[name] = pl.col(name).replace_strict(text, date, default=None, return_dtype=pl.Date)
    return frame.with_columns(read[n].alias(f"_{n}") for n in DATE_FIELDS).drop(
        DATE_READ.format(n) for n in by_row
    )


def _plain_columns(frame: pl.DataFrame, fmt: str = amounts.POINT) -> dict[str, bool]:
    """One cheap scan of each amount column decides whether it needs the expensive cleaning
    at all."""
    patterns = {
        name: amounts.plain_pattern(dtype.scale or 0, fmt) for name, dtype in DECIMAL_FIELDS.items()
    }
    checks = [
        (pl.col(name).is_null() | pl.col(name).str.contains(pattern)).all().alias(name)
        for name, pattern in patterns.items()
    ]
    return {name: bool(value) for name, value in frame.select(checks).row(0, named=True).items()}


DATE_TEXT = "_date_text"  # _read_dates' column of the distinct date texts
DATE_READ = "{}:date"  # _parse_date's column of a date field's Date


def _parse_date(
    frame: pl.LazyFrame,
    names: list[str],
    raw: RawFrame,
    formats: dict[str, str],
    settings: Settings,
) -> pl.LazyFrame:
    """`frame` with the Date of each of the date fields `names` (null where its text reads as
    no date in the file's convention) as `<name>:date` (DATE_READ). Worked out a step at a
    time, each step's result a column the next reads: one expression using a part several
    times (the date's text, then the date as written) costs its plan far more than the work."""
    if raw.shape == "halopsa-api":
        return frame.with_columns(
            _api_date(pl.col(n), settings.timezone).alias(DATE_READ.format(n)) for n in names
        )
    frame = frame.with_columns(_date_text(n).alias(f"{n}:text") for n in names)
    written = []
    for name in names:
        text = pl.col(f"{name}:text")
        slash = [formats["slash"]] if "slash" in formats else []
        # A month's name says which part is the month: read in any file, whatever its
        # convention.
        readings = ["%Y-%m-%d", *slash, MONTH_NAMED]
        written.append(
            pl.coalesce(text.str.strptime(pl.Date, f, strict=False) for f in readings).alias(
                DATE_READ.format(name)
            )
        )
    frame = frame.with_columns(written).drop(f"{n}:text" for n in names)
    if raw.platform != "halopsa":
        return frame
    return frame.with_columns(
        _local_midnight(pl.col(n), pl.col(DATE_READ.format(n)), settings.timezone).alias(
            DATE_READ.format(n)
        )
        for n in names
    )


def _api_date(text: pl.Expr, timezone: str) -> pl.Expr:
    """The date of a HaloPSA API datetime (naive UTC) in the tenant's time zone `timezone`."""
    stamp = text.str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False)
    local = stamp.dt.replace_time_zone("UTC").dt.convert_time_zone(timezone)
    return pl.coalesce(local.dt.date(), text.str.slice(0, 10).str.to_date(strict=False))


# A time of day on the 24-hour clock, naive or stated as UTC, ending the value.
UTC_TIME = r"[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(?:Z|[+-]00:?00)?$"


def _local_midnight(text: pl.Expr, written: pl.Expr, timezone: str) -> pl.Expr:
    """The date `written` (the date part of `text`), or the next or previous day where `text`'s
    time of day makes it the UTC instant of a midnight in the HaloPSA tenant's time zone: Halo
    stores datetimes in UTC, so a report export that shows them raw writes 1 June in London
    (BST) as 2026-05-31 23:00 (psa-exports.md §3, Dates). Only such an instant moves: a
    midnight as written, any other time (a report that converted, or a tenant in another zone
    than `timezone`: 05:00 is New York's midnight, not London's) keep the date written."""
    parts = [text.str.extract(UTC_TIME, group).cast(pl.Int64) for group in (1, 2, 3)]
    hours, minutes, seconds = (part.fill_null(0) for part in parts)
    stamp = written.cast(pl.Datetime("us")) + pl.duration(
        hours=hours, minutes=minutes, seconds=seconds
    )
    local = stamp.dt.replace_time_zone("UTC").dt.convert_time_zone(timezone)
    moved = (
        parts[0].is_not_null()
        & ((hours + minutes + seconds) > 0)
        & (local.dt.hour() == 0)
        & (local.dt.minute() == 0)
        & (local.dt.second() == 0)
    )
    return pl.when(moved).then(local.dt.date()).otherwise(written)


REQUIRED_RAW = ("net_amount",)  # raw fields a billable row must have a value in


def _parsed_where_given(name: str) -> pl.Expr:
    """Per row: the text is empty, or it parsed into the typed `_<name>` column."""
    return pl.col(name).is_null() | pl.col(f"_{name}").is_not_null()


def _raw_suspects(billable: pl.DataFrame) -> pl.DataFrame:
    """The rows _raw_schema could refuse: its row checks as one vectorised pass. Pandera then
    validates these rows only, and is not run at all for a batch without any."""
    passes = [_parsed_where_given(name) for name in EXPECTED]
    passes += [pl.col(name).is_not_null() for name in REQUIRED_RAW]
    return _keep(billable, ~pl.all_horizontal(passes))


EXPECTED = {
    "net_amount": "an amount such as 1234.56, -12.00, (12.00), 12.00-, $1,234.50 or USD 12.00",
    "tax_amount": "an amount such as 12.34, -1.50 or (1.50)",
    "quantity": "a number such as 2, 2.5 or -1",
    "unit_price": "a price such as 85.00, 12.3450 or $85.00",
    "invoice_date": "a date in the file's convention ({convention}) or as 30-Nov-2026",
    "period_start": "a date in the file's convention ({convention}) or as 30-Nov-2026",
    "period_end": "a date in the file's convention ({convention}) or as 30-Nov-2026",
}


REASONS_SCHEMA = pl.Schema({ROW: pl.Int64(), "reason": pl.String()})


def _raw_failures(raw: RawFrame, billable: pl.DataFrame, convention: str) -> pl.DataFrame:
    """Every reason each row fails, as (row, reason) pairs: pandera's failure cases of the
    suspect rows (in their order, _raw_reasons), then the readers' own problems."""
    suspects = _raw_suspects(billable)
    found = [pl.DataFrame(schema=REASONS_SCHEMA)]
    if suspects.height:
        from reconcile import contracts  # pandera (0.2 s to import): only for suspect rows

        cases = contracts.raw_failure_cases(raw, suspects, convention)
        if not raw.dates_iso:
            suspects = suspects.with_columns(_serial_whys())
        found.append(_raw_reasons(raw, suspects, cases))
    problems = billable.filter(pl.col(PROBLEM).is_not_null()).select(
        pl.col(ROW), pl.col(PROBLEM).alias("reason")
    )
    return pl.concat([*found, problems])


# Excel's date serial numbers of 2000-01-01 and 2099-12-31 (its 1900 date system), and the
# date each of its date systems counts serials from (the 1900 system's is 1899-12-30: it
# counts a 29 February 1900 that never was).
EXCEL_SERIALS = (36526, 73050)
EXCEL_DAY_ZERO = {"1900": date(1899, 12, 30), "1904": date(1904, 1, 1)}


def _serial_whys() -> list[pl.Expr]:
    """`_why_<field>` of each date field: why its text is no date where it is a whole number in
    EXCEL_SERIALS' range, as Excel writes a date into a CSV from a column formatted General
    (null elsewhere). Which date it is depends on the workbook's date system, so it stays
    refused; the reason gives both readings and the way to export it again."""
    whys = []
    for name in DATE_FIELDS:
        number = pl.col(f"_{name}").is_null() & pl.col(name).str.contains(r"^\d{5}$")
        serial = pl.when(number).then(pl.col(name).cast(pl.Int64))
        days = pl.duration(days=serial)
        read = [(pl.lit(day) + days).dt.to_string("%Y-%m-%d") for day in EXCEL_DAY_ZERO.values()]
        whys.append(
            pl.when(serial.is_between(*EXCEL_SERIALS))
            .then(
                pl.format(
                    "looks like an Excel date serial number: {} in Excel's 1900 date system, {} "
                    "in its 1904 one; format the column as a date in Excel and export it again",
                    *read,
                )
            )
            .alias(f"_why_{name}")
        )
    return whys


def _raw_reasons(raw: RawFrame, suspects: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """pandera's failure cases of contracts.raw_schema (contracts.FAILURE_CASES: index is the
    row's place in suspects; cases of no row are left out) as (row, reason) pairs, in their
    order: "column 'Net': a value is required but the cell is empty", or "column 'Net':
    expected <what>, got 'text'" with why an amount was refused (its `_why_` column), where
    known."""
    cells = suspects.with_row_index("index")
    whys = [name for name in RAW_FIELDS if f"_why_{name}" in suspects.columns]
    found = (
        cases.filter(pl.col("index").is_not_null())
        .select("column", "check", pl.col("index").cast(pl.UInt32))
        .join(
            cells.unpivot(list(RAW_FIELDS), index=["index", ROW], variable_name="column"),
            on=["index", "column"],
            how="left",
            maintain_order="left",
        )
        .join(
            cells.select("index", *[pl.col(f"_why_{name}").alias(name) for name in whys]).unpivot(
                whys, index="index", variable_name="column", value_name="why"
            ),
            on=["index", "column"],
            how="left",
            maintain_order="left",
        )
    )
    label = pl.col("column").replace(raw.columns)
    why = pl.when(pl.col("why").is_not_null()).then(pl.format(" ({})", "why")).otherwise(pl.lit(""))
    reason = (
        pl.when(pl.col("check") == "not_nullable")
        .then(pl.format("column '{}': a value is required but the cell is empty", label))
        .otherwise(pl.format("column '{}': expected {}, got {}", label, "check", "repr") + why)
    )
    return found.with_columns(repr=python_repr(found["value"])).select(
        pl.col(ROW).cast(pl.Int64), reason.alias("reason")
    )


PRINTABLE_ASCII = r"^[ -~]*$"


def python_repr(texts: pl.Series) -> pl.Series:
    """Python's repr of each text (None for null), as a reason quotes a cell: texts of
    printable ASCII (nearly all) by expressions, any other once per distinct text."""
    text = pl.col("text")
    escaped = text.str.replace_all("\\", "\\\\", literal=True)
    quoted = (
        pl.when(text.str.contains("'", literal=True) & ~text.str.contains('"', literal=True))
        .then(pl.format('"{}"', escaped))
        .otherwise(pl.format("'{}'", escaped.str.replace_all("'", "\\'", literal=True)))
    )
    frame = texts.rename("text").to_frame().with_columns(plain=text.str.contains(PRINTABLE_ASCII))
    others = frame.filter(~pl.col("plain"))["text"].unique().drop_nulls()
    shown = pl.DataFrame({"text": others, "shown": [repr(t) for t in others.to_list()]})
    return (
        frame.join(shown, on="text", how="left", maintain_order="left")
        .select(
            pl.when(text.is_null())
            .then(pl.lit("None"))
            .when("plain")
            .then(quoted)
            .otherwise("shown")
        )
        .to_series()
        .rename(texts.name)
    )


LOOKUP_SHARE = 4  # a lookup pays when the column holds at most one distinct value in 4 rows


def _by_value(frame: pl.DataFrame, name: str, *values: pl.Expr) -> list[pl.Expr]:
    """Each of `values` (texts: expressions of column `name` alone, null for null), named
    `name`. In a column that repeats its values (a currency, a contract type, an item's name)
    they are worked out once per distinct value and looked up per row: a hash lookup a row,
    not a chain of string functions. In a column of mostly distinct values (a lookup in a table
    as long as the column costs more than the work) they are worked out row by row."""
    distinct = frame.select(pl.col(name).unique().drop_nulls())
    if distinct.height * LOOKUP_SHARE > frame.height:
        return [value.alias(name) for value in values]
    # Lazily, so that a part a value uses several times is worked out once.
    mapped = (
        distinct.lazy()
        .select(pl.col(name), *(value.alias(f"to{i}") for i, value in enumerate(values)))
        .collect()
    )
    return [
        pl.col(name).replace_strict(
            mapped[name], mapped[f"to{i}"], default=None, return_dtype=pl.String
        )
        for i in range(len(values))
    ]


def _currency(parsed: pl.DataFrame, settings: Settings) -> pl.Expr:
    """The currency each row's line holds: its currency column as written ('€' and '$' read
    as codes, '$' as the dollar of --currency), else --currency; null when neither, and where
    the row is FOREIGN (a currency the export does not name: never --currency)."""
    written = (
        pl.col("currency").str.strip_chars().replace(amounts.CURRENCY_SIGNS).str.to_uppercase()
    )
    (currency,) = _by_value(
        parsed,
        "currency",
        pl.when(written == amounts.DOLLAR)
        .then(pl.lit(amounts.dollar_of(settings.currency)))
        .otherwise(written),
    )
    given = pl.coalesce(currency, pl.lit(settings.currency, pl.String))
    if not parsed[FOREIGN].any():
        return given
    return pl.when(pl.col(FOREIGN)).then(None).otherwise(given)


def _readable_currency() -> pl.Expr:
    """The control totals' currency of a row of `parsed`: its CURRENCY when a three-letter code
    (every loaded line's is), else null (the "unknown currency" of the control totals: such a
    row is quarantined, and its amount is never counted as another currency's)."""
    return pl.when(pl.col(CURRENCY).str.contains(CURRENCY_PATTERN)).then(pl.col(CURRENCY))


def _canonical(billable: pl.DataFrame, raw: RawFrame, settings: Settings) -> pl.DataFrame:
    (contract_type,) = _by_value(
        billable,
        "contract_type",
        pl.col("contract_type")
        .str.strip_chars()
        .str.to_lowercase()
        .replace(CONTRACT_TYPES)
        .str.replace_all(r"[^a-z0-9]+", "_"),
    )
    exprs = {
        "cycle": pl.lit(settings.cycle or None, pl.String),
        "source": pl.lit(raw.platform),
        "row_number": pl.col(ROW).cast(pl.Int64),
        "line_ref": pl.coalesce(pl.col("line_ref"), pl.format("row:{}", pl.col(ROW))),
        "currency": pl.col(CURRENCY),
        "contract_type": contract_type,
    }
    for name in [*DECIMAL_FIELDS, *DATE_FIELDS]:
        exprs[name] = pl.col(f"_{name}")
    # One sign convention: a credit is a negative quantity at a positive price. Autotask writes
    # credits that way; HaloPSA may write a positive quantity at a negative price (§3 "Credits /
    # negatives"). The net keeps its sign either way, so the canonical line bills the same.
    flip = pl.col("_unit_price") < 0
    exprs["quantity"] = pl.when(flip).then(-pl.col("_quantity")).otherwise(pl.col("_quantity"))
    exprs["unit_price"] = (
        pl.when(flip).then(-pl.col("_unit_price")).otherwise(pl.col("_unit_price"))
    )
    columns = [
        exprs.get(name, pl.col(name) if name in billable.columns else pl.lit(None))
        .cast(dtype)
        .alias(name)
        for name, dtype in CANONICAL_SCHEMA.items()
        if name not in ("load_id", "file_name")
    ]
    return billable.select(columns)


def _currency_failures(
    raw: RawFrame, billable: pl.DataFrame, canonical: pl.DataFrame
) -> pl.DataFrame:
    """An amount written with a currency (`€100.00`, `100 EUR`) other than the row's (its
    currency column, else --currency) would load as the wrong money: a quarantine reason."""
    found = []
    for name in DECIMAL_FIELDS:
        written = f"_currency_{name}"
        if written not in billable.columns:
            continue
        column = raw.columns.get(name, name)
        rows = pl.DataFrame(
            {
                ROW: billable[ROW].cast(pl.Int64),
                "written": billable[written],
                "currency": canonical["currency"],
            }
        ).filter(pl.col("written").is_not_null() & pl.col("currency").is_not_null())
        rows = rows.filter(~amounts.same_money(pl.col("written"), pl.col("currency")))
        found.append(
            rows.select(
                pl.col(ROW),
                pl.format(
                    "column '{}': the amount is written in {} but the row's currency is {}",
                    pl.lit(column),
                    pl.col("written"),
                    pl.col("currency"),
                ).alias("reason"),
            )
        )
    if not found:
        return pl.DataFrame(schema={ROW: pl.Int64, "reason": pl.String})
    return pl.concat(found)


CYCLE_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"


def _canonical_suspects(canonical: pl.DataFrame) -> pl.DataFrame:
    """The lines contracts.CanonicalLine could refuse for a reason _canonical_failures gives:
    its checks of values (a null passes them; a missing required value is reported elsewhere)
    as one vectorised pass. Pandera then validates these lines only, and is not run at all for a
    batch without any (its first validation costs about 0.2 s)."""

    def refused(name: str, passes: pl.Expr) -> pl.Expr:
        return pl.col(name).is_not_null() & ~passes

    checks = [
        refused("cycle", pl.col("cycle").str.contains(CYCLE_PATTERN)),
        refused("source", pl.col("source").is_in(PLATFORMS)),
        refused("row_number", pl.col("row_number") >= 1),
        refused("currency", pl.col("currency").str.contains(CURRENCY_PATTERN)),
        pl.col("client_id").is_null() & pl.col("client_name").is_null(),
        pl.col("period_start") > pl.col("period_end"),
    ]
    return _keep(canonical, pl.any_horizontal(checks).fill_null(False))


def _canonical_failures(canonical: pl.DataFrame, foreign: pl.Series) -> pl.DataFrame:
    """The canonical schema is the last guard: anything it refuses is quarantined too.
    `foreign`: the lines' FOREIGN, whose missing currency the reader's problem explains."""
    suspects = _canonical_suspects(canonical)
    found = pl.DataFrame(schema=REASONS_SCHEMA)
    if suspects.height:
        from reconcile import contracts  # pandera (0.2 s to import): only for suspect lines

        frame = suspects.with_columns(
            pl.lit("pending").alias("load_id"), pl.lit("pending").alias("file_name")
        ).select(list(CANONICAL_SCHEMA))
        # Missing required values were already reported against the export's own column.
        cases = contracts.canonical_failure_cases(frame).filter(
            pl.col("index").is_not_null() & (pl.col("check") != "not_nullable")
        )
        column = pl.when(pl.col("column") != "").then("column").otherwise(pl.lit("line"))
        found = (
            cases.select(pl.col("index").cast(pl.UInt32), "check", "column")
            .join(
                suspects.select(pl.col("row_number").alias(ROW)).with_row_index("index"),
                on="index",
                how="left",
                maintain_order="left",
            )
            .select(
                pl.col(ROW).cast(pl.Int64),
                reason=pl.col("check").replace_strict(
                    CANONICAL_REASONS, default=pl.format("{}: failed {}", column, "check")
                ),
            )
        )
    # A line's currency is required: a row that states none, in an export that states it on
    # other rows, with no currency configured, cannot be summed or compared.
    no_currency = canonical.filter(pl.col("currency").is_null() & ~foreign).select(
        pl.col("row_number").alias(ROW), pl.lit(NO_CURRENCY).alias("reason")
    )
    return pl.concat([found, no_currency]) if no_currency.height else found


NO_CURRENCY = (
    "no currency: the row states none and no --currency (or [cycle] currency) is configured"
)


CANONICAL_REASONS = {
    "has_client": "no client: both the client id and the client name are empty",
    "period_in_order": "the service period ends before it starts",
    "str_matches('^[A-Z]{3}$')": "the currency is not a three-letter ISO code such as GBP",
}


def _merge(first: pl.DataFrame, second: pl.DataFrame) -> pl.DataFrame:
    """One row per failing line, its reasons in a stable order."""
    return (
        pl.concat([first, second])
        .unique(maintain_order=True)
        .group_by(ROW, maintain_order=True)
        .agg(pl.col("reason").str.join("; ").alias("_reasons"))
        .sort(ROW)
    )


def _rejected(raw: RawFrame, rows: pl.DataFrame, disposition: str, reason: str) -> pl.DataFrame:
    present = [f for f in RAW_FIELDS if f in raw.columns]
    raw_json = (
        pl.struct([pl.col(f).alias(raw.columns[f]) for f in present]).struct.json_encode()
        if present
        else pl.lit("{}")
    )
    return rows.select(
        pl.col(ROW).cast(pl.Int64).alias("row_number"),
        pl.coalesce(pl.col("line_ref"), pl.format("row:{}", pl.col(ROW))).alias("line_ref"),
        pl.lit(disposition).alias("disposition"),
        pl.col(reason).alias("reasons"),
        raw_json.alias("raw"),
        pl.col("_net_amount").alias("net_amount"),
        _readable_currency().alias("currency"),
    ).cast(QUARANTINE_SCHEMA)
