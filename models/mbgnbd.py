"""MBG/NBD: the BG/NBD in which a customer may also drop out right after her first purchase (Batislam,
Denizel & Filiztekin 2007).

While alive, a customer buys as a Poisson process with rate λ ~ Gamma(r, α); at time 0 and
after each repeat purchase she drops out with probability p ~ Beta(a, b). Unlike the BG/NBD,
a customer without repeat purchases is not certainly alive, so P(alive) is below 1 for
everyone, which corrects the BG/NBD's optimism about one-time buyers. Data, time unit and
covariates are those of :class:`tenure.models.bgnbd.BGNBDModel` (α_i = α·exp(−γ_purchase·z_i),
a_i = a·exp(γ_a·z_i), b_i = b·exp(γ_b·z_i)); the likelihood is the closed form of
:mod:`tenure.models._mbgnbd_fast`, on the same routes as the Pareto/NBD
(:class:`tenure.models.pnbd.ClosedFormRFMModel`).

Examples
--------
>>> import polars as pl
>>> from tenure.models.mbgnbd import MBGNBDModel
>>> summary = pl.read_csv("tests/data/cdnow_customers_summary.csv")  # doctest: +SKIP
>>> result = MBGNBDModel(summary, time_unit="weeks").fit(method="map")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

# scipy.special is imported inside the functions that use it: 0.4 s of imports that a MAP fit does not need.
from tenure.models import _mbgnbd_fast
from tenure.models.base import prior
from tenure.models.bgnbd import _centred
from tenure.models.pnbd import ClosedFormRFMModel


class MBGNBDModel(ClosedFormRFMModel):
    """The MBG/NBD model, with optional covariates on purchase and dropout (parameters as the BG/NBD's)."""

    name: ClassVar[str] = "mbgnbd"
    loglike = staticmethod(_mbgnbd_fast.mbgnbd_loglike)
    logp_and_grad = staticmethod(_mbgnbd_fast.mbgnbd_logp_and_grad)
    logp_cfunc = staticmethod(_mbgnbd_fast.mbgnbd_logp_cfunc)

    def _individual_pt(self, params: list[Any]) -> list[Any]:
        import pytensor.tensor as pt

        r, alpha, a, b = params
        if self.purchase_covariates:
            g = prior("purchase_coefficient", self.priors["purchase_coefficient"], dims="purchase_covariate")
            alpha = alpha * pt.exp(-pt.dot(_centred(self.data, self.purchase_covariates, self.covariate_means), g))
        if self.dropout_covariates:
            z = _centred(self.data, self.dropout_covariates, self.covariate_means)
            ga = prior("dropout_coefficient_a", self.priors["dropout_coefficient_a"], dims="dropout_covariate")
            gb = prior("dropout_coefficient_b", self.priors["dropout_coefficient_b"], dims="dropout_covariate")
            a = a * pt.exp(pt.dot(z, ga))
            b = b * pt.exp(pt.dot(z, gb))
        return [r, alpha, a, b]

    def probability_alive(self, data=None, *, interval: float = 0.9, keep_draws: bool = False):
        """P(alive at T | x, t_x, T) per customer; Batislam et al. (2007), eq. (7):
        P = 1 / (1 + a/(b+x) · ((α+T)/(α+t_x))^(r+x)), for every x (0 included)."""
        from tenure.models.clv_predict import reduce_over_draws

        def compute(draws, chunk):
            r, alpha, a, b = self._individual(draws, chunk)
            return mbgnbd_p_alive(r, alpha, a, b, chunk["frequency"], chunk["recency"], chunk["T"])

        return reduce_over_draws(compute, self._posterior(), self._customer_rows(data),
                                 interval=interval, keep_draws=keep_draws)

    def conditional_purchases(self, t: float, draws: Mapping[str, np.ndarray],
                              chunk: Mapping[str, np.ndarray]) -> np.ndarray:
        """E[Y(t) | x, t_x, T] per draw and customer, (n_draws, n_chunk)."""
        r, alpha, a, b = self._individual(draws, chunk)
        return mbgnbd_conditional_purchases(t, r, alpha, a, b, chunk["frequency"], chunk["recency"], chunk["T"])

    def expected_purchases_new_customer(self, horizon_periods, *, time_unit: str | None = None,
                                        interval: float = 0.9):
        """Expected purchases by a new customer (average covariates) up to each horizon.

        Batislam et al. (2007), eq. (8); the horizon column is in ``time_unit``.
        """
        from tenure.models.clv_data import convert_periods
        from tenure.models.clv_predict import curve_summary

        unit = time_unit or self.time_unit
        hs = np.asarray(horizon_periods, dtype=float)
        ts = np.array([convert_periods(h, unit, self.time_unit) for h in hs])
        d = self._posterior()
        vals = mbgnbd_expected_purchases(ts[None, :], *(d[k][:, None] for k in self.named_parameters))
        return curve_summary(vals, hs, f"horizon_{unit}", interval)

    def simulate_repeat_counts(self, T: np.ndarray, *, seed: int, draw: int | None = None) -> np.ndarray:
        """Repeat purchases in (0, T_i] of new customers drawn from the fitted population.

        One posterior draw per customer (chosen with ``seed``; the draw ``draw`` for all when given);
        λ ~ Gamma(r, α), p ~ Beta(a, b);
        the count is min(N, J) with N ~ Poisson(λT) and J ~ Geometric(p) − 1 on 0, 1, ...
        (she may drop out right after her first purchase).
        """
        T = np.asarray(T, dtype=float)
        rng, d = self._population_draws(T.size, seed, draw)
        lam = rng.gamma(d["r"], 1.0 / d["alpha"])
        p = rng.beta(d["a"], d["b"])
        return np.minimum(rng.poisson(lam * T.ravel()), rng.geometric(p) - 1).reshape(T.shape)


def _log_odds(r, alpha, a, b, x, t_x, T):
    return np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))


def mbgnbd_p_alive(r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """P(alive) under the MBG/NBD (numpy, broadcasting)."""
    from scipy import special
    return special.expit(-_log_odds(r, alpha, a, b, np.asarray(x, dtype=float), t_x, T))


def mbgnbd_expected_purchases(t, r, alpha, a, b) -> np.ndarray:
    """E[X(t)] for a customer observed from time 0: b/(a−1) · (1 − (α/(α+t))^r ₂F₁(r, b+1; a+b; t/(α+t)))."""
    from scipy import special
    hyp = special.hyp2f1(r, b + 1.0, a + b, t / (alpha + t))
    return b / (a - 1.0) * (1.0 - np.exp(r * np.log(alpha / (alpha + t))) * hyp)


def mbgnbd_conditional_purchases(t, r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """E[Y(t) | x, t_x, T], purchases in (T, T+t]; Batislam et al. (2007), eq. (9).

    (a+b+x)/(a−1) · (1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x+1; a+b+x; t/(α+T+t))) · P(alive).
    """
    from scipy import special
    x = np.asarray(x, dtype=float)
    hyp = special.hyp2f1(r + x, b + x + 1.0, a + b + x, t / (alpha + T + t))
    body = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
    return (a + b + x) / (a - 1.0) * body * mbgnbd_p_alive(r, alpha, a, b, x, t_x, T)


def mbgnbd_loglike_np(r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """log L per customer (numpy broadcasting; the Numba kernel of :mod:`tenure.models._mbgnbd_fast`)."""
    return _mbgnbd_fast.mbgnbd_loglike(r, alpha, a, b, x, t_x, T)[0]
