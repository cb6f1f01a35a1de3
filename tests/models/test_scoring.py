"""Scores of current customers: hand-computed cases, the fitted models' own predictions, bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from panelgen import simulate_panel
from scipy.special import expit, logit
from tenure.models.cross_sell import CrossSellModel, count_design
from tenure.models.retention import RetentionModel, hazard_design
from tenure.models.scoring import (
    CrossSellDraws,
    HazardDraws,
    band_starts,
    read_customers,
    score_customers,
)

from tenure.errors import InputError


def _hazard(intercepts, slopes=(0.0, 0.0, 0.0), bands=(0,), band_effect=None, segments=("all",)) -> HazardDraws:
    """Draws written by hand: one row per draw."""
    a = np.atleast_1d(np.asarray(intercepts, dtype=float))
    n = a.size
    effect = np.zeros((n, len(bands))) if band_effect is None else np.asarray(band_effect, dtype=float).reshape(n, -1)
    return HazardDraws(intercept=a, segment=None, segments=segments, slopes=np.tile(slopes, (n, 1)).astype(float),
                       bands=tuple(bands), band_effect=effect, fitted_bands=(True,) * len(bands))


def _customers(n=1, **cols) -> pl.DataFrame:
    base = {"customer_id": list(range(1, n + 1)), "trust": [3] * n, "enthusiasm": [3] * n, "satisfaction": [3] * n,
            "tenure": [0] * n, "products": [1] * n}
    return read_customers(pl.DataFrame({**base, **cols}))


def test_constant_hazard_gives_the_geometric_sums():
    # h = 0.1 every month, margin 20, i = 1 %: RM = 20 (1 − q^H)/(1 − q), q = 0.9/1.01 (a geometric series)
    res = score_customers(_customers(), _hazard(logit(0.1)), margin=20.0, horizon_months=12, discount_rate_monthly=0.01)
    row = res.table.row(0, named=True)
    q = 0.9 / 1.01
    rm = 20.0 * (1 - q**12) / (1 - q)
    assert row["churn_probability_monthly"] == pytest.approx(0.1, rel=1e-12)
    assert row["remaining_margin"] == pytest.approx(rm, rel=1e-12)
    assert row["value_at_risk"] == pytest.approx(0.1 * rm, rel=1e-12)
    assert row["remaining_margin_lower"] == pytest.approx(rm) and row["remaining_margin_upper"] == pytest.approx(rm)
    assert row["call_rank"] == 1 and res.warnings == []


def test_a_band_change_within_the_horizon_and_the_slopes():
    # bands 0-2 and 3+; band 3+ shifts the log-odds so that h = 0.2 there. Tenure 2, H = 3:
    # S = 1, 0.9, 0.9·0.8; RM = 1 + 0.9/1.01 + 0.72/1.01² (margin 1)
    shift = logit(0.2) - logit(0.1)
    hz = _hazard(logit(0.1), bands=(0, 3), band_effect=[[0.0, shift]])
    res = score_customers(_customers(tenure=[2]), hz, margin=1.0, horizon_months=3, discount_rate_monthly=0.01)
    assert res.table["remaining_margin"][0] == pytest.approx(1 + 0.9 / 1.01 + 0.72 / 1.01**2, rel=1e-12)
    # slopes per point of (score − 3): trust 5 with β_T = −0.5 moves the log-odds by −1
    hz = _hazard(logit(0.1), slopes=(-0.5, 0.0, 0.0))
    res = score_customers(_customers(trust=[5]), hz, margin=1.0, horizon_months=1)
    assert res.table["churn_probability_monthly"][0] == pytest.approx(expit(logit(0.1) - 1.0), rel=1e-12)


def test_means_and_intervals_are_over_draws_and_value_at_risk_is_their_product():
    # two draws, h = 0.1 and 0.3, H = 2, i = 0: RM_d = 1 + (1 − h_d), VaR_d = h_d·RM_d
    hz = _hazard([logit(0.1), logit(0.3)])
    res = score_customers(_customers(), hz, margin=10.0, horizon_months=2, discount_rate_monthly=1e-12, interval=0.5)
    row = res.table.row(0, named=True)
    rm = np.array([19.0, 17.0])
    var = np.array([0.1, 0.3]) * rm
    assert row["churn_probability_monthly"] == pytest.approx(0.2)
    assert row["value_at_risk"] == pytest.approx(var.mean())  # 3.5, not 0.2 × 18 = 3.6
    lo, hi = np.quantile(var, [0.25, 0.75])
    assert (row["value_at_risk_lower"], row["value_at_risk_upper"]) == pytest.approx((lo, hi))


def test_margin_column_scales_each_customer_and_a_negative_margin_swaps_the_interval():
    hz = _hazard([logit(0.1), logit(0.3)])
    res = score_customers(_customers(3, margin=[10.0, 20.0, -10.0]), hz, horizon_months=2,
                          discount_rate_monthly=1e-12)
    t = res.table
    assert t["remaining_margin"][1] == pytest.approx(2 * t["remaining_margin"][0])
    assert t["remaining_margin"][2] == pytest.approx(-t["remaining_margin"][0])
    assert t["remaining_margin_lower"][2] == pytest.approx(-t["remaining_margin_upper"][0])
    assert t["call_rank"].to_list() == [2, 1, 3]  # highest expected value at risk first


def test_cross_sales_over_the_horizon():
    # λ = e^{−2} at trust = enthusiasm = 3 and one product; h = 0.1: X = λ (1 − 0.9^H)/0.1
    xs = CrossSellDraws(intercept=np.array([-2.0]), segment=None, segments=("all",), coefficients=np.zeros((1, 4)))
    res = score_customers(_customers(), _hazard(logit(0.1)), xs, margin=1.0, horizon_months=6)
    assert res.table["cross_sales"][0] == pytest.approx(np.exp(-2.0) * (1 - 0.9**6) / 0.1, rel=1e-6)


def test_unknown_segments_get_the_typical_intercept_with_a_warning():
    hz = HazardDraws(intercept=np.array([logit(0.1)]), segment=np.array([[logit(0.2), logit(0.05)]]),
                     segments=("a", "b"), slopes=np.zeros((1, 3)), bands=(0,), band_effect=np.zeros((1, 1)),
                     fitted_bands=(True,))
    res = score_customers(_customers(3, segment=["a", "b", "zz"]), hz, margin=1.0, horizon_months=1)
    assert res.table["churn_probability_monthly"].to_list() == pytest.approx([0.2, 0.05, 0.1])
    assert len(res.warnings) == 1 and "zz" in res.warnings[0]


def test_cell_kernels_equal_numpy_over_the_draws():
    """Every cell's mean and interval equal np.mean and np.quantile over survival sums computed draw by draw in
    NumPy (bands, slopes, segments, a known and an unknown segment); ties among draws (two equal halves) too."""
    rng = np.random.default_rng(3)
    n, n_draws, horizon, i = 400, 41, 24, 0.02
    bands = (0, 3, 12)
    cust = _customers(n, trust=rng.integers(1, 6, n), enthusiasm=rng.integers(1, 6, n),
                      satisfaction=rng.integers(1, 6, n), tenure=rng.integers(0, 30, n),
                      segment=rng.choice(["a", "b", "zz"], n), products=rng.integers(1, 4, n))
    a = np.r_[rng.normal(-3, 0.3, 20), rng.normal(-3, 0.3, 1), rng.normal(-3, 0.3, 20)]
    a[21:] = a[:20]  # ties
    hz = HazardDraws(intercept=a, segment=np.c_[a - 0.5, a + 0.5], segments=("a", "b"),
                     slopes=np.tile((-0.3, -0.1, -0.2), (n_draws, 1)) + rng.normal(0, 0.05, (n_draws, 3)), bands=bands,
                     band_effect=np.c_[np.zeros(n_draws), rng.normal(-0.3, 0.1, n_draws),
                                       rng.normal(-0.6, 0.1, n_draws)], fitted_bands=(True,) * 3)
    xs = CrossSellDraws(intercept=rng.normal(-2, 0.2, n_draws), segment=None, segments=("all",),
                        coefficients=rng.normal(0.1, 0.05, (n_draws, 4)))
    res = score_customers(cust, hz, xs, margin=1.0, horizon_months=horizon, discount_rate_monthly=i, interval=0.8)
    seg = {"a": hz.segment[:, 0], "b": hz.segment[:, 1], "zz": a}
    for r, row in enumerate(res.table.iter_rows(named=True)):
        c = cust.row(r, named=True)
        eta = seg[c["segment"]] + hz.slopes @ (np.array([c["trust"], c["enthusiasm"], c["satisfaction"]]) - 3.0)
        band = np.searchsorted(bands, c["tenure"] + np.arange(horizon), side="right") - 1
        h = expit(eta[:, None] + hz.band_effect[:, band])  # (draws, months)
        alive = np.c_[np.ones(n_draws), np.cumprod(1 - h, axis=1)[:, :-1]]
        life = alive @ (1 + i) ** -np.arange(horizon)
        covariates = SimpleNamespace(trust=np.float64(c["trust"]), enthusiasm=np.float64(c["enthusiasm"]),
                                     products=np.float64(c["products"]))
        lam = np.exp(xs.intercept + xs.coefficients @ count_design(covariates)[0])
        for name, v in (("churn_probability_monthly", h[:, 0]), ("remaining_margin", life),
                        ("value_at_risk", h[:, 0] * life), ("cross_sales", lam * alive.sum(axis=1).astype(np.float32))):
            lo, hi = np.quantile(v, [0.1, 0.9])
            assert (row[name], row[f"{name}_lower"], row[f"{name}_upper"]) == pytest.approx((v.mean(), lo, hi),
                                                                                              rel=1e-12), name


@pytest.fixture(scope="module")
def fits():
    """MAP fits with a Laplace posterior of 100 draws on a small panel of known coefficients (panelgen)."""
    panel, _ = simulate_panel(1500, 24, seed=11)
    retention = RetentionModel(panel)
    cross = CrossSellModel(panel)
    return (retention, retention.fit(method="map", draws=50, chains=2, seed=3),
            cross, cross.fit(method="map", draws=50, chains=2, seed=3))


def test_scores_equal_the_fitted_models_own_predictions(fits):
    """The churn probability of a customer is the model's own σ(η) of its cell, draw by draw, averaged."""
    retention, r_fit, cross, x_fit = fits
    c = retention.cells
    keep = c.at_risk > 0
    design, names = hazard_design(c)
    post = r_fit.posterior.stack(sample=("chain", "draw"))
    coef = np.vstack([post[n.split("[")[0]].sel(tenure_band=n.split("[")[1][:-1]).values if "[" in n
                      else post[n].values for n in names])
    seg = post["churn_segment"].values[c.segment]  # (cells, draws)
    own = expit(seg + design @ coef).mean(axis=1)
    bands = band_starts(r_fit.data_summary["tenure_bands"])
    cust = read_customers(pl.DataFrame({
        "customer_id": np.arange(c.segment.size), "trust": c.trust.astype(int), "enthusiasm": c.enthusiasm.astype(int),
        "satisfaction": c.satisfaction.astype(int), "tenure": np.asarray(bands)[c.band],
        "products": 1, "segment": np.asarray(c.segments)[c.segment]})).filter(pl.Series(keep))
    res = score_customers(cust, HazardDraws.from_fit(r_fit), margin=1.0, horizon_months=1)
    assert res.table["churn_probability_monthly"].to_numpy() == pytest.approx(own[keep], rel=1e-10)
    # the cross-sell rate: exp(segment + count_design · coefficients), per draw; horizon 1 month → X = λ
    k = cross.cells
    xpost = x_fit.posterior.stack(sample=("chain", "draw"))
    xcoef = np.vstack([xpost[n].values for n in ("xsell_trust", "xsell_enthusiasm", "xsell_trust_x_enthusiasm",
                                                 "xsell_products")])
    rate = np.exp(xpost["xsell_segment"].values[k.segment] + count_design(k) @ xcoef).mean(axis=1)
    cust = read_customers(pl.DataFrame({
        "customer_id": np.arange(k.segment.size), "trust": k.trust.astype(int), "enthusiasm": k.enthusiasm.astype(int),
        "satisfaction": 3, "tenure": 0, "products": k.products.astype(int),
        "segment": np.asarray(k.segments)[k.segment]}))
    res = score_customers(cust, HazardDraws.from_fit(r_fit), CrossSellDraws.from_fit(x_fit), margin=1.0,
                          horizon_months=1)
    assert res.table["cross_sales"].to_numpy() == pytest.approx(rate, rel=1e-10)


@pytest.mark.parametrize(("change", "needle"), [
    ({"drop": "tenure"}, "missing required column 'tenure'"),
    ({"trust": ["3", "x", "4"]}, "column 'trust': expected a whole number, found 'x' at row 2"),
    ({"satisfaction": [3, 6, 1]}, "column 'satisfaction': 6 is off the 1–5 scale at row 2"),
    ({"customer_id": [1, 2, 1]}, "column 'customer_id': 1 appears more than once"),
    ({"tenure": [0, -1, 2]}, "column 'tenure': -1 is not a tenure"),
    ({"products": [1, 0, 2]}, "column 'products': 0 is below 1"),
    ({"margin": [1.0, float("nan"), 2.0]},
     "column 'margin': expected a finite margin per month of at most 100000 in size, found nan at row 2"),
    ({"segment": [1.5, 2.5, 3.5]}, "column 'segment': expected segment labels"),
])
def test_bad_customer_tables_name_the_column_and_row(change, needle):
    cols = {"customer_id": [1, 2, 3], "trust": [3, 3, 3], "enthusiasm": [3, 3, 3], "satisfaction": [3, 3, 3],
            "tenure": [0, 1, 2], "products": [1, 1, 1]}
    cols.pop(change.pop("drop", None), None)
    with pytest.raises(InputError, match=None) as err:
        read_customers(pl.DataFrame({**cols, **change}))
    assert needle in str(err.value)


def test_no_margin_is_refused():
    with pytest.raises(InputError, match="--margin"):
        score_customers(_customers(), _hazard(-2.0))
