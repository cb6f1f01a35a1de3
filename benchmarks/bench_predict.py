"""Customer-level predictions for a million customers: time and peak memory of `tenure predict`'s table.

From the repository root::

    python benchmarks/bench_predict.py --customers 1000000

Simulates ``--customers`` BG/NBD customers at CDNOW-like parameters (r 0.25, α 4, a 0.8, b 2.5,
ages of 27 to 39 weeks at day resolution, spend per purchase Gamma-Gamma with p 6, q 4, v 15),
fits the BG/NBD (or, with ``--model pnbd``, the Pareto/NBD) and Gamma-Gamma by MAP on a 20,000-customer
subsample, then times
:func:`tenure.models.clv_table.customer_table` (P(alive), purchases in the next 52 weeks, spend and
CLV at 10 % a year, each with a 90 % interval from 500 draws) on every customer. It prints one
JSON line: seconds for the table alone (wall and CPU, all threads), the peak resident memory of the
process (which holds the data and the fits too) and its growth during the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np
import polars as pl


def simulate(n: int, seed: int) -> pl.DataFrame:
    """BG/NBD customers with recency and T in weeks at whole days; spend per repeat purchase from Gamma-Gamma."""
    rng = np.random.default_rng(seed)
    T = rng.integers(27 * 7, 39 * 7 + 1, n) / 7.0
    lam = rng.gamma(0.25, 1 / 4.0, n)
    p = rng.beta(0.8, 2.5, n)
    count = rng.poisson(lam * T)
    x = np.minimum(count, rng.geometric(p))
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(count - x + 1, 1)), 0.0)
    t_x = np.where(x > 0, np.clip(np.round(t_x * 7) / 7, 1 / 7, T), 0.0)
    nu = rng.gamma(4.0, 1 / 15.0, n)
    spend = np.where(x > 0, rng.gamma(6.0 * np.maximum(x, 1), 1 / (nu * np.maximum(x, 1))), 0.0)
    return pl.DataFrame({"customer_id": np.arange(n), "frequency": x, "recency": t_x, "T": T,
                         "monetary_value": spend})


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--max-draws", type=int, default=500)
    parser.add_argument("--model", choices=("bgnbd", "pnbd"), default="bgnbd",
                        help="Transaction model fitted (by MAP) and predicted with: BG/NBD or Pareto/NBD.")
    args = parser.parse_args()
    from tenure.models.bgnbd import BGNBDModel
    from tenure.models.clv_table import customer_table, thinned
    from tenure.models.gamma_gamma import GammaGammaModel
    from tenure.models.pnbd import ParetoNBDModel

    data = simulate(args.customers, seed=1)
    sample = data.sample(min(20_000, args.customers), seed=2)
    bg = (BGNBDModel if args.model == "bgnbd" else ParetoNBDModel)(sample, time_unit="weeks")
    bg.fit(method="map", draws=1000, chains=2, seed=1)
    gg = GammaGammaModel(sample)
    gg.fit(method="map", draws=1000, chains=2, seed=1)
    bg.result = thinned(bg.result, args.max_draws)
    gg.result = thinned(gg.result, args.max_draws)
    customer_table(bg, data.head(1000), horizon=52, spend=gg, annual_discount_rate=0.1)  # warm caches
    before = peak_rss_mib()
    start, cpu = time.perf_counter(), time.process_time()
    table = customer_table(bg, data, horizon=52, spend=gg, annual_discount_rate=0.1)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"model": args.model, "customers": table.height, "draws": args.max_draws,
                      "seconds": round(seconds, 2),
                      "cpu_seconds": round(cpu, 2),
                      "peak_rss_mib": round(peak_rss_mib()), "rss_growth_mib": round(peak_rss_mib() - before),
                      "distinct_x_T": data.select("frequency", "T").unique().height,
                      "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "load": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
