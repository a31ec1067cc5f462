"""The fuzzy stage (match._fuzzy: polars frames, one rapidfuzz call, rounds of mutual best
pairs) pairs exactly as the walk it replaced: per client, every pair of texts scored (but never
two lines of items resolved to different Autotask items), the candidates sorted best first and
taken one by one, each line once."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

from reconcile import match
from reconcile.crosswalk import normalise_text

Line = tuple[int, str, str, bool, str, str | None, str | None, Decimal, str, bool]
LINE_COLUMNS = (
    "uid BIGINT, ref VARCHAR, c_key VARCHAR, c_ok BOOLEAN, currency VARCHAR, "
    "item_name VARCHAR, description VARCHAR, net_amount DECIMAL(18,2), i_key VARCHAR, "
    "i_ok BOOLEAN"
)
Row = tuple[str, str, str, int]  # grp_line: gid, stage, side, uid

TEXTS = [None, "", "Managed Workstation", "managed  workstation", "Managed Server",
         "Backup per TB", "backup & restore", "Backup and Restore Ltd", "Café Wi-Fi",
         "CAFE WIFI", "Ｆｉｒｅｗａｌｌ", "Firewall mgmt", "Ωmega licence",
         "M365 E3 [Nov]"]  # fmt: skip
AMOUNTS = [Decimal(v) for v in ("0", "0.01", "-45.00", "45.00", "44.99", "90.00", "1234.56",
                                "-0.01", "99999999.99", "2500000000.00")]  # fmt: skip


def _walk(a: list[Line], h: list[Line], min_score: float) -> list[Row]:
    """The replaced implementation, as it was: the reference the stage is tested against."""

    def key(line: Line) -> str:
        return f"{line[2]}|{line[4]}"

    def text(line: Line) -> str:
        return f"{line[5] or ''} {line[6] or ''}"

    def left(side: list[Line], other: list[Line]) -> dict[str, list[Line]]:
        others = {key(o) for o in other if o[3]}
        by_client: dict[str, list[Line]] = {}
        for line in sorted(side, key=lambda x: x[1]):
            if line[3] and key(line) in others:
                by_client.setdefault(key(line), []).append(line)
        return by_client

    left_a, left_h = left(a, h), left(h, a)
    pairs = []
    for client in sorted(left_a.keys() & left_h.keys()):
        la, lh = left_a[client], left_h[client]
        scores = cdist(
            [normalise_text(text(t)) for t in la],
            [normalise_text(text(t)) for t in lh],
            scorer=fuzz.token_set_ratio,
        )
        for i, j in zip(*np.nonzero(scores.astype(np.float64) >= min_score), strict=True):
            if lh[j][9] and la[i][8] != lh[j][8]:
                continue  # two known items, different ones: another product, never a pair
            a_net, h_net = la[i][7], lh[j][7]
            scale = max(abs(a_net), abs(h_net), 1)
            closeness = 1 - min(1.0, float(abs(a_net - h_net) / scale))
            score = 0.8 * float(scores[i][j]) + 20 * closeness
            pairs.append((-score, la[i][1], lh[j][1], la[i][0], lh[j][0]))
    used_a: set[int] = set()
    used_h: set[int] = set()
    rows: list[Row] = []
    for _, _, _, a_uid, h_uid in sorted(pairs):
        if a_uid in used_a or h_uid in used_h:
            continue
        used_a.add(a_uid)
        used_h.add(h_uid)
        rows += [(f"fuzzy:{a_uid}", "fuzzy", "a", a_uid), (f"fuzzy:{a_uid}", "fuzzy", "h", h_uid)]
    return rows


@st.composite
def sides(draw: st.DrawFn) -> tuple[list[Line], list[Line]]:
    """Both sides' leftover lines: a few clients and currencies, texts and amounts that repeat
    (ties on score, decided by ref), refs in another order than uids, unresolved HaloPSA lines
    and items (every Autotask item is known; a HaloPSA one resolved or not)."""
    made = []
    for side, first_uid in (("a", 10_000_000_001), ("h", 10_000_000_001)):
        count = draw(st.integers(0, 14))
        refs = draw(st.permutations([f"{side}{n:02d}" for n in range(count)]))
        made.append(
            [
                (
                    first_uid + n,
                    refs[n],
                    draw(st.sampled_from(["c1", "c2", "c3"])),
                    side == "a" or draw(st.integers(0, 5)) > 0,
                    draw(st.sampled_from(["GBP", "GBP", "EUR"])),
                    draw(st.sampled_from(TEXTS)),
                    draw(st.sampled_from(TEXTS)),
                    draw(st.sampled_from(AMOUNTS)),
                    draw(st.sampled_from(["i1", "i2", "h:i9"])),
                    side == "a" or draw(st.booleans()),
                )
                for n in range(count)
            ]
        )
    return made[0], made[1]


@settings(max_examples=200)
@given(sides(), st.sampled_from([0.0, 40.0, 60.0, 85.5, 100.0]))
def test_fuzzy_pairs_as_the_walk_did(
    lines: tuple[list[Line], list[Line]], min_score: float
) -> None:
    a, h = lines
    con = duckdb.connect()
    for side, rows in (("a", a), ("h", h)):
        con.execute(f"CREATE TEMP TABLE {side}_left ({LINE_COLUMNS})")
        if rows:
            con.executemany(f"INSERT INTO {side}_left VALUES ({', '.join('?' * 10)})", rows)
    con.execute("CREATE TEMP TABLE grp_line (gid VARCHAR, stage VARCHAR, side VARCHAR, uid BIGINT)")
    match._fuzzy(con, min_score)
    found = con.sql("SELECT gid, stage, side, uid FROM grp_line ORDER BY rowid").fetchall()
    assert found == _walk(a, h, min_score)
