"""`tenure evaluate` and `tenure predict`: the run folder, the table, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tenure.cli import app

DATA = Path(__file__).resolve().parents[1] / "data"
runner = CliRunner()
FAST = ["--method", "map", "--draws", "40", "--chains", "1"]


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    """The first 400 customers of the CDNOW cohort (ids 1-400), as CSV."""
    rows = [line.split() for line in (DATA / "CDNOW_master.txt").read_text().splitlines()[1:] if line.strip()]
    rows = [r for r in rows if int(r[0]) <= 400]
    ids, dates, _, amounts = zip(*rows, strict=True)
    path = tmp_path_factory.mktemp("log") / "log.csv"
    pl.DataFrame({"customer_id": np.array(ids, dtype=np.int64), "date": list(dates),
                  "amount": np.array(amounts, dtype=float)}).write_csv(path)
    return path


def test_evaluate_writes_the_table_the_figures_and_the_fits(log, tmp_path):
    from tenure.models import evaluate as ev
    from tenure.models.bgnbd import BGNBDModel

    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", str(log), "--holdout-start", "1997-10-01", "--models",
                              "bgnbd,pnbd,mbgnbd", "-o", str(out), *FAST])
    assert res.exit_code == 0, res.output
    for name in ("evaluation.csv", "tracking.csv", "tracking.png", "period_transactions.csv",
                 "period_transactions.png", "conditional_expectations.csv", "conditional_expectations.png",
                 "customers.parquet", "bgnbd/posterior.nc", "bgnbd/summary.csv", "pnbd/posterior.nc",
                 "mbgnbd/posterior.nc", "manifest.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "tenure evaluate" and manifest["holdout_start"] == "1997-10-01"
    evaluation = pl.read_csv(out / "evaluation.csv")
    assert evaluation["model"].to_list() == ["bgnbd", "pnbd", "mbgnbd"]
    assert evaluation["holdout_actual"].n_unique() == 1
    row = evaluation.row(0, named=True)
    # the same numbers from the models layer, with the same fit settings
    split = ev.split_transactions(pl.read_csv(log), "1997-10-01", time_unit="weeks")
    model = BGNBDModel(split.calibration, time_unit="weeks")
    model.fit(method="map", draws=40, chains=1)
    predicted = ev.holdout_predictions(model, split)
    assert row["customers"] == 400 and row["holdout_length"] == 39.0
    assert row["holdout_actual"] == split.holdout["holdout_frequency"].sum()
    assert row["holdout_predicted"] == pytest.approx(predicted.sum(), rel=1e-9)
    tracking = pl.read_csv(out / "tracking.csv")
    assert tracking.height == 78 and tracking["holdout"].sum() == 39
    assert tracking["actual"].sum() == split.repeat_days.size


@pytest.mark.parametrize(("args", "message"), [
    (["--holdout-start", "1996-12-01"], "--holdout-start 1996-12-01"),
    (["--holdout-start", "1998-07-01"], "--holdout-start 1998-07-01"),
    (["--holdout-start", "1997-01-01"], "--holdout-start 1997-01-01"),
    (["--holdout-start", "1997-10-01", "--holdout-end", "1997-09-01"], "--holdout-end 1997-09-01"),
    (["--holdout-start", "1997-10-01", "--holdout-end", "2003-01-01"], "--holdout-end 2003-01-01: after the last"),
    (["--holdout-start", "1997-10-01", "--models", "bgnbd,nosuch"], "unknown model 'nosuch'"),
    (["--holdout-start", "1997-10-01", "--models", "gamma-gamma"], "not a transaction model"),
    (["--holdout-start", "1997-10-01", "--time-unit", "fortnights"], "unknown time unit"),
    (["--holdout-start", "yesterday"], "--holdout-start"),
])
def test_evaluate_refuses_bad_input_with_one_line_and_nothing_written(log, tmp_path, args, message):
    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", str(log), "-o", str(out), *FAST, *args])
    assert res.exit_code == 2, res.output
    assert message in res.output.replace("\n", " ")
    assert not out.exists() and not list(tmp_path.glob(".ev*"))


def test_evaluate_priors_by_model_reach_only_their_model(log, tmp_path):
    """A [pnbd.s] table moves the Pareto/NBD's s and leaves the BG/NBD's fit as it is without priors (a flat
    [s] table would be refused: the BG/NBD has no s)."""
    priors = tmp_path / "priors.toml"
    # Gamma(1e4, 1e4): mean 1, sd 0.01, so the posterior mode of s lies within a few hundredths of 1
    priors.write_text("[pnbd.s]\ndist = 'Gamma'\nalpha = 10000.0\nbeta = 10000.0\n")
    base = ["evaluate", str(log), "--holdout-start", "1997-10-01", "--models", "bgnbd,pnbd", *FAST]
    assert runner.invoke(app, [*base, "-o", str(tmp_path / "flat")]).exit_code == 0
    res = runner.invoke(app, [*base, "-o", str(tmp_path / "given"), "--priors", str(priors)])
    assert res.exit_code == 0, res.output
    flat = pl.read_csv(tmp_path / "flat" / "bgnbd" / "summary.csv")
    assert pl.read_csv(tmp_path / "given" / "bgnbd" / "summary.csv").equals(flat)
    pnbd = pl.read_csv(tmp_path / "given" / "pnbd" / "summary.csv")
    s = pnbd.filter(pl.col(pnbd.columns[0]) == "s").row(0, named=True)
    assert s["mode"] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(("text", "message"), [
    ("[mbgnbd.r]\ndist = 'Gamma'\nalpha = 2.0\nbeta = 1.0\n", "table 'mbgnbd' names a model not in --models"),
    ("[pnbd.s]\ndist = 'Gamma'\nalpha = 2.0\nbeta = 1.0\n[r]\ndist = 'Gamma'\nalpha = 2.0\nbeta = 1.0\n",
     "'r' is neither a model"),
])
def test_evaluate_refuses_priors_of_other_models(log, tmp_path, text, message):
    priors = tmp_path / "priors.toml"
    priors.write_text(text)
    out = tmp_path / "ev"
    res = runner.invoke(app, ["evaluate", str(log), "--holdout-start", "1997-10-01", "--models", "bgnbd,pnbd",
                              "-o", str(out), "--priors", str(priors), *FAST])
    assert res.exit_code == 2, res.output
    assert message in res.output.replace("\n", " ")
    assert not out.exists()


@pytest.fixture(scope="module")
def fits(tmp_path_factory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("fits")
    data = DATA / "cdnow_customers_summary_with_transactions.csv"
    for model in ("bgnbd", "gamma-gamma"):
        res = runner.invoke(app, ["fit", model, str(data), "-o", str(d / model), *FAST])
        assert res.exit_code == 0, res.output
    return data, d / "bgnbd", d / "gamma-gamma"


def test_predict_writes_one_row_per_customer_with_intervals(fits, tmp_path):
    data, bg, gg = fits
    out = tmp_path / "clv.parquet"
    res = runner.invoke(app, ["predict", str(bg), str(data), "--horizon", "52", "--spend", str(gg),
                              "--discount-rate", "0.1", "--margin", "0.3", "-o", str(out)])
    assert res.exit_code == 0, res.output
    table = pl.read_parquet(out)
    assert table.height == 2357
    for q in ("p_alive", "purchases_next_52_weeks", "spend_per_purchase", "clv_next_52_weeks"):
        lo, mid, hi = (table[f"{q}{s}"].to_numpy() for s in ("_lower", "", "_upper"))
        assert np.all(np.isfinite(mid)) and np.all(lo <= mid + 1e-12) and np.all(mid <= hi + 1e-12), q
    assert table["p_alive"].is_between(0, 1).all()
    # a summary in days predicts the same as in weeks
    days = pl.read_csv(data).with_columns(pl.col("t_x") * 7, pl.col("T") * 7)
    days.write_csv(tmp_path / "days.csv")
    res = runner.invoke(app, ["predict", str(bg), str(tmp_path / "days.csv"), "--horizon", "364", "--time-unit",
                              "days", "-o", str(tmp_path / "d.csv"), "-q"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(pl.read_csv(tmp_path / "d.csv")["purchases_next_364_days"],
                               table["purchases_next_52_weeks"], rtol=1e-9)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("t_x", 99.0, "column 'recency' must not exceed T"),
    ("x", -2, "column 'frequency' must be 0 or more"),
])
def test_predict_refuses_bad_rfm_rows(fits, tmp_path, column, value, message):
    data, bg, _ = fits
    bad = pl.read_csv(data).with_columns(pl.when(pl.int_range(pl.len()) == 4).then(value).otherwise(pl.col(column))
                                         .alias(column))
    bad.write_csv(tmp_path / "bad.csv")
    out = tmp_path / "clv.parquet"
    res = runner.invoke(app, ["predict", str(bg), str(tmp_path / "bad.csv"), "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert f"row 5: {message}" in res.output.replace("\n", " ")
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--margin", "1.5"], "--margin"),
    (["--discount-rate", "-2"], "--discount-rate"),
    (["--max-draws", "0"], "--max-draws"),
    (["--horizon", "0"], "--horizon"),
    (["--horizon", "1e308"], "up to 100 years"),  # was accepted
])
def test_predict_refuses_bad_options(fits, tmp_path, args, message):
    data, bg, _ = fits
    out = tmp_path / "clv.parquet"
    res = runner.invoke(app, ["predict", str(bg), str(data), "-o", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists()


def test_predict_refuses_a_spend_fit_as_the_purchase_model(fits, tmp_path):
    data, _, gg = fits
    res = runner.invoke(app, ["predict", str(gg), str(data), "-o", str(tmp_path / "x.parquet")])
    assert res.exit_code == 2 and "transaction-model fit" in res.output


def test_predict_refuses_a_fit_of_a_panel_or_cohort_model(fits, tmp_path):
    """A retention fit was an internal error (TypeError), an sBG fit a misleading 'missing column periods'."""
    data, _, _ = fits
    cohorts = tmp_path / "cohorts.csv"
    cohorts.write_text("cohort,period,alive\na,0,100\na,1,80\na,2,70\na,3,64\n")
    res = runner.invoke(app, ["fit", "sbg", str(cohorts), "--method", "map", "-o", str(tmp_path / "sbg")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["predict", str(tmp_path / "sbg"), str(data), "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "a sbg fit; name a transaction-model fit" in res.output, res.output
    assert not (tmp_path / "x.csv").exists()
