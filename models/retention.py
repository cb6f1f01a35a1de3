"""Retention: a discrete-time hazard of churn driven by trust, enthusiasm and satisfaction.

For customer i in period t (while active), with scores carried forward from the
last survey answer,

    logit P(churn_it) = a[segment_i] + τ[band(tenure_it)]
                        + β_T (trust_it − 3) + β_E (enthusiasm_it − 3) + β_S (satisfaction_it − 3)

(Singer & Willett 1993, discrete-time survival as a logistic regression on
person-period rows). τ is piecewise constant over tenure bands (first band = 0),
a[s] ~ Normal(churn_intercept, churn_segment_sd) are partially pooled segment
intercepts, and scores enter centred at the scale midpoint 3, so churn_intercept
is the monthly log-odds of churning of a customer scoring 3 on every item, in the
first tenure band, in a typical segment. Slopes are per point of the score as given;
``*_per_sd`` are the same effects per standard deviation of the score in the panel.

The likelihood uses the at-risk rows and events per cell (:class:`HazardCells`),
which is exact: it equals the sum of the row-level Bernoulli terms.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import polars as pl
from tenure.models.base import BayesianModel, prior
from tenure.models.effects import ratio_line
from tenure.models.panel import (
    SCORE_COLUMNS,
    TENURE_BANDS,
    HazardCells,
    as_panel,
    covariate_sd,
    hazard_cells,
    tenure_band_labels,
)
from tenure.models.pooling import (
    POOLED_TARGET_ACCEPT,
    SEGMENT_SD_PRIOR,
    CellModel,
    MarginalisedMeansFit,
    binomial_kernel_derivatives,
    binomial_kernel_logp,
    cells_mle,
    pooled_intercepts,
    segment_design,
)

if TYPE_CHECKING:  # PyMC, PyTensor and ArviZ load where a model is built or read: calibration uses only the MLE
    import arviz as az
    import pymc as pm

#: Midpoint of the 1–5 scale; scores enter the model as (score − 3).
SCORE_CENTRE = 3.0


def hazard_design(cells: HazardCells) -> tuple[np.ndarray, list[str]]:
    """The covariates of the linear predictor per cell, without the segment intercepts, and their names.

    Scores centred at :data:`SCORE_CENTRE`, then one indicator per later tenure band that
    holds rows (the first band is the baseline): η = a[segment] + design·coefficients.
    """
    c = cells
    later = [int(b) for b in np.unique(c.band[c.at_risk > 0]) if b > 0]
    labels = tenure_band_labels(c.bands)
    columns = [getattr(c, k) - SCORE_CENTRE for k in SCORE_COLUMNS] + [(c.band == b).astype(float) for b in later]
    names = [f"churn_{k}" for k in SCORE_COLUMNS] + [f"churn_tenure[{labels[b]}]" for b in later]
    return np.column_stack(columns), names


def hazard_eta(cells: HazardCells, draws: Mapping[str, np.ndarray]) -> np.ndarray:
    """The log-odds of churn per cell under each posterior draw, (draws, cells), in numpy.

    ``draws`` holds the posterior's ``churn_*`` variables with the draws on the first axis
    (:func:`~tenure.models.clv_predict.posterior_draws`): the segment intercepts where the fit
    has several segments (else ``churn_intercept``), the three slopes and the tenure shifts.
    """
    design, _ = hazard_design(cells)
    intercept = (draws["churn_segment"][:, cells.segment] if "churn_segment" in draws
                 else draws["churn_intercept"][:, None])
    coefficients = [draws[f"churn_{k}"][:, None] for k in SCORE_COLUMNS]
    if design.shape[1] > len(SCORE_COLUMNS):
        coefficients.append(draws["churn_tenure"].reshape(len(intercept), -1))
    return intercept + np.hstack(coefficients) @ design.T


def hazard_check_groups(cells: HazardCells) -> tuple[np.ndarray, list[tuple[str, int, str]]]:
    """Each cell's group for the predictive check (segment × tenure band, bands holding rows) and the groups.

    Returns the group index per cell and, per group, (segment name, band number, band label);
    with one segment the group name is ``"all segments"``.
    """
    labels = tenure_band_labels(cells.bands)
    pairs = sorted({(int(s), int(b)) for s, b in zip(cells.segment[cells.at_risk > 0],
                                                     cells.band[cells.at_risk > 0], strict=True)})
    index = {pair: i for i, pair in enumerate(pairs)}
    group = np.array([index.get((int(s), int(b)), 0) for s, b in zip(cells.segment, cells.band, strict=True)],
                     dtype=np.int64)
    several = len(cells.segments) > 1
    return group, [(cells.segments[s] if several else "all segments", b, labels[b]) for s, b in pairs]


def hazard_check(cells: HazardCells, params: Any, draws: int, rng: np.random.Generator,
                 what: str = "retention model") -> dict[str, Any]:
    """Churn events per segment and tenure band, observed against replicated (:mod:`tenure.models.ppc`).

    ``params``: the churn probability per cell under each checked draw (an iterable of (cells,)
    arrays); each replicate draws a cell's events from Binomial(at risk, p) and sums them per group.
    """
    from tenure.models.ppc import check_rows, predictive_check, replicate_cell_counts

    group, groups = hazard_check_groups(cells)
    observed = np.bincount(group, weights=cells.events, minlength=len(groups))
    replicated, _ = replicate_cell_counts("binomial", cells.at_risk, params, group, len(groups), rng)
    rows = []
    for name in dict.fromkeys(g[0] for g in groups):
        cols = [i for i, g in enumerate(groups) if g[0] == name]
        rows += check_rows(name, [groups[i][1] for i in cols], [f"months {groups[i][2]}" for i in cols], observed[cols],
                           replicated[:, cols])
    return predictive_check(
        "churn_events", rows, title=f"Churn events per tenure band: observed against the fitted {what}",
        x_label="tenure band (months since joining)", y_label="churn events (customers)",
        caption="Churn events in each tenure band" + (" and segment" if len(cells.segments) > 1 else "")
                + ": observed (dots) against panels replicated under the fit (bars: mean, whiskers: 90 % band over "
                f"{draws} posterior draws; each cell's events drawn from Binomial(at-risk rows, fitted churn "
                "probability)); a dot outside its whisker is a band the model misses.",
        draws=draws, style="bars")


def hazard_mle(cells: HazardCells) -> dict[str, float]:
    """Maximum-likelihood estimates of the model's equation on cells (flat priors, segment intercepts unpooled).

    Keys: ``churn_segment[s]`` for each segment with rows, the slopes and tenure shifts by
    their model names, and ``churn_intercept``, the mean of the segment intercepts.
    """
    keep = cells.at_risk > 0
    segs = np.unique(cells.segment[keep])
    design, names = hazard_design(cells)
    x = np.hstack([segment_design(np.searchsorted(segs, cells.segment[keep]), segs.size), design[keep]])
    b = cells_mle(x, binomial_kernel_logp, binomial_kernel_derivatives, (cells.events[keep], cells.at_risk[keep]))
    out = {f"churn_segment[{cells.segments[s]}]": float(v) for s, v in zip(segs, b[:segs.size], strict=True)}
    return {**out, "churn_intercept": float(b[:segs.size].mean()),
            **{n: float(v) for n, v in zip(names, b[segs.size:], strict=True)}}


class RetentionModel(CellModel, MarginalisedMeansFit, BayesianModel):
    """Discrete-time hazard of churn with survey covariates, tenure bands and pooled segments.

    Parameters
    ----------
    panel
        A panel frame or file, validated as the command line does (:func:`~tenure.models.panel.as_panel`)
        and compressed to at-risk rows and events per covariate cell (:func:`~tenure.models.panel.hazard_cells`).
    priors
        Overrides of :attr:`default_priors` (e.g. from :func:`~tenure.models.base.load_priors`).
    missing
        Null survey scores: ``"carry"`` the customer's last answer forward, or ``"drop"`` the row.
    bands
        First period of each tenure band.
    segment_col
        Column holding the segment (default ``segment`` if present).
    parametrization
        Segment intercepts: ``"auto"``, ``"centered"`` or ``"noncentered"``
        (see :func:`~tenure.models.pooling.pooled_intercepts`).

    Examples
    --------
    >>> import polars as pl
    >>> model = RetentionModel(pl.read_parquet("panel.parquet"))  # doctest: +SKIP
    >>> result = model.fit(method="mcmc")  # doctest: +SKIP
    >>> result.summary()  # doctest: +SKIP
    """

    sampler_options: ClassVar[dict[str, Any]] = {"target_accept": POOLED_TARGET_ACCEPT}
    name: ClassVar[str] = "retention"
    named_parameters: ClassVar[tuple[str, ...]] = (
        "churn_intercept", "churn_trust", "churn_enthusiasm", "churn_satisfaction",
    )
    #: Weakly informative priors on the logit scale (documented in docs/models-panel.md).
    default_priors: ClassVar[dict[str, dict[str, Any]]] = {
        # Monthly churn log-odds −3 ≈ 4.7 %; ±2 sd spans about 0.1 % to 27 %.
        "churn_intercept": {"dist": "Normal", "mu": -3.0, "sigma": 2.0},
        # An odds ratio per point between e^−2 ≈ 0.14 and e^2 ≈ 7.4 at ±2 sd: generous for 1–5 scores.
        "churn_trust": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        "churn_enthusiasm": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        "churn_satisfaction": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        # Log-odds shift of each later tenure band against the first.
        "churn_tenure": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        # Spread of segment intercepts: zero-avoiding (Chung et al. 2013), see SEGMENT_SD_PRIOR.
        "churn_segment_sd": dict(SEGMENT_SD_PRIOR),
    }
    covariates: ClassVar[tuple[str, ...]] = SCORE_COLUMNS

    time_unit = "months"

    def __init__(
        self,
        panel: pl.DataFrame | str | os.PathLike[str],
        priors: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        missing: str = "carry",
        bands: Sequence[int] = TENURE_BANDS,
        segment_col: str | None = None,
        parametrization: str = "auto",
    ) -> None:
        cells = hazard_cells(as_panel(panel, segment_col=segment_col, optional=()), bands=bands, missing=missing)
        self._setup(cells, priors, "cells", parametrization)

    def covariate_sds(self) -> dict[str, float]:
        """Standard deviation of each score over the at-risk rows."""
        c = self.cells
        return {k: covariate_sd(getattr(c, k), c.at_risk) for k in self.covariates}

    def data_summary(self) -> dict[str, Any]:
        """Rows, customers, events, cells, segments, bands, missing-score handling and score sds."""
        return {**self.cells.summary(), "score_sd": self.covariate_sds(), "likelihood": self.likelihood}

    def coords(self) -> dict[str, list[str]]:
        """Model coordinates: segments and the tenure bands after the first that hold rows."""
        c = self.cells
        labels = tenure_band_labels(c.bands)
        return {"segment": list(c.segments), "tenure_band": [labels[b] for b in self._later_bands()]}

    def _later_bands(self) -> np.ndarray:
        present = np.unique(self.cells.band)
        return present[present > 0]

    def linear_predictor(self) -> Any:
        """Create the priors (inside a model context) and return the log-odds of churn per cell."""
        import pymc as pm
        import pytensor.tensor as pt

        c = self.cells
        seg_events = np.bincount(c.segment, weights=c.events, minlength=len(c.segments))
        sds = self.covariate_sds()
        p = self.priors
        slopes = {k: prior(f"churn_{k}", p[f"churn_{k}"]) for k in self.covariates}
        alpha, marginal = pooled_intercepts("churn_segment", "churn_intercept", p["churn_intercept"],
                                            p["churn_segment_sd"], c.segment, len(c.segments), seg_events,
                                            "segment", self.parametrization)
        self.marginalised = [marginal] if marginal else []
        coefficients = [slopes[k] for k in self.covariates]
        if self._later_bands().size:
            coefficients.append(prior("churn_tenure", p["churn_tenure"], dims="tenure_band"))
        for k in self.covariates:
            pm.Deterministic(f"churn_{k}_per_sd", slopes[k] * sds[k])
        design, _ = hazard_design(c)
        return alpha + pt.dot(design, pt.concatenate([pt.atleast_1d(b) for b in coefficients]))

    def build(self) -> pm.Model:
        """The PyMC model (see the module docstring for the equation)."""
        import pymc as pm

        c = self.cells
        with pm.Model(coords=self.coords()) as model:
            eta = self.linear_predictor()
            if self.likelihood == "cells":
                pm.CustomDist("churn_events", c.at_risk, eta, logp=binomial_kernel_logp, observed=c.events)
            else:
                pm.Bernoulli("churn_events", logit_p=eta, observed=c.events)
        return model

    def predictive_check(self, idata: az.InferenceData, seed: int) -> dict[str, Any]:
        """Churn events per segment and tenure band, observed against 100 panels replicated under the posterior.

        Under each checked draw the churn probability of every cell follows from the linear
        predictor (:func:`hazard_eta`) and its events are drawn from Binomial(at risk, p) with a
        generator seeded by ``seed``: exact for the rows, since a cell's rows share p.
        """
        from scipy.special import expit
        from tenure.models.clv_predict import posterior_draws
        from tenure.models.ppc import draw_indices

        names = [n for n in ("churn_segment", "churn_intercept", *(f"churn_{k}" for k in SCORE_COLUMNS),
                             "churn_tenure") if n in idata.posterior]
        d = posterior_draws(idata, names)
        pick = draw_indices(len(d["churn_intercept"]))
        p = expit(hazard_eta(self.cells, {k: v[pick] for k, v in d.items()}))
        return hazard_check(self.cells, p, len(pick), np.random.default_rng(seed))

    def summary_var_names(self, idata: az.InferenceData | None = None) -> list[str]:
        """Parameters for ``summary.csv`` and the forest plot: named, per-sd, tenure, segments."""
        names = [*self.named_parameters, *(f"churn_{k}_per_sd" for k in self.covariates)]
        post = (idata or self.idata).posterior if (idata or self.idata) is not None else None
        extra = ["churn_tenure", "churn_segment", "churn_segment_sd"]
        return names + [n for n in extra if post is None or n in post]

    def effect_lines(self, idata: az.InferenceData | None = None, prob: float = 0.9) -> list[str]:
        """One plain-language line per survey effect."""
        post = (idata or self.idata).posterior
        return [ratio_line(post[f"churn_{k}"].values, f"one point more {k}", "the monthly odds of churning", prob)
                for k in self.covariates]
