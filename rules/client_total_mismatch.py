"""Client total differs

A client's lines each look fine (every difference within the per-line tolerance) but together
they add up to a total that differs by more than the client tolerance: the invoice total the
client sees would change. A client billed in two currencies has a total in each.

**Example:** Four lines for Acme Widgets are each 0.01 higher in HaloPSA: the invoice total is
0.04 higher.

**What to do:** Check the rounding settings in HaloPSA (decimal places for invoices, tax
calculated per line or per invoice) and agree the difference with finance.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "warning"
PRECEDENCE = 99
MEASURE = "gross"  # what autotask_amount and halopsa_amount are
CONFIG = {
    "line_tol": ("0.01", "Per-line difference that still counts as the line looking fine."),
    "abs_tol": ("0.01", "Largest difference of a client's total treated as equal."),
}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT []::BIGINT[] AS match_ids, min(client) AS client,
               flatten(list(a_uids ORDER BY match_id)) AS a_uids,
               flatten(list(h_uids ORDER BY match_id)) AS h_uids,
               sum(a_net + coalesce(a_tax, 0)) AS autotask_amount,
               sum(h_net + coalesce(h_tax, 0)) AS halopsa_amount,
               format('{} lines each differ by no more than {}, but together the client''s '
                      || 'total differs by {}', count(*), $line_tol,
                      fmt_money(sum(h_net + coalesce(h_tax, 0) - a_net - coalesce(a_tax, 0))))
                   AS message
        FROM groups g
        WHERE matched(g) AND within(a_net, h_net, $line_tol, 0)
          AND within(a_tax, h_tax, $line_tol, 0)
          AND (a_net <> h_net OR coalesce(a_tax, 0) <> coalesce(h_tax, 0))
        GROUP BY client_key, a_currency
        HAVING NOT within(sum(a_net + coalesce(a_tax, 0)), sum(h_net + coalesce(h_tax, 0)),
                          $abs_tol, 0)
        """
    )
