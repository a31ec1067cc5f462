"""Tax differs

The net amounts agree but the tax does not: the line has a different tax code, tax rate or
taxable flag in HaloPSA than in Autotask.

**Example:** Both bill Backup at 120.00 net; Autotask adds 24.00 VAT (20%), HaloPSA adds 0.00
because the item is set up as zero-rated.

**What to do:** Check the item's and the client's tax code in HaloPSA against the Autotask tax
region and tax category.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 70
MEASURE = "tax"  # what autotask_amount and halopsa_amount are
CONFIG = {
    "abs_tol": ("0.01", "Largest tax difference per line treated as rounding."),
    "rel_tol": ("0", "Extra allowed difference, as a fraction of the Autotask tax."),
}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_tax AS autotask_amount, h_tax AS halopsa_amount,
               format('{}: tax {} in Autotask, {} in HaloPSA on the same net {}', item,
                      fmt_money(a_tax), fmt_money(h_tax), fmt_money(a_net)) AS message
        FROM groups g
        WHERE matched(g) AND a_tax IS NOT NULL AND h_tax IS NOT NULL
          AND within(a_net, h_net, $abs_tol, 0)
          AND NOT within(a_tax, h_tax, $abs_tol, $rel_tol)
        """
    )
