"""`tenure simulate`: run a scenario and write its outputs."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tenure.commands import _cluster, _replications
from tenure.commands._common import cli_errors, console, err_console
from tenure.errors import InputError
from tenure.io import TABLE_FORMATS, prepare_out_dir


def check_run_options(customers: int | None, periods: int | None, seed: int | None) -> dict[str, Any]:
    """Validate the run-size options shared by simulate and compare; return scenario overrides."""
    if customers is not None and customers < 1:
        raise InputError(f"--customers: must be at least 1, got {customers}")
    if periods is not None and periods < 1:
        raise InputError(f"--periods: must be at least 1, got {periods}")
    if seed is not None and not 0 <= seed < 2**63:
        raise InputError(f"--seed: must be in [0, 2**63), got {seed}")
    run = {k: v for k, v in (("customers", customers), ("periods", periods), ("seed", seed)) if v is not None}
    return {"run": run} if run else {}


@cli_errors
def simulate(
    ctx: typer.Context,
    scenario: str = typer.Argument(
        None, help="A built-in scenario name (see `tenure scenario list`) or a scenario TOML file. Default: 'default'."
    ),
    customers: int = typer.Option(None, "--customers", "-n", help="Initial customer base (overrides run.customers)."),
    periods: int = typer.Option(None, "--periods", "-t", help="Months to simulate (overrides run.periods)."),
    seed: int = typer.Option(None, "--seed", "-s", help="Seed fixing every random draw (overrides run.seed)."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder for the outputs; without it only the summary is printed."
    ),
    panel_sample: float = typer.Option(
        0.0, "--panel-sample", help="Share of customers (0-1) whose every active month is written to panel.*"
    ),
    fmt: str = typer.Option("parquet", "--format", help="Table format of the outputs: parquet or csv."),
    customer_summary: bool = typer.Option(
        None, "--customer-summary/--no-customer-summary",
        help="Write customers.* (one row per customer). Default: on up to 2 million customers.",
    ),
    threads: int = typer.Option(
        None, "--threads", help="Numba threads (default: all cores). Results do not depend on it."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table."),
    cluster: str = _cluster.CLUSTER,
    shards: int = _cluster.SHARDS,
    checkpoint_every: int = _cluster.CHECKPOINT_EVERY,
    checkpoint_dir: Path = _cluster.CHECKPOINT_DIR,
    resume: Path = _cluster.RESUME,
    replications: int = _replications.REPLICATIONS,
) -> None:
    """Simulate a customer population month by month and summarise it.

    With no arguments, runs the built-in default market (100 000 customers, 36
    months) and prints a summary including the throughput in customer-periods
    per second. Outputs (with --out): periods, cohorts, customers, panel tables,
    run.json and trajectories.png.
    """
    from tenure.scenario import load_scenario

    if fmt not in TABLE_FORMATS:
        raise InputError(f"--format: unknown format {fmt!r}; use one of {', '.join(TABLE_FORMATS)}")
    if not 0.0 <= panel_sample <= 1.0:
        raise InputError(f"--panel-sample: must be a share in [0, 1], got {panel_sample}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads: must be at least 1, got {threads}")
    _replications.check(replications, ctx)
    scale = _cluster.scale_options(ctx)
    sc = load_scenario(scenario, check_run_options(customers, periods, seed) or None)
    if out is not None:
        out = prepare_out_dir(out)
    if replications is not None:
        return _replications.run(sc, replications, cluster, out, fmt, quiet)
    if scale.active:
        result = scale.run(sc, panel_sample, customer_summary, threads, quiet)
    else:
        result = run_with_progress(sc, panel_sample, customer_summary, threads, quiet)
    if not quiet:
        console.print(summary_table(result))
    if out is not None:
        from tenure.engine.report import write_outputs

        paths = write_outputs(result, out, fmt)
        if not quiet:
            console.print(f"wrote {len(paths)} files to [bold]{out}[/]: " + ", ".join(p.name for p in paths.values()))


def run_with_progress(sc: Any, panel_sample: float, track: bool | None, threads: int | None, quiet: bool) -> Any:
    """Build the simulator and run it, with a progress bar on a terminal."""
    import numba

    from tenure.engine.simulator import Simulator

    if threads is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    t0 = time.perf_counter()
    sim = Simulator(sc, panel_fraction=panel_sample, track_customers=track)
    show = not quiet and sys.stderr.isatty()
    if not show:
        result = sim.run()
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("months"),
            TimeRemainingColumn(), console=err_console, transient=True,
        ) as bar:
            task = bar.add_task("sim", total=sim.periods)
            result = sim.run(progress=lambda done, total: bar.update(task, completed=done))
    result.meta["wall_seconds"] = time.perf_counter() - t0
    return result


def summary_table(result: Any) -> Table:
    """The run summary printed by `tenure simulate`."""
    df = result.periods
    last = df.row(-1, named=True)
    first = df.row(0, named=True)
    t = Table(title=f"tenure simulate: {result.scenario.name} (seed {result.meta['seed']})", show_header=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows = [
        ("customers at start / at end", f"{first['active']:,} / {last['active_end']:,}"),
        ("acquired: paid / organic / referral",
         f"{int(df['acquired_paid'].sum()):,} / {int(df['acquired_organic'].sum()):,} / "
         f"{int(df['acquired_referral'].sum()):,}"),
        ("churned (mean monthly churn)", f"{int(df['churned'].sum()):,} ({100 * df['churn_rate'].mean():.2f} %)"),
        ("NPS, last month (95 % interval)",
         f"{100 * last['nps']:+.1f} ({100 * last['nps_low']:+.1f} to {100 * last['nps_high']:+.1f})"),
        ("TRI*M-style index, last month", f"{last['trim_index']:.1f}"),
        ("mean trust / enthusiasm / satisfaction",
         f"{last['mean_trust']:.3f} / {last['mean_enthusiasm']:.3f} / {last['mean_satisfaction']:+.3f}"),
        ("stages new / satisfied / devoted / partner",
         " / ".join(f"{100 * last[c]:.0f} %" for c in ("share_new", "share_satisfied", "share_devoted",
                                                        "share_partner"))),
        ("cross-sales", f"{int(df['cross_sales'].sum()):,}"),
        ("revenue / costs / profit",
         f"{df['revenue'].sum():,.0f} / {df['cost_total'].sum():,.0f} / {df['profit'].sum():,.0f}"),
        ("cumulative discounted profit", f"{last['cumulative_discounted_profit']:,.0f}"),
        ("acquisition cost per paid customer",
         f"{df['cost_acquisition'].sum() / max(int(df['acquired_paid'].sum()), 1):,.2f}"),
        ("customers ever / customer-periods",
         f"{result.meta['customers_ever']:,} / {result.meta['customer_periods']:,}"),
        ("throughput", f"{result.meta['customer_periods_per_second']:,.0f} customer-periods/s"),
        ("time: simulating / total",
         f"{result.meta['elapsed_seconds']:.2f} s / {result.meta.get('wall_seconds', 0):.2f} s"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t
