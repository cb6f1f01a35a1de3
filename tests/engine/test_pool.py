"""Independent runs side by side (tenure.engine.pool): the same results for any number of workers and any order."""

import threading

import numpy as np
import pytest
from tenure.engine.pool import default_workers, map_runs
from tenure.engine.simulator import Simulator
from tenure.simulations.replications import replicate

from tenure.scenario import load_scenario

SMALL = {"run": {"customers": 3_000, "periods": 6}, "market": {"size": 60_000}}


def test_map_runs_keeps_the_order_of_the_specs_and_uses_the_workers():
    names = []

    def fn(x):
        names.append(threading.current_thread().name)
        return x * x

    assert map_runs(fn, range(20), workers=2) == [x * x for x in range(20)]
    assert all(n.startswith("tenure-run") for n in names)
    names.clear()
    assert map_runs(fn, range(5), workers=1) == [0, 1, 4, 9, 16]
    assert set(names) == {threading.current_thread().name}  # one worker: in this thread


def test_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv("TENURE_RUN_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("TENURE_RUN_WORKERS", "two")
    with pytest.raises(ValueError, match="TENURE_RUN_WORKERS"):
        default_workers()


def test_runs_on_worker_threads_equal_runs_one_after_another():
    """Seeds run side by side (one-thread kernels, GIL released) and in reverse order give the same tables."""
    specs = [load_scenario(None, {**SMALL, "run": {**SMALL["run"], "seed": s}}) for s in (1, 2, 3, 4)]

    def run(sc):
        r = Simulator(sc, panel_fraction=0.1).run()
        return r.periods, r.customers, r.panel

    one = map_runs(run, specs, workers=1)
    two = map_runs(run, specs, workers=2)
    rev = map_runs(run, specs[::-1], workers=2)[::-1]
    for a, b, c in zip(one, two, rev, strict=True):
        for x, y, z in zip(a, b, c, strict=True):
            assert x.equals(y) and x.equals(z)


def test_replications_do_not_depend_on_workers():
    sc = load_scenario(None, {**SMALL, "run": {**SMALL["run"], "seed": 5}})
    assert replicate(sc, 3, workers=1).equals(replicate(sc, 3, workers=2))


def test_fork_with_another_scenario_equals_a_fresh_run():
    """A base forked under other dynamics, churn and survey settings is the fresh simulator of that scenario."""
    base = load_scenario(None, SMALL)
    other = base.with_overrides({"churn": {"trust": -3.0}, "cross_sell": {"enthusiasm": 1.2},
                                 "market": {"competitor_pull": 0.3}, "survey": {"item_noise": 0.7},
                                 "experience": {"product_quality": 0.2}})
    sim = Simulator(base, panel_fraction=1.0)
    forked = sim.fork(scenario=other).run()
    fresh = Simulator(other, panel_fraction=1.0).run()
    for name in ("periods", "cohorts", "customers", "panel"):
        assert getattr(forked, name).equals(getattr(fresh, name)), name
    assert not forked.periods.equals(sim.fork().run().periods)  # the fork did change the run
    with_budgets = sim.fork({"service": 0.0}, scenario=other).run()
    assert with_budgets.periods["cost_service"].sum() == 0


@pytest.mark.parametrize("change", [{"run": {"seed": 99}}, {"run": {"periods": 7}},
                                    {"segments": [{"share": 1.0, "name": "all"}]}])
def test_fork_refuses_a_scenario_with_another_base(change):
    base = load_scenario(None, SMALL)
    try:
        other = base.with_overrides(change)
    except Exception:  # a segment list the schema refuses is not this test's subject
        pytest.skip("override not expressible")
    with pytest.raises(ValueError, match="another initial base"):
        Simulator(base).fork(scenario=other)


def test_one_thread_kernels_match_the_thread_pool_on_large_shards():
    """Above the one-thread thresholds a worker still runs its kernels on its own thread: same results."""
    sc = load_scenario(None, {"run": {"customers": 70_000, "periods": 2}, "market": {"size": 1_400_000}})
    pool, = map_runs(lambda s: Simulator(s, track_customers=False).run().periods, [sc], workers=1)
    worker = map_runs(lambda s: Simulator(s, track_customers=False).run().periods, [sc, sc], workers=2)
    assert all(pool.equals(w) for w in worker)
    assert np.isfinite(pool["churn_rate"].to_numpy()).all()
