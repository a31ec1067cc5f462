"""A small parallel cycle for the finance workflow's tests: Autotask and HaloPSA CSV exports
written as people hand them over, re-exported with HaloPSA's lines changed between runs, and
reconciled through the real CLI into a real workspace."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from click.testing import Result

from conftest import AT_HEADER, HALO_HEADER, invoke, read_json

CENT, VAT = Decimal("0.01"), Decimal("0.20")
PERIOD_US, PERIOD_UK = "11/01/2026,11/30/2026", "01/11/2026,30/11/2026"
# Autotask's lines: (ref, client, item, quantity, unit price).
AUTOTASK = [
    ("A1", "Acme Ltd", "Managed Server", 1, "100.00"),
    ("A2", "Acme Ltd", "Firewall management", 2, "42.50"),
    ("A3", "Beta LLP", "Backup", 1, "50.00"),
    ("A4", "Beta LLP", "Managed Workstation", 3, "35.00"),
]
# HaloPSA bills the firewall at the new list price (intended), has no backup line and one
# workstation too many: three blockers.
HALOPSA = {
    "H1": ("Acme Ltd", "Managed Server", 1, "100.00"),
    "H2": ("Acme Ltd", "Firewall management", 2, "45.00"),
    "H4": ("Beta LLP", "Managed Workstation", 4, "35.00"),
}


def _net(quantity: int, price: str) -> str:
    return str((quantity * Decimal(price)).quantize(CENT))


def _tax(quantity: int, price: str) -> str:
    return str((quantity * Decimal(price) * VAT).quantize(CENT))


def write_cycle(
    folder: Path,
    halopsa: dict[str, tuple[str, str, int, str]],
    autotask: list[tuple[str, str, str, int, str]] = AUTOTASK,
    periods: dict[str, str] | None = None,
) -> tuple[Path, Path]:
    """Both exports of a cycle (the small one's Autotask lines unless given); HaloPSA's lines
    as given (a re-export after fixes), each billing November unless `periods` gives its
    service period (by ref, "DD/MM/YYYY,DD/MM/YYYY")."""
    periods = periods or {}
    folder.mkdir(parents=True, exist_ok=True)
    at = folder / "autotask.csv"
    at.write_text(
        "\n".join(
            [AT_HEADER]
            + [
                f"{ref},INV-1,11/01/2026,{client},{item},{q},{p},{_net(q, p)},{_tax(q, p)},"
                f"{PERIOD_US}"
                for ref, client, item, q, p in autotask
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    halo = folder / "halopsa.csv"
    halo.write_text(
        "\n".join(
            [HALO_HEADER]
            + [
                f"{ref},NW1,01/11/2026,{client},{item},{q},{p},{_net(q, p)},{_tax(q, p)},"
                f"{periods.get(ref, PERIOD_UK)}"
                for ref, (client, item, q, p) in halopsa.items()
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return at, halo


class Cycle:
    """One workspace and output folder; each run re-exports HaloPSA as given (Autotask's lines
    are `autotask`, the small cycle's unless given)."""

    def __init__(
        self, tmp_path: Path, autotask: list[tuple[str, str, str, int, str]] = AUTOTASK
    ) -> None:
        self.tmp = tmp_path
        self.autotask = autotask
        self.ws = tmp_path / "ws.duckdb"
        self.out = tmp_path / "out"
        self.runs = 0

    def cli(self, *args: str | Path) -> Result:
        return invoke("--workspace", self.ws, *args)

    def run(
        self,
        halopsa: dict[str, tuple[str, str, int, str]],
        code: int = 1,
        *flags: str | Path,
        periods: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A run of the cycle with HaloPSA's lines as given (service periods as write_cycle
        takes them) and `flags` added (--config…)."""
        self.runs += 1
        at, halo = write_cycle(self.tmp / f"exports{self.runs}", halopsa, self.autotask, periods)
        result = self.cli(
            "run", "--cycle", "2026-11", "--autotask", at, "--halopsa", halo, "--out", self.out,
            *flags,
        )  # fmt: skip
        assert result.exit_code == code, result.output
        summary: dict[str, Any] = read_json(self.out / "summary.json")
        return summary

    def findings(self) -> dict[str, dict[str, str]]:
        """This run's discrepancies by rule (one each in this cycle)."""
        with (self.out / "discrepancies.csv").open(encoding="utf-8") as fh:
            return {r["rule"]: r for r in csv.DictReader(fh)}

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.ws)) as con:
            rows: list[tuple[Any, ...]] = con.execute(query, list(params)).fetchall()
            return rows


def accept_everything(cycle: Cycle) -> None:
    for rule, f in cycle.findings().items():
        result = cycle.cli("accept", f["id"], "--reason", f"agreed {rule}", "--by", "Ann Lee")
        assert result.exit_code == 0, result.output


HOSTILE_REASON = '=HYPERLINK("http://evil.example/","agreed")'


def signed_for_pack(cycle: Cycle) -> dict[str, Any]:
    """A cycle signed off by someone who also accepted one difference, one reason formula-like."""
    cycle.run(HALOPSA)
    found = cycle.findings()
    for rule, f in found.items():
        by, reason = (
            ("Jo Smith", HOSTILE_REASON)
            if rule == "quantity_mismatch"
            else ("Ann Lee", f"agreed {rule}")
        )
        assert cycle.cli("accept", f["id"], "--reason", reason, "--by", by).exit_code == 0
    summary = cycle.run(HALOPSA, code=0)
    signed = cycle.cli(
        "signoff", "--cycle", "2026-11", "--by", "Jo Smith", "--role", "Finance Controller",
        "--note", "Parallel cycle reviewed <b>line by line</b>",
    )  # fmt: skip
    assert signed.exit_code == 0, signed.output
    return summary
