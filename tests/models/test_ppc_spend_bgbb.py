"""Posterior predictive checks of the BG/BB and the Gamma-Gamma: observed aggregates and their replicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import special
from tenure.models.bgbb import BGBBModel
from tenure.models.gamma_gamma import GammaGammaModel

DATA = Path(__file__).resolve().parents[1] / "data"


def _p_x_of_n(x: int, n: int, alpha: float, beta: float, gamma: float, delta: float) -> float:
    """P(X(n) = x) of the BG/BB, Fader, Hardie & Shang (2010), eq. (7)."""
    def lb(a, b):
        return special.betaln(a, b)

    first = special.comb(n, x) * np.exp(lb(alpha + x, beta + n - x) - lb(alpha, beta) + lb(gamma, delta + n)
                                        - lb(gamma, delta))
    rest = sum(special.comb(i, x) * np.exp(lb(alpha + x, beta + i - x) - lb(alpha, beta) + lb(gamma + 1, delta + i)
                                           - lb(gamma, delta)) for i in range(x, n))
    return float(first + rest)


@pytest.fixture(scope="module")
def bgbb():
    model = BGBBModel(pl.read_csv(DATA / "donations.csv"), time_unit="years")
    model.fit(method="map", draws=200, chains=1, seed=3)
    return model


def test_bgbb_check_observed_counts_are_the_donations_table(bgbb):
    check = bgbb.result.predictive_check
    data = pl.read_csv(DATA / "donations.csv")
    observed = [r["observed"] for r in check["rows"]]
    expect = data.group_by("frequency").agg(pl.col("n_custs").sum()).sort("frequency")["n_custs"].to_list()
    assert observed == expect and sum(observed) == 11_104  # Fader, Hardie & Shang (2010): 11,104 donors, n = 6
    assert check["style"] == "bars" and len(check["rows"]) == 7


def test_bgbb_replicates_average_to_the_closed_form(bgbb):
    """Under one draw, 50 000 replicated donors by purchases 0..6 against 50 000 × P(X(6) = x), eq. (7); the
    tolerance is 5 binomial standard deviations of each count."""
    d = {k: float(v[0]) for k, v in bgbb._posterior().items()}
    sim = np.bincount(bgbb.simulate_repeat_counts(np.full(50_000, 6), seed=11, draw=0), minlength=7)
    for x in range(7):
        p = _p_x_of_n(x, 6, d["alpha"], d["beta"], d["gamma"], d["delta"])
        assert abs(sim[x] - 50_000 * p) < 5 * np.sqrt(50_000 * p * (1 - p)) + 1, x
    assert sum(_p_x_of_n(x, 6, **d) for x in range(7)) == pytest.approx(1.0, abs=1e-12)


def test_bgbb_check_mean_is_the_closed_form_over_its_draws_and_is_seeded(bgbb):
    """The check's mean per count is the average over its draws of 11,104 × P(X(6) = x), eq. (7), up to Monte
    Carlo error: 5 standard deviations of a mean of 100 binomial counts."""
    from tenure.models.ppc import draw_indices

    check = bgbb.result.predictive_check
    post = bgbb._posterior()
    pick = draw_indices(len(post["alpha"]))
    for r in check["rows"]:
        x = int(r["x"])
        p = np.mean([_p_x_of_n(x, 6, *(float(post[k][j]) for k in ("alpha", "beta", "gamma", "delta")))
                     for j in pick])
        assert abs(r["mean"] - 11_104 * p) < 5 * np.sqrt(11_104 * p * (1 - p) / len(pick)), x
    assert bgbb.predictive_check(bgbb.idata, 3) == bgbb.predictive_check(bgbb.idata, 3)


@pytest.fixture(scope="module")
def spend():
    model = GammaGammaModel(pl.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv"))
    model.fit(method="map", draws=200, chains=1, seed=3)
    return model


def test_gamma_gamma_check_observed_quantiles_are_the_data(spend):
    data = pl.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv").filter(pl.col("x") > 0)
    check = spend.result.predictive_check
    levels = [r["x"] / 100 for r in check["rows"]]
    observed = [r["observed"] for r in check["rows"]]
    assert observed == pytest.approx(np.quantile(data["zbar"].to_numpy(), levels).tolist(), rel=1e-12)
    assert data.height == 946  # CDNOW repeat buyers (Fader & Hardie 2013, "The Gamma-Gamma model of monetary value")


def test_gamma_gamma_replicated_mean_spend_is_p_v_over_q_minus_1(spend):
    """E[m̄] = p·E[1/ν] = p·v/(q − 1) whatever x; 200 000 buyers give a relative standard error well under 1 %."""
    d = {k: float(v[0]) for k, v in spend._posterior().items()}
    sim = spend.simulate_mean_spend(np.full(200_000, 3.0), seed=5, draw=0)
    assert sim.mean() == pytest.approx(d["p"] * d["v"] / (d["q"] - 1.0), rel=0.03)
    # and the median of the observed mean spend lies inside its replicated band
    median = next(r for r in spend.result.predictive_check["rows"] if r["x"] == 50.0)
    assert median["q05"] <= median["observed"] <= median["q95"]
