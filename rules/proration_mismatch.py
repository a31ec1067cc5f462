"""Proration differs

Both systems bill a partial-period charge (a mid-period change such as seats added on the
16th) but compute it differently: days in the month, 30-day months or whole months.

**Example:** 3 seats added on 16 November: Autotask prorates 15/30 of the monthly price, HaloPSA
15/31.

**What to do:** Agree which proration method the contract promises; HaloPSA's pro-rata settings
are on the recurring invoice. Small one-off differences may be accepted.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "warning"
PRECEDENCE = 30
MEASURE = "net"  # what autotask_amount and halopsa_amount are
SUPERSEDES = ("quantity_mismatch", "unit_price_mismatch", "amount_mismatch")
CONFIG = {
    "abs_tol": ("0.01", "Largest prorated amount difference treated as rounding."),
    "rel_tol": ("0", "Extra allowed difference, as a fraction of the Autotask amount."),
}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_net AS autotask_amount, h_net AS halopsa_amount,
               format('{}: partial period {} prorated to {} in Autotask, {} in HaloPSA', item,
                      fmt_period(a_period_start, a_period_end), fmt_money(a_net),
                      fmt_money(h_net)) AS message
        FROM groups g
        WHERE matched(g) AND is_partial(a_period_start, a_period_end)
          AND is_partial(h_period_start, h_period_end)
          AND NOT within(a_net, h_net, $abs_tol, $rel_tol)
        """
    )
