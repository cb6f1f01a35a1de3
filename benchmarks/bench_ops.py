"""Speed of the operational level: `tenure score` on 10 million customers, `tenure alarm` in batch and --follow.

    python benchmarks/bench_ops.py score [-n 10000000] [--draws 2000]
    python benchmarks/bench_ops.py alarm [-n 5000000]
    python benchmarks/bench_ops.py follow [--events 200]

score: a customer table (Parquet) of N customers with random answers, tenures, products, 5 segments
and margins, scored against a retention and a cross-sell posterior of --draws draws (made by hand:
speed does not depend on the values); reports the wall time of read + score + write and the peak
resident memory of the process (ru_maxrss). alarm: N feedback events through the batch detector.
follow: the delay from writing an event to its alert in the JSONL output, with `tenure alarm --follow`
running in a subprocess. Figures go to benchmarks/RESULTS.md with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

SEGMENTS = ("a", "b", "c", "d", "e")


def _customers(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame({
        "customer_id": np.arange(n, dtype=np.int64),
        "trust": rng.integers(1, 6, n, dtype=np.int8), "enthusiasm": rng.integers(1, 6, n, dtype=np.int8),
        "satisfaction": rng.integers(1, 6, n, dtype=np.int8), "tenure": rng.integers(0, 120, n, dtype=np.int32),
        "products": rng.integers(1, 6, n, dtype=np.int32),
        "segment": pl.Series(np.asarray(SEGMENTS)[rng.integers(0, len(SEGMENTS), n)]),
        "margin": rng.uniform(5.0, 80.0, n),
    })


def bench_score(n: int, draws: int, cross_sell: bool) -> None:
    from tenure.io import write_table
    from tenure.models.scoring import CrossSellDraws, HazardDraws, read_customers, score_customers

    rng = np.random.default_rng(1)
    bands = (0, 3, 6, 12, 24)
    hazard = HazardDraws(intercept=rng.normal(-3, 0.1, draws), segment=rng.normal(-3, 0.3, (draws, len(SEGMENTS))),
                         segments=SEGMENTS, slopes=rng.normal(-0.2, 0.02, (draws, 3)), bands=bands,
                         band_effect=np.c_[np.zeros(draws), rng.normal(-0.3, 0.05, (draws, len(bands) - 1))],
                         fitted_bands=(True,) * len(bands))
    xsell = CrossSellDraws(intercept=rng.normal(-3, 0.1, draws), segment=rng.normal(-3, 0.2, (draws, len(SEGMENTS))),
                           segments=SEGMENTS, coefficients=rng.normal(0.1, 0.02, (draws, 4))) if cross_sell else None
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "customers.parquet"
        _customers(n).write_parquet(src)
        # compile the kernel on a small table first (cache=True: once per machine)
        score_customers(read_customers(_customers(100)), hazard, xsell, horizon_months=36)
        t0 = time.perf_counter()
        table = read_customers(src)
        t1 = time.perf_counter()
        result = score_customers(table, hazard, xsell, horizon_months=36)
        t2 = time.perf_counter()
        write_table(result.table, Path(tmp) / "scores.parquet")
        t3 = time.perf_counter()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"score: {n:,} customers, {draws} draws, cross-sell {cross_sell}, {result.settings['cells']:,} cells: "
          f"read {t1 - t0:.1f} s, score {t2 - t1:.1f} s, write {t3 - t2:.1f} s, total {t3 - t0:.1f} s; "
          f"peak RSS {peak_gib:.2f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("score", "alarm", "follow"))
    parser.add_argument("-n", type=int, default=None)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--no-cross-sell", action="store_true")
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; load: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    if args.what == "score":
        bench_score(args.n or 10_000_000, args.draws, not args.no_cross_sell)


if __name__ == "__main__":
    main()
