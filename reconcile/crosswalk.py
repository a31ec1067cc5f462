"""Crosswalks: which HaloPSA client, item and contract is which Autotask one.

Resolution order: the user's mapping file; the Autotask ids HaloPSA keeps from the migration;
names equal after normalisation. Fuzzy matches are only ever suggestions, never applied.

Company names are split into a base name and a legal form with cleanco's table of legal forms
(L.L.P., LLC, Pty. Ltd., GmbH & Co. KG, ...). The form is kept: two Autotask clients that differ
only in legal form stay apart, and a HaloPSA name is paired by its base name alone only when one
Autotask client has that base name and the two forms do not contradict each other.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from cleanco.clean import get_unique_terms, normalized
from rapidfuzz import fuzz, process

from reconcile.errors import InputError
from reconcile.load.dialect import text_file
from reconcile.safe import cell, uncell

KINDS = ("client", "item", "contract")

# ---- names ----------------------------------------------------------------------------------

# Typographic quotes and primes read as the plain ones (NFKC leaves them as they are).
QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
     "\u00b4": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"'}
)  # fmt: skip
DROPPED = re.compile(r"['.]")  # L.L.P. is LLP, O'Brien is OBrien
SEPARATORS = re.compile(r"[^\w&]+|(&)")  # any other mark separates words; & is a word
# One spelling per word, applied to every word of both sides' names alike.
WORD_SPELLINGS = {
    "and": "&", "limited": "ltd", "incorporated": "inc", "corporation": "corp", "company": "co",
}  # fmt: skip
# Spelled-out legal forms cleanco's table lacks, and the abbreviation each stands for.
SPELLED_OUT_FORMS = {
    "limited liability partnership": "llp",
    "limited liability company": "llc",
    "public limited company": "plc",
}


# The same for plain ASCII in one pass (most names): dots and apostrophes dropped, & a word,
# every other mark a space.
ASCII_MARKS = str.maketrans(
    {
        **{chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")},
        ".": None,
        "'": None,
        "`": None,
        "&": " & ",
    }
)


def _words(text: str) -> tuple[str, ...]:
    """NFKC, then cleanco's caseless accent-free form; dots and apostrophes dropped, every other
    mark (quotes, hyphens, brackets, commas) a word break; repeated or non-breaking spaces are
    one break."""
    if text.isascii():  # cleanco's accent removal looks at every character: not needed here
        words = text.casefold().translate(ASCII_MARKS).split()
    else:
        text = normalized(unicodedata.normalize("NFKC", text).translate(QUOTES))
        words = [w for w in SEPARATORS.split(DROPPED.sub("", text)) if w]
    return tuple(WORD_SPELLINGS.get(w, w) for w in words)


# cleanco's legal forms of many countries, read as names are read (so "L.L.P." is ("llp",)).
LEGAL_FORMS = frozenset(_words(t) for t in (*get_unique_terms(), *SPELLED_OUT_FORMS)) - {()}
FORM_SPELLINGS = {_words(long): short for long, short in SPELLED_OUT_FORMS.items()}
LONGEST_FORM = max(len(f) for f in LEGAL_FORMS)
LAST_WORDS = frozenset(f[-1] for f in LEGAL_FORMS)  # a name ending otherwise has no legal form


@functools.lru_cache(maxsize=1 << 19)
def name_parts(name: str | None) -> tuple[str, str]:
    """A company name as (base name, legal form), both normalised: "The Pennine Foods L.L.P."
    is ("pennine foods", "llp"), "Smith & Sons Limited" is ("smith and sons", "ltd")."""
    words = _words(name) if name else ()
    if not words:
        return "", ""
    # run[i]: the size of the legal form starting at word i when words[i:] is all legal forms.
    count = len(words)
    if words[-1] not in LAST_WORDS:
        base = words[1:] if count > 1 and words[0] == "the" else words
        return " ".join("and" if w == "&" else w for w in base), ""
    run: list[int | None] = [None] * count + [0]
    for i in range(count - 1, 0, -1):
        for size in range(min(LONGEST_FORM, count - i), 0, -1):
            if run[i + size] is not None and words[i : i + size] in LEGAL_FORMS:
                run[i] = size
                break
        else:
            if i + LONGEST_FORM <= count and all(r is None for r in run[i : i + LONGEST_FORM]):
                break  # no legal form can reach the end from here or before
    # The base is the shortest start (never empty) followed by nothing but legal forms.
    cut = next(i for i in range(1, count + 1) if run[i] is not None)
    base = words[1:cut] if cut > 1 and words[0] == "the" else words[:cut]
    forms = []
    i = cut
    while i < count:
        size = run[i] or 1
        form = words[i : i + size]
        forms.append(FORM_SPELLINGS.get(form) or " ".join(w for w in form if w != "&"))
        i += size
    return " ".join("and" if w == "&" else w for w in base), " ".join(forms)


def normalise_name(name: str | None) -> str:
    """A company name as one normalised string, its legal form in one spelling at the end."""
    return " ".join(p for p in name_parts(name) if p)


@functools.lru_cache(maxsize=1 << 19)
def normalise_text(text: str | None) -> str:
    """Item and contract names, descriptions: case, accents, punctuation, spacing and `&`/`and`
    do not make two names different (no legal forms)."""
    return " ".join("and" if w == "&" else w for w in _words(text)) if text else ""


def _text_parts(text: str | None) -> tuple[str, str]:
    return normalise_text(text), ""


def name_key(kind: str, name: str | None) -> str:
    """The normalised name an entity of this kind is known by."""
    return normalise_name(name) if kind == "client" else normalise_text(name)


@dataclass(frozen=True)
class Mapping:
    kind: str
    autotask: str
    halopsa: str
    source: str
    row: int


def read_mappings(paths: list[Path]) -> list[Mapping]:
    """Mapping rows (kind,autotask,halopsa) from each file, read like exports (text_file); a
    file the csv module cannot parse is named, and a value `map suggest` wrote with a
    spreadsheet-safety `'` (safe.cell) reads as it was."""
    mappings: list[Mapping] = []
    for path in paths:
        try:
            mappings += _read_mapping_file(path)
        except csv.Error as exc:
            raise InputError(
                str(path), "the mapping file cannot be read as CSV", got=str(exc)
            ) from None
    return mappings


def _read_mapping_file(path: Path) -> list[Mapping]:
    mappings = []
    with text_file(path) as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        if header[:3] != ["kind", "autotask", "halopsa"]:
            raise InputError(
                str(path),
                "the mapping file has the wrong header",
                row=1,
                expected="kind,autotask,halopsa",
                got=",".join(reader.fieldnames or []),
            )
        for number, record in enumerate(reader, start=1):
            kind = (record.get("kind") or "").strip().lower()
            autotask = uncell((record.get("autotask") or "").strip())
            halopsa = uncell((record.get("halopsa") or "").strip())
            if kind not in KINDS:
                raise InputError(
                    str(path),
                    "unknown mapping kind",
                    row=number,
                    column="kind",
                    expected=" or ".join(KINDS),
                    got=kind,
                )
            if not autotask or not halopsa:
                raise InputError(
                    str(path),
                    "a mapping needs both sides",
                    row=number,
                    expected="an Autotask and a HaloPSA id or name",
                )
            mappings.append(Mapping(kind, autotask, halopsa, str(path), number))
    return mappings


@dataclass(frozen=True)
class Entity:
    """One client, item or contract as a side names it: its key and what it may be called."""

    key: str
    ids: tuple[str, ...]  # matched only through a mapping file or a kept Autotask id
    names: tuple[str, ...]  # matched through the mapping file and by normalised name
    xref: str | None = None  # the Autotask id HaloPSA kept, if any

    @property
    def label(self) -> str:
        return self.names[0] if self.names else self.ids[0] if self.ids else self.key


@dataclass(frozen=True)
class Resolution:
    halopsa_key: str
    halopsa_label: str
    autotask_key: str | None
    method: str  # mapping, autotask_id, name, or unmapped
    suggestion: str | None = None
    score: float | None = None  # name similarity, 0-100
    basis: str | None = None  # why the suggestion, in words
    note: str | None = None  # why nothing is suggested: a name collision, or nothing similar
    ambiguous: bool = False  # the name fits several Autotask entities and is not paired

    @classmethod
    def unmapped(cls, entity: Entity, **why: Any) -> Resolution:
        """A HaloPSA entity left unmapped, with a suggestion (suggestion, score, basis) or a
        note saying why there is none."""
        return cls(entity.key, entity.label, None, "unmapped", **why)


def resolve(
    kind: str,
    autotask: list[Entity],
    halopsa: list[Entity],
    mappings: list[Mapping],
    min_score: float,
) -> list[Resolution]:
    """Resolve every HaloPSA entity to an Autotask key, or say it is unmapped (with a hint)."""
    by_value: dict[str, set[str]] = defaultdict(set)
    by_id: dict[str, set[str]] = defaultdict(set)
    for entity in autotask:
        for value in entity.ids:
            by_id[value].add(entity.key)
        for value in (*entity.ids, *entity.names):
            by_value[value.casefold()].add(entity.key)
    explicit = {m.halopsa.casefold(): m.autotask.casefold() for m in mappings if m.kind == kind}
    decided: dict[str, Resolution] = {}
    pending = []
    for entity in halopsa:
        target = _first_unique(
            [
                by_value.get(explicit[v.casefold()], set())
                for v in (*entity.ids, *entity.names)
                if v.casefold() in explicit
            ]
        )
        method = "mapping"
        if target is None and entity.xref:
            target, method = _first_unique([by_id.get(entity.xref, set())]), "autotask_id"
        if target is None:
            pending.append(entity)
        else:
            decided[entity.key] = Resolution(entity.key, entity.label, target, method)
    decided.update(_by_name(kind, autotask, pending, min_score))
    return [decided[e.key] for e in sorted(halopsa, key=lambda e: e.key)]


def _first_unique(candidates: list[set[str]]) -> str | None:
    for found in candidates:
        if len(found) == 1:
            return next(iter(found))
    return None


NAME_SCHEMA = {"key": pl.String, "rank": pl.Int64, "base": pl.String, "form": pl.String}


def _name_frame(kind: str, entities: Iterable[Entity]) -> pl.DataFrame:
    """One row per (entity, name): the name's base and legal form (items: the whole name)."""
    parts = name_parts if kind == "client" else _text_parts
    rows = [
        (e.key, rank, *parts(name))
        for e in entities
        for rank, name in enumerate(e.names)
        if parts(name)[0]
    ]
    frame = pl.DataFrame(rows, schema=NAME_SCHEMA, orient="row")
    return frame.with_columns(full=pl.concat_str("base", "form", separator=" ").str.strip_chars())


def _by_name(
    kind: str, autotask: list[Entity], halopsa: list[Entity], min_score: float
) -> dict[str, Resolution]:
    """Names equal after normalisation pair; a name that fits several Autotask entities, or
    differs from the only one with its base name in legal form, is never paired.

    Exact joins on the normalised name and on the base name (polars), then a suggestion for
    whatever is left (bounded: `best_matches`)."""
    a_names = _name_frame(kind, autotask)
    h_names = _name_frame(kind, halopsa)
    full_hits = {
        (key, rank): hits
        for key, rank, hits in h_names.join(a_names.select("full", a_key="key").unique(), on="full")
        .group_by("key", "rank")
        .agg(pl.col("a_key").unique().sort())
        .iter_rows()
    }
    base_hits = {
        (key, rank): (keys, forms, full)
        for key, rank, keys, forms, full in h_names.select("key", "rank", "base")
        .join(
            a_names.group_by("base").agg(
                pl.col("key").unique().sort().alias("a_keys"),
                pl.col("form").unique().sort().alias("a_forms"),
                pl.col("full").min().alias("a_full"),
            ),
            on="base",
        )
        .select("key", "rank", "a_keys", "a_forms", "a_full")
        .iter_rows()
    }
    display = _display(autotask)
    h_rows: dict[str, list[tuple[int, str, str, str]]] = defaultdict(list)
    for key, rank, base, form, full in h_names.sort("key", "rank").iter_rows():
        h_rows[key].append((rank, base, form, full))
    results: dict[str, Resolution] = {}
    left = []
    for entity in halopsa:
        pair: str | None = None
        collision: list[str] | None = None
        form_only: tuple[str, str, str, float] | None = None  # key, own form, its form, score
        for rank, _, form, full in h_rows.get(entity.key, []):
            hits = full_hits.get((entity.key, rank))
            if hits and len(hits) == 1:
                pair = hits[0]
                break
            if hits:
                collision = collision or hits
                continue
            if (entity.key, rank) not in base_hits:
                continue
            keys, forms, a_full = base_hits[(entity.key, rank)]
            if len(keys) > 1:
                collision = collision or keys
            elif not form or "" in forms:  # one side states no legal form: no contradiction
                pair = keys[0]
                break
            else:
                # A different legal form is a suggestion only, and never scores 100.
                score = min(99.0, round(float(fuzz.ratio(full, a_full)), 1))
                form_only = form_only or (keys[0], form, forms[0], score)
        if pair is not None:
            results[entity.key] = Resolution(entity.key, entity.label, pair, "name")
        elif collision is not None:
            results[entity.key] = Resolution.unmapped(
                entity,
                note=ambiguity_note(kind, entity.label, [display[k] for k in collision]),
                ambiguous=True,
            )
        elif form_only is not None:
            key, own, theirs, form_only_score = form_only
            results[entity.key] = Resolution.unmapped(
                entity,
                suggestion=display[key],
                score=form_only_score,
                basis=f"differs only in legal form ({own} / {theirs})",
            )
        else:
            left.append(entity)
    results.update(_suggest(kind, a_names, h_names, left, display, min_score))
    return results


def _display(autotask: list[Entity]) -> dict[str, str]:
    """Autotask entities by label, with the id where two share a label."""
    counts: dict[str, int] = defaultdict(int)
    for e in autotask:
        counts[e.label] += 1
    return {
        e.key: f"{e.label} (id {e.ids[0]})" if counts[e.label] > 1 and e.ids else e.label
        for e in autotask
    }


AMBIGUITY_SHOWN = 5


def ambiguity_note(kind: str, label: str, candidates: Sequence[str]) -> str:
    """The words of a name collision, shown in the finding and the report's unmapped list."""
    shown = "; ".join(sorted(candidates)[:AMBIGUITY_SHOWN])
    more = len(candidates) - AMBIGUITY_SHOWN
    if more > 0:
        shown += f"; and {more} more"
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([kind, f"<Autotask {kind}>", label])
    return (
        f"matches {len(candidates)} Autotask {kind}s by name ({shown}) and is not paired: "
        f"add a mapping row {out.getvalue()}"
    )


def _suggest(
    kind: str,
    a_names: pl.DataFrame,
    h_names: pl.DataFrame,
    left: list[Entity],
    display: dict[str, str],
    min_score: float,
) -> dict[str, Resolution]:
    """The closest Autotask name for each entity left, if it scores at least min_score."""
    if not left:
        return {}
    candidates = (
        a_names.unique(["key", "base", "form"])
        .with_columns(label=pl.col("key").replace_strict(display))
        .sort("label", "key", "base", "form")
    )
    queries = h_names.join(pl.DataFrame({"key": [e.key for e in left]}), on="key").sort(
        "key", "rank"
    )
    found = best_matches(
        queries["base"].to_list(),
        queries["form"].to_list(),
        candidates["base"].to_list(),
        candidates["form"].to_list(),
        min_score,
    )
    best: dict[str, tuple[float, int]] = {}
    for key, (index, score) in zip(queries["key"], found, strict=True):
        if index >= 0 and (key not in best or score > best[key][0]):
            best[key] = (score, index)
    labels = candidates["label"].to_list()
    results = {}
    for entity in left:
        if entity.key in best:
            score, index = best[entity.key]
            results[entity.key] = Resolution.unmapped(
                entity, suggestion=labels[index], score=score, basis=f"name similarity {score}"
            )
        else:
            results[entity.key] = Resolution.unmapped(
                entity, note=f"no similar Autotask {kind} name (none scores {min_score:g} or more)"
            )
    return results


# Below this many query x candidate pairs every pair is scored; above it (tens of thousands of
# names each side) a query is scored only against candidates that share a rare word, a rare
# pair of adjacent words or a rare word start with it, so time and memory grow with the number
# of names, never with their product.
PAIR_BUDGET = 20_000_000
CHUNK_CELLS = 4_000_000  # scores held at once: 16 MB of float32
BLOCK_LIMIT = 100  # a block shared by more candidates than this is too common to compare by
QUERY_CHUNK = 20_000


def best_matches(
    queries: Sequence[str],
    query_forms: Sequence[str],
    candidates: Sequence[str],
    candidate_forms: Sequence[str],
    min_score: float,
) -> list[tuple[int, float]]:
    """For each query, the index of the most similar candidate (token_sort_ratio, ties to the
    one with the same legal form, then the first) and its score; (-1, 0.0) when none scores
    min_score or more."""
    if not queries or not candidates:
        return [(-1, 0.0)] * len(queries)
    codes: dict[str, int] = {}
    q_forms = np.array([codes.setdefault(f, len(codes)) for f in query_forms])
    c_forms = np.array([codes.setdefault(f, len(codes)) for f in candidate_forms])
    if len(queries) * len(candidates) <= PAIR_BUDGET:
        return _all_pairs(queries, q_forms, candidates, c_forms, min_score)
    return _blocked(queries, q_forms, candidates, c_forms, min_score)


def _score(value: float, min_score: float) -> bool:
    return value > 0 and value >= min_score


def _all_pairs(
    queries: Sequence[str],
    q_forms: np.ndarray,
    candidates: Sequence[str],
    c_forms: np.ndarray,
    min_score: float,
) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    rows = max(1, CHUNK_CELLS // len(candidates))
    for start in range(0, len(queries), rows):
        scores = process.cdist(
            queries[start : start + rows],
            candidates,
            scorer=fuzz.token_sort_ratio,
            score_cutoff=min_score,
            dtype=np.float32,
            workers=-1,
        )
        same = q_forms[start : start + rows, None] == c_forms[None, :]
        ranked = np.where(scores > 0, scores + 0.001 * same, -1.0)
        for row, index in enumerate(ranked.argmax(axis=1)):
            value = float(scores[row, index])
            out.append((int(index), round(value, 1)) if _score(value, min_score) else (-1, 0.0))
    return out


def _blocks(strings: Sequence[str]) -> pl.DataFrame:
    """Each string's words, adjacent word pairs, word pairs one word apart, and the starts and
    ends of longer words: a name with one misspelt word still shares a block with the right one
    (for three words, every pair of the other two)."""
    words = (
        pl.DataFrame(
            {"i": range(len(strings)), "w": strings}, schema={"i": pl.Int64, "w": pl.String}
        )
        .with_columns(pl.col("w").str.split(" "))
        .explode("w")
        .filter(pl.col("w") != "")
    )
    same = [pl.col("i").shift(-k) == pl.col("i") for k in (1, 2)]
    long = pl.col("w").str.len_chars() > 4
    kinds = [
        pl.col("w"),
        pl.when(same[0]).then(pl.col("w") + " " + pl.col("w").shift(-1)),
        pl.when(same[1]).then(pl.col("w") + " * " + pl.col("w").shift(-2)),
        pl.when(long).then(pl.col("w").str.slice(0, 4) + "*"),
        pl.when(long).then("*" + pl.col("w").str.slice(-4)),
    ]
    # Blocks as 64-bit hashes: a collision only adds a pair to score.
    return pl.concat(
        [
            words.select("i", block=kind).drop_nulls().with_columns(pl.col("block").hash())
            for kind in kinds
        ]
    ).unique()


def _blocked(
    queries: Sequence[str],
    q_forms: np.ndarray,
    candidates: Sequence[str],
    c_forms: np.ndarray,
    min_score: float,
) -> list[tuple[int, float]]:
    c_blocks = _blocks(candidates)
    rare = c_blocks.group_by("block").len().filter(pl.col("len") <= BLOCK_LIMIT).drop("len")
    c_blocks = c_blocks.join(rare, on="block").rename({"i": "c"})
    q_blocks = _blocks(queries).rename({"i": "q"})
    q_text = np.array(queries, dtype=object)
    c_text = np.array(candidates, dtype=object)
    out = [(-1, 0.0)] * len(queries)
    for start in range(0, len(queries), QUERY_CHUNK):
        pairs = (
            q_blocks.filter(pl.col("q").is_between(start, start + QUERY_CHUNK - 1))
            .join(c_blocks, on="block")
            .select("q", "c")
            .unique()
        )
        if pairs.is_empty():
            continue
        q_index = pairs["q"].to_numpy()
        c_index = pairs["c"].to_numpy()
        scores = process.cpdist(
            q_text[q_index].tolist(),
            c_text[c_index].tolist(),
            scorer=fuzz.token_sort_ratio,
            score_cutoff=min_score,
            dtype=np.float32,
            workers=-1,
        )
        best = (
            pairs.with_columns(
                score=pl.Series(scores, dtype=pl.Float64),
                same=pl.Series(q_forms[q_index] == c_forms[c_index]),
            )
            .filter((pl.col("score") > 0) & (pl.col("score") >= min_score))
            .sort(["q", "score", "same", "c"], descending=[False, True, True, False])
            .unique("q", keep="first")
        )
        for q, c, score in best.select("q", "c", "score").iter_rows():
            out[q] = (c, round(score, 1))
    return out


def write_suggestions(path: Path, crosswalk: tuple[tuple[str, Resolution], ...]) -> int:
    """A mapping file of suggestions for review; extra columns (score, basis) are ignored on
    read, so it can be passed to --map as it is once a person has checked it."""
    rows = [
        (kind, r.suggestion, r.halopsa_label, "" if r.score is None else r.score, r.basis or "")
        for kind, r in crosswalk
        if r.method == "unmapped" and r.suggestion
    ]
    rows.sort(key=lambda r: (r[0], r[2]))
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["kind", "autotask", "halopsa", "score", "basis"])
        writer.writerows([cell(v) if isinstance(v, str) else v for v in r] for r in rows)
    return len(rows)
