"""TRI*M-style index: scaling, weights, typology, grid, bootstrap and the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from panelgen import simulate_panel
from tenure.models import trim as tm
from tenure.models.panel import read_panel
from typer.testing import CliRunner

import tenure.commands.fit_panel  # noqa: F401  (registers the commands on fit_app)
from tenure.commands.fit import fit_app
from tenure.errors import InputError


def _panel(items: list[list[int]], **extra: list) -> pl.DataFrame:
    n = len(items)
    cols = dict(zip(("trim_overall", "trim_recommend", "trim_repurchase", "trim_advantage"),
                    np.array(items).T.tolist(), strict=True))
    return read_panel(pl.DataFrame({
        "customer_id": list(range(n)), "period": [0] * n, "churned": [False] * n, "trust": [3] * n,
        "enthusiasm": [3] * n, "satisfaction": [3] * n, "products": [1] * n, "cross_sold": [0] * n,
        **cols, **extra,
    }))


def test_index_scaling_all_top_100_all_bottom_0_and_weights() -> None:
    # the TRI*M-style scaling (docs/models-panel.md): all-top answers give 100, all-bottom 0.
    resp = tm.respondents(_panel([[5, 5, 5, 5], [1, 1, 1, 1], [5, 1, 1, 1]]))
    assert resp["index"].to_list() == [100.0, 0.0, 25.0]
    # Weight only the first item: (5,1,1,1) -> 100.
    weighted = tm.respondents(_panel([[5, 1, 1, 1]]), weights=[1, 0, 0, 0])
    assert weighted["index"].to_list() == [100.0]


def test_weights_are_checked() -> None:
    with pytest.raises(InputError, match="--weights"):
        tm.parse_weights("1,1,1")
    with pytest.raises(InputError, match="--weights"):
        tm.parse_weights("1,-1,1,1")


def test_typology_rules() -> None:
    resp = tm.respondents(_panel([[5, 5, 4, 1], [4, 2, 3, 3], [2, 5, 5, 3], [1, 2, 2, 1]]))
    assert resp["type"].to_list() == ["apostles", "mercenaries", "hostages", "terrorists"]


def test_bootstrap_mean_matches_sample_mean_and_its_spread() -> None:
    df, _ = simulate_panel(2000, 6, seed=4)
    resp = tm.respondents(read_panel(df))
    idata = tm.bootstrap_posterior(resp, draws=2000, chains=2, seed=1)
    draws = idata.posterior["trim_index"].sel(segment="all").values
    # The Bayesian bootstrap mean of a mean is the sample mean, its sd the usual se (Rubin 1981).
    se = resp["index"].std() / np.sqrt(resp.height)
    assert abs(draws.mean() - resp["index"].mean()) < 0.1 * se
    assert abs(draws.std() / se - 1) < 0.1
    shares = idata.posterior["typology_share"].sel(segment="all").mean(("chain", "draw")).values
    assert shares.sum() == pytest.approx(1.0)


def test_grid_quadrants() -> None:
    # overall and recommend move together with the index; advantage is noise; stated: overall, advantage high.
    rng = np.random.default_rng(0)
    base = rng.integers(1, 6, 500)
    items = np.c_[base, np.clip(base + rng.integers(-1, 2, 500), 1, 5), np.clip(base + rng.integers(-2, 3, 500), 1, 5),
                  rng.integers(1, 6, 500)]
    imp = {"importance_overall": [9.0] * 500, "importance_recommend": [3.0] * 500,
           "importance_repurchase": [2.0] * 500, "importance_advantage": [8.0] * 500}
    panel = _panel(items.tolist(), **imp)
    grid = tm.grid_table(panel, tm.respondents(panel))
    quad = dict(zip(grid["item"], grid["quadrant"], strict=True))
    assert quad == {"overall": "motivator", "recommend": "hidden opportunity", "repurchase": "hidden opportunity",
                    "advantage": "hygiene factor"}


def test_cli_trim_writes_tables(tmp_path: Path) -> None:
    df, _ = simulate_panel(500, 6, seed=5)
    df.write_csv(tmp_path / "p.csv")
    result = CliRunner().invoke(fit_app, ["trim", str(tmp_path / "p.csv"), "--out", str(tmp_path / "o"),
                                          "--draws", "200", "--weights", "2,1,1,1"])
    assert result.exit_code == 0, result.output
    for name in ("posterior.nc", "summary.csv", "forest.png", "trim_index.csv", "typology.csv"):
        assert (tmp_path / "o" / name).exists()
    assert not (tmp_path / "o" / "grid.csv").exists()  # no importance columns, no grid
    bad = CliRunner().invoke(fit_app, ["trim", str(tmp_path / "p.csv"), "--out", str(tmp_path / "b"),
                                       "--weights", "1,1"])
    assert bad.exit_code == 2 and not (tmp_path / "b").exists()
