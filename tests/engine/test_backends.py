"""One period loop, any backend; the engine's modelling constants are the scenario's.

Comparisons of runs are exact (``DataFrame.equals``): the same loop, the same keyed draws and
integer aggregates whatever holds the shards. The parameter checks use limits where the answer
follows from the equations of docs/model.md without simulation noise.
"""

import numpy as np
import pytest
from tenure.engine import kernels as K
from tenure.engine.shards import LocalShards
from tenure.engine.simulator import Simulator

from tenure.api import load_scenario
from tenure.panel_format import ANSWER_COLUMNS, ENGINE_PANEL_COLUMNS

TABLES = ("periods", "cohorts", "customers", "panel")


class Interrupt(Exception):
    """Stands for a run stopped from outside."""


def scenario(customers=8_000, periods=6, **sections):
    return load_scenario("default", run={"customers": customers, "periods": periods, "seed": 5}, **sections)


def assert_same(a, b):
    for name in TABLES:
        assert getattr(a, name).equals(getattr(b, name)), f"{name} differ"


@pytest.fixture(scope="module")
def reference():
    return Simulator(scenario(), panel_fraction=0.1, track_customers=True).run()


def test_an_explicit_local_backend_and_more_shards_change_nothing(reference):
    assert_same(Simulator(scenario(), 3, 0.1, True, backend=LocalShards()).run(), reference)


def test_a_fork_runs_as_a_fresh_simulator(reference):
    base = Simulator(scenario(), panel_fraction=0.1, track_customers=True)
    assert_same(base.fork().run(), reference)
    assert_same(base.fork().run(), reference)  # forks do not share state


def test_a_checkpointed_run_resumes_in_process_to_the_plain_result(reference, tmp_path):
    def stop_after_three(done, total):
        if done == 3:
            raise Interrupt

    sim = Simulator(scenario(), 2, 0.1, True, checkpoint_every=2, checkpoint_dir=tmp_path)
    with pytest.raises(Interrupt):
        sim.run(progress=stop_after_three)
    assert_same(Simulator.resume(tmp_path).run(), reference)


def test_engine_panel_columns_are_named_once():
    assert K.N_PANEL == len(ENGINE_PANEL_COLUMNS)
    assert ENGINE_PANEL_COLUMNS[K.PC_ANSWER0:] == ANSWER_COLUMNS


def test_birth_spreads_are_scenario_parameters():
    # with no spread every customer starts at its segment's mean (clipped, stored as float32)
    zero = {"initial_trust_sd": 0.0, "initial_enthusiasm_sd": 0.0, "initial_satisfaction_sd": 0.0}
    sc = scenario(segment_defaults=zero)
    sim = Simulator(sc)
    shard = sim.backend.shards[0]
    seg = shard.view("segment")
    for k, spec in enumerate(sc["segments"]):
        assert np.all(shard.view("trust")[seg == k] == np.float32(spec["initial_trust"]))
        assert np.all(shard.view("enthusiasm")[seg == k] == np.float32(spec["initial_enthusiasm"]))
        assert np.all(shard.view("satisfaction")[seg == k] == np.float32(spec["initial_satisfaction"]))
    assert np.std(Simulator(scenario()).backend.shards[0].view("trust")) > 0.05


def test_latent_nps_cut_offs_are_scenario_parameters():
    # the latent recommendation is clipped to [0, 10]: a cut-off of 0 makes everyone a promoter
    # and no one a detractor
    res = Simulator(scenario(survey={"nps_latent_promoter": 0.0, "nps_latent_detractor": 0.0})).run().periods
    assert (res["promoters"] == res["active"]).all()
    assert (res["detractors"] == 0).all()
