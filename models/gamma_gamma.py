"""Gamma-Gamma spend per transaction, and CLV from BG/NBD purchases times Gamma-Gamma spend.

A customer's transaction values vary around her mean ζ as Gamma(p, ν); across customers
ν ~ Gamma(q, v) (the papers write γ for v). Only repeat buyers inform the model: their
number of repeat transactions x and mean repeat spend m̄ (``frequency``,
``monetary_value``). Spend is assumed independent of the purchase process, so CLV pairs a
BG/NBD posterior with a Gamma-Gamma posterior draw by draw.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

# scipy.special is imported inside the functions that use it: 0.4 s of imports that a MAP fit does not need.
from tenure.models.base import BayesianModel, prior
from tenure.models.bgnbd import BGNBDModel
from tenure.models.clv_data import (
    compress_summary,
    convert_periods,
    nuts_options,
    prediction_rows,
    validate_summary,
)
from tenure.models.clv_predict import Prediction, posterior_draws, reduce_over_draws

from tenure.errors import InputError

if TYPE_CHECKING:  # PyMC and PyTensor are imported only to build the model: the fast route fits without them
    import pymc as pm
    import pytensor.tensor as pt

FLAT = {"dist": "HalfFlat"}


def gamma_gamma_logp(p: Any, q: Any, v: Any, x: Any, mbar: Any) -> pt.TensorVariable:
    """Log-likelihood of each repeat buyer's mean spend (PyTensor, vectorised).

    Fader & Hardie (2013), "The Gamma-Gamma model of monetary value", eq. (4); also
    Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves", JMR 42(4):

    f(m̄ | p, q, v, x) = Γ(px+q)/(Γ(px)Γ(q)) · v^q m̄^(px−1) x^(px) / (v + x m̄)^(px+q).
    """
    import pytensor.tensor as pt

    px = p * x
    return (pt.gammaln(px + q) - pt.gammaln(px) - pt.gammaln(q) + q * pt.log(v)
            + (px - 1.0) * pt.log(mbar) + px * pt.log(x) - (px + q) * pt.log(v + x * mbar))


def gamma_gamma_expected_spend(p: Any, q: Any, v: Any, x: Any, mbar: Any) -> np.ndarray:
    """E[mean spend | x, m̄] = p(v + x m̄)/(px + q − 1); Fader & Hardie (2013), eq. (5).

    For x = 0 this is the population mean pv/(q−1). Broadcasts over arrays.
    """
    x = np.asarray(x, dtype=float)
    base, weight = gamma_gamma_spend_terms(p, q, v, x)
    return base + weight * np.where(x > 0, mbar, 0.0)


def gamma_gamma_spend_terms(p: Any, q: Any, v: Any, x: Any) -> tuple[np.ndarray, np.ndarray]:
    """E[mean spend | x, m̄] as ``base + weight · m̄``: base pv/(px + q − 1), weight px/(px + q − 1).

    Fader & Hardie (2013), eq. (5), written as the credibility-weighted mean of the population mean
    pv/(q − 1) and the customer's m̄; for a given x it is affine in m̄, so a prediction for many
    customers needs these two terms per draw and distinct x only. Broadcasts over arrays.
    """
    x = np.asarray(x, dtype=float)
    denominator = p * x + q - 1.0
    return p * v / denominator, p * x / denominator


class GammaGammaModel(BayesianModel):
    """The Gamma-Gamma spend model in PyMC.

    Parameters
    ----------
    data
        An RFM summary with ``monetary_value`` (mean spend per repeat purchase); rows
        with ``frequency`` 0 are ignored for fitting.
    priors
        Overrides of :attr:`default_priors` (flat on the positive half-line: the
        posterior mode is the maximum-likelihood estimate).
    where
        Name of the input in error messages.
    """

    name: ClassVar[str] = "gamma-gamma"
    named_parameters: ClassVar[tuple[str, ...]] = ("p", "q", "v")
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {"p": FLAT, "q": FLAT, "v": FLAT}

    def __init__(
        self, data: pl.DataFrame, *, priors: Mapping[str, Mapping[str, Any]] | None = None, where: str = "summary"
    ) -> None:
        super().__init__(priors)
        summary = validate_summary(data, where=where, monetary=True)
        repeat = summary.filter(pl.col("frequency") > 0)
        if repeat.height == 0:
            raise InputError(f"{where}: column 'frequency': no repeat buyers (frequency > 0) to fit spend on")
        self.data = compress_summary(repeat.select("frequency", "monetary_value", "count"))
        self.n_customers = int(self.data["count"].sum())
        self.sampler_options = nuts_options(self.data.height)

    def data_summary(self) -> dict[str, Any]:
        """Repeat buyers and unique rows used."""
        return {"repeat_buyers": self.n_customers, "unique_rows": self.data.height}

    def build(self) -> pm.Model:
        """The PyMC model: priors on p, q, v and the weighted Gamma-Gamma likelihood."""
        import pymc as pm
        import pytensor.tensor as pt

        x = self.data["frequency"].to_numpy().astype(float)
        m = self.data["monetary_value"].to_numpy()
        w = self.data["count"].to_numpy().astype(float)
        with pm.Model() as model:
            p = prior("p", self.priors["p"])
            q = prior("q", self.priors["q"])
            v = prior("v", self.priors["v"])
            pm.Potential("log_likelihood", pt.dot(w, gamma_gamma_logp(p, q, v, x, m)))
        return model

    def fast_model(self) -> Any:
        """The closed-form Numba route (:mod:`tenure.models._gamma_gamma_fast`); ``None`` with a prior it cannot
        express (see :mod:`tenure.models._fast`)."""
        from tenure.models import _gamma_gamma_fast

        buf = _gamma_gamma_fast.pack_data(*(self.data[c].to_numpy() for c in ("frequency", "monetary_value",
                                                                              "count")), self.priors)
        return None if buf is None else _gamma_gamma_fast.fast_model(buf)

    def observed_table(self) -> dict[str, np.ndarray]:
        """The compressed repeat buyers."""
        return {c: self.data[c].to_numpy() for c in self.data.columns}

    def pointwise_log_likelihood(self, idata: Any) -> dict[str, np.ndarray]:
        """count × log f(m̄) of each compressed row per draw (eq. 4 in numpy)."""
        from scipy import special
        d = posterior_draws(idata, self.var_names)
        x, m, w = (self.data[c].to_numpy().astype(float) for c in ("frequency", "monetary_value", "count"))
        p, q, v = (d[k][:, None] for k in ("p", "q", "v"))
        px = p * x
        ll = (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(v)
              + (px - 1.0) * np.log(m) + px * np.log(x) - (px + q) * np.log(v + x * m))
        return {"spend": w * ll}

    def simulate_mean_spend(self, x: np.ndarray, *, seed: int, draw: int) -> np.ndarray:
        """Mean spend per repeat purchase of customers with ``x`` repeat purchases, drawn from the fitted population
        under posterior draw ``draw``: ν ~ Gamma(q, rate v), each spend ~ Gamma(p, rate ν), so the mean of x spends
        is Gamma(p·x, rate ν·x) (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value")."""
        d = {k: v[int(draw)] for k, v in self._posterior().items()}
        x = np.asarray(x, dtype=float)
        rng = np.random.default_rng(seed)
        nu = rng.gamma(d["q"], 1.0 / d["v"], x.size)
        return rng.gamma(d["p"] * x, 1.0 / (nu * x))

    def predictive_check(self, idata: Any, seed: int) -> dict[str, Any]:
        """Quantiles of the repeat buyers' mean spend per purchase, observed against replicated.

        Each of 100 posterior draws replicates every repeat buyer's mean spend given her own number of
        repeat purchases (:meth:`simulate_mean_spend`), at most 50 000 buyers per replicate (a
        count-weighted sample); the statistic is the 5, 10, 25, 50, 75, 90 and 95 % quantiles.
        """
        from tenure.models.ppc import check_rows, draw_indices
        from tenure.models.ppc import predictive_check as make_check

        x_obs, w = self.data["frequency"].to_numpy(), self.data["count"].to_numpy().astype(np.int64)
        m = self.data["monetary_value"].to_numpy().astype(float)
        levels = np.array([0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95])
        observed = np.quantile(np.repeat(m, w), levels)
        rng = np.random.default_rng(seed)
        total = int(w.sum())
        xs = np.repeat(x_obs, w) if total <= 50_000 else x_obs[rng.choice(x_obs.size, size=50_000, p=w / total)]
        pick = draw_indices(len(self._posterior()["p"]))
        replicated = np.array([np.quantile(self.simulate_mean_spend(xs, seed=seed + k, draw=int(j)), levels)
                               for k, j in enumerate(pick)])
        return make_check("mean_spend_quantiles",
                          check_rows("repeat buyers", 100 * levels, [f"{round(100 * q)} %" for q in levels],
                                     observed, replicated),
                          title="Mean spend per repeat purchase: observed against the fitted Gamma-Gamma",
                          x_label="quantile of the repeat buyers (%)",
                          y_label="mean spend per repeat purchase (currency of the amounts)",
                          caption="The 5 % to 95 % quantiles of the repeat buyers' mean spend: observed (dots) against "
                                  "data sets replicated under the fit, each buyer with her own number of repeat "
                                  f"purchases (line: mean, band: 90 % over {len(pick)} posterior draws); a dot "
                                  "outside the band is a part of the spend distribution the model misses.",
                          draws=len(pick))

    def _posterior(self) -> dict[str, np.ndarray]:
        if self.result is None:
            raise InputError("gamma-gamma: fit the model before predicting")
        return posterior_draws(self.result.data, self.var_names)

    def expected_spend(
        self, data: pl.DataFrame, *, interval: float = 0.9, keep_draws: bool = False
    ) -> Prediction:
        """Expected mean spend per future transaction of each customer, with its interval."""
        rows = prediction_rows(validate_summary(data, where="prediction data", monetary=True),
                               "frequency", "monetary_value")

        def compute(draws, chunk):
            return gamma_gamma_expected_spend(draws["p"][:, None], draws["q"][:, None], draws["v"][:, None],
                                              chunk["frequency"], chunk["monetary_value"])

        return reduce_over_draws(compute, self._posterior(), rows, interval=interval, keep_draws=keep_draws)

    def spend_terms(self, frequency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per posterior draw and value of ``frequency``, the base and weight of :func:`gamma_gamma_spend_terms`.

        Each is ``(n_draws, len(frequency))``; the expected spend of a customer with x repeat purchases
        and mean spend m̄ in a draw is ``base + weight · m̄`` (``m̄`` taken as 0 when x = 0).
        """
        d = self._posterior()
        return gamma_gamma_spend_terms(d["p"][:, None], d["q"][:, None], d["v"][:, None],
                                       np.asarray(frequency, dtype=float))


def customer_lifetime_value(
    purchases: BGNBDModel,
    spend: GammaGammaModel,
    data: pl.DataFrame,
    *,
    horizon_periods: int,
    discount_rate_per_period: float,
    time_unit: str = "months",
    margin: float = 1.0,
    interval: float = 0.9,
    keep_draws: bool = False,
) -> Prediction:
    """Discounted CLV of each customer over ``horizon_periods`` periods of one ``time_unit``.

    CLV_i = margin · E[spend_i] · Σ_{k=1..H} (E[Y_i(k)] − E[Y_i(k−1)]) / (1+d)^k, with E[Y_i(k)]
    the expected purchases in the next k periods of the transaction model ``purchases``
    (BG/NBD: Fader, Hardie & Lee 2005, eq. 10; the Pareto/NBD and MBG/NBD subclass it),
    E[spend_i] the Gamma-Gamma conditional mean (Fader & Hardie 2013, eq. 5) and d the
    discount rate per period: purchases made in period k are discounted k times, as in
    Fader, Hardie & Lee (2005b). ``time_unit`` is converted to the BG/NBD model's unit, so a
    model fitted in weeks gives monthly CLV with ``time_unit="months"``.

    Draws of the two independent posteriors are paired in order; the number of draws is
    the smaller of the two. Only the mean and interval per customer are kept unless
    ``keep_draws``.
    """
    if horizon_periods < 1:
        raise InputError(f"horizon_periods: must be at least 1, found {horizon_periods}")
    if discount_rate_per_period <= -1:
        raise InputError(f"discount_rate_per_period: must exceed -1, found {discount_rate_per_period}")
    step = convert_periods(1.0, time_unit, purchases.time_unit)
    covs = list(dict.fromkeys(purchases.purchase_covariates + purchases.dropout_covariates))
    rows = prediction_rows(validate_summary(data, where="prediction data", monetary=True, covariates=covs),
                           "frequency", "recency", "T", "monetary_value", *covs)
    d_bg = purchases._posterior()
    d_gg = spend._posterior()
    n = min(len(d_bg["r"]), len(d_gg["p"]))
    draws = {**{k: v[:n] for k, v in d_bg.items()}, **{k: v[:n] for k, v in d_gg.items()}}
    factors = (1.0 + discount_rate_per_period) ** -np.arange(1, horizon_periods + 1)

    def compute(dr, chunk):
        x = chunk["frequency"]
        value = np.zeros((n, len(x)))
        previous = np.zeros_like(value)
        for k, f in enumerate(factors, start=1):
            cumulative = purchases.conditional_purchases(k * step, dr, chunk)
            value += f * (cumulative - previous)
            previous = cumulative
        money = gamma_gamma_expected_spend(dr["p"][:, None], dr["q"][:, None], dr["v"][:, None], x,
                                           chunk["monetary_value"])
        return margin * money * value

    return reduce_over_draws(compute, draws, rows, interval=interval, keep_draws=keep_draws)
