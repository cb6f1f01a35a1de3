"""BG/NBD without covariates on the fast route (:mod:`tenure.models._fast`): closed-form log density and gradient.

The density is exactly the one PyMC samples for :class:`tenure.models.bgnbd.BGNBDModel`
(tests compare the two to 1e-9): on the unconstrained scale θ = (log r, log α, log a, log b)
it is the count-weighted BG/NBD log-likelihood (the odds form of
:func:`tenure.models.bgnbd.bgnbd_logp`), plus each prior's log density of exp(θ_k), plus
the log-Jacobian θ_k of the log transform. The gradient is analytic (digamma for the
Gamma and Beta functions). Importing this module does not import PyMC or PyTensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from tenure.models import _fast
from tenure.models._fast import data_start, digamma, prior_logp

PARAMS = ("r", "alpha", "a", "b")
EXPANDED = ("r_log__", "alpha_log__", "a_log__", "b_log__", "r", "alpha", "a", "b")
"""Variables of each draw, in the order and with the names of the PyMC route's posterior."""

__all__ = ["EXPANDED", "PARAMS", "digamma", "fast_model", "logp_and_grad", "logp_and_grad_py", "pack_data"]


def pack_data(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray, priors: Mapping[str, Mapping[str, Any]]
) -> np.ndarray | None:
    """The read-only buffer of :func:`logp_and_grad` (:func:`tenure.models._fast.pack`); ``None`` if a prior is
    not expressible.

    Data layout after the header: the numbers of distinct x, distinct T, distinct t_x of
    repeat buyers and repeat-buyer rows; then the distinct x with their total weights, the
    distinct T with their total weights and weighted x sums, the distinct t_x, and per
    repeat-buyer row the indices of its x, T and t_x and its weight.
    """
    x, t_x, T, w = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T, w))
    ux, xi = np.unique(x, return_inverse=True)
    uT, Ti = np.unique(T, return_inverse=True)
    pos = x > 0
    utx, txi = np.unique(t_x[pos], return_inverse=True)
    return _fast.pack(
        [priors[p] for p in PARAMS],
        [len(ux), len(uT), len(utx), int(pos.sum())],
        ux, np.bincount(xi, weights=w, minlength=len(ux)),
        uT, np.bincount(Ti, weights=w, minlength=len(uT)), np.bincount(Ti, weights=w * x, minlength=len(uT)),
        utx,
        xi[pos], Ti[pos], txi, w[pos],
    )


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def logp_and_grad(theta: np.ndarray, buf: np.ndarray, grad: np.ndarray) -> float:
    """Log density at ``theta`` (log r, log α, log a, log b); writes its gradient into ``grad``."""
    lp = prior_logp(theta, buf, grad)
    o = data_start(buf)
    n_x = int(buf[o])
    n_T = int(buf[o + 1])
    n_tx = int(buf[o + 2])
    n_pos = int(buf[o + 3])
    o += 4
    first_x = o
    r = math.exp(theta[0])
    alpha = math.exp(theta[1])
    a = math.exp(theta[2])
    b = math.exp(theta[3])
    log_alpha = theta[1]
    log_a = theta[2]
    lg_r = math.lgamma(r)
    lg_b = math.lgamma(b)
    lg_ab = math.lgamma(a + b)
    ps_r = digamma(r)
    ps_b = digamma(b)
    ps_ab = digamma(a + b)
    dr = 0.0
    dal = 0.0
    da = 0.0
    db = 0.0
    # Terms of distinct x: Γ(r+x)/Γ(r) α^r B(a, b+x)/B(a, b); log(b+x−1) kept for the repeat buyers.
    log_bx1 = np.empty(n_x)
    inv_bx1 = np.empty(n_x)
    for i in range(n_x):
        x = buf[o + i]
        wx = buf[o + n_x + i]
        lp += wx * (math.lgamma(r + x) - lg_r + r * log_alpha + math.lgamma(b + x) - math.lgamma(a + b + x)
                    - lg_b + lg_ab)
        ps_abx = digamma(a + b + x)
        dr += wx * (digamma(r + x) - ps_r + log_alpha)
        dal += wx * r / alpha
        da += wx * (ps_ab - ps_abx)
        db += wx * (digamma(b + x) - ps_abx - ps_b + ps_ab)
        if x > 0:
            log_bx1[i] = math.log(b + x - 1.0)
            inv_bx1[i] = 1.0 / (b + x - 1.0)
        else:
            log_bx1[i] = 0.0
            inv_bx1[i] = 0.0
    o += 2 * n_x
    # Terms of distinct T: −(r+x) log(α+T), summed as r·Σw log(α+T) + Σw·x log(α+T).
    log_T = np.empty(n_T)
    inv_T = np.empty(n_T)
    for j in range(n_T):
        s = alpha + buf[o + j]
        lt = math.log(s)
        log_T[j] = lt
        inv_T[j] = 1.0 / s
        w_T = buf[o + n_T + j]
        wx_T = buf[o + 2 * n_T + j]
        lp -= (r * w_T + wx_T) * lt
        dr -= w_T * lt
        dal -= (r * w_T + wx_T) / s
    o += 3 * n_T
    log_tx = np.empty(n_tx)
    inv_tx = np.empty(n_tx)
    for j in range(n_tx):
        s = alpha + buf[o + j]
        log_tx[j] = math.log(s)
        inv_tx[j] = 1.0 / s
    o += n_tx
    # Repeat buyers: softplus(log a − log(b+x−1) + (r+x)(log(α+T) − log(α+t_x))).
    for m in range(n_pos):
        i = int(buf[o + m])
        j = int(buf[o + n_pos + m])
        q = int(buf[o + 2 * n_pos + m])
        wm = buf[o + 3 * n_pos + m]
        x = buf[first_x + i]
        ratio = log_T[j] - log_tx[q]
        odds = log_a - log_bx1[i] + (r + x) * ratio
        if odds > 0:
            e = math.exp(-odds)
            lp += wm * (odds + math.log1p(e))
            sig = 1.0 / (1.0 + e)
        else:
            e = math.exp(odds)
            lp += wm * math.log1p(e)
            sig = e / (1.0 + e)
        ws = wm * sig
        dr += ws * ratio
        dal += ws * (r + x) * (inv_T[j] - inv_tx[q])
        da += ws / a
        db -= ws * inv_bx1[i]
    grad[0] += r * dr
    grad[1] += alpha * dal
    grad[2] += a * da
    grad[3] += b * db
    return lp


def logp_cfunc(dim, x_, grad_, logp_, data_):  # pragma: no cover - compiled as nutpie's C entry point
    theta, grad, buf = _fast.cfunc_arrays(dim, x_, grad_, data_)
    return _fast.cfunc_status(logp_and_grad(theta, buf, grad), grad, logp_)


def fast_model(buf: np.ndarray) -> _fast.FastModel:
    """The BG/NBD on the fast route, from the buffer of :func:`pack_data`."""
    return _fast.FastModel(PARAMS, buf, logp_and_grad, logp_cfunc)


def logp_and_grad_py(theta: np.ndarray, buf: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density and its gradient at ``theta``, for tests and checks."""
    return fast_model(buf).logp(theta)
