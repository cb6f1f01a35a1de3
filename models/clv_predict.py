"""Posterior predictions that stay small: reduce over draws while computing, chunk over customers.

A per-customer prediction from a posterior of ``chains × draws`` samples is an array of
``chains × draws × customers`` numbers: 4 GB of float64 for a million customers and 500
draws. The customer-base models instead compute predictions for a chunk of customers at a
time and keep only the posterior mean and an equal-tailed interval per customer, unless
the caller asks for the draws (``keep_draws=True``). Identical customers (same summary and
covariates) are computed once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from tenure.models.clv_data import ID_COLUMN

from tenure.errors import InputError

if TYPE_CHECKING:
    import arviz as az

DrawFn = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], np.ndarray]

ELEMENTS_PER_CHUNK = 1 << 21
"""Draws × customers evaluated at once (16 MiB of float64 per intermediate array)."""


@dataclass(frozen=True)
class Prediction:
    """Per-row posterior summary of a prediction.

    Attributes
    ----------
    table
        The input's key columns followed by ``mean``, ``lower`` and ``upper`` (the
        equal-tailed interval of probability ``interval``).
    interval
        Probability mass of the interval.
    draws
        ``(n_draws, n_rows)`` array of the prediction per posterior draw, only when
        asked for with ``keep_draws=True``; otherwise ``None``.
    """

    table: pl.DataFrame
    interval: float
    draws: np.ndarray | None = None


def posterior_draws(idata: az.InferenceData, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Posterior samples of ``names`` with chain and draw flattened into the first axis."""
    from tenure.models._posterior_data import group_arrays

    post = group_arrays(idata, "posterior")
    out = {}
    for n in names:
        if n not in post:
            raise InputError(f"posterior: no variable {n!r}; has {', '.join(map(str, post.variables))}")
        v = np.asarray(post.draws(n)[1], dtype=float)
        out[n] = v.reshape(-1, *v.shape[2:])
    return out


def _check_interval(interval: float) -> None:
    if not 0.0 < interval < 1.0:
        raise InputError(f"interval: must be between 0 and 1, found {interval}")


def summarize_draws(values: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and equal-tailed interval over the first axis of ``values`` (``np.quantile``'s linear interpolation).

    A 2-D array is summarised column by column in a Numba kernel
    (:func:`tenure.models._draw_summary.summarise_columns`): the mean summed along draws in order,
    the two order statistics of each bound found by selection, with no transposed copy.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        lo, hi = np.quantile(values, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
        return values.mean(axis=0), lo, hi
    from tenure.models._draw_summary import summarise_columns

    pos_lo, pos_hi = quantile_positions(values.shape[0], interval)
    out = np.empty((3, values.shape[1]))
    summarise_columns(values, pos_lo, pos_hi, out)
    return out[0], out[1], out[2]


def quantile_positions(n_draws: int, interval: float) -> tuple[float, float]:
    """Positions ``q (n - 1)`` in the sorted draws of the lower and upper bound of an equal-tailed interval."""
    pos = np.array([(1 - interval) / 2, (1 + interval) / 2]) * (n_draws - 1)
    return float(pos[0]), float(pos[1])


def reduce_over_draws(
    compute: DrawFn,
    draws: Mapping[str, np.ndarray],
    rows: pl.DataFrame,
    *,
    interval: float = 0.9,
    keep_draws: bool = False,
    chunk_rows: int | None = None,
) -> Prediction:
    """Evaluate ``compute(draws, chunk)`` over chunks of unique rows and summarise each row.

    Parameters
    ----------
    compute
        Takes the posterior draws (each ``(n_draws, ...)``) and a dict of column arrays
        for a chunk of rows (each ``(n_chunk,)``) and returns an ``(n_draws, n_chunk)``
        array.
    draws
        Posterior draws by parameter name, flattened over chains.
    rows
        The rows to predict for; all columns but the customer key ``customer_id`` are
        passed to ``compute``, and the key is kept in the table. Rows that are equal in
        every other column are computed once.
    interval
        Probability of the equal-tailed interval reported per row.
    keep_draws
        Also return the full ``(n_draws, n_rows)`` array.
    chunk_rows
        Rows per chunk; by default about :data:`ELEMENTS_PER_CHUNK` / ``n_draws``.
    """
    _check_interval(interval)
    n_draws = len(next(iter(draws.values())))
    unique, inverse = _unique_rows(rows.drop(ID_COLUMN, strict=False))
    kept = np.empty((n_draws, unique.height)) if keep_draws else None
    columns = {c: unique.get_column(c).to_numpy().astype(float) for c in unique.columns}

    def chunk_values(start: int, stop: int) -> dict[str, np.ndarray]:
        values = np.asarray(compute(draws, {c: v[start:stop] for c, v in columns.items()}), dtype=float)
        if kept is not None:
            kept[:, start:stop] = values
        return {"value": values}

    summaries = reduce_chunks(chunk_values, unique.height, n_draws, interval=interval,
                              chunk_rows=chunk_rows)["value"]
    if unique.height < rows.height:  # rows already distinct keep their order: no gather, no copy of the draws
        summaries = tuple(s[inverse] for s in summaries)
        kept = None if kept is None else kept[:, inverse]
    table = rows.with_columns(*(pl.Series(name, s) for name, s in zip(("mean", "lower", "upper"), summaries,
                                                                       strict=True)))
    return Prediction(table=table, interval=interval, draws=kept)


def reduce_chunks(
    compute_chunk: Callable[[int, int], Mapping[str, np.ndarray]],
    n_rows: int,
    n_draws: int,
    *,
    interval: float = 0.9,
    chunk_rows: int | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Mean and equal-tailed interval per row of each quantity ``compute_chunk(start, stop)`` returns.

    ``compute_chunk`` gives, for rows ``start:stop``, a ``(n_draws, stop - start)`` array per
    quantity; each is reduced over draws before the next chunk is computed, so no array of
    draws × rows is ever held. Rows per chunk: by default about :data:`ELEMENTS_PER_CHUNK` / ``n_draws``.
    """
    _check_interval(interval)
    step = chunk_rows or max(1, ELEMENTS_PER_CHUNK // max(n_draws, 1))
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        for name, values in compute_chunk(start, stop).items():
            if name not in out:
                out[name] = (np.empty(n_rows), np.empty(n_rows), np.empty(n_rows))
            for target, summary in zip(out[name], summarize_draws(values, interval), strict=True):
                target[start:stop] = summary
    return out


def _unique_rows(rows: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """Unique rows of ``rows`` and, for each row, the index of its unique row."""
    keyed = rows.with_row_index("_row")
    cols = list(rows.columns)
    uniq = keyed.group_by(cols, maintain_order=True).agg(pl.col("_row")).with_row_index("_uid")
    if uniq.height == rows.height:  # all distinct: the groups are the rows, in order
        return rows, np.arange(rows.height)
    inverse = np.empty(rows.height, dtype=np.int64)
    exploded = uniq.select("_uid", "_row").explode("_row")
    inverse[exploded.get_column("_row").to_numpy()] = exploded.get_column("_uid").to_numpy()
    return uniq.select(cols), inverse


def curve_summary(values: np.ndarray, index: np.ndarray, index_name: str, interval: float) -> pl.DataFrame:
    """Summarise a ``(n_draws, n_points)`` curve (survival, retention, purchases) per point."""
    _check_interval(interval)
    mean, lo, hi = summarize_draws(values, interval)
    return pl.DataFrame({index_name: index, "mean": mean, "lower": lo, "upper": hi})
