"""Engine speed and memory: the Numba kernel against a plain-NumPy step, large runs, first-run time.

Usage (each mode prints one JSON line; RESULTS.md records them with the machine):

    python benchmarks/bench_engine.py throughput --customers 10000000 --periods 24
    python benchmarks/bench_engine.py numpy --customers 2000000 --periods 3
    python benchmarks/bench_engine.py memory --customers 100000000 --periods 12
    python benchmarks/bench_engine.py first-run
    python benchmarks/bench_engine.py small --customers 20000 --periods 36
    python benchmarks/bench_engine.py compare --customers 10000000 --periods 24 --baseline ../base

``throughput`` runs the default scenario with aggregates only (no customer
summary, no panel) and reports customer-periods per second over the simulated
periods (kernel compilation excluded: a warm-up run compiles first). ``numpy``
runs the same monthly step written with NumPy array operations and a NumPy
Generator (the survey answers of the 5 % respondents are left out, which only
flatters the baseline). ``memory`` reports the peak resident set size of a run.
``first-run`` times ``tenure simulate`` in a fresh process with an empty kernel
cache, then again with the cache warm, and the time until the first period
starts computing.

``compare --baseline DIR`` measures a change against another checkout side by
side: it runs ``throughput`` alternately in DIR (with DIR's own virtual
environment, ``DIR/.venv/bin/python`` unless ``--baseline-python`` says
otherwise) and in this tree, ``--repeats`` times each, each run in a fresh
process, and prints both medians and their ratio (this tree / baseline), and
the ratio of the processes' CPU seconds (baseline / this tree; above 1: faster).
Alternating the two spreads the machine's changing load over both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def _scenario(customers: int, periods: int):
    from tenure.scenario import load_scenario

    size = max(20 * customers, 2_000_000)
    return load_scenario(None, {"run": {"customers": customers, "periods": periods}, "market": {"size": size}})


def throughput(customers: int, periods: int, threads: int | None) -> dict:
    import numba
    from tenure.engine.simulator import Simulator

    if threads:
        numba.set_num_threads(threads)
    import tenure.engine.state as state

    below = state.SERIAL_STEP_BELOW, state.SERIAL_BIRTHS_BELOW
    state.SERIAL_STEP_BELOW = state.SERIAL_BIRTHS_BELOW = 0  # compile (or load) the thread-pool kernels too
    Simulator(_scenario(10_000, 2), track_customers=False).run()
    state.SERIAL_STEP_BELOW, state.SERIAL_BIRTHS_BELOW = below
    Simulator(_scenario(10_000, 2), track_customers=False).run()  # and the one-thread kernels
    t0 = time.perf_counter()
    sim = Simulator(_scenario(customers, periods), track_customers=False)
    build = time.perf_counter() - t0
    res = sim.run()
    return {
        "mode": "throughput",
        "customers": customers,
        "periods": periods,
        "threads": numba.get_num_threads(),
        "customer_periods": res.meta["customer_periods"],
        "seconds_simulating": round(res.meta["elapsed_seconds"], 3),
        "seconds_building_population": round(build, 3),
        "customer_periods_per_second": round(res.meta["customer_periods_per_second"]),
    }


def numpy_step_run(customers: int, periods: int, seed: int = 1) -> dict:
    """The engine's monthly step with NumPy array operations (same equations and parameters)."""
    from tenure.engine import kernels as K
    from tenure.engine.simulator import Simulator

    sim = Simulator(_scenario(customers, periods), track_customers=False)
    sh = sim.backend.shards[0]
    g, s = sim.g, sim.s
    rng = np.random.default_rng(seed)
    alive = sh.view("alive").astype(bool)
    seg = sh.view("segment").astype(np.int64)
    stage = sh.view("stage").astype(np.int64)
    streak = sh.view("streak").astype(np.int64)
    prods = sh.view("products").astype(np.int64)
    sat = sh.view("satisfaction").astype(np.float64)
    val = sh.view("value").astype(np.float64)
    tr = sh.view("trust").astype(np.float64)
    en = sh.view("enthusiasm").astype(np.float64)
    base = sh.view("base_logit").astype(np.float64)
    cp = 0
    t0 = time.perf_counter()
    for t in range(periods):
        p, _ = sim.period_inputs(t, int(alive.sum()))
        idx = np.flatnonzero(alive)
        n = idx.size
        cp += n
        sg = seg[idx]
        u = rng.random((6, n))
        z = rng.standard_normal(n)
        inc = u[0] < s[sg, K.S_INC_P] * p[K.P_INC_MULT]
        det = inc & (u[1] < p[K.P_COVERAGE])
        rep = det & (u[2] < p[K.P_REPAIR])
        hit = inc * (1.0 - g[K.G_RESTORE] * rep)
        q = p[K.P_QUALITY] + g[K.G_QUALITY_NOISE] * z - g[K.G_SEVERITY] * hit
        d = q - s[sg, K.S_EXPECT]
        sat_i, val_i, tr0, en0 = sat[idx], val[idx], tr[idx], en[idx]
        sat_i = sat_i + g[K.G_SAT_RATE] * (d - sat_i)
        val_i = val_i + g[K.G_VALUE_RATE] * ((q - s[sg, K.S_PRICE]) - val_i)
        pos, neg = np.clip(d, 0, 1), np.clip(-d, 0, 1)
        tr_i = tr0 + g[K.G_TRUST_GAIN] * (1 - tr0) * pos - g[K.G_TRUST_LOSS_DIS] * tr0 * neg
        tr_i = np.clip(tr_i - g[K.G_TRUST_LOSS_INC] * tr0 * hit, 0, 1)
        delight = np.clip(d - g[K.G_DELIGHT], 0, 1)
        en_i = en0 + g[K.G_ENTH_GAIN] * (1 - en0) * np.minimum(delight + p[K.P_CONTACT], 1) - g[K.G_ENTH_DECAY] * en0
        en_i = np.clip(en_i, 0, 1)
        st = stage[idx]
        need = g[K.G_UP_TRUST0 + np.minimum(st, 2)]
        good = (sat_i > g[K.G_UP_SAT]) & (st < 3) & (tr_i > need)
        sk = (streak[idx] + 1) * good
        bad = (inc & ~rep) | (d < -g[K.G_DOWN_DIS])
        up = (sk >= g[K.G_UP_PERIODS]) & ~bad
        st_new = st + up - (bad & (st > 0))
        sk = sk * ~up * ~bad
        eta = (base[idx] + g[K.G_CH_SAT] * sat_i + g[K.G_CH_TRUST] * (tr_i - g[K.G_REF_TRUST])
               + g[K.G_CH_ENTH] * (en_i - g[K.G_REF_ENTH]) - s[sg, K.S_VALUE_W] * val_i - s[sg, K.S_BARRIER]
               + g[K.G_CH_STAGE0 + st_new] + p[K.P_SHIFT] + g[K.G_CH_INC] * (1 - g[K.G_PROTECT] * tr0) * hit)
        hazard = 1 / (1 + np.exp(-eta))
        churned = u[3] < hazard
        pr = prods[idx]
        lam = np.exp(g[K.G_X_INT] + g[K.G_X_TRUST] * tr_i + g[K.G_X_ENTH] * en_i + g[K.G_X_TE] * tr_i * en_i
                     + g[K.G_X_PROD] * (pr - 1))
        xs = np.minimum(rng.poisson(lam), g[K.G_CATALOGUE] - pr)
        nps_latent = np.clip(g[K.G_NPS_INT] + g[K.G_NPS_SAT] * sat_i + g[K.G_NPS_TRUST] * tr_i
                             + g[K.G_NPS_ENTH] * en_i, 0, 10)
        _ = (int((nps_latent >= 8.5).sum()), int((nps_latent < 6.5).sum()), int((u[4] < g[K.G_SURVEY_RATE]).sum()),
             int((pr * s[sg, K.S_MARGIN_CENTS]).sum()), np.bincount(st_new, minlength=4), float(tr_i.sum()))
        sat[idx], val[idx], tr[idx], en[idx] = sat_i, val_i, tr_i, en_i
        stage[idx], streak[idx], prods[idx] = st_new, sk, pr + xs
        alive[idx] = ~churned
    elapsed = time.perf_counter() - t0
    return {"mode": "numpy", "customers": customers, "periods": periods, "customer_periods": cp,
            "seconds_simulating": round(elapsed, 3), "customer_periods_per_second": round(cp / elapsed)}


def memory(customers: int, periods: int) -> dict:
    out = throughput(customers, periods, None)
    out["mode"] = "memory"
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def small_runs(customers: int, periods: int, repeats: int = 20) -> dict:
    """Many small runs, as `tenure compare` and calibration make them: one-thread path against the pool.

    The default market scaled to ``customers`` (budgets and market size alike), forked and run
    ``repeats`` times; then again with the one-thread thresholds set to 0, so every kernel call wakes
    Numba's thread pool. Same results either way (tests/engine/test_determinism.py).
    """
    import tenure.engine.state as state
    from tenure.engine.simulator import Simulator

    from tenure.scenario import load_scenario

    sc = load_scenario(None, {"run": {"periods": periods}}).scaled(customers)
    out = {"mode": "small", "customers": customers, "periods": periods, "repeats": repeats}
    for label, step_below, births_below in (("one_thread_path", state.SERIAL_STEP_BELOW,
                                              state.SERIAL_BIRTHS_BELOW), ("thread_pool", 0, 0)):
        state.SERIAL_STEP_BELOW, state.SERIAL_BIRTHS_BELOW = step_below, births_below
        base = Simulator(sc, track_customers=False)
        base.fork(None).run()
        t0 = time.perf_counter()
        for _ in range(repeats):
            base.fork(None).run()
        out[f"seconds_per_run_{label}"] = round((time.perf_counter() - t0) / repeats, 4)
    out["load_average"] = os.getloadavg()[0]
    return out


def side_by_side(customers: int, periods: int, threads: int | None, baseline: str, baseline_python: str | None,
                 repeats: int) -> dict:
    """``throughput`` of a baseline checkout and of this tree, alternately, in fresh processes."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = os.path.abspath(baseline)
    trees = {"baseline": (baseline_python or os.path.join(base, ".venv", "bin", "python"), base),
             "this_tree": (sys.executable, here)}
    args = ["benchmarks/bench_engine.py", "throughput", "--customers", str(customers), "--periods", str(periods)]
    if threads:
        args += ["--threads", str(threads)]
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for python, cwd in trees.values():  # a first, untimed run each: kernel caches filled, files in the page cache
        subprocess.run([python, *args[:2], "--customers", "100000", "--periods", "2"], cwd=cwd, check=True,
                       capture_output=True)
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):
        for name, (python, cwd) in trees.items():
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            res = subprocess.run([python, *args], cwd=cwd, check=True, capture_output=True, text=True)
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs[name].append(json.loads(res.stdout.strip().splitlines()[-1]))
            runs[name][-1]["cpu_seconds"] = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
            loads.append(os.getloadavg()[0])
    out: dict = {"mode": "side-by-side", "customers": customers, "periods": periods, "repeats": repeats,
                 "baseline": base}
    for name, rs in runs.items():
        rates = sorted(r["customer_periods_per_second"] for r in rs)
        cpu = sorted(round(r["cpu_seconds"], 2) for r in rs)
        out[name] = {"customer_periods_per_second": rates, "median": float(np.median(rates)),
                     "cpu_seconds_per_process": cpu, "median_cpu_seconds": float(np.median(cpu)),
                     "threads": rs[0]["threads"], "customer_periods": rs[0]["customer_periods"]}
    out["same_customer_periods"] = out["baseline"]["customer_periods"] == out["this_tree"]["customer_periods"]
    out["ratio"] = round(out["this_tree"]["median"] / out["baseline"]["median"], 3)
    # CPU time of each whole process (start, warm-up, building the base, the months): less sensitive to
    # other work on the machine than wall-clock throughput
    out["cpu_ratio"] = round(out["baseline"]["median_cpu_seconds"] / out["this_tree"]["median_cpu_seconds"], 3)
    out["load_average"] = [round(x, 2) for x in loads]
    return out


def first_run() -> dict:
    """`tenure simulate` in fresh processes: empty cache, then warm cache."""
    exe = [sys.executable, "-m", "tenure.cli", "simulate", "--quiet"]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        timings = {}
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            subprocess.run(exe, env=env, check=True, capture_output=True)
            timings[label] = round(time.perf_counter() - t0, 2)
        probe = ("import time; t0=time.perf_counter(); from tenure.api import simulate;"
                 "from tenure.engine.simulator import Simulator; from tenure.api import load_scenario;"
                 "sim=Simulator(load_scenario()); sim.period_inputs(0, 1); print(time.perf_counter()-t0)")
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
        timings["warm_start_to_first_period_seconds"] = round(float(res.stdout.strip()), 2)
        timings["warm_process_to_first_period_seconds"] = round(time.perf_counter() - t0, 2)
    return {"mode": "first-run", "default_scenario_seconds": timings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["throughput", "numpy", "memory", "first-run", "compare", "small"])
    ap.add_argument("--customers", type=int, default=10_000_000)
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--baseline", default=None, help="compare: a checkout to measure against, side by side")
    ap.add_argument("--baseline-python", default=None, help="compare: the baseline's Python (default DIR/.venv)")
    ap.add_argument("--repeats", type=int, default=3, help="compare --baseline: runs of each tree")
    args = ap.parse_args()
    if args.mode == "throughput":
        out = throughput(args.customers, args.periods, args.threads)
    elif args.mode == "numpy":
        out = numpy_step_run(args.customers, args.periods)
    elif args.mode == "small":
        out = small_runs(args.customers, args.periods)
    elif args.mode == "memory":
        out = memory(args.customers, args.periods)
    elif args.mode == "compare" and args.baseline:
        out = side_by_side(args.customers, args.periods, args.threads, args.baseline, args.baseline_python,
                           args.repeats)
    elif args.mode == "compare":
        eng = throughput(args.customers, args.periods, args.threads)
        npy = numpy_step_run(min(args.customers, 2_000_000), min(args.periods, 6))
        out = {"mode": "compare", "engine": eng, "numpy": npy,
               "ratio": round(eng["customer_periods_per_second"] / npy["customer_periods_per_second"], 2)}
    else:
        out = first_run()
    out["machine"] = f"{os.cpu_count()} cpu, {sys.platform}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
