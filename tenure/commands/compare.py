"""`tenure compare`: which investment pays, acquisition or retention?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.table import Table

from tenure.api import COMPARE_SEEDS, COMPARE_STEPS
from tenure.commands._common import cli_errors, console, note, number, output_folder, progress, run_meta
from tenure.commands._options import (
    AcquisitionSteps,
    Budget,
    Cluster,
    Customers,
    Levers,
    Market,
    Mix,
    OutDir,
    Periods,
    Quiet,
    Seed,
    Seeds,
)
from tenure.errors import InputError

COMPARE_JSON_VERSION = 1


@cli_errors
def compare_cmd(
    ctx: typer.Context,
    market: Market = None,
    budget: Budget = None,
    levers: Levers = None,
    mix: Mix = None,
    acquisition_steps: AcquisitionSteps = COMPARE_STEPS,
    seeds: Seeds = COMPARE_SEEDS,
    customers: Customers = None,
    periods: Periods = None,
    seed: Seed = None,
    closed_form: Annotated[bool, typer.Option(
        "--closed-form", help="Also calibrate the Blattberg-Deighton model to the market and compare optima.")] = False,
    out: OutDir = None,
    quiet: Quiet = False,
    cluster: Cluster = None,
    uncertainty: Annotated[bool, typer.Option("--uncertainty", hidden=True)] = False,
    markets: Annotated[int | None, typer.Option("--markets", hidden=True)] = None,
    sample_customers: Annotated[int | None, typer.Option("--sample-customers", hidden=True)] = None,
) -> None:
    """Compare ways of splitting a budget between acquisition and retention, with uncertainty.

    Sweeps the share of the budget that goes to acquisition and the mix across
    retention levers, runs every point with several seeds on common random
    numbers, refines around the best point, and reports customer equity, profit,
    customers, NPS, churn and costs with 90 % intervals over seeds; then the
    marginal costs to acquire and to retain one more customer at the best point,
    and whether the "five times" rule holds in this market. -n runs the same
    market with N customers (budgets and market size scaled with it). Outputs
    (with --out): compare.parquet, compare.json, compare.png, manifest.json and report.html.

    For a market calibrated by `tenure calibrate`, `tenure decide MARKET` chooses
    across its calibrated markets (`compare MARKET --uncertainty`, its old spelling,
    still works in this release).
    """
    import tenure.api as api

    if uncertainty:
        from tenure.commands.decide import run_decide

        note("`tenure compare MARKET --uncertainty` is now `tenure decide MARKET` (--markets: --max-markets, "
             "--sample-customers: -n); the old spelling goes in the next release")
        if market is None:
            raise InputError("MARKET: give the market file written by `tenure calibrate`")
        if customers is not None:
            raise InputError("--customers: with --uncertainty use --sample-customers (or `tenure decide -n`)")
        given = {name: ctx.get_parameter_source(name).name != "DEFAULT" for name in ("acquisition_steps", "seeds")}
        return run_decide(market, customers=sample_customers, periods=periods, seed=seed, budget=budget,
                          levers=levers, mix=mix, max_markets=markets, out=out, quiet=quiet, cluster=cluster,
                          **{k: v for k, v in (("acquisition_steps", acquisition_steps), ("seeds", seeds))
                             if given[k]})
    if markets is not None or sample_customers is not None:
        raise InputError("--markets and --sample-customers belong to `tenure decide` (--max-markets, -n)")
    sc = api.load_scenario(market, customers=customers, periods=periods, seed=seed)
    with output_folder(out, "tenure compare", quiet, **run_meta(sc)) as folder:
        with progress("simulating allocations", "runs", quiet) as bar:
            result = api.compare(sc, budget=budget, levers=levers, mix=mix, acquisition_steps=acquisition_steps,
                                 seeds=seeds, closed_form=closed_form, cluster=cluster, progress=bar)
        if not quiet:
            print_report(result)
        if folder is not None:
            write_compare(result, folder)


def print_report(result: Any) -> None:
    """Tables of the allocations and the verdict."""
    pts = result.points.sort("customer_equity", descending=True)
    # With the whole budget on acquisition there is no retention budget to mix: every mix is the same
    # allocation (same runs), so it is listed once.
    all_acq = pts.filter(pl.col("acquisition_share") >= 1.0)
    if all_acq.height > 1:
        pts = pl.concat([pts.filter(pl.col("acquisition_share") < 1.0),
                         all_acq.head(1).with_columns(pl.lit("(no retention budget)").alias("mix"))])
        pts = pts.sort("customer_equity", descending=True)
    t = Table(title=f"allocations, best first ({len(result.settings['seeds'])} seeds, 90 % intervals over seeds)")
    # (header, justify, min width, cell); the narrowest terminals drop the last column rather than
    # truncate numbers (compare.parquet and compare.json have every metric)
    columns = [
        ("acq.", "right", 7, lambda r: f"{100 * r['acquisition_share']:.1f} %"),
        ("mix", "left", 7, lambda r: r["mix"]),
        ("equity, M (90 %)", "right", 19, lambda r: f"{number(r['customer_equity'] / 1e6, 2)} "
         f"({number(r['customer_equity_q05'] / 1e6, 2)}–{number(r['customer_equity_q95'] / 1e6, 2)})"),
        ("customers", "right", 7, lambda r: number(r["customers_end"])),
        ("NPS", "right", 5, lambda r: f"{100 * r['nps']:+.1f}"),
        ("churn/mo", "right", 6, lambda r: f"{100 * r['churn_rate']:.2f} %"),
        ("CAC paid", "right", 6, lambda r: number(r["acquisition_cost_paid"], 2)),
        ("ret./cust-mo", "right", 5, lambda r: number(r["cost_per_retained_customer"], 2)),
    ]
    if console.width < 100:
        columns = columns[:-2]
    for header, justify, width, _ in columns:
        t.add_column(header, justify=justify, min_width=width, no_wrap=header != "mix")
    for r in pts.head(12).iter_rows(named=True):
        t.add_row(*(cell(r) for *_, cell in columns))
    t.caption = "acq.: share of the budget to acquisition; mix: retention mix; customers: at the end" + (
        "; CAC paid: acquisition cost per paid customer; ret./cust-mo: retention spend per customer-month"
        if len(columns) == 8 else "; costs per customer: in a wider terminal, and in compare.parquet")
    console.print(t)
    b, c, m = result.best, result.current, result.marginal
    gain = b["customer_equity"] - c["customer_equity"]
    v = Table(title="verdict", show_header=False)
    v.add_column("", style="bold")
    v.add_column("")
    v.add_row("best split", f"{100 * b['acquisition_share']:.1f} % to acquisition, retention mix '{b['mix']}': "
              + ", ".join(f"{k} {number(val)}" for k, val in b["budgets"].items()) + " per month")
    v.add_row("current split", f"{100 * c['acquisition_share']:.1f} % to acquisition; customer equity "
              f"{number(c['customer_equity'] / 1e6, 2)} M")
    v.add_row("gain of the best split", f"{number(gain / 1e6, 2)} M of customer equity")
    mca, mcr = m["marginal_cost_to_acquire"], m["marginal_cost_to_retain"]
    v.add_row("marginal cost to acquire one more customer",
              f"{number(mca['mean'], 2)} ({number(mca['q05'], 2)}–{number(mca['q95'], 2)})")
    v.add_row("marginal cost to keep one more customer",
              f"{number(mcr['mean'], 2)} ({number(mcr['q05'], 2)}–{number(mcr['q95'], 2)})")
    v.add_row("marginal cost ratio (acquire / retain)", number(m["marginal_cost_ratio"], 2))
    v.add_row("average cost ratio (acquire / keep for a lifetime)", number(m["average_cost_ratio"], 2))
    verdict = "holds" if m["five_times_rule_holds"] else "does not hold"
    ratio = number(m["average_cost_ratio"], 2)
    v.add_row("the 'five times' rule", f"{verdict} in this market (average-cost ratio {ratio})")
    returns = ", ".join(f"{k} {number(val['mean'], 2)}" for k, val in m["return_on_lever"].items())
    v.add_row("return per unit of extra spend", f"acquisition {number(m['return_on_acquisition']['mean'], 2)}; "
              f"retention {number(m['return_on_retention']['mean'], 2)} ({returns})")
    pays = "acquisition" if m["return_on_acquisition"]["mean"] > m["return_on_retention"]["mean"] else "retention"
    v.add_row("the next unit of budget", f"pays more in {pays}")
    cf = result.closed_form
    if cf is not None:
        if cf.get("calibrated"):
            v.add_row("Blattberg-Deighton optimum",
                      f"A* = {number(cf['optimal_acquisition_spend_per_prospect'], 3)} per prospect, "
                      f"R* = {number(cf['optimal_retention_spend_per_customer_per_period'], 2)} per customer-month: "
                      f"{100 * cf['implied_acquisition_share']:.0f} % to acquisition against "
                      f"{100 * cf['simulated_best_acquisition_share']:.0f} % simulated")
        else:
            v.add_row("Blattberg-Deighton", f"not calibrated: {cf['reason']}")
        for note in cf["notes"]:
            v.add_row("why they differ", note)
    console.print(v)


def write_compare(result: Any, out: Path) -> list[Path]:
    """compare.parquet (one row per allocation and seed), compare.json, compare.png; all atomic."""
    from tenure.io import write_atomic, write_json, write_table

    paths = [write_table(result.runs, out / "compare", "parquet")]
    doc = {
        "schema_version": COMPARE_JSON_VERSION,
        "settings": result.settings,
        "best": result.best,
        "current": result.current,
        "marginal": result.marginal,
        "closed_form": result.closed_form,
        "points": result.points.to_dicts(),
    }
    paths.append(write_json(doc, out / "compare.json"))
    paths.append(write_atomic(out / "compare.png", lambda p: plot_compare(result, p)))
    return paths


def plot_compare(result: Any, path: Path) -> None:
    """Customer equity over the acquisition share, one line per retention mix, with 90 % bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tenure.plotting import MONEY, rc

    s = result.settings
    with matplotlib.rc_context(rc()):
        fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
        plot_equity_by_share(ax, result.points, result.best, "best")
        c = result.current
        ax.scatter([100 * c["acquisition_share"]], [c["customer_equity"] / 1e6], s=60, marker="s", color="#555555",
                   zorder=5, label=f"current split: {100 * c['acquisition_share']:.0f} %")
        ax.set_xlabel("share of the budget going to acquisition (%)")
        ax.set_ylabel(f"customer equity (millions of {MONEY})")
        ax.set_title(f"tenure compare: {s['scenario']}, {s['customers']:,} customers at the start, {s['periods']} "
                     f"months;\nbudget {s['total_budget_per_period']:,.0f} {MONEY} per month; 90 % bands over "
                     f"{len(s['seeds'])} seeds")
        ax.legend(fontsize="small", ncol=2)
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)


def plot_equity_by_share(ax: Any, points: pl.DataFrame, best: dict[str, Any], best_label: str,
                         column: str = "customer_equity") -> None:
    """``column`` (customer equity, or the gain over the current split) in millions over the acquisition share:
    one line and 90 % band per retention mix (the Okabe-Ito colours in the order of ``points``), the best
    point starred."""
    from tenure.plotting import OKABE_ITO

    for i, mix in enumerate(points["mix"].unique(maintain_order=True)):
        d = points.filter(pl.col("mix") == mix).sort("acquisition_share")
        x = 100 * d["acquisition_share"].to_numpy()
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        ax.plot(x, d[column] / 1e6, marker="o", ms=3, color=colour, label=mix)
        ax.fill_between(x, d[f"{column}_q05"] / 1e6, d[f"{column}_q95"] / 1e6, color=colour, alpha=0.15)
    ax.scatter([100 * best["acquisition_share"]], [best[column] / 1e6], s=160, marker="*",
               color="black", zorder=5, label=f"{best_label}: {100 * best['acquisition_share']:.0f} %, {best['mix']}")
