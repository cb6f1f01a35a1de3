"""`tenure simulate` and `tenure scenario`: outputs, and bad input ending with exit code 2."""

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from tenure.cli import app

runner = CliRunner()


def test_simulate_writes_every_output(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["simulate", "-n", "3000", "-t", "6", "--seed", "4", "--out", str(out),
                              "--panel-sample", "0.1", "--format", "csv"])
    assert res.exit_code == 0, res.output
    for name in ("periods.csv", "cohorts.csv", "customers.csv", "panel.csv", "run.json", "trajectories.png"):
        assert (out / name).exists(), name
    assert "customer-periods/s" in res.output
    periods = pl.read_csv(out / "periods.csv")
    assert periods.height == 6
    meta = json.loads((out / "run.json").read_text())
    assert meta["meta"]["seed"] == 4 and meta["scenario"]["run"]["customers"] == 3000
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[churn]\ntrustt = -1.0\n", "churn.trustt"),
        ("[churn]\ntrust = 'high'\n", "churn.trust"),
        ("[survey]\nrate = 1.5\n", "survey.rate"),
        ("[retention]\nservice = -10.0\n", "retention.service"),
        ("[run]\ncustomers = 0\n", "run.customers"),
        ("[[segments]]\nname = 'a'\nshare = 0.5\n", "segments.share"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("", "empty"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_bad_scenarios_exit_2_and_write_nothing(tmp_path, toml, needle):
    f = tmp_path / "bad.toml"
    f.write_text(toml)
    out = tmp_path / "never"
    res = runner.invoke(app, ["simulate", str(f), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists()
    res = runner.invoke(app, ["scenario", "validate", str(f)])
    assert res.exit_code == 2 and needle in res.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--customers", "0"], "--customers"),
        (["--periods", "-3"], "--periods"),
        (["--panel-sample", "2"], "--panel-sample"),
        (["--format", "xlsx"], "--format"),
        (["no-such-scenario"], "unknown scenario"),
        (["missing.toml"], "file not found"),
    ],
)
def test_bad_options_exit_2(tmp_path, args, needle):
    res = runner.invoke(app, ["simulate", *args, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert not (tmp_path / "x").exists()


def test_scenario_show_round_trips(tmp_path):
    res = runner.invoke(app, ["scenario", "show"])
    assert res.exit_code == 0
    f = tmp_path / "full.toml"
    f.write_text(res.output)
    res2 = runner.invoke(app, ["scenario", "validate", str(f)])
    assert res2.exit_code == 0, res2.output
    res3 = runner.invoke(app, ["scenario", "list"])
    assert "default" in res3.output


def test_replications_are_the_plain_runs_of_their_seeds(tmp_path):
    """Replication k is exactly `tenure simulate --seed S+k`; the summary's interval brackets its mean."""
    from tenure.api import simulate

    out = tmp_path / "r"
    result = runner.invoke(app, ["simulate", "-n", "3000", "-t", "5", "-s", "40", "-r", "3", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    reps = pl.read_parquet(out / "replications.parquet")
    assert reps["seed"].unique().sort().to_list() == [40, 41, 42] and reps.height == 15
    plain = simulate(customers=3000, periods=5, seed=41, track_customers=False).periods
    assert reps.filter(pl.col("seed") == 41).drop("seed", "acquired").equals(plain)
    summary = pl.read_parquet(out / "replications_summary.parquet")
    assert summary.height == 5
    assert (summary["churn_rate_q05"] <= summary["churn_rate"]).all()
    assert (summary["churn_rate"] <= summary["churn_rate_q95"]).all()
    meta = json.loads((out / "replications.json").read_text())
    assert meta["seeds"] == [40, 41, 42] and len(meta["per_seed"]) == 3
    assert meta["totals"]["churned"]["mean"] == pytest.approx(reps["churned"].sum() / 3)


@pytest.mark.parametrize("args,needle", [
    (["-r", "1"], "--replications: at least 2"),
    (["-r", "3", "--panel-sample", "0.1"], "drop --panel-sample"),
    (["-r", "3", "--shards", "2"], "drop --shards"),
])
def test_bad_replication_options_exit_2_and_write_nothing(tmp_path, args, needle):
    result = runner.invoke(app, ["simulate", "-n", "1000", "-t", "2", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and needle in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_scenario_scale_keeps_spend_per_customer(tmp_path):
    from tenure.api import load_scenario

    result = runner.invoke(app, ["scenario", "scale", "default", "20000"])
    assert result.exit_code == 0, result.output
    (tmp_path / "s.toml").write_text(result.output)
    small, full = load_scenario(str(tmp_path / "s.toml")), load_scenario("default")
    f = 20_000 / full["run"]["customers"]
    assert small["run"]["customers"] == 20_000
    assert small["market"]["size"] == round(full["market"]["size"] * f)
    assert small["acquisition"]["budget"] == pytest.approx(full["acquisition"]["budget"] * f)
    assert small["retention"]["service"] == pytest.approx(full["retention"]["service"] * f)
    bad = runner.invoke(app, ["scenario", "scale", "default", "0"])
    assert bad.exit_code == 2 and "CUSTOMERS" in bad.output
