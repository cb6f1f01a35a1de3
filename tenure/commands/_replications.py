"""`tenure simulate --replications R`: the same market under R seeds, with 90 % intervals over seeds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tenure.commands._common import console, progress
from tenure.errors import InputError

Replications = Annotated[int | None, typer.Option(
    "--replications", "-r", metavar="R", help="Run the market under R seeds (--seed, --seed + 1, ...) and "
    "report 90 % intervals over them; with --cluster the replications are parallel tasks. Writes "
    "replications.* (every seed's periods), replications_summary.* and replications.json.", show_default=False)]


def check(replications: int | None, ctx: typer.Context) -> None:
    """Validate --replications and the options it cannot be combined with, before anything runs."""
    if replications is None:
        return
    if replications < 2:
        raise InputError(f"--replications: at least 2, got {replications}")
    p = ctx.params
    clash = [flag for name, flag in (("shards", "--shards"), ("checkpoint_every", "--checkpoint-every"),
                                     ("checkpoint_dir", "--checkpoint-dir"), ("resume", "--resume"))
             if p.get(name) is not None]
    if p.get("panel_sample"):
        clash.append("--panel-sample")
    if p.get("customer_summary"):
        clash.append("--customer-summary")
    if clash:
        raise InputError(f"--replications: runs whole markets per seed and writes period tables only; "
                         f"drop {', '.join(clash)}")


def run(sc: Any, replications: int, cluster: str | None, out: Path | None, fmt: str, quiet: bool) -> None:
    """Run the replications (here or as Dask tasks), print the intervals, write the tables into ``out``."""
    from tenure.io import write_json, write_table
    from tenure.simulations.replications import replicate, run_totals, summarise_replications

    t0 = time.perf_counter()
    with progress("replications", "runs", quiet, replications) as bar:
        df = replicate(sc, replications, cluster, progress=bar)
    seconds = time.perf_counter() - t0
    totals = run_totals(df)
    intervals = {c: {"mean": float(totals[c].mean()), "q05": float(totals[c].quantile(0.05, "linear")),
                     "q95": float(totals[c].quantile(0.95, "linear"))} for c in totals.columns if c != "seed"}
    if not quiet:
        t = Table(title=f"tenure simulate: {sc.name}, {replications} replications (seeds "
                  f"{totals['seed'][0]}–{totals['seed'][-1]}), 90 % intervals over seeds")
        t.add_column("measure")
        for col in ("mean", "5 %", "95 %"):
            t.add_column(col, justify="right")
        for name, v in intervals.items():
            digits = 4 if name in ("mean_churn_rate", "nps_last") else 0
            t.add_row(name.replace("_", " "), *(f"{v[k]:,.{digits}f}" for k in ("mean", "q05", "q95")))
        t.add_row("time", f"{seconds:.1f} s", "", "")
        console.print(t)
    if out is not None:
        write_table(df, out / "replications", fmt)
        write_table(summarise_replications(df), out / "replications_summary", fmt)
        write_json({"schema_version": 1, "scenario": sc.name, "replications": replications,
                    "seeds": totals["seed"].to_list(), "customers": sc["run"]["customers"],
                    "periods": sc["run"]["periods"], "cluster": cluster, "seconds": seconds,
                    "totals": intervals, "per_seed": totals.to_dicts()}, out / "replications.json")
