"""Cross-selling: products added per period as a Poisson count driven by trust and enthusiasm.

For customer i in period t (while active), with scores carried forward,

    y_it ~ Poisson(exp(η_it)),
    η_it = a[segment_i] + β_T (trust_it − 3) + β_E (enthusiasm_it − 3)
           + β_TE (trust_it − 3)(enthusiasm_it − 3) + β_P (products_it − 1)

a log-linear count regression (Cameron & Trivedi 2013, ch. 3) on person-period rows.
Scores enter centred at the scale midpoint 3 and products held at 1, so
xsell_intercept is the monthly log-rate of products added by a one-product customer
scoring 3 on both items in a typical segment, and each main effect is the effect at
the other score's midpoint. The interaction lets enthusiasm pay off more where trust
is high (the TRUSTPlus claim). a[s] ~ Normal(xsell_intercept, xsell_segment_sd).

The likelihood uses exposure, products added and Σ log y! per cell (:class:`CountCells`),
which equals the sum of the row-level Poisson log-pmfs exactly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
from tenure.models.base import BayesianModel, prior
from tenure.models.effects import ratio_line
from tenure.models.panel import CountCells, as_panel, count_cells, covariate_sd
from tenure.models.pooling import (
    POOLED_TARGET_ACCEPT,
    SEGMENT_SD_PRIOR,
    CellModel,
    MarginalisedMeansFit,
    cells_mle,
    poisson_cells_derivatives,
    poisson_cells_logp,
    pooled_intercepts,
    segment_design,
)

if TYPE_CHECKING:  # PyMC, PyTensor and ArviZ load where a model is built or read: calibration uses only the MLE
    import arviz as az
    import pymc as pm

SCORE_CENTRE = 3.0


#: The covariates of the linear predictor, in the order of :func:`count_design`.
COEFFICIENTS = ("xsell_trust", "xsell_enthusiasm", "xsell_trust_x_enthusiasm", "xsell_products")


def count_design(cells: CountCells) -> np.ndarray:
    """The covariates of the linear predictor per cell, without the segment intercepts (:data:`COEFFICIENTS`).

    Scores centred at :data:`SCORE_CENTRE`, their product, and products held beyond the
    first: η = a[segment] + design·coefficients.
    """
    ct, ce = cells.trust - SCORE_CENTRE, cells.enthusiasm - SCORE_CENTRE
    return np.column_stack([ct, ce, ct * ce, cells.products - 1.0])


def count_mle(cells: CountCells) -> dict[str, float]:
    """Maximum-likelihood estimates of the model's equation on cells (flat priors, segment intercepts unpooled).

    Keys: ``xsell_segment[s]`` for each segment with rows, :data:`COEFFICIENTS`, and
    ``xsell_intercept``, the mean of the segment intercepts.
    """
    keep = cells.exposure > 0
    segs = np.unique(cells.segment[keep])
    x = np.hstack([segment_design(np.searchsorted(segs, cells.segment[keep]), segs.size), count_design(cells)[keep]])
    b = cells_mle(x, poisson_cells_logp, poisson_cells_derivatives,
                  (cells.events[keep], cells.exposure[keep], cells.log_factorial[keep]))
    out = {f"xsell_segment[{cells.segments[s]}]": float(v) for s, v in zip(segs, b[:segs.size], strict=True)}
    return {**out, "xsell_intercept": float(b[:segs.size].mean()),
            **{n: float(v) for n, v in zip(COEFFICIENTS, b[segs.size:], strict=True)}}


#: Products held at or above this many share one group of the predictive check.
CHECK_PRODUCTS_TOP = 4


def count_eta(cells: CountCells, draws: Mapping[str, np.ndarray]) -> np.ndarray:
    """The log-rate of products added per cell under each posterior draw, (draws, cells), in numpy.

    ``draws`` holds the posterior's ``xsell_*`` variables with the draws on the first axis: the
    segment intercepts where the fit has several segments (else ``xsell_intercept``) and
    :data:`COEFFICIENTS`.
    """
    intercept = (draws["xsell_segment"][:, cells.segment] if "xsell_segment" in draws
                 else draws["xsell_intercept"][:, None])
    return intercept + np.column_stack([draws[k] for k in COEFFICIENTS]) @ count_design(cells).T


def count_check(cells: CountCells, rates: Any, draws: int, rng: np.random.Generator,
                what: str = "cross-selling model") -> dict[str, Any]:
    """Products added per segment and number of products held, observed against replicated.

    ``rates``: the expected products added per customer-period of each cell under each checked
    draw (an iterable of (cells,) arrays); each replicate draws a cell's total from
    Poisson(exposure · rate), the sum of its rows' Poisson counts, and sums it per group.
    """
    from tenure.models.ppc import check_rows, predictive_check, replicate_cell_counts

    held = np.minimum(cells.products, CHECK_PRODUCTS_TOP).astype(np.int64)
    pairs = sorted({(int(s), int(h)) for s, h in zip(cells.segment, held, strict=True)})
    index = {pair: i for i, pair in enumerate(pairs)}
    group = np.array([index[(int(s), int(h))] for s, h in zip(cells.segment, held, strict=True)], dtype=np.int64)
    observed = np.bincount(group, weights=cells.events, minlength=len(pairs))
    replicated, _ = replicate_cell_counts("poisson", cells.exposure, rates, group, len(pairs), rng)
    several = len(cells.segments) > 1
    rows = []
    for s in dict.fromkeys(s for s, _ in pairs):
        cols = [i for i, (t, _) in enumerate(pairs) if t == s]
        held_k = [pairs[i][1] for i in cols]
        labels = [f"{h}{'+' if h == CHECK_PRODUCTS_TOP else ''} product{'s' if h > 1 else ''}" for h in held_k]
        rows += check_rows(cells.segments[s] if several else "all segments", held_k, labels, observed[cols],
                           replicated[:, cols])
    return predictive_check(
        "products_added", rows, title=f"Products added by products held: observed against the fitted {what}",
        x_label="products held (at the start of the period)", y_label="products added (products)",
        caption="Products added by customers holding 1, 2, 3 or 4+ products" + (", per segment" if several else "")
                + ": observed (dots) against panels replicated under the fit (bars: mean, whiskers: 90 % band over "
                f"{draws} posterior draws; each cell's total drawn from Poisson(customer-periods × fitted rate)); "
                "a dot outside its whisker is a group the model misses.",
        draws=draws, style="bars")


class CrossSellModel(CellModel, MarginalisedMeansFit, BayesianModel):
    """Poisson regression of products added per period with a trust × enthusiasm interaction.

    Parameters
    ----------
    panel
        A panel frame or file, validated as the command line does (:func:`~tenure.models.panel.as_panel`)
        and compressed to exposure and counts per covariate cell (:func:`~tenure.models.panel.count_cells`).
    priors
        Overrides of :attr:`default_priors`.
    missing
        Null survey scores: ``"carry"`` the customer's last answer forward, or ``"drop"`` the row.
    segment_col
        Column holding the segment (default ``segment`` if present).
    parametrization
        Segment intercepts: ``"auto"``, ``"centered"`` or ``"noncentered"``.
    """

    _row_count = "exposure"

    sampler_options: ClassVar[dict[str, Any]] = {"target_accept": POOLED_TARGET_ACCEPT}
    name: ClassVar[str] = "cross-sell"
    named_parameters: ClassVar[tuple[str, ...]] = (
        "xsell_intercept", "xsell_trust", "xsell_enthusiasm", "xsell_trust_x_enthusiasm",
    )
    #: Weakly informative priors on the log-rate scale (documented in docs/models-panel.md).
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {
        # Log monthly rate −3 ≈ 0.05 products a month; ±2 sd spans 0.007 to 0.37.
        "xsell_intercept": {"dist": "Normal", "mu": -3.0, "sigma": 2.0},
        # A rate ratio per point between 0.14 and 7.4 at ±2 sd.
        "xsell_trust": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        "xsell_enthusiasm": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        # The interaction multiplies a per-point ratio, per point of the other score: tighter.
        "xsell_trust_x_enthusiasm": {"dist": "Normal", "mu": 0.0, "sigma": 0.5},
        "xsell_products": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        # Spread of segment intercepts: zero-avoiding (Chung et al. 2013), see SEGMENT_SD_PRIOR.
        "xsell_segment_sd": dict(SEGMENT_SD_PRIOR),
    }

    time_unit = "months"

    def __init__(
        self,
        panel: pl.DataFrame | str | os.PathLike[str],
        priors: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        missing: str = "carry",
        segment_col: str | None = None,
        parametrization: str = "auto",
    ) -> None:
        cells = count_cells(as_panel(panel, segment_col=segment_col, optional=()), missing=missing)
        self._setup(cells, priors, "cells", parametrization)

    def covariate_sds(self) -> dict[str, float]:
        """Standard deviation of trust, enthusiasm and products held over the rows."""
        c = self.cells
        return {k: covariate_sd(getattr(c, k), c.exposure) for k in ("trust", "enthusiasm", "products")}

    def data_summary(self) -> dict[str, Any]:
        """Rows, customers, products added, cells, segments, missing-score handling and sds."""
        return {**self.cells.summary(), "covariate_sd": self.covariate_sds(), "likelihood": self.likelihood}

    def coords(self) -> dict[str, list[str]]:
        """Model coordinates: the segments."""
        return {"segment": list(self.cells.segments)}

    def linear_predictor(self) -> Any:
        """Create the priors (inside a model context) and return the log-rate of products added per cell."""
        import pymc as pm
        import pytensor.tensor as pt

        c = self.cells
        seg_events = np.bincount(c.segment, weights=c.events, minlength=len(c.segments))
        sds = self.covariate_sds()
        p = self.priors
        coefficients = [prior(k, p[k]) for k in COEFFICIENTS]
        b_t, b_e, b_te = coefficients[:3]
        alpha, marginal = pooled_intercepts("xsell_segment", "xsell_intercept", p["xsell_intercept"],
                                            p["xsell_segment_sd"], c.segment, len(c.segments), seg_events,
                                            "segment", self.parametrization)
        self.marginalised = [marginal] if marginal else []
        pm.Deterministic("xsell_trust_per_sd", b_t * sds["trust"])
        pm.Deterministic("xsell_enthusiasm_per_sd", b_e * sds["enthusiasm"])
        pm.Deterministic("xsell_trust_x_enthusiasm_per_sd", b_te * sds["trust"] * sds["enthusiasm"])
        return alpha + pt.dot(count_design(c), pt.stack(coefficients))

    def build(self) -> pm.Model:
        """The PyMC model (see the module docstring for the equation)."""
        import pymc as pm

        c = self.cells
        with pm.Model(coords=self.coords()) as model:
            eta = self.linear_predictor()
            if self.likelihood == "cells":
                pm.CustomDist("xsell_events", c.exposure, c.log_factorial, eta, logp=poisson_cells_logp,
                              observed=c.events)
            else:
                pm.Poisson("xsell_events", mu=pm.math.exp(eta), observed=c.events)
        return model

    def predictive_check(self, idata: az.InferenceData, seed: int) -> dict[str, Any]:
        """Products added per segment and products held, observed against 100 panels replicated under the posterior.

        Under each checked draw every cell's rate is exp(η) (:func:`count_eta`) and its total is
        drawn from Poisson(exposure · rate) with a generator seeded by ``seed``.
        """
        from tenure.models.clv_predict import posterior_draws
        from tenure.models.ppc import draw_indices

        names = [n for n in ("xsell_segment", "xsell_intercept", *COEFFICIENTS) if n in idata.posterior]
        d = posterior_draws(idata, names)
        pick = draw_indices(len(d["xsell_intercept"]))
        rates = np.exp(count_eta(self.cells, {k: v[pick] for k, v in d.items()}))
        return count_check(self.cells, rates, len(pick), np.random.default_rng(seed))

    def summary_var_names(self, idata: az.InferenceData | None = None) -> list[str]:
        """Parameters for ``summary.csv`` and the forest plot."""
        idata = idata or self.idata
        names = [*self.named_parameters, "xsell_products", "xsell_trust_per_sd", "xsell_enthusiasm_per_sd",
                 "xsell_trust_x_enthusiasm_per_sd"]
        extra = ["xsell_segment", "xsell_segment_sd"]
        return names + [n for n in extra if idata is None or n in idata.posterior]

    def effect_lines(self, idata: az.InferenceData | None = None, prob: float = 0.9) -> list[str]:
        """One plain-language line per effect."""
        post = (idata or self.idata).posterior
        quantity = "the expected products added per month"
        return [
            ratio_line(post["xsell_trust"].values, "one point more trust (at enthusiasm 3)", quantity, prob),
            ratio_line(post["xsell_enthusiasm"].values, "one point more enthusiasm (at trust 3)", quantity, prob),
            ratio_line(post["xsell_trust_x_enthusiasm"].values, "each point more trust",
                       "the cross-selling gain from one point more enthusiasm", prob),
            ratio_line(post["xsell_products"].values, "one more product held", quantity, prob),
        ]
