"""Predictive checks of the panel models: observed events are the panel's own totals, replicated ones the model's."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from panelgen import BANDS, simulate_panel
from scipy.special import expit
from tenure.models.clv_predict import posterior_draws
from tenure.models.cross_sell import CrossSellModel, count_check
from tenure.models.panel import count_rows, hazard_rows, read_panel
from tenure.models.ppc import draw_indices, replicate_cell_counts
from tenure.models.retention import RetentionModel, hazard_check


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return read_panel(simulate_panel(1500, 12, seed=8)[0])


@pytest.fixture(scope="module")
def retention(panel: pl.DataFrame) -> RetentionModel:
    model = RetentionModel(panel)
    model.fit(method="map", draws=300, chains=1, seed=3)
    return model


def _band(tenure: pl.Expr) -> pl.Expr:
    return pl.sum_horizontal([(tenure >= b).cast(pl.Int32) for b in BANDS[1:]])


def test_retention_observed_events_are_the_panels_churns_per_segment_and_band(panel, retention):
    rows = retention.result.predictive_check["rows"]
    truth = (panel.with_columns(band=_band(pl.col("tenure"))).group_by("segment", "band")
             .agg(pl.col("churned").sum()).sort("segment", "band"))
    assert [(r["group"], int(r["x"]), r["observed"]) for r in rows] == [
        (s, b, float(e)) for s, b, e in truth.iter_rows()]
    assert sum(r["observed"] for r in rows) == panel["churned"].sum()
    assert [r["x_label"] for r in rows[:3]] == ["months 0-2", "months 3-5", "months 6-11"]


def _row_probabilities(panel: pl.DataFrame, retention: RetentionModel) -> tuple[np.ndarray, np.ndarray]:
    """Churn probability of every row (not cell) under each checked draw, from the equation written out."""
    rows = hazard_rows(panel)
    d = posterior_draws(retention.idata, ["churn_segment", "churn_trust", "churn_enthusiasm",
                                          "churn_satisfaction", "churn_tenure"])
    pick = draw_indices(len(d["churn_trust"]))
    shift = np.hstack([np.zeros((pick.size, 1)), d["churn_tenure"][pick]])  # first band is the baseline
    eta = (d["churn_segment"][pick][:, rows.segment] + shift[:, rows.band]
           + sum(d[f"churn_{k}"][pick, None] * (getattr(rows, k) - 3.0)
                 for k in ("trust", "enthusiasm", "satisfaction")))
    return expit(eta), rows.segment * 10 + rows.band


def test_retention_replicated_mean_is_the_expected_events_under_the_same_draws(panel, retention):
    check = retention.result.predictive_check
    p, key = _row_probabilities(panel, retention)
    for r in check["rows"]:
        seg = retention.cells.segments.index(r["group"])
        sel = key == seg * 10 + int(r["x"])
        expected = p[:, sel].sum(axis=1)  # Σ rows p under each draw
        # Monte Carlo: the replicated mean over k draws departs from the mean of Σ p by binomial noise only,
        # sd = sqrt(Σ_draws Σ_rows p(1 − p)) / k; 4 sd
        sd = np.sqrt((p[:, sel] * (1 - p[:, sel])).sum()) / p.shape[0]
        assert r["mean"] == pytest.approx(expected.mean(), abs=4 * sd)
        assert r["q05"] <= expected.mean() <= r["q95"]
    assert check["draws"] == p.shape[0] == 100
    # the panel is drawn from the model's own equation: most of the 9 observed values lie inside their band
    assert sum(r["q05"] <= r["observed"] <= r["q95"] for r in check["rows"]) >= 7


def test_retention_check_is_fixed_by_the_seed(retention):
    cells = retention.cells
    p = np.full((20, cells.at_risk.size), 0.05)
    a, b = (hazard_check(cells, p, 20, np.random.default_rng(s)) for s in (4, 4))
    assert a == b
    assert hazard_check(cells, p, 20, np.random.default_rng(5))["rows"] != a["rows"]


def test_replicated_cell_counts_sum_per_group_with_their_expectation():
    size = np.array([10.0, 20.0, 5.0, 40.0])
    group = np.array([0, 1, 0, 1])
    p = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    rep, exp = replicate_cell_counts("binomial", size, p, group, 2, np.random.default_rng(0))
    np.testing.assert_allclose(exp, [[1.0 + 1.5, 4.0 + 16.0], [5.0 + 2.5, 10.0 + 20.0]])
    assert rep.shape == (2, 2) and np.all(rep[:, 0] <= 15) and np.all(rep[:, 1] <= 60)
    # Poisson: 4 000 replicates of a cell with exposure 40 at rate 0.25 average 10 (sd of the mean 0.05; 4 sd)
    rate = np.full((4000, 1), 0.25)
    rep, exp = replicate_cell_counts("poisson", np.array([40.0]), rate, np.array([0]), 1, np.random.default_rng(1))
    assert rep.mean() == pytest.approx(10.0, abs=0.2) and np.all(exp == 10.0)
    with pytest.raises(ValueError, match="kind"):
        replicate_cell_counts("normal", size, p, group, 2, np.random.default_rng(0))


@pytest.fixture(scope="module")
def cross_sell(panel: pl.DataFrame) -> CrossSellModel:
    model = CrossSellModel(panel)
    model.fit(method="map", draws=300, chains=1, seed=3)
    return model


def test_cross_sell_observed_are_the_panels_products_added_per_segment_and_products_held(panel, cross_sell):
    rows = cross_sell.result.predictive_check["rows"]
    truth = (panel.with_columns(held=pl.min_horizontal(pl.col("products"), 4)).group_by("segment", "held")
             .agg(pl.col("cross_sold").sum()).sort("segment", "held"))
    assert [(r["group"], int(r["x"]), r["observed"]) for r in rows] == [
        (s, h, float(y)) for s, h, y in truth.iter_rows()]
    assert sum(r["observed"] for r in rows) == panel["cross_sold"].sum()
    assert {r["x_label"] for r in rows} == {"1 product", "2 products", "3 products", "4+ products"}


def test_cross_sell_replicated_mean_is_the_expected_count_under_the_same_draws(panel, cross_sell):
    check = cross_sell.result.predictive_check
    rows, _ = count_rows(panel)
    d = posterior_draws(cross_sell.idata, ["xsell_segment", "xsell_trust", "xsell_enthusiasm",
                                           "xsell_trust_x_enthusiasm", "xsell_products"])
    pick = draw_indices(len(d["xsell_trust"]))
    t, e = rows.trust - 3.0, rows.enthusiasm - 3.0
    rate = np.exp(d["xsell_segment"][pick][:, rows.segment] + d["xsell_trust"][pick, None] * t
                  + d["xsell_enthusiasm"][pick, None] * e + d["xsell_trust_x_enthusiasm"][pick, None] * t * e
                  + d["xsell_products"][pick, None] * (rows.products - 1.0))  # the equation, row by row
    for r in check["rows"]:
        sel = (rows.segment == cross_sell.cells.segments.index(r["group"])) & (
            np.minimum(rows.products, 4) == r["x"])
        expected = rate[:, sel].sum(axis=1)
        # Monte Carlo: a Poisson total's variance is its mean, so the replicated mean's sd is sqrt(Σ mean) / k; 4 sd
        sd = np.sqrt(expected.sum()) / len(pick)
        assert r["mean"] == pytest.approx(expected.mean(), abs=4 * sd + 1e-9)
    assert sum(r["q05"] <= r["observed"] <= r["q95"] for r in check["rows"]) >= 9  # of 12, model-drawn data


def test_cross_sell_check_is_fixed_by_the_seed(cross_sell):
    cells = cross_sell.cells
    rates = np.full((20, cells.exposure.size), 0.05)
    a, b = (count_check(cells, rates, 20, np.random.default_rng(s)) for s in (4, 4))
    assert a == b
    assert count_check(cells, rates, 20, np.random.default_rng(5))["rows"] != a["rows"]


@pytest.fixture(scope="module")
def joint_case():
    """A joint model on a small panel and a made-up posterior of 60 draws with sizeable customer effects."""
    import arviz as az
    from tenure.models.joint import JointModel

    df = read_panel(simulate_panel(300, 8, seed=2)[0])
    model = JointModel(df)
    rng = np.random.default_rng(0)
    n, k = model.customers.size, 60
    post = {"churn_intercept": rng.normal(-3, 0.1, k), "churn_segment": rng.normal(-3, 0.2, (k, 3)),
            **{f"churn_{s}": rng.normal(-0.2, 0.05, k) for s in ("trust", "enthusiasm", "satisfaction")},
            "churn_tenure": rng.normal(-0.3, 0.1, (k, len(model.retention.coords()["tenure_band"]))),
            "xsell_intercept": rng.normal(-3, 0.1, k), "xsell_segment": rng.normal(-3, 0.2, (k, 3)),
            **{s: rng.normal(0.1, 0.05, k) for s in ("xsell_trust", "xsell_enthusiasm", "xsell_trust_x_enthusiasm",
                                                     "xsell_products")},
            "customer_sd": rng.uniform(0.5, 0.8, (k, 2)), "attachment_corr": rng.uniform(0.3, 0.7, k),
            # z_0 centred at 1, so that each part's totals move with the effects it should use (r_i, and v_i via ρ)
            "customer_z": rng.standard_normal((k, n, 2)) + np.array([1.0, 0.0])}
    idata = az.from_dict(posterior={name: v[None] for name, v in post.items()})
    return df, model, idata, post


def test_joint_checks_both_parts_with_each_draws_customer_effects(joint_case):
    from tenure.models.panel import SCORE_COLUMNS, prepare_scores

    df, model, idata, post = joint_case
    check = model.predictive_check(idata, seed=1)
    churn, xsell = check["parts"]
    assert (churn["statistic"], xsell["statistic"]) == ("churn_events", "products_added")
    assert len(check["rows"]) == len(churn["rows"]) + len(xsell["rows"])  # ppc.csv: both, marked by statistic
    assert sum(r["observed"] for r in churn["rows"]) == df["churned"].sum()
    assert sum(r["observed"] for r in xsell["rows"]) == df["cross_sold"].sum()
    # the churn part's expectation row by row from the equation, each row's customer effect r_i = sd_r · z_i0
    rows, _ = prepare_scores(df, SCORE_COLUMNS, "carry")
    cust = np.searchsorted(model.customers, rows["_cust"].to_numpy())
    seg = np.searchsorted(model.retention.cells.segments, rows["segment"].to_numpy())
    band = _band_ids(rows["tenure"].to_numpy())
    shift = np.hstack([np.zeros((60, 1)), post["churn_tenure"]])
    eta = (post["churn_segment"][:, seg] + shift[:, band] - post["customer_sd"][:, :1] * post["customer_z"][:, cust, 0]
           + sum(post[f"churn_{s}"][:, None] * (rows[s].to_numpy() - 3.0) for s in SCORE_COLUMNS))
    p = expit(eta)
    for r in churn["rows"]:
        sel = (seg == model.retention.cells.segments.index(r["group"])) & (band == int(r["x"]))
        sd = np.sqrt((p[:, sel] * (1 - p[:, sel])).sum()) / 60  # binomial noise of the mean over 60 draws; 4 sd
        assert r["mean"] == pytest.approx(p[:, sel].sum(axis=1).mean(), abs=4 * sd)
    # the cross-selling part: v_i = sd_v · (ρ z_i0 + sqrt(1 − ρ²) z_i1), the second row of L z
    crows, _ = count_rows(df)
    ccust = np.searchsorted(model.customers, prepare_scores(df, ("trust", "enthusiasm"), "carry")[0]["_cust"])
    rho = post["attachment_corr"][:, None]
    v = post["customer_sd"][:, 1:] * (rho * post["customer_z"][:, ccust, 0]
                                      + np.sqrt(1 - rho**2) * post["customer_z"][:, ccust, 1])
    t, e = crows.trust - 3.0, crows.enthusiasm - 3.0
    rate = np.exp(post["xsell_segment"][:, crows.segment] + v + post["xsell_trust"][:, None] * t
                  + post["xsell_enthusiasm"][:, None] * e + post["xsell_trust_x_enthusiasm"][:, None] * t * e
                  + post["xsell_products"][:, None] * (crows.products - 1.0))
    for r in xsell["rows"]:
        sel = (crows.segment == model.cross_sell.cells.segments.index(r["group"])) & (
            np.minimum(crows.products, 4) == r["x"])
        expected = rate[:, sel].sum(axis=1)
        assert r["mean"] == pytest.approx(expected.mean(), abs=4 * np.sqrt(expected.sum()) / 60 + 1e-9)
    assert model.predictive_check(idata, seed=1) == check
    assert model.predictive_check(idata, seed=2) != check


def _band_ids(tenure: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.array(BANDS), tenure, side="right") - 1


@pytest.fixture(scope="module")
def nps(panel: pl.DataFrame):
    from tenure.models.nps import NPSModel

    model = NPSModel(panel)
    model.fit(method="map", draws=300, chains=1, seed=3)
    return model


def test_nps_observed_shares_are_the_panels_answers_per_segment(panel, nps):
    rows = nps.result.predictive_check["rows"]
    answered = panel.filter(pl.col("nps").is_not_null())
    truth = (answered.group_by("segment").agg(detractors=(pl.col("nps") <= 6).mean(),
                                              passives=pl.col("nps").is_between(7, 8).mean(),
                                              promoters=(pl.col("nps") >= 9).mean()).sort("segment"))
    expected = [(s, c, 100 * v) for s, *vals in truth.iter_rows()
                for c, v in zip(("detractors", "passives", "promoters"), vals, strict=True)]
    assert [(r["group"], r["x_label"]) for r in rows] == [(s, c) for s, c, _ in expected]
    np.testing.assert_allclose([r["observed"] for r in rows], [v for *_, v in expected], rtol=1e-12)


def test_nps_replicated_shares_average_the_fitted_category_probabilities(nps):
    from scipy.special import softmax

    check = nps.result.predictive_check
    d = posterior_draws(nps.idata, ["nps_base", "nps_concentration", "nps_segment_effect", "nps_period_effect"])
    pick = draw_indices(len(d["nps_base"]))
    logits = (d["nps_base"][pick][:, :, None] + d["nps_segment_effect"][pick][:, :, nps.seg_idx]
              + d["nps_period_effect"][pick][:, :, nps.per_idx])
    pi = softmax(np.concatenate([np.zeros((pick.size, 1, logits.shape[2])), logits], axis=1), axis=1)
    n = nps.y.sum(axis=1)
    kappa = d["nps_concentration"][pick][:, None]
    for r in check["rows"]:
        sel = nps.seg_idx == nps.segments.index(r["group"])
        p = pi[:, int(r["x"]), sel]
        total = n[sel].sum()
        expected = 100 * (n[sel] * p).sum(axis=1) / total
        # Monte Carlo: a cell's replicated count is Dirichlet-multinomial, variance n p (1 − p) (n + κ) / (1 + κ);
        # the mean over k draws has sd sqrt(Σ_draws Σ_cells var) / k, in shares × 100 / N; 4 sd
        var = (n[sel] * p * (1 - p) * (n[sel] + kappa) / (1 + kappa)).sum()
        assert r["mean"] == pytest.approx(expected.mean(), abs=4 * 100 * np.sqrt(var) / pick.size / total)
    # three shares per segment add to 100 % in every replicate, hence in the mean
    for s in nps.segments:
        assert sum(r["mean"] for r in check["rows"] if r["group"] == s) == pytest.approx(100.0)
    assert nps.predictive_check(nps.idata, seed=7) == nps.predictive_check(nps.idata, seed=7)
    assert nps.predictive_check(nps.idata, seed=7) != nps.predictive_check(nps.idata, seed=8)
