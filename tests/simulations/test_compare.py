"""`tenure compare`: allocation sweep on common random numbers, marginal analysis, bad input."""

import json

import numpy as np
import polars as pl
import pytest
from tenure.engine.simulator import LEVERS
from tenure.simulations.compare import Allocation, compare, parse_levers, parse_mix, retention_mixes
from typer.testing import CliRunner

from tenure.cli import app
from tenure.errors import InputError
from tenure.scenario import load_scenario

runner = CliRunner()
SMALL = {"run": {"customers": 4_000, "periods": 12}, "market": {"size": 80_000}}


@pytest.fixture(scope="module")
def small_result():
    # the default budgets scaled to a base of 4 000 customers, so that no lever is saturated
    return compare(load_scenario(None, SMALL), total_budget=10_400, acquisition_steps=3, seeds=2, closed_form=True)


def test_allocation_budgets_add_up():
    a = Allocation(0.25, "current", (0.5, 0.2, 0.1, 0.1, 0.1))
    b = a.budgets(1000.0)
    assert b["acquisition"] == 250.0 and sum(b.values()) == pytest.approx(1000.0)
    assert b["service"] == pytest.approx(375.0)


def test_retention_mixes_sum_to_one_and_keep_unswept_levers():
    base = {"service": 0.4, "loyalty": 0.3, "engagement": 0.1, "alarm": 0.1, "employee": 0.1}
    mixes = retention_mixes(base, ("service", "loyalty"))
    for _, m in mixes:
        assert sum(m) == pytest.approx(1.0)
        assert m[LEVERS.index("alarm")] == pytest.approx(0.1)
    names = [n for n, _ in mixes]
    assert names[:2] == ["current", "equal"] and "focus service" in names


def test_best_point_is_the_highest_mean_equity(small_result):
    pts = small_result.points
    assert small_result.best["customer_equity"] == pytest.approx(pts["customer_equity"].max())
    assert (pts["customer_equity_q05"] <= pts["customer_equity"] + 1e-6).all()
    assert (pts["customer_equity"] <= pts["customer_equity_q95"] + 1e-6).all()


def test_common_random_numbers_make_identical_budgets_identical(small_result):
    # With everything to acquisition, every retention mix is the same allocation: same numbers.
    all_acq = small_result.runs.filter((pl.col("acquisition_share") == 1.0) & (pl.col("stage") == "coarse"))
    per_seed = all_acq.group_by("seed").agg(pl.col("customer_equity").n_unique())
    assert (per_seed["customer_equity"] == 1).all()


def test_marginal_analysis_signs(small_result):
    m = small_result.marginal
    # one more unit of acquisition spend wins customers at a positive, finite price in every seed
    assert 0 < m["marginal_cost_to_acquire"]["q05"] <= m["marginal_cost_to_acquire"]["q95"] < float("inf")
    assert set(m["return_on_lever"]) == set(LEVERS)


def test_money_on_a_lever_without_effect_is_lost_and_changes_nothing_else():
    """Employee spend with no effect on quality or enthusiasm: an accounting identity on common random numbers.

    The engine charges a lever's budget every month (cost_employee) and the lever acts only through
    employee_quality and employee_enthusiasm (docs/model.md §5). With both at zero, one more unit per month
    must leave every customer's path as it was (same draws: same churners, acquisitions, survey answers),
    lower undiscounted profit by exactly delta × months and equity by more than delta × the annuity factor.
    """
    from tenure.simulations.compare import Evaluator, current_budgets

    sc = load_scenario(None, {**SMALL, "levers": {"employee_quality": 0.0, "employee_enthusiasm": 0.0}})
    ev = Evaluator(sc, [sc["run"]["seed"]], total_budget=10_400)
    base = {k: v / 25 for k, v in current_budgets(sc).items()}  # the default budgets at 4 000 customers
    delta, months, d = 100.0, sc["run"]["periods"], sc["market"]["monthly_discount_rate"]
    a, b = ev.run(base, sc["run"]["seed"]), ev.run({**base, "employee": base["employee"] + delta}, sc["run"]["seed"])
    for key in ("customers_end", "churned", "acquired", "acquired_paid", "nps", "churn_rate", "acquisition_spend"):
        assert b[key] == a[key], key
    assert a["profit"] - b["profit"] == pytest.approx(delta * months, abs=0.01)  # money in cents
    assert b["retention_spend"] - a["retention_spend"] == pytest.approx(delta * months, abs=0.01)
    annuity = sum((1 + d) ** -(t + 1) for t in range(months))  # discounted_profit = profit / (1 + d)^(t+1)
    # equity falls by the discounted spend, and by more: the terminal value prices the lower profit per customer
    assert a["customer_equity"] - b["customer_equity"] > delta * annuity


def test_closed_form_is_calibrated_on_the_simulated_market(small_result):
    cf = small_result.closed_form
    sc = load_scenario(None, SMALL)
    assert (cf["acquisition_ceiling"], cf["acquisition_k_per_unit_spend"]) == (sc["acquisition"]["ceiling"],
                                                                               sc["acquisition"]["k"])
    # in this market retention rises with spend (ten times the spend keeps more customers), so r(R) calibrates
    assert 0 < cf["retention_rate_now"] < cf["retention_rate_at_10x_spend"] < 1
    assert cf["calibrated"] is True
    assert 0 <= cf["implied_acquisition_share"] <= 1


def test_progress_counts_every_evaluation_with_the_total_known_up_front():
    calls = []
    compare(load_scenario(None, {"run": {"customers": 1_000, "periods": 2}, "market": {"size": 20_000}}),
            total_budget=2_600, levers=("service",), acquisition_steps=2, seeds=2,
            progress=lambda done, total: calls.append((done, total)))
    total = calls[0][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(t == total for _, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    # 2 seeds × (2 shares × 1 mix + 4 refinements + the current split + 14 marginal runs): with one lever swept
    # and the others fixed, the equal mix is the current one and is listed once
    assert total == 2 * (2 * 1 + 4 + 1 + 14)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("service=0.5,loyalty=0.4", "add up to 1"), ("service=0.5,bogus=0.5", "unknown lever 'bogus'"),
     ("service", "lever=share"), ("service=x,loyalty=1", "not a number"), ("service=-1,loyalty=2", "[0, 1]")],
)
def test_parse_mix_errors(text, needle):
    with pytest.raises(InputError, match=None) as e:
        parse_mix(text)
    assert needle in str(e.value)


def test_parse_levers():
    assert parse_levers(None) == LEVERS
    assert parse_levers("service, alarm") == ("service", "alarm")
    with pytest.raises(InputError, match="unknown lever"):
        parse_levers("service,price")


def test_cli_writes_outputs(tmp_path):
    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", "-n", "3000", "-t", "6", "--acquisition-steps", "2", "--seeds", "1",
                              "--levers", "service,loyalty", "--out", str(out)])
    assert res.exit_code == 0, res.output
    runs = pl.read_parquet(out / "compare.parquet")
    assert {"acquisition_share", "mix", "seed", "customer_equity", "nps", "churn_rate"} <= set(runs.columns)
    doc = json.loads((out / "compare.json").read_text())
    assert doc["schema_version"] == 1
    assert {"settings", "best", "current", "marginal", "points"} <= set(doc)
    assert np.isfinite(doc["best"]["customer_equity"])
    assert (out / "compare.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--budget", "-5"], "--budget"), (["--budget", "0"], "--budget"), (["--mix", "service=0.7"], "--mix"),
     (["--levers", "price"], "unknown lever 'price'"), (["nope"], "unknown scenario 'nope'"),
     (["--acquisition-steps", "1"], "--acquisition-steps"), (["--seeds", "0"], "--seeds")],
)
def test_cli_bad_input_exit_2_and_nothing_written(tmp_path, args, needle):
    out = tmp_path / "never"
    res = runner.invoke(app, ["compare", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_workers_and_order_do_not_change_the_tables():
    """Runs side by side (1 or 2 workers) give bit-identical tables; so does asking for the runs in another order."""
    sc = load_scenario(None, {"run": {"customers": 1_500, "periods": 6}, "market": {"size": 30_000}})
    kw = {"total_budget": 3_900, "levers": ("service", "alarm"), "acquisition_steps": 3, "seeds": 2}
    one, two = compare(sc, workers=1, **kw), compare(sc, workers=2, **kw)
    assert one.runs.equals(two.runs) and one.points.equals(two.points)
    assert one.best == two.best and json.dumps(one.marginal) == json.dumps(two.marginal)
    from tenure.simulations.compare import Evaluator

    pairs = [(a.budgets(3_900), s) for a in (Allocation(x, "equal", (0.2,) * 5) for x in (0.0, 0.5, 1.0))
             for s in (1, 2)]
    forward, backward = Evaluator(sc, [1, 2], 3_900, workers=2), Evaluator(sc, [1, 2], 3_900, workers=2)
    forward.prefetch(pairs)
    backward.prefetch(pairs[::-1])
    assert forward._memo == backward._memo


def test_decide_does_not_depend_on_workers():
    from tenure.simulations.compare import compare_uncertainty

    base = load_scenario(None, {"run": {"customers": 1_500, "periods": 6}, "market": {"size": 30_000}})
    markets = [base.with_overrides({"churn": {"trust": v}}) for v in (-2.5, -2.0, -1.5)]
    kw = {"levers": ("service", "alarm"), "acquisition_steps": 3}
    one, two = compare_uncertainty(markets, workers=1, **kw), compare_uncertainty(markets, workers=2, **kw)
    assert one.runs.equals(two.runs) and one.points.equals(two.points) and one.best == two.best


def test_marginal_analysis_pools_evaluators_as_one_with_all_their_seeds():
    # decide pools its calibrated markets: two evaluators of seeds 1 and 2 give what one evaluator of both gives
    from tenure.simulations.compare import Allocation, Evaluator, marginal_analysis

    sc = load_scenario(None, {"run": {"customers": 600, "periods": 3}, "market": {"size": 12_000}})
    alloc = Allocation(0.5, "even", (0.2, 0.2, 0.2, 0.2, 0.2))
    one = marginal_analysis(Evaluator(sc, [1, 2], total_budget=1_560), alloc, 0.1, levers=False)
    pooled = marginal_analysis((Evaluator(sc, [s], total_budget=1_560) for s in (1, 2)), alloc, 0.1, levers=False)
    assert pooled == one
    assert "return_on_lever" not in one
    m = one["marginal_cost_to_acquire"]
    assert m["q05"] <= m["mean"] <= m["q95"]


def test_decide_progress_counts_its_marginal_runs_with_the_total_known_up_front():
    from tenure.simulations.compare import DECIDE_MARGINAL_RUNS, compare_uncertainty

    sc = load_scenario(None, {"run": {"customers": 600, "periods": 3}, "market": {"size": 12_000}})
    seen: list[tuple[int, int]] = []
    res = compare_uncertainty([sc, sc.with_overrides({"run": {"seed": 5}})], levers=["service"], acquisition_steps=3,
                              seeds=2, progress=lambda done, total: seen.append((done, total)))
    total = 2 * 2 * (res.settings["allocations"] + 1 + DECIDE_MARGINAL_RUNS)
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert {"marginal_cost_to_acquire", "marginal_cost_to_retain", "average_cost_ratio"} <= set(res.marginal)
