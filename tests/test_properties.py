"""Properties of the whole matcher + rules: a cycle equals itself; one change, one finding; a
prorated line folded into the month's quantity on the other side pairs only when it sums exactly."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import polars as pl
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rulecases import reconcile_case

CLIENTS = ["Acme Widgets Ltd", "Bright Smile Dental", "Harrow Green Accountants", "Zurich AG"]
ITEMS = ["Managed Workstation", "Managed Server", "Microsoft 365 Business Premium",
         "Backup per TB", "Firewall management", "Email Security"]  # fmt: skip
PRICES = [Decimal("35"), Decimal("42.50"), Decimal("18.10"), Decimal("12.3450"), Decimal("120")]


@st.composite
def cycles(draw: st.DrawFn) -> list[dict[str, Any]]:
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(CLIENTS), st.sampled_from(ITEMS)),
            min_size=1,
            max_size=12,
            unique=True,
        )
    )
    lines = []
    for n, (client, item) in enumerate(pairs):
        qty = Decimal(draw(st.integers(1, 60)))
        price = draw(st.sampled_from(PRICES))
        net = (qty * price).quantize(Decimal("0.01"))
        lines.append(
            {
                "ref": f"a{n}",
                "client": client,
                "item": item,
                "qty": qty,
                "price": price,
                "net": net,
                "tax": (net * Decimal("0.2")).quantize(Decimal("0.01")),
                "period": draw(st.sampled_from(["2026-11", None])),
            }
        )
    return lines


def mirror(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**line, "ref": "h" + line["ref"][1:]} for line in lines]


def blocking(case: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
    findings = reconcile_case(case).filter(pl.col("severity").is_in(["blocker", "warning"]))
    return sorted(
        (r["rule"], sorted(r["autotask_refs"] or []), sorted(r["halopsa_refs"] or []))
        for r in findings.iter_rows(named=True)
    )


SLOW = settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(cycles())
def test_a_cycle_compared_with_itself_has_no_discrepancy(lines: list[dict[str, Any]]) -> None:
    assert reconcile_case({"autotask": lines, "halopsa": mirror(lines)}).is_empty()


def _requantify(line: dict[str, Any], qty: Decimal, price: Decimal) -> dict[str, Any]:
    net = (qty * price).quantize(Decimal("0.01"))
    return {
        **line,
        "qty": qty,
        "price": price,
        "net": net,
        "tax": (net * Decimal("0.2")).quantize(Decimal("0.01")),
    }


Line = dict[str, Any]
MUTATIONS: dict[str, Callable[[Line], Line]] = {
    "quantity_mismatch": lambda l: _requantify(l, l["qty"] + 2, l["price"]),  # noqa: E741
    "unit_price_mismatch": lambda l: _requantify(l, l["qty"], l["price"] + Decimal("5")),  # noqa: E741
    "amount_mismatch": lambda l: {**l, "net": l["net"] - Decimal("10.00")},  # noqa: E741
    "tax_mismatch": lambda l: {**l, "tax": Decimal("0.00") if l["tax"] else Decimal("5.00")},  # noqa: E741
    "currency_mismatch": lambda l: {**l, "currency": "EUR"},  # noqa: E741
    "period_mismatch": lambda l: {**l, "period": "2026-10"},  # noqa: E741
}


@SLOW
@given(cycles(), st.data())
def test_one_mutation_gives_exactly_its_rule_on_exactly_that_line(
    lines: list[dict[str, Any]], data: st.DataObject
) -> None:
    halo = mirror(lines)
    index = data.draw(st.integers(0, len(lines) - 1))
    kind = data.draw(
        st.sampled_from([*MUTATIONS, "missing_in_halopsa", "missing_in_autotask", "duplicate_line"])
    )
    target = halo[index]
    if kind == "period_mismatch" and lines[index]["period"] is None:
        lines[index] = {**lines[index], "period": "2026-11"}
        target = {**target, "period": "2026-11"}
    if kind == "currency_mismatch":
        # One finding per currency, each in its own: the line is missing in GBP from HaloPSA
        # and in EUR from Autotask.
        halo[index] = MUTATIONS[kind](target)
        expected = sorted([(kind, [lines[index]["ref"]], []), (kind, [], [target["ref"]])])
    elif kind in MUTATIONS:
        halo[index] = MUTATIONS[kind](target)
        expected = [(kind, [lines[index]["ref"]], [target["ref"]])]
    elif kind == "missing_in_halopsa":
        del halo[index]
        expected = [(kind, [lines[index]["ref"]], [])]
    elif kind == "missing_in_autotask":
        halo.append({**target, "ref": "hx", "item": "Dark Web Monitoring"})
        expected = [(kind, [], ["hx"])]
    else:
        halo.append({**target, "ref": "hx"})
        expected = [(kind, [], ["hx"])]
    assert blocking({"autotask": lines, "halopsa": halo}) == expected


@SLOW
@given(cycles(), st.data())
def test_a_line_per_device_against_one_line_of_a_quantity_is_one_quantity_difference(
    lines: list[dict[str, Any]], data: st.DataObject
) -> None:
    """HaloPSA bills one of the lines as a line per device (k lines of quantity 1, each naming
    its device or not) where Autotask bills one line of a quantity of 2 or more: k not that
    quantity is one quantity_mismatch on all of them, never a duplicate to remove; k equal to it
    is no finding. (Against one line of quantity 1, the first device line pairs exactly and an
    identical unnamed one is a duplicate: the duplicate cases above.)"""
    halo = mirror(lines)
    index = data.draw(st.integers(0, len(lines) - 1))
    assume(lines[index]["qty"] >= 2)
    # A price in whole cents: 12.345 rounds once on one line, and on each line of the devices.
    assume(lines[index]["price"] == lines[index]["price"].quantize(Decimal("0.01")))
    target = halo.pop(index)
    devices = data.draw(st.integers(2, 12))
    named = data.draw(st.booleans())
    split = [
        {
            **_requantify(target, Decimal(1), target["price"]),
            "ref": f"hd{n:02}",
            "description": f"{target['item']} - PC{n:02}" if named else None,
        }
        for n in range(devices)
    ]
    found = blocking({"autotask": lines, "halopsa": [*halo, *split]})
    if devices == lines[index]["qty"]:
        assert found == []
    else:
        refs = sorted(line["ref"] for line in split)
        assert found == [("quantity_mismatch", [lines[index]["ref"]], refs)]


@st.composite
def folded_prorations(draw: st.DrawFn) -> dict[str, Any]:
    """A month's charge (Kestrel Dental Practice's workstations, a client no other line has)
    billed by one side (`splits`) as the month's line (ref p0) and a prorated line per addition
    mid-month (p1, …), by the other as one line of the month (w0) whose quantity holds the
    pro-rata quantities; the month is the cycle's or the one before (arrears: outside the
    cycle). Each line's net is its qty x price rounded to the cent, as each system computes it:
    the parts' nets need not sum to the folded line's."""
    month = draw(st.sampled_from(["2026-11", "2026-10"]))
    days = 30 if month == "2026-11" else 31
    price = draw(st.sampled_from([p for p in PRICES if p == p.quantize(Decimal("0.01"))]))
    whole = Decimal(draw(st.integers(1, 40)))
    starts = sorted(draw(st.lists(st.integers(2, days), min_size=1, max_size=3, unique=True)))
    added = [
        (Decimal(draw(st.integers(1, 4))) * (days + 1 - start) / days).quantize(Decimal("0.0001"))
        for start in starts
    ]
    charge = {"client": "Kestrel Dental Practice", "item": "Managed Workstation"}
    parts = [
        {**_requantify({**charge, "ref": "p0"}, whole, price), "period": month},
        *(
            {
                **_requantify({**charge, "ref": f"p{n}"}, qty, price),
                "period": f"{month}-{start:02}..{month}-{days}",
            }
            for n, (start, qty) in enumerate(zip(starts, added, strict=True), start=1)
        ),
    ]
    folded = {**_requantify({**charge, "ref": "w0"}, whole + sum(added), price), "period": month}
    splits = draw(st.sampled_from(["autotask", "halopsa"]))
    return {"month": month, "splits": splits, "parts": parts, "folded": [folded]}


def _sides(case: dict[str, Any], background: list[Line]) -> dict[str, Any]:
    """The reconcile_case of a folded_prorations case: the parts on the splitting side, the
    folded lines on the other (refs prefixed a and h by side), beside the background lines."""
    other = "halopsa" if case["splits"] == "autotask" else "autotask"
    lines = {case["splits"]: case["parts"], other: case["folded"]}
    return {
        "autotask": [*background, *({**x, "ref": "a" + x["ref"]} for x in lines["autotask"])],
        "halopsa": [*mirror(background), *({**x, "ref": "h" + x["ref"]} for x in lines["halopsa"])],
    }


def _unfolded(case: dict[str, Any]) -> list[tuple[str, list[str], list[str]]]:
    """The findings while the prorated lines do not pair: the n-th part against the n-th folded
    line (of its period: the month's line first), another quantity (of a partial period: another
    proration); each part beyond them missing on the other side."""
    autotask = case["splits"] == "autotask"
    mine, theirs = ("a", "h") if autotask else ("h", "a")
    missing = "missing_in_halopsa" if autotask else "missing_in_autotask"
    found = []
    for n, part in enumerate(case["parts"]):
        other = [theirs + case["folded"][n]["ref"]] if n < len(case["folded"]) else []
        refs = ([mine + part["ref"]], other) if autotask else (other, [mine + part["ref"]])
        rule = "proration_mismatch" if n else "quantity_mismatch"
        found.append((rule if other else missing, *refs))
    return sorted(found)


@SLOW
@given(cycles(), folded_prorations())
def test_a_prorated_line_folded_into_the_months_quantity_pairs_when_it_sums_exactly(
    background: list[Line], case: dict[str, Any]
) -> None:
    """Autotask's separate prorated lines against HaloPSA's month line holding their quantity
    (or the other way round) pair as one group, with no finding, when the quantities and nets
    sum exactly and the month is the cycle's; else nothing pairs them."""
    exact = sum(p["net"] for p in case["parts"]) == case["folded"][0]["net"]
    found = blocking(_sides(case, background))
    if exact and case["month"] == "2026-11":
        assert found == []
    else:
        assert found == _unfolded(case)


# The folded line near a fold of the parts (given their nets' sum) that must not pair with them.
NEAR_MISSES: dict[str, Callable[[Line, Decimal], Line]] = {
    "a cent more": lambda w, net: {**w, "net": net + Decimal("0.01")},
    "another unit price": lambda w, _: _requantify(w, w["qty"], w["price"] + Decimal("0.01")),
}


@SLOW
@given(cycles(), folded_prorations(), st.sampled_from(sorted(NEAR_MISSES)))
def test_a_near_miss_of_a_folded_proration_does_not_pair(
    background: list[Line], case: dict[str, Any], miss: str
) -> None:
    """The folded line a cent off the parts' sum, or at another unit price: the prorated lines
    stay missing (never a guess)."""
    net = sum(p["net"] for p in case["parts"])
    case = {**case, "folded": [NEAR_MISSES[miss](case["folded"][0], net)]}
    found = blocking(_sides(case, background))
    missing = [f for f in _unfolded(case) if f[0].startswith("missing")]
    assert [f for f in found if f[0].startswith("missing")] == missing


@SLOW
@given(cycles(), folded_prorations())
def test_a_prorated_line_two_lines_could_take_is_left_as_it_was(
    background: list[Line], case: dict[str, Any]
) -> None:
    """The folding side also bills the first prorated line's period apart, at another
    quantity: that prorated line lies within two of its lines' periods, so nothing folds and
    each line pairs with the line of its own period."""
    first = case["parts"][1]
    apart = {**_requantify(first, first["qty"] + 1, first["price"]), "ref": "w1"}
    case = {**case, "folded": [*case["folded"], apart]}
    assert blocking(_sides(case, background)) == _unfolded(case)
