"""The end-of-run tables of a run, built per shard and combined: cohorts, customers, panel.

Every table is a pure function of shards' arrays (or of the panel rows they
wrote), so a shard on a Dask worker builds its part with the same code as one
in this process; :func:`combine_cohorts` and sorting on unique keys join the
parts into the tables of the whole run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from tenure.engine import kernels as K
from tenure.engine.state import Shard

from tenure.panel_format import ANSWER_COLUMNS, ENGINE_PANEL_INDEX

CHANNELS = ("initial", "paid", "organic", "referral")
STAGES = ("new", "satisfied", "devoted", "partner")
# one period's panel rows of one shard: (the period as a 1-element array, customer ids, segments, panel matrix)
PanelChunk = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _gather(shards: Sequence[Shard], name: str) -> np.ndarray:
    return np.concatenate([s.view(name) for s in shards])


def cohort_table(shards: Sequence[Shard], periods: int) -> pl.DataFrame:
    """Survival by cohort and age: customers of cohort c still active after a periods.

    Cohort c holds customers whose first period was c (the initial base's
    customers of age 0 are cohort 0). Row (c, a) counts those who survived a
    periods; ages run to the end of the run. Customers acquired in the last
    period form cohort ``periods`` with age 0 only.
    """
    cohort = _gather(shards, "cohort").astype(np.int64)
    tenure = _gather(shards, "tenure").astype(np.int64)
    alive = _gather(shards, "alive").astype(bool)
    keep = (cohort >= 0) & (cohort <= periods)
    # cohort c < 0 holds initial customers of age -c at the start, so lived = tenure for c >= 0
    cohort, lived, alive = cohort[keep], tenure[keep], alive[keep]
    sizes = np.bincount(cohort, minlength=periods + 1)
    ages = periods + 1 - np.arange(periods + 1)  # cohort c has ages 0..periods - c
    offset = np.concatenate([[0], np.cumsum(ages)[:-1]])
    # a churned customer with `lived` periods survived ages 0..lived-1; an active one 0..periods - c.
    # One bincount over every (cohort, last age survived) cell, then survivors per cohort as its size
    # minus the customers whose last age came before (an exclusive cumulative sum within the cohort).
    max_age = periods - cohort
    life = np.clip(np.where(alive, max_age, lived - 1), 0, max_age)
    counts = np.bincount(offset[cohort] + life, minlength=int(ages.sum()))
    before = np.cumsum(counts) - counts
    cell_cohort = np.repeat(np.arange(periods + 1), ages)
    cell_age = np.arange(ages.sum()) - offset[cell_cohort]
    survivors = sizes[cell_cohort] - (before - before[offset[cell_cohort]])
    used = sizes[cell_cohort] > 0
    return pl.DataFrame(
        {"cohort": cell_cohort[used], "age": cell_age[used], "survivors": survivors[used],
         "cohort_size": sizes[cell_cohort][used]},
        schema={"cohort": pl.Int32, "age": pl.Int32, "survivors": pl.Int64, "cohort_size": pl.Int64},
    ).with_columns(survival=pl.col("survivors") / pl.col("cohort_size"))


def customer_table(shards: Sequence[Shard], segment_names: Sequence[str]) -> pl.DataFrame:
    """One row per customer ever acquired (requires tracking)."""
    seg_names = list(segment_names)
    last = _gather(shards, "last_purchase").astype(np.int32)
    purchases = _gather(shards, "purchases").astype(np.int32)
    df = pl.DataFrame(
        {
            "customer_id": _gather(shards, "ids"),
            "cohort": _gather(shards, "cohort").astype(np.int32),
            "channel": pl.Series(_gather(shards, "channel").astype(np.uint32)).replace_strict(
                list(range(4)), list(CHANNELS), return_dtype=pl.String
            ),
            "segment": pl.Series(_gather(shards, "segment").astype(np.uint32)).replace_strict(
                list(range(len(seg_names))), seg_names, return_dtype=pl.String
            ),
            "tenure": _gather(shards, "tenure").astype(np.int32),
            "churned": _gather(shards, "alive") == 0,
            "stage": pl.Series(_gather(shards, "stage").astype(np.uint32)).replace_strict(
                list(range(4)), list(STAGES), return_dtype=pl.String
            ),
            "products": _gather(shards, "products").astype(np.int16),
            "revenue": _gather(shards, "revenue") / 100.0,
            "trust": _gather(shards, "trust"),
            "enthusiasm": _gather(shards, "enthusiasm"),
            "satisfaction": _gather(shards, "satisfaction"),
            "purchases": purchases,
            "last_purchase_period": np.where(purchases > 0, last, -1),
        }
    )
    return df.sort("customer_id")


def panel_table(chunks: Sequence[PanelChunk], segment_names: Sequence[str]) -> pl.DataFrame:
    """The panel sample in the format of :mod:`tenure.panel_format`, from the shards' per-period rows."""
    seg_names = list(segment_names)
    if not chunks:
        chunks = [(np.zeros(1, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8),
                   np.zeros((0, K.N_PANEL), np.int64))]
    period = np.concatenate([np.full(c[1].size, c[0][0], dtype=np.int32) for c in chunks])
    ids = np.concatenate([c[1] for c in chunks])
    # The chunks come in period order, so a stable sort by customer id sorts by (customer id, period).
    order = np.argsort(ids, kind="stable")
    v = np.concatenate([c[3] for c in chunks], axis=0).T  # one row per panel column

    col = ENGINE_PANEL_INDEX
    scores = ANSWER_COLUMNS

    def column(name: str, dtype: type) -> np.ndarray:
        return v[col[name]][order].astype(dtype)

    seg = np.concatenate([c[2] for c in chunks])[order]
    df = pl.DataFrame(
        {
            "customer_id": pl.Series(ids[order]).set_sorted(),
            "period": period[order],
            "churned": column("churned", bool),
            **{name: pl.Series(name, column(name, np.int8)) for name in scores},
            "products": column("products", np.int16),
            "cross_sold": column("cross_sold", np.int16),
            "segment": pl.Series(seg.astype(np.uint32)).replace_strict(
                list(range(len(seg_names))), seg_names, return_dtype=pl.String
            ),
            "revenue": v[col["revenue_cents"]][order] / 100.0,
        }
    ).with_columns(pl.when(pl.col(c) >= 0).then(pl.col(c)).alias(c) for c in scores)
    order_cols = ["customer_id", "period", "churned", "trust", "enthusiasm", "satisfaction", "products",
                  "cross_sold", "segment", "revenue", "nps", *scores[4:]]
    return df.select(order_cols)


def combine_cohorts(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """One cohort table from the shards' tables: survivors and cohort sizes are integer counts, so they add up."""
    if len(parts) == 1:  # one shard's table is the run's (same rows, order and columns)
        return parts[0]
    columns = parts[0].columns
    combined = (
        pl.concat(parts)
        .group_by(["cohort", "age"])
        .agg(pl.col("survivors").sum(), pl.col("cohort_size").sum())
        .sort(["cohort", "age"])
        .with_columns(survival=pl.col("survivors") / pl.col("cohort_size"))
    )
    return combined.select(columns)
