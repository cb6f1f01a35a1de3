"""Every command that takes a seed gives the same outputs for the same inputs and seed, on 1 or 2 threads.

Each command runs twice, once with one Numba thread and once with two. Tables (Parquet, CSV) are
compared as data, posteriors (NetCDF) as arrays in every group, JSON files as values; figures are
excluded, and so are the wall-clock fields named in :data:`tenure.io.NOT_REPRODUCIBLE`, the one list
of what legitimately differs between two runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tenure.io import NOT_REPRODUCIBLE

pytestmark = pytest.mark.slow

TENURE = [sys.executable, "-c", "from tenure.cli import main; main()"]
FIT = ["--draws", "60", "--tune", "60", "--chains", "2", "-s", "5"]


def _tenure(args: list[str], cwd: Path, threads: int) -> None:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
    res = subprocess.run([*TENURE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]


def _strip(obj):
    """``obj`` without wall-clock fields, nor the manifest's checksums of figures, JSON and NetCDF files (those
    are compared value by value themselves)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items()
                if k not in NOT_REPRODUCIBLE and not k.endswith((".png", ".json", ".nc"))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _assert_same_outputs(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.suffix not in (".png", ".html"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.suffix not in (".png", ".html"))
    assert files_a == files_b
    for rel in files_a:
        pa, pb = a / rel, b / rel
        if pa.suffix in (".parquet", ".csv"):
            read = pl.read_parquet if pa.suffix == ".parquet" else pl.read_csv
            assert read(pa).equals(read(pb)), rel
        elif pa.suffix == ".nc":
            import arviz as az

            ia, ib = az.from_netcdf(pa), az.from_netcdf(pb)
            assert ia.groups() == ib.groups(), rel
            for group in ia.groups():
                ga, gb = ia[group], ib[group]
                assert set(ga.data_vars) == set(gb.data_vars), (rel, group)
                for var in ga.data_vars:
                    va, vb = ga[var].values, gb[var].values
                    same = np.array_equal(va, vb, equal_nan=va.dtype.kind == "f")
                    assert same, (rel, group, var)
        elif pa.suffix == ".json":
            assert _strip(json.loads(pa.read_text())) == _strip(json.loads(pb.read_text())), rel
        else:  # a scenario TOML, a text report: byte for byte
            assert pa.read_bytes() == pb.read_bytes(), rel


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A small market, its panel and its calibration, made once."""
    d = tmp_path_factory.mktemp("inputs")
    small = subprocess.run([*TENURE, "scenario", "scale", "default", "3000"], capture_output=True, text=True)
    (d / "small.toml").write_text(small.stdout)
    _tenure(["simulate", "small.toml", "-t", "12", "--panel-sample", "1", "-q", "-o", "sim"], d, 2)
    _tenure(["calibrate", "small.toml", "sim/panel.parquet", "-o", "market.toml", "--markets", "4",
             "--check-markets", "3", "-q"], d, 2)
    return d


COMMANDS = {
    "simulate": ["simulate", "small.toml", "-t", "6", "--panel-sample", "0.3", "-q"],
    "compare": ["compare", "small.toml", "-t", "6", "--seeds", "1", "--acquisition-steps", "3", "-q"],
    "decide": ["decide", "market.toml", "-t", "6", "--max-markets", "2", "--acquisition-steps", "3", "-q"],
    "calibrate": ["calibrate", "small.toml", "sim/panel.parquet", "--markets", "4", "--check-markets", "3", "-q"],
    "fit retention mcmc": ["fit", "retention", "sim/panel.parquet", *FIT],
    "fit retention map": ["fit", "retention", "sim/panel.parquet", "--method", "map", "-s", "5"],
    "fit retention advi": ["fit", "retention", "sim/panel.parquet", "--method", "advi", "--draws", "60", "-s", "5"],
    "fit cross-sell mcmc": ["fit", "cross-sell", "sim/panel.parquet", *FIT],
    "fit joint mcmc": ["fit", "joint", "sim/panel.parquet", *FIT],
    "fit nps mcmc": ["fit", "nps", "sim/panel.parquet", *FIT],
    "fit trim": ["fit", "trim", "sim/panel.parquet", "--draws", "60", "--chains", "2", "-s", "5"],
    "fit sbg": ["fit", "sbg", "cohorts.csv", *FIT],
    "fit bgnbd mcmc": ["fit", "bgnbd", "cdnow.csv", *FIT],
    "fit bgnbd map": ["fit", "bgnbd", "cdnow.csv", "--method", "map", "-s", "5"],
    "fit gamma-gamma": ["fit", "gamma-gamma", "cdnow_spend.csv", *FIT],
    "fit bgbb": ["fit", "bgbb", "donations.csv", *FIT],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_same_seed_same_outputs_on_1_and_2_threads(name: str, inputs: Path, tmp_path: Path):
    data = Path(__file__).resolve().parents[1] / "data"
    for src, dst in (("cdnow_customers_summary.csv", "cdnow.csv"),
                     ("cdnow_customers_summary_with_transactions.csv", "cdnow_spend.csv"),
                     ("donations.csv", "donations.csv")):
        if not (inputs / dst).exists():
            (inputs / dst).write_bytes((data / src).read_bytes())
    if not (inputs / "cohorts.csv").exists():
        (inputs / "cohorts.csv").write_text("period,alive\n0,1000\n1,869\n2,743\n3,653\n4,593\n5,551\n6,517\n7,491\n")
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}" / ("market.toml" if name == "calibrate" else "run")
        _tenure([*COMMANDS[name], "-o", str(out)], inputs, threads)
        outs.append(out.parent)
    _assert_same_outputs(*outs)
