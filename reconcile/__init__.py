"""reconcile: prove that HaloPSA bills exactly what Autotask billed, line by line."""

from pathlib import Path

__version__ = "0.1.0"


def bundled_dir(name: str) -> Path:
    """rules/ and reports/ live at the top of a checkout, where people edit them; an installed
    wheel carries them inside the package as _rules/ and _reports/."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / name
    return checkout if checkout.is_dir() else package / f"_{name}"
