"""The run's workbook (discrepancies.xlsx) written by a child process beside the rest of the
run: XlsxWriter is pure Python (≈ 1 s of one core at 100k lines), and the run's own Python
(its summary, report and other outputs) is not waiting on it; the machine's second core is.

The child is a new interpreter (`python -c BOOTSTRAP` on the run's import path, never a fork:
DuckDB and polars run thread pools), started early (`WorkbookChild()`, once the run has loaded
its exports) so its imports are done by the time it has work. It is then given one job on its
standard input, a line of JSON {"parquet": …, "xlsx": …}: it writes the workbook from the run's
discrepancies.parquet exactly as `reconcile workbook` does (workbook.read_chunks into
outputs.write_xlsx: the same bytes as from the run's table), and answers on its standard output
with one line of JSON: {} when written, {"errno", "strerror", "filename"} for an OSError (a full
disk, a read-only folder: raised again in the run as that OSError, so the run reports it as
now), or {"error": text} for anything else (raised as a RuntimeError: a bug, exit 3). A child
killed with SIGKILL (the out-of-memory killer's signal) fails the run with exit 2 and what to do;
a child stopped by any other signal is a bug. On any failure the run's staging
folder, and the partial file in it, is removed with the rest (outputs.output_folder).

The child dies with the run (Linux's PR_SET_PDEATHSIG), and a run that stops before its workbook
is written kills it (WorkbookChild.stop): nothing is left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any

from reconcile.errors import InputError

PR_SET_PDEATHSIG = 1
# The child's first statement: the run's import path (argv[1], JSON) in place of its own.
BOOTSTRAP = (
    "import json, sys; sys.path[:] = json.loads(sys.argv.pop(1)); "
    "from reconcile.workbook_child import main; main()"
)
# Exports (bytes, both sides) from which a run writes its workbook in a child: below it the
# child's start (≈ 0.35 CPU-s of imports, on the core the match and the rules use too) costs
# more than the workbook written in the run (outputs.write_xlsx: ≈ 0.2 CPU-s for the 10 MB of
# a 20k-line cycle, a demo's ≈ 10 ms).
CHILD_FROM_BYTES = 20_000_000


class WorkbookChild:
    """A started child, waiting for its job (`write`); `wait` for its answer, `stop` always."""

    def __init__(self) -> None:
        # The run's own import path (as multiprocessing's spawn hands it over): the child
        # imports the reconcile the run imported, wherever that came from.
        self.process = subprocess.Popen(
            [sys.executable, "-c", BOOTSTRAP, json.dumps(sys.path), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # One polars thread: the child's work is XlsxWriter's Python; the run's has the rest.
            env={**os.environ, "POLARS_MAX_THREADS": "1"},
        )

    def write(self, parquet: Path, xlsx: Path) -> None:
        """Give the child its job: the workbook `xlsx` from the discrepancy table `parquet`. A
        child that has died already is reported by `wait`."""
        stdin = self._stdin()
        with contextlib.suppress(BrokenPipeError):
            stdin.write(json.dumps({"parquet": str(parquet), "xlsx": str(xlsx)}).encode() + b"\n")
            stdin.close()

    def wait(self) -> None:
        """Wait for the child's answer: return when the workbook is written, else raise what
        stopped it (an OSError as the child met it, or a RuntimeError)."""
        assert self.process.stdout is not None
        answer = self.process.stdout.read()
        code = self.process.wait()
        failure = _failure(answer, code)
        if failure is not None:
            raise failure

    def stop(self) -> None:
        """End the child if it still runs (a run that stopped before its workbook was written:
        the partial file goes with the run's staging folder). Idempotent."""
        process = self.process
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()

    def _stdin(self) -> IO[bytes]:
        assert self.process.stdin is not None
        return self.process.stdin


def _failure(answer: bytes, code: int) -> Exception | None:
    """What the child's answer (its standard output) and exit code say went wrong, if anything."""
    if code == -signal.SIGKILL:  # what the system's out-of-memory killer sends
        from reconcile.report_model import WORKBOOK_FILE  # the run's module, loaded already

        return InputError(
            WORKBOOK_FILE,
            "the workbook's writer was killed (SIGKILL) before it finished; the system's "
            "out-of-memory killer stops a process this way",
            hint="Run again with more free memory, or with --no-workbook and write the "
            "workbook afterwards with `reconcile workbook`.",
        )
    if code < 0:
        name = signal.Signals(-code).name
        return RuntimeError(f"the workbook's writer was stopped ({name}) before it finished")
    try:
        reply: dict[str, Any] = json.loads(answer.decode() or "null") or {}
    except ValueError:
        reply = {"error": f"unreadable answer {answer[:200]!r}"}
    if code == 0 and not reply:
        return None
    if "strerror" in reply:
        if reply["errno"] is None:  # polars' wording of a system error ("… (os error 28)")
            return OSError(reply["strerror"])
        return OSError(reply["errno"], reply["strerror"], reply["filename"])
    return RuntimeError(f"the workbook's writer failed: {reply.get('error', f'exit {code}')}")


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when the run that started it ends (Linux); exit now
    if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        sys.exit(0)


def _job(line: bytes) -> dict[str, Any]:
    """Write the workbook the job line names; the answer to send back."""
    from reconcile.outputs import write_xlsx
    from reconcile.workbook import read_chunks

    job = json.loads(line)
    parquet = Path(job["parquet"])
    try:
        write_xlsx(read_chunks(parquet, _rows(parquet)), Path(job["xlsx"]))
    except OSError as exc:
        return {"errno": exc.errno, "strerror": exc.strerror or str(exc), "filename": exc.filename}
    except Exception:  # a bug: its traceback is the run's error text
        return {"error": traceback.format_exc().strip().splitlines()[-1]}
    return {}


def _rows(parquet: Path) -> int:
    """The Parquet file's number of rows, from its metadata."""
    import polars as pl

    return int(pl.scan_parquet(parquet, glob=False).select(pl.len()).collect().item())


def main() -> None:
    """The child: imports first, then one job from standard input (none: exit 0)."""
    _die_with_parent(int(sys.argv[1]))
    import polars  # noqa: F401  (imported while the run loads, before the job comes)
    import xlsxwriter  # noqa: F401

    import reconcile.workbook  # noqa: F401

    line = sys.stdin.buffer.readline()
    if not line.strip():
        return
    answer = _job(line)
    sys.stdout.buffer.write(json.dumps(answer).encode())
    sys.stdout.flush()
    sys.exit(1 if answer else 0)
