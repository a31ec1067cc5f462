"""Wall time and memory per stage of a run: `reconcile run --timings FILE` and the benchmark
read it.

`recording()` opens a clock for the current context; `with stage(name):` around a piece of the
pipeline adds its seconds to that name and notes the process's peak resident memory (MiB, the
high-water mark so far: the first stage whose figure jumps is the one that needed the memory).
Stages may nest: an inner stage's seconds count for the inner one only, so the stages add up to
the time they cover. Outside `recording()` a stage records nothing and costs one
context-variable lookup.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Clock:
    """Seconds per stage and peak resident memory (MiB) when each stage last ended."""

    seconds: dict[str, float] = field(default_factory=dict)
    peak_mib: dict[str, int] = field(default_factory=dict)
    inner: list[float] = field(default_factory=list)  # per open stage: seconds of stages inside

    def as_json(self) -> dict[str, dict[str, float] | dict[str, int]]:
        """The --timings file: {"seconds": {stage: s}, "peak_mib": {stage: MiB}}."""
        return {"seconds": self.seconds, "peak_mib": self.peak_mib}


def peak_mib() -> int:
    """The process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak / (1024 * 1024 if sys.platform == "darwin" else 1024))


_CLOCK: ContextVar[Clock | None] = ContextVar("reconcile_timing", default=None)


@contextmanager
def recording() -> Iterator[Clock]:
    """Seconds and peak memory per stage of what runs inside, filled in as each stage ends."""
    clock = Clock()
    token = _CLOCK.set(clock)
    try:
        yield clock
    finally:
        _CLOCK.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    clock = _CLOCK.get()
    if clock is None:
        yield
        return
    clock.inner.append(0.0)
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        own = elapsed - clock.inner.pop()
        clock.seconds[name] = clock.seconds.get(name, 0.0) + own
        clock.peak_mib[name] = peak_mib()
        if clock.inner:
            clock.inner[-1] += elapsed
