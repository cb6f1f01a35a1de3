"""`tenure fit`: one sub-command per model family.

The panel models (retention, cross-sell, joint, nps, trim) and the customer-base
models (sbg, bgnbd, gamma-gamma, bgbb) register their commands on ``fit_app`` in
their own modules under ``tenure/commands/``; ``tenure.cli`` imports them.
"""

from __future__ import annotations

import typer

fit_app = typer.Typer(
    help="Fit a Bayesian model to panel, transaction or cohort data and save the posterior.",
    no_args_is_help=True,
)
