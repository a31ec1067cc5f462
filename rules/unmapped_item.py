"""Item not mapped

A HaloPSA item could not be matched to any Autotask item (service, product or billing code), so
its lines were paired with Autotask lines only by a similar description and amount. Confirm the
pairing by mapping the item. Reported once per client, item and currency.

**Example:** HaloPSA bills "SentinelOne Complete"; Autotask called the service "EDR -
SentinelOne", and the HaloPSA item has no Autotask service id.

**What to do:** Add `item,<Autotask name or id>,<HaloPSA name or id>` to a mapping file, or set
the Autotask service id on the HaloPSA item.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "warning"
PRECEDENCE = 80
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT list(g.match_id ORDER BY g.match_id) AS match_ids,
               min(g.client) AS client,
               flatten(list(g.h_uids ORDER BY g.match_id)) AS h_uids,
               sum(g.h_net) AS halopsa_amount,
               sum(coalesce(g.a_net, 0)) AS autotask_amount,
               format('HaloPSA item {} {}', min(g.h_item),
                      CASE WHEN bool_or(x.ambiguous) THEN min(x.note)
                           ELSE 'matches no Autotask item'
                                || coalesce(' - closest Autotask item: ' || min(x.suggestion)
                                            || ' (' || min(x.basis) || ')',
                                            ' - ' || min(x.note), '') END) AS message
        FROM groups g
        LEFT JOIN crosswalk x ON x.kind = 'item' AND x.h_key = g.h_i_key
        WHERE matched(g) AND g.h_c_ok AND NOT g.h_i_ok
        GROUP BY g.h_c_key, g.h_i_key, g.h_currency
        """
    )
