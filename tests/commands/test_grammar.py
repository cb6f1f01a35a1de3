"""One grammar across simulate, compare, decide, calibrate and scenario.

The market positional, -n (the same market with N customers), -t, -s, -o; run folders that hold
exactly one run with normal permissions; bad input ends with exit code 2 and one line.
"""

import json
import os
import re
import stat
import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

import tenure
from tenure.cli import app
from tenure.scenario import load_scenario

runner = CliRunner()
# the default market (tenure/scenarios/default.toml): 100 000 customers in a market of 2 000 000, paid
# acquisition 150 000 and retention 50 000 + 30 000 + 10 000 + 10 000 + 10 000 per month
DEFAULT_CUSTOMERS, DEFAULT_SIZE, DEFAULT_ACQUISITION = 100_000, 2_000_000, 150_000.0
DEFAULT_RETENTION = {"service": 50_000.0, "loyalty": 30_000.0, "engagement": 10_000.0, "alarm": 10_000.0,
                     "employee": 10_000.0}
SWEEP = ["--acquisition-steps", "2", "--seeds", "1", "--levers", "service"]


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """A calibrated-market file as `tenure calibrate` writes it: a complete scenario and three draws."""
    d = tmp_path_factory.mktemp("market")
    (d / "m.toml").write_text(load_scenario(None).scaled(2_000).to_toml())
    pl.DataFrame({"market": [0, 1, 2], "churn.trust": [-1.5, -2.0, -2.5],
                  "experience.product_quality": [0.9, 1.0, 1.1]}).write_csv(d / "m.draws.csv")
    return d / "m.toml"


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_the_default_market_is_the_one_these_tests_assume():
    sc = load_scenario(None)
    assert sc["run"]["customers"] == DEFAULT_CUSTOMERS and sc["market"]["size"] == DEFAULT_SIZE
    assert sc["acquisition"]["budget"] == DEFAULT_ACQUISITION and sc["retention"] == DEFAULT_RETENTION


@pytest.mark.parametrize("customers", [10_000_000, 100_000_000, 2_000])
def test_n_scales_base_market_size_and_budgets_alike(customers):
    sc = tenure.load_scenario("default", customers=customers)
    f = customers / DEFAULT_CUSTOMERS
    assert sc["run"]["customers"] == customers
    assert sc["market"]["size"] == DEFAULT_SIZE * f  # 20 prospects and customers per customer, as before
    assert sc["acquisition"]["budget"] == pytest.approx(DEFAULT_ACQUISITION * f)
    for lever, budget in DEFAULT_RETENTION.items():
        assert sc["retention"][lever] == pytest.approx(budget * f)
    # per-customer economics: spend per customer and per prospect unchanged, every other key untouched
    assert sc["retention"]["service"] / customers == pytest.approx(0.5)
    assert sc["acquisition"]["budget"] / (sc["market"]["size"] - customers) == pytest.approx(150_000 / 1_900_000)
    base = load_scenario(None).data
    for section in ("churn", "cross_sell", "levers", "experience", "survey", "segments"):
        assert sc[section] == base[section]


def test_simulate_and_the_api_agree_on_a_scaled_market(tmp_path):
    out = tmp_path / "s"
    res = runner.invoke(app, ["simulate", "-n", "2000", "-t", "3", "-s", "5", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["scenario"]["market"]["size"] == 40_000 and run["scenario"]["acquisition"]["budget"] == 3_000.0
    assert _manifest(out)["seed"] == 5 and _manifest(out)["customers"] == 2_000
    twin = tenure.simulate(customers=2_000, periods=3, seed=5).periods
    assert pl.read_parquet(out / "periods.parquet").equals(twin)


def test_compare_takes_the_grammar_and_splits_the_scaled_budget(tmp_path):
    out = tmp_path / "c"
    res = runner.invoke(app, ["compare", "default", "-n", "2000", "-t", "3", "-s", "5", "-o", str(out), "-q", *SWEEP])
    assert res.exit_code == 0, res.output
    settings = json.loads((out / "compare.json").read_text())["settings"]
    # (150 000 + 110 000) × 2 000 / 100 000
    assert settings["total_budget_per_period"] == pytest.approx(5_200.0)
    assert settings["customers"] == 2_000 and settings["periods"] == 3 and settings["seeds"] == [5]
    assert _manifest(out)["command"] == "tenure compare"


def test_decide_and_its_old_spelling_give_the_same_decision(market, tmp_path):
    args = ["-n", "500", "-t", "3", "-s", "5", "--max-markets", "2", *SWEEP, "-q"]
    new = runner.invoke(app, ["decide", str(market), *args, "-o", str(tmp_path / "d")])
    assert new.exit_code == 0, new.output
    doc = json.loads((tmp_path / "d" / "uncertainty.json").read_text())
    assert doc["settings"]["markets"] == 2 and doc["settings"]["sample_customers"] == 500
    assert doc["settings"]["seeds"] == [5] and doc["settings"]["periods"] == 3
    old_spelling = {"--max-markets": "--markets", "-n": "--sample-customers"}
    old_args = [old_spelling.get(a, a) for a in args]
    old = runner.invoke(app, ["compare", str(market), "--uncertainty", *old_args, "-o", str(tmp_path / "o")])
    assert old.exit_code == 0, old.output
    assert "tenure decide MARKET" in old.output and len(old.output.strip().splitlines()) <= 3  # the note alone
    again = json.loads((tmp_path / "o" / "uncertainty.json").read_text())
    assert again["points"] == doc["points"]


def test_decide_defaults_are_five_shares_and_one_seed(market):
    result = tenure.decide(market, customers=500, periods=2, levers="service", max_markets=2)
    assert result.settings["acquisition_steps"] == 5 and len(result.settings["seeds"]) == 1
    assert result.settings["seeds"] == [load_scenario(str(market))["run"]["seed"]]


def test_rerunning_into_out_leaves_only_the_new_run(tmp_path):
    out = tmp_path / "r"
    first = runner.invoke(app, ["simulate", "-n", "1000", "-t", "2", "-o", str(out), "-q", "--format", "csv"])
    assert first.exit_code == 0, first.output
    (out / "notes.txt").write_text("mine")
    again = runner.invoke(app, ["simulate", "-n", "1000", "-t", "2", "-o", str(out), "-q"])
    assert again.exit_code == 0, again.output
    names = {p.name for p in out.iterdir()}
    assert "notes.txt" not in names and "periods.csv" not in names and "periods.parquet" in names
    assert set(_manifest(out)["files"]) | {"manifest.json", "report.html"} == names  # the report: not a result
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_failed_run_leaves_the_earlier_one(tmp_path):
    out = tmp_path / "r"
    assert runner.invoke(app, ["simulate", "-n", "1000", "-t", "2", "-o", str(out), "-q"]).exit_code == 0
    before = sorted(p.name for p in out.iterdir())
    bad = runner.invoke(app, ["compare", "-n", "1000", "--budget", "-1", "-o", str(out)])
    assert bad.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == before


def test_outputs_have_normal_permissions(tmp_path, market):
    old = os.umask(0o022)
    try:
        for args in (["simulate", "-n", "1000", "-t", "2", "--panel-sample", "0.1"],
                     ["compare", "-n", "1000", "-t", "2", *SWEEP],
                     ["decide", str(market), "-n", "500", "-t", "2", "--max-markets", "2", *SWEEP]):
            out = tmp_path / args[0]
            res = runner.invoke(app, [*args, "-o", str(out), "-q"])
            assert res.exit_code == 0, res.output
            assert stat.S_IMODE(out.stat().st_mode) == 0o755
            for p in out.iterdir():
                assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    finally:
        os.umask(old)


@pytest.mark.parametrize(("args", "needle"), [
    (["simulate", "-n", "0", "-o", "{tmp}/o"], "--customers: run.customers"),
    (["simulate", "-t", "0", "-o", "{tmp}/o"], "--periods: run.periods"),
    (["simulate", "-s", "-1", "-o", "{tmp}/o"], "--seed: run.seed"),
    (["compare", "-n", "-5", "-o", "{tmp}/o"], "--customers"),
    (["compare", "--budget", "-1", "-o", "{tmp}/o"], "--budget"),
    (["compare", "--markets", "3", "-o", "{tmp}/o"], "tenure decide"),
    (["decide", "{tmp}/missing.toml", "-o", "{tmp}/o"], "missing.toml: file not found"),
    (["decide", "{market}", "--max-markets", "1", "-o", "{tmp}/o"], "--max-markets: at least 2"),
    (["decide", "{market}", "-n", "50", "-o", "{tmp}/o"], "--customers: at least 100"),
    (["calibrate", "default", "-o", "{tmp}/m.toml"], "give the panel file or fit folders after the market"),
    (["calibrate", "default", "{tmp}/no.parquet", "-o", "{tmp}/m.toml"], "no.parquet: file not found"),
    (["calibrate", "default", "{tmp}/no.parquet", "-o", "{tmp}/m.toml", "--panel-periods", "0"], "--panel-periods"),
    (["calibrate", "default", "{tmp}/no.parquet", "-o", "{tmp}/m.toml", "-s", "-2"], "--seed: expected a whole number"),
    (["scenario", "scale", "default", "0"], "CUSTOMERS: run.customers"),
])
def test_bad_input_is_exit_2_with_one_line(tmp_path, market, args, needle):
    res = runner.invoke(app, [a.format(tmp=tmp_path, market=market) for a in args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.toml").exists()


def test_calibrate_old_spellings_still_parse_with_a_note(tmp_path):
    res = runner.invoke(app, ["calibrate", str(tmp_path / "none.csv"), "-o", str(tmp_path / "m.toml")])
    assert res.exit_code == 2 and "the market comes first" in res.output and "none.csv: file not found" in res.output
    res = runner.invoke(app, ["calibrate", str(tmp_path / "a.csv"), "--scenario", "default", "--periods", "3",
                              "-o", str(tmp_path / "m.toml")])
    assert res.exit_code == 2 and "--panel-periods" in res.output and "a.csv: file not found" in res.output


@pytest.mark.parametrize(("command", "flags"), [
    ("simulate", ("-n", "-t", "-s", "-o", "-q")),
    ("compare", ("-n", "-t", "-s", "-o", "-q", "-b")),
    ("decide", ("-n", "-t", "-s", "-o", "-q", "-b", "--max-markets")),
    ("calibrate", ("-s", "-o", "-q", "--markets", "--panel-periods")),
])
def test_help_lists_the_shared_options_and_hides_the_old_spellings(command, flags):
    res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for flag in flags:
        assert f" {flag} " in res.output or f" {flag}," in res.output, flag
    for hidden in ("--uncertainty", "--sample-customers", "--scenario", "--periods"):  # named in the text only
        assert not re.search(r"│\s+" + hidden + r"\s", res.output) or (command != "calibrate" and hidden == "--periods")


def test_the_pytensor_blas_warning_is_filtered_for_every_command():
    # every command imports tenure first; -W default shows every other warning
    code = ("import tenure.cli, warnings; "
            "warnings.warn('PyTensor could not link to a BLAS installation.', UserWarning); "
            "warnings.warn('another warning', UserWarning)")
    res = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, check=True)
    assert "BLAS" not in res.stderr and "another warning" in res.stderr
