"""Mapping files (`--map`) as people save them: header spellings, Excel's `sep=` line and empty
rows, lines named as a text editor or spreadsheet numbers them, and rows that contradict each
other refused before any work."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, ROOT, invoke
from reconcile.crosswalk import Entity, Mapping, name_keys, read_mappings, resolve
from reconcile.errors import InputError

ROWS = [
    ("client", "Bright Smile Dental", "Bright Smile Dental Group"),
    ("client", "Acme Ltd", "ACME"),
    ("item", "Email Security – Mimecast", "Mimecast Email Security"),
]
CYCLE = FIXTURES / "cycles" / "mapping_excel_spellings"


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _values(mappings: list[Mapping]) -> list[tuple[str, str, str]]:
    return [(m.kind, m.autotask, m.halopsa) for m in mappings]


@pytest.mark.parametrize(
    "header",
    ["Kind,Autotask,HaloPSA", " KIND , Auto task ,Halo PSA", "kind,halopsa,autotask,notes"],
)
def test_header_names_are_matched_case_and_space_insensitively(tmp_path: Path, header: str) -> None:
    """The README spells the columns Kind,Autotask,HaloPSA: a Title Case header used to pass the
    header check and then fail every row as "unknown mapping kind ... got ''"; columns are
    found by name, in any order."""
    names = [h.strip().replace(" ", "").lower() for h in header.split(",")]
    body = "".join(
        ",".join(
            dict(zip(("kind", "autotask", "halopsa"), row, strict=True)).get(n, "") for n in names
        )
        + "\n"
        for row in ROWS
    )
    mappings = read_mappings([_write(tmp_path / "m.csv", f"{header}\n{body}")])
    assert _values(mappings) == ROWS
    assert [m.line for m in mappings] == [2, 3, 4]


def test_sep_line_and_empty_rows_are_passed_over_and_lines_are_the_files(tmp_path: Path) -> None:
    """Excel's `sep=,` first line is read as the exports' loader reads it, and rows left empty
    (`,,,`, a blank line) are skipped; rows are named by the line of the file they are on."""
    text = "sep=,\nkind,autotask,halopsa,note\nclient,Acme Ltd,ACME,x\n,,,\n\nclient,A,B,\n"
    mappings = read_mappings([_write(tmp_path / "m.csv", text)])
    assert [(m.line, m.autotask) for m in mappings] == [(3, "Acme Ltd"), (6, "A")]
    semicolons = _write(tmp_path / "s.csv", "sep=;\nkind;autotask;halopsa\nclient;Acme, Ltd;ACME\n")
    assert _values(read_mappings([semicolons])) == [("client", "Acme, Ltd", "ACME")]


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("sep=,\nkind,autotask\nclient,A\n", "line 2", "the mapping file has the wrong header"),
        ("kind,autotask,halopsa\nclient,A,B\n,,\ncustomer,A,B\n", "line 4", "unknown mapping kind"),
        ('kind,autotask,halopsa\nclient,"A\nB",C\nitem,,D\n', "line 4", "needs both sides"),
    ],
)
def test_refusals_name_the_line_of_the_file(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    """The header used to be "row 1" and the first data row "row 1" too: both are named by their
    line (a quoted line break inside a cell counts, as in a text editor)."""
    path = _write(tmp_path / "m.csv", text)
    with pytest.raises(InputError) as caught:
        read_mappings([path])
    message = str(caught.value)
    assert message.startswith(f"{path}, {where}") and problem in message, message


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        (
            "kind,autotask,halopsa,autotask\nclient,Pemberton & Sons Joinery,PSJ,Union Street\n",
            "line 1",
            "the column 'autotask' 2 times (columns 2 and 4)",
        ),
        (
            "sep=;\nKind;HaloPSA;Auto task;Halo PSA\nclient;A;B;C\n",
            "line 2",
            "the column 'halopsa' 2 times (columns 2 and 4)",
        ),
        ("kind,kind,autotask,halopsa\n", "line 1", "the column 'kind' 2 times (columns 1 and 2)"),
    ],
)
def test_a_header_with_a_column_twice_is_refused(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    """`kind,autotask,halopsa,autotask` was read with the first autotask column, the other left
    unread without a word: which one is meant cannot be told."""
    path = _write(tmp_path / "m.csv", text)
    with pytest.raises(InputError) as caught:
        read_mappings([path])
    message = str(caught.value)
    assert message.startswith(f"{path}, {where}: the mapping file's header has "), message
    assert problem in message and "expected each of kind,autotask,halopsa once" in message
    assert f"got '{text.splitlines()[int(where.split()[1]) - 1].replace(';', ',')}'" in message


def test_one_halopsa_value_mapped_to_two_autotask_values_is_refused(tmp_path: Path) -> None:
    """The last row used to win silently; a row repeated (in any case) is no conflict."""
    path = _write(
        tmp_path / "m.csv",
        "kind,autotask,halopsa\nclient,Acme Ltd,ACME\nclient,ACME LTD,acme\nitem,X,ACME\n"
        "client,Acme Inc,Acme\n",
    )
    with pytest.raises(InputError) as caught:
        read_mappings([path])
    assert str(caught.value) == (
        f"{path}, line 5: HaloPSA client 'Acme' is mapped to two Autotask clients: 'Acme Ltd' "
        "(line 2) and 'Acme Inc' (this line). Keep the row of the right Autotask client and "
        "delete the other."
    )
    first = _write(tmp_path / "first.csv", "kind,autotask,halopsa\nclient,Acme Ltd,ACME\n")
    again = _write(tmp_path / "again.csv", "kind,autotask,halopsa\nclient,Acme Ltd,ACME\n")
    assert len(read_mappings([first, again])) == 2
    other = _write(tmp_path / "other.csv", "kind,autotask,halopsa\n\nclient,Acme Inc,ACME\n")
    with pytest.raises(InputError) as caught:
        read_mappings([first, other])
    assert f"{other}, line 3:" in str(caught.value)
    assert f"'Acme Ltd' ({first}, line 2) and 'Acme Inc' (this line)" in str(caught.value)


def test_a_conflicting_mapping_file_stops_the_run_before_any_load(tmp_path: Path) -> None:
    mapping = _write(
        tmp_path / "m.csv", "kind,autotask,halopsa\nclient,Acme Ltd,ACME\nclient,Acme Inc,ACME\n"
    )
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", CYCLE / "autotask.csv", "--halopsa", CYCLE / "halopsa.csv",
        "--map", mapping, "--out", tmp_path / "out", "--currency", "GBP",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "loaded" not in result.output and "is mapped to two Autotask clients" in result.output


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, list[str]]:
    """ROWS as a mapping file in one of the spellings spreadsheets and people save: header
    names in any case with spaces around and inside, a BOM, a `sep=,` line, a notes column,
    blank and `,,,` rows anywhere below the header, CRLF, LF or CR line ends. Returns the text
    and each row's HaloPSA value in order."""

    def name(text: str) -> str:
        cased = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in text)
        middle = draw(st.integers(0, len(text)))
        inner = " " * draw(st.integers(0, 1))
        return " " * draw(st.integers(0, 2)) + cased[:middle] + inner + cased[middle:]

    notes = draw(st.booleans())
    header = ",".join(name(n) for n in ("kind", "autotask", "halopsa", *(["notes"] * notes)))
    empty = st.sampled_from(["", ",,", ",,,", " , , "])
    lines = [header]
    for kind, autotask, halopsa in ROWS:
        lines += draw(st.lists(empty, max_size=2))
        kind = kind.upper() if draw(st.booleans()) else kind
        lines.append(f"{kind},{autotask} , {halopsa}" + (",a note" if notes else ""))
    lines += draw(st.lists(empty, max_size=2))
    if draw(st.booleans()):
        lines.insert(0, "sep=,")
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = end.join(lines) + end * draw(st.integers(0, 1))
    return ("\ufeff" if draw(st.booleans()) else "") + text, [r[2] for r in ROWS]


@settings(max_examples=150, deadline=None)
@given(spellings())
def test_every_spelling_of_a_mapping_file_reads_the_same(spelled: tuple[str, list[str]]) -> None:
    """Whatever the spelling, the same mappings, each named by the line it is on."""
    text, halopsa = spelled
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.csv"
        path.write_bytes(text.encode("utf-8"))
        mappings = read_mappings([path])
    assert _values(mappings) == ROWS
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    assert [lines[m.line - 1].split(",")[2].strip() for m in mappings] == halopsa


def test_mapping_values_conflict_as_names_compare(tmp_path: Path) -> None:
    """Values compare as the crosswalk compares names: 'Acme Ltd.' and 'acme  ltd' are one
    HaloPSA value (mapped to two Autotask clients: refused), and a row repeated with a trailing
    dot or an en dash for a hyphen is the same row (no conflict)."""
    path = _write(
        tmp_path / "m.csv",
        "kind,autotask,halopsa\nclient,Acme Ltd,Acme Ltd.\nclient,Acme Inc,acme  ltd\n",
    )
    with pytest.raises(InputError, match="line 3: HaloPSA client 'acme  ltd' is mapped to two"):
        read_mappings([path])
    same = _write(
        tmp_path / "same.csv",
        "kind,autotask,halopsa\nitem,Backup - Server,Server Backup\n"
        "item,Backup \u2013 Server.,server backup.\n",
    )
    assert len(read_mappings([same])) == 2


# How people write a value the export spells "Backup - Server" / "Acme Ltd": case, spacing
# (repeated, leading, trailing, non-breaking), a hyphen or a dash, a trailing dot.
DASHES = st.sampled_from(["-", "\u2013", "\u2014", " - ", "\u00a0\u2013 "])


@st.composite
def written(draw: st.DrawFn, words: list[str], joins: st.SearchStrategy[str]) -> str:
    cased = [draw(st.sampled_from([w, w.upper(), w.lower()])) for w in words]
    text = cased[0] + "".join(draw(joins) + w for w in cased[1:])
    ends = st.sampled_from(["", " ", "\u00a0"])
    return draw(ends) + text + draw(st.sampled_from(["", "."])) + draw(ends)


@settings(max_examples=60, deadline=None)
@given(
    item=written(["Backup", "Server"], DASHES),
    client=written(["Acme", "Ltd"], st.sampled_from([" ", "  ", "\u00a0"])),
)
def test_a_mapping_value_spelled_otherwise_applies(item: str, client: str) -> None:
    """A mapping row whose values differ from the entities' names only in spelling maps them;
    a value with another word maps nothing."""
    autotask = [
        Entity(key="1", ids=(), names=("Backup - Server",)),
        Entity(key="2", ids=(), names=("Acme Ltd",)),
    ]
    halopsa = [Entity(key="h:1", ids=(), names=("Server Backup",))]
    rows = [
        Mapping("item", item, "server backup.", "m.csv", 2),
        Mapping("item", item + "s", "Other Backup", "m.csv", 3),
    ]
    found = resolve("item", autotask, [*halopsa, Entity("h:2", (), ("Other Backup",))], rows, 60)
    assert [(r.halopsa_key, r.autotask_key, r.method) for r in found] == [
        ("h:1", "1", "mapping"),
        ("h:2", None, "unmapped"),
    ]
    clients = [Entity(key="h:9", ids=(), names=("ACME Group",))]
    mapped = resolve(
        "client", autotask, clients, [Mapping("client", client, "Acme Group", "m", 2)], 60
    )
    assert [(r.autotask_key, r.method) for r in mapped] == [("2", "mapping")]


@settings(max_examples=60, deadline=None)
@given(
    separator=st.sampled_from([",", ";", "\t"]),
    spelled=spellings(),
)
def test_the_header_line_says_the_separator(separator: str, spelled: tuple[str, list[str]]) -> None:
    """A mapping file without a `sep=` line is read by the separator under which its header
    line holds the three columns (a comma, a semicolon as European Excel saves CSV, a tab);
    a value holding one of the others is read as it is."""
    text, halopsa = spelled  # a sep=, line becomes a sep= line of the separator
    text = text.replace(",", separator).replace("Acme Ltd", '"Acme, Ltd;"')
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.csv"
        path.write_bytes(text.encode("utf-8"))
        mappings = read_mappings([path])
    assert [m.halopsa for m in mappings] == halopsa
    assert [m.autotask for m in mappings][1] == "Acme, Ltd;"


@pytest.mark.parametrize(
    "header", ["kind|autotask|halopsa", "kind;autotask", "kind autotask halopsa"]
)
def test_a_header_no_separator_fits_is_refused(tmp_path: Path, header: str) -> None:
    path = _write(tmp_path / "m.csv", f"{header}\nclient|A|B\n")
    with pytest.raises(InputError, match="line 1: the mapping file has the wrong header"):
        read_mappings([path])


@pytest.mark.parametrize("kind", ["client", "item", "contract"])
def test_the_readme_says_how_mapping_values_compare(kind: str) -> None:
    """Each "`A` is `B`" and "`A` is not `B`" of the README's mapping file paragraph holds as
    name_keys compares values of every kind (it said `Acme Ltd.` is not `Acme Ltd`, and that
    only case and outer spaces were ignored, which name_keys never did)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = readme.split("**The mapping file.**")[1].split("\n\n")[0]
    pairs = re.findall(r"`([^`]+)` is (not )?`([^`]+)`", paragraph.replace("\n", " "))
    assert len(pairs) >= 9, pairs
    for left, negated, right in pairs:
        keys = name_keys(kind, pl.Series([left, right]))
        assert (keys[0] != keys[1]) == bool(negated), (left, negated, right, keys.to_list())
    assert "`!!!`" in paragraph and name_keys(kind, pl.Series([" !!! ", "!!!"])).n_unique() == 1
