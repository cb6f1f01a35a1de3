"""End-to-end fitting time of the panel models on an engine-simulated 1M-customer × 36-period panel.

Simulates the panel with ``tenure simulate --panel-sample 1`` (skipped when the
file exists), then times ``tenure fit retention`` and ``tenure fit cross-sell`` as
separate processes (reading the file, validation, compression, compilation,
sampling and writing included), and checks R-hat ≤ 1.01 and bulk ESS ≥ 400 for
every named parameter from the written summary.csv.

Usage::

    python benchmarks/bench_panel_fit.py --customers 1000000 --periods 36 --work /tmp/bench
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

NAMED = {
    "retention": ("churn_intercept", "churn_trust", "churn_enthusiasm", "churn_satisfaction"),
    "cross-sell": ("xsell_intercept", "xsell_trust", "xsell_enthusiasm", "xsell_trust_x_enthusiasm"),
}


def _tenure(*args: str) -> float:
    """Run the tenure CLI in a fresh process; return the wall-clock seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tenure.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--periods", type=int, default=36)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tenure-bench-panel"))
    args = parser.parse_args()
    sim = args.work / f"sim-{args.customers}-{args.periods}-{args.seed}"
    panel = sim / "panel.parquet"
    if not panel.exists():
        secs = _tenure("simulate", "--customers", str(args.customers), "--periods", str(args.periods),
                       "--seed", str(args.seed), "--panel-sample", "1", "--out", str(sim), "-q",
                       "--no-customer-summary")
        print(f"simulated the panel in {secs:.1f} s")
    stats = pl.scan_parquet(panel).select(rows=pl.len(), customers=pl.col("customer_id").n_unique()).collect()
    print(f"panel: {stats['rows'][0]:,} rows, {stats['customers'][0]:,} customers, "
          f"{panel.stat().st_size / 1e6:.0f} MB; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    for command, named in NAMED.items():
        out = args.work / f"fit-{command}"
        secs = _tenure("fit", command, str(panel), "--out", str(out))
        summary = pl.read_csv(out / "summary.csv").filter(pl.col("parameter").is_in(named))
        worst_rhat, worst_ess = summary["r_hat"].max(), summary["ess_bulk"].min()
        ok = secs < 120 and worst_rhat <= 1.01 and worst_ess >= 400
        print(f"{command}: {secs:.1f} s end to end; max R-hat {worst_rhat:.4f}, min bulk ESS {worst_ess:.0f} "
              f"-> {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
