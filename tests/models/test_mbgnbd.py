"""MBG/NBD: the CDNOW MLE against an independent implementation, gradient, predictions, recovery and the CLI.

No published MBG/NBD estimate on the CDNOW data of Fader, Hardie & Lee (2005) was found: Batislam, Denizel &
Filiztekin (2007) fitted a Turkish grocery panel, and BTYDplus's CDNOW demo prints its estimates without
publishing them. The CDNOW test therefore checks the MAP against a maximum-likelihood estimate computed
independently here (scipy's optimiser on the likelihood written directly from Batislam et al.'s two terms).
"""

from __future__ import annotations

import json
from pathlib import Path

import mpmath as mp
import numpy as np
import polars as pl
import pytest
from scipy import optimize, special
from tenure.models import _mbgnbd_fast
from tenure.models.bgnbd import BGNBDModel, bgnbd_expected_purchases
from tenure.models.mbgnbd import (
    MBGNBDModel,
    mbgnbd_conditional_purchases,
    mbgnbd_expected_purchases,
    mbgnbd_loglike_np,
    mbgnbd_p_alive,
)
from typer.testing import CliRunner

import tenure.commands.fit_clv  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app

DATA = Path(__file__).resolve().parents[1] / "data"


def direct_loglike(params, x, t_x, T):
    """Batislam et al. (2007), eq. (5), term by term: B(a, b+x+1)/B(a, b)·NBD(T) + B(a+1, b+x)/B(a, b)·NBD(t_x)."""
    r, alpha, a, b = params
    nbd = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    first = special.betaln(a, b + x + 1) - special.betaln(a, b) + nbd - (r + x) * np.log(alpha + T)
    second = special.betaln(a + 1, b + x) - special.betaln(a, b) + nbd - (r + x) * np.log(alpha + t_x)
    return np.logaddexp(first, second)


@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    return pl.read_csv(DATA / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def cdnow_fit(cdnow):
    model = MBGNBDModel(cdnow, time_unit="weeks")
    model.fit(method="map", draws=500, chains=2, seed=1)
    return model


def test_cdnow_map_equals_an_independent_mle(cdnow, cdnow_fit):
    x, t_x, T = (cdnow[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
    res = optimize.minimize(lambda p: -direct_loglike(np.exp(p), x, t_x, T).sum(), np.zeros(4),
                            method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20000})
    mle = np.exp(res.x)
    mode = json.loads(cdnow_fit.idata.attrs["tenure_map"])
    np.testing.assert_allclose([mode[k] for k in ("r", "alpha", "a", "b")], mle, rtol=1e-4)
    ours = mbgnbd_loglike_np(*mle, x, t_x, T)
    np.testing.assert_allclose(ours, direct_loglike(mle, x, t_x, T), rtol=1e-12)
    # The maximised log-likelihood, about the BG/NBD's -9582.4 (FHL 2005) on the same data.
    assert -res.fun == pytest.approx(-9582.13, abs=0.01)


def test_gradient_matches_finite_differences():
    points = [(0.52, 6.2, 0.89, 1.6, 0, 0.0, 38.0), (0.52, 6.2, 0.89, 1.6, 20, 37.0, 38.0),
              (5.0, 0.01, 30.0, 1e-3, 3, 1.0, 40.0), (0.01, 100.0, 1e-3, 50.0, 100, 2.0, 1000.0)]
    for point in points:
        _, grad = _mbgnbd_fast.mbgnbd_loglike(*point)
        for k in range(4):
            p = np.array(point[:4])
            step = 1e-6 * p[k]
            up, down = p.copy(), p.copy()
            up[k] += step
            down[k] -= step
            fd = (direct_loglike(up, *point[4:]) - direct_loglike(down, *point[4:])) / (2 * step)
            assert p[k] * float(grad[k]) == pytest.approx(p[k] * fd, rel=1e-5, abs=1e-6), (point, k)


@pytest.mark.parametrize("point", [(0.5, 6.0, 1.0, 2.0, 3, 20.0, 38.0), (2.0, 0.1, 0.01, 50.0, 0, 0.0, 40.0),
                                   (0.2, 100.0, 10.0, 0.05, 40, 1.0, 40.0), (0.24, 4.4, 0.79, 2.4, 2, 39.0, 39.0)])
def test_grouped_density_equals_the_sum_of_rows(point):
    # The log density sums the rows grouped by frequency (the x terms once per distinct x); the row kernel
    # evaluates every term per row. Same terms, reordered sums: equal to rounding (1e-12 relative), with
    # repeated x, tied t_x, t_x = 0 and t_x = T, and at the log scale's Jacobian (HalfFlat adds θ and 1).
    from tenure.models import _pnbd_fast
    from test_pnbd import grouped_summary

    x, t_x, T, w = grouped_summary(np.random.default_rng(4), *point[4:])
    p = np.array(point[:4])
    theta = np.log(p)
    ll, g = _mbgnbd_fast.mbgnbd_loglike(*p, x, t_x, T)
    flat = {k: {"dist": "HalfFlat"} for k in ("r", "alpha", "a", "b")}
    buf = _pnbd_fast.pack_rows(x, t_x, T, w, flat, ("r", "alpha", "a", "b"))
    grad = np.empty(4)
    value = _mbgnbd_fast.mbgnbd_logp_and_grad(theta, buf, grad)
    assert value == pytest.approx(w @ ll + theta.sum(), rel=1e-12)
    np.testing.assert_array_less(np.abs(grad - (p * (g @ w) + 1)), 1e-12 * (p * (np.abs(g) @ w) + 1))


def test_closed_form_density_equals_the_pymc_model(cdnow):
    model = MBGNBDModel(cdnow.head(400))
    buf = model.fast_path_data()
    pm_model = model.build()
    logp = pm_model.compile_logp()
    dlogp = pm_model.compile_dlogp()
    for theta in [np.log([0.52, 6.2, 0.89, 1.6]), np.array([0.3, -1.0, 1.2, 0.5])]:
        point = {v.name: theta[i] for i, v in enumerate(pm_model.value_vars)}
        grad = np.empty(4)
        value = _mbgnbd_fast.mbgnbd_logp_and_grad(theta, buf, grad)
        assert value == pytest.approx(float(logp(point)), rel=1e-12)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-10)


def test_alive_probability_and_expected_purchases_by_hand():
    r, alpha, a, b = 0.52, 6.2, 1.89, 1.6
    # P(alive) from the two terms of L: the share of the "still alive" one, also for x = 0.
    for x, t_x, T in [(0, 0.0, 38.0), (3, 20.0, 38.0)]:
        lead = special.betaln(a, b + x + 1) - (r + x) * np.log(alpha + T)
        other = special.betaln(a + 1, b + x) - (r + x) * np.log(alpha + t_x)
        assert float(mbgnbd_p_alive(r, alpha, a, b, x, t_x, T)) == pytest.approx(
            1 / (1 + np.exp(other - lead)), rel=1e-12)
    assert float(mbgnbd_p_alive(r, alpha, a, b, 0, 0.0, 38.0)) < 1.0
    # E[X(t) | λ, p] = (1−p)(1 − e^{−λpt})/p; over λ ~ Gamma(r, α): E_p[(1−p)/p (1 − (α/(α+pt))^r)].
    mp.mp.dps = 30
    t = 39.0

    def beta_mean(f, a_, b_):
        return mp.quad(lambda p: f(p) * p ** (a_ - 1) * (1 - p) ** (b_ - 1), [0, 1]) / mp.beta(a_, b_)

    new = beta_mean(lambda p: (1 - p) / p * (1 - (alpha / (alpha + p * t)) ** r), a, b)
    assert float(mbgnbd_expected_purchases(t, r, alpha, a, b)) == pytest.approx(float(new), rel=1e-8)
    # Alive at T: λ ~ Gamma(r+x, α+T), p ~ Beta(a, b+x+1), then a BG/NBD-like future with no dropout at T.
    x, t_x, T = 3, 20.0, 38.0
    given = beta_mean(lambda p: (1 - (alpha + T) ** (r + x) / (alpha + T + p * t) ** (r + x)) / p, a, b + x + 1)
    cond = float(given) * float(mbgnbd_p_alive(r, alpha, a, b, x, t_x, T))
    assert float(mbgnbd_conditional_purchases(t, r, alpha, a, b, x, t_x, T)) == pytest.approx(cond, rel=1e-8)


def test_predictions_on_cdnow(cdnow, cdnow_fit):
    alive = cdnow_fit.probability_alive(cdnow)
    assert (alive.table["mean"] < 1).all()  # nobody is certainly alive, one-time buyers included
    purchases = cdnow_fit.expected_purchases(39, cdnow)
    assert purchases.table["mean"].is_finite().all()
    assert cdnow_fit.expected_purchases_new_customer([39, 78])["mean"].is_finite().all()


def simulate_mbgnbd(rng: np.random.Generator, n: int, r: float, alpha: float, a: float, b: float) -> pl.DataFrame:
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    T = rng.uniform(26.0, 52.0, n)
    times = np.cumsum(rng.exponential(1.0, (n, 300)) / lam[:, None], axis=1)
    repeats = rng.geometric(p) - 1  # repeat purchases before dropping out (0: right after the first)
    in_window = (times <= T[:, None]) & (np.arange(1, 301)[None, :] <= repeats[:, None])
    x = in_window.sum(axis=1)
    t_x = np.where(x > 0, times[np.arange(n), np.maximum(x - 1, 0)], 0.0)
    return pl.DataFrame({"frequency": x, "recency": t_x, "T": T})


def test_parameters_are_recovered_from_simulated_customers():
    truth = {"r": 0.8, "alpha": 5.0, "a": 1.2, "b": 3.0}
    data = simulate_mbgnbd(np.random.default_rng(21), 8000, **truth)
    post = MBGNBDModel(data).fit(method="map", draws=4000, chains=1, seed=3).idata.posterior
    for name, value in truth.items():
        lo, hi = np.quantile(post[name].values.ravel(), [0.005, 0.995])
        assert lo <= value <= hi, f"{name}: 99 % interval {lo:.3f}..{hi:.3f} misses {value}"


def test_simulated_repeat_counts_follow_the_fitted_population(cdnow, cdnow_fit):
    # E[X(t)] is finite for any a > 0 ((1 − e^{−λpt})/p ≤ λt); the closed form holds for a < 1 by continuation.
    T = np.full(40_000, 39.0)
    counts = cdnow_fit.simulate_repeat_counts(T, seed=4)
    np.testing.assert_array_equal(counts, cdnow_fit.simulate_repeat_counts(T, seed=4))
    d = cdnow_fit._posterior()
    expected = float(np.mean(mbgnbd_expected_purchases(39.0, d["r"], d["alpha"], d["a"], d["b"])))
    assert counts.mean() == pytest.approx(expected, abs=4 * counts.std() / np.sqrt(T.size))
    # The BG/NBD's, added with the same interface: its population's E[X(t)] (FHL 2005, eq. 7).
    bg = BGNBDModel(cdnow)
    bg.fit(method="map", draws=500, chains=2, seed=1)
    bg_counts = bg.simulate_repeat_counts(T, seed=4)
    db = bg._posterior()
    bg_expected = float(np.mean(bgnbd_expected_purchases(39.0, db["r"], db["alpha"], db["a"], db["b"])))
    assert bg_counts.mean() == pytest.approx(bg_expected, abs=4 * bg_counts.std() / np.sqrt(T.size))


def test_cli_map_fit_writes_the_outputs(tmp_path):
    out = tmp_path / "fit"
    result = CliRunner().invoke(fit_app, ["mbgnbd", str(DATA / "cdnow_customers_summary.csv"), "--out", str(out),
                                          "--method", "map", "--draws", "200", "--chains", "2"])
    assert result.exit_code == 0, result.output
    assert pl.read_csv(out / "summary.csv")["parameter"].to_list() == ["r", "alpha", "a", "b"]
