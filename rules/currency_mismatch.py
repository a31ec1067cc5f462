"""Currency differs

The same charge is billed in a different currency: the HaloPSA client or invoice has another
currency than the Autotask company, so the amounts cannot be compared.

**Example:** Autotask bills Zurich AG in GBP; HaloPSA's invoice for the same client is in EUR.

**What to do:** Check the client's currency in HaloPSA (and the invoice's currency); the amounts
are compared again once the currencies agree.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 15
MEASURE = "net"  # what autotask_amount and halopsa_amount are
SUPERSEDES = ("amount_mismatch", "unit_price_mismatch", "tax_mismatch", "rounding_difference")
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT list(match_id ORDER BY match_id) AS match_ids, min(client) AS client,
               flatten(list(a_uids ORDER BY match_id)) AS a_uids,
               flatten(list(h_uids ORDER BY match_id)) AS h_uids,
               sum(a_net) AS autotask_amount, sum(h_net) AS halopsa_amount,
               format('{} line(s) billed in {} by Autotask but in {} by HaloPSA ({})',
                      count(*), a_currency, h_currency, string_agg(item, ', ' ORDER BY item))
                   AS message
        FROM groups g
        WHERE matched(g) AND a_currency IS NOT NULL AND h_currency IS NOT NULL
          AND a_currency <> h_currency
        GROUP BY client_key, a_currency, h_currency
        """
    )
