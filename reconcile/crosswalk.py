"""Crosswalks: which HaloPSA client, item and contract is which Autotask one.

Resolution order: the user's mapping file; the Autotask ids HaloPSA keeps from the migration;
names equal after normalisation. Fuzzy matches are only ever suggestions, never applied.

Company names are split into a base name and a legal form with cleanco's table of legal forms
(L.L.P., LLC, Pty. Ltd., GmbH & Co. KG, ...). The form is kept: two Autotask clients that differ
only in legal form stay apart, and a HaloPSA name is paired by its base name alone only when one
Autotask client has that base name and the two forms do not contradict each other.
"""

from __future__ import annotations

import array
import contextlib
import csv
import functools
import gc
import io
import re
import sys
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import duckdb
import polars as pl
from cleanco.clean import get_unique_terms, normalized
from rapidfuzz import fuzz, process

from reconcile.duck import distinct_chunks, frame_of, with_frame
from reconcile.errors import InputError
from reconcile.load.dialect import declared_separator, text_file
from reconcile.safe import cell, uncell
from reconcile.store import insertion_order_kept, release_memory

if TYPE_CHECKING:
    import numpy as np

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


def _split(text: str) -> list[str]:
    """NFKC, then cleanco's caseless accent-free form; dots and apostrophes dropped, every other
    mark (quotes, hyphens, brackets, commas) a word break; repeated or non-breaking spaces are
    one break."""
    if text.isascii():  # cleanco's accent removal looks at every character: not needed here
        return text.casefold().translate(ASCII_MARKS).split()
    text = normalized(unicodedata.normalize("NFKC", text).translate(QUOTES))
    return [w for w in SEPARATORS.split(DROPPED.sub("", text)) if w]


def _words(text: str) -> tuple[str, ...]:
    """A name's words (_split), each in its one spelling."""
    return tuple(WORD_SPELLINGS.get(w, w) for w in _split(text))


# Words cleanco lists as a legal form somewhere that end the names of English-speaking MSPs'
# clients as words of the name: Kingsway UK, Riverside GP (a doctors' practice), Harbour ENT
# (a clinic), Cedar Private, Fitness Unlimited. Read as forms, "Kingsway" paired with
# "Kingsway UK" by base name, with no finding.
NAME_WORDS = frozenset({("uk",), ("eu",), ("gp",), ("ent",), ("private",), ("unlimited",)})
# cleanco's legal forms of many countries, read as names are read (so "L.L.P." is ("llp",)).
LEGAL_FORMS = (
    frozenset(_words(t) for t in (*get_unique_terms(), *SPELLED_OUT_FORMS)) - {()} - NAME_WORDS
)
FORM_SPELLINGS = {_words(long): short for long, short in SPELLED_OUT_FORMS.items()}
LONGEST_FORM = max(len(f) for f in LEGAL_FORMS)
LAST_WORDS = frozenset(f[-1] for f in LEGAL_FORMS)  # a name ending otherwise has no legal form


def _form_sizes(words: tuple[str, ...], first: int) -> list[int | None]:
    """sizes[i] (i >= first): the size of the legal form starting at word i when words[i:] is
    nothing but legal forms, each the longest that leaves legal forms after it; else None.
    sizes[len(words)] is 0."""
    count = len(words)
    sizes: list[int | None] = [None] * count + [0]
    for i in range(count - 1, first - 1, -1):
        for size in range(min(LONGEST_FORM, count - i), 0, -1):
            if sizes[i + size] is not None and words[i : i + size] in LEGAL_FORMS:
                sizes[i] = size
                break
        else:
            if i + LONGEST_FORM <= count and all(r is None for r in sizes[i : i + LONGEST_FORM]):
                break  # no legal form can reach the end from here or before
    return sizes


def _spelled_forms(words: tuple[str, ...], sizes: list[int | None], start: int) -> str:
    """The legal forms words[start:] consists of (_form_sizes), each in one spelling."""
    forms = []
    i = start
    while i < len(words):
        size = sizes[i] or 1
        form = words[i : i + size]
        forms.append(FORM_SPELLINGS.get(form) or " ".join(w for w in form if w != "&"))
        i += size
    return " ".join(forms)


def name_parts(name: str | None) -> tuple[str, str]:
    """A company name as (base name, legal form), both normalised: "The Pennine Foods L.L.P."
    is ("pennine foods", "llp"), "Smith & Sons Limited" is ("smith and sons", "ltd").

    One name at a time, word by word: the reference that name_table (a column of names at a
    time, as a run reads them) is tested against."""
    words = _words(name) if name else ()
    if not words:
        return "", ""
    count = len(words)
    if words[-1] not in LAST_WORDS:
        base = words[1:] if count > 1 and words[0] == "the" else words
        return " ".join("and" if w == "&" else w for w in base), ""
    sizes = _form_sizes(words, 1)
    # The base is the shortest start (never empty) followed by nothing but legal forms.
    cut = next(i for i in range(1, count + 1) if sizes[i] is not None)
    base = words[1:cut] if cut > 1 and words[0] == "the" else words[:cut]
    return " ".join("and" if w == "&" else w for w in base), _spelled_forms(words, sizes, cut)


@functools.lru_cache(maxsize=1 << 19)
def normalise_text(text: str | None) -> str:
    """Item and contract names, descriptions: case, accents, punctuation, spacing and `&`/`and`
    do not make two names different (no legal forms)."""
    return " ".join("and" if w == "&" else w for w in _words(text)) if text else ""


# ---- names, a column at a time ----------------------------------------------------------------

WORD = re.compile(r"[\w&]")
# Where non-ASCII characters that names hold are looked for: accented Latin letters, dashes,
# typographic quotes, odd spaces, currency and letter-like signs, full-width ASCII.
PLAIN_BLOCKS = (
    (0x80, 0x24F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x20A0, 0x20CF), (0x2100, 0x218F),
    (0xFF01, 0xFF5E),
)  # fmt: skip


def _plain(char: str) -> str | None:
    """What _split makes of a non-ASCII character wherever it stands, in ASCII (a mark that
    breaks words as a space), by _split's own steps; None when that is not ASCII, or when the
    character's decomposition starts with a combining mark (it may join what stands before)."""
    text = unicodedata.normalize("NFKC", char).translate(QUOTES)
    starts = [unicodedata.normalize("NFKD", t)[:1] for t in (char, text.casefold())]
    if any(unicodedata.combining(start) for start in starts if start):
        return None
    out = ""
    for c in normalized(text):
        if c.isascii() and not c.isupper() and c != "`":
            out += c
        elif c.isascii() or WORD.match(c):
            return None
        else:
            out += " "
    return out


# Each such character and its reading: a name of ASCII and these characters only is read by
# polars expressions. tests/test_names.py checks each beside every ASCII character and one
# character of each kind (every pair of them was checked once, 1.3 million: all alike).
PLAIN = {
    c: text
    for c in (chr(i) for start, end in PLAIN_BLOCKS for i in range(start, end + 1))
    if (text := _plain(c)) is not None
}
PLAIN_NAME = r"^[\x00-\x7f" + "".join(PLAIN) + "]*$"
NOT_ASCII = r"[^\x00-\x7f]"


def _ascii_split(name: pl.Expr) -> pl.Expr:
    """_split of ASCII names (PLAIN characters replaced), each word between two spaces: in
    "  acme  and  co  " every word can be replaced with a space either side (SPELLED_WORDS).
    Each run of marks is one match, so words are exactly two spaces apart (name_table relies
    on it), and at most four spaces stand at either end."""
    text = (
        name.str.to_lowercase()
        .str.replace_all(r"['.`]", "")
        .str.replace_all("&", "  &  ", literal=True)
        .str.replace_all(r"[^a-z0-9_&]+", "  ")
    )
    return pl.lit("  ") + text + pl.lit("  ")


SPELLED_WORDS = pl.col("words").str.replace_many(
    [f" {w} " for w in WORD_SPELLINGS], [f" {s} " for s in WORD_SPELLINGS.values()]
)
# A name's trailing legal forms: matched from its leftmost start, so the base before it is the
# shortest that leaves nothing but legal forms (_form_sizes); a form is whole words.
FORM_RUN = "(?: (?:" + "|".join(sorted(pl.escape_regex(" ".join(f)) for f in LEGAL_FORMS)) + "))+$"


def _split_column(names: pl.Series) -> pl.Series:
    """_split of each name (nulls kept), its words each between two spaces (_ascii_split):
    names of ASCII and PLAIN characters (nearly all) by polars expressions, any other by
    _split once per distinct name (NFKC and cleanco's accent removal: 10-40 µs a name)."""
    frame = (
        names.rename("name").to_frame().with_columns(plain=pl.col("name").str.contains(PLAIN_NAME))
    )
    # PLAIN's replacements only when a name has a character beyond ASCII: making the
    # replace_many of its ~900 characters costs 1.3 ms a call, however few the names.
    wide = bool(names.str.contains(NOT_ASCII).any())
    fast = _ascii_split(pl.col("name").str.replace_many(PLAIN) if wide else pl.col("name"))
    others = frame.filter(~pl.col("plain"))["name"].unique()
    if others.is_empty():
        return frame.select(fast).to_series()
    split = pl.DataFrame(
        {"name": others, "split": ["  " + "  ".join(_split(n)) + "  " for n in others.to_list()]}
    )
    return (
        frame.join(split, on="name", how="left", maintain_order="left")
        .select(pl.when("plain").then(fast).otherwise("split"))
        .to_series()
    )


def name_table(kind: str, names: pl.Series) -> pl.DataFrame:
    """One row per name, in order: base and form (strings; "" for a null name), as name_parts
    gives them for a client and as normalise_text gives base for an item or contract (form "");
    full, the two joined by a space (the name an entity without an id is known by).

    Words are split by _split_column. A client's legal forms are found by one regex over
    cleanco's terms (FORM_RUN); each distinct run of forms is spelled by _spelled_forms."""
    words = (
        _split_column(names)
        .to_frame("words")
        # Words are two spaces apart (four at the ends): one space apart, ends stripped.
        .select(
            SPELLED_WORDS.str.replace_all("  ", " ", literal=True)
            .str.strip_chars(" ")
            .fill_null("")
        )
    )
    if kind != "client":
        return words.select(
            base=pl.col("words").str.replace_all("&", "and", literal=True), form=pl.lit("")
        ).with_columns(full="base")
    frame = words.select(
        base=pl.col("words")
        .str.replace(FORM_RUN, "")
        .str.replace_all("&", "and", literal=True)
        .str.replace(r"^the ", ""),
        run=pl.col("words").str.extract(FORM_RUN, 0).str.strip_chars_start(" "),
    )
    runs = frame["run"].drop_nulls().unique().to_list()
    spelled = {run: _run_forms(run) for run in runs}
    return frame.select(
        "base", form=pl.col("run").replace_strict(spelled, default="", return_dtype=pl.String)
    ).with_columns(
        full=pl.when(pl.col("form") == "")
        .then(pl.col("base"))
        .otherwise(pl.concat_str("base", "form", separator=" "))
    )


def _run_forms(run: str) -> str:
    """A run of legal forms ("gmbh & co kg ltd") in one spelling ("gmbh co kg ltd")."""
    words = tuple(run.split(" "))
    return _spelled_forms(words, _form_sizes(words, 0), 0)


@dataclass(frozen=True)
class Mapping:
    kind: str
    autotask: str
    halopsa: str
    source: str
    line: int  # the line of the file its row starts on (1-based: the header is usually line 1)


# The mapping file's columns, found by name in any order (column_name: case and spaces aside).
MAPPING_COLUMNS = ("kind", "autotask", "halopsa")


def read_mappings(paths: list[Path]) -> list[Mapping]:
    """Mapping rows (kind,autotask,halopsa) from each file, read like exports (text_file); a
    file the csv module cannot parse is named, and a value `map suggest` wrote with a
    spreadsheet-safety `'` (safe.cell) reads as it was. Two rows that map one HaloPSA value
    to two Autotask values are refused (_refuse_conflicts), in one file or across files."""
    mappings: list[Mapping] = []
    for path in paths:
        try:
            mappings += _read_mapping_file(path)
        except csv.Error as exc:
            raise InputError(
                str(path), "the mapping file cannot be read as CSV", got=str(exc)
            ) from None
    _refuse_conflicts(mappings)
    return mappings


def column_name(cell: str) -> str:
    """A header cell as a column name compares: spaces dropped, casefolded (` Halo PSA` is
    halopsa)."""
    return "".join(cell.split()).casefold()


# The separators a mapping file's header line is tried with when no `sep=` line names one, in
# this order: Excel saves CSV with the list separator of the machine's locale (`;` where the
# decimal mark is a comma), and a tab-separated export is a CSV too.
MAPPING_SEPARATORS = (",", ";", "\t")


def _header_separator(text: io.StringIO, columns: Sequence[str]) -> str:
    """The first of MAPPING_SEPARATORS under which the text's first record with a cell other
    than spaces (the header, as header_records takes it) holds the columns (column_name); a
    comma when none does (the header is then refused as it reads). Reads the text from the
    start."""
    for separator in MAPPING_SEPARATORS:
        text.seek(0)
        cells = next(
            (r for r in csv.reader(text, delimiter=separator) if any(map(str.strip, r))), []
        )
        if set(columns) <= {column_name(c) for c in cells}:
            return separator
    return ","


def header_records(
    path: Path, text: io.StringIO, columns: Sequence[str] = MAPPING_COLUMNS
) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record of the text that has a cell other than spaces, with the line it starts
    on (1-based), the first the header: a `sep=` first line (Excel's) sets the separator and is
    no record; else the header line says it, the separator under which it holds the columns
    (_header_separator). Rows left empty (a blank line, `,,,`) are passed over. Mapping files
    are read so, and `accept --from`'s ids file (acceptance.read_requests, columns ("id",))."""
    first = text.readline()
    separator = declared_separator(path, first)
    above = 1 if separator is not None else 0  # lines before the reader's first
    if separator is None:
        separator = _header_separator(text, columns)
        text.seek(0)
    reader = csv.reader(text, delimiter=separator)
    done = above  # lines read so far
    for record in reader:
        start, done = done + 1, above + reader.line_num
        if any(c.strip() for c in record):
            yield start, record


def _read_mapping_file(path: Path) -> list[Mapping]:
    """The rows of one mapping file, in order; the header is its first row that is not empty.
    Raises InputError naming the file and line for a header without the three columns or with
    one of them twice, a kind not in KINDS or a row with either side empty."""
    mappings = []
    with text_file(path) as fh:
        records = header_records(path, fh)
        line, header = next(records, (1, []))
        names = [column_name(c) for c in header]
        if not set(MAPPING_COLUMNS) <= set(names):
            raise InputError(
                str(path),
                "the mapping file has the wrong header",
                line=line,
                expected=f"the columns {','.join(MAPPING_COLUMNS)} (any case)",
                got=",".join(header),
            )
        for column in MAPPING_COLUMNS:
            twice = [n for n, name in enumerate(names, start=1) if name == column]
            if len(twice) > 1:
                # Which one is meant cannot be told: the first was used without a word.
                raise InputError(
                    str(path),
                    f"the mapping file's header has the column '{column}' "
                    f"{len(twice)} times (columns {' and '.join(map(str, twice))})",
                    line=line,
                    expected=f"each of {','.join(MAPPING_COLUMNS)} once",
                    got=",".join(header),
                )
        places = [names.index(c) for c in MAPPING_COLUMNS]
        for line, record in records:
            cells = [record[i].strip() if i < len(record) else "" for i in places]
            kind, autotask, halopsa = cells[0].lower(), uncell(cells[1]), uncell(cells[2])
            if kind not in KINDS:
                raise InputError(
                    str(path),
                    "unknown mapping kind",
                    line=line,
                    column="kind",
                    expected=" or ".join(KINDS),
                    got=kind,
                )
            if not autotask or not halopsa:
                raise InputError(
                    str(path),
                    "a mapping needs both sides",
                    line=line,
                    expected="an Autotask and a HaloPSA id or name",
                )
            mappings.append(Mapping(kind, autotask, halopsa, str(path), line))
    return mappings


def name_rows(kind: str, names: pl.Series) -> pl.DataFrame:
    """One row per name, in order: name, name_table's base and form, whole (its full) and key,
    the name as mapping rows compare it (name_keys)."""
    parts = pl.concat([names.rename("name").to_frame(), name_table(kind, names)], how="horizontal")
    stripped = pl.col("name").str.strip_chars()
    # casefold (a replace_many of ~1,400 characters: 1.8 ms a call to make, however few the
    # names) only when a name has no full name: else the rows it keys are null names.
    marks_only = not parts.filter(pl.col("full") == "", pl.col("name").is_not_null()).is_empty()
    return parts.select(
        "name",
        "base",
        "form",
        whole="full",
        key=pl.when(pl.col("full") == "")
        .then(casefold(stripped) if marks_only else stripped)
        .otherwise(pl.col("full")),
    )


def name_keys(kind: str, values: pl.Series) -> pl.Series:
    """Values (ids or names) of a kind as mapping rows compare them, in order: name_table's full
    name as the kind reads it, so case, accents, spacing, punctuation (a trailing dot, an en dash
    for a hyphen), `&`/`and` and, for a client, legal-form spellings do not make two values
    different; a value of nothing but marks (no full name) stripped and casefolded. Null stays
    null."""
    return name_rows(kind, values)["key"].alias(values.name)


def mapping_keys(kinds: pl.Series, values: pl.Series) -> pl.Series:
    """name_keys of each value as its kind (the same place in `kinds`) reads it, in order: one
    name_keys of the clients' values and one of the others' (an item's and a contract's names
    read alike)."""
    rows = pl.DataFrame({"client": kinds == "client", "value": values}).with_row_index("at")
    keyed = [
        part.select("at", name_keys("client" if client else "item", part["value"]).alias("key"))
        for (client,), part in rows.partition_by("client", as_dict=True).items()
    ]
    if not keyed:
        return pl.Series(values.name, [], dtype=pl.String)
    return pl.concat(keyed).sort("at")["key"].alias(values.name)


def mapping_frame(mappings: Sequence[Mapping]) -> pl.DataFrame:
    """The mapping rows as they compare, in order: kind, value (the HaloPSA value) and target
    (the Autotask value), both keyed as names of the kind compare (mapping_keys, of both
    columns at once). Keyed once per set of rows: a run asks for them three times (the
    conflict check, the crosswalk, the unused rows), each a name_table of every value."""
    return _mapping_frame(tuple(mappings))


@functools.lru_cache(maxsize=2)
def _mapping_frame(mappings: tuple[Mapping, ...]) -> pl.DataFrame:
    kinds = pl.Series("kind", [m.kind for m in mappings], dtype=pl.String)
    values = pl.Series("value", [m.halopsa for m in mappings], dtype=pl.String)
    targets = pl.Series("target", [m.autotask for m in mappings], dtype=pl.String)
    keys = mapping_keys(pl.concat([kinds, kinds]), pl.concat([values, targets]))
    count = len(mappings)
    return pl.DataFrame([kinds, keys.head(count).alias("value"), keys.tail(count).alias("target")])


def _refuse_conflicts(mappings: list[Mapping]) -> None:
    """Raises InputError for the first row (in file order) that maps a HaloPSA value of its kind
    to another Autotask value than the first row of that value does: values compare as names of
    the kind (mapping_frame), as they are applied (_mapped). A row repeated in another spelling
    ("Acme Ltd." for "acme ltd") is no conflict; two spellings of one HaloPSA value mapped to
    two Autotask values are."""
    rows = mapping_frame(mappings).with_row_index("i")
    firsts = rows.group_by("kind", "value").agg(
        first=pl.col("i").min(), first_target=pl.col("target").sort_by("i").first()
    )
    clash = (
        rows.join(firsts, on=["kind", "value"])
        .filter(pl.col("target") != pl.col("first_target"))
        .sort("i")
        .head(1)
    )
    if clash.is_empty():
        return
    one, two = (mappings[i] for i in clash.select("first", "i").row(0))
    where = f"line {one.line}" if one.source == two.source else f"{one.source}, line {one.line}"
    raise InputError(
        two.source,
        f"HaloPSA {two.kind} {two.halopsa!r} is mapped to two Autotask {two.kind}s: "
        f"{one.autotask!r} ({where}) and {two.autotask!r} (this line)",
        line=two.line,
        hint=f"Keep the row of the right Autotask {two.kind} and delete the other.",
    )


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


# Entities as resolve_tables takes them: one row each, the fields of Entity.
ENTITY_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "ids": pl.List(pl.String()),
    "names": pl.List(pl.String()),
    "xref": pl.String(),
}


def entity_frame(entities: Iterable[Entity]) -> pl.DataFrame:
    """Entities as rows of ENTITY_SCHEMA. The lists are gathered from flat columns: polars
    makes a column of Python lists one Series a list."""
    entities = list(entities)
    frame = pl.DataFrame(
        {"key": [e.key for e in entities], "xref": [e.xref for e in entities]},
        schema={"key": pl.String, "xref": pl.String},
    ).with_row_index("entity")
    for field in ("ids", "names"):
        values = [getattr(e, field) for e in entities]
        flat = pl.DataFrame(
            {
                "entity": [i for i, v in enumerate(values) for _ in v],
                field: [x for v in values for x in v],
            },
            schema={"entity": pl.UInt32, field: pl.String},
        )
        lists = flat.group_by("entity").agg(field)
        frame = frame.join(lists, on="entity", how="left", maintain_order="left")
    return frame.select("key", pl.col("ids").fill_null([]), pl.col("names").fill_null([]), "xref")


class Resolution(NamedTuple):
    """How one HaloPSA entity resolved (a named tuple: a run makes one per unmapped entity, and
    a frozen dataclass costs twice the time to build)."""

    halopsa_key: str
    halopsa_label: str
    autotask_key: str | None
    method: str  # mapping, autotask_id, name, or unmapped
    suggestion: str | None = None
    score: float | None = None  # name similarity, 0-100
    basis: str | None = None  # why the suggestion, in words
    note: str | None = None  # why nothing is suggested: a name collision, or nothing similar
    ambiguous: bool = False  # the name fits several Autotask entities and is not paired


# Resolutions as resolve_tables gives them: one row each, the fields of Resolution.
RESOLUTION_SCHEMA: dict[str, pl.DataType] = {
    "halopsa_key": pl.String(),
    "halopsa_label": pl.String(),
    "autotask_key": pl.String(),
    "method": pl.String(),
    "suggestion": pl.String(),
    "score": pl.Float64(),
    "basis": pl.String(),
    "note": pl.String(),
    "ambiguous": pl.Boolean(),
}


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while hundreds of thousands of tuples are made:
    it would walk every one made so far again and again (two thirds of the time at 470,000
    resolutions), and tuples of strings and numbers can be part of no cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def resolutions(frame: pl.DataFrame) -> list[Resolution]:
    """Rows of RESOLUTION_SCHEMA as Resolutions, in order."""
    columns = [c.to_list() for c in frame.select(*RESOLUTION_SCHEMA).get_columns()]
    with collector_paused():
        return list(map(Resolution._make, zip(*columns, strict=True)))


def resolve(
    kind: str,
    autotask: Iterable[Entity],
    halopsa: Iterable[Entity],
    mappings: list[Mapping],
    min_score: float,
    suggest: bool = True,
) -> list[Resolution]:
    """resolve_frame for entities as objects."""
    frame = resolve_frame(
        kind, entity_frame(autotask), entity_frame(halopsa), mappings, min_score, suggest
    )
    return resolutions(frame)


def resolve_frame(
    kind: str,
    autotask: pl.DataFrame,
    halopsa: pl.DataFrame,
    mappings: list[Mapping],
    min_score: float,
    suggest: bool = True,
) -> pl.DataFrame:
    """resolve_tables for one kind's entity frames (ENTITY_SCHEMA rows, keys unique) in an
    in-memory DuckDB connection: one RESOLUTION_SCHEMA row per HaloPSA entity, sorted by key."""
    with contextlib.closing(duckdb.connect()) as con:
        for table, frame in (("_autotask", autotask), ("_halopsa", halopsa)):
            entities = frame.select(
                pl.lit(kind).alias("kind"), *(pl.col(c).cast(t) for c, t in ENTITY_SCHEMA.items())
            )
            with_frame(con, f"CREATE TEMP TABLE {table} AS SELECT * FROM _frame", entities)
        kinds = frozenset({kind} if suggest else ())
        resolve_tables(con, "_autotask", "_halopsa", mappings, min_score, kinds)
        found: pl.DataFrame = frame_of(con.sql("SELECT * FROM _resolution ORDER BY halopsa_key"))
    return found.select(pl.col(c).cast(t) for c, t in RESOLUTION_SCHEMA.items())


# SQL: the label of entity row x (ENTITY_SCHEMA columns): its first name, else id, else key.
LABEL = "coalesce({x}.names[1], {x}.ids[1], {x}.key)"
# SQL: whether the kind's names are read as a client's (name_table: with legal forms); an
# item's and a contract's are read alike.
CLIENT = "kind = 'client'"


# The work tables of resolve_tables, dropped once _resolution is made.
WORK_TABLES = (
    "_rs_decided", "_rs_display", "_rs_map", "_rs_maybe", "_rs_value", "_rs_a_name",
    "_rs_h_row", "_rs_outcome", "_rs_shown", "_rs_norm", "_rs_applies",
)  # fmt: skip
# The columns of a table of normalised names (normalise_into): client (read as a client's name,
# with legal forms, else as an item's or a contract's), name and name_rows' columns.
NAME_COLUMNS = (
    "client BOOLEAN, name VARCHAR, base VARCHAR, form VARCHAR, whole VARCHAR, key VARCHAR"
)


def normalise_into(con: duckdb.DuckDBPyConnection, table: str, query: str) -> None:
    """Rows of the temp table `table` (NAME_COLUMNS, one per client and name) for the distinct
    (client, name) rows of the query (columns client, name; repeats allowed) it lacks, null
    names aside: name_rows of each as its kind reads it, a chunk of distinct rows at a time
    (name_table is a function of each value alone), a name_rows of each kind per chunk."""
    missing = (
        f"SELECT q.client, q.name FROM ({query}) q ANTI JOIN {table} t USING (client, name) "
        "WHERE q.name IS NOT NULL"
    )
    for chunk in distinct_chunks(con, missing):
        rows = pl.concat(
            name_rows("client" if client else "item", part["name"]).select(
                pl.lit(client).alias("client"), pl.all()
            )
            for (client,), part in chunk.partition_by("client", as_dict=True).items()
        )
        with_frame(con, f"INSERT INTO {table} SELECT * FROM _frame", rows)


def resolve_tables(
    con: duckdb.DuckDBPyConnection,
    autotask: str,
    halopsa: str,
    mappings: list[Mapping],
    min_score: float,
    suggest: Collection[str] = KINDS,
    normalised: str | None = None,
    memory_limit: str | None = None,
) -> pl.DataFrame:
    """Resolve every HaloPSA entity to an Autotask key of its kind, or say it is unmapped (with
    a hint); returns the mapping rows' Autotask values that fit several Autotask entities
    (_mapped's UNFIT_SCHEMA rows). The kinds are resolved together, each step one statement
    over all of them: an entity is only ever compared with entities of its kind.

    autotask, halopsa: tables of kind (KINDS) and ENTITY_SCHEMA columns (ids and names lists),
    keys unique within a kind. normalised: a temp table of normalised names (NAME_COLUMNS, as
    normalise_into makes them) holding every name of the entities, and every id of the kinds
    mapping rows name, which are read from it and not normalised again (None: resolve_tables
    makes its own of every id and name, _rs_norm, dropped). Leaves the temp table
    _resolution: one row per HaloPSA entity, kind and RESOLUTION_SCHEMA columns, in no order.
    An unmapped entity of a kind not in `suggest` whose name neither collides nor differs only
    in legal form gets no similar-name suggestion (nor note): the search for one is the
    costliest step, and a run shows no contract's.
    memory_limit: DuckDB's limit in force, when its memory is to be let go
    (store.release_memory) before the names are scored (_suggest).

    DuckDB SQL over temp tables, which spill; Python holds a chunk of distinct values at a time
    (normalise_into), the entities whose names collide or differ only in legal form, and,
    for each kind in `suggest`, its unmapped entities' names and every Autotask name of it
    (best_matches)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _rs_decided (kind VARCHAR, halopsa_key VARCHAR, "
        "autotask_key VARCHAR, method VARCHAR, suggestion VARCHAR, score DOUBLE, basis VARCHAR, "
        "note VARCHAR, ambiguous BOOLEAN)"
    )
    if normalised is None:
        normalised = "_rs_norm"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {normalised} ({NAME_COLUMNS})")
        values = " UNION ALL ".join(
            f"SELECT {CLIENT} AS client, name "
            f"FROM ({_elements(entities, 'list_concat(ids, names)', 'name')})"
            for entities in (autotask, halopsa)
        )
        normalise_into(con, normalised, values)
    _display(con, autotask)
    unfit = _by_id(con, autotask, halopsa, mappings, normalised)
    _by_name(con, autotask, halopsa, min_score, suggest, normalised, memory_limit)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _resolution AS
        SELECT h.kind, h.key AS halopsa_key, {LABEL.format(x="h")} AS halopsa_label,
               d.autotask_key, coalesce(d.method, 'unmapped') AS method, d.suggestion, d.score,
               d.basis, d.note, coalesce(d.ambiguous, false) AS ambiguous
        FROM {halopsa} h LEFT JOIN _rs_decided d ON d.kind = h.kind AND d.halopsa_key = h.key
        """
    )
    for table in WORK_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return unfit


def _display(con: duckdb.DuckDBPyConnection, autotask: str) -> None:
    """Temp table _rs_display (kind, key, display): each Autotask entity by its label, with its
    first id where two of its kind share a label ("Acme Ltd (id 42)")."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _rs_display AS
        WITH labelled AS (
            SELECT kind, key, ids[1] AS id, len(ids) > 0 AS has_id,
                   {LABEL.format(x="a")} AS label
            FROM {autotask} a
        ),
        shared AS (SELECT kind, label FROM labelled GROUP BY kind, label HAVING count(*) > 1)
        SELECT l.kind, l.key, CASE WHEN s.label IS NOT NULL AND l.has_id
                                   THEN l.label || ' (id ' || l.id || ')' ELSE l.label END
                              AS display
        FROM labelled l LEFT JOIN shared s ON s.kind = l.kind AND s.label = l.label
        """
    )


CASE_BLOCK = 256  # code points _case_changes passes over at once when none of them changes


def _case_changes() -> tuple[dict[str, str], list[str]]:
    """CASEFOLD and UNLOWERED, in code point order, from one pass over the code points below
    U+20000 a block at a time: a block that casefold and lower both leave as it is (most:
    CJK, symbols, unassigned) holds neither kind, and its characters are not looked at one by
    one (a third of the time of two comprehensions over every code point)."""
    every = array.array("I", range(0x20000)).tobytes()
    text = every.decode(f"utf-32-{sys.byteorder[0]}e", "surrogatepass")
    casefold: dict[str, str] = {}
    unlowered: list[str] = []
    for start in range(0, len(text), CASE_BLOCK):
        block = text[start : start + CASE_BLOCK]
        if block.casefold() == block and block.lower() == block:
            continue
        for c in block:
            if (f := c.casefold()) != c:
                casefold[c] = f
            if c.lower() != f or len(f) != 1:
                unlowered.append(c)
    return casefold, unlowered


# str.casefold changes one code point at a time, none beyond U+1FFFF: CASEFOLD is its changes.
# UNLOWERED: the characters whose lower case in DuckDB (lower) may not be their str.casefold,
# those whose casefold is not their lower case or not one character (ß, ﬁ, ς, İ, Cherokee
# letters). tests/test_names.py checks that DuckDB's lower of every other character is its
# casefold, and both against their definitions over every code point.
CASEFOLD, UNLOWERED = _case_changes()


def casefold(value: pl.Expr) -> pl.Expr:
    """str.casefold of each value."""
    return value.str.replace_many(CASEFOLD)


def _by_id(
    con: duckdb.DuckDBPyConnection,
    autotask: str,
    halopsa: str,
    mappings: list[Mapping],
    normalised: str,
) -> pl.DataFrame:
    """HaloPSA entities paired by the mapping file (_mapped) or else by the Autotask id HaloPSA
    kept (that of exactly one entity of the kind): rows of _rs_decided (method mapping,
    autotask_id). Returns _mapped's Autotask values that fit several entities."""
    unfit = (
        _mapped(con, autotask, halopsa, mappings, normalised)
        if mappings
        else pl.DataFrame(schema=UNFIT_SCHEMA)
    )
    con.execute(
        f"""
        INSERT INTO _rs_decided (kind, halopsa_key, autotask_key, method)
        WITH kept AS (
            SELECT h.kind, h.key, h.xref FROM {halopsa} h
            ANTI JOIN _rs_decided d ON d.kind = h.kind AND d.halopsa_key = h.key
            WHERE h.xref != ''
        ),
        ids AS (
            SELECT DISTINCT e.kind, e.value, e.key FROM ({_elements(autotask, "ids", "value")}) e
            SEMI JOIN kept k ON k.kind = e.kind AND k.xref = e.value
        ),
        sole AS (
            SELECT kind, value, min(key) AS autotask_key FROM ids
            GROUP BY kind, value HAVING count(*) = 1
        )
        SELECT k.kind, k.key, o.autotask_key, 'autotask_id'
        FROM kept k JOIN sole o ON o.kind = k.kind AND o.value = k.xref
        """
    )
    return unfit


# The Autotask values of mapping rows that fit several Autotask entities of the row's kind:
# target keyed as mapping_frame keys it, problem in words.
UNFIT_SCHEMA = {"kind": pl.String, "target": pl.String, "problem": pl.String}


def _mapped(
    con: duckdb.DuckDBPyConnection,
    autotask: str,
    halopsa: str,
    mappings: list[Mapping],
    normalised: str,
) -> pl.DataFrame:
    """Rows of _rs_decided (method mapping): each HaloPSA entity's first id or name, in that
    order, that a mapping row of its kind (the last for its value) gives an Autotask value of
    exactly one entity of the kind (any id or name). Values compare as names of the kind
    (mapping_frame, _folded_values). Returns the rows' Autotask values that fit several
    entities of the kind
    (UNFIT_SCHEMA), each with how many and the first AMBIGUITY_SHOWN of their displays: such
    a row is not applied."""
    rows = mapping_frame(mappings).with_row_index("row").unique(["kind", "value"], keep="last")
    with_frame(con, "CREATE OR REPLACE TEMP TABLE _rs_map AS SELECT * FROM _frame", rows)
    _folded_values(con, autotask, halopsa, normalised)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _rs_applies AS
        WITH sole AS (
            SELECT kind, value, min(key) AS autotask_key
            FROM (SELECT DISTINCT kind, value, key FROM _rs_value WHERE side = 'a')
            GROUP BY kind, value HAVING count(*) = 1
        )
        SELECT h.kind, h.key, h.pos, m.row, o.autotask_key
        FROM _rs_value h JOIN _rs_map m ON m.kind = h.kind AND m.value = h.value
        JOIN sole o ON o.kind = h.kind AND o.value = m.target
        WHERE h.side = 'h'
        """
    )
    _refuse_entity_conflicts(con, mappings)
    con.execute(
        """
        INSERT INTO _rs_decided (kind, halopsa_key, autotask_key, method)
        SELECT kind, key, arg_min(autotask_key, pos), 'mapping' FROM _rs_applies
        GROUP BY kind, key
        """
    )
    found: pl.DataFrame = frame_of(
        con.sql(
            f"""
        WITH fits AS (
            SELECT DISTINCT m.kind, m.target, v.key
            FROM (SELECT DISTINCT kind, target FROM _rs_map) m
            JOIN _rs_value v ON v.side = 'a' AND v.kind = m.kind AND v.value = m.target
        )
        SELECT kind, target, count(*) AS fits, min(d.display, {AMBIGUITY_SHOWN}) AS shown
        FROM fits JOIN _rs_display d USING (kind, key)
        GROUP BY kind, target HAVING count(*) > 1 ORDER BY kind, target
        """
        )
    )
    problems = [
        f"the Autotask value fits {fits} Autotask {kind}s ({_listed(shown, fits)}): "
        f"name the Autotask {kind} by its id instead"
        for kind, fits, shown in found.select("kind", "fits", "shown").iter_rows()
    ]
    return found.select("kind", "target", problem=pl.Series(problems, dtype=pl.String))


def _refuse_entity_conflicts(con: duckdb.DuckDBPyConnection, mappings: list[Mapping]) -> None:
    """Raises InputError when two mapping rows name one HaloPSA entity by different values (its
    id on one, its name on the other) and map it to two Autotask entities (_rs_applies: each
    row that applies to a HaloPSA entity, with the one Autotask entity its target names). Read
    as written they are no conflict (_refuse_conflicts compares the values), and the entity's
    id row won without a word: a client's billing paired with another client's."""
    clash = con.execute(
        """
        SELECT min(row) FILTER (WHERE autotask_key = first_key), min(row) FILTER (WHERE
               autotask_key != first_key)
        FROM (SELECT *, arg_min(autotask_key, row) OVER (PARTITION BY kind, key) AS first_key
              FROM _rs_applies)
        GROUP BY kind, key HAVING count(DISTINCT autotask_key) > 1
        ORDER BY 2 LIMIT 1
        """
    ).fetchall()
    if not clash:
        return
    first, second = sorted(clash[0])
    raise entity_conflict(mappings[first], mappings[second])


def entity_conflict(one: Mapping, two: Mapping) -> InputError:
    """The refusal of two mapping rows (`one` above `two`) that name one HaloPSA entity by two
    of its values and map it to two Autotask entities."""
    where = f"line {one.line}" if one.source == two.source else f"{one.source}, line {one.line}"
    return InputError(
        two.source,
        f"{two.halopsa!r} and {one.halopsa!r} ({where}) name one HaloPSA {two.kind}, mapped "
        f"to two Autotask {two.kind}s: {one.autotask!r} ({where}) and {two.autotask!r} "
        "(this line)",
        line=two.line,
        hint=f"Keep the row of the right Autotask {two.kind} and delete the other.",
    )


def _elements(
    rows: str, values: str, name: str, place: str | None = None, size: str | None = None
) -> str:
    """SQL: kind, key and each element of the list expression `values` of each row of `rows` (a
    table or a subquery) as `name`, with its place in the list (from 1) as `place` and the list's
    length as `size` when given. An unnest in the select list: a lateral one (FROM t,
    unnest(t.x)) is planned as a join of the elements back to their rows, ten times the CPU."""
    position = f", unnest(range(1, len({values}) + 1)) AS {place}" if place else ""
    length = f", len({values}) AS {size}" if size else ""
    return f"SELECT kind, key, unnest({values}) AS {name}{position}{length} FROM {rows}"


def _folded_values(
    con: duckdb.DuckDBPyConnection, autotask: str, halopsa: str, normalised: str
) -> None:
    """Temp table _rs_value (side: a or h, kind, key, pos, value): the entities' ids and names
    (pos: the place among ids, then names) keyed as mapping rows compare them (name_keys of
    their kind), of each side those in _rs_map's column of that side (target, value). The
    values of the kinds _rs_map has are keyed by the table `normalised` (resolve_tables')."""
    sides = " UNION ALL ".join(
        f"SELECT '{side}' AS side, * FROM "
        f"({_elements(entities, 'list_concat(ids, names)', 'value', 'pos')}) "
        "WHERE value IS NOT NULL AND kind IN (SELECT kind FROM _rs_map)"
        for side, entities in (("a", autotask), ("h", halopsa))
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rs_maybe AS {sides}")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _rs_value AS
        SELECT v.side, v.kind, v.key, v.pos, f.key AS value
        FROM _rs_maybe v JOIN {normalised} f ON f.client = (v.{CLIENT}) AND f.name = v.value
        WHERE (v.side = 'a' AND f.key IN (SELECT target FROM _rs_map))
           OR (v.side = 'h' AND f.key IN (SELECT m.value FROM _rs_map m))
        """
    )


# A HaloPSA name's outcome, in order of precedence: it pairs (the one Autotask entity with that
# name, or with that base name when their legal forms do not contradict each other); it collides
# (several Autotask entities have it, as a whole or as a base name); it differs only in legal
# form from the one Autotask entity with that base name.
PAIRS, COLLIDES, FORM_ONLY = 1, 2, 3
RANKS = 1 << 32  # (outcome, rank) as one number, outcome x RANKS + rank


def _by_name(
    con: duckdb.DuckDBPyConnection,
    autotask: str,
    halopsa: str,
    min_score: float,
    suggest: Collection[str],
    normalised: str,
    memory_limit: str | None,
) -> None:
    """Names equal after normalisation pair; a name that fits several Autotask entities, or
    differs from the only one with its base name in legal form, is never paired.

    Each HaloPSA entity not decided by id has its names looked at in order (rank): the first
    that pairs pairs it; else the first that collides says so; else the first that differs only
    in legal form is the suggestion; whatever is left gets the most similar name of its kind
    (`best_matches`) when its kind is in `suggest`, else nothing (memory_limit:
    resolve_tables'). Adds the rows of these to _rs_decided."""
    _names(con, autotask, halopsa, normalised)
    _outcomes(con)
    con.execute(
        f"""
        INSERT INTO _rs_decided (kind, halopsa_key, autotask_key, method)
        SELECT kind, key, CASE WHEN hits = 1 THEN hit ELSE a_key END, 'name'
        FROM _rs_outcome WHERE outcome = {PAIRS}
        """
    )
    # Most cycles have neither: their steps' statements (joins) are not run for nothing.
    collide, form_only = con.execute(
        f"SELECT count(*) FILTER (WHERE outcome = {COLLIDES}), "
        f"count(*) FILTER (WHERE outcome = {FORM_ONLY}) FROM _rs_outcome"
    ).fetchall()[0]
    if collide:
        _collisions(con, halopsa)
    if form_only:
        _form_only(con)
    for kind in KINDS:
        if kind in suggest:
            _suggest(con, kind, halopsa, min_score, memory_limit)


def _names(con: duckdb.DuckDBPyConnection, autotask: str, halopsa: str, normalised: str) -> None:
    """Temp tables _rs_a_name (kind, key, base, form, whole: name_table's full) of every
    Autotask entity's names and _rs_h_name (kind, key, rank, size, base, form, whole) of the
    names of the HaloPSA entities not in _rs_decided (rank: the name's place in names, size:
    how many it has), names with a base only: each name as its kind reads it (CLIENT), from
    the table `normalised` (resolve_tables')."""
    a_names = _elements(autotask, "names", "name")
    undecided = (
        f"(SELECT * FROM {halopsa} h ANTI JOIN _rs_decided d "
        "ON d.kind = h.kind AND d.halopsa_key = h.key)"
    )
    h_names = _elements(undecided, "names", "name", "rank", "size")
    h_table = ("_rs_h_name", h_names, "rank, size, ")
    for table, query, places in (("_rs_a_name", a_names, ""), h_table):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS "
            f"SELECT n.kind, n.key, {places}t.base, t.form, t.whole FROM ({query}) n "
            f"JOIN {normalised} t ON t.client = (n.{CLIENT}) AND t.name = n.name "
            "WHERE t.base != ''"
        )


def _outcomes(con: duckdb.DuckDBPyConnection) -> None:
    """Temp tables _rs_h_row: each row of _rs_h_name with its outcome (PAIRS, COLLIDES,
    FORM_ONLY or null) and what decides it: per kind and full name (whole), how many Autotask
    entities of the kind have it (hits: 0, 1, or 2 for several, all that is asked of it) and
    the least (hit), one aggregate over every Autotask name (a semi join with HaloPSA's names
    first, and a DISTINCT, ran out of 120MB at 3M lines a side); per kind and base name of a
    row no Autotask entity has the full name of (hits 0: the others' outcomes and uses never
    look at these), how many (keys) and the least (a_key), whether one has it with no legal
    form (bare), the least form (theirs) and full name (a_full); null for the rows with hits.
    A base name pairs only with an Autotask entity no other HaloPSA entity has (decided before,
    _rs_decided, or by its full name; only the Autotask entities of _rs_base are looked up):
    HaloPSA's "Harbour Dental" beside its "Harbour Dental Ltd" is another client, only
    suggested (FORM_ONLY). _rs_outcome: each entity's row of the
    best outcome, of those its first by rank (picked only among the entities of several names:
    nearly all have one). Aggregates over narrow rows, of the names HaloPSA has only."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _rs_full AS
        SELECT kind, whole, CASE WHEN min(key) = max(key) THEN 1 ELSE 2 END AS hits,
               min(key) AS hit
        FROM _rs_a_name GROUP BY kind, whole
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _rs_base AS
        SELECT kind, base, count(*) AS keys, min(key) AS a_key, bool_or(bare) AS bare,
               min(theirs) AS theirs, min(a_full) AS a_full
        FROM (
            SELECT a.kind, a.base, a.key, bool_or(a.form = '') AS bare, min(a.form) AS theirs,
                   min(a.whole) AS a_full
            FROM _rs_a_name a SEMI JOIN (
                SELECT kind, base FROM _rs_h_name ANTI JOIN _rs_full USING (kind, whole)
            ) h USING (kind, base)
            GROUP BY a.kind, a.base, a.key
        ) GROUP BY kind, base
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _rs_h_row AS
        WITH taken AS (
            SELECT kind, a_key, min(key) AS first, max(key) AS last FROM (
                SELECT kind, halopsa_key AS key, autotask_key AS a_key FROM _rs_decided
                WHERE autotask_key IS NOT NULL
                UNION ALL
                SELECT n.kind, n.key, f.hit FROM _rs_h_name n JOIN _rs_full f USING (kind, whole)
                WHERE f.hits = 1
            ) t SEMI JOIN _rs_base b USING (kind, a_key) GROUP BY kind, a_key
        )
        SELECT r.*, CASE WHEN hits = 1 OR (hits = 0 AND keys = 1 AND (form = '' OR bare)
                                           AND t.a_key IS NULL)
                         THEN {PAIRS}
                         WHEN hits > 1 OR (hits = 0 AND keys > 1) THEN {COLLIDES}
                         WHEN hits = 0 AND keys = 1 THEN {FORM_ONLY} END AS outcome
        FROM (
            SELECT n.*, coalesce(f.hits, 0) AS hits, f.hit, coalesce(b.keys, 0) AS keys,
                   b.a_key, b.bare, b.theirs, b.a_full
            FROM _rs_h_name n LEFT JOIN _rs_full f USING (kind, whole)
            LEFT JOIN _rs_base b USING (kind, base)
        ) r LEFT JOIN taken t
            ON t.kind = r.kind AND t.a_key = r.a_key AND (t.first <> r.key OR t.last <> r.key)
        """
    )
    for table in ("_rs_h_name", "_rs_full", "_rs_base"):
        con.execute(f"DROP TABLE {table}")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _rs_outcome AS
        SELECT * FROM _rs_h_row WHERE outcome IS NOT NULL AND size = 1
        UNION ALL
        SELECT r.* FROM _rs_h_row r JOIN (
            SELECT kind, key, min(outcome * {RANKS} + rank) AS pick FROM _rs_h_row
            WHERE outcome IS NOT NULL AND size > 1 GROUP BY kind, key
        ) p ON p.kind = r.kind AND p.key = r.key AND p.pick = r.outcome * {RANKS} + r.rank
        """
    )


def _insert_decided(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> None:
    """The frame's rows (kind, halopsa_key and some of _rs_decided's columns) into
    _rs_decided."""
    with_frame(con, "INSERT INTO _rs_decided BY NAME SELECT * FROM _frame", frame)


def _collisions(con: duckdb.DuckDBPyConnection, halopsa: str) -> None:
    """Rows of _rs_decided for the entities whose name fits several Autotask entities of their
    kind (outcome COLLIDES, on full or base name): each names them (ambiguity_note: how many,
    and the first AMBIGUITY_SHOWN displays in order, found once per name in SQL). The words
    are Python's (the csv module quotes the label), over as many rows as such entities."""
    clash = "CASE WHEN hits > 1 THEN whole ELSE base END"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _rs_shown AS
        WITH clashes AS (
            SELECT DISTINCT kind, hits > 1 AS on_full, {clash} AS name
            FROM _rs_outcome WHERE outcome = {COLLIDES}
        ),
        fits AS (
            SELECT DISTINCT c.kind, c.on_full, c.name, a.key
            FROM clashes c JOIN _rs_a_name a ON a.kind = c.kind AND a.whole = c.name
            WHERE c.on_full
            UNION ALL
            SELECT DISTINCT c.kind, c.on_full, c.name, a.key
            FROM clashes c JOIN _rs_a_name a ON a.kind = c.kind AND a.base = c.name
            WHERE NOT c.on_full
        )
        SELECT kind, on_full, name, count(*) AS fits, min(d.display, {AMBIGUITY_SHOWN}) AS shown
        FROM fits JOIN _rs_display d USING (kind, key) GROUP BY kind, on_full, name
        """
    )
    found: pl.DataFrame = frame_of(
        con.sql(
            f"""
        SELECT o.kind, o.key, {LABEL.format(x="h")} AS label, s.fits, s.shown
        FROM _rs_outcome o JOIN {halopsa} h ON h.kind = o.kind AND h.key = o.key
        JOIN _rs_shown s ON s.kind = o.kind AND s.on_full = (o.hits > 1) AND s.name = {clash}
        WHERE o.outcome = {COLLIDES}
        """
        )
    )
    if found.is_empty():
        return
    notes = [
        ambiguity_note(kind, label, shown, fits)
        for kind, label, fits, shown in found.select("kind", "label", "fits", "shown").iter_rows()
    ]
    _insert_decided(
        con,
        found.select(
            "kind",
            halopsa_key="key",
            method=pl.lit("unmapped"),
            note=pl.Series(notes, dtype=pl.String),
            ambiguous=pl.lit(True),
        ),
    )


def _form_only(con: duckdb.DuckDBPyConnection) -> None:
    """Rows of _rs_decided for the entities that differ only in legal form from the one
    Autotask entity of their kind and base name (outcome FORM_ONLY): that entity is suggested, never
    with 100."""
    found: pl.DataFrame = frame_of(
        con.sql(
            f"""
        SELECT o.kind, o.key, d.display, o.form, o.theirs, o.whole, o.a_full
        FROM _rs_outcome o LEFT JOIN _rs_display d ON d.kind = o.kind AND d.key = o.a_key
        WHERE o.outcome = {FORM_ONLY}
        """
        )
    )
    if found.is_empty():
        return
    import numpy as np  # numpy: imported when names are scored (a run imports it beside its load)

    scores = process.cpdist(
        found["whole"].to_list(), found["a_full"].to_list(), scorer=fuzz.ratio, dtype=np.float64
    )
    _insert_decided(
        con,
        found.select(
            "kind",
            halopsa_key="key",
            method=pl.lit("unmapped"),
            suggestion="display",
            # Python's round (to the nearest tenth, ties to even, of the exact value).
            score=pl.Series([min(99.0, round(float(s), 1)) for s in scores], dtype=pl.Float64),
            # A name with no legal form: its Autotask entity is another HaloPSA entity's.
            basis=pl.format(
                "differs only in legal form ({} / {})",
                *(
                    pl.when(pl.col(c) == "").then(pl.lit("none")).otherwise(c)
                    for c in ("form", "theirs")
                ),
            ),
        ),
    )


AMBIGUITY_SHOWN = 5


def _listed(shown: Sequence[str], count: int) -> str:
    """The first AMBIGUITY_SHOWN names of `count` (`shown`), with how many more: "a; b; and 3
    more"."""
    text = "; ".join(shown)
    more = count - AMBIGUITY_SHOWN
    return f"{text}; and {more} more" if more > 0 else text


def ambiguity_note(kind: str, label: str, shown: Sequence[str], count: int) -> str:
    """The words of a name collision, shown in the finding and the report's unmapped list:
    `count` Autotask entities fit the label, `shown` are the first AMBIGUITY_SHOWN of their
    names in order."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([kind, f"<Autotask {kind}>", label])
    return (
        f"matches {count} Autotask {kind}s by name ({_listed(shown, count)}) and is not paired: "
        f"add a mapping row {out.getvalue()}"
    )


def _suggest(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    halopsa: str,
    min_score: float,
    memory_limit: str | None,
) -> None:
    """Rows of _rs_decided for the HaloPSA entities of the kind (one of KINDS) not yet in it:
    the closest Autotask name of the kind for each (best_matches over their names and every
    Autotask name of the kind), if it scores at least min_score; a note saying so if none
    does. With `memory_limit` (the limit in force), what DuckDB holds is let go
    (store.release_memory) once the names are read and before they are scored: at 10M lines a
    side, 1.7M Autotask clients' names are scored in Python, the crosswalk's peak, and DuckDB
    held 140 MiB of them."""
    # The entities left, each with its names in order (none: a row of nulls).
    found: pl.DataFrame = frame_of(
        con.sql(
            f"""
        SELECT h.key, r.base, r.form
        FROM {halopsa} h ANTI JOIN _rs_decided d ON d.kind = h.kind AND d.halopsa_key = h.key
        LEFT JOIN _rs_h_row r ON r.kind = h.kind AND r.key = h.key
        WHERE h.kind = '{kind}' ORDER BY h.key, r.rank
        """
        )
    )
    if found.is_empty():
        return
    left = found.select(pl.col("key").unique(maintain_order=True))
    queries = found.filter(pl.col("base").is_not_null())
    # Each (entity, base, form) once, in order of display, stored in that order (its rowid is
    # its index): only base and form are read into Python (1.7M Autotask clients' at 10M lines
    # a side), and the displays of the candidates suggested.
    with insertion_order_kept(con):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _rs_candidate AS
            SELECT display, base, form FROM (
                SELECT DISTINCT d.display, a.key, a.base, a.form
                FROM _rs_a_name a JOIN _rs_display d USING (kind, key) WHERE a.kind = '{kind}'
            ) ORDER BY display NULLS FIRST, key, base, form
            """
        )
        candidates: pl.DataFrame = frame_of(con.sql("SELECT base, form FROM _rs_candidate"))
    if memory_limit is not None:
        release_memory(con, memory_limit)
    chosen = best_candidates(queries, candidates, min_score)
    del candidates
    shown: pl.DataFrame = frame_of(
        con.sql(
            "SELECT rowid AS index, display AS suggestion FROM _rs_candidate "
            "SEMI JOIN (SELECT unnest($indexes) AS index) ON rowid = index",
            params={"indexes": chosen["index"].to_list()},
        )
    )
    con.execute("DROP TABLE _rs_candidate")
    best = chosen.join(shown, on="index")
    _insert_decided(
        con,
        left.join(best, on="key", how="left").select(
            kind=pl.lit(kind),
            halopsa_key="key",
            method=pl.lit("unmapped"),
            suggestion="suggestion",
            score="score",
            basis=pl.format("name similarity {}", "score"),
            note=pl.when(pl.col("score").is_null()).then(
                pl.lit(f"no similar Autotask {kind} name (none scores {min_score:g} or more)")
            ),
        ),
    )


def best_suggestions(
    queries: pl.DataFrame, candidates: pl.DataFrame, min_score: float
) -> pl.DataFrame:
    """best_candidates with suggestion, the display of the candidate (`candidates`: display,
    base, form)."""
    return best_candidates(queries, candidates, min_score).join(
        candidates.select(
            index=pl.int_range(pl.len(), dtype=pl.Int64), suggestion=pl.col("display")
        ),
        on="index",
    )


def best_candidates(
    queries: pl.DataFrame, candidates: pl.DataFrame, min_score: float
) -> pl.DataFrame:
    """Each entity's most similar candidate (best_matches), if one scores at least min_score.

    queries: key, base, form, an entity's names in their order; candidates: base, form.
    Returns key, index (the candidate's row, Int64) and score (0-100), one row per entity that
    has one; of equal scores, the entity's first name's."""
    found = best_matches(
        queries["base"], queries["form"], candidates["base"], candidates["form"], min_score
    )
    return (
        pl.concat([queries.select("key"), found], how="horizontal")
        .filter(pl.col("index") >= 0)
        .group_by("key")
        .agg(pl.all().get(pl.col("score").arg_max()))
    )


# Below this many query x candidate pairs every pair is scored; above it (tens of thousands of
# names each side) a query is scored only against candidates that share a rare word, a rare
# pair of adjacent words or a rare word start with it, so time and memory grow with the number
# of names, never with their product.
PAIR_BUDGET = 20_000_000
CHUNK_CELLS = 4_000_000  # scores held at once: 16 MB of float32
BLOCK_LIMIT = 100  # a block shared by more candidates than this is too common to compare by
QUERY_CHUNK = 5_000  # queries whose pairs (and their strings, for cpdist) are held at once
NAME_CHUNK = 50_000  # candidates split into blocks at once (their words' strings held)


def best_matches(
    queries: pl.Series,
    query_forms: pl.Series,
    candidates: pl.Series,
    candidate_forms: pl.Series,
    min_score: float,
) -> pl.DataFrame:
    """For each query, the index of the most similar candidate (token_sort_ratio, ties to the
    one with the same legal form, then the first) and its score rounded to a tenth: one row
    per query, index (-1 when none scores min_score or more) and score (then 0.0).

    Queries and candidates (strings) are names as name_table gives them, words between single
    spaces; each has its legal form (strings) beside it."""
    import numpy as np

    index = np.full(len(queries), -1, dtype=np.int64)
    score = np.zeros(len(queries))
    if len(queries) and len(candidates):
        codes = pl.concat([query_forms, candidate_forms]).rank("dense").to_numpy()
        q_forms, c_forms = codes[: len(queries)], codes[len(queries) :]
        pairs = _all_pairs if len(queries) * len(candidates) <= PAIR_BUDGET else _blocked
        for rows, found, scores in pairs(queries, q_forms, candidates, c_forms, min_score):
            values = scores.astype(np.float64)
            ok = (values > 0) & (values >= min_score)
            index[rows[ok]] = found[ok]
            # Scores are float32: ten times one is exact, so this is Python's round to a tenth.
            score[rows[ok]] = np.round(values[ok], 1)
    return pl.DataFrame({"index": index, "score": score})


if TYPE_CHECKING:
    # Each yields, for some queries: their row numbers, their best candidates, those scores.
    Found = Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]


def _sorted_words(names: pl.Series) -> np.ndarray:
    """Each name with its words in order (an array of str): fuzz.ratio of two is their
    token_sort_ratio, without sorting a name's words again for every pair it is in."""
    import numpy as np

    text = names.str.split(" ").list.eval(pl.element().sort()).list.join(" ")
    return np.array(text.to_list(), dtype=object)


def _all_pairs(
    queries: pl.Series,
    q_forms: np.ndarray,
    candidates: pl.Series,
    c_forms: np.ndarray,
    min_score: float,
) -> Found:
    import numpy as np

    q_text, c_text = _sorted_words(queries), _sorted_words(candidates)
    step = max(1, CHUNK_CELLS // len(candidates))
    for start in range(0, len(queries), step):
        scores = process.cdist(
            q_text[start : start + step],
            c_text,
            scorer=fuzz.ratio,
            score_cutoff=min_score,
            dtype=np.float32,
            workers=-1,
        )
        rows, best = _row_best(scores, q_forms[start : start + step], c_forms)
        yield start + rows, best, scores[rows, best]


TIE = 0.001  # a same legal form adds this to a score: it decides between equal scores only


def _row_best(
    scores: np.ndarray, q_forms: np.ndarray, c_forms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best column of a float32 score matrix (queries x candidates, 0: below the
    cutoff) where any scores: the highest score + TIE for a same form, then the first column.
    Returns the rows that have one and their columns.

    Only the cells within 2 x TIE of their row's top can win: they alone are looked at again,
    so no float64 copy of the matrix is made (16 MB of float32 scores stay 16 MB)."""
    import numpy as np

    top = scores.max(axis=1)
    floor = np.where(top > 0, np.maximum(top - 2 * TIE, np.float32(1e-6)), np.inf)
    rows, cols = np.nonzero(scores >= floor.astype(np.float32)[:, None])
    key = scores[rows, cols].astype(np.float64) + TIE * (q_forms[rows] == c_forms[cols])
    order = np.lexsort((-key, rows))  # stable: of equal keys the first column stays first
    best = order[_firsts(rows[order])]
    return rows[best], cols[best]


def _blocks(strings: pl.Series, among: pl.Series | None = None) -> pl.DataFrame:
    """Each string's words, adjacent word pairs, word pairs one word apart, and the starts and
    ends of longer words: a name with one misspelt word still shares a block with the right one
    (for three words, every pair of the other two). Rows (i, block), one may repeat; only the
    blocks in `among` (hashes) when given, each kind kept apart until then (less held at once)."""
    words = (
        strings.to_frame("w")
        .select(pl.int_range(pl.len(), dtype=pl.Int64).alias("i"), pl.col("w").str.split(" "))
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
    blocks = (
        words.select("i", block=kind).drop_nulls().select("i", pl.col("block").hash())
        for kind in kinds
    )
    if among is not None:
        blocks = (b.filter(pl.col("block").is_in(among.implode())) for b in blocks)
    return pl.concat(list(blocks))


PAIR_BASE = 1 << 32  # (query, candidate) as one number, query * PAIR_BASE + candidate


def _firsts(ordered: np.ndarray) -> np.ndarray:
    """The positions where a run of equal values starts in a sorted array."""
    import numpy as np

    starts = np.ones(len(ordered), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    return np.flatnonzero(starts)


def _blocked(
    queries: pl.Series,
    q_forms: np.ndarray,
    candidates: pl.Series,
    c_forms: np.ndarray,
    min_score: float,
) -> Found:
    import numpy as np

    q_blocks = _blocks(queries).rename({"i": "q"})
    among = q_blocks["block"].unique()  # blocks no query has pair nothing
    c_blocks = (
        pl.concat(
            _blocks(candidates.slice(start, NAME_CHUNK), among).with_columns(pl.col("i") + start)
            for start in range(0, len(candidates), NAME_CHUNK)
        )
        .group_by("block")
        .agg(c="i")
        .filter(pl.col("c").list.n_unique() <= BLOCK_LIMIT)
        .explode("c")
    )
    # Words sorted for the candidates that meet a query only.
    met = c_blocks["c"].unique()
    c_text = np.empty(len(candidates), dtype=object)
    c_text[met.to_numpy()] = _sorted_words(candidates.gather(met))
    q_text = _sorted_words(queries)
    for start in range(0, len(queries), QUERY_CHUNK):
        pairs = (
            q_blocks.filter(pl.col("q").is_between(start, start + QUERY_CHUNK - 1))
            .join(c_blocks, on="block")
            .select(pl.col("q") * PAIR_BASE + pl.col("c"))
            .to_series()
            .unique()  # one number: much cheaper than unique on (q, c)
            .to_numpy()
        )
        if not len(pairs):
            continue
        pairs.sort()  # by query, then candidate
        scores = process.cpdist(
            q_text[pairs // PAIR_BASE],
            c_text[pairs % PAIR_BASE],
            scorer=fuzz.ratio,
            score_cutoff=min_score,
            dtype=np.float32,
            workers=-1,
        )
        hit = scores > 0
        q_index, c_index, scores = pairs[hit] // PAIR_BASE, pairs[hit] % PAIR_BASE, scores[hit]
        best = _run_best(q_index, scores, q_forms[q_index] == c_forms[c_index])
        yield q_index[best], c_index[best], scores[best]


def _run_best(runs: np.ndarray, scores: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Per run of equal values of the sorted array `runs`, the position of its highest score;
    of equal scores the first where `same` holds, else the first. Vector operations over the
    arrays (a sort of all of them by four keys took 0.2 s for 450,000 pairs)."""
    import numpy as np

    if not len(runs):
        return np.zeros(0, dtype=np.int64)
    starts = _firsts(runs)
    sizes = np.diff(np.append(starts, len(runs)))
    run = np.repeat(np.arange(len(starts)), sizes)
    top = scores == np.repeat(np.maximum.reduceat(scores, starts), sizes)
    tops = np.flatnonzero(top)
    best: np.ndarray = tops[_firsts(run[tops])]
    preferred = np.flatnonzero(top & same)
    preferred = preferred[_firsts(run[preferred])]
    best[run[preferred]] = preferred
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
