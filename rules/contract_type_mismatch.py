"""Contract type differs

The charge sits on a different kind of contract in each system, so HaloPSA may bill it on a
different basis (recurring, time and materials, block hours, per ticket). Reported once per
client, currency and pair of types.

**Example:** Autotask bills Remote Support under a Recurring Service contract (included);
HaloPSA has it on a Time and Materials contract.

**What to do:** Check how the Autotask contract was rebuilt in HaloPSA. If two types are
equivalent for this MSP, list them under `[rules.contract_type_mismatch] equivalent` in
reconcile.toml, e.g. `equivalent = [["recurring_service", "per_device"]]`.
"""

from __future__ import annotations

import polars as pl

from reconcile.rules import RuleContext

SEVERITY = "warning"
PRECEDENCE = 90
MEASURE = "net"  # what autotask_amount and halopsa_amount are
CONFIG: dict[str, tuple[object, str]] = {
    "equivalent": ((), 'Groups of contract types treated as the same, e.g. [["a", "b"]].'),
}


def check(ctx: RuleContext) -> pl.DataFrame:
    groups = ctx.config.rule("contract_type_mismatch").get("equivalent", ())
    same = sorted({f"{a}|{b}" for group in groups for a in group for b in group}) or ["|"]
    return ctx.findings(
        """
        SELECT list(match_id ORDER BY match_id) AS match_ids, min(client) AS client,
               flatten(list(a_uids ORDER BY match_id)) AS a_uids,
               flatten(list(h_uids ORDER BY match_id)) AS h_uids,
               sum(a_net) AS autotask_amount, sum(h_net) AS halopsa_amount,
               format('{} line(s) ({}) sit on a {} contract in Autotask but a {} contract in '
                      || 'HaloPSA', count(*), string_agg(item, ', ' ORDER BY item),
                      replace(a_contract_type, '_', ' '), replace(h_contract_type, '_', ' '))
                   AS message
        FROM groups g
        WHERE matched(g) AND a_contract_type IS NOT NULL AND h_contract_type IS NOT NULL
          AND a_contract_type <> h_contract_type
          AND NOT list_contains($same, a_contract_type || '|' || h_contract_type)
        GROUP BY client_key, a_currency, a_contract_type, h_contract_type
        """,
        same=same,
    )
