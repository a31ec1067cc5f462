"""Retired service billed by HaloPSA

HaloPSA bills a service listed as retired (`[expected] retired_items` in reconcile.toml), or
bills a client listed as retired (`[expected] retired_clients`): the MSP decided not to migrate
it, so after cutover the client would be invoiced for something it no longer receives (or a
former client would be invoiced at all). The line counts as retired when its HaloPSA item name
or code, or the name of the Autotask item it was paired with, is a retired item (and likewise
for the client); names compare as the crosswalk pairs names (case, spacing and punctuation
aside). The difference is the whole HaloPSA amount: none of it should be billed.

**Example:** "Legacy Tape Backup" is retired; HaloPSA's recurring invoice for Meridian
Architects still bills it at 60.00.

**What to do:** Remove the line from the client's HaloPSA recurring invoice or contract. If the
service (or client) is not retired after all, take it off the list in reconcile.toml.
"""

from __future__ import annotations

import polars as pl

from reconcile.duck import frame_of, with_frame
from reconcile.rules import RuleContext, is_retired

SEVERITY = "blocker"
PRECEDENCE = 12
MEASURE = "net"  # what autotask_amount and halopsa_amount are
SUPERSEDES = ("missing_in_autotask",)
CONFIG: dict[str, tuple[str, str]] = {}

# Per kind of retired name, the names a HaloPSA line x is known by: its own, and those of the
# Autotask lines of the entity the crosswalk paired it with (the list in Autotask's terms).
KNOWN_BY = {
    "item": (("x.item_name", "x.item_code"), "i_key", "i_ok", ("y.item_name", "y.item_code")),
    "client": (("x.client_name",), "c_key", "c_ok", ("y.client_name",)),
}


def check(ctx: RuleContext) -> pl.DataFrame:
    lists = {
        "item": ctx.config.expected.retired_items,
        "client": ctx.config.expected.retired_clients,
    }
    kinds = [kind for kind, retired in lists.items() if retired]
    if not kinds:
        return ctx.findings(
            "SELECT match_id FROM groups WHERE false"  # no retired names: nothing to find
        )
    # The distinct names of each kind that HaloPSA lines are known by (KNOWN_BY). Each side's
    # distinct values are taken before they are unnested: a million lines hold a few hundred
    # items (unnesting them all first cost three times as much).
    known = " UNION ".join(
        f"SELECT '{kind}' AS kind, unnest([{', '.join(own)}]) AS name "
        f"FROM (SELECT DISTINCT {', '.join(own)} FROM h x) x "
        f"UNION SELECT '{kind}', unnest([{', '.join(theirs)}]) "
        f"FROM (SELECT DISTINCT y.{key}, {', '.join(theirs)} FROM a y) y "
        f"SEMI JOIN (SELECT DISTINCT {key} FROM h WHERE {ok}) x ON x.{key} = y.{key}"
        for kind in kinds
        for own, key, ok, theirs in [KNOWN_BY[kind]]
    )
    names = frame_of(ctx.con.sql(f"SELECT * FROM ({known}) WHERE name IS NOT NULL"))
    retired = pl.concat(
        part.filter(is_retired(kind, part["name"], lists[kind]))
        for kind in kinds
        for part in [names.filter(kind=kind)]
    )
    # Per kind, the HaloPSA lines known by a retired name: their own, or their entity's in
    # Autotask (the keys of the Autotask lines with a retired name).
    lines = " UNION ".join(
        f"""
        SELECT x.uid, '{kind}' AS kind
        FROM (SELECT uid, unnest([{", ".join(own)}]) AS name FROM h x) x
        JOIN _retired r ON r.kind = '{kind}' AND r.name = x.name
        UNION
        SELECT uid, '{kind}' FROM h WHERE {ok} AND {key} IN (
            SELECT y.{key} FROM (
                SELECT {key}, unnest([{", ".join(theirs)}]) AS name
                FROM (SELECT DISTINCT y.{key}, {", ".join(theirs)} FROM a y) y
            ) y
            JOIN _retired r ON r.kind = '{kind}' AND r.name = y.name
        )"""
        for kind in kinds
        for own, key, ok, theirs in [KNOWN_BY[kind]]
    )
    with_frame(ctx.con, "CREATE OR REPLACE TEMP TABLE _retired AS FROM _frame", retired)
    try:
        return ctx.findings(
            f"""
            WITH retired_lines AS (
                SELECT uid, bool_or(kind = 'item') AS item, bool_or(kind = 'client') AS client
                FROM ({lines}) GROUP BY uid
            ),
            billed AS (
                SELECT g.match_id, list(r.uid ORDER BY r.uid) AS uids, sum(x.net_amount) AS net,
                       bool_or(r.item) AS item, bool_or(r.client) AS client
                FROM (SELECT match_id, unnest(h_uids) AS uid FROM groups WHERE h_n > 0) g
                JOIN retired_lines r USING (uid) JOIN h x USING (uid)
                GROUP BY g.match_id
            )
            SELECT [g.match_id] AS match_ids, g.client, g.a_uids, b.uids AS h_uids,
                   g.a_net AS autotask_amount, b.net AS halopsa_amount, b.net AS difference,
                   format('HaloPSA bills {{}} {{}} ({{}} line(s), {{}}) for {{}}: {{}}',
                          g.h_client, g.h_item, len(b.uids), fmt_money(b.net),
                          fmt_period(g.h_period_start, g.h_period_end),
                          CASE WHEN b.item AND b.client
                               THEN 'the service and the client are retired'
                               WHEN b.item THEN 'the service is retired'
                               ELSE 'the client is retired' END
                          || ' ([expected] in reconcile.toml) and must not be billed')
                       AS message
            FROM billed b JOIN groups g USING (match_id)
            """
        )
    finally:
        ctx.con.execute("DROP TABLE _retired")
