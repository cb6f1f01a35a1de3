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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tenure.engine.simulator import LEVERS, Simulator
from tenure.models.panel import SCORE_COLUMNS, TENURE_BANDS, prepare_scores

from tenure.errors import InputError
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
#: A check statistic further than this many predictive standard deviations misses.
CHECK_Z = 3.5
CENTRE = 3.0


# -- the panel as arrays ---------------------------------------------------------------


@dataclass
class PanelArrays:
    """A panel reduced to the integer arrays the statistics need (one entry per row).

    ``cust`` numbers customers 0..n-1 so a bootstrap weight per customer becomes a
    weight per row by indexing. Scores are carried forward (models/panel.py); rows
    before a customer's first answer have ``hz_cell``/``xs_cell`` −1.
    """

    n_customers: int
    periods: int
    segments: tuple[str, ...]
    cust: np.ndarray
    period: np.ndarray
    churned: np.ndarray
    cross: np.ndarray
    hz_cell: np.ndarray
    hz_keys: np.ndarray  # (cells, 5): segment, band, trust, enthusiasm, satisfaction
    xs_cell: np.ndarray
    xs_keys: np.ndarray  # (cells, 4): segment, trust, enthusiasm, products
    answers: dict[str, np.ndarray]  # raw answers (−1 when not surveyed), SCORE_COLUMNS and "nps"
    carried: dict[str, np.ndarray]  # carried scores (−1 before the first answer), trust and enthusiasm
    has_nps: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def _with_tenure(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``tenure`` and ``_cust`` as read_panel does, for a sorted, trusted engine panel."""
    new = pl.col("customer_id") != pl.col("customer_id").shift(1)
    return (df.with_columns(_new=new.fill_null(True))
            .with_columns(tenure=(pl.col("period") - pl.when(pl.col("_new")).then(pl.col("period"))
                                  .forward_fill()).cast(pl.Int32),
                          _cust=pl.col("_new").cum_sum().cast(pl.Int32))
            .drop("_new"))


def panel_arrays(df: pl.DataFrame, segments: Sequence[str] | None = None) -> PanelArrays:
    """Reduce a validated panel (read_panel) or an engine panel to :class:`PanelArrays`.

    ``segments``: the segment names to keep apart; ``None`` pools every customer into
    one segment (used when the panel's segments are not the scenario's).
    """
    if "tenure" not in df.columns or "_cust" not in df.columns:
        df = _with_tenure(df.sort(["customer_id", "period"]))
    seg_names = tuple(segments) if segments else ("all",)
    if segments:
        seg = df["segment"].replace_strict(list(seg_names), list(range(len(seg_names))), default=0,
                                           return_dtype=pl.Int64)
    else:
        seg = pl.repeat(0, df.height, dtype=pl.Int64, eager=True)
    band = np.searchsorted(np.asarray(TENURE_BANDS), df["tenure"].to_numpy(), side="right") - 1
    filled, _ = prepare_scores(df.select(["_cust", *SCORE_COLUMNS]).with_row_index("_i"), SCORE_COLUMNS, "carry")
    rows = filled["_i"].to_numpy().astype(np.int64)
    n = df.height
    seg_np = seg.to_numpy()
    products = np.minimum(df["products"].to_numpy().astype(np.int64), 255)
    carried = {}
    for c in SCORE_COLUMNS:
        full = np.full(n, -1, dtype=np.int64)
        full[rows] = filled[c].to_numpy().astype(np.int64)
        carried[c] = full
    ok = carried["trust"] >= 0
    hz_key = np.stack([seg_np, band, carried["trust"], carried["enthusiasm"], carried["satisfaction"]], axis=1)
    hz_cell, hz_keys = _cells(hz_key, ok)
    xs_key = np.stack([seg_np, carried["trust"], carried["enthusiasm"], products], axis=1)
    xs_cell, xs_keys = _cells(xs_key, ok)
    answers = {c: df[c].fill_null(-1).to_numpy().astype(np.int64) for c in SCORE_COLUMNS}
    has_nps = "nps" in df.columns and df["nps"].null_count() < df.height
    if has_nps:
        answers["nps"] = df["nps"].fill_null(-1).to_numpy().astype(np.int64)
    period = df["period"].to_numpy().astype(np.int64)
    return PanelArrays(
        n_customers=int(df["_cust"].max()), periods=int(period.max() - period.min() + 1), segments=seg_names,
        cust=df["_cust"].to_numpy().astype(np.int64) - 1, period=period - period.min(),
        churned=df["churned"].to_numpy().astype(float), cross=df["cross_sold"].to_numpy().astype(float),
        hz_cell=hz_cell, hz_keys=hz_keys, xs_cell=xs_cell, xs_keys=xs_keys, answers=answers,
        carried={c: carried[c] for c in ("trust", "enthusiasm")}, has_nps=has_nps,
    )


def _cells(keys: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell number of every row (−1 where ``ok`` is false) and the distinct keys.

    Keys are small non-negative integers, so a mixed-radix code and a bincount find the
    cells in O(rows), without sorting.
    """
    cell = np.full(keys.shape[0], -1, dtype=np.int64)
    if not ok.any():
        return cell, np.zeros((0, keys.shape[1]), dtype=np.int64)
    k = keys[ok]
    radix = k.max(axis=0) + 1
    code = np.zeros(k.shape[0], dtype=np.int64)
    for j in range(k.shape[1]):
        code = code * radix[j] + k[:, j]
    present = np.flatnonzero(np.bincount(code, minlength=int(np.prod(radix))))
    lookup = np.full(int(np.prod(radix)), -1, dtype=np.int64)
    lookup[present] = np.arange(present.size)
    cell[ok] = lookup[code]
    uniq = np.empty((present.size, k.shape[1]), dtype=np.int64)
    rest = present.copy()
    for j in range(k.shape[1] - 1, -1, -1):
        uniq[:, j] = rest % radix[j]
        rest //= radix[j]
    return cell, uniq


# -- auxiliary estimators ----------------------------------------------------------------


def _newton(x: np.ndarray, fit: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
            iters: int = 50) -> np.ndarray:
    """Maximise a concave log-likelihood by Newton's method; ``fit(b)`` gives (loglik, grad, -hess)."""
    b = np.zeros(x.shape[1])
    ll, g, h = fit(b)
    for _ in range(iters):
        step = np.linalg.solve(h + 1e-8 * np.eye(h.shape[0]), g)
        t = 1.0
        while t > 1e-4:
            ll_new, g_new, h_new = fit(b + t * step)
            if ll_new >= ll - 1e-10:
                break
            t *= 0.5
        b = b + t * step
        converged = abs(ll_new - ll) < 1e-10 * (1.0 + abs(ll))
        ll, g, h = ll_new, g_new, h_new
        if converged:
            break
    return b


def _seg_design(seg: np.ndarray, n_seg: int) -> np.ndarray:
    return np.eye(n_seg)[seg] if n_seg > 1 else np.ones((seg.size, 1))


def fit_retention(keys: np.ndarray, at_risk: np.ndarray, events: np.ndarray, n_seg: int) -> dict[str, float]:
    """Logistic hazard MLE on cells, the equation of models/retention.py without priors.

    churn_intercept is the mean of the segment intercepts (the pooled model's hyper-mean).
    """
    keep = at_risk > 0
    k, n, e = keys[keep], at_risk[keep], events[keep]
    bands = [b for b in range(1, len(TENURE_BANDS)) if np.any(k[:, 1] == b)]
    cols = [_seg_design(k[:, 0], n_seg)]
    cols += [(k[:, 1] == b).astype(float)[:, None] for b in bands]
    cols += [(k[:, j] - CENTRE)[:, None] for j in (2, 3, 4)]
    x = np.hstack(cols)

    def fit(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        eta = x @ b
        p = 1.0 / (1.0 + np.exp(-eta))
        ll = np.sum(e * eta - n * np.logaddexp(0.0, eta))
        return ll, x.T @ (e - n * p), (x * (n * p * (1 - p))[:, None]).T @ x

    b = _newton(x, fit)
    return {"churn_intercept": float(b[:n_seg].mean()), "churn_trust": float(b[-3]),
            "churn_enthusiasm": float(b[-2]), "churn_satisfaction": float(b[-1]),
            "churn_rate": float(_logit(e.sum() / n.sum()))}


def fit_cross_sell(keys: np.ndarray, exposure: np.ndarray, events: np.ndarray, n_seg: int) -> dict[str, float]:
    """Poisson MLE on cells, the equation of models/cross_sell.py without priors."""
    keep = exposure > 0
    k, n, y = keys[keep], exposure[keep], events[keep]
    ct, ce = k[:, 1] - CENTRE, k[:, 2] - CENTRE
    x = np.hstack([_seg_design(k[:, 0], n_seg), ct[:, None], ce[:, None], (ct * ce)[:, None],
                   (k[:, 3] - 1.0)[:, None]])

    def fit(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        eta = np.clip(x @ b, -50, 50)
        mu = n * np.exp(eta)
        return np.sum(y * eta - mu), x.T @ (y - mu), (x * mu[:, None]).T @ x

    b = _newton(x, fit)
    return {"xsell_intercept": float(b[:n_seg].mean()), "xsell_trust": float(b[n_seg]),
            "xsell_enthusiasm": float(b[n_seg + 1]), "xsell_trust_x_enthusiasm": float(b[n_seg + 2]),
            "cross_sell_rate": float(math.log(max(y.sum(), 0.5) / n.sum()))}


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
    n_seg = len(pa.segments)
    if "retention" in groups:
        ok = pa.hz_cell >= 0
        at_risk = np.bincount(pa.hz_cell[ok], w[ok], minlength=len(pa.hz_keys))
        events = np.bincount(pa.hz_cell[ok], w[ok] * pa.churned[ok], minlength=len(pa.hz_keys))
        out.update(fit_retention(pa.hz_keys, at_risk, events, n_seg))
    if "cross_sell" in groups:
        ok = pa.xs_cell >= 0
        exposure = np.bincount(pa.xs_cell[ok], w[ok], minlength=len(pa.xs_keys))
        events = np.bincount(pa.xs_cell[ok], w[ok] * pa.cross[ok], minlength=len(pa.xs_keys))
        out.update(fit_cross_sell(pa.xs_keys, exposure, events, n_seg))
    if "cross_sell_levels" in groups:
        for c in ("trust", "enthusiasm"):
            s = pa.carried[c]
            exposure = np.bincount(np.maximum(s, 0), w, minlength=6)
            events = np.bincount(np.maximum(s, 0), w * pa.cross, minlength=6)
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
        out["nps"] = float((np.sum(ww * (a[ok] >= 9)) - np.sum(ww * (a[ok] <= 6))) / ww.sum())
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
    pa = panel_arrays(df, segments)
    if (pa.hz_cell >= 0).sum() == 0:
        raise InputError(f"{source}: no rows with survey answers to carry forward: nothing to calibrate on")
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
    import json

    import arviz as az

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
        try:
            idata = az.from_netcdf(str(post_file))
        except Exception as exc:  # netCDF readers raise several types
            raise InputError(f"{post_file}: cannot read: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        model = idata.attrs.get("tenure_model")
        if model not in FIT_MODELS:
            raise InputError(f"{d}: a fit of model {model!r}; calibrate needs a fit of 'retention' or 'cross-sell' "
                             "(or the panel itself)")
        group = FIT_MODELS[model]
        if group in groups:
            raise InputError(f"{d}: a second {model} fit; give one fit folder per model")
        groups.append(group)
        summary = json.loads(idata.attrs.get("tenure_data_summary", "{}"))
        post = idata.posterior
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


def scale_market(sc: Scenario, customers: int) -> Scenario:
    """The same market with ``customers`` initial customers: market size and budgets scale with it.

    Lever effects depend on spend per customer and acquisition on spend per prospect,
    and word of mouth on promoters per market member, so the scaled market behaves the
    same up to sampling noise.
    """
    f = customers / sc["run"]["customers"]
    return sc.with_overrides({
        "run": {"customers": int(customers)},
        "market": {"size": max(round(sc["market"]["size"] * f), int(customers))},
        "acquisition": {"budget": sc["acquisition"]["budget"] * f},
        "retention": {k: sc["retention"][k] * f for k in LEVERS},
    }, "scaled market")


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
    """Simulates panels of the target's shape at candidate parameters, on common random numbers."""

    base: Scenario
    periods: int
    customers: int
    segments: tuple[str, ...] | None
    seed: int
    runs: int = 0

    def panel(self, params: Sequence[Param], theta: np.ndarray, seed: int | None = None) -> PanelArrays:
        sc = self.base.with_overrides({**_merge_over(overrides_for(params, theta),
                                                     {"run": {"periods": self.periods,
                                                              "seed": self.seed if seed is None else seed}})},
                                      "calibration candidate")
        res = Simulator(sc, panel_fraction=1.0, track_customers=False).run()
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
    pilot = Simulator(scale_market(base, pilot_n).with_overrides({"run": {"periods": target.periods}}),
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
    return PanelSimulator(scale_market(base, customers), target.periods, customers, target.segments, seed)


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
) -> Calibration:
    """Solve for the engine parameters that reproduce the target's statistics, then map the draws.

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
    for j in range(len(params)):
        say(f"Jacobian {j + 1}/{len(params)}: {params[j].key}")
        th = theta0.copy()
        th[j] = th[j] + steps[j] if th[j] + steps[j] <= hi[j] else th[j] - steps[j]
        jac[:, j] = (stats_at(th) - a0) / (th[j] - theta0[j])
    theta, a = theta0, a0
    resid = target.values - a
    history = [objective(resid)]
    converged = False
    it = 0
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
        if q_new <= history[-1] or it == 1:
            theta, a, resid = new, a_new, r_new
            history.append(q_new)
        else:
            history.append(history[-1])
        if np.all(np.abs(dtheta) < 0.05 * steps):
            converged = True
            break
    # The Jacobian at the solution by central differences: Broyden's J is only an approximation
    # along the path, and forward differences of a few steps are dominated by the simulation's
    # discreteness in the weakly identified directions. Then one more Gauss-Newton step with it.
    h_fd = FINAL_STEP * steps
    jac = np.empty((len(target.names), len(params)))
    for j in range(len(params)):
        say(f"Jacobian at the solution {j + 1}/{len(params)}: {params[j].key}")
        up, down = theta.copy(), theta.copy()
        up[j], down[j] = min(theta[j] + h_fd[j], hi[j]), max(theta[j] - h_fd[j], lo[j])
        jac[:, j] = (stats_at(up) - stats_at(down)) / (up[j] - down[j])
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
        s = pa.carried[c]
        for v in range(1, 6):
            sel = s == v
            if sel.sum() >= 50:
                out[f"churn_rate[{c} {v}]"] = float(pa.churned[sel].mean())
                out[f"cross_sell_rate[{c} {v}]"] = float(pa.cross[sel].mean())
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
        out["nps"] = float((a >= 9).mean() - (a <= 6).mean())
    return out


def predictive_check(cal: Calibration, markets: int = 20, progress: Callable[[str], None] | None = None
                     ) -> dict[str, Any]:
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
    sim = PanelSimulator(scale_market(cal.market, n0), cal.target.periods, n0, cal.target.segments,
                         int(cal.market["run"]["seed"]))
    k = min(markets, cal.draws.shape[0])
    rows = []
    for i in range(k):
        say(f"check {i + 1}/{k}")
        rows.append(check_statistics(sim.panel(cal.params, cal.draws[i], seed=sim.seed + 1000 + i)))
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
    """The calibrated market and one scenario per draw; exit-2 errors for missing or broken draws."""
    from tenure.io import read_table
    from tenure.scenario import load_scenario

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
