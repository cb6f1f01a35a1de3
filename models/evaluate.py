"""Out-of-sample evaluation of the transaction models: calibrate before a date, predict the holdout after it.

The protocol of Fader, Hardie & Lee (2005), "Counting your customers the easy way", section 4:

1. :func:`split_transactions` cuts a transaction log at ``holdout_start``. The customers are
   those whose first purchase falls in the calibration period (before that day, with a
   positive age T); their calibration RFM summary (T measured to the last calibration day)
   and their repeat transactions in the holdout (purchase days from ``holdout_start`` to
   ``holdout_end``) keep the same customer ids, in the same order.
2. A model fitted on the calibration summary predicts each customer's holdout purchases,
   E[Y(t*) | x, t_x, T] with t* the holdout length (:func:`holdout_predictions`).
3. :func:`evaluation_row` compares them with the actual counts: the totals, the per-customer
   MAE and RMSE and, for MCMC fits, the PSIS-LOO expected log predictive density of the
   calibration data (ArviZ; one observation per compressed RFM row).
4. Three diagnostics, each a tidy table with a figure: the tracking curves
   (:func:`tracking_table`: repeat transactions per period of the whole cohort, actual against
   Σ_i E[X(age_i)] of each customer at her age, weekly and cumulative), the period
   transactions (:func:`period_transactions_table`: customers by calibration repeat count,
   actual against simulated from the fitted population) and the conditional expectations
   (:func:`conditional_expectations_table`: mean holdout purchases by calibration frequency,
   actual against predicted).

Any fitted model with ``expected_purchases``, ``expected_purchases_new_customer`` and
``simulate_repeat_counts`` (the BG/NBD and its relatives in :data:`tenure.models.MODELS`) can
be evaluated. Dates are days; every duration is in the model's explicit time unit.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tenure.models.clv_data import (
    DAYS_PER_UNIT,
    _as_dates,
    _require_columns,
    check_time_unit,
    summary_from_transactions,
)

from tenure.errors import InputError

#: Transaction models ``--models`` may name: the BG/NBD family (continuous-time repeat buying).
TRANSACTION_MODEL_METHODS = ("expected_purchases", "expected_purchases_new_customer", "simulate_repeat_counts")

#: Calibration frequencies shown one by one in the period-transactions and conditional-expectation tables;
#: larger ones are pooled in a last class "7+" (as in Fader, Hardie & Lee 2005, figures 3 and 4).
TOP_FREQUENCY = 7

#: Okabe & Ito's colour-blind-safe palette (black first, for the actual data).
PALETTE = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442")


@dataclass(frozen=True)
class Split:
    """A transaction log cut at the start of a holdout period.

    Attributes
    ----------
    calibration
        RFM summary of the calibration period (``customer_id``, ``frequency``, ``recency``,
        ``T``, ``monetary_value`` when the log has amounts), sorted by customer.
    holdout
        ``customer_id`` and ``holdout_frequency`` (purchase days in the holdout period) of the
        same customers, in the same order.
    first_day, repeat_days
        Day index (from ``start``) of each customer's first purchase, in the same order,
        and of every repeat purchase day of these customers up to ``holdout_end``.
    start, calibration_end, holdout_start, holdout_end
        First transaction date, last calibration day, first and last holdout day.
    time_unit
        Unit of ``recency``, ``T`` and :attr:`holdout_length`.
    left_out
        Customers whose first purchase was on the last calibration day (T = 0): no
        calibration data, so not evaluated.
    """

    calibration: pl.DataFrame
    holdout: pl.DataFrame
    first_day: np.ndarray
    repeat_days: np.ndarray
    start: _dt.date
    calibration_end: _dt.date
    holdout_start: _dt.date
    holdout_end: _dt.date
    time_unit: str
    left_out: int = 0

    @property
    def days_per_unit(self) -> float:
        """Length of one time unit in days."""
        return DAYS_PER_UNIT[self.time_unit]

    @property
    def holdout_length(self) -> float:
        """Length of the holdout period in the time unit: (holdout_end − calibration_end) days."""
        return (self.holdout_end - self.calibration_end).days / self.days_per_unit

    @property
    def n_customers(self) -> int:
        """Customers evaluated."""
        return self.calibration.height


def _parse_day(value: _dt.date | str, option: str) -> _dt.date:
    if isinstance(value, _dt.date):
        return value
    return _as_dates(pl.Series([str(value)]), option, option)[0]


def split_transactions(
    transactions: pl.DataFrame,
    holdout_start: _dt.date | str,
    *,
    holdout_end: _dt.date | str | None = None,
    time_unit: str = "weeks",
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str | None = "amount",
    where: str = "transactions",
) -> Split:
    """Cut a transaction log into a calibration summary and holdout counts at ``holdout_start``.

    Purchases on one day are one transaction (as in :func:`summary_from_transactions`). The
    calibration period runs from the first transaction to the day before ``holdout_start``;
    the holdout from ``holdout_start`` to ``holdout_end`` (default: the last transaction date).

    Raises :class:`InputError` (naming ``--holdout-start`` or ``--holdout-end`` and the date)
    when the holdout starts on or before the first transaction or after the last, ends
    before it starts or after the last transaction, or holds no transaction.
    """
    check_time_unit(time_unit)
    if transactions.height == 0:
        raise InputError(f"{where}: no rows")
    _require_columns(transactions, [customer_col, date_col], where)
    dates = _as_dates(transactions.get_column(date_col), where, date_col)
    first, last = dates.min(), dates.max()
    start = _parse_day(holdout_start, "--holdout-start")
    if start <= first:
        raise InputError(f"--holdout-start {start}: must be after the first transaction ({first}), "
                         "so that the calibration period holds some")
    if start > last:
        raise InputError(f"--holdout-start {start}: after the last transaction ({last}); the holdout would be empty")
    end = last if holdout_end is None else _parse_day(holdout_end, "--holdout-end")
    if end < start:
        raise InputError(f"--holdout-end {end}: before --holdout-start {start}")
    if end > last:
        raise InputError(f"--holdout-end {end}: after the last transaction ({last}); the log does not show that "
                         "the holdout was observed that long (omit --holdout-end to end it at the last transaction)")
    if amount_col is not None and amount_col not in transactions.columns:
        amount_col = None
    cal_end = start - _dt.timedelta(days=1)
    if transactions.get_column(customer_col).is_null().any():
        summary_from_transactions(transactions, customer_col=customer_col, date_col=date_col, amount_col=None,
                                  where=where)  # raises naming the row
    log = pl.DataFrame({"customer_id": transactions.get_column(customer_col), "date": dates})
    in_holdout = log.filter((pl.col("date") >= start) & (pl.col("date") <= end))
    if in_holdout.height == 0:
        raise InputError(f"--holdout-start {start}: the holdout ({start} to {end}) holds no transaction")
    cal_frame = transactions.with_columns(dates.alias(date_col)).filter(pl.col(date_col) <= cal_end)
    calibration = summary_from_transactions(cal_frame, time_unit=time_unit, customer_col=customer_col,
                                            date_col=date_col, amount_col=amount_col, observation_end=cal_end,
                                            where=where)
    left_out = int((calibration.get_column("T") <= 0).sum())
    calibration = calibration.filter(pl.col("T") > 0).sort("customer_id")
    if calibration.height == 0:
        raise InputError(f"--holdout-start {start}: no customer has a calibration period before it "
                         "(every first purchase is on its eve)")
    ids = calibration.select("customer_id")
    days = (log.unique(["customer_id", "date"])
            .with_columns((pl.col("date") - pl.lit(first)).dt.total_days().alias("day"))
            .join(ids, on="customer_id", how="semi"))
    first_day = (ids.join(days.group_by("customer_id").agg(pl.col("day").min()), on="customer_id", how="left")
                 .get_column("day").to_numpy())
    cal_days = (cal_end - first).days
    holdout_counts = (days.filter((pl.col("day") > cal_days) & (pl.col("day") <= (end - first).days))
                      .group_by("customer_id").agg(pl.len().alias("holdout_frequency")))
    holdout = (ids.join(holdout_counts, on="customer_id", how="left")
               .with_columns(pl.col("holdout_frequency").fill_null(0).cast(pl.Int64)))
    with_first = days.join(days.group_by("customer_id").agg(pl.col("day").min().alias("first")), on="customer_id")
    repeat = with_first.filter((pl.col("day") > pl.col("first")) & (pl.col("day") <= (end - first).days))
    return Split(calibration=calibration, holdout=holdout, first_day=first_day.astype(np.int64),
                 repeat_days=np.sort(repeat.get_column("day").to_numpy().astype(np.int64)),
                 start=first, calibration_end=cal_end, holdout_start=start, holdout_end=end, time_unit=time_unit,
                 left_out=left_out)


def check_transaction_model(model: Any, name: str) -> None:
    """Fail with one line when ``model`` lacks a method the evaluation needs."""
    missing = [m for m in TRANSACTION_MODEL_METHODS if not hasattr(model, m)]
    if missing:
        raise InputError(f"--models {name}: not a transaction model (it has no {missing[0]}); "
                         "use a model of repeat purchases such as bgnbd")


def holdout_predictions(model: Any, split: Split) -> np.ndarray:
    """E[Y(t*) | x, t_x, T] per customer (posterior mean), in the order of ``split.calibration``."""
    pred = model.expected_purchases(split.holdout_length, split.calibration, time_unit=split.time_unit)
    return pred.table.get_column("mean").to_numpy()


def expected_loo(result: Any) -> dict[str, float]:
    """PSIS-LOO of an MCMC fit (ArviZ ``az.loo``): elpd, its standard error and p_loo; NaN for other methods.

    The fit's log-likelihood is stored per compressed RFM row (identical customers are one
    observation, weighted by their count), so LOO leaves out one such row at a time.
    """
    nan = {"elpd_loo": math.nan, "elpd_loo_se": math.nan, "p_loo": math.nan}
    if result.method != "mcmc" or "log_likelihood" not in result.data.groups():
        return nan
    import warnings

    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns about Pareto k; the values are reported as they are
        loo = az.loo(result.idata)
    return {"elpd_loo": float(loo["elpd_loo"]), "elpd_loo_se": float(loo["se"]), "p_loo": float(loo["p_loo"])}


def evaluation_row(name: str, result: Any, split: Split, predicted: np.ndarray) -> dict[str, Any]:
    """One model's line of ``evaluation.csv``: totals actual and predicted, MAE, RMSE and LOO."""
    actual = split.holdout.get_column("holdout_frequency").to_numpy().astype(float)
    err = predicted - actual
    total_actual, total_pred = float(actual.sum()), float(predicted.sum())
    return {
        "model": name, "method": result.method, "time_unit": split.time_unit, "customers": split.n_customers,
        "holdout_length": split.holdout_length,
        "holdout_actual": total_actual, "holdout_predicted": total_pred,
        "holdout_error_percent": 100.0 * (total_pred - total_actual) / total_actual if total_actual else math.nan,
        "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean())),
        **expected_loo(result),
    }


def tracking_table(models: Mapping[str, Any], split: Split) -> pl.DataFrame:
    """Repeat transactions of the cohort per period of the time unit, actual and predicted by each model.

    Period k (1, 2, ...) holds the days with index in [(k−1)·u, k·u) from the first transaction
    date, u the unit in days; the last may be shorter. The prediction for the end of period k is
    Σ_i E[X(age_i)], age_i the customer's age in days at the last day of the period (0 before her
    first purchase), from ``expected_purchases_new_customer`` (posterior mean). Columns
    ``period``, ``end_date``, ``holdout`` (True in the holdout), ``actual``,
    ``actual_cumulative`` and per model ``{name}`` and ``{name}_cumulative``.
    """
    u = split.days_per_unit
    last_day = (split.holdout_end - split.start).days
    n_periods = math.ceil((last_day + 1) / u)
    ends = np.minimum(np.ceil(np.arange(1, n_periods + 1) * u).astype(np.int64) - 1, last_day)
    period_of = np.floor(split.repeat_days / u).astype(np.int64)
    actual = np.bincount(period_of, minlength=n_periods)[:n_periods].astype(float)
    cal_days = (split.calibration_end - split.start).days
    out: dict[str, Any] = {
        "period": np.arange(1, n_periods + 1),
        "end_date": [split.start + _dt.timedelta(days=int(d)) for d in ends],
        "holdout": ends > cal_days,
        "actual": actual,
        "actual_cumulative": np.cumsum(actual),
    }
    cohort_days, cohort_sizes = np.unique(split.first_day, return_counts=True)
    ages = np.arange(0, last_day + 1)
    for name, model in models.items():
        curve = model.expected_purchases_new_customer(ages / u, time_unit=split.time_unit)
        ex = curve.get_column("mean").to_numpy().copy()
        ex[0] = 0.0
        age = ends[:, None] - cohort_days[None, :]
        cumulative = np.where(age >= 0, ex[np.clip(age, 0, last_day)], 0.0) @ cohort_sizes
        out[name] = np.diff(cumulative, prepend=0.0)
        out[f"{name}_cumulative"] = cumulative
    return pl.DataFrame(out)


def _frequency_class(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.asarray(x, dtype=np.int64), TOP_FREQUENCY)


def _class_labels() -> list[str]:
    return [str(k) for k in range(TOP_FREQUENCY)] + [f"{TOP_FREQUENCY}+"]


def period_transactions_table(models: Mapping[str, Any], split: Split, *, seed: int) -> pl.DataFrame:
    """Customers by number of calibration repeat transactions (0, 1, ..., 7+), actual and per model.

    The models' columns count customers simulated from the fitted population with each actual
    customer's calibration age T (``simulate_repeat_counts``, seeded by ``seed``).
    """
    T = split.calibration.get_column("T").to_numpy().astype(float)
    x = split.calibration.get_column("frequency").to_numpy()
    out: dict[str, Any] = {"repeat_transactions": _class_labels(),
                           "actual": np.bincount(_frequency_class(x), minlength=TOP_FREQUENCY + 1)}
    for name, model in models.items():
        sim = model.simulate_repeat_counts(T, seed=seed)
        out[name] = np.bincount(_frequency_class(sim), minlength=TOP_FREQUENCY + 1)
    return pl.DataFrame(out)


def conditional_expectations_table(predictions: Mapping[str, np.ndarray], split: Split) -> pl.DataFrame:
    """Mean holdout purchases per customer by calibration frequency (0, ..., 7+), actual and per model."""
    cls = _frequency_class(split.calibration.get_column("frequency").to_numpy())
    n = np.bincount(cls, minlength=TOP_FREQUENCY + 1).astype(float)
    actual = split.holdout.get_column("holdout_frequency").to_numpy().astype(float)

    def mean_by_class(values: np.ndarray) -> np.ndarray:
        sums = np.bincount(cls, weights=values, minlength=TOP_FREQUENCY + 1)
        return np.divide(sums, n, out=np.full_like(sums, np.nan), where=n > 0)

    out: dict[str, Any] = {"calibration_frequency": _class_labels(), "customers": n.astype(np.int64),
                           "actual": mean_by_class(actual)}
    for name, pred in predictions.items():
        out[name] = mean_by_class(np.asarray(pred, dtype=float))
    return pl.DataFrame(out).filter(pl.col("customers") > 0)


# -- figures ----------------------------------------------------------------------------------------

def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _styles(names: Sequence[str]) -> list[dict[str, Any]]:
    dashes = ["--", "-.", ":", (0, (5, 1, 1, 1))]
    return [{"color": PALETTE[1 + i % (len(PALETTE) - 1)], "linestyle": dashes[i % len(dashes)]}
            for i, _ in enumerate(names)]


def plot_tracking(table: pl.DataFrame, models: Sequence[str], split: Split, path: Path) -> None:
    """Per-period and cumulative repeat transactions, actual against each model, the holdout start marked."""
    plt = _pyplot()
    unit = split.time_unit[:-1]
    cal_periods = int((~table.get_column("holdout")).sum())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, suffix, label in ((axes[0], "", f"repeat transactions per {unit}"),
                              (axes[1], "_cumulative", "cumulative repeat transactions")):
        period = table.get_column("period").to_numpy()
        ax.plot(period, table.get_column(f"actual{suffix}").to_numpy(), color=PALETTE[0], lw=1.6, label="actual")
        for name, style in zip(models, _styles(models), strict=True):
            ax.plot(period, table.get_column(f"{name}{suffix}").to_numpy(), lw=1.6, label=name, **style)
        ax.axvline(cal_periods + 0.5, color="0.4", lw=1, linestyle=":")
        ax.text(cal_periods + 0.5, 0.02, f" holdout from {split.holdout_start}", transform=ax.get_xaxis_transform(),
                fontsize=8, color="0.3")
        ax.set_xlabel(f"{unit} since the first transaction ({split.start})")
        ax.set_ylabel(f"{label} (transactions)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left" if suffix else "upper right", frameon=False)
    axes[0].set_title(f"Tracking: repeat transactions per {unit}")
    axes[1].set_title("Tracking: cumulative repeat transactions")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def _bars(table: pl.DataFrame, category: str, models: Sequence[str], path: Path, *, title: str, xlabel: str,
          ylabel: str) -> None:
    plt = _pyplot()
    labels = table.get_column(category).to_list()
    series = ["actual", *models]
    width = 0.8 / len(series)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = [PALETTE[0]] + [s["color"] for s in _styles(models)]
    for i, (name, color) in enumerate(zip(series, colors, strict=True)):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, table.get_column(name).to_numpy(), width, label=name,
               color=color, edgecolor="white", linewidth=0.5)
    ax.set_xticks(x, labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def plot_period_transactions(table: pl.DataFrame, models: Sequence[str], split: Split, path: Path) -> None:
    """Customers by calibration repeat transactions: actual against simulated from each fitted model."""
    _bars(table, "repeat_transactions", models, path,
          title=f"Calibration repeat transactions, up to {split.calibration_end} (holdout from "
                f"{split.holdout_start})",
          xlabel="repeat transactions in the calibration period", ylabel="customers")


def plot_conditional_expectations(table: pl.DataFrame, models: Sequence[str], split: Split, path: Path) -> None:
    """Mean holdout purchases by calibration frequency, actual against each model."""
    plt = _pyplot()
    labels = table.get_column("calibration_frequency").to_list()
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(x, table.get_column("actual").to_numpy(), "o-", color=PALETTE[0], label="actual")
    for name, style in zip(models, _styles(models), strict=True):
        ax.plot(x, table.get_column(name).to_numpy(), marker="s", label=name, **style)
    ax.set_xticks(x, labels)
    ax.set_xlabel(f"repeat transactions in the calibration period (to {split.calibration_end})")
    ax.set_ylabel(f"mean holdout transactions per customer ({split.holdout_length:.3g} {split.time_unit})")
    ax.set_title(f"Conditional expectations: holdout {split.holdout_start} to {split.holdout_end}")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
