"""Descriptive survey metrics shared by the engine, the models and the reports.

Pure NumPy, no sampling: the Net Promoter Score with its Wald interval and the
TRI*M-style index and typology. Definitions follow Reichheld (2003) for
the NPS and docs/model.md for the TRI*M-style index.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

#: Interpretation bands of the TRI*M-style index used in practice.
TRIM_BANDS = ((0.0, 40.0, "endangered"), (40.0, 70.0, "open to competitors"), (70.0, 100.0001, "bound"))
#: Item order of the TRI*M-style index.
TRIM_ITEMS = ("overall", "recommend", "repurchase", "advantage")
#: Net Promoter categories of a 0–10 answer (Reichheld 2003): promoters answer 9 or more, detractors 6 or less.
PROMOTER_MIN = 9
DETRACTOR_MAX = 6
#: TRI*M typology of a respondent: satisfied with an overall item of at least 4, loyal with
#: recommend + repurchase of at least 8 (items on 1–5).
TYPOLOGY_SATISFIED_MIN = 4
TYPOLOGY_LOYAL_MIN = 8


def nps(promoters: float, detractors: float, respondents: float) -> float:
    """Net Promoter Score as a share in [-1, 1]: p_P − p_D (Reichheld 2003).

    Multiply by 100 for the usual points. NaN when there are no respondents.
    """
    if respondents <= 0:
        return float("nan")
    return (promoters - detractors) / respondents


@functools.lru_cache(maxsize=16)
def _z_quantile(level: float) -> float:
    """Two-sided normal quantile, cached: the engine asks for it every period.

    ``scipy.special.ndtri`` is the standard normal quantile itself (what ``scipy.stats.norm.ppf``
    calls); importing ``scipy.stats`` took 0.9 s of every command that simulates.
    """
    from scipy.special import ndtri

    return float(ndtri(0.5 + level / 2.0))


def nps_wald_interval(
    promoters: float, detractors: float, respondents: float, level: float = 0.95
) -> tuple[float, float]:
    """Wald interval of the NPS share, with the covariance of the two shares.

    Each respondent scores x ∈ {+1, 0, −1}; Var(x) = p_P + p_D − (p_P − p_D)² and
    SE = sqrt(Var/n). Treating p_P and p_D as independent would drop the covariance
    term and give a too-narrow interval. Example (domain brief): n = 1000, 250
    promoters, 75 detractors → (0.1414, 0.2086).
    """
    if respondents <= 0:
        return float("nan"), float("nan")
    p_p = promoters / respondents
    p_d = detractors / respondents
    est = p_p - p_d
    var = p_p + p_d - est**2
    z = _z_quantile(level)
    half = z * math.sqrt(max(var, 0.0) / respondents)
    return est - half, est + half


def nps_category(score: np.ndarray) -> np.ndarray:
    """Map 0–10 answers to −1 (detractor, 0–6), 0 (passive, 7–8), +1 (promoter, 9–10)."""
    s = np.asarray(score)
    return np.where(s >= PROMOTER_MIN, 1, np.where(s <= DETRACTOR_MAX, -1, 0)).astype(np.int8)


def trim_index(items: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """TRI*M-style index on 0–100 from the four 1–5 items (last axis, order :data:`TRIM_ITEMS`).

    The vendor's weights are not public: this is a *TRI*M-style* index with
    configurable weights (equal by default), scaled so that all-top answers give
    100 and all-bottom answers give 0. Being linear, the index of mean item scores
    equals the mean of respondents' indices.
    """
    x = np.asarray(items, dtype=float)
    if x.shape[-1] != len(TRIM_ITEMS):
        raise ValueError(f"expected {len(TRIM_ITEMS)} items on the last axis, got {x.shape[-1]}")
    w = np.ones(len(TRIM_ITEMS)) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (len(TRIM_ITEMS),) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("TRI*M weights must be four non-negative numbers with a positive sum")
    return 100.0 * ((x - 1.0) / 4.0) @ (w / w.sum())


def trim_band(index: float) -> str:
    """The interpretation band of a TRI*M-style index value."""
    for lo, hi, name in TRIM_BANDS:
        if lo <= index < hi:
            return name
    return "bound" if index >= 100 else "endangered"


def typology(satisfied: np.ndarray, loyal: np.ndarray) -> dict[str, float]:
    """Shares of the TRI*M typology from boolean satisfaction and loyalty per respondent.

    Apostles (satisfied, loyal), mercenaries (satisfied, not loyal), hostages
    (loyal, not satisfied), terrorists (neither).
    """
    s = np.asarray(satisfied, dtype=bool)
    lo = np.asarray(loyal, dtype=bool)
    n = s.size
    if n == 0:
        return {k: float("nan") for k in ("apostles", "mercenaries", "hostages", "terrorists")}
    return {
        "apostles": float(np.sum(s & lo) / n),
        "mercenaries": float(np.sum(s & ~lo) / n),
        "hostages": float(np.sum(~s & lo) / n),
        "terrorists": float(np.sum(~s & ~lo) / n),
    }
