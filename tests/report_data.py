"""Synthetic report data in the exact shape the run stage hands to reconcile.report.

Tests of the report must not depend on the matcher or the rules (other people's moving parts),
so this builds realistic, internally consistent data directly: the bridge sums exactly to the
gross difference, totals follow from the discrepancies, and the verdict from their severities.
``hostile=True`` plants markup and template syntax in every free-text field a user controls.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CYCLE = "2026-11"
PERIOD = "2026-11-01 – 2026-11-30"
VAT = Decimal("0.20")
CENT = Decimal("0.01")
QUARTER_CENT = Decimal("0.0001")

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

ITEMS = (
    ("Microsoft 365 Business Premium", "22.0000"),
    ("Microsoft 365 Business Basic", "6.0000"),
    ("Microsoft Teams Phone Standard", "8.0000"),
    ("Managed Workstation", "35.0000"),
    ("Managed Server", "120.0000"),
    ("Veeam Cloud Connect Backup (per TB)", "45.0000"),
    ("Datto EDR", "4.5000"),
    ("Mimecast Email Security", "3.8000"),
    ("Firewall Management", "65.0000"),
    ("SentinelOne Complete", "6.5000"),
    ("After-hours Support Block (10 h)", "950.0000"),
    ("Domain Renewal", "15.0000"),
)

RULES: dict[str, dict[str, str]] = {
    "missing_in_halopsa": {
        "title": "Line missing in HaloPSA",
        "severity": "blocker",
        "explanation": "Autotask billed this charge but HaloPSA has no line for it, so the client"
        " would not be invoiced for it after cutover. Check that the recurring service or"
        " contract exists in HaloPSA and is active for this billing cycle.",
    },
    "missing_in_autotask": {
        "title": "Extra line in HaloPSA",
        "severity": "blocker",
        "explanation": "HaloPSA bills a charge that Autotask did not, so the client would be"
        " invoiced for something new. Check whether the HaloPSA recurring invoice or contract"
        " was created twice or started a cycle early.",
    },
    "quantity_mismatch": {
        "title": "Quantity differs",
        "severity": "blocker",
        "explanation": "Both systems bill the same item at the same price but for a different"
        " number of units (seats, devices, terabytes). Compare the quantity on the HaloPSA"
        " recurring invoice line with the Autotask service or contract unit count.",
    },
    "unit_price_mismatch": {
        "title": "Unit price differs",
        "severity": "blocker",
        "explanation": "The same item is billed at a different unit price. Check the price on the"
        " HaloPSA item or contract against the Autotask contract service; a price rise agreed"
        " with the client can be marked as an expected difference.",
    },
    "amount_mismatch": {
        "title": "Amount differs",
        "severity": "blocker",
        "explanation": "Quantity and unit price agree but the line amount does not, usually because"
        " of a discount or a manual override on one side. Check discounts on the HaloPSA line.",
    },
    "tax_mismatch": {
        "title": "Tax differs",
        "severity": "warning",
        "explanation": "The net amounts agree but the tax does not. Check the tax code on the"
        " HaloPSA item and the client's tax settings against Autotask's tax category.",
    },
    "duplicate_line": {
        "title": "Duplicate line",
        "severity": "blocker",
        "explanation": "The same charge appears more than once on one side. In HaloPSA this is"
        " often a recurring invoice copied during migration; remove the duplicate line.",
    },
    "period_mismatch": {
        "title": "Service period differs",
        "severity": "warning",
        "explanation": "The charge is billed for a different service period. Check the HaloPSA"
        " recurring invoice's next invoice date and whether it bills in advance or in arrears.",
    },
    "proration_mismatch": {
        "title": "Proration differs",
        "severity": "warning",
        "explanation": "A part-month charge is prorated differently. Compare the start date of"
        " the service in HaloPSA with Autotask and check HaloPSA's proration setting.",
    },
    "contract_type_mismatch": {
        "title": "Contract type differs",
        "severity": "warning",
        "explanation": "The charge belongs to a different kind of contract on each side (for"
        " example recurring service versus block hours), which changes how it renews and"
        " reports. Check the contract type in HaloPSA.",
    },
    "unmapped_client": {
        "title": "Client not mapped",
        "severity": "blocker",
        "explanation": "A client name in one system has no match in the other, so its lines"
        " could not be compared. Add the pair to the mapping file (see Unmapped below for"
        " suggestions).",
    },
    "unmapped_item": {
        "title": "Item not mapped",
        "severity": "warning",
        "explanation": "An item in one system has no match in the other; its lines were matched"
        " by description only. Add the item pair to the mapping file.",
    },
    "currency_mismatch": {
        "title": "Currency differs",
        "severity": "blocker",
        "explanation": "The two invoices are in different currencies. Check the client's"
        " currency in HaloPSA.",
    },
    "rounding_difference": {
        "title": "Rounding difference",
        "severity": "info",
        "explanation": "The amounts differ by a cent or two because the systems round at a"
        " different step (per line or per invoice). Usually nothing to do.",
    },
    "client_total_mismatch": {
        "title": "Client total differs",
        "severity": "info",
        "explanation": "The client's invoice total differs between the systems. The line-level"
        " discrepancies for this client explain the difference; this row is a roll-up.",
    },
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


def _q(value: Decimal, step: Decimal = CENT) -> Decimal:
    return value.quantize(step, rounding=ROUND_HALF_UP)


def _s(value: Decimal) -> str:
    return str(_q(value))


def _line(
    ref: str,
    item: str,
    description: str,
    qty: Decimal,
    price: Decimal,
    net: Decimal | None = None,
    tax: Decimal | None = None,
    period: str = PERIOD,
) -> dict[str, str]:
    net = _q(qty * price) if net is None else _q(net)
    tax = _q(net * VAT) if tax is None else _q(tax)
    return {
        "ref": ref,
        "item": item,
        "description": description,
        "quantity": str(_q(qty, QUARTER_CENT)),
        "unit_price": str(_q(price, QUARTER_CENT)),
        "net_amount": str(net),
        "tax_amount": str(tax),
        "period": period,
    }


def _sum(lines: list[dict[str, str]], key: str) -> Decimal:
    return sum((Decimal(line[key]) for line in lines), Decimal(0))


def _discrepancy(
    index: int, rule: str, client: str, rng: random.Random, hostile: bool
) -> dict[str, Any]:
    """One finding whose lines, amounts and message agree with each other."""
    item, price_text = rng.choice(ITEMS)
    if hostile:
        item = f"{item} {HOSTILE[index % 3]}"
    price = Decimal(price_text)
    qty = Decimal(rng.choice([1, 1, 2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 55, 80]))
    desc = f"{item} – November 2026"
    if hostile:
        desc = f"{desc} {HOSTILE[(index + 1) % 3]}"
    at_ref, hp_ref = str(700000 + index), str(8810000 + index)
    if hostile and index % 4 == 0:
        at_ref, hp_ref = f"{at_ref}{HOSTILE[index % 3]}", f"{hp_ref}{HOSTILE[(index + 2) % 3]}"
    at = [_line(at_ref, item, desc, qty, price)]
    hp = [_line(hp_ref, item, desc, qty, price)]
    q = int(qty)
    if rule == "missing_in_halopsa":
        hp = []
        message = f"Autotask bills {q} × {item}; HaloPSA has no matching line"
    elif rule == "missing_in_autotask":
        at = []
        message = f"HaloPSA bills {q} × {item}; Autotask has no matching line"
    elif rule == "quantity_mismatch":
        other = qty + rng.choice([-2, -1, 1, 1, 2, 3]) if qty > 2 else qty + 1
        hp = [_line(hp_ref, item, desc, other, price)]
        message = f"Quantity {q} in Autotask, {int(other)} in HaloPSA"
    elif rule == "unit_price_mismatch":
        other = _q(price * Decimal(rng.choice(["0.90", "0.95", "1.05", "1.10"])), QUARTER_CENT)
        hp = [_line(hp_ref, item, desc, qty, other)]
        message = f"Unit price {_s(price)} in Autotask, {_s(other)} in HaloPSA"
    elif rule == "amount_mismatch":
        net = _q(qty * price * Decimal("0.85"))
        hp = [_line(hp_ref, item, desc, qty, price, net=net)]
        message = f"Same quantity and price, but HaloPSA bills {_s(net)} (15% discount?)"
    elif rule == "tax_mismatch":
        hp = [_line(hp_ref, item, desc, qty, price, tax=Decimal(0))]
        message = "Tax 20% in Autotask, zero-rated in HaloPSA"
    elif rule == "duplicate_line":
        hp = [*hp, _line(str(int(8810000 + index) + 500000), item, desc, qty, price)]
        message = f"{item} billed twice in HaloPSA"
    elif rule == "period_mismatch":
        hp = [_line(hp_ref, item, desc, qty, price, period="2026-12-01 – 2026-12-31")]
        message = "Billed for November in Autotask, December in HaloPSA (in advance)"
    elif rule == "proration_mismatch":
        period = "2026-11-15 – 2026-11-30"
        at = [_line(at_ref, item, desc, qty, price, net=qty * price * 16 / 30, period=period)]
        hp = [_line(hp_ref, item, desc, qty, price, period=period)]
        message = "Autotask prorates 16 of 30 days; HaloPSA bills the full month"
    elif rule == "contract_type_mismatch":
        message = "Recurring service in Autotask, block hours contract in HaloPSA"
    elif rule == "unmapped_client":
        message = f"HaloPSA client '{client[:12]}…' has no Autotask company in the mapping"
    elif rule == "unmapped_item":
        message = f"HaloPSA item '{item}' has no Autotask item in the mapping"
    elif rule == "currency_mismatch":
        message = "Invoiced in GBP in Autotask, EUR in HaloPSA"
    elif rule == "rounding_difference":
        hp = [_line(hp_ref, item, desc, qty, price, net=qty * price + Decimal("0.01"))]
        message = "Amounts differ by 0.01 (rounding per line vs per invoice)"
    else:  # client_total_mismatch: a roll-up without lines of its own
        at, hp = [], []
        message = "Client invoice total differs; see the line discrepancies for this client"
    if hostile:
        message = f"{message} {HOSTILE[(index + 2) % 3]}"
    at_net, hp_net = _sum(at, "net_amount"), _sum(hp, "net_amount")
    if rule == "client_total_mismatch":
        at_net = Decimal(rng.randrange(200000, 900000)) / 100
        hp_net = at_net + Decimal(rng.randrange(-5000, 5000)) / 100
    return {
        "id": "D-" + hashlib.sha256(f"{CYCLE}:{index}".encode()).hexdigest()[:10],
        "rule": rule,
        "severity": RULES[rule]["severity"],
        "client": client,
        "message": message,
        "autotask_amount": _s(at_net),
        "halopsa_amount": _s(hp_net),
        "difference": _s(hp_net - at_net),
        "measure": "gross" if rule == "client_total_mismatch" else "net",
        "gross_difference": _s(hp_net - at_net),
        "exposure": _s(max(abs(at_net), abs(hp_net))),
        "root_cause": None,
        "autotask_lines": at,
        "halopsa_lines": hp,
    }


def _gross_delta(d: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """(net, tax) HaloPSA minus Autotask over the finding's own lines."""
    net = _sum(d["halopsa_lines"], "net_amount") - _sum(d["autotask_lines"], "net_amount")
    tax = _sum(d["halopsa_lines"], "tax_amount") - _sum(d["autotask_lines"], "tax_amount")
    return net, tax


def sample_report_data(n_discrepancies: int = 40, hostile: bool = False) -> dict[str, Any]:
    """Report data with ``n_discrepancies`` findings plus expected, unmapped and quarantine rows."""
    rng = random.Random(20261123 + n_discrepancies)
    clients = list(CLIENTS)
    if hostile:
        clients[0] = f"Acme {HOSTILE[0]} Widgets"
        clients[1] = f"{HOSTILE[1]} Dental"
        clients[2] = f"{HOSTILE[2]} Holdings"
    codes = list(WEIGHTS)
    weights = [WEIGHTS[c] for c in codes]
    # Show every rule at least once in small samples, then draw by weight.
    drawn = codes[: min(len(codes), n_discrepancies)]
    drawn += rng.choices(codes, weights, k=n_discrepancies - len(drawn))
    discrepancies = [
        _discrepancy(i, rule, rng.choice(clients), rng, hostile) for i, rule in enumerate(drawn)
    ]
    expected = []
    for i, client in enumerate(clients[3:6]):
        e = _discrepancy(10_000_000 + i, "unit_price_mismatch", client, rng, hostile)
        e["severity"] = "expected"
        e["message"] += " — accepted: price rise agreed from November"
        expected.append(e)

    # The bridge: gross change per rule over the findings' lines (the roll-up rule has none),
    # plus the accepted differences; totals follow, so the bridge sums exactly.
    by_rule: dict[str, Decimal] = defaultdict(Decimal)
    net_diff = tax_diff = Decimal(0)
    for d in discrepancies:
        net, tax = _gross_delta(d)
        if d["rule"] != "client_total_mismatch":
            by_rule[d["rule"]] += net + tax
        net_diff, tax_diff = net_diff + net, tax_diff + tax
    accepted = Decimal(0)
    for e in expected:
        net, tax = _gross_delta(e)
        accepted += net + tax
        net_diff, tax_diff = net_diff + net, tax_diff + tax
    bridge = [
        {"rule": code, "title": RULES[code]["title"], "amount": _s(amount)}
        for code, amount in sorted(by_rule.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    ]
    bridge.append({"rule": "expected", "title": "Accepted differences", "amount": _s(accepted)})

    at_lines = 340 + sum(len(d["autotask_lines"]) for d in discrepancies)
    hp_lines = 340 + sum(len(d["halopsa_lines"]) for d in discrepancies)
    at_net, at_tax = Decimal("41250.00"), Decimal("8250.00")
    hp_net, hp_tax = at_net + net_diff, at_tax + tax_diff
    gbp = {
        "autotask": {
            "net": _s(at_net),
            "tax": _s(at_tax),
            "gross": _s(at_net + at_tax),
            "lines": at_lines,
            "tax_unknown": 0,
        },
        "halopsa": {
            "net": _s(hp_net),
            "tax": _s(hp_tax),
            "gross": _s(hp_net + hp_tax),
            "lines": hp_lines,
            "tax_unknown": 1,
        },
        "difference": {"net": _s(net_diff), "tax": _s(tax_diff), "gross": _s(net_diff + tax_diff)},
    }
    totals = {"GBP": gbp}  # per currency: amounts in different currencies are never added

    severities = [d["severity"] for d in discrepancies]
    verdict = {
        "ready": "blocker" not in severities,
        "blockers": severities.count("blocker"),
        "warnings": severities.count("warning"),
        "info": severities.count("info"),
        "expected": len(expected),
    }

    client_rows = []
    for client in clients:
        mine = [d for d in [*discrepancies, *expected] if d["client"] == client]
        base = Decimal(rng.randrange(150000, 900000)) / 100
        delta = sum((sum(_gross_delta(d), Decimal(0)) for d in mine), Decimal(0))
        row: dict[str, Any] = {
            "client": client,
            "currency": "GBP",
            "autotask_gross": _s(base),
            "halopsa_gross": _s(base + delta),
            "difference": _s(delta),
        }
        for severity in ("blocker", "warning", "info", "expected"):
            row[severity] = sum(1 for d in mine if d["severity"] == severity)
        client_rows.append(row)

    exact = max(at_lines - 60, 0)
    stage_lines = [
        ("exact", "Exact 1:1", exact, exact, exact),
        ("split", "Split lines (1:n, n:1)", 9, 12, 25),
        ("values", "Same charge, different values", 21, 21, 21),
        ("period", "Different service period", 6, 6, 6),
        ("fuzzy", "Similar description", 8, 8, 9),
    ]
    match_stages = [
        {"stage": s, "label": label, "groups": g, "autotask_lines": a, "halopsa_lines": h}
        for s, label, g, a, h in stage_lines
    ]
    sources = {
        "autotask": ("fixtures/demo/autotask/api", "autotask-api", "ISO YYYY-MM-DD"),
        "halopsa": ("fixtures/demo/halopsa/invoice_lines.csv", "halopsa-csv", "UK DD/MM/YYYY"),
    }
    inputs = [
        {
            "platform": platform,
            "source": source,
            "shape": shape,
            "sha256": hashlib.sha256(source.encode()).hexdigest(),
        }
        for platform, (source, shape, _) in sources.items()
    ]
    q_reason = "column 'net_amount': expected an amount like 1234.50 or (12.00), got '12.3.4'"
    quarantine: list[dict[str, Any]] = [
        {
            "platform": "halopsa",
            "file": "invoice_lines.csv",
            "row": 12,
            "line_ref": "row:12",
            "disposition": "quarantined",
            "reasons": q_reason,
            "raw": {"id": "8819912", "client_name": clients[1], "net_amount": "12.3.4"},
        },
        {
            "platform": "halopsa",
            "file": "invoice_lines.csv",
            "row": 57,
            "line_ref": "row:57",
            "disposition": "quarantined",
            "reasons": "column 'period_start': expected a date DD/MM/YYYY, got '31/02/2026'",
            "raw": {"id": "8819957", "client_name": clients[4], "period_start": "31/02/2026"},
        },
    ]
    controls = [
        {
            "platform": "autotask",
            "source": sources["autotask"][0],
            "shape": "autotask-api",
            "date_convention": sources["autotask"][2],
            "rows_read": at_lines + 1,
            "rows_loaded": at_lines,
            "rows_quarantined": 0,
            "rows_excluded": 1,
            "rows_skipped": 0,
            "net_read": _s(at_net),
            "net_loaded": _s(at_net),
            "net_quarantined": "0.00",
            "net_excluded": "0.00",
        },
        {
            "platform": "halopsa",
            "source": sources["halopsa"][0],
            "shape": "halopsa-csv",
            "date_convention": sources["halopsa"][2],
            "rows_read": hp_lines + 2 + 3 + 1,
            "rows_loaded": hp_lines,
            "rows_quarantined": 2,
            "rows_excluded": 3,
            "rows_skipped": 1,
            "net_read": _s(hp_net + Decimal("96.00")),
            "net_loaded": _s(hp_net),
            "net_quarantined": "0.00",
            "net_excluded": "96.00",
            "warnings": [
                f"invoice INV-{clients[2]}: the export states 100.00 but its lines add up to "
                "96.00 (80.00 net + 16.00 tax)"
            ],
        },
    ]
    unmapped: list[dict[str, Any]] = [
        {
            "kind": "client",
            "side": "halopsa",
            "value": "Harbour View Vets",
            "suggestion": clients[1],
            "score": "87.5",
        },
        {
            "kind": "client",
            "side": "autotask",
            "value": "Castle and Finch",
            "suggestion": clients[4],
            "score": "91.2",
        },
        {
            "kind": "item",
            "side": "halopsa",
            "value": "M365 Bus Prem",
            "suggestion": ITEMS[0][0],
            "score": "78.0",
        },
        {
            "kind": "item",
            "side": "halopsa",
            "value": "Veeam Backup TB",
            "suggestion": None,
            "score": None,
        },
    ]
    if hostile:
        unmapped[0]["value"] = f"Harbour {HOSTILE[0]}"
        unmapped[2]["value"] = f"M365 {HOSTILE[2]}"
        quarantine[0]["raw"]["note"] = HOSTILE[1]
        quarantine[1]["reasons"] += " " + HOSTILE[0]

    return {
        "cycle": CYCLE,
        "title": "Parallel billing reconciliation",
        "inputs": inputs,
        "verdict": verdict,
        "totals": totals,
        "currencies": list(totals),
        "lines": {"autotask": at_lines, "halopsa": hp_lines},
        "provenance": {
            "config": {"source": "reconcile.toml", "sha256": hashlib.sha256(b"toml").hexdigest()},
            "changed": {
                "cycle.currency": "GBP",
                "expected.retired_items": ["Legacy Tape Backup"],
                "rules.unmapped_item.severity": "info",
            },
            "lowered_severities": [{"rule": "unmapped_item", "default": "warning", "set": "info"}],
            "mappings": [{"file": "mapping.csv", "sha256": hashlib.sha256(b"map").hexdigest()}],
        },
        "match_stages": match_stages,
        "match_rate": {
            "autotask": str(_q(Decimal(at_lines - 6) / at_lines, QUARTER_CENT)),
            "halopsa": str(_q(Decimal(hp_lines - 18) / hp_lines, QUARTER_CENT)),
        },
        "controls": controls,
        "quarantine": quarantine,
        "bridge": {"GBP": bridge},
        "clients": client_rows,
        "discrepancies": discrepancies,
        "rules": RULES,
        "unmapped": unmapped,
        "expected": expected,
    }
