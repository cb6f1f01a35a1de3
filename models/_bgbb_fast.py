"""BG/BB on the fast route (:mod:`tenure.models._fast`): closed-form log density and gradient.

θ = (log α, log β, log γ, log δ). The density is the count-weighted BG/BB
log-likelihood of :func:`tenure.models.bgbb.bgbb_logp` (Fader, Hardie & Shang 2010,
eq. 5), the log of a sum of n − t_x + 1 Beta-function terms summed stably (max first),
plus the priors and the log-Jacobian, exactly as PyMC's model log density (the tests
compare the two to 1e-9). The gradient of each term's log is analytic (digamma) and the
sum's is their softmax-weighted mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from tenure.models import _fast
from tenure.models._fast import data_start, digamma, log_beta, prior_logp

PARAMS = ("alpha", "beta", "gamma", "delta")


def pack_data(x: np.ndarray, t_x: np.ndarray, n: np.ndarray, w: np.ndarray,
              priors: Mapping[str, Mapping[str, Any]]) -> np.ndarray | None:
    """The buffer of :func:`logp_and_grad`: header, rows, then per row x, t_x, n and its weight."""
    return _fast.pack([priors[k] for k in PARAMS], [len(x)], x, t_x, n, w)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def logp_and_grad(theta: np.ndarray, buf: np.ndarray, grad: np.ndarray) -> float:
    """Log density at ``theta`` (log α, log β, log γ, log δ); writes its gradient into ``grad``."""
    lp = prior_logp(theta, buf, grad)
    o = data_start(buf)
    rows = int(buf[o])
    o += 1
    a = math.exp(theta[0])
    b = math.exp(theta[1])
    g = math.exp(theta[2])
    d = math.exp(theta[3])
    norm = log_beta(a, b) + log_beta(g, d)
    n_norm = (digamma(a) - digamma(a + b), digamma(b) - digamma(a + b),
              digamma(g) - digamma(g + d), digamma(d) - digamma(g + d))
    acc = np.zeros(4)
    width = 1
    for m in range(rows):
        width = max(width, int(buf[o + 2 * rows + m] - buf[o + rows + m]) + 1)
    terms = np.empty(width)
    dterms = np.empty((width, 4))
    for m in range(rows):
        x = buf[o + m]
        t_x = buf[o + rows + m]
        n = buf[o + 2 * rows + m]
        w = buf[o + 3 * rows + m]
        ps_ax = digamma(a + x)
        # alive after n opportunities: B(α+x, β+n−x) B(γ, δ+n)
        terms[0] = log_beta(a + x, b + n - x) + log_beta(g, d + n)
        dterms[0, 0] = ps_ax - digamma(a + b + n)
        dterms[0, 1] = digamma(b + n - x) - digamma(a + b + n)
        dterms[0, 2] = digamma(g) - digamma(g + d + n)
        dterms[0, 3] = digamma(d + n) - digamma(g + d + n)
        k_n = int(n - t_x)
        for i in range(k_n):  # dropped out after opportunity t_x + i: B(α+x, β+t_x−x+i) B(γ+1, δ+t_x+i)
            s = t_x + i
            terms[i + 1] = log_beta(a + x, b + s - x) + log_beta(g + 1.0, d + s)
            dterms[i + 1, 0] = ps_ax - digamma(a + b + s)
            dterms[i + 1, 1] = digamma(b + s - x) - digamma(a + b + s)
            dterms[i + 1, 2] = digamma(g + 1.0) - digamma(g + d + s + 1.0)
            dterms[i + 1, 3] = digamma(d + s) - digamma(g + d + s + 1.0)
        top = terms[0]
        for i in range(1, k_n + 1):
            top = max(top, terms[i])
        total = 0.0
        for i in range(k_n + 1):
            total += math.exp(terms[i] - top)
        lp += w * (top + math.log(total) - norm)
        for i in range(k_n + 1):
            share = w * math.exp(terms[i] - top) / total
            for j in range(4):
                acc[j] += share * dterms[i, j]
        for j in range(4):
            acc[j] -= w * n_norm[j]
    grad[0] += a * acc[0]
    grad[1] += b * acc[1]
    grad[2] += g * acc[2]
    grad[3] += d * acc[3]
    return lp


def logp_cfunc(dim, x_, grad_, logp_, data_):  # pragma: no cover - compiled as nutpie's C entry point
    theta, grad, buf = _fast.cfunc_arrays(dim, x_, grad_, data_)
    return _fast.cfunc_status(logp_and_grad(theta, buf, grad), grad, logp_)


def fast_model(buf: np.ndarray) -> _fast.FastModel:
    """The BG/BB model on the fast route, from the buffer of :func:`pack_data`."""
    return _fast.FastModel(PARAMS, buf, logp_and_grad, logp_cfunc)
