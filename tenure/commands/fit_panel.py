"""`tenure fit retention|cross-sell|joint|nps|trim`: Bayesian models of a customer panel.

Every command reads and validates the panel before anything is written (bad input:
one line naming the column and the first offending row, exit code 2), fits, prints
a table of estimates and one plain-language line per effect, and writes the run
folder ``--out``: ``posterior.nc``, ``summary.csv``, ``forest.png`` and ``manifest.json``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer

from tenure.commands._common import cli_errors, console
from tenure.commands._options import DEFAULT_SEED, Chains, Draws, FitSeed, RequiredOutDir
from tenure.commands.fit import FitSettings, check_fit, fit_and_write, fit_app, sampler_options

Panel = Annotated[Path, typer.Argument(help="Panel file (.csv or .parquet): one row per customer per period; "
                                       "see docs/models-panel.md.")]
SegmentCol = Annotated[str | None, typer.Option(
    "--segment-col", help="Column with the customer segment (default: 'segment' if present, else one segment).",
    show_default=False)]
Missing = Annotated[str, typer.Option(
    "--missing", help="Null survey scores: 'carry' the customer's last answer forward, or 'drop' the row.")]


def _fit(model_factory: Any, panel: Path, out: Path, settings: FitSettings, *, command: str, title: str,
         extra: Any = None, **options: Any) -> None:
    """Check the options, build the model from the panel file, fit and write the run folder.

    ``extra(model, result, folder)`` writes the family's own tables into the run folder.
    """
    overrides = check_fit(out, settings)
    with console.status("reading and compressing the panel"):
        model = model_factory(panel, overrides, **options)
    fit_and_write(model, out, command=f"tenure fit {command}", title=title, settings=settings,
                  extra=None if extra is None else lambda result, folder: extra(model, result, folder))


def _register_cell_model(command: str, module: str, cls: str, title: str, doc: str) -> None:
    """Register ``tenure fit COMMAND`` for a model on compressed cells (retention and cross-sell share options)."""

    @fit_app.command(command, help=doc)
    @cli_errors
    @sampler_options
    def fit_cell_model(
        panel: Panel,
        out: RequiredOutDir,
        segment_col: SegmentCol = None,
        missing: Missing = "carry",
        *,
        settings: FitSettings,
    ) -> None:
        model_class = getattr(importlib.import_module(module), cls)
        _fit(model_class, panel, out, settings, command=command, title=title, segment_col=segment_col,
             missing=missing)


_register_cell_model("retention", "tenure.models.retention", "RetentionModel", "Retention (discrete-time hazard)",
                     "Discrete-time hazard of churn: how trust, enthusiasm and satisfaction move monthly churn odds.")
_register_cell_model("cross-sell", "tenure.models.cross_sell", "CrossSellModel", "Cross-selling (Poisson)",
                     "Poisson model of products added per period: trust, enthusiasm, their interaction, products held.")


@fit_app.command("joint")
@cli_errors
@sampler_options
def joint(
    panel: Panel,
    out: RequiredOutDir,
    segment_col: SegmentCol = None,
    missing: Missing = "carry",
    max_customers: Annotated[int, typer.Option("--max-customers",
                                               help="Refuse larger panels: two effects per customer.")] = 20_000,
    *,
    settings: FitSettings,
) -> None:
    """Retention and cross-selling together, with correlated customer effects (small panels).

    attachment_corr > 0: the customers who stay longer than their scores predict also buy more.
    """
    from tenure.models.joint import JointModel

    _fit(JointModel, panel, out, settings, command="joint", title="Joint retention and cross-selling",
         segment_col=segment_col, missing=missing,
         max_customers=max_customers)


@fit_app.command("nps")
@cli_errors
@sampler_options
def nps(
    panel: Panel,
    out: RequiredOutDir,
    segment_col: SegmentCol = None,
    *,
    settings: FitSettings,
) -> None:
    """Net Promoter Score by segment and period with Bayesian intervals (Dirichlet-multinomial, pooled).

    Also writes nps_by_segment_period.csv: counts, raw NPS with its 95 % Wald interval,
    and the pooled posterior mean with its 90 % equal-tailed interval per cell.
    """
    from tenure.io import write_table
    from tenure.models.nps import NPSModel

    def cells(model: NPSModel, result: Any, folder: Path) -> None:
        write_table(model.cell_table(result.data), folder / "nps_by_segment_period.csv", fmt="csv")

    _fit(NPSModel, panel, out, settings, command="nps", title="Net Promoter Score (Dirichlet-multinomial)",
         extra=cells, segment_col=segment_col)


@fit_app.command("trim")
@cli_errors
def trim(
    panel: Panel,
    out: RequiredOutDir,
    segment_col: SegmentCol = None,
    weights: Annotated[str, typer.Option(
        "--weights", help="Weights of overall, recommend, repurchase, advantage (TRI*M-style).")] = "1,1,1,1",
    derived: Annotated[str, typer.Option(
        "--derived", help="Derived importance: 'rest' (item vs index of the other items) or 'index'.")] = "rest",
    draws: Draws = 1000,
    chains: Chains = 4,
    seed: FitSeed = DEFAULT_SEED,
) -> None:
    """TRI*M-style index (0-100) with its typology and, with importance_* columns, its grid.

    Uncertainty is the Bayesian bootstrap (no priors, no method). Writes posterior.nc,
    summary.csv, forest.png, trim_index.csv (by segment and period), typology.csv and,
    with importance columns, grid.csv and grid.png.
    """
    from tenure.io import check_out_dir, write_atomic, write_table
    from tenure.models.trim import BOOTSTRAP, TrimModel, plot_grid

    check_out_dir(out)
    with console.status("reading the panel"):
        model = TrimModel(panel, weights=weights, derived=derived, segment_col=segment_col)

    def tables(result: Any, folder: Path) -> None:
        write_table(model.index_table(), folder / "trim_index.csv", fmt="csv")
        write_table(model.typology_table(result.data), folder / "typology.csv", fmt="csv")
        if model.grid is not None:
            write_table(model.grid, folder / "grid.csv", fmt="csv")
            write_atomic(folder / "grid.png", lambda p: plot_grid(model.grid, p))

    settings = FitSettings(method=BOOTSTRAP, draws=draws, tune=0, chains=chains, seed=seed)
    fit_and_write(model, out, command="tenure fit trim", title="TRI*M-style index (Bayesian bootstrap)",
                  settings=settings, extra=tables)
