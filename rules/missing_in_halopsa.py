"""Line missing in HaloPSA

Autotask billed this charge but no HaloPSA line matches it: after cutover the client would no
longer be billed for it.

**Example:** Autotask billed "Firewall management" for Acme Widgets at 45.00; HaloPSA's invoice
for Acme Widgets has no such line.

**What to do:** In HaloPSA, check the client's recurring invoice or contract for the service.
If the service was retired on purpose, list it under `[expected] retired_items` in
reconcile.toml so it is reported as expected.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 40
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, a_net AS autotask_amount,
               format('{} (qty {}, {}) billed {} in Autotask; no HaloPSA line matches it',
                      item, fmt_qty(a_qty), fmt_period(a_period_start, a_period_end),
                      fmt_money(a_net)) AS message
        FROM groups WHERE a_n > 0 AND h_n = 0 AND (a_net <> 0 OR coalesce(a_tax, 0) <> 0)
        """
    )
