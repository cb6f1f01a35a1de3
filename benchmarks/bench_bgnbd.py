"""BG/NBD: tenure against pymc-marketing and lifetimes, each run in a fresh process.

pymc-marketing and lifetimes are benchmark-only; install them into a separate virtual
environment so that the project's own PyMC is not disturbed::

    python -m venv /work/bench-venv
    /work/bench-venv/bin/pip install -e /work/main pymc-marketing lifetimes nutpie

Then, from the repository root with the project's environment active::

    python benchmarks/bench_bgnbd.py compare --baseline-python /work/bench-venv/bin/python

``compare`` runs, back to back and each in a fresh interpreter: tenure's BG/NBD on CDNOW
(NUTS with nutpie, 2 chains × 1000 draws after 1000 tuning steps), pymc-marketing's
``BetaGeoModel`` with the same sampler and settings, tenure's MAP against lifetimes'
MLE, and tenure on one million synthetic customers with weekly data. It prints one JSON
line per run and a summary; wall times are measured by the parent around the whole child
process (interpreter start, imports, compilation, sampling).

The single runs are sub-commands too (``tenure-cdnow``, ``pymc-marketing-cdnow``,
``tenure-map``, ``lifetimes-mle``, ``tenure-million``); each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CDNOW = ROOT / "tests" / "data" / "cdnow_customers_summary.csv"
PARAMS = ("r", "alpha", "a", "b")


def _min_ess(idata) -> float:
    import arviz as az

    ess = az.ess(idata, var_names=list(PARAMS), method="bulk")
    return float(min(float(ess[p]) for p in PARAMS))


def tenure_cdnow(draws: int, chains: int) -> dict:
    import polars as pl
    from tenure.models.bgnbd import BGNBDModel

    model = BGNBDModel(pl.read_csv(CDNOW), time_unit="weeks")
    idata = model.fit(method="mcmc", draws=draws, tune=1000, chains=chains, seed=1).idata
    means = {p: float(idata.posterior[p].mean()) for p in PARAMS}
    return {"min_ess_bulk": _min_ess(idata), "means": means}


def pymc_marketing_cdnow(draws: int, chains: int) -> dict:
    import pandas as pd
    from pymc_marketing.clv import BetaGeoModel

    df = pd.read_csv(CDNOW).rename(columns={"ID": "customer_id"})
    model = BetaGeoModel(data=df)
    idata = model.fit(method="mcmc", nuts_sampler="nutpie", draws=draws, tune=1000, chains=chains,
                      random_seed=1, progressbar=False)
    means = {p: float(idata.posterior[p].mean()) for p in PARAMS}
    return {"min_ess_bulk": _min_ess(idata), "means": means}


def tenure_map() -> dict:
    import polars as pl
    from tenure.models.bgnbd import BGNBDModel

    model = BGNBDModel(pl.read_csv(CDNOW), time_unit="weeks")
    summary = model.fit(method="map", draws=100, chains=1).summary()
    return {"estimates": dict(zip(summary["parameter"], summary["mode"], strict=True))}


def lifetimes_mle() -> dict:
    import pandas as pd
    from lifetimes import BetaGeoFitter

    df = pd.read_csv(CDNOW)
    fitter = BetaGeoFitter().fit(df["frequency"], df["recency"], df["T"])
    return {"estimates": {p: float(fitter.params_[p]) for p in PARAMS}}


def simulate_weekly(n: int, seed: int, truth: dict[str, float]) -> dict[str, np.ndarray]:
    """BG/NBD customers first buying in one of 52 weeks, observed to week 52; recency in whole weeks."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 53, n).astype(float)
    lam = rng.gamma(truth["r"], 1.0 / truth["alpha"], n)
    p = rng.beta(truth["a"], truth["b"], n)
    x = np.zeros(n, dtype=np.int64)
    t_last = np.zeros(n)
    now = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1.0, idx.size) / lam[idx]
        bought = now[idx] <= T[idx]
        hit = idx[bought]
        x[hit] += 1
        t_last[hit] = now[hit]
        drop = rng.random(hit.size) < p[hit]  # dropout after the purchase
        active[idx[~bought]] = False
        active[hit[drop]] = False
    return {"frequency": x, "recency": np.ceil(t_last), "T": T}


def tenure_million(n: int, draws: int, chains: int) -> dict:
    import polars as pl

    truth = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
    t0 = time.perf_counter()
    data = simulate_weekly(n, 2024, truth)
    t1 = time.perf_counter()
    from tenure.models.bgnbd import BGNBDModel

    model = BGNBDModel(pl.DataFrame(data), time_unit="weeks")
    idata = model.fit(method="mcmc", draws=draws, tune=1000, chains=chains, seed=1).idata
    t2 = time.perf_counter()
    alive = model.probability_alive(pl.DataFrame(data))
    t3 = time.perf_counter()
    return {"customers": n, "unique_rows": model.data.height, "simulate_s": t1 - t0,
            "posterior_s": t2 - t1, "p_alive_all_customers_s": t3 - t2,
            "p_alive_table_mb": alive.table.estimated_size() / 1e6,
            "min_ess_bulk": _min_ess(idata), "truth": truth,
            "means": {p: float(idata.posterior[p].mean()) for p in PARAMS}}


def _child(python: str, args: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([python, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update({"run": args[0], "wall_s": round(wall, 2)})
    print(json.dumps(result), flush=True)
    return result


def compare(baseline_python: str, repeats: int) -> None:
    """Back-to-back fresh-process runs, then a summary of ratios."""
    print(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                      "cpu_count": __import__("os").cpu_count()}), flush=True)
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(_child(sys.executable, ["tenure-cdnow"]))
        theirs.append(_child(baseline_python, ["pymc-marketing-cdnow"]))
    mle = _child(baseline_python, ["lifetimes-mle"])["estimates"]
    mode = _child(sys.executable, ["tenure-map"])["estimates"]
    million = _child(sys.executable, ["tenure-million"])
    t_ours = float(np.median([r["wall_s"] for r in ours]))
    t_theirs = float(np.median([r["wall_s"] for r in theirs]))
    summary = {
        "cdnow_wall_s_tenure_median": t_ours, "cdnow_wall_s_pymc_marketing_median": t_theirs,
        "speedup": round(t_theirs / t_ours, 2),
        "min_ess_bulk_tenure": min(r["min_ess_bulk"] for r in ours),
        "min_ess_bulk_pymc_marketing": min(r["min_ess_bulk"] for r in theirs),
        "map_vs_lifetimes_max_rel_diff": max(abs(mode[p] / mle[p] - 1) for p in PARAMS),
        "million_posterior_s": round(million["posterior_s"], 1),
        "million_wall_s": million["wall_s"],
    }
    print(json.dumps(summary), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("tenure-cdnow", "pymc-marketing-cdnow"):
        p = sub.add_parser(name)
        p.add_argument("--draws", type=int, default=1000)
        p.add_argument("--chains", type=int, default=2)
    sub.add_parser("tenure-map")
    sub.add_parser("lifetimes-mle")
    p = sub.add_parser("tenure-million")
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--chains", type=int, default=2)
    p = sub.add_parser("compare")
    p.add_argument("--baseline-python", default="/work/bench-venv/bin/python",
                   help="Python of the environment with pymc-marketing and lifetimes.")
    p.add_argument("--repeats", type=int, default=2, help="Fresh-process runs of each CDNOW fit.")
    args = parser.parse_args()
    if args.cmd == "compare":
        compare(args.baseline_python, args.repeats)
        return
    runners = {
        "tenure-cdnow": lambda: tenure_cdnow(args.draws, args.chains),
        "pymc-marketing-cdnow": lambda: pymc_marketing_cdnow(args.draws, args.chains),
        "tenure-map": tenure_map,
        "lifetimes-mle": lifetimes_mle,
        "tenure-million": lambda: tenure_million(args.customers, args.draws, args.chains),
    }
    print(json.dumps(runners[args.cmd]()), flush=True)


if __name__ == "__main__":
    main()
