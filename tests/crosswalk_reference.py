"""The crosswalk's resolution as it was first written, in polars over whole entity frames: the
reference that crosswalk.resolve_frame (DuckDB SQL over temp tables, which spill) is tested
against. Same inputs, same output."""

from __future__ import annotations

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

from reconcile.crosswalk import (
    AMBIGUITY_SHOWN,
    RESOLUTION_SCHEMA,
    Mapping,
    ambiguity_note,
    best_suggestions,
    entity_conflict,
    name_keys,
    name_table,
)

LABEL = pl.coalesce(pl.col("names").list.first(), pl.col("ids").list.first(), pl.col("key"))


def resolve_frame(
    kind: str,
    autotask: pl.DataFrame,
    halopsa: pl.DataFrame,
    mappings: list[Mapping],
    min_score: float,
    suggest: bool = True,
) -> pl.DataFrame:
    """Resolve every HaloPSA entity to an Autotask key, or say it is unmapped (with a hint).

    autotask, halopsa: ENTITY_SCHEMA rows, keys unique. Returns one RESOLUTION_SCHEMA row per
    HaloPSA entity, sorted by key. Without `suggest`, an unmapped entity whose name neither
    collides nor differs only in legal form gets no similar-name suggestion (nor note): the
    search for one is the costliest step, and a run shows no contract's."""
    by_id = _by_id(kind, autotask, halopsa, mappings)
    pending = halopsa.join(by_id, left_on="key", right_on="halopsa_key", how="anti")
    found = _by_name(kind, autotask, pending, min_score, suggest, by_id)
    decided = pl.concat([by_id, *found], how="diagonal")
    return (
        halopsa.select(halopsa_key="key", halopsa_label=LABEL)
        .join(decided, on="halopsa_key", how="left")
        .select(
            *(pl.col(c).cast(t) for c, t in RESOLUTION_SCHEMA.items() if c != "ambiguous"),
            pl.col("ambiguous").fill_null(False).cast(pl.Boolean),
        )
        .sort("halopsa_key")
    )


def _by_id(
    kind: str, autotask: pl.DataFrame, halopsa: pl.DataFrame, mappings: list[Mapping]
) -> pl.DataFrame:
    """HaloPSA entities paired by the mapping file (its first id or name, in that order, that
    a mapping row gives an Autotask value of exactly one entity: any id or name, compared as
    names of the kind, crosswalk.name_keys)
    or else by the Autotask id HaloPSA kept (that of exactly one entity): halopsa_key,
    autotask_key, method."""
    mapped = pl.DataFrame(schema={"key": pl.String, "autotask_key": pl.String})
    explicit = [(i, m) for i, m in enumerate(mappings) if m.kind == kind]
    if explicit:
        keyed = pl.col("value").map_batches(lambda v: name_keys(kind, v), pl.String)
        rows = (
            pl.DataFrame(
                {
                    "row": [i for i, _ in explicit],
                    "value": [m.halopsa for _, m in explicit],
                    "target": [m.autotask for _, m in explicit],
                }
            )
            .select(
                "row",
                keyed,
                pl.col("target").map_batches(lambda v: name_keys(kind, v), pl.String),
            )
            .unique("value", keep="last")
        )
        a_values, h_values = (
            side.select("key", value=pl.concat_list("ids", "names"))
            .explode("value")
            .with_columns(keyed)
            for side in (autotask, halopsa)
        )
        applies = (
            h_values.with_row_index("order")
            .join(rows, on="value")
            .join(_only(a_values, "value"), left_on="target", right_on="value")
            .sort("order")
        )
        _refuse_entity_conflicts(applies, mappings)
        mapped = applies.unique("key", keep="first").select("key", "autotask_key")
    ids = autotask.select("key", value="ids").explode("value")
    kept = (
        halopsa.join(mapped, on="key", how="anti")
        .filter(pl.col("xref") != "")
        .join(_only(ids, "value"), left_on="xref", right_on="value")
        .select("key", "autotask_key")
    )
    return pl.concat(
        [
            mapped.with_columns(method=pl.lit("mapping")),
            kept.with_columns(method=pl.lit("autotask_id")),
        ]
    ).rename({"key": "halopsa_key"})


def _refuse_entity_conflicts(applies: pl.DataFrame, mappings: list[Mapping]) -> None:
    """InputError when the rows that apply to one HaloPSA entity (key, row, autotask_key) give
    two Autotask entities: the entity whose second row (the first to give another entity than
    its first row does) comes first, those two rows named."""
    clashes = []
    for _, rows in applies.sort("row").group_by("key", maintain_order=True):
        first = rows.row(0, named=True)
        other = rows.filter(pl.col("autotask_key") != first["autotask_key"])
        if other.height:
            clashes.append((other["row"][0], first["row"]))
    if not clashes:
        return
    second, first = min(clashes)
    raise entity_conflict(mappings[first], mappings[second])


def _only(values: pl.DataFrame, on: str) -> pl.DataFrame:
    """Each value of column `on` that exactly one entity (key) has: on, autotask_key."""
    return (
        values.drop_nulls(on)
        .group_by(on)
        .agg(entities=pl.col("key").n_unique(), autotask_key=pl.col("key").first())
        .filter(pl.col("entities") == 1)
        .drop("entities")
    )


def _names(kind: str, entities: pl.DataFrame) -> pl.DataFrame:
    """One row per (entity, name) with a base: key, rank, base, form, full (the two joined)."""
    names = (
        entities.select("key", name="names")
        .with_columns(rank=pl.int_ranges(pl.col("name").list.len()))
        .explode("name", "rank")
        .drop_nulls("name")
    )
    return pl.concat(
        [names.drop("name"), name_table(kind, names["name"])], how="horizontal"
    ).filter(pl.col("base") != "")


def _by_name(
    kind: str,
    autotask: pl.DataFrame,
    halopsa: pl.DataFrame,
    min_score: float,
    suggest: bool,
    by_id: pl.DataFrame,
) -> list[pl.DataFrame]:
    """Names equal after normalisation pair; a name that fits several Autotask entities, or
    differs from the only one with its base name in legal form, is never paired.

    Each HaloPSA entity's names are looked at in order (rank): the first that pairs pairs it;
    else the first that collides says so; else the first that differs only in legal form is
    the suggestion; whatever is left gets the most similar name (`best_matches`) when
    `suggest`, else nothing. A base name pairs only with an Autotask entity no other HaloPSA
    entity has (by_id's, or by a full name): else it differs only in legal form. Returns the
    resolutions of these four sets (halopsa_key and resolution columns)."""
    a_names = _names(kind, autotask)
    h_names = _names(kind, halopsa)
    # Per normalised name (full) and per base name: how many Autotask entities have it, the
    # first of them; per base, whether one has it with no legal form, and the first form.
    full_hits = a_names.group_by("full").agg(hits=pl.col("key").n_unique(), hit=pl.col("key").min())
    base_hits = a_names.group_by("base").agg(
        keys=pl.col("key").n_unique(),
        a_key=pl.col("key").min(),
        bare=(pl.col("form") == "").any(),
        theirs=pl.col("form").min(),
        a_full=pl.col("full").min(),
    )
    hits = pl.col("hits").fill_null(0)
    keys = pl.col("keys").fill_null(0)
    one_base = (hits == 0) & (keys == 1)
    named = h_names.join(full_hits, on="full", how="left").join(base_hits, on="base", how="left")
    taken = (
        pl.concat(
            [
                by_id.select(key="halopsa_key", a_key="autotask_key"),
                named.filter(pl.col("hits") == 1).select("key", a_key="hit"),
            ]
        )
        .group_by("a_key")
        .agg(first=pl.col("key").min(), last=pl.col("key").max())
    )
    free = pl.col("first").is_null() | (
        (pl.col("first") == pl.col("key")) & (pl.col("last") == pl.col("key"))
    )
    agrees = ((pl.col("form") == "") | pl.col("bare")) & free
    outcomes = (
        named.join(taken, on="a_key", how="left")
        .sort("key", "rank")
        .group_by("key", maintain_order=True)
        .agg(
            pair=pl.when(hits == 1)
            .then("hit")
            .when(one_base & agrees)
            .then("a_key")
            .drop_nulls()
            .first(),
            # The name that several Autotask entities have, as a whole or as a base name.
            collision=pl.when(hits > 1)
            .then(pl.struct(on=pl.lit("full"), name="full"))
            .when((hits == 0) & (keys > 1))
            .then(pl.struct(on=pl.lit("base"), name="base"))
            .drop_nulls()
            .first(),
            form_only=pl.when(one_base & ~agrees)
            .then(pl.struct("a_key", own="form", theirs="theirs", full="full", a_full="a_full"))
            .drop_nulls()
            .first(),
        )
    )
    display = _display(autotask)
    entities = halopsa.select("key", label=LABEL).join(outcomes, on="key", how="left")
    paired = entities.filter(pl.col("pair").is_not_null())
    colliding = entities.filter(pl.col("pair").is_null() & pl.col("collision").is_not_null())
    form_only = entities.filter(
        pl.col("pair").is_null() & pl.col("collision").is_null() & pl.col("form_only").is_not_null()
    ).unnest("form_only")
    left = entities.filter(
        pl.col("pair").is_null() & pl.col("collision").is_null() & pl.col("form_only").is_null()
    )
    return [
        paired.select(halopsa_key="key", autotask_key="pair", method=pl.lit("name")),
        _collisions(kind, colliding, a_names, display),
        _form_only(form_only, display),
        _suggest(kind, a_names, h_names, left, display, min_score) if suggest else _unmapped(left),
    ]


def _display(autotask: pl.DataFrame) -> pl.DataFrame:
    """Autotask entities by label, with the id where two share a label: key, display."""
    return autotask.select(
        "key",
        display=pl.when((pl.len().over(LABEL) > 1) & (pl.col("ids").list.len() > 0))
        .then(pl.format("{} (id {})", LABEL, pl.col("ids").list.first()))
        .otherwise(LABEL),
    )


def _unmapped(frame: pl.DataFrame, **why: pl.Expr | pl.Series | str) -> pl.DataFrame:
    """HaloPSA entities (key) left unmapped, with a suggestion (suggestion, score, basis) or a
    note saying why there is none."""
    return frame.select(halopsa_key="key", method=pl.lit("unmapped"), **why)


def _collisions(
    kind: str, colliding: pl.DataFrame, a_names: pl.DataFrame, display: pl.DataFrame
) -> pl.DataFrame:
    """Entities whose name fits several Autotask entities (collision: on full or base, name):
    each names them (ambiguity_note). The words are Python's (the csv module quotes the
    label); collisions are few."""
    wanted = colliding.select("key", pl.col("collision").struct.unnest())
    shown = (
        pl.concat(
            [
                wanted.filter(pl.col("on") == on).join(
                    a_names.select(a_key="key", name=on), on="name"
                )
                for on in ("full", "base")
            ]
        )
        .unique(["key", "a_key"])
        .join(display, left_on="a_key", right_on="key")
        .group_by("key")
        .agg("display")
    )
    candidates = dict(shown.iter_rows())
    notes = [
        ambiguity_note(kind, label, sorted(candidates[key])[:AMBIGUITY_SHOWN], len(candidates[key]))
        for key, label in colliding.select("key", "label").iter_rows()
    ]
    return _unmapped(colliding, note=pl.Series(notes, dtype=pl.String), ambiguous=pl.lit(True))


def _form_only(frame: pl.DataFrame, display: pl.DataFrame) -> pl.DataFrame:
    """Entities that differ only in legal form from the one Autotask entity of their base name:
    that entity is suggested, never with 100."""
    scores = process.cpdist(
        frame["full"].to_list(), frame["a_full"].to_list(), scorer=fuzz.ratio, dtype=np.float64
    )
    return _unmapped(
        frame.join(display, left_on="a_key", right_on="key", how="left", maintain_order="left"),
        suggestion=pl.col("display"),
        # Python's round (to the nearest tenth, ties to even, of the exact value).
        score=pl.Series([min(99.0, round(float(s), 1)) for s in scores], dtype=pl.Float64),
        basis=pl.format(
            "differs only in legal form ({} / {})",
            *(
                pl.when(pl.col(c) == "").then(pl.lit("none")).otherwise(c)
                for c in ("own", "theirs")
            ),
        ),
    )


def _suggest(
    kind: str,
    a_names: pl.DataFrame,
    h_names: pl.DataFrame,
    left: pl.DataFrame,
    display: pl.DataFrame,
    min_score: float,
) -> pl.DataFrame:
    """The closest Autotask name for each entity left (key), if it scores at least min_score;
    a note saying so if none does."""
    if left.is_empty():
        return _unmapped(left)
    order = ["display", "key", "base", "form"]
    candidates = (
        a_names.join(display, on="key")
        .sort(order)
        .filter(pl.any_horizontal(pl.col(c).ne_missing(pl.col(c).shift()) for c in order[1:]))
    )  # each (entity, base, form) once
    queries = h_names.join(left.select("key"), on="key").sort("key", "rank")
    best = best_suggestions(queries, candidates, min_score)
    return _unmapped(
        left.join(best, on="key", how="left", maintain_order="left"),
        suggestion="suggestion",
        score="score",
        basis=pl.format("name similarity {}", "score"),
        note=pl.when(pl.col("score").is_null()).then(
            pl.lit(f"no similar Autotask {kind} name (none scores {min_score:g} or more)")
        ),
    )
