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


def _write_customers(n: int, path: str) -> None:
    _customers(n).write_parquet(path)


def bench_score(n: int, draws: int, cross_sell: bool) -> None:
    from tenure.models.scoring import CrossSellDraws, HazardDraws, read_customers, score_customers

    from tenure.io import write_table

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
        # written by a child process, so that the peak memory below is the scoring's alone
        import multiprocessing

        child = multiprocessing.get_context("spawn").Process(target=_write_customers, args=(n, str(src)))
        child.start()
        child.join()
        # compile the kernel on a small table first (cache=True: once per machine)
        score_customers(read_customers(_customers(100)), hazard, xsell, horizon_months=36)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        table = read_customers(src)
        t1 = time.perf_counter()
        result = score_customers(table, hazard, xsell, horizon_months=36)
        t2 = time.perf_counter()
        write_table(result.table, Path(tmp) / "scores.parquet")
        t3 = time.perf_counter()
        cpu = time.process_time() - cpu0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"score: {n:,} customers, {draws} draws, cross-sell {cross_sell}, {result.settings['cells']:,} cells: "
          f"read {t1 - t0:.1f} s, score {t2 - t1:.1f} s, write {t3 - t2:.1f} s, total {t3 - t0:.1f} s; "
          f"CPU time (all threads) {cpu:.1f} s; peak RSS {peak_gib:.2f} GiB")


def _iid_stream(n: int, rng: np.random.Generator, change_at: int | None, points: float) -> pl.DataFrame:
    """One touchpoint's responses: NPS answers with the engine's default shares, shifted by ``points`` from
    ``change_at`` on (stochastic rounding, as engine/feedback.py does)."""
    import datetime as dt

    shares = np.array([0.01, 0.01, 0.02, 0.02, 0.03, 0.05, 0.08, 0.16, 0.22, 0.22, 0.18])
    nps = rng.choice(11, n, p=shares / shares.sum()).astype(float)
    sat = np.clip(np.rint(1 + nps * 0.4 + rng.normal(0, 0.7, n)), 1, 5)
    if change_at is not None:
        hit = np.arange(n) >= change_at
        u = rng.random(n)
        nps = np.where(hit, np.clip(np.floor(nps + points + u), 0, 10), nps)
        sat = np.where(hit, np.clip(np.floor(sat + 0.4 * points + u), 1, 5), sat)
    ts = pl.Series(np.arange(n, dtype=np.int64) * 1_000_000).cast(pl.Datetime("us", "UTC")) + dt.timedelta(0)
    return pl.DataFrame({"customer_id": np.arange(n), "timestamp": ts, "touchpoint": ["t"] * n,
                         "nps": nps.astype(np.int8), "satisfaction": sat.astype(np.int8)})


def bench_detector(replications: int, seed: int = 7) -> None:
    """False alarms on streams without change and detection delays after a change, at the default rules."""
    from tenure.models.alarm import Detector, Rules, read_feedback

    rules = Rules(thresholds={}, default={})
    rng = np.random.default_rng(seed)
    n_null = 200_000
    false = {m: 0 for m in ("detractor_share", "nps", "mean_satisfaction")}
    for _ in range(replications):
        fired = Detector(rules).feed(read_feedback(_iid_stream(n_null, rng, None, 0.0)))
        for m in fired["metric"].to_list():
            false[m] += 1
    tested = replications * (n_null - rules.window - rules.baseline + 1)
    print(f"false alarms per 100 000 responses (stream without change, {replications} x {n_null:,} responses):")
    for m, k in false.items():
        print(f"  {m}: {k} alarms, {1e5 * k / tested:.3f} per 100 000")
    start = rules.window + rules.baseline + 1000
    for points in (-0.5, -1.0, -2.0):
        delays: dict[str, list[float]] = {m: [] for m in false}
        for _ in range(replications):
            fired = Detector(rules).feed(read_feedback(_iid_stream(start + 5000, rng, start, points)))
            after = fired.filter(pl.col("event") >= start)
            for m in delays:
                hit = after.filter(pl.col("metric") == m)["event"]
                delays[m].append(float(hit[0] - start) if hit.len() else float("inf"))
        print(f"change of {points:+} NPS points: responses from the change to the alarm (median, 90th pct; "
              "inf = not within 5000):")
        for m, d in delays.items():
            arr = np.array(d)
            print(f"  {m}: median {np.median(arr):.0f}, 90 % {np.quantile(arr, 0.9):.0f}, "
                  f"missed {int(np.sum(~np.isfinite(arr)))}/{arr.size}")


def bench_alarm(n: int) -> None:
    """Batch alarms (validation, individual and aggregate) on n events of 3 touchpoints and 4 segments."""
    from tenure.models.alarm import alarms, read_feedback, read_rules

    rng = np.random.default_rng(2)
    shares = np.array([0.01, 0.01, 0.02, 0.02, 0.03, 0.05, 0.08, 0.16, 0.22, 0.22, 0.18])
    raw = pl.DataFrame({
        "customer_id": rng.integers(0, 10**7, n),
        "timestamp": pl.Series(np.arange(n, dtype=np.int64) * 100_000).cast(pl.Datetime("us", "UTC")),
        "touchpoint": pl.Series(np.asarray(["call_centre", "shop", "web"])[rng.integers(0, 3, n)]),
        "nps": rng.choice(11, n, p=shares / shares.sum()).astype(np.int8),
        "satisfaction": rng.integers(1, 6, n, dtype=np.int8), "complaint": rng.random(n) < 0.01,
        "segment": pl.Series(np.asarray(SEGMENTS[:4])[rng.integers(0, 4, n)])})
    rules = read_rules(Path(__file__).resolve().parents[1] / "docs" / "examples" / "alarm-rules.toml")
    alarms(read_feedback(raw.head(10_000)), rules)  # compile
    t0 = time.perf_counter()
    events = read_feedback(raw)
    t1 = time.perf_counter()
    result = alarms(events, rules)
    t2 = time.perf_counter()
    print(f"alarm: {n:,} events: validate {t1 - t0:.2f} s, alarms {t2 - t1:.2f} s, "
          f"{n / (t2 - t0):,.0f} events/s; {result.individual.height:,} individual, "
          f"{result.aggregate.height:,} aggregate alarms")


def bench_follow(events: int) -> None:
    """Delay from writing an event (a file renamed into a followed folder) to its alert in alerts.jsonl."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "in", Path(tmp) / "out"
        folder.mkdir()
        proc = subprocess.Popen([sys.executable, "-m", "tenure.cli", "alarm", str(folder), "--follow", "-o",
                                 str(out), "-q", "--poll", "0.1"])
        delays = []
        try:
            log = out / "alerts.jsonl"
            for i in range(events):
                ts = f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"
                (folder / f".e{i:05d}.csv").write_text(f"customer_id,timestamp,touchpoint,nps\n{i},{ts},web,0\n")
                t0 = time.perf_counter()
                os.replace(folder / f".e{i:05d}.csv", folder / f"e{i:05d}.csv")
                want = f'"individual:{i}"'
                while not (log.exists() and want in log.read_text()):
                    time.sleep(0.005)
                    if time.perf_counter() - t0 > 30:
                        raise RuntimeError("no alert within 30 s")
                delays.append(time.perf_counter() - t0)
                json.loads(log.read_text().splitlines()[-1])
        finally:
            proc.terminate()
            proc.wait()
    d = np.array(delays[1:])  # the first includes the start of the process
    print(f"follow: {d.size} events, delay from write to alert: median {np.median(d):.3f} s, "
          f"90 % {np.quantile(d, 0.9):.3f} s, max {d.max():.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("score", "detector", "alarm", "follow"))
    parser.add_argument("-n", type=int, default=None)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--no-cross-sell", action="store_true")
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; load: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    if args.what == "score":
        bench_score(args.n or 10_000_000, args.draws, not args.no_cross_sell)
    elif args.what == "alarm":
        bench_alarm(args.n or 5_000_000)
    elif args.what == "follow":
        bench_follow(args.events)
    elif args.what == "detector":
        bench_detector(args.n or 20)


if __name__ == "__main__":
    main()
