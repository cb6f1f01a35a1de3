"""Shifted-beta-geometric (sBG) retention for contracts (Fader & Hardie 2007).

At the end of each contract period a customer cancels with probability θ, constant for
her and distributed θ ~ Beta(α, β) across customers. Cohort survival tables (``cohort``,
``period``, ``alive``) or customer-level records (``periods``, ``churned``) are the data;
cohorts share one (α, β) (``pooled=True``) or each has its own.

Covariates enter on the churn probability: with μ = α/(α+β) the mean churn probability
and κ = α+β the concentration, customer i has logit μ_i = logit μ + γ·z_i and
(α_i, β_i) = (μ_i κ, (1−μ_i) κ). Covariates are centred on their sample means, so
``alpha`` and ``beta`` describe a customer with average covariates and a positive
coefficient means more churn.

Discounted expected lifetime (DEL) and residual lifetime (DERL) follow Fader & Hardie
(2010), "Customer-base valuation in a contractual setting: the perils of ignoring
heterogeneity", Marketing Science 29(1). They are computed here with
``scipy.special.hyp2f1`` (the closed forms are a few lines).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

# scipy.special is imported inside the functions that use it: 0.4 s of imports that a MAP fit does not need.
from tenure.models.base import BayesianModel, prior
from tenure.models.clv_data import (
    check_time_unit,
    cohort_to_durations,
    compress_summary,
    nuts_options,
    validate_cohort_table,
    validate_durations,
)
from tenure.models.clv_predict import curve_summary, posterior_draws, summarize_draws

from tenure.checks import discount_rate
from tenure.curves import sbg_survival
from tenure.errors import InputError

if TYPE_CHECKING:  # PyMC and PyTensor are imported only to build the model: the fast route fits without them
    import pymc as pm
    import pytensor.tensor as pt

FLAT = {"dist": "HalfFlat"}


def sbg_logp(alpha: Any, beta: Any, periods: Any, churned: Any) -> pt.TensorVariable:
    """Log-likelihood of each churn record under the sBG model (PyTensor, vectorised).

    Fader & Hardie (2007), "How to project customer retention", Journal of Interactive
    Marketing 21(1): P(T = t) = B(α+1, β+t−1)/B(α, β) (eq. 2) for a customer who churned
    in period t, S(t) = B(α, β+t)/B(α, β) (eq. 3) for one still active after t periods;
    the sample log-likelihood is their count-weighted sum (eq. 6).
    """
    import pytensor.tensor as pt
    from pytensor.tensor.special import betaln

    log_churn = betaln(alpha + 1.0, beta + periods - 1.0)
    log_survive = betaln(alpha, beta + periods)
    return pt.switch(pt.eq(churned, 1), log_churn, log_survive) - betaln(alpha, beta)


def sbg_retention(alpha: Any, beta: Any, t: Any) -> np.ndarray:
    """Retention rate r_t = (β+t−1)/(α+β+t−1) for t ≥ 1; Fader & Hardie (2007), eq. (4)."""
    return (np.add(beta, t) - 1.0) / (np.add(alpha, beta) + np.asarray(t) - 1.0)


def sbg_del(alpha: Any, beta: Any, discount_rate_per_period: float) -> np.ndarray:
    """Discounted expected lifetime of a new customer, in periods.

    DEL = ₂F₁(1, β; α+β; 1/(1+d)); Fader & Hardie (2010), eq. (4). The first period
    counts undiscounted (payment at the start of each period).
    """
    from scipy import special
    return special.hyp2f1(1.0, beta, np.add(alpha, beta), 1.0 / (1.0 + discount_rate_per_period))


def sbg_derl(alpha: Any, beta: Any, discount_rate_per_period: float, renewals: Any) -> np.ndarray:
    """Discounted expected residual lifetime of a customer who has renewed ``renewals`` times.

    DERL = (β+n)/(α+β+n) · ₂F₁(1, β+n+1; α+β+n+1; 1/(1+d)); Fader & Hardie (2010), eq. (6).
    """
    from scipy import special
    n = np.asarray(renewals, dtype=float)
    ab = np.add(alpha, beta)
    z = 1.0 / (1.0 + discount_rate_per_period)
    return (np.add(beta, n)) / (ab + n) * special.hyp2f1(1.0, np.add(beta, n) + 1.0, ab + n + 1.0, z)


class SBGModel(BayesianModel):
    """The sBG model in PyMC, per cohort or pooled, with optional covariates on churn.

    Parameters
    ----------
    data
        A cohort survival table (``cohort`` optional, ``period``, ``alive``) or
        customer-level records (``periods``, ``churned``, optional ``cohort``, ``count``
        and covariates). The shape is recognised from the columns.
    time_unit
        Length of one contract period: ``"days"``, ``"weeks"``, ``"months"`` or ``"years"``.
    pooled
        One (α, β) for all cohorts (default) or one per cohort.
    covariates
        Columns of customer-level records that shift the churn probability.
    priors
        Overrides of :attr:`default_priors`: flat for α and β (the posterior mode is the
        maximum-likelihood estimate), Normal(0, 1) per covariate unit for the
        coefficients on the logit of the churn probability.
    where
        Name of the input in error messages.
    """

    name: ClassVar[str] = "sbg"
    named_parameters: ClassVar[tuple[str, ...]] = ("alpha", "beta")
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {
        "alpha": FLAT, "beta": FLAT, "churn_coefficient": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
    }

    def __init__(
        self,
        data: pl.DataFrame,
        *,
        time_unit: str = "years",
        pooled: bool = True,
        covariates: Sequence[str] = (),
        priors: Mapping[str, Mapping[str, Any]] | None = None,
        where: str = "cohorts",
    ) -> None:
        super().__init__(priors)
        self.time_unit = check_time_unit(time_unit)
        self.pooled = pooled
        self.covariates = tuple(covariates)
        if "alive" in data.columns and "periods" not in data.columns:
            if self.covariates:
                raise InputError(f"{where}: covariates need customer-level records (periods, churned), "
                                 "not a cohort table")
            records = cohort_to_durations(validate_cohort_table(data, where=where))
        else:
            records = validate_durations(data, where=where, covariates=self.covariates)
        w = records["count"].to_numpy()
        if w.sum() == 0:
            raise InputError(f"{where}: no customers")
        self.covariate_means = {c: float(np.average(records[c].to_numpy(), weights=w)) for c in self.covariates}
        self.data = compress_summary(records.select("cohort", "periods", "churned", *self.covariates, "count"))
        self.cohorts = sorted(self.data["cohort"].unique().to_list())
        self.n_customers = int(self.data["count"].sum())
        self.sampler_options = nuts_options(self.data.height)

    @property
    def var_names(self) -> list[str]:
        """Parameters reported in summaries."""
        return ["alpha", "beta", *(["churn_coefficient"] if self.covariates else [])]

    def data_summary(self) -> dict[str, Any]:
        """Customers, cohorts, unique records, time unit and covariate means."""
        return {"customers": self.n_customers, "cohorts": self.cohorts, "pooled": self.pooled,
                "unique_rows": self.data.height, "time_unit": self.time_unit,
                "covariates": list(self.covariates), "covariate_means": self.covariate_means}

    def build(self) -> pm.Model:
        """The PyMC model: priors on α, β (per cohort unless pooled), weighted sBG likelihood."""
        import pymc as pm
        import pytensor.tensor as pt

        coords: dict[str, list[str]] = {"covariate": list(self.covariates)}
        dims: str | None = None
        if not self.pooled:
            coords["cohort"] = self.cohorts
            dims = "cohort"
        idx = np.searchsorted(np.asarray(self.cohorts), self.data["cohort"].to_numpy())
        periods = self.data["periods"].to_numpy().astype(float)
        churned = self.data["churned"].to_numpy().astype(float)
        w = self.data["count"].to_numpy().astype(float)
        with pm.Model(coords=coords) as model:
            alpha = prior("alpha", self.priors["alpha"], dims=dims)
            beta = prior("beta", self.priors["beta"], dims=dims)
            a_i = alpha if self.pooled else alpha[idx]
            b_i = beta if self.pooled else beta[idx]
            if self.covariates:
                g = prior("churn_coefficient", self.priors["churn_coefficient"], dims="covariate")
                z = np.column_stack([self.data[c].to_numpy() - self.covariate_means[c] for c in self.covariates])
                kappa = a_i + b_i
                mu = pm.math.sigmoid(pt.log(a_i) - pt.log(b_i) + pt.dot(z, g))
                a_i, b_i = mu * kappa, (1.0 - mu) * kappa
            pm.Potential("log_likelihood", pt.dot(w, sbg_logp(a_i, b_i, periods, churned)))
        return model

    def fast_model(self) -> Any:
        """The closed-form Numba route (:mod:`tenure.models._sbg_fast`) without covariates; ``None`` with them or with
        a prior it cannot express (see :mod:`tenure.models._fast`)."""
        if self.covariates:
            return None
        from tenure.models import _sbg_fast

        cohort = (np.zeros(self.data.height) if self.pooled
                  else np.searchsorted(np.asarray(self.cohorts), self.data["cohort"].to_numpy()))
        buf = _sbg_fast.pack_data(cohort, *(self.data[c].to_numpy() for c in ("periods", "churned", "count")),
                                  1 if self.pooled else len(self.cohorts), self.priors)
        if buf is None:
            return None
        return _sbg_fast.fast_model(buf, None if self.pooled else self.cohorts)

    def options(self) -> dict[str, Any]:
        """Time unit, pooling and covariates with their means."""
        return {"time_unit": self.time_unit, "pooled": self.pooled, "covariates": list(self.covariates),
                "covariate_means": self.covariate_means}

    def observed_table(self) -> dict[str, np.ndarray]:
        """The compressed churn records."""
        return {c: self.data[c].to_numpy() for c in self.data.columns}

    def pointwise_log_likelihood(self, idata: Any) -> dict[str, np.ndarray]:
        """count × log-likelihood of each compressed record per draw (eqs. 2 and 3 in numpy)."""
        from scipy import special
        d = posterior_draws(idata, self.var_names)
        cohort = np.searchsorted(np.asarray(self.cohorts), self.data["cohort"].to_numpy())
        z = np.column_stack([self.data[c].to_numpy() - self.covariate_means[c] for c in self.covariates]
                            ) if self.covariates else None
        alpha, beta = self._individual(d, None if self.pooled else cohort, z)
        t, churned, w = (self.data[c].to_numpy().astype(float) for c in ("periods", "churned", "count"))
        ll = np.where(churned == 1, special.betaln(alpha + 1.0, beta + t - 1.0), special.betaln(alpha, beta + t))
        return {"renewals": w * (ll - special.betaln(alpha, beta))}

    def predictive_check(self, idata: Any, seed: int) -> dict[str, Any]:
        """Survivors per period, observed against expected under the posterior, per cohort unless pooled.

        Observed: the Kaplan-Meier survivors, N · Π_{s≤t} (1 − churned_s / at risk_s), which for a
        cohort table watched to one horizon is its ``alive`` column. Expected under a draw: N times
        the count-weighted mean of S_i(t) = B(α_i, β_i + t) / B(α_i, β_i) over the customers'
        records (Fader & Hardie 2007, eq. 3), at 100 draws.
        """
        from scipy import special
        from tenure.models.ppc import check_rows, draw_indices
        from tenure.models.ppc import predictive_check as make_check

        d = posterior_draws(idata, self.var_names)
        pick = draw_indices(len(d["alpha"]))
        d = {k: v[pick] for k, v in d.items()}
        cohort = np.searchsorted(np.asarray(self.cohorts), self.data["cohort"].to_numpy())
        z = np.column_stack([self.data[c].to_numpy() - self.covariate_means[c] for c in self.covariates]
                            ) if self.covariates else None
        alpha, beta = self._individual(d, None if self.pooled else cohort, z)
        alpha, beta = (np.broadcast_to(v, (len(pick), self.data.height)) for v in (alpha, beta))
        periods, churned, w = (self.data[c].to_numpy() for c in ("periods", "churned", "count"))
        rows = []
        for g, name in [(None, "all cohorts")] if self.pooled else list(enumerate(self.cohorts)):
            sel = np.ones(self.data.height, bool) if g is None else cohort == g
            n = float(w[sel].sum())
            t = np.arange(int(periods[sel].max()) + 1)
            at_risk = np.array([w[sel & (periods >= k)].sum() for k in t[1:]], dtype=float)
            churns = np.array([w[sel & (churned == 1) & (periods == k)].sum() for k in t[1:]], dtype=float)
            share = np.cumprod(1.0 - np.divide(churns, at_risk, out=np.zeros_like(at_risk), where=at_risk > 0))
            observed = n * np.concatenate([[1.0], share])
            a, b, wg = alpha[:, sel], beta[:, sel], w[sel].astype(float)
            expected = np.column_stack([np.exp(special.betaln(a, b + k) - special.betaln(a, b)) @ wg for k in t])
            rows += check_rows(str(name), t, [str(k) for k in t], observed, expected)
        unit = self.time_unit
        return make_check("survivors", rows, title="Survivors per period: observed against the fitted sBG",
                          x_label=f"period ({unit.rstrip('s')}s since the start)",
                          y_label="customers still active (customers)",
                          caption="Customers still active after each period: observed (dots, Kaplan-Meier where "
                                  "records end early) against the number the fit expects (line) with its 90 % band "
                                  f"over {len(pick)} posterior draws; dots outside the band are periods the sBG "
                                  "misses.", draws=len(pick))

    def _individual(self, d: Mapping[str, np.ndarray], cohort: np.ndarray | None,
                    z: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(α_i, β_i) per draw and row, from each row's cohort index (unless pooled) and centred covariates."""
        from scipy import special
        alpha, beta = d["alpha"], d["beta"]
        if cohort is None:
            alpha, beta = alpha[:, None], beta[:, None]
        else:
            alpha, beta = alpha[:, cohort], beta[:, cohort]
        if z is not None:
            kappa = alpha + beta
            mu = special.expit(np.log(alpha) - np.log(beta) + d["churn_coefficient"] @ z.T)
            alpha, beta = mu * kappa, (1.0 - mu) * kappa
        return alpha, beta

    # -- predictions ---------------------------------------------------------------
    def _params(self, cohort: str | None, covariates: Mapping[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior draws of (α, β) for one cohort and covariate profile."""
        if self.result is None:
            raise InputError("sbg: fit the model before predicting")
        d = posterior_draws(self.result.data, self.var_names)
        k = None
        if not self.pooled:
            if cohort is None:
                raise InputError(f"sbg: name a cohort (one of {', '.join(self.cohorts)})")
            if cohort not in self.cohorts:
                raise InputError(f"sbg: unknown cohort {cohort!r}; known: {', '.join(self.cohorts)}")
            k = np.array([self.cohorts.index(cohort)])
        z = None
        if self.covariates:
            values = dict(self.covariate_means, **(covariates or {}))
            unknown = set(values) - set(self.covariates)
            if unknown:
                raise InputError(f"sbg: unknown covariate {sorted(unknown)[0]!r}")
            z = np.array([[values[c] - self.covariate_means[c] for c in self.covariates]])
        alpha, beta = self._individual(d, k, z)
        return alpha[:, 0], beta[:, 0]

    def survival_curve(
        self, horizon_periods: int, *, cohort: str | None = None, covariates: Mapping[str, float] | None = None,
        interval: float = 0.9,
    ) -> pl.DataFrame:
        """S(t) for t = 0..``horizon_periods`` contract periods: posterior mean and interval."""
        alpha, beta = self._params(cohort, covariates)
        t = np.arange(int(horizon_periods) + 1)
        vals = sbg_survival(alpha[:, None], beta[:, None], t[None, :])
        return curve_summary(vals, t, f"period_{self.time_unit}", interval)

    def retention_curve(
        self, horizon_periods: int, *, cohort: str | None = None, covariates: Mapping[str, float] | None = None,
        interval: float = 0.9,
    ) -> pl.DataFrame:
        """Retention rates r_t for t = 1..``horizon_periods``: posterior mean and interval."""
        alpha, beta = self._params(cohort, covariates)
        t = np.arange(1, int(horizon_periods) + 1)
        vals = sbg_retention(alpha[:, None], beta[:, None], t[None, :])
        return curve_summary(vals, t, f"period_{self.time_unit}", interval)

    def discounted_expected_lifetime(
        self, discount_rate_per_period: float, *, cohort: str | None = None,
        covariates: Mapping[str, float] | None = None, interval: float = 0.9,
    ) -> dict[str, float]:
        """DEL of a new customer in periods (multiply by the margin per period for CLV)."""
        discount_rate(discount_rate_per_period)
        alpha, beta = self._params(cohort, covariates)
        return _summary(sbg_del(alpha, beta, discount_rate_per_period), interval)

    def discounted_expected_residual_lifetime(
        self, discount_rate_per_period: float, renewals: int, *, cohort: str | None = None,
        covariates: Mapping[str, float] | None = None, interval: float = 0.9,
    ) -> dict[str, float]:
        """DERL in periods of a customer who has renewed ``renewals`` times."""
        discount_rate(discount_rate_per_period)
        alpha, beta = self._params(cohort, covariates)
        return _summary(sbg_derl(alpha, beta, discount_rate_per_period, renewals), interval)


def _summary(values: np.ndarray, interval: float) -> dict[str, float]:
    mean, lo, hi = summarize_draws(np.asarray(values)[:, None], interval)
    return {"mean": float(mean[0]), "lower": float(lo[0]), "upper": float(hi[0]), "interval": interval}
