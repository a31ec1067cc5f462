"""Settings: one validated model (defaults < reconcile.toml < RECONCILE_* < flags), and currency
end to end. Every mistake a user can make in reconcile.toml is exit 2 naming the key."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rulecases import RULES, reconcile_case

from conftest import DEMO, ROOT, invoke, read_json, write_exports
from reconcile.config import Config, load_config, settings_table
from reconcile.errors import InputError
from reconcile.store import Workspace

DEMO_TOML = (DEMO / "reconcile.toml").read_text(encoding="utf-8")
EUR_CLIENT = "Brasserie Côte d'Azur Ltd"  # fixtures/demo/README.md, D23


def run(tmp_path: Path, *extra: str | Path, config: str | None = DEMO_TOML) -> Result:
    args: list[str | Path] = [
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--halopsa", DEMO / "halopsa" / "api",
        "--map", DEMO / "mapping.csv", "--out", tmp_path / "out", *extra,
    ]  # fmt: skip
    if config is not None:
        toml = tmp_path / "reconcile.toml"
        toml.write_text(config, encoding="utf-8")
        args += ["--config", toml]
    return invoke(*args)


def bad(tmp_path: Path, toml: str, *fragments: str, extra: tuple[str, ...] = ()) -> None:
    result = run(tmp_path, *extra, config=toml)
    assert result.exit_code == 2, result.output
    assert "Internal error" not in result.output and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)
    assert not (tmp_path / "out").exists()


# --- currency --------------------------------------------------------------------------------


def _check_eur_client(tmp_path: Path, result: Result) -> None:
    assert result.exit_code == 1, result.output
    summary = read_json(tmp_path / "out" / "summary.json")
    found = [
        f for f in read_json(tmp_path / "out" / "discrepancies.json") if f["client"] == EUR_CLIENT
    ]
    # One finding per currency, each in its own currency: in GBP the charges are missing from
    # HaloPSA, in EUR from Autotask, so each currency's differences still add up.
    assert sorted((f["rule"], f["severity"], f["currency"], f["difference"]) for f in found) == [
        ("currency_mismatch", "blocker", "EUR", "1664.40"),
        ("currency_mismatch", "blocker", "GBP", "-1664.40"),
    ]
    for f in found:
        assert "GBP 1,664.40" in f["message"] and "EUR 1,664.40" in f["message"]
    # Totals per currency: the EUR invoice is not in the GBP figures.
    assert summary["currencies"] == ["GBP", "EUR"]
    assert summary["totals"]["GBP"]["autotask"]["net"] == "105213.35"
    assert summary["totals"]["GBP"]["halopsa"]["net"] == "103522.85"  # 105187.25 - 1664.40
    assert summary["totals"]["EUR"]["halopsa"]["net"] == "1664.40"
    assert summary["totals"]["EUR"]["autotask"]["lines"] == 0
    for code, bars in summary["bridge"].items():
        assert sum(Decimal(b["amount"]) for b in bars) == Decimal(
            summary["totals"][code]["difference"]["gross"]
        )
    assert "GBP: Autotask GBP 126,256.08 gross" in result.output
    assert "EUR: Autotask EUR 0.00 gross in 0 lines, HaloPSA EUR 1,997.28" in result.output
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "EUR 1,997.28" in html and "GBP 126,256.08" in html


def test_the_eur_client_is_flagged_with_the_configured_currency(tmp_path: Path) -> None:
    _check_eur_client(tmp_path, run(tmp_path))


def test_the_eur_client_is_flagged_with_currency_given_in_lower_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILE_CURRENCY")
    toml = DEMO_TOML.replace('currency = "GBP"\n', "")
    result = run(tmp_path, "--currency", "gbp", config=toml)
    _check_eur_client(tmp_path, result)
    assert "352 loaded + 0 quarantined" in result.output
    summary = read_json(tmp_path / "out" / "summary.json")
    assert summary["config"]["changed"]["cycle.currency"] == "GBP"


def test_an_export_without_currency_and_none_configured_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILE_CURRENCY")
    toml = DEMO_TOML.replace('currency = "GBP"\n', "")
    result = run(tmp_path, config=toml)
    assert result.exit_code == 2, result.output
    assert "invoices.xml: the Autotask export states no currency" in result.output
    assert "--currency" in result.output
    with Workspace(tmp_path / "ws.duckdb") as ws:
        assert ws.con.sql("SELECT count(*) FROM lines").fetchall() == [(0,)]
    loaded = invoke(
        "--workspace", tmp_path / "w2.duckdb", "load", "--cycle", "2026-11",
        DEMO / "autotask" / "billing_items.csv",
    )  # fmt: skip
    assert loaded.exit_code == 2 and "states no currency" in loaded.output


@pytest.mark.parametrize("value", ["5", "XYZ1", "GB", "pounds"])
def test_a_currency_flag_that_is_no_iso_code_is_exit_2(tmp_path: Path, value: str) -> None:
    message = "--currency: not a valid value for [cycle] currency"
    bad(tmp_path, DEMO_TOML, message, "ISO 4217", extra=("--currency", value))


# --- typos: the closest valid name -----------------------------------------------------------

TYPOS = {
    "retired_item": (
        '[expected]\nretired_item = ["Legacy Tape Backup"]\n',
        "unknown key 'retired_item' in [expected]; did you mean 'retired_items'?",
    ),
    "sevrity": (
        '[rules.quantity_mismatch]\nsevrity = "warning"\n',
        "unknown key 'sevrity' in [rules.quantity_mismatch]; did you mean 'severity'?",
    ),
    "rule code": (
        '[rules.quantity_mismach]\nseverity = "warning"\n',
        "unknown rule [rules.quantity_mismach]; did you mean [rules.quantity_mismatch]?",
    ),
    "section": (
        "[mtach]\nfuzzy_min_score = 70\n",
        "unknown section [mtach]; did you mean [match]?",
    ),
    "tolerance key": (
        '[rules.amount_mismatch]\nabs_toll = "1"\n',
        "unknown key 'abs_toll' in [rules.amount_mismatch]; did you mean 'abs_tol'?",
    ),
}


@pytest.mark.parametrize("name", sorted(TYPOS))
def test_a_typo_is_exit_2_naming_the_closest_valid_name(tmp_path: Path, name: str) -> None:
    toml, message = TYPOS[name]
    bad(tmp_path, toml, "reconcile.toml: " + message)


# --- bad values: file, key, expected, got ---------------------------------------------------

VALUES = {
    "fuzzy_min_score": (
        '[match]\nfuzzy_min_score = "high"\n',
        ["[match] fuzzy_min_score is not valid", "a number from 0 to 100", "'high'"],
    ),
    "date_format": (
        '[cycle]\ndate_format = "european"\n',
        ["[cycle] date_format is not valid", '"us", "uk" or "iso"', "'european'"],
    ),
    "timezone": (
        '[halopsa]\ntimezone = "Mars/Base"\n',
        ["[halopsa] timezone is not valid", "IANA time zone", "'Mars/Base'"],
    ),
    "abs_tol NaN": (
        '[rules.amount_mismatch]\nabs_tol = "NaN"\n',
        ["[rules.amount_mismatch] abs_tol is not valid", "from 0 to 999999999", "'NaN'"],
    ),
    "abs_tol negative": (
        '[rules.amount_mismatch]\nabs_tol = "-1"\n',
        ["[rules.amount_mismatch] abs_tol is not valid", "from 0 to 999999999"],
    ),
    "rel_tol too large": (
        '[rules.amount_mismatch]\nrel_tol = "100000000000000000"\n',
        [
            "[rules.amount_mismatch] rel_tol is not valid",
            "from 0 to 999999999 with at most 10 decimal places",
            "got '100000000000000000'",
        ],
    ),
    "abs_tol too fine": (
        "[rules.quantity_mismatch]\nabs_tol = 1e-30\n",
        ["[rules.quantity_mismatch] abs_tol is not valid", "at most 10 decimal places", "1e-30"],
    ),
    "severity": (
        '[rules.amount_mismatch]\nseverity = "fatal"\n',
        ["[rules.amount_mismatch] severity is not valid", "blocker, warning or info"],
    ),
    "retired_items string": (
        '[expected]\nretired_items = "Legacy Tape Backup"\n',
        ["[expected] retired_items is not valid", "a list of names"],
    ),
    "currency number": (
        "[cycle]\ncurrency = 5\n",
        ["[cycle] currency is not valid", "ISO 4217", "got '5'"],
    ),
    "currency code": ('[cycle]\ncurrency = "XYZ1"\n', ["[cycle] currency is not valid"]),
    "equivalent": (
        '[rules.contract_type_mismatch]\nequivalent = "recurring_service"\n',
        ["[rules.contract_type_mismatch] equivalent is not valid"],
    ),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_a_bad_value_is_exit_2_naming_file_key_and_expectation(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILE_CURRENCY")  # it would override the file's currency
    toml, fragments = VALUES[name]
    bad(tmp_path, toml, "reconcile.toml: ", *fragments)


# Every tolerance key of every rule, and values in and out of what `within` computes exactly.
TOLERANCE_KEYS = [
    (rule.code, key)
    for rule in RULES
    for key, (default, _) in rule.config_keywords.items()
    if isinstance(default, str)
]
TOLERANCE_VALUES = st.one_of(
    st.builds(
        lambda digits, exponent: str(Decimal(digits).scaleb(exponent)),
        st.integers(0, 10**20),
        st.integers(-35, 25),
    ),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        [
            "100000000000000000",
            "0.0000000001",
            "1e-30",
            "1e30",
            "999999999.9999999999",
            "1000000000",
            "0.00000000001",
            "0.05",
            "1",
            "-0.01",
            "0E-40",
        ]
    ),
)
# Lines at the edges of what the columns hold (DECIMAL(18, 4) quantities and prices,
# DECIMAL(18, 2) money), each pair one item: the largest against the least, itself, nothing.
TOP_QTY, TOP_MONEY = "99999999999999.9999", "4999999999999999.99"  # net + tax fit
EDGE_CASE = {
    "autotask": [
        {"ref": "a1", "item": "Edge One", "qty": TOP_QTY, "price": TOP_QTY, "net": TOP_MONEY,
         "tax": TOP_MONEY},
        {"ref": "a2", "item": "Edge Two", "qty": TOP_QTY, "price": TOP_QTY, "net": TOP_MONEY,
         "tax": TOP_MONEY},
        {"ref": "a3", "item": "Edge Three", "qty": "-" + TOP_QTY, "price": "0.0001",
         "net": "-" + TOP_MONEY, "tax": "0"},
        {"ref": "a4", "item": "Edge Four", "qty": 1, "price": "10.00", "net": "10.00", "tax": "2"},
    ],
    "halopsa": [
        {"ref": "h1", "item": "Edge One", "qty": "0.0001", "price": "0.0001", "net": "0.01",
         "tax": "0.01"},
        {"ref": "h2", "item": "Edge Two", "qty": TOP_QTY, "price": TOP_QTY, "net": TOP_MONEY,
         "tax": TOP_MONEY},
        {"ref": "h3", "item": "Edge Three", "qty": 0, "price": "0", "net": "0", "tax": "0"},
        {"ref": "h4", "item": "Edge Four", "qty": 1, "price": "10.01", "net": "10.01", "tax": "2"},
    ],
}  # fmt: skip


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted({code for code, _ in TOLERANCE_KEYS})), st.data())
def test_every_accepted_tolerance_runs_the_rules_and_every_refused_one_names_its_key(
    code: str, data: st.DataObject
) -> None:
    """A tolerance the settings accept runs every rule without error on lines at the edges of
    the columns (rel_tol 1e17 and 1e-30 made DuckDB fail mid-run, exit 3); one they refuse is
    an InputError naming the file, the key, the range and places allowed and the value."""
    values = {key: data.draw(TOLERANCE_VALUES) for c, key in TOLERANCE_KEYS if c == code}
    toml = f"[rules.{code}]\n" + "".join(f'{key} = "{value}"\n' for key, value in values.items())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reconcile.toml"
        path.write_text(toml, encoding="utf-8")
        try:
            config = load_config(path, environ={})
        except InputError as exc:
            message = str(exc)
            assert "reconcile.toml" in message and f"[rules.{code}] " in message, message
            assert "a decimal from 0 to 999999999 with at most 10 decimal places" in message
            key = message.split(f"[rules.{code}] ")[1].split(" ")[0]
            assert values[key] in message, message
            given = Decimal(values[key])
            assert not (0 <= given < 10**9 and given == round(given, 10)), message
            return
    for key, value in values.items():
        assert config.rule(code)[key] == Decimal(value)
        assert 0 <= Decimal(value) < 10**9 and Decimal(value) == round(Decimal(value), 10)
    reconcile_case(EDGE_CASE, config)  # no DuckDB error: every rule runs


def test_a_bad_timezone_flag_is_exit_2(tmp_path: Path) -> None:
    message = "--timezone: not a valid value for [halopsa] timezone"
    bad(tmp_path, DEMO_TOML, message, "'Mars/Base'", extra=("--timezone", "Mars/Base"))


def test_a_config_that_is_not_utf8_is_exit_2(tmp_path: Path) -> None:
    toml = tmp_path / "cp1252.toml"
    toml.write_bytes('[expected]\nretired_items = ["Caf\xe9 Wi-Fi"]\n'.encode("cp1252"))
    result = invoke(
        "--workspace", tmp_path / "ws.duckdb", "run", "--cycle", "2026-11",
        "--autotask", DEMO / "autotask" / "invoices.xml", "--config", toml,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "cp1252.toml: the configuration is not UTF-8 text" in result.output


# --- precedence: defaults < reconcile.toml < environment < flags -----------------------------


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    toml = tmp_path / "reconcile.toml"
    toml.write_text('[cycle]\ncurrency = "GBP"\n[match]\nfuzzy_min_score = 70\n', "utf-8")
    assert load_config(None, environ={}).cycle.currency is None
    assert load_config(toml, environ={}).cycle.currency == "GBP"
    env = {"RECONCILE_CURRENCY": "eur", "RECONCILE_FUZZY_MIN_SCORE": "80"}
    from_env = load_config(toml, environ=env)
    assert from_env.cycle.currency == "EUR" and from_env.match.fuzzy_min_score == 80
    flagged = load_config(toml, flags={"--currency": "usd"}, environ=env)
    assert flagged.cycle.currency == "USD" and flagged.match.fuzzy_min_score == 80
    assert load_config(None, environ={}).workspace.memory_limit == "400MB"
    assert load_config(None, environ={"RECONCILE_MEMORY_LIMIT": "2GB"}).workspace.memory_limit == (
        "2GB"
    )
    with pytest.raises(InputError, match="RECONCILE_MEMORY_LIMIT: not a valid value"):
        load_config(None, environ={"RECONCILE_MEMORY_LIMIT": "lots"})
    with pytest.raises(InputError, match="RECONCILE_TIMEZONE: not a valid value"):
        load_config(None, environ={"RECONCILE_TIMEZONE": "Mars/Base"})


def test_a_bad_environment_value_is_exit_2_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_CURRENCY", "5")
    message = "RECONCILE_CURRENCY: not a valid value for [cycle] currency"
    bad(tmp_path, DEMO_TOML.replace('currency = "GBP"\n', ""), message)


def test_an_unknown_reconcile_variable_is_exit_2_naming_the_closest_known_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RECONCILE_CURENCY=EUR was ignored without a word (the run went on in the file's GBP)."""
    monkeypatch.setenv("RECONCILE_CURENCY", "EUR")
    message = "RECONCILE_CURENCY: unknown environment variable; did you mean RECONCILE_CURRENCY?"
    bad(tmp_path, DEMO_TOML, message, "Valid names: RECONCILE_CURRENCY")
    with pytest.raises(InputError, match=r"RECONCILE_TIMEZNE: .* did you mean RECONCILE_TIMEZONE"):
        load_config(None, environ={"RECONCILE_TIMEZNE": "Europe/Paris"})
    with pytest.raises(InputError, match="RECONCILE_COLOUR: unknown environment variable"):
        load_config(None, environ={"RECONCILE_COLOUR": ""})
    # Those reconcile (or its test suite) reads are known; others' variables are not ours.
    known = {"RECONCILE_WORKSPACE": "w.duckdb", "RECONCILE_NOW": "2026-12-02T09:30:00Z"}
    assert load_config(None, environ={**known, "RECONCILER": "x", "HOME": "/"}) == Config()


def test_each_changed_setting_names_where_it_came_from(tmp_path: Path) -> None:
    """The file, a RECONCILE_* variable or a flag: a currency from the environment was shown
    as if the settings file said it."""
    toml = tmp_path / "reconcile.toml"
    toml.write_text('[cycle]\ncurrency = "GBP"\n[match]\nfuzzy_min_score = 70\n', "utf-8")
    config = load_config(
        toml,
        flags={"--timezone": "Europe/Paris"},
        environ={"RECONCILE_CURRENCY": "EUR", "RECONCILE_MEMORY_LIMIT": "2GB"},
    )
    assert config.changed_from() == {
        "cycle.currency": "RECONCILE_CURRENCY",
        "halopsa.timezone": "--timezone",
        "match.fuzzy_min_score": str(toml),
        "workspace.memory_limit": "RECONCILE_MEMORY_LIMIT",
    }
    assert set(config.changed_from()) == set(config.changed())
    assert load_config(toml, environ={}).changed_from() == {
        "cycle.currency": str(toml),
        "match.fuzzy_min_score": str(toml),
    }


def test_the_model_is_frozen_and_rejects_unknown_fields() -> None:
    config = Config()
    with pytest.raises(ValueError):
        config.cycle.currency = "GBP"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Config.model_validate({"colour": "blue"})


# --- what differs from the defaults, on the page and in summary.json ------------------------


def test_lowered_severities_and_changed_settings_are_recorded(tmp_path: Path) -> None:
    toml = DEMO_TOML + '\n[rules.unmapped_client]\nseverity = "info"\n'
    toml += "[match]\nfuzzy_min_score = 60\n"
    result = run(tmp_path, config=toml)
    assert result.exit_code == 1, result.output
    config = read_json(tmp_path / "out" / "summary.json")["config"]
    assert config["lowered_severities"] == [
        {"rule": "unmapped_client", "default": "blocker", "set": "info"}
    ]
    assert config["changed"] == {
        "cycle.currency": "GBP",
        "expected.retired_items": ["Legacy Tape Backup"],
        "rules.unmapped_client.severity": "info",
    }  # fuzzy_min_score = 60 is the default: not a change
    toml_path = str(tmp_path / "reconcile.toml")
    assert config["changed_from"] == {
        "cycle.currency": "RECONCILE_CURRENCY",  # the suite's GBP (conftest) overrides the file's
        "expected.retired_items": toml_path,
        "rules.unmapped_client.severity": toml_path,
    }
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert (
        '<code>cycle.currency = &#34;GBP&#34;</code><span class="source"> <span class="muted">from'
        "</span> <code>RECONCILE_CURRENCY</code></span>"
    ) in html
    # The settings file is named once, above the list, not after each setting it sets.
    assert f"from</span> <code>{toml_path}</code>" not in html
    assert "Severities lowered from the defaults:" in html
    assert "<code>unmapped_client</code> blocker → info" in html


def test_the_readme_lists_every_setting_as_the_model_does() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "README's reconcile.toml table is out of date"


def test_a_tolerance_written_otherwise_is_not_a_change() -> None:
    """`abs_tol = "0.010"` is the default 0.01 written with another digit: not a changed
    setting, so the run's fingerprint (which binds the changed settings) and a sign-off stay;
    0.02 is a change."""
    same = Config.model_validate({"rules": {"rounding_difference": {"abs_tol": "0.010"}}})
    other = Config.model_validate({"rules": {"rounding_difference": {"abs_tol": "0.02"}}})
    assert same.changed() == Config().changed() == {}
    assert other.changed() == {"rules.rounding_difference.abs_tol": "0.02"}


def test_load_and_validate_read_the_exports_as_the_run_with_the_same_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load --config` reads the exports with reconcile.toml's settings (the currency of
    exports that state none), so a `run --config` on what was loaded runs; `validate --config`
    checks them the same way. Loaded with other settings, they were read otherwise: the run
    refuses."""
    monkeypatch.delenv("RECONCILE_CURRENCY")  # the suite's GBP would override the file's
    config = tmp_path / "reconcile.toml"
    config.write_text('[cycle]\ncurrency = "EUR"\n', encoding="utf-8")
    exports = write_exports(
        tmp_path,
        "A1,INV-1,11/01/2026,Zeta Ltd,Server,1,100.00,100.00,20.00,11/01/2026,11/30/2026\n",
        "H1,NW1,01/11/2026,Zeta Ltd,Server,1,100.00,100.00,20.00,01/11/2026,30/11/2026\n",
    )

    def run(ws: Path, *flags: str | Path) -> Result:
        for export in exports.values():
            loaded = invoke("--workspace", ws, "load", "--cycle", "2026-11", *flags, export)
            assert loaded.exit_code == 0, loaded.output
        return invoke(
            "--workspace", ws, "run", "--cycle", "2026-11", "--config", config,
            "--out", tmp_path / ws.stem,
        )  # fmt: skip

    for export in exports.values():
        checked = invoke("validate", "--config", config, "--cycle", "2026-11", export)
        assert checked.exit_code == 0, checked.output
    assert run(tmp_path / "ws.duckdb", "--config", config).exit_code == 0
    assert set(read_json(tmp_path / "ws" / "summary.json")["totals"]) == {"EUR"}
    refused = run(tmp_path / "other.duckdb", "--currency", "GBP")
    assert refused.exit_code == 2, refused.output
    assert "currency GBP (now EUR)" in refused.output
    # An export that states its currency loads with none given; the message says "not set",
    # not Python's None.
    stated = DEMO / "halopsa" / "invoice_lines.csv"
    unset = invoke("--workspace", tmp_path / "third.duckdb", "load", "--cycle", "2026-11", stated)
    assert unset.exit_code == 0, unset.output
    rerun = invoke(
        "--workspace", tmp_path / "third.duckdb", "run", "--cycle", "2026-11",
        "--autotask", exports["autotask"], "--config", config, "--out", tmp_path / "third",
    )  # fmt: skip
    assert "currency not set (now EUR)" in rerun.output, rerun.output
    assert "None" not in rerun.output
