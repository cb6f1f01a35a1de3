"""Partially pooled group intercepts and the exact compressed likelihoods shared by the panel models."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from tenure.models.base import prior

if TYPE_CHECKING:  # annotations only: PyMC and PyTensor load where a pooled model is built, not for the NumPy paths
    import arviz as az

#: A group with at least this many events pins its own intercept well enough for the centred form (with the
#: mean integrated out) to sample better than the non-centred one. Measured on small panels of 2–3 segments
#: (the SBC panels of benchmarks/sbc_hazard.py and a 5 % engine panel): centred had no divergences from about
#: 50 events per segment, non-centred had them in most fits up to a few hundred events.
CENTERED_MIN_EVENTS = 50
#: NUTS target acceptance of the pooled panel models: a smaller step than nutpie's 0.8, so the curved
#: posterior of a spread estimated from 2–3 groups does not diverge (costs a few more gradients on cells).
POOLED_TARGET_ACCEPT = 0.95
PARAMETRIZATIONS = ("auto", "centered", "noncentered", "zerosum")
#: Default prior of the spread of segment intercepts (log-odds or log-rate): Gamma(4, 8), mean 0.5, 90 % of its
#: mass between 0.17 and 0.97. With 2–3 segments the data say little about the spread, so its prior shapes the
#: posterior's lower tail, where the intercepts are squeezed together: Gamma(2, 4) (density ∝ sd² on the log
#: scale) left enough mass below sd 0.05 (1.8 %) for NUTS to diverge in that neck (2–13 of 4000 draws on 5 %
#: engine panels, centred or not, at target acceptance 0.95 or 0.99); Gamma(3, 6) (0.4 %) still diverged twice
#: on one of three; Gamma(4, 8) keeps the mean and puts 0.08 % there.
SEGMENT_SD_PRIOR: dict[str, Any] = {"dist": "Gamma", "alpha": 4.0, "beta": 8.0}


@dataclass(frozen=True)
class MarginalisedMean:
    """A pooled mean integrated out of the sampler, to be drawn from its exact conditional afterwards."""

    name: str
    groups: str
    prior_mu: float
    prior_sigma: float


def pooled_intercepts(
    name: str,
    mean_name: str,
    mean_spec: Mapping[str, Any],
    sd_spec: Mapping[str, Any],
    group: np.ndarray,
    n_groups: int,
    events_per_group: np.ndarray,
    dims: str,
    parametrization: str = "auto",
) -> tuple[Any, MarginalisedMean | None]:
    """Group intercepts ``name[g] ~ Normal(mean, name_sd)`` with ``mean`` ~ its prior, indexed by ``group``.

    With one group, the mean itself is the intercept. ``"auto"`` chooses the centred
    form when every group has at least :data:`CENTERED_MIN_EVENTS` events (the data
    pin each intercept), the non-centred form otherwise (few data). ``"zerosum"`` writes
    ``name[g] = mean + name_sd · z_g`` with ``z ~ ZeroSumNormal(1)``: the deviations sum to
    zero, so ``mean`` is the average of the group intercepts and is pinned by all the data,
    with no ridge between it and the deviations (the non-centred form has one: shifting
    ``mean`` up and every ``z_g`` down leaves the likelihood unchanged). The deviations of G
    exchangeable Normal(μ, sd) intercepts from their own average have exactly this
    distribution; the prior on ``mean`` then stands for the average of the groups. In the centred
    form with a Normal prior on the mean, the mean is integrated out analytically:
    the intercepts are jointly ``MvNormal(m0·1, sd²·I + s0²·11ᵀ)`` (a flat
    variable plus that log-density, :func:`exchangeable_normal_logp`). With few groups a
    sampled mean makes a funnel with the spread (its scale is sd/√G); without it the
    sampler sees none. The mean is then drawn exactly from its Normal conditional
    (:func:`add_marginalised_means`).

    Returns
    -------
    tuple
        The intercept of each cell (a tensor) and, when the mean was integrated out,
        what :func:`add_marginalised_means` needs to draw it.
    """
    import pymc as pm

    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}")
    if n_groups == 1:
        return prior(mean_name, mean_spec), None
    centered = (parametrization == "centered"
                or (parametrization == "auto" and float(np.min(events_per_group)) >= CENTERED_MIN_EVENTS))
    if centered and mean_spec.get("dist") == "Normal" and set(mean_spec) <= {"dist", "mu", "sigma"}:
        m0, s0 = float(mean_spec.get("mu", 0.0)), float(mean_spec.get("sigma", 1.0))
        sd = prior(f"{name}_sd", sd_spec)
        values = pm.Flat(name, dims=dims, initval=np.full(n_groups, m0))
        pm.Potential(f"{name}_prior", exchangeable_normal_logp(values, m0, s0, sd))
        return values[group], MarginalisedMean(mean_name, name, m0, s0)
    mean = prior(mean_name, mean_spec)
    sd = prior(f"{name}_sd", sd_spec)
    if parametrization == "zerosum":
        z = pm.ZeroSumNormal(f"{name}_z", sigma=1.0, dims=dims)
        values = pm.Deterministic(name, mean + sd * z, dims=dims)
    elif centered:
        values = pm.Normal(name, mu=mean, sigma=sd, dims=dims)
    else:
        z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=dims)
        values = pm.Deterministic(name, mean + sd * z, dims=dims)
    return values[group], None


def exchangeable_normal_logp(values: Any, m0: float, s0: float, sd: Any) -> Any:
    """log MvNormal(values | m0·1, sd²·I + s0²·11ᵀ) in closed form.

    With G groups, c = sd² + G·s0² and d = values − m0: log det Σ = (G − 1)·log sd² + log c
    and dᵀΣ⁻¹d = (Σd² − s0²(Σd)²/c)/sd² (Sherman–Morrison). A general MvNormal would
    factorise Σ at every gradient, about 10× slower here.
    """
    import pytensor.tensor as pt

    d = values - m0
    g = d.shape[0]
    c = sd**2 + g * s0**2
    quad = (pt.sum(d**2) - s0**2 * pt.sum(d) ** 2 / c) / sd**2
    logdet = (g - 1) * pt.log(sd**2) + pt.log(c)
    return -0.5 * (g * np.log(2 * np.pi) + logdet + quad)


def add_marginalised_means(idata: az.InferenceData, means: list[MarginalisedMean], seed: int) -> None:
    """Draw each integrated-out mean from its conditional posterior and add it to ``idata.posterior``.

    Given group intercepts a_1..a_G ~ Normal(μ, sd²) and μ ~ Normal(m0, s0²), the
    conditional is Normal with precision P = 1/s0² + G/sd² and mean
    (m0/s0² + Σa/sd²)/P (Normal–Normal conjugacy, Gelman et al. 2013, §5.4). One
    draw per posterior draw gives exact draws of the joint posterior.
    """
    rng = np.random.default_rng(seed)
    for m in means:
        a = idata.posterior[m.groups]
        sd = idata.posterior[f"{m.groups}_sd"]
        dim = next(d for d in a.dims if d not in ("chain", "draw"))
        precision = 1.0 / m.prior_sigma**2 + a.sizes[dim] / sd**2
        centre = (m.prior_mu / m.prior_sigma**2 + a.sum(dim) / sd**2) / precision
        idata.posterior[m.name] = centre + rng.standard_normal(centre.shape) / np.sqrt(precision)


def _softplus(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np.logaddexp(0.0, x)
    import pytensor.tensor as pt

    return pt.softplus(x)


def _exp(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return np.exp(x)
    import pytensor.tensor as pt

    return pt.exp(x)


def binomial_kernel_logp(events: Any, at_risk: Any, eta: Any) -> Any:
    """Σ over rows of the Bernoulli log-likelihood, from a cell's events and at-risk rows.

    e·log σ(η) + (n − e)·log(1 − σ(η)); this is the Binomial log-pmf without the
    constant log C(n, e), so it equals the row-level Bernoulli sum exactly. ``eta``
    may be a PyTensor tensor (the models) or a NumPy array (:func:`cells_mle`).
    """
    return -events * _softplus(-eta) - (at_risk - events) * _softplus(eta)


def binomial_kernel_derivatives(events: np.ndarray, at_risk: np.ndarray, eta: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray]:
    """First and minus second derivatives of :func:`binomial_kernel_logp` in η: e − n·p and n·p(1 − p)."""
    p = 1.0 / (1.0 + np.exp(-eta))
    return events - at_risk * p, at_risk * p * (1.0 - p)


def poisson_cells_logp(events: Any, exposure: Any, log_factorial: Any, eta: Any) -> Any:
    """Σ over rows of the Poisson log-pmf with log-rate η, from a cell's sufficient statistics.

    Y·η − n·e^η − Σ log y!, equal to the sum of the row-level log-pmfs (a tensor or an array, as above).
    """
    return events * eta - exposure * _exp(eta) - log_factorial


def poisson_cells_derivatives(events: np.ndarray, exposure: np.ndarray, log_factorial: np.ndarray,
                              eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and minus second derivatives of :func:`poisson_cells_logp` in η: Y − n·e^η and n·e^η."""
    mu = exposure * np.exp(eta)
    return events - mu, mu


def cells_mle(
    design: np.ndarray,
    logp: Callable[..., np.ndarray],
    derivatives: Callable[..., tuple[np.ndarray, np.ndarray]],
    data: Sequence[np.ndarray],
    iters: int = 50,
) -> np.ndarray:
    """Maximum-likelihood coefficients b of η = design·b for a compressed log-likelihood, by Newton's method.

    ``logp(*data, η)`` is one of the models' cell log-likelihoods and ``derivatives`` its
    derivatives in η, so the estimate maximises exactly what the models sample (with flat
    priors). Both kernels are concave in η, so Newton steps with step halving converge; η is
    kept within ±50, far outside any churn or cross-selling rate.
    """
    def evaluate(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        eta = np.clip(design @ b, -50.0, 50.0)
        d1, d2 = derivatives(*data, eta)
        return float(np.sum(logp(*data, eta))), design.T @ d1, (design * d2[:, None]).T @ design

    b = np.zeros(design.shape[1])
    ll, g, h = evaluate(b)
    for _ in range(iters):
        step = np.linalg.solve(h + 1e-8 * np.eye(h.shape[0]), g)
        t = 1.0
        while t > 1e-4:
            ll_new, g_new, h_new = evaluate(b + t * step)
            if ll_new >= ll - 1e-10:
                break
            t *= 0.5
        b = b + t * step
        converged = abs(ll_new - ll) < 1e-10 * (1.0 + abs(ll))
        ll, g, h = ll_new, g_new, h_new
        if converged:
            break
    return b


def segment_design(segment: np.ndarray, n_segments: int) -> np.ndarray:
    """One intercept column per segment (a column of ones with one segment)."""
    return np.eye(n_segments)[segment] if n_segments > 1 else np.ones((segment.size, 1))


#: The two likelihood routes of the cell models: compressed cells (the default) or one row per cell.
LIKELIHOODS = ("cells", "rows")


class CellModel:
    """What the retention and cross-selling models share: they are built on compressed cells.

    ``_row_count`` names the cell field that counts rows, so that the row-level
    likelihood (one row per cell, used to test that compression is exact) can be checked.
    """

    _row_count = "at_risk"

    @classmethod
    def from_cells(cls, cells: Any, priors: Mapping[str, Mapping[str, Any]] | None = None, *,
                   likelihood: str = "cells", parametrization: str = "auto") -> Any:
        """The model on cells compressed already (the joint model's, or the panel module's ``*_rows``)."""
        model = cls.__new__(cls)
        model._setup(cells, priors, likelihood, parametrization)
        return model

    def _setup(self, cells: Any, priors: Mapping[str, Mapping[str, Any]] | None, likelihood: str,
               parametrization: str) -> None:
        super().__init__(priors)  # type: ignore[call-arg]  # the BayesianModel beside this mixin
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}")
        if likelihood == "rows" and not np.all(getattr(cells, self._row_count) == 1):
            raise ValueError("likelihood='rows' needs one row per cell")
        self.cells = cells
        self.likelihood = likelihood
        self.parametrization = parametrization

    def options(self) -> dict[str, Any]:
        """Missing-score policy, segments, likelihood and parametrisation."""
        return {"missing": self.cells.missing.get("policy"), "likelihood": self.likelihood,
                "parametrization": self.parametrization, "segments": list(self.cells.segments)}


class MarginalisedMeansFit:
    """Mixin for :class:`~tenure.models.base.BayesianModel`: after fitting, draw the integrated-out means."""

    marginalised: list[MarginalisedMean]

    def _after_fit(self, idata: az.InferenceData, seed: int) -> az.InferenceData:
        """Add the pooled means to the posterior (same seed); for MAP also their conditional mode."""
        idata = super()._after_fit(idata, seed)  # type: ignore[misc]
        add_marginalised_means(idata, self.marginalised, seed=np.random.SeedSequence(seed).generate_state(1)[0])
        if "tenure_map" in idata.attrs:
            mode = json.loads(idata.attrs["tenure_map"])
            for m in self.marginalised:
                a, sd = np.asarray(mode[m.groups]), float(np.asarray(mode[f"{m.groups}_sd"]))
                precision = 1.0 / m.prior_sigma**2 + a.size / sd**2
                mode[m.name] = float((m.prior_mu / m.prior_sigma**2 + a.sum() / sd**2) / precision)
            idata.attrs["tenure_map"] = json.dumps(mode)
        return idata
