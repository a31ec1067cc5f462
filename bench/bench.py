"""Benchmarks: `make bench`. Each measurement runs in its own process so peak memory is its own.

1. load: 1M lines per side (Autotask CSV, HaloPSA CSV) against a bare DuckDB read_csv.
2. run: `reconcile run` end to end at 100k and 1M lines per side against a plain DuckDB
   full-outer-join diff of the same files.
3. report: a 50,000-discrepancy HTML report, its size and generation time.
4. crosswalk: client name resolution with suggestions for 100,000 unmapped HaloPSA names against
   200,000 Autotask clients (typos of real names and names Autotask never had).

Figures are printed as a table and written to bench/results.json.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
ITEMS = [
    ("Managed Workstation", 3500), ("Managed Server", 12000),
    ("Microsoft 365 Business Premium", 1810),
    ("Backup per TB", 1234), ("Firewall management", 4500), ("Email Security", 295),
    ("Remote Support", 8500), ("Dark Web Monitoring", 2500), ("EDR SentinelOne", 1100),
    ("Microsoft 365 Business Basic", 490),
]  # fmt: skip
LINES_PER_CLIENT = len(ITEMS)


def _money(cents: pl.Expr) -> pl.Expr:
    """Exact cents as text: integer arithmetic only, never floats."""
    sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    whole = (cents.abs() // 100).cast(pl.String)
    part = (cents.abs() % 100).cast(pl.String).str.zfill(2)
    return pl.concat_str([sign, whole, pl.lit("."), part])


def generate(n: int) -> tuple[Path, Path]:
    """An Autotask CSV and a HaloPSA CSV of n lines each; 1% quantity changes, 0.1% missing,
    0.1% extra, so the run has real work but the answer is known."""
    at_path, halo_path = DATA / f"autotask-{n}.csv", DATA / f"halopsa-{n}.csv"
    if at_path.exists() and halo_path.exists():
        return at_path, halo_path
    DATA.mkdir(parents=True, exist_ok=True)
    items = pl.DataFrame(
        {
            "item": range(len(ITEMS)),
            "item_name": [i for i, _ in ITEMS],
            "price": [p for _, p in ITEMS],
        },
        schema={"item": pl.Int64, "item_name": pl.String, "price": pl.Int64},
    )
    base = (
        pl.DataFrame({"i": pl.int_range(0, n, eager=True)})
        .with_columns(
            (pl.col("i") // LINES_PER_CLIENT).alias("client"),
            (pl.col("i") % LINES_PER_CLIENT).alias("item"),
            (pl.col("i") * 7 % 50 + 1).alias("qty"),
        )
        .join(items, on="item", maintain_order="left")
        .with_columns(pl.format("Client {} Ltd", pl.col("client")).alias("client_name"))
    )
    at = base.with_columns((pl.col("qty") * pl.col("price")).alias("net"))
    at.select(
        pl.col("i").alias("Billing Item ID"),
        pl.format("INV-{}", pl.col("client")).alias("Invoice Number"),
        pl.lit("11/01/2026").alias("Invoice Date"),
        pl.col("client").alias("Organization ID"),
        pl.col("client_name").alias("Organization Name"),
        pl.lit("Recurring Service").alias("Contract Type"),
        pl.col("item_name").alias("Item Name"),
        pl.col("qty").alias("Quantity"),
        _money(pl.col("price")).alias("Unit Price"),
        _money(pl.col("net")).alias("Extended Price"),
        _money(pl.col("net") // 5).alias("Total Tax"),
        pl.lit("11/01/2026").alias("Service Period Start Date"),
        pl.lit("11/30/2026").alias("Service Period End Date"),
    ).write_csv(at_path)
    halo = (
        base.filter(pl.col("i") % 1000 != 999)
        .with_columns(
            pl.when(pl.col("i") % 100 == 7).then(pl.col("qty") + 1).otherwise("qty").alias("qty")
        )
        .with_columns((pl.col("qty") * pl.col("price")).alias("net"))
    )
    extra = base.filter(pl.col("i") % 1000 == 500).with_columns(
        (pl.col("i") + 10 * n).alias("i"),
        pl.lit("Dark Web Monitoring Plus").alias("item_name"),
        (pl.col("qty") * pl.col("price")).alias("net"),
    )
    pl.concat([halo, extra]).select(
        (pl.col("i") + 5_000_000).alias("id"),
        pl.col("client").alias("ihid"),
        pl.format("NW{}", pl.col("client")).alias("invoicenumber"),
        pl.lit("01/11/2026").alias("invoice_date"),
        (pl.col("client") + 90_000).alias("client_id"),
        pl.col("client_name"),
        pl.col("item_name").alias("item_shortdescription"),
        pl.col("qty").alias("qty_order"),
        _money(pl.col("price")).alias("unit_price"),
        _money(pl.col("net")).alias("net_amount"),
        _money(pl.col("net") // 5).alias("tax_amount"),
        pl.lit("01/11/2026").alias("startdate"),
        pl.lit("30/11/2026").alias("enddate"),
        pl.lit("false").alias("isgroupdesc"),
        pl.lit("false").alias("isinactive"),
    ).write_csv(halo_path)
    return at_path, halo_path


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


def task_duckdb_read(at: str, halo: str) -> None:
    import duckdb

    con = duckdb.connect(str(DATA / "baseline.duckdb"))
    for name, path in (("a", at), ("h", halo)):
        con.execute(
            f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_csv('{path}', "
            "all_varchar = true, header = true)"
        )
    con.close()


def task_duckdb_join(at: str, halo: str) -> None:
    """The plain diff a data engineer would write: one full outer join on client and item."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"""
        CREATE TABLE a AS SELECT "Organization Name" AS client, "Item Name" AS item,
               CAST("Quantity" AS DECIMAL(18,4)) AS qty,
               CAST("Extended Price" AS DECIMAL(18,2)) AS net
        FROM read_csv('{at}', all_varchar = true);
        CREATE TABLE h AS SELECT client_name AS client, item_shortdescription AS item,
               CAST(qty_order AS DECIMAL(18,4)) AS qty, CAST(net_amount AS DECIMAL(18,2)) AS net
        FROM read_csv('{halo}', all_varchar = true);
        COPY (SELECT coalesce(a.client, h.client) AS client, coalesce(a.item, h.item) AS item,
                     a.qty, h.qty, a.net, h.net, coalesce(h.net, 0) - coalesce(a.net, 0) AS diff
              FROM a FULL OUTER JOIN h ON a.client = h.client AND a.item = h.item
              WHERE a.net IS DISTINCT FROM h.net OR a.qty IS DISTINCT FROM h.qty
              ORDER BY client, item) TO '{DATA / "baseline-diff.csv"}';
    """)


def _cli(args: list[str]) -> None:
    from reconcile.cli import cli

    with contextlib.suppress(SystemExit):
        cli(args, standalone_mode=False)


def task_load(at: str, halo: str) -> None:
    ws = DATA / "load.duckdb"
    ws.unlink(missing_ok=True)
    for platform, path in (("autotask", at), ("halopsa", halo)):
        load = ["load", "--cycle", "2026-11", "--currency", "GBP", "--platform", platform, path]
        _cli(["--workspace", str(ws), *load])


def task_run(at: str, halo: str) -> None:
    ws = DATA / "run.duckdb"
    ws.unlink(missing_ok=True)
    _cli(
        [
            "--workspace",
            str(ws),
            "run",
            "--cycle",
            "2026-11",
            "--currency",
            "GBP",
            "--autotask",
            at,
            "--halopsa",
            halo,
            "--out",
            str(DATA / "out"),
        ]
    )


def task_report(n: str, _: str) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from report_data import sample_report_data

    from reconcile.report import render_report

    data = sample_report_data(int(n))
    start = time.perf_counter()
    render_report(data, DATA / "report-50k.html")
    print(json.dumps({"render_seconds": time.perf_counter() - start}))


def task_crosswalk(path: str, _: str) -> None:
    """Client resolution and suggestions as `run` does them (crosswalk.resolve_frame on
    entity frames): Autotask clients with an id, HaloPSA names without."""
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
    "duckdb_read": task_duckdb_read,
    "duckdb_join": task_duckdb_join,
    "load": task_load,
    "run": task_run,
    "report": task_report,
    "crosswalk": task_crosswalk,
}


def child(task: str, a: str, b: str) -> None:
    start = time.perf_counter()
    TASKS[task](a, b)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 2), "peak_mb": round(peak_mb)}))


def measure(task: str, a: str, b: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "child", task, a, b],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            result.update(json.loads(line))
    return result


def main() -> None:
    results: dict[str, Any] = {}
    for n in (100_000, 1_000_000):
        at, halo = (str(p) for p in generate(n))
        rows = {
            "read": measure("duckdb_read", at, halo),
            "join": measure("duckdb_join", at, halo),
            "run": measure("run", at, halo),
        }
        if n == 1_000_000:
            rows["load"] = measure("load", at, halo)
        results[str(n)] = rows
        for name, r in rows.items():
            rate = 2 * n / r["seconds"]
            print(
                f"{n:>9,} lines/side  {name:<5} {r['seconds']:>7.2f} s  {rate:>10,.0f} rows/s"
                f"  peak {r['peak_mb']:>5} MB"
            )
        ratio = rows["run"]["seconds"] / rows["join"]["seconds"]
        print(f"{n:>9,} lines/side  run / plain join = {ratio:.2f}x")
        if "load" in rows:
            print(
                f"{n:>9,} lines/side  load / bare read_csv = "
                f"{rows['load']['seconds'] / rows['read']['seconds']:.2f}x"
            )
    report = measure("report", "50000", "")
    size = (DATA / "report-50k.html").stat().st_size / 1e6
    results["report_50k"] = {**report, "megabytes": round(size, 1)}
    print(
        f"report with 50,000 discrepancies: {size:.1f} MB, rendered in "
        f"{report['render_seconds']:.2f} s (peak {report['peak_mb']} MB)"
    )
    crosswalk = measure("crosswalk", str(generate_names()), "")
    results["crosswalk"] = crosswalk
    print(
        f"crosswalk: {crosswalk['halopsa_names']:,} unmapped names against "
        f"{crosswalk['candidates']:,} candidates in {crosswalk['seconds']:.2f} s "
        f"(peak {crosswalk['peak_mb']} MB; {crosswalk['suggested']:,} suggested, "
        f"{crosswalk['no_suggestion']:,} without a suggestion, {crosswalk['paired']:,} paired)"
    )
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(*sys.argv[2:5])
    else:
        main()
