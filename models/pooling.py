"""Partially pooled group intercepts and the exact compressed likelihoods shared by the panel models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from tenure.models.base import prior

#: A group with at least this many events pins its own intercept, so the centred form samples better.
CENTERED_MIN_EVENTS = 200
PARAMETRIZATIONS = ("auto", "centered", "noncentered")


def pooled_intercepts(
    name: str,
    mean: Any,
    sd_spec: Mapping[str, Any],
    group: np.ndarray,
    n_groups: int,
    events_per_group: np.ndarray,
    dims: str,
    parametrization: str = "auto",
) -> Any:
    """Group intercepts ``name[g] ~ Normal(mean, name_sd)``, indexed by ``group``.

    With one group the mean itself is returned. ``"auto"`` chooses the centred form
    when every group has at least :data:`CENTERED_MIN_EVENTS` events (the data pin
    each intercept and the non-centred form would leave a ridge), the non-centred
    form otherwise (few data, where the centred form makes a funnel).
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}")
    if n_groups == 1:
        return mean
    sd = prior(f"{name}_sd", sd_spec)
    centered = (parametrization == "centered"
                or (parametrization == "auto" and float(np.min(events_per_group)) >= CENTERED_MIN_EVENTS))
    if centered:
        values = pm.Normal(name, mu=mean, sigma=sd, dims=dims)
    else:
        z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=dims)
        values = pm.Deterministic(name, mean + sd * z, dims=dims)
    return values[group]


def binomial_kernel_logp(events: Any, at_risk: Any, eta: Any) -> Any:
    """Σ over rows of the Bernoulli log-likelihood, from a cell's events and at-risk rows.

    e·log σ(η) + (n − e)·log(1 − σ(η)); this is the Binomial log-pmf without the
    constant log C(n, e), so it equals the row-level Bernoulli sum exactly.
    """
    return -events * pt.softplus(-eta) - (at_risk - events) * pt.softplus(eta)


def poisson_cells_logp(events: Any, exposure: Any, log_factorial: Any, eta: Any) -> Any:
    """Σ over rows of the Poisson log-pmf with log-rate η, from a cell's sufficient statistics.

    Y·η − n·e^η − Σ log y!, equal to the sum of the row-level log-pmfs.
    """
    return events * eta - exposure * pt.exp(eta) - log_factorial
