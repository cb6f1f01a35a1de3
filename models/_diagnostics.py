"""Rank-normalised split R-hat and bulk ESS (Vehtari et al. 2021) in NumPy, as ArviZ 0.23 computes them.

``arviz.rhat`` and ``arviz.ess(method="bulk")`` import ArviZ (seconds, with ``scipy.stats``) and need
xarray Datasets; a fit's summary and warnings need only the two numbers per parameter entry. These
follow ``arviz.stats.diagnostics._rhat_rank`` and ``_ess_bulk`` step by step (average ranks over all
draws, Blom's offset 3/8, the normal quantile; chains split in halves; Geyer's initial positive and
monotone sequences over the FFT autocovariance), so the values equal ArviZ's to rounding (tested).
"""

from __future__ import annotations

import numpy as np


def _valid(ary: np.ndarray, min_chains: int) -> bool:
    """ArviZ's ``not_valid`` negated: finite values, at least 4 draws and ``min_chains`` chains."""
    return bool(np.isfinite(ary).all()) and ary.shape[1] >= 4 and ary.shape[0] >= min_chains


def _split_chains(ary: np.ndarray) -> np.ndarray:
    half = ary.shape[1] // 2
    return np.vstack([ary[:, :half], ary[:, ary.shape[1] - half:]])


def _z_scale(ary: np.ndarray) -> np.ndarray:
    """Average ranks over all values, back-transformed with Blom's offset, as normal quantiles."""
    from scipy.special import ndtri

    flat = ary.ravel()
    order = np.argsort(flat, kind="mergesort")
    ordered = flat[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(new) - 1
    bounds = np.r_[np.flatnonzero(new), flat.size]
    average = (bounds[:-1] + bounds[1:] + 1) / 2.0  # ranks start at 1
    rank = np.empty(flat.size)
    rank[order] = average[group]
    return ndtri((rank - 3 / 8) / (flat.size - 2 * 3 / 8 + 1)).reshape(ary.shape)


def _rhat(ary: np.ndarray) -> float:
    n = ary.shape[1]
    between = n * np.var(ary.mean(axis=1), ddof=1)
    within = np.mean(np.var(ary, axis=1, ddof=1))
    with np.errstate(invalid="ignore", divide="ignore"):  # constant draws: NaN, as ArviZ gives
        return float(np.sqrt((between / within + n - 1) / n))


def rhat(ary: np.ndarray) -> float:
    """Rank-normalised split R-hat of ``(chain, draw)`` draws: the larger of the bulk and the folded (tail) one.

    NaN with fewer than 2 chains or 4 draws or a non-finite draw, as ArviZ gives.
    """
    ary = np.asarray(ary, dtype=float)
    if not _valid(ary, 2):
        return float("nan")
    split = _split_chains(ary)
    bulk = _rhat(_z_scale(split))
    tail = _rhat(_z_scale(np.abs(split - np.median(split))))
    return max(bulk, tail)


def _autocov(ary: np.ndarray) -> np.ndarray:
    from scipy.fftpack import next_fast_len  # ArviZ's FFT length, so that rounding matches too

    n = ary.shape[1]
    centred = ary - ary.mean(axis=1, keepdims=True)
    m = next_fast_len(2 * n)
    spectrum = np.fft.rfft(centred, n=m, axis=1)
    spectrum *= np.conjugate(spectrum)
    return np.fft.irfft(spectrum, n=m, axis=1)[:, :n] / n


def _ess(ary: np.ndarray) -> float:
    if not bool(np.isfinite(ary).all()):
        return float("nan")
    if np.max(ary) - np.min(ary) < np.finfo(float).resolution:
        return float(ary.size)
    n_chain, n_draw = ary.shape
    acov = _autocov(ary)
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(ary.mean(axis=1), ddof=1)
    rho = np.zeros(n_draw)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    t = 1
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:  # Geyer's initial positive sequence
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:  # Geyer's initial monotone sequence
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    size = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho[:max_t + 1]) + np.sum(rho[max_t + 1:max_t + 2])
    tau = max(tau, 1 / np.log10(size))
    return float("nan") if np.isnan(rho).any() else float(size / tau)


def ess_bulk(ary: np.ndarray) -> float:
    """Bulk effective sample size of ``(chain, draw)`` draws (rank-normalised split chains); NaN below 4 draws."""
    ary = np.asarray(ary, dtype=float)
    if not _valid(ary, 1):
        return float("nan")
    return _ess(_z_scale(_split_chains(ary)))
