"""The CLI grammar: every option shared by several commands, declared once.

Each alias is an ``Annotated`` type; a command takes it as ``seed: Seed = None``.
The same spelling means the same thing in every command:

- ``MARKET`` (positional): a built-in scenario name or a scenario TOML file;
- ``-n/--customers``: the same market with N customers (base, market size and
  budgets scaled together, what ``tenure scenario scale`` does);
- ``-t/--periods``: months simulated;
- ``-s/--seed``: the seed fixing every random draw; by default the market's
  ``run.seed`` (:data:`DEFAULT_SEED` in every built-in market), and the same
  number for the fits;
- ``-o/--out``: the run folder (or file) for the outputs;
- ``-q/--quiet``: no progress and no tables;
- the sampler options of every ``tenure fit``: ``--method``, ``--draws``,
  ``--tune``, ``--chains``, ``--priors`` (and ``--seed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tenure.scenario import DEFAULT_SEED

MARKET_HELP = "A built-in market (see `tenure scenario list`) or a scenario TOML file. Default: 'default'."

Market = Annotated[str | None, typer.Argument(help=MARKET_HELP, show_default=False, metavar="[MARKET]")]
Customers = Annotated[
    int | None,
    typer.Option(
        "--customers", "-n",
        help="The same market with N customers: the base, the market size and every budget scaled together "
        "(per-customer economics unchanged). Default: the market's run.customers.",
        show_default=False,
    ),
]
Periods = Annotated[
    int | None,
    typer.Option("--periods", "-t", help="Months simulated. Default: the market's run.periods.", show_default=False),
]
Seed = Annotated[
    int | None,
    typer.Option(
        "--seed", "-s",
        help=f"Seed fixing every random draw. Default: the market's run.seed ({DEFAULT_SEED} in the built-in "
        "markets and for fits).",
        show_default=False,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no tables.")]
OutDir = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o",
        help="Run folder for the outputs; it holds exactly this run afterwards (manifest.json lists its files).",
        show_default=False,
    ),
]
RequiredOutDir = Annotated[
    Path,
    typer.Option(
        "--out", "-o",
        help="Run folder for the outputs; it holds exactly this run afterwards (manifest.json lists its files).",
        show_default=False,
    ),
]

# -- the sampler options of every `tenure fit` ------------------------------------------------------

METHODS = ("mcmc", "map", "advi")
Method = Annotated[
    str,
    typer.Option(
        "--method",
        help="mcmc (NUTS with nutpie), map (the posterior mode with a Laplace interval; with flat priors the "
        "MLE) or advi (mean-field variational).",
    ),
]
Draws = Annotated[int, typer.Option("--draws", help="Posterior draws per chain (mcmc), or draws of the approximation.")]
Tune = Annotated[int, typer.Option("--tune", help="Tuning steps per chain (mcmc).")]
Chains = Annotated[int, typer.Option("--chains", help="Chains (mcmc).")]
Priors = Annotated[
    Path | None,
    typer.Option(
        "--priors",
        help="TOML or JSON file overriding priors, one table per parameter, e.g. r = {dist = 'Gamma', alpha = 1}.",
        show_default=False,
    ),
]
FitSeed = Annotated[
    int,
    typer.Option("--seed", "-s", help=f"Seed of every random choice of the fit (default {DEFAULT_SEED})."),
]
