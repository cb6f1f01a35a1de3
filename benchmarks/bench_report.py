"""Speed and size of the report: render time of `report.html` for a default compare run and a
1M-customer simulate run, and the file's size.

Usage:

    python benchmarks/bench_report.py                              # makes both runs in ./runs/ first
    python benchmarks/bench_report.py --compare DIR --simulate DIR # reuse existing run folders

Targets: under 3 s for the default compare run, under 10 s for the 1M-customer simulate run, under
3 MB for any run (figures are drawn from aggregates: the periods table, per-segment counts, the
allocations' summaries; never one point per customer).

Each run is rendered ``--repeat`` times in this process after one warm-up (the first render in a
process also imports matplotlib, polars' readers and Jinja2: reported as "cold"). Baseline in the
same process: checking the run against its manifest (reading every file for its SHA-256), the part
of a render that grows with the run folder's size; render minus baseline is drawing and writing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def _run(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "tenure.cli", *args, "-q"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", type=Path, default=Path("runs/bench-report-compare"))
    ap.add_argument("--simulate", type=Path, default=Path("runs/bench-report-simulate-1m"))
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not (args.compare / "manifest.json").exists():
        _run(["compare", "-o", str(args.compare)])
    if not (args.simulate / "manifest.json").exists():
        _run(["simulate", "-n", str(args.customers), "-o", str(args.simulate)])

    from tenure.report import open_run, write_report

    print(f"load: {os.getloadavg()[0]:.1f} (1-minute average), {os.cpu_count()} cores")
    for label, folder, target in (("default compare", args.compare, 3.0),
                                  (f"simulate, {args.customers:,} customers", args.simulate, 10.0)):
        start = time.perf_counter()
        path = write_report(folder)
        cold = time.perf_counter() - start
        times, checks = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            open_run(folder)
            checks.append(time.perf_counter() - start)
            start = time.perf_counter()
            write_report(folder)
            times.append(time.perf_counter() - start)
        size = path.stat().st_size
        data = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "report.html")
        best = min(times)
        print(f"{label}: render {best:.2f} s (median {sorted(times)[len(times) // 2]:.2f} s, cold {cold:.2f} s; "
              f"target < {target:.0f} s), of which checking the manifest {min(checks):.2f} s; report "
              f"{size / 1e6:.2f} MB (run folder {data / 1e6:.1f} MB; target < 3 MB)")


if __name__ == "__main__":
    main()
