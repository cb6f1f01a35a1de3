"""sBG without covariates on the fast route (:mod:`tenure.models._fast`): closed-form log density and gradient.

θ = (log α_1..α_K, log β_1..β_K), K = 1 when pooled, else one pair per cohort (PyMC's
order: the ``alpha_log__`` vector, then ``beta_log__``). The density is the count-weighted
sBG log-likelihood of :func:`tenure.models.sbg.sbg_logp` (Fader & Hardie 2007, eqs. 2, 3
and 6) plus the priors and the log-Jacobian, exactly as PyMC's model log density (the
tests compare the two to 1e-9); the gradient is analytic (digamma).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numba
import numpy as np
from tenure.models import _fast
from tenure.models._fast import data_start, digamma, log_beta, prior_logp

PARAMS = ("alpha", "beta")


def pack_data(cohort: np.ndarray, periods: np.ndarray, churned: np.ndarray, w: np.ndarray, n_cohorts: int,
              priors: Mapping[str, Mapping[str, Any]]) -> np.ndarray | None:
    """The buffer of :func:`logp_and_grad`: header, K, rows, then per row its cohort index, periods, churned, weight.

    ``cohort`` holds each row's cohort index (all 0 when pooled, ``n_cohorts`` = 1).
    """
    n = len(periods)
    return _fast.pack([priors["alpha"]] * n_cohorts + [priors["beta"]] * n_cohorts, [n_cohorts, n],
                      cohort, periods, churned, w)


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def logp_and_grad(theta: np.ndarray, buf: np.ndarray, grad: np.ndarray) -> float:
    """Log density at ``theta`` (log α per cohort, then log β per cohort); writes its gradient into ``grad``."""
    lp = prior_logp(theta, buf, grad)
    o = data_start(buf)
    k_n = int(buf[o])
    n = int(buf[o + 1])
    o += 2
    d_alpha = np.zeros(k_n)
    d_beta = np.zeros(k_n)
    for m in range(n):
        k = int(buf[o + m])
        t = buf[o + n + m]
        churned = buf[o + 2 * n + m]
        w = buf[o + 3 * n + m]
        alpha = math.exp(theta[k])
        beta = math.exp(theta[k_n + k])
        ps_ab = digamma(alpha + beta)
        ps_abt = digamma(alpha + beta + t)
        # − log B(α, β)
        lp -= w * log_beta(alpha, beta)
        d_alpha[k] -= w * (digamma(alpha) - ps_ab)
        d_beta[k] -= w * (digamma(beta) - ps_ab)
        if churned == 1.0:  # churned in period t: B(α+1, β+t−1)
            lp += w * log_beta(alpha + 1.0, beta + t - 1.0)
            d_alpha[k] += w * (digamma(alpha + 1.0) - ps_abt)
            d_beta[k] += w * (digamma(beta + t - 1.0) - ps_abt)
        else:  # still active after t periods: B(α, β+t)
            lp += w * log_beta(alpha, beta + t)
            d_alpha[k] += w * (digamma(alpha) - ps_abt)
            d_beta[k] += w * (digamma(beta + t) - ps_abt)
    for k in range(k_n):
        grad[k] += math.exp(theta[k]) * d_alpha[k]
        grad[k_n + k] += math.exp(theta[k_n + k]) * d_beta[k]
    return lp


def logp_cfunc(dim, x_, grad_, logp_, data_):  # pragma: no cover - compiled as nutpie's C entry point
    theta, grad, buf = _fast.cfunc_arrays(dim, x_, grad_, data_)
    return _fast.cfunc_status(logp_and_grad(theta, buf, grad), grad, logp_)


def fast_model(buf: np.ndarray, cohorts: Sequence[str] | None) -> _fast.FastModel:
    """The sBG on the fast route; ``cohorts`` names the cohorts of a per-cohort model (``None``: pooled)."""
    if cohorts is None:
        return _fast.FastModel(PARAMS, buf, logp_and_grad, logp_cfunc)
    k = len(cohorts)
    return _fast.FastModel(PARAMS, buf, logp_and_grad, logp_cfunc, shapes={"alpha": (k,), "beta": (k,)},
                           dims={"alpha": "cohort", "beta": "cohort"}, coords={"cohort": list(cohorts)})
