"""Analytic special cases the simulator must reproduce (Fader & Hardie 2007; Bass 1969; Reichheld 2003).

Tolerances: each comparison is of a count against its binomial expectation, with
4 standard errors; with the seed fixed the test is deterministic, and a wrong
engine (a hazard off by 1 %, a missing cohort) moves the counts by far more.
"""

import numpy as np
from scipy.special import betaln
from tenure.engine.simulator import Simulator, paid_acquisition_rate

from tenure.metrics import nps_wald_interval


def _survival(result):
    c = result.cohorts.filter(result.cohorts["cohort"] == 0).sort("age")
    return c["survivors"].to_numpy(), int(c["cohort_size"][0])


def _check_survival(observed, n, expected):
    se = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(observed / n - expected) <= 4 * se + 1e-12), (observed / n, expected)


def test_sbg_survival_regular_and_high_end(quiet):
    # Fader & Hardie (2007): churn probability ~ Beta(alpha, beta) once per customer gives
    # S(t) = B(alpha, beta + t) / B(alpha, beta); regular and high-end segments of their Table 1.
    for alpha, beta in ((0.704, 1.182), (0.668, 3.806)):
        sc = quiet(200_000, 7, segments=[{"churn_alpha": alpha, "churn_beta": beta}])
        surv, n = _survival(Simulator(sc).run())
        t = np.arange(8)
        _check_survival(surv, n, np.exp(betaln(alpha, beta + t) - betaln(alpha, beta)))


def test_constant_hazard_is_geometric(quiet):
    # With no heterogeneity every customer churns with h = alpha / (alpha + beta) = 0.05.
    sc = quiet(100_000, 24, segments=[{"churn_alpha": 1.0, "churn_beta": 19.0, "churn_heterogeneity": "none"}])
    surv, n = _survival(Simulator(sc).run())
    _check_survival(surv, n, 0.95 ** np.arange(25))


def test_word_of_mouth_alone_converges_to_bass(quiet):
    # Bass (1969) with the Sultan, Farley & Lehmann (1990) means p = 0.03, q = 0.38 per year,
    # run with monthly steps (p/12, q/12). Every customer is a promoter and nobody churns, so
    # each prospect adopts with 1 - (1 - p)(1 - q/M)^A: the agent-level Bass form. The monthly
    # Euler step lags the continuous curve by at most 0.009 (computed from the recursion);
    # sampling adds about 0.001 at M = 200 000.
    p, q, m = 0.03, 0.38, 200_000
    sc = quiet(
        1, 110,
        segments=[{"churn_alpha": 1e-12, "churn_beta": 1.0, "churn_heterogeneity": "none"}],
        acquisition={"organic_rate": p / 12, "referral_rate": q / 12},
        market={"size": m},
        survey={"nps_intercept": 10.0, "nps_satisfaction": 0.0, "nps_trust": 0.0, "nps_enthusiasm": 0.0},
    )
    res = Simulator(sc).run().periods
    adopters = res["active"].to_numpy() / m
    t_years = np.arange(adopters.size) / 12
    bass = (1 - np.exp(-(p + q) * t_years)) / (1 + q / p * np.exp(-(p + q) * t_years))
    assert np.max(np.abs(adopters - bass)) < 0.015
    # The adoption peak: vertex of a parabola through the monthly adoptions around their maximum
    # (the curve is flat near its top, so a plain argmax would chase sampling noise).
    monthly = np.diff(adopters)
    top = int(np.argmax(monthly))
    window = np.arange(top - 12, top + 13)
    c2, c1, _ = np.polyfit(window, monthly[window], 2)
    peak = -c1 / (2 * c2)
    t_star = np.log(q / p) / (p + q) * 12  # 6.19 years = 74.3 months
    assert abs(peak - t_star) <= 1.5  # the Euler step lags by about half a month
    assert abs(np.interp(t_star, np.arange(adopters.size), adopters) - 0.4605) < 0.015


def test_paid_acquisition_follows_blattberg_deighton(quiet):
    # a(A) = c (1 - exp(-k A)) per prospect (Blattberg & Deighton 1996).
    m = 2_000_000
    for spend_per_prospect in (0.05, 0.3, 2.0):
        budget = spend_per_prospect * (m - 1)
        sc = quiet(1, 1, acquisition={"budget": budget, "ceiling": 0.01, "k": 3.0}, market={"size": m},
                   segments=[{"churn_alpha": 1e-12, "churn_beta": 1.0, "churn_heterogeneity": "none"}])
        row = Simulator(sc).run().periods.row(0, named=True)
        expected = 0.01 * (1 - np.exp(-3.0 * spend_per_prospect))
        assert abs(paid_acquisition_rate(sc, spend_per_prospect) - expected) < 1e-15
        n = row["prospects"]
        assert abs(row["acquired_paid"] / n - expected) <= 4 * np.sqrt(expected * (1 - expected) / n)


def test_nps_interval_matches_domain_example():
    # the NPS Wald interval with the covariance term: n = 1000, 250 promoters, 75 detractors -> (0.1414, 0.2086).
    lo, hi = nps_wald_interval(250, 75, 1000)
    assert round(lo, 4) == 0.1414 and round(hi, 4) == 0.2086
