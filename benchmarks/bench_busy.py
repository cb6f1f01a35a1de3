"""The decision loop on an idle machine and beside a CPU-bound process: compare, decide, calibrate.

Usage (from the repository root; prints one JSON line per timed run, one summary line per workload, then a
table of idle seconds, busy seconds, their ratio and the targets):

    python benchmarks/bench_busy.py                     # the issue's sizes (several minutes): the one
                                                        # command for the final idle run
    python benchmarks/bench_busy.py --quick             # a smoke run at small sizes (about a minute)
    python benchmarks/bench_busy.py --baseline          # also the old path: runs one after another,
                                                        # each on Numba's thread pool (TENURE_RUN_WORKERS=1)
    python benchmarks/bench_busy.py --what decide --customers 20000 --repeats 3

Workloads, each timed in a fresh process:

- ``compare``: bare ``tenure compare`` (default market at ``--customers`` × ``--periods``, 7 × 7 grid ×
  3 seeds, refinement, marginal analysis), wall time of the whole command, start-up included;
- ``decide``: ``benchmarks/bench_calibrate.py compare``: ``--markets`` calibrated markets × 25 allocations
  × ``--customers`` × ``--periods`` (the sweep only, after a warm-up);
- ``calibrate``: ``benchmarks/bench_calibrate.py calibrate``: a panel of ``--customers`` × ``--periods``,
  ``--markets`` bootstrap markets and ``--check-markets`` check markets (reading, bootstrap, solve, check).

Each workload first runs once untimed at a tiny size, its outcome ignored (so that no timed run compiles a
kernel), then is run
idle (nothing of ours beside it), then busy: one CPU-bound Python process (a busy loop) started
just before and stopped just after. The summary gives idle and busy seconds (medians over ``--repeats``) and
their ratio; on a 2-core machine a fair share of the CPU predicts about 2 (the target is at most 2.5). The
load average at the start of each run is printed beside it: other work on the machine makes the idle figure
pessimistic and the ratio optimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {"customers": 10_000, "periods": 12, "markets": 6, "check_markets": 2}
FULL = {"customers": 100_000, "periods": 36, "markets": 50, "check_markets": 10}
#: The issue's targets on an idle machine (seconds, at FULL sizes), and busy at most this many times idle.
IDLE_TARGET = {"compare": 5.0, "decide": 30.0, "calibrate": 30.0}
BUSY_RATIO_TARGET = 2.5


def table(summary: list[dict], full: bool) -> str:
    """The summary as a Markdown table: idle and busy seconds, their ratio, and each against its target.

    The idle targets hold at the issue's sizes only, so at other sizes their column says so instead.
    """
    rows = ["| workload | path | size | idle s | busy s | ratio | idle target | ratio target |",
            "| --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    for line in summary:
        what, idle, ratio = line["summary"], line["idle_seconds"], line["ratio"]
        target = IDLE_TARGET[what]
        idle_ok = (f"< {target:g} s: {'met' if idle < target else 'MISSED'}" if full
                   else f"< {target:g} s at full size (n/a)")
        ratio_ok = f"≤ {BUSY_RATIO_TARGET:g}: {'met' if ratio <= BUSY_RATIO_TARGET else 'MISSED'}"
        rows.append(f"| {what} | {line['path']} | {line['customers']:,} × {line['periods']} | {idle:.2f} | "
                    f"{line['busy_seconds']:.2f} | {ratio:.2f} | {idle_ok} | {ratio_ok} |")
    return "\n".join(rows)


def _command(what: str, args: argparse.Namespace, out: Path) -> list[str]:
    n, t = str(args.customers), str(args.periods)
    if what == "compare":
        tenure = Path(sys.executable).with_name("tenure")
        exe = [str(tenure)] if tenure.exists() else [sys.executable, "-m", "tenure.cli"]
        return [*exe, "compare", "-q", "-o", str(out), "-n", n, "-t", t]
    if what == "decide":
        return [sys.executable, str(HERE / "bench_calibrate.py"), "compare", "--customers", n, "--periods", t,
                "--markets", str(args.markets)]
    return [sys.executable, str(HERE / "bench_calibrate.py"), "calibrate", "--customers", n, "--periods", t,
            "--markets", str(args.markets), "--check-markets", str(args.check_markets)]


def _timed(what: str, args: argparse.Namespace, busy: bool, workers: str | None) -> dict:
    env = dict(os.environ)
    if workers is not None:
        env["TENURE_RUN_WORKERS"] = workers
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    load = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            proc = subprocess.run(_command(what, args, Path(d) / "out"), env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    seconds = wall
    if what != "compare":  # the scripts time the workload itself, after their set-up
        line = json.loads(proc.stdout.strip().splitlines()[-1])
        seconds = line["seconds"] if what == "decide" else line["total_seconds"]
    return {"what": what, "condition": "busy" if busy else "idle", "path": "old" if workers == "1" else "new",
            "seconds": round(seconds, 2), "wall_seconds": round(wall, 2), "load_at_start": round(load, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--what", nargs="+", choices=("compare", "decide", "calibrate"),
                    default=["compare", "decide", "calibrate"], help="workloads to time")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--customers", type=int, help="initial customers (default 100000; --quick 10000)")
    ap.add_argument("--periods", type=int, help="months (default 36; --quick 12)")
    ap.add_argument("--markets", type=int, help="decide's markets and calibrate's bootstrap markets (default 50)")
    ap.add_argument("--check-markets", type=int, help="calibrate's predictive-check markets (default 10)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per workload and condition (medians reported)")
    ap.add_argument("--baseline", action="store_true",
                    help="also time the old path (TENURE_RUN_WORKERS=1: runs one after another, each on Numba's "
                         "thread pool), in the same session")
    args = ap.parse_args()
    sizes = QUICK if args.quick else FULL
    for k, v in sizes.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    paths = [None, "1"] if args.baseline else [None]
    warm = argparse.Namespace(customers=3_000, periods=12, markets=4, check_markets=1)
    for what in args.what:  # untimed: fills the kernel caches, so no timed run pays a first compilation
        with tempfile.TemporaryDirectory() as d:  # (a tiny calibration may miss its panel: that is no matter)
            subprocess.run(_command(what, warm, Path(d) / "out"), capture_output=True)
    summary = []
    for what in args.what:
        for workers in paths:
            times: dict[str, list[float]] = {"idle": [], "busy": []}
            for _ in range(args.repeats):
                for busy in (False, True):
                    rec = _timed(what, args, busy, workers)
                    times[rec["condition"]].append(rec["seconds"])
                    print(json.dumps(rec), flush=True)
            idle, busy_s = statistics.median(times["idle"]), statistics.median(times["busy"])
            summary.append({"summary": what, "path": "old" if workers == "1" else "new",
                            "customers": args.customers, "periods": args.periods,
                            "idle_seconds": idle, "busy_seconds": busy_s, "ratio": round(busy_s / idle, 2),
                            "machine": f"{os.cpu_count()} cpu, {sys.platform}"})
    for line in summary:
        print(json.dumps(line), flush=True)
    full = all(getattr(args, k) == v for k, v in FULL.items())
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(table(summary, full), flush=True)


if __name__ == "__main__":
    main()
