"""Numba kernels that summarise posterior draws per column: the mean and two interpolated order statistics.

A column of ``n`` draws is copied into a buffer; its mean is summed in draw order (as NumPy's
``mean(axis=0)`` does on a draws-major array, so the two agree to the last bit) and the two
quantiles are found by a branch-free quickselect (expected O(n)) instead of a sort or a partition
of a transposed copy. A quantile at position ``pos = q (n - 1)`` is
``v[k] + (pos - k) (v[k + 1] - v[k])`` with ``k = floor(pos)`` and ``v`` the sorted column
(NumPy's "linear" method). A column holding a NaN has NaN bounds.

The product kernel evaluates ``scale · A[d, ia[j]] · B[d, ib[j]] · C[d, ic[j]]`` draw by draw for
each output column ``j`` without forming the draws × columns array: CLV is spend × P(alive) ×
discounted purchases per draw, each factor computed once per distinct cell it depends on.
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
def _summarise(buf: np.ndarray, n: int, pos_lo: float, pos_hi: float, a: np.ndarray,
               b: np.ndarray) -> tuple[float, float, float]:
    """Mean and the two interpolated order statistics of ``buf[:n]`` (``a``, ``b``: scratch)."""
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
    v0 = _kth(buf, n, k0, a, b)
    v1 = _kth(buf, n, k1, a, b)
    v0_next = _next_up(buf, n, k0, v0)
    v1_next = _next_up(buf, n, k1, v1)
    return mean, v0 + (pos_lo - k0) * (v0_next - v0), v1 + (pos_hi - k1) * (v1_next - v1)


@njit(cache=True, nogil=True)
def summarise_columns(values: np.ndarray, pos_lo: float, pos_hi: float, out: np.ndarray) -> None:
    """``out[:, j]`` = mean, lower and upper of column ``j`` of the ``(n_draws, n_cols)`` array ``values``."""
    n = values.shape[0]
    buf, a, b = np.empty(n), np.empty(n), np.empty(n)
    for j in range(values.shape[1]):
        for d in range(n):
            buf[d] = values[d, j]
        out[0, j], out[1, j], out[2, j] = _summarise(buf, n, pos_lo, pos_hi, a, b)


@njit(cache=True, nogil=True)
def summarise_products(scale: float, a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray,
                       c: np.ndarray, ic: np.ndarray, n: int, pos_lo: float, pos_hi: float,
                       out: np.ndarray) -> None:
    """``out[:, j]``: mean, lower, upper over draws ``d < n`` of ``scale · a[d, ia[j]] · b[d, ib[j]] · c[d, ic[j]]``."""
    buf, sa, sb = np.empty(n), np.empty(n), np.empty(n)
    for j in range(ia.shape[0]):
        ja, jb, jc = ia[j], ib[j], ic[j]
        for d in range(n):
            buf[d] = scale * a[d, ja] * b[d, jb] * c[d, jc]
        out[0, j], out[1, j], out[2, j] = _summarise(buf, n, pos_lo, pos_hi, sa, sb)
