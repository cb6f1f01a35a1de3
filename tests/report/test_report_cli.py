"""`tenure report RUN`: the same page again from the files; bad folders refused with one line naming the file."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tenure.cli import app
from tenure.report import CSP
from tenure.report.pages import _by_group, _evaluate_verdict, _gains, num

runner = CliRunner()


def _report(path: Path) -> tuple[int, str]:
    res = runner.invoke(app, ["report", str(path)])
    return res.exit_code, " ".join(res.output.split())


def test_the_command_wrote_the_report_and_report_renders_the_same_bytes(runs):
    out = runs / "simulate"
    first = (out / "report.html").read_bytes()
    code, text = _report(out)
    assert code == 0, text
    assert "found a simulate run" in text and "periods.parquet" in text
    assert (out / "report.html").read_bytes() == first  # the same files give the same page
    manifest = json.loads((out / "manifest.json").read_text())
    assert "report.html" not in manifest["files"]  # a view of the run, not one of its results


@pytest.mark.parametrize("rel", ["simulate/report.html", "compare/report.html"])
def test_the_page_is_self_contained(runs, rel):
    html = (runs / rel).read_text()
    assert f'content="{CSP}"' in unescape(html)
    assert not re.search(r'(src|href)="(?!data:)', html)  # every figure inline, nothing linked
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert len(html.encode()) < 3_000_000
    assert html.count("<figcaption>") == html.count("<img ") >= 3  # every figure has its caption


def test_segment_and_channel_counts_add_up_to_the_periods_table(runs):
    """Active customers and churn by segment, counted from customers.*, sum to the engine's own totals."""
    periods = pl.read_parquet(runs / "simulate" / "periods.parquet")
    cust = pl.read_parquet(runs / "simulate" / "customers.parquet")
    grid = periods.select("period")
    for by in ("segment", "channel"):
        active, churn = _by_group(cust, grid, by)
        assert np.array_equal(sum(active.values()), periods["active"].to_numpy()), by
        churned = sum(churn[g] / 100 * active[g] for g in active)
        assert np.allclose(churned, periods["churned"].to_numpy()), by


@pytest.mark.slow
def test_the_paired_gain_of_decide_is_the_one_decide_reports(calibrated):
    """The report pairs allocations with the current split by (market, seed) as `tenure decide` does."""
    doc = json.loads((calibrated / "decide" / "uncertainty.json").read_text())
    runs = pl.read_parquet(calibrated / "decide" / "uncertainty.parquet")
    g = _gains(runs, pl.DataFrame(doc["points"]), ["market", "seed"])
    for p, row in zip(doc["points"], g.iter_rows(named=True), strict=True):
        assert row["gain"] == pytest.approx(p["gain_vs_current"], rel=1e-9, abs=1e-6)
        assert row["p_beats"] == pytest.approx(p["p_beats_current"])


def _copy(runs: Path, tmp_path: Path, name: str = "compare") -> Path:
    d = tmp_path / name
    shutil.copytree(runs / name, d)
    (d / "report.html").unlink()
    return d


def _refused(path: Path, needle: str, report: Path | None = None) -> None:
    code, text = _report(path)
    assert code == 2, text
    assert text.startswith("error:") and needle in text, text
    assert "Traceback" not in text
    assert not (report or path / "report.html").exists()  # no report, not even half of one
    assert not [p for p in (report or path / "report.html").parent.iterdir() if p.name.startswith(".report")]


def test_a_folder_without_a_run_is_refused(tmp_path):
    (tmp_path / "nothing").mkdir()
    _refused(tmp_path / "nothing", "manifest.json: no run here")


def test_a_missing_file_is_named(runs, tmp_path):
    d = _copy(runs, tmp_path)
    (d / "compare.json").unlink()
    _refused(d, "compare.json: listed in the manifest but missing")


def test_a_corrupted_file_is_named(runs, tmp_path):
    d = _copy(runs, tmp_path)
    data = bytearray((d / "compare.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "compare.parquet").write_bytes(bytes(data))
    _refused(d, "compare.parquet: size or checksum differs from the manifest")


def test_a_truncated_manifest_is_named(runs, tmp_path):
    d = _copy(runs, tmp_path)
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text[: len(text) // 2])
    _refused(d, "manifest.json: cannot read")


def test_a_newer_tenure_is_refused(runs, tmp_path):
    d = _copy(runs, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    m["tenure_version"] = "99.0.0"
    (d / "manifest.json").write_text(json.dumps(m))
    _refused(d, "manifest.json: written by tenure 99.0.0, newer than this tenure")


def test_a_newer_schema_version_is_refused(runs, tmp_path):
    """A compare.json of schema 2 (its checksum in the manifest made to match): the file is named."""
    import hashlib

    d = _copy(runs, tmp_path)
    doc = json.loads((d / "compare.json").read_text())
    doc["schema_version"] = 2
    (d / "compare.json").write_text(json.dumps(doc))
    m = json.loads((d / "manifest.json").read_text())
    raw = (d / "compare.json").read_bytes()
    m["files"]["compare.json"] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    (d / "manifest.json").write_text(json.dumps(m))
    _refused(d, "compare.json: schema version 2 is newer than this tenure reads (1)")


def test_a_failed_render_leaves_the_earlier_report(runs, tmp_path):
    d = tmp_path / "compare"
    shutil.copytree(runs / "compare", d)
    before = (d / "report.html").read_bytes()
    (d / "compare.json").write_text("{")
    code, text = _report(d)
    assert code == 2 and "compare.json" in text
    assert (d / "report.html").read_bytes() == before


def test_a_replications_run_gets_its_report(tmp_path):
    res = runner.invoke(app, ["simulate", "-n", "500", "-t", "3", "--replications", "2", "-o", str(tmp_path / "r"),
                              "-q"])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r" / "report.html").read_text()
    doc = json.loads((tmp_path / "r" / "replications.json").read_text())
    assert "Over 2 replications" in html
    assert f"{doc['totals']['customers_end']['mean']:,.0f} (90 %" in html
    assert html.count("<img ") == 4


def test_the_evaluate_report_gives_the_holdout_numbers_of_evaluation_csv(evaluated):
    """The first screen holds evaluation.csv's numbers; `tenure report` renders the same page again."""
    out = evaluated / "evaluate"
    html = unescape((out / "report.html").read_text())
    row = pl.read_csv(out / "evaluation.csv").row(0, named=True)
    assert row["customers"] == 200 and row["holdout_actual"] == 243  # 200 CDNOW customers, 1997-10-01 to 1998-06-29
    answer = html[html.index("The answer"):html.index("Holdout against the models")]
    assert (f"bgnbd predicts {row['holdout_predicted']:,.1f} against 243 actual "
            f"({row['holdout_error_percent']:,.1f} %), MAE {row['mae']:.3f} and RMSE {row['rmse']:.3f}") in answer
    assert html.count("<img ") == html.count("<figcaption>") == 4  # three holdout figures and the fit's forest
    assert '"holdout_start": "1997-10-01"' in html and '"method": "map"' in html  # the settings in full
    assert not re.search(r'(src|href)="(?!data:)', html)
    first = (out / "report.html").read_bytes()
    code, text = _report(out)
    assert code == 0 and "found an evaluate run" in text, text
    assert (out / "report.html").read_bytes() == first


def test_the_evaluate_verdict_names_the_lowest_mae_and_the_closest_total():
    """Two models: the lower MAE is best per customer; the total closest to the actual one is named apart."""
    nan = float("nan")
    base = {"holdout_actual": 100.0, "elpd_loo": nan, "elpd_loo_se": nan}
    rows = [{**base, "model": "bgnbd", "holdout_predicted": 90.0, "holdout_error_percent": -10.0, "mae": 0.8,
             "rmse": 1.2},
            {**base, "model": "pnbd", "holdout_predicted": 99.0, "holdout_error_percent": -1.0, "mae": 0.9,
             "rmse": 1.3}]
    text = " ".join(_evaluate_verdict(rows))
    assert "predicting each customer's holdout purchases: bgnbd (lowest MAE, 0.800 against 0.900 for pnbd" in text
    assert "Closest on the holdout total: pnbd (-1.0 %); the totals and the per-customer errors disagree" in text
    assert "PSIS-LOO" not in text  # no LOO for MAP fits
    rows[0]["elpd_loo"], rows[0]["elpd_loo_se"] = -510.0, 20.0
    rows[1]["elpd_loo"], rows[1]["elpd_loo_se"] = -500.0, 21.0
    assert "PSIS-LOO prefers pnbd (elpd -500.0 (se 21.0)" in " ".join(_evaluate_verdict(rows))


def test_missing_ratios_read_as_not_judged_not_as_a_crash():
    # A tiny compare stores a ratio it cannot compute as JSON null; the report's verdict crashed on it.
    from tenure.report.pages import _band, _five

    assert _five(None) == "cannot be judged" and _five(float("nan")) == "cannot be judged"
    assert _five(5.0) == "holds" and _five(0.4) == "does not hold"
    assert _band(None) == "n/a"


def test_missing_numbers_in_tables_read_as_na():
    # A calibration check whose statistic has no spread stores z as null; the calibrate page crashed on it.
    from tenure.report.pages import _f

    assert _f(None, "+.1f") == "n/a" and _f(float("inf"), ".4g") == "n/a"
    assert _f(0.043, "+.1f", 100) == "+4.3" and _f(2.5, ".4g") == "2.5"


@pytest.mark.slow
def test_the_decide_report_states_the_marginal_costs_decide_wrote(calibrated):
    """decide's first screen: the marginal costs to acquire and to retain, with bands over markets, and the rule."""
    doc = json.loads((calibrated / "decide" / "uncertainty.json").read_text())
    m = doc["marginal"]
    mca, mcr = m["marginal_cost_to_acquire"], m["marginal_cost_to_retain"]
    assert mca["q05"] <= mca["mean"] <= mca["q95"] and mcr["q05"] <= mcr["mean"] <= mcr["q95"]
    assert m["marginal_cost_ratio"] == pytest.approx(mca["mean"] / mcr["mean"])
    text = unescape(re.sub(r"<[^>]+>", " ", (calibrated / "decide" / "report.html").read_text()))
    text = " ".join(text.split())
    assert (f"One more customer costs {num(mca['mean'], 2)} currency units to acquire (90 % over markets and seeds: "
            f"{num(mca['q05'], 2)}–{num(mca['q95'], 2)}) against {num(mcr['mean'], 2)} to retain") in text
    assert "at the margin and" in text and "on average (average ratio " + num(m["average_cost_ratio"], 2) in text


def test_a_decide_run_without_marginal_costs_still_renders(tmp_path):
    """A decide folder written before decide wrote its marginal costs: the page says so instead of failing."""
    from tenure.report.pages import decide
    from tenure.report.runs import Run

    doc = {"schema_version": 1, "settings": {"scenario": "m", "markets": 2, "seeds": [1], "periods": 4,
                                             "sample_customers": 500, "total_budget_per_period": 1000.0},
           "best": {"acquisition_share": 0.5, "mix": "current", "gain_vs_current": 10.0, "gain_vs_current_q05": 1.0,
                    "gain_vs_current_q95": 20.0, "p_beats_current": 0.9, "expected_loss": 0.0, "p_best": 1.0},
           "current": {"acquisition_share": 0.4}}
    doc["points"] = [{**doc["best"], "customer_equity": 100.0, "customer_equity_q05": 90.0,
                      "customer_equity_q95": 110.0}]
    (tmp_path / "uncertainty.json").write_text(json.dumps(doc))
    page = decide(Run("decide", tmp_path, {"command": "tenure decide"}, {"uncertainty.json": tmp_path /
                                                                         "uncertainty.json"}))
    assert any("not in this run" in h and "tenure decide" in h for h in page["headline"])


def test_the_fit_report_shows_the_predictive_check_of_ppc_csv(fitted_sbg):
    """The sBG fit's page draws the check and tabulates the numbers of the fit folder's ppc.csv."""
    ppc = pl.read_csv(fitted_sbg / "sbg" / "ppc.csv")
    html = (fitted_sbg / "sbg" / "report.html").read_text()
    assert "Posterior predictive check" in html and "Survivors per period" in html
    assert "Leave-one-out" not in html  # the aggregate check replaces LOO on count-weighted rows
    for r in ppc.filter(pl.col("group") == "regular").iter_rows(named=True):
        assert f"{num(r['q05'], 1)} to {num(r['q95'], 1)}" in html  # the band as the table gives it
    assert ppc.filter(pl.col("group") == "highend")["observed"].round(6).to_list() == [1000, 869, 743, 653, 593,
                                                                                      551, 517, 491]
    assert (fitted_sbg / "sbg" / "report.html").stat().st_size < 3e6


@pytest.mark.slow
def test_the_retention_fit_report_states_and_draws_its_churn_check(fitted):
    """The retention fit's page says how many of ppc.csv's churn counts lie in their band, draws and tabulates them."""
    ppc = pl.read_csv(fitted / "fit" / "ppc.csv")
    html = (fitted / "fit" / "report.html").read_text()
    assert "Churn events per tenure band" in html and "Leave-one-out" not in html
    inside = ppc.filter((pl.col("q05") <= pl.col("observed")) & (pl.col("observed") <= pl.col("q95"))).height
    assert f"{inside} of {ppc.height} observed values lie inside their 90 % band" in html
    from tenure.models import load

    # the churns the model saw (rows before a customer's first survey answer have no scores and are left out)
    assert ppc["observed"].sum() == load(fitted / "fit" / "posterior.nc").data_summary["churn_events"]
    for r in ppc.iter_rows(named=True):
        assert f"{num(r['q05'], 1)} to {num(r['q95'], 1)}" in html


def test_a_report_that_fails_to_render_leaves_a_complete_run_and_a_warning(tmp_path, monkeypatch):
    """The run is in place and whole: exit 0, one warning naming `tenure report DIR`, no report.html."""
    from tenure.report import pages
    from tenure.scenario import load_scenario

    def broken(run):
        raise RuntimeError("a template bug")

    monkeypatch.setitem(pages.BUILDERS, "simulate", broken)
    (tmp_path / "m.toml").write_text(load_scenario(None).scaled(300).with_overrides({"run": {"periods": 2}}).to_toml())
    res = runner.invoke(app, ["simulate", str(tmp_path / "m.toml"), "-o", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "warning: the run in" in text and "is complete" in text and "a template bug" in text
    assert "`tenure report" in text and "renders it again" in text
    assert (tmp_path / "run" / "manifest.json").is_file() and not (tmp_path / "run" / "report.html").exists()
    monkeypatch.undo()
    assert _report(tmp_path / "run")[0] == 0 and (tmp_path / "run" / "report.html").is_file()


def test_a_fit_with_two_checks_draws_states_and_tabulates_each(fitted_sbg, tmp_path):
    """The joint model saves its churn and cross-selling checks as one (``parts``): the page shows both."""
    import arviz as az
    from tenure.models.ppc import combined_check

    from tenure.report.pages import fit
    from tenure.report.runs import Run

    idata = az.from_netcdf(fitted_sbg / "sbg" / "posterior.nc")
    first = json.loads(idata.attrs["tenure_ppc"])
    second = {**first, "statistic": "other", "style": "bars", "title": "Other counts: observed against the fit",
              "rows": [{**r, "observed": r["q95"] + 1} for r in first["rows"] if r["group"] == "regular"]}
    idata.attrs["tenure_ppc"] = json.dumps(combined_check(first, second))
    idata.to_netcdf(str(tmp_path / "posterior.nc"), engine="h5netcdf")
    page = fit(Run("fit", tmp_path, {"command": "tenure fit joint"}, {"posterior.nc": tmp_path / "posterior.nc"}))
    checks = [h for h in page["headline"] if h.startswith("Posterior predictive check")]
    assert len(checks) == 2 and checks[1].startswith("Posterior predictive check (other counts): 0 of 8")
    figures = page["sections"][0]["figures"]
    assert [f.title for f in figures].count("Posterior predictive check") == 2
    assert sum("Other counts" in t["title"] for t in page["sections"][0]["tables"]) == 1


def test_the_trim_fit_page_says_why_it_has_no_predictive_check(runs, tmp_path):
    """The TRI*M index is a Bayesian bootstrap of the respondents: the page says it has no predictive check and
    where its intervals come from."""
    out = tmp_path / "trim"
    res = runner.invoke(app, ["fit", "trim", str(runs / "simulate" / "panel.parquet"), "--draws", "200",
                              "--chains", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", (out / "report.html").read_text())).split())
    assert "No posterior predictive check: the Bayesian bootstrap reweights the respondents" in text
    assert "intervals come from the Bayesian bootstrap of the respondents" in text


def test_the_prior_panel_draws_pymc_weibull_with_its_shape_and_scale() -> None:
    """PyMC's Weibull(alpha, beta) is shape alpha, scale beta: its density at x is (α/β)(x/β)^(α−1) e^(−(x/β)^α)."""
    import math

    from tenure.report.pages import _prior

    dist = _prior({"dist": "Weibull", "alpha": 2.0, "beta": 10.0})  # pymc-marketing's prior on the Pareto/NBD's α
    x = 7.0
    assert dist.pdf(x) == pytest.approx((2 / 10) * (x / 10) * math.exp(-((x / 10) ** 2)), rel=1e-12)
    assert dist.mean() == pytest.approx(10 * math.gamma(1.5), rel=1e-12)


@pytest.mark.parametrize("spec", [
    {"dist": "Normal", "mu": 1.0, "sigma": 2.5}, {"dist": "HalfNormal", "sigma": 3.0},
    {"dist": "Gamma", "alpha": 2.0, "beta": 0.2}, {"dist": "Exponential", "lam": 0.05},
    {"dist": "Beta", "alpha": 1.5, "beta": 4.0}, {"dist": "HalfCauchy", "beta": 2.0},
    {"dist": "StudentT", "nu": 4.0, "mu": -1.0, "sigma": 0.5}, {"dist": "LogNormal", "mu": 0.3, "sigma": 0.8},
    {"dist": "Weibull", "alpha": 2.0, "beta": 10.0}])
def test_prior_curves_equal_scipy_stats(spec) -> None:
    """The report's closed-form prior densities (scipy.special, which keeps scipy.stats' 0.9 s import out of a
    fit's run) equal scipy.stats' pdf, ppf and mean in PyMC's parametrisation, outside the support too."""
    import math

    from scipy import stats

    from tenure.report.pages import _prior

    p = {k: v for k, v in spec.items() if k != "dist"}
    ref = {"Normal": lambda: stats.norm(p["mu"], p["sigma"]), "HalfNormal": lambda: stats.halfnorm(0, p["sigma"]),
           "Gamma": lambda: stats.gamma(p["alpha"], scale=1 / p["beta"]),
           "Exponential": lambda: stats.expon(scale=1 / p["lam"]), "Beta": lambda: stats.beta(p["alpha"], p["beta"]),
           "HalfCauchy": lambda: stats.halfcauchy(0, p["beta"]),
           "StudentT": lambda: stats.t(p["nu"], p["mu"], p["sigma"]),
           "LogNormal": lambda: stats.lognorm(p["sigma"], scale=math.exp(p["mu"])),
           "Weibull": lambda: stats.weibull_min(p["alpha"], scale=p["beta"])}[spec["dist"]]()
    dist = _prior(spec)
    q = np.array([0.001, 0.01, 0.25, 0.5, 0.9, 0.99])
    x = np.concatenate([[-1.0, 0.0], ref.ppf(q), [1.5]])
    np.testing.assert_allclose(dist.pdf(x), ref.pdf(x), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(dist.ppf(q), ref.ppf(q), rtol=1e-10)
    assert dist.mean() == pytest.approx(ref.mean(), rel=1e-12)
    assert _prior({"dist": spec["dist"], "sigma": -1.0, "alpha": -1.0, "beta": -1.0, "lam": -1.0, "nu": -1.0}) is None
