"""The Pareto/NBD likelihood and gradient in Numba, and the closed-form route (MAP, NUTS) shared with the MBG/NBD.

**The likelihood.** Schmittlein, Morrison & Colombo (1987); in the form of Fader, Hardie &
Lee (2005), "A note on deriving the Pareto/NBD model and related expressions":

L(r, α, s, β | x, t_x, T) = Γ(r+x) α^r β^s / Γ(r) · [ (α+T)^−(r+x) (β+T)^−s + s·I ],
I = ∫_{t_x}^{T} (α+τ)^−(r+x) (β+τ)^−(s+1) dτ,

the second term being the customers who die at τ in (t_x, T]. The published route writes I
with Gauss's ₂F₁ (argument |α−β|/(max(α,β)+t), two cases), whose parameter gradients need
derivatives of ₂F₁ in its parameters: no closed form, series that converge slowly as the
argument nears 1 (α ≫ β or β ≫ α with small t_x), and cancellation between the t_x and T
terms. Here I is computed directly by Gauss–Legendre quadrature of fixed order after a change
of variable that makes its integrand smooth and single-scaled:

τ = t_x + e^y − h,   y ∈ [log h, log(T − t_x + h)],   h = 1 / (( r+x)/(α+t_x) + (s+1)/(β+t_x)),

h being the local decay length of the integrand at τ = t_x. In y the log-integrand is
y − (r+x)·log(α+τ) − (s+1)·log(β+τ): slope 0 at the left end (what the choice of h does), concave
where r+x ≥ 1, so the integrand is a half-bell whose width is O(1) in y whatever the
scales α, β, T and the exponents r+x, s+1 (a pure power law, a pure exponential cut-off and the
two scales of α ≫ β all become the same shape). :data:`ORDER` nodes on each of the two panels
[log h, log h + 3] and [log h + 3, log(T − t_x + h)] give I to about 1e-10 relative over the
parameter ranges tested against mpmath (α = β, α ≫ β, β ≫ α, r+x up to 150, s down to 1e-4,
T up to 10 000 with t_x = 0).

The gradient differentiates the original integral under the integral sign (its limits t_x and
T do not depend on the parameters): ∂I/∂α = −(r+x)∫f/(α+τ), ∂I/∂r = −∫f·log(α+τ), and so on,
evaluated with the same nodes. It is finite and smooth everywhere (no special-function
derivative, no case split at α = β), and equals the derivative of the quadrature value to its
accuracy; the tests check it against finite differences at those hard points. The nodes are
summed in one pass relative to the integrand's value at the left end, which bounds them up to a
factor (τ − t_x + h)/h · (1 + (τ − t_x)/(α+t_x))^−(r+x) that cannot overflow, and the two terms
of L by log-sum-exp, so nothing under- or overflows; per node that is one exp for the node, two
logs and one exp for the integrand (CDNOW's 1,016 rows: about 1.6× faster than the earlier two
passes with a log-sum-exp over stored nodes). That is the row path (:func:`pnbd_row_core`), used
for P(alive), the per-row log-likelihood and the PyMC route.

**Grouped evaluation of the log density.** The integrand f(τ) = (α+τ)^−(r+x) (β+τ)^−(s+1)
depends on a row only through x, and a summary table repeats x, t_x and T (a million weekly
customers: 61,606 rows, 46 distinct x, 7,201 segments). :func:`pack_rows` sorts the rows by x,
then T, then t_x descending, and records per x its breakpoints, the distinct t_x and T values.
:func:`pnbd_logp_and_grad` then, per distinct x, evaluates log f at each breakpoint (the logs of
α + b and β + b once per distinct value), integrates each segment between consecutive
breakpoints once relative to f at its left end (:func:`_segment_quad`: 4, 6 or 8 nodes in τ when
the segment is at most 1/16, 1/4 or 1/2 of ℓ = min(h, α + left end), over which f is nearly
exponential with no singularity nearer than ℓ, about 2e-13 relative in a random search over
the hard ranges above; a longer one by :func:`_tail_quad`, the row path's quadrature), and walks
each T's rows from T downwards: the running integral over [b, T] is rescaled by f's fall across
each segment it crosses, f(b')/f(b) ≤ 1, and the segment added, all terms positive, so there is
no cancellation and no overflow. A row's L/f(t_x) is then (β+T)·f(T)/f(t_x) + s·I/f(t_x), two
positive terms, and its log one log per row. The Gamma functions of r + x are evaluated once per
distinct x. On that summary this is 3-4.5 ms per log density + gradient against 60-72 ms row by
row, on a busy 2-core machine (benchmarks/RESULTS.md); the tests hold it to the row path within 1e-10.

**The closed-form route.** :func:`pnbd_logp_and_grad` (and the MBG/NBD's in
:mod:`tenure.models._mbgnbd_fast`) follows :mod:`tenure.models._bgnbd_fast`'s convention,
``logp_and_grad(theta, buf, grad) -> float`` on the log scale of the four parameters, prior
terms and log-Jacobian included, reading a packed read-only buffer (:func:`pack_rows`, whose
rows the MBG/NBD's kernel reads and whose breakpoints only the Pareto/NBD's). The same row
kernels give the PyMC route's likelihood (a PyTensor ``Op`` with the analytic gradient,
:class:`RowLogLike`), used with covariates, so there is one implementation of each likelihood.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from tenure.models import _fast
from tenure.models._fast import digamma, prior_logp

ORDER = 16
"""Gauss–Legendre nodes per panel (two panels)."""
SPLIT = 3.0
"""Where the first panel ends, in units of y above its start (log h)."""

_U, _W = np.polynomial.legendre.leggauss(ORDER)
NODES = (_U + 1.0) / 2.0
WEIGHTS = _W / 2.0

SHORT_ORDERS = (4, 6, 8)
"""Gauss–Legendre orders in τ for the short segments of the grouped evaluation."""
SHORT_REACH = (0.0625, 0.25, 0.5)
"""The longest segment, in units of ℓ = min(h, α + lo), that each of :data:`SHORT_ORDERS` integrates."""
_short = [np.polynomial.legendre.leggauss(k) for k in SHORT_ORDERS]
SHORT_NODES = np.concatenate([(u + 1.0) / 2.0 for u, _ in _short])
SHORT_WEIGHTS = np.concatenate([wt / 2.0 for _, wt in _short])
SHORT_START = np.cumsum((0, *SHORT_ORDERS))



@numba.njit(cache=True, error_model="numpy")
def _tail_quad(a1: float, b1: float, alpha: float, beta: float, lo: float,
               span: float) -> tuple[float, float, float, float, float, float]:
    """∫_lo^{lo+span} f and its four log-derivative integrals, f = (α+τ)^−a1 (β+τ)^−b1, by quadrature in y.

    Returns (m0, I, ∫f·log(α+τ), ∫f/(α+τ), ∫f·log(β+τ), ∫f/(β+τ)), the five integrals relative
    to e^m0, where m0 = log h + log f(lo) (module docstring); the last four negated.
    """
    # Each node's integrand is taken relative to its value m0 at the left end y0 = log h, where it
    # is largest up to a factor that cannot overflow, so one pass suffices (no log-sum-exp over
    # stored nodes).
    h = 1.0 / (a1 / (alpha + lo) + b1 / (beta + lo))
    c1 = alpha + lo - h
    c2 = beta + lo - h
    y0 = math.log(h)
    y1 = math.log(span + h)
    y_mid = min(y0 + SPLIT, y1)
    m0 = y0 - a1 * math.log(alpha + lo) - b1 * math.log(beta + lo)
    total = 0.0
    g0 = 0.0
    g1 = 0.0
    g2 = 0.0
    g3 = 0.0
    for p in range(2):
        ya = y0 if p == 0 else y_mid
        width = (y_mid if p == 0 else y1) - ya
        if width <= 0.0:
            continue
        for j in range(ORDER):
            y = ya + NODES[j] * width
            e = math.exp(y)
            la = math.log(c1 + e)
            lb = math.log(c2 + e)
            wk = WEIGHTS[j] * width * math.exp(y - a1 * la - b1 * lb - m0)
            total += wk
            g0 -= wk * la
            g1 -= wk / (c1 + e)
            g2 -= wk * lb
            g3 -= wk / (c2 + e)
    return m0, total, g0, g1, g2, g3


@numba.njit(cache=True, error_model="numpy")
def pnbd_row_core(r: float, alpha: float, s: float, beta: float, x: float, t_x: float, T: float,
                  grad: np.ndarray) -> tuple[float, float]:
    """log L of one customer less log Γ(r+x)/Γ(r), and log P(alive at T).

    ``grad`` gets ∂/∂(r, α, s, β) of that, i.e. ∂log L less ψ(r+x) − ψ(r) in ``grad[0]``:
    the caller adds the Gamma-function terms (:func:`pnbd_row`).
    """
    a1 = r + x
    b1 = s + 1.0
    log_aT = math.log(alpha + T)
    log_bT = math.log(beta + T)
    pre = r * math.log(alpha) + s * math.log(beta)
    # First term: alive at T.
    l_a = -a1 * log_aT - s * log_bT
    ga0 = -log_aT
    ga1 = -a1 / (alpha + T)
    ga2 = -log_bT
    ga3 = -s / (beta + T)
    span = T - t_x
    if span <= 0.0:
        grad[0] = math.log(alpha) + ga0
        grad[1] = r / alpha + ga1
        grad[2] = math.log(beta) + ga2
        grad[3] = s / beta + ga3
        return pre + l_a, 0.0
    # Second term: s·I, I by quadrature in y (module docstring).
    m0, total, g0, g1, g2, g3 = _tail_quad(a1, b1, alpha, beta, t_x, span)
    l_b = math.log(s) + m0 + math.log(total)
    # ∂ log(s·I): weighted means of the integrand's log-derivatives, plus 1/s.
    gb0 = g0 / total
    gb1 = a1 * g1 / total
    gb2 = g2 / total + 1.0 / s
    gb3 = b1 * g3 / total
    top = max(l_a, l_b)
    lse = top + math.log(math.exp(l_a - top) + math.exp(l_b - top))
    pa = math.exp(l_a - lse)
    pb = 1.0 - pa
    grad[0] = math.log(alpha) + pa * ga0 + pb * gb0
    grad[1] = r / alpha + pa * ga1 + pb * gb1
    grad[2] = math.log(beta) + pa * ga2 + pb * gb2
    grad[3] = s / beta + pa * ga3 + pb * gb3
    return pre + lse, l_a - lse


@numba.njit(cache=True, error_model="numpy")
def _segment_quad(a1: float, b1: float, alpha: float, beta: float, lo: float, width: float,
                  la_lo: float, lb_lo: float) -> tuple[float, float, float, float, float]:
    """The five integrals of :func:`_tail_quad` over [lo, lo + width], relative to f(lo).

    ``la_lo``, ``lb_lo`` are log(α+lo), log(β+lo). A segment shorter than a fraction of the
    integrand's scale ℓ = min(h, α+lo) (over which it is nearly exponential, its nearest
    singularity at least ℓ away) takes 4 to 8 nodes in τ (:data:`SHORT_REACH`); a longer one the
    change of variable of :func:`_tail_quad`.
    """
    big_a = alpha + lo
    big_b = beta + lo
    h = 1.0 / (a1 / big_a + b1 / big_b)
    q = width / min(h, big_a)
    if q > SHORT_REACH[-1]:
        _, total, g0, g1, g2, g3 = _tail_quad(a1, b1, alpha, beta, lo, width)
        return total * h, g0 * h, g1 * h, g2 * h, g3 * h
    k = 0
    while q > SHORT_REACH[k]:
        k += 1
    inv_a = 1.0 / big_a
    inv_b = 1.0 / big_b
    total = 0.0
    g0 = 0.0
    g1 = 0.0
    g2 = 0.0
    g3 = 0.0
    for j in range(SHORT_START[k], SHORT_START[k + 1]):
        u = width * SHORT_NODES[j]
        da = math.log1p(u * inv_a)
        db = math.log1p(u * inv_b)
        wk = width * SHORT_WEIGHTS[j] * math.exp(-a1 * da - b1 * db)
        total += wk
        g0 -= wk * (la_lo + da)
        g1 -= wk / (big_a + u)
        g2 -= wk * (lb_lo + db)
        g3 -= wk / (big_b + u)
    return total, g0, g1, g2, g3


@numba.njit(cache=True, error_model="numpy")
def pnbd_row(r: float, alpha: float, s: float, beta: float, x: float, t_x: float, T: float,
             grad: np.ndarray) -> tuple[float, float]:
    """log L of one customer and log P(alive at T); ``grad`` gets ∂log L/∂(r, α, s, β)."""
    ll, alive = pnbd_row_core(r, alpha, s, beta, x, t_x, T, grad)
    grad[0] += digamma(r + x) - digamma(r)
    return ll + math.lgamma(r + x) - math.lgamma(r), alive


@numba.njit(cache=True, error_model="numpy")
def _pnbd_rows(p0, p1, p2, p3, x, t_x, T, out, grads):
    g = np.empty(4)
    for i in range(x.size):
        out[i], _ = pnbd_row(p0[i], p1[i], p2[i], p3[i], x[i], t_x[i], T[i], g)
        for k in range(4):
            grads[k, i] = g[k]


@numba.njit(cache=True, error_model="numpy")
def _pnbd_alive_rows(p0, p1, p2, p3, x, t_x, T, out):
    g = np.empty(4)
    for i in range(x.size):
        _, out[i] = pnbd_row(p0[i], p1[i], p2[i], p3[i], x[i], t_x[i], T[i], g)


def _broadcast(*args: Any) -> list[np.ndarray]:
    return [np.ascontiguousarray(a, dtype=np.float64).ravel()
            for a in np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in args))]


def pnbd_loglike(r, alpha, s, beta, x, t_x, T) -> tuple[np.ndarray, np.ndarray]:
    """log L and its gradient (4, ...) with respect to (r, α, s, β), numpy broadcasting."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in (r, alpha, s, beta, x, t_x, T)))
    args = _broadcast(r, alpha, s, beta, x, t_x, T)
    out = np.empty(args[0].size)
    grads = np.empty((4, args[0].size))
    _pnbd_rows(*args, out, grads)
    return out.reshape(shape), grads.reshape(4, *shape)


def pnbd_log_p_alive(r, alpha, s, beta, x, t_x, T) -> np.ndarray:
    """log P(alive at T | x, t_x, T), numpy broadcasting: the share of the first term of L."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in (r, alpha, s, beta, x, t_x, T)))
    args = _broadcast(r, alpha, s, beta, x, t_x, T)
    out = np.empty(args[0].size)
    _pnbd_alive_rows(*args, out)
    return out.reshape(shape)


# -- the packed buffer and the log density on the log scale -------------------------------
def packed_order(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """The order of the rows in :func:`pack_rows`' buffer: by x, then T, then t_x descending."""
    return np.lexsort((-np.asarray(t_x, dtype=np.float64), T, x))


def pack_rows(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray,
              priors: Mapping[str, Mapping[str, Any]], params: tuple[str, ...],
              order: np.ndarray | None = None) -> np.ndarray | None:
    """The :func:`tenure.models._fast.pack` buffer of the rows and their breakpoints; ``None`` if a prior has
    no closed form on the log scale.

    Layout after the header: n; x, t_x, T, w (rows sorted by x, then T, then t_x descending; the
    MBG/NBD's kernel reads only these); each row's index, among its x's breakpoints, of min(t_x, T)
    and of T; the n_b distinct values of t_x and T; the number of distinct x, and per distinct x
    the end of its rows and of its breakpoints (cumulative); the breakpoints of each x in turn
    (indices into the distinct values, ascending). :func:`pnbd_logp_and_grad` integrates each
    segment between consecutive breakpoints of an x once. ``order``: :func:`packed_order` of the rows,
    where the caller has it already.
    """
    x, t_x, T, w = (np.asarray(v, dtype=np.float64).ravel() for v in (x, t_x, T, w))
    order = packed_order(x, t_x, T) if order is None else order
    x, t_x, T, w = x[order], t_x[order], T[order], w[order]
    values = np.unique(np.concatenate([t_x, T]))
    nb = values.size
    x_distinct, x_index = np.unique(x, return_inverse=True)
    key_t = x_index * nb + np.searchsorted(values, np.minimum(t_x, T))
    key_T = x_index * nb + np.searchsorted(values, T)
    keys = np.unique(np.concatenate([key_t, key_T]))
    bp_end = np.searchsorted(keys, (np.arange(x_distinct.size) + 1) * nb)
    bp_start = np.concatenate([[0], bp_end[:-1]])
    k_t = np.searchsorted(keys, key_t) - bp_start[x_index]
    k_T = np.searchsorted(keys, key_T) - bp_start[x_index]
    row_end = np.searchsorted(x, x_distinct, side="right")
    return _fast.pack([priors[p] for p in params], x.size, x, t_x, T, w, k_t, k_T, nb, values,
                      x_distinct.size, row_end, bp_end, keys % nb)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _grouped_walk(r: float, alpha: float, s: float, beta: float, buf: np.ndarray, ll: np.ndarray,
                  alive_share: np.ndarray, dest: np.ndarray,
                  rows: bool) -> tuple[float, float, float, float, float, float]:
    """Σ w·log L over the packed rows without the terms of r, α, s, β alone; Σ w; the gradient's sums.

    Grouped evaluation (module docstring): per distinct x, the Gamma functions of r + x once and
    each segment between consecutive breakpoints once; each row's integral over [t_x, T] is then
    the sum of the segments it spans, taken from T downwards, each step rescaling the sum by the
    integrand's fall across the segment (so the running sum stays relative to the integrand at
    its left end and no term is subtracted). With ``rows``, also each packed row's complete log L
    into ``ll[dest[i]]`` and its P(alive at T) (the share of the "alive at T" term) into ``alive_share[dest[i]]``
    (``dest``: each packed row's position in the caller's order).
    """
    o = _fast.data_start(buf)
    n = int(buf[o])
    o += 1
    o_x, o_T, o_w, o_kt, o_kT = o, o + 2 * n, o + 3 * n, o + 4 * n, o + 5 * n
    o += 6 * n
    nb = int(buf[o])
    o_v = o + 1
    o = o_v + nb
    nx = int(buf[o])
    o_re = o + 1
    o_be = o_re + nx
    o_bp = o_be + nx
    b1 = s + 1.0
    la_v = np.empty(nb)
    lb_v = np.empty(nb)
    for j in range(nb):
        la_v[j] = math.log(alpha + buf[o_v + j])
        lb_v[j] = math.log(beta + buf[o_v + j])
    k_max = 0
    for g in range(nx):
        k_max = max(k_max, int(buf[o_be + g]) - (int(buf[o_be + g - 1]) if g > 0 else 0))
    lf = np.empty(k_max)
    fall = np.empty(k_max)
    seg = np.empty((k_max, 5))
    lp = 0.0
    const = r * math.log(alpha) + s * math.log(beta) - math.lgamma(r)
    d0 = 0.0
    d1 = 0.0
    d2 = 0.0
    d3 = 0.0
    w_total = 0.0
    r0 = 0
    p0 = 0
    for g in range(nx):
        r1 = int(buf[o_re + g])
        p1 = int(buf[o_be + g])
        a1 = r + buf[o_x + r0]
        lg_a1 = math.lgamma(a1)
        kx = p1 - p0
        # log f at each breakpoint, f(τ) = (α+τ)^−(r+x) (β+τ)^−(s+1); then each segment's integrals
        # relative to f at its left end, and f's fall across it.
        for i in range(kx):
            v = int(buf[o_bp + p0 + i])
            lf[i] = -a1 * la_v[v] - b1 * lb_v[v]
        for i in range(kx - 1):
            v = int(buf[o_bp + p0 + i])
            lo = buf[o_v + v]
            width = buf[o_v + int(buf[o_bp + p0 + i + 1])] - lo
            seg[i, 0], seg[i, 1], seg[i, 2], seg[i, 3], seg[i, 4] = _segment_quad(
                a1, b1, alpha, beta, lo, width, la_v[v], lb_v[v])
            fall[i] = math.exp(lf[i + 1] - lf[i])
        w_x = 0.0
        k_cur = -1
        k_top = -1
        acc0 = acc1 = acc2 = acc3 = acc4 = 0.0
        drop = 1.0
        bt = lat = lbt = cat = cbt = 0.0
        for i in range(r0, r1):
            k_T = int(buf[o_kT + i])
            if k_T != k_top:
                # A new T: the walk restarts at it (rows of one x and T come with t_x descending).
                k_top = k_T
                k_cur = k_T
                acc0 = acc1 = acc2 = acc3 = acc4 = 0.0
                drop = 1.0
                T = buf[o_T + i]
                bt = beta + T
                v = int(buf[o_bp + p0 + k_T])
                lat = la_v[v]
                lbt = lb_v[v]
                cat = a1 / (alpha + T)
                cbt = s / bt
            k_t = int(buf[o_kt + i])
            while k_cur > k_t:
                k_cur -= 1
                e = fall[k_cur]
                acc0 = acc0 * e + seg[k_cur, 0]
                acc1 = acc1 * e + seg[k_cur, 1]
                acc2 = acc2 * e + seg[k_cur, 2]
                acc3 = acc3 * e + seg[k_cur, 3]
                acc4 = acc4 * e + seg[k_cur, 4]
                drop *= e
            # L / f(t_x) = (β+T)·f(T)/f(t_x) + s·I/f(t_x), both terms positive.
            alive = bt * drop
            inv_q = 1.0 / (alive + s * acc0)
            pa = alive * inv_q
            c = s * inv_q
            wi = buf[o_w + i]
            ll_i = lf[k_t] - math.log(inv_q)
            if rows:
                ll[dest[i]] = ll_i + lg_a1 + const
                alive_share[dest[i]] = pa
            lp += wi * ll_i
            d0 += wi * (c * acc1 - pa * lat)
            d1 += wi * (a1 * c * acc2 - pa * cat)
            d2 += wi * (c * acc3 + acc0 * inv_q - pa * lbt)
            d3 += wi * (b1 * c * acc4 - pa * cbt)
            w_x += wi
        lp += w_x * lg_a1
        d0 += w_x * digamma(a1)
        w_total += w_x
        r0 = r1
        p0 = p1
    return lp, w_total, d0, d1, d2, d3


@numba.njit(cache=True, error_model="numpy")
def pnbd_logp_and_grad(theta: np.ndarray, buf: np.ndarray, grad: np.ndarray) -> float:
    """Log density at θ = (log r, log α, log s, log β); writes its gradient into ``grad``.

    The likelihood's sums come from :func:`_grouped_walk`; the terms of the parameters alone are added here.
    """
    lp = prior_logp(theta, buf, grad)
    r = math.exp(theta[0])
    alpha = math.exp(theta[1])
    s = math.exp(theta[2])
    beta = math.exp(theta[3])
    nothing = np.empty(0)
    walk, w_total, d0, d1, d2, d3 = _grouped_walk(r, alpha, s, beta, buf, nothing, nothing, np.empty(0, np.int64),
                                                  False)
    lp += walk
    log_a = math.log(alpha)
    log_b = math.log(beta)
    lp += w_total * (r * log_a + s * log_b - math.lgamma(r))
    d0 += w_total * (log_a - digamma(r))
    d1 += w_total * r / alpha
    d2 += w_total * log_b
    d3 += w_total * s / beta
    grad[0] += r * d0
    grad[1] += alpha * d1
    grad[2] += s * d2
    grad[3] += beta * d3
    return lp


ROW_PRIORS = {name: {"dist": "HalfFlat"} for name in ("r", "alpha", "s", "beta")}
"""Priors of the buffers packed only for per-row values (:func:`pnbd_rows_over_draws`), which read none."""


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _grouped_draws(params: np.ndarray, buf: np.ndarray, order: np.ndarray, ll: np.ndarray, alive: np.ndarray) -> None:
    for d in range(params.shape[0]):
        _grouped_walk(params[d, 0], params[d, 1], params[d, 2], params[d, 3], buf, ll[d], alive[d], order, True)


def pnbd_rows_over_draws(r: np.ndarray, alpha: np.ndarray, s: np.ndarray, beta: np.ndarray, x: np.ndarray,
                         t_x: np.ndarray, T: np.ndarray, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """log L and P(alive at T) of each row for each draw, both (n_draws, n_rows), by the grouped walk.

    ``r``, ``alpha``, ``s``, ``beta`` hold one value per draw (no covariates: the same for every row).
    The rows are packed once (:func:`pack_rows`) and each draw evaluates every segment between
    breakpoints once, as the log density does, instead of a full quadrature per row and draw: the
    same values as :func:`pnbd_loglike` and :func:`pnbd_log_p_alive` to about 1e-10 relative (the
    tests). ``threads`` splits the draws into as many contiguous blocks, run on threads (the kernel
    releases the GIL); the values do not depend on it.
    """
    params = np.ascontiguousarray(np.column_stack([np.ravel(v) for v in (r, alpha, s, beta)]), dtype=np.float64)
    x, t_x, T = (np.asarray(v, dtype=np.float64).ravel() for v in (x, t_x, T))
    n_draws, n = params.shape[0], x.size
    ll = np.empty((n_draws, n))
    alive = np.empty((n_draws, n))
    if n == 0 or n_draws == 0:
        return ll, alive
    order = packed_order(x, t_x, T)
    buf = pack_rows(x, t_x, T, np.ones(n), ROW_PRIORS, tuple(ROW_PRIORS), order=order)
    edges = np.linspace(0, n_draws, max(1, threads) + 1, dtype=int)
    blocks = [(a, b) for a, b in itertools.pairwise(edges) if b > a]
    if len(blocks) == 1:
        _grouped_draws(params, buf, order, ll, alive)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(blocks)) as pool:
            list(pool.map(lambda ab: _grouped_draws(params[ab[0]:ab[1]], buf, order, ll[ab[0]:ab[1]],
                                                    alive[ab[0]:ab[1]]), blocks))
    return ll, alive


# -- PyMC route ----------------------------------------------------------------------------
def row_loglike_op(kernel: Any, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> Any:
    """A PyTensor ``Op``: four per-row parameter vectors → log L per row, with the kernel's gradient.

    ``kernel(p0, p1, p2, p3, x, t_x, T)`` returns (log L, gradient (4, n)) like
    :func:`pnbd_loglike`; covariates enter through the per-row parameters, so the PyMC route
    and the closed-form route evaluate the same code.
    """
    import pytensor.tensor as pt
    from pytensor.graph import Apply, Op

    data = tuple(np.asarray(v, dtype=np.float64) for v in (x, t_x, T))

    class RowLogLike(Op):
        def make_node(self, *params):
            params = [pt.as_tensor_variable(p).astype("float64") for p in params]
            return Apply(self, params, [pt.dvector(), pt.dmatrix()])

        def perform(self, node, inputs, outputs):
            ll, grads = kernel(*inputs, *data)
            outputs[0][0] = np.asarray(ll, dtype=np.float64)
            outputs[1][0] = np.asarray(grads, dtype=np.float64)

        def grad(self, inputs, output_grads):
            _, grads = self(*inputs)
            g = output_grads[0]
            return [g * grads[k] for k in range(4)]

    op = RowLogLike()
    n = data[0].size

    def loglike(p0, p1, p2, p3):
        return op(*(pt.broadcast_to(p, (n,)) for p in (p0, p1, p2, p3)))[0]

    return loglike


def pnbd_logp_cfunc(dim, x_, grad_, logp_, data_):  # pragma: no cover - compiled as nutpie's C entry point
    theta, grad, buf = _fast.cfunc_arrays(dim, x_, grad_, data_)
    return _fast.cfunc_status(pnbd_logp_and_grad(theta, buf, grad), grad, logp_)
