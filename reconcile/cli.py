"""Command line: each command parses its options and hands off to one pipeline stage.

Exit codes: 0 success; 1 blockers remain (run) or a finance step refused (signoff,
export-signoff); 2 unusable input or a usage error; 3 an internal error (a bug in reconcile,
never a verdict on the billing); 4 the finance log or a hash it binds is broken (verify).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from reconcile.errors import (
    EXIT_BAD_INPUT,
    EXIT_BLOCKERS,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TAMPERED,
    InputError,
    RefusedError,
    TamperedError,
)
from reconcile.options import DEFAULT_TIMEZONE, DEFAULT_WORKSPACE, check_cycle
from reconcile.safe import shown
from reconcile.timing import recording
from reconcile.wording import UNKNOWN_CURRENCY, amount_text, counted

if TYPE_CHECKING:
    from reconcile.config import Config
    from reconcile.ingest import LoadResult
    from reconcile.report_model import CurrencyControl, SideTotals
    from reconcile.store import Workspace

# Start-up: a command imports what it works with (DuckDB, pandera, pydantic, the readers, the
# report's writers) when it runs, so `reconcile --help` and usage errors answer at once.

F = TypeVar("F", bound=Callable[..., Any])
MAX_LISTED = 20
# A mapping file kept for several cycles names many clients a subset cycle lacks: the first few
# are printed, all are in the report and summary.json.
UNUSED_MAPPINGS_SHOWN = 5


class InputProblem(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.message}", err=True)


class RefusedStep(InputProblem):
    exit_code = EXIT_BLOCKERS


class BrokenLog(InputProblem):
    exit_code = EXIT_TAMPERED


def input_errors(func: F) -> F:
    """User mistakes in files surface as one paragraph and exit 2, never a traceback; a refused
    finance step exits 1 and a broken finance log 4, each with what is in the way."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            raise InputProblem(str(exc)) from None
        except RefusedError as exc:
            raise RefusedStep(str(exc)) from None
        except TamperedError as exc:
            raise BrokenLog(f"the finance log is broken: {shown(exc)}") from None
        except Exception as exc:
            problem = _machine_fault(exc, _workspace_path())
            if problem is None:
                raise
            raise InputProblem(str(problem)) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def imports_uncollected() -> Iterator[None]:
    """For a block that imports a command's pipeline (polars, DuckDB, pydantic, reconcile's own
    modules): Python's cyclic garbage collector is paused over it, and what the block leaves
    (modules, classes, functions: they live as long as the process) is then frozen out of
    later collections (gc.freeze). The collections the imports set off found nothing to free
    and cost about 0.08 CPU-s a run, and every later full collection passed over it all again.
    The collector's state before the block is restored."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _machine_fault(exc: Exception, workspace: Path | None) -> InputError | None:
    """environment.environment_error for an OSError or a DuckDB error (DuckDB is imported only
    by the commands that open a workspace, so only they can raise one); None for the rest."""
    duckdb = sys.modules.get("duckdb")
    if not isinstance(exc, OSError) and not (duckdb and isinstance(exc, duckdb.Error)):
        return None
    from reconcile.environment import environment_error

    return environment_error(exc, workspace)


def _workspace_path() -> Path | None:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx else None
    return obj.get("workspace") if isinstance(obj, dict) else None


def load_options(func: F) -> F:
    """Options shared by every command that reads exports."""
    for option in reversed(
        [
            click.option(
                "--date-format",
                type=click.Choice(["us", "uk", "iso"]),
                help="How the files write dates, when detection should not decide.",
            ),
            click.option(
                "--number-format",
                type=click.Choice(["point", "comma"]),
                help="The files' decimal mark (12.50 or 12,50), when detection should not decide.",
            ),
            click.option(
                "--currency",
                metavar="ISO",
                help="Currency of exports that do not state one, e.g. GBP.",
            ),
            click.option(
                "--timezone",
                help="HaloPSA tenant time zone (its API stores datetimes in UTC) "
                f"[default: [halopsa] timezone, or {DEFAULT_TIMEZONE}].",
            ),
        ]
    ):
        func = option(func)
    return func


def other_month_option(func: F) -> F:
    return click.option(
        "--allow-other-month",
        is_flag=True,
        help="Load an export even when every invoice in it is dated outside --cycle.",
    )(func)


def side_option(platform: str, label: str) -> Callable[[F], F]:
    return click.option(
        f"--{platform}",
        platform,
        multiple=True,
        type=click.Path(exists=True, path_type=Path),
        help=f"{label} export file or folder (repeatable); omit to use what is loaded.",
    )


def config_option(purpose: str) -> Callable[[F], F]:
    """--config: the reconcile.toml a command reads, for `purpose`."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=f"reconcile.toml: {purpose}.",
    )


# What `load` and `validate` read of reconcile.toml: how the exports are read, as `run` reads them.
READING = "currency, time zone, date and number format, as `run --config` reads the exports"


def crosswalk_options(func: F) -> F:
    """--map and --config, shared by every command that matches the two sides."""
    func = config_option(
        "tolerances, severities, expected differences, fuzzy_min_score; and how exports are read"
    )(func)
    return click.option(
        "--map",
        "maps",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Mapping CSV (kind,autotask,halopsa) of agreed names and ids; repeatable.",
    )(func)


@click.group()
@click.option(
    "--workspace",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_WORKSPACE,
    show_default=True,
    envvar="RECONCILE_WORKSPACE",
    help="DuckDB file that holds loaded cycles and runs.",
)
@click.version_option(package_name="reconcile")
@click.pass_context
def cli(ctx: click.Context, workspace: Path) -> None:
    """Reconcile a parallel billing cycle: Autotask against HaloPSA, line by line."""
    ctx.obj = {"workspace": workspace}


@cli.command()
@click.option(
    "--platform",
    type=click.Choice(["autotask", "halopsa"]),
    help="Which system the files come from (detected when omitted).",
)
@click.option("--cycle", required=True, help="Billing cycle, YYYY-MM.")
@click.option(
    "--replace",
    is_flag=True,
    help="Replace this side's earlier loads for the cycle instead of adding to them.",
)
@other_month_option
@load_options
@config_option(READING)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.pass_context
@input_errors
def load(
    ctx: click.Context,
    platform: str | None,
    cycle: str,
    replace: bool,
    allow_other_month: bool,
    date_format: str | None,
    number_format: str | None,
    currency: str | None,
    timezone: str | None,
    config_path: Path | None,
    paths: tuple[Path, ...],
) -> None:
    """Load invoice exports (files, or a folder of API pages) into the workspace.

    Exits 2 when a file is unusable, when it repeats lines already loaded (see --replace), when
    every invoice is outside --cycle (see --allow-other-month), or when any row had to be
    quarantined.
    """
    with imports_uncollected():
        config = _config(config_path, date_format, currency, timezone, number_format)
        settings = config.settings(check_cycle(cycle), allow_other_month)
        from reconcile.ingest import load_paths  # once the settings are known good, as in run
        from reconcile.store import Workspace

    with Workspace(ctx.obj["workspace"], config.workspace.memory_limit) as workspace:
        results = load_paths(workspace, list(paths), platform, settings, replace=replace)
        for result in results:
            click.echo(describe(result))
            if result.rows_quarantined or result.rows_excluded:
                file = workspace.write_quarantine(result.load_id, cycle)
                click.echo(f"  quarantined and excluded rows, with reasons: {shown(file)}")
    quarantined = [r for r in results if r.rows_quarantined]
    if quarantined:
        raise InputProblem(" ".join(quarantine_message(r) for r in quarantined))


@cli.command()
@click.option(
    "--platform",
    type=click.Choice(["autotask", "halopsa"]),
    help="Which system the file comes from (detected when omitted).",
)
@click.option(
    "--cycle",
    help="Billing cycle, YYYY-MM: decides dates whose day and month could be swapped.",
)
@load_options
@config_option(READING)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@input_errors
def validate(
    platform: str | None,
    cycle: str | None,
    date_format: str | None,
    number_format: str | None,
    currency: str | None,
    timezone: str | None,
    config_path: Path | None,
    paths: tuple[Path, ...],
) -> None:
    """Check exports and report every problem, without loading anything."""
    from reconcile.ingest import read_only

    config = _config(config_path, date_format, currency, timezone, number_format)
    settings = config.settings(check_cycle(cycle) if cycle else "")
    problems = []
    for raw, tally in read_only(list(paths), platform, settings):
        click.echo(
            f"{shown(raw.file)}: {raw.shape}, {counted(tally.rows_read, 'row')}: "
            f"{tally.rows_loaded} valid, {tally.rows_quarantined} invalid, "
            f"{tally.rows_excluded} excluded, {tally.rows_skipped} skipped; "
            f"dates {tally.date_convention}; "
            f"numbers {tally.number_format}"
        )
        for warning in tally.warnings(raw):
            click.echo(f"  warning: {shown(warning)}")
        if tally.rows_quarantined:
            problems.append(
                _rows_message(
                    raw.file,
                    tally.rows_quarantined,
                    tally.rows_read,
                    tally.quarantine,
                    loaded=None,
                )
            )
    if problems:
        raise InputProblem(" ".join(problems))


@cli.command()
@click.option("--cycle", required=True, help="Billing cycle, YYYY-MM.")
@side_option("autotask", "Autotask")
@side_option("halopsa", "HaloPSA")
@crosswalk_options
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder [default: ./out/<cycle>].",
)
@click.option(
    "--timings",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the seconds each stage took (load, crosswalk, match, rules, outputs, report) "
    "and the peak memory (MiB) when it ended to this JSON file.",
)
@click.option(
    "--workbook/--no-workbook",
    default=None,
    help="Write discrepancies.xlsx, the Excel workbook (about a third of a 1M-line run's CPU "
    "time), or leave it out; `reconcile workbook OUT_DIR` writes it later "
    "[default: [outputs] workbook, or --workbook].",
)
@other_month_option
@load_options
@click.pass_context
@input_errors
def run(
    ctx: click.Context,
    cycle: str,
    autotask: tuple[Path, ...],
    halopsa: tuple[Path, ...],
    maps: tuple[Path, ...],
    config_path: Path | None,
    out_dir: Path | None,
    timings: Path | None,
    workbook: bool | None,
    allow_other_month: bool,
    date_format: str | None,
    number_format: str | None,
    currency: str | None,
    timezone: str | None,
) -> None:
    """Reconcile a cycle: load, match, apply the rules, write the report and outputs
    (report.html, summary.json, discrepancies.csv/.parquet/.json, discrepancies.xlsx unless
    --no-workbook, quarantine.csv) into --out, replacing the folder whole.

    Exits 0 when no blocker remains, 1 when blockers remain, 2 for unusable input or settings.
    """
    with imports_uncollected():
        config = _config(config_path, date_format, currency, timezone, number_format, workbook)
        settings = config.settings(check_cycle(cycle), allow_other_month)
        # The pipeline is imported once the settings are known good: a mistake in them is told
        # without waiting for it.
        from reconcile.run import run_cycle
        from reconcile.store import Workspace

    out = out_dir or Path("out") / cycle
    with (
        recording() as clock,
        Workspace(ctx.obj["workspace"], config.workspace.memory_limit) as workspace,
    ):
        result = run_cycle(
            workspace, settings, list(autotask), list(halopsa), list(maps), config, out
        )
    if timings:
        timings.write_text(json.dumps(clock.as_json(), indent=2) + "\n", encoding="utf-8")
    for load_result in result.loads:
        click.echo(describe(load_result))
    verdict = result.summary.verdict
    totals = result.summary.totals
    from reconcile.wording import amount_text

    click.echo(
        f"cycle {cycle}: "
        + "; ".join(
            f"{code}: Autotask {amount_text(code, t.autotask.gross)} gross in "
            f"{_lines(t.autotask)}, HaloPSA {amount_text(code, t.halopsa.gross)} in "
            f"{_lines(t.halopsa)}, difference {amount_text(code, t.difference.gross, True)}"
            for code, t in totals.items()
        )
    )
    click.echo(
        f"{counted(verdict.blockers, 'blocker')}, {counted(verdict.warnings, 'warning')}, "
        f"{verdict.info} info, {verdict.expected} expected, {verdict.accepted} accepted -> "
        f"{_readiness(verdict.ready)}"
    )
    summary = result.summary
    for lapse in summary.acceptances.lapsed:
        click.echo(
            f"  acceptance lapsed: {lapse.id} (accepted by {shown(lapse.by)}, log entry "
            f"{lapse.entry}): {shown(lapse.why)}"
        )
    for s in summary.signoffs:
        if summary.history is not None and s.superseded_by == summary.history.run:
            click.echo(
                f"  the sign-off of run #{s.run} by {shown(s.by)} ({s.at}) is "
                "superseded: this run's results differ"
            )
    for m in summary.unused_mappings[:UNUSED_MAPPINGS_SHOWN]:
        click.echo(
            f"  warning: {shown(m.file)} line {m.line}: {m.kind} mapping "
            f"'{shown(m.autotask)}' -> '{shown(m.halopsa)}': {m.problem}; the row was not used"
        )
    if len(summary.unused_mappings) > UNUSED_MAPPINGS_SHOWN:
        click.echo(
            f"  warning: {len(summary.unused_mappings) - UNUSED_MAPPINGS_SHOWN} more mapping rows "
            "were not used; all are listed in report.html (Mapping rows that map nothing) and "
            "summary.json (unused_mappings)"
        )
    click.echo(f"report: {shown(out / 'report.html')}")
    if not summary.workbook.written:
        click.echo(f"workbook: not written; write it with `reconcile workbook {shown(out)}`")
    if result.quarantined:
        raise InputProblem(
            " ".join(quarantine_message(r) for r in result.loads if r.rows_quarantined)
            or f"{counted(result.quarantined, 'row')} of the loaded inputs "
            f"{'is' if result.quarantined == 1 else 'are'} quarantined; "
            "see quarantine.csv."
        )
    ctx.exit(result.exit_code)


@cli.command(name="workbook")
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(path_type=Path))
@input_errors
def workbook_command(out_dir: Path) -> None:
    """Write OUT_DIR/discrepancies.xlsx, the Excel workbook of a run's discrepancies, from the
    run's OUT_DIR/discrepancies.parquet: byte for byte the workbook `reconcile run` writes,
    for a run made with --no-workbook or [outputs] workbook = false. The file is replaced
    whole (a temporary file beside it, renamed over it).

    Exits 2 when OUT_DIR is missing or is not a run's output folder, or when its
    discrepancies.parquet is missing, cannot be read or is not the table a run writes.
    """
    from reconcile.workbook import write_later

    written, rows = write_later(out_dir)
    click.echo(f"{shown(written)}: {counted(rows, 'discrepancy', 'discrepancies')} written")


@cli.group(name="map")
def map_group() -> None:
    """Client, item and contract crosswalks between the two systems."""


@map_group.command()
@click.option("--cycle", required=True, help="Billing cycle, YYYY-MM (already loaded).")
@crosswalk_options
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("mapping-suggestions.csv"),
    show_default=True,
    help="Where to write the suggestions for review.",
)
@click.pass_context
@input_errors
def suggest(
    ctx: click.Context, cycle: str, maps: tuple[Path, ...], config_path: Path | None, out_file: Path
) -> None:
    """Write fuzzy suggestions for unmapped HaloPSA clients and items, for a person to review.

    Suggestions are never applied: review the file, delete wrong rows, then pass it with --map.
    """
    from reconcile.config import load_config
    from reconcile.crosswalk import KINDS, read_mappings, write_suggestions
    from reconcile.match import match_cycle
    from reconcile.store import Workspace

    config = load_config(config_path)
    with Workspace(ctx.obj["workspace"], config.workspace.memory_limit) as workspace:
        for platform in ("autotask", "halopsa"):
            if not workspace.load_ids(check_cycle(cycle), platform):
                raise InputError(
                    "--cycle",
                    f"no {platform} export is loaded for cycle {cycle}",
                    expected="`reconcile load` of both sides first",
                )
        matched = match_cycle(
            workspace.con, cycle, read_mappings(list(maps)), config, suggest=frozenset(KINDS)
        )
    written = write_suggestions(out_file, matched.crosswalk)
    click.echo(
        f"{counted(written, 'suggestion')} written to {shown(out_file)}; review them before use."
    )


# --- the finance workflow: history, acceptances, sign-off, the log's check, the pack --------


def by_option(func: F) -> F:
    return click.option(
        "--by", required=True, metavar="NAME", help="Who does this (recorded in the log)."
    )(func)


def _existing_workspace(ctx: click.Context) -> Workspace:
    """The workspace the finance commands read: it must exist (they never start one)."""
    from reconcile.store import Workspace

    path = Path(ctx.obj["workspace"])
    if not path.exists():
        raise InputError(
            str(path),
            "no workspace here",
            hint="Give the --workspace (or RECONCILE_WORKSPACE) your runs were made in.",
        )
    return Workspace(path)


@cli.command(name="history")
@click.option("--cycle", help="Only this billing cycle, YYYY-MM.")
@click.pass_context
@input_errors
def history_command(ctx: click.Context, cycle: str | None) -> None:
    """List the runs kept in the workspace, oldest first: when, fingerprint, the inputs' content
    hashes, totals per side, open counts by severity, what is new / in both runs / resolved since
    the previous run of the cycle, and the sign-off state."""
    from reconcile import history, ledger, signoff

    with _existing_workspace(ctx) as workspace:
        runs = history.cycle_runs(workspace.con, check_cycle(cycle) if cycle else None)
        states: dict[int, list[signoff.State]] = {}
        for c in dict.fromkeys(r.cycle for r in runs):
            for s in signoff.states(workspace.con, c):
                states.setdefault(int(s.entry.body["run"]), []).append(s)
        log = ledger.entries(workspace.con)
    if not runs:
        click.echo("no runs kept" + (f" for cycle {cycle}" if cycle else "") + " in this workspace")
        return
    for run in runs:
        click.echo(_run_lines(run, states.get(run.number, [])))
    click.echo(
        f"finance log: {counted(len(log), 'entry', 'entries')} (`reconcile verify` checks the log)"
    )


def _run_lines(run: Any, signed: list[Any]) -> str:
    from reconcile import signoff
    from reconcile.wording import amount_text

    summary = run.summary
    verdict = summary["verdict"]
    changes = summary.get("history") or {}
    counts = changes.get("counts")
    lines = [
        f"run #{run.number}  cycle {run.cycle}  {run.created_at:%Y-%m-%d %H:%M}  "
        f"fingerprint {run.run_id}",
        "  inputs: "
        + "; ".join(
            f"{i['platform']} {i['load_id'][:16]} ({shown(i['source'])}, {i['shape']})"
            for i in summary["inputs"]
        ),
        "  totals (gross): "
        + "; ".join(
            f"Autotask {amount_text(code, t['autotask']['gross'])}, "
            f"HaloPSA {amount_text(code, t['halopsa']['gross'])}, "
            f"difference {amount_text(code, t['difference']['gross'], True)}"
            for code, t in summary["totals"].items()
        ),
        f"  open: {counted(verdict['blockers'], 'blocker')}, "
        f"{counted(verdict['warnings'], 'warning')}, "
        f"{verdict['info']} info; {verdict['expected']} expected, "
        f"{verdict.get('accepted', 0)} accepted -> {_readiness(verdict['ready'])}",
    ]
    if counts:
        since = f"run #{changes['previous_run']}" if changes["previous_run"] else "first run"
        lines.append(
            f"  since {since}: {counts['new']} new, {counts['open']} in both runs, "
            f"{counts['resolved']} resolved"
        )
    lines += [f"  sign-off: {signoff.shown_state(s)}" for s in signed] or ["  sign-off: none"]
    return "\n".join(lines)


@cli.command()
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--from",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with an id column (discrepancies.csv filtered will do); optional reason and "
    "until columns override --reason and --until per row.",
)
@click.option("--reason", help="Why the difference is intended (recorded in the log).")
@by_option
@click.option("--until", help="Last day the acceptance holds, YYYY-MM-DD [default: no end].")
@click.option(
    "--cycle", help="Billing cycle, YYYY-MM [default: the one whose latest run has the ids]."
)
@click.pass_context
@input_errors
def accept(
    ctx: click.Context,
    ids: tuple[str, ...],
    from_file: Path | None,
    reason: str | None,
    by: str,
    until: str | None,
    cycle: str | None,
) -> None:
    """Accept discrepancies of the latest run of a cycle as intended differences.

    An acceptance follows its discrepancy across re-runs while the lines and amounts behind it
    are unchanged; it lapses when they change or its --until day has passed. Accepted
    discrepancies leave the blocker count at the next `reconcile run`.
    """
    from reconcile import acceptance, ledger
    from reconcile.wording import amount_text

    today = ledger.now().date()
    last_day = acceptance.checked_until(until, today)
    given = acceptance.checked_text(reason, "--reason") if reason is not None else None
    requests = [
        acceptance.Request(i.strip(), _need_reason(given), last_day, f"ID argument {i.strip()}")
        for i in ids
    ]
    if from_file:
        requests += acceptance.read_requests(from_file, given, last_day, today)
    if not requests:
        raise InputError("ID", "no discrepancy id given", expected="ids, or --from FILE.csv")
    with _existing_workspace(ctx) as workspace:
        written = acceptance.accept(
            workspace.con,
            requests,
            check_cycle(cycle) if cycle else None,
            acceptance.checked_text(by, "--by"),
            today,
        )
    for entry in written:
        f = entry.body["finding"]
        until_text = f" until {entry.body['until']}" if entry.body["until"] else ""
        click.echo(
            f"accepted {f['id']} ({f['severity']} {f['rule']}, {shown(f['client'])}, difference "
            f"{amount_text(f['currency'], f['difference'], True)}){until_text}: "
            f"log entry {entry.seq}, "
            f"hash {entry.hash[:16]}"
        )
    click.echo(
        f"run `reconcile run --cycle {written[0].cycle}` again: the report and the blocker count "
        "show acceptances from the next run on"
    )


def _need_reason(reason: str | None) -> str:
    if reason is None:
        raise InputError("--reason", "is required for ids given on the command line")
    return reason


@cli.command()
@click.argument("id_", metavar="ID")
@by_option
@click.option("--reason", required=True, help="Why the acceptance is withdrawn.")
@click.option("--cycle", help="Billing cycle, YYYY-MM [default: the one it is accepted in].")
@click.pass_context
@input_errors
def unaccept(ctx: click.Context, id_: str, by: str, reason: str, cycle: str | None) -> None:
    """Withdraw the acceptance of one discrepancy (recorded in the log, which keeps both)."""
    from reconcile import acceptance

    with _existing_workspace(ctx) as workspace:
        entry = acceptance.unaccept(
            workspace.con,
            id_.strip(),
            check_cycle(cycle) if cycle else None,
            acceptance.checked_text(by, "--by"),
            acceptance.checked_text(reason, "--reason"),
        )
    click.echo(
        f"withdrew the acceptance of {entry.body['id']} (log entry {entry.body['withdraws']}): "
        f"log entry {entry.seq}, hash {entry.hash[:16]}"
    )


@cli.command(name="signoff")
@click.option("--cycle", required=True, help="Billing cycle, YYYY-MM: its latest run is signed.")
@by_option
@click.option("--role", help="The signer's role, e.g. 'Finance Controller'.")
@click.option("--note", help="A note kept with the sign-off.")
@click.pass_context
@input_errors
def signoff_command(
    ctx: click.Context, cycle: str, by: str, role: str | None, note: str | None
) -> None:
    """Sign off the latest run of a cycle: "parallel billing cycle completed and output
    verified".

    RefusedError (exit 1, saying what is in the way) while a blocker is neither resolved nor
    accepted, rows are quarantined, the inputs changed since the run or acceptances changed
    since it. The log entry binds the run's fingerprint, inputs' hashes, totals and accepted
    differences.
    """
    from reconcile import acceptance, ledger, signoff

    cycle = check_cycle(cycle)
    name = acceptance.checked_text(by, "--by")
    with _existing_workspace(ctx) as workspace:
        loaded = {p: workspace.load_ids(cycle, p) for p in ("autotask", "halopsa")}
        entry = signoff.sign(
            workspace.con,
            cycle,
            loaded,
            name,
            acceptance.checked_text(role, "--role") if role else None,
            acceptance.checked_text(note, "--note") if note else None,
            ledger.now().date(),
        )
    body = entry.body
    as_role = f" ({shown(body['role'])})" if body["role"] else ""
    click.echo(
        f"signed off run #{body['run']} of cycle {cycle} (fingerprint {body['run_id']}) by "
        f"{shown(name)}{as_role}: log entry {entry.seq}, hash {entry.hash}"
    )
    if body["accepted_by_signer"]:
        click.echo(
            f"  note: {shown(name)} also accepted {len(body['accepted_by_signer'])} of the "
            f"{len(body['accepted'])} accepted differences; the sign-off pack flags it "
            "(separation of duties)"
        )
    click.echo(f"export the pack: reconcile export-signoff --cycle {cycle} --out DIR")


@cli.command()
@click.pass_context
@input_errors
def verify(ctx: click.Context) -> None:
    """Re-compute the finance log's hash chain and every hash its entries bind (runs,
    discrepancies, inputs). Exits 4 naming the first broken entry."""
    from reconcile import signoff

    with _existing_workspace(ctx) as workspace:
        log = signoff.verify(workspace.con)
    head = log[-1].hash if log else "(empty log)"
    click.echo(
        f"finance log intact: {counted(len(log), 'entry', 'entries')}, head {head}; every bound "
        "run, discrepancy and input hash re-computed"
    )


@cli.command(name="export-signoff")
@click.option("--cycle", required=True, help="Billing cycle, YYYY-MM, signed off.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the pack (replaced whole).",
)
@click.pass_context
@input_errors
def export_signoff(ctx: click.Context, cycle: str, out_dir: Path) -> None:
    """Write the sign-off pack for the migration file: the signed run's report and
    summary.json, the accepted differences (CSV and Excel workbook), the log excerpt with its
    hashes, and a one-page PDF summary (a print-ready HTML page when chromium is missing).

    Exits 2 when the workspace holds no run of the cycle; refused (exit 1) when the cycle has
    no sign-off or its latest is superseded; exits 4 when the finance log is broken.
    """
    from reconcile import pack

    with _existing_workspace(ctx) as workspace:
        written = pack.export(workspace.con, check_cycle(cycle), out_dir)
    view = pack.signed_view(written.signed.entry)
    click.echo(
        f"sign-off pack of cycle {cycle} (run #{view['run']}, signed off by {shown(view['by'])} "
        f"at {view['at']}) written to {shown(out_dir)}: {', '.join(written.files)}"
    )
    if written.no_pdf:
        click.echo(
            f"no PDF: {written.no_pdf}; wrote {pack.PRINT_NAME}, a print-ready page (print it "
            "to PDF from a browser: A4, one page)",
            err=True,
        )


def _config(
    path: Path | None,
    date_format: str | None,
    currency: str | None,
    timezone: str | None,
    number_format: str | None,
    workbook: bool | None = None,
) -> Config:
    """The one settings model: defaults, reconcile.toml, RECONCILE_* variables, then flags
    (None: not given)."""
    from reconcile.config import load_config

    return load_config(
        path,
        flags={
            "--date-format": date_format,
            "--currency": currency,
            "--timezone": timezone,
            "--number-format": number_format,
            "--workbook/--no-workbook": workbook,
        },
    )


def _readiness(ready: bool) -> str:
    """The verdict as `run` and `history` print it (the report's "Ready for cutover")."""
    return "READY for cutover" if ready else "NOT READY for cutover"


def _lines(side: SideTotals) -> str:
    unknown = side.tax_unknown
    return counted(side.lines, "line") + (f" (tax not stated on {unknown})" if unknown else "")


def describe(result: LoadResult) -> str:
    head = "already loaded (same content)" if result.already_loaded else "loaded"
    text = (
        f"{head} {shown(result.source)} as {result.shape}, cycle {result.cycle}: "
        f"{counted(result.rows_read, 'row')} read = {result.rows_loaded} loaded + "
        f"{result.rows_quarantined} quarantined + {result.rows_excluded} excluded"
        + (f" + {result.rows_skipped} skipped" if result.rows_skipped else "")
        + "".join(f"; {_currency_totals(c)}" for c in result.by_currency)
        + f"; dates {result.date_convention}"
        + (f"; numbers {result.number_format}" if result.number_format else "")
    )
    if result.rows_unreadable_amount:
        text += f"; {counted(result.rows_unreadable_amount, 'row')} with an unreadable amount"
    return "\n".join([text, *(f"  warning: {shown(w)}" for w in result.warnings)])


def _currency_totals(totals: CurrencyControl) -> str:
    """One currency's control totals as `load` prints them, in the order of its rows' (loaded
    + quarantined + excluded): "EUR: 3 rows = 2 + 1 + 0, net EUR 1,200.00 = EUR 1,000.00 +
    EUR 200.00 + EUR 0.00"; the rows whose currency could not be read under UNKNOWN_CURRENCY,
    their amounts without a code."""
    code = totals.currency or UNKNOWN_CURRENCY
    nets = (totals.net_loaded, totals.net_quarantined, totals.net_excluded)
    return (
        f"{code}: {counted(totals.rows_read, 'row')} = {totals.rows_loaded} + "
        f"{totals.rows_quarantined} + {totals.rows_excluded}, "
        f"net {amount_text(totals.currency, totals.net_read)} = "
        + " + ".join(amount_text(totals.currency, n) for n in nets)
    )


def quarantine_message(result: LoadResult) -> str:
    return _rows_message(
        result.source,
        result.rows_quarantined,
        result.rows_read,
        list(result.quarantine),
        loaded=result,
    )


def _rows_message(
    file: str, bad: int, read: int, rows: list[dict[str, Any]], loaded: LoadResult | None
) -> str:
    """`loaded` is the load's result when the other rows were stored (None: `validate`, which
    stores nothing)."""
    listed_rows = rows[:MAX_LISTED]
    listed = "; ".join(f"row {r['row_number']}: {shown(r['reasons'])}" for r in listed_rows)
    more = f"; and {bad - len(listed_rows)} more" if bad > len(listed_rows) else ""
    if loaded is None:
        tail = (
            "validate loads nothing: `reconcile load` would load the other rows and quarantine "
            "these with their reasons."
        )
    else:
        others = [
            f"{n} {what}"
            for n, what in (
                (loaded.rows_excluded, "excluded"),
                (loaded.rows_skipped, "skipped"),
            )
            if n
        ]
        tail = (
            f"{loaded.rows_loaded} row{'s were' if loaded.rows_loaded != 1 else ' was'} loaded"
            + (f" ({', '.join(others)})" if others else "")
            + "; the quarantined rows are kept in the workspace's quarantine table with their "
            "raw values."
        )
    return f"{shown(file)}: {bad} of {counted(read, 'row')} cannot be used. {listed}{more}. {tail}"


def main() -> None:
    """Console entry point: a bug must never pass for a verdict, so it exits 3, not 1.

    At exit, after every other exit handler (atexit runs the last registered first), the
    objects left are frozen out of the garbage collector: the interpreter's final collections
    over all that polars, DuckDB, pyarrow, numpy and pydantic made took about 0.17 CPU-s at
    the end of every command. A command has closed what it wrote by then (workspaces in
    `with`, files written whole); the memory goes back with the process."""
    atexit.unregister(gc.freeze)  # once, however often a test calls main
    atexit.register(gc.freeze)
    try:
        # Not click's standalone mode, which ends an interrupted command with exit 1, the code
        # of a verdict with blockers: a nightly job must not read Ctrl-C as a finished run.
        code = cli.main(standalone_mode=False)
    except click.Abort:  # click's form of KeyboardInterrupt (and of end of input at a prompt)
        _interrupted()
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # output piped into a reader that stopped (`| head`): exit 1 as
        # click does; what is left to flush goes nowhere (Python's documented recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:
        if _query_interrupted(exc):
            _interrupted()
        problem = _machine_fault(exc, None)
        if problem is not None:
            click.echo(f"Error: {problem}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        _internal_error(exc)
    except BaseException as exc:
        # A panic in polars' Rust code reaches Python as pyo3's PanicException, which is not
        # an Exception: uncaught, it printed a traceback and exited 1, a verdict's code.
        if type(exc).__name__ != "PanicException":
            raise
        _internal_error(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _internal_error(exc: BaseException) -> NoReturn:
    """Exit EXIT_INTERNAL, the traceback written to a log file the message names."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile(
        "w", prefix="reconcile-error-", suffix=".log", delete=False, encoding="utf-8"
    ) as log:
        traceback.print_exception(exc, file=log)
    click.echo(
        f"Internal error: {type(exc).__name__}: {shown(exc)}. This is a bug in reconcile, "
        f"not a problem with your files; the details are in {log.name}.",
        err=True,
    )
    sys.exit(EXIT_INTERNAL)


def _interrupted() -> NoReturn:
    """Exit EXIT_INTERRUPTED, saying what an interrupted command leaves."""
    click.echo(
        "Interrupted: what this command had not finished is not kept (a run's --out keeps its "
        "previous set; a load not finished is not in the workspace).",
        err=True,
    )
    sys.exit(EXIT_INTERRUPTED)


def _query_interrupted(exc: Exception) -> bool:
    """Ctrl-C during a DuckDB query: DuckDB stops the query and raises its own error."""
    import duckdb

    return isinstance(exc, duckdb.InterruptException) or (
        type(exc) is RuntimeError and str(exc) == "Query interrupted"
    )
