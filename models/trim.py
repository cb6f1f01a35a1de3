"""The TRI*M-style index, its typology and its grid, from the survey items of a panel.

*TRI*M-style*, not TRI*M: the vendor's weights are not public. The index is
100 · Σ_k w_k (x_k − 1)/4 / Σ w_k over the four 1–5 items (overall rating,
recommend, repurchase, competitive advantage), equal weights by default, so
all-top answers give 100 and all-bottom answers 0
(:func:`tenure.metrics.trim_index`). Bands: below 40 endangered,
40–70 open to competitors, 70+ bound.

Uncertainty is the Bayesian bootstrap (Rubin 1981): the respondents' weights are
Dirichlet(1, …, 1), so the weights of the distinct answer patterns are
Dirichlet(pattern counts), exactly (the Dirichlet aggregation property). The index
and typology shares of a segment are then weighted means over at most 5⁴ = 625
patterns, however many respondents there are.

Typology (satisfaction × loyalty): satisfied = overall rating ≥ 4; loyal = mean of
recommend and repurchase ≥ 4. Apostles (both), mercenaries (satisfied, not loyal),
hostages (loyal, not satisfied), terrorists (neither).

Grid: stated importance (mean of ``importance_<item>``, any positive scale)
against derived importance (correlation of the item with the index of the *other*
three items, so that an item is not correlated with itself; ``"index"`` uses the
full index as in the classic description). An item is high on an axis when at or
above the mean of the four items: motivators (high stated, high derived), hygiene
factors (high, low), hidden opportunities (low, high), potential savings (low, low).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import arviz as az
import numpy as np
import polars as pl
from tenure.models.base import BayesianModel, FitResult
from tenure.models.effects import equal_tailed
from tenure.models.panel import IMPORTANCE_COLUMNS, TRIM_COLUMNS, as_panel

from tenure.errors import InputError
from tenure.metrics import TRIM_ITEMS, TYPOLOGY_LOYAL_MIN, TYPOLOGY_SATISFIED_MIN, trim_band, trim_index
from tenure.scenario import DEFAULT_SEED

TYPES = ("apostles", "mercenaries", "hostages", "terrorists")
DERIVED_METHODS = ("rest", "index")
BOOTSTRAP = "bayesian-bootstrap"


def parse_weights(text: str | Sequence[float] | None) -> np.ndarray:
    """Four non-negative weights with a positive sum, from ``"1,1,1,1"`` or a sequence."""
    if text is None:
        return np.ones(len(TRIM_ITEMS))
    try:
        w = np.array([float(x) for x in (text.split(",") if isinstance(text, str) else text)])
    except ValueError as exc:
        raise InputError(f"--weights: expected four numbers like 1,1,1,1, got {text!r}") from exc
    if w.shape != (len(TRIM_ITEMS),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError(f"--weights: need four finite non-negative numbers with a positive sum "
                         f"({', '.join(TRIM_ITEMS)}), got {text!r}")
    return w


def respondents(panel: pl.DataFrame, weights: Sequence[float] | None = None) -> pl.DataFrame:
    """Rows that answered all four items, with their index, satisfaction, loyalty and type."""
    missing = [c for c in TRIM_COLUMNS if c not in panel.columns]
    if missing:
        raise InputError(f"panel: column {missing[0]!r} is needed for the TRI*M-style index")
    answered = panel.filter(pl.all_horizontal([pl.col(c).is_not_null() for c in TRIM_COLUMNS]))
    if answered.height == 0:
        raise InputError("panel: no row answers all four TRI*M items")
    w = parse_weights(weights)
    items = answered.select(TRIM_COLUMNS).to_numpy().astype(float)
    satisfied = items[:, 0] >= TYPOLOGY_SATISFIED_MIN
    loyal = items[:, 1] + items[:, 2] >= TYPOLOGY_LOYAL_MIN
    kind = np.select([satisfied & loyal, satisfied & ~loyal, ~satisfied & loyal], list(TYPES[:3]), TYPES[3])
    return answered.with_columns(index=pl.Series(trim_index(items, w)), type=pl.Series(kind))


def index_table(resp: pl.DataFrame) -> pl.DataFrame:
    """Index by segment and period: respondents, mean index and its band."""
    out = (resp.group_by("segment", "period").agg(respondents=pl.len(), index=pl.col("index").mean())
           .sort("segment", "period"))
    return out.with_columns(band=pl.col("index").map_elements(trim_band, return_dtype=pl.String))


def bootstrap_posterior(resp: pl.DataFrame, draws: int = 1000, chains: int = 4, seed: int = 0) -> az.InferenceData:
    """Bayesian-bootstrap draws of the index and typology shares, per segment and over all.

    Variables: ``trim_index`` (segment; ``"all"`` last) and ``typology_share``
    (segment × type). Draws are independent, so R-hat ≈ 1 and ESS ≈ draws.
    """
    rng = np.random.default_rng(seed)
    # Sorted: the Gamma draws are assigned to patterns in this order, so a group-by's arbitrary order
    # would give another posterior for the same seed.
    patterns = (resp.group_by("segment", *TRIM_COLUMNS)
                .agg(n=pl.len(), index=pl.col("index").first(), type=pl.col("type").first())
                .sort("segment", *TRIM_COLUMNS))
    segments = sorted(patterns["segment"].unique().to_list())
    groups = [(s, patterns.filter(pl.col("segment") == s)) for s in segments]
    if len(segments) > 1:
        groups.append(("all", patterns))
    names = [g[0] for g in groups]
    index = np.empty((chains, draws, len(groups)))
    shares = np.empty((chains, draws, len(groups), len(TYPES)))
    for j, (_, g) in enumerate(groups):
        gam = rng.standard_gamma(g["n"].to_numpy().astype(float), size=(chains, draws, g.height))
        w = gam / gam.sum(axis=-1, keepdims=True)
        index[..., j] = w @ g["index"].to_numpy()
        onehot = (g["type"].to_numpy()[:, None] == np.array(TYPES)[None, :]).astype(float)
        shares[..., j, :] = w @ onehot
    return az.from_dict(posterior={"trim_index": index, "typology_share": shares},
                        coords={"segment": names, "type": list(TYPES)},
                        dims={"trim_index": ["segment"], "typology_share": ["segment", "type"]})


def derived_importance(resp: pl.DataFrame, weights: Sequence[float] | None = None,
                       method: str = "rest") -> np.ndarray:
    """Correlation of each item with the index of the other items (``"rest"``) or the full index."""
    if method not in DERIVED_METHODS:
        raise InputError(f"--derived: unknown method {method!r}; use one of {', '.join(DERIVED_METHODS)}")
    w = parse_weights(weights)
    items = resp.select(TRIM_COLUMNS).to_numpy().astype(float)
    out = np.empty(len(TRIM_ITEMS))
    for k in range(len(TRIM_ITEMS)):
        wk = w.copy()
        if method == "rest":
            wk[k] = 0.0
        target = items @ wk if wk.sum() > 0 else np.zeros(len(items))
        sx, st = items[:, k].std(), target.std()
        out[k] = np.nan if sx == 0 or st == 0 else np.corrcoef(items[:, k], target)[0, 1]
    return out


def grid_table(panel: pl.DataFrame, resp: pl.DataFrame, weights: Sequence[float] | None = None,
               method: str = "rest") -> pl.DataFrame | None:
    """Stated against derived importance with each item's quadrant; ``None`` without importance columns."""
    present = [c for c in IMPORTANCE_COLUMNS if c in panel.columns]
    if not present:
        return None
    if len(present) < len(IMPORTANCE_COLUMNS):
        absent = next(c for c in IMPORTANCE_COLUMNS if c not in panel.columns)
        raise InputError(f"panel: column {absent!r} is missing; the grid needs all four importance items")
    stated = panel.select([pl.col(c).mean() for c in IMPORTANCE_COLUMNS]).to_numpy().ravel().astype(float)
    if np.any(np.isnan(stated)):
        col = IMPORTANCE_COLUMNS[int(np.argmax(np.isnan(stated)))]
        raise InputError(f"panel: column {col!r} has no answers")
    derived = derived_importance(resp, weights, method)
    hi_s, hi_d = stated >= stated.mean(), derived >= np.nanmean(derived)
    quadrant = np.select([hi_s & hi_d, hi_s & ~hi_d, ~hi_s & hi_d],
                         ["motivator", "hygiene factor", "hidden opportunity"], "potential saving")
    return pl.DataFrame({"item": list(TRIM_ITEMS), "stated_importance": stated, "derived_importance": derived,
                         "quadrant": quadrant})


#: The grid's quadrants: (high stated, high derived) → name, where the name sits (axes fraction) and its colour.
_QUADRANTS = {(True, True): ("motivator", (0.98, 0.97), 2), (True, False): ("hygiene factor", (0.02, 0.97), 1),
              (False, True): ("hidden opportunity", (0.98, 0.03), 0), (False, False): ("potential saving",
                                                                            (0.02, 0.03), 5)}


def plot_grid(grid: pl.DataFrame, path: Any) -> None:
    """Scatter of stated against derived importance, split at the item means, each item coloured by its quadrant.

    The axes reach a quarter of the data's range beyond it, so the quadrant names in the corners
    and each item's label (leaning away from both mean lines) do not overlap.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tenure.plotting import OKABE_ITO, rc

    x, y = grid["derived_importance"].to_numpy(), grid["stated_importance"].to_numpy()
    mx, my = float(np.nanmean(x)), float(np.mean(y))
    with matplotlib.rc_context(rc()):
        fig, ax = plt.subplots(figsize=(6.4, 5.0), constrained_layout=True)
        for lo_hi, (lo, hi), centre in (("x", (np.nanmin(x), np.nanmax(x)), mx), ("y", (y.min(), y.max()), my)):
            pad = 0.25 * (hi - lo) if hi > lo else 0.1 * max(abs(centre), 1.0)
            (ax.set_xlim if lo_hi == "x" else ax.set_ylim)(lo - pad, hi + pad)
        ax.axvline(mx, color="#555555", lw=0.8, ls="--")
        ax.axhline(my, color="#555555", lw=0.8, ls="--")
        for name, (qx, qy), colour in _QUADRANTS.values():
            ax.text(qx, qy, name, transform=ax.transAxes, ha="right" if qx > 0.5 else "left",
                    va="top" if qy > 0.5 else "bottom", fontsize=9, color=OKABE_ITO[colour], style="italic")
        for item, xi, yi in zip(grid["item"], x, y, strict=True):
            if not np.isfinite(xi):
                continue
            colour = OKABE_ITO[_QUADRANTS[(bool(yi >= my), bool(xi >= mx))][2]]
            ax.scatter([xi], [yi], s=40, color=colour, zorder=3, edgecolor="#000000", lw=0.5)
            right, up = xi >= mx, yi >= my  # the label leans away from both mean lines, never across one
            ax.annotate(item, (xi, yi), textcoords="offset points", xytext=(5 if right else -5, 5 if up else -5),
                        ha="left" if right else "right", va="bottom" if up else "top", fontsize=9)
        ax.set_xlabel("derived importance (correlation of the item with the index of the others, −1 to 1)")
        ax.set_ylabel("stated importance (mean answer, survey scale)")
        ax.set_title("TRI*M-style grid: stated against derived importance", loc="left")
        fig.text(0.0, 0.0, "Dashed lines at the item means split the quadrants; motivators matter to customers by "
                 "both measures.", fontsize=7.5, color="#333333", ha="left", va="bottom")
        fig.get_layout_engine().set(h_pad=0.15)
        fig.savefig(path, format="png", dpi=110)
        plt.close(fig)


class TrimModel(BayesianModel):
    """The TRI*M-style index, typology and grid of a panel, with Bayesian-bootstrap uncertainty.

    The same shape as the other families, without priors: the uncertainty is the
    Bayesian bootstrap over respondents (see the module docstring).

    Parameters
    ----------
    panel
        A panel frame or file with the four ``trim_*`` items (and optionally the four
        ``importance_*`` columns for the grid), validated as the command line does.
    weights
        Weights of overall rating, recommend, repurchase and advantage (``"2,1,1,1"`` or
        four numbers); equal by default.
    derived
        Derived importance: ``"rest"`` (item against the index of the other items) or ``"index"``.
    segment_col
        Column holding the segment (default ``segment`` if present).

    Examples
    --------
    >>> model = TrimModel(panel, weights=[2, 1, 1, 1])  # doctest: +SKIP
    >>> result = model.fit(draws=1000, chains=4)  # doctest: +SKIP
    >>> result.summary()  # doctest: +SKIP
    """

    name: ClassVar[str] = "trim"
    named_parameters: ClassVar[tuple[str, ...]] = ("trim_index",)
    time_unit = "months"

    def __init__(
        self,
        panel: pl.DataFrame | str | os.PathLike[str],
        *,
        weights: str | Sequence[float] | None = None,
        derived: str = "rest",
        segment_col: str | None = None,
    ) -> None:
        super().__init__(None)
        if derived not in DERIVED_METHODS:
            raise InputError(f"--derived: unknown method {derived!r}; use one of {', '.join(DERIVED_METHODS)}")
        self.weights = parse_weights(weights)
        self.derived = derived
        frame = as_panel(panel, segment_col=segment_col, optional=(*TRIM_COLUMNS, *IMPORTANCE_COLUMNS))
        self.respondents = respondents(frame, self.weights)
        self.grid = grid_table(frame, self.respondents, self.weights, derived)
        self.n_rows = frame.height

    def options(self) -> dict[str, Any]:
        """Item weights and the derived-importance method."""
        return {"weights": dict(zip(TRIM_ITEMS, self.weights.tolist(), strict=True)), "derived": self.derived}

    def data_summary(self) -> dict[str, Any]:
        """Respondents (rows answering all four items) and rows."""
        return {"respondents": self.respondents.height, "rows": self.n_rows}

    def fit(self, method: str = BOOTSTRAP, draws: int = 1000, tune: int = 0, chains: int = 4,
            seed: int = DEFAULT_SEED, progress: bool = False) -> FitResult:
        """Bayesian-bootstrap draws of the index and typology shares (``tune`` is unused: draws are independent)."""
        if method != BOOTSTRAP:
            raise InputError(f"--method: the TRI*M-style index is fitted by {BOOTSTRAP!r} only, not {method!r}")
        if draws < 1 or chains < 1:
            raise InputError("--draws and --chains must be at least 1")
        idata = bootstrap_posterior(self.respondents, draws=draws, chains=chains, seed=seed)
        idata.attrs["tenure_weights"] = json.dumps(self.options()["weights"])
        return self._result(idata, {"method": method, "draws": draws, "tune": 0, "chains": chains, "seed": seed})

    def index_table(self) -> pl.DataFrame:
        """Index by segment and period (:func:`index_table`)."""
        return index_table(self.respondents)

    def typology_table(self, idata: az.InferenceData | None = None) -> pl.DataFrame:
        """Posterior mean typology shares: one row per segment (and ``all``), one column per type."""
        post = (idata or self.idata).posterior
        shares = post["typology_share"].mean(("chain", "draw")).values
        return pl.DataFrame({"segment": [str(s) for s in post["segment"].values],
                             **{t: shares[:, j] for j, t in enumerate(TYPES)}})

    def effect_lines(self, idata: az.InferenceData | None = None, prob: float = 0.9) -> list[str]:
        """One line per segment (index, band, interval, typology mix) and one per grid item."""
        post = (idata or self.idata).posterior
        lines = []
        for s in post["segment"].values:
            v = post["trim_index"].sel(segment=s).values
            lo, hi = equal_tailed(v, prob)
            shares = post["typology_share"].sel(segment=s).mean(("chain", "draw")).values
            mix = ", ".join(f"{t} {100 * x:.0f} %" for t, x in zip(TYPES, shares, strict=True))
            lines.append(f"{s}: index {np.median(v):.1f} ({trim_band(float(np.median(v)))}; {100 * prob:.0f} % "
                         f"interval {lo:.1f}–{hi:.1f}); {mix}")
        for row in (self.grid.iter_rows(named=True) if self.grid is not None else ()):
            lines.append(f"{row['item']}: {row['quadrant']} (stated {row['stated_importance']:.2f}, "
                         f"derived {row['derived_importance']:.2f})")
        return lines
