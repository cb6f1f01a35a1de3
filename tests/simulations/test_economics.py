"""Closed-form economics against the published numbers (docs/economics.md cites each source).

Tolerances: a published figure rounded to its last digit is matched within half a unit
of that digit, unless rounding of the paper's own inputs explains a larger gap; then
the comment argues the wider band and the test computes it.
"""

from functools import partial

import numpy as np
import pytest
from scipy import special
from tenure.simulations import economics as econ

from tenure.errors import InputError

# Blattberg & Deighton (1996) calibration used by Pfeifer (2005): c_a = 0.10 with a = 0.04 at A = 1;
# c_r = 0.80 with r = 0.60 at R = 8; m = 50; d = 0.10.
C_A, C_R, MARGIN, DISCOUNT = 0.10, 0.80, 50.0, 0.10
K1 = econ.calibrate_k_per_unit_spend(0.04, C_A, 1.0)
K2 = econ.calibrate_k_per_unit_spend(0.60, C_R, 8.0)

# Fader & Hardie (2007), survivors per 1000 in years 0–7 and the fitted sBG parameters.
REGULAR = (0.704, 1.182, [1000, 631, 468, 382, 326, 289, 262, 241])
HIGH_END = (0.668, 3.806, [1000, 869, 743, 653, 593, 551, 517, 491])


# --- Blattberg & Deighton ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a_spend", "a", "r_spend", "r", "published"),
    [(20.0, 0.2, 30.0, 0.6, 56.00), (30.0, 0.3, 20.0, 0.5, 70.00)],
)
def test_customer_equity_worked_examples(a_spend, a, r_spend, r, published):
    # Blattberg & Deighton (1996), worked examples with m = 200, d = 0.10; published to cents: ±0.005.
    ce = econ.customer_equity_per_prospect(a_spend, a, 200.0, r_spend, r, 0.10)
    assert ce == pytest.approx(published, abs=0.005)


def test_customer_equity_is_acquisition_rate_times_value_minus_spend():
    value = econ.customer_value_at_acquisition(200.0, 0.6, 30.0, 0.10)
    assert econ.customer_equity_per_prospect(20.0, 0.2, 200.0, 30.0, 0.6, 0.10) == pytest.approx(0.2 * value - 20.0)


def test_calibration_inverts_the_response_curve():
    # k = −ln(1 − rate/ceiling)/spend: exact algebra, so only floating-point error is allowed.
    assert pytest.approx(-np.log(0.6), rel=1e-14) == K1
    assert pytest.approx(np.log(4.0) / 8.0, rel=1e-14) == K2
    assert econ.acquisition_rate(1.0, C_A, K1) == pytest.approx(0.04, rel=1e-14)
    assert econ.retention_rate_per_period(8.0, C_R, K2) == pytest.approx(0.60, rel=1e-14)


def test_optimum_matches_pfeifer():
    # Pfeifer (2005) via the domain brief: A* = 3.405, R* = 15.80, CE* = 5.782, V = 111.44, each ±half a unit
    # of the last published digit. The calibration inputs are exact, so no wider band is needed.
    best = econ.optimal_spend(C_A, K1, C_R, K2, MARGIN, DISCOUNT)
    assert best.acquisition_spend_per_prospect == pytest.approx(3.405, abs=0.0005)
    assert best.retention_spend_per_customer_per_period == pytest.approx(15.80, abs=0.005)
    assert best.customer_equity_per_prospect == pytest.approx(5.782, abs=0.0005)
    assert best.customer_value_at_acquisition == pytest.approx(111.44, abs=0.005)
    # At the optimum the value of an acquired customer equals the marginal cost of acquiring one, and of
    # retaining one (Pfeifer 2005): an identity of the first-order conditions, so floating-point tolerance.
    assert best.marginal_cost_to_acquire == pytest.approx(best.customer_value_at_acquisition, rel=1e-12)
    assert best.marginal_cost_to_retain == pytest.approx(best.customer_value_at_acquisition, rel=1e-12)
    assert best.marginal_cost_ratio == pytest.approx(1.0, rel=1e-12)
    # The average costs are the definitions A*/a* and R*/r*; their ratio is what the "five times" claim quotes.
    assert best.average_cost_to_acquire == pytest.approx(3.4046 / best.acquisition_rate, rel=1e-4)
    assert best.average_cost_ratio == pytest.approx(best.average_cost_to_acquire / best.average_cost_to_retain)
    assert best.average_cost_ratio < 5.0


def _brute_force_equity(c_a, k1, c_r, k2, margin, discount, a_grid, r_grid):
    """Customer equity on a dense (A, R) grid, by broadcasting."""
    a_spend, r_spend = a_grid[:, None], r_grid[None, :]
    return econ.customer_equity_per_prospect(
        a_spend,
        econ.acquisition_rate(a_spend, c_a, k1),
        margin,
        r_spend,
        econ.retention_rate_per_period(r_spend, c_r, k2),
        discount,
    )


def test_optimum_beats_a_dense_grid():
    # The closed form must be the global maximum: no grid point may beat it (beyond rounding), and the best
    # grid point, 0.005 away in each spend, must come within the curvature of the optimum (CE is flat there).
    best = econ.optimal_spend(C_A, K1, C_R, K2, MARGIN, DISCOUNT)
    ce = _brute_force_equity(C_A, K1, C_R, K2, MARGIN, DISCOUNT, np.arange(0, 20, 0.01), np.arange(0, 60, 0.01))
    assert ce.max() <= best.customer_equity_per_prospect + 1e-12
    assert ce.max() == pytest.approx(best.customer_equity_per_prospect, abs=1e-5)


@pytest.mark.parametrize(
    ("c_a", "k1", "c_r", "k2", "margin", "corner"),
    [
        (0.10, 0.5, 0.80, 0.02, 50.0, "retention"),  # k2·c_r·m = 0.8 ≤ 1: retention spend never pays, R* = 0
        (0.10, 0.05, 0.80, 0.17, 50.0, "acquisition"),  # c_a·k1·V ≈ 0.6 ≤ 1: acquisition never pays, A* = 0
        (0.30, 2.0, 0.95, 1.0, 5.0, None),  # steep curves, interior
    ],
)
def test_optimum_corners_and_interiors_agree_with_the_grid(c_a, k1, c_r, k2, margin, corner):
    best = econ.optimal_spend(c_a, k1, c_r, k2, margin, 0.05)
    assert (best.retention_spend_per_customer_per_period == 0.0) == (corner == "retention")
    assert (best.acquisition_spend_per_prospect == 0.0) == (corner == "acquisition")
    # Grid step 0.01: CE is flat at an interior optimum, so the best grid point is within ~1e-4 of it.
    ce = _brute_force_equity(c_a, k1, c_r, k2, margin, 0.05, np.arange(0, 30, 0.01), np.arange(0, 60, 0.01))
    assert ce.max() <= best.customer_equity_per_prospect + 1e-12
    assert ce.max() == pytest.approx(best.customer_equity_per_prospect, abs=1e-4)


def test_optimum_broadcasts_like_scalar_calls():
    margins = np.array([[5.0], [50.0], [500.0]])
    discounts = np.array([0.01, 0.10])
    best = econ.optimal_spend(C_A, K1, C_R, K2, margins, discounts)
    assert best.retention_spend_per_customer_per_period.shape == (3, 2)
    for i, m in enumerate(margins[:, 0]):
        for j, d in enumerate(discounts):
            one = econ.optimal_spend(C_A, K1, C_R, K2, m, d)
            assert best.customer_equity_per_prospect[i, j] == pytest.approx(one.customer_equity_per_prospect)
            assert best.acquisition_spend_per_prospect[i, j] == pytest.approx(one.acquisition_spend_per_prospect)


def test_large_margin_does_not_overflow():
    # k2·m·(1+d) = 1e4 would overflow e^{…} in the Lambert-W argument; the Wright omega form must not.
    best = econ.optimal_spend(C_A, K1, C_R, K2, 1e6 / 17.3, DISCOUNT)
    assert np.isfinite(best.customer_equity_per_prospect)
    assert best.marginal_cost_to_retain == pytest.approx(best.customer_value_at_acquisition, rel=1e-9)


def test_marginal_costs_are_inverse_slopes():
    # Central differences of the response curves; step 1e-5 gives about 1e-10 relative truncation error.
    h = 1e-5
    for spend in (0.0 + h, 3.0, 10.0):
        slope = (econ.acquisition_rate(spend + h, C_A, K1) - econ.acquisition_rate(spend - h, C_A, K1)) / (2 * h)
        assert econ.marginal_cost_to_acquire(spend, C_A, K1) == pytest.approx(1.0 / slope, rel=1e-7)
        slope = (
            econ.retention_rate_per_period(spend + h, C_R, K2) - econ.retention_rate_per_period(spend - h, C_R, K2)
        ) / (2 * h)
        assert econ.marginal_cost_to_retain(spend, C_R, K2) == pytest.approx(1.0 / slope, rel=1e-7)


def test_average_costs():
    assert econ.average_cost_to_acquire(20.0, 0.2) == pytest.approx(100.0)
    assert econ.average_cost_to_retain(30.0, 0.6) == pytest.approx(50.0)
    assert econ.average_cost_to_acquire(20.0, 0.0) == np.inf


# --- Customer lifetime value ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retention", "discount", "published"),
    [(0.9, 0.10, 4.50), (0.6, 0.16, 1.07)],
)
def test_gupta_lehmann_margin_multiple(retention, discount, published):
    # Gupta & Lehmann (2003), margin multiple r/(1+i−r) for a margin of 1; published to 2 decimals: ±0.005.
    assert econ.clv_margin_at_period_end(1.0, retention, discount) == pytest.approx(published, abs=0.005)


def test_gupta_lehmann_margin_at_period_start():
    # Gupta & Lehmann (2003): M = 18.45, R = 0.50, r = 0.995, d = 0.01 → "≈ 1209", i.e. rounded to units: ±0.5.
    assert econ.clv_margin_at_period_start(18.45, 0.50, 0.995, 0.01) == pytest.approx(1209.0, abs=0.5)


def test_period_start_is_period_end_shifted_by_one_period():
    # Paying margin at the start adds the first margin and undoes one period of discounting and retention.
    start = econ.clv_margin_at_period_start(10.0, 0.0, 0.8, 0.05)
    end = econ.clv_margin_at_period_end(10.0, 0.8, 0.05)
    assert start == pytest.approx(10.0 + end)


def test_berger_nasr_case1():
    # Berger & Nasr (1998), case 1: GC = 260, M = 50, r = 0.75, d = 0.20, n = 10 → 568.78; ±0.005.
    assert econ.clv_berger_nasr_case1(260.0, 50.0, 0.75, 0.20, 10) == pytest.approx(568.78, abs=0.005)


def test_berger_nasr_against_the_direct_sums():
    n = np.arange(0, 15)
    for r, d in [(0.75, 0.20), (1.0, 0.0), (0.0, 0.1)]:
        direct = [
            260 * sum((r / (1 + d)) ** i for i in range(k + 1))
            - 50 * sum(r ** (i - 1) / (1 + d) ** (i - 0.5) for i in range(1, k + 1))
            for k in n
        ]
        assert econ.clv_berger_nasr_case1(260.0, 50.0, r, d, n) == pytest.approx(direct, rel=1e-12)


# --- Shifted-beta-geometric ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "beta", "survivors"), [REGULAR, HIGH_END])
def test_sbg_survival_reproduces_the_published_cohorts(alpha, beta, survivors):
    # Fader & Hardie (2007): the fitted curve against the observed survivors of a cohort of 1000. Under the
    # model the survivors at t are Binomial(1000, S(t)), so the fit's error is about its sd,
    # sqrt(1000·S(1−S)) ≤ 16; two sd is a pointwise 95 % band. (The largest gap, 18 of 1000 for the high-end
    # cohort in year 1, is 1.6 sd.)
    s = econ.sbg_survival(alpha, beta, np.arange(8))
    expected = 1000 * s
    sd = np.sqrt(1000 * s * (1 - s))
    assert np.all(np.abs(expected - np.array(survivors)) <= 2 * sd + 1e-9)


def _range_over_rounding_box(function, alpha, beta):
    """Range of function over the box of (α, β) that round to the published three decimals."""
    grid = [function(alpha + da, beta + db) for da in (-5e-4, 0, 5e-4) for db in (-5e-4, 0, 5e-4)]
    return min(grid), max(grid)


@pytest.mark.parametrize(
    ("params", "lifetime", "published"),
    [
        (HIGH_END, partial(econ.sbg_del, discount_rate_per_period=0.10), 5.922),
        (REGULAR, partial(econ.sbg_del, discount_rate_per_period=0.10), 3.695),
        (HIGH_END, partial(econ.sbg_derl, discount_rate_per_period=0.10, renewals=7), 7.530),
    ],
    ids=["DEL high-end", "DEL regular", "DERL high-end n=7"],
)
def test_sbg_del_and_derl(params, lifetime, published):
    # Fader & Hardie (2010), d = 0.10. α and β are published to three decimals, and DEL moves by up to
    # ±0.0025 across their rounding box (high-end DEL is 5.9226 at the rounded values): the published figure
    # must lie in the range over that box, widened by half a unit of its own last digit (0.0005).
    alpha, beta, _ = params
    low, high = _range_over_rounding_box(lifetime, alpha, beta)
    assert low - 0.0005 <= published <= high + 0.0005
    assert lifetime(alpha, beta) == pytest.approx(published, abs=0.0025)


def test_hyp2f1_against_direct_series():
    # DEL = Σ_{t≥0} S(t)/(1+d)^t and DERL = Σ_{t>n} S(t)/S(n)/(1+d)^{t−n−1}, summed directly over 30 000 periods
    # (the tail is below 1.01^−30000). α near 1 and 2 is where c − a − b = α − 1 is an integer and the
    # hypergeometric function takes special branches. scipy agrees to ~1e-14 for small n, ~1e-10 at n = 50.
    alpha = np.array([0.3, 0.704, 0.999, 1.0, 1.001, 2.0, 5.0])[:, None, None]
    beta = np.array([0.2, 1.182, 3.806, 20.0])[None, :, None]
    discount = np.array([0.01, 0.10, 0.50])[None, None, :]
    t = np.arange(30_000.0)
    log_s = special.betaln(alpha[..., None], beta[..., None] + t) - special.betaln(alpha, beta)[..., None]
    discounting = (1.0 + discount[..., None]) ** -t
    assert econ.sbg_del(alpha, beta, discount) == pytest.approx((np.exp(log_s) * discounting).sum(-1), rel=1e-12)
    for n in (0, 7, 50):
        tail = t > n
        residual = np.where(
            tail, np.exp(log_s - log_s[..., n : n + 1]) * (1.0 + discount[..., None]) ** -(t - n - 1), 0
        )
        assert econ.sbg_derl(alpha, beta, discount, n) == pytest.approx(residual.sum(-1), rel=1e-9)


def test_sbg_del_at_zero_discount_is_expected_lifetime():
    # With d = 0, DEL = E[T] = (α+β−1)/(α−1) for α > 1, and infinite for α ≤ 1.
    assert econ.sbg_del(1.704, 1.182, 0.0) == pytest.approx((1.704 + 1.182 - 1) / 0.704, rel=1e-12)
    assert econ.sbg_del(0.704, 1.182, 0.0) == np.inf


def test_sbg_pmf_and_retention_are_consistent_with_survival():
    alpha, beta = HIGH_END[:2]
    t = np.arange(1, 20)
    s_prev, s = econ.sbg_survival(alpha, beta, t - 1), econ.sbg_survival(alpha, beta, t)
    assert econ.sbg_churn_pmf(alpha, beta, t) == pytest.approx(s_prev - s, rel=1e-12)
    assert econ.sbg_retention_rate(alpha, beta, t) == pytest.approx(s / s_prev, rel=1e-12)


def test_sbg_broadcasts_over_posterior_draws():
    rng = np.random.default_rng(3)
    alpha = rng.gamma(50, 0.668 / 50, size=(200, 1))
    beta = rng.gamma(50, 3.806 / 50, size=(200, 1))
    curve = econ.sbg_survival(alpha, beta, np.arange(13)[None, :])
    assert curve.shape == (200, 13)
    assert econ.sbg_del(alpha[:, 0], beta[:, 0], 0.10).shape == (200,)
    assert econ.sbg_derl(alpha, beta, 0.10, np.arange(5)).shape == (200, 5)
    assert curve[17, 4] == pytest.approx(econ.sbg_survival(alpha[17, 0], beta[17, 0], 4))


# --- Bass ------------------------------------------------------------------------------------------------------------


def test_bass_peak_for_the_mean_coefficients():
    # Sultan, Farley & Lehmann (1990) mean p = 0.03, q = 0.38; t* = 6.19 (±0.005) and F(t*) = 0.4605 (±0.00005).
    t_star = econ.bass_peak_time(0.03, 0.38)
    assert t_star == pytest.approx(6.19, abs=0.005)
    assert econ.bass_cumulative_adoption_at_peak(0.03, 0.38) == pytest.approx(0.4605, abs=0.00005)
    assert econ.bass_cumulative_adoption(0.03, 0.38, t_star) == pytest.approx(0.5 - 0.03 / 0.76, rel=1e-12)


def test_bass_without_imitation_peaks_at_launch():
    assert econ.bass_peak_time(0.05, 0.02) == 0.0
    assert econ.bass_cumulative_adoption_at_peak(0.05, 0.02) == 0.0


def test_bass_recursion_first_step_and_convergence():
    # One step per period from F_0 = 0: the first step adopts exactly p.
    assert econ.bass_adoption_recursion(0.03, 0.38, 1)[1] == pytest.approx(0.03)
    # Euler's scheme has global error O(h): halving the step must roughly halve the gap to the closed form at
    # t = 6 periods, and at 1000 steps per period the gap is below 1e-3.
    exact = econ.bass_cumulative_adoption(0.03, 0.38, 6.0)
    gaps = [abs(econ.bass_adoption_recursion(0.03, 0.38, 6 * k, k)[-1] - exact) for k in (250, 500, 1000)]
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.02)
    assert gaps[1] / gaps[2] == pytest.approx(2.0, rel=0.02)
    assert gaps[2] < 1e-3


def test_bass_recursion_broadcasts():
    path = econ.bass_adoption_recursion(np.array([0.01, 0.03]), np.array([[0.2], [0.4]]), 36, 12)
    assert path.shape == (2, 2, 37)
    assert np.all(np.diff(path, axis=-1) > 0)


# --- Bad input -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: econ.acquisition_rate(-1.0, 0.1, 0.5), "spend_per_prospect"),
        (lambda: econ.acquisition_rate(1.0, 1.2, 0.5), "ceiling"),
        (lambda: econ.retention_rate_per_period(1.0, 0.8, -0.1), "k_per_unit_spend"),
        (lambda: econ.calibrate_k_per_unit_spend(0.10, 0.10, 1.0), "observed_rate"),
        (lambda: econ.calibrate_k_per_unit_spend(0.04, 0.10, 0.0), "observed_spend"),
        (lambda: econ.calibrate_k_per_unit_spend(np.array([0.04, 0.2]), 0.10, 1.0), "observed_rate"),
        (lambda: econ.customer_equity_per_prospect(20, 1.5, 200, 30, 0.6, 0.1), "acquisition_rate"),
        (lambda: econ.customer_equity_per_prospect(20, 0.2, 200, 30, 0.6, -1.0), "discount_rate_per_period"),
        (lambda: econ.customer_value_at_acquisition(200, 0.95, 30, -0.1), "retention_rate_per_period"),
        (lambda: econ.optimal_spend(0.1, 0.5, 0.8, 0.2, 50.0, np.nan), "discount_rate_per_period"),
        (lambda: econ.clv_margin_at_period_end(10.0, 1.0, 0.0), "retention_rate_per_period"),
        (lambda: econ.clv_berger_nasr_case1(260, 50, 0.75, 0.2, 2.5), "periods"),
        (lambda: econ.sbg_survival(0.0, 1.0, 1), "alpha"),
        (lambda: econ.sbg_churn_pmf(1.0, 1.0, 0), "t"),
        (lambda: econ.sbg_del(1.0, 1.0, -0.05), "discount_rate_per_period"),
        (lambda: econ.sbg_derl(1.0, 1.0, 0.1, -1), "renewals"),
        (lambda: econ.bass_peak_time(0.0, 0.38), "innovation_per_period"),
        (lambda: econ.bass_adoption_recursion(0.5, 0.8, 10), "steps_per_period"),
    ],
)
def test_impossible_inputs_name_the_parameter(call, name):
    with pytest.raises(InputError) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(name)
    assert "\n" not in message
