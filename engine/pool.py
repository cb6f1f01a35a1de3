"""Many independent runs at once: one thread per run, each run's kernels on that thread.

``tenure compare``, ``tenure decide``, calibration's simulated panels and replications are
hundreds of short, independent runs. Parallelising inside each run (Numba's thread pool, one
barrier per kernel call) loses as soon as another process takes a core: measured 2.3-4 times
slower than one thread (benchmarks/RESULTS.md). :func:`map_runs` parallelises across runs
instead: ``workers`` Python threads each take whole runs, and every kernel a worker calls runs on
that worker's own thread (:func:`tenure.engine.state.one_thread`) with the GIL released, so a
busy core slows one run down instead of stalling every kernel call of every run.

Results do not depend on the number of workers or on the order the runs finish: each run is a
pure function of its spec (every draw is keyed by seed, customer id and period), and the results
come back in the order of the specs.

``TENURE_RUN_WORKERS`` sets the default number of workers (default: the cores this process may
use); ``TENURE_RUN_WORKERS=1`` runs one run after the other, each on Numba's thread pool as
before (the benchmarks' baseline).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tenure.engine.state import one_thread

__all__ = ["default_workers", "map_runs"]
S = TypeVar("S")
R = TypeVar("R")
WORKERS_ENV = "TENURE_RUN_WORKERS"


def default_workers() -> int:
    """Workers of :func:`map_runs` when none are given: ``TENURE_RUN_WORKERS``, else the usable cores."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"{WORKERS_ENV} must be a whole number, got {env!r}") from None
        return max(n, 1)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def _on_one_thread(fn: Callable[[S], R]) -> Callable[[S], R]:
    def run(spec: S) -> R:
        with one_thread():
            return fn(spec)

    return run


def map_runs(
    fn: Callable[[S], R],
    specs: Sequence[S],
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[R]:
    """``[fn(spec) for spec in specs]``, with up to ``workers`` runs at a time (one thread each).

    ``fn`` must not depend on other runs (it may read shared objects that no run changes, such as
    a simulator to fork). With one worker, or one spec, the runs go one after the other in this
    thread, each free to use Numba's thread pool. ``progress(done, total)`` is called in this
    thread as runs finish, in spec order.

    Examples
    --------
    >>> map_runs(abs, [-1, 2, -3], workers=2)
    [1, 2, 3]
    """
    specs = list(specs)
    n = default_workers() if workers is None else max(int(workers), 1)
    n = min(n, len(specs))
    if n <= 1:
        out = []
        for i, spec in enumerate(specs, 1):
            out.append(fn(spec))
            if progress is not None:
                progress(i, len(specs))
        return out
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="tenure-run") as pool:
        out = []
        for i, result in enumerate(pool.map(_on_one_thread(fn), specs), 1):
            out.append(result)
            if progress is not None:
                progress(i, len(specs))
        return out

