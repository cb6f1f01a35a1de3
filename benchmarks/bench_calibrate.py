"""Speed of `tenure calibrate` and `tenure decide` at the sizes of the README's figures.

Usage:

    python benchmarks/bench_calibrate.py calibrate                  # 100 000 customers × 36 months panel
    python benchmarks/bench_calibrate.py compare --sample-customers 100000   # 50 markets × 25 allocations
    python benchmarks/bench_calibrate.py compare --sample-customers 20000

``calibrate`` simulates a panel of the default market with altered churn and
cross-selling (every customer of a 100 000-customer base in the panel), then times
the whole calibration (reading, bootstrap, solve, predictive check) as the CLI runs
it. ``compare`` builds 50 calibrated markets (the default market with draws spread
around it), and times the uncertainty sweep over 25 allocations (5 acquisition shares
× 5 retention mixes: current, equal, focus service / loyalty / alarm), after a warm-up
that loads the compiled kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def bench_calibrate(customers: int, periods: int, markets: int, check: int) -> dict:
    from tenure.engine.simulator import Simulator
    from tenure.models.panel import read_panel
    from tenure.simulations import calibrate as C

    from tenure.scenario import load_scenario

    base = load_scenario(None).scaled(customers).with_overrides({"run": {"periods": periods}})
    truth = base.with_overrides({"churn": {"trust": -3.0}, "market": {"competitor_pull": 0.3},
                                 "cross_sell": {"enthusiasm": 1.0}})
    Simulator(base.scaled(2_000), panel_fraction=1.0).run()  # warm the kernels
    panel = Simulator(truth.with_overrides({"run": {"seed": 7}}), panel_fraction=1.0,
                      track_customers=False).run().panel
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "panel.parquet"
        panel.write_parquet(path)
        t0 = time.perf_counter()
        df = read_panel(path)
        target = C.target_from_panel(df, str(path), base, markets, seed=1)
        t_target = time.perf_counter() - t0
        cal = C.calibrate(target, base)
        t_solve = time.perf_counter() - t0 - t_target
        cal.check = C.predictive_check(cal, check) if check else None
        total = time.perf_counter() - t0
    return {"what": "calibrate", "panel_rows": panel.height, "panel_customers": target.n_customers,
            "periods": periods, "markets": markets, "check_markets": check, "simulation_runs": cal.runs,
            "read_and_bootstrap_seconds": round(t_target, 1), "solve_seconds": round(t_solve, 1),
            "total_seconds": round(total, 1), "iterations": cal.iterations,
            "cross_sell": {p.key: {"truth": float(t), "estimate": round(float(e), 3), "sd": round(float(s), 3)}
                           for p, t, e, s in zip(cal.params, C.base_values(truth, cal.params), cal.estimate,
                                                 cal.draws.std(axis=0, ddof=1), strict=True)
                           if p.key.startswith("cross_sell")}}


def bench_compare(markets: int, customers: int, sample: int, periods: int) -> dict:
    import numpy as np
    from tenure.engine.simulator import Simulator
    from tenure.simulations.compare import compare_uncertainty

    from tenure.scenario import load_scenario

    base = load_scenario(None, {"run": {"customers": customers, "periods": periods}})
    rng = np.random.default_rng(0)
    scen = [base.with_overrides({"churn": {"trust": float(-2 + 0.3 * rng.standard_normal())},
                                 "market": {"competitor_pull": float(0.1 * rng.standard_normal())},
                                 "cross_sell": {"enthusiasm": float(0.5 + 0.3 * rng.standard_normal())}})
            for _ in range(markets)]
    Simulator(load_scenario(None, {"run": {"customers": 2_000, "periods": 2}})).run()
    t0 = time.perf_counter()
    res = compare_uncertainty(scen, levers=("service", "loyalty", "alarm"), acquisition_steps=5, seeds=1,
                              sample_customers=sample)
    seconds = time.perf_counter() - t0
    return {"what": "decide", "markets": markets, "allocations": res.settings["allocations"],
            "customers": customers, "sample_customers": sample, "periods": periods,
            "seconds": round(seconds, 1), "best": [res.best["acquisition_share"], res.best["mix"]],
            "p_beats_current": round(res.best["p_beats_current"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("calibrate", "compare"))
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--periods", type=int, default=36)
    ap.add_argument("--markets", type=int, default=50)
    ap.add_argument("--check-markets", type=int, default=10)
    ap.add_argument("--sample-customers", type=int, default=None)
    args = ap.parse_args()
    if args.what == "calibrate":
        out = bench_calibrate(args.customers, args.periods, args.markets, args.check_markets)
    else:
        out = bench_compare(args.markets, args.customers, args.sample_customers or args.customers, args.periods)
    out["machine"] = f"{os.cpu_count()} cpu, {sys.platform}, load {os.getloadavg()[0]:.2f} at start"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
