"""`tenure calibrate`: engine parameters under which the simulated market reproduces a panel.

Reads a panel (or `tenure fit retention` / `cross-sell` folders), calibrates by
indirect inference (simulations/calibrate.py, docs/calibration.md), checks the
calibrated markets against the panel, and writes, only when everything succeeded:

- ``MARKET.toml``: the calibrated market, a complete scenario (`tenure simulate`,
  `tenure compare` and `tenure decide` read it);
- ``MARKET.draws.csv``: one calibrated market per row (the uncertainty; `tenure
  decide MARKET.toml` needs it);
- ``MARKET.calibration.json``: method, parameters, statistics and the check;
- ``MARKET.check.png``: the posterior predictive check;
- ``MARKET.manifest.json``: every file of the set with its size and SHA-256 (the set is
  replaced as one, :func:`tenure.io.run_files`; readers check it, :func:`tenure.io.verify_manifest`);
- ``MARKET.report.html``: the report, rendered from the set once it is in place and not listed in
  its manifest (`tenure report MARKET.toml` renders it again).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tenure.checks import seed as check_seed
from tenure.commands._common import cli_errors, console, err_console, note, write_run_report
from tenure.commands._options import Quiet, Seed
from tenure.errors import InputError


def _market_and_inputs(args: list[str], scenario: str | None) -> tuple[str | None, list[Path]]:
    """Split the positionals into the market and the inputs (a market is a built-in name or a .toml file)."""
    from tenure.scenario import builtin_names

    if scenario is not None:
        return scenario, [Path(a) for a in args]
    first, *inputs = args
    if first in builtin_names() or first.endswith(".toml"):
        if not inputs:
            raise InputError(f"give the panel file or fit folders after the market: tenure calibrate {first} "
                             "PANEL_OR_FIT_DIR... -o market.toml")
        return first, [Path(a) for a in inputs]
    note("the market comes first: `tenure calibrate MARKET PANEL... -o market.toml`; without it the default "
         "market is used (this spelling goes in the next release)")
    return None, [Path(a) for a in args]


def _check_out(out: Path) -> None:
    """Before any work: ``--out`` must be a writable ``.toml`` file name."""
    from tenure.io import check_out_set

    check_out_set(out, ".toml")


@cli_errors
def calibrate_cmd(
    args: Annotated[list[str], typer.Argument(
        help="The base market (a built-in name or a scenario TOML file: the market the panel comes from; "
        "parameters not calibrated keep its values), then a panel file (.csv or .parquet, see "
        "docs/models-panel.md) or one or two folders written by `tenure fit retention` / `tenure fit cross-sell`.",
        metavar="MARKET PANEL_OR_FIT_DIR...", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="The calibrated market file (.toml); its draws, report and check figure are written "
        "beside it.", show_default=False)],
    markets: Annotated[int, typer.Option("--markets", help="Calibrated markets to draw (the uncertainty).")] = 50,
    check_markets: Annotated[int, typer.Option(
        "--check-markets", help="Markets simulated for the predictive check (0: no check).")] = 10,
    ratio: Annotated[float, typer.Option(
        "--simulation-ratio", help="Simulated panel size over the observed one; larger cuts simulation noise "
        "and costs time.")] = 1.0,
    iterations: Annotated[int, typer.Option("--iterations", help="Gauss-Newton iterations at most.")] = 6,
    panel_periods: Annotated[int | None, typer.Option(
        "--panel-periods", help="Months the fitted panel covers (fit folders only; default: the market's "
        "run.periods).", show_default=False)] = None,
    segment_col: Annotated[str | None, typer.Option(
        "--segment-col", help="Column with the customer segment (panel).", show_default=False)] = None,
    seed: Seed = None,
    quiet: Quiet = False,
    scenario: Annotated[str | None, typer.Option("--scenario", hidden=True)] = None,
    periods: Annotated[int | None, typer.Option("--periods", hidden=True)] = None,
) -> None:
    """Calibrate a market on a panel: the simulated market reproduces the panel's fitted models.

    Survey scores are noisy readings of the engine's latent trust, enthusiasm and
    satisfaction, so fitted coefficients cannot be copied into the engine. Instead the
    same statistics (the retention and cross-selling regressions of `tenure fit`,
    churn and cross-selling rates, the distribution of answers, NPS) are computed on
    the panel and on simulated panels, and the engine parameters are moved until they
    agree (indirect inference). A bootstrap of customers gives --markets calibrated
    markets; a predictive check compares them with the panel. A panel the engine
    cannot reproduce ends with exit code 2, the statistics that miss, and no files.
    `tenure decide market.toml` then chooses a budget split across the calibrated markets.

    Old spellings, kept for this release: `--scenario MARKET` (then every positional is
    an input), a panel without MARKET (the default market), and `--periods` for
    --panel-periods.
    """
    from tenure.api import load_scenario
    from tenure.models.panel import read_panel
    from tenure.simulations import calibrate as cal

    _check_out(out)
    if markets < 2:
        raise InputError(f"--markets: at least 2, got {markets}")
    check_seed(seed)
    if check_markets < 0 or 0 < check_markets < 3:
        raise InputError(f"--check-markets: 0 (no check) or at least 3, got {check_markets}")
    if not (math.isfinite(ratio) and 0.1 <= ratio <= 20):
        raise InputError(f"--simulation-ratio: between 0.1 and 20, got {ratio}")
    if iterations < 1:
        raise InputError(f"--iterations: at least 1, got {iterations}")
    if periods is not None:
        note("--periods on calibrate is now --panel-periods (-t means months simulated); the old spelling goes in "
             "the next release")
        panel_periods = periods if panel_periods is None else panel_periods
    if panel_periods is not None and panel_periods < 1:
        raise InputError(f"--panel-periods: at least 1, got {panel_periods}")
    market, inputs = _market_and_inputs(args, scenario)
    market_name = market
    base = load_scenario(market)
    seed = int(base["run"]["seed"] if seed is None else load_scenario(base, seed=seed)["run"]["seed"])
    for p in inputs:
        if not p.exists():
            raise InputError(f"{p}: file not found")
    dirs = [p for p in inputs if p.is_dir()]
    if dirs and len(dirs) != len(inputs):
        raise InputError("give either one panel file or fit folders, not both")
    if not dirs and len(inputs) != 1:
        raise InputError(f"give one panel file, got {len(inputs)}")
    show = not quiet
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if show:
            err_console.print(f"[dim]{time.perf_counter() - t0:6.1f} s[/] {msg}", highlight=False)

    if dirs:
        target = cal.target_from_fits(dirs, base, markets, panel_periods, seed)
    else:
        say(f"reading {inputs[0]}")
        df = read_panel(inputs[0], segment_col=segment_col)
        say(f"{df.height:,} rows; bootstrapping {markets} replicates of the statistics")
        target = cal.target_from_panel(df, str(inputs[0]), base, markets, seed)
    result = cal.calibrate(target, base, ratio, iterations, seed, progress=say)
    if check_markets and target.panel is not None:
        result.check = cal.predictive_check(result, check_markets, progress=say)
    elif target.panel is None:
        result.check = {"done": False, "reason": "calibrated from fit folders: no panel to check against"}
    market = _named_market(result, out, inputs)
    if show:
        print_calibration(result)
    paths = write_calibration(result, market, out, seed=seed, base_market=market_name,
                               inputs=[str(p) for p in inputs])
    report = write_run_report(out)  # m.report.html, from the set just put in place
    paths += [report] if report is not None else []
    if show:
        console.print(f"wrote {', '.join(p.name for p in paths)} in {time.perf_counter() - t0:.0f} s",
                      highlight=False)


def _named_market(result: Any, out: Path, inputs: list[Path]) -> Any:
    from tenure.simulations.calibrate import draws_path

    meta = result.market["meta"]
    story = (f"Calibrated by tenure calibrate on {', '.join(map(str, inputs))} (indirect inference, "
             f"{result.draws.shape[0]} calibrated markets in {draws_path(out).name}), starting from "
             f"the scenario {meta['name']!r}. " + meta["story"])
    sources = [*meta["sources"], "Gourieroux, Monfort & Renault (1993); Smith (1993): indirect inference"]
    return result.market.with_overrides({"meta": {"name": out.stem, "story": story, "sources": sources}},
                                        "calibrated market")


def print_calibration(result: Any) -> None:
    """Parameters with 90 % intervals, targeted statistics, and the check's verdict."""
    s = result.summary()
    t = Table(title=f"calibrated parameters ({s['markets']} markets, 90 % intervals)", title_justify="left")
    for col in ("parameter", "base", "calibrated", "90 % interval"):
        t.add_column(col, justify="left" if col == "parameter" else "right")
    for p in s["parameters"]:
        t.add_row(p["key"], f"{p['base']:.4g}", f"{p['estimate']:.4g}", f"{p['q05']:.4g} to {p['q95']:.4g}")
    console.print(t)
    u = Table(title="targeted statistics: panel against the calibrated market", title_justify="left")
    for col in ("statistic", "panel", "calibrated market", "z"):
        u.add_column(col, justify="left" if col == "statistic" else "right")
    for st in s["statistics"]:
        u.add_row(st["name"], f"{st['observed']:.4g}", f"{st['calibrated']:.4g}", f"{st['z']:+.1f}")
    console.print(u)
    conv = "converged" if s["converged"] else "stopped at the iteration limit"
    console.print(f"Gauss-Newton {conv} after {s['iterations']} iterations, {s['simulation_runs']} simulated "
                  f"panels; objective {s['objective_history'][0]:.1f} → {s['objective_history'][-1]:.1f} "
                  f"for {len(s['statistics'])} statistics and {len(s['parameters'])} parameters", highlight=False)
    chk = s["check"]
    if not chk or not chk.get("done"):
        console.print(f"predictive check: not done ({(chk or {}).get('reason', 'switched off')})")
        return
    c = Table(title=f"predictive check over {chk['markets']} calibrated markets (selected statistics)",
              title_justify="left")
    for col in ("statistic", "panel", "markets: mean", "90 % interval", "z"):
        c.add_column(col, justify="left" if col == "statistic" else "right")
    shown = [x for x in chk["statistics"] if "period" not in x["name"] or x["name"] in chk["misses"]]
    for x in shown:
        c.add_row(escape(x["name"]), f"{x['observed']:.4g}", f"{x['mean']:.4g}", f"{x['q05']:.4g} to {x['q95']:.4g}",
                  f"{x['z']:+.1f}")
    console.print(c)
    inside = 100 * chk["share_inside_90"]
    if chk["fits"]:
        console.print(f"[bold green]the calibrated markets fit the panel[/]: {inside:.0f} % of "
                      f"{len(chk['statistics'])} check statistics inside their 90 % intervals, none beyond "
                      "3.5 predictive sd", highlight=False)
    else:
        console.print(f"[bold yellow]the calibrated markets do not fit the panel[/] on "
                      f"{len(chk['misses'])} statistics (beyond 3.5 predictive sd): {escape(', '.join(chk['misses']))}",
                      highlight=False)


def write_calibration(result: Any, market: Any, out: Path, **meta: Any) -> list[Path]:
    """The market file and its sidecars, replaced as one set (:func:`tenure.io.run_files`).

    ``m.toml``, ``m.draws.csv``, ``m.calibration.json``, ``m.check.png`` (when the check
    was done) and ``m.manifest.json`` are written to a staging folder and swapped in
    together: an interrupted or failed run leaves the earlier set byte for byte, and a
    sidecar of the earlier set that this run does not write is gone.
    """
    from tenure.io import run_files, write_atomic, write_json, write_table
    from tenure.simulations.calibrate import draws_path, draws_table

    with run_files(out, "tenure calibrate", **meta) as stage:
        target = stage / out.name
        write_table(draws_table(result), draws_path(target), "csv")
        write_json(result.summary(), target.with_name(out.stem + ".calibration.json"))
        if result.check and result.check.get("done"):
            write_atomic(target.with_name(out.stem + ".check.png"), lambda p: plot_check(result.check, p))
        text = market.to_toml()
        write_atomic(target, lambda p: p.write_text(text))
        names = sorted(p.name for p in stage.iterdir())
    return [out.with_name(n) for n in names]


def plot_check(check: dict[str, Any], path: Path) -> None:
    """Four panels: churn and cross-selling by period, churn by score, answer shares; panel against bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    stats = {s["name"]: s for s in check["statistics"]}

    def series(prefix: str, labels: list[str]) -> tuple[list[str], np.ndarray]:
        names = [n for n in (f"{prefix}[{lab}]" for lab in labels) if n in stats]
        arr = np.array([[stats[n]["observed"], stats[n]["mean"], stats[n]["q05"], stats[n]["q95"]] for n in names])
        return names, arr.reshape(-1, 4)

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    periods = [f"period {t}" for t in range(1000)]
    for ax, prefix, title, unit in ((axes[0, 0], "churn_rate", "churn rate by period",
                                     "churn (share of customers per month)"),
                                    (axes[0, 1], "cross_sell_rate", "cross-selling rate by period",
                                     "products added per customer-month")):
        _, a = series(prefix, periods)
        x = np.arange(a.shape[0])
        ax.fill_between(x, a[:, 2], a[:, 3], alpha=0.3, label="calibrated markets, 90 %")
        ax.plot(x, a[:, 1], lw=1, label="calibrated markets, mean")
        ax.plot(x, a[:, 0], "k.", ms=4, label="panel")
        ax.set_title(title)
        ax.set_xlabel("period of the panel (month)")
        ax.set_ylabel(unit)
        ax.legend(fontsize="small")
    ax = axes[1, 0]
    for c, off in (("trust", -0.1), ("enthusiasm", 0.1)):
        names, a = series("churn_rate", [f"{c} {v}" for v in range(1, 6)])
        x = np.array([int(n.split()[-1].rstrip("]")) for n in names]) + off
        ax.errorbar(x, a[:, 1], yerr=[a[:, 1] - a[:, 2], a[:, 3] - a[:, 1]], fmt="o", ms=3, capsize=3,
                    label=f"markets, by {c}")
        ax.plot(x, a[:, 0], "kx", ms=6)
    ax.set_title("churn rate by survey score (x: panel)")
    ax.set_xlabel("score carried forward (1-5)")
    ax.set_ylabel("churn (share of customers per month)")
    ax.legend(fontsize="small")
    ax = axes[1, 1]
    offset = 0
    ticks, labels = [], []
    for c in ("trust", "enthusiasm", "satisfaction", "nps"):
        values = range(0, 11) if c == "nps" else range(1, 6)
        names = [f"share answering {v}[{c}]" for v in values if f"share answering {v}[{c}]" in stats]
        if not names:
            continue
        a = np.array([[stats[n]["observed"], stats[n]["mean"], stats[n]["q05"], stats[n]["q95"]] for n in names])
        x = offset + np.arange(len(names))
        ax.bar(x, a[:, 1], color="C0", alpha=0.4)
        ax.vlines(x, a[:, 2], a[:, 3], color="C0")
        ax.plot(x, a[:, 0], "k.", ms=5)
        ticks.append(offset + (len(names) - 1) / 2)
        labels.append(c)
        offset += len(names) + 1
    ax.set_xticks(ticks, labels)
    ax.set_xlabel("question (answers 1-5; NPS 0-10, left to right)")
    ax.set_ylabel("share of answers")
    ax.set_title("distribution of answers (bars: markets, dots: panel)")
    verdict = "fits" if check["fits"] else f"misses {len(check['misses'])} statistics"
    fig.suptitle(f"tenure calibrate: predictive check over {check['markets']} calibrated markets: {verdict}")
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
