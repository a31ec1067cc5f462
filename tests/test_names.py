"""Company names as people type them: every variant of one company resolves to it, and different
companies stay apart (hypothesis), with cleanco's legal forms checked rather than assumed."""

from __future__ import annotations

import random
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from cleanco import basename
from cleanco.clean import get_unique_terms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from conftest import FIXTURES, invoke, read_json
from reconcile import crosswalk
from reconcile.crosswalk import (
    LEGAL_FORMS,
    PAIR_BUDGET,
    PLAIN,
    SPELLED_OUT_FORMS,
    UNLOWERED,
    Entity,
    Mapping,
    ambiguity_note,
    best_matches,
    name_keys,
    name_parts,
    name_table,
    normalise_text,
    resolve,
)

# Ordinary words, none of them a legal form; some accented, some with an apostrophe.
WORDS = [
    "Pennine", "Foods", "Kestrel", "Dental", "Harbour", "Marine", "Café", "Lumière", "Zürich",
    "Bright", "Smile", "O'Brien", "Plumbing", "Marlow", "Finch", "Solicitors", "Nørre", "Crèche",
    "Apex", "Acme", "Widgets", "Quayside", "Joinery", "Ashdown", "Forest", "Golf", "Club",
    "Meadow", "Bakers", "Señor", "Tapas", "Jones", "Green", "Accountants", "St", "Mary's",
]  # fmt: skip
# Each legal form in the spellings people use; the key names the form.
FORMS = {
    "": [""],
    "ltd": ["Ltd", "Ltd.", "Limited", "LTD", "L.T.D."],
    "llp": ["LLP", "L.L.P.", "llp", "Limited Liability Partnership"],
    "llc": ["LLC", "L.L.C.", "Limited Liability Company"],
    "plc": ["PLC", "plc", "P.L.C.", "Public Limited Company"],
    "inc": ["Inc", "Inc.", "Incorporated", "INC."],
    "corp": ["Corp", "Corp.", "Corporation"],
    "bv": ["BV", "B.V."],
    "sa": ["SA", "S.A."],
    "ag": ["AG", "A.G."],
    "gmbh": ["GmbH", "G.m.b.H."],
    "gmbh & co kg": ["GmbH & Co. KG", "GmbH and Co KG"],
    "pty ltd": ["Pty Ltd", "Pty. Ltd.", "Pty Limited"],
    "sarl": ["SARL", "S.A.R.L.", "s.a.r.l."],
}
SPACES = [" ", "  ", "\u00a0", " \u00a0"]


def test_the_vocabulary_holds_no_legal_form() -> None:
    for word in WORDS:
        assert not any(normalise_text(word) in form for form in LEGAL_FORMS), word


# (word indices, which gaps hold "&", legal form): one company.
Company = tuple[tuple[int, ...], frozenset[int], str]


@st.composite
def companies(draw: st.DrawFn) -> Company:
    words = tuple(draw(st.lists(st.integers(0, len(WORDS) - 1), min_size=1, max_size=3)))
    ands = (
        frozenset(draw(st.sets(st.integers(0, len(words) - 2)))) if len(words) > 1 else frozenset()
    )
    return words, ands, draw(st.sampled_from(sorted(FORMS)))


def canonical(company: Company) -> str:
    """How Autotask spells it: the first spelling of its form, plain spaces, composed."""
    words, ands, form = company
    parts = []
    for i, index in enumerate(words):
        parts.append(WORDS[index])
        if i in ands:
            parts.append("&")
    return " ".join([*parts, FORMS[form][0]]).strip()


@st.composite
def variants(draw: st.DrawFn, company: Company) -> str:
    """The same company as someone else typed it."""
    words, ands, form = company
    parts = []
    for i, index in enumerate(words):
        word = WORDS[index]
        if draw(st.booleans()):
            word = word.replace("'", "\u2019")
        parts.append(word)
        if i in ands:
            parts.append(draw(st.sampled_from(["&", "and", "AND", "And"])))
    if draw(st.booleans()):
        parts.insert(0, draw(st.sampled_from(["The", "THE", "the"])))
    spelling = draw(st.sampled_from(FORMS[form]))
    if spelling and draw(st.booleans()):
        parts[-1] += ","  # "Acme, Inc."
    text = ""
    for part in [*parts, spelling]:
        if part:
            text += (draw(st.sampled_from(SPACES)) if text else "") + part
    cases: list[Callable[[str], str]] = [str.upper, str.lower, str.title, str.strip]
    case = draw(st.sampled_from(cases))
    text = case(text)
    text = draw(st.sampled_from([*SPACES[:2], ""])) + text + draw(st.sampled_from(["", " "]))
    return unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD", "NFKD"])), text)


@settings(max_examples=400)
@given(st.data())
def test_every_variant_of_a_name_normalises_alike(data: st.DataObject) -> None:
    company = data.draw(companies())
    variant = data.draw(variants(company))
    assert name_parts(variant) == name_parts(canonical(company)), (variant, canonical(company))


# Name material that stresses the column-wise reading: cleanco's terms as written and read,
# runs of them, the words spelled one way, "the", marks and every kind of space.
TOKENS = sorted(
    {
        *WORDS,
        *get_unique_terms(),
        *SPELLED_OUT_FORMS,
        *(w for form in LEGAL_FORMS for w in form),
        *(" ".join(form) for form in LEGAL_FORMS),
        *("and", "AND", "&", "The", "the", "Limited", "Company", "Corporation", "Incorporated"),
    }
)
SEPARATORS = [
    " ",
    "",
    "  ",
    "\u00a0",
    ", ",
    ". ",
    ".",
    "-",
    "&",
    " & ",
    "'",
    "\u2019",
    "\t",
    "\x1f",
]


# Characters polars reads (ASCII and crosswalk.PLAIN), and some it leaves to Python: combining
# marks, letters cleanco keeps (ı, æ, œ), other scripts.
CHARACTERS = sorted({*map(chr, range(128)), *PLAIN, *"\u0301\u0308\u0327ıæœßÆŒİſﬁ€ΣςОоЖ한"})


@st.composite
def raw_names(draw: st.DrawFn) -> str | None:
    """Names as exports hold them, sensible or not."""
    chars = st.text(alphabet=st.sampled_from(CHARACTERS), max_size=5)
    parts = draw(
        st.lists(st.one_of(st.sampled_from(TOKENS), chars, st.text(max_size=3)), max_size=7)
    )
    text = "".join(draw(st.sampled_from(SEPARATORS)) + part for part in parts)
    cases: list[Callable[[str], str]] = [str.upper, str.title, str.strip, str]
    case = draw(st.sampled_from(cases))
    return draw(st.one_of(st.none(), st.text(), st.just(case(text))))


@settings(max_examples=300)
@given(st.lists(raw_names(), max_size=40))
def test_a_column_of_names_reads_as_each_name_does(names: list[str | None]) -> None:
    """name_table (polars expressions, one regex for the legal forms) is name_parts and
    normalise_text, a column at a time."""
    column = pl.Series(names, dtype=pl.String)
    parts = [(*name_parts(n), " ".join(p for p in name_parts(n) if p)) for n in names]
    assert list(name_table("client", column).iter_rows()) == parts
    texts = [(normalise_text(n), "", normalise_text(n)) for n in names]
    assert list(name_table("item", column).iter_rows()) == texts


@settings(max_examples=200)
@given(st.lists(raw_names(), max_size=40))
def test_a_column_of_values_keys_as_each_value_does(values: list[str | None]) -> None:
    """name_keys of a column is that of each value alone, whatever else the column holds:
    its replacements beyond ASCII and its casefold of values with no full name (marks only)
    are made only for a column that needs them."""
    column = pl.Series(values, dtype=pl.String)
    for kind in ("client", "item"):
        alone = [name_keys(kind, pl.Series([v], dtype=pl.String))[0] for v in values]
        assert name_keys(kind, column).to_list() == alone


def test_a_value_of_marks_only_keys_as_itself_casefolded() -> None:
    """A mapping value with no words (marks only) keys as itself, stripped and casefolded,
    beside names that have words; a null stays null."""
    column = pl.Series([" -/- ", "Acme Ltd", None, "--"], dtype=pl.String)
    assert name_keys("client", column).to_list() == ["-/-", "acme ltd", None, "--"]
    assert name_keys("item", column[1:]).to_list() == ["acme ltd", None, "--"]


def test_each_plain_character_reads_as_python_reads_it_beside_any_other() -> None:
    """crosswalk.PLAIN (what _split makes of a character, wherever it stands) holds beside
    every ASCII character and a character of each kind PLAIN holds, either side. (Every pair
    of PLAIN and ASCII characters was checked once, 1.3M strings: the same.)"""
    kinds = "éÅçøßñüÿĳŀ\u00a0\u00ad´¨¸¯²¼–—‘’“”•…€£™ⅫＡａ＆．"
    assert set(kinds) <= set(PLAIN)
    neighbours = [*map(chr, range(128)), *kinds]
    pairs = [p for c in PLAIN for n in neighbours for p in (c + n, n + c)]
    found = name_table("item", pl.Series(pairs, dtype=pl.String))["base"].to_list()
    assert found == [normalise_text(p) for p in pairs]


def test_case_tables_are_their_definitions_over_every_code_point() -> None:
    """crosswalk.CASEFOLD and UNLOWERED (made a block of code points at a time) are what one
    look at each code point below U+20000 gives, in the same order; no code point beyond it is
    changed by casefold (checked to the last, surrogates aside)."""
    every = list(map(chr, range(0x20000)))
    casefold = {c: c.casefold() for c in every if c.casefold() != c}
    assert list(crosswalk.CASEFOLD.items()) == list(casefold.items())
    unlowered = [c for c in every if c.lower() != (f := c.casefold()) or len(f) != 1]
    assert unlowered == UNLOWERED
    beyond = (chr(i) for i in range(0x20000, 0x110000) if not 0xD800 <= i < 0xE000)
    assert not any(c.casefold() != c or c.lower() != c for c in beyond)


def test_duckdb_lowers_every_character_but_the_unlowered_to_its_casefold() -> None:
    """Values without an UNLOWERED character fold in SQL (lower) as casefold folds them: checked
    for every code point (surrogates aside), one character at a time as both fold."""
    others = set(UNLOWERED)
    chars = [
        c for c in map(chr, range(1, 0x110000)) if c not in others and not 0xD800 <= ord(c) < 0xE000
    ]
    con = duckdb.connect()
    con.register("chars", pl.DataFrame({"c": chars, "folded": [c.casefold() for c in chars]}))
    assert con.execute("SELECT c FROM chars WHERE lower(c) != folded").fetchall() == []


def _entity(key: str, name: str, prefix: str = "") -> Entity:
    return Entity(key=prefix + key, ids=(), names=(name,))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_variant_resolves_to_its_client_and_different_clients_stay_apart(
    data: st.DataObject,
) -> None:
    """Autotask holds some companies (possibly the same base name with different legal forms);
    HaloPSA spells each its own way, and adds companies Autotask does not have."""
    known = data.draw(st.lists(companies(), min_size=1, max_size=8, unique=True))
    others = data.draw(st.lists(companies(), max_size=4, unique=True))
    others = [c for c in others if c not in known]
    autotask = [_entity(str(i), canonical(c)) for i, c in enumerate(known)]
    halopsa = [_entity(str(i), data.draw(variants(c)), "h") for i, c in enumerate(known)]
    halopsa += [_entity(f"x{i}", data.draw(variants(c)), "h") for i, c in enumerate(others)]
    found = {r.halopsa_key: r for r in resolve("client", autotask, halopsa, [], 60)}
    for i, _ in enumerate(known):
        assert found[f"h{i}"].autotask_key == str(i), found[f"h{i}"]
        assert found[f"h{i}"].method == "name"
    for i, (words, ands, form) in enumerate(others):
        resolution = found[f"hx{i}"]
        if resolution.autotask_key is None:
            continue
        # Paired only with the one Autotask company of that base name, its form unstated on a side.
        (twin,) = [k for k, c in enumerate(known) if c[:2] == (words, ands)]
        assert resolution.autotask_key == str(twin)
        assert "" in (form, known[twin][2])
        assert sum(1 for c in known if c[:2] == (words, ands)) == 1


def test_cleanco_knows_dotted_legal_forms() -> None:
    """What the normalisation relies on, checked on the installed cleanco: the forms it lacks
    (spelled out in full, 'Pty Limited') are ours, in crosswalk.SPELLED_OUT_FORMS."""
    for form, spellings in FORMS.items():
        for spelling in spellings:
            if not form or " " in spelling.replace("Pty. Ltd.", "").replace("GmbH & Co. KG", ""):
                continue
            assert basename(f"Pennine Foods {spelling}") == "Pennine Foods", spelling


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("Pennine Foods L.L.P.", ("pennine foods", "llp")),
        ("The Café Lumière Ltd", ("cafe lumiere", "ltd")),
        ("Cafe\u0301 Lumie\u0300re Limited", ("cafe lumiere", "ltd")),
        ("Smith\u00a0&  Sons, Inc.", ("smith and sons", "inc")),
        ("O’Brien Plumbing", ("obrien plumbing", "")),
        ("Acme GmbH & Co. KG", ("acme", "gmbh co kg")),
        ("Acme (UK) Ltd", ("acme uk", "ltd")),  # UK is a word of the name (NAME_WORDS)
        ("Riverside GP", ("riverside gp", "")),
        ("Ltd", ("ltd", "")),
        ("The", ("the", "")),
        ("", ("", "")),
    ],
)
def test_name_parts(name: str, parts: tuple[str, str]) -> None:
    assert name_parts(name) == parts


def _resolve(autotask: list[str], halopsa: list[str], **kw: Any) -> dict[str, Any]:
    found = resolve(
        "client",
        [_entity(n, n) for n in autotask],
        [_entity(n, n, "h:") for n in halopsa],
        kw.get("mappings", []),
        60,
    )
    return {r.halopsa_label: r for r in found}


def test_a_name_two_autotask_clients_share_is_never_paired() -> None:
    found = _resolve(["Acme Ltd", "Acme Inc"], ["Acme Limited", "Acme, Inc.", "ACME", "Acme LLC"])
    assert found["Acme Limited"].autotask_key == "Acme Ltd"
    assert found["Acme, Inc."].autotask_key == "Acme Inc"
    for name in ("ACME", "Acme LLC"):
        assert found[name].autotask_key is None and found[name].ambiguous
        assert found[name].suggestion is None
        assert found[name].note == (
            "matches 2 Autotask clients by name (Acme Inc; Acme Ltd) and is not paired: "
            f"add a mapping row client,<Autotask client>,{name}"
        )
    # Two Autotask clients with the same name, told apart by their ids.
    autotask = [Entity("1", ("1",), ("Acme Ltd",)), Entity("2", ("2",), ("ACME LIMITED",))]
    (only,) = resolve("client", autotask, [_entity("x", "Acme Ltd", "h:")], [], 60)
    assert only.autotask_key is None
    assert only.note == (
        "matches 2 Autotask clients by name (ACME LIMITED; Acme Ltd) and is not paired: "
        "add a mapping row client,<Autotask client>,Acme Ltd"
    )
    # A mapping row settles it.
    mapping = Mapping("client", "2", "Acme Ltd", "m.csv", 1)
    (only,) = resolve("client", autotask, [_entity("x", "Acme Ltd", "h:")], [mapping], 60)
    assert (only.autotask_key, only.method) == ("2", "mapping")


def test_a_different_legal_form_is_a_suggestion_that_says_so() -> None:
    found = _resolve(["Apex Ltd"], ["Apex Inc.", "Apex", "Apex Limited"])
    assert found["Apex Inc."].autotask_key is None
    assert found["Apex Inc."].suggestion == "Apex Ltd"
    assert found["Apex Inc."].basis == "differs only in legal form (inc / ltd)"
    assert found["Apex Inc."].score is not None and found["Apex Inc."].score < 100
    assert found["Apex Limited"].autotask_key == "Apex Ltd"
    # HaloPSA's Apex beside its Apex Limited is another client: only suggested.
    assert found["Apex"].autotask_key is None
    assert found["Apex"].suggestion == "Apex Ltd"
    assert found["Apex"].basis == "differs only in legal form (none / ltd)"
    # No legal form on one side contradicts nothing: the only Apex is Apex.
    alone = _resolve(["Apex Ltd"], ["Apex", "Apex Inc."])
    assert alone["Apex"].autotask_key == "Apex Ltd"


def test_a_word_cleanco_lists_as_a_form_but_names_end_with_keeps_names_apart() -> None:
    """Kingsway and Kingsway UK, Riverside and Riverside GP (a doctors' practice), Harbour ENT
    (a clinic), Cedar Private: the last word is the name's, so the bare name is not paired
    with it by base name (it is suggested, loudly)."""
    autotask = ["Kingsway UK", "Riverside GP", "Harbour ENT", "Cedar Private", "Acme UK Ltd"]
    found = _resolve(autotask, ["Kingsway", "Riverside", "Harbour", "Cedar", "Acme Ltd"])
    for name in ("Kingsway", "Riverside", "Harbour", "Cedar", "Acme Ltd"):
        assert found[name].autotask_key is None, name
    assert _resolve(["Kingsway UK Ltd"], ["Kingsway UK"])["Kingsway UK"].autotask_key == (
        "Kingsway UK Ltd"
    )


def test_nothing_similar_says_so() -> None:
    found = _resolve(["Pemberton & Sons Joinery"], ["PSJ Woodworks Ltd"])
    assert found["PSJ Woodworks Ltd"].suggestion is None
    assert found["PSJ Woodworks Ltd"].note == (
        "no similar Autotask client name (none scores 60 or more)"
    )


def test_a_typo_is_suggested_and_the_legal_form_breaks_the_tie() -> None:
    found = _resolve(["Harbour Marine Ltd", "Harbour Marine Inc"], ["Harbor Marine Inc."])
    assert found["Harbor Marine Inc."].suggestion == "Harbour Marine Inc"
    assert found["Harbor Marine Inc."].basis == "name similarity 96.3"


def test_item_and_contract_names_ignore_spacing_case_and_punctuation() -> None:
    autotask = [Entity("1", ("1",), ("Backup (per TB)",)), Entity("2", ("2",), ("Support Co",))]
    halopsa = [
        Entity("h1", (), ("  backup\u00a0PER  tb ",)),
        Entity("h2", (), ("Support Company",)),
    ]
    found = {r.halopsa_key: r.autotask_key for r in resolve("item", autotask, halopsa, [], 60)}
    # Items have no legal forms: "Co" and "Company" are still one spelling of one word.
    assert found == {"h1": "1", "h2": "2"}


def test_name_parts_keep_the_legal_form() -> None:
    assert name_parts("Acme Ltd") != name_parts("Acme Inc")
    assert name_parts("ACME L.T.D.") == name_parts("Acme Limited") == ("acme", "ltd")


def test_ambiguity_note_quotes_a_name_with_a_comma() -> None:
    note = ambiguity_note("client", "Smith, Jones & Co", ["Smith Jones Inc", "Smith Jones Ltd"], 2)
    assert note.endswith('add a mapping row client,<Autotask client>,"Smith, Jones & Co"')


def _series(
    queries: list[str], q_forms: list[str], candidates: list[str], c_forms: list[str]
) -> tuple[pl.Series, pl.Series, pl.Series, pl.Series]:
    """best_matches' columns from lists."""
    q, qf, c, cf = (pl.Series(v, dtype=pl.String) for v in (queries, q_forms, candidates, c_forms))
    return q, qf, c, cf


def test_suggestions_at_scale_are_bounded_and_find_typos() -> None:
    """Above PAIR_BUDGET a query meets only candidates sharing a rare block with it (the bench
    measures 100k unmapped names against 200k): a one-word typo still finds its name."""
    rng = random.Random(7)
    syllables = ["ka", "lo", "mer", "tin", "ash", "bro", "vel", "den", "qui", "rho", "sta", "pe"]

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))

    trades = ["dental", "marine", "foods"]
    candidates = [f"{word()} {word()} {rng.choice(trades)}" for _ in range(20_000)]
    typos = [c.replace("a", "e", 1) for c in candidates[:3_000]]
    queries = typos + [f"{word()} {word()} dental" for _ in range(3_000)]
    assert len(queries) * len(candidates) > PAIR_BUDGET
    start = time.perf_counter()
    found = best_matches(
        *_series(queries, [""] * len(queries), candidates, [""] * len(candidates)), 60
    )
    assert time.perf_counter() - start < 20
    missed = [
        (q, c)
        for (q, c), (index, score) in zip(
            zip(typos, candidates, strict=False), found.iter_rows(), strict=False
        )
        if score < round(fuzz.token_sort_ratio(q, c), 1) and fuzz.token_sort_ratio(q, c) >= 70
    ]
    assert len(missed) < len(typos) // 100, missed[:5]


def test_the_report_lists_a_collision_with_its_message(tmp_path: Path) -> None:
    folder = FIXTURES / "cycles" / "name_quirks"
    result = invoke(
        "--workspace",
        tmp_path / "ws.duckdb",
        "run",
        "--cycle",
        "2026-11",
        "--currency",
        "GBP",
        "--autotask",
        folder / "autotask.csv",
        "--halopsa",
        folder / "halopsa.csv",
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 1, result.output
    unmapped = read_json(tmp_path / "out" / "summary.json")["unmapped"]
    note = (
        "matches 2 Autotask clients by name (Acme Inc; Acme Ltd) and is not paired: "
        "add a mapping row client,<Autotask client>,ACME"
    )
    assert {"kind": "client", "value": "ACME", "suggestion": None, "basis": note}.items() <= (
        next(u for u in unmapped if u["value"] == "ACME").items()
    )
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert note.replace("<", "&lt;").replace(">", "&gt;") in html


@pytest.mark.parametrize("budget", [PAIR_BUDGET, 0], ids=["all pairs", "blocked"])
def test_best_match_is_the_highest_score_then_the_same_form_then_the_first(
    budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each query gets the candidate a plain loop over all of them picks, among many equal
    scores (repeated names, forms on either side): every pair scored, or (budget 0) the pairs
    that share a block, here all of them (every name holds "acme", 100 candidates at most)."""
    monkeypatch.setattr(crosswalk, "PAIR_BUDGET", budget)
    rng = random.Random(3)
    words = ["apex", "kestrel", "dental", "marine", "foods", "green", "finch"]
    forms = ["", "ltd", "inc"]

    def name() -> str:
        return " ".join(["acme", *rng.sample(words, rng.randint(0, 2))])

    candidates = [name() for _ in range(100)]
    c_forms = [rng.choice(forms) for _ in candidates]
    queries = [name() for _ in range(200)]
    q_forms = [rng.choice(forms) for _ in queries]
    found = best_matches(*_series(queries, q_forms, candidates, c_forms), 60)
    for query, form, (index, score) in zip(queries, q_forms, found.iter_rows(), strict=True):
        # float32 as the scores are held, then the legal form, then the first.
        scores = [
            float(
                pl.Series([fuzz.token_sort_ratio(query, c, score_cutoff=60)], dtype=pl.Float32)[0]
            )
            for c in candidates
        ]
        keys = [(s, form == f) for s, f in zip(scores, c_forms, strict=True)]
        best = max(range(len(keys)), key=lambda i: (keys[i], -i))
        expected = (best, round(scores[best], 1)) if scores[best] > 0 else (-1, 0.0)
        assert (index, score) == expected, query
    # None scores at all.
    assert best_matches(*_series(["xyz"], [""], ["acme"], [""]), 60).rows() == [(-1, 0.0)]


def test_without_suggest_an_unmapped_name_is_left_without_a_search() -> None:
    autotask = [_entity(n, n) for n in ("Harbour Marine Ltd", "Apex Ltd")]
    halopsa = [_entity(n, n, "h:") for n in ("Harbor Marine Inc.", "Apex Inc.")]
    found = {r.halopsa_label: r for r in resolve("client", autotask, halopsa, [], 60, False)}
    # No similar-name search: neither a suggestion nor the note that none scores enough.
    assert found["Harbor Marine Inc."].method == "unmapped"
    assert found["Harbor Marine Inc."].suggestion is None
    assert found["Harbor Marine Inc."].note is None
    # What needs no search is still said: a name that differs only in legal form.
    assert found["Apex Inc."].suggestion == "Apex Ltd"
    searched = {r.halopsa_label: r for r in resolve("client", autotask, halopsa, [], 60)}
    assert searched["Harbor Marine Inc."].suggestion == "Harbour Marine Ltd"
