"""`tenure fit`: one sub-command per model family.

The panel models (retention, cross-sell, joint, nps, trim) and the customer-base
models (sbg, bgnbd, gamma-gamma, bgbb) register their commands on ``fit_app`` in
their own modules under ``tenure/commands/``; ``tenure.cli`` imports them.
"""

from __future__ import annotations

import warnings

import typer

# PyTensor warns at every compilation that a pip-installed NumPy gives it no BLAS to link. The models
# here do no large matrix products (the panel likelihoods run on compressed cells), so the warning says
# nothing a user can act on; it would be the first thing printed by every `tenure fit`.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)

fit_app = typer.Typer(
    help="Fit a Bayesian model to panel, transaction or cohort data and save the posterior.",
    no_args_is_help=True,
)
