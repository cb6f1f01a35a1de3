"""`tenure evaluate`: fit transaction models on a calibration period and score them on the holdout after it.

The log is cut at ``--holdout-start`` (:func:`tenure.models.evaluate.split_transactions`); each model
of ``--models`` is fitted on the calibration RFM summary with the shared sampler options and
predicts every customer's holdout purchases. The run folder ``--out`` holds ``evaluation.csv``
(one row per model: totals actual and predicted, MAE, RMSE, LOO for MCMC fits), the tables and
figures of the tracking curves, the period transactions and the conditional expectations, one
fit folder per model (``posterior.nc``, ``summary.csv``, ``forest.png``), and ``report.html``
(which model predicts the holdout best, then the figures and the settings; `tenure report`
renders it again). Every input and option is checked before any fit; bad input ends with one
line and exit code 2, nothing written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tenure.commands._common import cli_errors, console, number, write_run_report
from tenure.commands._options import RequiredOutDir
from tenure.commands.fit import FitSettings, check_fit, sampler_options
from tenure.commands.fit_clv import AmountCol, CustomerCol, DateCol

Transactions = Annotated[Path, typer.Argument(help=(
    "CSV or Parquet transaction log: one row per purchase with customer_id and date (YYYY-MM-DD, YYYYMMDD or a "
    "date type), optional amount."))]
HoldoutStart = Annotated[str, typer.Option(
    "--holdout-start", help="First day of the holdout period (YYYY-MM-DD); the calibration period ends the day "
    "before.", show_default=False)]
HoldoutEnd = Annotated[str | None, typer.Option(
    "--holdout-end",
    help="Last day of the holdout period (YYYY-MM-DD), at most the last date of the log (the default).",
    show_default=False)]
Models = Annotated[str, typer.Option(
    "--models", help="Comma-separated transaction models to fit and compare, e.g. bgnbd,pnbd,mbgnbd.")]
TimeUnit = Annotated[str, typer.Option("--time-unit", help="Unit of recency, T, the holdout length and the "
                                       "tracking periods: days, weeks or months.")]


def _model_names(models: str) -> list[str]:
    from tenure.errors import InputError
    from tenure.models import MODELS, model_class
    from tenure.models.evaluate import check_transaction_model

    names = list(dict.fromkeys(n.strip() for n in models.split(",") if n.strip()))
    if not names:
        raise InputError("--models: name at least one model, e.g. bgnbd")
    for name in names:
        if name not in MODELS:
            raise InputError(f"--models: unknown model {name!r}; known: {', '.join(MODELS)}")
        check_transaction_model(model_class(name), name)
    return names


def _priors_by_model(overrides: dict[str, Any] | None, names: list[str], where: str) -> dict[str, Any]:
    """Each model's prior overrides from one --priors file.

    A file whose top-level tables are model names (``[pnbd.beta]``) gives each model its own
    overrides; a file of parameter tables (``[r]``) applies to every model named in --models,
    and each of them must know every parameter it names.
    """
    from tenure.errors import InputError
    from tenure.models import MODELS

    if not overrides:
        return dict.fromkeys(names)
    by_model = [k for k in overrides if k in MODELS]
    if not by_model:
        return dict.fromkeys(names, overrides)
    if len(by_model) != len(overrides):
        mixed = next(k for k in overrides if k not in MODELS)
        raise InputError(f"--priors {where}: {mixed!r} is neither a model of --models nor allowed beside the "
                         f"model tables {', '.join(by_model)}: use one table per model or one per parameter")
    for name in by_model:
        if name not in names:
            raise InputError(f"--priors {where}: table {name!r} names a model not in --models ({', '.join(names)})")
    return {name: overrides.get(name) for name in names}


def _table(rows: list[dict[str, Any]], split: Any) -> Table:
    unit = split.time_unit
    table = Table(title=f"Holdout {split.holdout_start} to {split.holdout_end} ({split.holdout_length:.4g} {unit}), "
                  f"{split.n_customers:,} customers", title_justify="left",
                  caption="repeat transactions (purchase days); MAE and RMSE per customer; LOO for mcmc fits",
                  caption_justify="left")
    for col in ("model", "method", "actual", "predicted", "error %", "MAE", "RMSE", "elpd LOO (se)"):
        table.add_column(col, justify="left" if col in ("model", "method") else "right")
    for r in rows:
        loo = "n/a" if math.isnan(r["elpd_loo"]) else f"{r['elpd_loo']:,.1f} ({r['elpd_loo_se']:.1f})"
        table.add_row(r["model"], r["method"], number(r["holdout_actual"]), number(r["holdout_predicted"], 1),
                      number(r["holdout_error_percent"], 1), f"{r['mae']:.3f}", f"{r['rmse']:.3f}", loo)
    return table


@cli_errors
@sampler_options
def evaluate_cmd(
    transactions: Transactions,
    holdout_start: HoldoutStart,
    out: RequiredOutDir,
    models: Models = "bgnbd",
    holdout_end: HoldoutEnd = None,
    time_unit: TimeUnit = "weeks",
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    *,
    settings: FitSettings,
) -> None:
    """Out-of-sample check of transaction models: calibrate before --holdout-start, predict the holdout.

    --priors takes one table per parameter, applied to every model, or one table per model,
    e.g. [pnbd.beta] dist = 'Exponential', lam = 0.01.
    """
    import polars as pl

    from tenure.io import read_table, run_folder, write_atomic, write_table
    from tenure.models import evaluate as ev
    from tenure.models import model_class
    from tenure.models.clv_data import check_time_unit

    check_time_unit(time_unit)
    names = _model_names(models)
    priors = _priors_by_model(check_fit(out, settings), names, str(settings.priors))
    log = read_table(transactions)
    split = ev.split_transactions(log, holdout_start, holdout_end=holdout_end, time_unit=time_unit,
                                  customer_col=customer_col, date_col=date_col, amount_col=amount_col,
                                  where=str(transactions))
    fitted: dict[str, Any] = {}
    for name in names:
        model = model_class(name)(split.calibration, time_unit=time_unit, priors=priors[name],
                                  where=f"{transactions} (calibration summary)")
        fitted[name] = model
    console.print(f"calibration {split.start} to {split.calibration_end}: {split.n_customers:,} customers"
                  + (f" ({split.left_out} first bought on its last day: left out)" if split.left_out else "")
                  + f"; holdout {split.holdout_start} to {split.holdout_end}", highlight=False)
    predictions: dict[str, Any] = {}
    rows = []
    for name, model in fitted.items():
        console.print(f"fitting {name} with {settings.method}", highlight=False)
        result = model.fit(progress=console.is_terminal, **settings.fit_options())
        predictions[name] = ev.holdout_predictions(model, split)
        rows.append(ev.evaluation_row(name, result, split, predictions[name]))
    tracking = ev.tracking_table(fitted, split)
    periods = ev.period_transactions_table(fitted, split, seed=settings.seed)
    conditional = ev.conditional_expectations_table(predictions, split)
    console.print(_table(rows, split))
    meta = {"seed": settings.seed, "method": settings.method, "models": names, "time_unit": time_unit,
            "holdout_start": str(split.holdout_start), "holdout_end": str(split.holdout_end)}
    with run_folder(out, command="tenure evaluate", **meta) as stage:
        write_table(pl.DataFrame(rows), stage / "evaluation.csv", fmt="csv")
        write_table(tracking, stage / "tracking.csv", fmt="csv")
        write_table(periods, stage / "period_transactions.csv", fmt="csv")
        write_table(conditional, stage / "conditional_expectations.csv", fmt="csv")
        customers = split.holdout.with_columns(*(pl.Series(f"{n}_predicted", p) for n, p in predictions.items()))
        write_table(split.calibration.join(customers, on="customer_id"), stage / "customers.parquet")
        write_atomic(stage / "tracking.png", lambda p: ev.plot_tracking(tracking, names, split, p))
        write_atomic(stage / "period_transactions.png",
                     lambda p: ev.plot_period_transactions(periods, names, split, p))
        write_atomic(stage / "conditional_expectations.png",
                     lambda p: ev.plot_conditional_expectations(conditional, names, split, p))
        for name, model in fitted.items():
            model.result.write(stage / name, f"{name} on the calibration period to {split.calibration_end}")
        written = sorted(p.name for p in stage.iterdir())
    report = write_run_report(out)  # report.html, from the folder just put in place
    console.print(f"wrote {out}: {', '.join(written)}, manifest.json" + (", report.html" if report else ""),
                  highlight=False)
