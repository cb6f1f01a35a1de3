"""Gamma-Gamma on the fast route (:mod:`tenure.models._fast`): closed-form log density and gradient.

θ = (log p, log q, log v). The density is the count-weighted log f(m̄ | p, q, v, x) of
:func:`tenure.models.gamma_gamma.gamma_gamma_logp` (Fader & Hardie 2013, eq. 4) plus the
priors and the log-Jacobian, exactly as PyMC's model log density (the tests compare the
two to 1e-9); the gradient is analytic (digamma).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from tenure.models import _fast
from tenure.models._fast import data_start, digamma, prior_logp

PARAMS = ("p", "q", "v")


def pack_data(x: np.ndarray, mbar: np.ndarray, w: np.ndarray,
              priors: Mapping[str, Mapping[str, Any]]) -> np.ndarray | None:
    """The buffer of :func:`logp_and_grad`: header, rows, then per row x, m̄, log x, log m̄ and its weight."""
    x, mbar = np.asarray(x, dtype=np.float64), np.asarray(mbar, dtype=np.float64)
    return _fast.pack([priors[k] for k in PARAMS], [len(x)], x, mbar, np.log(x), np.log(mbar), w)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def logp_and_grad(theta: np.ndarray, buf: np.ndarray, grad: np.ndarray) -> float:
    """Log density at ``theta`` (log p, log q, log v); writes its gradient into ``grad``."""
    lp = prior_logp(theta, buf, grad)
    o = data_start(buf)
    n = int(buf[o])
    o += 1
    p = math.exp(theta[0])
    q = math.exp(theta[1])
    v = math.exp(theta[2])
    log_v = theta[2]
    lg_q = math.lgamma(q)
    ps_q = digamma(q)
    dp = 0.0
    dq = 0.0
    dv = 0.0
    for m in range(n):
        x = buf[o + m]
        mbar = buf[o + n + m]
        log_x = buf[o + 2 * n + m]
        log_m = buf[o + 3 * n + m]
        w = buf[o + 4 * n + m]
        px = p * x
        s = v + x * mbar
        log_s = math.log(s)
        lp += w * (math.lgamma(px + q) - math.lgamma(px) - lg_q + q * log_v + (px - 1.0) * log_m + px * log_x
                   - (px + q) * log_s)
        ps_pxq = digamma(px + q)
        dp += w * x * (ps_pxq - digamma(px) + log_m + log_x - log_s)
        dq += w * (ps_pxq - ps_q + log_v - log_s)
        dv += w * (q / v - (px + q) / s)
    grad[0] += p * dp
    grad[1] += q * dq
    grad[2] += v * dv
    return lp


def logp_cfunc(dim, x_, grad_, logp_, data_):  # pragma: no cover - compiled as nutpie's C entry point
    theta, grad, buf = _fast.cfunc_arrays(dim, x_, grad_, data_)
    return _fast.cfunc_status(logp_and_grad(theta, buf, grad), grad, logp_)


def fast_model(buf: np.ndarray) -> _fast.FastModel:
    """The Gamma-Gamma model on the fast route, from the buffer of :func:`pack_data`."""
    return _fast.FastModel(PARAMS, buf, logp_and_grad, logp_cfunc)
