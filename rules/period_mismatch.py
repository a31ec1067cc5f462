"""Different service period

The same charge is billed for a different service period: the HaloPSA recurring invoice is
scheduled a period early or late, so the client would be billed twice or skipped.

**Example:** Autotask bills Managed Workstation for 1-30 November; HaloPSA bills the same
charge for 1-31 October on this cycle's invoice.

**What to do:** Check the next invoice date and the "bill in advance/arrears" setting of the
HaloPSA recurring invoice or contract.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 25
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_net AS autotask_amount, h_net AS halopsa_amount,
               format('{}: Autotask bills {}, HaloPSA bills {}', item,
                      fmt_period(a_period_start, a_period_end),
                      fmt_period(h_period_start, h_period_end)) AS message
        FROM groups g
        WHERE matched(g) AND a_period_start IS NOT NULL AND h_period_start IS NOT NULL
          AND (a_period_start <> h_period_start OR a_period_end <> h_period_end)
        """
    )
