"""BG/BB: the published donation-data estimates and the prediction formulas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tenure.models.bgbb import BGBBModel, bgbb_expected_purchases, bgbb_logp, bgbb_p_alive
from typer.testing import CliRunner

import tenure.commands.fit_clv  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app

DATA = Path(__file__).resolve().parents[1] / "data"
# Fader, Hardie & Shang (2010), donations of the 1995 cohort: alpha 1.204, beta 0.750, gamma 0.657,
# delta 2.783, log-likelihood -33,225.6.
PUBLISHED = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}


@pytest.fixture(scope="module")
def donations() -> pl.DataFrame:
    return pl.read_csv(DATA / "donations.csv")


@pytest.fixture(scope="module")
def fitted(donations):
    model = BGBBModel(donations, time_unit="years")
    model.fit(method="map", draws=500, chains=2, seed=0)
    return model


def test_published_estimates(donations, fitted):
    assert fitted.n_customers == 11_104
    mode = json.loads(fitted.idata.attrs["tenure_map"])
    # Three decimals: the MLE is within 0.0005 of each; 1e-3 leaves room for the optimiser's tolerance.
    for name, value in PUBLISHED.items():
        assert mode[name] == pytest.approx(value, abs=1e-3), name
    x, t_x, n, w = (donations[c].to_numpy().astype(float) for c in ("frequency", "recency", "n", "n_custs"))
    loglike = float((w * bgbb_logp(*(mode[k] for k in PUBLISHED), x, t_x, n).eval()).sum())
    assert loglike == pytest.approx(-33225.6, abs=0.05)


def test_prediction_formulas_match_lifetimes():
    # lifetimes 0.11.3 BetaGeoBetaBinomFitter at the published estimates:
    # conditional_probability_alive(1, x, t_x, n) and conditional_expected_number_of_purchases_up_to_time(5, ...).
    p = [np.array([v]) for v in PUBLISHED.values()]
    x, t_x, n = np.array([0, 1, 3, 6.0]), np.array([0, 2, 6, 6.0]), np.full(4, 6.0)
    np.testing.assert_allclose(bgbb_p_alive(*p, x, t_x, n)[0], [0.10801658, 0.25455648, 0.93040254, 0.93040254],
                               rtol=1e-7)
    np.testing.assert_allclose(bgbb_expected_purchases(5, *p, x, t_x, n)[0],
                               [0.07280288, 0.31407066, 2.18960217, 3.75211561], rtol=1e-7)


def test_predictions_from_the_posterior(fitted):
    alive = fitted.probability_alive()
    assert alive.table.height == 22
    first = alive.table.filter(alive.table["frequency"] == 6).row(0, named=True)
    assert first["lower"] < 0.9304 < first["upper"]
    purchases = fitted.expected_purchases(5, keep_draws=True)
    assert purchases.draws.shape == (1000, 22)


def test_cli_bgbb_map(tmp_path):
    out = tmp_path / "fit"
    result = CliRunner().invoke(fit_app, ["bgbb", str(DATA / "donations.csv"), "--out", str(out), "--method", "map",
                                          "--draws", "200", "--chains", "2"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"posterior.nc", "summary.csv", "forest.png", "manifest.json",
                                              "report.html", "ppc.csv"}
    assert "11,104 customers in 22 unique rows" in " ".join(result.output.split())
