"""The shape every model family shares: data + priors -> ``pm.Model`` -> ``InferenceData``.

A family subclasses :class:`BayesianModel`, sets ``name``, ``default_priors`` and
``named_parameters`` and implements :meth:`BayesianModel.build`. Fitting, prior
overrides, diagnostics and saving are shared here so that every family behaves the
same way on the command line and in Python.

Priors are data: ``{"param": {"dist": "Normal", "mu": 0.0, "sigma": 2.5}}`` where
``dist`` names a PyMC distribution and the other keys are its parameters. A TOML or
JSON file with the same structure overrides any of them (:func:`load_priors`).
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import arviz as az
import numpy as np

from tenure.checks import finite, read_text
from tenure.checks import seed as check_seed
from tenure.errors import InputError

if TYPE_CHECKING:
    import pymc as pm

FIT_METHODS = ("mcmc", "map", "advi")

_PYMC_DISTRIBUTIONS = frozenset({
    "Beta", "Cauchy", "Exponential", "Flat", "Gamma", "HalfCauchy", "HalfFlat", "HalfNormal", "HalfStudentT",
    "InverseGamma", "Laplace", "LogNormal", "Normal", "StudentT", "TruncatedNormal", "Uniform", "Weibull",
})
"""Distribution names known to exist in PyMC, checked without importing it (PyMC takes seconds to import)."""


def _is_pymc_distribution(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    if name in _PYMC_DISTRIBUTIONS:
        return True
    import pymc as pm

    return hasattr(pm, name)


def load_priors(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a prior configuration from a TOML or JSON file.

    Each top-level key is a parameter name whose table holds ``dist`` and the
    distribution's parameters.
    """
    p = Path(path)
    text = read_text(p, f"--priors {p}", "TOML or JSON")
    if not text.strip():
        raise InputError(f"--priors {p}: file is empty")
    try:
        raw = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"--priors {p}: cannot parse: {exc}") from exc
    if not isinstance(raw, dict):
        raise InputError(f"--priors {p}: expected a table of parameters")
    for key, spec in raw.items():
        if not isinstance(spec, dict):
            raise InputError(f"--priors {p}: key {key!r} must be a table with 'dist' and parameters")
    return raw


def merge_priors(
    defaults: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Mapping[str, Any]] | None,
    where: str = "priors",
) -> dict[str, dict[str, Any]]:
    """Return the default priors with ``overrides`` applied; unknown names are an error."""
    merged = copy.deepcopy({k: dict(v) for k, v in defaults.items()})
    for key, spec in (overrides or {}).items():
        if key not in merged:
            known = ", ".join(sorted(merged))
            raise InputError(f"{where}: unknown parameter {key!r}; known: {known}")
        if not isinstance(spec, Mapping):
            raise InputError(f"{where}: parameter {key!r}: expected a table with 'dist' and its parameters")
        spec = dict(spec)
        if "dist" in spec and spec["dist"] != merged[key].get("dist"):
            merged[key] = spec  # a new family replaces all of its parameters
        else:
            merged[key].update(spec)
        dist = merged[key].get("dist")
        if not isinstance(dist, str) or not _is_pymc_distribution(dist):
            raise InputError(f"{where}: parameter {key!r}: unknown distribution {dist!r}")
        check_prior_parameters(merged[key], f"{where}: {key}")
    return merged


#: Prior parameters that must be positive (scales, shapes, concentrations).
POSITIVE_PRIOR_PARAMETERS = frozenset({"sigma", "tau", "alpha", "beta", "lam", "nu", "b", "kappa", "eta"})


def check_prior_parameters(spec: Mapping[str, Any], where: str) -> None:
    """Every parameter of one prior a finite number (a list of them for vector priors), scales positive."""
    for name, value in spec.items():
        if name == "dist":
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            raise InputError(f"{where}.{name}: expected a number, got an empty list")
        for v in values:
            x = finite(v, f"{where}.{name}")
            if name in POSITIVE_PRIOR_PARAMETERS and x <= 0:
                raise InputError(f"{where}.{name}: must be positive, got {x:g}")


def prior(name: str, spec: Mapping[str, Any], **kwargs: Any) -> Any:
    """Create the PyMC random variable ``name`` from a prior spec (inside a model context)."""
    import pymc as pm

    params = {k: v for k, v in spec.items() if k != "dist"}
    try:
        return getattr(pm, spec["dist"])(name, **params, **kwargs)
    except (TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"priors: parameter {name!r}: {first}") from exc


class BayesianModel:
    """Base class: a model family built from validated data and a prior configuration.

    Subclasses implement :meth:`build`. After :meth:`fit`, ``self.idata`` holds the
    result, with the prior configuration and a data summary in its attributes.
    """

    name: ClassVar[str] = "model"
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {}
    named_parameters: ClassVar[tuple[str, ...]] = ()
    sampler_options: ClassVar[dict[str, Any]] = {}
    """Extra keyword arguments for ``nutpie.sample`` (e.g. ``low_rank_modified_mass_matrix``)."""

    def __init__(self, priors: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.priors = merge_priors(self.default_priors, priors)
        self.idata: az.InferenceData | None = None
        self._model: pm.Model | None = None

    # -- to implement -------------------------------------------------------------
    def build(self) -> pm.Model:
        """Return the PyMC model for this data and these priors."""
        raise NotImplementedError

    def data_summary(self) -> dict[str, Any]:
        """A small JSON-able description of the data the model was built from."""
        return {}

    # -- shared -------------------------------------------------------------------
    @property
    def model(self) -> pm.Model:
        """The PyMC model, built on first use."""
        if self._model is None:
            self._model = self.build()
        return self._model

    def fit(
        self,
        method: str = "mcmc",
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 2,
        seed: int = 0,
        progress: bool = False,
    ) -> az.InferenceData:
        """Fit the model and return ArviZ ``InferenceData``.

        Parameters
        ----------
        method
            ``"mcmc"``: NUTS with nutpie (default); ``"map"``: the posterior mode with a
            Laplace (normal) approximation around it in the unconstrained space, so
            intervals are still reported; ``"advi"``: mean-field variational inference.
        draws, tune, chains
            Posterior draws per chain, tuning steps and chains (``mcmc``); ``draws``
            and ``chains`` also size the approximate posteriors of ``map``/``advi``.
        seed
            Fixes every random choice of the fit.
        progress
            Show the sampler's progress bar.
        """
        if method not in FIT_METHODS:
            raise InputError(f"--method: unknown method {method!r}; use one of {', '.join(FIT_METHODS)}")
        if draws < 1 or chains < 1 or tune < 0:
            raise InputError("--draws and --chains must be at least 1, tune at least 0")
        check_seed(seed)
        if method == "mcmc":
            idata = self._sample_mcmc(draws=draws, tune=tune, chains=chains, seed=seed, progress=progress)
        elif method == "map":
            idata = laplace_approximation(self.model, draws=draws, chains=chains, seed=seed)
        else:
            idata = fit_advi(self.model, draws=draws, chains=chains, seed=seed, progress=progress)
        idata.attrs["tenure_model"] = self.name
        idata.attrs["tenure_method"] = method
        idata.attrs["tenure_priors"] = json.dumps(self.priors)
        idata.attrs["tenure_data_summary"] = json.dumps(self.data_summary(), default=_jsonable)
        self.idata = idata
        return idata

    def _sample_mcmc(self, *, draws: int, tune: int, chains: int, seed: int, progress: bool) -> az.InferenceData:
        """NUTS on :attr:`model` with nutpie; a family may override it with a faster sampler of the same density."""
        return sample_nutpie(self.model, draws=draws, tune=tune, chains=chains, seed=seed,
                             progress=progress, **self.sampler_options)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def sample_nutpie(
    model: pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    progress: bool,
    backend: str = "numba",
    **options: Any,
) -> az.InferenceData:
    """Sample with nutpie, one thread per chain is not assumed.

    ``backend="numba"`` (default) compiles the log density and its gradient with Numba:
    fastest per gradient and chains run in parallel, but it compiles anew in every
    process (about 5 s even for a two-parameter model). ``backend="pytensor"`` uses
    :func:`compile_nutpie_pytensor`: PyTensor's C backend, whose compiled modules are
    cached on disk, called back from nutpie; it starts in about a second and suits
    small or compressed data. ``options`` go to ``nutpie.sample`` unchanged.
    """
    import nutpie

    if backend == "numba":
        compiled = nutpie.compile_pymc_model(model, backend="numba")
    elif backend == "pytensor":
        compiled = compile_nutpie_pytensor(model)
    else:
        raise ValueError(f"unknown nutpie backend {backend!r}; use 'numba' or 'pytensor'")
    return nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        progress_bar=progress,
        store_divergences=False,
        **options,
    )


def compile_nutpie_pytensor(model: pm.Model, jitter: float = 1.0) -> Any:
    """A nutpie model whose log density and gradient are PyTensor (C backend) functions.

    Each chain gets its own copy of the compiled function (their storage is not
    thread-safe). Chains start at the model's initial point in the unconstrained space,
    jittered uniformly by ``±jitter`` with the chain's seed.
    """
    from nutpie.compiled_pyfunc import from_pyfunc

    value_vars = model.value_vars
    start = model.initial_point()
    x0 = np.concatenate([np.ravel(start[v.name]) for v in value_vars]).astype(float)
    shapes = [np.shape(start[v.name]) for v in value_vars]
    splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    logp_dlogp = model.logp_dlogp_function(ravel_inputs=True)._pytensor_function
    to_constrained = model.compile_fn(model.unobserved_value_vars, inputs=value_vars, point_fn=False)
    names = [v.name for v in model.unobserved_value_vars]
    out_shapes = [np.shape(v) for v in to_constrained(*(start[v.name] for v in value_vars))]

    def make_logp_fn() -> Any:
        fn = logp_dlogp.copy()

        def logp(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, grad = fn(x)
            return float(value), np.asarray(grad, dtype=np.float64)

        return logp

    def make_expand_fn(seed1: int, seed2: int, chain: int) -> Any:
        fn = to_constrained.copy()

        def expand(x: np.ndarray) -> dict[str, np.ndarray]:
            parts = [p.reshape(shape) for p, shape in zip(np.split(x, splits), shapes, strict=True)]
            return {n: np.asarray(v, dtype=np.float64) for n, v in zip(names, fn(*parts), strict=True)}

        return expand

    def initial_point(seed: int) -> np.ndarray:
        return x0 + np.random.default_rng(seed).uniform(-jitter, jitter, x0.size)

    dims = {n: tuple(model.named_vars_to_dims[n]) for n in names if n in model.named_vars_to_dims}
    coords = {k: list(v) for k, v in model.coords.items() if v is not None}
    return from_pyfunc(x0.size, make_logp_fn, make_expand_fn, [np.dtype("float64")] * len(names), out_shapes,
                       names, coords=coords, dims=dims, make_initial_point_fn=initial_point)


def find_map(model: pm.Model, seed: int = 0) -> dict[str, np.ndarray]:
    """The posterior mode (with flat priors, the maximum-likelihood estimate)."""
    import pymc as pm

    with model:
        return pm.find_MAP(progressbar=False, seed=seed, maxeval=50_000)


def laplace_approximation(
    model: pm.Model, *, draws: int, chains: int, seed: int
) -> az.InferenceData:
    """MAP plus a normal approximation with the inverse Hessian in the unconstrained space.

    The draws are mapped back through the model's transforms, so constrained
    parameters stay in their support. The mode itself is stored in
    ``idata.attrs["tenure_map"]``.
    """
    point = find_map(model, seed=seed)
    value_vars = model.value_vars
    x0 = np.concatenate([np.ravel(point[v.name]) for v in value_vars])
    neg_hess = _negative_hessian(model, point)
    cov = _safe_inverse(neg_hess)
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(x0, cov, size=(chains, draws), method="eigh")
    to_constrained = model.compile_fn(model.unobserved_value_vars, inputs=value_vars, point_fn=False)
    names = [v.name for v in model.unobserved_value_vars]
    shapes = [np.shape(point[v.name]) for v in value_vars]
    splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    draws_by_name: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for flat in z.reshape(chains * draws, -1):
        parts = [part.reshape(shape) for part, shape in zip(np.split(flat, splits), shapes, strict=True)]
        for n, val in zip(names, to_constrained(*parts), strict=True):
            draws_by_name[n].append(np.asarray(val))
    keep = {rv.name for rv in model.free_RVs} | {d.name for d in model.deterministics}
    idata = az.from_dict(
        posterior={n: np.asarray(v).reshape((chains, draws, *np.shape(v[0])))
                   for n, v in draws_by_name.items() if n in keep},
        **_coords_and_dims(model, keep),
    )
    idata.attrs["tenure_map"] = json.dumps(
        {rv.name: np.asarray(point[rv.name]).tolist() for rv in model.free_RVs if rv.name in point}
    )
    return idata


def _negative_hessian(model: pm.Model, point: Mapping[str, np.ndarray]) -> np.ndarray:
    """Negative Hessian of the log density at ``point`` in the unconstrained space.

    Central differences of the compiled analytic gradient: compiling a symbolic Hessian
    (PyTensor builds it with ``scan``) took 5x longer than the gradient for the
    customer-base models, while differences of an exact gradient are accurate to about
    1e-8 relative, far below what a Laplace approximation needs.
    """
    value_vars = model.value_vars
    grad_fn = model.compile_dlogp(vars=model.free_RVs, jacobian=True)
    shapes = [np.shape(point[v.name]) for v in value_vars]
    sizes = [int(np.prod(s)) for s in shapes]
    splits = np.cumsum(sizes)[:-1]
    x0 = np.concatenate([np.ravel(point[v.name]) for v in value_vars]).astype(float)

    def grad(x: np.ndarray) -> np.ndarray:
        parts = np.split(x, splits)
        return np.asarray(grad_fn({v.name: part.reshape(shape) for v, part, shape in
                                   zip(value_vars, parts, shapes, strict=True)}), dtype=float)

    n = x0.size
    hess = np.empty((n, n))
    for j in range(n):
        step = 1e-5 * max(1.0, abs(x0[j]))
        e = np.zeros(n)
        e[j] = step
        hess[:, j] = (grad(x0 + e) - grad(x0 - e)) / (2.0 * step)
    return -hess


def _safe_inverse(neg_hess: np.ndarray) -> np.ndarray:
    """Inverse of the negative Hessian, repaired to be positive definite if needed."""
    sym = 0.5 * (neg_hess + neg_hess.T)
    w, v = np.linalg.eigh(sym)
    w = np.where(w > 1e-10, w, 1e-10)
    return (v / w) @ v.T


def fit_advi(
    model: pm.Model, *, draws: int, chains: int, seed: int, progress: bool
) -> az.InferenceData:
    """Mean-field ADVI, then ``chains × draws`` draws from the approximation."""
    import pymc as pm

    with model:
        approx = pm.fit(n=30_000, method="advi", random_seed=seed, progressbar=progress)
        idata = approx.sample(draws * chains, random_seed=seed)
    post = idata.posterior
    reshaped = {
        name: post[name].values.reshape((chains, draws, *post[name].shape[2:]))
        for name in post.data_vars
    }
    return az.from_dict(posterior=reshaped, **_coords_and_dims(model, set(reshaped)))


def _coords_and_dims(model: pm.Model, names: set[str]) -> dict[str, Any]:
    """The model's named dimensions for ``az.from_dict``, so that MAP and ADVI draws keep labels like
    ``churn_segment[price-driven]`` as NUTS draws do (without them ArviZ numbers the entries)."""
    dims = {n: list(d) for n, d in model.named_vars_to_dims.items() if n in names and all(d)}
    used = {d for ds in dims.values() for d in ds}
    coords = {k: list(v) for k, v in model.coords.items() if k in used and v is not None}
    dims = {n: ds for n, ds in dims.items() if all(d in coords for d in ds)}
    return {"coords": coords, "dims": dims}


SUMMARY_COLUMNS = ("parameter", "mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk")


def summary_table(idata: az.InferenceData, var_names: list[str] | None = None):
    """One row per scalar parameter with the columns of ``summary.csv``."""
    import polars as pl

    s = az.summary(idata, var_names=var_names, hdi_prob=0.94, round_to="none")
    cols = {c: s[c].to_numpy() if c in s.columns else np.full(len(s), np.nan)
            for c in ("mean", "sd", "hdi_3%", "hdi_97%", "r_hat", "ess_bulk")}
    return pl.DataFrame({"parameter": [str(i) for i in s.index], **cols})


def diagnostics_warnings(idata: az.InferenceData, var_names: list[str] | None = None) -> list[str]:
    """Plain-language warnings: divergences and R-hat above 1.01."""
    warnings: list[str] = []
    ss = idata.get("sample_stats")
    if ss is not None and "diverging" in ss:
        n_div = int(np.asarray(ss["diverging"]).sum())
        if n_div:
            warnings.append(f"{n_div} divergent transitions: the posterior may be biased; "
                            "consider stronger priors or more tuning")
    if idata.posterior.sizes.get("chain", 1) > 1:
        rhat = az.rhat(idata, var_names=var_names)
        bad = [f"{k}={float(np.max(v)):.3f}" for k, v in rhat.data_vars.items()
               if np.any(np.asarray(v) > 1.01)]
        if bad:
            warnings.append("R-hat above 1.01 (chains disagree): " + ", ".join(bad))
    return warnings


def save_fit(
    idata: az.InferenceData,
    out_dir: str | Path,
    var_names: list[str] | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``posterior.nc``, ``summary.csv`` and ``forest.png`` atomically into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tenure.io import write_atomic, write_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    paths["posterior"] = write_atomic(out / "posterior.nc", lambda p: idata.to_netcdf(str(p), engine="h5netcdf"))
    paths["summary"] = write_table(summary_table(idata, var_names), out / "summary.csv", fmt="csv")

    def _plot(p: Path) -> None:
        axes = az.plot_forest(idata, var_names=var_names, combined=True, hdi_prob=0.9,
                              figsize=(7, 1.5 + 0.35 * max(1, len(var_names or []))))
        fig = np.ravel(axes)[0].figure
        if title:
            fig.suptitle(title)
        fig.savefig(p, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)

    paths["figure"] = write_atomic(out / "forest.png", _plot)
    return paths
