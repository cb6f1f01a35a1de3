"""Scale a simulation out on Dask: shards that stay on workers, a driver that only adds up integers.

:class:`DaskShards` is the backend of a :class:`~tenure.engine.simulator.Simulator`
whose shards live on Dask workers (:mod:`tenure.engine.shards` defines the
interface; the period loop is the simulator's, the same as in one process). The
population is split into ``shards`` customer-id ranges exactly as in a single
process; each shard's :class:`~tenure.engine.state.Shard` lives on one worker
for the whole run. Per period the driver sends every shard its slice of the new
ids (a few integers) and the period vector ``p``, and gets back the shard's
int64 aggregate vector. Panel rows stay on the workers; the end-of-run tables
are built per shard with the same code as in one process and combined.

Where shards live: a per-run :class:`distributed.WorkerPlugin` holds the shards
of that run on each worker, and tasks are pinned to their shard's worker with
strict restrictions (Dask's work stealing never moves them). Dask actors were
not used because they do not survive the loss of their worker.

Faults: the driver keeps, per period, the slices it handed out and the period
vector (a few hundred bytes). A shard whose worker disappears (or that a
restarted worker no longer holds) is rebuilt on the least-loaded live worker from
its last checkpoint, or from an empty shard, by replaying those periods; every
draw is keyed by customer id and period, so the replay reproduces its state
exactly, and the run finishes with the results of an undisturbed one.

Checkpoints (the simulator's ``checkpoint_every`` and ``checkpoint_dir``): every
shard writes ``shard-KKKKK-stage-SSSS.npz`` where it lives, then the driver
writes ``driver.pkl``; on a real cluster the folder must be on a file system
every worker and the driver can reach.

Only this module needs Dask, and only when a client is used: ``pip install
"tenure[cluster]"``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from tenure.engine.shards import (
    Addition,
    LocalShards,
    ResidentShard,
    RestoreSpec,
    ShardLost,
    ShardSetup,
    ShardTables,
    load_shard,
    save_shard,
)
from tenure.engine.simulator import DriverState, SimulationResult, Simulator
from tenure.engine.tables import combine_cohorts

from tenure._numba_cache import configure_cache
from tenure.errors import InputError
from tenure.scenario import Scenario, load_scenario

try:
    from distributed import WorkerPlugin
except ImportError:  # Dask is the optional `cluster` extra; without it only in-process runs work
    WorkerPlugin = object  # type: ignore[assignment,misc]

# names that callers and saved checkpoints (driver.pkl pickles a DriverState) find here
__all__ = [
    "DaskShards", "DistributedSimulator", "DriverState", "SimulationResult", "combine_cohorts", "connect",
    "load_shard", "parse_cluster", "require_dask", "run_many", "save_shard", "warm_kernels", "warm_workers",
]

INSTALL_HINT = 'pip install "tenure[cluster]"'
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
POLL_SECONDS = 0.5  # how often the driver looks for lost workers while it waits
MAX_RECOVERIES_PER_CALL = 3  # a shard lost more often than this in one period is a real failure, not bad luck


class _ShardStore(WorkerPlugin):
    """Holds one run's shards on a worker; installed on every worker, restarted ones included."""

    def __init__(self) -> None:
        self.shards: dict[int, ResidentShard] = {}

    def teardown(self, worker: Any) -> None:
        self.shards.clear()


class _NumbaFollowsWorkerEnv(WorkerPlugin):
    """Make Numba in a worker obey the worker's own ``NUMBA_*`` environment (``NUMBA_NUM_THREADS=1``).

    A spawned worker first imports the driver's main module and only then receives the environment
    its nanny was given; when that module imports the engine, Numba has already read its settings
    (two threads on two cores, say) and would re-read them at its next compilation, which fails once
    its threads run. Re-reading them here, before the first task, avoids both.
    """

    def setup(self, worker: Any) -> None:
        from numba.core import config
        from numba.np.ufunc import parallel

        if not parallel._is_initialized:
            config.reload_config()
            configure_cache()


def _worker_store(name: str) -> _ShardStore:
    from distributed import get_worker

    try:
        return get_worker().plugins[name]
    except KeyError:
        raise ShardLost(f"worker holds no shards of run {name}") from None


def _open_on_worker(
    name: str, k: int, incarnation: int, setup: ShardSetup, checkpoint: str | None, replay: list
) -> str:
    """Task: build shard ``k`` on this worker; return the worker's address."""
    from distributed import get_worker

    _worker_store(name).shards[k] = ResidentShard.open(setup, incarnation, checkpoint, replay)
    return get_worker().address


def _call_on_worker(name: str, k: int, incarnation: int, method: str, args: tuple, _after: Any = None) -> Any:
    """Task: call ``method(*args)`` on shard ``k`` of this worker (``_after``: a task to wait for)."""
    resident = _worker_store(name).shards.get(k)
    if resident is None or resident.incarnation != incarnation:
        raise ShardLost(f"shard {k} (incarnation {incarnation}) is not on this worker")
    return getattr(resident, method)(*args)



# -- where the shards live: Dask workers ----------------------------------------------------------------------
class DaskShards:
    """Shards held by Dask workers, with the driver-side recovery of lost ones.

    A shard with no live worker (first use, or its worker died) is opened on the live worker holding
    the fewest shards; the call that needed it waits for the opening. A call whose worker leaves while
    it waits (strict restrictions keep it from running anywhere else) is cancelled and recovered the
    same way. Each reopening gets a new incarnation number, so a stale copy is never used.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.recoveries = 0
        self.name = ""

    def attach(self, setup: ShardSetup, n_shards: int, restore: RestoreSpec) -> None:
        self.n_shards, self.setup, self.restore = n_shards, setup, restore
        self.name = f"tenure-shards-{uuid.uuid4().hex[:12]}"
        self.client.register_plugin(_ShardStore(), name=self.name)
        self.placement: dict[int, str] = {}
        self.incarnation = [0] * n_shards
        self.buffered: list[list[Addition]] = [[] for _ in range(n_shards)]

    def add(self, additions: list[list[Addition]]) -> None:
        # kept here and sent with the next step: one task per shard and period
        for k, adds in enumerate(additions):
            self.buffered[k].extend(adds)

    def step(self, stage: int, p: np.ndarray | None) -> list[tuple[np.ndarray | None, float]]:
        additions, self.buffered = self.buffered, [[] for _ in range(self.n_shards)]
        return self.call_all("advance", lambda k: (stage, additions[k], p))

    def save(self, paths: list[str]) -> None:
        self.call_all("save", lambda k: (paths[k],))

    def tables(self) -> list[ShardTables]:
        return self.call_all("tables", lambda k: ())

    def fork(self, restore: RestoreSpec) -> DaskShards:
        raise NotImplementedError("fork a local Simulator and map the forks over the cluster with run_many()")

    def describe(self) -> str:
        return str(self.client.scheduler.address)

    def _live_workers(self) -> list[str]:
        return sorted(self.client.scheduler_info()["workers"])

    def worker_count(self) -> int:
        return len(self._live_workers())

    def _submit(self, k: int, method: str, args: tuple, after: Any = None) -> Any:
        return self.client.submit(
            _call_on_worker, self.name, k, self.incarnation[k], method, args, after,
            workers=[self.placement[k]], allow_other_workers=False, pure=False,
            key=f"tenure-{method}-{k}-{uuid.uuid4().hex[:8]}",
        )

    def _reopen(self, k: int, method: str, args: tuple, live: list[str]) -> Any:
        while not live:  # every worker gone: wait for the cluster (a nanny, an autoscaler) to start one
            time.sleep(POLL_SECONDS)
            live = self._live_workers()
        if k in self.placement:
            self.recoveries += 1
        load = Counter(w for j, w in self.placement.items() if j != k and w in live)
        target = min(live, key=lambda w: (load[w], w))
        self.placement[k] = target
        self.incarnation[k] += 1
        checkpoint, replay = self.restore(k)
        opened = self.client.submit(
            _open_on_worker, self.name, k, self.incarnation[k], self.setup, checkpoint, replay,
            workers=[target], allow_other_workers=False, pure=False, key=f"tenure-open-{k}-{uuid.uuid4().hex[:8]}",
        )
        return self._submit(k, method, args, after=opened)

    def call_all(self, method: str, args: Callable[[int], tuple]) -> list[Any]:
        from distributed import wait

        live = self._live_workers()
        futures = {}
        for k in range(self.n_shards):
            if self.placement.get(k) in live:
                futures[k] = self._submit(k, method, args(k))
            else:
                futures[k] = self._reopen(k, method, args(k), live)
        results: dict[int, Any] = {}
        lost_count: Counter[int] = Counter()
        while futures:
            with contextlib.suppress(TimeoutError), self.client.as_current():
                wait(list(futures.values()), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            lost = []
            for k, fut in list(futures.items()):
                if fut.status == "finished":
                    results[k] = fut.result()
                    del futures[k]
                elif fut.status == "error":
                    if not isinstance(fut.exception(), ShardLost):
                        fut.result()  # raises the worker's exception with its traceback
                    lost.append(k)
            live = self._live_workers()
            lost += [k for k in futures if k not in lost and self.placement[k] not in live]
            for k in lost:
                lost_count[k] += 1
                if lost_count[k] > MAX_RECOVERIES_PER_CALL:
                    raise RuntimeError(f"shard {k} was lost {lost_count[k]} times during one '{method}' call")
                self.client.cancel(futures[k])
                futures[k] = self._reopen(k, method, args(k), live)
        return [results[k] for k in range(self.n_shards)]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the cluster may already be gone; the shards go with it
            self.client.unregister_worker_plugin(self.name)


class DistributedSimulator(Simulator):
    """A :class:`Simulator` whose shards live on the workers of a Dask ``client`` (or here, without one).

    Same results as ``Simulator(scenario, ...).run()``, bit for bit, for any client, number of
    workers and number of shards: only where the shards live differs.

    Parameters
    ----------
    scenario
        A validated scenario.
    client
        A ``distributed.Client`` (see :func:`connect`), or ``None`` to hold the shards in this process.
    shards
        Logical shards (customer-id ranges); default one per worker. Results do not depend on it.
    panel_fraction, track_customers, budgets, checkpoint_every, checkpoint_dir
        As for :class:`Simulator`.

    Examples
    --------
    >>> from tenure.engine.cluster import DistributedSimulator, connect
    >>> from tenure.api import load_scenario
    >>> sc = load_scenario("default", run={"customers": 20_000, "periods": 6})
    >>> with connect("local:2") as client:  # doctest: +SKIP
    ...     result = DistributedSimulator(sc, client).run()
    """

    def __init__(
        self,
        scenario: Scenario,
        client: Any = None,
        shards: int | None = None,
        panel_fraction: float = 0.0,
        track_customers: bool | None = None,
        budgets: dict[str, float] | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if shards is None:
            shards = max(len(client.scheduler_info()["workers"]), 1) if client is not None else 1
        super().__init__(
            scenario, shards, panel_fraction, track_customers, budgets, backend=backend_for(client),
            checkpoint_every=checkpoint_every, checkpoint_dir=checkpoint_dir,
        )

    @classmethod
    def resume(  # type: ignore[override]
        cls, directory: str | os.PathLike[str], client: Any = None, checkpoint_every: int | None = None
    ) -> DistributedSimulator:
        """:meth:`Simulator.resume` with the shards on ``client``'s workers (or here, without one)."""
        return super().resume(directory, backend_for(client), checkpoint_every)  # type: ignore[return-value]


def backend_for(client: Any) -> Any:
    """The backend for a Dask ``client``: :class:`DaskShards`, or local shards when ``client`` is None."""
    return LocalShards() if client is None else DaskShards(client)


# -- connecting to a cluster ------------------------------------------------------------------------------------
_ADDRESS = re.compile(r"^(tcp|tls)://[^\s:/]+:\d{1,5}$")


def parse_cluster(spec: str) -> tuple[str, int | str]:
    """Check a ``--cluster`` value: ``("local", N)`` for ``local:N``, ``("address", spec)`` for a scheduler."""
    spec = spec.strip()
    if spec.startswith("local"):
        m = re.fullmatch(r"local:(\d+)", spec)
        if not m or int(m.group(1)) < 1:
            raise InputError(f"--cluster: expected local:N with N ≥ 1 worker processes, got {spec!r}")
        return "local", int(m.group(1))
    if _ADDRESS.match(spec):
        return "address", spec
    raise InputError(f"--cluster: expected local:N or tcp://HOST:PORT, got {spec!r}")


def require_dask() -> Any:
    """Import and return ``distributed``, or raise :class:`InputError` naming the ``cluster`` extra."""
    try:
        import distributed
    except ImportError:
        raise InputError(f"--cluster needs Dask (dask.distributed), which is not installed: {INSTALL_HINT}") from None
    return distributed


def warm_kernels() -> None:
    """Compile the engine's kernels in this process, or load them from the cache.

    Run it before starting local workers: they then load the compiled kernels instead of compiling
    them all at once into the same cache folder, which can corrupt it (numba#4807).
    """
    sc = load_scenario(None, {"run": {"customers": 64, "periods": 1, "seed": 0}})
    Simulator(sc, panel_fraction=0.5, track_customers=True).run()


def warm_workers(client: Any) -> None:
    """Load or compile the kernels on every worker, one worker per host first, so no two compile together."""
    by_host: dict[str, list[str]] = {}
    for address in sorted(client.scheduler_info()["workers"]):
        by_host.setdefault(address.rsplit(":", 1)[0], []).append(address)
    first = [ws[0] for ws in by_host.values()]
    rest = [w for ws in by_host.values() for w in ws[1:]]
    for wave in (first, rest):
        futures = [client.submit(warm_kernels, workers=[w], allow_other_workers=False, pure=False) for w in wave]
        client.gather(futures)


@contextlib.contextmanager
def connect(cluster: Any) -> Iterator[Any]:
    """A Dask client for ``cluster``: ``"local:N"``, ``"tcp://HOST:PORT"`` or an existing client.

    ``local:N`` warms the kernel cache here, then starts a LocalCluster of N worker processes with
    one thread each and one Numba thread each (``NUMBA_NUM_THREADS=1``); it is shut down on exit.
    An address connects to a running scheduler, whose workers warm their kernels one host at a
    time; the cluster is left running on exit. An existing client is used as it is.
    """
    if not isinstance(cluster, str):
        yield cluster
        return
    kind, value = parse_cluster(cluster)
    distributed = require_dask()
    if kind == "local":
        warm_kernels()
        with warnings.catch_warnings():
            # without a dashboard the scheduler still serves its health routes, on any free port
            warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
            local = distributed.LocalCluster(
                n_workers=int(value), threads_per_worker=1, processes=True, dashboard_address=None, env=WORKER_ENV,
            )
        with local, distributed.Client(local) as client:
            client.register_plugin(_NumbaFollowsWorkerEnv(), name="tenure-numba-env")
            yield client
        return
    try:
        client = distributed.Client(str(value), timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--cluster: cannot reach a Dask scheduler at {value}: {exc}") from None
    with client:
        client.register_plugin(_NumbaFollowsWorkerEnv(), name="tenure-numba-env")
        warm_workers(client)
        yield client


def run_many(
    fn: Callable[[Any], Any],
    specs: Sequence[Any],
    cluster: Any = None,
    *,
    retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[Any]:
    """``[fn(spec) for spec in specs]``, as independent Dask tasks when ``cluster`` is given.

    For independent runs, such as the (point, seed) runs of ``tenure compare`` or replications.
    ``cluster`` is ``None`` (run here, in order), ``"local:N"``, ``"tcp://HOST:PORT"`` or a client
    (see :func:`connect`). ``fn`` must be importable by the workers (a module-level function) and
    deterministic given its spec; a task whose worker dies is retried up to ``retries`` times.
    Results come back in the order of ``specs``; ``progress(done, total)`` is called as they finish.

    Examples
    --------
    >>> run_many(abs, [-1, 2, -3])
    [1, 2, 3]
    """
    specs = list(specs)
    if cluster is None:
        out = []
        for i, spec in enumerate(specs, 1):
            out.append(fn(spec))
            if progress is not None:
                progress(i, len(specs))
        return out
    with connect(cluster) as client:
        from distributed import as_completed

        futures = client.map(fn, specs, pure=False, retries=retries)
        if progress is not None:
            for i, _ in enumerate(as_completed(futures), 1):
                progress(i, len(specs))
        return client.gather(futures)
