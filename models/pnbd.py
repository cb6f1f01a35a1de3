"""Pareto/NBD: Poisson purchases and an exponential lifetime, heterogeneous across customers (Schmittlein,
Morrison & Colombo 1987).

While alive, a customer buys as a Poisson process with rate λ ~ Gamma(r, α); her unobserved
lifetime is exponential with rate μ ~ Gamma(s, β), independent of λ. The data are those of
the BG/NBD (:mod:`tenure.models.bgnbd`): ``frequency`` x, ``recency`` t_x and age ``T`` in one
explicit time unit.

The likelihood (Fader, Hardie & Lee 2005, "A note on deriving the Pareto/NBD model and related
expressions") has an integral over the moment of death; :mod:`tenure.models._pnbd_fast`
evaluates it by fixed-order Gauss–Legendre quadrature in a variable where its integrand is
smooth and single-scaled, with an analytic gradient, rather than through Gauss's ₂F₁ (whose
parameter derivatives are what makes gradient-based samplers struggle). Its docstring gives
the change of variable and its accuracy.

Covariates enter as in Fader & Hardie (2007), "Incorporating time-invariant covariates into the
Pareto/NBD and BG/NBD models": α_i = α·exp(−γ_purchase·z_i) and β_i = β·exp(−γ_dropout·z_i), so
a positive coefficient raises the purchase rate or the dropout rate. Covariates are centred on
their sample means.

Without covariates, MAP and NUTS run on the closed-form Numba log density (no PyMC); with them,
PyMC samples a model whose likelihood is the same Numba kernel (a PyTensor ``Op``).

Examples
--------
>>> import polars as pl
>>> from tenure.models.pnbd import ParetoNBDModel
>>> summary = pl.read_csv("tests/data/cdnow_customers_summary.csv")  # doctest: +SKIP
>>> result = ParetoNBDModel(summary, time_unit="weeks").fit(method="map")  # doctest: +SKIP
>>> result.summary()  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
from tenure.models import _pnbd_fast
from tenure.models.base import prior
from tenure.models.bgnbd import COEF, FLAT, BGNBDModel, _centred
from tenure.models.clv_predict import posterior_draws

if TYPE_CHECKING:
    import arviz as az
    import pymc as pm


class ClosedFormRFMModel(BGNBDModel):
    """What the Pareto/NBD and the MBG/NBD share: a Numba row kernel for the likelihood, used by every route.

    A subclass names its kernel (``loglike(p0, p1, p2, p3, x, t_x, T) -> (log L, gradient)``),
    its log density and C entry point in :mod:`tenure.models._fast`'s convention, and maps
    covariates onto its four parameters (:meth:`_individual_pt`, :meth:`_individual`).
    """

    loglike: ClassVar[Any]
    logp_and_grad: ClassVar[Any]
    logp_cfunc: ClassVar[Any]

    def build(self) -> pm.Model:
        """The PyMC model: priors, then a ``pm.Potential`` with the kernel's weighted log-likelihood."""
        import pymc as pm
        import pytensor.tensor as pt

        coords = {"purchase_covariate": list(self.purchase_covariates),
                  "dropout_covariate": list(self.dropout_covariates)}
        cols = [self.data[c].to_numpy().astype(float) for c in ("frequency", "recency", "T")]
        w = self.data["count"].to_numpy().astype(float)
        loglike = _pnbd_fast.row_loglike_op(type(self).loglike, *cols)
        with pm.Model(coords=coords) as model:
            params = [prior(p, self.priors[p]) for p in self.named_parameters]
            pm.Potential("log_likelihood", pt.dot(w, loglike(*self._individual_pt(params))))
        return model

    def _individual_pt(self, params: list[Any]) -> list[Any]:
        raise NotImplementedError

    def fast_path_data(self) -> np.ndarray | None:
        """The packed rows of the closed-form route, or ``None`` with covariates or priors it cannot express.

        Covered: no covariates, and priors HalfFlat (the default), Gamma, Exponential,
        HalfNormal, Weibull or LogNormal with plain numbers; ``fast_sampler = False`` (or
        ``TENURE_FIT_ROUTE=pymc``) turns it off.
        """
        if self.purchase_covariates or self.dropout_covariates:
            return None
        return _pnbd_fast.pack_rows(*(self.data[c].to_numpy() for c in ("frequency", "recency", "T", "count")),
                                    self.priors, self.named_parameters)

    def fast_model(self) -> Any:
        """The closed-form route (:mod:`tenure.models._fast`) where :meth:`fast_path_data` allows it."""
        buf = self.fast_path_data()
        if buf is None:
            return None
        from tenure.models import _fast

        return _fast.FastModel(self.named_parameters, buf, type(self).logp_and_grad, type(self).logp_cfunc)

    def pointwise_log_likelihood(self, idata: az.InferenceData) -> dict[str, np.ndarray]:
        """count × log L of each compressed row per draw."""
        rows = {c: self.data[c].to_numpy().astype(float) for c in self.data.columns}
        ll = self._row_values(posterior_draws(idata, self.var_names), rows, threads=os.cpu_count() or 1)[0]
        return {"purchases": rows["count"] * ll}

    def _row_values(self, draws: Mapping[str, np.ndarray], chunk: Mapping[str, np.ndarray],
                    threads: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
        """log L per draw and row of ``chunk``, (n_draws, n_rows), and P(alive at T) where the kernel gives it.

        The model's row kernel (:attr:`loglike`) evaluates one row at a time with covariates; a family
        may evaluate all rows of a draw at once where every row shares the parameters.
        """
        params = self._individual(draws, chunk)
        ll, _ = type(self).loglike(*params, chunk["frequency"], chunk["recency"], chunk["T"])
        return ll, None


class ParetoNBDModel(ClosedFormRFMModel):
    """The Pareto/NBD model, with optional covariates on the purchase and the dropout rate.

    Parameters
    ----------
    data
        An RFM summary (see :func:`tenure.models.clv_data.validate_summary`), one row per
        customer or per group of identical customers with ``count``.
    time_unit
        Unit of ``recency`` and ``T``: ``"days"``, ``"weeks"`` or ``"months"``.
    purchase_covariates, dropout_covariates
        Column names of time-invariant covariates on the purchase rate (through α) and on
        the dropout rate (through β).
    priors
        Overrides of :attr:`default_priors`: flat on the positive half-line, so the
        posterior mode is the maximum-likelihood estimate; coefficients Normal(0, 1).
    where
        Name of the input in error messages.
    """

    name: ClassVar[str] = "pnbd"
    named_parameters: ClassVar[tuple[str, ...]] = ("r", "alpha", "s", "beta")
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {
        "r": FLAT, "alpha": FLAT, "s": FLAT, "beta": FLAT,
        "purchase_coefficient": COEF, "dropout_coefficient": COEF,
    }
    loglike = staticmethod(_pnbd_fast.pnbd_loglike)
    logp_and_grad = staticmethod(_pnbd_fast.pnbd_logp_and_grad)
    logp_cfunc = staticmethod(_pnbd_fast.pnbd_logp_cfunc)

    def __init__(self, data: pl.DataFrame, *, time_unit: str = "weeks", purchase_covariates: Sequence[str] = (),
                 dropout_covariates: Sequence[str] = (), priors: Mapping[str, Mapping[str, Any]] | None = None,
                 where: str = "summary") -> None:
        super().__init__(data, time_unit=time_unit, purchase_covariates=purchase_covariates,
                         dropout_covariates=dropout_covariates, priors=priors, where=where)
        # With flat priors the posterior is improper along s, β → ∞ at a fixed s/β (the likelihood tends to
        # that of an exponential lifetime with rate s/β, a finite limit): NUTS drifts there and never ends.
        # Sampling (mcmc, advi) therefore puts a proper prior on the dropout scale β: exponential with a
        # mean of ten observation windows (10 × the longest T), a scale the data cannot tell apart from
        # infinity. MAP keeps the flat prior: its mode is the maximum-likelihood estimate.
        window = float(self.data["T"].max())
        self.sampling_priors = {"beta": {"dist": "Exponential", "lam": 1.0 / (10.0 * window)}}
        # Along that ridge the posterior of (log s, log β) is long and bent: at nutpie's default step-size target
        # (0.8) the low-rank mass matrix left 114 of 2,000 CDNOW draws divergent (min bulk ESS 105); at 0.95 none
        # diverged and the min bulk ESS was 266 in 25,000 gradient evaluations (a diagonal mass matrix: 196 in
        # 70,000). benchmarks/RESULTS.md, Pareto/NBD section.
        self.sampler_options = {**self.sampler_options, "target_accept": 0.95}

    @property
    def var_names(self) -> list[str]:
        """r, α, s, β and any coefficients."""
        names = list(self.named_parameters)
        if self.purchase_covariates:
            names.append("purchase_coefficient")
        if self.dropout_covariates:
            names.append("dropout_coefficient")
        return names

    def _individual_pt(self, params: list[Any]) -> list[Any]:
        import pytensor.tensor as pt

        r, alpha, s, beta = params
        if self.purchase_covariates:
            g = prior("purchase_coefficient", self.priors["purchase_coefficient"], dims="purchase_covariate")
            alpha = alpha * pt.exp(-pt.dot(_centred(self.data, self.purchase_covariates, self.covariate_means), g))
        if self.dropout_covariates:
            g = prior("dropout_coefficient", self.priors["dropout_coefficient"], dims="dropout_covariate")
            beta = beta * pt.exp(-pt.dot(_centred(self.data, self.dropout_covariates, self.covariate_means), g))
        return [r, alpha, s, beta]

    def _individual(self, draws: Mapping[str, np.ndarray], chunk: Mapping[str, np.ndarray]):
        """Per-draw, per-customer (r, α_i, s, β_i), each (n_draws, n_chunk) or broadcastable."""
        r, alpha, s, beta = (draws[k][:, None] for k in self.named_parameters)
        if self.purchase_covariates:
            z = np.column_stack([chunk[c] - self.covariate_means[c] for c in self.purchase_covariates])
            alpha = alpha * np.exp(-(draws["purchase_coefficient"] @ z.T))
        if self.dropout_covariates:
            z = np.column_stack([chunk[c] - self.covariate_means[c] for c in self.dropout_covariates])
            beta = beta * np.exp(-(draws["dropout_coefficient"] @ z.T))
        return r, alpha, s, beta

    def probability_alive(self, data: pl.DataFrame | None = None, *, interval: float = 0.9,
                          keep_draws: bool = False):
        """P(alive at T | x, t_x, T) per customer: the share of the "alive at T" term in the likelihood.

        Fader, Hardie & Lee (2005, note), eq. (18): P = Γ(r+x)α^r β^s/Γ(r) / ((α+T)^(r+x) (β+T)^s L).
        """
        from tenure.models.clv_predict import reduce_over_draws

        return reduce_over_draws(self._alive, self._posterior(), self._customer_rows(data),
                                 interval=interval, keep_draws=keep_draws)

    def _row_values(self, draws: Mapping[str, np.ndarray], chunk: Mapping[str, np.ndarray],
                    threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """log L and P(alive at T) per draw and row; without covariates by the grouped walk
        (:func:`tenure.models._pnbd_fast.pnbd_rows_over_draws`: each segment between the rows'
        breakpoints once per draw), with them row by row."""
        cols = (chunk["frequency"], chunk["recency"], chunk["T"])
        if self.purchase_covariates or self.dropout_covariates:
            params = self._individual(draws, chunk)
            ll, _ = _pnbd_fast.pnbd_loglike(*params, *cols)
            return ll, np.exp(_pnbd_fast.pnbd_log_p_alive(*params, *cols))
        return _pnbd_fast.pnbd_rows_over_draws(*(draws[k] for k in self.named_parameters), *cols, threads=threads)

    def _alive(self, draws: Mapping[str, np.ndarray], chunk: Mapping[str, np.ndarray]) -> np.ndarray:
        """P(alive at T) per draw and customer of ``chunk``, (n_draws, n_chunk)."""
        return self._row_values(draws, chunk)[1]

    def conditional_purchases(self, t: float, draws: Mapping[str, np.ndarray],
                              chunk: Mapping[str, np.ndarray]) -> np.ndarray:
        """E[Y(t) | x, t_x, T] per draw and customer, (n_draws, n_chunk)."""
        params = self._individual(draws, chunk)
        return pnbd_conditional_purchases(t, *params, chunk["frequency"], chunk["recency"], chunk["T"],
                                          alive=self._alive(draws, chunk))

    def purchases_if_alive(self, t: float, data: pl.DataFrame) -> np.ndarray:
        """E[Y(t) | alive at T, x, T] per draw and row of ``data`` (n_draws, n_rows), ``t`` in the model's unit.

        Given alive at T, λ ~ Gamma(r+x, α+T) and μ ~ Gamma(s, β+T) (Fader, Hardie & Lee 2005, note), so
        E[Y(t)] = (r+x)/(α+T) · ∫_0^t ((β+T)/(β+T+u))^s du, with no P(alive) to compute: the CLV table's
        purchase factor per (x, T), which otherwise divides the conditional expectation by P(alive).
        """
        rows = self._customer_rows(data)
        chunk = {c: rows.get_column(c).to_numpy().astype(float) for c in rows.columns}
        r, alpha, s, beta = self._individual(self._posterior(), chunk)
        return (r + chunk["frequency"]) / (alpha + chunk["T"]) * _powered_span(s, beta + chunk["T"], t)

    def expected_purchases_new_customer(self, horizon_periods: Sequence[float] | np.ndarray, *,
                                        time_unit: str | None = None, interval: float = 0.9) -> pl.DataFrame:
        """Expected purchases by a new customer (average covariates) up to each horizon.

        Schmittlein, Morrison & Colombo (1987); Fader, Hardie & Lee (2005, note), eq. (17):
        E[X(t)] = rβ/(α(s−1)) · (1 − (β/(β+t))^(s−1)), rβ/α · log(1 + t/β) at s = 1.
        """
        from tenure.models.clv_data import convert_periods
        from tenure.models.clv_predict import curve_summary

        unit = time_unit or self.time_unit
        hs = np.asarray(horizon_periods, dtype=float)
        ts = np.array([convert_periods(h, unit, self.time_unit) for h in hs])
        d = self._posterior()
        vals = pnbd_expected_purchases(ts[None, :], *(d[k][:, None] for k in self.named_parameters))
        return curve_summary(vals, hs, f"horizon_{unit}", interval)

    def simulate_repeat_counts(self, T: np.ndarray, *, seed: int, draw: int | None = None) -> np.ndarray:
        """Repeat purchases in (0, T_i] of new customers drawn from the fitted population.

        One posterior draw per customer (chosen with ``seed``; the draw ``draw`` for all when given);
        λ ~ Gamma(r, α), μ ~ Gamma(s, β), a lifetime τ ~ Exponential(μ), and Poisson(λ·min(τ, T_i)) purchases.
        """
        T = np.asarray(T, dtype=float)
        rng, d = self._population_draws(T.size, seed, draw)
        lam = rng.gamma(d["r"], 1.0 / d["alpha"])
        mu = rng.gamma(d["s"], 1.0 / d["beta"])
        tau = rng.exponential(1.0 / mu)
        return rng.poisson(lam * np.minimum(tau, T.ravel())).reshape(T.shape)


def _powered_span(s, base, t):
    """base·(1 − (base/(base+t))^(s−1))/(s−1), and its limit base·log(1 + t/base) at s = 1, without cancellation."""
    log_ratio = np.log1p(t / base)
    sm1 = s - 1.0
    small = np.abs(sm1) < 1e-8
    safe = np.where(small, 1.0, sm1)
    return base * np.where(small, log_ratio, -np.expm1(-sm1 * log_ratio) / safe)


def pnbd_expected_purchases(t, r, alpha, s, beta) -> np.ndarray:
    """E[X(t)] for a customer observed from time 0 (numpy, broadcasting)."""
    return r / alpha * _powered_span(s, beta, t)


def pnbd_conditional_purchases(t, r, alpha, s, beta, x, t_x, T, alive=None) -> np.ndarray:
    """E[Y(t) | x, t_x, T], purchases in (T, T+t]; Fader, Hardie & Lee (2005, note), eq. (22)."""
    if alive is None:
        alive = np.exp(_pnbd_fast.pnbd_log_p_alive(r, alpha, s, beta, x, t_x, T))
    return (r + x) / (alpha + T) * _powered_span(s, beta + T, t) * alive


def pnbd_loglike_np(r, alpha, s, beta, x, t_x, T) -> np.ndarray:
    """log L per customer (numpy broadcasting; the Numba kernel of :mod:`tenure.models._pnbd_fast`)."""
    return _pnbd_fast.pnbd_loglike(r, alpha, s, beta, x, t_x, T)[0]
