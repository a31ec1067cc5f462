"""A quarantine reason quotes a cell as Python's repr does (validate.python_repr, a column at a
time); quarantine.csv depends on it byte for byte."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from reconcile.validate import python_repr

CELLS = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(list("ab1 .,$()-'\"\\\t\n\x7fé€\u200b\u00a0")), max_size=8),
    st.text(max_size=8),
)


@given(st.lists(CELLS, max_size=20))
def test_python_repr_is_repr(cells: list[str | None]) -> None:
    assert python_repr(pl.Series("cell", cells, dtype=pl.String)).to_list() == [
        repr(c) for c in cells
    ]
