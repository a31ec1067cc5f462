"""Rounding difference

The line agrees except for a difference within the rounding tolerance (a cent by default).
Autotask rounds each line to 2 decimals at posting; HaloPSA keeps unrounded tax and may round
4-decimal prices differently.

**Example:** 7 x 12.3450: Autotask posts 86.42, HaloPSA 86.41.

**What to do:** Nothing for the line itself. If many such cents add up for a client, the client
total rule says so.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "info"
PRECEDENCE = 95
MEASURE = "gross"  # what autotask_amount and halopsa_amount are
CONFIG = {"abs_tol": ("0.01", "Largest per-line difference reported as rounding, not error.")}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT [match_id] AS match_ids, client, a_uids, h_uids,
               a_net + coalesce(a_tax, 0) AS autotask_amount,
               h_net + coalesce(h_tax, 0) AS halopsa_amount,
               format('{}: net {} vs {}, tax {} vs {} (within rounding)', item,
                      fmt_money(a_net), fmt_money(h_net), fmt_money(a_tax),
                      fmt_money(h_tax)) AS message
        FROM groups g
        WHERE matched(g) AND a_qty IS NOT DISTINCT FROM h_qty
          AND within(a_net, h_net, $abs_tol, 0) AND within(a_tax, h_tax, $abs_tol, 0)
          AND (a_net <> h_net OR coalesce(a_tax, 0) <> coalesce(h_tax, 0))
        """
    )
