"""Every rule's cases file: named cases of inline lines in, exact findings out."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from rulecases import RULES, reconcile_case

from reconcile.config import Config
from reconcile.rules import RULES_DIR

CASE_FILES = sorted(RULES_DIR.glob("*.cases.yml"))


def _cases() -> list[Any]:
    params = []
    for path in CASE_FILES:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        code = path.name.removesuffix(".cases.yml")
        for name, case in data["cases"].items():
            params.append(pytest.param(code, case, data.get("config", {}), id=f"{code}-{name}"))
    return params


def _money(value: Any) -> str | None:
    return None if value is None else str(Decimal(str(value)).quantize(Decimal("0.01")))


@pytest.mark.parametrize(("code", "case", "shared"), _cases())
def test_rule_case(code: str, case: dict[str, Any], shared: dict[str, Any]) -> None:
    config = Config(**{**shared, **case.get("config", {})})
    findings = reconcile_case(case, config).filter(rule=code)
    got = [
        {
            "autotask_refs": sorted(row["autotask_refs"] or []),
            "halopsa_refs": sorted(row["halopsa_refs"] or []),
            "autotask_amount": _money(row["autotask_amount"]),
            "halopsa_amount": _money(row["halopsa_amount"]),
            "difference": _money(row["difference"]),
            "severity": row["severity"],
        }
        for row in findings.iter_rows(named=True)
    ]
    expected = [
        {
            "autotask_refs": sorted(str(r) for r in e.get("autotask_refs", [])),
            "halopsa_refs": sorted(str(r) for r in e.get("halopsa_refs", [])),
            "autotask_amount": _money(e.get("autotask_amount")),
            "halopsa_amount": _money(e.get("halopsa_amount")),
            "difference": _money(e.get("difference")),
            "severity": e.get(
                "severity", next(r.default_severity for r in RULES if r.code == code)
            ),
        }
        for e in case.get("expect") or []
    ]

    def key(f: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(f["autotask_refs"]), tuple(f["halopsa_refs"])

    assert sorted(got, key=key) == sorted(expected, key=key)
    # Where a case states the message, it is asserted word for word.
    messages = {
        key(g): row["message"] for g, row in zip(got, findings.iter_rows(named=True), strict=True)
    }
    for want, e in zip(expected, case.get("expect") or [], strict=True):
        if "message" in e:
            assert messages[key(want)] == e["message"]


def test_every_rule_has_a_firing_and_a_silent_case() -> None:
    for rule in RULES:
        path = RULES_DIR / f"{rule.code}.cases.yml"
        assert path.exists(), f"{rule.code} has no cases file"
        cases = yaml.safe_load(path.read_text(encoding="utf-8"))["cases"].values()
        assert any(c.get("expect") for c in cases), f"{rule.code} has no firing case"
        assert any(not c.get("expect") for c in cases), f"{rule.code} has no silent case"


def test_every_rule_explains_itself() -> None:
    for rule in RULES:
        assert rule.title and rule.title[0].isupper()
        assert "**Example:**" in rule.explanation and "**What to do:**" in rule.explanation
        assert rule.default_severity in ("blocker", "warning", "info")


def test_rules_dir_holds_only_rules_and_cases() -> None:
    for path in Path(RULES_DIR).iterdir():
        assert (
            path.suffix == ".py" or path.name.endswith(".cases.yml") or path.name == "__pycache__"
        )
