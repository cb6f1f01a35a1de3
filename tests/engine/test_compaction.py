"""Gone customers moved out of the stepped rows: the same results bit for bit, with fewer rows stepped."""

import math

import numpy as np
import tenure.engine.kernels as K
import tenure.engine.state as state
from tenure.engine.shards import load_shard
from tenure.engine.simulator import Simulator
from tenure.engine.state import Shard

from tenure.scenario import load_scenario


def _tables(r):
    return [r.periods, r.cohorts, r.customers, r.panel]


def test_compact_moves_exactly_the_gone_rows_to_the_front_with_their_attributes():
    shard = Shard(track=True, panel=True, capacity=1000)
    shard.n = 1000
    rng = np.random.default_rng(3)
    for a in shard.arrays.values():
        a[:] = rng.integers(0, 100, a.size).astype(a.dtype)
    shard.arrays["ids"][:] = np.arange(1000)
    alive = (rng.random(1000) < 0.8).astype(np.uint8)
    alive[:100] = 0  # rows before the start are not touched
    shard.arrays["alive"][:] = alive
    before = {name: a.copy() for name, a in shard.arrays.items()}
    first_live = K.compact(shard.state(1000), 100)
    after = shard.arrays
    gone_after_start = int((alive[100:] == 0).sum())
    assert first_live == 100 + gone_after_start
    assert np.all(after["alive"][:first_live] == 0) and np.all(after["alive"][first_live:] == 1)
    assert all(np.array_equal(after[name][:100], before[name][:100]) for name in after)
    # every customer keeps every attribute: row i now holds the customer whose id is after["ids"][i]
    src = after["ids"]
    assert sorted(src.tolist()) == list(range(1000))
    assert all(np.array_equal(after[name], before[name][src]) for name in after)


def test_compaction_changes_no_table_and_skips_the_gone(monkeypatch):
    """A 36-month run with compaction equals the same run stepping every row, every table, bit for bit."""
    sc = load_scenario(None, {"run": {"customers": 20_000, "periods": 36, "seed": 5}})
    skipped = []
    compact = K.compact

    def spy(st, start):
        w = compact(st, start)
        skipped.append(w)
        return w

    monkeypatch.setattr(K, "compact", spy)
    compacted = Simulator(sc, panel_fraction=0.05, track_customers=True).run()
    monkeypatch.setattr(state, "COMPACT_ABOVE", math.inf)
    every_row = Simulator(sc, panel_fraction=0.05, track_customers=True).run()
    assert len(skipped) >= 2 and sum(skipped) > 0.05 * compacted.meta["customers_ever"]
    for a, b in zip(_tables(compacted), _tables(every_row), strict=True):
        assert a.equals(b)
    assert compacted.meta["customer_periods"] == every_row.meta["customer_periods"]


class _Interrupt(Exception):
    pass


def test_a_run_resumed_from_a_checkpoint_taken_after_a_compaction_is_the_plain_run(tmp_path):
    sc = load_scenario(None, {"run": {"customers": 20_000, "periods": 24, "seed": 5}})
    plain = Simulator(sc, 2, 0.05, True).run()

    def stop_after_eighteen(done, total):
        if done == 18:
            raise _Interrupt

    sim = Simulator(sc, 2, 0.05, True, checkpoint_every=12, checkpoint_dir=tmp_path)
    with np.testing.assert_raises(_Interrupt):
        sim.run(progress=stop_after_eighteen)
    shards = [load_shard(p)[0] for p in sorted(tmp_path.glob("shard-*-stage-0012.npz"))]
    assert len(shards) == 2 and all(s.gone > 0 for s in shards)  # the checkpoint holds compacted shards
    for a, b in zip(_tables(Simulator.resume(tmp_path).run()), _tables(plain), strict=True):
        assert a.equals(b)
