"""The MBG/NBD likelihood and its gradient in Numba (closed form), on the route of :mod:`tenure.models._fast`.

Batislam, Denizel & Filiztekin (2007), "Empirical validation and comparison of models for
customer base analysis", IJRM 24(3), eq. (5): as the BG/NBD but a customer may also drop out
right after her first purchase, so every customer, repeat buyer or not, has two terms:

L = B(a, b+x+1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
    + B(a+1, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)).

Since B(a+1, b+x)/B(a, b+x+1) = a/(b+x), log L is the first term's log plus
softplus(log a − log(b+x) + (r+x)(log(α+T) − log(α+t_x))): no subtraction of nearly equal
terms, and the analytic gradient uses digamma only.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from tenure.models import _fast
from tenure.models._fast import digamma, prior_logp
from tenure.models._pnbd_fast import _broadcast


@numba.njit(cache=True, error_model="numpy", inline="always")
def _softplus_and_sigmoid(odds: float) -> tuple[float, float]:
    """log(1 + e^odds) and its derivative 1/(1 + e^−odds), without overflow on either side."""
    if odds > 0:
        e = math.exp(-odds)
        return odds + math.log1p(e), 1.0 / (1.0 + e)
    e = math.exp(odds)
    return math.log1p(e), e / (1.0 + e)


@numba.njit(cache=True, error_model="numpy")
def mbgnbd_row(r: float, alpha: float, a: float, b: float, x: float, t_x: float, T: float,
               grad: np.ndarray) -> tuple[float, float]:
    """log L of one customer and log P(alive at T); ``grad`` gets ∂log L/∂(r, α, a, b)."""
    log_aT = math.log(alpha + T)
    log_atx = math.log(alpha + t_x)
    first = (math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha) + math.lgamma(b + x + 1.0)
             - math.lgamma(a + b + x + 1.0) - math.lgamma(b) + math.lgamma(a + b) - (r + x) * log_aT)
    ratio = log_aT - log_atx
    odds = math.log(a) - math.log(b + x) + (r + x) * ratio
    soft, sig = _softplus_and_sigmoid(odds)
    ps_abx = digamma(a + b + x + 1.0)
    ps_ab = digamma(a + b)
    grad[0] = digamma(r + x) - digamma(r) + math.log(alpha) - log_aT + sig * ratio
    grad[1] = r / alpha - (r + x) / (alpha + T) + sig * (r + x) * (1.0 / (alpha + T) - 1.0 / (alpha + t_x))
    grad[2] = ps_ab - ps_abx + sig / a
    grad[3] = digamma(b + x + 1.0) - ps_abx - digamma(b) + ps_ab - sig / (b + x)
    return first + soft, -soft


@numba.njit(cache=True, error_model="numpy")
def _mbgnbd_rows(p0, p1, p2, p3, x, t_x, T, out, grads):
    g = np.empty(4)
    for i in range(x.size):
        out[i], _ = mbgnbd_row(p0[i], p1[i], p2[i], p3[i], x[i], t_x[i], T[i], g)
        for k in range(4):
            grads[k, i] = g[k]


def mbgnbd_loglike(r, alpha, a, b, x, t_x, T) -> tuple[np.ndarray, np.ndarray]:
    """log L and its gradient (4, ...) with respect to (r, α, a, b), numpy broadcasting."""
    shape = np.broadcast_shapes(*(np.shape(v) for v in (r, alpha, a, b, x, t_x, T)))
    args = _broadcast(r, alpha, a, b, x, t_x, T)
    out = np.empty(args[0].size)
    grads = np.empty((4, args[0].size))
    _mbgnbd_rows(*args, out, grads)
    return out.reshape(shape), grads.reshape(4, *shape)


@numba.njit(cache=True, error_model="numpy")
def mbgnbd_logp_and_grad(theta: np.ndarray, buf: np.ndarray, grad: np.ndarray) -> float:
    """Log density at θ = (log r, log α, log a, log b); writes its gradient into ``grad``.

    The same terms as :func:`mbgnbd_row`, summed with the rows grouped by frequency (the buffer of
    :func:`tenure.models._pnbd_fast.pack_rows` sorts them by x and records where each x ends): the
    Gamma and digamma functions of x once per distinct x, the terms of the parameters alone once,
    and per row only its two logarithms and the softplus of the drop-out odds.
    """
    lp = prior_logp(theta, buf, grad)
    o = _fast.data_start(buf)
    n = int(buf[o])
    o += 1
    o_x, o_tx, o_T, o_w = o, o + n, o + 2 * n, o + 3 * n
    o += 6 * n
    nb = int(buf[o])
    o += 1 + nb
    nx = int(buf[o])
    o_re = o + 1
    r = math.exp(theta[0])
    alpha = math.exp(theta[1])
    a = math.exp(theta[2])
    b = math.exp(theta[3])
    log_a = math.log(a)
    d0 = d1 = d2 = d3 = 0.0
    w_total = 0.0
    r0 = 0
    for g in range(nx):
        r1 = int(buf[o_re + g])
        x = buf[o_x + r0]
        rx = r + x
        log_bx = math.log(b + x)
        w_x = s_log_at = s_soft = s_sig = s_sig_ratio = s_inv_at = s_sig_dinv = 0.0
        for i in range(r0, r1):
            w = buf[o_w + i]
            at = alpha + buf[o_T + i]
            atx = alpha + buf[o_tx + i]
            log_at = math.log(at)
            ratio = log_at - math.log(atx)
            odds = log_a - log_bx + rx * ratio
            soft, sig = _softplus_and_sigmoid(odds)
            w_x += w
            s_log_at += w * log_at
            s_soft += w * soft
            s_sig += w * sig
            s_sig_ratio += w * sig * ratio
            s_inv_at += w / at
            s_sig_dinv += w * sig * (1.0 / at - 1.0 / atx)
        ps_abx = digamma(a + b + x + 1.0)
        lp += (w_x * (math.lgamma(rx) + math.lgamma(b + x + 1.0) - math.lgamma(a + b + x + 1.0))
               - rx * s_log_at + s_soft)
        d0 += w_x * digamma(rx) - s_log_at + s_sig_ratio
        d1 += rx * (s_sig_dinv - s_inv_at)
        d2 += s_sig / a - w_x * ps_abx
        d3 += w_x * (digamma(b + x + 1.0) - ps_abx) - s_sig / (b + x)
        w_total += w_x
        r0 = r1
    ps_ab = digamma(a + b)
    lp += w_total * (r * math.log(alpha) - math.lgamma(r) - math.lgamma(b) + math.lgamma(a + b))
    d0 += w_total * (math.log(alpha) - digamma(r))
    d1 += w_total * r / alpha
    d2 += w_total * ps_ab
    d3 += w_total * (ps_ab - digamma(b))
    grad[0] += r * d0
    grad[1] += alpha * d1
    grad[2] += a * d2
    grad[3] += b * d3
    return lp


def mbgnbd_logp_cfunc(dim, x_, grad_, logp_, data_):  # pragma: no cover - compiled as nutpie's C entry point
    theta, grad, buf = _fast.cfunc_arrays(dim, x_, grad_, data_)
    return _fast.cfunc_status(mbgnbd_logp_and_grad(theta, buf, grad), grad, logp_)
