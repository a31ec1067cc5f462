"""reconcile.toml: tolerances, severities, expected differences. Defaults are strict."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from reconcile.errors import InputError

SEVERITIES = ("blocker", "warning", "info")


@dataclass(frozen=True)
class Config:
    """Everything a run may be told; a missing file means the strict defaults."""

    currency: str | None = None
    timezone: str = "Europe/London"
    date_format: str | None = None
    number_format: str | None = None  # "point" or "comma": the exports' decimal mark
    retired_items: tuple[str, ...] = ()
    retired_clients: tuple[str, ...] = ()
    fuzzy_min_score: float = 60.0
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str | None = None

    def rule(self, code: str) -> dict[str, Any]:
        return self.rules.get(code, {})


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), "the configuration is not valid TOML", got=str(exc)) from None
    cycle = data.get("cycle", {})
    expected = data.get("expected", {})
    match = data.get("match", {})
    rules = data.get("rules", {})
    for code, settings in rules.items():
        severity = settings.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise InputError(
                str(path),
                f"rule {code} has an unknown severity",
                expected=" or ".join(SEVERITIES),
                got=str(severity),
            )
    return Config(
        currency=cycle.get("currency"),
        timezone=data.get("halopsa", {}).get("timezone", "Europe/London"),
        date_format=cycle.get("date_format"),
        number_format=_number_format(path, cycle.get("number_format")),
        retired_items=tuple(expected.get("retired_items", ())),
        retired_clients=tuple(expected.get("retired_clients", ())),
        fuzzy_min_score=float(match.get("fuzzy_min_score", 60.0)),
        rules=rules,
        source=str(path),
    )


def _number_format(path: Path, value: Any) -> str | None:
    if value is None:
        return None
    if value in ("point", "comma"):
        return str(value)
    raise InputError(
        str(path),
        "cycle.number_format is not a decimal mark",
        expected='"point" or "comma"',
        got=str(value),
    )


def decimal_setting(config: Config, code: str, key: str, default: str) -> Decimal:
    value = config.rule(code).get(key, default)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise InputError(
            config.source or "reconcile.toml",
            f"rules.{code}.{key} is not a number",
            expected="a decimal such as 0.01",
            got=str(value),
        ) from None
