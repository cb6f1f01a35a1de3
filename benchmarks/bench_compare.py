"""Speed of `tenure compare`: a 49-point allocation grid × 3 seeds × 200 000 customers × 36 months.

Usage:

    python benchmarks/bench_compare.py                      # the issue's configuration
    python benchmarks/bench_compare.py --customers 100000   # the bare `tenure compare` size

The grid is 7 acquisition shares × 7 retention mixes (current, equal, one focused
on each of the five levers); the seven all-acquisition points are one allocation,
run once. The script times the coarse grid alone (the figure the issue names),
then the whole comparison (refinement and marginal analysis included), after a
warm-up that loads the compiled kernels. Baseline in the same process: the same
grid with a fresh population built for every run instead of one forked per seed,
to show what the shared initial base saves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--periods", type=int, default=36)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--baseline-points", type=int, default=4, help="grid points timed without forking")
    args = ap.parse_args()

    from tenure.engine.simulator import Simulator
    from tenure.simulations.compare import Allocation, Evaluator, compare, current_budgets, retention_mixes

    from tenure.scenario import load_scenario

    sc = load_scenario(None, {"run": {"customers": args.customers, "periods": args.periods}})
    scale = args.customers / 100_000  # the default budgets are sized for 100 000 customers
    total = sum(current_budgets(sc).values()) * scale
    Simulator(load_scenario(None, {"run": {"customers": 5_000, "periods": 2}})).run()  # warm the kernels

    cur = current_budgets(sc)
    mix0 = {k: v / sum(cur[k] for k in cur if k != "acquisition") for k, v in cur.items() if k != "acquisition"}
    mixes = retention_mixes(mix0, tuple(mix0))
    grid = [Allocation(float(a), n, m) for a in np.linspace(0, 1, 7) for n, m in mixes]
    seeds = [int(sc["run"]["seed"]) + k for k in range(args.seeds)]
    runs = [0]
    ev = Evaluator(sc, seeds, total, progress=lambda k: runs.__setitem__(0, runs[0] + k))
    t0 = time.perf_counter()
    ev.evaluate(grid, "coarse")
    grid_seconds = time.perf_counter() - t0
    distinct = len(ev._memo)

    per_run = []
    for alloc in grid[: args.baseline_points]:
        t1 = time.perf_counter()
        s2 = sc.with_overrides({"run": {"seed": seeds[0]}})
        Simulator(s2, track_customers=False, budgets=alloc.budgets(total)).run()
        per_run.append(time.perf_counter() - t1)
    fresh_per_run = float(np.mean(per_run))
    forked_per_run = grid_seconds / max(distinct, 1)

    t0 = time.perf_counter()
    compare(sc, total_budget=total, seeds=args.seeds)
    full_seconds = time.perf_counter() - t0
    print(json.dumps({
        "grid_points": len(grid), "seeds": args.seeds, "customers": args.customers, "periods": args.periods,
        "distinct_runs": distinct, "grid_seconds": round(grid_seconds, 2),
        "seconds_per_run_forked": round(forked_per_run, 3), "seconds_per_run_fresh": round(fresh_per_run, 3),
        "full_compare_seconds": round(full_seconds, 2),
        "machine": f"{os.cpu_count()} cpu, {sys.platform}",
    }))


if __name__ == "__main__":
    main()
