"""Calibrate a market on a panel: indirect inference on the engine, uncertainty by bootstrap.

The survey scores of a panel are noisy, discretised readings of the engine's latent
trust, enthusiasm and satisfaction, so a churn coefficient fitted on the scores is
diluted and cannot be copied into the engine. Instead (indirect inference; Gouriéroux,
Monfort & Renault 1993; Smith 1993) the same *auxiliary* statistics are computed on
the observed panel and on panels the engine simulates, and the engine parameters θ are
chosen so that the two agree:

    θ̂ = argmin_θ (â − a(θ))ᵀ W (â − a(θ)),   W = the inverse of Cov â shrunk half-way to its diagonal.

The auxiliary vector a is the retention and cross-selling regressions of ``tenure
fit`` (maximum likelihood on the exact cell compression: segment intercepts, tenure
bands, scores centred at 3) plus the churn and cross-selling rates, the cross-selling
rate by carried trust and by carried enthusiasm answer, the mean and spread of the
survey answers and NPS. The simulated panels use common random numbers (one seed for
every candidate θ), so a(θ) is smooth enough for a Gauss–Newton solve with a
finite-difference Jacobian, updated by Broyden's rule between solves; at the solution
the Jacobian is recomputed by central differences and one more step is taken.

Uncertainty: a bootstrap of customers (Poisson weights, so within-customer dependence
is kept) gives replicates â_b; each is mapped through the local linear inverse
G = (JᵀWJ)⁻¹JᵀW at the solution, θ_b = θ̂ + √(1 + 1/S)·G(â_b − â), where S is the ratio
of simulated to observed customers (the simulation noise of a(θ̂), Gouriéroux et al.
1993). Each θ_b is one calibrated market. docs/calibration.md gives the method, the
parameters and the assumptions.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tenure.engine.pool import map_runs
from tenure.engine.simulator import Simulator
from tenure.models.cross_sell import count_mle
from tenure.models.panel import (
    SCORE_COLUMNS,
    SINGLE_SEGMENT,
    TENURE_BANDS,
    XSELL_COLUMNS,
    CountCells,
    HazardCells,
    count_cells,
    hazard_cells,
)
from tenure.models.retention import hazard_mle

from tenure.errors import InputError
from tenure.metrics import DETRACTOR_MAX, PROMOTER_MIN
from tenure.scenario import Scenario, field_help


@dataclass(frozen=True)
class Param:
    """One engine parameter that calibration moves; the rest stay at the base scenario."""

    key: str  # dotted scenario key
    step: float  # finite-difference step and the scale of a Gauss-Newton move
    lo: float
    hi: float
    needs: str  # which statistics identify it: "retention", "cross_sell", "answers" or "nps"
    why: str


PARAMS: tuple[Param, ...] = (
    Param("market.competitor_pull", 0.10, -6.0, 6.0, "retention",
          "churn level: a logit shift of every customer's hazard (the base churn intercept)"),
    Param("churn.trust", 0.30, -15.0, 15.0, "retention", "churn sensitivity to latent trust"),
    Param("churn.enthusiasm", 0.30, -15.0, 15.0, "retention", "churn sensitivity to latent enthusiasm"),
    Param("cross_sell.intercept", 0.10, -15.0, 5.0, "cross_sell", "cross-selling base rate (log)"),
    Param("cross_sell.trust", 0.30, -15.0, 15.0, "cross_sell", "cross-selling sensitivity to trust"),
    Param("cross_sell.enthusiasm", 0.30, -15.0, 15.0, "cross_sell", "cross-selling sensitivity to enthusiasm"),
    Param("experience.product_quality", 0.05, -3.0, 3.0, "answers",
          "level of experienced quality: moves satisfaction, trust and enthusiasm"),
    Param("survey.item_noise", 0.05, 0.02, 5.0, "answers", "noise of the 1-5 answers around the latent state"),
    Param("survey.nps_intercept", 0.20, -10.0, 10.0, "nps", "level of the latent recommendation (0-10)"),
)

RETENTION_STATS = ("churn_intercept", "churn_trust", "churn_enthusiasm", "churn_satisfaction", "churn_rate")
CROSS_SELL_STATS = ("xsell_intercept", "xsell_trust", "xsell_enthusiasm", "xsell_trust_x_enthusiasm",
                    "cross_sell_rate")
#: Log cross-selling rate among rows whose carried trust (enthusiasm) answer is v: the shape of the rate
#: over the answers, where the trust gating of enthusiasm shows. Panel only (a fit folder has no cells).
LEVEL_STATS = tuple(f"xsell_rate_{c}_{v}" for c in ("trust", "enthusiasm") for v in range(1, 6))
ANSWER_STATS = tuple(f"answer_{k}_{s}" for k in SCORE_COLUMNS for s in ("mean", "sd"))
NPS_STATS = ("nps_answer_mean", "nps")
#: A targeted statistic further than this many standard errors from the calibrated market misses.
MISS_Z = 4.0
#: Weight of the diagonal in the shrunk covariance of the statistics whose inverse weights the objective.
SHRINK = 0.5
#: Central-difference steps of the Jacobian at the solution, in units of ``Param.step``.
FINAL_STEP = 2.0
#: The Gauss-Newton iterations stop once :data:`STALL_ITERATIONS` iterations in a row lowered the best objective
#: by less than this (a rejected step, one that raised the objective, lowers it by nothing). With W the
#: inverse covariance of the statistics, moving θ by k standard errors changes the objective by about k², so a
#: step that gains less than 0.05 leaves the estimate within about a fifth of a standard error of the minimum.
OBJECTIVE_TOL = 0.05
#: Iterations in a row that must gain less than the tolerance to stop: after one rejected step, Broyden's
#: update of the Jacobian often finds a step that gains again (measured on small panels), after two it rarely does.
STALL_ITERATIONS = 2
#: A check statistic further than this many predictive standard deviations misses.
CHECK_Z = 3.5
HAZARD_KEYS = ("segment", "band", *SCORE_COLUMNS)
HAZARD_SUMS = ("at_risk", "events")
COUNT_KEYS = ("segment", *XSELL_COLUMNS, "products")
COUNT_SUMS = ("exposure", "events", "log_factorial")


# -- the panel as arrays ---------------------------------------------------------------


@dataclass
class PanelArrays:
    """A panel compressed as the models compress it, plus the per-row arrays of the answer and check statistics.

    ``hazard`` and ``counts`` are the models' cells (:func:`~tenure.models.panel.hazard_cells`,
    :func:`~tenure.models.panel.count_cells`, scores carried forward). With ``by_customer``
    (a panel to bootstrap) they are kept per customer too, and ``hazard_cell``/``count_cell``
    give each customer cell's covariate cell, so a bootstrap weight per customer re-weights
    them; ``cust`` numbers each row's customer 0..n-1 for the raw answers.
    """

    n_customers: int
    periods: int
    segments: tuple[str, ...]
    hazard: HazardCells
    counts: CountCells
    cust: np.ndarray
    period: np.ndarray
    churned: np.ndarray
    cross: np.ndarray
    answers: dict[str, np.ndarray]  # raw answers (−1 when not surveyed), SCORE_COLUMNS and "nps"
    hazard_customers: HazardCells | None = None
    hazard_cell: np.ndarray | None = None
    counts_customers: CountCells | None = None
    count_cell: np.ndarray | None = None
    has_nps: bool = False


def _with_tenure(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``tenure`` and ``_cust`` as read_panel does, for a sorted, trusted engine panel."""
    new = pl.col("customer_id") != pl.col("customer_id").shift(1)
    return (df.with_columns(_new=new.fill_null(True))
            .with_columns(tenure=(pl.col("period") - pl.when(pl.col("_new")).then(pl.col("period"))
                                  .forward_fill()).cast(pl.Int32),
                          _cust=pl.col("_new").cum_sum().cast(pl.Int32))
            .drop("_new"))


def _sorted_by_customer_period(df: pl.DataFrame) -> bool:
    """Whether rows are in (customer id, period) order already (an engine panel is): one pass, no sort."""
    ids, per = df["customer_id"].to_numpy(), df["period"].to_numpy()
    step, later = np.diff(ids), np.diff(per)
    return bool(np.all((step > 0) | ((step == 0) & (later > 0))))


def panel_arrays(df: pl.DataFrame, segments: Sequence[str] | None = None, by_customer: bool = False) -> PanelArrays:
    """Reduce a validated panel (read_panel) or an engine panel to :class:`PanelArrays`.

    ``segments``: the segment names to keep apart (a segment not among them joins the
    first); ``None`` pools every customer into one segment (used when the panel's segments
    are not the scenario's). ``by_customer``: keep the cells per customer, for a bootstrap.
    """
    if "tenure" not in df.columns or "_cust" not in df.columns:
        df = _with_tenure(df if _sorted_by_customer_period(df) else df.sort(["customer_id", "period"]))
    seg_names = tuple(segments) if segments else (SINGLE_SEGMENT,)
    segment = (pl.when(pl.col("segment").is_in(list(seg_names))).then(pl.col("segment"))
               .otherwise(pl.lit(seg_names[0])) if segments else pl.lit(SINGLE_SEGMENT))
    df = df.with_columns(segment=segment)
    hazard = hazard_cells(df, bands=TENURE_BANDS, by_customer=by_customer)
    counts = count_cells(df, by_customer=by_customer)
    per_customer: dict[str, Any] = {}
    if by_customer:
        per_customer["hazard_customers"], per_customer["counts_customers"] = hazard, counts
        hazard, per_customer["hazard_cell"] = _pool_customers(hazard, HAZARD_KEYS, HAZARD_SUMS)
        counts, per_customer["count_cell"] = _pool_customers(counts, COUNT_KEYS, COUNT_SUMS)
    answers = {c: df[c].fill_null(-1).to_numpy().astype(np.int64) for c in SCORE_COLUMNS}
    has_nps = "nps" in df.columns and df["nps"].null_count() < df.height
    if has_nps:
        answers["nps"] = df["nps"].fill_null(-1).to_numpy().astype(np.int64)
    period = df["period"].to_numpy().astype(np.int64)
    return PanelArrays(
        n_customers=int(df["_cust"].max()), periods=int(period.max() - period.min() + 1), segments=seg_names,
        hazard=hazard, counts=counts, cust=df["_cust"].to_numpy().astype(np.int64) - 1,
        period=period - period.min(), churned=df["churned"].to_numpy().astype(float),
        cross=df["cross_sold"].to_numpy().astype(float), answers=answers, has_nps=has_nps, **per_customer,
    )


def _pool_customers(cells: Any, keys: Sequence[str], sums: Sequence[str]) -> tuple[Any, np.ndarray]:
    """Cells per customer → (the same cells summed over customers, each customer cell's pooled cell).

    ``keys`` are the covariate fields, ``sums`` the fields that add up over customers.
    """
    key = np.column_stack([getattr(cells, k) for k in keys])
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    pooled = replace(cells, **{k: getattr(cells, k)[first] for k in keys},
                     **{k: np.bincount(inverse, getattr(cells, k), minlength=first.size) for k in sums},
                     customer=None)
    return pooled, inverse


def _weighted(pooled: Any, per_customer: Any, cell: np.ndarray | None, w: np.ndarray | None,
              sums: Sequence[str]) -> Any:
    """The pooled cells with every customer's rows counted ``w[customer]`` times (a bootstrap replicate)."""
    if w is None:
        return pooled
    if per_customer is None or cell is None:
        raise ValueError("weights need the cells per customer: panel_arrays(..., by_customer=True)")
    weight = w[per_customer.customer - 1]
    size = getattr(pooled, sums[0]).size
    return replace(pooled, **{k: np.bincount(cell, weight * getattr(per_customer, k), minlength=size) for k in sums})


# -- auxiliary estimators ----------------------------------------------------------------


def fit_retention(cells: HazardCells) -> dict[str, float]:
    """The retention model's equation by maximum likelihood on its cells (models/retention.py, no priors).

    churn_intercept is the mean of the segment intercepts (the pooled model's hyper-mean).
    """
    est = hazard_mle(cells)
    return {**{k: est[k] for k in RETENTION_STATS[:-1]},
            "churn_rate": float(_logit(cells.events.sum() / cells.at_risk.sum()))}


def fit_cross_sell(cells: CountCells) -> dict[str, float]:
    """The cross-selling model's equation by maximum likelihood on its cells (models/cross_sell.py, no priors)."""
    est = count_mle(cells)
    return {**{k: est[k] for k in CROSS_SELL_STATS[:-1]},
            "cross_sell_rate": float(math.log(max(cells.events.sum(), 0.5) / cells.exposure.sum()))}


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def _weighted_answers(values: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    ok = values >= 0
    ww, v = w[ok], values[ok].astype(float)
    tot = ww.sum()
    if tot <= 0:
        return math.nan, math.nan
    mean = float(np.sum(ww * v) / tot)
    return mean, float(math.sqrt(max(np.sum(ww * (v - mean) ** 2) / tot, 0.0)))


def statistics(pa: PanelArrays, weights: np.ndarray | None = None, groups: Sequence[str] | None = None
               ) -> dict[str, float]:
    """The auxiliary statistics of a panel; ``weights`` per customer (a bootstrap replicate)."""
    groups = groups or ("retention", "cross_sell", "cross_sell_levels", "answers", *(("nps",) if pa.has_nps else ()))
    w = np.ones(pa.cust.size) if weights is None else weights[pa.cust]
    out: dict[str, float] = {}
    counts = _weighted(pa.counts, pa.counts_customers, pa.count_cell, weights, COUNT_SUMS)
    if "retention" in groups:
        out.update(fit_retention(_weighted(pa.hazard, pa.hazard_customers, pa.hazard_cell, weights, HAZARD_SUMS)))
    if "cross_sell" in groups:
        out.update(fit_cross_sell(counts))
    if "cross_sell_levels" in groups:
        for c in ("trust", "enthusiasm"):
            level = getattr(counts, c).astype(np.int64)
            exposure = np.bincount(level, counts.exposure, minlength=6)
            events = np.bincount(level, counts.events, minlength=6)
            for v in range(1, 6):
                out[f"xsell_rate_{c}_{v}"] = float(math.log(max(events[v], 0.5) / max(exposure[v], 1.0)))
    if "answers" in groups:
        for c in SCORE_COLUMNS:
            out[f"answer_{c}_mean"], out[f"answer_{c}_sd"] = _weighted_answers(pa.answers[c], w)
    if "nps" in groups and pa.has_nps:
        a = pa.answers["nps"]
        ok = a >= 0
        ww = w[ok]
        out["nps_answer_mean"] = float(np.sum(ww * a[ok]) / ww.sum())
        out["nps"] = float((np.sum(ww * (a[ok] >= PROMOTER_MIN)) - np.sum(ww * (a[ok] <= DETRACTOR_MAX))) / ww.sum())
    return out


# -- the observed side: a panel or fit folders ---------------------------------------------


@dataclass
class Target:
    """What calibration must reproduce: statistics, their replicates and the panel's size."""

    source: str
    names: list[str]
    values: np.ndarray
    replicates: np.ndarray  # (draws, statistics): bootstrap replicates or posterior draws
    groups: tuple[str, ...]
    n_customers: int
    periods: int
    segments: tuple[str, ...] | None
    panel: PanelArrays | None = None

    @property
    def variance(self) -> np.ndarray:
        var = self.replicates.var(axis=0, ddof=1)
        return np.maximum(var, 1e-10 + 1e-6 * self.values ** 2)

    @property
    def weight(self) -> np.ndarray:
        """W: the inverse of the replicates' covariance, shrunk half-way to its diagonal.

        The statistics are strongly correlated (the cross-selling intercept, its rate and the rates
        by answer level all measure the rate's level), so a diagonal W counts the level many times
        and drowns the differences between levels that separate the cross-selling parameters.
        Shrinking (Ledoit & Wolf 2004) keeps the inverse stable with 50 replicates.
        """
        sd = np.sqrt(self.variance)
        corr = np.eye(sd.size)
        if self.replicates.shape[0] > 2:
            cov = np.atleast_2d(np.cov(self.replicates, rowvar=False))
            s = np.sqrt(np.diag(cov))
            ok = s > 0  # a statistic that never varies (a constant answer) gets no correlations
            corr[np.ix_(ok, ok)] = cov[np.ix_(ok, ok)] / np.outer(s[ok], s[ok])
        corr = (1.0 - SHRINK) * corr + SHRINK * np.eye(sd.size)
        return np.linalg.inv(corr) / np.outer(sd, sd)


def target_from_panel(df: pl.DataFrame, source: str, scenario: Scenario, draws: int, seed: int) -> Target:
    """Statistics of a validated panel and a Poisson bootstrap of its customers."""
    names = [s["name"] for s in scenario["segments"]]
    panel_segments = sorted(df["segment"].unique().to_list())
    segments = tuple(names) if len(names) > 1 and set(panel_segments) <= set(names) else None
    if df.select(pl.all_horizontal(pl.col(c).is_null() for c in SCORE_COLUMNS).all()).item():
        raise InputError(f"{source}: no rows with survey answers to carry forward: nothing to calibrate on")
    pa = panel_arrays(df, segments, by_customer=True)
    groups = ("retention", "cross_sell", "cross_sell_levels", "answers", *(("nps",) if pa.has_nps else ()))
    obs = statistics(pa, groups=groups)
    rng = np.random.default_rng(seed)
    reps = np.array([list(statistics(pa, rng.poisson(1.0, pa.n_customers).astype(float), groups).values())
                     for _ in range(draws)])
    return Target(source, list(obs), np.array(list(obs.values())), reps, groups, pa.n_customers, pa.periods,
                  segments, pa)


FIT_MODELS = {"retention": "retention", "cross-sell": "cross_sell"}


def target_from_fits(dirs: Sequence[Path], scenario: Scenario, draws: int, periods: int | None,
                     seed: int) -> Target:
    """Posterior draws of `tenure fit retention` / `cross-sell` folders as the target.

    The churn or cross-selling rate comes from the fit's data summary (events / rows)
    with its binomial standard error; the posterior stands in for the sampling
    distribution of the estimates (a Bernstein–von Mises argument: at panel sizes
    where calibration is worth doing the posterior is close to normal around the MLE).
    """
    from tenure.models import load

    names: list[str] = []
    cols: list[np.ndarray] = []
    values: list[float] = []
    groups: list[str] = []
    customers, seg_lists = 0, []
    rng = np.random.default_rng(seed)
    for d in dirs:
        post_file = d / "posterior.nc"
        if not post_file.is_file():
            raise InputError(f"{d}: not a fit folder (no posterior.nc) and not a panel file")
        fit = load(d)
        model = fit.model_name
        if model not in FIT_MODELS:
            raise InputError(f"{d}: a fit of model {model!r}; calibrate needs a fit of 'retention' or 'cross-sell' "
                             "(or the panel itself)")
        group = FIT_MODELS[model]
        if group in groups:
            raise InputError(f"{d}: a second {model} fit; give one fit folder per model")
        groups.append(group)
        summary = fit.data_summary
        post = fit.posterior
        stat_names = RETENTION_STATS if group == "retention" else CROSS_SELL_STATS
        rows = float(summary.get("rows", 0))
        ev = float(summary.get("churn_events" if group == "retention" else "products_added", -1))
        if rows <= 0 or ev < 0:
            raise InputError(f"{post_file}: data summary without rows and events; fit again with this version")
        for name in stat_names[:-1]:
            if name not in post:
                raise InputError(f"{post_file}: posterior has no {name!r}")
            flat = post[name].values.reshape(-1)
            cols.append(flat)
            names.append(name)
            values.append(float(flat.mean()))
        rate = ev / rows
        if group == "retention":
            v, se = _logit(rate), 1.0 / math.sqrt(max(rows * rate * (1 - rate), 1e-9))
        else:
            v, se = math.log(max(ev, 0.5) / rows), 1.0 / math.sqrt(max(ev, 1.0))
        names.append(stat_names[-1])
        values.append(v)
        cols.append(v + se * rng.standard_normal(cols[-1].size))
        customers = max(customers, int(summary.get("customers", 0)))
        seg_lists.append(tuple(summary.get("segments", [])))
    size = min(c.size for c in cols)
    pick = rng.choice(size, size=min(draws, size), replace=False) if draws < size else np.arange(size)
    reps = np.stack([c[:size][pick] for c in cols], axis=1)
    scen_names = [s["name"] for s in scenario["segments"]]
    segs = seg_lists[0] if seg_lists else ()
    segments = tuple(scen_names) if len(scen_names) > 1 and set(segs) <= set(scen_names) and segs else None
    if customers <= 0:
        raise InputError(f"{dirs[0]}: data summary without a customer count; fit again with this version")
    return Target(", ".join(map(str, dirs)), names, np.array(values), reps, tuple(groups), customers,
                  int(periods or scenario["run"]["periods"]), segments)


# -- the simulated side ---------------------------------------------------------------------


def overrides_for(params: Sequence[Param], theta: np.ndarray) -> dict[str, dict[str, float]]:
    """Nested scenario overrides from parameter values."""
    out: dict[str, dict[str, float]] = {}
    for p, v in zip(params, theta, strict=True):
        section, key = p.key.split(".")
        out.setdefault(section, {})[key] = float(v)
    return out


def base_values(sc: Scenario, params: Sequence[Param]) -> np.ndarray:
    return np.array([float(sc[p.key.split(".")[0]][p.key.split(".")[1]]) for p in params])


@dataclass
class PanelSimulator:
    """Simulates panels of the target's shape at candidate parameters, on common random numbers.

    Every candidate of the calibration seed forks one initial base (:meth:`Simulator.fork` with the
    candidate's scenario: no calibrated parameter acts before a customer is born), so the base is built
    once per calibration instead of once per panel; the panels equal fresh runs bit for bit.
    Safe to call from several threads at once (:func:`tenure.engine.pool.map_runs`).
    """

    base: Scenario
    periods: int
    customers: int
    segments: tuple[str, ...] | None
    seed: int
    runs: int = 0
    _base_sim: Simulator | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def scenario(self, params: Sequence[Param], theta: np.ndarray, seed: int | None = None) -> Scenario:
        """The base scenario at ``theta``, over the target's periods, with ``seed`` (default: the calibration's)."""
        return self.base.with_overrides({**_merge_over(overrides_for(params, theta),
                                                       {"run": {"periods": self.periods,
                                                                "seed": self.seed if seed is None else seed}})},
                                        "calibration candidate")

    def _simulator(self, sc: Scenario, seed: int | None) -> Simulator:
        if seed is not None and seed != self.seed:
            return Simulator(sc, panel_fraction=1.0, track_customers=False)
        with self._lock:
            if self._base_sim is None:
                self._base_sim = Simulator(sc, panel_fraction=1.0, track_customers=False)
        return self._base_sim.fork(scenario=sc)

    def panel(self, params: Sequence[Param], theta: np.ndarray, seed: int | None = None) -> PanelArrays:
        sc = self.scenario(params, theta, seed)
        res = self._simulator(sc, seed).run()
        with self._lock:
            self.runs += 1
        return panel_arrays(res.panel, self.segments)

    def statistics(self, params: Sequence[Param], theta: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
        return statistics(self.panel(params, theta), groups=groups)


def _merge_over(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {k: dict(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, {}).update(v)
    return out


def simulator_for(target: Target, base: Scenario, multiplier: float, seed: int) -> PanelSimulator:
    """Size the simulated market so that its panel holds about ``multiplier`` × the target's customers.

    From fit folders the target counts customers with at least one survey answer, so the pilot
    counts those too.
    """
    pilot_n = 5_000
    from_fits = target.panel is None
    pilot = Simulator(base.scaled(pilot_n).with_overrides({"run": {"periods": target.periods}}),
                      panel_fraction=1.0 if from_fits else 0.0, track_customers=False)
    res = pilot.run()
    if from_fits:
        # A fit's data summary counts the customers with at least one answer (the rows it could use),
        # not every customer of the panel: size the simulation on the same count.
        seen = res.panel.filter(pl.col("trust").is_not_null())["customer_id"].n_unique()
    else:
        seen = pilot.next_id
    ever_ratio = max(seen, 1) / pilot_n
    customers = max(math.ceil(multiplier * target.n_customers / ever_ratio), 500)
    return PanelSimulator(base.scaled(customers), target.periods, customers, target.segments, seed)


# -- the solve -------------------------------------------------------------------------------


@dataclass
class Calibration:
    """Everything `tenure calibrate` writes and prints."""

    market: Scenario
    params: list[Param]
    estimate: np.ndarray
    base: np.ndarray
    draws: np.ndarray  # (markets, params)
    target: Target
    simulated: np.ndarray  # statistics of the calibrated market
    z: np.ndarray
    misses: list[str]
    iterations: int
    converged: bool
    simulation_ratio: float
    runs: int
    history: list[float]
    panel_customers0: int  # initial customers of a market whose panel has the target's size
    check: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-able record of the method, the parameters, the fit and the check."""
        q05, q95 = np.quantile(self.draws, [0.05, 0.95], axis=0)
        return {
            "method": "indirect inference (Gauss-Newton, Broyden-updated finite-difference Jacobian, common "
                      "random numbers, shrunk-covariance weights); uncertainty by a Poisson bootstrap of "
                      "customers mapped through the local linear inverse (central-difference Jacobian at the "
                      "solution)",
            "source": self.target.source,
            "panel_customers": self.target.n_customers,
            "panel_periods": self.target.periods,
            "simulation_ratio": self.simulation_ratio,
            "iterations": self.iterations,
            "converged": self.converged,
            "simulation_runs": self.runs,
            "objective_history": self.history,
            "markets": int(self.draws.shape[0]),
            "parameters": [{"key": p.key, "why": p.why, "base": float(b), "estimate": float(e),
                            "sd": float(s), "q05": float(lo), "q95": float(hi)}
                           for p, b, e, s, lo, hi in zip(self.params, self.base, self.estimate,
                                                         self.draws.std(axis=0, ddof=1), q05, q95, strict=True)],
            "statistics": [{"name": n, "observed": float(o), "calibrated": float(s), "se": float(se), "z": float(z)}
                           for n, o, s, se, z in zip(self.target.names, self.target.values, self.simulated,
                                                     np.sqrt(self.target.variance), self.z, strict=True)],
            "misses": self.misses,
            "check": self.check,
        }


def choose_params(groups: Sequence[str]) -> list[Param]:
    return [p for p in PARAMS if p.needs in groups]


def calibrate(
    target: Target,
    base: Scenario,
    multiplier: float = 1.0,
    max_iterations: int = 8,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    tolerance: float = OBJECTIVE_TOL,
    workers: int | None = None,
) -> Calibration:
    """Solve for the engine parameters that reproduce the target's statistics, then map the draws.

    The iterations stop at ``max_iterations``, when every step is below 5 % of its parameter's step,
    or when :data:`STALL_ITERATIONS` iterations in a row lowered the best objective so far by less than
    ``tolerance`` (:data:`OBJECTIVE_TOL`; a rejected step lowers it by nothing; 0 turns this off; the
    first step is always taken and counts only if it improved on the start). ``Calibration.iterations`` records
    the iterations used. The Jacobians' panels run ``workers`` at a time (:func:`tenure.engine.pool.map_runs`);
    the result does not depend on it.

    Raises :class:`InputError` naming the statistics that miss when the calibrated
    market cannot reproduce the target (|z| > MISS_Z for a targeted statistic).
    """
    say = progress or (lambda _m: None)
    params = choose_params(target.groups)
    seed = int(base["run"]["seed"]) if seed is None else int(seed)
    sim = simulator_for(target, base, multiplier, seed)
    ratio = sim.customers / max(target.n_customers, 1)
    steps = np.array([p.step for p in params])
    lo, hi = np.array([p.lo for p in params]), np.array([p.hi for p in params])
    w = target.weight
    theta0 = base_values(base, params)

    def stats_at(theta: np.ndarray) -> np.ndarray:
        s = sim.statistics(params, theta, target.groups)
        return np.array([s[n] for n in target.names])

    def stats_many(thetas: Sequence[np.ndarray]) -> list[np.ndarray]:  # independent panels, side by side
        return map_runs(stats_at, thetas, workers)

    def objective(r: np.ndarray) -> float:
        return float(r @ w @ r)

    def gn_step(jac: np.ndarray, resid: np.ndarray) -> np.ndarray:
        jw = jac.T @ w
        h = jw @ jac
        step = np.linalg.solve(h + 1e-6 * np.diag(np.diag(h)) + 1e-12 * np.eye(len(params)), jw @ resid)
        return np.clip(step, -4 * steps, 4 * steps)

    say(f"simulating panels of {sim.customers:,} initial customers × {target.periods} periods")
    a0 = stats_at(theta0)
    jac = np.empty((len(target.names), len(params)))
    moved = []
    for j in range(len(params)):
        th = theta0.copy()
        th[j] = th[j] + steps[j] if th[j] + steps[j] <= hi[j] else th[j] - steps[j]
        moved.append(th)
    say(f"Jacobian: {len(params)} panels, one per parameter")
    for j, (th, a_j) in enumerate(zip(moved, stats_many(moved), strict=True)):
        jac[:, j] = (a_j - a0) / (th[j] - theta0[j])
    theta, a = theta0, a0
    resid = target.values - a
    history = [objective(resid)]
    converged = False
    it = 0
    stalled = 0  # iterations in a row that gained less than the tolerance
    for it in range(1, max_iterations + 1):
        new = np.clip(theta + gn_step(jac, resid), lo, hi)
        a_new = stats_at(new)
        r_new = target.values - a_new
        q_new = objective(r_new)
        dtheta, da = new - theta, a_new - a
        if dtheta @ dtheta > 0:  # Broyden's rank-one update keeps J close to the local slope
            scaled = dtheta / steps ** 2
            jac = jac + np.outer(da - jac @ dtheta, scaled) / (dtheta @ scaled)
        say(f"iteration {it}: objective {history[-1]:.1f} → {q_new:.1f}")
        gain = max(history[-1] - q_new, 0.0)  # a rejected step gains nothing
        first_worse = it == 1 and q_new > history[-1]
        if q_new <= history[-1] or it == 1:
            theta, a, resid = new, a_new, r_new
            history.append(q_new)
        else:
            history.append(history[-1])
        stalled = stalled + 1 if gain < tolerance and not first_worse else 0
        if np.all(np.abs(dtheta) < 0.05 * steps) or (tolerance > 0 and stalled >= STALL_ITERATIONS):
            converged = True
            break
    # The Jacobian at the solution by central differences: Broyden's J is only an approximation
    # along the path, and forward differences of a few steps are dominated by the simulation's
    # discreteness in the weakly identified directions. Then one more Gauss-Newton step with it.
    h_fd = FINAL_STEP * steps
    jac = np.empty((len(target.names), len(params)))
    ups, downs = [], []
    for j in range(len(params)):
        up, down = theta.copy(), theta.copy()
        up[j], down[j] = min(theta[j] + h_fd[j], hi[j]), max(theta[j] - h_fd[j], lo[j])
        ups.append(up)
        downs.append(down)
    say(f"Jacobian at the solution: {2 * len(params)} panels, two per parameter")
    a_fd = stats_many(ups + downs)
    for j in range(len(params)):
        jac[:, j] = (a_fd[j] - a_fd[len(params) + j]) / (ups[j][j] - downs[j][j])
    new = np.clip(theta + gn_step(jac, resid), lo, hi)
    a_new = stats_at(new)
    q_new = objective(target.values - a_new)
    say(f"final step: objective {history[-1]:.1f} → {q_new:.1f}")
    if q_new <= history[-1]:
        theta, a, resid = new, a_new, target.values - a_new
        history.append(q_new)
    se = np.sqrt(target.variance * (1.0 + 1.0 / ratio))
    z = (target.values - a) / se
    misses = [f"{n} (panel {o:.4g}, calibrated market {s:.4g}, z = {zz:+.1f})"
              for n, o, s, zz in zip(target.names, target.values, a, z, strict=True) if abs(zz) > MISS_Z]
    if misses:
        raise InputError(f"{target.source}: the engine cannot reproduce this panel; statistics that miss: "
                         + "; ".join(misses) + " (is --scenario the market the panel comes from, with its spend "
                         "per customer? `tenure scenario scale` makes a smaller copy of a market)")
    jw = jac.T @ w
    gmap = np.linalg.solve(jw @ jac + 1e-12 * np.eye(len(params)), jw)
    dev = target.replicates - target.values
    draws = theta + math.sqrt(1.0 + 1.0 / ratio) * dev @ gmap.T
    draws = np.clip(draws, lo, hi)
    market = base.with_overrides(overrides_for(params, theta), "calibrated market")
    return Calibration(market, params, theta, theta0, draws, target, a, z, misses, it, converged, ratio,
                       sim.runs, history, max(round(sim.customers / multiplier), 500))


# -- posterior predictive check ------------------------------------------------------------------


def check_statistics(pa: PanelArrays) -> dict[str, float]:
    """Statistics of the check: churn and cross-selling by period and by score, answer shares, NPS."""
    out: dict[str, float] = {}
    per = np.bincount(pa.period, minlength=pa.periods).astype(float)
    churn = np.bincount(pa.period, pa.churned, minlength=pa.periods)
    cross = np.bincount(pa.period, pa.cross, minlength=pa.periods)
    for t in range(pa.periods):
        if per[t] > 0:
            out[f"churn_rate[period {t}]"] = churn[t] / per[t]
            out[f"cross_sell_rate[period {t}]"] = cross[t] / per[t]
    for c in ("trust", "enthusiasm"):
        churn_level = getattr(pa.hazard, c).astype(np.int64)
        at_risk = np.bincount(churn_level, pa.hazard.at_risk, minlength=6)
        churns = np.bincount(churn_level, pa.hazard.events, minlength=6)
        xsell_level = getattr(pa.counts, c).astype(np.int64)
        exposure = np.bincount(xsell_level, pa.counts.exposure, minlength=6)
        added = np.bincount(xsell_level, pa.counts.events, minlength=6)
        for v in range(1, 6):
            if at_risk[v] >= 50:
                out[f"churn_rate[{c} {v}]"] = float(churns[v] / at_risk[v])
                out[f"cross_sell_rate[{c} {v}]"] = float(added[v] / exposure[v])
    for c in SCORE_COLUMNS:
        a = pa.answers[c]
        a = a[a >= 0]
        if a.size:
            share = np.bincount(a, minlength=6)[1:6] / a.size
            for v in range(5):
                out[f"share answering {v + 1}[{c}]"] = float(share[v])
    if pa.has_nps:
        a = pa.answers["nps"]
        a = a[a >= 0]
        share = np.bincount(a, minlength=11)[:11] / a.size
        for v in range(11):
            out[f"share answering {v}[nps]"] = float(share[v])
        out["nps"] = float((a >= PROMOTER_MIN).mean() - (a <= DETRACTOR_MAX).mean())
    return out


def predictive_check(cal: Calibration, markets: int = 20, progress: Callable[[str], None] | None = None,
                     workers: int | None = None) -> dict[str, Any]:
    """Simulate a panel of the observed size per calibrated market (fresh seeds) and compare.

    Each statistic gets the predictive mean, 5 % and 95 % quantiles and the observed
    value's z against the predictive spread; |z| > CHECK_Z is a miss.
    """
    say = progress or (lambda _m: None)
    pa = cal.target.panel
    if pa is None:
        return {"done": False, "reason": "calibrated from fit folders: no panel to check against"}
    obs = check_statistics(pa)
    n0 = cal.panel_customers0
    sim = PanelSimulator(cal.market.scaled(n0), cal.target.periods, n0, cal.target.segments,
                         int(cal.market["run"]["seed"]))
    k = min(markets, cal.draws.shape[0])
    say(f"check: {k} markets")
    rows = map_runs(lambda i: check_statistics(sim.panel(cal.params, cal.draws[i], seed=sim.seed + 1000 + i)),
                    range(k), workers)
    stats = []
    for name, o in obs.items():
        vals = np.array([r.get(name, np.nan) for r in rows])
        vals = vals[np.isfinite(vals)]
        if vals.size < 3:
            continue
        mean, sd = float(vals.mean()), float(vals.std(ddof=1))
        q05, q95 = np.quantile(vals, [0.05, 0.95])
        z = (o - mean) / sd if sd > 0 else (0.0 if o == mean else math.inf)
        stats.append({"name": name, "observed": o, "mean": mean, "q05": float(q05), "q95": float(q95), "z": z})
    misses = [s["name"] for s in stats if abs(s["z"]) > CHECK_Z]
    inside = float(np.mean([s["q05"] <= s["observed"] <= s["q95"] for s in stats])) if stats else math.nan
    return {"done": True, "markets": k, "statistics": stats, "misses": misses, "share_inside_90": inside,
            "fits": not misses}


# -- the market file and its draws ---------------------------------------------------------------


def draws_path(market: Path) -> Path:
    """The draws file written beside a market file: ``market.toml`` → ``market.draws.csv``."""
    return market.with_name(market.stem + ".draws.csv")


def draws_table(cal: Calibration) -> pl.DataFrame:
    return pl.DataFrame({"market": np.arange(cal.draws.shape[0]),
                         **{p.key: cal.draws[:, j] for j, p in enumerate(cal.params)}})


def load_markets(market: Path) -> tuple[Scenario, list[Scenario], pl.DataFrame]:
    """The calibrated market and one scenario per draw; exit-2 errors for missing or broken draws.

    A set written by `tenure calibrate` carries ``MARKET.manifest.json``: an incomplete or edited set is
    refused (:func:`tenure.io.verify_manifest`); a market file and draws made by hand have none.
    """
    from tenure.io import read_table, verify_manifest
    from tenure.scenario import load_scenario

    verify_manifest(market, required=False)  # a set written by `tenure calibrate`: whole and unchanged
    sc = load_scenario(str(market))
    path = draws_path(Path(market))
    if not path.is_file():
        raise InputError(f"{market}: its calibrated draws {path.name} are missing (tenure calibrate writes them "
                         "beside the market file)")
    df = read_table(path)
    if "market" not in df.columns:
        raise InputError(f"{path}: missing column 'market'")
    keys = [c for c in df.columns if c != "market"]
    if not keys:
        raise InputError(f"{path}: no parameter columns")
    for c in keys:
        if "." not in c or field_help(c) is None:
            raise InputError(f"{path}: column {c!r} is not a scenario key such as 'churn.trust'")
        if not df[c].dtype.is_numeric():
            raise InputError(f"{path}: column {c!r}: expected numbers")
        vals = df[c].cast(pl.Float64)
        bad = ~np.isfinite(vals.fill_null(float("nan")).to_numpy())
        if bad.any():
            raise InputError(f"{path}: column {c!r}: missing or non-finite value at row {int(np.argmax(bad)) + 1}")
    markets = []
    for row in df.iter_rows(named=True):
        over: dict[str, dict[str, float]] = {}
        for c in keys:
            section, key = c.split(".")
            over.setdefault(section, {})[key] = float(row[c])
        markets.append(sc.with_overrides(over, f"{path} market {row['market']}"))
    return sc, markets, df
