"""Inputs of the customer-base models: transaction logs, RFM summaries and cohort survival tables.

Three input shapes reach the models in :mod:`tenure.models.sbg`, :mod:`tenure.models.bgnbd`,
:mod:`tenure.models.gamma_gamma` and :mod:`tenure.models.bgbb`:

- a **transaction log** (``customer_id``, ``date``, optional ``amount``), turned into a summary
  by :func:`summary_from_transactions` with an explicit time unit (days, weeks or months);
- a **summary** with one row per customer (``frequency``, ``recency``, ``T``, optional
  ``monetary_value``), or per group of identical customers with a ``count`` column
  (:func:`validate_summary`, :func:`compress_summary`);
- a **cohort survival table** for the sBG model: ``cohort``, ``period``, ``alive`` (the number
  of customers of the cohort still active at the start of each period, ``period`` 0 being the
  cohort's size), converted to weighted churn records by :func:`cohort_to_durations`.

Every check raises :class:`~tenure.errors.InputError` with one line naming the column and
the first offending data row (rows count from 1, the header excluded), so the CLI can stop
before anything is written.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from tenure.errors import InputError

DAYS_PER_UNIT: dict[str, float] = {"days": 1.0, "weeks": 7.0, "months": 365.25 / 12.0, "years": 365.25}
"""Length of each supported time unit in days (a Julian year; a month is a twelfth of it)."""

TIME_UNITS = tuple(DAYS_PER_UNIT)

SUMMARY_ALIASES: dict[str, str] = {"x": "frequency", "t_x": "recency", "zbar": "monetary_value",
                                   "n": "T", "n_custs": "count", "weight": "count", "weights": "count",
                                   "ID": "customer_id", "id": "customer_id"}
"""Column names used in the papers (Fader, Hardie & Lee 2005; Fader, Hardie & Shang 2010)
and in ``lifetimes``' shipped data sets, mapped to tenure's names."""


ID_COLUMN = "customer_id"
"""The customer key: kept by :func:`validate_summary` and in every prediction table."""


def check_time_unit(time_unit: str, where: str = "--time-unit") -> str:
    """Return ``time_unit`` if it is one of :data:`TIME_UNITS`, else raise ``InputError``."""
    if time_unit not in DAYS_PER_UNIT:
        raise InputError(f"{where}: unknown time unit {time_unit!r}; use one of {', '.join(TIME_UNITS)}")
    return time_unit


def convert_periods(value: float, from_unit: str, to_unit: str) -> float:
    """Express a duration of ``value`` ``from_unit`` in ``to_unit`` (e.g. 3 months in weeks)."""
    return value * DAYS_PER_UNIT[check_time_unit(from_unit)] / DAYS_PER_UNIT[check_time_unit(to_unit)]


#: The largest whole number a count column may hold: float64 holds every integer up to 2**53 exactly.
MAX_WHOLE = 2**53


def _first_bad_row(mask: pl.Series) -> int:
    """1-based index of the first True in ``mask``."""
    return int(np.flatnonzero(mask.fill_null(True).to_numpy())[0]) + 1


def _require_columns(df: pl.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(df.columns)
        raise InputError(f"{where}: missing column {missing[0]!r} (columns present: {have})")


def _numeric_column(df: pl.DataFrame, column: str, where: str, *, integer: bool = False) -> pl.Series:
    """The column as Float64, with errors naming the first non-numeric, missing or non-integer row."""
    s = df.get_column(column)
    if s.dtype == pl.Boolean:
        s = s.cast(pl.Int64)
    if not s.dtype.is_numeric():
        as_num = s.cast(pl.Float64, strict=False)
        bad = as_num.is_null() & s.is_not_null()
        if bad.any():
            row = _first_bad_row(bad)
            raise InputError(f"{where}: column {column!r} must be numeric; row {row} has {s[row - 1]!r}")
        s = as_num
    s = s.cast(pl.Float64)
    bad = s.is_null() | s.is_nan()
    if bad.any():
        raise InputError(f"{where}: column {column!r} has a missing value in row {_first_bad_row(bad)}")
    if s.is_infinite().any():
        raise InputError(f"{where}: column {column!r} is infinite in row {_first_bad_row(s.is_infinite())}")
    if integer:
        frac = s != s.round(0)
        if frac.any():
            row = _first_bad_row(frac)
            raise InputError(f"{where}: column {column!r} must hold whole numbers; row {row} has {s[row - 1]}")
    big = s.abs() > MAX_WHOLE
    if big.any():
        row = _first_bad_row(big)
        raise InputError(f"{where}: column {column!r}: row {row} has {s[row - 1]:g}, beyond the largest value "
                         f"accepted ({MAX_WHOLE:.0f}, 2**53, the largest count float64 holds exactly)")
    return s


def _check(mask: pl.Series, where: str, message: str, values: pl.Series) -> None:
    """Raise naming the first row where ``mask`` is True; ``message`` ends with the value."""
    if mask.any():
        row = _first_bad_row(mask)
        raise InputError(f"{where}: row {row}: {message} {values[row - 1]:g}")


def validate_summary(
    df: pl.DataFrame,
    *,
    where: str = "summary",
    monetary: bool = False,
    discrete: bool = False,
    covariates: Sequence[str] = (),
) -> pl.DataFrame:
    """Check an RFM summary and return it with tenure's column names and types.

    Parameters
    ----------
    df
        One row per customer, or per group of identical customers with a ``count``
        column. Columns ``frequency`` (repeat purchases), ``recency`` (time of the last
        purchase, measured from the first) and ``T`` (time from the first purchase to the
        end of observation); the papers' names ``x``, ``t_x``, ``zbar`` and ``n`` are
        accepted too.
    where
        Name of the input in messages, usually the file name.
    monetary
        Require ``monetary_value`` (mean spend per repeat purchase), as the Gamma-Gamma
        model does; rows with ``frequency`` 0 are kept but must have a value of 0 or more.
    discrete
        Discrete time (BG/BB): ``frequency``, ``recency`` and ``T`` are whole numbers of
        transaction opportunities and ``frequency <= recency``.
    covariates
        Columns that must be present and numeric.

    Returns
    -------
    polars.DataFrame
        ``customer_id`` (when present), ``frequency``, ``recency``, ``T``, ``count`` (1 when absent), then
        ``monetary_value`` when present and the covariates, all Float64 except
        ``count`` (Int64).
    """
    if df.height == 0:
        raise InputError(f"{where}: no rows")
    df = df.rename({old: new for old, new in SUMMARY_ALIASES.items() if old in df.columns and new not in df.columns})
    _require_columns(df, ["frequency", "recency", "T", *(["monetary_value"] if monetary else []), *covariates],
                     where)
    freq = _numeric_column(df, "frequency", where, integer=True)
    rec = _numeric_column(df, "recency", where, integer=discrete)
    big_t = _numeric_column(df, "T", where, integer=discrete)
    _check(freq < 0, where, "column 'frequency' must be 0 or more, found", freq)
    _check(rec < 0, where, "column 'recency' must be 0 or more, found", rec)
    _check(big_t <= 0, where, "column 'T' must be positive, found", big_t)
    _check(rec > big_t, where, "column 'recency' must not exceed T, found recency", rec)
    _check((freq == 0) & (rec != 0), where, "column 'recency' must be 0 when frequency is 0, found", rec)
    if discrete:
        _check(freq > rec, where, "column 'frequency' must not exceed recency in discrete time, found", freq)
    else:
        _check((freq > 0) & (rec == 0), where, "column 'recency' must be positive when frequency > 0, found", rec)
    out = {"frequency": freq, "recency": rec, "T": big_t}
    if ID_COLUMN in df.columns:
        out = {ID_COLUMN: df.get_column(ID_COLUMN), **out}
    if "count" in df.columns:
        count = _numeric_column(df, "count", where, integer=True)
        _check(count < 0, where, "column 'count' must be 0 or more, found", count)
        out["count"] = count.cast(pl.Int64)
    else:
        out["count"] = pl.Series("count", np.ones(df.height, dtype=np.int64))
    if "monetary_value" in df.columns:
        money = _numeric_column(df, "monetary_value", where)
        _check(money < 0, where, "column 'monetary_value' must be 0 or more, found", money)
        if monetary:
            _check((freq > 0) & (money <= 0), where,
                   "column 'monetary_value' must be positive for repeat buyers, found", money)
        out["monetary_value"] = money
    for c in covariates:
        out[c] = _numeric_column(df, c, where)
    result = pl.DataFrame(out)
    if int(result.get_column("count").sum()) == 0:
        raise InputError(f"{where}: column 'count' sums to 0: no customers")
    return result


def compress_summary(df: pl.DataFrame, keys: Sequence[str] | None = None) -> pl.DataFrame:
    """Merge identical customers into one row weighted by ``count`` (an exact compression).

    The likelihoods of these models depend on a customer only through ``keys``
    (by default every column but ``count``), so a weighted sum over unique rows equals
    the sum over customers. Rows with a ``count`` of 0 are dropped.
    """
    if keys is None:
        keys = [c for c in df.columns if c != "count"]
    counted = df if "count" in df.columns else df.with_columns(pl.lit(1, dtype=pl.Int64).alias("count"))
    return (counted.filter(pl.col("count") > 0)
            .group_by(list(keys)).agg(pl.col("count").sum())
            .sort(list(keys)))


def _as_dates(s: pl.Series, where: str, column: str) -> pl.Series:
    """Parse a date column: Date, Datetime, ISO strings or YYYYMMDD integers."""
    if s.dtype == pl.Date:
        return s
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.date()
    if s.dtype.is_integer():
        s = s.cast(pl.Utf8)
    if s.dtype == pl.Utf8:
        fmt = "%Y%m%d" if s.str.len_chars().max() == 8 and s.str.contains("-").not_().all() else None
        parsed = s.str.strip_chars().str.to_date(format=fmt, strict=False)
        bad = parsed.is_null()
        if bad.any():
            row = _first_bad_row(bad)
            raise InputError(f"{where}: column {column!r} row {row}: cannot read {s[row - 1]!r} as a date "
                             "(use YYYY-MM-DD or YYYYMMDD)")
        return parsed
    raise InputError(f"{where}: column {column!r} must hold dates, found type {s.dtype}")


def summary_from_transactions(
    transactions: pl.DataFrame,
    *,
    time_unit: str = "weeks",
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str | None = "amount",
    observation_end: _dt.date | str | None = None,
    where: str = "transactions",
) -> pl.DataFrame:
    """Turn a transaction log into the RFM summary of the BG/NBD and Gamma-Gamma models.

    Purchases on the same day are one transaction (their amounts summed), as in
    Fader, Hardie & Lee (2005) and ``lifetimes``. For each customer:
    ``frequency`` is the number of purchase days after the first, ``recency`` the time
    from the first to the last purchase day, ``T`` the time from the first purchase day
    to ``observation_end``, all in ``time_unit``; ``monetary_value`` is the mean amount
    per repeat purchase day (the first purchase excluded; 0 when there is none).

    Parameters
    ----------
    transactions
        One row per transaction.
    time_unit
        ``"days"``, ``"weeks"`` or ``"months"`` (a month is 365.25/12 days).
    customer_col, date_col, amount_col
        Column names; ``amount_col=None`` skips ``monetary_value``. Dates may be
        polars dates, ISO strings or YYYYMMDD integers.
    observation_end
        Last day of observation; transactions after it are ignored. Defaults to the
        last transaction date in the log.
    where
        Name of the input in messages.

    Returns
    -------
    polars.DataFrame
        ``customer_id``, ``frequency``, ``recency``, ``T`` (and ``monetary_value``),
        sorted by customer.

    Examples
    --------
    >>> import polars as pl
    >>> log = pl.DataFrame({"customer_id": [1, 1, 2], "date": ["2024-01-01", "2024-01-15", "2024-01-08"],
    ...                     "amount": [10.0, 20.0, 5.0]})
    >>> summary_from_transactions(log, time_unit="weeks", observation_end="2024-01-29")["T"].to_list()
    [4.0, 3.0]
    """
    check_time_unit(time_unit, where="time_unit")
    if transactions.height == 0:
        raise InputError(f"{where}: no rows")
    _require_columns(transactions, [customer_col, date_col, *([amount_col] if amount_col else [])], where)
    if transactions.get_column(customer_col).is_null().any():
        row = _first_bad_row(transactions.get_column(customer_col).is_null())
        raise InputError(f"{where}: column {customer_col!r} has a missing value in row {row}")
    dates = _as_dates(transactions.get_column(date_col), where, date_col)
    cols = {"customer_id": transactions.get_column(customer_col), "date": dates}
    if amount_col:
        amount = _numeric_column(transactions, amount_col, where)
        _check(amount < 0, where, f"column {amount_col!r} must be 0 or more, found", amount)
        cols["amount"] = amount
    log = pl.DataFrame(cols)
    if observation_end is None:
        end = log.get_column("date").max()
    else:
        end = _as_dates(pl.Series([str(observation_end)]), "observation_end", "observation_end")[0]
        log = log.filter(pl.col("date") <= end)
        if log.height == 0:
            raise InputError(f"{where}: no transaction on or before observation_end {end}")
    days_per_unit = DAYS_PER_UNIT[time_unit]
    agg = [pl.col("amount").sum()] if amount_col else []
    daily = log.group_by(["customer_id", "date"]).agg(agg).sort(["customer_id", "date"])
    per = daily.group_by("customer_id", maintain_order=True).agg(
        (pl.len() - 1).alias("frequency"),
        pl.col("date").min().alias("first"),
        pl.col("date").max().alias("last"),
        *([(pl.col("amount").sum() - pl.col("amount").first()).alias("repeat_amount")] if amount_col else []),
    )
    out = per.select(
        "customer_id",
        pl.col("frequency").cast(pl.Int64),
        ((pl.col("last") - pl.col("first")).dt.total_days() / days_per_unit).alias("recency"),
        ((pl.lit(end) - pl.col("first")).dt.total_days() / days_per_unit).alias("T"),
        *([pl.when(pl.col("frequency") > 0).then(pl.col("repeat_amount") / pl.col("frequency"))
           .otherwise(0.0).alias("monetary_value")] if amount_col else []),
    )
    return out.filter(pl.col("T") > 0) if observation_end is None else out


def validate_cohort_table(df: pl.DataFrame, *, where: str = "cohorts") -> pl.DataFrame:
    """Check a cohort survival table (``cohort``, ``period``, ``alive``) and return it sorted.

    Each cohort starts at ``period`` 0 with its size, periods are consecutive, and
    ``alive`` never increases. A table without ``cohort`` is one cohort named ``"all"``.
    """
    if df.height == 0:
        raise InputError(f"{where}: no rows")
    _require_columns(df, ["period", "alive"], where)
    period = _numeric_column(df, "period", where, integer=True)
    alive = _numeric_column(df, "alive", where, integer=True)
    _check(period < 0, where, "column 'period' must be 0 or more, found", period)
    _check(alive < 0, where, "column 'alive' must be 0 or more, found", alive)
    cohort = df.get_column("cohort").cast(pl.Utf8) if "cohort" in df.columns else pl.Series(["all"] * df.height)
    if cohort.is_null().any():
        raise InputError(f"{where}: column 'cohort' has a missing value in row {_first_bad_row(cohort.is_null())}")
    table = pl.DataFrame({"cohort": cohort, "period": period.cast(pl.Int64), "alive": alive.cast(pl.Int64),
                          "row": np.arange(1, df.height + 1)})
    table = table.sort(["cohort", "period"], maintain_order=True)
    prev_period = table.get_column("period").shift(1)
    prev_alive = table.get_column("alive").shift(1)
    same = table.get_column("cohort") == table.get_column("cohort").shift(1)
    first = ~same.fill_null(False)
    rows = table.get_column("row")
    bad = first & (table.get_column("period") != 0)
    if bad.any():
        row = rows[_first_bad_row(bad) - 1]
        raise InputError(f"{where}: column 'period': row {row}: each cohort must start at period 0")
    bad = same.fill_null(False) & (table.get_column("period") != prev_period + 1)
    if bad.any():
        row = rows[_first_bad_row(bad) - 1]
        raise InputError(f"{where}: column 'period': row {row}: periods must be consecutive without repeats")
    bad = same.fill_null(False) & (table.get_column("alive") > prev_alive)
    if bad.any():
        row = rows[_first_bad_row(bad) - 1]
        raise InputError(f"{where}: column 'alive': row {row}: survivors cannot increase from one period to the next")
    bad = first & (table.get_column("alive") == 0)
    if bad.any():
        row = rows[_first_bad_row(bad) - 1]
        raise InputError(f"{where}: column 'alive': row {row}: a cohort must start with at least one customer")
    return table.drop("row")


def cohort_to_durations(table: pl.DataFrame) -> pl.DataFrame:
    """Weighted churn records from a validated cohort table.

    A cohort with survivors n_0, n_1, ..., n_k gives, for t = 1..k, ``n_{t-1} - n_t``
    customers who churned in period t (``churned`` 1, ``periods`` t) and ``n_k``
    customers still active after k periods (``churned`` 0, ``periods`` k): the data of
    Fader & Hardie (2007), eq. (6).
    """
    lost = (table.with_columns((pl.col("alive").shift(1).over("cohort") - pl.col("alive")).alias("lost"))
            .filter(pl.col("period") > 0))
    churned = lost.select("cohort", "period", pl.lit(1, dtype=pl.Int8).alias("churned"), pl.col("lost").alias("count"))
    last = table.group_by("cohort", maintain_order=True).agg(pl.col("period").last(), pl.col("alive").last())
    censored = last.select("cohort", "period", pl.lit(0, dtype=pl.Int8).alias("churned"),
                           pl.col("alive").alias("count"))
    out = pl.concat([churned, censored]).rename({"period": "periods"})
    return out.filter((pl.col("count") > 0) & (pl.col("periods") > 0)).sort(["cohort", "periods", "churned"])


def validate_durations(
    df: pl.DataFrame, *, where: str = "customers", covariates: Sequence[str] = ()
) -> pl.DataFrame:
    """Check customer-level contract data for the sBG model.

    Columns: ``periods`` (whole periods observed, at least 1), ``churned`` (1 if the
    customer cancelled at the end of the last observed period, 0 if still active),
    optional ``cohort``, ``count`` and the covariates.
    """
    if df.height == 0:
        raise InputError(f"{where}: no rows")
    _require_columns(df, ["periods", "churned", *covariates], where)
    periods = _numeric_column(df, "periods", where, integer=True)
    churned = _numeric_column(df, "churned", where, integer=True)
    _check(periods < 1, where, "column 'periods' must be 1 or more, found", periods)
    _check((churned != 0) & (churned != 1), where, "column 'churned' must be 0 or 1, found", churned)
    out: dict[str, pl.Series] = {
        "cohort": df.get_column("cohort").cast(pl.Utf8) if "cohort" in df.columns else pl.Series(["all"] * df.height),
        "periods": periods.cast(pl.Int64),
        "churned": churned.cast(pl.Int8),
    }
    if "count" in df.columns:
        count = _numeric_column(df, "count", where, integer=True)
        _check(count < 0, where, "column 'count' must be 0 or more, found", count)
        out["count"] = count.cast(pl.Int64)
    else:
        out["count"] = pl.Series(np.ones(df.height, dtype=np.int64))
    for c in covariates:
        out[c] = _numeric_column(df, c, where)
    return pl.DataFrame(out)


SMALL_DATA_ROWS = 5_000
"""Unique rows below which NUTS runs on PyTensor's cached C backend rather than Numba.

Numba compiles the gradient anew in every process (5-8 s) but then evaluates it fastest and
runs chains in parallel; the C backend starts in about a second but calls back into Python
for every gradient. At a few thousand rows the compile time dominates a 2 × 2000-iteration run.
"""


def nuts_options(unique_rows: int) -> dict[str, object]:
    """nutpie settings for a customer-base model fitted on ``unique_rows`` weighted rows.

    A low-rank mass matrix: these posteriors are strongly correlated (r with α in the
    BG/NBD, α with β in the sBG) and it gave three times the effective sample size per
    draw of a diagonal one on CDNOW.
    """
    return {"low_rank_modified_mass_matrix": True,
            "backend": "pytensor" if unique_rows <= SMALL_DATA_ROWS else "numba"}


def prediction_rows(df: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """``columns`` of a validated summary for a prediction, after the customer key when it has one."""
    return df.select(*([ID_COLUMN] if ID_COLUMN in df.columns else []), *columns)
