"""The simulated feedback stream against the engine run it comes from (engine/feedback.py)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from tenure.engine.feedback import FeedbackSpec, engine_incidents, feedback_events

from tenure.api import load_scenario, simulate


@pytest.fixture(scope="module")
def run():
    """A trust crisis (incidents × 6 in months 6-8) with every customer in the panel, so that the panel's rows
    are all the customers alive at the start of each month: the engine's incident count covers exactly them."""
    sc = load_scenario("trust-crisis", customers=3000, periods=12, seed=3)
    return sc, simulate(sc, panel_sample=1.0)


def test_incidents_recomputed_from_the_panel_are_the_engine_counts(run):
    sc, r = run
    inc = engine_incidents(r.panel, sc, 3)
    by_month = (pl.DataFrame({"period": r.panel["period"], "incident": inc})
                .group_by("period").agg(pl.col("incident").sum()).sort("period"))
    engine = r.periods.select("period", "incidents").sort("period")
    assert by_month["incident"].to_list() == engine["incidents"].to_list()
    # the shock shows: months 6-8 have about six times the incidents per customer of the months before
    rate = (by_month["incident"] / r.periods.sort("period")["active"]).to_numpy()
    assert rate[6:9].mean() / rate[:6].mean() == pytest.approx(6.0, rel=0.25)


def test_complaints_come_only_from_incidents_at_the_documented_rate(run):
    sc, r = run
    events = feedback_events(r.panel, 3, sc, FeedbackSpec())
    surveyed = r.panel.filter(pl.col("nps").is_not_null())
    assert events.height == surveyed.height
    joined = events.join(surveyed.select("customer_id", "period"), on=["customer_id", "period"])
    assert joined.height == events.height
    assert not (events["complaint"] & ~events["incident"]).any()
    n_inc = int(events["incident"].sum())
    n_complaints = int(events["complaint"].sum())
    assert n_inc > 100
    # recall of incidents by complaints: Binomial(n_inc, 0.5); 4 standard deviations
    assert abs(n_complaints - 0.5 * n_inc) < 4 * np.sqrt(0.25 * n_inc)
    # an incident lowers the answer: the mean NPS of rows with one is lower than of rows without
    with_inc = events.filter(pl.col("incident"))["nps"].mean()
    without = events.filter(~pl.col("incident"))["nps"].mean()
    assert with_inc < without - 0.5


def test_the_stream_is_the_same_for_the_same_seed_and_changes_with_it(run):
    sc, r = run
    a = feedback_events(r.panel, 3, sc)
    assert a.equals(feedback_events(r.panel, 3, sc))
    assert not a["touchpoint"].equals(feedback_events(r.panel, 4, sc)["touchpoint"])
