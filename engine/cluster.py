"""Scale a simulation out on Dask: shards that stay on workers, a driver that only adds up integers.

A :class:`DistributedSimulator` runs the same period loop as
:class:`~tenure.engine.simulator.Simulator` and returns the same tables, bit for
bit, for any number of workers and shards. The population is split into
``shards`` customer-id ranges exactly as in a single process (each period's new
ids go to the shards in contiguous slices); each shard's
:class:`~tenure.engine.state.Shard` lives on one worker for the whole run.
Per period the driver

1. sends every shard its slice of the new ids (a few integers) and the period
   vector ``p``, and gets back the shard's int64 aggregate vector;
2. adds the aggregates (integers, so the order does not matter), draws the
   acquisitions and writes the period row, as the single-process loop does.

Panel rows stay on the workers; the end-of-run tables are built per shard with
the simulator's own table code and combined (the cohort table by adding integer
counts, the others by concatenating and sorting on their unique keys).

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

Checkpoints (``checkpoint_every`` periods, into ``checkpoint_dir``): every shard
writes its arrays and panel rows to ``shard-KKKKK-stage-SSSS.npz``, then the
driver writes ``driver.pkl`` (scenario, options, period rows, the slices handed
out, next id); files are written under a temporary name and renamed, and the
previous checkpoint is deleted only after the new ``driver.pkl`` is in place, so
an interrupted run always finds one whole checkpoint. :meth:`DistributedSimulator.resume`
continues from it, on a cluster or in one process. On a real cluster the folder
must be on a file system every worker and the driver can reach.

Without a Dask client the shards live in this process: the same code path, so a
plain run can be checkpointed and resumed too.

Only this module needs Dask, and only when a client is used: ``pip install
"tenure[cluster]"``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import pickle
import re
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
from tenure.engine import kernels as K
from tenure.engine._cache import configure_cache
from tenure.engine.simulator import LEVERS, SimulationResult, Simulator
from tenure.engine.state import Shard

from tenure.errors import InputError
from tenure.io import write_atomic
from tenure.scenario import Scenario, load_scenario

try:
    from distributed import WorkerPlugin
except ImportError:  # Dask is the optional `cluster` extra; without it only in-process runs work
    WorkerPlugin = object  # type: ignore[assignment,misc]

INSTALL_HINT = 'pip install "tenure[cluster]"'
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
DRIVER_FILE = "driver.pkl"
CHECKPOINT_FORMAT = 1
POLL_SECONDS = 0.5  # how often the driver looks for lost workers while it waits
MAX_RECOVERIES_PER_CALL = 3  # a shard lost more often than this in one period is a real failure, not bad luck

# one shard's slice of new ids: (first id, count, channel bounds, cohort, initial base?)
Addition = tuple[int, int, np.ndarray, int, bool]
# what every shard receives in one stage: its additions, then the period vector (None for the final additions)
StageInputs = tuple[list[list[Addition]], np.ndarray | None]

# Numba's default threading layer must not be entered by two threads at once; a worker started with several
# threads would otherwise run two shards' parallel kernels concurrently.
_KERNEL_LOCK = threading.Lock()


class ShardLost(RuntimeError):
    """A shard is not where the driver expected it (its worker died or restarted); the driver rebuilds it."""


# -- shard state on disk --------------------------------------------------------------------------------------
def save_shard(path: str | os.PathLike[str], shard: Shard, stage: int, panel_chunks: list[tuple]) -> Path:
    """Write a shard, the number of stages it has run and its panel rows to ``path`` (``.npz``), atomically.

    Every field of :class:`~tenure.engine.state.Shard` is saved (arrays trimmed to the used rows), so a
    restored shard continues exactly as the original would have.
    """
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "stage": stage}
    for f in dataclasses.fields(shard):
        value = shard.__dict__[f.name]
        if f.name == "arrays":
            arrays.update({f"arrays.{name}": a[: shard.n] for name, a in value.items()})
        elif isinstance(value, np.ndarray):
            arrays[f"field.{f.name}"] = value
        else:
            meta[f.name] = value
    sizes = np.array([c[1].size for c in panel_chunks], dtype=np.int64)
    arrays["panel.periods"] = np.array([int(c[0][0]) for c in panel_chunks], dtype=np.int64)
    arrays["panel.sizes"] = sizes
    arrays["panel.ids"] = np.concatenate([c[1] for c in panel_chunks]) if panel_chunks else np.zeros(0, np.int64)
    arrays["panel.segments"] = (
        np.concatenate([c[2] for c in panel_chunks]) if panel_chunks else np.zeros(0, np.uint8)
    )
    arrays["panel.values"] = (
        np.concatenate([c[3] for c in panel_chunks]) if panel_chunks else np.zeros((0, K.N_PANEL), np.int64)
    )
    arrays["meta"] = np.array(json.dumps(meta))

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())

    return write_atomic(path, _write)


def load_shard(path: str | os.PathLike[str]) -> tuple[Shard, int, list[tuple]]:
    """Read a shard written by :func:`save_shard`: ``(shard, stages run, panel chunks)``."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path}: not a tenure shard checkpoint of format {CHECKPOINT_FORMAT}")
        scalars = {f.name: meta[f.name] for f in dataclasses.fields(Shard) if f.name in meta}
        shard = Shard(**{k: v for k, v in scalars.items() if k not in ("capacity", "n")})
        shard.arrays = {key.split(".", 1)[1]: z[key] for key in z.files if key.startswith("arrays.")}
        for key in z.files:
            if key.startswith("field."):
                setattr(shard, key.split(".", 1)[1], z[key])
        shard.n = shard.capacity = int(meta["n"])
        ends = np.cumsum(z["panel.sizes"])
        starts = ends - z["panel.sizes"]
        ids, segs, vals = z["panel.ids"], z["panel.segments"], z["panel.values"]
        chunks = [
            (np.full(1, t), ids[a:b], segs[a:b], vals[a:b])
            for t, a, b in zip(z["panel.periods"].tolist(), starts.tolist(), ends.tolist(), strict=True)
        ]
    return shard, int(meta["stage"]), chunks


# -- one shard where it lives -----------------------------------------------------------------------------------
@dataclass
class ResidentShard:
    """A shard on the worker (or in the process) that runs it, with what it needs to advance.

    ``sim`` is a copy of the driver's :class:`Simulator` holding only this shard: it carries the kernels'
    parameters and builds the shard's part of the end-of-run tables with the simulator's own code.
    ``stage`` counts the stages run: stage ``t < periods`` adds the slices of new ids handed out for
    period ``t`` and steps period ``t``; stage ``periods`` only adds the last period's acquisitions.
    """

    sim: Simulator
    shard: Shard
    incarnation: int
    stage: int = 0
    panel_chunks: list[tuple] = field(default_factory=list)
    last: tuple[int, Any] | None = None

    @classmethod
    def open(
        cls,
        template: Simulator,
        incarnation: int,
        checkpoint: str | None,
        replay: Sequence[tuple[list[Addition], np.ndarray | None]],
    ) -> ResidentShard:
        """Create a shard, empty or from ``checkpoint``, and replay the stages the driver has run since."""
        sim = copy.copy(template)
        for name, value in vars(sim).items():
            if isinstance(value, np.ndarray) and not value.flags.writeable:
                setattr(sim, name, value.copy())  # arrays received over the network may be read-only
        if checkpoint is None:
            shard, stage, chunks = Shard(track=sim.track, panel=sim.panel_fraction > 0), 0, []
        else:
            shard, stage, chunks = load_shard(checkpoint)
        sim.shards = [shard]
        resident = cls(sim, shard, incarnation, stage, chunks)
        for additions, p in replay:
            resident.advance(resident.stage, additions, p)
        return resident

    def advance(self, stage: int, additions: list[Addition], p: np.ndarray | None) -> tuple[Any, float]:
        """Run one stage; return ``(aggregate vector or None, seconds)``. Repeating the last stage is a no-op."""
        if self.last is not None and self.last[0] == stage:
            return self.last[1]
        if stage != self.stage:
            raise ShardLost(f"shard is at stage {self.stage}, asked for stage {stage}")
        sim, shard = self.sim, self.shard
        t0 = time.perf_counter()
        agg = None
        with _KERNEL_LOCK:
            for first, n, bounds, cohort, initial in additions:
                bounds = np.require(bounds, requirements="W")  # read-only arrays would need another compilation
                shard.add(first, n, bounds, cohort, initial, sim.age_cdf, sim.g, sim.s, sim.key)
            if p is not None:
                p = np.require(p, requirements="W")
                agg = shard.step(stage, sim.g, sim.s, p, sim.ntab, sim.key)
        if p is not None and shard.panel:
            self.panel_chunks.append((np.full(1, stage), *shard.panel_rows()))
        self.stage += 1
        self.last = (stage, (agg, time.perf_counter() - t0))
        return self.last[1]

    def save(self, path: str) -> float:
        """Checkpoint this shard to ``path``; return the seconds it took."""
        t0 = time.perf_counter()
        save_shard(path, self.shard, self.stage, self.panel_chunks)
        return time.perf_counter() - t0

    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, int]:
        """This shard's part of the cohort, customer and panel tables, and its state bytes."""
        sim = self.sim
        customers = sim.customer_table() if sim.track else None
        panel = sim._panel_table(self.panel_chunks) if sim.panel_fraction > 0 else None
        return sim.cohort_table(), customers, panel, self.shard.nbytes


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
    name: str, k: int, incarnation: int, template: Simulator, checkpoint: str | None, replay: list
) -> str:
    """Task: build shard ``k`` on this worker; return the worker's address."""
    from distributed import get_worker

    _worker_store(name).shards[k] = ResidentShard.open(template, incarnation, checkpoint, replay)
    return get_worker().address


def _call_on_worker(name: str, k: int, incarnation: int, method: str, args: tuple, _after: Any = None) -> Any:
    """Task: call ``method(*args)`` on shard ``k`` of this worker (``_after``: a task to wait for)."""
    resident = _worker_store(name).shards.get(k)
    if resident is None or resident.incarnation != incarnation:
        raise ShardLost(f"shard {k} (incarnation {incarnation}) is not on this worker")
    return getattr(resident, method)(*args)


# -- where the shards live: this process, or Dask workers -------------------------------------------------------
RestoreSpec = Callable[[int], tuple[str | None, list[tuple[list[Addition], np.ndarray | None]]]]


class _Shards(Protocol):
    recoveries: int

    def call_all(self, method: str, args: Callable[[int], tuple]) -> list[Any]: ...

    def worker_count(self) -> int: ...

    def close(self) -> None: ...


class _InProcessShards:
    """Shards held by this process (no Dask): the same calls, so checkpoints work without a cluster."""

    def __init__(self, n_shards: int, template: Simulator, restore: RestoreSpec) -> None:
        self.n_shards, self.template, self.restore = n_shards, template, restore
        self.shards: dict[int, ResidentShard] = {}
        self.recoveries = 0

    def worker_count(self) -> int:
        return 1

    def call_all(self, method: str, args: Callable[[int], tuple]) -> list[Any]:
        out = []
        for k in range(self.n_shards):
            if k not in self.shards:
                self.shards[k] = ResidentShard.open(self.template, 0, *self.restore(k))
            out.append(getattr(self.shards[k], method)(*args(k)))
        return out

    def close(self) -> None:
        self.shards.clear()


class _DaskShards:
    """Shards held by Dask workers, with the driver-side recovery of lost ones.

    A shard with no live worker (first use, or its worker died) is opened on the live worker holding
    the fewest shards; the call that needed it waits for the opening. A call whose worker leaves while
    it waits (strict restrictions keep it from running anywhere else) is cancelled and recovered the
    same way. Each reopening gets a new incarnation number, so a stale copy is never used.
    """

    def __init__(self, client: Any, n_shards: int, template: Simulator, restore: RestoreSpec) -> None:
        self.client, self.n_shards, self.template, self.restore = client, n_shards, template, restore
        self.name = f"tenure-shards-{uuid.uuid4().hex[:12]}"
        client.register_plugin(_ShardStore(), name=self.name)
        self.placement: dict[int, str] = {}
        self.incarnation = [0] * n_shards
        self.recoveries = 0

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
            _open_on_worker, self.name, k, self.incarnation[k], self.template, checkpoint, replay,
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


# -- the driver -------------------------------------------------------------------------------------------------
@dataclass
class DriverState:
    """Everything the driver accumulates during a run; saved in ``driver.pkl`` at each checkpoint.

    ``stage``: periods completed (``periods + 1`` once the last acquisitions are added);
    ``history[t]``: what every shard received in stage ``t`` (new-id slices and the period
    vector), enough to replay any shard; ``pending``: the slices for the next stage.
    """

    active: int
    stage: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    cum_disc: float = 0.0
    customer_periods: int = 0
    elapsed: float = 0.0
    history: list[StageInputs] = field(default_factory=list)
    pending: list[list[Addition]] = field(default_factory=list)
    checkpoint_stage: int | None = None
    checkpoint_files: list[str] = field(default_factory=list)


class DistributedSimulator(Simulator):
    """A :class:`Simulator` whose shards live on Dask workers (or in this process), with checkpoints.

    Same results as ``Simulator(scenario, ...).run()``, bit for bit, for any client, number of
    workers and number of shards.

    Parameters
    ----------
    scenario
        A validated scenario.
    client
        A ``distributed.Client`` (see :func:`connect`), or ``None`` to hold the shards in this process.
    shards
        Logical shards (customer-id ranges); default one per worker. Results do not depend on it.
    panel_fraction, track_customers, budgets
        As for :class:`Simulator`.
    checkpoint_every
        Checkpoint every this many periods (``None``: no checkpoints).
    checkpoint_dir
        Folder for the checkpoints; on a real cluster, one that every worker can reach.

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
        if checkpoint_every is not None and checkpoint_every < 1:
            raise InputError(f"--checkpoint-every: must be at least 1, got {checkpoint_every}")
        if checkpoint_every is not None and checkpoint_dir is None:
            raise InputError("--checkpoint-every: needs a folder, --checkpoint-dir DIR")
        if shards is None:
            shards = max(len(client.scheduler_info()["workers"]), 1) if client is not None else 1
        self._pending: list[list[Addition]] | None = None
        super().__init__(scenario, shards, panel_fraction, track_customers, budgets)
        self.shards = []
        self._template = Simulator.__new__(Simulator)
        vars(self._template).update({k: v for k, v in vars(self).items() if k != "_pending"})
        self.client = client
        self.checkpoint_every = checkpoint_every if checkpoint_dir is not None else None
        if checkpoint_dir is not None and checkpoint_every is None:
            self.checkpoint_every = 6
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.state = DriverState(active=self.customers0)
        self._shards: _Shards | None = None

    def fork(self, budgets: dict[str, float] | None = None) -> Simulator:
        """Not supported: fork a :class:`Simulator` and map the forks with :func:`run_many` instead."""
        raise NotImplementedError("fork a Simulator and map the forks over the cluster with run_many()")

    def _add_customers(self, count: int, bounds: np.ndarray, cohort: int, initial: bool) -> None:
        # record the slices; the shards add the customers where they live, at the start of the next stage
        if self._pending is None:
            self._pending = [[] for _ in range(self.n_shards)]
        for k, (first, n) in enumerate(self._slices(self.next_id, count)):
            if n > 0:
                self._pending[k].append((first, n, bounds.copy(), cohort, initial))
        self.next_id += count

    # -- checkpoints --------------------------------------------------------------------------------------------
    @classmethod
    def resume(
        cls, directory: str | os.PathLike[str], client: Any = None, checkpoint_every: int | None = None
    ) -> DistributedSimulator:
        """Rebuild an interrupted run from the checkpoint in ``directory``; :meth:`run` then finishes it.

        The scenario, seed, sizes and shard count come from the checkpoint; the client may differ
        (more, fewer or no workers). Later checkpoints go to the same folder.
        """
        directory = Path(directory)
        path = directory / DRIVER_FILE
        if not path.is_file():
            raise InputError(f"--resume: {directory} holds no tenure checkpoint ({DRIVER_FILE} is missing)")
        try:
            saved = pickle.loads(path.read_bytes())
        except Exception as exc:
            raise InputError(f"--resume: {path} cannot be read: {exc}") from None
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"--resume: {path} is not a tenure checkpoint of format {CHECKPOINT_FORMAT}")
        opts = saved["options"]
        sim = cls(
            saved["scenario"], client, shards=opts["shards"], panel_fraction=opts["panel_fraction"],
            track_customers=opts["track_customers"], budgets=opts["budgets"],
        )
        sim.checkpoint_dir = directory
        sim.checkpoint_every = checkpoint_every or opts["checkpoint_every"]
        sim.state = saved["state"]
        sim.next_id = saved["next_id"]
        sim._pending = sim.state.pending
        return sim

    def _restore_spec(self, k: int) -> tuple[str | None, list[tuple[list[Addition], np.ndarray | None]]]:
        """Where shard ``k`` restarts from: its last checkpoint file (or nothing) and the stages to replay."""
        st = self.state
        start = st.checkpoint_stage or 0
        checkpoint = None
        if st.checkpoint_stage is not None:
            assert self.checkpoint_dir is not None
            checkpoint = str((self.checkpoint_dir / st.checkpoint_files[k]).resolve())
        return checkpoint, [(adds[k], p) for adds, p in st.history[start : st.stage]]

    def _write_checkpoint(self, shards: _Shards) -> float:
        """Every shard writes its file, then the driver its state; the previous checkpoint is deleted last."""
        assert self.checkpoint_dir is not None
        t0 = time.perf_counter()
        st = self.state
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        names = [f"shard-{k:05d}-stage-{st.stage:04d}.npz" for k in range(self.n_shards)]
        directory = self.checkpoint_dir.resolve()
        shards.call_all("save", lambda k: (str(directory / names[k]),))
        old = [] if st.checkpoint_stage in (None, st.stage) else st.checkpoint_files
        st.checkpoint_stage, st.checkpoint_files = st.stage, names
        st.pending = self._pending or []
        saved = {
            "format": CHECKPOINT_FORMAT,
            "scenario": self.sc,
            "options": {
                "shards": self.n_shards, "panel_fraction": self.panel_fraction, "track_customers": self.track,
                "budgets": dict(self.budgets), "checkpoint_every": self.checkpoint_every,
            },
            "state": st,
            "next_id": self.next_id,
        }

        def _write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                pickle.dump(saved, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())

        write_atomic(self.checkpoint_dir / DRIVER_FILE, _write)
        for name in old:
            (self.checkpoint_dir / name).unlink(missing_ok=True)
        return time.perf_counter() - t0

    # -- the run ------------------------------------------------------------------------------------------------
    def _stage(self, shards: _Shards, p: np.ndarray | None) -> list[tuple[Any, float]]:
        """Hand every shard its new ids (and ``p``), run the stage, and record it for replays."""
        st = self.state
        additions = self._pending or [[] for _ in range(self.n_shards)]
        self._pending = [[] for _ in range(self.n_shards)]
        st.history.append((additions, p))
        stage = st.stage
        out = shards.call_all("advance", lambda k: (stage, additions[k], p))
        st.stage += 1
        return out

    def run(self, progress: Callable[[int, int], None] | None = None) -> SimulationResult:
        """Simulate the remaining periods and return the tables; ``progress(done, total)`` after each period."""
        if self.checkpoint_dir is not None and self.state.stage == 0 and self.state.checkpoint_stage is None:
            if (self.checkpoint_dir / DRIVER_FILE).exists():
                raise InputError(
                    f"--checkpoint-dir: {self.checkpoint_dir} already holds a checkpoint; continue it with "
                    "--resume or choose an empty folder"
                )
        if self.state.stage > self.periods:
            raise RuntimeError("this run is finished; build a new simulator to run again")
        if self.client is None:
            shards: _Shards = _InProcessShards(self.n_shards, self._template, self._restore_spec)
        else:
            shards = _DaskShards(self.client, self.n_shards, self._template, self._restore_spec)
        try:
            return self._run(shards, progress)
        finally:
            shards.close()

    def _run(self, shards: _Shards, progress: Callable[[int, int], None] | None) -> SimulationResult:
        st, sc = self.state, self.sc
        d = sc["market"]["monthly_discount_rate"]
        repair_cents = round(sc["levers"]["repair_cost"] * 100)
        budget_cents = {k: round(v * 100) for k, v in self.budgets.items()}
        shard_seconds = np.zeros(self.n_shards)
        shard_customer_periods = np.zeros(self.n_shards, dtype=np.int64)
        checkpoint_seconds = 0.0
        t0 = time.perf_counter()
        for t in range(st.stage, self.periods):
            p, eff = self.period_inputs(t, st.active)
            results = self._stage(shards, p)
            agg = np.zeros(K.N_A, dtype=np.int64)
            for k, (shard_agg, seconds) in enumerate(results):
                agg += shard_agg
                shard_seconds[k] += seconds
                shard_customer_periods[k] += int(shard_agg[K.A_ACTIVE])
            n_active = int(agg[K.A_ACTIVE])
            st.customer_periods += n_active
            active_end = n_active - int(agg[K.A_CHURNED])
            acq = self.acquire(t, active_end, int(agg[K.A_PROMOTERS]), int(agg[K.A_DETRACTORS]))
            costs = {f"cost_{k}": (budget_cents[k] if n_active else 0) for k in LEVERS}
            costs["cost_acquisition"] = budget_cents["acquisition"] if acq["prospects"] else 0
            costs["cost_recovery"] = int(agg[K.A_REPAIRED]) * repair_cents
            st.rows.append(self._period_row(t, agg, acq, costs, eff, d))
            st.cum_disc += st.rows[-1]["profit"] / (1.0 + d) ** (t + 1)
            st.rows[-1]["cumulative_discounted_profit"] = st.cum_disc
            st.active = active_end + acq["acquired_paid"] + acq["acquired_organic"] + acq["acquired_referral"]
            if self.checkpoint_every and (t + 1) % self.checkpoint_every == 0:
                st.elapsed += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint_seconds += self._write_checkpoint(shards)
            if progress is not None:
                progress(t + 1, self.periods)
        self._stage(shards, None)  # the last period's acquisitions join the population
        st.elapsed += time.perf_counter() - t0
        parts = shards.call_all("tables", lambda k: ())
        meta = {
            "scenario": sc.name,
            "seed": self.seed,
            "customers": self.customers0,
            "periods": self.periods,
            "shards": self.n_shards,
            "customers_ever": self.next_id,
            "customer_periods": st.customer_periods,
            "elapsed_seconds": st.elapsed,
            "customer_periods_per_second": st.customer_periods / st.elapsed if st.elapsed > 0 else float("nan"),
            "state_bytes": sum(part[3] for part in parts),
            "cluster": _describe(self.client),
            "workers": shards.worker_count(),
            "recoveries": shards.recoveries,
            "checkpoint_seconds": checkpoint_seconds,
            "shard_step_seconds": shard_seconds.tolist(),
            "shard_customer_periods": shard_customer_periods.tolist(),
        }
        return SimulationResult(
            scenario=sc,
            periods=pl.DataFrame(st.rows),
            cohorts=combine_cohorts([part[0] for part in parts]),
            customers=pl.concat([part[1] for part in parts]).sort("customer_id") if self.track else None,
            panel=(
                pl.concat([part[2] for part in parts]).sort(["customer_id", "period"])
                if self.panel_fraction > 0 else None
            ),
            meta=meta,
        )


def combine_cohorts(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """One cohort table from the shards' tables: survivors and cohort sizes are integer counts, so they add up."""
    columns = parts[0].columns
    combined = (
        pl.concat(parts)
        .group_by(["cohort", "age"])
        .agg(pl.col("survivors").sum(), pl.col("cohort_size").sum())
        .sort(["cohort", "age"])
        .with_columns(survival=pl.col("survivors") / pl.col("cohort_size"))
    )
    return combined.select(columns)


def _describe(client: Any) -> str:
    if client is None:
        return "in-process"
    return str(client.scheduler.address)


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
