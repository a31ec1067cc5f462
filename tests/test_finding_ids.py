"""Finding ids (DuckDB's sha256 over the lines' fingerprints) and expected differences (names
casefolded by polars) follow their documented form: an id cited in finance's log never
changes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.config import Config, ExpectedSettings
from reconcile.rules import _mark_expected, _with_refs
from reconcile.tables import AUTOTASK_LINES, GROUPS, HALOPSA_LINES

LINE = (
    "(uid, ref, c_key, i_key, c_ok, i_ok, item_name, item_code, client_name, currency, "
    "quantity, unit_price, net_amount, tax_amount)"
)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """Two Autotask lines, one HaloPSA line, and their groups: (a 1, h 10) and (a 2)."""
    with duckdb.connect() as con:
        for table in (AUTOTASK_LINES, HALOPSA_LINES, GROUPS):
            table.create(con)
        con.execute(
            f"INSERT INTO a {LINE} VALUES "
            "(1, 'A-1', '7', 'i1', true, true, 'Backup', 'B1', 'Acme', 'GBP', 2, 10, 20, 4),"
            "(2, 'A-2', '7', 'i2', true, true, 'Server', 'S1', 'Acme', 'GBP', 1, 5.5, 5.5, NULL)"
        )
        con.execute(
            f"INSERT INTO h {LINE} VALUES "
            "(10, 'H-10', '7', 'i1', true, true, 'Backup', 'B1', 'ACME', 'GBP', 2, 10, 21, 4)"
        )
        con.execute(
            "INSERT INTO groups (match_id, stage, a_n, h_n, a_uids, h_uids) VALUES "
            "(1, 'values', 1, 1, [1], [10]), (2, 'unmatched', 1, 0, [2], NULL)"
        )
        yield con


def _findings(
    rows: list[tuple[str, str | None, list[int], list[int] | None, list[int]]],
) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "rule": pl.String,
            "client": pl.String,
            "a_uids": pl.List(pl.Int64),
            "h_uids": pl.List(pl.Int64),
            "match_ids": pl.List(pl.Int64),
        },
        orient="row",
    )


def _digest(rule: str, client: str | None, a_fps: list[str], h_fps: list[str]) -> str:
    """The id as reconcile has always made it (the former per-finding Python digest)."""
    parts = [rule, *a_fps, "|", *h_fps]
    if not a_fps and not h_fps:
        parts.append(client or "")
    return "D-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]


def _found(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
    """The rules stage's table _found of `frame`'s rows, numbered _n in order."""
    con.register("_frame", frame.with_row_index("_n"))
    con.execute("CREATE TEMP TABLE _found AS FROM _frame")
    con.unregister("_frame")


def test_ids_are_the_sha256_of_rule_and_line_fingerprints(con: duckdb.DuckDBPyConnection) -> None:
    _found(
        con,
        _findings(
            [
                ("amount_mismatch", "Acme", [1], [10], [1]),
                ("client_total_mismatch", "Acme", [2, 1], None, []),
                ("client_total_mismatch", "Acme", [], [], []),
                ("client_total_mismatch", None, [], None, []),
            ]
        ),
    )
    _with_refs(con)
    found = con.sql("FROM _described ORDER BY _n").pl()
    # A line's fingerprint: md5 of the JSON list of its platform and billing values as text.
    line_1 = '["autotask","7","i1","GBP","2.0000","10.0000","20.00","4.00"]'
    line_2 = '["autotask","7","i2","GBP","1.0000","5.5000","5.50",null]'
    line_10 = '["halopsa","7","i1","GBP","2.0000","10.0000","21.00","4.00"]'
    fp = {
        n: hashlib.md5(t.encode()).hexdigest() for n, t in ((1, line_1), (2, line_2), (10, line_10))
    }
    # The fingerprints stay in DuckDB (the ids below are made of them, each side sorted), and
    # only Autotask's names are kept, for _mark_expected.
    assert not {"a_fps", "h_fps", "h_items", "h_codes", "h_clients"} & set(found.columns)
    items = [sorted(names) if names else names for names in found["a_items"].to_list()]
    assert items == [["Backup"], ["Backup", "Server"], None, None]  # distinct, in no order
    assert found["autotask_refs"].to_list() == [["A-1"], ["A-1", "A-2"], None, None]
    assert found["stage"].to_list() == ["values", None, None, None]
    assert found["id"].to_list() == [
        _digest("amount_mismatch", "Acme", [fp[1]], [fp[10]]),
        _digest("client_total_mismatch", "Acme", sorted([fp[1], fp[2]]), []),
        _digest("client_total_mismatch", "Acme", [], []),
        _digest("client_total_mismatch", None, [], []),
    ]
    assert (
        found["id"][0]
        == "D-"
        + hashlib.sha256(f"amount_mismatch\x1f{fp[1]}\x1f|\x1f{fp[10]}".encode()).hexdigest()[:10]
    )


def test_expected_when_every_autotask_item_or_client_is_retired_casefolded() -> None:
    config = Config(
        expected=ExpectedSettings(retired_items=["Straße Backup"], retired_clients=["Old Co"])
    )
    described = pl.DataFrame(
        {
            "_n": range(7),
            "a_uids": [[1], [1], [1, 2], [1], [1], None, [1]],
            "h_uids": [None, [10], None, [], None, [10], None],
            "a_items": [
                ["STRASSE BACKUP"],
                ["Straße Backup"],
                ["straße backup", "Server"],
                ["x"],
                [],
                None,
                ["Straße Backup", "Server"],
            ],
            "a_codes": [["B1"], ["B1"], ["B1", "S1"], ["straße backup"], [""], None, ["B1"]],
            "a_clients": [["Acme"], ["Acme"], ["Acme"], ["Acme"], ["OLD CO"], None, ["OLD CO"]],
        },
        schema_overrides={"_n": pl.Int64, "a_uids": pl.List(pl.Int64), "h_uids": pl.List(pl.Int64)},
    )
    with duckdb.connect() as con:
        con.register("_d", described)
        con.execute("CREATE TEMP TABLE _described AS FROM _d")
        _mark_expected(con, config)
        expected = [n for (n,) in con.sql("SELECT _n FROM _expected ORDER BY _n").fetchall()]
    # Retired by item (casefolded: ß is ss), by item code, by client; the last by item and by
    # client at once, listed once. Not: a finding with HaloPSA lines, a non-retired item beside
    # a retired one, no Autotask lines.
    assert expected == [0, 3, 4, 6]


# How people space a name: one space, several, a non-breaking or a tab between words, and any of
# them (or none) before and after it.
GAPS = st.sampled_from([" ", "  ", "\u00a0", " \u00a0", "\t"])
ENDS = st.sampled_from(["", " ", "  ", "\u00a0", "\t"])


@st.composite
def spellings(draw: st.DrawFn, words: list[str]) -> str:
    """`words` (lower case) spaced and cased as people type them."""
    cased = [draw(st.sampled_from([w, w.upper(), w.title()])) for w in words]
    gaps = [draw(GAPS) for _ in cased[1:]]
    inner = cased[0] + "".join(g + w for g, w in zip(gaps, cased[1:], strict=True))
    return draw(ENDS) + inner + draw(ENDS)


def _expected_of(config: Config, items: list[str], clients: list[str]) -> list[int]:
    """_mark_expected's findings (_n) of one Autotask-only finding per item (with client
    `Acme`), then one per client (with item `Server`)."""
    described = pl.DataFrame(
        {
            "_n": range(len(items) + len(clients)),
            "a_uids": [[1]] * (len(items) + len(clients)),
            "h_uids": [None] * (len(items) + len(clients)),
            "a_items": [[i] for i in items] + [["Server"]] * len(clients),
            "a_codes": [[""]] * (len(items) + len(clients)),
            "a_clients": [["Acme"]] * len(items) + [[c] for c in clients],
        },
        schema_overrides={"_n": pl.Int64, "a_uids": pl.List(pl.Int64), "h_uids": pl.List(pl.Int64)},
    )
    with duckdb.connect() as con:
        con.register("_d", described)
        con.execute("CREATE TEMP TABLE _described AS FROM _d")
        _mark_expected(con, config)
        return [n for (n,) in con.sql("SELECT _n FROM _expected ORDER BY _n").fetchall()]


@settings(max_examples=40)
@given(
    retired=spellings(["legacy", "tape", "backup"]),
    line=spellings(["legacy", "tape", "backup"]),
    client_retired=spellings(["old", "mill", "bakery", "ltd"]),
    client_line=spellings(["old", "mill", "bakery", "limited"]),
)
def test_retired_names_match_whatever_their_spacing_and_case(
    retired: str, line: str, client_retired: str, client_line: str
) -> None:
    """A retired item or client is the line's whatever the spacing (repeated, leading, trailing,
    non-breaking, tab) and case of either, and Ltd is Limited; another word (a plural, a name
    run together) is another item."""
    config = Config(
        expected=ExpectedSettings(retired_items=[retired], retired_clients=[client_retired])
    )
    items = [line, line.rstrip() + "s", "LegacyTape Backup"]
    assert _expected_of(config, items, [client_line]) == [0, 3]
