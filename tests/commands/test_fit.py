"""`tenure fit` on the one CLI grammar, and the Python API that is its twin.

The published numbers are the BG/NBD maximum-likelihood estimates on the CDNOW sample of
2,357 customers (Fader, Hardie & Lee 2005, "Counting your customers the easy way",
Marketing Science 24(2): r 0.243, α 4.414, a 0.793, b 2.426). With flat priors the MAP
estimate is the MLE, so it must round to the published digits.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np
import polars as pl
import pytest
from tenure.models import MODELS, load, model_class
from typer.testing import CliRunner

import tenure.commands.fit_clv  # registers the commands on fit_app
import tenure.commands.fit_panel  # noqa: F401
from tenure.commands._options import DEFAULT_SEED
from tenure.commands.fit import fit_app
from tenure.errors import InputError

CDNOW = Path(__file__).resolve().parents[1] / "data" / "cdnow_customers_summary.csv"
#: The published MLE, to the three decimals printed in the paper (see the module docstring).
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
runner = CliRunner()


def _bgnbd(out: Path, *args: str):
    return runner.invoke(fit_app, ["bgnbd", str(CDNOW), "-o", str(out), *args])


def _assert_published(values: dict[str, float]) -> None:
    assert {name: round(float(values[name]), 3) for name in PUBLISHED} == PUBLISHED


def test_map_on_cdnow_prints_and_writes_the_published_mle(tmp_path: Path) -> None:
    out = tmp_path / "fit"
    result = _bgnbd(out, "--method", "map", "--draws", "200", "--chains", "2")
    assert result.exit_code == 0, result.output
    summary = pl.read_csv(out / "summary.csv")
    # The mode is the estimate; the interval is the Laplace approximation's; no chain diagnostics.
    assert summary.columns == ["parameter", "mode", "sd", "eti90_low", "eti90_high"]
    _assert_published(dict(zip(summary["parameter"], summary["mode"], strict=True)))
    # The console table's rows: │ parameter │ mode │ sd │ interval │, the mode printed to four digits.
    printed = {cells[1].strip(): float(cells[2]) for cells in (line.split("│") for line in result.output.splitlines())
               if len(cells) > 3 and cells[1].strip() in PUBLISHED}
    _assert_published(printed)
    assert printed["r"] == 0.2426
    assert "mode" in result.output and "R-hat" not in result.output and "ESS" not in result.output
    assert "90 % equal-tailed interval" in result.output


def test_map_on_cdnow_in_python_gives_the_same_mode() -> None:
    from tenure.models import BGNBDModel

    result = BGNBDModel(pl.read_csv(CDNOW), time_unit="weeks").fit(method="map", draws=200, chains=2)
    summary = result.summary()
    _assert_published(dict(zip(summary["parameter"], summary["mode"], strict=True)))
    assert result.method == "map" and result.time_unit == "weeks" and result.model_name == "bgnbd"


@pytest.mark.parametrize(("method", "columns"), [
    ("mcmc", ["parameter", "mean", "sd", "eti90_low", "eti90_high", "r_hat", "ess_bulk"]),
    ("advi", ["parameter", "mean", "sd", "eti90_low", "eti90_high"]),
])
def test_summary_columns_name_the_estimate_and_the_interval(tmp_path: Path, method: str, columns: list[str]) -> None:
    out = tmp_path / "fit"
    result = _bgnbd(out, "--method", method, "--draws", "200", "--tune", "200", "--chains", "2", "-s", "3")
    assert result.exit_code == 0, result.output
    summary = pl.read_csv(out / "summary.csv")
    assert summary.columns == columns
    assert ("R-hat" in result.output) == (method == "mcmc")
    # Both fit CDNOW: the estimates are near the MLE (posterior sd of a is about 0.19, of b 0.7).
    assert summary.filter(pl.col("parameter") == "r")["mean"][0] == pytest.approx(0.243, abs=0.02)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "tenure fit bgnbd" and manifest["seed"] == 3
    assert set(manifest["files"]) == {"posterior.nc", "summary.csv", "forest.png", "ppc.csv"}


def test_save_load_round_trip_and_loo(tmp_path: Path) -> None:
    from tenure.models import GammaGammaModel

    data = pl.read_csv(CDNOW.with_name("cdnow_customers_summary_with_transactions.csv"))
    result = GammaGammaModel(data, priors={"p": {"dist": "Gamma", "alpha": 2.0, "beta": 0.2}}).fit(
        method="map", draws=300, chains=2, seed=7)
    path = result.save(tmp_path / "spend" / "posterior.nc")
    back = load(tmp_path / "spend")
    assert back.model_name == "gamma-gamma" and back.method == "map"
    assert back.config["priors"]["p"] == {"dist": "Gamma", "alpha": 2.0, "beta": 0.2}
    assert back.config["fit"] == {"method": "map", "draws": 300, "tune": 0, "chains": 2, "seed": 7}
    assert back.summary().equals(result.summary())
    np.testing.assert_array_equal(back.posterior["p"].values, result.posterior["p"].values)
    # The file is ArviZ's layout: az.from_netcdf reads it, groups and attributes alike. A MAP fit keeps the
    # observed rows but not the pointwise log-likelihood (PSIS-LOO is for MCMC draws; see base.py).
    idata = az.from_netcdf(str(path))
    assert set(idata.groups()) == {"posterior", "observed_data"}
    assert idata.attrs["tenure_method"] == "map" and idata.attrs["tenure_log_likelihood"] == "MCMC fits only"
    np.testing.assert_array_equal(idata.posterior["p"].values, result.posterior["p"].values)
    # On demand it is there for any fit: per compressed row, weighted by its count; az.loo reads it.
    model = GammaGammaModel(data, priors={"p": {"dist": "Gamma", "alpha": 2.0, "beta": 0.2}})
    loglik = model.pointwise_log_likelihood(back.data)
    idata.add_groups(log_likelihood={k: v.reshape(2, 300, -1) for k, v in loglik.items()})
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.elpd_loo < 0
    # FitResult.idata is an arviz.InferenceData sharing the attributes: a change through it shows in .attrs.
    back.idata.attrs["note"] = "x"
    assert isinstance(back.idata, az.InferenceData) and back.attrs["note"] == "x"


def test_loo_on_a_panel_fit() -> None:
    from tenure.models import RetentionModel

    result = RetentionModel(_score_panel(300, 6, seed=1)).fit(draws=100, tune=100, chains=2, seed=1)
    assert "churn_events" in result.idata.log_likelihood
    assert np.isfinite(az.loo(result.idata).elpd_loo)


def test_calibrate_reads_retention_and_cross_sell_fits_through_load(tmp_path: Path) -> None:
    from tenure.models import CrossSellModel, RetentionModel
    from tenure.simulations.calibrate import target_from_fits

    from tenure.scenario import load_scenario

    panel = _score_panel(300, 6, seed=5)
    RetentionModel(panel).fit(method="map", draws=100, chains=1).save(tmp_path / "r")
    CrossSellModel(panel).fit(method="map", draws=100, chains=1).save(tmp_path / "x")
    target = target_from_fits([tmp_path / "r", tmp_path / "x"], load_scenario(), 50, None, seed=1)
    assert target.groups == ("retention", "cross_sell") and target.n_customers == 300
    assert target.replicates.shape == (50, len(target.names))


def test_a_rerun_into_the_same_out_leaves_only_the_new_run(tmp_path: Path) -> None:
    out = tmp_path / "fit"
    panel = tmp_path / "panel.csv"
    _score_panel(200, 3, seed=2).write_csv(panel)
    first = runner.invoke(fit_app, ["nps", str(panel), "-o", str(out), "--method", "map", "--draws", "50",
                                    "--chains", "1"])
    assert first.exit_code == 0, first.output
    assert (out / "nps_by_segment_period.csv").exists()
    second = _bgnbd(out, "--method", "map", "--draws", "50", "--chains", "1")
    assert second.exit_code == 0, second.output
    assert sorted(p.name for p in out.iterdir()) == ["forest.png", "manifest.json", "posterior.nc", "ppc.csv",
                                                     "report.html", "summary.csv"]
    assert load(out).model_name == "bgnbd"


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    pl.read_csv(CDNOW).with_columns(recency=pl.col("T") + 1).write_csv(bad)
    result = runner.invoke(fit_app, ["bgnbd", str(bad), "-o", str(tmp_path / "o"), "--method", "map"])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and len(result.output.strip().splitlines()) == 1
    assert "recency" in result.output and not (tmp_path / "o").exists()
    unknown = runner.invoke(fit_app, ["bgnbd", str(CDNOW), "-o", str(tmp_path / "o"), "--method", "nuts"])
    assert unknown.exit_code == 2 and "--method" in unknown.output


def test_trim_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    panel = tmp_path / "panel.csv"
    _score_panel(400, 2, seed=3).write_csv(panel)
    args = ["--seed", "5", "--draws", "100", "--chains", "2"]
    for name in ("a", "b"):
        result = runner.invoke(fit_app, ["trim", str(panel), "-o", str(tmp_path / name), *args])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "summary.csv").read_bytes() == (tmp_path / "b" / "summary.csv").read_bytes()
    a, b = (load(tmp_path / n) for n in "ab")
    np.testing.assert_array_equal(a.posterior["trim_index"].values, b.posterior["trim_index"].values)
    assert a.method == "bayesian-bootstrap" and "r_hat" not in a.summary().columns


def test_no_fit_command_uses_the_periods_flag_and_all_share_the_sampler_options() -> None:
    from typer.main import get_command

    group = get_command(fit_app)
    for name, command in group.commands.items():
        flags = {opt for p in command.params for opt in p.opts}
        assert "-t" not in flags, name  # -t is months simulated
        assert {"-o", "--out", "-s", "--seed", "--draws", "--chains"} <= flags, name
        if name != "trim":
            assert {"--method", "--tune", "--priors"} <= flags, name
            seed = next(p for p in command.params if "--seed" in p.opts)
            assert seed.default == DEFAULT_SEED, name


def test_python_fit_has_the_command_line_defaults() -> None:
    from tenure.models.base import BayesianModel

    defaults = {k: v.default for k, v in inspect.signature(BayesianModel.fit).parameters.items() if k != "self"}
    assert defaults == {"method": "mcmc", "draws": 1000, "tune": 1000, "chains": 4, "seed": DEFAULT_SEED,
                        "progress": False}


def test_the_registry_names_every_family() -> None:
    assert set(MODELS) == {"retention", "cross-sell", "joint", "nps", "trim", "sbg", "bgnbd",
                                         "gamma-gamma", "bgbb", "pnbd", "mbgnbd"}
    for name in MODELS:
        assert model_class(name).name == name
    assert set(MODELS) <= set(get_fit_commands())


def get_fit_commands() -> set[str]:
    from typer.main import get_command

    return set(get_command(fit_app).commands)


def test_a_raw_frame_is_validated_as_the_command_line_does() -> None:
    from tenure.models import RetentionModel

    frame = _score_panel(20, 3, seed=4).with_columns(trust=pl.lit(6))
    with pytest.raises(InputError, match="column 'trust': 6 is off the 1–5 scale at row 1"):
        RetentionModel(frame)
    with pytest.raises(InputError, match="missing required column 'products'"):
        RetentionModel(_score_panel(20, 3, seed=4).drop("products"))


def test_the_blas_warning_never_reaches_a_python_user() -> None:
    code = ("import polars as pl\nfrom tenure.models import GammaGammaModel\n"
            f"GammaGammaModel(pl.read_csv({str(CDNOW.with_name('cdnow_customers_summary_with_transactions.csv'))!r}))"
            ".fit(method='map', draws=10, chains=1)\n")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "BLAS" not in done.stderr


def _score_panel(customers: int, periods: int, seed: int) -> pl.DataFrame:
    """A small panel with every survey column answered (scores, NPS, TRI*M items), two segments."""
    rng = np.random.default_rng(seed)
    cid = np.repeat(np.arange(customers), periods)
    period = np.tile(np.arange(periods), customers)
    churned = rng.random(customers * periods) < 0.08
    # A customer's rows stop after the first churn.
    first = pl.DataFrame({"c": cid, "churned": churned}).with_columns(
        after=pl.col("churned").cum_sum().over("c") - pl.col("churned").cast(pl.Int64))
    keep = first["after"].to_numpy() == 0
    n = int(keep.sum())

    def score() -> np.ndarray:
        return rng.integers(1, 6, n)

    return pl.DataFrame({
        "customer_id": cid[keep], "period": period[keep], "churned": churned[keep],
        "trust": score(), "enthusiasm": score(), "satisfaction": score(), "products": rng.integers(1, 4, n),
        "cross_sold": rng.poisson(0.1, n), "segment": np.where(cid[keep] % 2 == 0, "a", "b"),
        "nps": rng.integers(0, 11, n), "trim_overall": score(), "trim_recommend": score(),
        "trim_repurchase": score(), "trim_advantage": score(),
    })


def test_fast_route_fits_import_no_pymc_pytensor_nutpie_arviz_or_xarray(tmp_path):
    """`tenure fit X --method map` of every customer-base model, its files and report stay off PyMC, ArviZ and
    xarray (seconds of imports: ArviZ alone takes about 4 s, xarray with pandas about 1 s)."""
    cohorts = tmp_path / "cohorts.csv"
    cohorts.write_text("period,alive\n0,1000\n1,631\n2,468\n3,382\n4,326\n5,289\n6,262\n7,241\n")
    data = Path(__file__).resolve().parents[1] / "data"
    summary = str(data / "cdnow_customers_summary.csv")
    runs = [["sbg", str(cohorts)], ["bgnbd", summary, "--time-unit", "weeks"],
            ["pnbd", summary, "--time-unit", "weeks"], ["mbgnbd", summary, "--time-unit", "weeks"],
            ["gamma-gamma", str(data / "cdnow_customers_summary_with_transactions.csv")],
            ["bgbb", str(data / "donations.csv")]]
    code = ("import json, sys\n"
            "from tenure.cli import run\n"
            f"for i, args in enumerate({runs!r}):\n"
            f"    assert run(['fit', *args, '--method', 'map', '-o', {str(tmp_path)!r} + f'/fit{{i}}']) == 0, args\n"
            "print('MODULES', json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in\n"
            "                                   ('pymc', 'pytensor', 'nutpie', 'arviz', 'xarray', 'pandas'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "MODULES []"
    assert all((tmp_path / f"fit{i}" / "posterior.nc").exists() for i in range(len(runs)))


def test_fast_route_mcmc_fits_import_no_arviz_xarray_pandas_or_nutpie_python(tmp_path):
    """`tenure fit X --method mcmc` on the fast route, its files and report: nutpie's Rust extension only
    (``nutpie.sample`` imports ArviZ and pandas, about 2 s; xarray's writer took 1-2.5 s more)."""
    cohorts = tmp_path / "cohorts.csv"
    cohorts.write_text("period,alive\n0,1000\n1,631\n2,468\n3,382\n4,326\n5,289\n6,262\n7,241\n")
    data = Path(__file__).resolve().parents[1] / "data"
    runs = [["sbg", str(cohorts)], ["bgnbd", str(data / "cdnow_customers_summary.csv"), "--time-unit", "weeks"],
            ["gamma-gamma", str(data / "cdnow_customers_summary_with_transactions.csv")]]
    code = ("import json, sys\n"
            "from tenure.cli import run\n"
            f"for i, args in enumerate({runs!r}):\n"
            "    assert run(['fit', *args, '--method', 'mcmc', '--draws', '40', '--tune', '40', '--chains', '2',\n"
            f"                '-o', {str(tmp_path)!r} + f'/fit{{i}}']) == 0, args\n"
            "print('MODULES', json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in\n"
            "                                   ('pymc', 'pytensor', 'arviz', 'xarray', 'pandas')\n"
            "                                   or m.startswith('nutpie.') and m != 'nutpie._lib')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "MODULES []"
    for i in range(len(runs)):
        idata = az.from_netcdf(tmp_path / f"fit{i}" / "posterior.nc")  # ArviZ reads what h5netcdf wrote
        assert {"posterior", "sample_stats", "warmup_posterior", "observed_data"} <= set(idata.groups())
        assert idata.attrs["tenure_method"] == "mcmc" and idata.posterior.sizes["draw"] == 40


def test_cli_startup_imports_no_numpy_arviz_or_pymc():
    """`tenure --help` and every command's start: the heavy libraries load inside the commands that use them."""
    code = ("import sys, tenure.cli\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'arviz', 'pymc', 'pytensor', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_simulating_and_calibrating_import_no_pymc_arviz_xarray_or_scipy_stats():
    """The engine, compare, decide and calibration (whose panel fits are the MLEs) need none of the model
    libraries: PyMC, PyTensor and ArviZ took 5-13 s of every `tenure calibrate`, scipy.stats 0.9 s of every
    command that simulates."""
    code = ("import sys\n"
            "import tenure.engine.simulator, tenure.simulations.compare, tenure.simulations.calibrate\n"
            "import tenure.commands.decide, tenure.commands.calibrate, tenure.commands.compare\n"
            "heavy = ('pymc', 'pytensor', 'arviz', 'xarray', 'pandas', 'scipy.stats', 'scipy.optimize')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
