"""Command line: each command parses its options and hands off to one pipeline stage.

Exit codes: 0 success; 1 blockers remain (run); 2 unusable input or a usage error.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from reconcile.errors import EXIT_BAD_INPUT, InputError
from reconcile.ingest import LoadResult, check_cycle, load_paths, read_only
from reconcile.store import DEFAULT_WORKSPACE, Workspace
from reconcile.validate import Settings

F = TypeVar("F", bound=Callable[..., Any])
MAX_LISTED = 20


class InputProblem(click.ClickException):
    exit_code = EXIT_BAD_INPUT

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.message}", err=True)


def input_errors(func: F) -> F:
    """User mistakes in files surface as one paragraph and exit 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            raise InputProblem(str(exc)) from None

    return wrapper  # type: ignore[return-value]


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
                "--currency",
                metavar="ISO",
                help="Currency of exports that do not state one, e.g. GBP.",
            ),
            click.option(
                "--timezone",
                default="Europe/London",
                show_default=True,
                help="HaloPSA tenant time zone (its API stores datetimes in UTC).",
            ),
        ]
    ):
        func = option(func)
    return func


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
@load_options
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.pass_context
@input_errors
def load(
    ctx: click.Context,
    platform: str | None,
    cycle: str,
    replace: bool,
    date_format: str | None,
    currency: str | None,
    timezone: str,
    paths: tuple[Path, ...],
) -> None:
    """Load invoice exports (files, or a folder of API pages) into the workspace.

    Exits 2 when a file is unusable, or when any row had to be quarantined.
    """
    settings = Settings(
        cycle=check_cycle(cycle), date_format=date_format, currency=currency, timezone=timezone
    )
    with Workspace(ctx.obj["workspace"]) as workspace:
        results = load_paths(workspace, list(paths), platform, settings, replace=replace)
    for result in results:
        click.echo(describe(result))
    quarantined = [r for r in results if r.rows_quarantined]
    if quarantined:
        raise InputProblem(" ".join(quarantine_message(r) for r in quarantined))


@cli.command()
@click.option(
    "--platform",
    type=click.Choice(["autotask", "halopsa"]),
    help="Which system the file comes from (detected when omitted).",
)
@click.option("--cycle", default="2000-01", hidden=True)
@load_options
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@input_errors
def validate(
    platform: str | None,
    cycle: str,
    date_format: str | None,
    currency: str | None,
    timezone: str,
    paths: tuple[Path, ...],
) -> None:
    """Check exports and report every problem, without loading anything."""
    settings = Settings(cycle=cycle, date_format=date_format, currency=currency, timezone=timezone)
    problems = []
    for raw, norm in read_only(list(paths), platform, settings):
        rejected = norm.rejected
        bad = rejected.filter(rejected["disposition"] == "quarantined")
        click.echo(
            f"{raw.file}: {raw.shape}, {norm.rows_read} rows: "
            f"{norm.lines.height} valid, {bad.height} invalid, "
            f"{rejected.height - bad.height} excluded; dates {norm.date_convention}"
        )
        for warning in raw.warnings:
            click.echo(f"  warning: {warning}")
        if bad.height:
            problems.append(
                _rows_message(
                    raw.file,
                    bad.height,
                    norm.rows_read,
                    list(bad.iter_rows(named=True)),
                    loaded=False,
                )
            )
    if problems:
        raise InputProblem(" ".join(problems))


def describe(result: LoadResult) -> str:
    head = "already loaded (same content)" if result.already_loaded else "loaded"
    text = (
        f"{head} {result.source} as {result.shape}, cycle {result.cycle}: "
        f"{result.rows_read} rows read = {result.rows_loaded} loaded + "
        f"{result.rows_quarantined} quarantined + {result.rows_excluded} excluded; "
        f"net {result.net_read} = {result.net_loaded} + {result.net_quarantined} + "
        f"{result.net_excluded}; dates {result.date_convention}"
    )
    if result.rows_unreadable_amount:
        text += f"; {result.rows_unreadable_amount} row(s) with an unreadable amount"
    return "\n".join([text, *(f"  warning: {w}" for w in result.warnings)])


def quarantine_message(result: LoadResult) -> str:
    return _rows_message(
        result.source,
        result.rows_quarantined,
        result.rows_read,
        list(result.quarantine),
        loaded=True,
    )


def _rows_message(file: str, bad: int, read: int, rows: list[dict[str, Any]], loaded: bool) -> str:
    listed = "; ".join(f"row {r['row_number']}: {r['reasons']}" for r in rows[:MAX_LISTED])
    more = f"; and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    tail = (
        f"The other {read - bad} rows were loaded; the quarantined rows are kept in the "
        "workspace's quarantine table with their raw values."
        if loaded
        else "Nothing was loaded."
    )
    return f"{file}: {bad} of {read} rows cannot be used. {listed}{more}. {tail}"


def main() -> None:  # pragma: no cover - console entry convenience
    sys.exit(cli())
