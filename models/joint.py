"""Joint retention and cross-selling with correlated customer effects: an attachment that keeps and sells.

The two linear predictors are those of :mod:`tenure.models.retention` and
:mod:`tenure.models.cross_sell` plus a pair of customer effects:

    logit P(churn_it) = η^churn_it − r_i,        y_it ~ Poisson(exp(η^xsell_it + v_i)),
    (r_i, v_i) ~ MvNormal(0, diag(σ) Ω diag(σ)),  Ω ~ LKJ(η = 2),  σ ~ Gamma(5, 8)

so r_i > 0 means customer i stays longer than the covariates predict and v_i > 0
that they buy more. ``attachment_corr`` = Ω_12: positive when the customers who
stay are also those who buy (a latent attachment behind both). The effects are
non-centred (z ~ N(0, 1), (r, v) = L z with the Cholesky factor L), and the segment
intercepts are sum-to-zero deviations around churn_intercept and xsell_intercept
(``parametrization="zerosum"`` of :func:`~tenure.models.pooling.pooled_intercepts`), so
each intercept is the average over segments and has no ridge with the segment effects.

The likelihoods stay exact on cells, now keyed by customer too, so the model
holds two numbers per customer: meant for panels up to :data:`MAX_CUSTOMERS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import arviz as az
import numpy as np
import polars as pl
import pymc as pm
import pytensor.tensor as pt
from tenure.models.base import BayesianModel
from tenure.models.cross_sell import CrossSellModel, count_check, count_eta
from tenure.models.effects import equal_tailed
from tenure.models.panel import TENURE_BANDS, as_panel, count_cells, hazard_cells
from tenure.models.pooling import MarginalisedMeansFit, binomial_kernel_logp, poisson_cells_logp
from tenure.models.retention import RetentionModel, hazard_check, hazard_eta

from tenure.errors import InputError

#: Customer effects are two parameters per customer: above this, use the separate models.
MAX_CUSTOMERS = 20_000


class JointModel(MarginalisedMeansFit, BayesianModel):
    """Retention hazard and cross-selling Poisson with correlated customer effects.

    Parameters
    ----------
    panel
        A panel frame or file, validated as the command line does (:func:`~tenure.models.panel.as_panel`).
    priors
        Overrides of :attr:`default_priors` (retention, cross-selling and customer-effect keys).
    missing
        Missing-score policy (``"carry"`` or ``"drop"``).
    segment_col
        Column holding the segment (default ``segment`` if present).
    max_customers
        Refuse larger panels (the effects grow with customers, not cells).
    """

    #: A smaller step than nutpie's 0.8: on the README's 5 % panel the spreads mixed slowest at 0.8 (R-hat 1.015 for
    #: customer_sd[retention], ESS ~300 of 4000); 0.9 gave 1.010. A low-rank mass matrix was worse (3 divergences).
    sampler_options: ClassVar[dict[str, Any]] = {"target_accept": 0.9}
    name: ClassVar[str] = "joint"
    named_parameters: ClassVar[tuple[str, ...]] = (
        *RetentionModel.named_parameters, *CrossSellModel.named_parameters, "attachment_corr",
    )
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {
        **RetentionModel.default_priors,
        **CrossSellModel.default_priors,
        # Customer effect spreads on the log-odds and log-rate scales: Gamma(5, 8), mean 0.62, 90 % of its mass
        # between 0.25 and 1.14, light-tailed and zero-avoiding. Each customer churns at most once and buys about
        # once, so the data say little about either spread and the prior shapes both tails: HalfNormal(1) let the
        # retention spread wander to 2 (where NUTS diverged, 15-19 of 4000 draws on the README's 5 % panel) and
        # the cross-sell spread down to 0.005 (a funnel neck; R-hat up to 1.1). Gamma(5, 8) puts 0.1 % below 0.1
        # and 0.8 % above 1.5.
        "customer_sd": {"dist": "Gamma", "alpha": 5.0, "beta": 8.0},
        # LKJ(2) on the correlation: mild pull towards 0, density vanishing at ±1.
        "attachment_corr": {"dist": "LKJCorr", "eta": 2.0},
    }

    time_unit = "months"

    def __init__(
        self,
        panel: pl.DataFrame | str | os.PathLike[str],
        priors: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        missing: str = "carry",
        segment_col: str | None = None,
        max_customers: int = MAX_CUSTOMERS,
    ) -> None:
        super().__init__(priors)
        panel = as_panel(panel, segment_col=segment_col, optional=())
        n_customers = int(panel["_cust"].n_unique())
        if n_customers > max_customers:
            raise InputError(f"panel: {n_customers:,} customers; the joint model holds two effects per customer "
                             f"and is meant for at most {max_customers:,}: fit retention and cross-sell separately")
        hazard = hazard_cells(panel, bands=TENURE_BANDS, missing=missing, by_customer=True)
        counts = count_cells(panel, missing=missing, by_customer=True)
        self.customers, inverse = np.unique(np.r_[hazard.customer, counts.customer], return_inverse=True)
        self.hazard_customer = inverse[: hazard.customer.size]
        self.count_customer = inverse[hazard.customer.size:]
        pick = {k: self.priors[k] for k in RetentionModel.default_priors}
        self.retention = RetentionModel.from_cells(hazard, pick, parametrization="zerosum")
        self.cross_sell = CrossSellModel.from_cells(counts, {k: self.priors[k] for k in CrossSellModel.default_priors},
                                                    parametrization="zerosum")
        self.max_customers = max_customers

    def options(self) -> dict[str, Any]:
        """Missing-score policy, segments and the size limit."""
        return {"missing": self.retention.cells.missing.get("policy"), "max_customers": self.max_customers,
                "segments": list(self.retention.cells.segments)}

    def data_summary(self) -> dict[str, Any]:
        """Both models' summaries and the number of customer effects."""
        h, c = self.retention.data_summary(), self.cross_sell.data_summary()
        return {"rows": h["rows"], "cells": h["cells"] + c["cells"], "customers": int(self.customers.size),
                "retention": h, "cross_sell": c}

    def build(self) -> pm.Model:
        """The PyMC model (see the module docstring for the equations)."""
        coords = {**self.retention.coords(), "customer": np.arange(self.customers.size), "effect":
                  ["retention", "cross_sell"]}
        h, c = self.retention.cells, self.cross_sell.cells
        with pm.Model(coords=coords) as model:
            eta_churn = self.retention.linear_predictor()
            eta_xsell = self.cross_sell.linear_predictor()
            self.marginalised = [*self.retention.marginalised, *self.cross_sell.marginalised]
            sd_spec = self.priors["customer_sd"]
            sd_dist = getattr(pm, sd_spec["dist"]).dist(**{k: v for k, v in sd_spec.items() if k != "dist"}, shape=2)
            chol, corr, sds = pm.LKJCholeskyCov("customer_cov", n=2, eta=self.priors["attachment_corr"]["eta"],
                                                sd_dist=sd_dist, compute_corr=True)
            pm.Deterministic("attachment_corr", corr[0, 1])
            pm.Deterministic("customer_sd", sds, dims="effect")
            z = pm.Normal("customer_z", 0.0, 1.0, dims=("customer", "effect"))
            effects = pt.dot(z, chol.T)
            pm.CustomDist("churn_events", h.at_risk, eta_churn - effects[self.hazard_customer, 0],
                          logp=binomial_kernel_logp, observed=h.events)
            pm.CustomDist("xsell_events", c.exposure, c.log_factorial, eta_xsell + effects[self.count_customer, 1],
                          logp=poisson_cells_logp, observed=c.events)
        return model

    def predictive_check(self, idata: az.InferenceData, seed: int) -> dict[str, Any]:
        """The retention and cross-selling checks (:func:`~tenure.models.retention.hazard_check`,
        :func:`~tenure.models.cross_sell.count_check`) on this model's cells, saved as one.

        Each checked draw carries its own customer effects, (r, v) = L z from that draw's
        ``customer_z``, ``customer_sd`` and ``attachment_corr``: the fitted customers' panel
        replicated, the standard posterior predictive for these customers. One draw at a time,
        so memory grows with cells (keyed by customer here), never customers × draws.
        """
        from scipy.special import expit
        from tenure.models.clv_predict import posterior_draws
        from tenure.models.ppc import combined_check, draw_indices

        names = [n for n in idata.posterior.data_vars if n.startswith(("churn_", "xsell_"))]
        d = posterior_draws(idata, [*names, "customer_z", "customer_sd", "attachment_corr"])
        pick = draw_indices(len(d["attachment_corr"]))
        h, c = self.retention.cells, self.cross_sell.cells

        def effects(j: int) -> tuple[np.ndarray, np.ndarray]:
            z, (s_r, s_v), rho = d["customer_z"][j], d["customer_sd"][j], d["attachment_corr"][j]
            return s_r * z[:, 0], s_v * (rho * z[:, 0] + np.sqrt(1.0 - rho**2) * z[:, 1])

        def one(j: int, key: str) -> dict[str, np.ndarray]:
            return {k: d[k][j:j + 1] for k in names if k.startswith(key)}

        rng = np.random.default_rng(seed)
        churn = hazard_check(h, (expit(hazard_eta(h, one(j, "churn_"))[0] - effects(j)[0][self.hazard_customer])
                                 for j in pick), len(pick), rng, "joint model")
        xsell = count_check(c, (np.exp(count_eta(c, one(j, "xsell_"))[0] + effects(j)[1][self.count_customer])
                                for j in pick), len(pick), rng, "joint model")
        return combined_check(churn, xsell)

    def summary_var_names(self, idata: az.InferenceData | None = None) -> list[str]:
        """Named parameters, the customer-effect spreads and the segment intercepts (never per customer)."""
        post = (idata or self.idata).posterior
        extra = ["customer_sd", "churn_tenure", "churn_segment", "xsell_products", "xsell_segment"]
        return [*self.named_parameters, *(n for n in extra if n in post)]

    def diagnostic_var_names(self, idata: az.InferenceData) -> list[str]:
        """Every sampled parameter but the per-customer effects, so the R-hat warning names each one that fails.

        The named parameters alone missed the customer-effect spreads, which mix slowest.
        """
        skip = {"customer_cov", "customer_cov_corr", "customer_cov_stds"}  # copies of attachment_corr, customer_sd
        return [n for n in idata.posterior.data_vars
                if n not in skip and not n.endswith(("__", "_z"))]  # unconstrained values, non-centred internals

    def effect_lines(self, idata: az.InferenceData | None = None, prob: float = 0.9) -> list[str]:
        """The retention and cross-selling lines, and one for the attachment correlation."""
        idata = idata or self.idata
        lines = [*self.retention.effect_lines(idata, prob), *self.cross_sell.effect_lines(idata, prob)[:3]]
        corr = idata.posterior["attachment_corr"].values
        lo, hi = equal_tailed(corr, prob)
        interval = f"correlation {np.median(corr):+.2f} ({100 * prob:.0f} % interval {lo:+.2f} to {hi:+.2f})"
        if lo < 0 < hi:
            lines.append(f"whether customers who stay longer than their scores predict also buy more: {interval}: "
                         "the data do not settle the direction")
        else:
            lines.append(f"customers who stay longer than their scores predict also buy "
                         f"{'more' if lo > 0 else 'less'}: {interval}")
        return lines
