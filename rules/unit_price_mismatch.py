"""Unit price differs

The same charge is billed at a different price per unit. Custom or tiered prices on old
Autotask contracts are easily lost when contracts are rebuilt in HaloPSA.

**Example:** Autotask billed Managed Server at 42.50 each, HaloPSA at 45.00 each.

**What to do:** Compare the price on the Autotask contract service with the HaloPSA recurring
invoice line or the item's price; correct HaloPSA if the client's agreed price is Autotask's.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 55
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG = {
    "abs_tol": ("0", "Largest unit price difference treated as equal."),
    "rel_tol": ("0", "Extra allowed difference, as a fraction of the Autotask price."),
}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_net AS autotask_amount, h_net AS halopsa_amount,
               format('{}: unit price {} in Autotask, {} in HaloPSA (qty {})', item,
                      fmt_qty(a_price), fmt_qty(h_price), fmt_qty(h_qty)) AS message
        FROM groups g
        WHERE matched(g) AND a_price IS NOT NULL AND h_price IS NOT NULL
          AND NOT within(a_price, h_price, $abs_tol, $rel_tol)
        """
    )
