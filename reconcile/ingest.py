"""Load exports into the workspace: read, validate, store, then prove the totals reconcile."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from reconcile.config import Settings
from reconcile.errors import InputError
from reconcile.load import RawFrame, read_inputs
from reconcile.load.base import PLATFORM_NAMES
from reconcile.load.tabular import grid_warning
from reconcile.options import check_cycle as check_cycle  # run and match import it from here
from reconcile.report_model import CurrencyControl, from_plain, plain
from reconcile.store import ROW_GROUP_ROWS, Workspace
from reconcile.validate import QUARANTINE_SCHEMA, Normalised, normalised
from reconcile.wording import counted

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class LoadResult:
    """What happened to one export: the control totals a finance reviewer checks."""

    load_id: str
    source: str
    platform: str
    shape: str
    cycle: str
    date_convention: str
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_excluded: int
    rows_skipped: int
    rows_unreadable_amount: int
    by_currency: tuple[CurrencyControl, ...]  # the control totals per currency
    already_loaded: bool = False
    warnings: tuple[str, ...] = ()
    invoice_checks: tuple[dict[str, Any], ...] = ()
    quarantine: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    number_format: str = ""  # the file's decimal mark, e.g. "decimal comma (detected)"


def states_currency(raw: RawFrame) -> bool:
    """Whether any row of the export names its currency (a column that is always empty, as in
    Autotask's XML and CSV exports, states none)."""
    if "currency" not in raw.columns:
        return False
    found = raw.collect(raw.frame.select(pl.col("currency").is_not_null().any()))
    return bool(found.item())


def check_currency(raw: RawFrame, settings: Settings) -> None:
    """An export that states no currency needs one given: amounts are never summed or compared
    without knowing their currency, and none is assumed."""
    if settings.currency is None and not states_currency(raw):
        raise InputError(
            raw.file,
            f"the {PLATFORM_NAMES.get(raw.platform, raw.platform)} export states no currency "
            "and none is configured",
            expected="--currency ISO (e.g. --currency GBP), RECONCILE_CURRENCY, or currency "
            "under [cycle] in reconcile.toml",
            hint="Nothing was loaded.",
        )


def check_currencies(sides: list[tuple[str, list[Path]]], settings: Settings) -> None:
    """The currency check for every export of a run before any is loaded."""
    if settings.currency is not None:
        return
    for platform, paths in sides:
        if paths:
            for raw in read_inputs(paths, platform):
                check_currency(raw, settings)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_id(hashes: dict[Path, str]) -> str:
    """A load is keyed by what the files hold, not by their names or where they sit."""
    ordered = sorted(hashes.values())
    return (
        ordered[0] if len(ordered) == 1 else hashlib.sha256("".join(ordered).encode()).hexdigest()
    )


# Workspace.dates_outside_cycle: lines dated outside the cycle, lines dated, first and last date.
OutsideCycle = tuple[int, int, dt.date | None, dt.date | None]
QUARANTINE_LISTED = 1000  # quarantined rows kept in memory for messages; all are stored


@dataclass
class Tally:
    """Control totals of one export, added up batch by batch."""

    date_convention: str = ""
    number_format: str = ""
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_excluded: int = 0
    rows_skipped: int = 0
    rows_unreadable_amount: int = 0
    # Each batch's control totals per currency (_currency_totals), added up by by_currency.
    currency_totals: list[pl.DataFrame] = field(default_factory=list)
    # Net and tax per invoice, batch by batch: kept only for an export that states invoice
    # totals (None: it states none, there is nothing to check them against).
    invoice_sums: list[pl.DataFrame] | None = None
    quarantine: list[dict[str, Any]] = field(default_factory=list)

    def add(self, norm: Normalised) -> None:
        quarantined = norm.rejected.filter(pl.col("disposition") == "quarantined")
        excluded = norm.rejected.filter(pl.col("disposition") == "excluded")
        skipped = norm.rejected.filter(pl.col("disposition") == "skipped")
        self.date_convention = norm.date_convention
        self.number_format = norm.number_format
        self.rows_read += norm.rows_read
        self.rows_loaded += norm.lines.height
        self.rows_quarantined += quarantined.height
        self.rows_excluded += excluded.height
        self.rows_skipped += skipped.height
        self.rows_unreadable_amount += (
            quarantined["net_amount"].null_count() + excluded["net_amount"].null_count()
        )
        self.currency_totals.append(_currency_totals(norm))
        if self.invoice_sums is not None:
            self.invoice_sums.append(
                norm.lines.group_by("invoice_number").agg(
                    pl.col("net_amount").sum().alias("net"),
                    pl.col("tax_amount").sum().alias("tax"),
                    pl.col("tax_amount").null_count().alias("untaxed"),
                    pl.len().alias("lines"),
                )
            )
        room = QUARANTINE_LISTED - len(self.quarantine)
        if room > 0:
            self.quarantine += (
                quarantined.head(room).select("row_number", "line_ref", "reasons").to_dicts()
            )

    def by_currency(self) -> tuple[CurrencyControl, ...]:
        """The control totals per currency, by code, the unknown currency (None) last."""
        if not self.currency_totals:
            return ()
        summed = (
            pl.concat(self.currency_totals, how="diagonal_relaxed")
            .group_by("currency")
            .agg(pl.all().sum())
            .sort("currency", nulls_last=True)
        )
        rows = summed.iter_rows(named=True)
        exact = [
            {k: _sum(v) if k.startswith(MONEY_TOTALS) else v for k, v in r.items()} for r in rows
        ]
        return tuple(from_plain(tuple[CurrencyControl, ...], exact))

    def totals(self) -> dict[str, Any]:
        """The control totals as the loads table stores them (by_currency as JSON-able values:
        a list of CurrencyControl, money as exact text)."""
        kept = {"invoice_sums", "quarantine", "currency_totals"}
        return {k: v for k, v in vars(self).items() if k not in kept} | {
            "by_currency": plain(self.by_currency())
        }

    def warnings(self, raw: RawFrame) -> list[str]:
        grid = grid_warning(raw, self.rows_read)
        return [*raw.warnings, *([grid] if grid else [])]


MONEY_TOTALS = ("net_", "tax_")  # the money fields of CurrencyControl start so


def _currency_totals(norm: Normalised) -> pl.DataFrame:
    """One batch's control totals per currency: a row per currency and measure, its columns
    `currency` and CurrencyControl's counts and sums (null where the row does not give it);
    Tally.by_currency adds them up. Skipped rows carry no amount and count under no currency."""
    rejected = norm.rejected.lazy().filter(pl.col("disposition") != "skipped")
    net = pl.col("net_amount")
    # One query (its parts run side by side), not a collect for each.
    return pl.concat(
        [
            norm.read.lazy().select("currency", rows_read="rows", net_read="net"),
            norm.lines.lazy()
            .group_by("currency")
            .agg(rows_loaded=pl.len(), net_loaded=net.sum(), tax_loaded=pl.col("tax_amount").sum()),
            *(
                rejected.filter(pl.col("disposition") == kind)
                .group_by("currency")
                .agg(pl.len().alias(f"rows_{kind}"), net.sum().alias(f"net_{kind}"))
                for kind in ("quarantined", "excluded")
            ),
            rejected.group_by("currency").agg(rows_unreadable_amount=net.null_count()),
        ],
        how="diagonal_relaxed",
    ).collect()


def read_only(
    paths: list[Path], platform: str | None, settings: Settings
) -> list[tuple[RawFrame, Tally]]:
    """Validate without touching a workspace (the `validate` command)."""
    checked = []
    for raw in read_inputs(paths, platform):
        check_currency(raw, settings)
        checked.append((raw, normalised(raw, settings, _tallied, lambda: None)))
    return checked


def _tallied(batches: Iterator[Normalised]) -> Tally:
    tally = Tally()
    for norm in batches:
        tally.add(norm)
    return tally


def load_paths(
    workspace: Workspace,
    paths: list[Path],
    platform: str | None,
    settings: Settings,
    replace: bool = False,
) -> list[LoadResult]:
    check_cycle(settings.cycle)
    results: list[LoadResult] = []
    keep: set[str] = set()
    for raw in read_inputs(paths, platform):
        check_currency(raw, settings)
        hashes = {p: sha256(p) for p in raw.files}
        load_id = content_id(hashes)
        held = {i: read_with for _, i, read_with in workspace.readings(settings.cycle)}
        if load_id in held and held[load_id] == settings.reading():
            results.append(_previous(workspace, raw, load_id, settings.cycle))
        else:
            if load_id in held:
                # Loaded before with other settings (currency, time zone, date or number
                # format, other month): read again with these, or a run would say one thing
                # and hold another.
                workspace.drop_load(load_id, settings.cycle)
            # With --replace the side's earlier loads go: only this call's loads may clash.
            results.append(_store(workspace, raw, hashes, settings, set(keep) if replace else None))
        keep.add(load_id)
    if replace:
        for side in {r.platform for r in results}:
            workspace.forget(settings.cycle, side, keep)
    return results


def refuse_other_readings(workspace: Workspace, settings: Settings) -> None:
    """Raise InputError when a load of the cycle was read with other settings than
    `settings` (config.Settings.reading): a run must hold its lines as its own settings read
    them, since its fingerprint (run.run_id) binds those settings."""
    reading = settings.reading()
    for platform, load_id, read_with in workspace.readings(settings.cycle):
        if read_with == reading:
            continue
        if read_with is None:
            raise InputError(
                f"--{platform}",
                f"the {platform} export loaded for cycle {settings.cycle} (load {load_id[:12]}) "
                "was loaded by an earlier version of reconcile, which did not keep all a run "
                "needs of it (the settings it was read with, its control totals per currency)",
                hint=f"Give the export again (--{platform} FILE) to have it read again.",
            )
        was = json.loads(read_with)
        now = json.loads(reading)
        differ = [
            f"{k} {_setting(was.get(k, 'unknown'))} (now {_setting(now[k])})"
            for k in now
            if was.get(k) != now[k]
        ]
        raise InputError(
            f"--{platform}",
            f"the {platform} export loaded for cycle {settings.cycle} (load {load_id[:12]}) was "
            f"read with other settings than this run's: {', '.join(differ)}",
            hint=f"Give the export again (--{platform} FILE) to have it read with this run's "
            "settings, or run with the settings it was loaded with.",
        )


def _setting(value: object) -> str:
    """A setting as a message shows it: one not given is 'not set'."""
    return "not set" if value is None else str(value)


def _store(
    workspace: Workspace,
    raw: RawFrame,
    hashes: dict[Path, str],
    settings: Settings,
    clash_with: set[str] | None,
) -> LoadResult:
    """Store batch by batch, staged: a failure half way leaves nothing behind."""
    load_id = content_id(hashes)
    file_name = raw.files[0].name if len(raw.files) == 1 else Path(raw.file).name
    constants = {
        "cycle": settings.cycle,
        "source": raw.platform,
        "load_id": load_id,
        "file_name": file_name,
    }
    with workspace.staged_load(load_id, settings.cycle):
        tally = normalised(
            raw,
            settings,
            lambda batches: _store_batches(workspace, raw, batches, constants),
            lambda: workspace.discard_rows(load_id, settings.cycle),
        )
        _refuse_repeats(workspace, raw, load_id, settings.cycle, clash_with)
        dates = workspace.dates_outside_cycle(load_id, settings.cycle)
        _refuse_other_month(raw, dates, settings)
        record = {
            "load_id": load_id,
            "cycle": settings.cycle,
            "platform": raw.platform,
            "shape": raw.shape,
            "source": raw.file,
            "files": [
                {"name": p.name, "sha256": hashes[p], "bytes": p.stat().st_size} for p in raw.files
            ],
            "dialect": raw.dialect,
            "read_with": settings.reading(),
            **tally.totals(),
            "invoice_checks": _invoice_checks(raw, tally),
            "warnings": tally.warnings(raw)
            + _cycle_warnings(dates, settings.cycle)
            + _client_name_warnings(workspace, raw, load_id),
        }
        workspace.insert_load(record)
    _prove_conservation(workspace, record)
    return _result(record, tally.quarantine)


def _store_batches(
    workspace: Workspace,
    raw: RawFrame,
    batches: Iterator[Normalised],
    constants: dict[str, str],
) -> Tally:
    """Store every batch (`batches`: normalise's, validated as they are read) and tally them.
    A batch is stored on a worker thread while the next one is read and validated (DuckDB and
    polars both work outside the GIL), so the two overlap; one store runs at a time, and it
    has finished, or its error is raised here, before this returns. Lines are stored in whole
    DuckDB row groups (Workspace.insert_batch): the rest of a batch's lines wait for the next
    batch, and the last rest is stored at the end. A batch without a whole row group of lines
    holds its rejected rows back with its lines (up to a row group of them), so that an export
    smaller than a row group is stored by one insert_batch."""
    tally = Tally(invoice_sums=[] if raw.invoice_totals is not None else None)
    held = pl.DataFrame(schema=QUARANTINE_SCHEMA)  # rejected rows not stored yet
    held_lines: pl.DataFrame | None = None  # lines not stored yet: less than a row group
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-store") as storer:
        stored: Future[None] | None = None
        for norm in batches:
            tally.add(norm)
            lines = norm.lines if held_lines is None else pl.concat([held_lines, norm.lines])
            rejected = pl.concat([held, norm.rejected]) if held.height else norm.rejected
            whole = lines.height - lines.height % ROW_GROUP_ROWS
            held_lines = lines.slice(whole)
            if not whole and rejected.height < ROW_GROUP_ROWS:
                held = rejected
                continue
            held = rejected.clear()
            if stored is not None:
                stored.result()
            stored = storer.submit(workspace.insert_batch, lines.head(whole), rejected, constants)
        if stored is not None:
            stored.result()
    if held_lines is not None:
        workspace.insert_batch(held_lines, held, constants)
    return tally


def _prove_conservation(workspace: Workspace, record: dict[str, Any]) -> None:
    """Rows read = loaded + quarantined + excluded + skipped, and per currency the rows and
    net amounts read agree with those stored, to the cent (a skipped row, blank or a totals
    row, carries no line's amount and no currency)."""
    skipped, stored = workspace.stored_totals(record["load_id"], record["cycle"])
    read = {c["currency"]: (c["rows_read"], Decimal(c["net_read"])) for c in record["by_currency"]}
    kept = {
        currency: (
            s["rows_loaded"] + s["rows_quarantined"] + s["rows_excluded"],
            s["net_loaded"] + s["net_quarantined"] + s["net_excluded"],
        )
        for currency, s in stored.items()
    }
    rows = sum(r for r, _ in kept.values()) + skipped
    if rows != record["rows_read"] or kept != read:
        raise RuntimeError(
            f"control totals do not reconcile for {record['source']}: read {record['rows_read']} "
            f"rows, per currency {read}; stored {rows} rows, per currency {kept}"
        )


def _sum(value: Any) -> Decimal:
    return ZERO if value is None else Decimal(value).quantize(ZERO)


def _invoice_checks(raw: RawFrame, tally: Tally) -> list[dict[str, Any]]:
    """Where the export states invoice totals, its lines must add up to them."""
    if raw.invoice_totals is None or raw.invoice_totals.height == 0 or not tally.invoice_sums:
        return []
    sums = pl.concat(tally.invoice_sums).group_by("invoice_number").agg(pl.all().sum())
    affected = tally.rows_quarantined > 0
    checks = []
    for row in raw.invoice_totals.sort("invoice_number").iter_rows(named=True):
        if row["invoice_number"] is None or row["total"] is None:
            continue
        got = sums.filter(pl.col("invoice_number") == row["invoice_number"])
        if got.height == 0:
            continue
        net, tax = _sum(got["net"][0]), _sum(got["tax"][0])
        untaxed, lines = got["untaxed"][0], got["lines"][0]
        stated = Decimal(row["total"]).quantize(ZERO)
        ok = abs(stated - (net + tax)) <= Decimal("0.01") or (tax == 0 and stated == net)
        check = {
            "invoice": row["invoice_number"],
            "stated_total": str(stated),
            "lines_net": str(net),
            # No line gives its tax: the lines' tax is not known, not 0.
            "lines_tax": None if untaxed == lines else str(tax),
            "lines_gross": str(net + tax),
            "ok": ok,
            "has_quarantined_lines": affected and not ok,
        }
        # Only an invoice with lines that give no tax says how many.
        checks.append({**check, "lines_without_tax": untaxed} if untaxed else check)
    return checks


def _refuse_repeats(
    workspace: Workspace, raw: RawFrame, load_id: str, cycle: str, clash_with: set[str] | None
) -> None:
    """The same billing loaded twice (its CSV and then its XLSX export, or a page saved twice)
    would double the side and turn every line into a duplicate: refuse it. Lines other than
    this load's belong to recorded loads (a pending one is swept when the workspace opens), so
    without an earlier load of the side and cycle there is nothing to compare. Within one
    Autotask export, a billing item id on two invoices is a voided invoice and its reissue
    (voiding returns the items for invoicing again, and a voided invoice keeps its number;
    an XML or CSV export has no voided flag, psa-exports.md §1.2, §1.12): it would count twice,
    and which invoice is void cannot be told, so it is refused the same way."""
    twice = workspace.line_on_two_invoices(load_id, cycle) if raw.platform == "autotask" else None
    if twice is not None:
        value, first, second = twice
        repeated = (
            f"billing item id {value!r} on two invoices, {first} and {second}: a voided invoice "
            "and its reissue? A billing item is billed on one invoice, and the export does not say "
            "which of them was voided",
            "each billing item on one invoice",
            "Export the billing again without the voided invoice (Autotask's Invoice History "
            "marks it voided), and load that export.",
        )
    else:
        earlier = set(workspace.load_ids(cycle, raw.platform)) - {load_id}
        if not (earlier if clash_with is None else earlier & clash_with):
            return
        found = workspace.repeated_lines(load_id, cycle, raw.platform, clash_with)
        if found is None:
            return
        what, value, other = found
        repeated = (
            f"{what} {value!r}, already loaded for cycle {cycle} from {other}: it holds (part "
            "of) the same billing",
            f"each {PLATFORM_NAMES[raw.platform]} line in one export only",
            "To load a new export of the same billing instead of the earlier one, add "
            "--replace; to keep the earlier one, leave this file out.",
        )
    said, expected, hint = repeated
    raise InputError(raw.file, f"this export repeats {said}", expected=expected, hint=hint)


def _refuse_other_month(raw: RawFrame, dates: OutsideCycle, settings: Settings) -> None:
    """An export of the wrong month reconciles without error and proves nothing. `dates` is
    Workspace.dates_outside_cycle of the load."""
    outside, dated, first, last = dates
    if settings.allow_other_month or not dated or outside < dated:
        return
    raise InputError(
        raw.file,
        f"every invoice in this export is dated outside cycle {settings.cycle} "
        f"(from {first} to {last})",
        expected=f"invoices dated in {settings.cycle}",
        hint="Check that --cycle names the month these invoices bill, or that you picked the "
        "right export; --allow-other-month loads it anyway.",
    )


def _cycle_warnings(dates: OutsideCycle, cycle: str) -> list[str]:
    """Some invoices outside the cycle (all of them is refused unless allowed): say so."""
    outside, dated, first, last = dates
    if not outside:
        return []
    return [
        f"{outside} of {counted(dated, 'line')} {'has' if outside == 1 else 'have'} an invoice "
        f"date outside cycle {cycle} (invoice dates "
        f"run from {first} to {last}); check that --cycle names the month these invoices bill"
    ]


def _client_name_warnings(workspace: Workspace, raw: RawFrame, load_id: str) -> list[str]:
    """A HaloPSA client id under two names in one export: one of them is stale or mistyped, and
    only the commoner is shown for the client."""
    if raw.platform != "halopsa":
        return []
    # The ids under two names first (a min and a max, not a list of names for every id).
    rows = workspace.con.execute(
        """
        SELECT client_id, list(DISTINCT client_name ORDER BY client_name) FROM lines
        WHERE load_id = $id AND client_name IS NOT NULL AND client_id IN (
            SELECT client_id FROM lines
            WHERE load_id = $id AND client_id IS NOT NULL AND client_name IS NOT NULL
            GROUP BY client_id HAVING min(client_name) <> max(client_name)
        )
        GROUP BY client_id ORDER BY client_id
        """,
        {"id": load_id},
    ).fetchall()
    return [
        f"HaloPSA client id {client_id} appears under {len(names)} names: "
        + " and ".join(repr(n) for n in names)
        for client_id, names in rows
    ]


def load_warnings(record: Mapping[str, Any]) -> list[str]:
    """The load's warnings, then every invoice whose stated total its lines do not add up to."""
    return list(record["warnings"]) + [
        f"invoice {c['invoice']}: the export states {c['stated_total']} but its lines add up "
        f"to {c['lines_gross']} ({_net_and_tax(c)})"
        for c in record["invoice_checks"]
        if not c["ok"]
    ]


def _net_and_tax(check: Mapping[str, Any]) -> str:
    """What an invoice check's lines add up to, never a tax figure they do not give: "486.00
    net + 97.20 tax", "486.00 net; tax not given" (no line gives its tax) or "486.00 net +
    64.80 tax; 1 line gives no tax"."""
    net = f"{check['lines_net']} net"
    if check["lines_tax"] is None:
        return f"{net}; tax not given"
    given = f"{net} + {check['lines_tax']} tax"
    untaxed = check.get("lines_without_tax", 0)
    if not untaxed:
        return given
    return f"{given}; {counted(untaxed, 'line')} {'gives' if untaxed == 1 else 'give'} no tax"


def _result(record: dict[str, Any], quarantine: list[dict[str, Any]]) -> LoadResult:
    warnings = load_warnings(record)
    return LoadResult(
        load_id=record["load_id"],
        source=record["source"],
        platform=record["platform"],
        shape=record["shape"],
        cycle=record["cycle"],
        date_convention=record["date_convention"],
        rows_read=record["rows_read"],
        rows_loaded=record["rows_loaded"],
        rows_quarantined=record["rows_quarantined"],
        rows_excluded=record["rows_excluded"],
        rows_skipped=record["rows_skipped"],
        rows_unreadable_amount=record["rows_unreadable_amount"],
        by_currency=from_plain(tuple[CurrencyControl, ...], record["by_currency"]),
        warnings=tuple(warnings),
        invoice_checks=tuple(record["invoice_checks"]),
        quarantine=tuple(quarantine),
        number_format=record.get("number_format") or "",
    )


def _previous(workspace: Workspace, raw: RawFrame, load_id: str, cycle: str) -> LoadResult:
    row = workspace.frame(
        "SELECT * FROM loads WHERE load_id = ? AND cycle = ?", [load_id, cycle]
    ).row(0, named=True)
    quarantine = workspace.frame(
        "SELECT row_number, line_ref, reasons FROM quarantine WHERE load_id = ? AND cycle = ? "
        f"AND disposition = 'quarantined' ORDER BY row_number LIMIT {QUARANTINE_LISTED}",
        [load_id, cycle],
    ).to_dicts()
    row["invoice_checks"] = json.loads(row["invoice_checks"])
    row["warnings"] = json.loads(row["warnings"])
    row["by_currency"] = json.loads(row["by_currency"])
    result = _result(row, quarantine)
    return LoadResult(**{**result.__dict__, "source": raw.file, "already_loaded": True})
