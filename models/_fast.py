"""The fast route of the customer-base models: a closed-form Numba log density, MAP, and NUTS with nutpie.

A model whose log density has a closed form with an analytic gradient is fitted here
without PyMC or PyTensor: no model graph to build, nothing to compile but a few Numba
functions, which are cached on disk (``cache=True``), so only the first process on a
machine compiles them (seconds) and later ones load them.

What a model provides
---------------------
* The parameter names (those of its PyMC model's free variables, e.g. ``("r", "alpha",
  "a", "b")``), each positive and sampled on the log scale, as PyMC does with its
  ``log`` transform; a parameter may be a vector over a named dimension (the sBG per
  cohort: ``alpha`` and ``beta`` over ``cohort``).
* A packed data buffer made by :func:`pack`: a read-only float64 array whose header
  holds its length, the number of unconstrained values and one prior per value
  (:func:`prior_terms`), followed by whatever the density reads (``data_start(buf)``
  is where that begins). ``pack`` returns ``None`` when a prior is not expressible, and
  the model then falls back to its PyMC route.
* ``logp_and_grad(theta, buf, grad) -> float``, a ``numba.njit(cache=True,
  error_model="numpy")`` function (far in the tails a division by zero must give inf, which
  nutpie rejects, not raise an exception a C callback cannot pass on):
  the log density at ``theta`` (the unconstrained values, log of each parameter entry)
  with the priors and the log-Jacobian of the log transform, exactly as PyMC's model
  log density (tests compare the two to 1e-9), writing the gradient into ``grad``.
  It starts with ``lp = prior_logp(theta, buf, grad)``, which also initialises
  ``grad`` with the priors' part.
* A NUTS entry point for nutpie: a plain module-level function that :class:`FastModel`
  compiles, on first use, into a ``numba.cfunc`` with :data:`LOGP_SIGNATURE` (cached on
  disk). It must be written in the model's own module (a cfunc made by a factory or a
  closure is not found again in Numba's cache by a new process), always as these lines::

      def logp_cfunc(dim, x_, grad_, logp_, data_):  # pragma: no cover - compiled as nutpie's C entry point
          theta, grad, buf = _fast.cfunc_arrays(dim, x_, grad_, data_)
          return _fast.cfunc_status(logp_and_grad(theta, buf, grad), grad, logp_)

What it gets
------------
``FastModel(params, buf, logp_and_grad, logp_cfunc, shapes=..., dims=..., coords=...)``
with

* :meth:`FastModel.cached` (are the kernels a method needs compiled on this machine
  already?) and :meth:`FastModel.compile` (compile or load them now), so that a command
  can say "compiling kernels (once)" on the first run;

* :meth:`FastModel.map_fit`: the mode of the parameters' density (as ``pm.find_MAP``, without
  the Jacobian; with flat priors the maximum-likelihood estimate) by Levenberg–Marquardt on the
  analytic gradient (Newton steps at the end), and a Laplace approximation (the inverse of the negative Hessian, by
  central differences of the gradient) on the unconstrained scale; ``chains × draws``
  normal draws mapped back with ``exp``, the mode in ``attrs["tenure_map"]``; the same
  layout as the PyMC route's :func:`tenure.models.base.laplace_approximation` (and,
  with the same seed, mode and covariance, the same draws);
* :meth:`FastModel.nuts_fit`: NUTS with nutpie calling ``logp_cfunc`` through a function
  pointer (sampling never returns to Python); the posterior holds ``<name>_log__`` and
  ``<name>`` for each parameter, as nutpie's draws of the PyMC model do;
* :meth:`FastModel.logp`: value and gradient from Python, for tests and checks.

``map_fit`` and ``nuts_fit`` return a :class:`~tenure.models._posterior_data.PosteriorData` (NumPy
arrays in ArviZ's layout, no ArviZ or xarray import; ``nuts_fit`` drives ``nutpie._lib`` directly);
:class:`tenure.models.base.BayesianModel` adds the observed data, the pointwise log-likelihood
and the attributes as on the PyMC route.
A model opts in by returning a ``FastModel`` from ``fast_model()``; the environment
variable ``TENURE_FIT_ROUTE=pymc`` (see :data:`ROUTE_ENV`) forces the PyMC route, the
baseline of ``benchmarks/bench_clv_fits.py``.

Priors the fast route can express are those whose log density on the log scale is
c + k1·θ − k2·e^θ − k3·e^{qθ} − k4·(θ − μ)²: ``HalfFlat``, ``Gamma(alpha, beta)``,
``Exponential(lam)``, ``HalfNormal(sigma)`` (q = 2), ``Weibull(alpha, beta)`` (q = alpha,
pymc-marketing's default priors for its BG/NBD and Pareto/NBD) and ``LogNormal(mu, sigma)``
with plain numbers. Importing this module does not import PyMC, PyTensor, nutpie or ArviZ.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
from numba import types

if TYPE_CHECKING:
    from tenure.models._posterior_data import PosteriorData

MAX_LOG_SD = 10.0
"""Above this Laplace sd of a log-parameter the data do not identify it: its 90 % interval would span a
factor of e^(2 · 1.645 · 10) ≈ 2e14. On a ridge to infinity (the BG/NBD's a and b on four distinct rows)
the mode finder stops far out, where the density no longer rises, and the draws can stay finite but
absurd, failing later in the predictive check; :meth:`FastModel.map_fit` refuses them, naming the parameter."""

ROUTE_ENV = "TENURE_FIT_ROUTE"
"""Set to ``pymc`` to fit every model on its PyMC route (the benchmarks' baseline)."""

N_PRIOR = 7
"""Numbers per prior in the buffer's header: c, k1, k2, k3, q, k4, μ."""

LOGP_SIGNATURE = types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                             types.CPointer(types.double), types.voidptr)
"""The C signature nutpie calls: (dim, theta, grad out, logp out, user data) -> status (0 ok)."""
_EXPAND_SIGNATURE = types.int64(types.uint64, types.uint64, types.CPointer(types.double),
                                types.CPointer(types.double), types.voidptr)


def route_forced_to_pymc() -> bool:
    """True when ``TENURE_FIT_ROUTE=pymc`` asks for the PyMC route everywhere."""
    return os.environ.get(ROUTE_ENV, "").strip().lower() == "pymc"


# -- priors ----------------------------------------------------------------------------------------

def _number(spec: Mapping[str, Any], key: str, positive: bool = True) -> float | None:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        return None
    return value


def prior_terms(spec: Mapping[str, Any]) -> tuple[float, float, float, float, float, float, float] | None:
    """(c, k1, k2, k3, q, k4, μ) of one prior on the log scale, Jacobian included; ``None`` if not expressible.

    log p(e^θ) + θ = c + k1·θ − k2·e^θ − k3·e^{qθ} − k4·(θ − μ)², with PyMC's normalising
    constants so that the total equals PyMC's model log density, not just up to a constant.
    q is 0 where k3 is (the term is then skipped). ``Weibull(alpha, beta)`` in PyMC's
    parametrisation, p(x) = α/β · (x/β)^{α−1} · exp(−(x/β)^α), gives c = log α − α log β,
    k1 = α, k3 = β^{−α} and q = α.
    """
    dist = spec.get("dist")
    keys = set(spec) - {"dist"}
    if dist == "HalfFlat" and not keys:
        return (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    if dist == "Gamma" and keys == {"alpha", "beta"}:
        alpha, beta = _number(spec, "alpha"), _number(spec, "beta")
        if alpha is None or beta is None:
            return None
        return (alpha * math.log(beta) - math.lgamma(alpha), alpha, beta, 0.0, 0.0, 0.0, 0.0)
    if dist == "Exponential" and keys == {"lam"}:
        lam = _number(spec, "lam")
        return None if lam is None else (math.log(lam), 1.0, lam, 0.0, 0.0, 0.0, 0.0)
    if dist == "HalfNormal" and keys == {"sigma"}:
        sigma = _number(spec, "sigma")
        if sigma is None:
            return None
        return (0.5 * math.log(2.0 / math.pi) - math.log(sigma), 1.0, 0.0, 0.5 / sigma**2, 2.0, 0.0, 0.0)
    if dist == "Weibull" and keys == {"alpha", "beta"}:
        alpha, beta = _number(spec, "alpha"), _number(spec, "beta")
        if alpha is None or beta is None:
            return None
        return (math.log(alpha) - alpha * math.log(beta), alpha, 0.0, beta**-alpha, alpha, 0.0, 0.0)
    if dist == "LogNormal" and keys == {"mu", "sigma"}:
        mu, sigma = _number(spec, "mu", positive=False), _number(spec, "sigma")
        if mu is None or sigma is None:
            return None
        return (-0.5 * math.log(2.0 * math.pi) - math.log(sigma), 0.0, 0.0, 0.0, 0.0, 0.5 / sigma**2, mu)
    return None


def prior_center(terms: Sequence[float]) -> float:
    """A starting value on the log scale: 0 (value 1) for flat priors, else the mode of the prior on that scale.

    That mode solves k1 = k2·e^θ (Gamma, Exponential: θ = log of the prior's mean),
    k1 = q·k3·e^{qθ} (HalfNormal: θ = log σ; Weibull: θ = log β, its scale) or θ = μ
    (LogNormal: its median): a point of ordinary size for the parameter, where NUTS and
    the optimiser start.
    """
    _, k1, k2, k3, q, k4, mu = terms
    if k4 > 0:
        return mu
    if k2 > 0:
        return math.log(k1 / k2)
    if k3 > 0:
        return math.log(k1 / (q * k3)) / q
    return 0.0


# -- the packed buffer -----------------------------------------------------------------------------

def pack(priors: Sequence[Mapping[str, Any]], *parts: Any) -> np.ndarray | None:
    """The read-only buffer of one model: header, then ``parts`` (numbers or arrays) concatenated.

    ``priors`` holds one prior spec per unconstrained value, in the order of ``theta``
    (repeat a vector parameter's spec for each entry). Layout: ``[length, n_dim,
    n_dim × (c, k1, k2, k3, q, k4, μ), *parts]``; the density finds its data at
    :func:`data_start`. ``None`` when a prior is not expressible.
    """
    terms = [prior_terms(spec) for spec in priors]
    if any(t is None for t in terms):
        return None
    body = [np.ravel(np.asarray(p, dtype=np.float64)) for p in parts]
    buf = np.concatenate([np.array([0.0, float(len(terms))]), np.ravel(np.array(terms, dtype=np.float64)), *body])
    buf[0] = buf.size
    buf.flags.writeable = False
    return buf


@numba.njit(cache=True)
def data_start(buf: np.ndarray) -> int:
    """Index of the first number after the header (where the model's own data begin)."""
    return 2 + N_PRIOR * int(buf[1])


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def prior_logp(theta: np.ndarray, buf: np.ndarray, grad: np.ndarray) -> float:
    """Σ_k log p(e^θ_k) + θ_k from the header's prior terms; sets ``grad`` to that sum's gradient."""
    lp = 0.0
    for k in range(int(buf[1])):
        o = 2 + N_PRIOR * k
        th = theta[k]
        v = math.exp(th)
        d = th - buf[o + 6]
        lp += buf[o] + buf[o + 1] * th - buf[o + 2] * v - buf[o + 5] * d * d
        grad[k] = buf[o + 1] - buf[o + 2] * v - 2.0 * buf[o + 5] * d
        if buf[o + 3] != 0.0:
            q = buf[o + 4]
            power = buf[o + 3] * math.exp(q * th)
            lp -= power
            grad[k] -= q * power
    return lp


@numba.njit(cache=True, fastmath=False, error_model="numpy")
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


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def log_beta(a: float, b: float) -> float:
    """log B(a, b) = lgamma(a) + lgamma(b) − lgamma(a + b)."""
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


# -- the C entry points nutpie calls ---------------------------------------------------------------

@numba.njit(cache=True)
def cfunc_arrays(dim, x_, grad_, data_):  # pragma: no cover - compiled into each model's cfunc
    """Arrays over nutpie's pointers: theta (dim), grad (dim) and the buffer (its length is its first number)."""
    theta = numba.carray(x_, (dim,))
    grad = numba.carray(grad_, (dim,))
    size = numba.carray(data_, (1,), dtype=np.float64)[0]
    buf = numba.carray(data_, (int(size),), dtype=np.float64)
    return theta, grad, buf


@numba.njit(cache=True)
def cfunc_status(value, grad, logp_):  # pragma: no cover - compiled into each model's cfunc
    """Store the log density; nutpie's status: 0 ok, 3 a non-finite gradient, 4 a non-finite density."""
    logp = numba.carray(logp_, (1,))
    logp[0] = value
    for k in range(grad.size):
        if not math.isfinite(grad[k]):
            return 3
    if not math.isfinite(value):
        return 4
    return 0


def _expand_entry(dim, n_expanded, x_, out_, data_):  # pragma: no cover - called from nutpie's Rust code
    """The stored draw: the unconstrained values, then their exponentials (the parameters).

    Compiled into a cfunc on first use (:func:`_expand_cfunc`), not at import: a MAP fit never
    needs it, and loading it at import cost a MAP fit about 0.1 s.
    """
    if n_expanded != 2 * dim:
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (2 * dim,))
    for k in range(dim):
        out[k] = x[k]
        out[dim + k] = math.exp(x[k])
    return 0


def _py_func(entry: Any) -> Callable[..., int]:
    return entry._pyfunc if isinstance(entry, numba.core.ccallback.CFunc) else entry


_CFUNCS: dict[Any, Any] = {}


def _expand_cfunc() -> Any:
    """nutpie's expand callback (:func:`_expand_entry` as a cfunc), compiled or loaded once per process."""
    if _expand_entry not in _CFUNCS:
        _CFUNCS[_expand_entry] = numba.cfunc(_EXPAND_SIGNATURE, cache=True)(_expand_entry)
    return _CFUNCS[_expand_entry]


def _cfunc(entry: Any) -> Any:
    """The compiled C entry point of a model (compiled or loaded once per process)."""
    if isinstance(entry, numba.core.ccallback.CFunc):
        return entry
    if entry not in _CFUNCS:
        _CFUNCS[entry] = numba.cfunc(LOGP_SIGNATURE, cache=True)(entry)
    return _CFUNCS[entry]


# -- the model -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FastModel:
    """One model on the fast route (see the module docstring for what each field must be).

    Parameters
    ----------
    params
        Parameter names in the order of ``theta`` (all positive, on the log scale).
    buf
        The packed buffer of :func:`pack`.
    logp_and_grad
        ``numba.njit`` function ``(theta, buf, grad) -> float``.
    logp_cfunc
        The model's C entry point for nutpie: the plain function of the module docstring
        (compiled on first use) or a ``numba.cfunc`` with :data:`LOGP_SIGNATURE`.
    shapes
        Shape of each parameter that is not a scalar, e.g. ``{"alpha": (3,)}``.
    dims, coords
        Dimension name of each vector parameter and the labels of each dimension.
    """

    params: tuple[str, ...]
    buf: np.ndarray
    logp_and_grad: Callable[..., float]
    logp_cfunc: Any
    shapes: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    dims: Mapping[str, str] = dataclasses.field(default_factory=dict)
    coords: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)

    @property
    def n_dim(self) -> int:
        """Number of unconstrained values."""
        return int(self.buf[1])

    def cached(self, method: str) -> bool:
        """Whether Numba's disk cache holds the kernels ``method`` (``"map"`` or ``"mcmc"``) needs.

        True after any earlier fit on this machine (or where the cache cannot be read:
        then nothing is announced).
        """
        from numba.core.caching import FunctionCache

        try:
            funcs = [self.logp_and_grad.py_func]
            if method == "mcmc":
                funcs.append(_py_func(self.logp_cfunc))
            return all(os.path.exists(FunctionCache(f)._cache_file._index_path) for f in funcs)
        except Exception:  # Numba's cache internals: never a reason to fail a fit
            return True

    def compile(self, method: str) -> None:
        """Compile (first run on a machine) or load from the disk cache the kernels of ``method``."""
        self.logp(self.start())
        if method == "mcmc":
            _cfunc(self.logp_cfunc)

    def shape(self, name: str) -> tuple[int, ...]:
        """Shape of one parameter (``()`` for a scalar)."""
        return tuple(self.shapes.get(name, ()))

    def _slices(self) -> list[tuple[str, slice, tuple[int, ...]]]:
        out, start = [], 0
        for name in self.params:
            shape = self.shape(name)
            size = int(np.prod(shape)) if shape else 1
            out.append((name, slice(start, start + size), shape))
            start += size
        if start != self.n_dim:
            raise ValueError(f"parameters hold {start} values but the buffer has priors for {self.n_dim}")
        return out

    def start(self) -> np.ndarray:
        """The starting point on the log scale: each prior's centre (0 for flat priors)."""
        return np.array([prior_center(self.buf[2 + N_PRIOR * k: 2 + N_PRIOR * (k + 1)]) for k in range(self.n_dim)])

    def logp(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The log density and its gradient at ``theta``."""
        grad = np.empty(self.n_dim)
        value = self.logp_and_grad(np.ascontiguousarray(theta, dtype=np.float64), self.buf, grad)
        return float(value), grad

    # -- MAP and Laplace ------------------------------------------------------------------------
    def logp_without_jacobian(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The log density of the parameters themselves (no log-Jacobian Σθ), as a function of ``theta``."""
        value, grad = self.logp(theta)
        return value - float(np.sum(theta)), grad - 1.0

    def find_mode(self, max_iterations: int = 500) -> np.ndarray:
        """The mode of the parameters' density (as ``pm.find_MAP``: no Jacobian), on the log scale.

        Levenberg–Marquardt on the analytic gradient and its forward differences as the Hessian:
        a Newton step ``(H + λ·diag|H|) s = ∇log p`` is taken when it raises the density (λ then
        shrinks tenfold, so the last steps are plain Newton steps and converge quadratically to
        full precision), refused otherwise (λ grows tenfold, the step turns toward the gradient
        and shortens). Steps are capped at 5 on the log scale (a factor e⁵ on a parameter), so an
        unbounded direction is walked along rather than jumped to overflow. It stops when a taken
        step moves no parameter by more than 1e-10, or when no step raises the density any more
        (λ above 1e16). With flat priors this is the maximum-likelihood estimate. (SciPy's L-BFGS-B
        did this before; importing ``scipy.optimize`` was 0.3–0.4 s of a 3 s MAP fit.)
        """
        from tenure.errors import InputError

        def density(theta: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = self.logp_without_jacobian(theta)
            if not math.isfinite(value) or not np.all(np.isfinite(grad)):
                return -math.inf, grad
            return value, grad

        x = self.start()
        value, grad = density(x)
        if not math.isfinite(value):
            raise InputError("MAP: the log density is not finite at the starting point (each prior's centre)")
        damping = 1e-3
        for _ in range(max_iterations):
                # Forward differences suffice for a step: the steps converge to where the exact gradient
            # vanishes, whatever small error H has. The Jacobian Σθ is linear, so H is the same without it.
            neg_hess = self.negative_hessian(x, central=False)
            neg_hess = 0.5 * (neg_hess + neg_hess.T)
            scale = np.diag(np.maximum(np.abs(np.diag(neg_hess)), 1e-12))
            moved = False
            while damping <= 1e16:
                try:
                    step = np.linalg.solve(neg_hess + damping * scale, grad)
                    np.linalg.cholesky(neg_hess + damping * scale)  # a step uphill only where positive definite
                except np.linalg.LinAlgError:
                    damping *= 10.0
                    continue
                longest = float(np.max(np.abs(step)))
                if longest > 5.0:
                    step *= 5.0 / longest
                trial_value, trial_grad = density(x + step)
                if trial_value >= value - 1e-12 * max(1.0, abs(value)) and np.all(np.isfinite(step)):
                    x, value, grad = x + step, trial_value, trial_grad
                    damping = max(damping / 10.0, 1e-12)
                    moved = True
                    break
                damping *= 10.0
            if not moved or float(np.max(np.abs(step))) < 1e-10:
                break
        return x

    def negative_hessian(self, theta: np.ndarray, central: bool = True) -> np.ndarray:
        """−∇²log p at ``theta`` by differences of the analytic gradient: central (2n gradients, about
        1e-8 relative: the Laplace covariance), or forward (n + 1, about 1e-6: the mode finder's steps)."""
        n = self.n_dim
        hess = np.empty((n, n))
        base = None if central else self.logp(theta)[1]
        for j in range(n):
            step = (1e-5 if central else 1e-6) * max(1.0, abs(theta[j]))
            e = np.zeros(n)
            e[j] = step
            below = self.logp(theta - e)[1] if central else base
            hess[:, j] = (self.logp(theta + e)[1] - below) / ((2.0 if central else 1.0) * step)
        return -hess

    def map_fit(self, *, draws: int, chains: int, seed: int) -> PosteriorData:
        """The mode, and ``chains × draws`` draws of the Laplace approximation around it (see the module)."""
        import json

        from tenure.models._posterior_data import PosteriorData
        from tenure.models.base import _safe_inverse

        x0 = self.find_mode()
        cov = _safe_inverse(self.negative_hessian(x0))
        rng = np.random.default_rng(seed)
        z = rng.multivariate_normal(x0, cov, size=(chains, draws), method="eigh")
        posterior, mode = {}, {}
        log_sd = np.sqrt(np.diag(cov))
        for name, part, shape in self._slices():
            with np.errstate(over="ignore", invalid="ignore"):
                posterior[name] = np.exp(z[:, :, part]).reshape((chains, draws, *shape))
            mode[name] = np.exp(x0[part]).reshape(shape).tolist()
            if not np.all(np.isfinite(posterior[name])) or not np.all(log_sd[part] <= MAX_LOG_SD):
                from tenure.errors import InputError

                raise InputError(f"MAP: parameter {name!r} is not identified by the data (mode "
                                 f"{np.exp(x0[part]).ravel()[0]:.4g}, its Laplace interval is unbounded); give it a "
                                 "proper prior with --priors, fit more customers, or use --method mcmc")
        idata = PosteriorData.from_dict(posterior, **self._coords_and_dims(self.params))
        idata.attrs["tenure_map"] = json.dumps(mode)
        return idata

    def _coords_and_dims(self, names: Sequence[str]) -> dict[str, Any]:
        dims = {n: [self.dims[n]] for n in names if n in self.dims}
        return {"coords": {d: list(self.coords[d]) for ds in dims.values() for d in ds}, "dims": dims}

    # -- NUTS -------------------------------------------------------------------------------------
    def expanded(self) -> list[str]:
        """Names of the stored draws: every ``<name>_log__``, then every ``<name>`` (nutpie's PyMC order)."""
        return [f"{n}_log__" for n in self.params] + list(self.params)

    def compiled(self, jitter: float = 1.0) -> Callable[[Any, int, Any, Any], Any]:
        """A maker of nutpie's Rust sampler over the cached Numba cfuncs: ``(settings, cores, progress, store)``.

        What ``nutpie.sample.CompiledModel._make_sampler`` builds for a PyMC model, made here from
        ``nutpie._lib`` alone (:func:`nutpie_lib`), so that a fit imports none of nutpie's Python modules.
        """
        import numba.core.ccallback  # noqa: F401 - _cfunc's isinstance check; nutpie's modules imported it before

        _lib = nutpie_lib()
        owner = self
        names = self.expanded()
        shapes = [self.shape(n.removesuffix("_log__")) for n in names]
        dims = {n: [self.dims[n]] for n in self.params if n in self.dims}
        coords = {d: list(self.coords[d]) for ds in dims.values() for d in ds}
        x0 = self.start()

        def initial_point(seed: int) -> np.ndarray:
            return x0 + np.random.default_rng(seed).uniform(-jitter, jitter, owner.n_dim)

        def no_adapter(*args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("transform adaptation is not available on the fast route")

        def make_sampler(settings: Any, cores: int, progress_type: Any, store: Any) -> Any:
            address = owner.buf.ctypes.data
            logp = _lib.LogpFunc(_cfunc(owner.logp_cfunc).address, address, owner)
            expand = _lib.ExpandFunc(owner.n_dim, 2 * owner.n_dim, _expand_cfunc().address, address, owner)
            dim_sizes = {d: len(v) for d, v in coords.items()}
            variables = _lib.PyVariable.new_variables(names, ["float64"] * len(names), shapes, dim_sizes, dims)
            model = _lib.PyMcModel(logp, expand, variables, owner.n_dim, dim_sizes, coords, initial_point,
                                   no_adapter)
            return _lib.PySampler.from_pymc(settings, cores, model, progress_type, store)

        return make_sampler

    def nuts_fit(self, *, draws: int, tune: int, chains: int, seed: int, progress: bool,
                 **options: Any) -> PosteriorData:
        """NUTS with nutpie's Rust sampler on the Numba density, as ``nutpie.sample`` runs it.

        ``options`` are nutpie's sampler settings (``target_accept``, ``maxdepth``, ``store_*``...;
        ``backend`` is ignored, ``low_rank_modified_mass_matrix`` picks the low-rank mass matrix).
        The draws are the groups ``nutpie.sample`` + :meth:`PosteriorData.from_arviz` give for the same
        seed (posterior, sample_stats and their warm-up twins: same names, dimensions, dtypes and values),
        built from nutpie's Arrow trace without ArviZ, xarray or pandas.
        """
        _lib = nutpie_lib()
        options.pop("backend", None)
        low_rank = options.pop("low_rank_modified_mass_matrix", False)
        settings = (_lib.PyNutsSettings.LowRank if low_rank else _lib.PyNutsSettings.Diag)(seed)
        settings.num_tune, settings.num_draws, settings.num_chains = tune, draws, chains
        options.setdefault("store_divergences", False)
        for name, value in options.items():
            setattr(settings, name, value)
        cores = min(chains, os.cpu_count() or 1)
        progress_type = _lib.ProgressType.indicatif(100) if progress else _lib.ProgressType.none()
        sampler = self.compiled()(settings, cores, progress_type, _lib.PyStorage.arrow())
        try:
            sampler.wait(None)
        except BaseException:
            # An interrupt (KeyboardInterrupt, tenure's Interrupted) or an error: stop the chains and raise.
            # nutpie.sample returns the draws made so far on KeyboardInterrupt; a partial posterior is never a
            # result here.
            sampler.abort()
            raise
        results = sampler.take_results()
        skip = [name for setting, names in NUTPIE_OPTIONAL_STATS.items() if not getattr(settings, setting, False)
                for name in names]
        draw_batches, stat_batches = results.get_arrow_trace()
        return _arrow_trace_to_posterior(draw_batches, stat_batches, skip, self._coords_and_dims(self.params)["coords"])


NUTPIE_OPTIONAL_STATS = {
    "store_gradient": ["gradient"],
    "store_unconstrained": ["unconstrained_draw"],
    "store_mass_matrix": ["mass_matrix_inv", "mass_matrix_eigvals", "mass_matrix_stds"],
    "store_divergences": ["divergence_start", "divergence_end", "divergence_momentum", "divergence_start_gradient"],
}
"""Sample statistics nutpie leaves out of its InferenceData unless its setting asks for them (nutpie 0.16.8)."""


def nutpie_lib() -> Any:
    """nutpie's Rust extension ``nutpie._lib``, loaded without running ``nutpie/__init__.py``.

    ``import nutpie`` imports ``nutpie.sample`` and with it ArviZ, pandas and pyarrow's pandas shims
    (about 2 s); the fast route needs only the extension. A PyO3 module can be initialised once per
    process, so the loaded module is registered as ``sys.modules["nutpie._lib"]``, where a later
    ``import nutpie`` (the PyMC route) finds and reuses it; where nutpie was imported first, its
    module is the one returned.
    """
    import importlib.machinery
    import importlib.util
    import sys

    if "nutpie._lib" in sys.modules:
        return sys.modules["nutpie._lib"]
    package = importlib.util.find_spec("nutpie")
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("nutpie is not installed", name="nutpie")
    spec = importlib.machinery.PathFinder.find_spec("_lib", list(package.submodule_search_locations))
    if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
        raise ModuleNotFoundError("nutpie's extension nutpie._lib is missing", name="nutpie._lib")
    loader = importlib.machinery.ExtensionFileLoader("nutpie._lib", spec.origin)
    spec = importlib.util.spec_from_file_location("nutpie._lib", spec.origin, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nutpie._lib"] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules["nutpie._lib"]
        raise
    return module


def _arrow_trace_to_posterior(draw_batches: Sequence[Any], stat_batches: Sequence[Any], skip: Sequence[str],
                              coords: Mapping[str, Sequence[Any]]) -> PosteriorData:
    """nutpie's Arrow trace (one draws and one stats batch per chain) as the four groups of its InferenceData.

    As ``nutpie.sample._arrow_to_arviz`` + ``arviz.from_dict`` lay them out: the rows flagged ``tuning``
    go to ``warmup_*``, the rest to ``posterior``/``sample_stats``; each variable is
    ``(chain, draw, *dims)``, padded with NaN (floats) or 0 where a chain stopped early; entries without
    named dimensions get ArviZ's ``<name>_dim_<i>``; every group has the attributes ArviZ writes.
    """
    import datetime

    from tenure.models._posterior_data import Group, PosteriorData

    n_tune = [int(np.asarray(s.column("tuning").to_numpy()).sum()) for s in stat_batches]
    n_rows = [d.num_rows for d in draw_batches]
    max_tune, max_post = max(n_tune), max(r - t for r, t in zip(n_rows, n_tune, strict=True))
    groups: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {
        g: {} for g in ("posterior", "sample_stats", "warmup_posterior", "warmup_sample_stats")}
    for batches, post_name, tune_name, skipped in ((draw_batches, "posterior", "warmup_posterior", ()),
                                                    (stat_batches, "sample_stats", "warmup_sample_stats", skip)):
        for chain, batch in enumerate(batches):
            for part, begin, end, length in ((tune_name, 0, n_tune[chain], max_tune),
                                             (post_name, n_tune[chain], n_rows[chain], max_post)):
                _add_arrow_columns(groups[part], batch.slice(begin, end - begin), chain, len(batches), length,
                                   skipped)
    attrs = {"created_at": datetime.datetime.now(datetime.UTC).isoformat(),
             "arviz_version": _arviz_version()}
    out = {}
    for name, variables in groups.items():
        named: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        labels: dict[str, np.ndarray] = {}
        first = next(iter(variables.values()))[1] if variables else np.empty((len(draw_batches), 0))
        for var, (dims, values) in variables.items():
            if var in ("chain", "draw"):  # nutpie's chain and draw numbers: the coordinates in ArviZ's Dataset
                continue
            extra = list(dims) + [f"{var}_dim_{i}" for i in range(len(dims), values.ndim - 2)]
            named[var] = (("chain", "draw", *extra), values)
            for i, d in enumerate(extra):
                labels[d] = np.asarray(coords[d]) if d in coords else np.arange(values.shape[2 + i])
        out[name] = Group(named, {"chain": np.arange(first.shape[0]), "draw": np.arange(first.shape[1]),
                                  **labels}, attrs)
    return PosteriorData(**out)


def _add_arrow_columns(group: dict[str, tuple[list[str], np.ndarray]], batch: Any, chain: int, n_chains: int,
                       length: int, skip: Sequence[str]) -> None:
    """One chain's rows of an Arrow batch into ``(chain, draw, ...)`` arrays, as nutpie's ``_add_arrow_data``."""
    n = batch.num_rows
    for name in batch.column_names:
        if name in skip:
            continue
        col = batch.column(name)
        meta = col.field.metadata or {}
        item_dims = meta[b"dims"].decode().split(",") if meta.get(b"dims") else []
        item_shape = [int(s) for s in meta[b"shape"].decode().split(",")] if meta.get(b"shape") else []
        if col.null_count or "List" in str(col.type):  # optional stats (store_*): pyarrow, as nutpie reads them
            import pyarrow

            col = pyarrow.array(col)
            missing = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            if hasattr(col, "flatten"):
                col = col.flatten()
            values = np.asarray(col.to_numpy(zero_copy_only=False))
        else:  # nutpie's arro3 arrays of numbers or booleans, read without pyarrow
            missing, values = np.zeros(n, dtype=bool), np.asarray(col.to_numpy())
        if name not in group:
            shape = (n_chains, length, *item_shape)
            floating = values.dtype in (np.float64, np.float32)
            empty = np.full(shape, np.nan, values.dtype) if floating else np.zeros(shape, values.dtype)
            group[name] = (item_dims, empty)
        target = group[name][1][chain, :n]
        if missing.any():
            target[~missing] = values.reshape((int((~missing).sum()), *item_shape))
        else:
            target[...] = values.reshape((n, *item_shape))


def _arviz_version() -> str:
    """ArviZ's version as its ``from_dict`` records it, read from the installed metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("arviz")
    except PackageNotFoundError:
        return ""
