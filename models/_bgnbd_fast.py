"""NUTS for the BG/NBD without covariates: a closed-form log density and gradient in Numba, no PyMC.

The density is exactly the one PyMC samples for :class:`tenure.models.bgnbd.BGNBDModel`
(tests compare the two to 1e-9): on the unconstrained scale θ = (log r, log α, log a, log b)
it is the count-weighted BG/NBD log-likelihood (the odds form of
:func:`tenure.models.bgnbd.bgnbd_logp`), plus each prior's log density of exp(θ_k), plus
the log-Jacobian θ_k of the log transform. The gradient is analytic (digamma for the
Gamma and Beta functions).

The log density is a Numba ``cfunc`` compiled with ``cache=True``: the first process on a
machine compiles it (a few seconds), later ones load it from disk. nutpie calls it through
a function pointer, as it does for its own Numba backend, so sampling never returns to
Python. Importing this module does not import PyMC or PyTensor.

Priors the fast path can express are those whose log density on the log scale is
c + k1·θ − k2·e^θ − k3·e^{2θ} − k4·(θ − μ)²: ``HalfFlat``, ``Gamma(alpha, beta)``,
``Exponential(lam)``, ``HalfNormal(sigma)`` and ``LogNormal(mu, sigma)``.
:func:`prior_terms` returns ``None`` for anything else and the model falls back to PyMC.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from numba import types

PARAMS = ("r", "alpha", "a", "b")
EXPANDED = ("r_log__", "alpha_log__", "a_log__", "b_log__", "r", "alpha", "a", "b")
"""Variables of each draw, in the order and with the names of the PyMC route's posterior."""

_N_PRIOR = 6  # c, k1, k2, k3, k4, mu per parameter
_HEADER = 5 + 4 * _N_PRIOR  # total length, n_x, n_T, n_tx, n_pos, then the prior terms


def _number(spec: Mapping[str, Any], key: str, positive: bool = True) -> float | None:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        return None
    return value


def prior_terms(spec: Mapping[str, Any]) -> tuple[float, float, float, float, float, float] | None:
    """(c, k1, k2, k3, k4, μ) of one prior on the log scale, Jacobian included; ``None`` if not expressible.

    log p(e^θ) + θ = c + k1·θ − k2·e^θ − k3·e^{2θ} − k4·(θ − μ)², with PyMC's normalising
    constants so that the total equals PyMC's model log density, not just up to a constant.
    """
    dist = spec.get("dist")
    keys = set(spec) - {"dist"}
    if dist == "HalfFlat" and not keys:
        return (0.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    if dist == "Gamma" and keys == {"alpha", "beta"}:
        alpha, beta = _number(spec, "alpha"), _number(spec, "beta")
        if alpha is None or beta is None:
            return None
        return (alpha * math.log(beta) - math.lgamma(alpha), alpha, beta, 0.0, 0.0, 0.0)
    if dist == "Exponential" and keys == {"lam"}:
        lam = _number(spec, "lam")
        return None if lam is None else (math.log(lam), 1.0, lam, 0.0, 0.0, 0.0)
    if dist == "HalfNormal" and keys == {"sigma"}:
        sigma = _number(spec, "sigma")
        if sigma is None:
            return None
        return (0.5 * math.log(2.0 / math.pi) - math.log(sigma), 1.0, 0.0, 0.5 / sigma**2, 0.0, 0.0)
    if dist == "LogNormal" and keys == {"mu", "sigma"}:
        mu, sigma = _number(spec, "mu", positive=False), _number(spec, "sigma")
        if mu is None or sigma is None:
            return None
        return (-0.5 * math.log(2.0 * math.pi) - math.log(sigma), 0.0, 0.0, 0.0, 0.5 / sigma**2, mu)
    return None


def prior_center(terms: tuple[float, ...]) -> float:
    """A starting value on the log scale: 0 (r = 1) for flat priors, else the prior's mean or median."""
    _, k1, k2, k3, k4, mu = terms
    if k4 > 0:
        return mu
    if k2 > 0:
        return math.log(k1 / k2)
    if k3 > 0:
        return math.log(math.sqrt(0.5 / k3))
    return 0.0


def pack_data(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray, priors: Mapping[str, Mapping[str, Any]]
) -> np.ndarray | None:
    """The read-only float64 buffer the Numba log density reads; ``None`` if a prior is not expressible.

    Layout: a header (length, distinct x, distinct T, distinct t_x of repeat buyers, repeat
    buyer rows, 4 × 6 prior terms), then the distinct x with their total weights, the
    distinct T with their total weights and weighted x sums, the distinct t_x, and per
    repeat-buyer row the indices of its x, T and t_x and its weight.
    """
    terms = [prior_terms(priors[p]) for p in PARAMS]
    if any(t is None for t in terms):
        return None
    x, t_x, T, w = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T, w))
    ux, xi = np.unique(x, return_inverse=True)
    uT, Ti = np.unique(T, return_inverse=True)
    pos = x > 0
    utx, txi = np.unique(t_x[pos], return_inverse=True)
    parts = [
        ux, np.bincount(xi, weights=w, minlength=len(ux)),
        uT, np.bincount(Ti, weights=w, minlength=len(uT)), np.bincount(Ti, weights=w * x, minlength=len(uT)),
        utx,
        xi[pos].astype(np.float64), Ti[pos].astype(np.float64), txi.astype(np.float64), w[pos],
    ]
    header = np.zeros(_HEADER)
    header[1:5] = (len(ux), len(uT), len(utx), int(pos.sum()))
    header[5:] = np.ravel(terms)
    buf = np.concatenate([header, *parts])
    buf[0] = buf.size
    buf.flags.writeable = False
    return buf


@numba.njit(cache=True, fastmath=False)
def digamma(x: float) -> float:
    """ψ(x) for x > 0: recurrence up to x ≥ 10, then the asymptotic series to the x^-14 term."""
    result = 0.0
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    series = f * (-1.0 / 12 + f * (1.0 / 120 + f * (-1.0 / 252 + f * (1.0 / 240 + f * (
        -1.0 / 132 + f * (691.0 / 32760 + f * (-1.0 / 12)))))))
    return result + math.log(x) - 0.5 / x + series


@numba.njit(cache=True, fastmath=False)
def logp_and_grad(theta: np.ndarray, buf: np.ndarray, grad: np.ndarray) -> float:
    """Log density at ``theta`` (log r, log α, log a, log b); writes its gradient into ``grad``."""
    n_x = int(buf[1])
    n_T = int(buf[2])
    n_tx = int(buf[3])
    n_pos = int(buf[4])
    lp = 0.0
    for k in range(4):
        o = 5 + 6 * k
        th = theta[k]
        v = math.exp(th)
        d = th - buf[o + 5]
        lp += buf[o] + buf[o + 1] * th - buf[o + 2] * v - buf[o + 3] * v * v - buf[o + 4] * d * d
        grad[k] = buf[o + 1] - buf[o + 2] * v - 2.0 * buf[o + 3] * v * v - 2.0 * buf[o + 4] * d
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
    o = _HEADER
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
        x = buf[_HEADER + i]
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


_LOGP_SIG = types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                        types.CPointer(types.double), types.voidptr)
_EXPAND_SIG = types.int64(types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                          types.voidptr)


@numba.cfunc(_LOGP_SIG, cache=True)
def _logp_cfunc(dim, x_, grad_, logp_, data_):  # pragma: no cover - called from nutpie's Rust code
    if dim != 4:
        return -1
    x = numba.carray(x_, (4,))
    grad = numba.carray(grad_, (4,))
    logp = numba.carray(logp_, (1,))
    size = numba.carray(data_, (1,), dtype=np.float64)[0]
    buf = numba.carray(data_, (int(size),), dtype=np.float64)
    value = logp_and_grad(x, buf, grad)
    logp[0] = value
    for k in range(4):
        if not math.isfinite(grad[k]):
            return 3
    if not math.isfinite(value):
        return 4
    return 0


@numba.cfunc(_EXPAND_SIG, cache=True)
def _expand_cfunc(dim, n_expanded, x_, out_, data_):  # pragma: no cover - called from nutpie's Rust code
    if dim != 4 or n_expanded != 8:
        return -1
    x = numba.carray(x_, (4,))
    out = numba.carray(out_, (8,))
    for k in range(4):
        out[k] = x[k]
        out[4 + k] = math.exp(x[k])
    return 0


def make_compiled_model(buf: np.ndarray, jitter: float = 1.0) -> Any:
    """A nutpie model whose log density and draws come from the cached Numba cfuncs above."""
    from nutpie import _lib
    from nutpie.sample import CompiledModel

    start = np.array([prior_center(tuple(buf[5 + 6 * k: 11 + 6 * k])) for k in range(4)])

    @dataclasses.dataclass(frozen=True)
    class BGNBDCompiled(CompiledModel):
        data: np.ndarray
        x0: np.ndarray

        @property
        def n_dim(self) -> int:
            return 4

        @property
        def shapes(self) -> dict[str, tuple[int, ...]]:
            return {n: () for n in EXPANDED}

        @property
        def coords(self) -> dict:
            return {}

        def _make_sampler(self, settings, init_mean, cores, progress_type, store):
            return _lib.PySampler.from_pymc(settings, cores, self._make_model(init_mean), progress_type, store)

        def _make_model(self, init_mean):
            address = self.data.ctypes.data
            logp = _lib.LogpFunc(_logp_cfunc.address, address, self)
            expand = _lib.ExpandFunc(4, 8, _expand_cfunc.address, address, self)
            variables = _lib.PyVariable.new_variables(list(EXPANDED), ["float64"] * 8, [()] * 8, {}, {})

            def initial_point(seed: int) -> np.ndarray:
                return self.x0 + np.random.default_rng(seed).uniform(-jitter, jitter, 4)

            def no_adapter(*args, **kwargs):
                raise NotImplementedError("transform adaptation is not available for the BG/NBD fast path")

            return _lib.PyMcModel(logp, expand, variables, 4, {}, {}, initial_point, no_adapter)

    return BGNBDCompiled(dims={}, data=buf, x0=start)


def sample(buf: np.ndarray, *, draws: int, tune: int, chains: int, seed: int, progress: bool,
           **options: Any) -> Any:
    """NUTS with nutpie on the packed data; returns ArviZ ``InferenceData`` like the PyMC route."""
    import nutpie

    from tenure.interrupt import raise_if_requested

    options.pop("backend", None)
    idata = nutpie.sample(make_compiled_model(buf), draws=draws, tune=tune, chains=chains, seed=seed,
                          progress_bar=progress, store_divergences=False, **options)
    raise_if_requested()  # nutpie returns the draws made so far when interrupted: never a result
    return idata


def logp_and_grad_py(theta: np.ndarray, buf: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density and its gradient at ``theta``, for tests and checks."""
    grad = np.empty(4)
    value = logp_and_grad(np.ascontiguousarray(theta, dtype=np.float64), buf, grad)
    return value, grad
