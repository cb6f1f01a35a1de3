"""Posterior predictive checks from aggregates: the observed series is the data's, the replicated one the model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tenure.models.bgnbd import BGNBDModel
from tenure.models.clv_predict import posterior_draws
from tenure.models.ppc import PPC_DRAWS, draw_indices
from tenure.models.sbg import SBGModel, sbg_survival
from typer.testing import CliRunner

import tenure.commands.fit_clv  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app

DATA = Path(__file__).resolve().parents[1] / "data"
# Fader & Hardie (2007), "How to project customer retention", Table 1: the "regular" and "high end" cohorts
REGULAR = [1000, 631, 468, 380, 326, 289, 262, 241]
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]
MLE_REGULAR = (0.704, 1.182)  # ibid., the regular cohort's estimates of (alpha, beta)


def cohorts(**alive: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"cohort": [c for c, a in alive.items() for _ in a],
                         "period": [t for a in alive.values() for t in range(len(a))],
                         "alive": [v for a in alive.values() for v in a]})


@pytest.fixture(scope="module")
def regular():
    model = SBGModel(cohorts(regular=REGULAR))
    model.fit(method="map", draws=300, chains=1, seed=3)
    return model


def test_sbg_observed_survivors_are_the_cohort_table(regular):
    rows = regular.result.predictive_check["rows"]
    assert [r["x"] for r in rows] == list(range(8))
    # one cohort watched to one horizon: Kaplan-Meier is the table (to rounding of the running product)
    assert [r["observed"] for r in rows] == pytest.approx(REGULAR, rel=1e-12)


def test_sbg_expected_survivors_are_the_closed_form_over_the_checked_draws(regular):
    check = regular.result.predictive_check
    d = posterior_draws(regular.idata, ["alpha", "beta"])
    pick = draw_indices(len(d["alpha"]))
    assert check["draws"] == len(pick) == min(PPC_DRAWS, 300)
    s = 1000 * sbg_survival(d["alpha"][pick, None], d["beta"][pick, None], np.arange(8)[None, :])
    rows = check["rows"]
    np.testing.assert_allclose([r["mean"] for r in rows], s.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose([r["q05"] for r in rows], np.quantile(s, 0.05, axis=0), rtol=1e-12)
    # the published MLE's curve lies inside the band, and so does every observed point of this sBG-shaped cohort
    mle = 1000 * sbg_survival(*MLE_REGULAR, np.arange(8))
    assert all(r["q05"] <= m <= r["q95"] for r, m in zip(rows, mle, strict=True))
    assert all(r["q05"] <= r["observed"] <= r["q95"] for r in rows[1:])


def test_sbg_per_cohort_checks_each_cohort():
    model = SBGModel(cohorts(regular=REGULAR, highend=HIGH_END), pooled=False)
    rows = model.fit(method="map", draws=200, chains=1, seed=1).predictive_check["rows"]
    for name, alive in (("regular", REGULAR), ("highend", HIGH_END)):
        assert [r["observed"] for r in rows if r["group"] == name] == pytest.approx(alive, rel=1e-12)


def test_sbg_kaplan_meier_counts_records_that_end_early():
    # 1 000 customers: 200 churn in period 1, 300 are censored after it, 50 churn in period 2 of the 500 at risk
    records = pl.DataFrame({"periods": [1, 1, 2, 2], "churned": [1, 0, 1, 0], "count": [200, 300, 50, 450]})
    model = SBGModel(records, time_unit="months")
    rows = model.fit(method="map", draws=100, chains=1).predictive_check["rows"]
    assert [r["observed"] for r in rows] == pytest.approx([1000, 1000 * 0.8, 1000 * 0.8 * (1 - 50 / 500)])


@pytest.fixture(scope="module")
def cdnow_fit():
    model = BGNBDModel(pl.read_csv(DATA / "cdnow_customers_summary.csv"), time_unit="weeks")
    model.fit(method="map", draws=200, chains=1, seed=1)
    return model


def test_bgnbd_observed_counts_are_the_data(cdnow_fit):
    check = cdnow_fit.result.predictive_check
    freq = cdnow_fit.data["frequency"].to_numpy().astype(int)
    w = cdnow_fit.data["count"].to_numpy()
    expected = np.bincount(np.minimum(freq, 7), weights=w, minlength=8)
    assert [r["observed"] for r in check["rows"]] == list(expected)
    assert expected[0] == 1411 and expected.sum() == 2357  # CDNOW: 1 411 of 2 357 customers never came back
    assert [r["x_label"] for r in check["rows"]][-1] == "7+"


def test_bgnbd_replicated_zeros_match_the_closed_form(cdnow_fit):
    # P(X(T) = 0) = (α / (α + T))^r under the BG/NBD: no purchase, so no chance to drop out (FHL 2005, eq. 3)
    check = cdnow_fit.result.predictive_check
    d = posterior_draws(cdnow_fit.idata, ["r", "alpha"])
    pick = draw_indices(len(d["r"]))
    T, w = cdnow_fit.data["T"].to_numpy(), cdnow_fit.data["count"].to_numpy()
    zeros = ((d["alpha"][pick, None] / (d["alpha"][pick, None] + T)) ** d["r"][pick, None]) @ w
    # Monte Carlo: the mean over 100 replicates of ~2 357 Bernoulli(≈0.6) customers has sd ≈ 24 / 10; 4 sd
    assert check["rows"][0]["mean"] == pytest.approx(zeros.mean(), abs=10)
    assert sum(r["mean"] for r in check["rows"]) == pytest.approx(2357)  # every replicate has every customer


def test_the_check_is_fixed_by_the_seed(cdnow_fit):
    again = BGNBDModel(cdnow_fit.data.select("frequency", "recency", "T", "count"), time_unit="weeks")
    again.fit(method="map", draws=200, chains=1, seed=1)
    assert again.result.predictive_check == cdnow_fit.result.predictive_check


def test_the_fit_folder_lists_ppc_csv_in_its_manifest(tmp_path):
    cohorts(regular=REGULAR).write_csv(tmp_path / "c.csv")
    res = CliRunner().invoke(fit_app, ["sbg", str(tmp_path / "c.csv"), "-o", str(tmp_path / "fit"), "--method",
                                       "map", "--draws", "100"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "fit" / "manifest.json").read_text())
    assert "ppc.csv" in manifest["files"]
    table = pl.read_csv(tmp_path / "fit" / "ppc.csv")
    assert table["observed"].to_list() == pytest.approx(REGULAR, rel=1e-12)
    assert {"group", "x", "mean", "q05", "q95"} <= set(table.columns)
