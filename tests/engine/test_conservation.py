"""Accounting identities of a full default run: counts and money add up exactly."""

import numpy as np
import polars as pl
import pytest

from tenure.api import simulate


@pytest.fixture(scope="module")
def run():
    return simulate(customers=20_000, periods=18, seed=3, panel_sample=0.05)


def test_every_customer_is_alive_or_churned(run):
    p = run.periods
    acquired = int((p["acquired_paid"] + p["acquired_organic"] + p["acquired_referral"]).sum())
    assert run.meta["customers_ever"] == 20_000 + acquired
    c = run.customers
    assert c.height == run.meta["customers_ever"]
    assert int(c["churned"].sum()) == int(p["churned"].sum())
    assert int((~c["churned"]).sum()) == int(p["active_end"][-1] + p["acquired_paid"][-1]
                                             + p["acquired_organic"][-1] + p["acquired_referral"][-1])


def test_period_flows_chain(run):
    p = run.periods
    nxt = p["active"].to_numpy()[1:]
    prev = (p["active_end"] + p["acquired_paid"] + p["acquired_organic"] + p["acquired_referral"]).to_numpy()[:-1]
    assert np.array_equal(nxt, prev)


def test_revenue_is_the_sum_of_margins(run):
    assert run.customers["revenue"].sum() == pytest.approx(run.periods["revenue"].sum(), abs=1e-6)
    p = run.periods
    costs = sum(p[c] for c in p.columns if c.startswith("cost_") and c != "cost_total")
    assert np.allclose(p["cost_total"].to_numpy(), costs.to_numpy())
    assert np.allclose(p["profit"].to_numpy(), (p["revenue"] - p["cost_total"]).to_numpy())


def test_panel_agrees_with_customer_summary(run):
    panel, cust = run.panel, run.customers
    per = panel.group_by("customer_id").agg(
        pl.col("revenue").sum(), pl.col("churned").any(), pl.len().alias("rows"), pl.col("cross_sold").sum()
    )
    joined = per.join(cust, on="customer_id", suffix="_c")
    assert joined.height == per.height
    assert np.allclose(joined["revenue"].to_numpy(), joined["revenue_c"].to_numpy())
    assert (joined["churned"] == joined["churned_c"]).all()
    # initial customers have a tenure before the run; the others were active in every panel row
    new = joined.filter(pl.col("cohort") >= 1)
    assert (new["rows"] == new["tenure"]).all()


def test_cohort_table_counts_customers(run):
    c = run.cohorts.filter(run.cohorts["age"] == 0)
    assert int(c["cohort_size"].sum()) == run.customers.filter(pl.col("cohort") >= 0).height
    survivors = run.cohorts.sort(["cohort", "age"]).group_by("cohort").agg(pl.col("survivors").diff().max())
    assert (survivors["survivors"].fill_null(0) <= 0).all()
