"""What the command line needs before a command does any work: the defaults its help shows and
the check of --cycle. Light to import (no polars, DuckDB, pandera or pydantic), so that
`reconcile --help`, a usage error or a mistyped cycle answers at once."""

from __future__ import annotations

import re
from pathlib import Path

from reconcile.errors import InputError

DEFAULT_TIMEZONE = "Europe/London"
DEFAULT_MEMORY_LIMIT = "400MB"
DEFAULT_WORKSPACE = Path("reconcile.duckdb")
CYCLE_PATTERN = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def check_cycle(cycle: str) -> str:
    """The cycle as given, when it is a month (YYYY-MM); else InputError naming --cycle."""
    if not CYCLE_PATTERN.fullmatch(cycle):
        raise InputError(
            "--cycle",
            "the billing cycle is not a month",
            expected="YYYY-MM, e.g. 2026-11",
            got=cycle,
        )
    return cycle
