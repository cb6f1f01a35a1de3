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
any number of shards and threads, and wherever the shards live: the loop is
written once, here, and a backend (:mod:`tenure.engine.shards`: this process;
:mod:`tenure.engine.cluster`: Dask workers) holds the shards. The loop records
what each stage handed to the shards, so a lost shard can be rebuilt by replay,
and checkpoints its state every ``checkpoint_every`` periods (shard files, then
``driver.pkl``, the previous checkpoint deleted only after the new one is whole)
for :meth:`Simulator.resume`.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tenure.engine import kernels as K
from tenure.engine.rng import normal_table, seed_key
from tenure.engine.shards import (
    CHECKPOINT_FORMAT,
    Addition,
    LocalShards,
    ShardBackend,
    ShardSetup,
    StageInputs,
)
from tenure.engine.tables import CHANNELS, STAGES, combine_cohorts

from tenure.curves import response_rate, saturating, sbg_survival
from tenure.errors import InputError
from tenure.io import check_files, file_entries, write_atomic
from tenure.metrics import (
    DETRACTOR_MAX,
    PROMOTER_MIN,
    TYPOLOGY_LOYAL_MIN,
    TYPOLOGY_SATISFIED_MIN,
    nps_wald_interval,
    trim_index,
)
from tenure.scenario import Scenario

__all__ = ["CHANNELS", "LEVERS", "STAGES", "DriverState", "LeverEffects", "SimulationResult", "Simulator"]
DRIVER_FILE = "driver.pkl"
LEVERS = ("service", "loyalty", "engagement", "alarm", "employee")
_DRIVER_PURPOSE_ACQUISITION = 1


def _panel_of(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The shards' panel parts as one table sorted by (customer id, period); one part is sorted already."""
    return parts[0] if len(parts) == 1 else pl.concat(parts).sort(["customer_id", "period"])


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
    g[K.G_PROMOTER_MIN] = PROMOTER_MIN
    g[K.G_DETRACTOR_MAX] = DETRACTOR_MAX
    g[K.G_TYPOLOGY_SATISFIED] = TYPOLOGY_SATISFIED_MIN
    g[K.G_TYPOLOGY_LOYAL] = TYPOLOGY_LOYAL_MIN
    return g


def incident_multiplier(sc: Scenario, period: int) -> float:
    """The product of the incident multipliers of the shocks active in ``period`` (1.0 without one)."""
    mult = 1.0
    for shock in sc["shocks"]:
        if shock["start"] <= period <= shock["end"]:
            mult *= shock["incident_multiplier"]
    return mult


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


@dataclass
class DriverState:
    """Everything the period loop accumulates; saved in ``driver.pkl`` at each checkpoint.

    ``stage``: stages completed (``periods + 1`` once the last acquisitions are added);
    ``history[t]``: what every shard received in stage ``t`` (new-id slices and the period
    vector), enough to replay any shard; ``pending``: the slices drawn for the next stage.
    """

    active: int
    stage: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    cum_disc: float = 0.0
    customer_periods: int = 0
    elapsed: float = 0.0
    history: list[StageInputs] = field(default_factory=list)
    pending: list[list[Addition]] = field(default_factory=list)
    checkpoint_stage: int | None = None
    checkpoint_files: list[str] = field(default_factory=list)


class Simulator:
    """Run a scenario: a customer population month by month, its shards wherever ``backend`` keeps them.

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
    backend
        Where the shards live: :class:`~tenure.engine.shards.LocalShards` (the default: this
        process) or :class:`~tenure.engine.cluster.DaskShards` (Dask workers). Results do not
        depend on it.
    checkpoint_every
        Checkpoint every this many periods (default 6 when ``checkpoint_dir`` is given).
    checkpoint_dir
        Folder for the checkpoints; on a cluster, one that every worker can reach.
        :meth:`resume` continues an interrupted run from it.

    Examples
    --------
    >>> from tenure.scenario import load_scenario
    >>> result = Simulator(load_scenario("default", {"run": {"customers": 2_000, "periods": 3}})).run()
    >>> result.periods.height
    3
    """

    def __init__(
        self,
        scenario: Scenario,
        shards: int = 1,
        panel_fraction: float = 0.0,
        track_customers: bool | None = None,
        budgets: dict[str, float] | None = None,
        *,
        backend: ShardBackend | None = None,
        checkpoint_every: int | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._configure(scenario, shards, panel_fraction, track_customers, budgets, checkpoint_every, checkpoint_dir)
        self._attach(backend)
        self._record_customers(self.customers0, np.zeros(4, dtype=np.int64), cohort=0, initial=True)
        self._hand_out()

    def _configure(
        self,
        scenario: Scenario,
        shards: int,
        panel_fraction: float,
        track_customers: bool | None,
        budgets: dict[str, float] | None,
        checkpoint_every: int | None,
        checkpoint_dir: str | os.PathLike[str] | None,
    ) -> None:
        if not 0.0 <= panel_fraction <= 1.0:
            raise ValueError(f"panel_fraction must be in [0, 1], got {panel_fraction}")
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise InputError(f"--checkpoint-every: must be at least 1, got {checkpoint_every}")
        if checkpoint_every is not None and checkpoint_dir is None:
            raise InputError("--checkpoint-every: needs a folder, --checkpoint-dir DIR")
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
        self._override_budgets(budgets)
        self.n_shards = shards
        self.next_id = 0
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = (checkpoint_every or 6) if checkpoint_dir is not None else None
        self.state = DriverState(active=self.customers0, pending=self._no_additions())
        self._handed: list[list[Addition]] = self._no_additions()

    def _override_budgets(self, budgets: dict[str, float] | None) -> None:
        if budgets:
            unknown = set(budgets) - set(self.budgets)
            if unknown:
                raise ValueError(f"unknown budget keys: {sorted(unknown)}")
            self.budgets.update({k: float(v) for k, v in budgets.items()})

    def _attach(self, backend: ShardBackend | None) -> None:
        self.backend: ShardBackend = LocalShards() if backend is None else backend
        setup = ShardSetup(self.g, self.s, self.age_cdf, self.ntab, self.key, self.track, self.panel_fraction > 0,
                           self.periods, tuple(seg["name"] for seg in self.sc["segments"]))
        self.backend.attach(setup, self.n_shards, self._restore_spec)

    def fork(self, budgets: dict[str, float] | None = None, scenario: Scenario | None = None) -> Simulator:
        """A copy of this not-yet-run simulator with other budgets: same seed, same initial base.

        Building the base is the costly part of a short run; an allocation sweep
        builds it once per seed and forks it per allocation. Because every draw is
        keyed by customer id, forks share their random numbers (common random
        numbers), so differences between forks are the budgets' effect, not noise.

        ``scenario``: run the fork under another scenario whose initial base is the same, one that
        differs only in what acts after the customers are born (dynamics, churn, cross-selling,
        survey, market and acquisition settings, levers, shocks): calibration forks one base per
        candidate parameter vector. Its budgets are the new scenario's, then ``budgets``. A
        scenario that would give another base (other segments, run size, horizon or seed) is
        refused with ``ValueError``. The fork equals ``Simulator(scenario, ...)`` bit for bit.

        Shards on Dask workers are not forked: map forks of a local simulator over
        the cluster with :func:`tenure.engine.cluster.run_many` instead.
        """
        if self.state.stage != 0:
            raise RuntimeError("fork() must be called before run()")
        new = copy.copy(self)
        new.state = copy.deepcopy(self.state)
        new._handed = [list(adds) for adds in self._handed]
        new.backend = self.backend.fork(new._restore_spec)
        new.budgets = dict(self.budgets)
        if scenario is not None:
            new._rebase(scenario)
        new._override_budgets(budgets)
        return new

    def _rebase(self, scenario: Scenario) -> None:
        """Switch a fresh fork to ``scenario``, whose initial base must be this one's (see :meth:`fork`)."""
        run = scenario["run"]
        s, age_cdf = segment_matrix(scenario), age_cdfs(scenario)
        same = ((int(run["customers"]), int(run["periods"]), int(run["seed"]))
                == (self.customers0, self.periods, self.seed)
                and np.array_equal(s, self.s) and np.array_equal(age_cdf, self.age_cdf))
        if not same:
            raise ValueError("fork(scenario=...): this scenario gives another initial base (segments, run size, "
                             "horizon or seed differ); build a new Simulator")
        self.sc = scenario
        self.g = global_vector(scenario, self.panel_fraction)
        self.budgets = {"acquisition": scenario["acquisition"]["budget"], **scenario["retention"]}
        setup = ShardSetup(self.g, self.s, self.age_cdf, self.ntab, self.key, self.track, self.panel_fraction > 0,
                           self.periods, tuple(seg["name"] for seg in scenario["segments"]))
        self.backend.attach(setup, self.n_shards, self._restore_spec)

    # -- population -------------------------------------------------------------------
    def _no_additions(self) -> list[list[Addition]]:
        return [[] for _ in range(self.n_shards)]

    def _slices(self, first: int, count: int) -> list[tuple[int, int]]:
        """Contiguous id slices of ``[first, first + count)``, one per shard."""
        cuts = [first + (count * k) // self.n_shards for k in range(self.n_shards + 1)]
        return [(cuts[k], cuts[k + 1] - cuts[k]) for k in range(self.n_shards)]

    def _record_customers(self, count: int, bounds: np.ndarray, cohort: int, initial: bool) -> None:
        """Give the next ``count`` ids to the shards in contiguous slices; they join at the next stage."""
        pending = self.state.pending or self._no_additions()
        for k, (first, n) in enumerate(self._slices(self.next_id, count)):
            if n > 0:
                pending[k].append((first, n, bounds.copy(), cohort, initial))
        self.state.pending = pending
        self.next_id += count

    def _hand_out(self) -> None:
        """Hand the recorded slices to the backend (a local one creates the customers now)."""
        pending = self.state.pending or self._no_additions()
        if any(pending):
            self.backend.add(pending)
            for k, adds in enumerate(pending):
                self._handed[k].extend(adds)
        self.state.pending = self._no_additions()

    # -- one period -------------------------------------------------------------------
    def period_inputs(self, period: int, active: int) -> tuple[np.ndarray, LeverEffects]:
        """The kernel's period vector ``p`` and the lever effects behind it."""
        sc = self.sc
        eff = lever_effects(sc, active, {k: self.budgets[k] for k in LEVERS})
        p = np.zeros(K.N_P)
        quality = sc["experience"]["product_quality"] + sc["experience"]["service_quality"] + eff.quality_gain
        shift = sc["market"]["competitor_pull"] - eff.barrier
        for shock in sc["shocks"]:
            if shock["start"] <= period <= shock["end"]:
                quality += shock["quality"]
                shift += shock["competitor_pull"]
        p[K.P_QUALITY] = quality
        p[K.P_CONTACT] = eff.contact
        p[K.P_COVERAGE] = eff.coverage
        p[K.P_REPAIR] = sc["levers"]["repair_probability"]
        p[K.P_SHIFT] = shift
        p[K.P_INC_MULT] = incident_multiplier(sc, period)
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
        self._record_customers(n_paid + n_org + n_ref, bounds, cohort=period + 1, initial=False)
        return {
            "prospects": prospects,
            "acquired_paid": n_paid,
            "acquired_organic": n_org,
            "acquired_referral": n_ref,
            "paid_rate": a_paid,
            "spend_per_prospect": spend_pp,
        }

    # -- checkpoints -------------------------------------------------------------------
    @classmethod
    def resume(
        cls, directory: str | os.PathLike[str], backend: ShardBackend | None = None,
        checkpoint_every: int | None = None,
    ) -> Simulator:
        """Rebuild an interrupted run from the checkpoint in ``directory``; :meth:`run` then finishes it.

        The scenario, seed, sizes and shard count come from the checkpoint; the backend may differ
        (more, fewer or no workers). Later checkpoints go to the same folder.
        """
        directory = Path(directory)
        path = directory / DRIVER_FILE
        if not path.is_file():
            raise InputError(f"--resume: {directory} holds no tenure checkpoint ({DRIVER_FILE} is missing)")
        try:
            saved = pickle.loads(path.read_bytes())
        except Exception as exc:
            raise InputError(f"--resume: {path} cannot be read: {exc}") from None
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"--resume: {path} is not a tenure checkpoint of format {CHECKPOINT_FORMAT}")
        if "files" not in saved:
            raise InputError(f"--resume: {path} lists no shard files with their checksums (an older tenure wrote "
                             "it); start the run again")
        try:
            check_files(directory, saved["files"], str(path))
        except InputError as exc:
            raise InputError(f"--resume: {exc}") from None
        opts = saved["options"]
        sim = cls.__new__(cls)
        sim._configure(saved["scenario"], opts["shards"], opts["panel_fraction"], opts["track_customers"],
                       opts["budgets"], checkpoint_every or opts["checkpoint_every"], directory)
        sim.state = saved["state"]
        sim.next_id = saved["next_id"]
        sim._attach(backend)
        return sim

    def _restore_spec(self, k: int) -> tuple[str | None, list[tuple[list[Addition], np.ndarray | None]]]:
        """Where shard ``k`` restarts from: its last checkpoint file (or nothing) and the stages to replay."""
        st = self.state
        start = st.checkpoint_stage or 0
        checkpoint = None
        if st.checkpoint_stage is not None:
            assert self.checkpoint_dir is not None
            checkpoint = str((self.checkpoint_dir / st.checkpoint_files[k]).resolve())
        return checkpoint, [(adds[k], p) for adds, p in st.history[start : st.stage]]

    def _write_checkpoint(self) -> float:
        """Every shard writes its file, then the driver its state; the previous checkpoint is deleted last."""
        assert self.checkpoint_dir is not None
        t0 = time.perf_counter()
        st = self.state
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        names = [f"shard-{k:05d}-stage-{st.stage:04d}.npz" for k in range(self.n_shards)]
        directory = self.checkpoint_dir.resolve()
        self.backend.save([str(directory / name) for name in names])
        old = [] if st.checkpoint_stage in (None, st.stage) else st.checkpoint_files
        st.checkpoint_stage, st.checkpoint_files = st.stage, names
        saved = {
            "format": CHECKPOINT_FORMAT,
            "scenario": self.sc,
            "options": {
                "shards": self.n_shards, "panel_fraction": self.panel_fraction, "track_customers": self.track,
                "budgets": dict(self.budgets), "checkpoint_every": self.checkpoint_every,
            },
            "state": st,
            "next_id": self.next_id,
            # driver.pkl, renamed into place last, is the checkpoint's manifest: --resume checks these
            "files": file_entries(directory, names),
        }

        def _write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                pickle.dump(saved, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())

        write_atomic(self.checkpoint_dir / DRIVER_FILE, _write)
        for name in old:
            (self.checkpoint_dir / name).unlink(missing_ok=True)
        return time.perf_counter() - t0

    # -- the run ----------------------------------------------------------------------
    def _stage(self, p: np.ndarray | None) -> list[tuple[np.ndarray | None, float]]:
        """Hand out the new ids, run the stage on every shard, and record it for replays."""
        st = self.state
        self._hand_out()
        st.history.append((self._handed, p))
        self._handed = self._no_additions()
        out = self.backend.step(st.stage, p)
        st.stage += 1
        return out

    def run(self, progress: Callable[[int, int], None] | None = None) -> SimulationResult:
        """Simulate the remaining periods and return the tables; ``progress(done, total)`` after each period."""
        st = self.state
        if self.checkpoint_dir is not None and st.stage == 0 and st.checkpoint_stage is None:
            if (self.checkpoint_dir / DRIVER_FILE).exists():
                raise InputError(
                    f"--checkpoint-dir: {self.checkpoint_dir} already holds a checkpoint; continue it with "
                    "--resume or choose an empty folder"
                )
        if st.stage > self.periods:
            raise RuntimeError("this run is finished; build a new simulator to run again")
        try:
            return self._run(progress)
        finally:
            self.backend.close()

    def _run(self, progress: Callable[[int, int], None] | None) -> SimulationResult:
        st, sc = self.state, self.sc
        d = sc["market"]["monthly_discount_rate"]
        repair_cents = round(sc["levers"]["repair_cost"] * 100)
        budget_cents = {k: round(v * 100) for k, v in self.budgets.items()}
        shard_seconds = np.zeros(self.n_shards)
        shard_customer_periods = np.zeros(self.n_shards, dtype=np.int64)
        checkpoint_seconds = 0.0
        t0 = time.perf_counter()
        for t in range(st.stage, self.periods):
            p, eff = self.period_inputs(t, st.active)
            agg = np.zeros(K.N_A, dtype=np.int64)
            for k, (shard_agg, seconds) in enumerate(self._stage(p)):
                agg += shard_agg
                shard_seconds[k] += seconds
                shard_customer_periods[k] += int(shard_agg[K.A_ACTIVE])
            n_active = int(agg[K.A_ACTIVE])
            st.customer_periods += n_active
            active_end = n_active - int(agg[K.A_CHURNED])
            acq = self.acquire(t, active_end, int(agg[K.A_PROMOTERS]), int(agg[K.A_DETRACTORS]))
            costs = {f"cost_{k}": (budget_cents[k] if n_active else 0) for k in LEVERS}
            costs["cost_acquisition"] = budget_cents["acquisition"] if acq["prospects"] else 0
            costs["cost_recovery"] = int(agg[K.A_REPAIRED]) * repair_cents
            st.rows.append(self._period_row(t, agg, acq, costs, eff, d))
            st.cum_disc += st.rows[-1]["profit"] / (1.0 + d) ** (t + 1)
            st.rows[-1]["cumulative_discounted_profit"] = st.cum_disc
            st.active = active_end + acq["acquired_paid"] + acq["acquired_organic"] + acq["acquired_referral"]
            if self.checkpoint_every and (t + 1) % self.checkpoint_every == 0:
                st.elapsed += time.perf_counter() - t0
                t0 = time.perf_counter()
                checkpoint_seconds += self._write_checkpoint()
            if progress is not None:
                progress(t + 1, self.periods)
        self._stage(None)  # the last period's acquisitions join the population
        st.elapsed += time.perf_counter() - t0
        parts = self.backend.tables()
        meta = {
            "scenario": sc.name,
            "seed": self.seed,
            "customers": self.customers0,
            "periods": self.periods,
            "shards": self.n_shards,
            "customers_ever": self.next_id,
            "customer_periods": st.customer_periods,
            "elapsed_seconds": st.elapsed,
            "customer_periods_per_second": st.customer_periods / st.elapsed if st.elapsed > 0 else float("nan"),
            "state_bytes": sum(part[3] for part in parts),
            "cluster": self.backend.describe(),
            "workers": self.backend.worker_count(),
            "recoveries": self.backend.recoveries,
            "checkpoint_seconds": checkpoint_seconds,
            "shard_step_seconds": shard_seconds.tolist(),
            "shard_customer_periods": shard_customer_periods.tolist(),
        }
        return SimulationResult(
            scenario=sc,
            periods=pl.DataFrame(st.rows),
            cohorts=combine_cohorts([part[0] for part in parts]),
            customers=pl.concat([part[1] for part in parts]).sort("customer_id") if self.track else None,
            panel=_panel_of([part[2] for part in parts]) if self.panel_fraction > 0 else None,
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
