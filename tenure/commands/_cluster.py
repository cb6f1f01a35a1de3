"""The scale-out options of `tenure simulate`: --cluster, --shards, --checkpoint-every/-dir and --resume.

They live here so that ``simulate.py`` only declares them and hands over; the engine side is
:mod:`tenure.engine.cluster`. Every check runs before anything is written, and bad input ends
with one line and exit code 2, as for the other options.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from tenure.commands import _options
from tenure.commands._common import progress
from tenure.errors import InputError

Cluster = _options.Cluster
Shards = Annotated[int | None, typer.Option(
    "--shards", help="Customer-id ranges the population is split into (default: one per worker). "
    "Results do not depend on it.", show_default=False)]
CheckpointEvery = Annotated[int | None, typer.Option(
    "--checkpoint-every", metavar="K", help="Checkpoint every K months (default 6 with --checkpoint-dir).",
    show_default=False)]
CheckpointDir = Annotated[Path | None, typer.Option(
    "--checkpoint-dir", help="Folder for checkpoints, so that an interrupted run can --resume "
    "(on a real cluster: a folder every worker can reach).", show_default=False)]
Resume = Annotated[Path | None, typer.Option(
    "--resume", metavar="DIR", help="Finish the interrupted run checkpointed in DIR (its market, "
    "sizes and seed come from the checkpoint). Results equal an uninterrupted run's.", show_default=False)]

# options that define a run: with --resume they come from the checkpoint and may not be given again
_DEFINED_BY_CHECKPOINT = {
    "market": "MARKET", "customers": "--customers", "periods": "--periods", "seed": "--seed",
    "panel_sample": "--panel-sample", "customer_summary": "--customer-summary", "shards": "--shards",
    "checkpoint_dir": "--checkpoint-dir",
}


@dataclass(frozen=True)
class ScaleOptions:
    """The validated scale-out options of one `tenure simulate` call."""

    cluster: str | None = None
    shards: int | None = None
    checkpoint_every: int | None = None
    checkpoint_dir: Path | None = None
    resume: Path | None = None

    @property
    def active(self) -> bool:
        """Whether any scale-out option was given (otherwise the run is one Simulator in this process)."""
        return any(v is not None for v in (self.cluster, self.shards, self.checkpoint_every, self.checkpoint_dir,
                                           self.resume))

    def run(self, sc: Any, panel_sample: float, track: bool | None, threads: int | None, quiet: bool) -> Any:
        """Run (or resume) the simulation with these options; return its :class:`SimulationResult`."""
        import numba

        from tenure.engine.cluster import DistributedSimulator, connect
        from tenure.engine.simulator import Simulator

        if threads is not None:  # the driver's threads (an in-process run); workers use one each
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(connect(self.cluster)) if self.cluster else None
            if self.resume is not None:
                sim = DistributedSimulator.resume(self.resume, client, self.checkpoint_every)
            elif client is None and self.checkpoint_dir is None:
                sim = Simulator(sc, shards=self.shards or 1, panel_fraction=panel_sample, track_customers=track)
            else:
                sim = DistributedSimulator(
                    sc, client, shards=self.shards, panel_fraction=panel_sample, track_customers=track,
                    checkpoint_every=self.checkpoint_every, checkpoint_dir=self.checkpoint_dir,
                )
            done = min(getattr(getattr(sim, "state", None), "stage", 0), sim.periods)  # a resumed run's months
            with progress("simulating", "months", quiet, sim.periods, done) as bar:
                result = sim.run(progress=bar)
        result.meta["wall_seconds"] = time.perf_counter() - t0
        return result


def scale_options(ctx: typer.Context) -> ScaleOptions:
    """Check the scale-out options of `tenure simulate` (from its context) before anything runs."""
    p = ctx.params
    opts = ScaleOptions(p.get("cluster"), p.get("shards"), p.get("checkpoint_every"), p.get("checkpoint_dir"),
                        p.get("resume"))
    if opts.shards is not None and opts.shards < 1:
        raise InputError(f"--shards: must be at least 1, got {opts.shards}")
    if opts.checkpoint_every is not None and opts.checkpoint_every < 1:
        raise InputError(f"--checkpoint-every: must be at least 1, got {opts.checkpoint_every}")
    if opts.cluster is not None:
        from tenure.engine.cluster import parse_cluster, require_dask

        parse_cluster(opts.cluster)
        require_dask()
    if opts.resume is not None:
        sources = {name: ctx.get_parameter_source(name) for name in _DEFINED_BY_CHECKPOINT}
        given = [flag for name, flag in _DEFINED_BY_CHECKPOINT.items()
                 if sources[name] is not None and sources[name].name != "DEFAULT"]  # typer may vendor click
        if given:
            raise InputError(f"--resume: the run's definition comes from the checkpoint; drop {', '.join(given)}")
        if not (opts.resume / "driver.pkl").is_file():
            raise InputError(f"--resume: {opts.resume} holds no tenure checkpoint (driver.pkl is missing)")
        return opts
    if opts.checkpoint_every is not None and opts.checkpoint_dir is None:
        raise InputError("--checkpoint-every: needs a folder, --checkpoint-dir DIR")
    if opts.checkpoint_dir is not None and (opts.checkpoint_dir / "driver.pkl").exists():
        raise InputError(f"--checkpoint-dir: {opts.checkpoint_dir} already holds a checkpoint; continue it with "
                         f"--resume {opts.checkpoint_dir} or choose an empty folder")
    return opts
