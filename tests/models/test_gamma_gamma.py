"""Gamma-Gamma spend: the published CDNOW estimates, conditional spend, and discounted CLV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tenure.models.bgnbd import BGNBDModel, bgnbd_conditional_purchases
from tenure.models.clv_data import convert_periods
from tenure.models.gamma_gamma import GammaGammaModel, customer_lifetime_value, gamma_gamma_expected_spend

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    return pl.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def fits(cdnow):
    spend = GammaGammaModel(cdnow)
    spend.fit(method="map", draws=500, chains=2, seed=0)
    purchases = BGNBDModel(cdnow)
    purchases.fit(method="map", draws=500, chains=2, seed=0)
    return purchases, spend


def test_published_estimates_on_the_946_repeat_buyers(fits):
    _, spend = fits
    assert spend.n_customers == 946
    mode = json.loads(spend.idata.attrs["tenure_map"])
    # Fader & Hardie (2013), "The Gamma-Gamma model of monetary value": p = 6.25, q = 3.74, gamma = 15.44.
    # Two decimals: p and q lie within half a unit (0.005). The MLE found here and by lifetimes is
    # v = 15.4478, which rounds to 15.45: the note truncated rather than rounded, so v gets one unit (0.01).
    assert mode["p"] == pytest.approx(6.25, abs=0.005)
    assert mode["q"] == pytest.approx(3.74, abs=0.005)
    assert mode["v"] == pytest.approx(15.44, abs=0.01)


def test_conditional_expected_spend_matches_lifetimes():
    # lifetimes 0.11.3 GammaGammaFitter.conditional_expected_average_profit at (6.25, 3.74, 15.44):
    # customers 1-3 of the CDNOW sample (x = 2, 1, 0; zbar = 22.35, 11.77, 0).
    values = gamma_gamma_expected_spend(6.25, 3.74, 15.44, np.array([2, 1, 0]), np.array([22.35, 11.77, 0.0]))
    np.testing.assert_allclose(values, [24.66371391, 18.91685206, 35.21897810], rtol=1e-8)


def test_expected_spend_from_the_posterior(cdnow, fits):
    _, spend = fits
    pred = spend.expected_spend(cdnow)
    assert pred.table.height == cdnow.height and pred.draws is None
    assert pred.table["mean"][0] == pytest.approx(24.66, rel=0.01)


def test_clv_without_discounting_is_spend_times_purchases(cdnow, fits):
    purchases, spend = fits
    few = cdnow.head(5)
    clv = customer_lifetime_value(purchases, spend, few, horizon_periods=12, discount_rate_per_period=0.0,
                                  time_unit="months", keep_draws=True)
    t = convert_periods(12, "months", "weeks")
    bg = {k: purchases.idata.posterior[k].values.ravel() for k in ("r", "alpha", "a", "b")}
    gg = {k: spend.idata.posterior[k].values.ravel() for k in ("p", "q", "v")}
    x, t_x, T, m = (few[c].to_numpy().astype(float) for c in ("x", "t_x", "T", "zbar"))
    expected = (bgnbd_conditional_purchases(t, *(bg[k][:, None] for k in ("r", "alpha", "a", "b")), x, t_x, T)
                * gamma_gamma_expected_spend(*(gg[k][:, None] for k in ("p", "q", "v")), x, m))
    np.testing.assert_allclose(clv.draws, expected, rtol=1e-10)


def test_discounting_lowers_clv(cdnow, fits):
    purchases, spend = fits
    few = cdnow.head(20)
    flat = customer_lifetime_value(purchases, spend, few, horizon_periods=12, discount_rate_per_period=0.0)
    disc = customer_lifetime_value(purchases, spend, few, horizon_periods=12, discount_rate_per_period=0.01)
    assert (disc.table["mean"] < flat.table["mean"]).all()
    # Purchases spread over a year at 1 % a month lose between 1 % and 12 % of their value.
    ratio = (disc.table["mean"] / flat.table["mean"]).to_numpy()
    assert ((ratio > 0.88) & (ratio < 0.99)).all()
