"""Benchmarks: `make bench`. Each measurement runs in its own process so peak memory is its own.

1. realistic cycles (fixtures/generate.py realistic_cycle: an Autotask XML-tag CSV and a HaloPSA
   reporting-database CSV with varied names, a mapping file and about 13% of lines carrying
   differences, with their ground truth) at 20k and 1M lines per side, and any other sizes
   asked for (`bench.py 20k 1m 10m`, `make bench BENCH="20k 1m 10m"`). Side by side: a bare
   DuckDB read_csv of both exports, the hand-written DuckDB diff of the same files
   (bench/baseline.sql) and `reconcile run` end to end, each with wall time and peak memory:
   once as the default settings run it (the Excel workbook written) and once with
   `--no-workbook`; each run's time per stage (`--timings`), the first's findings scored against
   the ground truth.
2. report: a 50,000-discrepancy HTML report, its size and generation time.
3. crosswalk: client name resolution with suggestions for 100,000 unmapped HaloPSA names against
   200,000 Autotask clients (typos of real names and names Autotask never had).
4. finance: the sign-off path on the realistic cycle of 100,000 lines per side, every command
   in its own process: the run, `accept --from` of all its blockers (about 12,000), the run
   again (applying them), `signoff`, `verify`, `export-signoff` and `history`.

Figures are printed as tables and merged into bench/results.json (what is not measured in a
run keeps its previous figures). `--only cycles|report|crosswalk|finance` picks parts.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import hashlib
import json
import os
import random
import resource
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from filelock import FileLock, Timeout

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
sys.path.insert(0, str(ROOT / "fixtures"))
import generate  # noqa: E402

SEED = 16
DEFAULT_SIZES = ("20k", "1m")
STAGES = ("load", "crosswalk", "match", "rules", "outputs", "report")
BASE_SIZE = 1_000_000  # the size the memory of larger runs is compared with
# Issue 16's targets.
TARGET_RATIO = 1.5  # reconcile run / hand-written diff, wall time, at 1M lines per side
TARGET_PEAK_MIB = 1024  # reconcile run at 1M lines per side
TARGET_SMALL_SECONDS = 2.0  # reconcile run of a 20,000-line cycle
TARGET_GROWTH = 1.2  # peak memory at 10M lines per side against 1M
FINANCE_SIZE = 100_000  # lines per side of the cycle the finance commands are measured on


def parse_size(text: str) -> int:
    """20k, 1m, 1.5m or 250000."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    number = text[:-1] if scale > 1 else text
    return int(float(number) * scale)


def realistic(n: int) -> generate.RealisticCycle:
    """The cycle of n lines per side, made once per version of the generator (bench/data)."""
    digest = hashlib.sha256((ROOT / "fixtures" / "generate.py").read_bytes()).hexdigest()[:10]
    folder = DATA / f"realistic-{n}-{SEED}-{digest}"
    if not (folder / "facts.json").exists():
        for stale in DATA.glob(f"realistic-{n}-*"):
            shutil.rmtree(stale)
        folder.mkdir(parents=True)
        made = measure("generate", str(n), str(folder))
        print(
            f"generated {n:,} lines per side in {made['seconds']:.1f} s "
            f"(peak {made['peak_mb']:,} MiB): {folder}"
        )
    return generate.RealisticCycle.at(folder)


CROSSWALK_CANDIDATES = 200_000
CROSSWALK_UNMAPPED = 100_000
SYLLABLES = [
    "ash", "bel", "bro", "car", "den", "dor", "el", "fen", "gar", "hal", "ing", "kel", "lan", "lo",
    "mar", "mer", "nor", "ol", "pen", "per", "qui", "ran", "rho", "sal", "sta", "ston", "tin",
    "tor", "ul", "van", "vel", "wick", "win", "yar", "zen", "ford", "ley", "ham", "by", "wood",
]  # fmt: skip
TRADES = [
    "Dental", "Marine", "Foods", "Joinery", "Solicitors", "Accountants", "Logistics", "Vets",
    "Surveyors", "Engineering", "Bakery", "Motors", "Pharmacy", "Architects", "Plumbing",
]  # fmt: skip
LEGAL = ["Ltd", "Limited", "LLP", "L.L.P.", "Inc", "LLC", "L.L.C.", "PLC", "GmbH", "B.V.", ""]


def generate_names() -> Path:
    """Autotask client names and HaloPSA names none of which is equal to one after
    normalisation: half a one-letter typo of an Autotask name, half a name Autotask never had."""
    path = DATA / "crosswalk-names.parquet"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = random.Random(13)

    def word() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).title()

    def name() -> str:
        return " ".join(w for w in (word(), word(), rng.choice(TRADES), rng.choice(LEGAL)) if w)

    autotask = list(dict.fromkeys(name() for _ in range(CROSSWALK_CANDIDATES + 5_000)))
    autotask = autotask[:CROSSWALK_CANDIDATES]
    halopsa = []
    for i in range(CROSSWALK_UNMAPPED):
        if i % 2:
            halopsa.append(name())
            continue
        words = rng.choice(autotask).split()
        at = rng.randrange(2)
        letter = rng.randrange(1, len(words[at]))
        other = rng.choice([v for v in "aeiouy" if v != words[at][letter]])
        words[at] = words[at][:letter] + other + words[at][letter + 1 :]
        halopsa.append(" ".join(words))
    pl.DataFrame(
        {
            "side": ["autotask"] * len(autotask) + ["halopsa"] * len(halopsa),
            "name": autotask + halopsa,
        }
    ).write_parquet(path)
    return path


# ---- measured tasks (run in a child process) ----


def task_generate(n: str, folder: str) -> None:
    generate.realistic_cycle(int(n), SEED, Path(folder))


# The baselines, each a process of its own that imports DuckDB and nothing else, timed from its
# start to its exit as `reconcile run` is (measure_command): a bare read_csv of both exports into
# a database file (argv: database, autotask, halopsa), and bench/baseline.sql, the hand-written
# diff, in an in-memory DuckDB as one would run it (argv: the script, its paths filled in).
READ_CSV = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
for name, export in zip("ah", sys.argv[2:]):
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_csv('{export}', all_varchar = true)")
con.close()
"""
HAND_DIFF = """
import sys, duckdb
duckdb.connect().execute(open(sys.argv[1], encoding="utf-8").read())
"""


def measure_baselines(folder: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bare read_csv and the hand-written diff of the cycle in `folder` (READ_CSV,
    HAND_DIFF), each measured end to end."""
    cycle = generate.RealisticCycle.at(Path(folder))
    database = DATA / "read_csv.duckdb"
    database.unlink(missing_ok=True)
    read = measure_command(
        [sys.executable, "-c", READ_CSV, str(database), str(cycle.autotask), str(cycle.halopsa)]
    )
    database.unlink(missing_ok=True)
    paths = {
        "autotask": cycle.autotask,
        "halopsa": cycle.halopsa,
        "mapping": cycle.mapping,
        "differences": DATA / "hand-diff.csv",
    }
    template = string.Template((ROOT / "bench" / "baseline.sql").read_text(encoding="utf-8"))
    script = DATA / "hand-diff.sql"
    script.write_text(
        template.substitute({k: str(v).replace("'", "''") for k, v in paths.items()}),
        encoding="utf-8",
    )
    return read, measure_command([sys.executable, "-c", HAND_DIFF, str(script)])


def run_command(folder: str, flags: str) -> list[str]:
    """`reconcile run` of the cycle in `folder` as a user types it (the console script beside
    this interpreter), with --timings and `flags` (space separated: "" for the default
    settings, "--no-workbook")."""
    cycle = generate.RealisticCycle.at(Path(folder))
    return [
        str(Path(sys.executable).with_name("reconcile")),
        "--workspace", str(DATA / "run.duckdb"), "run", "--cycle", generate.REAL_CYCLE,
        "--autotask", str(cycle.autotask), "--halopsa", str(cycle.halopsa),
        "--map", str(cycle.mapping), "--config", str(cycle.config),
        "--out", str(DATA / "out"), "--timings", str(DATA / "timings.json"), *flags.split(),
    ]  # fmt: skip


def measure_command(argv: list[str]) -> dict[str, Any]:
    """A command end to end in its own process, as a user waits for it (the interpreter's
    start, every import, the exit): its seconds, peak memory (MiB, that process's maximum
    resident set, from wait4) and the machine's load average when it started. Exit 0 or 1 (a
    verdict); anything else ends the bench with the command's error output."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode not in (0, 1):
            err.seek(0)
            sys.exit(
                f"bench: {' '.join(argv)} exited {process.returncode}:\n"
                f"{err.read().decode(errors='replace')[-4000:]}"
            )
    return {
        "load_average": round(load, 1),
        "seconds": round(seconds, 2),
        "peak_mb": round(usage.ru_maxrss / 1024),
    }


def task_report(n: str, _: str) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from report_data import sample_report_data

    from reconcile.report import render_report

    data = sample_report_data(int(n))
    start = time.perf_counter()
    render_report(data, DATA / "report-50k.html")
    print(json.dumps({"render_seconds": time.perf_counter() - start}))


def task_crosswalk(path: str, _: str) -> None:
    """Client resolution and suggestions as `run` does them (crosswalk.resolve_frame: its SQL,
    on an in-memory DuckDB connection holding the entity frames): Autotask clients with an id,
    HaloPSA names without."""
    from reconcile.crosswalk import resolve_frame

    names = pl.read_parquet(path)

    def entities(side: str, prefix: str, with_id: bool) -> pl.DataFrame:
        number = pl.int_range(pl.len()).cast(pl.String)
        return names.filter(side=side).select(
            key=prefix + number,
            ids=pl.concat_list(number) if with_id else pl.lit([], pl.List(pl.String)),
            names=pl.concat_list("name"),
            xref=pl.lit(None, pl.String),
        )

    autotask, halopsa = entities("autotask", "a", True), entities("halopsa", "h", False)
    found = resolve_frame("client", autotask, halopsa, [], 60)
    paired, suggested = pl.col("autotask_key").is_not_null(), pl.col("suggestion").is_not_null()
    counts = found.select(
        paired=paired.sum(), suggested=suggested.sum(), no_suggestion=(~paired & ~suggested).sum()
    )
    print(
        json.dumps(
            {
                "candidates": len(autotask),
                "halopsa_names": len(halopsa),
                **counts.row(0, named=True),
            }
        )
    )


TASKS: dict[str, Callable[[str, str], None]] = {
    "generate": task_generate,
    "report": task_report,
    "crosswalk": task_crosswalk,
}


def child(task: str, a: str, b: str) -> None:
    start = time.perf_counter()
    TASKS[task](a, b)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    print(json.dumps({"seconds": round(seconds, 2), "peak_mb": round(peak_mb)}))


def measure(task: str, a: str, b: str) -> dict[str, Any]:
    """The task in a child process: its seconds and peak memory (MiB), and the machine's load
    average when it started (the figures are noisy on a shared machine)."""
    load = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, __file__, "child", task, a, b], capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"bench task {task} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    result: dict[str, Any] = {"load_average": round(load, 1)}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            result.update(json.loads(line))
    return result


def measure_cycle(n: int) -> dict[str, Any]:
    cycle = realistic(n)
    folder = str(cycle.folder)
    print(f"measuring the realistic cycle of {n:,} lines per side ...", flush=True)
    read, diff = measure_baselines(folder)
    # Said now: a failing run ends the bench, and these figures would be lost with it.
    print(
        f"  read_csv {read['seconds']:.2f} s, {read['peak_mb']:,} MiB; hand-written diff "
        f"{diff['seconds']:.2f} s, {diff['peak_mb']:,} MiB",
        flush=True,
    )
    run = measure_run(folder, "")
    found = generate.score(cycle.truth, DATA / "out" / "discrepancies.parquet")
    run["accuracy"] = {
        "truth": found.truth,
        "findings": found.findings,
        "recall": round(found.recall, 4),
        "precision": round(found.precision, 4),
        "right_rule": round(found.right_rule_share, 4),
    }
    return {
        "measured": datetime.datetime.now().isoformat(timespec="minutes"),
        "facts": cycle.facts,
        "read_csv": read,
        "hand_diff": diff,
        "run": run,
        "run_no_workbook": measure_run(folder, "--no-workbook"),
    }


def measure_run(folder: str, flags: str) -> dict[str, Any]:
    """`reconcile run` of the cycle in `folder` with `flags` (run_command), end to end in its own
    process (measure_command): seconds, peak MiB and load average, the seconds of each stage
    (STAGES, and `other`: the interpreter's start, imports, settings, exit) and the peak MiB
    when each ended, from its --timings file."""
    (DATA / "run.duckdb").unlink(missing_ok=True)
    run = measure_command(run_command(folder, flags))
    (DATA / "run.duckdb").unlink(missing_ok=True)
    timings = json.loads((DATA / "timings.json").read_text(encoding="utf-8"))
    seconds, peaks = timings["seconds"], timings["peak_mib"]
    run["stages"] = {stage: round(seconds.get(stage, 0.0), 2) for stage in STAGES}
    run["stages"]["other"] = round(run["seconds"] - sum(seconds.values()), 2)
    run["stage_peak_mib"] = {stage: peaks.get(stage, 0) for stage in STAGES}
    return run


def measure_finance(n: int) -> dict[str, Any]:
    """The finance commands on the realistic cycle of n lines per side, in the order finance
    uses them, each end to end in its own process (measure_command): seconds, peak MiB and load
    average per step, and how many blockers were accepted."""
    folder = str(realistic(n).folder)
    print(f"measuring the finance commands on the cycle of {n:,} lines per side ...", flush=True)
    workspace, pack = DATA / "run.duckdb", DATA / "pack"
    workspace.unlink(missing_ok=True)
    shutil.rmtree(pack, ignore_errors=True)
    run = run_command(folder, "--no-workbook")
    steps = {"run": measure_command(run)}
    blockers = pl.read_parquet(DATA / "out" / "discrepancies.parquet").filter(severity="blocker")
    ids = DATA / "blockers.csv"
    blockers.select("id").write_csv(ids)
    finance = [str(Path(sys.executable).with_name("reconcile")), "--workspace", str(workspace)]
    cycle = ["--cycle", generate.REAL_CYCLE]
    commands = {
        "accept": ["accept", "--from", str(ids), "--reason", "bench", "--by", "Bench", *cycle],
        "run again": run[run.index("run") :],
        "signoff": ["signoff", *cycle, "--by", "Bench Controller"],
        "verify": ["verify"],
        "export-signoff": ["export-signoff", *cycle, "--out", str(pack)],
        "history": ["history"],
    }
    for step, args in commands.items():
        steps[step] = measure_command([*finance, *args])
    workspace.unlink(missing_ok=True)
    return {
        "measured": datetime.datetime.now().isoformat(timespec="minutes"),
        "lines": n,
        "accepted": blockers.height,
        "steps": steps,
    }


def print_finance(finance: dict[str, Any]) -> None:
    """The finance commands' figures, one line per step."""
    print(
        f"\nfinance commands, realistic cycle of {finance['lines']:,} lines per side, "
        f"{finance['accepted']:,} blockers accepted ({finance['measured'].replace('T', ' ')})"
    )
    for step, figures in finance["steps"].items():
        print(
            f"{step:>16} {figures['seconds']:>8.2f} s {figures['peak_mb']:>6,} MiB "
            f"({figures['load_average']})"
        )


# The two runs of each size: the results' key and its label in the tables.
RUNS = (("run", "workbook"), ("run_no_workbook", "no workbook"))


def _runs(cycle: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, figures) of each run measured (figures from before the run without the workbook
    was measured have only the default run)."""
    return [(label, cycle[key]) for key, label in RUNS if key in cycle]


def print_cycles(cycles: dict[str, Any]) -> None:
    """The comparison, one line per run (the default settings: the workbook written; then
    --no-workbook), the runs' stages and peaks, and the default run's scores, per size."""
    sizes = sorted(cycles, key=int)
    print(
        "\nRealistic cycles (fixtures/generate.py, seed 16): wall time and peak memory, each in "
        "its own process\n"
        f"{'lines/side':>11} {'clients':>9} {'true diffs':>10} | {'read_csv':^19} | "
        f"{'hand-written diff':^19} | {'reconcile run':^32} | {'run/diff':>8} | measured (load)"
    )
    for n in sizes:
        c = cycles[n]
        cells = [
            f"{c[k]['seconds']:>7.2f} s {c[k]['peak_mb']:>5,} MiB"
            for k in ("read_csv", "hand_diff")
        ]
        head = f"{int(n):>11,} {c['facts']['clients']:>9,} {c['facts']['discrepancies']:>10,}"
        blank = f"{'':>32} | {'':19} | {'':19}"
        for i, (label, run) in enumerate(_runs(c)):
            left = f"{head} | {cells[0]} | {cells[1]}" if i == 0 else blank
            when = f"{c['measured'].replace('T', ' ')} " if i == 0 else ""
            print(
                f"{left} | {label:<11} {run['seconds']:>8.2f} s {run['peak_mb']:>5,} MiB | "
                f"{run['seconds'] / c['hand_diff']['seconds']:>7.1f}x | "
                f"{when}({run['load_average']})"
            )
    columns = (*STAGES, "other")
    print(f"\nreconcile run per stage (s) {''.join(f'{s:>10}' for s in columns)}")
    for n in sizes:
        for label, run in _runs(cycles[n]):
            stages = run["stages"]
            print(f"{int(n):>14,} {label:<12} {''.join(f'{stages[s]:>10.2f}' for s in columns)}")
    print(f"\npeak memory (MiB) when each stage ended {''.join(f'{s:>10}' for s in STAGES)}")
    for n in sizes:
        for label, run in _runs(cycles[n]):
            peaks = run.get("stage_peak_mib")
            if peaks:  # figures from before the timings recorded memory have none
                print(f"{int(n):>26,} {label:<12} {''.join(f'{peaks[s]:>10,}' for s in STAGES)}")
    print(f"\nagainst the ground truth {'recall':>10}{'precision':>11}{'right rule':>12}")
    for n in sizes:
        a = cycles[n]["run"]["accuracy"]
        print(
            f"{int(n):>24,} {a['recall']:>10.4f}{a['precision']:>11.4f}{a['right_rule']:>12.4f}"
            f"  ({a['truth']:,} true discrepancies, {a['findings']:,} findings)"
        )


def print_targets(cycles: dict[str, Any]) -> None:
    """Issue 16's targets, from the latest figures of each size."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    print("\ntargets (issue 16):")
    big, small, huge = (cycles.get(str(n)) for n in (BASE_SIZE, 20_000, 10 * BASE_SIZE))
    if big:
        for label, run in _runs(big):
            ratio = run["seconds"] / big["hand_diff"]["seconds"]
            print(
                f"  1M: run ({label}) {ratio:.1f}x the hand-written diff (<= {TARGET_RATIO}x): "
                f"{verdict(ratio <= TARGET_RATIO)}"
            )
            print(
                f"  1M: run ({label}) peak {run['peak_mb']:,} MiB (<= {TARGET_PEAK_MIB:,} MiB): "
                f"{verdict(run['peak_mb'] <= TARGET_PEAK_MIB)}"
            )
    if small:
        for label, run in _runs(small):
            print(
                f"  20k: run ({label}) {run['seconds']:.2f} s (< {TARGET_SMALL_SECONDS} s): "
                f"{verdict(run['seconds'] < TARGET_SMALL_SECONDS)}"
            )
    if huge and big:
        growth = huge["run"]["peak_mb"] / big["run"]["peak_mb"]
        print(
            f"  10M: ran to completion; peak {growth:.2f}x the 1M run's "
            f"(<= {TARGET_GROWTH}x): {verdict(growth <= TARGET_GROWTH)}"
        )
    elif not huge:
        print("  10M: not measured (bench.py 10m)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sizes",
        nargs="*",
        default=list(DEFAULT_SIZES),
        help="realistic cycle sizes, lines per side: 20k 1m 10m",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["cycles", "report", "crosswalk", "finance"],
        help="measure only these parts (repeatable)",
    )
    args = parser.parse_args()
    # The runs share bench/data (workspace, output folder, timings file): one bench at a time.
    DATA.mkdir(parents=True, exist_ok=True)
    try:
        FileLock(str(DATA / ".bench.lock")).acquire(timeout=0)  # released when the process ends
    except Timeout:
        sys.exit("another `make bench` is running on bench/data: wait for it to finish")
    parts = set(args.only or ["cycles", "report", "crosswalk", "finance"])
    # Runs are timed as a user's are, their bytecode compiled (pip compiles it at install, an
    # editable checkout's first run writes it), whatever PYTHONDONTWRITEBYTECODE says.
    for folder in ("reconcile", "rules"):
        compileall.compile_dir(ROOT / folder, quiet=1)
    path = ROOT / "bench" / "results.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    results: dict[str, Any] = {
        k: previous[k] for k in ("cycles", "report_50k", "crosswalk", "finance") if k in previous
    }
    if "cycles" in parts:
        cycles = results.setdefault("cycles", {})
        for n in sorted({parse_size(s) for s in args.sizes}):
            cycles[str(n)] = measure_cycle(n)
            path.write_text(json.dumps(results, indent=2) + "\n")
        print_cycles(cycles)
        print_targets(cycles)
    if "report" in parts:
        report = measure("report", "50000", "")
        size = (DATA / "report-50k.html").stat().st_size / 1e6
        results["report_50k"] = {**report, "megabytes": round(size, 1)}
        print(
            f"report with 50,000 discrepancies: {size:.1f} MB, rendered in "
            f"{report['render_seconds']:.2f} s (peak {report['peak_mb']} MB)"
        )
    if "crosswalk" in parts:
        crosswalk = measure("crosswalk", str(generate_names()), "")
        results["crosswalk"] = crosswalk
        print(
            f"crosswalk: {crosswalk['halopsa_names']:,} unmapped names against "
            f"{crosswalk['candidates']:,} candidates in {crosswalk['seconds']:.2f} s "
            f"(peak {crosswalk['peak_mb']} MB; {crosswalk['suggested']:,} suggested, "
            f"{crosswalk['no_suggestion']:,} without a suggestion, {crosswalk['paired']:,} paired)"
        )
    if "finance" in parts:
        results["finance"] = measure_finance(FINANCE_SIZE)
        print_finance(results["finance"])
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(*sys.argv[2:5])
    else:
        main()
