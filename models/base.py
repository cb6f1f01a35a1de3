"""The shape every model family shares: ``Model(data, priors=..., **options).fit(method=...)`` -> :class:`FitResult`.

A family subclasses :class:`BayesianModel`, takes its tidy data first and compresses it
in the constructor, sets ``name``, ``default_priors`` and ``named_parameters`` and
implements :meth:`BayesianModel.build`. Fitting, prior overrides, the summary table
(:func:`summary_table`: the mean or, for MAP, the mode, with the one 90 % equal-tailed
interval), diagnostics, the log-likelihood for LOO, saving and loading are shared here,
so that every family behaves the same way on the command line and in Python.

Priors are data: ``{"param": {"dist": "Normal", "mu": 0.0, "sigma": 2.5}}`` where
``dist`` names a PyMC distribution and the other keys are its parameters. A TOML or
JSON file with the same structure overrides any of them (:func:`load_priors`).
"""

from __future__ import annotations

import copy
import json
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from tenure.models import _diagnostics
from tenure.models._posterior_data import Group, PosteriorData, group_arrays

from tenure.checks import finite, read_text
from tenure.checks import seed as check_seed
from tenure.errors import InputError
from tenure.scenario import DEFAULT_SEED

if TYPE_CHECKING:
    import arviz as az
    import polars as pl
    import pymc as pm
    from tenure.models._fast import FastModel

FIT_METHODS = ("mcmc", "map", "advi")
#: PyTensor's warning at every compilation that a pip-installed NumPy gives it no BLAS: nothing a user can act on.
BLAS_WARNING = "PyTensor could not link to a BLAS"
#: Every interval tenure reports is this equal-tailed one: the 5 % and 95 % quantiles of the draws.
INTERVAL_PROB = 0.9
INTERVAL_LOW, INTERVAL_HIGH = "eti90_low", "eti90_high"
INTERVAL_CAPTION = "90 % equal-tailed interval (the 5 % and 95 % quantiles of the draws)"

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
    """Base class: a model family built from its tidy data and a prior configuration.

    Subclasses take their data first (``Model(data, priors=..., **options)``), compress it
    in the constructor and implement :meth:`build`. :meth:`fit` returns a
    :class:`FitResult`; ``self.result`` (and ``self.idata``) keep the latest one for
    predictions.
    """

    name: ClassVar[str] = "model"
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {}
    named_parameters: ClassVar[tuple[str, ...]] = ()
    sampler_options: ClassVar[dict[str, Any]] = {}
    """Extra keyword arguments for ``nutpie.sample`` (e.g. ``low_rank_modified_mass_matrix``)."""
    time_unit: str | None = None
    """Length of one period of the data (``"months"`` for the panels, ``--time-unit`` for the customer base)."""
    fast_sampler: bool = True
    """Fit ``map`` and ``mcmc`` on the closed-form Numba route where :meth:`fast_model` offers one (set ``False``
    on an instance, or ``TENURE_FIT_ROUTE=pymc`` in the environment, for the PyMC route)."""

    def __init__(self, priors: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.priors = merge_priors(self.default_priors, priors)
        self.given_priors = frozenset(priors or ())
        """Parameters whose prior the caller chose (never replaced by :attr:`sampling_priors`)."""
        self.sampling_priors: dict[str, dict[str, Any]] = {}
        """Proper priors that replace flat defaults for ``mcmc`` and ``advi`` only, where flat priors leave the
        posterior improper (the Pareto/NBD's dropout scale); ``map`` keeps the flat defaults, so its mode stays
        the maximum-likelihood estimate. A prior the caller gave is never replaced."""
        self._model: pm.Model | None = None

    # -- to implement -------------------------------------------------------------
    def build(self) -> pm.Model:
        """Return the PyMC model for this data and these priors."""
        raise NotImplementedError

    def data_summary(self) -> dict[str, Any]:
        """A small JSON-able description of the data the model was built from."""
        return {}

    def options(self) -> dict[str, Any]:
        """The constructor's options besides data and priors, recorded with every fit (JSON-able)."""
        return {}

    @property
    def var_names(self) -> list[str]:
        """The model's parameters, named as in the literature."""
        return list(self.named_parameters)

    def summary_var_names(self, idata: az.InferenceData | None = None) -> list[str]:
        """Parameters of :meth:`FitResult.summary`, the console table and the forest plot."""
        return self.var_names

    def effect_lines(self, idata: az.InferenceData | None = None, prob: float = INTERVAL_PROB) -> list[str]:
        """Plain-language lines, one per effect (none by default)."""
        return []

    def pointwise_log_likelihood(self, idata: az.InferenceData) -> dict[str, np.ndarray] | None:
        """Log-likelihood per observation, (draws, rows), for ``az.loo``; ``None``: PyMC computes it.

        Families whose likelihood is a ``pm.Potential`` (the customer-base models) override
        this and :meth:`observed_table` with the closed form in numpy; the observations are
        their compressed rows, each weighted by its count.
        """
        return None

    def observed_table(self) -> dict[str, np.ndarray]:
        """The compressed rows the likelihood sees (``observed_data``); empty: PyMC's observed variables."""
        return {}

    def predictive_check(self, idata: az.InferenceData, seed: int) -> dict[str, Any] | None:
        """A posterior predictive check from aggregates (:func:`tenure.models.ppc.predictive_check`), or ``None``.

        A family overrides it where an aggregate of its data has a distribution under the posterior
        (survivors per period, customers by number of repeat purchases); ``seed`` fixes any replication.
        """
        return None

    def diagnostic_var_names(self, idata: az.InferenceData) -> list[str]:
        """The parameters whose R-hat the fit commands check."""
        return list(self.named_parameters)

    def fast_model(self) -> FastModel | None:
        """This model on the closed-form Numba route (:mod:`tenure.models._fast`), or ``None``: fit the PyMC model.

        A family whose log density has a closed form overrides it and returns ``None``
        where the closed form does not express the model (covariates, priors it cannot
        write).
        """
        return None

    def fast_route(self) -> FastModel | None:
        """:meth:`fast_model` unless the instance or ``TENURE_FIT_ROUTE=pymc`` asks for the PyMC route."""
        if not self.fast_sampler:
            return None
        from tenure.models._fast import route_forced_to_pymc

        return None if route_forced_to_pymc() else self.fast_model()


    # -- shared -------------------------------------------------------------------
    @property
    def model(self) -> pm.Model:
        """The PyMC model, built on first use."""
        if self._model is None:
            self._model = self.build()
        return self._model

    @property
    def idata(self) -> az.InferenceData | None:
        """The ``InferenceData`` of the latest fit, or ``None`` before fitting."""
        return None if self.result is None else self.result.idata

    def fit(
        self,
        method: str = "mcmc",
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        seed: int = DEFAULT_SEED,
        progress: bool = False,
    ) -> FitResult:
        """Fit the model; the defaults are those of ``tenure fit``.

        Parameters
        ----------
        method
            ``"mcmc"``: NUTS with nutpie (default); ``"map"``: the posterior mode (with
            flat priors the maximum-likelihood estimate) with a Laplace (normal)
            approximation around it in the unconstrained space for the intervals;
            ``"advi"``: mean-field variational inference.
        draws, tune, chains
            Posterior draws per chain, tuning steps and chains (``mcmc``); ``draws``
            and ``chains`` also size the approximate posteriors of ``map``/``advi``.
        seed
            Fixes every random choice of the fit.
        progress
            Show the sampler's progress bar.

        Returns
        -------
        FitResult
            The posterior with the model name, method, configuration and time unit;
            ``summary()`` gives the table of estimates, ``save(path)`` the NetCDF file.
        """
        check_fit_settings(method, draws, tune, chains)
        check_seed(seed)
        swap = {k: v for k, v in getattr(self, "sampling_priors", {}).items()
                if method != "map" and k not in getattr(self, "given_priors", ())}
        if not swap:
            return self._fit(method, draws, tune, chains, seed, progress)
        flat, built = self.priors, self._model
        self.priors, self._model = {**flat, **swap}, None
        try:
            return self._fit(method, draws, tune, chains, seed, progress)
        finally:
            self.priors, self._model = flat, built

    def _fit(self, method: str, draws: int, tune: int, chains: int, seed: int, progress: bool) -> FitResult:
        with warnings.catch_warnings():
            # Also where a caller (a test runner) reset the filter that tenure.models installs.
            warnings.filterwarnings("ignore", message=BLAS_WARNING, category=UserWarning)
            fast = self.fast_route() if method in ("mcmc", "map") else None
            if fast is not None and method == "mcmc":
                idata = fast.nuts_fit(draws=draws, tune=tune, chains=chains, seed=seed, progress=progress,
                                      **self.sampler_options)
            elif fast is not None:
                idata = fast.map_fit(draws=draws, chains=chains, seed=seed)
            elif method == "mcmc":
                idata = self._sample_mcmc(draws=draws, tune=tune, chains=chains, seed=seed, progress=progress)
            elif method == "map":
                idata = laplace_approximation(self.model, draws=draws, chains=chains, seed=seed)
            else:
                idata = fit_advi(self.model, draws=draws, chains=chains, seed=seed, progress=progress)
            if not isinstance(idata, PosteriorData):  # nutpie's and PyMC's InferenceData: the same Datasets
                idata = PosteriorData.from_arviz(idata)
            idata.attrs["tenure_sampler"] = "numba-closed-form" if fast is not None else "pymc"
            if method != "mcmc":
                _check_finite_draws(idata, method)
            idata = self._after_fit(idata, seed)
            settings = {"method": method, "draws": draws, "tune": 0 if method != "mcmc" else tune, "chains": chains,
                        "seed": seed}
            return self._result(idata, settings)

    def _after_fit(self, idata: az.InferenceData, seed: int) -> az.InferenceData:
        """Hook for quantities drawn after sampling (pooled means, cell NPS)."""
        return idata

    def _result(self, idata: PosteriorData, settings: Mapping[str, Any]) -> FitResult:
        """Add the attributes, observed data and (MCMC) log-likelihood, and keep the result."""
        if settings["method"] in FIT_METHODS:
            _add_observed_and_log_likelihood(self, idata, pointwise=settings["method"] == "mcmc")
        idata.attrs["tenure_model"] = self.name
        idata.attrs["tenure_method"] = settings["method"]
        idata.attrs["tenure_priors"] = json.dumps(self.priors)
        idata.attrs["tenure_config"] = json.dumps(
            {"priors": self.priors, "options": self.options(), "fit": dict(settings)}, default=_jsonable)
        idata.attrs["tenure_data_summary"] = json.dumps(self.data_summary(), default=_jsonable)
        idata.attrs["tenure_time_unit"] = self.time_unit or ""
        idata.attrs["tenure_var_names"] = json.dumps(self.summary_var_names(idata))
        idata.attrs["tenure_diagnostic_var_names"] = json.dumps(self.diagnostic_var_names(idata))
        idata.attrs["tenure_effects"] = json.dumps(self.effect_lines(idata))
        self.result = FitResult(idata)
        check = self.predictive_check(idata, int(settings["seed"]))
        if check is not None:
            idata.attrs["tenure_ppc"] = json.dumps(check, default=_jsonable)
        return self.result

    def _sample_mcmc(self, *, draws: int, tune: int, chains: int, seed: int, progress: bool) -> az.InferenceData:
        """NUTS on :attr:`model` with nutpie; a family may override it with a faster sampler of the same density."""
        return sample_nutpie(self.model, draws=draws, tune=tune, chains=chains, seed=seed,
                             progress=progress, **self.sampler_options)


def _check_finite_draws(idata: az.InferenceData, method: str) -> None:
    """An approximate posterior (MAP's Laplace draws, ADVI) with a non-finite draw is refused, naming the parameter.

    It happens where the data do not identify a parameter (a flat direction of the log density, a
    spread estimated at zero): the normal approximation is then unbounded and its intervals mean nothing.
    """
    for name, (_, values) in group_arrays(idata, "posterior").variables.items():
        if np.issubdtype(values.dtype, np.number) and not np.all(np.isfinite(values)):
            raise InputError(f"--method {method}: parameter {name!r} is not identified by the data (its approximate "
                             "posterior is unbounded); give it a proper prior with --priors, fit more data, or use "
                             "--method mcmc")


def check_fit_settings(method: str, draws: int, tune: int, chains: int) -> None:
    """Fail with one line on an unknown method or non-positive sizes (before any work)."""
    if method not in FIT_METHODS:
        raise InputError(f"--method: unknown method {method!r}; use one of {', '.join(FIT_METHODS)}")
    if draws < 1 or chains < 1 or tune < 0:
        raise InputError("--draws and --chains must be at least 1, --tune at least 0")


#: Above this many values (chains × draws × observations, 40 MB) the log-likelihood is not stored: a
#: posterior.nc of hundreds of MB took longer to write than the fit (the CDNOW log, 11,104 unique rows × 4000
#: draws, made 318 MB); ``model.pointwise_log_likelihood(idata)`` computes it on demand.
LOG_LIKELIHOOD_MAX_VALUES = 5_000_000


def _add_observed_and_log_likelihood(model: BayesianModel, idata: PosteriorData, *, pointwise: bool = True) -> None:
    """Add ``observed_data`` and (with ``pointwise``) ``log_likelihood`` groups, so that ``az.loo`` and
    ``az.compare`` work.

    The observations are the model's compressed rows or cells (identical customers, or
    the person-periods of one covariate cell, are one observation), so LOO here leaves
    out one cell at a time. ``tenure fit`` stores the pointwise log-likelihood for MCMC only:
    PSIS-LOO reweights posterior draws, which MAP's Laplace draws and ADVI's are only
    approximately, and for CDNOW it made 30 MB of the MAP fit's file and 3 of its 9 seconds;
    ``model.pointwise_log_likelihood(idata)`` computes it on demand for any fit.
    """
    observed = model.observed_table()
    post = idata.arrays("posterior")
    n = post.sizes["chain"] * post.sizes["draw"]
    rows = len(next(iter(observed.values()))) if observed else 0
    loglik = model.pointwise_log_likelihood(idata) if pointwise and n * rows <= LOG_LIKELIHOOD_MAX_VALUES else None
    stored = loglik is not None
    if stored:
        idata.add_groups(log_likelihood=Group({k: (("chain", "draw", "row"), np.asarray(v).reshape(
            post.sizes["chain"], post.sizes["draw"], -1)) for k, v in loglik.items()},
            {"chain": post.labels("chain"), "draw": post.labels("draw")}))
    if stored or observed:  # the model's compressed rows or cells
        _add_observed(idata, observed, {k: ("row",) for k in observed})
    else:  # PyMC's observed variables, with the dimension names of its log_likelihood group
        pm_model = model.model
        observed = {v.name: _observed_value(pm_model, v) for v in pm_model.observed_RVs}
        if pointwise and observed and n * sum(v.size for v in observed.values()) <= LOG_LIKELIHOOD_MAX_VALUES:
            import pymc as pm

            # PyMC copies the model to compute it and refuses initial values (the pooled intercepts have one);
            # they matter only for sampling, which is over, so they are set aside meanwhile.
            initial = dict(pm_model.rvs_to_initial_values)
            try:
                for rv in initial:
                    pm_model.rvs_to_initial_values[rv] = None
                idata.add_groups(log_likelihood=pm.compute_log_likelihood(
                    idata.to_arviz(), model=pm_model, extend_inferencedata=False, progressbar=False))
            finally:
                pm_model.rvs_to_initial_values.update(initial)
            stored = True
        if observed:
            _add_observed(idata, observed, {k: tuple(f"{k}_dim_{i}" for i in range(np.ndim(v)))
                                            for k, v in observed.items()})
    idata.attrs["tenure_log_likelihood"] = ("per compressed row or cell" if stored
                                            else "not stored" if pointwise else "MCMC fits only")


def _add_observed(idata: PosteriorData, observed: Mapping[str, Any], dims: Mapping[str, tuple[str, ...]]) -> None:
    idata.add_groups(observed_data=Group({k: (dims[k], np.asarray(v)) for k, v in observed.items()}))


def _observed_value(pm_model: pm.Model, rv: Any) -> np.ndarray:
    value = pm_model.rvs_to_values[rv]
    return np.asarray(value.get_value() if hasattr(value, "get_value") else value.data)


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
        import pytensor

        # Without fast-math: with it, a graph compiled afresh and the same graph loaded from PyTensor's
        # on-disk cache round differently (the last digits of the draws differed between a machine's first
        # fit and every later one), and a seed must fix the result on every run.
        with pytensor.config.change_flags(numba__fastmath=False):
            compiled = nutpie.compile_pymc_model(model, backend="numba")
    elif backend == "pytensor":
        compiled = compile_nutpie_pytensor(model)
    else:
        raise ValueError(f"unknown nutpie backend {backend!r}; use 'numba' or 'pytensor'")
    from tenure.interrupt import raise_if_requested

    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        progress_bar=progress,
        store_divergences=False,
        **options,
    )
    raise_if_requested()  # nutpie returns the draws made so far when interrupted: never a result
    return idata


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
) -> PosteriorData:
    """MAP plus a normal approximation with the inverse Hessian in the unconstrained space.

    The draws are mapped back through the model's transforms, so constrained
    parameters stay in their support. The mode itself (of the free parameters and of
    every deterministic quantity) is stored in ``idata.attrs["tenure_map"]``; it is
    the estimate :func:`summary_table` reports.
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
    idata = PosteriorData.from_dict(
        {n: np.asarray(v).reshape((chains, draws, *np.shape(v[0]))) for n, v in draws_by_name.items() if n in keep},
        **_coords_and_dims(model, keep),
    )
    # The mode of every reported quantity, deterministic ones included, is the transform of the mode
    # (the mean of Laplace draws of a constrained parameter is not the estimate).
    at_mode = dict(zip(names, to_constrained(*[np.asarray(point[v.name]) for v in value_vars]), strict=True))
    idata.attrs["tenure_map"] = json.dumps({n: np.asarray(v).tolist() for n, v in at_mode.items() if n in keep})
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
) -> PosteriorData:
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
    return PosteriorData.from_dict(reshaped, **_coords_and_dims(model, set(reshaped)))


def _coords_and_dims(model: pm.Model, names: set[str]) -> dict[str, Any]:
    """The model's named dimensions for ``az.from_dict``, so that MAP and ADVI draws keep labels like
    ``churn_segment[price-driven]`` as NUTS draws do (without them ArviZ numbers the entries)."""
    dims = {n: list(d) for n, d in model.named_vars_to_dims.items() if n in names and all(d)}
    used = {d for ds in dims.values() for d in ds}
    coords = {k: list(v) for k, v in model.coords.items() if k in used and v is not None}
    dims = {n: ds for n, ds in dims.items() if all(d in coords for d in ds)}
    return {"coords": coords, "dims": dims}


def _labels_and_draws(post: Group, name: str) -> tuple[list[str], np.ndarray]:
    """Labels like ``churn_segment[price-driven]`` and draws (n, entries) of one variable, in C order."""
    dims, values = post.draws(name)
    flat = values.reshape(values.shape[0] * values.shape[1], -1)
    if not dims:
        return [name], flat
    grids = np.meshgrid(*[[str(c) for c in post.labels(d)] for d in dims], indexing="ij")
    labels = [f"{name}[{', '.join(parts)}]" for parts in zip(*(g.ravel() for g in grids), strict=True)]
    return labels, flat


def _rhat_and_ess(post: Group, name: str, ess: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Rank-normalised split R-hat and (with ``ess``) bulk ESS of each entry of ``name`` (C order), in NumPy
    (:mod:`tenure.models._diagnostics`, equal to ArviZ's), so neither ArviZ nor a Dataset is needed."""
    _, values = post.draws(name)
    entries = values.reshape(values.shape[0], values.shape[1], -1)
    rhat = np.array([_diagnostics.rhat(entries[:, :, k]) for k in range(entries.shape[2])])
    if not ess:
        return rhat, None
    return rhat, np.array([_diagnostics.ess_bulk(entries[:, :, k]) for k in range(entries.shape[2])])


def summary_table(idata: az.InferenceData, var_names: list[str] | None = None) -> pl.DataFrame:
    """One row per scalar parameter: the estimate, sd and the 90 % equal-tailed interval.

    The estimate is what the method gives: the posterior mean for ``mcmc`` and ``advi``
    (column ``mean``), the posterior mode for ``map`` (column ``mode``; with flat priors
    the maximum-likelihood estimate). ``sd`` and the interval come from the draws (for
    ``map`` the Laplace approximation). R-hat and bulk ESS are reported for ``mcmc``
    only: they describe Markov chains, and the other methods draw independently.
    """
    import polars as pl

    post = group_arrays(idata, "posterior")
    method = idata.attrs.get("tenure_method", "mcmc")
    names = list(var_names) if var_names is not None else list(post.variables)
    mode = json.loads(idata.attrs.get("tenure_map", "{}")) if method == "map" else {}
    chains = post.sizes.get("chain", 1)
    rows: dict[str, list[Any]] = {"parameter": [], "estimate": [], "sd": [], INTERVAL_LOW: [], INTERVAL_HIGH: [],
                                  "r_hat": [], "ess_bulk": []}
    for name in names:
        labels, flat = _labels_and_draws(post, name)
        lo, hi = np.quantile(flat, [(1 - INTERVAL_PROB) / 2, (1 + INTERVAL_PROB) / 2], axis=0)
        if method == "map":
            if name not in mode:
                raise InputError(f"{name}: the MAP fit has no mode for this parameter")
            estimate = np.ravel(mode[name])
        else:
            estimate = flat.mean(axis=0)
        rows["parameter"] += labels
        rows["estimate"] += [float(v) for v in estimate]
        rows["sd"] += [float(v) for v in flat.std(axis=0, ddof=1 if flat.shape[0] > 1 else 0)]
        rows[INTERVAL_LOW] += [float(v) for v in np.atleast_1d(lo)]
        rows[INTERVAL_HIGH] += [float(v) for v in np.atleast_1d(hi)]
        if method == "mcmc":
            rhat, ess = (np.full(len(labels), np.nan), np.full(len(labels), np.nan))
            if chains > 1:
                rhat, ess = _rhat_and_ess(post, name)
            rows["r_hat"] += [float(v) for v in rhat]
            rows["ess_bulk"] += [float(v) for v in ess]
    table = pl.DataFrame({k: v for k, v in rows.items() if method == "mcmc" or k not in ("r_hat", "ess_bulk")},
                         schema_overrides={"parameter": pl.String})
    return table.rename({"estimate": "mode" if method == "map" else "mean"})


def diagnostics_warnings(idata: az.InferenceData, var_names: list[str] | None = None) -> list[str]:
    """Plain-language warnings of an MCMC fit: divergences and R-hat above 1.01, naming every entry above it
    (worst first); none for MAP or ADVI."""
    if idata.attrs.get("tenure_method", "mcmc") != "mcmc":
        return []
    warnings: list[str] = []
    ss = group_arrays(idata, "sample_stats") if "sample_stats" in idata.groups() else None
    if ss is not None and "diverging" in ss:
        n_div = int(np.asarray(ss.variables["diverging"][1]).sum())
        if n_div:
            warnings.append(f"{n_div} divergent transitions: the posterior may be biased; "
                            "consider stronger priors or more tuning")
    post = group_arrays(idata, "posterior")
    if post.sizes.get("chain", 1) > 1:
        entries = []
        for name in var_names if var_names is not None else list(post.variables):
            labels, _ = _labels_and_draws(post, name)
            rhat, _ = _rhat_and_ess(post, name, ess=False)
            entries += [(label, float(v)) for label, v in zip(labels, rhat, strict=True)]
        bad = [f"{name}={value:.3f}" for name, value in sorted(entries, key=lambda e: -e[1]) if value > 1.01]
        if bad:
            warnings.append("R-hat above 1.01 (chains disagree): " + ", ".join(bad))
    return warnings


#: Words in a parameter's name that make it an intercept (a baseline level, on its own axis).
_INTERCEPT_WORDS = ("intercept", "_base", "_segment[")
#: Words that make it a scale, spread or concentration (positive, often much larger than the effects);
#: an effect "per sd" of a score stays an effect.
_SCALE_WORDS = ("concentration", "kappa", "dispersion", "corr")


def _forest_group(label: str) -> str:
    name = label.split("[")[0]
    if any(w in label for w in _INTERCEPT_WORDS[2:]) or any(w in name for w in _INTERCEPT_WORDS[:2]):
        return "intercepts and baselines"
    if (name.endswith("_sd") and not name.endswith("_per_sd")) or any(w in name for w in _SCALE_WORDS):
        return "spreads, correlations and concentrations"
    return "effects and other parameters"


def plot_forest(summary: pl.DataFrame, path: Path, title: str | None = None) -> None:
    """Estimates with their 90 % equal-tailed intervals, drawn from the summary table (not the draws).

    Intercepts, effects and scale parameters (spreads, concentrations) each get their own panel
    and x axis, so a concentration of 30 does not squash effects of 0.2; panels whose intervals
    could take either sign carry a zero line. The title is the figure's, above every panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tenure.plotting import OKABE_ITO, rc

    estimate = "mode" if "mode" in summary.columns else "mean"
    labels = summary["parameter"].to_list()
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(_forest_group(label), []).append(i)
    order = [g for g in ("intercepts and baselines", "effects and other parameters",
                         "spreads, correlations and concentrations") if g in groups]
    sizes = [len(groups[g]) for g in order]
    low, high, est = (summary[c].to_numpy() for c in (INTERVAL_LOW, INTERVAL_HIGH, estimate))
    width, height = 7.5, 1.3 + 0.32 * sum(sizes) + 0.7 * len(order)
    # A fixed layout, in inches (drawn in a third of the constrained layout's time): the longest label
    # at about 0.075 in per character of 10 pt text on the left, the title above, and between panels
    # room for an axis label and the next panel's title.
    gap, top, bottom = 0.8, 0.6, 0.75
    panel = (height - top - bottom - gap * (len(order) - 1)) / len(order)
    left = min(0.5, max(0.12, (0.3 + 0.075 * max(len(label) for label in labels)) / width))
    with matplotlib.rc_context(rc()):
        fig, axes = plt.subplots(len(order), 1, figsize=(width, height), height_ratios=[n + 1.2 for n in sizes],
                                 squeeze=False, gridspec_kw={"left": left, "right": 1 - 0.25 / width,
                                                             "top": 1 - top / height, "bottom": bottom / height,
                                                             "hspace": gap / panel})
        for ax, group, colour in zip(axes[:, 0], order, (OKABE_ITO[1], OKABE_ITO[0], OKABE_ITO[2]), strict=False):
            rows = groups[group]
            y = np.arange(len(rows))[::-1]
            ax.hlines(y, low[rows], high[rows], color=colour, lw=2)
            ax.plot(est[rows], y, "o", color=colour, ms=5)
            ax.set_yticks(y, [labels[i] for i in rows])
            ax.set_ylim(-0.7, len(rows) - 0.3)
            if low[rows].min() <= 0 <= high[rows].max() or group == "effects and other parameters":
                ax.axvline(0, color="#333333", lw=0.8)
            ax.set_title(group, loc="left", fontsize="medium")
            ax.set_xlabel(f"{estimate} and 90 % interval (model scale)")
        fig.suptitle(title or "Estimates", fontsize="large", y=1 - 0.12 / height, va="top")
        fig.text(0.01, 0.05 / height, INTERVAL_CAPTION, fontsize="small", color="#555555", va="bottom")
        fig.savefig(path, format="png", dpi=120)
        plt.close(fig)


class FitResult:
    """A fitted posterior with what is needed to read it again: model, method, config and time unit.

    The groups and attributes are in :attr:`data` (a :class:`~tenure.models._posterior_data.PosteriorData`,
    read like an ``InferenceData`` without importing ArviZ), and as an ``arviz.InferenceData`` in
    :attr:`idata`. The attributes (saved with the draws in NetCDF, as pymc-marketing does) hold the model
    name (``tenure_model``), the method, the prior configuration and the constructor options
    (``tenure_config``), the data summary, the time unit and the reported parameters.
    :func:`tenure.models.load` reads a saved one back.
    """

    def __init__(self, idata: PosteriorData | az.InferenceData) -> None:
        self._data = idata

    @property
    def data(self) -> PosteriorData | az.InferenceData:
        """The groups (``posterior``, ``observed_data``, ...) and ``attrs``, as read by tenure itself."""
        return self._data

    @property
    def idata(self) -> az.InferenceData:
        """The fit as an ``arviz.InferenceData`` for ArviZ's functions (``az.loo``, ``az.plot_trace``).

        Built on first use, sharing the Datasets and the attributes dict (imports ArviZ, about 4 s).
        """
        if isinstance(self._data, PosteriorData):
            self._data = self._data.to_arviz()
        return self._data

    @property
    def model_name(self) -> str:
        """The family that made the fit, e.g. ``"bgnbd"``."""
        return str(self._data.attrs.get("tenure_model", ""))

    @property
    def method(self) -> str:
        """``"mcmc"``, ``"map"``, ``"advi"`` (or ``"bayesian-bootstrap"`` for the TRI*M-style index)."""
        return str(self._data.attrs.get("tenure_method", "mcmc"))

    @property
    def time_unit(self) -> str | None:
        """The length of one period of the data, or ``None`` where the model has none."""
        return self._data.attrs.get("tenure_time_unit") or None

    @property
    def config(self) -> dict[str, Any]:
        """Priors, constructor options and fit settings."""
        return json.loads(self._data.attrs.get("tenure_config", "{}"))

    @property
    def data_summary(self) -> dict[str, Any]:
        """What the model was fitted on (rows, customers, cells, segments, ...)."""
        return json.loads(self._data.attrs.get("tenure_data_summary", "{}"))

    @property
    def var_names(self) -> list[str]:
        """The parameters of :meth:`summary`, in order."""
        return json.loads(self._data.attrs.get("tenure_var_names", "[]")) or list(self.posterior_arrays.variables)

    @property
    def effects(self) -> list[str]:
        """The plain-language effect lines."""
        return json.loads(self._data.attrs.get("tenure_effects", "[]"))

    @property
    def predictive_check(self) -> dict[str, Any] | None:
        """The posterior predictive check saved with the fit (see :mod:`tenure.models.ppc`), or ``None``."""
        text = self._data.attrs.get("tenure_ppc")
        return json.loads(text) if text else None

    @property
    def posterior(self) -> Any:
        """The posterior draws (an xarray Dataset; imports xarray)."""
        return self._data.posterior

    @property
    def posterior_arrays(self) -> Group:
        """The posterior draws as NumPy arrays with their dimensions and coordinates (no xarray)."""
        return group_arrays(self._data, "posterior")

    @property
    def attrs(self) -> dict[str, Any]:
        """The attributes saved with the posterior."""
        return self._data.attrs

    def summary(self, var_names: list[str] | None = None) -> pl.DataFrame:
        """The table of estimates (see :func:`summary_table`): ``summary.csv`` and the console table."""
        return summary_table(self._data, var_names or self.var_names)

    def warnings(self) -> list[str]:
        """Divergences and R-hat above 1.01 (MCMC only)."""
        names = json.loads(self._data.attrs.get("tenure_diagnostic_var_names", "[]")) or self.var_names
        return diagnostics_warnings(self._data, [n for n in names if n in self.posterior_arrays])

    def save(self, path: str | Path) -> Path:
        """Write the posterior with its attributes as NetCDF, atomically; a folder gets ``posterior.nc``."""
        from tenure.io import write_atomic

        target = Path(path)
        if target.is_dir() or not target.suffix:
            target = target / POSTERIOR_FILE
        return write_atomic(target, lambda p: self._data.to_netcdf(str(p), engine="h5netcdf"))

    def write(self, folder: str | Path, title: str | None = None) -> dict[str, Path]:
        """Write ``posterior.nc``, ``summary.csv``, ``forest.png`` and, with a predictive check, ``ppc.csv``."""
        from tenure.models.ppc import PPC_FILE

        from tenure.io import write_atomic, write_table

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        written = {
            "posterior": self.save(out / POSTERIOR_FILE),
            "summary": write_table(summary, out / "summary.csv", fmt="csv"),
            "figure": write_atomic(out / "forest.png", lambda p: plot_forest(summary, p, title)),
        }
        check = self.predictive_check
        if check is not None:
            import polars as pl

            written["ppc"] = write_table(pl.DataFrame(check["rows"]), out / PPC_FILE, fmt="csv")
        return written

    def __repr__(self) -> str:
        post = self.posterior_arrays
        return (f"FitResult(model={self.model_name!r}, method={self.method!r}, time_unit={self.time_unit!r}, "
                f"chains={post.sizes.get('chain', 0)}, draws={post.sizes.get('draw', 0)})")


POSTERIOR_FILE = "posterior.nc"


def load_result(path: str | Path) -> FitResult:
    """Read a saved fit (a ``posterior.nc`` file, or a fit folder holding one)."""
    p = Path(path)
    file = p / POSTERIOR_FILE if p.is_dir() else p
    if not file.is_file():
        raise InputError(f"{p}: not a fit (no {POSTERIOR_FILE})")
    try:
        idata = PosteriorData.from_netcdf(str(file))
    except Exception as exc:  # netCDF readers raise several types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{file}: cannot read: {first}") from None
    if "tenure_model" not in idata.attrs:
        raise InputError(f"{file}: not a tenure fit (no tenure_model attribute)")
    return FitResult(idata)
