"""`tenure decide`: the budget split to choose when the market itself is uncertain.

MARKET is a market file written by `tenure calibrate`, with its calibrated draws
(MARKET.draws.csv) beside it. Every allocation runs in every calibrated market on
common random numbers (:func:`tenure.simulations.compare.compare_uncertainty`), and
the allocations are ranked by expected loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tenure.api import DECIDE_SEEDS, DECIDE_STEPS
from tenure.commands._common import cli_errors, console, number, output_folder, progress
from tenure.commands._options import (
    AcquisitionSteps,
    Budget,
    Cluster,
    Customers,
    Levers,
    Mix,
    OutDir,
    Periods,
    Quiet,
    Seed,
    Seeds,
)
from tenure.commands.compare import plot_equity_by_share

UNCERTAINTY_JSON_VERSION = 1


@cli_errors
def decide_cmd(
    market: Annotated[str, typer.Argument(
        help="A market file written by `tenure calibrate` (its MARKET.draws.csv beside it).", metavar="MARKET",
        show_default=False)],
    budget: Budget = None,
    levers: Levers = None,
    mix: Mix = None,
    acquisition_steps: AcquisitionSteps = DECIDE_STEPS,
    seeds: Seeds = DECIDE_SEEDS,
    max_markets: Annotated[int | None, typer.Option(
        "--max-markets", metavar="N", help="Use at most the first N calibrated markets (default: all).",
        show_default=False)] = None,
    customers: Customers = None,
    periods: Periods = None,
    seed: Seed = None,
    out: OutDir = None,
    quiet: Quiet = False,
    cluster: Cluster = None,
) -> None:
    """Choose a budget split under calibration uncertainty: every allocation in every calibrated market.

    Runs the acquisition shares × retention mixes of `tenure compare` in each calibrated
    market of MARKET on common random numbers and reports, per allocation, the band of
    customer equity, the probability that it beats the current split and its expected
    loss; the best choice is the one with the least expected loss. At that split, the
    marginal costs to acquire and to retain one more customer (and whether acquiring costs
    "five times" as much, at the margin and on average), with 90 % bands over the markets
    and seeds. -n simulates each
    market with N customers (the same market scaled, budgets and market size alike)
    and reports equity at the market's own size. Outputs (with --out):
    uncertainty.parquet, uncertainty.json, uncertainty.png, manifest.json and report.html.
    """
    run_decide(market, customers=customers, periods=periods, seed=seed, budget=budget, levers=levers, mix=mix,
               acquisition_steps=acquisition_steps, seeds=seeds, max_markets=max_markets, out=out, quiet=quiet,
               cluster=cluster)


def run_decide(market: str, *, out: Path | None, quiet: bool, **options: Any) -> None:
    """Run :func:`tenure.decide` with ``options``, print the ranking, write the outputs into --out."""
    import tenure.api as api

    with output_folder(out, "tenure decide", quiet, market_file=str(market)) as folder:
        with progress("simulating allocations × markets", "runs", quiet) as bar:
            result = api.decide(market, progress=bar, **options)
        if not quiet:
            print_uncertainty(result)
        if folder is not None:
            write_uncertainty(result, folder)


def print_uncertainty(result: Any) -> None:
    """Allocations by expected loss, with the equity band, P(beats current) and the verdict."""
    s = result.settings
    t = Table(title=f"allocations by expected loss ({s['markets']} calibrated markets × {len(s['seeds'])} seeds, "
              "90 % bands)")
    for col in ("acquisition", "retention mix", "customer equity", "gain vs current", "P(beats current)",
                "expected loss", "P(best)"):
        t.add_column(col, justify="left" if col == "retention mix" else "right")
    for r in result.points.sort("expected_loss").head(12).iter_rows(named=True):
        t.add_row(f"{100 * r['acquisition_share']:.0f} %", r["mix"],
                  f"{number(r['customer_equity'] / 1e6, 2)} M ({number(r['customer_equity_q05'] / 1e6, 2)}–"
                  f"{number(r['customer_equity_q95'] / 1e6, 2)})",
                  f"{number(r['gain_vs_current'] / 1e6, 2)} M ({number(r['gain_vs_current_q05'] / 1e6, 2)} to "
                  f"{number(r['gain_vs_current_q95'] / 1e6, 2)})",
                  f"{100 * r['p_beats_current']:.0f} %", f"{number(r['expected_loss'] / 1e6, 2)} M",
                  f"{100 * r['p_best']:.0f} %")
    console.print(t)
    b, c = result.best, result.current
    console.print(
        f"best choice (least expected loss): {100 * b['acquisition_share']:.0f} % to acquisition, {b['mix']} mix; "
        f"with {100 * b['p_beats_current']:.0f} % probability it raises customer equity over the current split "
        f"({100 * c['acquisition_share']:.0f} % to acquisition), by {number(b['gain_vs_current'] / 1e6, 2)} M on "
        f"average (90 %: {number(b['gain_vs_current_q05'] / 1e6, 2)} to "
        f"{number(b['gain_vs_current_q95'] / 1e6, 2)} M); "
        f"expected loss of choosing it {number(b['expected_loss'] / 1e6, 3)} M", highlight=False)
    m = result.marginal
    mca, mcr = m["marginal_cost_to_acquire"], m["marginal_cost_to_retain"]
    console.print(f"at the best split one more customer costs {number(mca['mean'], 2)} to acquire (90 % over markets "
                  f"and seeds: {number(mca['q05'], 2)} to {number(mca['q95'], 2)}) and {number(mcr['mean'], 2)} to "
                  f"retain ({number(mcr['q05'], 2)} to {number(mcr['q95'], 2)}): marginal ratio "
                  f"{number(m['marginal_cost_ratio'], 2)}, average ratio {number(m['average_cost_ratio'], 2)}",
                  highlight=False)
    console.print(f"{s['markets'] * len(s['seeds']) * (s['allocations'] + 1)} evaluations at "
                  f"{s['sample_customers']:,} customers × {s['periods']} months each in {s.get('seconds', 0):.0f} s",
                  highlight=False)


def write_uncertainty(result: Any, out: Path) -> list[Path]:
    """uncertainty.parquet (one row per allocation, market, seed), uncertainty.json, uncertainty.png; atomic."""
    from tenure.io import write_atomic, write_json, write_table

    paths = [write_table(result.runs, out / "uncertainty", "parquet")]
    doc = {"schema_version": UNCERTAINTY_JSON_VERSION, "settings": result.settings, "best": result.best,
           "current": result.current, "points": result.points.to_dicts(), "marginal": result.marginal}
    paths.append(write_json(doc, out / "uncertainty.json"))
    paths.append(write_atomic(out / "uncertainty.png", lambda p: plot_uncertainty(result, p)))
    return paths


def plot_uncertainty(result: Any, path: Path) -> None:
    """The gain of each allocation over the current split, paired by (market, seed), with its 90 % band;
    P(beats current) below.

    The marginal bands of customer equity overlap even where one split beats another in every
    market (they share the market's uncertainty); the paired difference shows what the choice changes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    from tenure.plotting import MONEY, OKABE_ITO, rc

    s = result.settings
    with matplotlib.rc_context(rc()):
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True, height_ratios=[2, 1], layout="constrained")
        plot_equity_by_share(ax, result.points, result.best, "least expected loss", column="gain_vs_current")
        for i, mix in enumerate(result.points["mix"].unique(maintain_order=True)):  # the colours of the lines above
            d = result.points.filter(pl.col("mix") == mix).sort("acquisition_share")
            ax2.plot(100 * d["acquisition_share"].to_numpy(), 100 * d["p_beats_current"], marker="o", ms=3,
                     color=OKABE_ITO[i % len(OKABE_ITO)])
        c = result.current
        for a in (ax, ax2):
            a.axvline(100 * c["acquisition_share"], color="#555555", lw=0.8, ls=":")
        ax.axhline(0, color="#333333", lw=1, label=f"current split ({100 * c['acquisition_share']:.0f} % to "
                   "acquisition)")
        ax.set_ylabel(f"gain over the current split\n(millions of {MONEY} of customer equity)")
        ax.set_title(f"tenure decide: {s['scenario']}, {s['markets']} calibrated markets × {len(s['seeds'])} seeds, "
                     f"{s['periods']} months;\nbudget {s['total_budget_per_period']:,.0f} {MONEY} per month; "
                     "paired gain over the current split with its 90 % band")
        ax.legend(fontsize="small", ncol=2)
        ax2.axhline(50, color="grey", lw=0.8, ls="--")
        ax2.set_ylabel("P(beats current) (%)")
        ax2.set_xlabel("share of the budget going to acquisition (%)")
        ax2.set_ylim(0, 100)
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)
