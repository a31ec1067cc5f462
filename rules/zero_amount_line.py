"""Zero-amount line on one side only

A line that bills nothing (0.00 net and no tax) appears in one system and has no counterpart in
the other. Autotask shows zero-amount recurring services on the invoice depending on its
template; HaloPSA's recurring invoices keep quantity-0 lines. Such a line moves no money, so it
is not a billing difference; it is listed so that nothing disappears unseen.

**Example:** Autotask's invoice lists "Managed Printer (qty 0) 0.00" from a recurring service
with no devices this month; HaloPSA's invoice leaves the line out.

**What to do:** Nothing, unless the line should bill something this month: then check the
quantity in the system that shows it.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "info"
PRECEDENCE = 42
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_net AS autotask_amount, h_net AS halopsa_amount,
               format('{} (qty {}) is a 0.00 line in {} only: a line that bills nothing is not '
                      'a billing difference', item, fmt_qty(coalesce(a_qty, h_qty)),
                      CASE WHEN a_n > 0 THEN 'Autotask' ELSE 'HaloPSA' END) AS message
        FROM groups
        WHERE (a_n > 0 AND h_n = 0 AND a_net = 0 AND coalesce(a_tax, 0) = 0)
           OR (h_n > 0 AND a_n = 0 AND h_net = 0 AND coalesce(h_tax, 0) = 0)
        """
    )
