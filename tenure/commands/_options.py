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
- ``--cluster``: run on Dask (``local:N`` or a scheduler's address);
- the budget sweep of ``tenure compare`` and ``tenure decide``: ``-b/--budget``,
  ``--levers``, ``--mix``, ``--acquisition-steps``, ``--seeds``;
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
        help="Run folder for the outputs; it holds exactly this run afterwards (manifest.json lists its files, "
        "report.html shows them).",
        show_default=False,
    ),
]
RequiredOutDir = Annotated[
    Path,
    typer.Option(
        "--out", "-o",
        help="Run folder for the outputs; it holds exactly this run afterwards (manifest.json lists its files, "
        "report.html shows them).",
        show_default=False,
    ),
]

Cluster = Annotated[
    str | None,
    typer.Option(
        "--cluster", metavar="local:N | tcp://HOST:PORT",
        help="Run on Dask: local:N starts N worker processes on this machine, tcp://HOST:PORT uses a running "
        "scheduler's workers. Results do not depend on it. Needs the cluster extra.",
        show_default=False,
    ),
]

# -- the budget sweep of `tenure compare` and `tenure decide` ---------------------------------------

Budget = Annotated[
    float | None,
    typer.Option(
        "--budget", "-b",
        help="Total budget per month (currency) to split. Default: the market's acquisition plus retention "
        "budgets (scaled with -n).",
        show_default=False,
    ),
]
Levers = Annotated[
    str | None,
    typer.Option(
        "--levers", help="Retention levers to sweep, comma-separated (default: all): service, loyalty, engagement, "
        "alarm, employee.", show_default=False,
    ),
]
Mix = Annotated[
    str | None,
    typer.Option(
        "--mix", help="The current retention mix as lever=share pairs adding up to 1, e.g. 'service=0.5,loyalty=0.5'. "
        "Default: the market's budgets.", show_default=False,
    ),
]
AcquisitionSteps = Annotated[
    int, typer.Option("--acquisition-steps", help="Acquisition shares on the coarse grid, evenly from 0 to 1."),
]
Seeds = Annotated[
    int, typer.Option("--seeds", help="Seeds per allocation (-s, -s + 1, ...), shared by every allocation."),
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
