"""Customer-base fits end to end: the closed-form fast route against the PyMC route, each in a fresh process.

Every run is one ``tenure fit ...`` command (interpreter start, imports, reading, fitting,
the table, writing the run folder), timed by the parent around the whole child process.
For the fast route the first run uses an empty Numba cache (``NUMBA_CACHE_DIR`` set to a
new folder: the compile paid once per machine), the next ones the filled cache (warm).
The baseline is the same command with ``TENURE_FIT_ROUTE=pymc`` (PyMC builds the model,
PyTensor compiles it; its compile cache is warm after the first run, which is not timed),
run back to back in the same session, so the ratios compare like with like on a shared machine.

    python benchmarks/bench_clv_fits.py                      # every case, both methods, both routes
    python benchmarks/bench_clv_fits.py --cases sbg,bgnbd --methods map --repeats 2
    python benchmarks/bench_clv_fits.py --no-baseline        # the fast route only
    python benchmarks/bench_clv_fits.py --no-baseline --against /tmp/base --methods map  # against a checkout

``--against DIR`` also times the same commands with the ``tenure`` of another checkout
(``DIR/.venv/bin/tenure``, its Numba cache warmed by one untimed run), interleaved with this
one's warm runs, and reports that checkout's time over this one's, in wall and CPU seconds.

It prints one JSON line per run and a table of medians with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
TENURE = str(Path(sys.executable).with_name("tenure"))


def _cohorts(folder: Path) -> Path:
    path = folder / "cohorts.csv"  # Fader & Hardie (2007), regular cohort, years 0-7: 8 rows
    path.write_text("period,alive\n0,1000\n1,631\n2,468\n3,382\n4,326\n5,289\n6,262\n7,241\n")
    return path


def _cdnow_log(folder: Path) -> Path:
    path = folder / "cdnow.csv"
    rows = ["customer_id,date,amount"]
    for line in (DATA / "CDNOW_master.txt").read_text().splitlines()[1:]:
        parts = line.split()
        if parts:
            rows.append(f"{parts[0]},{parts[1]},{parts[3]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def cases(folder: Path) -> dict[str, list[str]]:
    """Name -> ``tenure fit`` arguments before ``-o`` and ``--method``."""
    return {
        "sbg": ["sbg", str(_cohorts(folder))],
        "gamma-gamma": ["gamma-gamma", str(DATA / "cdnow_customers_summary_with_transactions.csv")],
        "bgnbd": ["bgnbd", str(DATA / "cdnow_customers_summary.csv"), "--time-unit", "weeks"],
        "bgnbd-log": ["bgnbd", str(_cdnow_log(folder)), "--time-unit", "weeks"],
        "bgbb": ["bgbb", str(DATA / "donations.csv")],
        "pnbd": ["pnbd", str(DATA / "cdnow_customers_summary.csv"), "--time-unit", "weeks"],
        "mbgnbd": ["mbgnbd", str(DATA / "cdnow_customers_summary.csv"), "--time-unit", "weeks"],
    }


def run(args: list[str], method: str, out: Path, env: dict[str, str],
        tenure: str = TENURE) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, less sensitive to a shared machine's load) and exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([tenure, "fit", *args, "-o", str(out), "--method", method], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return wall, cpu, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="sbg,gamma-gamma,bgnbd,bgnbd-log,bgbb")
    parser.add_argument("--methods", default="map,mcmc")
    parser.add_argument("--repeats", type=int, default=1, help="warm runs per case and route")
    parser.add_argument("--no-baseline", action="store_true", help="skip the PyMC route")
    parser.add_argument("--no-fast", action="store_true", help="skip the fast route (the baseline only)")
    parser.add_argument("--pymc-cache-warm", action="store_true",
                        help="PyTensor's compile cache is already warm: skip the untimed PyMC run")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout with its own .venv (e.g. main): time its tenure too")
    opts = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-clv-"))
    table = cases(folder)
    medians: dict[tuple[str, str, str], float] = {}
    cpus: dict[tuple[str, str, str], float] = {}
    try:
        cache = folder / "numba-cache"
        for name in opts.cases.split(","):
            for method in opts.methods.split(","):
                routes = [] if opts.no_fast else ["first", "fast"]
                if opts.against is not None:
                    routes += ["against-untimed", "against", "fast-again"]
                if not opts.no_baseline:
                    routes += ["pymc"] if opts.pymc_cache_warm else ["pymc-untimed", "pymc"]
                for route in routes:
                    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
                    if route.startswith("pymc"):
                        env["TENURE_FIT_ROUTE"] = "pymc"
                    if route == "first":
                        shutil.rmtree(cache, ignore_errors=True)
                    tenure = TENURE
                    if route.startswith("against"):
                        env["NUMBA_CACHE_DIR"] = str(folder / "numba-cache-against")
                        tenure = str(opts.against / ".venv" / "bin" / "tenure")
                    n = 1 if route in ("first", "pymc-untimed", "against-untimed") else opts.repeats
                    walls, cpu_seconds = [], []
                    for _ in range(n):
                        wall, cpu, rc = run(table[name], method, folder / "out", env, tenure)
                        walls.append(wall)
                        cpu_seconds.append(cpu)
                        print(json.dumps({"case": name, "method": method, "route": route, "wall_s": round(wall, 2),
                                          "cpu_s": round(cpu, 2), "rc": rc, "load": os.getloadavg()[0]}),
                              flush=True)
                    if not route.endswith("untimed"):
                        medians[(name, method, route)] = sorted(walls)[len(walls) // 2]
                        cpus[(name, method, route)] = sorted(cpu_seconds)[len(cpu_seconds) // 2]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{'case':<12} {'method':<6} {'first (compile)':>16} {'warm':>8} {'pymc':>8} {'pymc / warm':>12}")
    for name in opts.cases.split(","):
        for method in opts.methods.split(","):
            first, warm = medians.get((name, method, "first")), medians.get((name, method, "fast"))
            base = medians.get((name, method, "pymc"))
            ratio = f"{base / warm:.1f}x" if base and warm else "-"
            print(f"{name:<12} {method:<6} {first or 0:>15.1f}s {warm or 0:>7.1f}s "
                  f"{(f'{base:.1f}s' if base else '-'):>8} {ratio:>12}")
    if opts.against is not None:
        print(f"\n{'case':<12} {'method':<6} {'warm wall':>10} {'warm CPU':>9} {'against wall':>13} "
              f"{'against CPU':>12} {'ratio wall':>11} {'ratio CPU':>10}")
        for name in opts.cases.split(","):
            for method in opts.methods.split(","):
                key = (name, method)
                warm = [medians[(*key, r)] for r in ("fast", "fast-again") if (*key, r) in medians]
                warm_cpu = [cpus[(*key, r)] for r in ("fast", "fast-again") if (*key, r) in cpus]
                if not warm or (*key, "against") not in medians:
                    continue
                wall, cpu = min(warm), min(warm_cpu)
                other, other_cpu = medians[(*key, "against")], cpus[(*key, "against")]
                print(f"{name:<12} {method:<6} {wall:>9.2f}s {cpu:>8.2f}s {other:>12.2f}s {other_cpu:>11.2f}s "
                      f"{other / wall:>10.2f}x {other_cpu / cpu:>9.2f}x")


if __name__ == "__main__":
    main()
