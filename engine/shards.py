"""Where a run's shards live, behind one small interface: this process, or Dask workers.

The :class:`~tenure.engine.simulator.Simulator` runs the months; a *backend*
holds its shards and does four things with them: hands them their slices of new
customer ids (:meth:`ShardBackend.add`), steps them all through one period and
returns their integer aggregates (:meth:`ShardBackend.step`), checkpoints them
(:meth:`ShardBackend.save`) and builds their parts of the end-of-run tables
(:meth:`ShardBackend.tables`). :class:`LocalShards` keeps them in this process;
:class:`tenure.engine.cluster.DaskShards` keeps each on a Dask worker and
rebuilds lost ones.

A shard where it lives is a :class:`ResidentShard`: its state, the stages it
has run (stage ``t < periods`` adds the ids handed out before period ``t`` and
steps period ``t``; stage ``periods`` only adds the last period's acquisitions)
and its panel rows. Every draw is keyed by customer id and period, so a shard
rebuilt from a checkpoint, or from nothing, by replaying the stages the driver
recorded is the shard it replaces, bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
from tenure.engine import kernels as K
from tenure.engine.state import Shard
from tenure.engine.tables import PanelChunk, cohort_table, customer_table, panel_table

from tenure.errors import InputError
from tenure.io import write_atomic

CHECKPOINT_FORMAT = 1

# one shard's slice of new ids: (first id, count, channel bounds, cohort, initial base?)
Addition = tuple[int, int, np.ndarray, int, bool]
# what every shard received in one stage: its additions, then the period vector (None for the final additions)
StageInputs = tuple[list[list[Addition]], np.ndarray | None]
# where shard k restarts from: its checkpoint file (or None) and the stages to replay since
RestoreSpec = Callable[[int], tuple[str | None, list[tuple[list[Addition], np.ndarray | None]]]]
# one shard's part of the tables: cohorts, customers (None unless tracked), panel (None unless sampled), bytes
ShardTables = tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None, int]



class ShardLost(RuntimeError):
    """A shard is not where the driver expected it (its worker died or restarted); the driver rebuilds it."""


@dataclass(frozen=True)
class ShardSetup:
    """What every shard of a run needs: the kernels' parameters and keys, and the tables' labels."""

    g: np.ndarray
    s: np.ndarray
    age_cdf: np.ndarray
    ntab: np.ndarray
    key: tuple[int, int]
    track: bool
    panel: bool
    periods: int
    segment_names: tuple[str, ...]

    def writable(self) -> ShardSetup:
        """The same setup with writable arrays (arrays received over the network may be read-only)."""
        arrays = {f: np.require(getattr(self, f), requirements="W") for f in ("g", "s", "age_cdf", "ntab")}
        return dataclasses.replace(self, **arrays)


# -- shard state on disk --------------------------------------------------------------------------------------
def save_shard(path: str | os.PathLike[str], shard: Shard, stage: int, panel_chunks: list[PanelChunk]) -> Path:
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
    arrays["panel.periods"] = np.array([int(c[0][0]) for c in panel_chunks], dtype=np.int64)
    arrays["panel.sizes"] = np.array([c[1].size for c in panel_chunks], dtype=np.int64)
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


def load_shard(path: str | os.PathLike[str]) -> tuple[Shard, int, list[PanelChunk]]:
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
    """A shard in the process that runs it (a worker, or the driver), with what it needs to advance."""

    setup: ShardSetup
    shard: Shard
    incarnation: int
    stage: int = 0
    panel_chunks: list[PanelChunk] = field(default_factory=list)
    last: tuple[int, Any] | None = None

    @classmethod
    def open(
        cls,
        setup: ShardSetup,
        incarnation: int,
        checkpoint: str | None,
        replay: Sequence[tuple[list[Addition], np.ndarray | None]],
    ) -> ResidentShard:
        """Create a shard, empty or from ``checkpoint``, and replay the stages the driver has run since."""
        setup = setup.writable()
        if checkpoint is None:
            shard, stage, chunks = Shard(track=setup.track, panel=setup.panel), 0, []
        else:
            shard, stage, chunks = load_shard(checkpoint)
        resident = cls(setup, shard, incarnation, stage, chunks)
        for additions, p in replay:
            resident.advance(resident.stage, additions, p)
        return resident

    def add(self, additions: Sequence[Addition]) -> None:
        """Create the customers of these slices of new ids."""
        st = self.setup
        for first, n, bounds, cohort, initial in additions:
            bounds = np.require(bounds, requirements="W")  # read-only arrays would need another compilation
            self.shard.add(first, n, bounds, cohort, initial, st.age_cdf, st.g, st.s, st.key)

    def advance(self, stage: int, additions: Sequence[Addition], p: np.ndarray | None) -> tuple[Any, float]:
        """Run one stage; return ``(aggregate vector or None, seconds)``. Repeating the last stage is a no-op."""
        if self.last is not None and self.last[0] == stage:
            return self.last[1]
        if stage != self.stage:
            raise ShardLost(f"shard is at stage {self.stage}, asked for stage {stage}")
        st, shard = self.setup, self.shard
        t0 = time.perf_counter()
        self.add(additions)
        agg = None
        if p is not None:
            agg = shard.step(stage, st.g, st.s, np.require(p, requirements="W"), st.ntab, st.key)
            if shard.panel:
                self.panel_chunks.append((np.full(1, stage), *shard.panel_rows()))
        self.stage += 1
        self.last = (stage, (agg, time.perf_counter() - t0))
        return self.last[1]

    def save(self, path: str) -> float:
        """Checkpoint this shard to ``path``; return the seconds it took."""
        t0 = time.perf_counter()
        save_shard(path, self.shard, self.stage, self.panel_chunks)
        return time.perf_counter() - t0

    def tables(self) -> ShardTables:
        """This shard's part of the cohort, customer and panel tables, and its state bytes."""
        st = self.setup
        customers = customer_table([self.shard], st.segment_names) if st.track else None
        panel = panel_table(self.panel_chunks, st.segment_names) if st.panel else None
        return cohort_table([self.shard], st.periods), customers, panel, self.shard.nbytes


# -- the interface, and the shards of this process -----------------------------------------------------------
class ShardBackend(Protocol):
    """Where a simulator's shards live. Results never depend on it, only speed and fault tolerance do."""

    recoveries: int

    def attach(self, setup: ShardSetup, n_shards: int, restore: RestoreSpec) -> None:
        """Take charge of a run's ``n_shards`` shards; ``restore(k)`` says how to rebuild shard ``k``."""

    def add(self, additions: list[list[Addition]]) -> None:
        """Hand shard ``k`` its slices ``additions[k]`` of new ids (created at the latest by the next step)."""

    def step(self, stage: int, p: np.ndarray | None) -> list[tuple[np.ndarray | None, float]]:
        """Run stage ``stage`` on every shard with period vector ``p``: ``(aggregates, seconds)`` per shard."""

    def save(self, paths: list[str]) -> None:
        """Checkpoint shard ``k`` to ``paths[k]``."""

    def tables(self) -> list[ShardTables]:
        """Every shard's part of the end-of-run tables."""

    def fork(self, restore: RestoreSpec) -> ShardBackend:
        """An independent copy of the shards, for a fork of a not-yet-run simulator."""

    def worker_count(self) -> int:
        """Processes holding shards."""

    def describe(self) -> str:
        """Where the shards live, in a few words (for the run's metadata)."""

    def close(self) -> None:
        """Release the shards."""


class LocalShards:
    """Shards held by this process: customers are created as soon as their ids are handed out."""

    def __init__(self) -> None:
        self.residents: dict[int, ResidentShard] = {}
        self.recoveries = 0
        self.n_shards = 0

    def attach(self, setup: ShardSetup, n_shards: int, restore: RestoreSpec) -> None:
        self.setup, self.n_shards, self.restore = setup, n_shards, restore
        for resident in self.residents.values():  # a fork switched to another scenario (Simulator.fork)
            resident.setup = setup.writable()

    def resident(self, k: int) -> ResidentShard:
        """Shard ``k``, opened (from its checkpoint, if any) on first use."""
        if k not in self.residents:
            self.residents[k] = ResidentShard.open(self.setup, 0, *self.restore(k))
        return self.residents[k]

    @property
    def shards(self) -> list[Shard]:
        """The shards' state, in shard order."""
        return [self.resident(k).shard for k in range(self.n_shards)]

    def add(self, additions: list[list[Addition]]) -> None:
        for k in range(self.n_shards):
            self.resident(k).add(additions[k])

    def step(self, stage: int, p: np.ndarray | None) -> list[tuple[np.ndarray | None, float]]:
        return [self.resident(k).advance(stage, [], p) for k in range(self.n_shards)]

    def save(self, paths: list[str]) -> None:
        for k in range(self.n_shards):
            self.resident(k).save(paths[k])

    def tables(self) -> list[ShardTables]:
        return [self.resident(k).tables() for k in range(self.n_shards)]

    def fork(self, restore: RestoreSpec) -> LocalShards:
        new = LocalShards()
        new.attach(self.setup, self.n_shards, restore)
        new.residents = {k: copy.deepcopy(r) for k, r in self.residents.items()}
        return new

    def worker_count(self) -> int:
        return 1

    def describe(self) -> str:
        return "in-process"

    def close(self) -> None:
        self.residents.clear()
