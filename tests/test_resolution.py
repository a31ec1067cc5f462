"""crosswalk.resolve_frame (DuckDB SQL over temp tables) gives what the polars reference
(crosswalk_reference.resolve_frame, the resolution as first written) gives, over generated
entity sets: ids and names shared or not, legal forms, case and punctuation variants, empty
names, kept Autotask ids, mapping rows by id and by name."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import crosswalk_reference
import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from reconcile.crosswalk import (
    KINDS,
    RESOLUTION_SCHEMA,
    Entity,
    Mapping,
    entity_frame,
    resolve_frame,
    resolve_tables,
)
from reconcile.duck import with_frame
from reconcile.errors import InputError

# Base names people type, some alike, some only in case, punctuation or accents.
BASES = [
    "Acme", "ACME", "Apex", "Apex Foods", "apex  foods", "Café Lumière", "Cafe Lumiere",
    "Smith & Sons", "Smith and Sons", "O'Brien Plumbing", "O’Brien Plumbing", "Straße",
    "STRASSE", "Harbour Marine", "Harbor Marine", "The Acme",
]  # fmt: skip
FORMS = ["", " Ltd", " Limited", " Inc.", ", Inc.", " LLC", " GmbH & Co. KG", " L.L.P.", " UK",
         " GP"]  # fmt: skip
ODD = ["", "   ", "...", "Ltd", "-"]  # names with no base, or all legal form
IDS = ["1", "2", "3", "A-1", "a-1", "ß", "SS"]
KEYS = ["1", "2", "3", "10", "Z", "a", "é", "ß", "name:acme", "name:apex", "k"]


@st.composite
def names(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(ODD))
    bases = BASES[:3] if draw(st.booleans()) else BASES  # a few bases: collisions
    return draw(st.sampled_from(bases)) + draw(st.sampled_from(FORMS))


@st.composite
def entities(draw: st.DrawFn, prefix: str, kept: bool) -> list[Entity]:
    keys = draw(st.lists(st.sampled_from(KEYS), max_size=8, unique=True))
    return [
        Entity(
            key=prefix + key,
            ids=tuple(draw(st.lists(st.sampled_from(IDS), max_size=2))),
            names=tuple(draw(st.lists(names(), max_size=3))),
            xref=draw(st.sampled_from([None, "", *IDS])) if kept else None,
        )
        for key in keys
    ]


@st.composite
def mappings(
    draw: st.DrawFn, kind: str, values: list[str], halopsa: Sequence[Entity] = ()
) -> list[Mapping]:
    """Rows mostly of the kind resolved, naming the given ids and names in any case; and at
    times two rows naming one HaloPSA entity by two of its values (its id and its name)."""
    case = st.sampled_from([str, str.upper, str.lower])
    value = st.builds(lambda f, v: f(v), case, st.sampled_from(values))
    kinds = st.sampled_from([kind, kind, *KINDS])
    rows = [
        Mapping(draw(kinds), draw(value), draw(value), "m.csv", row)
        for row in range(draw(st.integers(0, 6)))
    ]
    named = [e for e in halopsa if len({*e.ids, *e.names}) > 1]
    paired: bool = draw(st.booleans())
    if named and paired:
        entity = draw(st.sampled_from(named))
        two = draw(st.lists(st.sampled_from(sorted({*entity.ids, *entity.names})), min_size=2,
                            max_size=2, unique=True))  # fmt: skip
        at = draw(st.integers(0, len(rows)))
        pair = [Mapping(kind, draw(value), v, "m.csv", 10 + i) for i, v in enumerate(two)]
        rows[at:at] = pair
    return rows


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    autotask=entities("", kept=False),
    halopsa=entities("h:", kept=True),
    min_score=st.sampled_from([0.0, 60.0, 85.5]),
    suggest=st.booleans(),
    data=st.data(),
)
def test_sql_resolution_is_the_reference(
    kind: str,
    autotask: list[Entity],
    halopsa: list[Entity],
    min_score: float,
    suggest: bool,
    data: st.DataObject,
) -> None:
    values = sorted({v for e in autotask + halopsa for v in (*e.ids, *e.names)} | {*IDS, "apex"})
    mapping_rows = data.draw(mappings(kind, values, halopsa))
    a, h = entity_frame(autotask), entity_frame(halopsa)
    try:
        expected = crosswalk_reference.resolve_frame(kind, a, h, mapping_rows, min_score, suggest)
    except InputError as refused:
        with pytest.raises(InputError) as found_refusal:
            resolve_frame(kind, a, h, mapping_rows, min_score, suggest)
        assert str(found_refusal.value) == str(refused)
        return
    found = resolve_frame(kind, a, h, mapping_rows, min_score, suggest)
    assert_frame_equal(found, expected)


def test_many_candidates_are_counted_and_the_first_five_shown() -> None:
    """A name seven Autotask entities share: the note counts them all and shows five, in order,
    each told apart by its id (they share a label)."""
    autotask = [Entity(str(i), (str(i),), ("Acme",)) for i in range(7)]
    a, h = entity_frame(autotask), entity_frame([Entity("h:x", (), ("ACME",))])
    found = resolve_frame("client", a, h, [], 60)
    assert_frame_equal(found, crosswalk_reference.resolve_frame("client", a, h, [], 60))
    shown = "; ".join(f"Acme (id {i})" for i in range(5))
    assert found["note"].to_list() == [
        f"matches 7 Autotask clients by name ({shown}; and 2 more) and is not paired: "
        "add a mapping row client,<Autotask client>,ACME"
    ]
    assert found["ambiguous"].to_list() == [True]


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(
    autotask=st.tuples(*(entities("", kept=False) for _ in KINDS)),
    halopsa=st.tuples(*(entities("h:", kept=True) for _ in KINDS)),
    suggest=st.sets(st.sampled_from(KINDS)),
    data=st.data(),
)
def test_kinds_resolved_together_are_each_resolved_alone(
    autotask: tuple[list[Entity], ...],
    halopsa: tuple[list[Entity], ...],
    suggest: set[str],
    data: st.DataObject,
) -> None:
    """resolve_tables resolves the three kinds in one set of statements: each kind's rows are
    what resolve_frame gives for it alone, though keys, ids and names recur across kinds."""
    values = sorted({v for es in autotask + halopsa for e in es for v in (*e.ids, *e.names)})
    mapping_rows = data.draw(mappings("client", [*values, *IDS], halopsa[0]))
    frames = {
        side: pl.concat(
            entity_frame(es).select(pl.lit(kind).alias("kind"), pl.all())
            for kind, es in zip(KINDS, sets, strict=True)
        )
        for side, sets in (("a", autotask), ("h", halopsa))
    }
    alone: dict[str, pl.DataFrame] = {}
    refusals = []  # a kind's rows that name one HaloPSA entity and map it two ways
    for kind, a, h in zip(KINDS, autotask, halopsa, strict=True):
        try:
            alone[kind] = resolve_frame(
                kind, entity_frame(a), entity_frame(h), mapping_rows, 60.0, kind in suggest
            )
        except InputError as refused:
            refusals.append(str(refused))
    with contextlib.closing(duckdb.connect()) as con:
        for side, frame in frames.items():
            with_frame(con, f"CREATE TEMP TABLE _{side} AS SELECT * FROM _frame", frame)
        if refusals:  # together, the kinds are refused for one of the conflicts alone finds
            with pytest.raises(InputError) as refused_together:
                resolve_tables(con, "_a", "_h", mapping_rows, 60.0, frozenset(suggest))
            assert str(refused_together.value) in refusals
            return
        resolve_tables(con, "_a", "_h", mapping_rows, 60.0, frozenset(suggest))
        together: pl.DataFrame = con.sql(
            "SELECT * FROM _resolution ORDER BY kind, halopsa_key"
        ).pl()
    for kind, expected in alone.items():
        found = together.filter(pl.col("kind") == kind).select(
            pl.col(c).cast(t) for c, t in RESOLUTION_SCHEMA.items()
        )
        assert_frame_equal(found, expected)


def test_one_halopsa_entity_mapped_by_id_and_by_name_to_two_autotask_ones_is_refused() -> None:
    """Two mapping rows name one HaloPSA client, one by its id and one by its name, and map it
    to two Autotask clients: refused, naming both rows. Read as written they are no conflict,
    and the id row won without a word (a client's billing paired with another client's)."""
    autotask = [
        Entity("1", ("614",), ("Pemberton & Sons Joinery",)),
        Entity("2", (), ("Union Street Bakery",)),
    ]
    halopsa = [Entity("h:1", ("1286",), ("PSJ Woodworks Ltd",))]
    rows = [
        Mapping("client", "Pemberton & Sons Joinery", "PSJ Woodworks Ltd", "map.csv", 2),
        Mapping("client", "Union Street Bakery", "1286", "map.csv", 3),
    ]
    a, h = entity_frame(autotask), entity_frame(halopsa)
    message = (
        "map.csv, line 3: '1286' and 'PSJ Woodworks Ltd' (line 2) name one HaloPSA client, "
        "mapped to two Autotask clients: 'Pemberton & Sons Joinery' (line 2) and "
        "'Union Street Bakery' (this line)"
    )
    for resolve in (resolve_frame, crosswalk_reference.resolve_frame):
        with pytest.raises(InputError) as refused:
            resolve("client", a, h, rows, 85.5)
        assert str(refused.value).startswith(message)
    # The same Autotask client named by its id and by its name is one: applied, not refused.
    same = [rows[0], Mapping("client", "614", "1286", "map.csv", 3)]
    found = resolve_frame("client", a, h, same, 85.5)
    assert found.select("autotask_key", "method").row(0) == ("1", "mapping")
