"""Crosswalks: which HaloPSA client, item and contract is which Autotask one.

Resolution order: the user's mapping file; the Autotask ids HaloPSA keeps from the migration;
names equal after normalisation. Fuzzy matches are only ever suggestions, never applied.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz, process

from reconcile.errors import InputError
from reconcile.load.dialect import text_file
from reconcile.safe import cell

KINDS = ("client", "item", "contract")
LEGAL_SUFFIXES = (
    "ltd", "limited", "inc", "incorporated", "llc", "llp", "plc", "gmbh", "corp",
    "corporation", "co", "company", "pty", "bv", "ag", "sa", "sarl", "srl",
)  # fmt: skip
SUFFIX_RE = re.compile(r"(\s(" + "|".join(LEGAL_SUFFIXES) + r"))+$")


@functools.lru_cache(maxsize=1 << 18)
def normalise_name(name: str | None) -> str:
    """Case, punctuation, spacing and legal suffixes do not make two names different."""
    if not name:
        return ""
    text = name.lower().replace("&", " and ")
    text = re.sub(r"[^\w\s]", " ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = SUFFIX_RE.sub("", text)
    return text.removeprefix("the ").strip()


@dataclass(frozen=True)
class Mapping:
    kind: str
    autotask: str
    halopsa: str
    source: str
    row: int


def read_mappings(paths: list[Path]) -> list[Mapping]:
    mappings = []
    for path in paths:
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
                autotask = (record.get("autotask") or "").strip()
                halopsa = (record.get("halopsa") or "").strip()
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


def resolve(
    kind: str,
    autotask: list[Entity],
    halopsa: list[Entity],
    mappings: list[Mapping],
    min_score: float,
) -> list[Resolution]:
    """Resolve every HaloPSA entity to an Autotask key, or say it is unmapped (with a hint)."""
    by_value: dict[str, set[str]] = defaultdict(set)
    by_norm: dict[str, set[str]] = defaultdict(set)
    by_id: dict[str, set[str]] = defaultdict(set)
    for entity in autotask:
        for value in entity.ids:
            by_id[value].add(entity.key)
        for value in (*entity.ids, *entity.names):
            by_value[value.casefold()].add(entity.key)
        for name in entity.names:
            if normalise_name(name):
                by_norm[normalise_name(name)].add(entity.key)
    explicit = {m.halopsa.casefold(): m.autotask.casefold() for m in mappings if m.kind == kind}
    display = {e.key: e.label for e in autotask}
    choices: dict[str, str] = {}  # built on the first unmapped entity only
    results = []
    for entity in sorted(halopsa, key=lambda e: e.key):
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
            target = _first_unique([by_norm.get(normalise_name(n), set()) for n in entity.names])
            method = "name"
        if target is not None:
            results.append(Resolution(entity.key, entity.label, target, method))
            continue
        if not choices:
            choices = {e.key: normalise_name(e.label) for e in autotask}
        suggestion, score = _suggest(entity, choices, display, min_score)
        basis = None if suggestion is None else f"name similarity {score}"
        results.append(
            Resolution(entity.key, entity.label, None, "unmapped", suggestion, score, basis)
        )
    return results


def _first_unique(candidates: list[set[str]]) -> str | None:
    for found in candidates:
        if len(found) == 1:
            return next(iter(found))
    return None


def _suggest(
    entity: Entity, choices: dict[str, str], display: dict[str, str], min_score: float
) -> tuple[str | None, float | None]:
    best: tuple[str | None, float | None] = (None, None)
    for name in entity.names:
        query = normalise_name(name)
        if not query or not choices:
            continue
        found = process.extractOne(query, choices, scorer=fuzz.token_sort_ratio)
        if found and found[1] >= min_score and (best[1] is None or found[1] > best[1]):
            best = (display[found[2]], round(float(found[1]), 1))
    return best


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
