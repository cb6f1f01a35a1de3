"""BG/BB: discrete-time non-contractual repeat buying (Fader, Hardie & Shang 2010).

At each of n transaction opportunities (an annual event, a weekly visit), an alive
customer buys with probability p ~ Beta(α, β) across customers and, after each
opportunity, drops out for good with probability θ ~ Beta(γ, δ). The data per customer
are ``frequency`` x (purchases at opportunities 1..n), ``recency`` t_x (the last
opportunity with a purchase, 0 if none) and ``T`` = n, all whole numbers; the papers'
column names ``x``, ``t_x`` and ``n`` are accepted, and a ``count`` column (``n_custs``)
weights identical customers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl

# scipy.special is imported inside the functions that use it: 0.4 s of imports that a MAP fit does not need.
from tenure.models.base import BayesianModel, prior
from tenure.models.clv_data import check_time_unit, compress_summary, nuts_options, prediction_rows, validate_summary
from tenure.models.clv_predict import Prediction, posterior_draws, reduce_over_draws

from tenure.errors import InputError

if TYPE_CHECKING:  # PyMC and PyTensor are imported only to build the model: the fast route fits without them
    import pymc as pm
    import pytensor.tensor as pt

FLAT = {"dist": "HalfFlat"}


def _opportunity_grid(t_x: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets i = 0..max(n−t_x)−1 per row and the mask i < n − t_x of the likelihood's finite sum."""
    width = max(int(np.max(n - t_x)), 1)
    i = np.broadcast_to(np.arange(width, dtype=float), (len(n), width))
    return i, i < (n - t_x)[:, None]


def bgbb_logp(alpha: Any, beta: Any, gamma: Any, delta: Any, x: np.ndarray, t_x: np.ndarray,
              n: np.ndarray) -> pt.TensorVariable:
    """Log-likelihood of each customer under the BG/BB model (PyTensor, vectorised).

    Fader, Hardie & Shang (2010), "Customer-base analysis in a discrete-time
    noncontractual setting", Marketing Science 29(6), eq. (5):

    L = B(α+x, β+n−x)/B(α,β) · B(γ, δ+n)/B(γ,δ)
        + Σ_{i=0}^{n−t_x−1} B(α+x, β+t_x−x+i)/B(α,β) · B(γ+1, δ+t_x+i)/B(γ,δ),

    summed in logs with ``logsumexp`` over a padded, masked grid of i.
    """
    import pytensor.tensor as pt
    from pytensor.tensor.special import betaln

    x, t_x, n = (np.asarray(v, dtype=float) for v in (x, t_x, n))
    i, mask = _opportunity_grid(t_x, n)
    x_grid = np.broadcast_to(x[:, None], i.shape)
    since_grid = (t_x - x)[:, None] + i
    tx_grid = t_x[:, None] + i
    norm = betaln(alpha, beta) + betaln(gamma, delta)
    alive = betaln(alpha + x, beta + n - x) + betaln(gamma, delta + n)
    left = betaln(alpha + x_grid, beta + since_grid) + betaln(gamma + 1.0, delta + tx_grid)
    left = pt.switch(mask, left, -np.inf)
    both = pt.concatenate([alive[:, None], left], axis=1)
    return pt.logsumexp(both, axis=1) - norm


def bgbb_loglike_np(alpha, beta, gamma, delta, x, t_x, n) -> np.ndarray:
    """The same log-likelihood in numpy for parameter draws of shape ``(n_draws,)``.

    Returns an ``(n_draws, n_rows)`` array.
    """
    from scipy import special
    x, t_x, n = (np.asarray(v, dtype=float) for v in (x, t_x, n))
    i, mask = _opportunity_grid(t_x, n)
    a, b, g, d = (np.asarray(v, dtype=float)[:, None] for v in (alpha, beta, gamma, delta))
    norm = special.betaln(a, b) + special.betaln(g, d)
    alive = special.betaln(a + x, b + n - x) + special.betaln(g, d + n)
    left = (special.betaln(a[..., None] + x[:, None], b[..., None] + (t_x - x)[:, None] + i)
            + special.betaln(g[..., None] + 1.0, d[..., None] + t_x[:, None] + i))
    left = np.where(mask, left, -np.inf)
    both = np.concatenate([alive[..., None], left], axis=-1)
    return special.logsumexp(both, axis=-1) - norm


class BGBBModel(BayesianModel):
    """The BG/BB model in PyMC.

    Parameters
    ----------
    data
        A discrete-time summary: ``frequency``, ``recency``, ``T`` (number of
        opportunities) as whole numbers, optional ``count``.
    time_unit
        Length of one transaction opportunity (``"days"``, ``"weeks"``, ``"months"`` or
        ``"years"``); recorded with the fit.
    priors
        Overrides of :attr:`default_priors` (flat: the mode is the MLE).
    where
        Name of the input in error messages.
    """

    name: ClassVar[str] = "bgbb"
    named_parameters: ClassVar[tuple[str, ...]] = ("alpha", "beta", "gamma", "delta")
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {"alpha": FLAT, "beta": FLAT, "gamma": FLAT,
                                                           "delta": FLAT}

    def __init__(
        self, data: pl.DataFrame, *, time_unit: str = "years",
        priors: Mapping[str, Mapping[str, Any]] | None = None, where: str = "summary",
    ) -> None:
        super().__init__(priors)
        self.time_unit = check_time_unit(time_unit)
        summary = validate_summary(data, where=where, discrete=True)
        self.data = compress_summary(summary.select("frequency", "recency", "T", "count"))
        self.n_customers = int(self.data["count"].sum())
        self.sampler_options = nuts_options(self.data.height)

    def data_summary(self) -> dict[str, Any]:
        """Customers, unique rows and the opportunity length."""
        return {"customers": self.n_customers, "unique_rows": self.data.height, "time_unit": self.time_unit}

    def build(self) -> pm.Model:
        """The PyMC model: flat priors and the weighted BG/BB likelihood."""
        import pymc as pm
        import pytensor.tensor as pt

        x, t_x, n = (self.data[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
        w = self.data["count"].to_numpy().astype(float)
        with pm.Model() as model:
            params = [prior(k, self.priors[k]) for k in self.named_parameters]
            pm.Potential("log_likelihood", pt.dot(w, bgbb_logp(*params, x, t_x, n)))
        return model

    def fast_model(self) -> Any:
        """The closed-form Numba route (:mod:`tenure.models._bgbb_fast`); ``None`` with a prior it cannot express
        (see :mod:`tenure.models._fast`)."""
        from tenure.models import _bgbb_fast

        buf = _bgbb_fast.pack_data(*(self.data[c].to_numpy() for c in ("frequency", "recency", "T", "count")),
                                   self.priors)
        return None if buf is None else _bgbb_fast.fast_model(buf)

    def options(self) -> dict[str, Any]:
        """The opportunity length."""
        return {"time_unit": self.time_unit}

    def observed_table(self) -> dict[str, np.ndarray]:
        """The compressed discrete-time rows."""
        return {c: self.data[c].to_numpy() for c in self.data.columns}

    def pointwise_log_likelihood(self, idata: Any) -> dict[str, np.ndarray]:
        """count × log L of each compressed row per draw (eq. 5 in numpy)."""
        d = posterior_draws(idata, self.var_names)
        x, t_x, n, w = (self.data[c].to_numpy().astype(float) for c in ("frequency", "recency", "T", "count"))
        return {"purchases": w * bgbb_loglike_np(*(d[k] for k in self.named_parameters), x, t_x, n)}

    def simulate_repeat_counts(self, n: np.ndarray, *, seed: int, draw: int) -> np.ndarray:
        """Purchases at opportunities 1..n_i of customers drawn from the fitted population under posterior draw
        ``draw``: p ~ Beta(α, β), θ ~ Beta(γ, δ); a customer stays alive through L opportunities, P(L ≥ t) =
        (1 − θ)^t, and buys at each of the first min(L, n_i) with probability p (Fader, Hardie & Shang 2010, §2)."""
        d = {k: v[int(draw)] for k, v in self._posterior().items()}
        n = np.asarray(n, dtype=np.int64)
        rng = np.random.default_rng(seed)
        p = rng.beta(d["alpha"], d["beta"], n.size)
        alive = rng.geometric(rng.beta(d["gamma"], d["delta"], n.size)) - 1
        return rng.binomial(np.minimum(alive, n), p)

    def predictive_check(self, idata: Any, seed: int) -> dict[str, Any]:
        """Customers by number of purchases (0 to the largest n), observed against replicated.

        Each of 100 posterior draws replicates every customer's purchases over her own n opportunities
        (:meth:`simulate_repeat_counts`), at most 50 000 customers per replicate (a count-weighted
        sample, scaled back). The replicates' mean is P(X(n) = x) of Fader, Hardie & Shang (2010),
        eq. (7), summed over customers, up to Monte Carlo error.
        """
        from tenure.models.ppc import check_rows, count_caption, draw_indices
        from tenure.models.ppc import predictive_check as make_check

        x_obs, n_opp, w = (self.data[c].to_numpy().astype(np.int64) for c in ("frequency", "T", "count"))
        top = int(n_opp.max())
        observed = np.bincount(x_obs, weights=w, minlength=top + 1)
        rng = np.random.default_rng(seed)
        total = int(w.sum())
        opps = np.repeat(n_opp, w) if total <= 50_000 else n_opp[rng.choice(n_opp.size, size=50_000, p=w / total)]
        scale = total / opps.size
        pick = draw_indices(len(self._posterior()["alpha"]))
        replicated = np.array([scale * np.bincount(self.simulate_repeat_counts(opps, seed=seed + k, draw=int(j)),
                                                   minlength=top + 1)
                               for k, j in enumerate(pick)])
        x = np.arange(top + 1)
        return make_check("customers_by_purchases",
                          check_rows("all customers", x, [str(v) for v in x], observed, replicated),
                          title="Customers by number of purchases: observed against the fitted BG/BB",
                          x_label="purchases at the customer's transaction opportunities "
                                  f"(one per {self.time_unit.rstrip('s')})",
                          y_label="customers",
                          caption=count_caption("bought at 0, 1, 2, ... of their opportunities", len(pick),
                                                opps.size, total),
                          draws=len(pick), style="bars")

    def _posterior(self) -> dict[str, np.ndarray]:
        if self.result is None:
            raise InputError("bgbb: fit the model before predicting")
        return posterior_draws(self.result.data, self.var_names)

    def _rows(self, data: pl.DataFrame | None) -> pl.DataFrame:
        if data is None:
            return self.data.select("frequency", "recency", "T")
        return prediction_rows(validate_summary(data, where="prediction data", discrete=True),
                               "frequency", "recency", "T")

    def probability_alive(
        self, data: pl.DataFrame | None = None, *, interval: float = 0.9, keep_draws: bool = False
    ) -> Prediction:
        """P(alive at opportunity n+1 | x, t_x, n) per customer; see :func:`bgbb_p_alive`."""
        def compute(d, c):
            return bgbb_p_alive(*(d[k] for k in self.named_parameters), c["frequency"], c["recency"], c["T"])

        return reduce_over_draws(compute, self._posterior(), self._rows(data), interval=interval,
                                 keep_draws=keep_draws)

    def expected_purchases(
        self, future_opportunities: int, data: pl.DataFrame | None = None, *, interval: float = 0.9,
        keep_draws: bool = False,
    ) -> Prediction:
        """Expected purchases in the next ``future_opportunities``; see :func:`bgbb_expected_purchases`."""
        if future_opportunities < 1:
            raise InputError(f"future_opportunities: must be at least 1, found {future_opportunities}")

        def compute(d, c):
            return bgbb_expected_purchases(future_opportunities, *(d[k] for k in self.named_parameters),
                                           c["frequency"], c["recency"], c["T"])

        return reduce_over_draws(compute, self._posterior(), self._rows(data), interval=interval,
                                 keep_draws=keep_draws)


def bgbb_p_alive(alpha, beta, gamma, delta, x, t_x, n) -> np.ndarray:
    """P(alive at opportunity n+1 | x, t_x, n); Fader, Hardie & Shang (2010), eq. (11).

    Parameters are draws of shape ``(n_draws,)``; returns ``(n_draws, n_rows)``.
    """
    from scipy import special
    a, b, g, d = (np.asarray(v, dtype=float)[:, None] for v in (alpha, beta, gamma, delta))
    x, n = np.asarray(x, dtype=float), np.asarray(n, dtype=float)
    log_num = (special.betaln(a + x, b + n - x) - special.betaln(a, b)
               + special.betaln(g, d + n + 1.0) - special.betaln(g, d))
    return np.exp(log_num - bgbb_loglike_np(alpha, beta, gamma, delta, x, t_x, n))


def bgbb_expected_purchases(future_opportunities: float, alpha, beta, gamma, delta, x, t_x, n) -> np.ndarray:
    """Expected purchases at opportunities n+1..n+n*; Fader, Hardie & Shang (2010), eq. (13).

    E = 1/L · B(α+x+1, β+n−x)/B(α,β) · δ/(γ−1) · Γ(γ+δ)/Γ(1+δ)
        · [Γ(1+δ+n)/Γ(γ+δ+n) − Γ(1+δ+n+n*)/Γ(γ+δ+n+n*)].

    Parameters are draws of shape ``(n_draws,)``; returns ``(n_draws, n_rows)``.
    """
    from scipy import special
    ns = float(future_opportunities)
    a, b, g, d = (np.asarray(v, dtype=float)[:, None] for v in (alpha, beta, gamma, delta))
    x, n = np.asarray(x, dtype=float), np.asarray(n, dtype=float)
    log_l = bgbb_loglike_np(alpha, beta, gamma, delta, x, t_x, n)
    head = special.betaln(a + x + 1.0, b + n - x) - special.betaln(a, b)
    gam = special.gammaln(g + d) - special.gammaln(1.0 + d)
    bracket = (np.exp(special.gammaln(1.0 + d + n) - special.gammaln(g + d + n))
               - np.exp(special.gammaln(1.0 + d + n + ns) - special.gammaln(g + d + n + ns)))
    return np.exp(head + gam - log_l) * d / (g - 1.0) * bracket
