"""Line missing in Autotask

HaloPSA bills a charge that Autotask did not bill in this cycle: the client would be billed
for something new at cutover.

**Example:** HaloPSA bills "Dark Web Monitoring" to Bright Smile Dental at 25.00; Autotask's
invoice has no such line.

**What to do:** Check whether the service was sold recently (then Autotask missed it) or was
added to the HaloPSA contract or recurring invoice by mistake during the migration.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 41
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, h_uids, h_net AS halopsa_amount,
               format('{} (qty {}, {}) billed {} in HaloPSA; no Autotask line matches it',
                      item, fmt_qty(h_qty), fmt_period(h_period_start, h_period_end),
                      fmt_money(h_net)) AS message
        FROM groups WHERE h_n > 0 AND a_n = 0 AND (h_net <> 0 OR coalesce(h_tax, 0) <> 0)
        """
    )
