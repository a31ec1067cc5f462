"""How counts read in messages to people: "1 blocker", "2 blockers", "0 entries"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun agreeing with it: `noun` for exactly 1, else `plural` (default: `noun`
    + "s"). counted(1, "row") is "1 row", counted(3, "entry", "entries") "3 entries"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
