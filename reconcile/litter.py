"""What a system or an office suite leaves in a folder someone opened: passed over where a
folder of exports is read (reconcile.load) and replaced with the rest where an output folder is
(reconcile.outputs)."""

from __future__ import annotations

# Files of these names: Finder's, Explorer's thumbnail cache and folder settings.
LITTER_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
# Files starting so: Excel's owner file beside an open workbook (`~$` + its name), LibreOffice's
# lock file (`.~lock.` + its name + `#`).
LITTER_PREFIXES = ("~$", ".~lock.")
