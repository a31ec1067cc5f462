"""Wall time per stage of a run: `reconcile run --timings FILE` and the benchmark read it.

`recording()` opens a clock for the current context; `with stage(name):` around a piece of the
pipeline adds its seconds to that name. Stages may nest: an inner stage's seconds count for the
inner one only, so the stages add up to the time they cover. Outside `recording()` a stage
records nothing and costs one context-variable lookup.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class _Clock:
    seconds: dict[str, float] = field(default_factory=dict)
    inner: list[float] = field(default_factory=list)  # per open stage: seconds of stages inside


_CLOCK: ContextVar[_Clock | None] = ContextVar("reconcile_timing", default=None)


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Seconds per stage of what runs inside, filled in as each stage ends."""
    clock = _Clock()
    token = _CLOCK.set(clock)
    try:
        yield clock.seconds
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
        if clock.inner:
            clock.inner[-1] += elapsed
