"""Scale-out on Dask: a LocalCluster against one process, scaling from 1 to 2 workers, a projection to 1B.

Usage (prints one JSON line per run, then a summary line; RESULTS.md records them with the machine):

    python benchmarks/bench_cluster.py --customers 100000000 --periods 12 --workers 2
    python benchmarks/bench_cluster.py --customers 20000000 --periods 12 --workers 1 2 --baseline

Every run is the default scenario with aggregates only (no customer summary, no panel), on a
``LocalCluster`` of N single-threaded worker processes with one shard per worker. For each run the
script reports the wall time (population build and the periods), customer-periods per second, and the
peak resident memory of every worker and of the driver (``ru_maxrss``). ``--baseline`` first runs the
same market in this process with the same number of Numba threads as workers, so the ratio is taken
in one session. The summary gives the scaling efficiency ``t(1 worker) / (2 * t(2 workers))`` when
both were run, and projects a 1B-customer run from the measured per-shard figures: bytes per
customer (peak less the idle worker's memory) and customer-periods per second per worker.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def _scenario(customers: int, periods: int):
    from tenure.scenario import load_scenario

    size = max(20 * customers, 2_000_000)
    return load_scenario(None, {"run": {"customers": customers, "periods": periods}, "market": {"size": size}})


def _peak_rss_gib() -> float:
    """Peak resident memory of this process since the last :func:`_reset_peak` (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _reset_peak() -> None:
    """Reset the peak: worker processes forked from a driver that ran a big baseline inherit its peak."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def cluster_run(customers: int, periods: int, workers: int) -> dict:
    from tenure.engine.cluster import DistributedSimulator, connect

    t_start = time.perf_counter()
    with connect(f"local:{workers}") as client:
        t_ready = time.perf_counter()
        client.run(_reset_peak)
        idle_rss = max(client.run(_peak_rss_gib).values())
        sim = DistributedSimulator(_scenario(customers, periods), client, shards=workers, track_customers=False)
        res = sim.run()
        t_done = time.perf_counter()
        worker_rss = sorted(client.run(_peak_rss_gib).values())
        row = res.periods.tail(1).row(0, named=True)
    cp = res.meta["customer_periods"]
    return {
        "mode": "cluster",
        "workers": workers,
        "customers": customers,
        "periods": periods,
        "customer_periods": cp,
        "seconds_cluster_start": round(t_ready - t_start, 2),
        "seconds_run": round(t_done - t_ready, 2),
        "customer_periods_per_second": round(cp / (t_done - t_ready)),
        "worker_peak_rss_gib": [round(x, 2) for x in worker_rss],
        "worker_idle_rss_gib": round(idle_rss, 2),
        "driver_peak_rss_gib": round(_peak_rss_gib(), 2),
        "active_at_end": row["active"],
    }


def local_run(customers: int, periods: int, threads: int) -> dict:
    import numba
    from tenure.engine.simulator import Simulator

    numba.set_num_threads(threads)
    t0 = time.perf_counter()
    res = Simulator(_scenario(customers, periods), track_customers=False).run()
    seconds = time.perf_counter() - t0
    cp = res.meta["customer_periods"]
    return {
        "mode": "one-process",
        "threads": threads,
        "customers": customers,
        "periods": periods,
        "customer_periods": cp,
        "seconds_run": round(seconds, 2),
        "customer_periods_per_second": round(cp / seconds),
        "peak_rss_gib": round(_peak_rss_gib(), 2),
        "active_at_end": res.periods.tail(1).row(0, named=True)["active"],
    }


def project(run: dict, target: int = 1_000_000_000, worker_gib: float = 8.0, periods: int = 12) -> dict:
    """1B customers from one measured cluster run: workers needed and time, assuming linear scaling per shard."""
    per_worker_customers = run["customers"] / run["workers"]
    gib_per_customer = (max(run["worker_peak_rss_gib"]) - run["worker_idle_rss_gib"]) / per_worker_customers
    per_worker_rate = run["customer_periods_per_second"] / run["workers"]
    usable = 0.8 * worker_gib - run["worker_idle_rss_gib"]  # fill workers to 80 % of their memory
    workers = int(-(-target * gib_per_customer // usable))
    cp = target * periods * 1.02  # the base plus about 2 % new customers over a year in the default market
    return {
        "projection_customers": target,
        "projection_periods": periods,
        "bytes_per_customer_measured": round(gib_per_customer * 2**30, 1),
        "worker_memory_gib": worker_gib,
        "workers_needed": workers,
        "seconds_projected": round(cp / (per_worker_rate * workers), 1),
        "assumes": "per-worker rate and memory as measured; the driver only adds integers, so it does not grow",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=20_000_000)
    ap.add_argument("--periods", type=int, default=12)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--baseline", action="store_true", help="Also run in this process first (same thread count).")
    args = ap.parse_args()

    from tenure.engine.cluster import warm_kernels

    warm_kernels()
    runs = []
    if args.baseline:
        base = local_run(args.customers, args.periods, max(args.workers))
        print(json.dumps(base), flush=True)
    for w in args.workers:
        r = cluster_run(args.customers, args.periods, w)
        runs.append(r)
        print(json.dumps(r), flush=True)
    summary: dict = {"mode": "summary"}
    by = {r["workers"]: r for r in runs}
    if 1 in by and 2 in by:
        summary["efficiency_1_to_2_workers"] = round(by[1]["seconds_run"] / (2 * by[2]["seconds_run"]), 3)
    if args.baseline:
        summary["cluster_over_one_process_time"] = round(runs[-1]["seconds_run"] / base["seconds_run"], 3)
    summary.update(project(runs[-1]))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
