"""`tenure compare`: which investment pays, acquisition or retention?"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Any

import polars as pl
import typer
from rich.table import Table

from tenure.commands._common import cli_errors, console, err_console
from tenure.commands.simulate import check_run_options
from tenure.errors import InputError
from tenure.io import prepare_out_dir

COMPARE_JSON_VERSION = 1


@cli_errors
def compare_cmd(
    scenario: str = typer.Argument(
        None, help="A built-in scenario name (see `tenure scenario list`) or a scenario TOML file. Default: 'default'."
    ),
    budget: float = typer.Option(
        None, "--budget", "-b",
        help="Total budget per period (currency) to split. Default: the scenario's acquisition plus retention budgets.",
    ),
    levers: str = typer.Option(
        None, "--levers", help="Retention levers to sweep, comma-separated (default: all): "
        "service, loyalty, engagement, alarm, employee.",
    ),
    mix: str = typer.Option(
        None, "--mix", help="The current retention mix as lever=share pairs adding up to 1, e.g. "
        "'service=0.5,loyalty=0.5'. Default: the scenario's budgets.",
    ),
    acquisition_steps: int = typer.Option(
        None, "--acquisition-steps", help="Acquisition shares on the coarse grid, evenly from 0 to 1 "
        "(default 7; 5 with --uncertainty)."
    ),
    seeds: int = typer.Option(
        None, "--seeds", help="Seeds per allocation, shared by every allocation (default 3; 1 per market with "
        "--uncertainty)."
    ),
    customers: int = typer.Option(None, "--customers", "-n", help="Initial customer base (overrides run.customers)."),
    periods: int = typer.Option(None, "--periods", "-t", help="Months simulated per run (overrides run.periods)."),
    seed: int = typer.Option(None, "--seed", "-s", help="First seed (overrides run.seed)."),
    closed_form: bool = typer.Option(
        False, "--closed-form", help="Also calibrate the Blattberg-Deighton model to the market and compare optima."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder for compare.parquet, compare.json and compare.png."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no tables."),
    uncertainty: bool = typer.Option(
        False, "--uncertainty", help="SCENARIO is a market file from `tenure calibrate`: evaluate every allocation "
        "in each calibrated market (its .draws.csv) and report P(beats current) and the expected loss."
    ),
    cluster: str = typer.Option(
        None, "--cluster", metavar="local:N | tcp://HOST:PORT", help="Run the simulations as parallel Dask tasks: "
        "local:N starts N worker processes here, tcp://HOST:PORT uses a running scheduler. Results do not depend on "
        "it. Needs the cluster extra.",
    ),
    markets: int = typer.Option(None, "--markets", help="With --uncertainty: use the first N calibrated markets "
                                "(default: all)."),
    sample_customers: int = typer.Option(
        None, "--sample-customers", help="With --uncertainty: simulate each market with this many customers, "
        "market size and budgets scaled alike, equity scaled back (default: the market's own size)."
    ),
) -> None:
    """Compare ways of splitting a budget between acquisition and retention, with uncertainty.

    Sweeps the share of the budget that goes to acquisition and the mix across
    retention levers, runs every point with several seeds on common random
    numbers, refines around the best point, and reports customer equity, profit,
    customers, NPS, churn and costs with 90 % intervals over seeds; then the
    marginal costs to acquire and to retain one more customer at the best point,
    and whether the "five times" rule holds in this market.
    """
    from tenure.scenario import load_scenario
    from tenure.simulations.compare import compare, parse_levers, parse_mix

    if uncertainty:
        return _compare_uncertainty(scenario, budget, levers, mix, acquisition_steps, seeds, customers, periods,
                                    seed, out, quiet, markets, sample_customers, cluster)
    if markets is not None or sample_customers is not None:
        raise InputError("--markets and --sample-customers need --uncertainty")
    acquisition_steps = 7 if acquisition_steps is None else acquisition_steps
    seeds = 3 if seeds is None else seeds
    if budget is not None and (not math.isfinite(budget) or budget < 0):
        raise InputError(f"--budget: must be a non-negative amount per period, got {budget}")
    lever_list = parse_levers(levers)
    base_mix = parse_mix(mix) if mix else None
    sc = load_scenario(scenario, check_run_options(customers, periods, seed) or None)
    if acquisition_steps < 2:
        raise InputError(f"--acquisition-steps: at least 2, got {acquisition_steps}")
    if seeds < 1:
        raise InputError(f"--seeds: at least 1, got {seeds}")
    if budget == 0:
        raise InputError("--budget: the total budget is zero: there is nothing to allocate")
    _check_cluster(cluster)
    if out is not None:
        out = prepare_out_dir(out)
    show = not quiet and sys.stderr.isatty()
    stack = contextlib.ExitStack()
    client = stack.enter_context(_connect(cluster)) if cluster else None
    if show:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("simulating allocations"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                      TimeElapsedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task("runs", total=None)
            with stack:
                result = compare(sc, budget, lever_list, base_mix, acquisition_steps, seeds, closed_form,
                                 progress=lambda k: bar.advance(task, k), cluster=client)
    else:
        with stack:
            result = compare(sc, budget, lever_list, base_mix, acquisition_steps, seeds, closed_form, cluster=client)
    if not quiet:
        print_report(result)
    if out is not None:
        paths = write_compare(result, out)
        if not quiet:
            console.print(f"wrote {', '.join(p.name for p in paths)} to [bold]{out}[/]")


def _check_cluster(cluster: str | None) -> None:
    """Validate --cluster before anything runs or is written (exit 2 naming the option or the extra)."""
    if cluster is not None:
        from tenure.engine.cluster import parse_cluster, require_dask

        parse_cluster(cluster)
        require_dask()


def _connect(cluster: str) -> Any:
    from tenure.engine.cluster import connect

    return connect(cluster)


def _fmt(x: float, digits: int = 0) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:,.{digits}f}"


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
        ("equity, M (90 %)", "right", 19, lambda r: f"{_fmt(r['customer_equity'] / 1e6, 2)} "
         f"({_fmt(r['customer_equity_q05'] / 1e6, 2)}–{_fmt(r['customer_equity_q95'] / 1e6, 2)})"),
        ("customers", "right", 7, lambda r: _fmt(r["customers_end"])),
        ("NPS", "right", 5, lambda r: f"{100 * r['nps']:+.1f}"),
        ("churn/mo", "right", 6, lambda r: f"{100 * r['churn_rate']:.2f} %"),
        ("CAC paid", "right", 6, lambda r: _fmt(r["acquisition_cost_paid"], 2)),
        ("ret./cust-mo", "right", 5, lambda r: _fmt(r["cost_per_retained_customer"], 2)),
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
              + ", ".join(f"{k} {_fmt(val)}" for k, val in b["budgets"].items()) + " per month")
    v.add_row("current split", f"{100 * c['acquisition_share']:.1f} % to acquisition; customer equity "
              f"{_fmt(c['customer_equity'] / 1e6, 2)} M")
    v.add_row("gain of the best split", f"{_fmt(gain / 1e6, 2)} M of customer equity")
    mca, mcr = m["marginal_cost_to_acquire"], m["marginal_cost_to_retain"]
    v.add_row("marginal cost to acquire one more customer",
              f"{_fmt(mca['mean'], 2)} ({_fmt(mca['q05'], 2)}–{_fmt(mca['q95'], 2)})")
    v.add_row("marginal cost to keep one more customer",
              f"{_fmt(mcr['mean'], 2)} ({_fmt(mcr['q05'], 2)}–{_fmt(mcr['q95'], 2)})")
    v.add_row("marginal cost ratio (acquire / retain)", _fmt(m["marginal_cost_ratio"], 2))
    v.add_row("average cost ratio (acquire / keep for a lifetime)", _fmt(m["average_cost_ratio"], 2))
    verdict = "holds" if m["five_times_rule_holds"] else "does not hold"
    ratio = _fmt(m["average_cost_ratio"], 2)
    v.add_row("the 'five times' rule", f"{verdict} in this market (average-cost ratio {ratio})")
    returns = ", ".join(f"{k} {_fmt(val['mean'], 2)}" for k, val in m["return_on_lever"].items())
    v.add_row("return per unit of extra spend", f"acquisition {_fmt(m['return_on_acquisition']['mean'], 2)}; "
              f"retention {_fmt(m['return_on_retention']['mean'], 2)} ({returns})")
    pays = "acquisition" if m["return_on_acquisition"]["mean"] > m["return_on_retention"]["mean"] else "retention"
    v.add_row("the next unit of budget", f"pays more in {pays}")
    cf = result.closed_form
    if cf is not None:
        if cf.get("calibrated"):
            v.add_row("Blattberg-Deighton optimum",
                      f"A* = {_fmt(cf['optimal_acquisition_spend_per_prospect'], 3)} per prospect, "
                      f"R* = {_fmt(cf['optimal_retention_spend_per_customer_per_period'], 2)} per customer-month: "
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
    import polars as pl

    fig, ax = plt.subplots(figsize=(9, 5.5), constrained_layout=True)
    for mix in result.points["mix"].unique(maintain_order=True):
        d = result.points.filter(pl.col("mix") == mix).sort("acquisition_share")
        x = 100 * d["acquisition_share"].to_numpy()
        ax.plot(x, d["customer_equity"] / 1e6, marker="o", ms=3, label=mix)
        ax.fill_between(x, d["customer_equity_q05"] / 1e6, d["customer_equity_q95"] / 1e6, alpha=0.15)
    b = result.best
    ax.scatter([100 * b["acquisition_share"]], [b["customer_equity"] / 1e6], s=160, marker="*", color="black",
               zorder=5, label=f"best: {100 * b['acquisition_share']:.0f} %, {b['mix']}")
    c = result.current
    ax.scatter([100 * c["acquisition_share"]], [c["customer_equity"] / 1e6], s=60, marker="s", color="grey",
               zorder=5, label="current split")
    ax.set_xlabel("share of the budget going to acquisition (%)")
    ax.set_ylabel("customer equity (millions)")
    ax.set_title(f"tenure compare: {result.settings['scenario']}, budget "
                 f"{result.settings['total_budget_per_period']:,.0f} per month")
    ax.legend(fontsize="small", ncol=2)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


UNCERTAINTY_JSON_VERSION = 1


def _compare_uncertainty(scenario: str | None, budget: float | None, levers: str | None, mix: str | None,
                         acquisition_steps: int | None, seeds: int | None, customers: int | None,
                         periods: int | None, seed: int | None, out: Path | None, quiet: bool,
                         markets: int | None, sample_customers: int | None, cluster: str | None = None) -> None:
    """`tenure compare MARKET --uncertainty`: validate everything, then sweep the calibrated markets."""
    import time

    from tenure.simulations.calibrate import load_markets
    from tenure.simulations.compare import compare_uncertainty, parse_levers, parse_mix

    if scenario is None:
        raise InputError("--uncertainty: give the market file written by `tenure calibrate`")
    if customers is not None:
        raise InputError("--customers: with --uncertainty use --sample-customers (the markets keep their size)")
    if budget is not None and (not math.isfinite(budget) or budget <= 0):
        raise InputError(f"--budget: must be a positive amount per period, got {budget}")
    lever_list = parse_levers(levers)
    base_mix = parse_mix(mix) if mix else None
    steps = 5 if acquisition_steps is None else acquisition_steps
    n_seeds = 1 if seeds is None else seeds
    if steps < 2:
        raise InputError(f"--acquisition-steps: at least 2, got {steps}")
    if n_seeds < 1:
        raise InputError(f"--seeds: at least 1, got {n_seeds}")
    if markets is not None and markets < 2:
        raise InputError(f"--markets: at least 2, got {markets}")
    if sample_customers is not None and sample_customers < 100:
        raise InputError(f"--sample-customers: at least 100, got {sample_customers}")
    _, scenarios, _ = load_markets(Path(scenario))
    run_over = check_run_options(None, periods, seed)
    if run_over:
        scenarios = [sc.with_overrides(run_over) for sc in scenarios]
    scenarios = scenarios[:markets] if markets else scenarios
    _check_cluster(cluster)
    if out is not None:
        out = prepare_out_dir(out)
    args = (scenarios, budget, lever_list, base_mix, steps, n_seeds, sample_customers)
    stack = contextlib.ExitStack()
    client = stack.enter_context(_connect(cluster)) if cluster else None
    t0 = time.perf_counter()
    if not quiet and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("simulating allocations × markets"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task("runs", total=None)
            with stack:
                result = compare_uncertainty(*args, progress=lambda k: bar.advance(task, k), cluster=client)
    else:
        with stack:
            result = compare_uncertainty(*args, cluster=client)
    result.settings["seconds"] = time.perf_counter() - t0
    result.settings["market_file"] = str(scenario)
    if not quiet:
        print_uncertainty(result)
    if out is not None:
        paths = write_uncertainty(result, out)
        if not quiet:
            console.print(f"wrote {', '.join(p.name for p in paths)} to [bold]{out}[/]")


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
                  f"{_fmt(r['customer_equity'] / 1e6, 2)} M ({_fmt(r['customer_equity_q05'] / 1e6, 2)}–"
                  f"{_fmt(r['customer_equity_q95'] / 1e6, 2)})",
                  f"{_fmt(r['gain_vs_current'] / 1e6, 2)} M ({_fmt(r['gain_vs_current_q05'] / 1e6, 2)} to "
                  f"{_fmt(r['gain_vs_current_q95'] / 1e6, 2)})",
                  f"{100 * r['p_beats_current']:.0f} %", f"{_fmt(r['expected_loss'] / 1e6, 2)} M",
                  f"{100 * r['p_best']:.0f} %")
    console.print(t)
    b, c = result.best, result.current
    console.print(
        f"best choice (least expected loss): {100 * b['acquisition_share']:.0f} % to acquisition, {b['mix']} mix; "
        f"with {100 * b['p_beats_current']:.0f} % probability it raises customer equity over the current split "
        f"({100 * c['acquisition_share']:.0f} % to acquisition), by {_fmt(b['gain_vs_current'] / 1e6, 2)} M on "
        f"average (90 %: {_fmt(b['gain_vs_current_q05'] / 1e6, 2)} to {_fmt(b['gain_vs_current_q95'] / 1e6, 2)} M); "
        f"expected loss of choosing it {_fmt(b['expected_loss'] / 1e6, 3)} M", highlight=False)
    console.print(f"{s['markets'] * len(s['seeds']) * (s['allocations'] + 1)} evaluations at "
                  f"{s['sample_customers']:,} customers × {s['periods']} months each in {s.get('seconds', 0):.0f} s",
                  highlight=False)


def write_uncertainty(result: Any, out: Path) -> list[Path]:
    """uncertainty.parquet (one row per allocation, market, seed), uncertainty.json, uncertainty.png; atomic."""
    from tenure.io import write_atomic, write_json, write_table

    paths = [write_table(result.runs, out / "uncertainty", "parquet")]
    doc = {"schema_version": UNCERTAINTY_JSON_VERSION, "settings": result.settings, "best": result.best,
           "current": result.current, "points": result.points.to_dicts()}
    paths.append(write_json(doc, out / "uncertainty.json"))
    paths.append(write_atomic(out / "uncertainty.png", lambda p: plot_uncertainty(result, p)))
    return paths


def plot_uncertainty(result: Any, path: Path) -> None:
    """Equity over the acquisition share per mix with 90 % bands across markets; P(beats current) below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True, height_ratios=[2, 1],
                                  constrained_layout=True)
    for i, mix in enumerate(result.points["mix"].unique(maintain_order=True)):
        d = result.points.filter(pl.col("mix") == mix).sort("acquisition_share")
        x = 100 * d["acquisition_share"].to_numpy()
        ax.plot(x, d["customer_equity"] / 1e6, marker="o", ms=3, color=f"C{i}", label=mix)
        ax.fill_between(x, d["customer_equity_q05"] / 1e6, d["customer_equity_q95"] / 1e6, color=f"C{i}",
                        alpha=0.12)
        ax2.plot(x, 100 * d["p_beats_current"], marker="o", ms=3, color=f"C{i}")
    b, c = result.best, result.current
    ax.scatter([100 * b["acquisition_share"]], [b["customer_equity"] / 1e6], s=160, marker="*", color="black",
               zorder=5, label=f"least expected loss: {100 * b['acquisition_share']:.0f} %, {b['mix']}")
    ax.errorbar([100 * c["acquisition_share"]], [c["customer_equity"] / 1e6],
                yerr=[[(c["customer_equity"] - c["customer_equity_q05"]) / 1e6],
                      [(c["customer_equity_q95"] - c["customer_equity"]) / 1e6]],
                fmt="s", color="grey", capsize=4, zorder=5, label="current split")
    ax.set_ylabel("customer equity (millions)")
    ax.set_title(f"tenure compare --uncertainty: {result.settings['markets']} calibrated markets, 90 % bands")
    ax.legend(fontsize="small", ncol=2)
    ax2.axhline(50, color="grey", lw=0.8, ls="--")
    ax2.set_ylabel("P(beats current) (%)")
    ax2.set_xlabel("share of the budget going to acquisition (%)")
    ax2.set_ylim(0, 100)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
