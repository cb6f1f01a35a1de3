"""Replications: one scenario run with several seeds, summarised with intervals over seeds.

A single run of a market is one draw of its randomness; replications show how much of a result is
noise. Replication ``k`` runs with seed ``run.seed + k``; replications are independent, so they run
side by side, one thread each (:func:`tenure.engine.pool.map_runs`), or with a Dask client as
parallel tasks (:func:`tenure.engine.cluster.run_many`), with the same results either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
from tenure.engine.pool import map_runs
from tenure.engine.simulator import Simulator

from tenure.checks import SEED_MAX
from tenure.errors import InputError
from tenure.scenario import Scenario

#: Per-period columns summarised over replications (mean, 5 % and 95 % quantiles).
SUMMARY_COLUMNS = ("active_end", "acquired", "churned", "churn_rate", "nps", "trim_index", "mean_trust",
                   "mean_enthusiasm", "cross_sales", "profit", "cumulative_discounted_profit")


def _one(scenario: Scenario) -> pl.DataFrame:
    """The periods table of one replication (a module-level function, so Dask workers can import it)."""
    res = Simulator(scenario, track_customers=False).run()
    return res.periods.with_columns(
        pl.lit(int(scenario["run"]["seed"]), dtype=pl.Int64).alias("seed"),
        (pl.col("acquired_paid") + pl.col("acquired_organic") + pl.col("acquired_referral")).alias("acquired"),
    )


def replicate(
    scenario: Scenario,
    replications: int,
    cluster: Any = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> pl.DataFrame:
    """Run ``scenario`` with seeds ``run.seed``, ``run.seed + 1``, ...; return their periods tables stacked.

    Parameters
    ----------
    scenario
        The market; its size and horizon are used as they are.
    replications
        Number of seeds (at least 2: one run needs no replications).
    cluster
        ``None`` (in this process, ``workers`` at a time), ``"local:N"``, ``"tcp://HOST:PORT"`` or a
        ``distributed.Client``: the replications are then independent Dask tasks.
    progress
        Called as ``progress(done, total)`` as replications finish.
    workers
        Replications run side by side in this process (default: ``TENURE_RUN_WORKERS``, else the usable
        cores). Results do not depend on it.

    Returns
    -------
    polars.DataFrame
        The periods table of every replication with ``seed`` and ``acquired`` (paid + organic +
        referral) columns, sorted by seed and period.

    Examples
    --------
    >>> from tenure.api import load_scenario
    >>> sc = load_scenario("default", run={"customers": 2_000, "periods": 3, "seed": 1})
    >>> replicate(sc, 2)["seed"].unique().sort().to_list()
    [1, 2]
    """
    from tenure.engine.cluster import run_many

    if replications < 2:
        raise InputError(f"--replications: at least 2, got {replications}")
    seed0 = int(scenario["run"]["seed"])
    if seed0 + replications - 1 > SEED_MAX:
        raise InputError(f"--seed {seed0} with --replications {replications}: replication k runs with --seed + k, "
                         f"and the last, {seed0 + replications - 1}, is beyond the largest seed {SEED_MAX}")
    specs = [scenario.with_overrides({"run": {"seed": seed0 + k}}) for k in range(replications)]
    if cluster is None:
        tables = map_runs(_one, specs, workers, progress=progress)
    else:
        tables = run_many(_one, specs, cluster, progress=progress)
    return pl.concat(tables, how="vertical").sort(["seed", "period"])


def summarise_replications(df: pl.DataFrame) -> pl.DataFrame:
    """Per period: mean, 5 % and 95 % quantiles over seeds of :data:`SUMMARY_COLUMNS`."""
    aggs = []
    for c in SUMMARY_COLUMNS:
        aggs += [pl.col(c).mean().alias(c), pl.col(c).quantile(0.05, "linear").alias(f"{c}_q05"),
                 pl.col(c).quantile(0.95, "linear").alias(f"{c}_q95")]
    return df.group_by("period", maintain_order=True).agg(aggs).sort("period")


def run_totals(df: pl.DataFrame) -> pl.DataFrame:
    """One row per seed: customers at the end, acquired, churned, mean churn, last NPS, profit, discounted profit."""
    return df.group_by("seed", maintain_order=True).agg(
        pl.col("active_end").last().alias("customers_end"),
        pl.col("acquired").sum(),
        pl.col("churned").sum(),
        pl.col("churn_rate").mean().alias("mean_churn_rate"),
        pl.col("nps").last().alias("nps_last"),
        pl.col("profit").sum(),
        pl.col("cumulative_discounted_profit").last().alias("discounted_profit"),
    ).sort("seed")
