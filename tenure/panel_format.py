"""The customer panel's format: its columns, scales and tenure bands, named once.

A panel has one row per customer per period while the customer is active; the
full format is in ``docs/models-panel.md``. The engine writes panels in this
format, the panel models read it, and calibration compares the two, so every
column name and scale lives here and nowhere else.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

#: Columns every panel must have.
REQUIRED_COLUMNS = (
    "customer_id", "period", "churned", "trust", "enthusiasm", "satisfaction", "products", "cross_sold",
)
#: Survey constructs used as covariates, each on a 1–5 scale.
SCORE_COLUMNS = ("trust", "enthusiasm", "satisfaction")
#: Scale of the survey constructs and of the TRI*M items.
SCORE_SCALE = (1, 5)
#: Scale of the Net Promoter question.
NPS_SCALE = (0, 10)
#: Optional TRI*M-style items, each 1–5, in the order of :data:`tenure.metrics.TRIM_ITEMS`.
TRIM_COLUMNS = ("trim_overall", "trim_recommend", "trim_repurchase", "trim_advantage")
#: Optional stated importance of each TRI*M item (any positive numeric scale).
IMPORTANCE_COLUMNS = ("importance_overall", "importance_recommend", "importance_repurchase", "importance_advantage")
#: Optional columns the reader knows and validates.
OPTIONAL_COLUMNS = ("segment", "revenue", "nps", *TRIM_COLUMNS, *IMPORTANCE_COLUMNS)
#: Survey answers a panel row can carry (null when the customer was not surveyed that period).
ANSWER_COLUMNS = (*SCORE_COLUMNS, "nps", *TRIM_COLUMNS)
#: First period of each tenure band (periods since the customer's first row): 0–2, 3–5, 6–11, 12–23, 24+.
TENURE_BANDS = (0, 3, 6, 12, 24)
#: Value of the segment column when the panel has none.
SINGLE_SEGMENT = "all"
#: Columns of the engine's per-period panel matrix, in order: one int64 row per sampled customer
#: active at the start of the period (active flag, churned, products at the start, cross-sold,
#: revenue in cents, then the answers, -1 when not surveyed). The simulator turns it into a panel.
ENGINE_PANEL_COLUMNS = (
    "active", "churned", "products", "cross_sold", "revenue_cents", *ANSWER_COLUMNS,
)
#: Index of each engine panel column.
ENGINE_PANEL_INDEX = {name: i for i, name in enumerate(ENGINE_PANEL_COLUMNS)}
#: First answer column of the engine panel matrix: the answers fill it to the end.
ENGINE_PANEL_FIRST_ANSWER = ENGINE_PANEL_INDEX[ANSWER_COLUMNS[0]]
#: Missing-score policies: carry the last answer forward, or drop rows with a missing score.
MISSING_POLICIES = ("carry", "drop")


def tenure_band_labels(bands: Sequence[int] = TENURE_BANDS) -> list[str]:
    """Human labels of the tenure bands, e.g. ``["0-2", "3-5", "6-11", "12-23", "24+"]``."""
    labels = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(bands)]
    return [*labels, f"{bands[-1]}+"]
