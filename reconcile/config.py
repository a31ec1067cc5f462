"""Settings: one typed, validated model built from defaults, reconcile.toml, the environment
(`RECONCILE_*`) and command-line flags, in that order of precedence. Defaults are strict.

Every key is known: an unknown section, key or rule code is refused (exit 2) naming the closest
valid name, and a bad value is refused naming where it came from (file and key, environment
variable or flag), what was expected and what was given. Rule codes and their tolerance keys
come from the rule files' CONFIG, so a new rule's settings are checked without touching this
file. The loader's `Settings` (what a load may be told that a file does not say) is derived from
the same model, with the same field types.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

from reconcile.amounts import ISO_CURRENCIES
from reconcile.errors import InputError
from reconcile.options import DEFAULT_MEMORY_LIMIT, DEFAULT_TIMEZONE

if TYPE_CHECKING:
    from reconcile.rules import Rule

SEVERITIES = ("blocker", "warning", "info")
Severity = Literal["blocker", "warning", "info"]
DateFormat = Literal["us", "uk", "iso"]
NumberFormat = Literal["point", "comma"]
MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*[KMGT]i?B", flags=re.IGNORECASE)


# --- value types: each checks and normalises once, and says what it expects ------------------


def _currency(value: object) -> str:
    code = value.strip().upper() if isinstance(value, str) else None
    if code not in ISO_CURRENCIES:
        raise ValueError("a three-letter ISO 4217 currency code such as GBP")
    return code


def _timezone(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("an IANA time zone such as Europe/London")
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("an IANA time zone such as Europe/London") from None
    return value.strip()


# Tolerances are bounded to what the rules' SQL computes exactly: `within` (reconcile/rules.py)
# takes `abs_tol + rel_tol × |a|` in DECIMAL(38, 10), `a` a line's money or quantity (at most
# DECIMAL(18, 4)): a tolerance below 10^9 with at most 10 decimal places always fits, never
# rounded; a larger one (rel_tol 1e17) or a finer one (1e-30) made DuckDB fail mid-run (exit 3).
TOLERANCE_PLACES = 10
TOLERANCE_LIMIT = Decimal(10) ** 9
TOLERANCE_EXPECTED = (
    f"a decimal from 0 to {TOLERANCE_LIMIT - 1} with at most {TOLERANCE_PLACES} decimal places,"
    ' such as "0.01"'
)


def _tolerance(value: object) -> Decimal:
    """A non-negative decimal below TOLERANCE_LIMIT with at most TOLERANCE_PLACES decimal
    places: "0.01", 0.01 or 0 (a TOML float is read as written)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(TOLERANCE_EXPECTED)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(TOLERANCE_EXPECTED) from None
    if not number.is_finite() or number < 0 or number >= TOLERANCE_LIMIT:
        raise ValueError(TOLERANCE_EXPECTED)
    if number != number.quantize(Decimal(1).scaleb(-TOLERANCE_PLACES)):
        raise ValueError(TOLERANCE_EXPECTED)
    return number


def _memory(value: object) -> str:
    if not isinstance(value, str) or not MEMORY_SIZE.fullmatch(value.strip()):
        raise ValueError("a memory size such as 400MB or 2GB")
    return value.strip()


def _score(value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ValueError("a number from 0 to 100")
    return value


def _names(value: object) -> object:
    if isinstance(value, str):
        raise ValueError(f'a list of names such as ["{value}"], not a single string')
    return value


Currency = Annotated[str, BeforeValidator(_currency)]
TimeZone = Annotated[str, BeforeValidator(_timezone)]
Tolerance = Annotated[Decimal, BeforeValidator(_tolerance)]
MemorySize = Annotated[str, BeforeValidator(_memory)]
Score = Annotated[float, Field(strict=False), AfterValidator(_score)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
NameGroups = Annotated[tuple[Names, ...], BeforeValidator(_names)]


def _setting(default: Any, expected: str, doc: str) -> Any:
    return Field(default, description=doc, json_schema_extra={"expected": expected})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CycleSettings(Section):
    currency: Currency | None = _setting(
        None,
        "a three-letter ISO 4217 code such as GBP",
        "Currency of exports that state none (Autotask XML/CSV). Required when an export "
        "states no currency.",
    )
    date_format: DateFormat | None = _setting(
        None,
        '"us", "uk" or "iso"',
        "How the exports write dates, when detection should not decide.",
    )
    number_format: NumberFormat | None = _setting(
        None, '"point" or "comma"', "The exports' decimal mark, when detection should not decide."
    )


class HalopsaSettings(Section):
    timezone: TimeZone = _setting(
        DEFAULT_TIMEZONE,
        "an IANA time zone such as Europe/London",
        "HaloPSA tenant time zone (its API datetimes are naive UTC).",
    )


class ExpectedSettings(Section):
    retired_items: Names = _setting(
        (),
        'a list of names such as ["Legacy Tape Backup"]',
        "Items deliberately not migrated: Autotask-only lines are reported as expected.",
    )
    retired_clients: Names = _setting(
        (),
        'a list of names such as ["Old Client Ltd"]',
        "Clients deliberately not migrated: their Autotask-only lines are expected.",
    )


class MatchSettings(Section):
    fuzzy_min_score: Score = _setting(
        60.0,
        "a number from 0 to 100",
        "Least name/description similarity for a suggestion or a fuzzy pair.",
    )


class WorkspaceSettings(Section):
    memory_limit: MemorySize = _setting(
        DEFAULT_MEMORY_LIMIT,
        "a memory size such as 400MB or 2GB",
        "DuckDB's share of memory; it spills to disk beyond it.",
    )


class OutputsSettings(Section):
    workbook: Annotated[bool, Field(strict=True)] = _setting(
        True,
        "true or false",
        "Write discrepancies.xlsx, the Excel workbook (about a third of a 1M-line run's CPU "
        "time); off, `reconcile workbook OUT_DIR` writes it later from the run's folder.",
    )


class Config(BaseModel):
    """Everything a run may be told; nothing given means the strict defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cycle: CycleSettings = CycleSettings()
    halopsa: HalopsaSettings = HalopsaSettings()
    expected: ExpectedSettings = ExpectedSettings()
    match: MatchSettings = MatchSettings()
    workspace: WorkspaceSettings = WorkspaceSettings()
    outputs: OutputsSettings = OutputsSettings()
    # Per rule code: the values set explicitly (severity, tolerances, options), validated
    # against the rule's CONFIG; a rule applies its own defaults for the rest.
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source: str | None = Field(default=None, exclude=True)  # the reconcile.toml read, if any
    # Where each setting given other than by the file came from: section.key -> the variable
    # (RECONCILE_CURRENCY) or flag (--currency) that set it (load_config).
    origins: dict[str, str] = Field(default_factory=dict, exclude=True)

    @field_validator("rules", mode="before")
    @classmethod
    def _known_rules(cls, value: object) -> dict[str, dict[str, Any]]:
        model = rules_model()
        checked = model.model_validate(value)
        dumped: dict[str, dict[str, Any]] = checked.model_dump(exclude_unset=True)
        return {code: dict(values) for code, values in dumped.items()}

    def rule(self, code: str) -> dict[str, Any]:
        return self.rules.get(code, {})

    def settings(self, cycle: str, allow_other_month: bool = False) -> Settings:
        """What the loader needs, from the same validated values."""
        return Settings(
            cycle=cycle,
            currency=self.cycle.currency,
            date_format=self.cycle.date_format,
            number_format=self.cycle.number_format,
            timezone=self.halopsa.timezone,
            allow_other_month=allow_other_month,
        )

    def changed(self) -> dict[str, Any]:
        """Every setting that differs from its default, as section.key -> value (JSON-able)."""
        default = Config()
        out: dict[str, Any] = {}
        for section in SECTIONS:
            mine, base = getattr(self, section), getattr(default, section)
            for key in type(mine).model_fields:
                if getattr(mine, key) != getattr(base, key):
                    out[f"{section}.{key}"] = _plain(getattr(mine, key))
        for code, values in sorted(self.rules.items()):
            rule = _rules_by_code().get(code)
            for key, value in sorted(values.items()):
                default_value = (
                    rule.default_severity
                    if rule and key == "severity"
                    else _option_default(rule, key)
                    if rule
                    else None
                )
                # Compared as values, not as text: a tolerance of "0.010" is the default 0.01.
                if value != default_value and _plain(value) != _plain(default_value):
                    out[f"rules.{code}.{key}"] = _plain(value)
        return out

    def changed_from(self) -> dict[str, str]:
        """Where each changed setting (changed()) came from: the settings file (its path as
        given), an environment variable (RECONCILE_CURRENCY) or a flag (--currency)."""
        file = self.source or "reconcile.toml"
        return {key: self.origins.get(key, file) for key in self.changed()}

    def lowered_severities(self) -> list[dict[str, str]]:
        """Rules whose severity is set below their default (a blocker made a warning…)."""
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        lowered = []
        for rule in _rules_by_code().values():
            chosen = self.rule(rule.code).get("severity", rule.default_severity)
            if rank[chosen] > rank[rule.default_severity]:
                lowered.append({"rule": rule.code, "default": rule.default_severity, "set": chosen})
        return lowered


SECTIONS = ("cycle", "halopsa", "expected", "match", "workspace", "outputs")
# Sections that choose how a run works or which files it writes, not what it finds: DuckDB's
# memory limit and the workbook. Left out of the run's fingerprint (run.run_id), so a run with
# another memory limit or without the workbook keeps its id and its sign-off.
UNFINGERPRINTED_SECTIONS = ("workspace", "outputs")


class Settings(BaseModel):
    """What the user may tell the loader that the file itself does not say; derived from
    Config (Config.settings) and sharing its field types, so the two cannot drift."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cycle: str  # YYYY-MM; "" when only checking (`validate`): nothing is stored
    date_format: DateFormat | None = None  # overrides detection
    currency: Currency | None = None  # ISO code for exports that carry none
    timezone: TimeZone = DEFAULT_TIMEZONE  # HaloPSA API datetimes are naive UTC
    allow_other_month: bool = False  # load an export whose every invoice is outside the cycle
    number_format: NumberFormat | None = None  # decimal mark: overrides detection

    def reading(self) -> str:
        """The settings an export is read with (all but the cycle), as JSON text: kept with
        each load (store.Workspace.insert_load), so that an export loaded with others is read
        again (ingest.load_paths) and a run refuses loads read with others than its own."""
        return self.model_dump_json(exclude={"cycle"})


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


# --- rules: their settings come from the rule files -----------------------------------------


@cache
def _rules_by_code() -> dict[str, Rule]:
    from reconcile.rules import discover

    return {rule.code: rule for rule in discover()}


def tolerance_setting(config: Config, code: str, key: str, default: str) -> Decimal:
    """A rule's tolerance: the configured value (validated when the config was read) or the
    rule's default."""
    value = config.rule(code).get(key)
    return value if isinstance(value, Decimal) else _tolerance(default)


def _option_default(rule: Rule, key: str) -> Any:
    default = rule.config_keywords[key][0]
    return _tolerance(default) if isinstance(default, str) else default


def _option_type(default: Any) -> Any:
    """A CONFIG default that is a string is a tolerance (a decimal); a tuple is groups of names
    (e.g. contract_type_mismatch's `equivalent`)."""
    return Tolerance if isinstance(default, str) else NameGroups


@cache
def rules_model() -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for code, rule in _rules_by_code().items():
        options: dict[str, Any] = {
            "severity": (
                Severity,
                _setting(rule.default_severity, "blocker, warning or info", "Severity."),
            )
        }
        for key, (default, doc) in rule.config_keywords.items():
            expected = (
                TOLERANCE_EXPECTED
                if isinstance(default, str)
                else 'a list of lists of names such as [["a", "b"]]'
            )
            options[key] = (_option_type(default), _setting(default, expected, doc))
        model = create_model(
            f"Rule_{code}", __config__=ConfigDict(extra="forbid", frozen=True), **options
        )
        fields[code] = (model, None)
    rules: type[BaseModel] = create_model(
        "Rules", __config__=ConfigDict(extra="forbid", frozen=True), **fields
    )
    return rules


# --- reading: layers, origins, messages ------------------------------------------------------

# Environment variables for the settings that have one: RECONCILE_<KEY>.
ENVIRONMENT = {
    "RECONCILE_CURRENCY": ("cycle", "currency"),
    "RECONCILE_DATE_FORMAT": ("cycle", "date_format"),
    "RECONCILE_NUMBER_FORMAT": ("cycle", "number_format"),
    "RECONCILE_TIMEZONE": ("halopsa", "timezone"),
    "RECONCILE_FUZZY_MIN_SCORE": ("match", "fuzzy_min_score"),
    "RECONCILE_MEMORY_LIMIT": ("workspace", "memory_limit"),
}
# The other RECONCILE_* variables reconcile (or its test suite) reads; any other is refused, as
# a typo'd key is (RECONCILE_CURENCY was ignored without a word).
OTHER_VARIABLES = {
    "RECONCILE_WORKSPACE": "the workspace file (--workspace)",
    "RECONCILE_RULES_DIR": "the folder of rule files",
    "RECONCILE_NOW": "the clock, for tests",
    "RECONCILE_PAUSE_AT": "a step to stop at, for tests",
    "RECONCILE_PAUSE_SECONDS": "how long to stop there, for tests",
    "RECONCILE_UPDATE_GOLDEN": "the test suite's `make golden`",
    "RECONCILE_FUZZ_EXAMPLES": "the test suite's fuzz examples",
}
# Command-line flags: --flag -> (section, key).
FLAGS = {
    "--currency": ("cycle", "currency"),
    "--date-format": ("cycle", "date_format"),
    "--number-format": ("cycle", "number_format"),
    "--timezone": ("halopsa", "timezone"),
    "--workbook/--no-workbook": ("outputs", "workbook"),
}


def load_config(
    path: Path | None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Defaults, then reconcile.toml, then RECONCILE_* variables, then flags (--currency …)."""
    data: dict[str, Any] = _read_toml(path) if path is not None else {}
    origin: dict[tuple[str, ...], str] = {}
    file_label = str(path) if path is not None else "reconcile.toml"
    env = os.environ if environ is None else environ
    _check_variables(env)
    for variable, (section, key) in ENVIRONMENT.items():
        if env.get(variable) not in (None, ""):
            _set(data, section, key, env[variable])
            origin[(section, key)] = variable
    for flag, value in (flags or {}).items():
        if value is not None:
            section, key = FLAGS[flag]
            _set(data, section, key, value)
            origin[(section, key)] = flag
    origins = {".".join(where): name for where, name in origin.items()}
    try:
        return Config.model_validate(
            {**data, "source": str(path) if path else None, "origins": origins}
        )
    except ValidationError as exc:
        raise _input_error(exc, data, origin, file_label) from None


def _check_variables(env: Mapping[str, str]) -> None:
    """Refuse a RECONCILE_* variable reconcile does not know, naming the closest known one."""
    known = [*ENVIRONMENT, *OTHER_VARIABLES]
    for variable in sorted(env):
        if variable.upper().startswith("RECONCILE_") and variable not in known:
            near = _closest(variable.upper(), known)
            raise InputError(
                variable,
                "unknown environment variable" + (f"; did you mean {near}?" if near else ""),
                hint="Rename or unset it. Valid names: " + ", ".join(known) + ".",
            )


def _set(data: dict[str, Any], section: str, key: str, value: Any) -> None:
    current = data.get(section)
    data[section] = {**(current if isinstance(current, dict) else {}), key: value}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            str(path),
            f"the configuration is not UTF-8 text (byte {exc.start} cannot be read)",
            expected="reconcile.toml saved as UTF-8",
            hint="Save the file as UTF-8 (without Word or Excel's other encodings) and retry.",
        ) from None
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), "the configuration is not valid TOML", got=str(exc)) from None


def _closest(word: str, choices: list[str]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _known(loc: tuple[str | int, ...]) -> list[str]:
    """The valid names at a location of the settings tree."""
    if len(loc) == 1:
        return [*SECTIONS, "rules"]
    if loc[0] == "rules" and len(loc) == 2:
        return sorted(_rules_by_code())
    if loc[0] == "rules" and len(loc) == 3:
        rule = _rules_by_code().get(str(loc[1]))
        return ["severity", *rule.config_keywords] if rule else []
    section = Config.model_fields.get(str(loc[0]))
    annotation = section.annotation if section else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _where(loc: tuple[str | int, ...]) -> str:
    if loc[0] == "rules" and len(loc) >= 2:
        return f"[rules.{loc[1]}]"
    return f"[{loc[0]}]"


def _expected(loc: tuple[str | int, ...]) -> str | None:
    if len(loc) < 2:
        return None
    if loc[0] == "rules":
        model = rules_model().model_fields.get(str(loc[1]))
        inner = model.annotation if model else None
        fields = getattr(inner, "model_fields", {}) if inner else {}
    else:
        section = Config.model_fields.get(str(loc[0]))
        fields = getattr(section.annotation, "model_fields", {}) if section else {}
    info = fields.get(str(loc[-1]))
    extra = info.json_schema_extra if info else None
    return str(extra["expected"]) if isinstance(extra, dict) and "expected" in extra else None


def _input_error(
    exc: ValidationError, data: dict[str, Any], origin: dict[tuple[str, ...], str], file: str
) -> InputError:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        name = str(loc[-1])
        near = _closest(name, _known(loc))
        if len(loc) == 1:
            problem = f"unknown section [{name}]" + (f"; did you mean [{near}]?" if near else "")
        elif loc[0] == "rules" and len(loc) == 2:
            problem = f"unknown rule [rules.{name}]" + (
                f"; did you mean [rules.{near}]?" if near else ""
            )
        else:
            problem = f"unknown key '{name}' in {_where(loc)}" + (
                f"; did you mean '{near}'?" if near else ""
            )
        valid = ", ".join(_known(loc))
        return InputError(file, problem, hint=f"Valid names there: {valid}.")
    key = str(loc[1]) if len(loc) >= 2 else str(loc[0])
    if loc[0] == "rules" and len(loc) >= 3:
        key = str(loc[2])
        loc = loc[:3]
    elif len(loc) >= 2:
        loc = loc[:2]
    source = origin.get(tuple(str(part) for part in loc), file)
    value: Any = data
    for part in loc:
        value = value.get(part) if isinstance(value, dict) else None
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    expected = _expected(loc) or message
    if source == file:
        where = f"{_where(loc)} {key}" if len(loc) >= 2 else _where(loc)
        problem = f"{where} is not valid"
    else:
        problem = f"not a valid value for {_where(loc)} {key}"
    return InputError(
        source,
        problem,
        expected=expected,
        got=repr(value) if not isinstance(value, str) else value,
    )


# --- the README's table ---------------------------------------------------------------------


def settings_table() -> str:
    """Markdown: every key of reconcile.toml with its type, default and environment variable."""
    env_of = {v: k for k, v in ENVIRONMENT.items()}
    flag_of = {v: k for k, v in FLAGS.items()}
    rows = ["| key | type | default | also | what |", "|---|---|---|---|---|"]
    for section in SECTIONS:
        model = Config.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key, info in model.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            also = ", ".join(
                f"`{x}`" for x in (flag_of.get((section, key)), env_of.get((section, key))) if x
            )
            rows.append(
                f"| `[{section}] {key}` | {_describe_type(key, str(extra.get('expected', '')))} "
                f"| {_default_text(info.default)} | {also or '—'} | {info.description} |"
            )
    for code, rule in sorted(_rules_by_code().items()):
        rows.append(
            f"| `[rules.{code}] severity` | string: blocker \\| warning \\| info "
            f"| {rule.default_severity} | — | Severity of the rule's findings. |"
        )
        for key, (default, doc) in rule.config_keywords.items():
            kind = (
                f"decimal 0 to {TOLERANCE_LIMIT - 1}, ≤ {TOLERANCE_PLACES} places"
                if isinstance(default, str)
                else "list of lists of strings"
            )
            rows.append(
                f"| `[rules.{code}] {key}` | {kind} | {_default_text(default)} | — | {doc} |"
            )
    return "\n".join(rows)


def _describe_type(key: str, expected: str) -> str:
    if key in ("retired_items", "retired_clients"):
        return "list of strings"
    if key == "fuzzy_min_score":
        return "number 0–100"
    if key == "currency":
        return "ISO 4217 code"
    if key == "timezone":
        return "IANA time zone"
    if key == "memory_limit":
        return "memory size"
    if key == "workbook":
        return "boolean: true \\| false"
    return "string: " + expected.replace(" or ", " \\| ").replace(", ", " \\| ").replace('"', "")


def _default_text(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple | list):
        return "`[]`" if not default else f"`{list(default)}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"
