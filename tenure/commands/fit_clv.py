"""`tenure fit sbg|bgnbd|pnbd|mbgnbd|gamma-gamma|bgbb`: the field's standard customer-base models.

Every command reads and validates its input before anything is written (bad input: one
line naming the column and the first offending row, exit code 2), fits, prints a table
of estimates and writes the run folder ``--out`` (``posterior.nc``, ``summary.csv``,
``forest.png``, ``manifest.json``). Time units are explicit: ``--time-unit`` names the
unit of recency and T (or the length of a contract period or transaction opportunity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer

from tenure.checks import discount_rate as check_discount_rate
from tenure.commands._common import cli_errors, console, err_console
from tenure.commands._options import RequiredOutDir
from tenure.commands.fit import FitSettings, check_fit, fit_and_write, fit_app, sampler_options

SummaryData = Annotated[Path, typer.Argument(help=(
    "CSV or Parquet file: an RFM summary (frequency, recency, T, optional monetary_value and count) or a "
    "transaction log (customer_id, date, optional amount) turned into one with --time-unit."))]
CustomerCol = Annotated[str, typer.Option("--customer-col", help="Customer column of a transaction log.")]
DateCol = Annotated[str, typer.Option("--date-col", help="Date column of a transaction log (YYYY-MM-DD, YYYYMMDD "
                                      "or a date type).")]
AmountCol = Annotated[str, typer.Option("--amount-col", help="Amount column of a transaction log (spend per "
                                        "transaction).")]
ObservationEnd = Annotated[str | None, typer.Option(
    "--observation-end", help="Last day of observation of a transaction log (YYYY-MM-DD); default: its last date.",
    show_default=False)]
Covariates = Annotated[str | None, typer.Option(
    "--covariates", help="Comma-separated columns of customer records that shift the churn probability, "
    "e.g. trust,enthusiasm.", show_default=False)]


RFMTimeUnit = Annotated[str, typer.Option("--time-unit", help="Unit of recency and T: days, weeks or months.")]
PurchaseCovariates = Annotated[str | None, typer.Option(
    "--purchase-covariates", help="Comma-separated columns that shift the purchase rate, e.g. trust,enthusiasm.",
    show_default=False)]
DropoutCovariates = Annotated[str | None, typer.Option(
    "--dropout-covariates", help="Comma-separated columns that shift dropout (the BG/NBD's and MBG/NBD's "
    "probability, the Pareto/NBD's rate).", show_default=False)]


def _check(out: Path, settings: FitSettings, time_unit: str) -> dict[str, dict[str, Any]] | None:
    """Check --out, the sampler options and --time-unit before any work; return the prior overrides."""
    from tenure.models.clv_data import check_time_unit

    check_time_unit(time_unit)
    return check_fit(out, settings)


def _split(names: str | None) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()] if names else []


def _read_summary(path: Path, *, time_unit: str, customer_col: str, date_col: str, amount_col: str,
                  observation_end: str | None) -> pl.DataFrame:
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


def _fit(model: Any, out: Path, command: str, title: str, settings: FitSettings) -> Any:
    return fit_and_write(model, out, command=f"tenure fit {command}", title=title, settings=settings)


@fit_app.command("sbg")
@cli_errors
@sampler_options
def sbg(
    data: Annotated[Path, typer.Argument(help=(
        "CSV or Parquet file: a cohort survival table (cohort, period, alive; period 0 holds the cohort's size) "
        "or customer records (periods, churned, optional cohort, count and covariates)."))],
    out: RequiredOutDir,
    time_unit: Annotated[str, typer.Option("--time-unit", help="Length of one contract period: days, weeks, "
                                           "months or years.")] = "years",
    per_cohort: Annotated[bool, typer.Option("--per-cohort", help="One (alpha, beta) per cohort instead of one "
                                             "pooled pair.")] = False,
    covariates: Covariates = None,
    discount_rate: Annotated[float, typer.Option("--discount-rate", help="Discount rate per contract period for "
                                                 "the reported discounted expected lifetime (DEL).")] = 0.10,
    *,
    settings: FitSettings,
) -> None:
    """Shifted-beta-geometric retention (Fader & Hardie 2007): contract renewals, per cohort or pooled."""
    from tenure.io import read_table
    from tenure.models.sbg import SBGModel

    overrides = _check(out, settings, time_unit)
    check_discount_rate(discount_rate)
    model = SBGModel(read_table(data), time_unit=time_unit, pooled=not per_cohort,
                     covariates=_split(covariates), priors=overrides, where=str(data))
    _fit(model, out, "sbg", "Shifted-beta-geometric retention", settings)
    for cohort in ([None] if model.pooled else model.cohorts):
        value = model.discounted_expected_lifetime(discount_rate, cohort=cohort)
        label = "all cohorts" if cohort is None else f"cohort {cohort}"
        console.print(f"  • DEL at {discount_rate:g} per {time_unit[:-1]} ({label}): {value['mean']:.3f} "
                      f"{time_unit} (90 % equal-tailed interval {value['lower']:.3f} to {value['upper']:.3f})",
                      highlight=False)


@fit_app.command("bgnbd")
@cli_errors
@sampler_options
def bgnbd(
    data: SummaryData,
    out: RequiredOutDir,
    time_unit: RFMTimeUnit = "weeks",
    purchase_covariates: PurchaseCovariates = None,
    dropout_covariates: DropoutCovariates = None,
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    observation_end: ObservationEnd = None,
    *,
    settings: FitSettings,
) -> None:
    """BG/NBD repeat buying with silent dropout (Fader, Hardie & Lee 2005), optionally with covariates."""
    _fit_transaction_model("bgnbd", "BG/NBD", data, out, time_unit, purchase_covariates, dropout_covariates,
                           customer_col, date_col, amount_col, observation_end, settings)


def _fit_transaction_model(name: str, label: str, data: Path, out: Path, time_unit: str,
                           purchase_covariates: str | None, dropout_covariates: str | None, customer_col: str,
                           date_col: str, amount_col: str, observation_end: str | None,
                           settings: FitSettings) -> None:
    """What ``fit bgnbd``, ``fit pnbd`` and ``fit mbgnbd`` do, with the model registered as ``name``."""
    from tenure.models import model_class

    overrides = _check(out, settings, time_unit)
    summary = _read_summary(data, time_unit=time_unit, customer_col=customer_col, date_col=date_col,
                            amount_col=amount_col, observation_end=observation_end)
    model = model_class(name)(summary, time_unit=time_unit, purchase_covariates=_split(purchase_covariates),
                              dropout_covariates=_split(dropout_covariates), priors=overrides, where=str(data))
    _fit(model, out, name, f"{label} (time unit: {time_unit})", settings)


@fit_app.command("gamma-gamma")
@cli_errors
@sampler_options
def gamma_gamma(
    data: Annotated[Path, typer.Argument(help=(
        "CSV or Parquet file: an RFM summary with monetary_value (frequency, recency, T, optional count) or a "
        "transaction log with amounts (customer_id, date, amount)."))],
    out: RequiredOutDir,
    time_unit: Annotated[str, typer.Option("--time-unit", help="Unit used to summarise a transaction log: days, "
                                           "weeks or months (spend itself has no time unit).")] = "weeks",
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    observation_end: ObservationEnd = None,
    *,
    settings: FitSettings,
) -> None:
    """Gamma-Gamma spend per transaction (Fader, Hardie & Lee 2005), fitted on repeat buyers."""
    from tenure.models.gamma_gamma import GammaGammaModel

    overrides = _check(out, settings, time_unit)
    summary = _read_summary(data, time_unit=time_unit, customer_col=customer_col, date_col=date_col,
                            amount_col=amount_col, observation_end=observation_end)
    where = str(data)
    from tenure.models.clv_data import validate_summary

    validate_summary(summary, where=where)  # types, signs and ranges before the zero-spend filter below
    if "customer_id" in summary.columns and "monetary_value" in summary.columns:
        # Summarised from a transaction log: a repeat buyer whose repeat purchases all cost 0 has no spend for
        # the Gamma-Gamma model (its support is positive); leave such customers out and say so, rather than
        # stop on a summary row the user never wrote.
        zero = (pl.col("frequency") > 0) & (pl.col("monetary_value") <= 0)
        left_out = summary.filter(zero)
        if left_out.height:
            ids = ", ".join(str(c) for c in left_out["customer_id"].head(3).to_list())
            err_console.print(f"note: {left_out.height} repeat buyer(s) with zero mean spend left out "
                              f"(customer {ids}{', ...' if left_out.height > 3 else ''}): Gamma-Gamma needs "
                              "positive spend")
            summary = summary.filter(~zero)
        where = f"{data} (summarised by customer)"
    model = GammaGammaModel(summary, priors=overrides, where=where)
    _fit(model, out, "gamma-gamma", "Gamma-Gamma spend", settings)


@fit_app.command("bgbb")
@cli_errors
@sampler_options
def bgbb(
    data: Annotated[Path, typer.Argument(help=(
        "CSV or Parquet file: a discrete-time summary with whole numbers frequency (x), recency (t_x) and T (n, "
        "the number of opportunities), optional count (n_custs)."))],
    out: RequiredOutDir,
    time_unit: Annotated[str, typer.Option("--time-unit", help="Length of one transaction opportunity: days, "
                                           "weeks, months or years.")] = "years",
    *,
    settings: FitSettings,
) -> None:
    """BG/BB discrete-time repeat buying (Fader, Hardie & Shang 2010)."""
    from tenure.io import read_table
    from tenure.models.bgbb import BGBBModel

    overrides = _check(out, settings, time_unit)
    model = BGBBModel(read_table(data), time_unit=time_unit, priors=overrides, where=str(data))
    _fit(model, out, "bgbb", f"BG/BB (one opportunity = one {time_unit[:-1]})", settings)


@fit_app.command("pnbd")
@cli_errors
@sampler_options
def pnbd(
    data: SummaryData,
    out: RequiredOutDir,
    time_unit: RFMTimeUnit = "weeks",
    purchase_covariates: PurchaseCovariates = None,
    dropout_covariates: DropoutCovariates = None,
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    observation_end: ObservationEnd = None,
    *,
    settings: FitSettings,
) -> None:
    """Pareto/NBD repeat buying with an exponential lifetime (Schmittlein, Morrison & Colombo 1987)."""
    _fit_transaction_model("pnbd", "Pareto/NBD", data, out, time_unit, purchase_covariates, dropout_covariates,
                           customer_col, date_col, amount_col, observation_end, settings)


@fit_app.command("mbgnbd")
@cli_errors
@sampler_options
def mbgnbd(
    data: SummaryData,
    out: RequiredOutDir,
    time_unit: RFMTimeUnit = "weeks",
    purchase_covariates: PurchaseCovariates = None,
    dropout_covariates: DropoutCovariates = None,
    customer_col: CustomerCol = "customer_id",
    date_col: DateCol = "date",
    amount_col: AmountCol = "amount",
    observation_end: ObservationEnd = None,
    *,
    settings: FitSettings,
) -> None:
    """MBG/NBD: the BG/NBD with dropout possible right after the first purchase (Batislam et al. 2007)."""
    _fit_transaction_model("mbgnbd", "MBG/NBD", data, out, time_unit, purchase_covariates, dropout_covariates,
                           customer_col, date_col, amount_col, observation_end, settings)
