"""Quantity differs

The same charge is billed for a different number of units, hours or licences. Subscription
counts synced automatically into HaloPSA (Pax8, Giacom, Microsoft CSP) while Autotask's were
kept by hand are the usual cause. A quantity one side leaves blank is not a difference when the
amounts are equal: Autotask exports fixed-fee and milestone lines with an amount and no quantity
(a milestone has an amount only), where HaloPSA bills them as quantity 1. With unequal amounts
it is reported, the blank shown as `?`, never read as 1.

**Example:** Autotask billed 25 Microsoft 365 Business Premium licences, HaloPSA bills 27.

**What to do:** Check the true count in the distributor portal or the client's tenant, then
correct the quantity (or its sync) on the HaloPSA recurring invoice line.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 50
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG = {
    "abs_tol": ("0", "Largest quantity difference treated as equal, in units."),
    "rel_tol": ("0", "Extra allowed difference, as a fraction of the Autotask quantity."),
}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_net AS autotask_amount, h_net AS halopsa_amount,
               format('{}: quantity {} in Autotask, {} in HaloPSA ({})', item,
                      fmt_qty(a_qty), fmt_qty(h_qty), fmt_period(a_period_start, a_period_end))
                   AS message
        FROM groups g
        WHERE matched(g) AND NOT within(a_qty, h_qty, $abs_tol, $rel_tol)
          AND NOT ((a_qty IS NULL OR h_qty IS NULL) AND a_net = h_net)
        """
    )
