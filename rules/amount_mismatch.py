"""Amount differs

Same quantity and unit price, yet a different line amount: a discount, a minimum charge or a
manual override on one side.

**Example:** Both systems bill 10 Managed Workstations at 35.00, but HaloPSA's line amount is
315.00 instead of 350.00 (a 10% discount on the line).

**What to do:** Open the HaloPSA line and look for a discount or an overridden total; agree with
the account manager which amount is right.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 60
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG = {
    "abs_tol": ("0.01", "Largest net amount difference per line treated as rounding."),
    "rel_tol": ("0", "Extra allowed difference, as a fraction of the Autotask amount."),
}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_net AS autotask_amount, h_net AS halopsa_amount,
               format('{}: qty {} at {} in both, but {} in Autotask and {} in HaloPSA', item,
                      fmt_qty(a_qty), fmt_qty(coalesce(a_price, h_price)), fmt_money(a_net),
                      fmt_money(h_net)) AS message
        FROM groups g
        WHERE matched(g) AND a_qty IS NOT DISTINCT FROM h_qty
          AND (a_price IS NULL OR h_price IS NULL OR a_price = h_price)
          AND NOT within(a_net, h_net, $abs_tol, $rel_tol)
        """
    )
