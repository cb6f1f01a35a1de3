"""A small panel generator with known coefficients, independent of the simulation engine.

Vectorised over customers with a seeded ``numpy.random.Generator``. Scores change
only in surveyed periods (a customer's first period is always surveyed), so the
carried-forward scores the models see are exactly the scores that drove churn and
cross-selling: the models are correctly specified and must recover the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

BANDS = (0, 3, 6, 12, 24)


@dataclass
class Truth:
    """Known coefficients (same names and centring as the models)."""

    churn_intercept: float = -3.0
    churn_trust: float = -0.35
    churn_enthusiasm: float = -0.15
    churn_satisfaction: float = -0.20
    churn_tenure: tuple[float, ...] = (-0.3, -0.5, -0.7, -0.9)
    churn_segment: tuple[float, ...] = (0.3, -0.2, 0.0)
    xsell_intercept: float = -3.2
    xsell_trust: float = 0.10
    xsell_enthusiasm: float = 0.30
    xsell_trust_x_enthusiasm: float = 0.08
    xsell_products: float = -0.15
    xsell_segment: tuple[float, ...] = (0.2, -0.1, 0.0)
    segments: tuple[str, ...] = ("alpha", "beta", "gamma")
    extra: dict[str, float] = field(default_factory=dict)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate_panel(
    n_customers: int,
    n_periods: int,
    seed: int,
    truth: Truth | None = None,
    survey_prob: float = 0.4,
    max_start: int = 6,
    customer_sd: tuple[float, float] = (0.0, 0.0),
    customer_corr: float = 0.0,
) -> tuple[pl.DataFrame, Truth]:
    """Simulate a panel in the documented format, with NPS and TRI*M items.

    ``customer_sd``/``customer_corr`` add correlated customer effects (retention
    effect r: churn log-odds −r; cross-selling effect v on the log-rate) for the joint model.
    """
    t = truth or Truth()
    rng = np.random.default_rng(seed)
    n, T = n_customers, n_periods
    seg = rng.integers(len(t.segments), size=n)
    start = rng.integers(0, max_start + 1, size=n)
    k = np.arange(T)
    # Scores: a customer level plus period noise, revealed only when surveyed.
    base = rng.normal(3.3, 0.9, size=(n, 1))
    trust_lvl = base + rng.normal(0, 0.5, size=(n, 1))
    enth_lvl = 0.6 * base + 1.2 + rng.normal(0, 0.6, size=(n, 1))
    sat_lvl = base + rng.normal(0, 0.6, size=(n, 1))
    surveyed = rng.random((n, T)) < survey_prob
    surveyed[:, 0] = True
    scores = {}
    for name, lvl in (("trust", trust_lvl), ("enthusiasm", enth_lvl), ("satisfaction", sat_lvl)):
        fresh = np.clip(np.rint(lvl + rng.normal(0, 0.7, size=(n, T))), 1, 5)
        last = np.maximum.accumulate(np.where(surveyed, k, 0), axis=1)
        scores[name] = np.take_along_axis(fresh, last, axis=1)
    cov = np.array([[customer_sd[0] ** 2, customer_corr * customer_sd[0] * customer_sd[1]],
                    [customer_corr * customer_sd[0] * customer_sd[1], customer_sd[1] ** 2]])
    re = rng.multivariate_normal(np.zeros(2), cov, size=n) if max(customer_sd) > 0 else np.zeros((n, 2))
    band = np.searchsorted(BANDS, k, side="right") - 1
    tau = np.r_[0.0, t.churn_tenure][band]
    ct, ce, cs = (scores[c] - 3.0 for c in ("trust", "enthusiasm", "satisfaction"))
    eta_churn = (t.churn_intercept + np.asarray(t.churn_segment)[seg][:, None] + tau[None, :]
                 + t.churn_trust * ct + t.churn_enthusiasm * ce + t.churn_satisfaction * cs - re[:, [0]])
    churn = rng.random((n, T)) < _sigmoid(eta_churn)
    available = k[None, :] < (T - start)[:, None]
    churn &= available
    first_churn = np.where(churn.any(axis=1), churn.argmax(axis=1), T)
    active = available & (k[None, :] <= first_churn[:, None])
    churned = churn & (k[None, :] == first_churn[:, None])
    products = np.ones((n, T), dtype=np.int64)
    cross = np.zeros((n, T), dtype=np.int64)
    seg_x = np.asarray(t.xsell_segment)[seg]
    for j in range(T):
        eta = (t.xsell_intercept + seg_x + t.xsell_trust * ct[:, j] + t.xsell_enthusiasm * ce[:, j]
               + t.xsell_trust_x_enthusiasm * ct[:, j] * ce[:, j] + t.xsell_products * (products[:, j] - 1)
               + re[:, 1])
        cross[:, j] = rng.poisson(np.exp(eta))
        if j + 1 < T:
            products[:, j + 1] = products[:, j] + cross[:, j]
    nps = np.clip(np.rint(1.6 * scores["trust"] + 0.6 * scores["enthusiasm"] - 1.0 + rng.normal(0, 1.2, (n, T))),
                  0, 10)
    items = {f"trim_{name}": np.clip(np.rint(lvl + rng.normal(0, 0.8, (n, T))), 1, 5)
             for name, lvl in (("overall", sat_lvl), ("recommend", base), ("repurchase", trust_lvl),
                               ("advantage", enth_lvl))}
    ii, jj = np.nonzero(active)
    obs = surveyed[ii, jj]

    def masked(a: np.ndarray, dtype: pl.DataType) -> pl.Series:
        return pl.Series(np.where(obs, a[ii, jj], np.nan)).cast(pl.Int64, strict=False).cast(dtype)

    df = pl.DataFrame({
        "customer_id": pl.Series(ii + 1, dtype=pl.Int64),
        "period": pl.Series(start[ii] + jj, dtype=pl.Int32),
        "churned": churned[ii, jj],
        "trust": masked(scores["trust"], pl.Int8),
        "enthusiasm": masked(scores["enthusiasm"], pl.Int8),
        "satisfaction": masked(scores["satisfaction"], pl.Int8),
        "products": pl.Series(products[ii, jj], dtype=pl.Int16),
        "cross_sold": pl.Series(cross[ii, jj], dtype=pl.Int16),
        "segment": np.asarray(t.segments)[seg[ii]],
        "revenue": 10.0 * products[ii, jj],
        "nps": masked(nps, pl.Int8),
        **{c: masked(v, pl.Int8) for c, v in items.items()},
    })
    return df, t
