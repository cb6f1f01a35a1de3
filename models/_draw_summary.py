"""Numba kernels that summarise posterior draws per column: the mean and two interpolated order statistics.

A column of ``n`` draws is copied into a buffer; its mean is summed in draw order (as NumPy's
``mean(axis=0)`` does on a draws-major array, so the two agree to the last bit) and the two
quantiles are found by a branch-free quickselect (expected O(n)) instead of a sort or a partition
of a transposed copy. A quantile at position ``pos = q (n - 1)`` is
``v[k] + (pos - k) (v[k + 1] - v[k])`` with ``k = floor(pos)`` and ``v`` the sorted column
(NumPy's "linear" method). A column holding a NaN has NaN bounds.

The product kernels form each output column's draws one column at a time, without a draws ×
columns array: purchases are P(alive) × g(H) per draw, and spend (the Gamma-Gamma mean, affine
in m̄ for each x) and CLV = margin × spend × P(alive) × discounted g are formed from factors
computed once per distinct x, history or (x, T) they depend on, held customer-major (one row of
draws each) so that a column reads contiguous rows.
Every kernel releases the GIL (callers run chunks on threads) and keeps its helpers here
(``cache=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _kth(src: np.ndarray, n: int, k: int, a: np.ndarray, b: np.ndarray) -> float:
    """The k-th smallest (from 0) of ``src[:n]``; ``a`` and ``b`` are scratch buffers of at least ``n``.

    Quickselect with a median-of-three pivot and a branch-free partition that copies the range
    from one buffer into the other (smaller values to the front, larger to the back): the
    comparisons only move indices, so the loop pays no mispredicted branches.
    """
    for i in range(n):
        a[i] = src[i]
    lo = 0
    hi = n
    while hi - lo > 16:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi - 1]
        p = max(min(x, y), min(max(x, y), z))
        front = lo
        back = hi
        for i in range(lo, hi):
            v = a[i]
            b[front] = v
            b[back - 1] = v
            front += v < p
            back -= v > p
        if k < front:
            hi = front
        elif k >= back:
            lo = back
        else:
            return p
        a, b = b, a
    for i in range(lo + 1, hi):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
    return a[k]


@njit(cache=True, nogil=True)
def _next_up(src: np.ndarray, n: int, k: int, value: float) -> float:
    """The (k + 1)-th smallest of ``src[:n]`` given that ``value`` is its k-th (the last one if k + 1 = n)."""
    if k + 1 >= n:
        return value
    at_most = 0
    above = np.inf
    for d in range(n):
        v = src[d]
        at_most += v <= value
        above = min(above, v if v > value else np.inf)
    return value if at_most >= k + 2 else above


@njit(cache=True, nogil=True)
def _order_pair(buf: np.ndarray, n: int, k: int, below: bool, sample: np.ndarray, part: np.ndarray,
                a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The k-th and (k + 1)-th smallest of ``buf[:n]`` (the k-th twice if k + 1 = n).

    One branch-free pass first keeps the values on the near side of a threshold read from a
    sorted sample of 16 draws (below it for a lower quantile, above for an upper one); when
    that part is sure to hold both order statistics, the selection runs on it alone (about a
    fifth of the draws for a 90 % interval), otherwise on all of them. ``sample``: the sorted
    sample of :func:`_sorted_sample`.
    """
    m = sample.shape[0]
    if n >= 4 * m:
        if below:
            threshold = sample[min(m - 1, ((k + 2) * (m + 1)) // n + 1)]
            count = 0
            for d in range(n):
                v = buf[d]
                part[count] = v
                count += v <= threshold
            if count >= k + 2:  # every value left out exceeds every value kept
                v0 = _kth(part, count, k, a, b)
                return v0, _next_up(part, count, k, v0)
        else:
            threshold = sample[max(0, ((k - 1) * (m + 1)) // n - 2)]
            count = 0
            for d in range(n):
                v = buf[d]
                part[count] = v
                count += v >= threshold
            skipped = n - count  # every value left out is below every value kept
            if skipped <= k and k + 1 < n:
                v0 = _kth(part, count, k - skipped, a, b)
                return v0, _next_up(part, count, k - skipped, v0)
    v0 = _kth(buf, n, k, a, b)
    return v0, _next_up(buf, n, k, v0)


@njit(cache=True, nogil=True)
def _sorted_sample(buf: np.ndarray, n: int, sample: np.ndarray) -> None:
    """``sample`` filled with evenly spaced values of ``buf[:n]`` (n at least 4 per sample value), sorted."""
    m = sample.shape[0]
    if n < 4 * m:
        return
    for i in range(m):
        v = buf[(i * n) // m + (n // m) // 2]
        j = i - 1
        while j >= 0 and sample[j] > v:
            sample[j + 1] = sample[j]
            j -= 1
        sample[j + 1] = v


@njit(cache=True, nogil=True)
def summarise_buffer(buf: np.ndarray, n: int, pos_lo: float, pos_hi: float, part: np.ndarray, a: np.ndarray,
               b: np.ndarray) -> tuple[float, float, float]:
    """Mean and the two interpolated order statistics of ``buf[:n]`` (``part``, ``a``, ``b``: scratch)."""
    total = 0.0
    has_nan = False
    for d in range(n):
        total += buf[d]
        has_nan |= buf[d] != buf[d]
    mean = total / n
    if has_nan:
        return mean, np.nan, np.nan
    k0 = int(np.floor(pos_lo))
    k1 = int(np.floor(pos_hi))
    sample = np.empty(16)
    _sorted_sample(buf, n, sample)
    v0, v0_next = _order_pair(buf, n, k0, True, sample, part, a, b)
    v1, v1_next = _order_pair(buf, n, k1, False, sample, part, a, b)
    return mean, v0 + (pos_lo - k0) * (v0_next - v0), v1 + (pos_hi - k1) * (v1_next - v1)


@njit(cache=True, nogil=True)
def summarise_columns(values: np.ndarray, pos_lo: float, pos_hi: float, out: np.ndarray) -> None:
    """``out[:, j]`` = mean, lower and upper of column ``j`` of the ``(n_draws, n_cols)`` array ``values``."""
    n, cols = values.shape
    block = 8  # columns gathered together: one cache line of float64 per draw
    tile = np.empty((block, n))
    part, a, b = np.empty(n), np.empty(n), np.empty(n)
    for j0 in range(0, cols, block):
        width = min(block, cols - j0)
        for d in range(n):
            for jj in range(width):
                tile[jj, d] = values[d, j0 + jj]
        for jj in range(width):
            out[0, j0 + jj], out[1, j0 + jj], out[2, j0 + jj] = summarise_buffer(tile[jj], n, pos_lo, pos_hi,
                                                                                 part, a, b)


@njit(cache=True, nogil=True)
def summarise_row_products(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray, pos_lo: float,
                           pos_hi: float, out: np.ndarray) -> None:
    """``out[:, j]``: mean, lower, upper over draws ``d`` of ``a[ia[j], d] · b[ib[j], d]``.

    ``a`` and ``b`` hold one row of draws per cell (customer-major), so each product is read from
    two contiguous rows; both have at least ``a.shape[1]`` draws, the number summarised.
    """
    n = a.shape[1]
    buf, part, sa, sb = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for j in range(ia.shape[0]):
        ra = a[ia[j]]
        rb = b[ib[j]]
        for d in range(n):
            buf[d] = ra[d] * rb[d]
        out[0, j], out[1, j], out[2, j] = summarise_buffer(buf, n, pos_lo, pos_hi, part, sa, sb)


@njit(cache=True, nogil=True)
def summarise_spend_and_clv(margin: float, base: np.ndarray, weight: np.ndarray, kind: np.ndarray,
                            mbar: np.ndarray, alive: np.ndarray, cell: np.ndarray, disc: np.ndarray,
                            pair: np.ndarray, n_clv: int, spend_pos: tuple[float, float],
                            clv_pos: tuple[float, float], spend_out: np.ndarray, clv_out: np.ndarray) -> None:
    """Spend and CLV summaries of each (history, m̄) column ``j``, their draws formed here one column at a time.

    Spend in draw ``d``: ``s = base[kind[j], d] + weight[kind[j], d] · mbar[j]`` (the Gamma-Gamma mean,
    affine in m̄ for each x), over all ``base.shape[1]`` draws; CLV: ``margin · s · alive[cell[j], d] ·
    disc[pair[j], d]`` over the first ``n_clv`` draws (the two posteriors paired in order). Every array of
    draws is customer-major (one row per x, history or (x, T) pair). ``spend_out[:, j]`` and
    ``clv_out[:, j]``: mean, lower and upper at the positions ``spend_pos`` and ``clv_pos``.
    """
    n_spend = base.shape[1]
    spend, clv = np.empty(n_spend), np.empty(n_clv)
    part, sa, sb = np.empty(n_spend), np.empty(n_spend), np.empty(n_spend)
    for j in range(kind.shape[0]):
        rb = base[kind[j]]
        rw = weight[kind[j]]
        m = mbar[j]
        for d in range(n_spend):
            spend[d] = rb[d] + rw[d] * m
        spend_out[0, j], spend_out[1, j], spend_out[2, j] = summarise_buffer(spend, n_spend, spend_pos[0],
                                                                             spend_pos[1], part, sa, sb)
        ra = alive[cell[j]]
        rg = disc[pair[j]]
        for d in range(n_clv):
            clv[d] = margin * spend[d] * ra[d] * rg[d]
        clv_out[0, j], clv_out[1, j], clv_out[2, j] = summarise_buffer(clv, n_clv, clv_pos[0], clv_pos[1],
                                                                       part, sa, sb)
