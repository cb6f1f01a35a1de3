"""Posterior predictive checks from aggregates: an observed statistic of the data against its posterior distribution.

A check compares one aggregate of the fitted data (survivors per period, customers by number of
repeat purchases) with the same aggregate computed under each of a few posterior draws. Only the
aggregates are kept, never an array of customers × draws: a check is a few dozen numbers, saved
with the fit (``tenure_ppc`` in the posterior's attributes, ``ppc.csv`` in a fit folder) and drawn
by the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: The file of a fit folder holding the check's table.
PPC_FILE = "ppc.csv"
#: Posterior draws a check replicates the data under (evenly spaced over all draws).
PPC_DRAWS = 100
#: Central interval of the replicated statistic.
PPC_INTERVAL = 0.9


def draw_indices(n_draws: int, k: int = PPC_DRAWS) -> np.ndarray:
    """``k`` draw indices evenly spaced over ``n_draws`` (all of them when there are fewer)."""
    return np.unique(np.linspace(0, n_draws - 1, min(k, n_draws)).round().astype(int))


def check_rows(group: str, x: Sequence[float], x_labels: Sequence[str], observed: np.ndarray,
               replicated: np.ndarray) -> list[dict[str, Any]]:
    """Rows of a check: per ``x``, the observed value and the mean and 90 % interval over draws (draws, len(x))."""
    rep = np.asarray(replicated, dtype=float)
    lo, hi = np.quantile(rep, [(1 - PPC_INTERVAL) / 2, (1 + PPC_INTERVAL) / 2], axis=0)
    return [{"group": group, "x": float(xv), "x_label": str(lab), "observed": float(o), "mean": float(m),
             "q05": float(a), "q95": float(b)}
            for xv, lab, o, m, a, b in zip(x, x_labels, observed, rep.mean(axis=0), lo, hi, strict=True)]


def predictive_check(statistic: str, rows: list[dict[str, Any]], *, title: str, x_label: str, y_label: str,
                     caption: str, draws: int, style: str = "line") -> dict[str, Any]:
    """A check as saved: what it measures (``statistic``), its rows, the figure's title, axis labels, caption and
    ``style`` (``"line"``: a series over periods; ``"bars"``: counts by category)."""
    return {"statistic": statistic, "style": style, "title": title, "x_label": x_label, "y_label": y_label,
            "caption": caption, "draws": int(draws), "interval": PPC_INTERVAL, "rows": rows}


def count_caption(what: str, draws: int, sample: int, total: int) -> str:
    """The caption of a customers-by-count check drawn as bars: ``what`` completes "How many customers ..."."""
    return (f"How many customers {what}: observed (dots) against data sets replicated under the fit (bars: mean, "
            f"whiskers: 90 % band over {draws} posterior draws); a dot outside its whisker is a count the model "
            "misses." + (f" Replicated on a sample of {sample:,} customers scaled up to {total:,}, which widens "
                         "the band." if sample < total else ""))


def replicate_cell_counts(kind: str, size: np.ndarray, params: Any, group: np.ndarray, n_groups: int,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Counts per group replicated under each draw, and their expectation under the same draws.

    ``params`` holds one array per draw (a (draws, cells) array or any iterable of (cells,) arrays):
    the churn probability per row for ``kind="binomial"`` (a cell's events ~ Binomial(size, p)), the
    rate per unit of exposure for ``kind="poisson"`` (events ~ Poisson(size · rate), the sum of the
    cell's row-level Poisson counts). Each replicated cell count is summed into its ``group``; one
    draw at a time, so memory grows with cells, never cells × draws. Returns (replicated, expected),
    both (draws, groups), where expected[j, g] = Σ_cells in g of size · param under draw j.
    """
    if kind not in ("binomial", "poisson"):
        raise ValueError("kind must be 'binomial' or 'poisson'")
    size = np.asarray(size, dtype=float)
    replicated, expected = [], []
    for p in params:
        p = np.asarray(p, dtype=float)
        counts = rng.binomial(size.astype(np.int64), p) if kind == "binomial" else rng.poisson(size * p)
        replicated.append(np.bincount(group, weights=counts, minlength=n_groups))
        expected.append(np.bincount(group, weights=size * p, minlength=n_groups))
    return np.array(replicated), np.array(expected)


def combined_check(*checks: dict[str, Any]) -> dict[str, Any]:
    """Several checks of one fit (the joint model's churn and cross-selling) saved as one.

    ``parts`` holds the checks, each drawn and tabulated on its own; ``rows`` holds all their
    rows, each with its check's ``statistic``, so ``ppc.csv`` stays one table.
    """
    return {"statistic": "+".join(c["statistic"] for c in checks), "parts": list(checks),
            "draws": min(c["draws"] for c in checks), "interval": PPC_INTERVAL,
            "rows": [{"statistic": c["statistic"], **r} for c in checks for r in c["rows"]]}
