"""`tenure fit`: one sub-command per model family, all on one grammar.

The panel models (retention, cross-sell, joint, nps, trim) and the customer-base
models (sbg, bgnbd, gamma-gamma, bgbb) register their commands on ``fit_app`` in
their own modules under ``tenure/commands/``; ``tenure.cli`` imports them. Every
command takes the shared options of :mod:`tenure.commands._options` and ends in
:func:`fit_and_write`: fit, print the table of estimates, write the run folder.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from tenure.commands._common import COMPILING, console, write_run_report
from tenure.commands._options import DEFAULT_SEED, Chains, Draws, FitSeed, Method, Priors, Tune

F = TypeVar("F", bound=Callable[..., Any])

fit_app = typer.Typer(
    help="Fit a Bayesian model to panel, transaction or cohort data and save the posterior.",
    no_args_is_help=True,
)


@dataclass(frozen=True)
class FitSettings:
    """The sampler options every model command takes (:func:`sampler_options`)."""

    method: str = "mcmc"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = DEFAULT_SEED
    priors: Path | None = None

    def fit_options(self) -> dict[str, Any]:
        """Keyword arguments of ``Model.fit``."""
        return {k: v for k, v in asdict(self).items() if k != "priors"}


#: The options :func:`sampler_options` adds, in the order of ``--help``: name, type (with its
#: ``Annotated`` option from ``_options``) and default (those of ``BayesianModel.fit``).
_SAMPLER_OPTIONS = (("priors", Priors, None), ("method", Method, "mcmc"), ("draws", Draws, 1000),
                    ("tune", Tune, 1000), ("chains", Chains, 4), ("seed", FitSeed, DEFAULT_SEED))


def sampler_options(fn: F) -> F:
    """Give a fit command the shared options --priors, --method, --draws, --tune, --chains, -s/--seed.

    The command declares ``settings: FitSettings`` and receives the six options as one
    :class:`FitSettings`; Typer sees them as ordinary options, declared here once.
    """
    own = inspect.signature(fn, eval_str=True)
    params = [p for p in own.parameters.values() if p.name != "settings"]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
               for name, kind, default in _SAMPLER_OPTIONS]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        settings = FitSettings(**{name: kwargs.pop(name) for name, _, _ in _SAMPLER_OPTIONS})
        return fn(*args, settings=settings, **kwargs)

    command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command  # type: ignore[return-value]


def check_fit(out: Path, settings: FitSettings) -> dict[str, dict[str, Any]] | None:
    """Fail before any work on an --out that cannot be a folder, an unknown --method, bad sizes or priors.

    Returns the prior overrides of --priors (None without one).
    """
    from tenure.io import check_out_dir
    from tenure.models.base import check_fit_settings

    check_out_dir(out)
    check_fit_settings(settings.method, settings.draws, settings.tune, settings.chains)
    return load_priors_file(settings.priors)


def load_priors_file(path: Path | None) -> dict[str, dict[str, Any]] | None:
    """The prior overrides of a --priors TOML or JSON file, or None without one."""
    from tenure.models.base import load_priors

    return load_priors(path) if path is not None else None


def results_table(result: Any, title: str) -> Table:
    """The summary of a fit as every `tenure fit` prints it (the columns of summary.csv).

    The estimate is the posterior mean (mcmc, advi, bootstrap) or mode (map); R-hat and
    bulk ESS appear for mcmc only.
    """
    from tenure.models.base import INTERVAL_CAPTION, INTERVAL_HIGH, INTERVAL_LOW

    summary = result.summary()
    estimate = "mode" if "mode" in summary.columns else "mean"
    table = Table(title=f"{title}, {result.method}", title_justify="left", caption=INTERVAL_CAPTION,
                  caption_justify="left")
    # Parameter names are never shortened (a narrow terminal wraps the interval column instead).
    table.add_column("parameter", justify="left", no_wrap=True,
                     min_width=max(len(p) for p in summary["parameter"].to_list()))
    columns = [estimate, "sd", "eti90", *(["R-hat", "ESS bulk"] if "r_hat" in summary.columns else [])]
    for col in columns:
        table.add_column(col, justify="right")
    import numpy as np

    for row in summary.iter_rows(named=True):
        # Escape: a label like churn_segment[price-driven] would otherwise be read as Rich markup and vanish.
        cells = [escape(row["parameter"]), f"{row[estimate]:.4g}", f"{row['sd']:.3g}",
                 f"{row[INTERVAL_LOW]:.4g} to {row[INTERVAL_HIGH]:.4g}"]
        if "r_hat" in row:
            cells += [f"{row['r_hat']:.3f}" if np.isfinite(row["r_hat"]) else "–",
                      f"{row['ess_bulk']:.0f}" if np.isfinite(row["ess_bulk"]) else "–"]
        table.add_row(*cells)
    return table


def _describe(info: dict[str, Any]) -> str:
    """What the model is fitted on, in a few words."""
    if "cells" in info:
        return f"{info.get('rows', 0):,} rows in {info['cells']:,} cells"
    if "unique_rows" in info:
        customers = info.get("customers", info.get("repeat_buyers", 0))
        return f"{customers:,} customers in {info['unique_rows']:,} unique rows"
    return f"{info.get('respondents', info.get('rows', 0)):,} respondents"


def fit_and_write(
    model: Any,
    out: Path,
    *,
    command: str,
    title: str,
    settings: FitSettings,
    extra: Callable[[Any, Path], None] | None = None,
) -> Any:
    """Fit, print the table, the effect lines and warnings, and write the run folder ``out``.

    ``out`` is replaced as a whole (:func:`tenure.io.run_folder`): afterwards it holds
    exactly this run's ``posterior.nc``, ``summary.csv``, ``forest.png``, what
    ``extra(result, folder)`` writes and ``manifest.json``; then ``report.html`` is written from them.
    """
    from tenure.io import run_folder

    console.print(f"{title}: {_describe(model.data_summary())}; fitting with {settings.method}", highlight=False)
    fast = model.fast_route() if settings.method in ("map", "mcmc") and hasattr(model, "fast_route") else None
    if fast is not None and not fast.cached(settings.method):
        # The closed-form route's Numba kernels compile on the first run on a machine; later runs load them.
        with console.status(COMPILING):
            console.print(f"{COMPILING}: the model's log density, cached for later runs", highlight=False)
            fast.compile(settings.method)
    result = model.fit(progress=console.is_terminal, **settings.fit_options())
    console.print(results_table(result, title))
    for line in result.effects:
        console.print(f"  • {line}", highlight=False)
    for warning in result.warnings():
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)  # labels hold [ ]
    with run_folder(out, command=command, seed=settings.seed, method=settings.method) as stage:
        result.write(stage, title)
        if extra is not None:
            extra(result, stage)
        written = sorted(p.name for p in stage.iterdir())
    report = write_run_report(out)
    console.print(f"wrote {out}: {', '.join(written)}, manifest.json" + (", report.html" if report else ""),
                  highlight=False)
    return result
