"""Speed of `tenure calibrate` and `tenure decide` at the sizes of the README's figures.

Usage:

    python benchmarks/bench_calibrate.py calibrate                  # 100 000 customers × 36 months panel
    python benchmarks/bench_calibrate.py compare --sample-customers 100000   # 50 markets × 25 allocations
    python benchmarks/bench_calibrate.py compare --sample-customers 20000
    python benchmarks/bench_calibrate.py coverage --customers 20000 --periods 24   # panel seeds 7, 11-25
    python benchmarks/bench_calibrate.py mechanisms --customers 30000 --periods 24 --markets 4

``calibrate`` simulates a panel of the default market with altered churn and
cross-selling (every customer of a 100 000-customer base in the panel), then times
the whole calibration (reading, bootstrap, solve, predictive check) as the CLI runs
it. ``compare`` builds 50 calibrated markets (the default market with draws spread
around it), and times the uncertainty sweep over 25 allocations (5 acquisition shares
× 5 retention mixes: current, equal, focus service / loyalty / alarm), after a warm-up
that loads the compiled kernels. ``coverage`` repeats the round trip of
tests/simulations/test_calibrate.py (a known market, a panel per seed, calibration with the
default settings) and counts, per parameter, the 90 % intervals of the draws that cover the truth;
one JSON line per calibration, then a summary. ``mechanisms`` times the decide sweep in one
process along the three ways of running its independent runs: threads over runs (``workers=2``),
one run after another on Numba's thread pool (``workers=1``, the old path) and a Dask
LocalCluster of two single-threaded worker processes; one JSON line each, with CPU seconds.
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


TRUTH = {"churn": {"trust": -3.0}, "cross_sell": {"enthusiasm": 1.2}, "market": {"competitor_pull": 0.3},
         "survey": {"item_noise": 0.7}}


def bench_coverage(customers: int, periods: int, markets: int, seeds: list[int]) -> dict:
    import numpy as np
    from tenure.engine.simulator import Simulator
    from tenure.models.panel import read_panel
    from tenure.simulations import calibrate as C

    from tenure.scenario import load_scenario

    base = load_scenario(None).scaled(customers).with_overrides({"run": {"periods": periods}})
    truth = base.with_overrides(TRUTH)
    covered: dict[str, int] = {}
    total_seconds, n_cal = 0.0, 0
    for seed in seeds:
        panel = Simulator(truth.with_overrides({"run": {"seed": seed}}), panel_fraction=1.0,
                          track_customers=False).run().panel
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "panel.parquet"
            panel.write_parquet(path)
            t0 = time.perf_counter()
            target = C.target_from_panel(read_panel(path), "truth", base, markets, seed=1)
            cal = C.calibrate(target, base)
            seconds = time.perf_counter() - t0
        q05, q95 = np.quantile(cal.draws, [0.05, 0.95], axis=0)
        true = C.base_values(truth, cal.params)
        inside = {p.key: bool(q05[j] <= true[j] <= q95[j]) for j, p in enumerate(cal.params)}
        for k, v in inside.items():
            covered[k] = covered.get(k, 0) + int(v)
        total_seconds += seconds
        n_cal += 1
        print(json.dumps({"what": "coverage", "seed": seed, "seconds": round(seconds, 1), "runs": cal.runs,
                          "iterations": cal.iterations, "converged": cal.converged,
                          "missed": [k for k, v in inside.items() if not v],
                          "load": round(os.getloadavg()[0], 2)}), flush=True)
    intervals = n_cal * len(covered)
    return {"what": "coverage-summary", "calibrations": n_cal, "intervals": intervals,
            "covered": sum(covered.values()), "coverage": round(sum(covered.values()) / max(intervals, 1), 3),
            "per_parameter": covered, "mean_seconds": round(total_seconds / max(n_cal, 1), 1)}


def bench_mechanisms(markets: int, customers: int, periods: int) -> dict:
    import numpy as np
    from tenure.engine.simulator import Simulator
    from tenure.simulations.compare import compare_uncertainty

    from tenure.scenario import load_scenario

    base = load_scenario(None, {"run": {"customers": customers, "periods": periods}})
    rng = np.random.default_rng(0)
    scen = [base.with_overrides({"churn": {"trust": float(-2 + 0.3 * rng.standard_normal())}}) for _ in range(markets)]
    Simulator(load_scenario(None, {"run": {"customers": 2_000, "periods": 2}})).run()
    compare_uncertainty(scen[:1], levers=("service",), acquisition_steps=2, workers=2)  # warm both kernel variants
    out = {}
    for path, kw in (("threads", {"workers": 2}), ("old", {"workers": 1}), ("dask", {"cluster": "local:2"})):
        c0, t0 = time.process_time(), time.perf_counter()
        res = compare_uncertainty(scen, levers=("service", "loyalty", "alarm"), acquisition_steps=5, **kw)
        out[path] = {"seconds": round(time.perf_counter() - t0, 2),
                     "driver_cpu_seconds": round(time.process_time() - c0, 2),
                     "best_equity": res.best["customer_equity"], "load": round(os.getloadavg()[0], 2)}
        print(json.dumps({"what": "mechanism", "path": path, **out[path]}), flush=True)
    return {"what": "mechanisms", "markets": markets, "customers": customers, "periods": periods, **out}


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
    ap.add_argument("what", choices=("calibrate", "compare", "coverage", "mechanisms"))
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--periods", type=int, default=36)
    ap.add_argument("--markets", type=int, default=50)
    ap.add_argument("--check-markets", type=int, default=10)
    ap.add_argument("--sample-customers", type=int, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, *range(11, 26)], help="coverage: panel seeds")
    args = ap.parse_args()
    if args.what == "mechanisms":
        out = bench_mechanisms(args.markets, args.customers, args.periods)
    elif args.what == "coverage":
        out = bench_coverage(args.customers, args.periods, args.markets, args.seeds)
    elif args.what == "calibrate":
        out = bench_calibrate(args.customers, args.periods, args.markets, args.check_markets)
    else:
        out = bench_compare(args.markets, args.customers, args.sample_customers or args.customers, args.periods)
    out["machine"] = f"{os.cpu_count()} cpu, {sys.platform}, load {os.getloadavg()[0]:.2f} at start"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
