"""`tenure fit retention|cross-sell|joint|nps|trim`: Bayesian models of a customer panel.

Every command reads and validates the panel before anything is written (bad input:
one line naming the column and the first offending row, exit code 2), fits, prints
a table with diagnostics and one plain-language line per effect, and writes
``posterior.nc``, ``summary.csv`` and a forest plot into ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.markup import escape

from tenure.commands._common import cli_errors, console
from tenure.commands.fit import (
    CHAINS_HELP,
    DRAWS_HELP,
    SEED_HELP,
    TUNE_HELP,
    check_method,
    check_out,
    fit_app,
    load_priors_file,
    results_table,
)
from tenure.errors import InputError

PANEL_HELP = "Panel file (.csv or .parquet): one row per customer per period; see docs/models-panel.md."
OUT_HELP = "Folder for posterior.nc, summary.csv and the plot (created if missing)."
SEGMENT_HELP = "Column with the customer segment (default: 'segment' if present, else one segment)."
PRIORS_HELP = "TOML or JSON file overriding priors, e.g. [churn_trust] dist='Normal' mu=0 sigma=0.5."
METHOD_HELP = "mcmc (NUTS with nutpie), map (mode + Laplace approximation) or advi."
MISSING_HELP = "Null survey scores: 'carry' the customer's last answer forward, or 'drop' the row."






def _fit_and_report(model: Any, out: Path, *, method: str, draws: int, tune: int, chains: int, seed: int,
                    title: str) -> None:
    """Fit, print the table, the effect lines and warnings, and save the outputs atomically."""
    from tenure.io import prepare_out_dir
    from tenure.models.base import diagnostics_warnings, save_fit

    console.print(f"{title}: {model.data_summary().get('rows', 0):,} rows in "
                  f"{model.data_summary().get('cells', 0):,} cells; fitting with {method}")
    idata = model.fit(method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                      progress=console.is_terminal)
    var_names = model.summary_var_names(idata)
    lines = model.effect_lines(idata)
    idata.attrs["tenure_effects"] = json.dumps(lines)
    console.print(results_table(idata, var_names, title))
    for line in lines:
        console.print(f"  • {line}", highlight=False)
    for warning in diagnostics_warnings(idata, model.diagnostic_var_names(idata)):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)  # labels hold [ ]
    paths = save_fit(idata, prepare_out_dir(out), var_names=var_names, title=title)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)


@fit_app.command("retention")
@cli_errors
def retention(
    panel: Path = typer.Argument(..., help=PANEL_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    segment_col: str | None = typer.Option(None, "--segment-col", help=SEGMENT_HELP),
    priors: Path | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    method: str = typer.Option("mcmc", "--method", help=METHOD_HELP),
    draws: int = typer.Option(1000, "--draws", help=DRAWS_HELP),
    tune: int = typer.Option(1000, "--tune", help=TUNE_HELP),
    chains: int = typer.Option(4, "--chains", help=CHAINS_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    missing: str = typer.Option("carry", "--missing", help=MISSING_HELP),
) -> None:
    """Discrete-time hazard of churn: how trust, enthusiasm and satisfaction move monthly churn odds."""
    from tenure.models.panel import hazard_cells, read_panel
    from tenure.models.retention import RetentionModel

    check_out(out)
    check_method(method)
    overrides = load_priors_file(priors)
    with console.status("reading and compressing the panel"):
        cells = hazard_cells(read_panel(panel, segment_col=segment_col, optional=()), missing=missing)
    model = RetentionModel(cells, overrides)
    _fit_and_report(model, out, method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                    title="Retention (discrete-time hazard)")


@fit_app.command("cross-sell")
@cli_errors
def cross_sell(
    panel: Path = typer.Argument(..., help=PANEL_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    segment_col: str | None = typer.Option(None, "--segment-col", help=SEGMENT_HELP),
    priors: Path | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    method: str = typer.Option("mcmc", "--method", help=METHOD_HELP),
    draws: int = typer.Option(1000, "--draws", help=DRAWS_HELP),
    tune: int = typer.Option(1000, "--tune", help=TUNE_HELP),
    chains: int = typer.Option(4, "--chains", help=CHAINS_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    missing: str = typer.Option("carry", "--missing", help=MISSING_HELP),
) -> None:
    """Poisson model of products added per period: trust, enthusiasm, their interaction, products held."""
    from tenure.models.cross_sell import CrossSellModel
    from tenure.models.panel import count_cells, read_panel

    check_out(out)
    check_method(method)
    overrides = load_priors_file(priors)
    with console.status("reading and compressing the panel"):
        cells = count_cells(read_panel(panel, segment_col=segment_col, optional=()), missing=missing)
    model = CrossSellModel(cells, overrides)
    _fit_and_report(model, out, method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                    title="Cross-selling (Poisson)")


@fit_app.command("nps")
@cli_errors
def nps(
    panel: Path = typer.Argument(..., help=PANEL_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    segment_col: str | None = typer.Option(None, "--segment-col", help=SEGMENT_HELP),
    priors: Path | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    method: str = typer.Option("mcmc", "--method", help=METHOD_HELP),
    draws: int = typer.Option(1000, "--draws", help=DRAWS_HELP),
    tune: int = typer.Option(1000, "--tune", help=TUNE_HELP),
    chains: int = typer.Option(4, "--chains", help=CHAINS_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> None:
    """Net Promoter Score by segment and period with Bayesian intervals (Dirichlet-multinomial, pooled).

    Also writes nps_by_segment_period.csv: counts, raw NPS with its 95 % Wald interval,
    and the pooled posterior mean with its 90 % interval per cell.
    """
    from tenure.io import write_table
    from tenure.models.nps import NPSModel
    from tenure.models.panel import read_panel

    check_out(out)
    check_method(method)
    overrides = load_priors_file(priors)
    with console.status("reading the panel"):
        model = NPSModel.from_panel(read_panel(panel, segment_col=segment_col, optional=("nps",)), overrides)
    _fit_and_report(model, out, method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                    title="Net Promoter Score (Dirichlet-multinomial)")
    path = write_table(model.cell_table(), out / "nps_by_segment_period.csv", fmt="csv")
    console.print(f"wrote {path}", highlight=False)


@fit_app.command("trim")
@cli_errors
def trim(
    panel: Path = typer.Argument(..., help=PANEL_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    segment_col: str | None = typer.Option(None, "--segment-col", help=SEGMENT_HELP),
    weights: str = typer.Option("1,1,1,1", "--weights",
                                help="Weights of overall, recommend, repurchase, advantage (TRI*M-style)."),
    derived: str = typer.Option("rest", "--derived",
                                help="Derived importance: 'rest' (item vs index of the other items) or 'index'."),
    draws: int = typer.Option(1000, "--draws", help="Bayesian-bootstrap draws per chain."),
    chains: int = typer.Option(4, "--chains", help="Chains of draws."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
) -> None:
    """TRI*M-style index (0-100) with its typology and, with importance_* columns, its grid.

    Writes posterior.nc (Bayesian-bootstrap draws), summary.csv, forest.png,
    trim_index.csv (by segment and period) and, with importance columns, grid.csv and grid.png.
    """
    from tenure.io import prepare_out_dir, write_atomic, write_table
    from tenure.metrics import trim_band
    from tenure.models import trim as tm
    from tenure.models.base import save_fit
    from tenure.models.effects import equal_tailed
    from tenure.models.panel import IMPORTANCE_COLUMNS, TRIM_COLUMNS, read_panel

    check_out(out)
    w = tm.parse_weights(weights)
    if derived not in tm.DERIVED_METHODS:
        raise InputError(f"--derived: unknown method {derived!r}; use one of {', '.join(tm.DERIVED_METHODS)}")
    if draws < 1 or chains < 1:
        raise InputError("--draws and --chains must be at least 1")
    with console.status("reading the panel"):
        data = read_panel(panel, segment_col=segment_col, optional=(*TRIM_COLUMNS, *IMPORTANCE_COLUMNS))
        resp = tm.respondents(data, w)
        grid = tm.grid_table(data, resp, w, derived)
    idata = tm.bootstrap_posterior(resp, draws=draws, chains=chains, seed=seed)
    idata.attrs["tenure_model"] = "trim"
    idata.attrs["tenure_weights"] = json.dumps(dict(zip(("overall", "recommend", "repurchase", "advantage"),
                                                        w.tolist(), strict=True)))
    idata.attrs["tenure_data_summary"] = json.dumps({"respondents": resp.height, "rows": data.height})
    console.print(results_table(idata, ["trim_index"], "TRI*M-style index (Bayesian bootstrap)"))
    post = idata.posterior
    for s in post["segment"].values:
        v = post["trim_index"].sel(segment=s).values
        lo, hi = equal_tailed(v)
        shares = post["typology_share"].sel(segment=s).mean(("chain", "draw")).values
        mix = ", ".join(f"{t} {100 * x:.0f} %" for t, x in zip(tm.TYPES, shares, strict=True))
        console.print(f"  • {s}: index {np.median(v):.1f} ({trim_band(float(np.median(v)))}; 90 % interval "
                      f"{lo:.1f}–{hi:.1f}); {mix}", highlight=False)
    if grid is not None:
        for row in grid.iter_rows(named=True):
            console.print(f"  • {row['item']}: {row['quadrant']} (stated {row['stated_importance']:.2f}, "
                          f"derived {row['derived_importance']:.2f})", highlight=False)
    target = prepare_out_dir(out)
    paths = save_fit(idata, target, var_names=["trim_index"], title="TRI*M-style index")
    paths["index"] = write_table(tm.index_table(resp), target / "trim_index.csv", fmt="csv")
    typ = post["typology_share"].mean(("chain", "draw"))
    paths["typology"] = write_table(
        _typology_table(typ.values, list(post["segment"].values), list(tm.TYPES)), target / "typology.csv", fmt="csv")
    if grid is not None:
        paths["grid"] = write_table(grid, target / "grid.csv", fmt="csv")
        paths["grid_plot"] = write_atomic(target / "grid.png", lambda p: tm.plot_grid(grid, p))
    console.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)


def _typology_table(shares: np.ndarray, segments: list[str], types: list[str]) -> Any:
    """Typology shares as a table: one row per segment, one column per type."""
    import polars as pl

    return pl.DataFrame({"segment": segments, **{t: shares[:, j] for j, t in enumerate(types)}})


@fit_app.command("joint")
@cli_errors
def joint(
    panel: Path = typer.Argument(..., help=PANEL_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    segment_col: str | None = typer.Option(None, "--segment-col", help=SEGMENT_HELP),
    priors: Path | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    method: str = typer.Option("mcmc", "--method", help=METHOD_HELP),
    draws: int = typer.Option(1000, "--draws", help=DRAWS_HELP),
    tune: int = typer.Option(1000, "--tune", help=TUNE_HELP),
    chains: int = typer.Option(4, "--chains", help=CHAINS_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    missing: str = typer.Option("carry", "--missing", help=MISSING_HELP),
    max_customers: int = typer.Option(20_000, "--max-customers",
                                      help="Refuse larger panels: two effects per customer."),
) -> None:
    """Retention and cross-selling together, with correlated customer effects (small panels).

    attachment_corr > 0: the customers who stay longer than their scores predict also buy more.
    """
    from tenure.models.joint import JointModel
    from tenure.models.panel import read_panel

    check_out(out)
    check_method(method)
    overrides = load_priors_file(priors)
    with console.status("reading and compressing the panel"):
        model = JointModel(read_panel(panel, segment_col=segment_col, optional=()), overrides, missing,
                           max_customers=max_customers)
    _fit_and_report(model, out, method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                    title="Joint retention and cross-selling")
