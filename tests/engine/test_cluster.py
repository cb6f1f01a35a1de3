"""Scale-out on Dask: same results on any cluster, lost workers rebuilt, runs resumed.

The reference is the single-process :class:`Simulator`; every comparison is exact (``DataFrame.equals``
on the periods, cohorts, customers and panel tables), because the engine draws every random number
from a key of (seed, customer id, period) and adds up only integers across shards.
"""

import os
import pickle
import signal
import sys

import pytest
from tenure.engine.cluster import DistributedSimulator, connect, load_shard, parse_cluster, run_many
from tenure.engine.simulator import Simulator
from typer.testing import CliRunner

from tenure.api import load_scenario, simulate
from tenure.cli import app
from tenure.errors import InputError

pytest.importorskip("distributed")

runner = CliRunner()
TABLES = ("periods", "cohorts", "customers", "panel")
PANEL = 0.05


class Interrupt(Exception):
    """Stands for a run stopped from outside (Ctrl-C, a scheduler's time limit, a lost driver)."""


def scenario(seed=11, customers=30_000, periods=8):
    return load_scenario("default", run={"customers": customers, "periods": periods, "seed": seed})


def assert_same(a, b):
    for name in TABLES:
        left, right = getattr(a, name), getattr(b, name)
        assert left.equals(right), f"{name} differ"


@pytest.fixture(scope="module")
def reference():
    return Simulator(scenario(), panel_fraction=PANEL, track_customers=True).run()


@pytest.fixture(scope="module")
def client2():
    with connect("local:2") as client:
        yield client


@pytest.fixture(scope="module")
def client3():
    with connect("local:3") as client:
        yield client


def distributed_run(client, progress=None, **kw):
    sim = DistributedSimulator(scenario(), client, panel_fraction=PANEL, track_customers=True, **kw)
    return sim.run(progress=progress)


def kill_one_worker_after(client, period):
    """A progress callback that SIGKILLs one worker process once ``period`` periods are done."""
    pids = client.run(os.getpid)
    victim = pids[sorted(pids)[0]]

    def progress(done, total):
        if done == period:
            os.kill(victim, signal.SIGKILL)

    return progress


def interrupt_after(period):
    def progress(done, total):
        if done == period:
            raise Interrupt

    return progress


# -- same results everywhere --------------------------------------------------------------------------------------
def test_in_process_shards_give_the_single_process_result(reference):
    assert_same(distributed_run(None, shards=3), reference)


def test_two_workers_bit_identical(client2, reference):
    client2.wait_for_workers(2)
    result = distributed_run(client2)
    assert result.meta["shards"] == 2 and result.meta["workers"] == 2 and result.meta["recoveries"] == 0
    assert_same(result, reference)


@pytest.mark.parametrize("shards", [None, 5])
def test_three_workers_bit_identical_for_any_shard_count(client3, reference, shards):
    client3.wait_for_workers(3)
    result = distributed_run(client3, shards=shards)
    assert result.meta["shards"] == (shards or 3)
    assert_same(result, reference)


def test_aggregates_only_runs_match_too(client2):
    # the large-run configuration: no customer summary and no panel
    sc = scenario(seed=5, customers=40_000, periods=6)
    ref = Simulator(sc, track_customers=False).run()
    result = DistributedSimulator(sc, client2, track_customers=False).run()
    assert result.customers is None and result.panel is None
    assert result.periods.equals(ref.periods) and result.cohorts.equals(ref.cohorts)


def test_run_many_maps_independent_runs_in_order(client2):
    specs = [scenario(seed=s, customers=3_000, periods=4) for s in (1, 2, 3)]
    here = run_many(simulate, specs)
    there = run_many(simulate, specs, cluster=client2)
    assert [r.meta["seed"] for r in there] == [1, 2, 3]
    for a, b in zip(here, there, strict=True):
        assert a.periods.equals(b.periods) and a.customers.equals(b.customers)


# -- faults -------------------------------------------------------------------------------------------------------
def test_killed_worker_is_rebuilt_by_replay(client2, reference):
    client2.wait_for_workers(2)
    result = distributed_run(client2, progress=kill_one_worker_after(client2, 3))
    assert result.meta["recoveries"] >= 1
    assert_same(result, reference)


def test_killed_worker_is_rebuilt_from_its_checkpoint(client2, reference, tmp_path):
    client2.wait_for_workers(2)
    result = distributed_run(client2, progress=kill_one_worker_after(client2, 5), checkpoint_every=2,
                             checkpoint_dir=tmp_path)
    assert result.meta["recoveries"] >= 1
    assert_same(result, reference)


# -- checkpoints and resuming -------------------------------------------------------------------------------------
def test_interrupted_run_resumes_to_the_uninterrupted_result(reference, tmp_path):
    sim = DistributedSimulator(scenario(), panel_fraction=PANEL, track_customers=True, checkpoint_every=2,
                               checkpoint_dir=tmp_path)
    with pytest.raises(Interrupt):
        sim.run(progress=interrupt_after(5))
    # one whole checkpoint (after period 4): the driver's state and one file per shard, no temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["driver.pkl", "shard-00000-stage-0004.npz"]
    saved = pickle.loads((tmp_path / "driver.pkl").read_bytes())
    assert saved["state"].stage == 4 and len(saved["state"].rows) == 4
    shard, stage, chunks = load_shard(tmp_path / "shard-00000-stage-0004.npz")
    assert stage == 4 and len(chunks) == 4 and shard.n == saved["next_id"] - sum(
        a[1] for a in saved["state"].pending[0])
    resumed = DistributedSimulator.resume(tmp_path)
    assert_same(resumed.run(), reference)


def test_a_run_checkpointed_in_process_resumes_on_a_cluster(client3, reference, tmp_path):
    sim = DistributedSimulator(scenario(), shards=4, panel_fraction=PANEL, track_customers=True,
                               checkpoint_every=3, checkpoint_dir=tmp_path)
    with pytest.raises(Interrupt):
        sim.run(progress=interrupt_after(4))
    result = DistributedSimulator.resume(tmp_path, client3).run()
    assert result.meta["shards"] == 4
    assert_same(result, reference)


def test_a_new_run_refuses_a_folder_holding_a_checkpoint(tmp_path):
    (tmp_path / "driver.pkl").write_bytes(b"")
    sim = DistributedSimulator(scenario(customers=100, periods=2), checkpoint_every=1, checkpoint_dir=tmp_path)
    with pytest.raises(InputError, match="already holds a checkpoint"):
        sim.run()


# -- the command line ---------------------------------------------------------------------------------------------
RUN = ["-n", "20000", "-t", "6", "--seed", "4", "--panel-sample", "0.1", "--format", "csv", "-q"]


def read_tables(out):
    return {name: (out / f"{name}.csv").read_text() for name in TABLES}


def test_cli_resume_and_cluster_give_the_plain_result(tmp_path):
    plain = tmp_path / "plain"
    res = runner.invoke(app, ["simulate", *RUN, "--out", str(plain)])
    assert res.exit_code == 0, res.output
    # interrupted through the Python API after 4 of 6 months, checkpointed every 2, then resumed by the CLI
    ck = tmp_path / "ck"
    sc = load_scenario("default", customers=20_000, periods=6, seed=4)  # what -n 20000 -t 6 --seed 4 runs
    with pytest.raises(Interrupt):
        DistributedSimulator(sc, panel_fraction=0.1, checkpoint_every=2, checkpoint_dir=ck).run(
            progress=interrupt_after(4))
    resumed = tmp_path / "resumed"
    res = runner.invoke(app, ["simulate", "--resume", str(ck), "--out", str(resumed), "--format", "csv", "-q"])
    assert res.exit_code == 0, res.output
    assert read_tables(resumed) == read_tables(plain)
    on_cluster = tmp_path / "cluster"
    res = runner.invoke(app, ["simulate", *RUN, "--cluster", "local:2", "--shards", "3", "--checkpoint-every", "2",
                              "--checkpoint-dir", str(tmp_path / "ck2"), "--out", str(on_cluster)])
    assert res.exit_code == 0, res.output
    assert read_tables(on_cluster) == read_tables(plain)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--cluster", "yarn"], "--cluster: expected local:N or tcp://HOST:PORT"),
        (["--cluster", "local:0"], "--cluster: expected local:N"),
        (["--cluster", "tcp://nohost"], "--cluster: expected"),
        (["--shards", "0"], "--shards: must be at least 1"),
        (["--checkpoint-every", "0", "--checkpoint-dir", "CK"], "--checkpoint-every: must be at least 1"),
        (["--checkpoint-every", "3"], "--checkpoint-every: needs a folder"),
        (["--resume", "EMPTY"], "holds no tenure checkpoint"),
    ],
)
def test_bad_scale_options_exit_2_with_one_line(tmp_path, args, needle):
    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / a) if a in ("CK", "EMPTY") else a for a in args]
    out = tmp_path / "never"
    res = runner.invoke(app, ["simulate", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_resume_refuses_options_that_define_a_run(tmp_path):
    (tmp_path / "driver.pkl").write_bytes(b"")
    res = runner.invoke(app, ["simulate", "--resume", str(tmp_path), "-n", "5", "--seed", "2"])
    assert res.exit_code == 2 and "drop --customers, --seed" in res.output
    res = runner.invoke(app, ["simulate", "--checkpoint-dir", str(tmp_path)])
    assert res.exit_code == 2 and f"--resume {tmp_path}" in res.output.replace("\n", "")


def test_cluster_without_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails as if not installed
    res = runner.invoke(app, ["simulate", "--cluster", "local:2"])
    assert res.exit_code == 2, res.output
    assert 'pip install "tenure[cluster]"' in res.output and len(res.output.strip().splitlines()) == 1


def test_parse_cluster():
    assert parse_cluster("local:4") == ("local", 4)
    assert parse_cluster("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")
    assert parse_cluster("tls://scheduler.example.org:8786")[0] == "address"
    for bad in ("local", "local:x", "10.0.0.5:8786", "http://a:1"):
        with pytest.raises(InputError):
            parse_cluster(bad)


def test_compare_on_a_cluster_equals_in_process(client2):
    """`tenure compare --cluster`: every (allocation, seed) run is a task; the answer is the in-process one."""
    import json

    from tenure.simulations.compare import compare

    sc = load_scenario("default", run={"customers": 4000, "periods": 12, "seed": 3})
    here = compare(sc, 10_400, acquisition_steps=3, seeds=2)
    there = compare(sc, 10_400, acquisition_steps=3, seeds=2, cluster=client2)
    assert there.runs.equals(here.runs)
    assert json.dumps(there.marginal, sort_keys=True) == json.dumps(here.marginal, sort_keys=True)
    assert there.best["acquisition_share"] == here.best["acquisition_share"]


@pytest.mark.parametrize("spec", ["local:0", "udp://x"])
def test_compare_bad_cluster_exits_2_and_writes_nothing(tmp_path, spec):
    result = runner.invoke(app, ["compare", "-n", "1000", "-t", "3", "--cluster", spec, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "--cluster" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_replications_on_a_cluster_equal_in_process(client2):
    """`tenure simulate --replications R --cluster`: one task per seed, the in-process tables exactly."""
    from tenure.simulations.replications import replicate

    sc = scenario(seed=5, customers=5000, periods=6)
    assert replicate(sc, 3, client2).equals(replicate(sc, 3))
