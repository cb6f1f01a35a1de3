"""`tenure simulate`: run a market and write its outputs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from tenure.commands import _cluster, _replications
from tenure.commands._common import cli_errors, console, output_folder, run_meta
from tenure.commands._options import Customers, Market, OutDir, Periods, Quiet, Seed
from tenure.errors import InputError
from tenure.io import TABLE_FORMATS


@cli_errors
def simulate(
    ctx: typer.Context,
    market: Market = None,
    customers: Customers = None,
    periods: Periods = None,
    seed: Seed = None,
    out: OutDir = None,
    panel_sample: Annotated[float, typer.Option(
        "--panel-sample", help="Share of customers (0-1) whose every active month is written to panel.*")] = 0.0,
    fmt: Annotated[str, typer.Option("--format", help="Table format of the outputs: parquet or csv.")] = "parquet",
    customer_summary: Annotated[bool | None, typer.Option(
        "--customer-summary/--no-customer-summary",
        help="Write customers.* (one row per customer). Default: on up to 2 million customers.",
        show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="Numba threads (default: all cores). Results do not depend on it.",
        show_default=False)] = None,
    quiet: Quiet = False,
    cluster: _cluster.Cluster = None,
    shards: _cluster.Shards = None,
    checkpoint_every: _cluster.CheckpointEvery = None,
    checkpoint_dir: _cluster.CheckpointDir = None,
    resume: _cluster.Resume = None,
    replications: _replications.Replications = None,
    feedback: Annotated[bool, typer.Option(
        "--feedback", help="Also write feedback.* : one contact feedback event per survey answer of the panel "
        "sample (the format `tenure alarm` reads; needs --panel-sample).")] = False,
    feedback_change: Annotated[str | None, typer.Option(
        "--feedback-change", metavar="TOUCHPOINT:MONTH:POINTS",
        help="A known change in the feedback: from MONTH on, NPS answers at TOUCHPOINT move by POINTS "
        "(touchpoints: call_centre, shop, web).", show_default=False)] = None,
) -> None:
    """Simulate a customer population month by month and summarise it.

    With no arguments, runs the built-in default market (100 000 customers, 36
    months) and prints a summary including the throughput in customer-periods
    per second. -n 10000000 runs the same market with ten million customers:
    market size and budgets grow with the base, so spend per customer, churn and
    per-customer economics stay those of the market. Outputs (with --out): periods,
    cohorts, customers, panel tables, run.json, trajectories.png, manifest.json and report.html.
    """
    from tenure.api import load_scenario

    if fmt not in TABLE_FORMATS:
        raise InputError(f"--format: unknown format {fmt!r}; use one of {', '.join(TABLE_FORMATS)}")
    if not 0.0 <= panel_sample <= 1.0:
        raise InputError(f"--panel-sample: must be a share in [0, 1], got {panel_sample}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads: must be at least 1, got {threads}")
    _replications.check(replications, ctx)
    feedback_spec = _feedback_spec(feedback, feedback_change, panel_sample)
    scale = _cluster.scale_options(ctx)
    sc = load_scenario(market, customers=customers, periods=periods, seed=seed)
    meta = {"resume": str(resume)} if resume is not None else run_meta(sc)
    with output_folder(out, "tenure simulate", quiet, **meta) as folder:
        if replications is not None:
            _replications.run(sc, replications, cluster, folder, fmt, quiet)
            return
        result = scale.run(sc, panel_sample, customer_summary, threads, quiet)
        if not quiet:
            console.print(summary_table(result))
        if folder is not None:
            from tenure.engine.report import write_outputs

            write_outputs(result, folder, fmt)
            if feedback_spec is not None:
                from tenure.engine.feedback import feedback_events
                from tenure.io import write_table

                events = feedback_events(result.panel, result.meta["seed"], sc, feedback_spec)
                write_table(events, folder / "feedback", fmt)


def _feedback_spec(feedback: bool, change: str | None, panel_sample: float) -> Any:
    """The feedback stream's settings, checked before the run (``None`` without --feedback)."""
    if not feedback:
        if change is not None:
            raise InputError("--feedback-change: only with --feedback")
        return None
    if panel_sample <= 0:
        raise InputError("--feedback: needs --panel-sample above 0 (the events are the panel sample's answers)")
    from tenure.engine.feedback import FeedbackSpec, parse_change

    return FeedbackSpec(change=None if change is None else parse_change(change))


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
