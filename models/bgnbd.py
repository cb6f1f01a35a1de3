"""BG/NBD: repeat buying and silent dropout in a non-contractual setting (Fader, Hardie & Lee 2005).

While alive, a customer buys as a Poisson process with rate λ ~ Gamma(r, α) across
customers; after each purchase she drops out with probability p ~ Beta(a, b). The data
per customer are ``frequency`` x (repeat purchases), ``recency`` t_x and age ``T``, in one
explicit time unit (α is a rate parameter *per that unit*).

Covariates (for example trust and enthusiasm from the last survey) enter as in Fader &
Hardie (2007), "Incorporating time-invariant covariates into the Pareto/NBD and BG/NBD
models": α_i = α·exp(−γ_purchase·z_i), so a positive coefficient raises the purchase rate,
and a_i = a·exp(γ_a·z_i), b_i = b·exp(γ_b·z_i) for dropout. Covariates are centred on
their sample means, so ``alpha``, ``a`` and ``b`` describe a customer with average
covariates.

The likelihood is summed over unique (x, t_x, T) rows weighted by ``count``; without
covariates every Gamma-function term is computed once per distinct x and every logarithm
once per distinct t_x or T, which is what lets a million customers fit in seconds.

Examples
--------
>>> import polars as pl
>>> from tenure.models.bgnbd import BGNBDModel
>>> summary = pl.read_csv("tests/data/cdnow_customers_summary.csv")  # doctest: +SKIP
>>> model = BGNBDModel(summary, time_unit="weeks")  # doctest: +SKIP
>>> result = model.fit(method="map")  # doctest: +SKIP
>>> result.summary()  # doctest: +SKIP
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
    compress_summary,
    convert_periods,
    nuts_options,
    prediction_rows,
    validate_summary,
)
from tenure.models.clv_predict import Prediction, curve_summary, posterior_draws, reduce_over_draws

from tenure.errors import InputError

if TYPE_CHECKING:  # PyMC and PyTensor are imported only to build the model: the default fit samples without them
    import arviz as az
    import pymc as pm
    import pytensor.tensor as pt

FLAT = {"dist": "HalfFlat"}
COEF = {"dist": "Normal", "mu": 0.0, "sigma": 1.0}


def bgnbd_logp(r: Any, alpha: Any, a: Any, b: Any, x: Any, t_x: Any, T: Any) -> pt.TensorVariable:
    """Log-likelihood of each customer under the BG/NBD model (PyTensor, vectorised).

    Fader, Hardie & Lee (2005), "Counting your customers the easy way", Marketing
    Science 24(2), eq. (6):

    L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
        + δ(x>0) · B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)).

    Since B(a+1, b+x−1)/B(a, b+x) = a/(b+x−1), the log is the first term's log plus
    softplus(log a − log(b+x−1) + (r+x)(log(α+T) − log(α+t_x))) for x > 0: one
    ``betaln`` per row and no subtraction of nearly equal terms. Any argument may be per
    row (covariates) or scalar.
    """
    import pytensor.tensor as pt
    from pytensor.tensor.special import betaln

    x_pos = pt.maximum(x, 1.0)  # keeps the x = 0 branch finite so that its zero-weighted gradient is not NaN
    first = (pt.gammaln(r + x) - pt.gammaln(r) + r * pt.log(alpha) + betaln(a, b + x) - betaln(a, b)
             - (r + x) * pt.log(alpha + T))
    log_odds = pt.log(a) - pt.log(b + x_pos - 1.0) + (r + x) * (pt.log(alpha + T) - pt.log(alpha + t_x))
    return first + pt.switch(x > 0, pt.softplus(log_odds), 0.0)


class _CompressedRFM:
    """Weights that let the BG/NBD likelihood evaluate its special functions once per distinct value.

    The log-likelihood of :func:`bgnbd_logp` splits into a part that depends on x alone
    (Gamma and Beta functions: summed over distinct x with the total weight of each), a
    part linear in log(α+T) (summed over distinct T), and the per-row softplus of the
    repeat buyers. Nothing is gathered per row, so the gradient needs no scatter either.
    """

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, w: np.ndarray) -> None:
        self.ux, xi = np.unique(x, return_inverse=True)
        self.w_by_x = np.bincount(xi, weights=w, minlength=len(self.ux))
        self.uT, Ti = np.unique(T, return_inverse=True)
        self.w_by_T = np.bincount(Ti, weights=w, minlength=len(self.uT))
        self.wx_by_T = np.bincount(Ti, weights=w * x, minlength=len(self.uT))
        pos = x > 0
        self.w_pos, self.x_pos, self.tx_pos, self.T_pos = w[pos], x[pos], t_x[pos], T[pos]

    def total_logp(self, r: Any, alpha: Any, a: Any, b: Any) -> pt.TensorVariable:
        """Σ count · log L over all rows, equal to ``(count * bgnbd_logp(...)).sum()``."""
        import pytensor.tensor as pt
        from pytensor.tensor.special import betaln

        ux = pt.as_tensor(self.ux)
        by_x = pt.gammaln(r + ux) - pt.gammaln(r) + r * pt.log(alpha) + betaln(a, b + ux) - betaln(a, b)
        log_T = pt.log(alpha + pt.as_tensor(self.uT))
        total = (pt.dot(pt.as_tensor(self.w_by_x), by_x)
                 - r * pt.dot(pt.as_tensor(self.w_by_T), log_T) - pt.dot(pt.as_tensor(self.wx_by_T), log_T))
        if len(self.w_pos):
            x = pt.as_tensor(self.x_pos)
            log_ratio = pt.log(alpha + pt.as_tensor(self.T_pos)) - pt.log(alpha + pt.as_tensor(self.tx_pos))
            log_odds = pt.log(a) - pt.log(b + x - 1.0) + (r + x) * log_ratio
            total += pt.dot(pt.as_tensor(self.w_pos), pt.softplus(log_odds))
        return total


def _centred(df: pl.DataFrame, names: Sequence[str], means: Mapping[str, float]) -> np.ndarray:
    if not names:
        return np.zeros((df.height, 0))
    return np.column_stack([df.get_column(c).to_numpy().astype(float) - means[c] for c in names])


#: Names of the BG/NBD family as the literature writes them (figure titles).
_TITLES = {"bgnbd": "BG/NBD", "pnbd": "Pareto/NBD", "mbgnbd": "MBG/NBD"}


class BGNBDModel(BayesianModel):
    """The BG/NBD model in PyMC, with optional covariates on purchase and dropout.

    Parameters
    ----------
    data
        An RFM summary (see :func:`tenure.models.clv_data.validate_summary`), one row per
        customer or per group of identical customers with ``count``.
    time_unit
        Unit of ``recency`` and ``T``: ``"days"``, ``"weeks"`` or ``"months"``.
    purchase_covariates, dropout_covariates
        Column names of time-invariant covariates on the purchase rate and on dropout.
    priors
        Overrides of :attr:`default_priors`. The defaults are flat on the positive
        half-line, so the posterior mode is the maximum-likelihood estimate; coefficient
        priors are Normal(0, 1) per unit of the covariate.
    where
        Name of the input in error messages.
    """

    name: ClassVar[str] = "bgnbd"
    named_parameters: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {
        "r": FLAT, "alpha": FLAT, "a": FLAT, "b": FLAT,
        "purchase_coefficient": COEF, "dropout_coefficient_a": COEF, "dropout_coefficient_b": COEF,
    }

    def __init__(
        self,
        data: pl.DataFrame,
        *,
        time_unit: str = "weeks",
        purchase_covariates: Sequence[str] = (),
        dropout_covariates: Sequence[str] = (),
        priors: Mapping[str, Mapping[str, Any]] | None = None,
        where: str = "summary",
    ) -> None:
        super().__init__(priors)
        self.time_unit = check_time_unit(time_unit)
        self.purchase_covariates = tuple(purchase_covariates)
        self.dropout_covariates = tuple(dropout_covariates)
        covs = list(dict.fromkeys(self.purchase_covariates + self.dropout_covariates))
        summary = validate_summary(data, where=where, covariates=covs)
        self.covariate_means = {c: float(np.average(summary[c].to_numpy(), weights=summary["count"].to_numpy()))
                                for c in covs}
        self.data = compress_summary(summary.select("frequency", "recency", "T", *covs, "count"))
        self.n_customers = int(self.data["count"].sum())
        self.sampler_options = nuts_options(self.data.height)

    @property
    def var_names(self) -> list[str]:
        """Parameters reported in summaries: the literature's four and any coefficients."""
        names = list(self.named_parameters)
        if self.purchase_covariates:
            names.append("purchase_coefficient")
        if self.dropout_covariates:
            names += ["dropout_coefficient_a", "dropout_coefficient_b"]
        return names

    def data_summary(self) -> dict[str, Any]:
        """Customers, unique rows, time unit and covariate means."""
        return {"customers": self.n_customers, "unique_rows": self.data.height, "time_unit": self.time_unit,
                "purchase_covariates": list(self.purchase_covariates),
                "dropout_covariates": list(self.dropout_covariates), "covariate_means": self.covariate_means}

    def build(self) -> pm.Model:
        """The PyMC model: priors, then a ``pm.Potential`` holding the weighted log-likelihood."""
        import pymc as pm
        import pytensor.tensor as pt

        coords = {"purchase_covariate": list(self.purchase_covariates),
                  "dropout_covariate": list(self.dropout_covariates)}
        x = self.data["frequency"].to_numpy()
        t_x = self.data["recency"].to_numpy()
        T = self.data["T"].to_numpy()
        w = self.data["count"].to_numpy().astype(float)
        with pm.Model(coords=coords) as model:
            r = prior("r", self.priors["r"])
            alpha = prior("alpha", self.priors["alpha"])
            a = prior("a", self.priors["a"])
            b = prior("b", self.priors["b"])
            if not self.purchase_covariates and not self.dropout_covariates:
                pm.Potential("log_likelihood", _CompressedRFM(x, t_x, T, w).total_logp(r, alpha, a, b))
                return model
            alpha_i, a_i, b_i = alpha, a, b
            if self.purchase_covariates:
                g = prior("purchase_coefficient", self.priors["purchase_coefficient"], dims="purchase_covariate")
                alpha_i = alpha * pt.exp(-pt.dot(_centred(self.data, self.purchase_covariates,
                                                          self.covariate_means), g))
            if self.dropout_covariates:
                z = _centred(self.data, self.dropout_covariates, self.covariate_means)
                ga = prior("dropout_coefficient_a", self.priors["dropout_coefficient_a"], dims="dropout_covariate")
                gb = prior("dropout_coefficient_b", self.priors["dropout_coefficient_b"], dims="dropout_covariate")
                a_i = a * pt.exp(pt.dot(z, ga))
                b_i = b * pt.exp(pt.dot(z, gb))
            pm.Potential("log_likelihood", pt.dot(w, bgnbd_logp(r, alpha_i, a_i, b_i, x, t_x, T)))
        return model

    def fast_path_data(self) -> np.ndarray | None:
        """The packed data of the closed-form sampler, or ``None`` when NUTS must run on the PyMC model.

        The fast path covers the model without covariates whose priors on r, α, a and b are
        HalfFlat (the default), Gamma, Exponential, HalfNormal, Weibull or LogNormal with
        plain numbers; anything else, or ``fast_sampler = False``, fits the PyMC model.
        """
        if not self.fast_sampler or self.purchase_covariates or self.dropout_covariates:
            return None
        from tenure.models import _bgnbd_fast

        return _bgnbd_fast.pack_data(*(self.data[c].to_numpy() for c in ("frequency", "recency", "T", "count")),
                                     self.priors)

    def fast_model(self) -> Any:
        """The closed-form Numba route (:mod:`tenure.models._bgnbd_fast`) where :meth:`fast_path_data` allows it."""
        buf = self.fast_path_data()
        if buf is None:
            return None
        from tenure.models import _bgnbd_fast

        return _bgnbd_fast.fast_model(buf)

    def options(self) -> dict[str, Any]:
        """Time unit, covariates and their means."""
        return {"time_unit": self.time_unit, "purchase_covariates": list(self.purchase_covariates),
                "dropout_covariates": list(self.dropout_covariates), "covariate_means": self.covariate_means}

    def observed_table(self) -> dict[str, np.ndarray]:
        """The compressed RFM rows."""
        return {c: self.data[c].to_numpy() for c in self.data.columns}

    def pointwise_log_likelihood(self, idata: az.InferenceData) -> dict[str, np.ndarray]:
        """count × log L of each compressed row per draw (eq. 6 in numpy)."""
        from scipy import special
        rows = {c: self.data[c].to_numpy().astype(float) for c in self.data.columns}
        r, alpha, a, b = self._individual(posterior_draws(idata, self.var_names), rows)
        x, t_x, T = rows["frequency"], rows["recency"], rows["T"]
        if self.purchase_covariates or self.dropout_covariates:
            return {"purchases": rows["count"] * bgnbd_loglike_np(r, alpha, a, b, x, t_x, T)}
        # One value per draw: the Gamma functions once per distinct x, the logarithms once per distinct t_x or T.
        ux, xi = np.unique(x, return_inverse=True)
        log_T, log_tx = (np.log(alpha + u)[:, i] for u, i in (np.unique(T, return_inverse=True),
                                                                np.unique(t_x, return_inverse=True)))
        by_x = (special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha) + special.betaln(a, b + ux)
                - special.betaln(a, b))[:, xi]
        log_b = np.log(b + np.maximum(ux, 1.0) - 1.0)[:, xi]
        ll = by_x - (r + x) * log_T
        ll += np.where(x > 0, np.logaddexp(0.0, np.log(a) - log_b + (r + x) * (log_T - log_tx)), 0.0)
        return {"purchases": rows["count"] * ll}

    # -- predictions ---------------------------------------------------------------
    def _posterior(self) -> dict[str, np.ndarray]:
        if self.result is None:
            raise InputError(f"{self.name}: fit the model before predicting")
        return posterior_draws(self.result.data, self.var_names)

    def _customer_rows(self, data: pl.DataFrame | None) -> pl.DataFrame:
        covs = list(dict.fromkeys(self.purchase_covariates + self.dropout_covariates))
        if data is None:
            return self.data.select("frequency", "recency", "T", *covs)
        return prediction_rows(validate_summary(data, where="prediction data", covariates=covs),
                               "frequency", "recency", "T", *covs)

    def _individual(self, draws: Mapping[str, np.ndarray], chunk: Mapping[str, np.ndarray]):
        """Per-draw, per-customer (r, α_i, a_i, b_i), each (n_draws, n_chunk) or broadcastable."""
        r = draws["r"][:, None]
        alpha = draws["alpha"][:, None]
        a = draws["a"][:, None]
        b = draws["b"][:, None]
        if self.purchase_covariates:
            z = np.column_stack([chunk[c] - self.covariate_means[c] for c in self.purchase_covariates])
            alpha = alpha * np.exp(-(draws["purchase_coefficient"] @ z.T))
        if self.dropout_covariates:
            z = np.column_stack([chunk[c] - self.covariate_means[c] for c in self.dropout_covariates])
            a = a * np.exp(draws["dropout_coefficient_a"] @ z.T)
            b = b * np.exp(draws["dropout_coefficient_b"] @ z.T)
        return r, alpha, a, b

    def probability_alive(
        self, data: pl.DataFrame | None = None, *, interval: float = 0.9, keep_draws: bool = False
    ) -> Prediction:
        """P(alive | x, t_x, T) per customer: mean and interval over the posterior.

        Fader, Hardie & Lee (2008), "Computing P(alive) using the BG/NBD model", eq. (2):
        P = 1 / (1 + δ(x>0) · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x)).
        """
        def compute(draws, chunk):
            r, alpha, a, b = self._individual(draws, chunk)
            return bgnbd_p_alive(r, alpha, a, b, chunk["frequency"], chunk["recency"], chunk["T"])

        return reduce_over_draws(compute, self._posterior(), self._customer_rows(data),
                                 interval=interval, keep_draws=keep_draws)

    def expected_purchases(
        self,
        horizon_periods: float,
        data: pl.DataFrame | None = None,
        *,
        time_unit: str | None = None,
        interval: float = 0.9,
        keep_draws: bool = False,
    ) -> Prediction:
        """Expected purchases of each customer in the next ``horizon_periods`` (in ``time_unit``).

        ``time_unit`` defaults to the unit the model was fitted in; another unit is
        converted (e.g. 3 months for a model in weeks). Fader, Hardie & Lee (2005), eq. (10).
        """
        t = convert_periods(horizon_periods, time_unit or self.time_unit, self.time_unit)

        def compute(draws, chunk):
            return self.conditional_purchases(t, draws, chunk)

        return reduce_over_draws(compute, self._posterior(), self._customer_rows(data),
                                 interval=interval, keep_draws=keep_draws)

    def conditional_purchases(self, t: float, draws: Mapping[str, np.ndarray],
                              chunk: Mapping[str, np.ndarray]) -> np.ndarray:
        """E[Y(t) | x, t_x, T] per draw and customer of ``chunk``, (n_draws, n_chunk), ``t`` in the model's unit."""
        r, alpha, a, b = self._individual(draws, chunk)
        return bgnbd_conditional_purchases(t, r, alpha, a, b, chunk["frequency"], chunk["recency"], chunk["T"])

    def predictive_check(self, idata: Any, seed: int) -> dict[str, Any] | None:
        """Customers by number of repeat purchases (0 to 7+) in the fitted period, observed against replicated.

        Each of 100 posterior draws replicates the customers' counts over their own ages T
        (:meth:`simulate_repeat_counts` with that draw for all), at most 50 000 customers per
        replicate (a count-weighted sample, scaled back). ``None`` with covariates, whose replicate
        would need each customer's covariates.
        """
        from tenure.models.ppc import check_rows, count_caption, draw_indices
        from tenure.models.ppc import predictive_check as make_check

        if self.purchase_covariates or self.dropout_covariates:
            return None
        top = 7
        freq = self.data["frequency"].to_numpy().astype(int)
        T = self.data["T"].to_numpy().astype(float)
        w = self.data["count"].to_numpy().astype(np.int64)
        observed = np.bincount(np.minimum(freq, top), weights=w, minlength=top + 1)
        rng = np.random.default_rng(seed)
        n = int(w.sum())
        ages = np.repeat(T, w) if n <= 50_000 else T[rng.choice(T.size, size=50_000, p=w / n)]
        scale = n / ages.size
        pick = draw_indices(len(self._posterior()["r"]))
        replicated = np.array([scale * np.bincount(np.minimum(self.simulate_repeat_counts(ages, seed=seed + k,
                                                                                          draw=int(j)), top),
                                                   minlength=top + 1)
                               for k, j in enumerate(pick)])
        x = np.arange(top + 1)
        unit = self.time_unit or "periods"
        return make_check("customers_by_repeat_purchases",
                          check_rows("all customers", x, [*map(str, x[:-1]), f"{top}+"], observed, replicated),
                          title="Customers by number of repeat purchases: observed against the fitted "
                                + _TITLES.get(self.name, self.name),
                          x_label=f"repeat purchases in the fitted period (each customer's own age, in {unit})",
                          y_label="customers",
                          caption=count_caption("made 0, 1, ... 7 or more repeat purchases", len(pick), ages.size, n),
                          draws=len(pick), style="bars")

    def _population_draws(self, n: int, seed: int, draw: int | None = None
                          ) -> tuple[np.random.Generator, dict[str, np.ndarray]]:
        """One posterior draw per new customer (average covariates), chosen with ``seed``; all the draw ``draw``
        when given (a data set replicated under one draw, as a predictive check needs)."""
        draws = self._posterior()
        rng = np.random.default_rng(seed)
        pick = rng.integers(len(draws["r"]), size=n) if draw is None else np.full(n, int(draw))
        return rng, {k: draws[k][pick] for k in self.named_parameters}

    def simulate_repeat_counts(self, T: np.ndarray, *, seed: int, draw: int | None = None) -> np.ndarray:
        """Repeat purchases in (0, T_i] of new customers drawn from the fitted population.

        Each customer gets one posterior draw (chosen with ``seed``; the draw ``draw`` for all when
        given), then λ ~ Gamma(r, α), p ~ Beta(a, b); she buys as a Poisson process of rate λ and drops out after each
        repeat purchase with probability p, so her count is min(N, J) with N ~ Poisson(λT)
        and J ~ Geometric(p) on 1, 2, ... (Fader, Hardie & Lee 2005, section 3).
        """
        T = np.asarray(T, dtype=float)
        rng, d = self._population_draws(T.size, seed, draw)
        lam = rng.gamma(d["r"], 1.0 / d["alpha"])
        p = rng.beta(d["a"], d["b"])
        return np.minimum(rng.poisson(lam * T.ravel()), rng.geometric(p)).reshape(T.shape)

    def expected_purchases_new_customer(
        self, horizon_periods: Sequence[float] | np.ndarray, *, time_unit: str | None = None, interval: float = 0.9
    ) -> pl.DataFrame:
        """Expected purchases by a new customer (average covariates) up to each horizon.

        Fader, Hardie & Lee (2005), eq. (7). The horizon column is in ``time_unit``.
        """
        unit = time_unit or self.time_unit
        hs = np.asarray(horizon_periods, dtype=float)
        ts = np.array([convert_periods(h, unit, self.time_unit) for h in hs])
        d = self._posterior()
        vals = bgnbd_expected_purchases(ts[None, :], d["r"][:, None], d["alpha"][:, None], d["a"][:, None],
                                        d["b"][:, None])
        return curve_summary(vals, hs, f"horizon_{unit}", interval)


def bgnbd_loglike_np(r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """:func:`bgnbd_logp` in numpy (broadcasting); Fader, Hardie & Lee (2005), eq. (6)."""
    from scipy import special
    x = np.asarray(x, dtype=float)
    first = (special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + special.betaln(a, b + x)
             - special.betaln(a, b) - (r + x) * np.log(alpha + T))
    log_odds = np.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0) + _rx_log_ratio(r, alpha, x, t_x, T)
    return first + np.where(x > 0, np.logaddexp(0.0, log_odds), 0.0)


def _rx_log_ratio(r, alpha, x, t_x, T):
    return (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))


def bgnbd_p_alive(r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """P(alive) under the BG/NBD (numpy, broadcasting); Fader, Hardie & Lee (2008), eq. (2)."""
    from scipy import special
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_odds = np.log(a) - np.log(b + x - 1.0) + _rx_log_ratio(r, alpha, x, t_x, T)
    return np.where(x > 0, special.expit(-log_odds), 1.0)


def bgnbd_expected_purchases(t, r, alpha, a, b) -> np.ndarray:
    """E[X(t)] for a customer observed from time 0; Fader, Hardie & Lee (2005), eq. (7)."""
    from scipy import special
    z = t / (alpha + t)
    hyp = special.hyp2f1(r, b, a + b - 1.0, z)
    return (a + b - 1.0) / (a - 1.0) * (1.0 - np.exp(r * np.log(alpha / (alpha + t))) * hyp)


def bgnbd_conditional_purchases(t, r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """E[Y(t) | x, t_x, T], purchases in (T, T+t]; Fader, Hardie & Lee (2005), eq. (10)."""
    from scipy import special
    x = np.asarray(x, dtype=float)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1.0, t / (alpha + T + t))
    head = (a + b + x - 1.0) / (a - 1.0)
    body = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = np.where(x > 0, np.exp(np.log(a) - np.log(b + x - 1.0) + _rx_log_ratio(r, alpha, x, t_x, T)), 0.0)
    return head * body / (1.0 + odds)
