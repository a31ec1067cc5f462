"""Duplicate line

One system bills the same charge more often than the other: an identical line (same client,
item, period, quantity, price and amount) appears an extra time.

**Example:** HaloPSA's invoice for Acme Widgets carries "Managed Server, 2 x 42.50" twice;
Autotask billed it once.

**What to do:** Remove the duplicated line from the HaloPSA recurring invoice or contract; check
that the recurring invoice was not generated twice for the period.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 20
MEASURE = "net"  # what autotask_amount and halopsa_amount are
SUPERSEDES = ("missing_in_autotask", "missing_in_halopsa")
CONFIG: dict[str, tuple[str, str]] = {}

# An identical line: the description too (per-device lines differ in the device they name).
SIGNATURE = [
    "c_key", "i_key", "period_start", "period_end", "quantity", "unit_price", "net_amount",
    "description",
]  # fmt: skip


def _side(side: str, other: str, name: str) -> str:
    same = " AND ".join(f"x.{c} IS NOT DISTINCT FROM y.{c}" for c in SIGNATURE)
    amount = "halopsa_amount" if side == "h" else "autotask_amount"
    sign = "" if side == "h" else "-"
    # Only a line left alone (an unmatched line is a group of its own) can be the extra copy,
    # and only of a twin the other system bills too (matched, not alone): twins that are all
    # alone (a client the crosswalk left unmapped, a charge the other system lacks) are each
    # missing there, not one more than there. The twins are looked up for the lone lines alone
    # (hash tables of them, probed by the side's lines), not by a self-join of every line.
    return f"""
        WITH lone AS (
            SELECT match_id, client, item, {side}_uids, {side}_net, {side}_qty,
                   {side}_uids[1] AS uid
            FROM groups WHERE {side}_n = 1 AND {other}_n = 0
        ),
        twins AS (
            SELECT x.uid, string_agg(DISTINCT y.ref, ', ' ORDER BY y.ref) AS others
            FROM ({side} y ANTI JOIN lone USING (uid))
            JOIN ({side} x SEMI JOIN lone USING (uid)) ON y.uid <> x.uid AND {same}
            GROUP BY x.uid
        )
        SELECT [g.match_id] AS match_ids, g.client, g.{side}_uids AS {side}_uids,
               g.{side}_net AS {amount}, {sign}g.{side}_net AS difference,
               format('{{}}: {name} bills this line (qty {{}}, {{}}) once more than the other '
                      || 'system; the same line is also billed as {{}}',
                      g.item, fmt_qty(g.{side}_qty), fmt_money(g.{side}_net), t.others)
                   AS message
        FROM lone g JOIN twins t USING (uid)
    """


def check(ctx: RuleContext) -> pl.DataFrame:
    return pl.concat(
        [ctx.findings(_side("h", "a", "HaloPSA")), ctx.findings(_side("a", "h", "Autotask"))]
    )
