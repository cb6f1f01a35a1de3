"""A seed fixes every result, whatever the number of threads or shards."""

import hashlib
import os
import subprocess
import sys

import polars as pl

from tenure.api import simulate

SCRIPT = """
import hashlib, sys
import tenure.engine.state as state
state.SERIAL_STEP_BELOW = state.SERIAL_BIRTHS_BELOW = 0  # the thread pool for every call, however small
from tenure.api import simulate
r = simulate(customers=30_000, periods=8, seed=11, panel_sample=0.05)
h = hashlib.sha256()
for df in (r.periods, r.cohorts, r.customers, r.panel):
    h.update(df.write_csv().encode())
print(h.hexdigest())
"""


def _digest(r):
    h = hashlib.sha256()
    for df in (r.periods, r.cohorts, r.customers, r.panel):
        h.update(df.write_csv().encode())
    return h.hexdigest()


def test_same_seed_same_result_other_seed_differs():
    a = simulate(customers=5_000, periods=6, seed=1)
    b = simulate(customers=5_000, periods=6, seed=1)
    c = simulate(customers=5_000, periods=6, seed=2)
    assert a.periods.equals(b.periods) and a.customers.equals(b.customers)
    assert not a.periods.equals(c.periods)


def test_shard_count_does_not_change_results():
    runs = [simulate(customers=30_000, periods=8, seed=11, panel_sample=0.05, shards=k) for k in (1, 3, 7)]
    digests = {_digest(r) for r in runs}
    assert len(digests) == 1


def test_thread_count_does_not_change_results():
    out = {}
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
        out[threads] = proc.stdout.strip().splitlines()[-1]
    assert out["1"] == out["2"]
    same_process = simulate(customers=30_000, periods=8, seed=11, panel_sample=0.05)
    assert _digest(same_process) == out["1"]


def test_serial_and_parallel_kernels_agree(monkeypatch):
    """Small shards and births run on one thread (state.SERIAL_*_BELOW); the thread-pool kernels agree."""
    import tenure.engine.state as state

    serial = _digest(simulate(customers=30_000, periods=8, seed=11, panel_sample=0.05))
    monkeypatch.setattr(state, "SERIAL_STEP_BELOW", 0)
    monkeypatch.setattr(state, "SERIAL_BIRTHS_BELOW", 0)
    assert _digest(simulate(customers=30_000, periods=8, seed=11, panel_sample=0.05)) == serial


def test_panel_is_in_the_fitting_format():
    r = simulate(customers=4_000, periods=6, seed=5, panel_sample=0.2)
    schema = r.panel.schema
    assert schema["customer_id"] == pl.Int64 and schema["period"] == pl.Int32
    assert schema["churned"] == pl.Boolean
    for col in ("trust", "enthusiasm", "satisfaction", "nps"):
        assert schema[col] == pl.Int8
    assert r.panel["trust"].drop_nulls().is_between(1, 5).all()
    assert r.panel["nps"].drop_nulls().is_between(0, 10).all()
    assert (r.panel["products"] >= 1).all() and (r.panel["cross_sold"] >= 0).all()
    # one row per customer per active period; nothing after churn
    assert r.panel.select(pl.struct("customer_id", "period").is_unique().all()).item()
    last = r.panel.group_by("customer_id").agg(pl.col("period").max().alias("last"),
                                                pl.col("churned").arg_max().alias("at"),
                                                pl.col("churned").any().alias("left"), pl.len())
    left = last.filter(pl.col("left"))
    assert (left["at"] == left["len"] - 1).all()
