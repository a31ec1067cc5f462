"""Currency differs

The same charges are billed in a different currency by the two systems: the HaloPSA client or
invoice has another currency than the Autotask company. Lines in different currencies are never
paired or compared (an amount in EUR says nothing about one in GBP), so a client's charges that
each system bills only in its own currency are reported here instead of as missing lines: once
per client and currency, each in its own currency, so that every currency's totals still add
up (in GBP the charges are missing from HaloPSA, in EUR from Autotask).

**Example:** Autotask bills Zurich AG in GBP; HaloPSA's invoices for the same client are in EUR.

**What to do:** Check the client's currency in HaloPSA (and the invoice's currency); the lines
are paired and compared again once the currencies agree.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 15
MEASURE = "net"  # what autotask_amount and halopsa_amount are
SUPERSEDES = ("missing_in_halopsa", "missing_in_autotask", "duplicate_line")
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        WITH lone AS (
            -- The groups with one side only (a group has lines on at least one side), as two
            -- scans whose filters the table scan applies itself.
            SELECT match_id, client, client_key, a_n, h_n, a_uids, h_uids, a_net, h_net,
                   a_currency, h_currency, coalesce(a_i_key, h_i_key) AS item_key
            FROM (SELECT * FROM groups WHERE h_n = 0
                  UNION ALL
                  SELECT * FROM groups WHERE a_n = 0 AND h_c_ok)
        ),
        odd AS (
            SELECT l.* FROM lone l
            WHERE EXISTS (
                SELECT 1 FROM lone o
                WHERE o.client_key = l.client_key AND o.item_key = l.item_key
                  AND ((l.a_n > 0 AND o.h_n > 0 AND o.h_currency <> l.a_currency)
                    OR (l.h_n > 0 AND o.a_n > 0 AND o.a_currency <> l.h_currency))
            )
        ),
        sums AS (
            SELECT client_key, string_agg(DISTINCT a_currency || ' ' || fmt_money(net), ', '
                       ORDER BY a_currency || ' ' || fmt_money(net)) AS a_text,
                   string_agg(DISTINCT h_currency || ' ' || fmt_money(net_h), ', '
                       ORDER BY h_currency || ' ' || fmt_money(net_h)) AS h_text
            FROM (
                SELECT client_key, a_currency, h_currency,
                       sum(a_net) OVER (PARTITION BY client_key, a_currency) AS net,
                       sum(h_net) OVER (PARTITION BY client_key, h_currency) AS net_h
                FROM odd
            )
            GROUP BY client_key
        )
        SELECT list(match_id ORDER BY match_id) AS match_ids, min(client) AS client,
               flatten(list(a_uids ORDER BY match_id) FILTER (WHERE a_n > 0)) AS a_uids,
               flatten(list(h_uids ORDER BY match_id) FILTER (WHERE h_n > 0)) AS h_uids,
               sum(a_net) AS autotask_amount, sum(h_net) AS halopsa_amount,
               CASE WHEN sum(a_n) > 0
                    THEN format('{} Autotask line(s) ({}) are billed by HaloPSA in another '
                                || 'currency ({}); amounts in different currencies are not '
                                || 'compared', sum(a_n), min(s.a_text), min(s.h_text))
                    ELSE format('{} HaloPSA line(s) ({}) are billed by Autotask in another '
                                || 'currency ({}); amounts in different currencies are not '
                                || 'compared', sum(h_n), min(s.h_text), min(s.a_text))
               END AS message
        FROM odd JOIN sums s USING (client_key)
        GROUP BY client_key, coalesce(a_currency, h_currency)
        """
    )
