"""reconcile: prove that HaloPSA bills exactly what Autotask billed, line by line."""

import os
from pathlib import Path

__version__ = "0.1.0"

# polars' allocator (its own jemalloc, configured by this variable when polars is first
# imported, which is after this: polars puts its defaults first, the variable's value after,
# which wins) hands the memory it frees back to the system at once, not over the following
# 0.5-1.5 s (polars' decay): a large run frees chunk after chunk of 100,000 rows, and memory
# freed but not yet handed back counts in its peak (at 10M lines a side about 140 MiB more
# held after the crosswalk's first step). A value the environment sets is kept.
POLARS_ALLOCATOR = "dirty_decay_ms:0,muzzy_decay_ms:0"
os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR)


def bundled_dir(name: str) -> Path:
    """rules/ and reports/ live at the top of a checkout, where people edit them; an installed
    wheel carries them inside the package as _rules/ and _reports/."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / name
    return checkout if checkout.is_dir() else package / f"_{name}"
