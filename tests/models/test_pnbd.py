"""Pareto/NBD: the published CDNOW estimates, the likelihood and gradient at hard points, predictions, recovery, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import mpmath as mp
import numpy as np
import polars as pl
import pytest
from tenure.models import _pnbd_fast
from tenure.models.pnbd import (
    ParetoNBDModel,
    pnbd_conditional_purchases,
    pnbd_expected_purchases,
    pnbd_loglike_np,
)
from typer.testing import CliRunner

import tenure.commands.fit_clv  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app

DATA = Path(__file__).resolve().parents[1] / "data"
# Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the Pareto/NBD model",
# Marketing Science 24(2), Table 1 (CDNOW, 2357 customers, weeks): the Pareto/NBD's MLE and log-likelihood.
PUBLISHED = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
PUBLISHED_LL = -9595.0
MLE = (0.5533, 10.5776, 0.6062, 11.6679)  # tenure's CDNOW MLE, which rounds to the published values

# Hard points: α = β (where the published ₂F₁ form switches cases), α ≫ β and β ≫ α (argument near 1),
# r + x large, s tiny, T large with t_x = 0, t_x = T, and the CDNOW MLE.
HARD = [
    (0.55, 10.58, 0.61, 11.67, 2, 30.43, 38.86),
    (0.5, 10.0, 0.6, 10.0, 5, 3.0, 40.0),
    (0.5, 100.0, 0.6, 0.01, 3, 1.0, 40.0),
    (0.5, 0.01, 0.6, 100.0, 3, 1.0, 40.0),
    (0.5, 1e3, 0.6, 1e-3, 0, 0.0, 40.0),
    (0.5, 100.0, 0.6, 0.01, 150, 1.0, 40.0),
    (50.0, 10.0, 0.001, 12.0, 100, 30.0, 39.0),
    (0.5, 10.0, 1e-4, 12.0, 0, 0.0, 1000.0),
    (0.5, 0.001, 1e-3, 1000.0, 0, 0.0, 5000.0),
    (3.0, 1.0, 50.0, 1000.0, 5, 0.0, 10000.0),
    (0.2, 1e-3, 0.6, 1e3, 30, 0.5, 40.0),
    (0.55, 10.58, 0.61, 11.67, 4, 20.0, 20.0),
]


def mp_loglike(r, alpha, s, beta, x, t_x, T) -> float:
    """The Pareto/NBD log-likelihood in 40-digit arithmetic with the published ₂F₁ form.

    Fader, Hardie & Lee (2005), "A note on deriving the Pareto/NBD model and related expressions", eqs. (6)-(8):
    with α ≥ β, A0 = ₂F₁(r+s+x, s+1; r+s+x+1; (α−β)/(α+t_x))/(α+t_x)^(r+s+x) minus the same at T; with α < β,
    α and β swap in the argument and the second parameter becomes r+x. An independent formula from the
    quadrature the package uses.
    """
    mp.mp.dps = 40
    r, alpha, s, beta, x, t_x, T = (mp.mpf(v) for v in (r, alpha, s, beta, x, t_x, T))
    m = r + s + x
    if alpha >= beta:
        def term(t):
            return mp.hyp2f1(m, s + 1, m + 1, (alpha - beta) / (alpha + t)) / (alpha + t) ** m
    else:
        def term(t):
            return mp.hyp2f1(m, r + x, m + 1, (beta - alpha) / (beta + t)) / (beta + t) ** m
    a0 = term(t_x) - term(T)
    head = mp.loggamma(r + x) - mp.loggamma(r) + r * mp.log(alpha) + s * mp.log(beta)
    return float(head + mp.log(1 / ((alpha + T) ** (r + x) * (beta + T) ** s) + s / m * a0))


@pytest.fixture(scope="module")
def cdnow() -> pl.DataFrame:
    return pl.read_csv(DATA / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def cdnow_fit(cdnow):
    model = ParetoNBDModel(cdnow, time_unit="weeks")
    model.fit(method="map", draws=500, chains=2, seed=1)
    return model


def test_cdnow_map_reproduces_the_published_mle(cdnow, cdnow_fit):
    mode = json.loads(cdnow_fit.idata.attrs["tenure_map"])
    # Published to 2 decimals: the MLE lies within 0.005 of each.
    for name, value in PUBLISHED.items():
        assert mode[name] == pytest.approx(value, abs=0.005), name
    x, t_x, T = (cdnow[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
    loglike = pnbd_loglike_np(*(mode[k] for k in PUBLISHED), x, t_x, T).sum()
    assert loglike == pytest.approx(PUBLISHED_LL, abs=0.05)  # published to one decimal
    assert cdnow_fit.idata.attrs["tenure_sampler"] == "numba-closed-form"


@pytest.mark.parametrize("point", HARD)
def test_loglike_matches_the_hypergeometric_form_in_high_precision(point):
    ours = float(pnbd_loglike_np(*point))
    assert ours == pytest.approx(mp_loglike(*point), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("point", HARD)
def test_gradient_matches_finite_differences(point):
    _, grad = _pnbd_fast.pnbd_loglike(*point)
    for k in range(4):
        p = np.array(point[:4])
        step = 1e-5 * p[k]
        up, down = p.copy(), p.copy()
        up[k] += step
        down[k] -= step
        fd = (float(pnbd_loglike_np(*up, *point[4:])) - float(pnbd_loglike_np(*down, *point[4:]))) / (2 * step)
        # On the log scale (what NUTS sees), d log L / d log p = p · d log L / dp.
        assert p[k] * float(grad[k]) == pytest.approx(p[k] * fd, rel=1e-5, abs=1e-6), (point, k)


def test_gradient_is_smooth_across_alpha_equal_beta():
    # The published form switches between two ₂F₁ expressions at α = β; the quadrature has no such seam.
    alphas = 10.0 + np.linspace(-1e-3, 1e-3, 21)
    _, grad = _pnbd_fast.pnbd_loglike(0.55, alphas, 0.61, 10.0, 3, 12.0, 38.0)
    assert np.all(np.isfinite(grad))
    assert np.max(np.abs(np.diff(grad[1], 2))) < 1e-9


def test_closed_form_density_equals_the_pymc_model(cdnow):
    model = ParetoNBDModel(cdnow.head(400))
    buf = model.fast_path_data()
    pm_model = model.build()
    assert [v.name for v in pm_model.value_vars] == ["r_log__", "alpha_log__", "s_log__", "beta_log__"]
    logp = pm_model.compile_logp()
    dlogp = pm_model.compile_dlogp()
    for theta in [np.log(MLE), np.array([0.3, -1.0, 1.2, 0.5])]:
        point = {v.name: theta[i] for i, v in enumerate(pm_model.value_vars)}
        grad = np.empty(4)
        value = _pnbd_fast.pnbd_logp_and_grad(theta, buf, grad)
        assert value == pytest.approx(float(logp(point)), rel=1e-12)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-10)


FLAT_PRIORS = {p: {"dist": "HalfFlat"} for p in ("r", "alpha", "s", "beta")}


def grouped_summary(rng: np.random.Generator, x0: float, t_x0: float, T0: float, n: int = 300):
    """A summary around one hard point's row: repeated x, seven cohorts T, t_x on a grid of sevenths (ties),
    t_x = 0 for x = 0 and some t_x = T, weights 1-49; the hard row itself first."""
    cohorts = np.unique(np.concatenate([[T0], np.round(rng.uniform(0.2, 1.0, 6) * max(T0, 1.0), 1)]))
    T = rng.choice(cohorts, n)
    x = rng.choice(np.unique([0, 1, 2, 3, 7, x0, x0 + 1]), n).astype(float)
    t_x = np.where(rng.random(n) < 0.15, T, np.round(rng.uniform(0, 1, n) * T * 7) / 7)
    t_x = np.where(x == 0, 0.0, t_x)
    w = rng.integers(1, 50, n).astype(float)
    return tuple(np.concatenate([[a], b]) for a, b in ((x0, x), (t_x0, t_x), (T0, T), (3.0, w)))


@pytest.mark.parametrize("point", HARD)
def test_grouped_density_equals_the_row_path(point):
    # The log density sums each row's integral from segments shared by rows of one x; the row path
    # integrates each row on its own. Both are accurate to about 1e-10 relative per row (module
    # docstring; the row path against mpmath above), so the sums agree within 1e-10 of their size.
    x, t_x, T, w = grouped_summary(np.random.default_rng(7), *point[4:])
    p = np.array(point[:4])
    theta = np.log(p)
    ll, g = _pnbd_fast.pnbd_loglike(*p, x, t_x, T)
    buf = _pnbd_fast.pack_rows(x, t_x, T, w, FLAT_PRIORS, ParetoNBDModel.named_parameters)
    grad = np.empty(4)
    value = _pnbd_fast.pnbd_logp_and_grad(theta, buf, grad)
    # HalfFlat on the log scale adds θ_k (the Jacobian) to the density and 1 to each gradient entry.
    assert value == pytest.approx(w @ ll + theta.sum(), rel=1e-10)
    np.testing.assert_array_less(np.abs(grad - (p * (g @ w) + 1)), 1e-10 * (p * (np.abs(g) @ w) + 1))


@pytest.mark.parametrize("point", HARD)
def test_grouped_rows_over_draws_equal_the_row_path(point):
    # Per row and draw, log L and P(alive) from the shared segments equal the row path's to the accuracy of
    # both (each about 1e-10 relative per row, module docstring, so their difference up to 2e-10; 1.9e-10 seen at
    # s = 50, T = 10,000), in the caller's row order (the buffer sorts the rows), whatever the threads over draws.
    x, t_x, T, _ = grouped_summary(np.random.default_rng(11), *point[4:], n=120)
    rng = np.random.default_rng(5)
    draws = np.exp(np.log(point[:4]) + rng.normal(0.0, 0.3, (7, 4)))
    ll, alive = _pnbd_fast.pnbd_rows_over_draws(*draws.T, x, t_x, T)
    cols = [draws[:, k][:, None] for k in range(4)]
    ll_rows, _ = _pnbd_fast.pnbd_loglike(*cols, x, t_x, T)
    alive_rows = np.exp(_pnbd_fast.pnbd_log_p_alive(*cols, x, t_x, T))
    np.testing.assert_allclose(ll, ll_rows, rtol=3e-10)
    np.testing.assert_allclose(alive, alive_rows, rtol=1e-9, atol=1e-300)
    ll2, alive2 = _pnbd_fast.pnbd_rows_over_draws(*draws.T, x, t_x, T, threads=3)
    assert np.array_equal(ll2, ll) and np.array_equal(alive2, alive)


def test_pointwise_log_likelihood_and_alive_use_the_grouped_rows(cdnow, cdnow_fit):
    # The fit's pointwise log-likelihood (for LOO) and P(alive) per customer: the grouped path against the row
    # path on CDNOW's rows at every (thinned) draw.
    rows = {c: cdnow_fit.data[c].to_numpy().astype(float) for c in cdnow_fit.data.columns}
    draws = {k: v[:50] for k, v in cdnow_fit._posterior().items()}
    cols = [draws[k][:, None] for k in ParetoNBDModel.named_parameters]
    ll_rows, _ = _pnbd_fast.pnbd_loglike(*cols, rows["frequency"], rows["recency"], rows["T"])
    ll, alive = cdnow_fit._row_values(draws, rows, threads=2)
    np.testing.assert_allclose(ll, ll_rows, rtol=1e-10)
    alive_rows = np.exp(_pnbd_fast.pnbd_log_p_alive(*cols, rows["frequency"], rows["recency"], rows["T"]))
    np.testing.assert_allclose(alive, alive_rows, rtol=1e-9)


@pytest.mark.parametrize("point", HARD)
def test_grouped_density_of_one_row_matches_the_hypergeometric_form(point):
    buf = _pnbd_fast.pack_rows(*([v] for v in point[4:]), [1.0], FLAT_PRIORS, ParetoNBDModel.named_parameters)
    theta = np.log(point[:4])
    value = _pnbd_fast.pnbd_logp_and_grad(theta, buf, np.empty(4)) - theta.sum()
    assert value == pytest.approx(mp_loglike(*point), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("point", [HARD[0], HARD[3], HARD[5], HARD[8]])
def test_grouped_gradient_matches_finite_differences(point):
    x, t_x, T, w = grouped_summary(np.random.default_rng(3), *point[4:])
    buf = _pnbd_fast.pack_rows(x, t_x, T, w, FLAT_PRIORS, ParetoNBDModel.named_parameters)
    theta = np.log(point[:4])
    grad = np.empty(4)
    _pnbd_fast.pnbd_logp_and_grad(theta, buf, grad)
    for k in range(4):
        step = np.zeros(4)
        step[k] = 1e-5
        up = _pnbd_fast.pnbd_logp_and_grad(theta + step, buf, np.empty(4))
        down = _pnbd_fast.pnbd_logp_and_grad(theta - step, buf, np.empty(4))
        # central differences: truncation O(step²) times the third derivative, rounding 1e-16·|value|/step
        assert grad[k] == pytest.approx((up - down) / 2e-5, rel=1e-5, abs=1e-6 * abs(up)), (point, k)


def mp_segment(a1, b1, alpha, beta, lo, width) -> list[float]:
    """∫ f, −∫ f·log(α+τ), −∫ f/(α+τ), −∫ f·log(β+τ), −∫ f/(β+τ) over [lo, lo + width] in 30 digits,
    f = ((α+τ)/(α+lo))^−a1 ((β+τ)/(β+lo))^−b1 (what :func:`_pnbd_fast._segment_quad` returns)."""
    mp.mp.dps = 30
    a1, b1, alpha, beta, lo, width = (mp.mpf(v) for v in (a1, b1, alpha, beta, lo, width))

    def f(t):
        return ((alpha + t) / (alpha + lo)) ** -a1 * ((beta + t) / (beta + lo)) ** -b1
    factors = (lambda t: 1, lambda t: -mp.log(alpha + t), lambda t: -1 / (alpha + t),
               lambda t: -mp.log(beta + t), lambda t: -1 / (beta + t))
    return [float(mp.quad(lambda t, g=g: f(t) * g(t), [lo, lo + width])) for g in factors]


@pytest.mark.parametrize("order, reach", zip(_pnbd_fast.SHORT_ORDERS, _pnbd_fast.SHORT_REACH, strict=True))
def test_short_segments_at_their_reach_match_mpmath(order, reach):
    # Worst cases of a random search at each order's reach: a power law in β + τ whose singularity lies about
    # a segment's length to the left, a steep r + x with α ≫ β, and α + lo below the decay length h.
    for a1, b1, alpha, beta, lo in [(4.09, 1.0003, 8.06, 0.00315, 0.02), (1.02, 1.0001, 445.4, 2.05, 0.0),
                                    (76.1, 1.005, 7457.7, 0.0094, 0.0063), (0.01, 1.6, 0.001, 12.0, 0.0)]:
        h = 1.0 / (a1 / (alpha + lo) + b1 / (beta + lo))
        width = reach * min(h, alpha + lo) * (1 - 1e-12)
        got = _pnbd_fast._segment_quad(a1, b1, alpha, beta, lo, width, np.log(alpha + lo), np.log(beta + lo))
        np.testing.assert_allclose(got, mp_segment(a1, b1, alpha, beta, lo, width), rtol=1e-12,
                                   err_msg=f"{order} nodes")


def test_alive_probability_and_expected_purchases_by_hand():
    r, alpha, s, beta = MLE
    x, t_x, T, t = 2, 30.43, 38.86, 39.0
    mp.mp.dps = 30
    alive_term = mp.exp(mp.loggamma(r + x) - mp.loggamma(r) + r * mp.log(alpha) + s * mp.log(beta)
                        - (r + x) * mp.log(alpha + T) - s * mp.log(beta + T))
    alive = float(alive_term / mp.exp(mp_loglike(r, alpha, s, beta, x, t_x, T)))  # FHL (2005 note), eq. (18)
    ours = float(np.exp(_pnbd_fast.pnbd_log_p_alive(r, alpha, s, beta, x, t_x, T)))
    assert ours == pytest.approx(alive, rel=1e-9)
    # E[X(t)] = E[λ] ∫_0^t P(alive at u) du = r/α ∫_0^t (β/(β+u))^s du.
    new = float(r / alpha * mp.quad(lambda u: (beta / (beta + u)) ** s, [0, t]))
    assert float(pnbd_expected_purchases(t, r, alpha, s, beta)) == pytest.approx(new, rel=1e-10)
    # Given alive at T: λ ~ Gamma(r+x, α+T), μ ~ Gamma(s, β+T), so E[Y(t)] = P(alive)·(r+x)/(α+T)·∫ ((β+T)/(β+T+u))^s.
    cond = alive * (r + x) / (alpha + T) * float(mp.quad(lambda u: ((beta + T) / (beta + T + u)) ** s, [0, t]))
    assert float(pnbd_conditional_purchases(t, r, alpha, s, beta, x, t_x, T)) == pytest.approx(cond, rel=1e-9)
    # s = 1 is the limit log(1 + t/β), continuous on both sides.
    at_one = [float(pnbd_expected_purchases(t, r, alpha, v, beta)) for v in (1 - 1e-6, 1.0, 1 + 1e-6)]
    assert at_one[1] == pytest.approx(r / alpha * beta * np.log1p(t / beta), rel=1e-12)
    assert at_one[0] == pytest.approx(at_one[1], rel=1e-5) and at_one[2] == pytest.approx(at_one[1], rel=1e-5)


def test_purchases_if_alive_is_the_conditional_expectation_over_p_alive(cdnow, cdnow_fit):
    # The CLV table's purchase factor per (x, T): the closed form given alive equals E[Y(t) | x, t_x, T] / P(alive)
    # (the generic route) at every draw, for customers observed at t_x = T (alive for certain) and not.
    rows = cdnow.head(400).unique(subset=["frequency", "recency", "T"], maintain_order=True)
    direct = cdnow_fit.purchases_if_alive(39.0, rows)
    ratio = (cdnow_fit.expected_purchases(39.0, rows, keep_draws=True).draws
             / cdnow_fit.probability_alive(rows, keep_draws=True).draws)
    assert direct.shape == ratio.shape == (500 * 2, rows.height)
    assert (rows["recency"] == rows["T"]).any() and (rows["recency"] < rows["T"]).any()
    np.testing.assert_allclose(direct, ratio, rtol=1e-10)


def test_predictions_on_cdnow(cdnow, cdnow_fit):
    alive = cdnow_fit.probability_alive(cdnow)
    assert alive.table.height == cdnow.height
    assert ((alive.table["lower"] <= alive.table["mean"]) & (alive.table["mean"] <= alive.table["upper"])).all()
    assert ((alive.table["mean"] > 0) & (alive.table["mean"] <= 1)).all()  # 1 when t_x = T
    purchases = cdnow_fit.expected_purchases(39, cdnow)
    assert purchases.table["mean"].is_finite().all()
    curve = cdnow_fit.expected_purchases_new_customer([39, 78])
    assert curve["mean"][0] == pytest.approx(float(pnbd_expected_purchases(39.0, *MLE)), rel=0.05)


def simulate_pnbd(rng: np.random.Generator, n: int, r: float, alpha: float, s: float, beta: float,
                  purchase: float = 0.0, dropout: float = 0.0) -> pl.DataFrame:
    """Pareto/NBD customers; ``trust`` shifts α and β as in Fader & Hardie (2007)."""
    trust = np.tile(np.arange(1.0, 6.0), n // 5)
    lam = rng.gamma(r, 1.0 / (alpha * np.exp(-purchase * (trust - 3.0))))
    mu = rng.gamma(s, 1.0 / (beta * np.exp(-dropout * (trust - 3.0))))
    T = rng.uniform(26.0, 52.0, n)
    alive_for = np.minimum(rng.exponential(1.0 / mu), T)
    x = rng.poisson(lam * alive_for)
    # Given x purchases in (0, L], the last is at L·U^(1/x).
    t_x = np.where(x > 0, alive_for * rng.uniform(size=n) ** (1.0 / np.maximum(x, 1)), 0.0)
    return pl.DataFrame({"frequency": x, "recency": t_x, "T": T, "trust": trust})


def test_parameters_are_recovered_from_simulated_customers():
    truth = {"r": 0.8, "alpha": 6.0, "s": 0.7, "beta": 9.0}
    data = simulate_pnbd(np.random.default_rng(11), 8000, **truth)
    post = ParetoNBDModel(data).fit(method="map", draws=4000, chains=1, seed=3).idata.posterior
    for name, value in truth.items():
        lo, hi = np.quantile(post[name].values.ravel(), [0.005, 0.995])
        assert lo <= value <= hi, f"{name}: 99 % interval {lo:.3f}..{hi:.3f} misses {value}"


def test_simulated_repeat_counts_follow_the_fitted_population(cdnow_fit):
    T = np.full(40_000, 39.0)
    counts = cdnow_fit.simulate_repeat_counts(T, seed=4)
    assert counts.dtype.kind == "i" and (counts >= 0).all()
    np.testing.assert_array_equal(counts, cdnow_fit.simulate_repeat_counts(T, seed=4))
    d = cdnow_fit._posterior()
    expected = float(np.mean(pnbd_expected_purchases(39.0, d["r"], d["alpha"], d["s"], d["beta"])))
    assert counts.mean() == pytest.approx(expected, abs=4 * counts.std() / np.sqrt(T.size))


@pytest.mark.slow
def test_covariates_on_purchase_and_dropout_are_recovered():
    data = simulate_pnbd(np.random.default_rng(5), 6000, 0.8, 6.0, 0.7, 9.0, purchase=0.4, dropout=-0.3)
    model = ParetoNBDModel(data, purchase_covariates=["trust"], dropout_covariates=["trust"])
    assert model.fast_path_data() is None
    post = model.fit(method="map", draws=2000, chains=1, seed=2).idata.posterior
    for name, value in {"purchase_coefficient": 0.4, "dropout_coefficient": -0.3, "r": 0.8}.items():
        lo, hi = np.quantile(post[name].values.ravel(), [0.005, 0.995])
        assert lo <= value <= hi, f"{name}: 99 % interval {lo:.3f}..{hi:.3f} misses {value}"


@pytest.mark.slow
def test_fast_nuts_on_cdnow(cdnow):
    # With flat priors the posterior is improper along s, beta -> infinity and NUTS never ended; sampling
    # uses the proper prior on beta (a mean of ten observation windows), MAP keeps the flat one.
    model = ParetoNBDModel(cdnow)
    idata = model.fit(method="mcmc", draws=300, tune=300, chains=2, seed=3).idata
    assert idata.attrs["tenure_sampler"] == "numba-closed-form"
    used = json.loads(idata.attrs["tenure_priors"])
    assert used["beta"] == {"dist": "Exponential", "lam": pytest.approx(1 / (10 * float(cdnow["T"].max())))}
    assert used["s"]["dist"] == "HalfFlat" and model.priors["beta"]["dist"] == "HalfFlat"
    # the purchase side is sharp: the maximum-likelihood estimate lies within two posterior sd of the mean
    for k, mle in (("r", MLE[0]), ("alpha", MLE[1])):
        draws = idata.posterior[k].values.ravel()
        assert abs(draws.mean() - mle) < 2 * draws.std(), (k, draws.mean(), draws.std(), mle)


def test_cli_map_fit_and_bad_input(tmp_path):
    out = tmp_path / "fit"
    result = CliRunner().invoke(fit_app, ["pnbd", str(DATA / "cdnow_customers_summary.csv"), "--out", str(out),
                                          "--method", "map", "--draws", "200", "--chains", "2"])
    assert result.exit_code == 0, result.output
    summary = pl.read_csv(out / "summary.csv")
    assert summary["parameter"].to_list() == ["r", "alpha", "s", "beta"]
    bad = tmp_path / "bad.csv"
    bad.write_text("frequency,recency,T\n1,5,10\n2,12,10\n")
    result = CliRunner().invoke(fit_app, ["pnbd", str(bad), "--out", str(tmp_path / "no"), "--method", "map"])
    assert result.exit_code == 2 and "row 2" in result.output
    assert not (tmp_path / "no").exists()
