"""Scores of current customers from a retention fit (and a cross-sell fit): the operational call list.

For a customer in segment s with latest answers x = (trust, enthusiasm, satisfaction) and tenure τ
(months since the first month, as in the panel), each posterior draw d of the retention model
(:mod:`tenure.models.retention`) gives the monthly hazard at every future tenure

    h_d(τ + k) = σ(a_d[s] + τ_d[band(τ + k)] + β_d · (x − 3)),   k = 0, 1, ...

with the answers held at their latest values. From it, per draw:

- churn probability this month: p_d = h_d(τ);
- survival to the start of month k: S_d(k) = Π_{j<k} (1 − h_d(τ + j)), S_d(0) = 1;
- remaining margin over a horizon of H months, margin m per month paid at the start of each
  month while active, discounted at the monthly rate i: RM_d = m · Σ_{k=0}^{H−1} S_d(k) / (1 + i)^k
  (the discounted expected lifetime of docs/economics.md, truncated at H; currency of m);
- value at risk: VaR_d = p_d · RM_d (currency);
- with a cross-sell fit (:mod:`tenure.models.cross_sell`), expected cross-sales over the horizon:
  X_d = λ_d · Σ_{k=0}^{H−1} S_d(k), λ_d the monthly rate of products added at the current products
  held (products held constant: a first-order forecast, in products).

Each quantity is reduced to its posterior mean and equal-tailed interval (``np.quantile``'s linear
interpolation) cell by cell inside the Numba kernel that computes it: never an array of draws ×
customers, and only the months Σ_k S(k) as draws × cells (float32, for the cross-sales). The
answers, the segment and the tenure (beyond the last band's start every tenure is alike) take few
values, so the draws are evaluated once per *cell* of equal customers; the margin enters linearly
and scales each cell's mean and interval per customer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numba
import numpy as np
import polars as pl
from tenure.models._draw_summary import summarise_buffer
from tenure.models.clv_predict import posterior_draws, quantile_positions
from tenure.models.cross_sell import COEFFICIENTS as XSELL_COEFFICIENTS
from tenure.models.cross_sell import count_design
from tenure.models.panel import _as_float, _as_integer, _first_bad, _in_range
from tenure.models.retention import SCORE_CENTRE

from tenure.checks import discount_rate as check_discount_rate
from tenure.checks import in_range, whole
from tenure.errors import InputError
from tenure.io import read_table
from tenure.operations_format import (
    CROSS_SELL_QUANTITY,
    CUSTOMER_COLUMNS,
    CUSTOMER_OPTIONAL_COLUMNS,
    RANK_COLUMN,
    SCORE_QUANTITIES,
)
from tenure.panel_format import SCORE_COLUMNS, SCORE_SCALE

#: The largest margin per customer per month (currency), column or --margin: more is a typo or a unit error.
MAX_MARGIN = 1e5

#: Default horizon of the remaining margin, in months.
DEFAULT_HORIZON_MONTHS = 36
#: Default monthly discount rate of the remaining margin (about 12.7 % a year).
DEFAULT_DISCOUNT_RATE = 0.01
#: Default probability of the reported intervals.
DEFAULT_INTERVAL = 0.9
#: Draws used by default: the Monte Carlo error of a 90 % interval's end from 1000 draws is about
#: 0.3/sqrt(1000) ≈ 1 % of the posterior sd, well below the interval's width, at a quarter of the time of 4000.
DEFAULT_MAX_DRAWS = 1000
#: Longest horizon accepted (100 years of months).
MAX_HORIZON_MONTHS = 1200

_N_SCORE_VALUES = SCORE_SCALE[1] - SCORE_SCALE[0] + 1


# -- the customer table ------------------------------------------------------------------


def read_customers(source: str | os.PathLike[str] | pl.DataFrame) -> pl.DataFrame:
    """Read and validate a customer table (format in docs/operations.md) from CSV, Parquet or a frame.

    Returns the columns of :data:`~tenure.operations_format.CUSTOMER_COLUMNS` with normalised types
    (answers Int8, tenure and products Int32) and, where present, ``segment`` (String) and
    ``margin`` (Float64). A missing or mistyped column, a missing value, an answer off the 1–5
    scale, a negative tenure, fewer than one product, a non-finite margin or a repeated id is an
    :class:`~tenure.errors.InputError` naming the column and the first offending row.
    """
    where = "customers" if isinstance(source, pl.DataFrame) else str(source)
    df = source if isinstance(source, pl.DataFrame) else read_table(Path(source))
    if df.height == 0:
        raise InputError(f"{where}: no rows")
    missing = [c for c in CUSTOMER_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{where}: missing required column {missing[0]!r} (required: {', '.join(CUSTOMER_COLUMNS)})")
    df = df.select([c for c in (*CUSTOMER_COLUMNS, *CUSTOMER_OPTIONAL_COLUMNS) if c in df.columns])
    df = df.with_row_index("_row", offset=1)
    cid = df["customer_id"]
    if not (cid.dtype.is_integer() or cid.dtype == pl.String):
        raise InputError(f"{where}: column 'customer_id': expected integers or text, found type {cid.dtype}")
    if cid.null_count():
        row, _ = _first_bad(df, "customer_id", cid.is_null())
        raise InputError(f"{where}: column 'customer_id': missing value at row {row}")
    dup = cid.is_duplicated()
    if dup.any():
        row, value = _first_bad(df, "customer_id", dup)
        raise InputError(f"{where}: column 'customer_id': {value!r} appears more than once (first at row {row})")
    cols: list[pl.Series] = [cid]
    for c in SCORE_COLUMNS:
        v = _as_integer(df, c, where, nullable=False)
        _in_range(df, v, c, where, *SCORE_SCALE, what=f"off the {SCORE_SCALE[0]}–{SCORE_SCALE[1]} scale")
        cols.append(v.cast(pl.Int8))
    tenure = _as_integer(df, "tenure", where, nullable=False)
    _in_range(df, tenure, "tenure", where, 0, 2**31 - 1, what="not a tenure in months (0 or more)")
    cols.append(tenure.cast(pl.Int32))
    products = _as_integer(df, "products", where, nullable=False)
    _in_range(df, products, "products", where, 1, 2**31 - 1, what="below 1 (products held must be at least 1)")
    cols.append(products.cast(pl.Int32))
    if "segment" in df.columns:
        seg = df["segment"]
        if seg.dtype.is_float() or seg.dtype == pl.Boolean:
            raise InputError(f"{where}: column 'segment': expected segment labels, found type {seg.dtype}")
        seg = seg.cast(pl.String)
        if seg.null_count():
            row, _ = _first_bad(df, "segment", seg.is_null())
            raise InputError(f"{where}: column 'segment': missing segment at row {row}")
        cols.append(seg.alias("segment"))
    if "margin" in df.columns:
        margin = _as_float(df, "margin", where, positive=False)
        bad = margin.is_null() | margin.is_nan() | (margin.abs() > MAX_MARGIN)
        if bad.any():
            row, value = _first_bad(df.with_columns(margin), "margin", bad)
            raise InputError(f"{where}: column 'margin': expected a finite margin per month of at most "
                             f"{MAX_MARGIN:g} in size, found {value!r} at row {row}")
        cols.append(margin)
    return pl.DataFrame(cols)


# -- the posterior draws the scores need --------------------------------------------------


def band_starts(labels: Sequence[str]) -> tuple[int, ...]:
    """First month of each tenure band from its label (``"0-2"`` → 0, ``"24+"`` → 24)."""
    return tuple(int(label.split("-")[0].rstrip("+")) for label in labels)


@dataclass(frozen=True)
class HazardDraws:
    """The retention model's draws, flattened over chains: what the hazard of a customer needs.

    ``segment`` is ``(n_draws, n_segments)`` (``None`` for a single-segment fit, whose intercept is
    ``intercept``); ``slopes`` is ``(n_draws, 3)`` in the order of ``SCORE_COLUMNS``; ``band_effect``
    is ``(n_draws, n_bands)``: 0 for the first band, the fitted shift for every later band that held
    rows, and for a band without rows in the fit the shift of the nearest earlier band that had them.
    """

    intercept: np.ndarray
    segment: np.ndarray | None
    segments: tuple[str, ...]
    slopes: np.ndarray
    bands: tuple[int, ...]
    band_effect: np.ndarray
    fitted_bands: tuple[bool, ...] = field(default=())

    @property
    def n_draws(self) -> int:
        """Posterior draws (chains × draws)."""
        return int(self.intercept.shape[0])

    def subset(self, index: np.ndarray) -> HazardDraws:
        """The draws at ``index``."""
        return dataclasses.replace(self, intercept=self.intercept[index], slopes=self.slopes[index],
                                   band_effect=self.band_effect[index],
                                   segment=None if self.segment is None else self.segment[index])

    @classmethod
    def from_fit(cls, result: Any) -> HazardDraws:
        """The draws of a retention :class:`~tenure.models.base.FitResult` (``tenure.models.load``)."""
        post = result.posterior
        labels = result.data_summary.get("tenure_bands")
        if not labels:
            raise InputError("retention fit: its data summary has no tenure bands")
        bands = band_starts(labels)
        names = ["churn_intercept", *(f"churn_{k}" for k in SCORE_COLUMNS)]
        draws = posterior_draws(result.data, names)
        n = draws["churn_intercept"].shape[0]
        effect = np.zeros((n, len(bands)))
        fitted = [True] + [False] * (len(bands) - 1)
        if "churn_tenure" in post:
            fitted_labels = [str(v) for v in post["churn_tenure"].coords["tenure_band"].values]
            tau = posterior_draws(result.data, ["churn_tenure"])["churn_tenure"]
            for j, label in enumerate(fitted_labels):
                b = list(labels).index(label)
                effect[:, b] = tau[:, j]
                fitted[b] = True
        for b in range(1, len(bands)):
            if not fitted[b]:
                effect[:, b] = effect[:, b - 1]
        if "churn_segment" in post:
            segments = tuple(str(v) for v in post["churn_segment"].coords["segment"].values)
            segment = posterior_draws(result.data, ["churn_segment"])["churn_segment"]
        else:
            segments, segment = tuple(result.config.get("options", {}).get("segments", ())), None
        return cls(intercept=draws["churn_intercept"], segment=segment, segments=segments,
                   slopes=np.column_stack([draws[f"churn_{k}"] for k in SCORE_COLUMNS]),
                   bands=bands, band_effect=effect, fitted_bands=tuple(fitted))


@dataclass(frozen=True)
class CrossSellDraws:
    """The cross-sell model's draws: intercept, segment intercepts (or ``None``) and the coefficients
    of :func:`~tenure.models.cross_sell.count_design`, ``(n_draws, 4)``."""

    intercept: np.ndarray
    segment: np.ndarray | None
    segments: tuple[str, ...]
    coefficients: np.ndarray

    @property
    def n_draws(self) -> int:
        """Posterior draws (chains × draws)."""
        return int(self.intercept.shape[0])

    def subset(self, index: np.ndarray) -> CrossSellDraws:
        """The draws at ``index``."""
        return dataclasses.replace(self, intercept=self.intercept[index], coefficients=self.coefficients[index],
                                   segment=None if self.segment is None else self.segment[index])

    @classmethod
    def from_fit(cls, result: Any) -> CrossSellDraws:
        """The draws of a cross-sell :class:`~tenure.models.base.FitResult`."""
        post = result.posterior
        draws = posterior_draws(result.data, ["xsell_intercept", *XSELL_COEFFICIENTS])
        if "xsell_segment" in post:
            segments = tuple(str(v) for v in post["xsell_segment"].coords["segment"].values)
            segment = posterior_draws(result.data, ["xsell_segment"])["xsell_segment"]
        else:
            segments, segment = tuple(result.config.get("options", {}).get("segments", ())), None
        return cls(intercept=draws["xsell_intercept"], segment=segment, segments=segments,
                   coefficients=np.column_stack([draws[k] for k in XSELL_COEFFICIENTS]))


# -- the numbers per cell --------------------------------------------------------------------


@numba.njit(cache=True)
def _summary(buf, pos_lo, pos_hi, out, col):  # pragma: no cover - compiled
    """Mean and the two quantiles at virtual positions ``pos_lo <= pos_hi`` of ``buf`` into ``out[:, col]``: the
    selection kernel of :mod:`tenure.models._draw_summary`, so the numbers of ``np.quantile``'s default method."""
    n = buf.shape[0]
    out[0, col], out[1, col], out[2, col] = summarise_buffer(buf, n, pos_lo, pos_hi, np.empty(n), np.empty(n),
                                                       np.empty(n))


@numba.njit(cache=True, parallel=True)
def _hazard_cells(intercepts, segment_at, slopes, centred, group_start, band_effect, band_at, discount,
                  pos_lo, pos_hi):  # pragma: no cover - compiled
    """Per cell, mean and interval over draws of the hazard now, Σ_k S(k)/(1+i)^k and their product; and
    Σ_k S(k) per cell and draw (float32, ``(n_cells, n_draws)``) for the cross-sales.

    Cells ``group_start[g]:group_start[g + 1]`` differ only in tenure, so they share the log-odds
    ``intercepts[d, segment_at[c]] + slopes[d] · centred[c]`` (``centred``: the answers minus the
    scale's centre) and the hazard of each band, evaluated once per group, band and draw; ``band_at``
    is ``(n_cells, H)``: the band at tenure τ + k, ``discount[k]`` = (1 + i)^−k. Returns three
    ``(3, n_cells)`` summaries (mean, lower, upper) and the months. Groups are independent: the
    result does not depend on the number of threads.
    """
    n_draws = intercepts.shape[0]
    n_cells, n_slopes = centred.shape
    n_bands = band_effect.shape[1]
    horizon = discount.shape[0]
    p_sum = np.empty((3, n_cells))
    life_sum = np.empty((3, n_cells))
    risk_sum = np.empty((3, n_cells))
    months = np.empty((n_cells, n_draws), dtype=np.float32)
    for g in numba.prange(group_start.shape[0] - 1):
        c0, c1 = group_start[g], group_start[g + 1]
        stay = np.empty(n_bands)
        p = np.empty((c1 - c0, n_draws))
        life = np.empty((c1 - c0, n_draws))
        risk = np.empty((c1 - c0, n_draws))
        for d in range(n_draws):
            eta = 0.0
            for j in range(n_slopes):
                eta += slopes[d, j] * centred[c0, j]
            eta = intercepts[d, segment_at[c0]] + eta
            for b in range(n_bands):
                stay[b] = 1.0 - 1.0 / (1.0 + np.exp(-(eta + band_effect[d, b])))
            for c in range(c0, c1):
                alive = 1.0
                disc_sum = 0.0
                plain_sum = 0.0
                for k in range(horizon):
                    disc_sum += alive * discount[k]
                    plain_sum += alive
                    alive *= stay[band_at[c, k]]
                p[c - c0, d] = 1.0 - stay[band_at[c, 0]]
                life[c - c0, d] = disc_sum
                risk[c - c0, d] = p[c - c0, d] * disc_sum
                months[c, d] = plain_sum
        for c in range(c0, c1):
            _summary(p[c - c0], pos_lo, pos_hi, p_sum, c)
            _summary(life[c - c0], pos_lo, pos_hi, life_sum, c)
            _summary(risk[c - c0], pos_lo, pos_hi, risk_sum, c)
    return p_sum, life_sum, risk_sum, months


@numba.njit(cache=True, parallel=True)
def _cross_sale_cells(rate, rate_at, months, hazard_at, pos_lo, pos_hi):  # pragma: no cover - compiled
    """Per cross-sell cell, mean and interval over draws of λ_d · Σ_k S_d(k).

    ``rate`` is ``(n_rate_cells, n_draws)``: λ per cell of the cross-sell covariates, the cell's row
    ``rate_at[c]``; ``months`` the ``(n_hazard_cells, n_draws)`` of :func:`_hazard_cells`, its row ``hazard_at[c]``.
    """
    n_draws = rate.shape[1]
    n_cells = rate_at.shape[0]
    out = np.empty((3, n_cells))
    for c in numba.prange(n_cells):
        x = np.empty(n_draws)
        for d in range(n_draws):
            x[d] = rate[rate_at[c], d] * months[hazard_at[c], d]
        _summary(x, pos_lo, pos_hi, out, c)
    return out


def _dense_cells(key: np.ndarray, key_range: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)`` of non-negative keys below ``key_range``, by a table of
    ``key_range`` entries when that is not much larger than the keys (linear, not a sort)."""
    if key_range > max(4 * key.size, 1 << 20):
        return np.unique(key, return_inverse=True)
    present = np.zeros(key_range, dtype=np.bool_)
    present[key] = True
    cell_key = np.flatnonzero(present)
    code = np.empty(key_range, dtype=np.int64)
    code[cell_key] = np.arange(cell_key.size)
    return cell_key, code[key]


def thinned(n_draws: int, max_draws: int | None) -> np.ndarray:
    """Indices of at most ``max_draws`` draws, evenly spaced over all of them (all when ``None`` or enough)."""
    if max_draws is None or n_draws <= max_draws:
        return np.arange(n_draws)
    return np.unique(np.linspace(0, n_draws - 1, max_draws).round().astype(np.int64))


@dataclass(frozen=True)
class ScoreResult:
    """The score table and what the caller should hear about it.

    ``table``: the customer id, the segment (when given), per quantity its mean and
    ``*_lower``/``*_upper`` interval, and the call rank. ``warnings``: one line per thing the
    scores assumed (unknown segments, tenures beyond the fitted bands). ``settings``: horizon,
    discount rate, interval and the draws used, for the run's record.
    """

    table: pl.DataFrame
    warnings: list[str]
    settings: dict[str, Any]


def score_customers(
    customers: pl.DataFrame,
    hazard: HazardDraws,
    cross_sell: CrossSellDraws | None = None,
    *,
    margin: float | None = None,
    horizon_months: int = DEFAULT_HORIZON_MONTHS,
    discount_rate_monthly: float = DEFAULT_DISCOUNT_RATE,
    interval: float = DEFAULT_INTERVAL,
    max_draws: int | None = DEFAULT_MAX_DRAWS,
) -> ScoreResult:
    """Score a validated customer table (:func:`read_customers`); see the module docstring for the equations.

    ``margin`` (currency per month) is used when the table has no ``margin`` column; a table
    without one and no ``margin`` is an :class:`~tenure.errors.InputError`. The call rank orders
    customers by expected value at risk, highest first (ties in table order). At most ``max_draws``
    posterior draws are used, evenly spaced over the chains (``None``: all).
    """
    horizon = whole(horizon_months, "--horizon", 1, MAX_HORIZON_MONTHS)
    rate = check_discount_rate(discount_rate_monthly)
    in_range(interval, "--interval", 0.0, 1.0, open_low=True, open_high=True)
    if "margin" in customers.columns:
        m = customers["margin"].to_numpy().astype(float)
    elif margin is not None:
        m = np.full(customers.height, in_range(margin, "--margin", -MAX_MARGIN, MAX_MARGIN))
    else:
        raise InputError("customers: no 'margin' column; give the margin per month with --margin")
    warnings: list[str] = []
    n_draws = hazard.n_draws
    if cross_sell is not None:
        n_draws = min(n_draws, cross_sell.n_draws)
        if cross_sell.n_draws != hazard.n_draws:
            warnings.append(f"the retention and cross-sell fits have {hazard.n_draws} and {cross_sell.n_draws} "
                            f"draws: the first {n_draws} of each are paired")
    index = thinned(n_draws, None if max_draws is None else whole(max_draws, "--max-draws", 2, 10**7))
    hazard = hazard.subset(index)
    cross_sell = None if cross_sell is None else cross_sell.subset(index)
    n_draws = index.size

    seg_h = _segment_index(customers, hazard.segments, "retention", warnings)
    scores = [customers[c].to_numpy().astype(np.int64) - SCORE_SCALE[0] for c in SCORE_COLUMNS]
    last_start = hazard.bands[-1]
    tenure = customers["tenure"].to_numpy().astype(np.int64)
    unfitted = [b for b, ok in zip(hazard.bands, hazard.fitted_bands, strict=True) if not ok]
    if unfitted:
        first = min(unfitted)
        beyond = int(np.sum(tenure + horizon - 1 >= first))
        if beyond:
            warnings.append(f"{beyond} customers reach tenures from {first} months within the horizon, beyond the "
                            "panel the retention fit was made on: they keep the shift of the last fitted band")
    tenure_c = np.minimum(tenure, last_start)
    key = seg_h + 1
    for sc in scores:
        key = key * _N_SCORE_VALUES + sc
    key = key * (last_start + 1) + tenure_c
    cell_key, cell_of = _dense_cells(key, (len(hazard.segments) + 1) * _N_SCORE_VALUES**3 * (last_start + 1))
    del key
    first_row = np.empty(cell_key.size, dtype=np.int64)
    first_row[cell_of] = np.arange(cell_of.size)  # any row of a cell stands for it
    c_seg = seg_h[first_row]
    c_scores = np.column_stack([sc[first_row] + SCORE_SCALE[0] for sc in scores]).astype(float)
    c_tenure = tenure_c[first_row]
    del scores, tenure, tenure_c
    bands = np.asarray(hazard.bands)
    band_at = (np.searchsorted(bands, c_tenure[:, None] + np.arange(horizon)[None, :], side="right") - 1)
    discount = (1.0 + rate) ** -np.arange(horizon, dtype=float)
    intercepts, segment_at = _intercept_columns(hazard.intercept, hazard.segment, c_seg)
    pos = quantile_positions(n_draws, interval)
    group = cell_key // (last_start + 1)  # the tenure is the key's last digit: a group's cells are adjacent
    group_start = np.r_[0, np.flatnonzero(np.diff(group)) + 1, group.size]
    p_now, lifetime, at_risk, months = _hazard_cells(
        intercepts, segment_at, np.ascontiguousarray(hazard.slopes), np.ascontiguousarray(c_scores - SCORE_CENTRE),
        group_start, np.ascontiguousarray(hazard.band_effect), np.ascontiguousarray(band_at), discount, *pos)
    cols: dict[str, np.ndarray] = {}
    cols[SCORE_QUANTITIES[0]] = p_now[:, cell_of]
    cols[SCORE_QUANTITIES[1]] = _scaled(lifetime, cell_of, m)
    cols[SCORE_QUANTITIES[2]] = _scaled(at_risk, cell_of, m)
    if cross_sell is not None:
        cols[CROSS_SELL_QUANTITY] = _cross_sales(customers, cross_sell, cell_of, months, pos, warnings)
    del months
    out: list[pl.Series] = [customers["customer_id"]]
    if "segment" in customers.columns:
        out.append(customers["segment"])
    for name, (mean, lo, hi) in cols.items():
        out += [pl.Series(name, mean), pl.Series(f"{name}_lower", lo), pl.Series(f"{name}_upper", hi)]
    order = np.argsort(-cols[SCORE_QUANTITIES[2]][0], kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(1, order.size + 1)
    out.append(pl.Series(RANK_COLUMN, rank))
    settings = {"horizon_months": horizon, "discount_rate_monthly": rate, "interval": interval,
                "draws": n_draws, "cells": int(cell_key.size),
                "margin": "column 'margin'" if "margin" in customers.columns else margin}
    return ScoreResult(table=pl.DataFrame(out), warnings=warnings, settings=settings)


def _segment_index(customers: pl.DataFrame, segments: Sequence[str], fit: str, warnings: list[str]) -> np.ndarray:
    """Index of each customer's segment among the fit's; -1 where the fit has no such segment."""
    n = customers.height
    if len(segments) <= 1:
        return np.zeros(n, dtype=np.int64) if segments else np.full(n, -1, dtype=np.int64)
    if "segment" not in customers.columns:
        warnings.append(f"the {fit} fit has segments {', '.join(segments)} but the customers have no 'segment' "
                        "column: every customer gets the typical segment's intercept")
        return np.full(n, -1, dtype=np.int64)
    lookup = pl.DataFrame({"segment": list(segments), "_i": np.arange(len(segments), dtype=np.int64)})
    index = customers.select("segment").join(lookup, on="segment", how="left", maintain_order="left")["_i"]
    unknown = index.is_null()
    if unknown.any():
        names = customers["segment"].filter(unknown).unique().sort().to_list()
        warnings.append(f"{int(unknown.sum())} customers in segments the {fit} fit does not know "
                        f"({', '.join(map(str, names[:5]))}{', ...' if len(names) > 5 else ''}): they get the "
                        "typical segment's intercept")
    return index.fill_null(-1).to_numpy().astype(np.int64)


def _intercept_columns(intercept: np.ndarray, segment: np.ndarray | None,
                       index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``(n_draws, 1 + n_segments)`` table of intercepts (the typical one first) and each cell's column:
    segment index + 1, and 0 (the typical intercept) for an unknown segment (-1) or a fit without segments."""
    if segment is None:
        return np.ascontiguousarray(intercept[:, None], dtype=float), np.zeros(index.size, dtype=np.int64)
    return np.ascontiguousarray(np.column_stack([intercept, segment]), dtype=float), index.astype(np.int64) + 1


def _scaled(cell_summary: np.ndarray, cell_of: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Per customer mean and interval of margin × a cell quantity: a negative margin swaps the interval's ends."""
    mean, lo, hi = cell_summary[:, cell_of]
    a, b = margin * lo, margin * hi
    return np.stack([margin * mean, np.minimum(a, b), np.maximum(a, b)])


def _cross_sales(customers: pl.DataFrame, draws: CrossSellDraws, cell_of: np.ndarray, months: np.ndarray,
                 pos: tuple[float, float], warnings: list[str]) -> np.ndarray:
    """Mean and interval per customer of λ · Σ_k S(k), on cells of (hazard cell, cross-sell covariates)."""
    seg_x = _segment_index(customers, draws.segments, "cross-sell", warnings)
    products = customers["products"].to_numpy()
    product_values, product_code = _dense_cells(products - 1, int(products.max()))  # products held are >= 1
    n_hazard = months.shape[0]
    key = cell_of.astype(np.int64) * (len(draws.segments) + 1) + seg_x + 1
    for c in ("trust", "enthusiasm"):
        key = key * _N_SCORE_VALUES + (customers[c].to_numpy().astype(np.int64) - SCORE_SCALE[0])
    key = key * product_values.size + product_code
    del product_code
    cell_key, cell = _dense_cells(key, n_hazard * (len(draws.segments) + 1) * _N_SCORE_VALUES**2 * product_values.size)
    first = np.empty(cell_key.size, dtype=np.int64)
    first[cell] = np.arange(cell.size)
    del key
    # λ depends on the cross-sell covariates only (the key's digits after the hazard cell): once per their cell
    rate_at = np.unique(cell_key % ((len(draws.segments) + 1) * _N_SCORE_VALUES**2 * product_values.size),
                        return_inverse=True)[1]
    rate_row = first[np.unique(rate_at, return_index=True)[1]]
    design = count_design(SimpleNamespace(trust=customers["trust"].to_numpy()[rate_row].astype(float),
                                          enthusiasm=customers["enthusiasm"].to_numpy()[rate_row].astype(float),
                                          products=customers["products"].to_numpy()[rate_row].astype(float)))
    seg = seg_x[rate_row]
    if draws.segment is None:
        a = np.repeat(draws.intercept[:, None], seg.size, axis=1)
    else:
        a = np.where(seg[None, :] >= 0, draws.segment[:, np.maximum(seg, 0)], draws.intercept[:, None])
    rate = np.ascontiguousarray(np.exp(a + draws.coefficients @ design.T).T)
    summary = _cross_sale_cells(rate, rate_at.astype(np.int64), months, cell_of[first], *pos)
    return summary[:, cell]
