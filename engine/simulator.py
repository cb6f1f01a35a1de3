"""The period loop: lever effects, kernels on every shard, word of mouth and acquisition.

Python orchestrates, Numba computes. Each period the simulator

1. turns the budgets into lever effects (saturating responses, docs/model.md §5);
2. runs :func:`tenure.engine.kernels.step` on every shard and adds up their
   integer aggregates;
3. draws the period's acquisitions from those aggregates (Blattberg–Deighton
   paid response, Bass-type referrals carried by promoters, deterrence by
   detractors) with a generator keyed by (seed, period), and hands the new ids
   to the shards in contiguous slices.

Only integer aggregates cross shard boundaries, so a run is bit-identical for
any number of shards and threads.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from tenure.engine import kernels as K
from tenure.engine.rng import normal_table, seed_key
from tenure.engine.state import Shard

from tenure import metrics
from tenure.curves import response_rate, saturating, sbg_survival
from tenure.metrics import nps_wald_interval, trim_index
from tenure.panel_format import ANSWER_COLUMNS, ENGINE_PANEL_INDEX
from tenure.scenario import Scenario

CHANNELS = ("initial", "paid", "organic", "referral")
STAGES = ("new", "satisfied", "devoted", "partner")
LEVERS = ("service", "loyalty", "engagement", "alarm", "employee")
_DRIVER_PURPOSE_ACQUISITION = 1


def global_vector(sc: Scenario, panel_fraction: float) -> np.ndarray:
    """The kernels' global coefficient vector ``g`` from a scenario."""
    g = np.zeros(K.N_G)
    e, d, c, x, sv, lev = sc["experience"], sc["dynamics"], sc["churn"], sc["cross_sell"], sc["survey"], sc["levers"]
    g[K.G_QUALITY_NOISE] = e["quality_noise"]
    g[K.G_SEVERITY] = e["incident_severity"]
    g[K.G_SAT_RATE] = d["satisfaction_rate"]
    g[K.G_VALUE_RATE] = d["value_rate"]
    g[K.G_TRUST_GAIN] = d["trust_gain"]
    g[K.G_TRUST_LOSS_INC] = d["trust_loss_incident"]
    g[K.G_TRUST_LOSS_DIS] = d["trust_loss_disappointment"]
    g[K.G_ENTH_GAIN] = d["enthusiasm_gain"]
    g[K.G_ENTH_DECAY] = d["enthusiasm_decay"]
    g[K.G_DELIGHT] = d["delight_margin"]
    g[K.G_UP_SAT] = d["stage_up_satisfaction"]
    g[K.G_UP_TRUST0 : K.G_UP_TRUST0 + 3] = d["stage_up_trust"]
    g[K.G_UP_PERIODS] = d["stage_up_periods"]
    g[K.G_DOWN_DIS] = d["stage_down_disappointment"]
    g[K.G_CH_SAT] = c["satisfaction"]
    g[K.G_CH_TRUST] = c["trust"]
    g[K.G_CH_ENTH] = c["enthusiasm"]
    g[K.G_CH_STAGE0 : K.G_CH_STAGE0 + 4] = c["stage"]
    g[K.G_CH_INC] = c["incident"]
    g[K.G_PROTECT] = c["trust_protection"]
    g[K.G_REF_TRUST] = c["reference_trust"]
    g[K.G_REF_ENTH] = c["reference_enthusiasm"]
    g[K.G_X_INT] = x["intercept"]
    g[K.G_X_TRUST] = x["trust"]
    g[K.G_X_ENTH] = x["enthusiasm"]
    g[K.G_X_TE] = x["trust_x_enthusiasm"]
    g[K.G_X_PROD] = x["products"]
    g[K.G_SURVEY_RATE] = sv["rate"]
    g[K.G_ITEM_NOISE] = sv["item_noise"]
    g[K.G_NPS_NOISE] = sv["nps_noise"]
    g[K.G_NPS_INT] = sv["nps_intercept"]
    g[K.G_NPS_SAT] = sv["nps_satisfaction"]
    g[K.G_NPS_TRUST] = sv["nps_trust"]
    g[K.G_NPS_ENTH] = sv["nps_enthusiasm"]
    g[K.G_CATALOGUE] = sc["market"]["catalogue_size"]
    g[K.G_RESTORE] = lev["repair_restore"]
    g[K.G_REF_TRUST_BONUS] = sc["acquisition"]["referral_trust_bonus"]
    g[K.G_REF_ENTH_BONUS] = sc["acquisition"]["referral_enthusiasm_bonus"]
    g[K.G_PANEL_FRACTION] = panel_fraction
    g[K.G_NPS_LATENT_PROMOTER] = sv["nps_latent_promoter"]
    g[K.G_NPS_LATENT_DETRACTOR] = sv["nps_latent_detractor"]
    g[K.G_PROMOTER_MIN] = metrics.PROMOTER_MIN
    g[K.G_DETRACTOR_MAX] = metrics.DETRACTOR_MAX
    g[K.G_TYPOLOGY_SATISFIED] = metrics.TYPOLOGY_SATISFIED_MIN
    g[K.G_TYPOLOGY_LOYAL] = metrics.TYPOLOGY_LOYAL_MIN
    return g


def segment_matrix(sc: Scenario) -> np.ndarray:
    """The kernels' per-segment parameter matrix ``s`` (one row per segment)."""
    segs = sc["segments"]
    s = np.zeros((len(segs), K.N_S))
    cum = np.cumsum([seg["share"] for seg in segs])
    cum[-1] = 1.0
    for i, seg in enumerate(segs):
        s[i, K.S_EXPECT] = seg["expectation"]
        s[i, K.S_PRICE] = seg["price_burden"]
        s[i, K.S_VALUE_W] = seg["value_weight"]
        s[i, K.S_BARRIER] = seg["switching_barrier"]
        s[i, K.S_MARGIN_CENTS] = round(seg["margin_per_product"] * 100)
        s[i, K.S_INC_P] = seg["incident_probability"]
        s[i, K.S_ALPHA] = seg["churn_alpha"]
        s[i, K.S_BETA] = seg["churn_beta"]
        s[i, K.S_HETERO] = 1.0 if seg["churn_heterogeneity"] == "beta" else 0.0
        s[i, K.S_INIT_TRUST] = seg["initial_trust"]
        s[i, K.S_INIT_ENTH] = seg["initial_enthusiasm"]
        s[i, K.S_INIT_SAT] = seg["initial_satisfaction"]
        s[i, K.S_INIT_TRUST_SD] = seg["initial_trust_sd"]
        s[i, K.S_INIT_ENTH_SD] = seg["initial_enthusiasm_sd"]
        s[i, K.S_INIT_SAT_SD] = seg["initial_satisfaction_sd"]
        s[i, K.S_INIT_PRODUCTS] = seg["initial_products"]
        mix = np.cumsum(seg["initial_stage_mix"])
        mix[-1] = 1.0
        s[i, K.S_MIX_CUM0 : K.S_MIX_CUM0 + 4] = mix
        s[i, K.S_SHARE_CUM] = cum[i]
    return s


def age_cdfs(sc: Scenario) -> np.ndarray:
    """Stationary age distribution of the initial base, per segment (rows: CDF over ages).

    With a constant inflow of new customers, the share of customers of age a is
    proportional to the survival S(a); for the sBG, S(a) = B(α, β+a)/B(α, β)
    (Fader & Hardie 2007). With ``initial_tenure = "new"`` every age is 0.
    """
    run = sc["run"]
    max_age = run["max_initial_tenure"] if run["initial_tenure"] == "steady" else 0
    ages = np.arange(max_age + 1)
    rows = []
    for seg in sc["segments"]:
        a, b = seg["churn_alpha"], seg["churn_beta"]
        if seg["churn_heterogeneity"] == "beta":
            surv = sbg_survival(a, b, ages)
        else:
            surv = (1.0 - a / (a + b)) ** ages
        cdf = np.cumsum(surv) / surv.sum()
        cdf[-1] = 1.0
        rows.append(cdf)
    return np.asarray(rows)


@dataclass
class LeverEffects:
    """What this period's budgets buy, per customer, after diminishing returns."""

    spend_per_customer: dict[str, float]
    quality_gain: float
    contact: float
    coverage: float
    barrier: float
    employee_engagement: float


def lever_effects(sc: Scenario, active: int, budgets: dict[str, float] | None = None) -> LeverEffects:
    """Turn the retention budgets (currency per period) into effects for ``active`` customers."""
    ret = dict(sc["retention"]) if budgets is None else budgets
    lev = sc["levers"]
    n = max(active, 1)
    spc = {k: ret[k] / n for k in LEVERS}
    emp = lev["employee_engagement_base"] + (lev["employee_engagement_max"] - lev["employee_engagement_base"]) * (
        saturating(spc["employee"], lev["employee_k"])
    )
    quality = lev["service_quality_max"] * saturating(spc["service"], lev["service_k"]) + lev["employee_quality"] * emp
    contact = (
        lev["loyalty_enthusiasm_max"] * saturating(spc["loyalty"], lev["loyalty_k"])
        + lev["engagement_enthusiasm_max"] * saturating(spc["engagement"], lev["engagement_k"])
        + lev["employee_enthusiasm"] * emp
    )
    coverage = lev["alarm_coverage_base"] + (lev["alarm_coverage_max"] - lev["alarm_coverage_base"]) * saturating(
        spc["alarm"], lev["alarm_k"]
    )
    barrier = lev["loyalty_barrier_max"] * saturating(spc["loyalty"], lev["loyalty_k"])
    return LeverEffects(spc, quality, contact, coverage, barrier, emp)


def paid_acquisition_rate(sc: Scenario, spend_per_prospect: float) -> float:
    """Blattberg–Deighton (1996) response: a(A) = c · (1 − exp(−k A)) per prospect per period."""
    acq = sc["acquisition"]
    return float(response_rate(spend_per_prospect, acq["ceiling"], acq["k"]))


@dataclass
class SimulationResult:
    """What a run produced: tables (polars) and the run's metadata.

    ``periods``: one row per period (schema in README, "Outputs"); ``cohorts``:
    survival counts by cohort and age; ``customers``: one row per customer ever
    acquired (``None`` unless tracked); ``panel``: the sampled panel (``None``
    unless requested); ``meta``: seed, sizes, timings and throughput.
    """

    scenario: Scenario
    periods: pl.DataFrame
    cohorts: pl.DataFrame
    customers: pl.DataFrame | None
    panel: pl.DataFrame | None
    meta: dict[str, Any] = field(default_factory=dict)


class Simulator:
    """Run a scenario: a customer population month by month.

    Parameters
    ----------
    scenario
        A validated :class:`~tenure.scenario.Scenario`.
    shards
        Number of logical shards (customer-id ranges). Results do not depend on it.
    panel_fraction
        Share of customers (drawn by id) whose every active period is written to
        the panel sample; 0 for none.
    track_customers
        Keep per-customer revenue and purchase history for the customer summary.
        ``None`` tracks when the initial base is at most 2 million customers.
    budgets
        Optional overrides of the acquisition and retention budgets (currency per
        period): keys ``acquisition`` and the retention levers. ``tenure compare``
        uses this to sweep allocations without copying scenarios.
    """

    def __init__(
        self,
        scenario: Scenario,
        shards: int = 1,
        panel_fraction: float = 0.0,
        track_customers: bool | None = None,
        budgets: dict[str, float] | None = None,
    ) -> None:
        if not 0.0 <= panel_fraction <= 1.0:
            raise ValueError(f"panel_fraction must be in [0, 1], got {panel_fraction}")
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self.sc = scenario
        run = scenario["run"]
        self.customers0 = int(run["customers"])
        self.periods = int(run["periods"])
        self.seed = int(run["seed"])
        self.key = seed_key(self.seed)
        self.track = self.customers0 <= 2_000_000 if track_customers is None else bool(track_customers)
        self.panel_fraction = float(panel_fraction)
        self.g = global_vector(scenario, self.panel_fraction)
        self.s = segment_matrix(scenario)
        self.age_cdf = age_cdfs(scenario)
        self.ntab = normal_table()
        self.budgets = {"acquisition": scenario["acquisition"]["budget"], **scenario["retention"]}
        if budgets:
            unknown = set(budgets) - set(self.budgets)
            if unknown:
                raise ValueError(f"unknown budget keys: {sorted(unknown)}")
            self.budgets.update({k: float(v) for k, v in budgets.items()})
        self.n_shards = shards
        self.shards = [Shard(track=self.track, panel=self.panel_fraction > 0) for _ in range(shards)]
        self.next_id = 0
        self._add_customers(self.customers0, np.zeros(4, dtype=np.int64), cohort=0, initial=True)

    def fork(self, budgets: dict[str, float] | None = None) -> Simulator:
        """A copy of this not-yet-run simulator with other budgets: same seed, same initial base.

        Building the base is the costly part of a short run; an allocation sweep
        builds it once per seed and forks it per allocation. Because every draw is
        keyed by customer id, forks share their random numbers (common random
        numbers), so differences between forks are the budgets' effect, not noise.
        """
        if self.next_id != self.customers0:
            raise RuntimeError("fork() must be called before run()")
        new = copy.copy(self)
        new.shards = [copy.deepcopy(sh) for sh in self.shards]
        new.budgets = dict(self.budgets)
        if budgets:
            unknown = set(budgets) - set(self.budgets)
            if unknown:
                raise ValueError(f"unknown budget keys: {sorted(unknown)}")
            new.budgets.update({k: float(v) for k, v in budgets.items()})
        return new

    # -- population -------------------------------------------------------------------
    def _slices(self, first: int, count: int) -> list[tuple[int, int]]:
        """Contiguous id slices of ``[first, first + count)``, one per shard."""
        cuts = [first + (count * k) // self.n_shards for k in range(self.n_shards + 1)]
        return [(cuts[k], cuts[k + 1] - cuts[k]) for k in range(self.n_shards)]

    def _add_customers(self, count: int, bounds: np.ndarray, cohort: int, initial: bool) -> None:
        for shard, (first, n) in zip(self.shards, self._slices(self.next_id, count), strict=True):
            shard.add(first, n, bounds, cohort, initial, self.age_cdf, self.g, self.s, self.key)
        self.next_id += count

    # -- one period -------------------------------------------------------------------
    def period_inputs(self, period: int, active: int) -> tuple[np.ndarray, LeverEffects]:
        """The kernel's period vector ``p`` and the lever effects behind it."""
        sc = self.sc
        eff = lever_effects(sc, active, {k: self.budgets[k] for k in LEVERS})
        p = np.zeros(K.N_P)
        quality = sc["experience"]["product_quality"] + sc["experience"]["service_quality"] + eff.quality_gain
        shift = sc["market"]["competitor_pull"] - eff.barrier
        inc_mult = 1.0
        for shock in sc["shocks"]:
            if shock["start"] <= period <= shock["end"]:
                quality += shock["quality"]
                shift += shock["competitor_pull"]
                inc_mult *= shock["incident_multiplier"]
        p[K.P_QUALITY] = quality
        p[K.P_CONTACT] = eff.contact
        p[K.P_COVERAGE] = eff.coverage
        p[K.P_REPAIR] = sc["levers"]["repair_probability"]
        p[K.P_SHIFT] = shift
        p[K.P_INC_MULT] = inc_mult
        return p, eff

    def acquire(self, period: int, active_end: int, promoters: int, detractors: int) -> dict[str, float]:
        """Draw the period's new customers by channel; they enter next period as a new cohort.

        Per prospect: deterred by detractors with probability 1 − (1 − 1/M)^(w·D);
        otherwise won by paid acquisition with probability a(A), A = budget per
        prospect; the rest join organically (Bass p) or by referral with
        probability 1 − (1 − q/M)^P, P the promoters (the agent-level Bass form).
        """
        acq = self.sc["acquisition"]
        size = self.sc["market"]["size"]
        prospects = max(size - active_end, 0)
        rng = np.random.default_rng([self.seed, period, _DRIVER_PURPOSE_ACQUISITION])
        m = max(size, 1)
        not_deterred = math.exp(acq["detractor_reach"] * detractors * math.log1p(-1.0 / m)) if m > 1 else 1.0
        spend_pp = self.budgets["acquisition"] / prospects if prospects else 0.0
        a_paid = paid_acquisition_rate(self.sc, spend_pp)
        p_ref = -math.expm1(promoters * math.log1p(-min(acq["referral_rate"] / m, 1.0))) if m > 1 else 0.0
        n_paid = int(rng.binomial(prospects, a_paid * not_deterred))
        rest = prospects - n_paid
        n_org = int(rng.binomial(rest, acq["organic_rate"] * not_deterred))
        n_ref = int(rng.binomial(rest - n_org, p_ref * not_deterred))
        first = self.next_id
        bounds = np.array([first, first + n_paid, first + n_paid + n_org, first + n_paid + n_org + n_ref])
        self._add_customers(n_paid + n_org + n_ref, bounds, cohort=period + 1, initial=False)
        return {
            "prospects": prospects,
            "acquired_paid": n_paid,
            "acquired_organic": n_org,
            "acquired_referral": n_ref,
            "paid_rate": a_paid,
            "spend_per_prospect": spend_pp,
        }

    # -- the run ----------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None] | None = None) -> SimulationResult:
        """Simulate every period and return the tables; ``progress(done, total)`` is called per period."""
        rows: list[dict[str, Any]] = []
        panel_chunks: list[tuple[np.ndarray, ...]] = []
        sc = self.sc
        d = sc["market"]["monthly_discount_rate"]
        repair_cents = round(sc["levers"]["repair_cost"] * 100)
        budget_cents = {k: round(v * 100) for k, v in self.budgets.items()}
        active = self.customers0
        cum_disc = 0.0
        customer_periods = 0
        t0 = time.perf_counter()
        for t in range(self.periods):
            p, eff = self.period_inputs(t, active)
            agg = np.zeros(K.N_A, dtype=np.int64)
            for shard in self.shards:
                agg += shard.step(t, self.g, self.s, p, self.ntab, self.key)
                if shard.panel:
                    panel_chunks.append((np.full(1, t), *shard.panel_rows()))
            n_active = int(agg[K.A_ACTIVE])
            customer_periods += n_active
            active_end = n_active - int(agg[K.A_CHURNED])
            acq = self.acquire(t, active_end, int(agg[K.A_PROMOTERS]), int(agg[K.A_DETRACTORS]))
            costs = {f"cost_{k}": (budget_cents[k] if n_active else 0) for k in LEVERS}
            costs["cost_acquisition"] = budget_cents["acquisition"] if acq["prospects"] else 0
            costs["cost_recovery"] = int(agg[K.A_REPAIRED]) * repair_cents
            rows.append(self._period_row(t, agg, acq, costs, eff, d))
            profit = rows[-1]["profit"]
            cum_disc += profit / (1.0 + d) ** (t + 1)
            rows[-1]["cumulative_discounted_profit"] = cum_disc
            active = active_end + acq["acquired_paid"] + acq["acquired_organic"] + acq["acquired_referral"]
            if progress is not None:
                progress(t + 1, self.periods)
        elapsed = time.perf_counter() - t0
        periods = pl.DataFrame(rows)
        meta = {
            "scenario": sc.name,
            "seed": self.seed,
            "customers": self.customers0,
            "periods": self.periods,
            "shards": self.n_shards,
            "customers_ever": self.next_id,
            "customer_periods": customer_periods,
            "elapsed_seconds": elapsed,
            "customer_periods_per_second": customer_periods / elapsed if elapsed > 0 else float("nan"),
            "state_bytes": sum(s.nbytes for s in self.shards),
        }
        return SimulationResult(
            scenario=sc,
            periods=periods,
            cohorts=self.cohort_table(),
            customers=self.customer_table() if self.track else None,
            panel=self._panel_table(panel_chunks) if self.panel_fraction > 0 else None,
            meta=meta,
        )

    def _period_row(
        self,
        t: int,
        agg: np.ndarray,
        acq: dict[str, float],
        costs: dict[str, int],
        eff: LeverEffects,
        discount_rate: float,
    ) -> dict[str, Any]:
        n = int(agg[K.A_ACTIVE])
        nz = max(n, 1)
        resp = int(agg[K.A_SURVEYED])
        prom, detr = int(agg[K.A_SURVEY_PROMOTERS]), int(agg[K.A_SURVEY_DETRACTORS])
        lo, hi = nps_wald_interval(prom, detr, resp)
        trim_means = agg[K.A_TRIM0 : K.A_TRIM0 + 4] / max(resp, 1)
        trim = float(trim_index(trim_means, self.sc["survey"]["trim_weights"])) if resp else float("nan")
        revenue = int(agg[K.A_REVENUE_CENTS])
        total_cost = sum(costs.values())
        profit_cents = revenue - total_cost
        row: dict[str, Any] = {
            "period": t,
            "active": n,
            "acquired_paid": acq["acquired_paid"],
            "acquired_organic": acq["acquired_organic"],
            "acquired_referral": acq["acquired_referral"],
            "churned": int(agg[K.A_CHURNED]),
            "active_end": n - int(agg[K.A_CHURNED]),
            "churn_rate": agg[K.A_CHURNED] / nz,
            "expected_churn_rate": agg[K.A_HAZARD_FX] / K.FX / nz,
            "prospects": acq["prospects"],
            "paid_acquisition_rate": acq["paid_rate"],
            "respondents": resp,
            "nps": (prom - detr) / resp if resp else float("nan"),
            "nps_low": lo,
            "nps_high": hi,
            "trim_index": trim,
            "promoters": int(agg[K.A_PROMOTERS]),
            "detractors": int(agg[K.A_DETRACTORS]),
            "mean_trust": agg[K.A_TRUST_FX] / K.FX / nz,
            "mean_enthusiasm": agg[K.A_ENTH_FX] / K.FX / nz,
            "mean_satisfaction": agg[K.A_SAT_FX] / K.FX / nz,
            "mean_value": agg[K.A_VALUE_FX] / K.FX / nz,
        }
        for j, name in enumerate(STAGES):
            row[f"share_{name}"] = agg[K.A_STAGE0 + j] / nz
        for name, idx in (("apostles", K.A_APOSTLES), ("mercenaries", K.A_MERCENARIES),
                          ("hostages", K.A_HOSTAGES), ("terrorists", K.A_TERRORISTS)):
            row[f"share_{name}"] = agg[idx] / resp if resp else float("nan")
        row.update(
            {
                "products": int(agg[K.A_PRODUCTS]),
                "cross_sales": int(agg[K.A_CROSS_SALES]),
                "incidents": int(agg[K.A_INCIDENTS]),
                "incidents_detected": int(agg[K.A_DETECTED]),
                "incidents_repaired": int(agg[K.A_REPAIRED]),
                "alarm_coverage": eff.coverage,
                "employee_engagement": eff.employee_engagement,
                "revenue": revenue / 100.0,
            }
        )
        for k, v in costs.items():
            row[k] = v / 100.0
        row["cost_total"] = total_cost / 100.0
        row["profit"] = profit_cents / 100.0
        row["discounted_profit"] = profit_cents / 100.0 / (1.0 + discount_rate) ** (t + 1)
        return row

    # -- end-of-run tables ------------------------------------------------------------
    def _gather(self, name: str) -> np.ndarray:
        return np.concatenate([s.view(name) for s in self.shards])

    def cohort_table(self) -> pl.DataFrame:
        """Survival by cohort and age: customers of cohort c still active after a periods.

        Cohort c holds customers whose first period was c (the initial base's
        customers of age 0 are cohort 0). Row (c, a) counts those who survived a
        periods; ages run to the end of the run. Customers acquired in the last
        period form cohort ``periods`` with age 0 only.
        """
        cohort = self._gather("cohort").astype(np.int64)
        tenure = self._gather("tenure").astype(np.int64)
        alive = self._gather("alive").astype(bool)
        start_age = np.where(cohort < 0, -cohort, 0)
        keep = cohort >= 0
        cohort, lived, alive = cohort[keep], (tenure - start_age)[keep], alive[keep]
        out_c, out_a, out_n, out_size = [], [], [], []
        for c in range(self.periods + 1):
            sel = cohort == c
            size = int(sel.sum())
            if size == 0:
                continue
            max_age = self.periods - c
            # a churned customer with `lived` periods survived ages 0..lived-1; an active one 0..max_age
            life = np.where(alive[sel], max_age, lived[sel] - 1)
            counts = np.bincount(np.clip(life, 0, max_age), minlength=max_age + 1)
            surv = size - np.concatenate([[0], np.cumsum(counts)[:-1]])
            out_c += [c] * (max_age + 1)
            out_a += list(range(max_age + 1))
            out_n += surv.tolist()
            out_size += [size] * (max_age + 1)
        return pl.DataFrame(
            {"cohort": out_c, "age": out_a, "survivors": out_n, "cohort_size": out_size},
            schema={"cohort": pl.Int32, "age": pl.Int32, "survivors": pl.Int64, "cohort_size": pl.Int64},
        ).with_columns(survival=pl.col("survivors") / pl.col("cohort_size"))

    def customer_table(self) -> pl.DataFrame:
        """One row per customer ever acquired (requires tracking)."""
        seg_names = [s["name"] for s in self.sc["segments"]]
        last = self._gather("last_purchase").astype(np.int32)
        purchases = self._gather("purchases").astype(np.int32)
        df = pl.DataFrame(
            {
                "customer_id": self._gather("ids"),
                "cohort": self._gather("cohort").astype(np.int32),
                "channel": pl.Series(self._gather("channel").astype(np.uint32)).replace_strict(
                    list(range(4)), list(CHANNELS), return_dtype=pl.String
                ),
                "segment": pl.Series(self._gather("segment").astype(np.uint32)).replace_strict(
                    list(range(len(seg_names))), seg_names, return_dtype=pl.String
                ),
                "tenure": self._gather("tenure").astype(np.int32),
                "churned": self._gather("alive") == 0,
                "stage": pl.Series(self._gather("stage").astype(np.uint32)).replace_strict(
                    list(range(4)), list(STAGES), return_dtype=pl.String
                ),
                "products": self._gather("products").astype(np.int16),
                "revenue": self._gather("revenue") / 100.0,
                "trust": self._gather("trust"),
                "enthusiasm": self._gather("enthusiasm"),
                "satisfaction": self._gather("satisfaction"),
                "purchases": purchases,
                "last_purchase_period": np.where(purchases > 0, last, -1),
            }
        )
        return df.sort("customer_id")

    def _panel_table(self, chunks: list[tuple[np.ndarray, ...]]) -> pl.DataFrame:
        seg_names = [s["name"] for s in self.sc["segments"]]
        if not chunks:
            chunks = [(np.zeros(1, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8),
                       np.zeros((0, K.N_PANEL), np.int64))]
        period = np.concatenate([np.full(c[1].size, c[0][0], dtype=np.int32) for c in chunks])
        ids = np.concatenate([c[1] for c in chunks])
        seg = np.concatenate([c[2] for c in chunks])
        v = np.concatenate([c[3] for c in chunks], axis=0)

        col = ENGINE_PANEL_INDEX
        scores = ANSWER_COLUMNS
        df = pl.DataFrame(
            {
                "customer_id": ids,
                "period": period,
                "churned": v[:, col["churned"]].astype(bool),
                **{name: v[:, col[name]].astype(np.int8) for name in scores},
                "products": v[:, col["products"]].astype(np.int16),
                "cross_sold": v[:, col["cross_sold"]].astype(np.int16),
                "segment": pl.Series(seg.astype(np.uint32)).replace_strict(
                    list(range(len(seg_names))), seg_names, return_dtype=pl.String
                ),
                "revenue": v[:, col["revenue_cents"]] / 100.0,
            }
        ).with_columns(pl.when(pl.col(c) >= 0).then(pl.col(c)).alias(c) for c in scores)
        order = ["customer_id", "period", "churned", "trust", "enthusiasm", "satisfaction", "products",
                 "cross_sold", "segment", "revenue", "nps", *scores[4:]]
        return df.select(order).sort(["customer_id", "period"])
