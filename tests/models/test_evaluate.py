"""Out-of-sample evaluation and the customer-level prediction table: hand-computed splits, CDNOW, closed forms."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import special
from tenure.models import evaluate as ev
from tenure.models.bgnbd import BGNBDModel, bgnbd_expected_purchases
from tenure.models.clv_predict import summarize_draws
from tenure.models.clv_table import customer_table, thinned
from tenure.models.gamma_gamma import GammaGammaModel, customer_lifetime_value

from tenure.errors import InputError

DATA = Path(__file__).resolve().parents[1] / "data"

# a: first 2024-01-01, repeats 01-08 (twice that day: one transaction) and 01-15 in calibration, 01-22 and
# 01-29 in the holdout; b: first 01-03, one holdout purchase 01-24; c: first on the last calibration day
# (T = 0: left out); d: first in the holdout (not a calibration customer).
TINY = pl.DataFrame({
    "customer_id": ["a", "a", "a", "a", "a", "a", "b", "b", "c", "d"],
    "date": ["2024-01-01", "2024-01-08", "2024-01-08", "2024-01-15", "2024-01-22", "2024-01-29", "2024-01-03",
             "2024-01-24", "2024-01-20", "2024-01-25"],
    "amount": [10.0, 5.0, 5.0, 20.0, 7.0, 9.0, 4.0, 6.0, 3.0, 2.0],
})


def read_cdnow_master() -> pl.DataFrame:
    rows = [line.split() for line in (DATA / "CDNOW_master.txt").read_text().splitlines()[1:] if line.strip()]
    ids, dates, _, amounts = zip(*rows, strict=True)
    return pl.DataFrame({"customer_id": np.array(ids, dtype=np.int64), "date": list(dates),
                         "amount": np.array(amounts, dtype=float)})


@pytest.fixture(scope="module")
def cdnow_fits():
    df = pl.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")
    bg = BGNBDModel(df, time_unit="weeks")
    bg.fit(method="map", draws=100, chains=2, seed=1)
    gg = GammaGammaModel(df)
    gg.fit(method="map", draws=100, chains=2, seed=1)
    return df, bg, gg


def test_split_of_a_tiny_log_by_hand():
    split = ev.split_transactions(TINY, "2024-01-21", time_unit="weeks")
    assert split.calibration_end == dt.date(2024, 1, 20) and split.holdout_end == dt.date(2024, 1, 29)
    assert split.left_out == 1  # c
    cal = split.calibration
    assert cal["customer_id"].to_list() == ["a", "b"]
    # a: repeat days 01-08 and 01-15 -> x 2, t_x 14 days = 2 weeks, T 19 days; mean repeat spend (10 + 20)/2
    assert cal.row(0, named=True) == {"customer_id": "a", "frequency": 2, "recency": 2.0,
                                      "T": pytest.approx(19 / 7), "monetary_value": 15.0}
    assert cal.row(1, named=True)["T"] == pytest.approx(17 / 7)
    assert split.holdout["customer_id"].to_list() == ["a", "b"]
    assert split.holdout["holdout_frequency"].to_list() == [2, 1]
    assert split.holdout_length == pytest.approx(9 / 7)
    assert split.first_day.tolist() == [0, 2]
    # repeat days from 2024-01-01: a 7, 14, 21, 28 and b 23 (c's and d's purchases are not the cohort's)
    assert split.repeat_days.tolist() == [7, 14, 21, 23, 28]


def test_holdout_end_truncates_the_holdout():
    split = ev.split_transactions(TINY, "2024-01-21", holdout_end="2024-01-24", time_unit="days")
    assert split.holdout["holdout_frequency"].to_list() == [1, 1]
    assert split.holdout_length == 4.0
    assert split.repeat_days.tolist() == [7, 14, 21, 23]


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2024-01-01", None, "--holdout-start 2024-01-01: must be after the first transaction"),
    ("2023-12-01", None, "--holdout-start 2023-12-01: must be after the first transaction"),
    ("2024-01-30", None, "--holdout-start 2024-01-30: after the last transaction"),
    ("2024-01-21", "2024-01-20", "--holdout-end 2024-01-20: before --holdout-start"),
    ("2024-01-02", None, "no customer has a calibration period"),
    ("2024-13-01", None, "--holdout-start"),
])
def test_bad_holdout_dates_name_the_option(start, end, message):
    with pytest.raises(InputError, match=message.replace("+", r"\+")):
        ev.split_transactions(TINY, start, holdout_end=end)


def test_a_holdout_without_transactions_is_refused():
    with pytest.raises(InputError, match="holds no transaction"):
        ev.split_transactions(TINY, "2024-01-16", holdout_end="2024-01-19")


def test_tracking_of_the_tiny_log_by_hand(cdnow_fits):
    split = ev.split_transactions(TINY, "2024-01-21", time_unit="weeks")
    model = cdnow_fits[1]  # any fitted population: the tracking curve sums its eq. (7) over the customers
    table = ev.tracking_table({"bgnbd": model}, split)
    # days 0..28 -> 5 weeks (the last holds day 28 alone); repeats on days 7, 14 | 21, 23 | 28
    assert table["actual"].to_list() == [0.0, 1.0, 1.0, 2.0, 1.0]
    assert table["holdout"].to_list() == [False, False, True, True, True]
    # the end of week 5 is day 28: a is 28 days old, b 26 days old
    curve = model.expected_purchases_new_customer([28 / 7, 26 / 7])["mean"].to_numpy()
    assert table["bgnbd_cumulative"][-1] == pytest.approx(curve.sum())
    assert table["bgnbd"].sum() == pytest.approx(curve.sum())


def test_cdnow_holdout_counts_and_predictions_against_hand_computations():
    log = read_cdnow_master()
    split = ev.split_transactions(log, "1997-10-01", time_unit="weeks")
    # Fader, Hardie & Lee (2005): 23,570 customers who first bought in Q1 1997, calibration weeks 1-39,
    # holdout weeks 40-78 (39 weeks).
    assert split.n_customers == 23_570 and split.holdout_length == 39.0
    # the actual holdout count by an independent route: distinct (customer, day) pairs in the holdout
    days = {(int(c), d) for c, d in zip(log["customer_id"], log["date"], strict=True) if d >= "19971001"}
    assert split.holdout["holdout_frequency"].sum() == len(days) == 19_684
    model = BGNBDModel(split.calibration, time_unit="weeks")
    model.fit(method="map", draws=40, chains=1, seed=3)
    predicted = ev.holdout_predictions(model, split)
    # eq. (10) of Fader, Hardie & Lee (2005) by hand, averaged over the posterior draws
    post = model.idata.posterior
    x, t_x, T = (split.calibration[c].to_numpy().astype(float) for c in ("frequency", "recency", "T"))
    total = []
    for r, alpha, a, b in zip(*(post[k].values.ravel() for k in ("r", "alpha", "a", "b")), strict=True):
        t = 39.0
        body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * special.hyp2f1(r + x, b + x, a + b + x - 1,
                                                                             t / (alpha + T + t))
        odds = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
        total.append(((a + b + x - 1) / (a - 1) * body / (1 + odds)).sum())
    assert predicted.sum() == pytest.approx(np.mean(total), rel=1e-9)
    row = ev.evaluation_row("bgnbd", model.result, split, predicted)
    assert row["holdout_actual"] == 19_684 and row["mae"] > 0 and row["rmse"] >= row["mae"]
    assert np.isnan(row["elpd_loo"])  # MAP: no LOO
    cond = ev.conditional_expectations_table({"bgnbd": predicted}, split)
    assert cond["customers"].sum() == 23_570
    # the customer-weighted mean of the class means is the overall mean
    assert (cond["customers"] * cond["bgnbd"]).sum() == pytest.approx(predicted.sum())


def test_simulated_repeat_counts_match_the_closed_form_mean(cdnow_fits):
    model = cdnow_fits[1]
    T = np.full(200_000, 30.0)
    sim = model.simulate_repeat_counts(T, seed=7)
    assert np.array_equal(sim, model.simulate_repeat_counts(T, seed=7))
    post = model.idata.posterior
    # the simulation draws one posterior draw per customer: its mean is the posterior mean of eq. (7)
    exact = np.mean([bgnbd_expected_purchases(30.0, *(post[k].values.ravel()[i] for k in ("r", "alpha", "a", "b")))
                     for i in range(post.sizes["draw"])])
    assert sim.mean() == pytest.approx(exact, rel=0.03)


def test_prediction_table_equals_the_models_own_predictions(cdnow_fits):
    df, bg, gg = cdnow_fits
    table = customer_table(bg, df, horizon=52, spend=gg, chunk_rows=500)
    ref = bg.expected_purchases(52, df).table
    for suffix, col in (("", "mean"), ("_lower", "lower"), ("_upper", "upper")):
        np.testing.assert_allclose(table[f"purchases_next_52_weeks{suffix}"], ref[col], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(table["p_alive"], bg.probability_alive(df).table["mean"], rtol=1e-12)
    np.testing.assert_allclose(table["spend_per_purchase"], gg.expected_spend(df).table["mean"], rtol=1e-12)
    assert table["customer_id"].to_list() == df["ID"].to_list()
    # threads and chunks do not change a number
    assert table.equals(customer_table(bg, df, horizon=52, spend=gg, chunk_rows=97, threads=1))
    # 12 months are 52.18 weeks
    months = customer_table(bg, df, horizon=12, time_unit="months")
    np.testing.assert_allclose(months["purchases_next_12_months"],
                               bg.expected_purchases(12 * 365.25 / 12 / 7, df).table["mean"], rtol=1e-10)


def test_continuous_discounting_agrees_with_weekly_discounting(cdnow_fits):
    df, bg, gg = cdnow_fits
    df = df.head(300)
    table = customer_table(bg, df, horizon=52, spend=gg, annual_discount_rate=0.1, margin=0.5)
    weekly = customer_lifetime_value(bg, gg, df, horizon_periods=52, time_unit="weeks", margin=0.5,
                                     discount_rate_per_period=1.1 ** (7 / 365.25) - 1)
    # weekly discounting counts a week's purchases at its end, continuous discounting when they happen:
    # the two differ by about half a week's discount (0.09 %)
    ratio = table["clv_next_52_weeks"].to_numpy() / weekly.table["mean"].to_numpy()
    assert np.all(ratio > 1.0) and np.all(ratio < 1.002)
    undiscounted = customer_table(bg, df, horizon=52, spend=gg, annual_discount_rate=0.0)
    assert np.all(undiscounted["clv_next_52_weeks"].to_numpy() > 2 * table["clv_next_52_weeks"].to_numpy() * 0.99)


def test_prediction_table_equals_a_direct_per_customer_computation(cdnow_fits):
    """The cell and (cell, spend) deduplication and the summary kernels against draws × customers arrays."""
    df, bg, gg = cdnow_fits
    df = df.head(300)
    # customers sharing a history (x, t_x, T) but not their spend, and repeated customers: the combinations
    df = pl.concat([df, df.head(40).with_columns(pl.col("ID") + 10_000, pl.col("zbar") * 1.5),
                    df.head(40).with_columns(pl.col("ID") + 20_000)])
    horizon, delta, margin = 52.0, np.log1p(0.1) * 7 / 365.25, 0.7
    table = customer_table(bg, df, horizon=horizon, spend=gg, annual_discount_rate=0.1, margin=margin,
                           chunk_rows=7, threads=2)
    alive = bg.probability_alive(df, keep_draws=True).draws
    purchases = bg.expected_purchases(horizon, df, keep_draws=True).draws
    nodes, weights = np.polynomial.legendre.leggauss(8)
    # ∫_0^H e^{-δt} dE[Y(t)] = e^{-δH} E[Y(H)] + δ ∫_0^H e^{-δt} E[Y(t)] dt, per draw and customer
    discounted = np.exp(-delta * horizon) * purchases
    for t, w in zip(0.5 * horizon * (nodes + 1), 0.5 * horizon * weights, strict=True):
        discounted = discounted + delta * w * np.exp(-delta * t) * bg.expected_purchases(t, df, keep_draws=True).draws
    spend = gg.expected_spend(df, keep_draws=True).draws
    for name, draws in (("p_alive", alive), ("purchases_next_52_weeks", purchases),
                        ("spend_per_purchase", spend), ("clv_next_52_weeks", margin * spend * discounted)):
        np.testing.assert_allclose(table[name], draws.mean(axis=0), rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(table[f"{name}_lower"], np.quantile(draws, 0.05, axis=0), rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(table[f"{name}_upper"], np.quantile(draws, 0.95, axis=0), rtol=1e-9, err_msg=name)


def test_thinning_keeps_at_most_max_draws(cdnow_fits):
    _, bg, _ = cdnow_fits
    small = thinned(bg.result, 30)
    post = small.posterior
    assert post.sizes["chain"] * post.sizes["draw"] <= 30
    np.testing.assert_array_equal(post["r"].values[:, 0], bg.result.posterior["r"].values[:, 0])


def test_summarize_draws_equals_numpy_quantiles():
    rng = np.random.default_rng(0)
    for shape in [(1, 4), (2, 3), (500, 50), (37, 9)]:
        values = rng.normal(size=shape)
        mean, lo, hi = summarize_draws(values, 0.9)
        np.testing.assert_allclose(lo, np.quantile(values, 0.05, axis=0), atol=1e-15)
        np.testing.assert_allclose(hi, np.quantile(values, 0.95, axis=0), atol=1e-15)
        np.testing.assert_allclose(mean, values.mean(axis=0), atol=1e-15)
    # ties (a quantile between equal draws), sorted and reversed columns, and a column with a NaN
    ordered = np.sort(rng.normal(size=(201, 5)), axis=0)
    values = np.concatenate([rng.integers(0, 4, size=(201, 30)).astype(float), ordered, ordered[::-1]], axis=1)
    values[17, 3] = np.nan
    for interval in (0.9, 0.5, 0.999):
        mean, lo, hi = summarize_draws(values, interval)
        q_lo, q_hi = np.quantile(values, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
        np.testing.assert_allclose(lo, q_lo, atol=1e-15)
        np.testing.assert_allclose(hi, q_hi, atol=1e-15)
        np.testing.assert_array_equal(np.isnan(mean), np.isnan(values).any(axis=0))


def test_product_kernels_equal_numpy_on_draws_by_columns_arrays():
    """The purchases and spend/CLV kernels against the draws × columns products summarised by NumPy.

    Customer-major factors with rows gathered in any order and repeated, a spend posterior with more draws
    than the purchase one (CLV pairs the first 60): the formulas are the docstrings' products, so the
    means agree to rounding (1e-13) and the bounds, order statistics of the same numbers, as closely.
    """
    from tenure.models._draw_summary import summarise_row_products, summarise_spend_and_clv
    from tenure.models.clv_predict import quantile_positions
    from tenure.models.gamma_gamma import gamma_gamma_expected_spend, gamma_gamma_spend_terms

    rng = np.random.default_rng(3)
    n_bg, n_gg, cols = 60, 75, 41
    alive, disc = rng.uniform(0.05, 1.0, (9, n_bg)), rng.uniform(0.1, 3.0, (5, n_bg))
    cell, pair = rng.integers(0, 9, cols), rng.integers(0, 5, cols)
    out = np.empty((3, cols))
    summarise_row_products(alive, cell, disc, pair, *quantile_positions(n_bg, 0.8), out)
    ref = alive[cell].T * disc[pair].T
    np.testing.assert_allclose(out, [ref.mean(axis=0), *np.quantile(ref, [0.1, 0.9], axis=0)], rtol=1e-13)

    p, q, v = rng.uniform(4, 8, n_gg), rng.uniform(2, 6, n_gg), rng.uniform(10, 20, n_gg)
    x = np.array([0.0, 1.0, 4.0, 11.0])
    kind, mbar = rng.integers(0, 4, cols), rng.uniform(1, 90, cols)
    mbar[kind == 0] = 0.0
    base, weight = (np.ascontiguousarray(t.T) for t in gamma_gamma_spend_terms(p[:, None], q[:, None],
                                                                              v[:, None], x))
    spend_out, clv_out = np.empty((3, cols)), np.empty((3, cols))
    summarise_spend_and_clv(0.4, base, weight, kind, mbar, alive, cell, disc, pair, n_bg,
                            quantile_positions(n_gg, 0.9), quantile_positions(n_bg, 0.9), spend_out, clv_out)
    spend = gamma_gamma_expected_spend(p[:, None], q[:, None], v[:, None], x[kind], mbar)
    clv = 0.4 * spend[:n_bg] * alive[cell].T * disc[pair].T
    for got, draws in ((spend_out, spend), (clv_out, clv)):
        np.testing.assert_allclose(got, [draws.mean(axis=0), *np.quantile(draws, [0.05, 0.95], axis=0)],
                                   rtol=1e-13)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("recency", 40.0, "column 'recency' must not exceed T"),
    ("frequency", -1, "column 'frequency' must be 0 or more"),
])
def test_bad_rfm_rows_name_the_column(cdnow_fits, column, value, message):
    df, bg, _ = cdnow_fits
    bad = df.rename({"x": "frequency", "t_x": "recency"}).with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(value).otherwise(pl.col(column)).alias(column))
    with pytest.raises(InputError, match=f"row 2: {message}"):
        customer_table(bg, bad, horizon=52)


@pytest.mark.parametrize("name", ["pnbd", "mbgnbd"])
def test_the_table_factorisation_holds_for_the_other_transaction_models(cdnow_fits, name):
    """E[Y(t) | x, t_x, T] = P(alive | x, t_x, T) · g(x, T) for the Pareto/NBD and the MBG/NBD too."""
    from tenure.models import model_class

    df = cdnow_fits[0]
    model = model_class(name)(df, time_unit="weeks")
    model.fit(method="map", draws=60, chains=1, seed=1)
    table = customer_table(model, df, horizon=39)
    ref = model.expected_purchases(39, df).table
    np.testing.assert_allclose(table["purchases_next_39_weeks"], ref["mean"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(table["purchases_next_39_weeks_upper"], ref["upper"], rtol=1e-8, atol=1e-12)
    split = ev.split_transactions(TINY, "2024-01-21", time_unit="weeks")
    periods = ev.period_transactions_table({name: model}, split, seed=1)
    assert periods[name].sum() == split.n_customers


def test_loo_of_an_mcmc_fit_is_the_log_likelihood_less_its_effective_parameters():
    df = pl.read_csv(DATA / "cdnow_customers_summary.csv")
    model = BGNBDModel(df, time_unit="weeks")
    result = model.fit(method="mcmc", draws=200, tune=200, chains=2, seed=1)
    loo = ev.expected_loo(result)
    # the maximised log-likelihood is -9582.4 (Fader, Hardie & Lee 2005); elpd_loo lies below it by about p_loo,
    # which exceeds the four parameters because an observation is a compressed row (up to hundreds of identical
    # customers left out at once)
    assert 4.0 < loo["p_loo"] < 20.0
    assert loo["elpd_loo"] < -9582.4
    assert loo["elpd_loo"] == pytest.approx(-9582.4 - loo["p_loo"], abs=3.0)
    assert loo["elpd_loo_se"] > 0
