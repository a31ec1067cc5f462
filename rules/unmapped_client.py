"""Client not mapped

A HaloPSA client could not be matched to any Autotask client: not by a mapping file, not by the
Autotask id HaloPSA keeps, not by name. None of its lines can be reconciled until it is mapped.
A name that fits several Autotask clients (Acme Ltd and Acme Inc both exist, and HaloPSA says
"ACME") is never paired by guess: the finding names them and asks for a mapping row. A client
billed in two currencies is reported once in each, with its amount in that currency.

**Example:** HaloPSA bills "Harbourside Vets Group", which was "Harbour View Veterinary" in
Autotask and was never linked by the migration.

**What to do:** Add a line `client,<Autotask name or id>,<HaloPSA name or id>` to a mapping file
and pass it with `--map` (run `reconcile map suggest` for a starting point), or set the client's
Autotask id in HaloPSA.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "blocker"
PRECEDENCE = 10
MEASURE = "net"  # what autotask_amount and halopsa_amount are
SUPERSEDES = ("missing_in_autotask",)
CONFIG: dict[str, tuple[str, str]] = {}


def check(ctx: RuleContext) -> pl.DataFrame:
    return ctx.findings(
        """
        SELECT list(g.match_id ORDER BY g.match_id) AS match_ids,
               min(g.h_client) AS client,
               flatten(list(g.h_uids ORDER BY g.match_id)) AS h_uids,
               sum(g.h_net) AS halopsa_amount,
               format('HaloPSA client {} ({} line{}, {}) {}',
                      min(g.h_client), sum(g.h_n), CASE WHEN sum(g.h_n) = 1 THEN '' ELSE 's' END,
                      fmt_money(sum(g.h_net)),
                      CASE WHEN bool_or(x.ambiguous) THEN min(x.note)
                           ELSE 'matches no Autotask client'
                                || coalesce(' - likely Autotask client: ' || min(x.suggestion)
                                            || ' (' || min(x.basis) || ')',
                                            ' - ' || min(x.note), '') END) AS message
        FROM groups g
        LEFT JOIN crosswalk x ON x.kind = 'client' AND x.h_key = g.h_c_key
        WHERE g.h_n > 0 AND NOT g.h_c_ok
        GROUP BY g.h_c_key, g.h_currency
        """
    )
