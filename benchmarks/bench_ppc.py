"""Cost of the posterior predictive check a fit now stores (:mod:`tenure.models.ppc`), against the fit itself.

Usage:

    python benchmarks/bench_ppc.py [--repeat 3]

For the BG/NBD on CDNOW (2 357 customers) and on CDNOW with every count × 100 (235 700 customers,
the same 1 016 compressed rows: the check replicates at most 50 000 customers per draw), and for the
sBG on Fader & Hardie's two cohorts: the best of ``--repeat`` MAP fits (which now include the check)
and of the check alone, in this process, and their ratio; likewise for the panel models (retention,
cross-sell, nps) on a 20 000-customer, 24-month panel from tests/models/panelgen.py, whose checks
replicate the compressed cells. Prints one Markdown table row per case.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import polars as pl

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from tenure.models.bgnbd import BGNBDModel
    from tenure.models.sbg import SBGModel

    cdnow = pl.read_csv(DATA / "cdnow_customers_summary.csv")
    alive = {"regular": [1000, 631, 468, 380, 326, 289, 262, 241], "highend": [1000, 869, 743, 653, 593, 551, 517, 491]}
    cohorts = pl.DataFrame({"cohort": [c for c, a in alive.items() for _ in a],
                            "period": [t for a in alive.values() for t in range(len(a))],
                            "alive": [v for a in alive.values() for v in a]})
    cases = [("BG/NBD, CDNOW (2 357 customers)", lambda: BGNBDModel(cdnow, time_unit="weeks")),
             ("BG/NBD, CDNOW × 100 (235 700 customers)",
              lambda: BGNBDModel(cdnow.with_columns(pl.lit(100).alias("count")), time_unit="weeks")),
             ("sBG, 2 cohorts per cohort (2 000 customers)", lambda: SBGModel(cohorts, pooled=False))]
    sys.path.insert(0, str(DATA.parent / "models"))
    from panelgen import simulate_panel
    from tenure.models.cross_sell import CrossSellModel
    from tenure.models.nps import NPSModel
    from tenure.models.panel import read_panel
    from tenure.models.retention import RetentionModel

    panel = read_panel(simulate_panel(20_000, 24, seed=2024)[0])
    cases += [(f"{cls.__name__}, 20 000 customers × 24 months", lambda c=cls: c(panel))
              for cls in (RetentionModel, CrossSellModel, NPSModel)]
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| case | MAP fit with the check (best) | the check alone (best) | check / fit |")
    print("| --- | --- | --- | --- |")
    for name, make in cases:
        model = make()
        model.fit(method="map", draws=1000, chains=1, seed=1)  # warm-up: compilation, imports
        fit = best(lambda m=model: m.fit(method="map", draws=1000, chains=1, seed=1), args.repeat)
        check = best(lambda m=model: m.predictive_check(m.idata, 1), args.repeat)
        print(f"| {name} | {fit:.3f} s | {check:.3f} s | {check / fit:.3f} |")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
