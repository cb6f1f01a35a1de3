"""Customer-level predictions of a saved fit: P(alive), expected purchases, expected spend and CLV per customer.

:func:`model_for_prediction` rebuilds a model from a saved fit (its options and priors) around new
customer data; :func:`customer_table` computes, for every customer, the posterior mean and a
90 % equal-tailed interval of

- ``p_alive``: P(alive | x, t_x, T) at the end of observation;
- ``purchases``: E[Y(H) | x, t_x, T], expected repeat purchases in the next H units;
- ``spend_per_purchase``: E[spend per purchase | x, m̄] of a Gamma-Gamma fit (currency of the amounts);
- ``clv``: margin × spend_per_purchase × the discounted expected purchases in (T, T + H].

Discounting is continuous at the rate equivalent to an annual rate d: a purchase t units from
now counts (1 + d)^(−t/u), u the units in a year, so the discounted purchases are
∫_0^H e^{−δt} dE[Y(t)] = e^{−δH} E[Y(H)] + δ ∫_0^H e^{−δt} E[Y(t)] dt, the last integral by
8-point Gauss-Legendre quadrature (E[Y(t)] is smooth and concave in t).

Speed and memory. For the models of :data:`tenure.models.MODELS` that describe repeat buying
with dropout (BG/NBD and its relatives), E[Y(t) | x, t_x, T] = P(alive | x, t_x, T) · g(x, T, t):
given that a customer is alive at T, her future depends on her history through x and T only
(the posterior of her rates); t_x enters only through P(alive). So the special functions
(Gauss' hypergeometric function for the BG/NBD) are evaluated once per distinct (x, T) and draw,
and P(alive) once per distinct history (x, t_x, T). g is obtained from the model's own methods as
E[Y(t) | x, T, T] / P(alive | x, T, T), so no model needs code here. Spend depends on (x, m̄)
only, and CLV (spend × P(alive) × discounted g, per draw) on the history and m̄ jointly: it is
computed once per distinct (history, m̄), these ordered by history so that a chunk of histories
owns a contiguous run of them. The means and intervals come from a Numba kernel
(:mod:`tenure.models._draw_summary`) that forms each column's products draw by draw and finds
the bounds by selection, never a draws × customers array. Histories are processed in chunks
(:data:`CHUNK_ROWS`, their (history, m̄) rows in sub-chunks of the same size), so memory stays
flat; posteriors are thinned evenly to ``max_draws``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl
from tenure.models._draw_summary import summarise_row_products, summarise_spend_and_clv
from tenure.models.clv_data import DAYS_PER_UNIT, ID_COLUMN, check_time_unit, convert_periods, validate_summary
from tenure.models.clv_predict import _unique_rows, quantile_positions

from tenure.errors import InputError

#: The longest prediction window: 100 years (a longer one is a typo, and its sums overflow).
MAX_HORIZON_DAYS = 36_525.0

#: Customers per chunk: with 500 draws about 16 MB per (draws × chunk) array.
CHUNK_ROWS = 4096
#: Posterior draws used for the intervals by default (evenly thinned): the Monte Carlo error of a
#: 5 % quantile from 500 independent draws is about one percentage point of probability.
MAX_DRAWS = 500
GAUSS_LEGENDRE_NODES = 8


def thinned(result: Any, max_draws: int) -> Any:
    """A copy of a fit with at most ``max_draws`` posterior draws in all, every k-th draw of every chain."""
    from tenure.models._posterior_data import PosteriorData
    from tenure.models.base import FitResult

    if max_draws < 1:
        raise InputError(f"--max-draws: must be at least 1, found {max_draws}")
    post = result.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    step = max(1, math.ceil(chains * draws / max_draws))
    keep = post.isel(draw=slice(None, None, step))
    if keep.sizes["chain"] * keep.sizes["draw"] > max_draws:
        keep = keep.isel(draw=slice(0, max(1, max_draws // keep.sizes["chain"])))
    idata = PosteriorData(attrs=result.attrs, posterior=keep)
    return FitResult(idata)


def model_for_prediction(result: Any, data: pl.DataFrame, *, where: str, max_draws: int = MAX_DRAWS) -> Any:
    """The model of a saved fit, built on ``data`` with the fit's options and priors, holding its posterior.

    Covariates are centred on the means of the data the model was fitted on (stored with the
    fit), not on those of ``data``.
    """
    import inspect

    from tenure.models import model_class

    cls = model_class(result.model_name)
    options = dict(result.config.get("options", {}))
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in options.items() if k in accepted}
    model = cls(data, priors=result.config.get("priors"), where=where, **kwargs)
    if "covariate_means" in options and hasattr(model, "covariate_means"):
        model.covariate_means = dict(options["covariate_means"])
    model.result = thinned(result, max_draws)
    return model


def _covariates(model: Any) -> list[str]:
    return list(dict.fromkeys(tuple(getattr(model, "purchase_covariates", ()))
                              + tuple(getattr(model, "dropout_covariates", ()))))


def annual_rate_per_unit(annual_discount_rate: float, time_unit: str) -> float:
    """The continuous discount rate per ``time_unit`` equivalent to ``annual_discount_rate`` a year."""
    if not annual_discount_rate > -1 or not math.isfinite(annual_discount_rate):
        raise InputError(f"--discount-rate: must be a finite rate above -1 a year, found {annual_discount_rate}")
    return math.log1p(annual_discount_rate) * DAYS_PER_UNIT[time_unit] / DAYS_PER_UNIT["years"]


def _alive_purchase_factors(model: Any, pairs: pl.DataFrame, horizon: float, delta: float) -> tuple[np.ndarray, ...]:
    """Per draw and distinct (x, T, covariates): g(H) and the discounted Σ, with g = E[Y(t)|x,T,T] / P(alive|x,T,T)."""
    probe = pairs.with_columns(pl.when(pl.col("frequency") > 0).then(pl.col("T")).otherwise(0.0).alias("recency"))
    direct = getattr(model, "purchases_if_alive", None)  # a family's closed form of g (the Pareto/NBD's)
    alive = None if direct is not None else model.probability_alive(probe, keep_draws=True).draws

    def g(t: float) -> np.ndarray:
        if direct is not None:
            return direct(t, probe)
        return model.expected_purchases(t, probe, keep_draws=True).draws / alive

    g_h = g(horizon)
    if delta == 0.0:
        return g_h, g_h
    nodes, weights = np.polynomial.legendre.leggauss(GAUSS_LEGENDRE_NODES)
    ts, ws = 0.5 * horizon * (nodes + 1.0), 0.5 * horizon * weights
    discounted = math.exp(-delta * horizon) * g_h
    for t, w in zip(ts, ws, strict=True):
        discounted = discounted + delta * w * math.exp(-delta * t) * g(float(t))
    return g_h, discounted


def column_names(horizon: float, time_unit: str) -> dict[str, str]:
    """The output's names with their units: ``purchases_next_52_weeks``, ``clv_next_52_weeks``, ..."""
    h = f"{horizon:g}".replace(".", "_")
    return {"p_alive": "p_alive", "purchases": f"purchases_next_{h}_{time_unit}",
            "spend_per_purchase": "spend_per_purchase", "clv": f"clv_next_{h}_{time_unit}"}


def customer_table(
    model: Any,
    data: pl.DataFrame,
    *,
    horizon: float,
    time_unit: str | None = None,
    spend: Any | None = None,
    annual_discount_rate: float = 0.0,
    margin: float = 1.0,
    interval: float = 0.9,
    chunk_rows: int = CHUNK_ROWS,
    threads: int | None = None,
    where: str = "prediction data",
) -> pl.DataFrame:
    """Per customer: P(alive), purchases in the next ``horizon``, expected spend and CLV, each with an interval.

    Parameters
    ----------
    model
        A fitted transaction model (for instance from :func:`model_for_prediction`).
    data
        An RFM summary (``customer_id`` kept when present) in the model's time unit; with
        ``spend``, ``monetary_value`` (mean spend per repeat purchase) is required.
    horizon, time_unit
        Length of the prediction window and its unit (default: the model's).
    spend
        A fitted Gamma-Gamma model; without it, no spend and CLV columns.
    annual_discount_rate
        Discount rate a year for CLV (0.1 = 10 %), applied continuously.
    margin
        Share of spend that is profit (1: CLV in revenue).
    interval
        Probability of the equal-tailed interval.
    chunk_rows, threads
        Customers per chunk and threads working on chunks (default: one per CPU).

    Returns
    -------
    polars.DataFrame
        ``customer_id`` (when present), then for each quantity its mean and ``_lower`` and
        ``_upper`` bounds, named by :func:`column_names`.
    """
    unit = check_time_unit(time_unit or model.time_unit, "--time-unit")
    if not (math.isfinite(horizon) and 0 < convert_periods(horizon, unit, "days") <= MAX_HORIZON_DAYS):
        raise InputError(f"--horizon: must be a positive number of {unit} up to 100 years, found {horizon:g}")
    if not (math.isfinite(margin) and 0 < margin <= 1):
        raise InputError(f"--margin: must be in (0, 1] (a share of spend), found {margin:g}")
    covs = _covariates(model)
    rows = validate_summary(data, where=where, monetary=spend is not None, covariates=covs)
    h = convert_periods(horizon, unit, model.time_unit)
    delta = annual_rate_per_unit(annual_discount_rate, model.time_unit)
    keys = ["frequency", "T", *covs]
    pairs = rows.select(keys).unique(maintain_order=True).with_row_index("_pair")
    g_h, g_disc = _alive_purchase_factors(model, pairs.drop("_pair"), h, delta)
    # P(alive) and purchases depend on (x, t_x, T, covariates) only: one "cell" per distinct history.
    predict_cols = ["frequency", "recency", "T", *covs]
    cells, cell_of = _unique_rows(rows.select(predict_cols))
    # Sorted by history, a chunk of cells holds few frequencies with neighbouring recencies: the Pareto/NBD
    # integrates each segment between breakpoints of a frequency in a chunk once per draw (a million customers:
    # 13.6 s -> 7.4 s in one session, benchmarks/bench_predict.py --model pnbd).
    by_history = np.lexsort([cells.get_column(c).to_numpy() for c in reversed(predict_cols)])
    rank = np.empty_like(by_history)
    rank[by_history] = np.arange(by_history.size)
    cells, cell_of = cells[by_history], rank[cell_of]
    pair_of = cells.select(keys).join(pairs, on=keys, how="left", maintain_order="left").get_column("_pair").to_numpy()
    names = column_names(horizon, unit)
    quantities = ["p_alive", "purchases", *(["spend_per_purchase", "clv"] if spend is not None else [])]
    out = {q: np.empty((3, cells.height)) for q in quantities[:2]}
    pos_lo, pos_hi = quantile_positions(g_h.shape[0], interval)
    # The summary kernels read one contiguous row of draws per (x, T) pair, history or x.
    g_h, g_disc = np.ascontiguousarray(g_h.T), np.ascontiguousarray(g_disc.T)
    if spend is not None:
        # Spend depends on (x, m̄), CLV on the history cell and m̄ jointly: one "combination" per distinct
        # (cell, m̄), ordered by cell, so that each chunk of cells owns a contiguous range of them.
        combos, combo_of = _unique_rows(pl.DataFrame({"_cell": cell_of,
                                                      "monetary_value": rows.get_column("monetary_value")}))
        order = np.argsort(combos.get_column("_cell").to_numpy(), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        combo_of = rank[combo_of]
        combo_cell = combos.get_column("_cell").to_numpy()[order]
        combo_x = cells.get_column("frequency").to_numpy().astype(float)[combo_cell]
        combo_mbar = np.where(combo_x > 0, combos.get_column("monetary_value").to_numpy().astype(float)[order], 0.0)
        frequencies, combo_kind = np.unique(combo_x, return_inverse=True)
        base, weight = (np.ascontiguousarray(t.T) for t in spend.spend_terms(frequencies))
        n_clv = min(g_h.shape[1], base.shape[1])
        spend_pos, clv_pos = quantile_positions(base.shape[1], interval), quantile_positions(n_clv, interval)
        for q in quantities[2:]:
            out[q] = np.empty((3, combos.height))

    def one_chunk(start: int) -> None:
        stop = min(start + chunk_rows, cells.height)
        alive = model.probability_alive(cells.slice(start, stop - start), interval=interval, keep_draws=True)
        out["p_alive"][:, start:stop] = [alive.table[c].to_numpy() for c in ("mean", "lower", "upper")]
        p = np.ascontiguousarray(alive.draws.T)
        summarise_row_products(p, np.arange(stop - start), g_h, pair_of[start:stop], pos_lo, pos_hi,
                               out["purchases"][:, start:stop])
        if spend is None:
            return
        first, last = np.searchsorted(combo_cell, [start, stop])
        at = combo_cell[first:last]
        summarise_spend_and_clv(margin, base, weight, combo_kind[first:last], combo_mbar[first:last], p, at - start,
                                g_disc, pair_of[at], n_clv, spend_pos, clv_pos,
                                out["spend_per_purchase"][:, first:last], out["clv"][:, first:last])

    # Chunks write disjoint columns of ``out`` and draw no random numbers: the result does not depend on the
    # number of threads. NumPy, SciPy and the summary kernels release the GIL in the heavy loops.
    starts = range(0, cells.height, chunk_rows)
    workers = max(1, min(threads or os.cpu_count() or 1, len(starts)))
    if workers == 1:
        for start in starts:
            one_chunk(start)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_chunk, starts))
    table: dict[str, Any] = {ID_COLUMN: rows.get_column(ID_COLUMN)} if ID_COLUMN in rows.columns else {}
    for q in quantities:
        mean, lo, hi = out[q][:, cell_of if q in ("p_alive", "purchases") else combo_of]
        table[names[q]] = mean
        table[f"{names[q]}_lower"] = lo
        table[f"{names[q]}_upper"] = hi
    return pl.DataFrame(table)


def describe_columns(horizon: float, time_unit: str, *, spend: bool, annual_discount_rate: float,
                     margin: float, interval: float = 0.9) -> Sequence[str]:
    """One line per output column group: what it is and its unit."""
    n = column_names(horizon, time_unit)
    pct = f"{100 * interval:g} %"
    lines = [f"{n['p_alive']}: probability the customer is still active (0 to 1), with a {pct} interval",
             f"{n['purchases']}: expected repeat purchases in the next {horizon:g} {time_unit}"]
    if spend:
        lines += [f"{n['spend_per_purchase']}: expected spend per purchase (currency of the amounts)",
                  f"{n['clv']}: margin {margin:g} × spend × purchases in the next {horizon:g} {time_unit}, discounted "
                  f"at {100 * annual_discount_rate:g} % a year (currency of the amounts)"]
    return lines
