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
SUPERSEDES = ("amount_mismatch", "unit_price_mismatch", "tax_mismatch", "rounding_difference")
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_net AS autotask_amount, h_net AS halopsa_amount,
               format('{}: billed in {} by Autotask, in {} by HaloPSA', item,
                      a_currency, h_currency) AS message
        FROM groups g
        WHERE matched(g) AND a_currency IS NOT NULL AND h_currency IS NOT NULL
          AND a_currency <> h_currency
        """
    )
