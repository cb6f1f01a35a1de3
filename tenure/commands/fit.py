"""`tenure fit`: one sub-command per model family.

The panel models (retention, cross-sell, joint, nps, trim) and the customer-base
models (sbg, bgnbd, gamma-gamma, bgbb) register their commands on ``fit_app`` in
their own modules under ``tenure/commands/``; ``tenure.cli`` imports them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from tenure.errors import InputError

# PyTensor warns at every compilation that a pip-installed NumPy gives it no BLAS to link. The models
# here do no large matrix products (the panel likelihoods run on compressed cells), so the warning says
# nothing a user can act on; it would be the first thing printed by every `tenure fit`.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)

fit_app = typer.Typer(
    help="Fit a Bayesian model to panel, transaction or cohort data and save the posterior.",
    no_args_is_help=True,
)


DRAWS_HELP = "Posterior draws per chain."
TUNE_HELP = "Tuning steps per chain (mcmc)."
CHAINS_HELP = "Chains."
SEED_HELP = "Seed of every random choice of the fit."


def check_out(out: Path) -> None:
    """Fail before any work if --out cannot be a folder (nothing is created yet)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")


def check_method(method: str) -> None:
    """Fail before any work on an unknown --method."""
    from tenure.models.base import FIT_METHODS

    if method not in FIT_METHODS:
        raise InputError(f"--method: unknown method {method!r}; use one of {', '.join(FIT_METHODS)}")


def load_priors_file(path: Path | None) -> dict[str, dict[str, Any]] | None:
    """The prior overrides of a --priors TOML or JSON file, or None without one."""
    from tenure.models.base import load_priors

    return load_priors(path) if path is not None else None


def results_table(idata: Any, var_names: list[str], title: str) -> Table:
    """Mean, sd, 90 % interval, R-hat and bulk ESS per scalar parameter, as every `tenure fit` prints them."""
    from tenure.models.base import summary_table
    from tenure.models.effects import equal_tailed

    summary = summary_table(idata, var_names)
    table = Table(title=title, title_justify="left")
    # Parameter names are never shortened (a narrow terminal wraps the interval column instead).
    table.add_column("parameter", justify="left", no_wrap=True,
                     min_width=max(len(p) for p in summary["parameter"].to_list()))
    for col in ("mean", "sd", "90 % interval", "R-hat", "ESS bulk"):
        table.add_column(col, justify="right")
    post = idata.posterior
    labels = summary["parameter"].to_list()
    flat = {}
    for name in var_names:
        values = np.asarray(post[name].values)
        values = values.reshape(values.shape[0] * values.shape[1], -1)
        own = [lab for lab in labels if lab == name or lab.startswith(name + "[")]
        for j, lab in enumerate(own):
            flat[lab] = values[:, j]
    for row in summary.iter_rows(named=True):
        lo, hi = equal_tailed(flat[row["parameter"]]) if row["parameter"] in flat else (np.nan, np.nan)
        # Escape: a label like churn_segment[price-driven] would otherwise be read as Rich markup and vanish.
        table.add_row(escape(row["parameter"]), f"{row['mean']:.4g}", f"{row['sd']:.3g}", f"{lo:.4g} to {hi:.4g}",
                      f"{row['r_hat']:.3f}" if np.isfinite(row["r_hat"]) else "–",
                      f"{row['ess_bulk']:.0f}" if np.isfinite(row["ess_bulk"]) else "–")
    return table
