"""Synthetic report data, built through the report's own typed constructors.

Tests of the report must not depend on the matcher or the rules (other people's moving parts),
so this builds a ReportData directly, with the frames of reconcile.report_model's schemas: the
bridge sums exactly to the gross difference, totals follow from the discrepancies, the verdict
from their severities and each client's row from its discrepancies. The frames are made with
polars, not row by row, so a report of 165,000 discrepancies and 170,000 clients is built in
seconds. ``hostile=True`` plants markup and template syntax in every free-text field a user
controls.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from reconcile.report_model import (
    CLIENT_SCHEMA,
    DISCREPANCY_SCHEMA,
    LINE_SCHEMA,
    MONEY,
    QUARANTINE_SCHEMA,
    SEVERITIES,
    Amounts,
    BridgeEntry,
    Control,
    Counts,
    CurrencyControl,
    CurrencyTotals,
    Exclusion,
    LoweredSeverity,
    MappingFile,
    MatchStage,
    ReportData,
    RuleInForce,
    RuleText,
    SettingsInForce,
    Sides,
    SideTotals,
    Summary,
    Unmapped,
    Verdict,
    conform,
    text_columns,
)

CYCLE = "2026-11"
NOVEMBER = (np.datetime64("2026-11-01"), np.datetime64("2026-11-30"))

HOSTILE = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{ 7*7 }} {% raw %}",
)

CLIENTS = (
    "Acme Widgets Ltd",
    "Harbourview Veterinary Practice",
    "Northwind Legal LLP",
    "Bluebell Dental Care",
    "Castle & Finch Accountants",
    "Greenfield Primary Academy Trust",
    "Riverside Logistics Ltd",
    "Oakridge Property Management",
    "Summit Physiotherapy",
    "Pennine Engineering Group",
    "Marlow & Sons Solicitors",
    "Brightwater Housing Association",
)

# Item name and unit price in ten-thousandths (exact integer arithmetic throughout).
ITEMS = (
    ("Microsoft 365 Business Premium", 220000),
    ("Microsoft 365 Business Basic", 60000),
    ("Microsoft Teams Phone Standard", 80000),
    ("Managed Workstation", 350000),
    ("Managed Server", 1200000),
    ("Veeam Cloud Connect Backup (per TB)", 450000),
    ("Datto EDR", 45000),
    ("Mimecast Email Security", 38000),
    ("Firewall Management", 650000),
    ("SentinelOne Complete", 65000),
    ("After-hours Support Block (10 h)", 9500000),
    ("Domain Renewal", 150000),
)
QUANTITIES = (1, 1, 2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 55, 80)

RULES: dict[str, RuleText] = {
    "missing_in_halopsa": RuleText(
        "Line missing in HaloPSA",
        "blocker",
        "Autotask billed this charge but HaloPSA has no line for it, so the client would not be"
        " invoiced for it after cutover. Check that the recurring service or contract exists"
        " in HaloPSA and is active for this billing cycle.",
    ),
    "missing_in_autotask": RuleText(
        "Extra line in HaloPSA",
        "blocker",
        "HaloPSA bills a charge that Autotask did not, so the client would be invoiced for"
        " something new. Check whether the HaloPSA recurring invoice or contract was created"
        " twice or started a cycle early.",
    ),
    "quantity_mismatch": RuleText(
        "Quantity differs",
        "blocker",
        "Both systems bill the same item at the same price but for a different number of units"
        " (seats, devices, terabytes). Compare the quantity on the HaloPSA recurring invoice"
        " line with the Autotask service or contract unit count.",
    ),
    "unit_price_mismatch": RuleText(
        "Unit price differs",
        "blocker",
        "The same item is billed at a different unit price. Check the price on the HaloPSA"
        " item or contract against the Autotask contract service; a price rise agreed with"
        " the client can be marked as an expected difference.",
    ),
    "amount_mismatch": RuleText(
        "Amount differs",
        "blocker",
        "Quantity and unit price agree but the line amount does not, usually because of a"
        " discount or a manual override on one side. Check discounts on the HaloPSA line.",
    ),
    "tax_mismatch": RuleText(
        "Tax differs",
        "warning",
        "The net amounts agree but the tax does not. Check the tax code on the HaloPSA item and"
        " the client's tax settings against Autotask's tax category.",
    ),
    "duplicate_line": RuleText(
        "Duplicate line",
        "blocker",
        "The same charge appears more than once on one side. In HaloPSA this is often a"
        " recurring invoice copied during migration; remove the duplicate line.",
    ),
    "period_mismatch": RuleText(
        "Service period differs",
        "warning",
        "The charge is billed for a different service period. Check the HaloPSA recurring"
        " invoice's next invoice date and whether it bills in advance or in arrears.",
    ),
    "proration_mismatch": RuleText(
        "Proration differs",
        "warning",
        "A part-month charge is prorated differently. Compare the start date of the service in"
        " HaloPSA with Autotask and check HaloPSA's proration setting.",
    ),
    "contract_type_mismatch": RuleText(
        "Contract type differs",
        "warning",
        "The charge belongs to a different kind of contract on each side (for example"
        " recurring service versus block hours), which changes how it renews and reports."
        " Check the contract type in HaloPSA.",
    ),
    "unmapped_client": RuleText(
        "Client not mapped",
        "blocker",
        "A client name in one system has no match in the other, so its lines could not be"
        " compared. Add the pair to the mapping file (see Unmapped below for suggestions).",
    ),
    "unmapped_item": RuleText(
        "Item not mapped",
        "warning",
        "An item in one system has no match in the other; its lines were matched by"
        " description only. Add the item pair to the mapping file.",
    ),
    "currency_mismatch": RuleText(
        "Currency differs",
        "blocker",
        "The two invoices are in different currencies. Check the client's currency in HaloPSA.",
    ),
    "rounding_difference": RuleText(
        "Rounding difference",
        "info",
        "The amounts differ by a cent or two because the systems round at a different step"
        " (per line or per invoice). Usually nothing to do.",
    ),
    "client_total_mismatch": RuleText(
        "Client total differs",
        "info",
        "The client's invoice total differs between the systems. The line-level discrepancies"
        " for this client explain the difference; this row is a roll-up.",
    ),
}

# How often each rule fires in a realistic cycle.
WEIGHTS = {
    "missing_in_halopsa": 6,
    "missing_in_autotask": 4,
    "quantity_mismatch": 10,
    "unit_price_mismatch": 6,
    "amount_mismatch": 3,
    "tax_mismatch": 4,
    "duplicate_line": 2,
    "period_mismatch": 3,
    "proration_mismatch": 4,
    "contract_type_mismatch": 2,
    "unmapped_client": 1,
    "unmapped_item": 2,
    "currency_mismatch": 1,
    "rounding_difference": 5,
    "client_total_mismatch": 1,
}

# What each rule's HaloPSA line does to the Autotask line; the message says it.
MESSAGES = {
    "missing_in_halopsa": ("Autotask bills {} × {}; HaloPSA has no matching line", "qty", "item"),
    "missing_in_autotask": ("HaloPSA bills {} × {}; Autotask has no matching line", "qty", "item"),
    "quantity_mismatch": ("Quantity {} in Autotask, {} in HaloPSA", "qty", "hp_qty"),
    "unit_price_mismatch": ("Unit price {} in Autotask, {} in HaloPSA", "price", "hp_price"),
    "amount_mismatch": ("Same quantity and price, but HaloPSA bills {} (15% discount?)", "hp"),
    "tax_mismatch": ("Tax 20% in Autotask, zero-rated in HaloPSA",),
    "duplicate_line": ("{} billed twice in HaloPSA", "item"),
    "period_mismatch": ("Billed for November in Autotask, December in HaloPSA (in advance)",),
    "proration_mismatch": ("Autotask prorates 16 of 30 days; HaloPSA bills the full month",),
    "contract_type_mismatch": ("Recurring service in Autotask, block hours contract in HaloPSA",),
    "unmapped_client": ("HaloPSA client '{}' has no Autotask company in the mapping", "client"),
    "unmapped_item": ("HaloPSA item '{}' has no Autotask item in the mapping", "item"),
    "currency_mismatch": ("Invoiced in GBP in Autotask, EUR in HaloPSA",),
    "rounding_difference": ("Amounts differ by 0.01 (rounding per line vs per invoice)",),
    "client_total_mismatch": ("Client invoice total differs by {}", "diff"),
}


def _text(units: pl.Expr, places: int) -> pl.Expr:
    """An integer count of 10**-places as exact decimal text (`-1234.50`)."""
    scale = 10**places
    sign = pl.when(units < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    whole = (units.abs() // scale).cast(pl.String)
    return pl.concat_str(
        sign, whole, pl.lit("."), (units.abs() % scale).cast(pl.String).str.zfill(places)
    )


def _decimal(units: pl.Expr, places: int, dtype: pl.DataType) -> pl.Expr:
    return _text(units, places).cast(dtype)


def _half_up(numerator: pl.Expr, denominator: int) -> pl.Expr:
    """Integer division rounding half away from zero."""
    return (numerator.sign() * ((numerator.abs() * 2 + denominator) // (2 * denominator))).cast(
        pl.Int64
    )


def client_names(n: int, hostile: bool = False) -> list[str]:
    """The named clients, then numbered variants of them for a large MSP."""
    k = pl.int_range(len(CLIENTS), max(n, len(CLIENTS)))
    base = (k % len(CLIENTS)).replace_strict(dict(enumerate(CLIENTS)), return_dtype=pl.String)
    numbered = pl.select(pl.format("{} {}", base, k.cast(pl.String).str.zfill(6)).alias("n"))
    names = list(CLIENTS[:n]) + numbered["n"].to_list()
    if hostile:
        names[0] = f"Acme {HOSTILE[0]} Widgets"
        names[1] = f"{HOSTILE[1]} Dental"
        names[2] = f"{HOSTILE[2]} Holdings"
    return names


def _payload(index: pl.Expr) -> pl.Expr:
    """One of the hostile strings, chosen by an integer column."""
    return index.mod(len(HOSTILE)).replace_strict(dict(enumerate(HOSTILE)), return_dtype=pl.String)


def _client_draws(rng: np.random.Generator, clients: int, n: int) -> Any:
    """Which client each finding is for: a large MSP's biggest clients (the named ones) have a
    fifth of the findings between them, the rest spread over every client."""
    spread = rng.integers(0, clients, n)
    big = rng.integers(0, min(clients, len(CLIENTS)), n)
    return np.where(rng.random(n) < 0.2, big, spread)


def _findings(
    n: int, clients: list[str], hostile: bool, seed: int, rule: str | None = None
) -> pl.DataFrame:
    """One row per finding: rule, client, item, and both sides' quantity and unit price in
    integer units (ten-thousandths for prices); `rule` gives every finding that rule."""
    rng = np.random.default_rng(seed)
    codes = list(WEIGHTS)
    weights = np.array([WEIGHTS[c] for c in codes], dtype=float)
    # Every rule at least once in small samples, then drawn by weight.
    drawn = codes[: min(len(codes), n)] + list(
        rng.choice(codes, size=max(0, n - len(codes)), p=weights / weights.sum())
    )
    if rule is not None:
        drawn = [rule] * n
    item = rng.integers(0, len(ITEMS), n)
    frame = pl.DataFrame(
        {
            "i": np.arange(n),
            "rule": drawn,
            "client": np.array(clients, dtype=object)[_client_draws(rng, len(clients), n)],
            "item": np.array([name for name, _ in ITEMS], dtype=object)[item],
            "price": np.array([price for _, price in ITEMS])[item],
            "qty": np.array(QUANTITIES)[rng.integers(0, len(QUANTITIES), n)],
            "step": np.array([-2, -1, 1, 1, 2, 3])[rng.integers(0, 6, n)],
            "factor": np.array([90, 95, 105, 110])[rng.integers(0, 4, n)],
            "roll_up": rng.integers(200_000, 900_000, n),
            "roll_diff": rng.integers(-5000, 5000, n),
        },
        schema={
            "i": pl.Int64,
            "rule": pl.String,
            "client": pl.String,
            "item": pl.String,
            **dict.fromkeys(("price", "qty", "step", "factor", "roll_up", "roll_diff"), pl.Int64),
        },
    )
    if hostile:
        frame = frame.with_columns(
            pl.format("{} {}", "item", _payload(pl.col("i"))).alias("item"),
        )
    hp_qty = (
        pl.when(pl.col("rule") != "quantity_mismatch")
        .then("qty")
        .when(pl.col("qty") > 2)
        .then(pl.col("qty") + pl.col("step"))
        .otherwise(pl.col("qty") + 1)
    )
    hp_price = (
        pl.when(pl.col("rule") == "unit_price_mismatch")
        .then(pl.col("price") * pl.col("factor") // 100)
        .otherwise("price")
    )
    return frame.with_columns(hp_qty.alias("hp_qty"), hp_price.alias("hp_price"))


def _side_lines(findings: pl.DataFrame, hostile: bool) -> pl.DataFrame:
    """Both sides' lines in integer units: id index, side, ref, qty, price, net and tax cents,
    period; a duplicate_line finding has two HaloPSA lines, a client_total_mismatch none."""
    rule = pl.col("rule")
    desc = pl.format("{} – November 2026", "item")
    if hostile:
        desc = pl.format("{} {}", desc, _payload(pl.col("i") + 1))
    base = findings.with_columns(desc.alias("description"))
    prorated = rule == "proration_mismatch"
    at = base.filter(~rule.is_in(["missing_in_autotask", "client_total_mismatch"])).select(
        "i",
        pl.lit("autotask").alias("side"),
        (pl.col("i") + 700000).cast(pl.String).alias("ref"),
        "item",
        "description",
        "qty",
        "price",
        pl.when(prorated)
        .then(_half_up(pl.col("qty") * pl.col("price") * 16, 30 * 100))
        .otherwise(_half_up(pl.col("qty") * pl.col("price"), 100))
        .alias("net"),
        pl.lit(True).alias("taxed"),
        pl.when(prorated).then(15).otherwise(1).alias("start_day"),
        pl.lit(0).alias("month_shift"),
    )
    hp_rows = base.filter(~rule.is_in(["missing_in_halopsa", "client_total_mismatch"]))
    hp_net = _half_up(pl.col("hp_qty") * pl.col("hp_price"), 100)
    hp = hp_rows.select(
        "i",
        pl.lit("halopsa").alias("side"),
        (pl.col("i") + 8810000).cast(pl.String).alias("ref"),
        "item",
        "description",
        pl.col("hp_qty").alias("qty"),
        pl.col("hp_price").alias("price"),
        pl.when(rule == "amount_mismatch")
        .then(_half_up(pl.col("qty") * pl.col("price") * 85, 100 * 100))
        .when(rule == "rounding_difference")
        .then(hp_net + 1)
        .otherwise(hp_net)
        .alias("net"),
        (rule != "tax_mismatch").alias("taxed"),
        pl.when(prorated).then(15).otherwise(1).alias("start_day"),
        pl.when(rule == "period_mismatch").then(1).otherwise(0).alias("month_shift"),
    )
    twice = findings.filter(rule == "duplicate_line")["i"].to_list()
    duplicates = hp.filter(pl.col("i").is_in(twice)).with_columns(
        (pl.col("i") + 9310000).cast(pl.String).alias("ref")
    )
    lines = pl.concat([at, hp, duplicates])
    if hostile:
        lines = lines.with_columns(
            pl.when(pl.col("i").mod(4) == 0)
            .then(pl.format("{}{}", "ref", _payload(pl.col("i"))))
            .otherwise("ref")
            .alias("ref")
        )
    return lines.with_columns(
        pl.when("taxed").then(_half_up(pl.col("net") * 20, 100)).otherwise(0).alias("tax")
    ).sort("i", "side", "ref")


def _line_frame(lines: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    november = pl.date(2026, 11, 1)
    start = november.dt.offset_by(pl.format("{}mo", "month_shift")).dt.offset_by(
        pl.format("{}d", pl.col("start_day") - 1)
    )
    end = november.dt.offset_by(pl.format("{}mo", "month_shift")).dt.month_end()
    return conform(
        lines.join(ids, on="i", maintain_order="left").with_columns(
            pl.col("item"),
            _decimal(pl.col("qty") * 10000, 4, LINE_SCHEMA["quantity"]).alias("quantity"),
            _decimal(pl.col("price"), 4, LINE_SCHEMA["unit_price"]).alias("unit_price"),
            _decimal(pl.col("net"), 2, LINE_SCHEMA["net_amount"]).alias("net_amount"),
            _decimal(pl.col("tax"), 2, LINE_SCHEMA["tax_amount"]).alias("tax_amount"),
            start.alias("period_start"),
            end.alias("period_end"),
        ),
        LINE_SCHEMA,
    )


def _discrepancy_frame(findings: pl.DataFrame, lines: pl.DataFrame, hostile: bool) -> pl.DataFrame:
    """Amounts from the lines (net per side, gross effect, exposure), message per rule."""
    sides = lines.group_by("i", "side").agg(
        pl.col("net").sum().alias("net"), (pl.col("net") + pl.col("tax")).sum().alias("gross")
    )
    per_side = {
        side: sides.filter(pl.col("side") == side).select(
            "i", pl.col("net").alias(f"{side}_net"), pl.col("gross").alias(f"{side}_gross")
        )
        for side in ("autotask", "halopsa")
    }
    roll_up = pl.col("rule") == "client_total_mismatch"
    frame = (
        findings.join(per_side["autotask"], on="i", how="left", maintain_order="left")
        .join(per_side["halopsa"], on="i", how="left", maintain_order="left")
        .with_columns(
            pl.when(roll_up).then("roll_up").otherwise("autotask_net").alias("at"),
            pl.when(roll_up)
            .then(pl.col("roll_up") + pl.col("roll_diff"))
            .otherwise("halopsa_net")
            .alias("hp"),
            (pl.col("halopsa_gross").fill_null(0) - pl.col("autotask_gross").fill_null(0)).alias(
                "gross_cents"
            ),
        )
        .with_columns(
            (pl.col("hp").fill_null(0) - pl.col("at").fill_null(0)).alias("diff"),
            pl.max_horizontal(
                pl.col("autotask_gross").abs(),
                pl.col("halopsa_gross").abs(),
                pl.col("at"),
                pl.col("hp"),
            )
            .fill_null(0)
            .alias("exposure_cents"),
        )
    )
    shown = {
        "qty": pl.col("qty").cast(pl.String),
        "hp_qty": pl.col("hp_qty").cast(pl.String),
        "item": pl.col("item"),
        "client": pl.col("client").str.slice(0, 12) + "…",
        "price": _text(pl.col("price") // 100, 2),
        "hp_price": _text(pl.col("hp_price") // 100, 2),
        "hp": _text(pl.col("hp").fill_null(0), 2),
        "diff": _text(pl.col("diff"), 2),
    }
    frame = pl.concat(
        frame.filter(pl.col("rule") == code).with_columns(
            (
                pl.format(template, *(shown[f] for f in fields)) if fields else pl.lit(template)
            ).alias("message")
        )
        for code, (template, *fields) in MESSAGES.items()
    ).sort("i")
    if hostile:
        frame = frame.with_columns(pl.format("{} {}", "message", _payload(pl.col("i") + 2)))
    # Opaque ids of the engine's length, stable for a given index.
    digest = (pl.col("i").hash(20261123) % 10**10).cast(pl.String).str.zfill(10)
    return conform(
        frame.with_columns(
            pl.format("D-{}", digest).alias("id"),
            pl.col("rule")
            .replace_strict({c: r.severity for c, r in RULES.items()})
            .alias("severity"),
            pl.lit("open").alias("status"),
            pl.lit("GBP").alias("currency"),
            pl.when(roll_up).then(pl.lit("gross")).otherwise(pl.lit("net")).alias("measure"),
            _decimal(pl.col("at"), 2, MONEY).alias("autotask_amount"),
            _decimal(pl.col("hp"), 2, MONEY).alias("halopsa_amount"),
            _decimal(pl.col("diff"), 2, MONEY).alias("difference"),
            _decimal(pl.when(roll_up).then(0).otherwise("gross_cents"), 2, MONEY).alias(
                "gross_difference"
            ),
            _decimal(pl.col("exposure_cents"), 2, MONEY).alias("exposure"),
            pl.lit(None, pl.String).alias("root_cause"),
        ),
        DISCREPANCY_SCHEMA,
    )


def _cents(frame: pl.DataFrame, expr: pl.Expr) -> Decimal:
    value = frame.select(expr.sum()).item()
    return Decimal(int(value or 0)).scaleb(-2)


def sample_report_data(
    n_discrepancies: int = 40, hostile: bool = False, clients: int = len(CLIENTS)
) -> ReportData:
    """Report data with ``n_discrepancies`` open findings among ``clients`` clients, plus three
    accepted differences, unmapped names, lowered settings, quarantined and excluded rows."""
    names = client_names(clients, hostile)
    seed = 20261123 + n_discrepancies
    findings = _findings(n_discrepancies, names, hostile, seed)
    # Three accepted price rises, listed after the open findings (the run's order).
    accepted = _findings(3, names[3:6], hostile, seed + 1, "unit_price_mismatch").with_columns(
        (pl.col("i") + n_discrepancies).alias("i")
    )
    every = pl.concat([findings, accepted])
    raw_lines = _side_lines(every, hostile)
    discrepancies = _discrepancy_frame(every, raw_lines, hostile).with_columns(
        pl.when(pl.int_range(pl.len()) >= n_discrepancies)
        .then(pl.lit("expected"))
        .otherwise("severity")
        .alias("severity"),
        pl.when(pl.int_range(pl.len()) >= n_discrepancies)
        .then(pl.lit("expected"))
        .otherwise("status")
        .alias("status"),
        pl.when(pl.int_range(pl.len()) >= n_discrepancies)
        .then(pl.format("{} — accepted: price rise agreed from November", "message"))
        .otherwise("message")
        .alias("message"),
    )
    ids = discrepancies.select(pl.int_range(pl.len()).alias("i"), "id")
    lines = _line_frame(raw_lines, ids)
    summary = _summary(discrepancies, raw_lines, every, names, hostile)
    return ReportData(
        summary=summary,
        rules=RULES,
        discrepancies=discrepancies,
        lines=lines,
        quarantine=_quarantine(names, hostile),
        excluded=_excluded(hostile),
    )


def _summary(
    discrepancies: pl.DataFrame,
    lines: pl.DataFrame,
    findings: pl.DataFrame,
    names: list[str],
    hostile: bool,
) -> Summary:
    gross_delta = pl.when(pl.col("side") == "halopsa").then(1).otherwise(-1) * (
        pl.col("net") + pl.col("tax")
    )
    net_delta = pl.when(pl.col("side") == "halopsa").then(1).otherwise(-1) * pl.col("net")
    tax_delta = pl.when(pl.col("side") == "halopsa").then(1).otherwise(-1) * pl.col("tax")
    lines = lines.join(
        discrepancies.select(pl.int_range(pl.len()).alias("i"), "rule", "severity", "client"),
        on="i",
    )
    # The bridge: gross change per rule over the findings' lines (the roll-up rule has none),
    # the accepted differences as one bar; totals follow, so the bridge sums exactly.
    per_rule = (
        lines.with_columns(
            pl.when(pl.col("severity") == "expected")
            .then(pl.lit("expected"))
            .otherwise("rule")
            .alias("bar")
        )
        .group_by("bar")
        .agg(gross_delta.sum().alias("cents"))
        .sort(pl.col("cents").abs(), "bar", descending=[True, False])
    )
    bridge = tuple(
        BridgeEntry(
            rule=bar,
            title="Accepted differences" if bar == "expected" else RULES[bar].title,
            amount=Decimal(cents).scaleb(-2),
        )
        for bar, cents in per_rule.rows()
    )
    net_diff, tax_diff = _cents(lines, net_delta), _cents(lines, tax_delta)
    counts = lines.group_by("side").len()
    side_lines = dict(counts.rows())
    at_lines = 340 + side_lines.get("autotask", 0)
    hp_lines = 340 + side_lines.get("halopsa", 0)
    at_net, at_tax = Decimal("41250.00"), Decimal("8250.00")
    hp_net, hp_tax = at_net + net_diff, at_tax + tax_diff
    gbp = CurrencyTotals(
        autotask=SideTotals(at_net, at_tax, at_net + at_tax, at_lines, 0),
        halopsa=SideTotals(hp_net, hp_tax, hp_net + hp_tax, hp_lines, 1),
        difference=Amounts(net_diff, tax_diff, net_diff + tax_diff),
    )
    severities = dict(discrepancies.group_by("severity").len().rows())
    per_rule_counts = discrepancies.group_by("rule", "severity").len()
    by_rule = {
        code: dict.fromkeys(SEVERITIES, 0)
        | {s: n for r, s, n in per_rule_counts.rows() if r == code}
        for code in RULES
    }
    verdict = Verdict(
        ready=not severities.get("blocker"),
        blockers=severities.get("blocker", 0),
        warnings=severities.get("warning", 0),
        info=severities.get("info", 0),
        expected=severities.get("expected", 0),
        accepted=0,
    )
    exact = max(at_lines - 60, 0)
    stages = (
        MatchStage("exact", "Exact 1:1", exact, exact, exact),
        MatchStage("split", "Split lines (1:n, n:1)", 9, 12, 25),
        MatchStage("values", "Same charge, different values", 21, 21, 21),
        MatchStage("period", "Different service period", 6, 6, 6),
        MatchStage("fuzzy", "Similar description", 8, 8, 9),
        MatchStage("unmatched", "Unmatched", 12, 6, 18),
    )
    return Summary(
        run_id="5a3f0c2e9b7d1e44",
        reconcile_version="0.1.0",
        cycle=CYCLE,
        verdict=verdict,
        totals={"GBP": gbp},
        open_variance={
            "GBP": _cents(
                lines.group_by("i", "severity")
                .agg(gross_delta.sum().alias("d"))
                .filter(pl.col("severity") != "expected"),
                pl.col("d").abs(),
            )
        },
        lines=Sides(at_lines, hp_lines),
        match_stages=stages,
        match_rate=Sides(
            (Decimal(at_lines - 6) / at_lines).quantize(Decimal("0.0001")),
            (Decimal(hp_lines - 18) / hp_lines).quantize(Decimal("0.0001")),
        ),
        counts=Counts(
            by_severity=dict.fromkeys(SEVERITIES, 0) | severities,
            accepted=dict.fromkeys(SEVERITIES, 0),
            by_rule=by_rule,
        ),
        bridge={"GBP": bridge},
        controls=_controls(at_lines, hp_lines, at_net, hp_net, names),
        mappings=(MappingFile("mapping.csv", hashlib.sha256(b"map").hexdigest()),),
        unused_mappings=(),
        unmapped=_unmapped(names, hostile),
        unmapped_contracts=0,
        clients=_clients(lines, discrepancies, names, gross_delta),
        config=SettingsInForce(
            source="reconcile.toml",
            sha256=hashlib.sha256(b"toml").hexdigest(),
            currency="GBP",
            retired_items=("Legacy Tape Backup",),
            retired_clients=(),
            fuzzy_min_score=60.0,
            changed={
                "cycle.currency": "GBP",
                "expected.retired_items": ["Legacy Tape Backup"],
                "rules.unmapped_item.severity": "info",
            },
            changed_from={
                "cycle.currency": "RECONCILE_CURRENCY",
                "expected.retired_items": "reconcile.toml",
                "rules.unmapped_item.severity": "reconcile.toml",
            },
            lowered_severities=(LoweredSeverity("unmapped_item", "warning", "info"),),
            rules={code: RuleInForce(r.severity, {}) for code, r in RULES.items()},
        ),
    )


def _clients(
    lines: pl.DataFrame, discrepancies: pl.DataFrame, names: list[str], gross_delta: pl.Expr
) -> pl.DataFrame:
    """Every client, its gross totals (a base plus its discrepancies' lines) and counts."""
    rng = np.random.default_rng(len(names))
    deltas = lines.group_by("client").agg(gross_delta.sum().alias("delta"))
    counts = discrepancies.group_by("client").agg(
        (pl.col("severity") == s).sum().cast(pl.Int64).alias(s) for s in SEVERITIES
    )
    frame = (
        pl.DataFrame({"client": names, "base": rng.integers(150_000, 900_000, len(names))})
        .join(deltas, on="client", how="left", maintain_order="left")
        .join(counts, on="client", how="left", maintain_order="left")
        .with_columns(pl.col("delta").fill_null(0), *(pl.col(s).fill_null(0) for s in SEVERITIES))
        .sort("client")
    )
    return conform(
        frame.with_columns(
            pl.lit("GBP").alias("currency"),
            _decimal(pl.col("base"), 2, MONEY).alias("autotask_gross"),
            _decimal(pl.col("base") + pl.col("delta"), 2, MONEY).alias("halopsa_gross"),
            _decimal(pl.col("delta"), 2, MONEY).alias("difference"),
        ),
        CLIENT_SCHEMA,
    )


ZERO = Decimal("0.00")


def _in_currency(
    code: str | None, rows: tuple[int, int, int], nets: tuple[Decimal, Decimal, Decimal]
) -> CurrencyControl:
    """The control totals of one currency: rows and nets loaded, quarantined and excluded."""
    return CurrencyControl(
        currency=code,
        rows_read=sum(rows),
        rows_loaded=rows[0],
        rows_quarantined=rows[1],
        rows_excluded=rows[2],
        rows_unreadable_amount=0,
        net_read=sum(nets, ZERO),
        net_loaded=nets[0],
        net_quarantined=nets[1],
        net_excluded=nets[2],
        tax_loaded=ZERO,
    )


def _controls(
    at_lines: int, hp_lines: int, at_net: Decimal, hp_net: Decimal, names: list[str]
) -> tuple[Control, ...]:
    def control(platform: str, source: str, shape: str, dates: str, **counts: Any) -> Control:
        return Control(
            load_id=hashlib.sha256(source.encode()).hexdigest(),
            platform=platform,
            shape=shape,
            source=source,
            date_convention=dates,
            number_format="decimal point",
            rows_unreadable_amount=0,
            files=({"name": source.rsplit("/", 1)[-1], "sha256": "0" * 64, "bytes": 1},),
            invoice_checks=(),
            dialect={},
            **counts,
        )

    return (
        control(
            "autotask",
            "fixtures/demo/autotask/api",
            "autotask-api",
            "ISO YYYY-MM-DD",
            rows_read=at_lines + 1,
            rows_loaded=at_lines,
            rows_quarantined=0,
            rows_excluded=1,
            rows_skipped=0,
            by_currency=(_in_currency("GBP", (at_lines, 0, 1), (at_net, ZERO, ZERO)),),
            warnings=(),
        ),
        control(
            "halopsa",
            "fixtures/demo/halopsa/invoice_lines.csv",
            "halopsa-csv",
            "UK DD/MM/YYYY",
            rows_read=hp_lines + 2 + 3 + 1,
            rows_loaded=hp_lines,
            rows_quarantined=2,
            rows_excluded=3,
            rows_skipped=1,
            by_currency=(
                _in_currency("GBP", (hp_lines, 1, 3), (hp_net, Decimal("12.00"), Decimal("96.00"))),
                _in_currency(None, (0, 1, 0), (ZERO, Decimal("-5.00"), ZERO)),
            ),
            warnings=(
                f"invoice INV-{names[2]}: the export states 100.00 but its lines add up to "
                "96.00 (80.00 net + 16.00 tax)",
            ),
        ),
    )


def _unmapped(names: list[str], hostile: bool) -> tuple[Unmapped, ...]:
    return (
        Unmapped(
            "client",
            "halopsa",
            f"Harbour {HOSTILE[0]}" if hostile else "Harbour View Vets",
            names[1],
            "87.5",
            "name similarity 87.5",
        ),
        Unmapped("client", "autotask", "Castle and Finch", names[4], "91.2", "name similarity"),
        Unmapped(
            "item",
            "halopsa",
            f"M365 {HOSTILE[2]}" if hostile else "M365 Bus Prem",
            ITEMS[0][0],
            "78.0",
            "name similarity 78.0",
        ),
        Unmapped("item", "halopsa", "Veeam Backup TB", None, None, "nothing similar"),
    )


def _quarantine(names: list[str], hostile: bool) -> pl.DataFrame:
    reason = "column 'net_amount': expected an amount like 1234.50 or (12.00), got '12.3.4'"
    second = "column 'period_start': expected a date DD/MM/YYYY, got '31/02/2026'"
    first = {"id": "8819912", "net_amount": "12.3.4"} | ({"note": HOSTILE[1]} if hostile else {})
    rows = [
        {
            "platform": "halopsa",
            "file": "invoice_lines.csv",
            "row": 12,
            "line_ref": "row:12",
            "disposition": "quarantined",
            "reasons": reason,
            "raw": json.dumps(first),
        },
        {
            "platform": "halopsa",
            "file": "invoice_lines.csv",
            "row": 57,
            "line_ref": "row:57",
            "disposition": "quarantined",
            "reasons": f"{second} {HOSTILE[0]}" if hostile else second,
            "raw": json.dumps({"id": "8819957", "period_start": "31/02/2026"}),
        },
    ]
    return pl.DataFrame(rows, schema=QUARANTINE_SCHEMA)


def _excluded(hostile: bool) -> tuple[Exclusion, ...]:
    """Rows excluded by design, as the loads give their reasons."""
    header = "HaloPSA group header (isgroupdesc): a heading on the invoice, not a billed line"
    return (
        Exclusion(
            "autotask", "Autotask billing item posted but not on an invoice (invoiceID 0)", 2
        ),
        Exclusion("halopsa", f"{header} {HOSTILE[1]}" if hostile else header, 143),
    )


def with_summary(data: ReportData, **changes: Any) -> ReportData:
    """The same report data with some summary fields replaced."""
    return dataclasses.replace(data, summary=dataclasses.replace(data.summary, **changes))


def listed(data: ReportData) -> list[dict[str, Any]]:
    """The discrepancy list as the page should carry it, built here row by row independently
    of the report's own encoding: every open discrepancy in the run's order, its columns as
    text (exposure is for the server-side summary only, status is "open" for every one), with
    its lines on each side (the period as one text)."""
    lines = text_columns(data.lines.lazy().collect()).with_columns(
        pl.format("{} – {}", "period_start", "period_end").alias("period")
    )
    by_side: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in lines.drop("period_start", "period_end").to_dicts():
        by_side.setdefault((line.pop("id"), line.pop("side")), []).append(line)
    rows = text_columns(
        data.discrepancies.lazy().filter(pl.col("status") == "open").collect()
    ).to_dicts()
    return [
        {
            **{k: v for k, v in row.items() if k not in ("exposure", "status")},
            "autotask_lines": by_side.get((row["id"], "autotask"), []),
            "halopsa_lines": by_side.get((row["id"], "halopsa"), []),
        }
        for row in rows
    ]


def client_rows(data: ReportData) -> list[dict[str, Any]]:
    """The per-client table as the page should carry it: largest absolute difference first."""
    rows = text_columns(data.summary.clients.lazy().collect()).to_dicts()
    return sorted(rows, key=lambda c: (-abs(Decimal(c["difference"])), c["client"]))


@functools.cache
def large_sample() -> ReportData:
    """A large MSP's cycle as the issue measured it: 165,000 open discrepancies among 170,000
    clients (built once a test session)."""
    return sample_report_data(165_000, clients=170_000)
