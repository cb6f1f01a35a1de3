"""`tenure fit sbg|bgnbd|gamma-gamma|bgbb`: the field's standard customer-base models.

Every command reads and validates its input before anything is written (bad input: one
line naming the column and the first offending row, exit code 2), fits, prints a table
of estimates with R-hat and bulk ESS, and writes ``posterior.nc``, ``summary.csv`` and a
forest plot into ``--out``. Time units are explicit: ``--time-unit`` names the unit of
recency and T (or the length of a contract period or transaction opportunity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import typer

from tenure.checks import discount_rate as check_discount_rate
from tenure.commands._common import cli_errors, console, err_console
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

OUT_HELP = "Folder for posterior.nc, summary.csv and forest.png (created if missing)."
PRIORS_HELP = "TOML or JSON file overriding priors, one table per parameter, e.g. r = {dist = 'Gamma', alpha = 1}."
METHOD_HELP = "mcmc (NUTS with nutpie), map (mode + Laplace approximation; with the flat defaults, the MLE) or advi."
SUMMARY_DATA_HELP = (
    "CSV or Parquet file: an RFM summary (frequency, recency, T, optional monetary_value and count) or a "
    "transaction log (customer_id, date, optional amount) turned into one with --time-unit."
)
CUSTOMER_COL_HELP = "Customer column of a transaction log."
DATE_COL_HELP = "Date column of a transaction log (YYYY-MM-DD, YYYYMMDD or a date type)."
AMOUNT_COL_HELP = "Amount column of a transaction log (spend per transaction)."
END_HELP = "Last day of observation of a transaction log (YYYY-MM-DD); default: its last date."



def _check_common(out: Path, method: str, time_unit: str) -> None:
    from tenure.models.clv_data import check_time_unit

    check_out(out)
    check_method(method)
    check_time_unit(time_unit)



def _split(names: str | None) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()] if names else []


def _read_summary(path: Path, *, time_unit: str, customer_col: str, date_col: str, amount_col: str,
                  observation_end: str | None):
    """A summary table as is, or the summary of a transaction log (recognised by its date column)."""
    from tenure.io import read_table
    from tenure.models.clv_data import SUMMARY_ALIASES, summary_from_transactions

    df = read_table(path)
    names = {SUMMARY_ALIASES.get(c, c) for c in df.columns}
    if {"frequency", "recency", "T"} <= names or date_col not in df.columns:
        return df
    with console.status("turning the transaction log into a summary"):
        return summary_from_transactions(
            df, time_unit=time_unit, customer_col=customer_col, date_col=date_col,
            amount_col=amount_col if amount_col in df.columns else None,
            observation_end=observation_end, where=str(path))



def _fit_and_report(model: Any, out: Path, *, method: str, draws: int, tune: int, chains: int, seed: int,
                    title: str) -> Any:
    """Fit, print the estimates and warnings, and save the outputs atomically."""
    from tenure.io import prepare_out_dir
    from tenure.models.base import diagnostics_warnings, save_fit

    info = model.data_summary()
    customers = info.get("customers", info.get("repeat_buyers", 0))
    console.print(f"{title}: {customers:,} customers in {info.get('unique_rows', 0):,} unique rows; "
                  f"fitting with {method}", highlight=False)
    idata = model.fit(method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                      progress=console.is_terminal)
    console.print(results_table(idata, model.var_names, title))
    for warning in diagnostics_warnings(idata, model.var_names):
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    paths = save_fit(idata, prepare_out_dir(out), var_names=model.var_names, title=title)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)
    return idata


@fit_app.command("sbg")
@cli_errors
def sbg(
    data: Path = typer.Argument(..., help="CSV or Parquet file: a cohort survival table (cohort, period, alive; "
                                "period 0 holds the cohort's size) or customer records (periods, churned, "
                                "optional cohort, count and covariates)."),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    time_unit: str = typer.Option("years", "--time-unit", help="Length of one contract period: days, weeks, "
                                  "months or years."),
    per_cohort: bool = typer.Option(False, "--per-cohort", help="One (alpha, beta) per cohort instead of one "
                                    "pooled pair."),
    covariates: str | None = typer.Option(None, "--covariates", help="Comma-separated columns of customer "
                                          "records that shift the churn probability, e.g. trust,enthusiasm."),
    discount_rate: float = typer.Option(0.10, "--discount-rate", help="Discount rate per contract period for "
                                        "the reported discounted expected lifetime (DEL)."),
    priors: Path | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    method: str = typer.Option("mcmc", "--method", help=METHOD_HELP),
    draws: int = typer.Option(1000, "--draws", help=DRAWS_HELP),
    tune: int = typer.Option(1000, "--tune", help=TUNE_HELP),
    chains: int = typer.Option(4, "--chains", help=CHAINS_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> None:
    """Shifted-beta-geometric retention (Fader & Hardie 2007): contract renewals, per cohort or pooled."""
    from tenure.io import read_table
    from tenure.models.sbg import SBGModel

    _check_common(out, method, time_unit)
    check_discount_rate(discount_rate)
    overrides = load_priors_file(priors)
    model = SBGModel(read_table(data), time_unit=time_unit, pooled=not per_cohort,
                     covariates=_split(covariates), priors=overrides, where=str(data))
    _fit_and_report(model, out, method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                    title="Shifted-beta-geometric retention")
    for cohort in ([None] if model.pooled else model.cohorts):
        value = model.discounted_expected_lifetime(discount_rate, cohort=cohort)
        label = "all cohorts" if cohort is None else f"cohort {cohort}"
        console.print(f"  • DEL at {discount_rate:g} per {time_unit[:-1]} ({label}): {value['mean']:.3f} "
                      f"{time_unit} (90 % interval {value['lower']:.3f} to {value['upper']:.3f})", highlight=False)


@fit_app.command("bgnbd")
@cli_errors
def bgnbd(
    data: Path = typer.Argument(..., help=SUMMARY_DATA_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    time_unit: str = typer.Option("weeks", "--time-unit", help="Unit of recency and T: days, weeks or months."),
    purchase_covariates: str | None = typer.Option(None, "--purchase-covariates", help="Comma-separated columns "
                                                   "that shift the purchase rate, e.g. trust,enthusiasm."),
    dropout_covariates: str | None = typer.Option(None, "--dropout-covariates", help="Comma-separated columns "
                                                  "that shift the dropout probability."),
    customer_col: str = typer.Option("customer_id", "--customer-col", help=CUSTOMER_COL_HELP),
    date_col: str = typer.Option("date", "--date-col", help=DATE_COL_HELP),
    amount_col: str = typer.Option("amount", "--amount-col", help=AMOUNT_COL_HELP),
    observation_end: str | None = typer.Option(None, "--observation-end", help=END_HELP),
    priors: Path | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    method: str = typer.Option("mcmc", "--method", help=METHOD_HELP),
    draws: int = typer.Option(1000, "--draws", help=DRAWS_HELP),
    tune: int = typer.Option(1000, "--tune", help=TUNE_HELP),
    chains: int = typer.Option(4, "--chains", help=CHAINS_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> None:
    """BG/NBD repeat buying with silent dropout (Fader, Hardie & Lee 2005), optionally with covariates."""
    from tenure.models.bgnbd import BGNBDModel

    _check_common(out, method, time_unit)
    overrides = load_priors_file(priors)
    summary = _read_summary(data, time_unit=time_unit, customer_col=customer_col, date_col=date_col,
                            amount_col=amount_col, observation_end=observation_end)
    model = BGNBDModel(summary, time_unit=time_unit, purchase_covariates=_split(purchase_covariates),
                       dropout_covariates=_split(dropout_covariates), priors=overrides, where=str(data))
    _fit_and_report(model, out, method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                    title=f"BG/NBD (time unit: {time_unit})")


@fit_app.command("gamma-gamma")
@cli_errors
def gamma_gamma(
    data: Path = typer.Argument(..., help=SUMMARY_DATA_HELP + " Needs monetary_value (or amount)."),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    time_unit: str = typer.Option("weeks", "--time-unit", help="Unit used to summarise a transaction log: "
                                  "days, weeks or months (spend itself has no time unit)."),
    customer_col: str = typer.Option("customer_id", "--customer-col", help=CUSTOMER_COL_HELP),
    date_col: str = typer.Option("date", "--date-col", help=DATE_COL_HELP),
    amount_col: str = typer.Option("amount", "--amount-col", help=AMOUNT_COL_HELP),
    observation_end: str | None = typer.Option(None, "--observation-end", help=END_HELP),
    priors: Path | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    method: str = typer.Option("mcmc", "--method", help=METHOD_HELP),
    draws: int = typer.Option(1000, "--draws", help=DRAWS_HELP),
    tune: int = typer.Option(1000, "--tune", help=TUNE_HELP),
    chains: int = typer.Option(4, "--chains", help=CHAINS_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> None:
    """Gamma-Gamma spend per transaction (Fader, Hardie & Lee 2005), fitted on repeat buyers."""
    from tenure.models.gamma_gamma import GammaGammaModel

    _check_common(out, method, time_unit)
    overrides = load_priors_file(priors)
    summary = _read_summary(data, time_unit=time_unit, customer_col=customer_col, date_col=date_col,
                            amount_col=amount_col, observation_end=observation_end)
    where = str(data)
    if "customer_id" in summary.columns and "monetary_value" in summary.columns:
        # Summarised from a transaction log: a repeat buyer whose repeat purchases all cost 0 has no spend for
        # the Gamma-Gamma model (its support is positive); leave such customers out and say so, rather than
        # stop on a summary row the user never wrote.
        zero = summary.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") <= 0))
        if zero.height:
            ids = ", ".join(str(c) for c in zero["customer_id"].head(3).to_list())
            err_console.print(f"note: {zero.height} repeat buyer(s) with zero mean spend left out "
                              f"(customer {ids}{', ...' if zero.height > 3 else ''}): Gamma-Gamma needs positive "
                              "spend")
            summary = summary.filter(~((pl.col("frequency") > 0) & (pl.col("monetary_value") <= 0)))
        where = f"{data} (summarised by customer)"
    model = GammaGammaModel(summary, priors=overrides, where=where)
    _fit_and_report(model, out, method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                    title="Gamma-Gamma spend")


@fit_app.command("bgbb")
@cli_errors
def bgbb(
    data: Path = typer.Argument(..., help="CSV or Parquet file: a discrete-time summary with whole numbers "
                                "frequency (x), recency (t_x) and T (n, the number of opportunities), optional "
                                "count (n_custs)."),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    time_unit: str = typer.Option("years", "--time-unit", help="Length of one transaction opportunity: days, "
                                  "weeks, months or years."),
    priors: Path | None = typer.Option(None, "--priors", help=PRIORS_HELP),
    method: str = typer.Option("mcmc", "--method", help=METHOD_HELP),
    draws: int = typer.Option(1000, "--draws", help=DRAWS_HELP),
    tune: int = typer.Option(1000, "--tune", help=TUNE_HELP),
    chains: int = typer.Option(4, "--chains", help=CHAINS_HELP),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
) -> None:
    """BG/BB discrete-time repeat buying (Fader, Hardie & Shang 2010)."""
    from tenure.io import read_table
    from tenure.models.bgbb import BGBBModel

    _check_common(out, method, time_unit)
    overrides = load_priors_file(priors)
    model = BGBBModel(read_table(data), time_unit=time_unit, priors=overrides, where=str(data))
    _fit_and_report(model, out, method=method, draws=draws, tune=tune, chains=chains, seed=seed,
                    title=f"BG/BB (one opportunity = one {time_unit[:-1]})")
