"""The tables a rule may read, declared once: every column's name, DuckDB type and meaning.

A run's matcher (match.py) creates `a`, `h`, `groups` and `crosswalk` from these declarations;
the rules (rules/*.py and reconcile/rules.py) read only these columns. Money is DECIMAL in the
line's currency, quantities DECIMAL units, dates DATE; nothing is a float but the crosswalk's
similarity score. tests/test_tables.py compares each table's DESCRIBE after a real run with its
declaration and runs every rule file against empty tables made from the declarations alone, so a
rule cannot read a column that is not declared.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

QTY = "DECIMAL(18,4)"  # units, hours or licences; 4 decimal places, as the exports give them
PRICE = "DECIMAL(18,4)"  # per unit, in the line's currency
MONEY = "DECIMAL(18,2)"  # in the line's currency, exact to the cent
SIDES = {"a": "autotask", "h": "halopsa"}  # each side's line table, and the platform it holds
SIDE_LABELS = {"a": "Autotask", "h": "HaloPSA"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as DuckDB's DESCRIBE spells it
    meaning: str  # for a billing admin reading a rule


@dataclass(frozen=True)
class Table:
    name: str
    meaning: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def create(self, con: duckdb.DuckDBPyConnection, query: str | None = None) -> None:
        """(Re)create the temp table with exactly the declared columns, then insert `query`'s
        rows: its columns are taken by name (extra ones are ignored) and cast to the declared
        types, so a missing column fails and a sum cannot widen a type unseen."""
        columns = ", ".join(f"{c.name} {c.type}" for c in self.columns)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {self.name} ({columns})")
        if query is not None:
            self.insert(con, query)

    def insert(self, con: duckdb.DuckDBPyConnection, query: str) -> None:
        """Insert `query`'s rows into the table as `create` does."""
        names = ", ".join(self.names)
        con.execute(f"INSERT INTO {self.name} ({names}) SELECT {names} FROM ({query})")


# The lines of one side as matching and the rules see them: the loaded line's billing columns
# (model.CANONICAL_SCHEMA, less the load bookkeeping) with the line's run id, display ref and
# crosswalk keys. One table per side, `a` (Autotask) and `h` (HaloPSA), alike.
LINE_COLUMNS = (
    Column("uid", "BIGINT", "The line's number in this run: unique on its side, in load order."),
    Column(
        "ref",
        "VARCHAR",
        "The line as people find it: its id in the export (or row:N where the export has none),"
        " prefixed by its file's name where two loaded files use the same id.",
    ),
    Column(
        "c_key",
        "VARCHAR",
        "The client in Autotask's terms where the crosswalk resolved it: the Autotask client id,"
        " or `name:` and the normalised name; a HaloPSA client it did not resolve keeps its own"
        " key, prefixed `h:`.",
    ),
    Column("i_key", "VARCHAR", "The item (service, product, billing code), keyed as c_key is."),
    Column(
        "k_key",
        "VARCHAR",
        "The contract, keyed as c_key is; on HaloPSA lines null where it was not resolved."
        " It orders candidates in matching, never decides a pair.",
    ),
    Column(
        "c_ok",
        "BOOLEAN",
        "The client is resolved to an Autotask client (always true on Autotask lines).",
    ),
    Column(
        "i_ok",
        "BOOLEAN",
        "The item is resolved to an Autotask item (always true on Autotask lines).",
    ),
    Column("invoice_number", "VARCHAR", "The invoice the line is on."),
    Column("invoice_date", "DATE", "The invoice's date."),
    Column("client_id", "VARCHAR", "The client's id in this system."),
    Column("client_name", "VARCHAR", "The client's name in this system."),
    Column("contract_id", "VARCHAR", "The contract's id in this system."),
    Column("contract_name", "VARCHAR", "The contract's name in this system."),
    Column(
        "contract_type",
        "VARCHAR",
        "The contract's kind in both systems' common words (recurring_service, block_hours…).",
    ),
    Column("item_code", "VARCHAR", "The item's code or id in this system."),
    Column("item_name", "VARCHAR", "The item's name in this system."),
    Column("description", "VARCHAR", "The line's own text."),
    Column("quantity", QTY, "Units billed."),
    Column("unit_price", PRICE, "Price per unit."),
    Column("net_amount", MONEY, "The line's amount before tax."),
    Column("tax_amount", MONEY, "The line's tax; null where the export does not state it."),
    Column("currency", "VARCHAR", "ISO 4217 code of the line's amounts."),
    Column("period_start", "DATE", "First day of the service period billed; null if unstated."),
    Column("period_end", "DATE", "Last day of the service period billed; null if unstated."),
)
AUTOTASK_LINES = Table("a", "This cycle's Autotask lines, one row each.", LINE_COLUMNS)
HALOPSA_LINES = Table("h", "This cycle's HaloPSA lines, one row each.", LINE_COLUMNS)

# A group's columns for one side, repeated as a_… (Autotask) and h_… (HaloPSA). On a side with
# no line in the group every one is null.
GROUP_SIDE_COLUMNS = (
    Column("uids", "BIGINT[]", "The uid of each of the side's lines in the group."),
    Column("qty", QTY, "Total quantity of the side's lines (null if none states one)."),
    Column(
        "price",
        PRICE,
        "The unit price, where every line of the side states the same one; else null.",
    ),
    Column("net", MONEY, "Total net amount of the side's lines."),
    Column("tax", MONEY, "Total tax of the side's lines; null if any line's tax is unstated."),
    Column("currency", "VARCHAR", "The side's currency, where its lines share one; else null."),
    Column(
        "contract_type",
        "VARCHAR",
        "The side's contract type, where its lines share one; else null.",
    ),
    Column("period_start", "DATE", "Earliest service period start of the side's lines."),
    Column("period_end", "DATE", "Latest service period end of the side's lines."),
    Column("client", "VARCHAR", "The client's name on the side (the first, alphabetically)."),
    Column(
        "item",
        "VARCHAR",
        "The item's name on the side, or the line's text where no item is named (the first).",
    ),
    Column("c_key", "VARCHAR", "The side's client key (see the line tables' c_key)."),
    Column("i_key", "VARCHAR", "The side's item key (see the line tables' i_key)."),
    Column("c_ok", "BOOLEAN", "Every line's client is resolved to an Autotask client."),
    Column("i_ok", "BOOLEAN", "Every line's item is resolved to an Autotask item."),
)


def _sided(prefix: str, columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """`columns` of one side, each named {prefix}_{name} ('a' Autotask, 'h' HaloPSA)."""
    return tuple(
        Column(f"{prefix}_{c.name}", c.type, f"{SIDE_LABELS[prefix]}: {c.meaning}") for c in columns
    )


GROUPS = Table(
    "groups",
    "One row per match group: the lines of both sides that the matcher paired, each side's"
    " lines aggregated. Every line is in exactly one group; a group with no line on one side is"
    " an unmatched line.",
    (
        Column(
            "match_id",
            "BIGINT",
            "The group's number: by stage, then by the first ref of each side.",
        ),
        Column(
            "stage",
            "VARCHAR",
            "The matching stage that made the group (match.STAGES): exact, split, values,"
            " group, period, fuzzy or unmatched.",
        ),
        Column("client", "VARCHAR", "The client's name: Autotask's, else HaloPSA's."),
        Column("client_key", "VARCHAR", "The client's key: Autotask's, else HaloPSA's."),
        Column("item", "VARCHAR", "The item's name: Autotask's, else HaloPSA's."),
        Column("a_n", "BIGINT", "Number of Autotask lines in the group (0 if none)."),
        Column("h_n", "BIGINT", "Number of HaloPSA lines in the group (0 if none)."),
        *_sided("a", GROUP_SIDE_COLUMNS),
        *_sided("h", GROUP_SIDE_COLUMNS),
    ),
)

CROSSWALK = Table(
    "crosswalk",
    "How each HaloPSA client, item and contract was resolved to an Autotask one (made by"
    " match._crosswalk).",
    (
        Column("kind", "VARCHAR", "client, item or contract."),
        Column(
            "h_key", "VARCHAR", "The HaloPSA entity's own key (as in c_key, i_key, k_key: `h:…`)."
        ),
        Column("a_key", "VARCHAR", "The Autotask key it resolves to; null where unresolved."),
        Column(
            "method",
            "VARCHAR",
            "How it was resolved: mapping, autotask_id, name or unmapped.",
        ),
        Column("suggestion", "VARCHAR", "An unresolved entity's likely Autotask counterpart."),
        Column("score", "DOUBLE", "The suggestion's name similarity, 0 to 100."),
        Column("basis", "VARCHAR", "Why the suggestion is made."),
        Column("note", "VARCHAR", "Why nothing is suggested, or what was ambiguous."),
        Column(
            "ambiguous",
            "BOOLEAN",
            "Its name fits several Autotask entities: never paired by guess.",
        ),
    ),
)

RULE_TABLES = (AUTOTASK_LINES, HALOPSA_LINES, GROUPS, CROSSWALK)


def tables_markdown() -> str:
    """Markdown for the README: each table a rule may read, with its columns' types and
    meanings (a group's two sides as one row, a_… and h_…)."""
    sided = {f"{p}_{c.name}" for p in SIDES for c in GROUP_SIDE_COLUMNS}
    sections = (
        ("`a`, `h`", "This cycle's lines, one row each: `a` Autotask's, `h` HaloPSA's.",
         LINE_COLUMNS, "`{}`"),
        ("`groups`", GROUPS.meaning, tuple(c for c in GROUPS.columns if c.name not in sided),
         "`{}`"),
        ("`groups`, each side", "Each column twice: `a_…` for the group's Autotask lines, "
         "`h_…` for its HaloPSA lines.", GROUP_SIDE_COLUMNS, "`a_{0}`, `h_{0}`"),
        ("`crosswalk`", CROSSWALK.meaning, CROSSWALK.columns, "`{}`"),
    )  # fmt: skip
    out = []
    for heading, meaning, columns, name in sections:
        out += [f"{heading}: {meaning}", "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| {name.format(c.name)} | {c.type} | {c.meaning} |" for c in columns]
        out.append("")
    return "\n".join(out).rstrip("\n")


# What a discrepancy says of the lines it involves on one side, repeated as a_… (Autotask) and
# h_… (HaloPSA) in the discrepancies table (rules.CONTEXT_COLUMNS makes them). Null on a side
# with no line in the discrepancy.
DISCREPANCY_SIDE_COLUMNS = (
    Column("uids", "BIGINT[]", "The uid of each of the side's lines in the discrepancy."),
    Column("invoices", "VARCHAR[]", "The lines' invoice numbers, distinct and sorted."),
    Column(
        "item_names",
        "VARCHAR[]",
        "The lines' item names (the line's text where none is named), distinct and sorted.",
    ),
    Column("contracts", "VARCHAR[]", "The lines' contract names, distinct and sorted."),
    Column("period_start", "DATE", "The earliest service period start of the lines."),
    Column("period_end", "DATE", "The latest service period end of the lines."),
    Column("quantity", "DECIMAL(38,4)", "The lines' total quantity."),
    Column("unit_price", PRICE, "The unit price, where every line states the same one; else null."),
    Column("net", "DECIMAL(38,2)", "The lines' total net amount."),
    Column("tax", "DECIMAL(38,2)", "The lines' total tax; null if any line's tax is unstated."),
    Column("currency", "VARCHAR", "The lines' currency, where they share one; else null."),
)


DISCREPANCIES = Table(
    "discrepancies",
    "The run's discrepancies, one row each, stored in position order, as rules.run_rules leaves"
    " them for the rest of the run (root causes, acceptances, the bridge, the summary, the"
    " outputs, the report, the kept run), which reads them by query, the long reads a range of"
    " positions at a time (store.read_ranges); dropped once the run is kept.",
    (
        Column(
            "position",
            "BIGINT",
            "The discrepancy's place in the run's order (1 first): severity, size of the"
            " difference, client, rule, id, message, refs.",
        ),
        Column("id", "VARCHAR", "Stable id: D- and 10 hex digits of the lines' content, -2…"),
        Column("rule", "VARCHAR", "The code of the rule that found it."),
        Column(
            "severity",
            "VARCHAR",
            "The rule's severity as configured, or expected (a retired service).",
        ),
        Column("precedence", "INTEGER", "The rule's PRECEDENCE (lower explains money first)."),
        Column("measure", "VARCHAR", "What the amounts are: net, tax or gross."),
        Column("client", "VARCHAR", "The client's name as the rule gives it."),
        Column("match_ids", "BIGINT[]", "The match groups (groups.match_id) it is about."),
        Column("autotask_amount", MONEY, "Autotask's amount in the rule's measure."),
        Column("halopsa_amount", MONEY, "HaloPSA's amount in the rule's measure."),
        Column("difference", MONEY, "HaloPSA − Autotask in the rule's measure, or the rule's own."),
        Column("message", "VARCHAR", "What the rule says of it (expected ones say so)."),
        Column("autotask_refs", "VARCHAR[]", "The Autotask lines' refs, sorted."),
        Column("halopsa_refs", "VARCHAR[]", "The HaloPSA lines' refs, sorted."),
        *_sided("a", DISCREPANCY_SIDE_COLUMNS),
        *_sided("h", DISCREPANCY_SIDE_COLUMNS),
        Column("stage", "VARCHAR", "The matching stages of its groups, distinct, `;`-joined."),
        Column(
            "net_difference",
            MONEY,
            "The part of the totals' net difference it accounts for (each group counted once).",
        ),
        Column("tax_difference", MONEY, "As net_difference, of tax."),
        Column("gross_difference", MONEY, "As net_difference, of net plus tax."),
        Column("exposure", MONEY, "The most money at stake on either side (net plus tax)."),
        Column(
            "root_cause",
            "VARCHAR",
            "The id of the discrepancy it follows from (run.with_root_causes), or null.",
        ),
        Column(
            "acceptance",
            "BIGINT",
            "The ledger entry of the acceptance in force (acceptance.mark), or null.",
        ),
    ),
)
