"""Tax not stated

One side states the line's tax and the other does not: the tax cell is empty (or the export has
no tax column), so the tax cannot be compared. An unknown tax is never taken as zero: the
gross difference of the line stays open until both exports state it.

**Example:** Both bill Backup at 210.00 net; HaloPSA adds 42.00 VAT, the Autotask export's
Total Tax cell for the line is empty.

**What to do:** Export the lines again with the tax column filled in (in Autotask, Total Tax;
in HaloPSA, tax_amount / IDTax_Amount), or check why the system holds no tax for the line.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 69
MEASURE = "tax"  # what autotask_amount and halopsa_amount are
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_tax AS autotask_amount, h_tax AS halopsa_amount,
               format('{}: tax {} in Autotask, {} in HaloPSA on net {}: an unknown tax is not '
                      'taken as zero', item,
                      CASE WHEN a_tax IS NULL THEN 'not stated' ELSE fmt_money(a_tax) END,
                      CASE WHEN h_tax IS NULL THEN 'not stated' ELSE fmt_money(h_tax) END,
                      fmt_money(a_net)) AS message
        FROM groups g
        WHERE matched(g) AND (a_tax IS NULL) <> (h_tax IS NULL)
        """
    )
