"""NPS: the domain brief's published examples, the pooled model and its command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from panelgen import simulate_panel
from tenure.models.nps import NPSModel, dirichlet_nps_draws, nps_counts, nps_posterior
from tenure.models.panel import read_panel
from typer.testing import CliRunner

import tenure.commands.fit_panel  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app
from tenure.metrics import nps_wald_interval


def test_wald_interval_domain_example() -> None:
    # the NPS Wald interval with the covariance term: n = 1000, 250 promoters, 75 detractors -> (0.1414, 0.2086).
    lo, hi = nps_wald_interval(250, 75, 1000)
    assert round(lo, 4) == 0.1414 and round(hi, 4) == 0.2086


def test_wald_interval_quantiles_are_the_standard_normal_ones() -> None:
    # Two-sided 90 / 95 / 99 % normal quantiles (Abramowitz & Stegun table 26.5, to the last double digit),
    # now from scipy.special.ndtri instead of scipy.stats.norm.ppf.
    from tenure.metrics import _z_quantile

    assert _z_quantile(0.90) == 1.6448536269514722
    assert _z_quantile(0.95) == 1.959963984540054
    assert _z_quantile(0.99) == 2.5758293035489004


def test_dirichlet_posterior_domain_example_exact() -> None:
    # Dirichlet-multinomial moments: prior (1,1,1), (D, N, P) = (10, 50, 80) -> mean 0.4895, sd 0.0530.
    # Analytic: a' = (11, 51, 81), a'0 = 143; mean 70/143; var 8256 / (143² · 144).
    mean, sd = nps_posterior((10, 50, 80), (1, 1, 1))
    assert mean == pytest.approx(70 / 143, abs=1e-15)
    assert sd == pytest.approx(np.sqrt(8256 / (143**2 * 144)), abs=1e-15)
    assert round(mean, 4) == 0.4895 and round(sd, 4) == 0.0530


def test_dirichlet_draws_match_the_analytic_moments() -> None:
    # 400 000 draws: Monte-Carlo se of the mean is 0.053/√4e5 ≈ 8e-5, so 5e-4 is > 6 se.
    draws = dirichlet_nps_draws(np.tile([11.0, 51.0, 81.0], (400_000, 1)), np.random.default_rng(0))
    assert abs(draws.mean() - 0.48951) < 5e-4 and abs(draws.std() - 0.05295) < 5e-4


def test_counts_per_segment_and_period() -> None:
    panel = pl.DataFrame({
        "customer_id": [1, 1, 2, 3], "period": [0, 1, 0, 0], "churned": [False] * 4,
        "trust": [3] * 4, "enthusiasm": [3] * 4, "satisfaction": [3] * 4, "products": [1] * 4,
        "cross_sold": [0] * 4, "nps": [10, None, 6, 8],
    })
    counts = nps_counts(read_panel(panel))
    assert counts.row(0, named=True) == {"segment": "all", "period": 0, "detractors": 1, "passives": 1,
                                         "promoters": 1, "respondents": 3}
    assert counts.height == 1  # the unanswered period-1 row is not counted


@pytest.mark.slow
def test_pooled_model_cells_near_raw_nps_and_cli(tmp_path: Path) -> None:
    """~30 s: numba compilation of the Dirichlet-multinomial graph dominates."""
    df, _ = simulate_panel(3000, 12, seed=3)
    df.write_parquet(tmp_path / "panel.parquet")
    out = tmp_path / "nps"
    result = CliRunner().invoke(fit_app, ["nps", str(tmp_path / "panel.parquet"), "--out", str(out),
                                          "--draws", "300", "--tune", "300", "--chains", "2"])
    assert result.exit_code == 0, result.output
    cells = pl.read_csv(out / "nps_by_segment_period.csv")
    # Partial pooling shrinks each cell towards the pooled NPS: never further from it than its raw NPS
    # (+0.02 for Monte-Carlo error of 600 draws, sd ≈ 0.03/√600 ≈ 0.001, and period effects).
    pooled = (cells["promoters"].sum() - cells["detractors"].sum()) / cells["respondents"].sum()
    assert ((cells["posterior_mean"] - pooled).abs() <= (cells["nps"] - pooled).abs() + 0.02).all()
    assert (out / "posterior.nc").exists() and (out / "summary.csv").exists()


def test_model_builds_with_named_parameter() -> None:
    df, _ = simulate_panel(200, 4, seed=2)
    model = NPSModel(df)
    assert "nps_overall" in model.model.named_vars
