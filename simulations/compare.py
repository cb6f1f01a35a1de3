"""Acquisition against retention: sweep budget allocations on the simulator and find the best.

A strategist's question: with a total budget per month, how much should go to
winning customers and how much to keeping them, and across which retention
levers? :func:`compare` answers it on the simulator:

1. a coarse grid: acquisition shares of the total (``acquisition_steps`` values
   from 0 to 1) × retention mixes (the scenario's own mix, an equal mix, and one
   mix focused on each lever);
2. every point run with the same seeds, each seed's initial base built once and
   forked per point, so points share their random numbers (common random numbers)
   and differences between points are the allocation's effect, not noise;
3. refinement of the acquisition share around the best coarse point;
4. at the best point, marginal analysis: one more unit of acquisition spend and of
   retention spend (and of each lever), giving marginal costs to acquire and to
   retain one more customer and the return on each lever (Pfeifer 2005: at the
   optimum the marginal costs are equal; the "five times" claim is only meaningful
   as a ratio of marginal costs).

Customer equity of a run is its cumulative discounted profit plus the value of
the customers alive at the end, priced with the Gupta & Lehmann (2003) margin
multiple from the last months' retention and profit per customer.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from tenure.engine.pool import default_workers, map_runs
from tenure.engine.simulator import LEVERS, SimulationResult, Simulator, paid_acquisition_rate
from tenure.simulations import economics as econ

from tenure.checks import SEED_MAX
from tenure.errors import InputError
from tenure.scenario import Scenario

METRICS = (
    "customer_equity",
    "profit",
    "customers_end",
    "nps",
    "churn_rate",
    "acquisition_cost_paid",
    "acquisition_cost_blended",
    "cost_per_retained_customer",
)
TERMINAL_WINDOW = 6  # months over which retention and profit per customer are averaged for the terminal value


@dataclass(frozen=True)
class Allocation:
    """A split of the total budget: a share to acquisition, the rest across retention levers."""

    acquisition_share: float
    mix_name: str
    mix: tuple[float, ...]  # shares of the retention budget, in the order of LEVERS

    def budgets(self, total: float) -> dict[str, float]:
        """Budgets per period (currency) for the engine."""
        retention = total * (1.0 - self.acquisition_share)
        out = {"acquisition": total * self.acquisition_share}
        out.update({lever: retention * w for lever, w in zip(LEVERS, self.mix, strict=True)})
        return out

    @property
    def label(self) -> str:
        return f"acq {100 * self.acquisition_share:.1f} % / {self.mix_name}"


def current_budgets(sc: Scenario) -> dict[str, float]:
    """The scenario's own budgets per period."""
    return {"acquisition": sc["acquisition"]["budget"], **{k: sc["retention"][k] for k in LEVERS}}


def parse_mix(text: str) -> dict[str, float]:
    """Parse ``service=0.4,loyalty=0.3,...`` into lever shares; they must add up to 1."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise InputError(f"--mix: expected lever=share, got {part!r}")
        if key not in LEVERS:
            raise InputError(f"--mix: unknown lever {key!r}; levers: {', '.join(LEVERS)}")
        try:
            share = float(value)
        except ValueError:
            raise InputError(f"--mix: share of {key!r} is not a number: {value!r}") from None
        if not 0.0 <= share <= 1.0:
            raise InputError(f"--mix: share of {key!r} must be in [0, 1], got {share}")
        mix[key] = share
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise InputError(f"--mix: shares must add up to 1, got {total:.6g}")
    return mix


def parse_levers(text: str | None) -> tuple[str, ...]:
    """Parse a comma-separated list of retention levers to sweep (default: all)."""
    if not text:
        return LEVERS
    levers = tuple(p.strip() for p in text.split(",") if p.strip())
    for lever in levers:
        if lever not in LEVERS:
            raise InputError(f"--levers: unknown lever {lever!r}; levers: {', '.join(LEVERS)}")
    if not levers:
        raise InputError("--levers: name at least one lever")
    return levers


def retention_mixes(base_mix: dict[str, float], levers: Sequence[str]) -> list[tuple[str, tuple[float, ...]]]:
    """The retention mixes of the grid: current, equal, and one focused on each swept lever.

    A focused mix gives 60 % of the retention budget to its lever and spreads the
    rest over the other swept levers in the current proportions. Levers not swept
    keep their current share.
    """
    fixed = {k: v for k, v in base_mix.items() if k not in levers}
    free = 1.0 - sum(fixed.values())
    cur = {k: base_mix.get(k, 0.0) for k in levers}
    cur_total = sum(cur.values())

    def vec(shares: dict[str, float]) -> tuple[float, ...]:
        full = {**fixed, **shares}
        return tuple(float(full.get(k, 0.0)) for k in LEVERS)

    mixes = [("current", vec(cur))]
    mixes.append(("equal", vec({k: free / len(levers) for k in levers})))
    if len(levers) > 1:
        for lever in levers:
            others = [k for k in levers if k != lever]
            rest = sum(cur[k] for k in others)
            share = {lever: 0.6 * free}
            for k in others:
                share[k] = 0.4 * free * (cur[k] / rest if rest > 0 else 1.0 / len(others))
            mixes.append((f"focus {lever}", vec(share)))
    if cur_total <= 0:
        mixes = mixes[1:]  # no current retention mix to keep
    seen: dict[tuple[float, ...], str] = {}
    for name, m in mixes:
        seen.setdefault(tuple(round(x, 9) for x in m), name)
    return [(name, m) for m, name in ((tuple(k), v) for k, v in seen.items())]


def run_metrics(result: SimulationResult, discount_rate: float) -> dict[str, float]:
    """The comparison metrics of one run (see the module docstring for customer equity)."""
    p = result.periods
    tail = p.tail(TERMINAL_WINDOW)
    retention = float(1.0 - tail["churn_rate"].mean())
    kept_profit = tail["revenue"] - tail["cost_total"] + tail["cost_acquisition"]
    profit_per_customer = float((kept_profit / tail["active"].cast(pl.Float64).clip(lower_bound=1)).mean())
    customers_end = int(p["active_end"][-1] + p["acquired_paid"][-1] + p["acquired_organic"][-1]
                        + p["acquired_referral"][-1])
    multiple = float(econ.clv_margin_at_period_end(1.0, min(retention, 0.999999), discount_rate))
    terminal = customers_end * profit_per_customer * multiple / (1.0 + discount_rate) ** p.height
    acquired_paid = int(p["acquired_paid"].sum())
    acquired = acquired_paid + int(p["acquired_organic"].sum()) + int(p["acquired_referral"].sum())
    acq_cost = float(p["cost_acquisition"].sum())
    retention_cost = float(sum(p[f"cost_{k}"].sum() for k in LEVERS) + p["cost_recovery"].sum())
    retained = float((p["active"] - p["churned"]).sum())
    return {
        "customer_equity": float(p["cumulative_discounted_profit"][-1]) + terminal,
        "profit": float(p["profit"].sum()),
        "customers_end": float(customers_end),
        "nps": float(tail["nps"].mean()),
        "churn_rate": float(p["churn_rate"].mean()),
        "acquired": float(acquired),
        "acquired_paid": float(acquired_paid),
        "churned": float(p["churned"].sum()),
        "acquisition_spend": acq_cost,
        "retention_spend": retention_cost,
        "acquisition_cost_paid": acq_cost / acquired_paid if acquired_paid else math.nan,
        "acquisition_cost_blended": acq_cost / acquired if acquired else math.nan,
        "cost_per_retained_customer": retention_cost / retained if retained else math.nan,
        "terminal_value": terminal,
        "margin_per_customer": float((p["revenue"] / p["active"].cast(pl.Float64).clip(lower_bound=1)).mean()),
        "retention_rate": retention,
    }


_TASK_BASES: dict[tuple[str, int], Simulator] = {}  # per process: the initial bases of the runs it was given


def _run_task(spec: tuple[Scenario, str, dict[str, float], int]) -> dict[str, float]:
    """One (allocation, seed) run where it is scheduled: a fork of the seed's base, built once per process.

    The base depends only on the scenario and the seed, and every draw is keyed by
    customer id and period, so the metrics equal those of the in-process
    :class:`Evaluator` bit for bit, whichever worker runs the task.
    """
    scenario, digest, budgets, seed = spec
    key = (digest, int(seed))
    if key not in _TASK_BASES:
        if len(_TASK_BASES) >= 8:  # bound a long-lived worker's memory
            _TASK_BASES.pop(next(iter(_TASK_BASES)))
        sc = scenario.with_overrides({"run": {"seed": int(seed)}})
        _TASK_BASES[key] = Simulator(sc, track_customers=False)
    res = _TASK_BASES[key].fork(budgets).run()
    return run_metrics(res, scenario["market"]["monthly_discount_rate"])


@dataclass
class Evaluator:
    """Runs allocations on common random numbers: one initial base per seed, forked per allocation.

    :meth:`prefetch` runs the (budgets, seed) pairs it is given side by side, one thread per run
    (:func:`tenure.engine.pool.map_runs`, ``workers`` at a time; default: the usable cores). With
    ``cluster`` (a ``distributed.Client``), they are independent Dask tasks instead
    (:func:`tenure.engine.cluster.run_many`); each worker builds a seed's base once and forks it.
    Every run is a pure function of its budgets and seed, so results do not depend on either.
    """

    scenario: Scenario
    seeds: Sequence[int]
    total_budget: float
    progress: Callable[[int], None] | None = None
    cluster: Any = None
    workers: int | None = None
    _bases: dict[int, Simulator] = field(default_factory=dict)
    _memo: dict[tuple, dict[str, float]] = field(default_factory=dict)

    def _build(self, seed: int) -> Simulator:
        sc = self.scenario.with_overrides({"run": {"seed": int(seed)}})
        return Simulator(sc, track_customers=False)

    def base(self, seed: int) -> Simulator:
        if seed not in self._bases:
            self._bases[seed] = self._build(seed)
        return self._bases[seed]

    @staticmethod
    def _key(budgets: dict[str, float], seed: int) -> tuple:
        return tuple(round(budgets[k], 6) for k in sorted(budgets)), int(seed)

    def _simulate(self, pair: tuple[dict[str, float], int]) -> dict[str, float]:
        budgets, seed = pair
        res = self._bases[seed].fork(budgets).run()
        return run_metrics(res, self.scenario["market"]["monthly_discount_rate"])

    def run(self, budgets: dict[str, float], seed: int) -> dict[str, float]:
        """Metrics of one run; identical (budgets, seed) pairs are simulated once."""
        key = self._key(budgets, seed)
        if key not in self._memo:
            self.base(seed)
            self._memo[key] = self._simulate((budgets, int(seed)))
        if self.progress is not None:
            self.progress(1)
        return self._memo[key]

    def todo(self, pairs: Sequence[tuple[dict[str, float], int]]) -> dict[tuple, tuple[dict[str, float], int]]:
        """The (budgets, seed) pairs not yet known, once each, by their memo key."""
        todo: dict[tuple, tuple[dict[str, float], int]] = {}
        for budgets, seed in pairs:
            key = self._key(budgets, seed)
            if key not in self._memo:
                todo.setdefault(key, (budgets, int(seed)))
        return todo

    def prefetch(self, pairs: Sequence[tuple[dict[str, float], int]]) -> None:
        """Run the (budgets, seed) pairs not yet known side by side (threads, or the cluster's tasks)."""
        todo = self.todo(pairs)
        if not todo:
            return
        if self.cluster is None:
            _prefetch_here([(self, list(todo.items()))], self.workers)
            return
        from tenure.engine.cluster import run_many

        digest = hashlib.sha256(self.scenario.to_toml().encode()).hexdigest()[:16]
        specs = [(self.scenario, digest, b, s) for b, s in todo.values()]
        for key, metrics in zip(todo, run_many(_run_task, specs, self.cluster), strict=True):
            self._memo[key] = metrics

    def evaluate(self, allocations: Sequence[Allocation], stage: str) -> pl.DataFrame:
        """One row per allocation and seed."""
        self.prefetch([(alloc.budgets(self.total_budget), seed) for alloc in allocations for seed in self.seeds])
        rows = []
        for alloc in allocations:
            budgets = alloc.budgets(self.total_budget)
            for seed in self.seeds:
                m = self.run(budgets, seed)
                rows.append({"stage": stage, "acquisition_share": alloc.acquisition_share, "mix": alloc.mix_name,
                             **{f"budget_{k}": v for k, v in budgets.items()}, "seed": int(seed), **m})
        return pl.DataFrame(rows)


def _prefetch_here(work: Sequence[tuple[Evaluator, list[tuple[tuple, tuple[dict[str, float], int]]]]],
                   workers: int | None) -> None:
    """Several evaluators' runs side by side in this process: first the missing bases, then every run.

    ``work``: per evaluator, its (memo key, (budgets, seed)) pairs to run. One pool for all of them, so
    that the runs of several markets keep every worker busy.
    """
    builds = [(ev, seed) for ev, todo in work for seed in sorted({s for _, (_, s) in todo} - set(ev._bases))]
    for (ev, seed), sim in zip(builds, map_runs(lambda b: b[0]._build(b[1]), builds, workers), strict=True):
        ev._bases[seed] = sim
    runs = [(ev, key, pair) for ev, todo in work for key, pair in todo]
    for (ev, key, _), metrics in zip(runs, map_runs(lambda r: r[0]._simulate(r[2]), runs, workers), strict=True):
        ev._memo[key] = metrics


def summarise(df: pl.DataFrame) -> pl.DataFrame:
    """Mean and 90 % interval over seeds (5th and 95th percentiles) per allocation."""
    aggs = []
    for m in METRICS:
        aggs += [pl.col(m).mean().alias(m), pl.col(m).quantile(0.05, "linear").alias(f"{m}_q05"),
                 pl.col(m).quantile(0.95, "linear").alias(f"{m}_q95")]
    keys = ["acquisition_share", "mix"]
    return df.group_by(keys, maintain_order=True).agg(aggs).sort(keys)


@dataclass
class CompareResult:
    """Everything `tenure compare` reports."""

    runs: pl.DataFrame  # one row per allocation and seed
    points: pl.DataFrame  # one row per allocation: means and 90 % intervals
    best: dict[str, Any]
    current: dict[str, Any]
    marginal: dict[str, Any]
    closed_form: dict[str, Any] | None
    settings: dict[str, Any]


def _mix_of(budgets: dict[str, float]) -> dict[str, float]:
    total = sum(budgets[k] for k in LEVERS)
    return {k: (budgets[k] / total if total > 0 else 1.0 / len(LEVERS)) for k in LEVERS}


def _checked_sweep(cur: dict[str, float], total_budget: float | None, acquisition_steps: int, seeds: int,
                   seed0: int) -> float:
    """The total budget per period to split (the market's own by default), once the sweep's options are checked.

    The seeds run are ``seed0, seed0 + 1, ..., seed0 + seeds - 1``: the last must still be a seed.
    """
    total = sum(cur.values()) if total_budget is None else float(total_budget)
    if not math.isfinite(total) or total < 0:
        raise InputError(f"--budget: must be a positive amount per period, got {total_budget}")
    if total == 0:
        raise InputError("--budget: the total budget is zero: there is nothing to allocate")
    if acquisition_steps < 2:
        raise InputError(f"--acquisition-steps: at least 2, got {acquisition_steps}")
    if seeds < 1:
        raise InputError(f"--seeds: at least 1, got {seeds}")
    if seed0 + seeds - 1 > SEED_MAX:
        raise InputError(f"--seed {seed0} with --seeds {seeds}: the seeds run are --seed, --seed + 1, ..., and the "
                         f"last, {seed0 + seeds - 1}, is beyond the largest seed {SEED_MAX}; lower --seed or --seeds")
    return total


def _current_allocation(cur: dict[str, float], mix: dict[str, float]) -> Allocation:
    """The market's own split: its acquisition share of its budgets, and the current retention mix."""
    spend = sum(cur.values())
    return Allocation(cur["acquisition"] / spend if spend else 0.0, "current", tuple(mix.get(k, 0.0) for k in LEVERS))


@contextlib.contextmanager
def _connected(cluster: Any) -> Iterator[Any]:
    """A Dask client for ``cluster`` (``"local:N"``, an address or a client), or ``None`` to run here."""
    if cluster is None:
        yield None
        return
    from tenure.engine.cluster import connect

    with connect(cluster) as client:
        yield client


class _Counter:
    """Turns the evaluator's one-run steps into ``progress(done, total)`` with the total known up front."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None) -> None:
        self.done, self.total, self.progress = 0, total, progress
        if progress is not None:
            progress(0, total)

    def __call__(self, k: int) -> None:
        self.done += k
        if self.progress is not None:
            self.progress(self.done, self.total)


#: Runs of the marginal analysis per seed: the best allocation against each of 7 bumps (acquisition,
#: the retention mix, each lever), paired.
MARGINAL_RUNS = 2 * (2 + len(LEVERS))
#: Runs of `tenure decide`'s marginal analysis per market and seed: the best split against the acquisition bump
#: and the retention-mix bump, paired (the return on each single lever is compare's).
DECIDE_MARGINAL_RUNS = 4
#: Relative step of `tenure decide`'s marginal analysis (one more 10 % of the budget), compare's default.
MARGINAL_STEP = 0.1
#: Refinement points around the best coarse share (fewer at the ends of [0, 1]).
REFINE_POINTS = 4


def compare(
    scenario: Scenario,
    total_budget: float | None = None,
    levers: Sequence[str] = LEVERS,
    base_mix: dict[str, float] | None = None,
    acquisition_steps: int = 7,
    seeds: int = 3,
    closed_form: bool = False,
    marginal_step: float = MARGINAL_STEP,
    progress: Callable[[int, int], None] | None = None,
    cluster: Any = None,
    workers: int | None = None,
) -> CompareResult:
    """Sweep budget allocations and find the one with the highest mean customer equity.

    Parameters
    ----------
    scenario
        The market. Its run size, horizon and seed are used as they are.
    total_budget
        Budget per period (currency) to split; default: the scenario's acquisition
        plus retention budgets.
    levers
        Retention levers to sweep; the others keep their current share.
    base_mix
        The "current" retention mix (shares adding up to 1); default: the scenario's.
    acquisition_steps
        Acquisition shares on the coarse grid, evenly from 0 to 1 (at least 2).
    seeds
        Seeds per allocation (``run.seed``, ``run.seed + 1``, ...), shared by all points.
    closed_form
        Also calibrate the Blattberg–Deighton model to the market and report its optimum.
    marginal_step
        Relative step of the marginal analysis (one more ``marginal_step`` × budget).
    progress
        Called as ``progress(done, total)``: first with 0 and the number of evaluations planned,
        then after every one.
    cluster
        ``"local:N"``, ``"tcp://HOST:PORT"`` or a ``distributed.Client``: run each stage's
        simulations as parallel Dask tasks (same results).
    workers
        Runs side by side in this process, one thread each (default: ``TENURE_RUN_WORKERS``, else the
        usable cores; 1: one after the other, each on Numba's thread pool). Same results for any number.
    """
    cur = current_budgets(scenario)
    total = _checked_sweep(cur, total_budget, acquisition_steps, seeds, int(scenario["run"]["seed"]))
    with _connected(cluster) as client:
        return _compare(scenario, cur, total, levers, base_mix, acquisition_steps, seeds, closed_form, marginal_step,
                        progress, client, workers)


def _compare(scenario: Scenario, cur: dict[str, float], total: float, levers: Sequence[str],
             base_mix: dict[str, float] | None, acquisition_steps: int, seeds: int, closed_form: bool,
             marginal_step: float, progress: Callable[[int, int], None] | None, client: Any,
             workers: int | None = None) -> CompareResult:
    mix0 = base_mix or _mix_of(cur)
    seed0 = int(scenario["run"]["seed"])
    mixes = retention_mixes(mix0, levers)
    shares = np.linspace(0.0, 1.0, acquisition_steps)
    coarse = [Allocation(float(a), name, m) for a in shares for name, m in mixes]
    count = _Counter(seeds * (len(coarse) + REFINE_POINTS + 1 + MARGINAL_RUNS + (2 if closed_form else 0)), progress)
    ev = Evaluator(scenario, [seed0 + k for k in range(seeds)], total, count, client, workers)
    runs = ev.evaluate(coarse, "coarse")
    points = summarise(runs)
    best_row = points.sort("customer_equity", descending=True).row(0, named=True)
    step = 1.0 / (acquisition_steps - 1)
    best_mix = dict(mixes)[best_row["mix"]]
    fine_shares = [best_row["acquisition_share"] + f * step for f in (-0.5, -0.25, 0.25, 0.5)]
    fine = [Allocation(float(a), best_row["mix"], best_mix) for a in fine_shares if 0.0 <= a <= 1.0]
    count(seeds * (REFINE_POINTS - len(fine)))  # the points refinement skips at an end of [0, 1]
    if fine:
        runs = pl.concat([runs, ev.evaluate(fine, "refine")], how="diagonal")
        points = summarise(runs)
    best_row = points.sort("customer_equity", descending=True).row(0, named=True)
    best_alloc = Allocation(best_row["acquisition_share"], best_row["mix"], dict(mixes)[best_row["mix"]]) \
        if best_row["mix"] in dict(mixes) else Allocation(best_row["acquisition_share"], best_row["mix"], best_mix)
    current_alloc = _current_allocation(cur, mix0)
    cur_runs = ev.evaluate([current_alloc], "current")
    runs = pl.concat([runs, cur_runs], how="diagonal")
    current = summarise(cur_runs).row(0, named=True)
    marginal = marginal_analysis(ev, best_alloc, marginal_step)
    best = {**best_row, "budgets": best_alloc.budgets(total), "mix_shares": dict(zip(LEVERS, best_alloc.mix,
                                                                                         strict=True))}
    current["budgets"] = current_alloc.budgets(total)
    cf = closed_form_comparison(ev, best, current) if closed_form else None
    settings = {
        "scenario": scenario.name,
        "customers": scenario["run"]["customers"],
        "periods": scenario["run"]["periods"],
        "seeds": list(ev.seeds),
        "total_budget_per_period": total,
        "levers_swept": list(levers),
        "acquisition_steps": acquisition_steps,
        "retention_mixes": {name: dict(zip(LEVERS, m, strict=True)) for name, m in mixes},
        "marginal_step": marginal_step,
        "terminal_window_months": TERMINAL_WINDOW,
        "monthly_discount_rate": scenario["market"]["monthly_discount_rate"],
    }
    return CompareResult(runs, points, best, current, marginal, cf, settings)


def _paired(ev: Evaluator, base: dict[str, float], bumped: dict[str, float]) -> list[tuple[dict, dict]]:
    return [(ev.run(base, s), ev.run(bumped, s)) for s in ev.seeds]


def marginal_analysis(ev: Evaluator | Iterable[Evaluator], alloc: Allocation, step: float,
                      levers: bool = True) -> dict[str, Any]:
    """Marginal costs to acquire and to retain one more customer, and the return on each lever.

    Each lever's budget is raised by ``step`` × the total budget at the best
    allocation; the difference to the unchanged run (same seeds, so common random
    numbers) gives, per seed, Δspend/Δacquired (marginal cost to acquire),
    Δspend/Δ(churners avoided) (marginal cost to retain) and Δequity/Δspend (the
    return on the lever: above 0 means the next unit of spend pays). With several
    evaluators (`tenure decide`: one per calibrated market) the pairs of every market
    and seed are pooled, so the 90 % bands span the calibration uncertainty too;
    ``levers=False`` leaves out the return on each single lever (four runs per seed
    instead of ``MARGINAL_RUNS``).
    """
    out: dict[str, Any] = {}

    def summary(values: list[float]) -> dict[str, float]:
        arr = np.asarray([v for v in values if math.isfinite(v)])
        if arr.size == 0:  # infinite: the lever is saturated (one more unit buys nothing)
            fill = math.inf if values and all(v == math.inf for v in values) else math.nan
            return {"mean": fill, "q05": fill, "q95": fill}
        return {"mean": float(arr.mean()), "q05": float(np.quantile(arr, 0.05)), "q95": float(np.quantile(arr, 0.95))}

    acq: list[tuple[dict, dict]] = []
    ret: list[tuple[dict, dict]] = []
    by_lever: dict[str, list[tuple[dict, dict]]] = {lever: [] for lever in LEVERS}
    extras: list[float] = []
    for e in [ev] if isinstance(ev, Evaluator) else ev:  # an iterable: one market's bases alive at a time
        base = alloc.budgets(e.total_budget)
        delta = step * e.total_budget
        periods = e.scenario["run"]["periods"]
        out.setdefault("step_per_period", delta)
        mix_total = sum(base[k] for k in LEVERS)
        weights = {k: (base[k] / mix_total if mix_total > 0 else 1.0 / len(LEVERS)) for k in LEVERS}
        bumps = [{**base, "acquisition": base["acquisition"] + delta},
                 {**base, **{k: base[k] + delta * weights[k] for k in LEVERS}},
                 *(({**base, lever: base[lever] + delta} for lever in LEVERS) if levers else ())]
        e.prefetch([(b, s) for b in (base, *bumps) for s in e.seeds])
        acq += _paired(e, base, bumps[0])
        ret += _paired(e, base, bumps[1])
        for lever, bumped in zip(LEVERS, bumps[2:], strict=False):
            by_lever[lever] += _paired(e, base, bumped)
        extras += [delta * periods] * len(e.seeds)
    out["marginal_cost_to_acquire"] = summary(
        [x / (b["acquired"] - a["acquired"]) if b["acquired"] > a["acquired"] else math.inf
         for x, (a, b) in zip(extras, acq, strict=True)])
    out["marginal_cost_to_retain"] = summary(
        [x / (a["churned"] - b["churned"]) if a["churned"] > b["churned"] else math.inf
         for x, (a, b) in zip(extras, ret, strict=True)])
    out["return_on_acquisition"] = summary([(b["customer_equity"] - a["customer_equity"]) / x
                                            for x, (a, b) in zip(extras, acq, strict=True)])
    out["return_on_retention"] = summary([(b["customer_equity"] - a["customer_equity"]) / x
                                          for x, (a, b) in zip(extras, ret, strict=True)])
    if levers:
        out["return_on_lever"] = {lever: summary([(b["customer_equity"] - a["customer_equity"]) / x
                                                  for x, (a, b) in zip(extras, pairs, strict=True)])
                                  for lever, pairs in by_lever.items()}
    # The ratio per market and seed (both costs finite) gives its band: Δchurners avoided / Δacquired for the
    # same extra spend. The headline ratio is that of the mean costs.
    per_pair = [(a2["churned"] - b2["churned"]) / (b1["acquired"] - a1["acquired"])
                if b1["acquired"] > a1["acquired"] and a2["churned"] > b2["churned"] else math.nan
                for (a1, b1), (a2, b2) in zip(acq, ret, strict=True)]
    band = summary(per_pair)
    out["marginal_cost_ratio_q05"], out["marginal_cost_ratio_q95"] = band["q05"], band["q95"]
    mca, mcr = out["marginal_cost_to_acquire"]["mean"], out["marginal_cost_to_retain"]["mean"]
    out["marginal_cost_ratio"] = mca / mcr if mcr and math.isfinite(mcr) and math.isfinite(mca) else math.nan
    base_runs = [a for a, _ in acq]
    avg_acq = np.nanmean([r["acquisition_cost_paid"] for r in base_runs])
    avg_ret = np.nanmean([r["cost_per_retained_customer"] for r in base_runs])
    out["average_cost_to_acquire"] = float(avg_acq)
    out["average_cost_per_retained_customer_month"] = float(avg_ret)
    # The "five times" rule compares the cost of winning a customer with the cost of keeping one.
    # Keeping one for the average lifetime at this market's retention costs the monthly retention
    # cost times the expected remaining months; that is the average-cost counterpart of the rule.
    retention = float(np.mean([r["retention_rate"] for r in base_runs]))
    lifetime = 1.0 / max(1.0 - retention, 1e-9)
    out["average_cost_to_keep_for_a_lifetime"] = float(avg_ret * lifetime)
    ratio = float(avg_acq / (avg_ret * lifetime)) if avg_ret > 0 else math.nan
    out["average_cost_ratio"] = ratio
    out["five_times_rule_holds"] = bool(math.isfinite(ratio) and 4.0 <= ratio <= 6.0)
    return out


def closed_form_comparison(ev: Evaluator, best: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Calibrate Blattberg–Deighton (1996) to the simulated market and compare optima.

    Acquisition uses the engine's own response curve (ceiling and k are scenario
    parameters). Retention r(R) = c_r (1 − e^{−k R}) is calibrated from the
    simulator: the retention at ten times the current retention spend stands for
    the ceiling c_r, and k follows from the current (R, r) point (domain brief:
    k = −ln(1 − r/c_r)/R). Margin m is the simulated margin per customer per month.
    """
    sc = ev.scenario
    d = sc["market"]["monthly_discount_rate"]
    cur_b = current["budgets"]
    high = {**cur_b, **{k: 10.0 * cur_b[k] for k in LEVERS}}
    ev.prefetch([(b, s) for b in (cur_b, high) for s in ev.seeds])
    ret_now = [ev.run(cur_b, s) for s in ev.seeds]
    ret_high = [ev.run(high, s) for s in ev.seeds]
    r_now = float(np.mean([r["retention_rate"] for r in ret_now]))
    r_max = float(np.mean([r["retention_rate"] for r in ret_high]))
    customers = float(np.mean([r["customers_end"] for r in ret_now]))
    spend_now = sum(cur_b[k] for k in LEVERS) / max(customers, 1.0)
    margin = float(np.mean([r["margin_per_customer"] for r in ret_now]))
    acq = sc["acquisition"]
    prospects = max(sc["market"]["size"] - sc["run"]["customers"], 1)
    notes = [
        "Blattberg-Deighton has no retention without spend (r(0) = 0); in the simulator "
        f"{100 * r_now:.1f} % of customers stay each month mostly through trust, enthusiasm and barriers, "
        "so the closed form overstates what retention spend buys.",
        "Blattberg-Deighton optimises spend per prospect and per customer without a budget limit; "
        "tenure compare splits a fixed total budget.",
        "The closed form has no word of mouth: retained promoters bring referrals in the simulator, "
        "which makes retention worth more there.",
    ]
    out: dict[str, Any] = {
        "acquisition_ceiling": acq["ceiling"],
        "acquisition_k_per_unit_spend": acq["k"],
        "retention_rate_now": r_now,
        "retention_rate_at_10x_spend": r_max,
        "retention_spend_per_customer_now": spend_now,
        "margin_per_customer_per_period": margin,
        "monthly_discount_rate": d,
        "notes": notes,
    }
    if not (0.0 < r_now < r_max < 1.0) or spend_now <= 0:
        out["calibrated"] = False
        out["reason"] = ("retention does not rise with spend in this market, so r(R) cannot be calibrated"
                         if r_max <= r_now else "no retention spend at the current allocation")
        return out
    k_ret = float(econ.calibrate_k_per_unit_spend(r_now, r_max, spend_now))
    opt = econ.optimal_spend(acq["ceiling"], acq["k"], r_max, k_ret, margin, d)
    budget_acq = opt.acquisition_spend_per_prospect * prospects
    budget_ret = opt.retention_spend_per_customer_per_period * customers
    out.update({
        "calibrated": True,
        "retention_ceiling": r_max,
        "retention_k_per_unit_spend": k_ret,
        "optimal_acquisition_spend_per_prospect": opt.acquisition_spend_per_prospect,
        "optimal_retention_spend_per_customer_per_period": opt.retention_spend_per_customer_per_period,
        "optimal_customer_equity_per_prospect": opt.customer_equity_per_prospect,
        "implied_acquisition_budget": budget_acq,
        "implied_retention_budget": budget_ret,
        "implied_acquisition_share": budget_acq / (budget_acq + budget_ret) if budget_acq + budget_ret > 0 else 0.0,
        "simulated_best_acquisition_share": best["acquisition_share"],
        "simulated_paid_rate_at_best": paid_acquisition_rate(sc, best["budgets"]["acquisition"] / prospects),
        "marginal_cost_ratio_at_closed_form_optimum": opt.marginal_cost_ratio,
        "average_cost_ratio_at_closed_form_optimum": opt.average_cost_ratio,
    })
    return out


# -- decisions under calibration uncertainty ----------------------------------------------------


@dataclass
class UncertaintyResult:
    """`tenure decide`: every allocation across calibrated markets and seeds."""

    runs: pl.DataFrame  # one row per allocation, market and seed (customer equity at the market's full size)
    points: pl.DataFrame  # one row per allocation: distribution, P(beats current), expected loss
    best: dict[str, Any]
    current: dict[str, Any]
    settings: dict[str, Any]
    marginal: dict[str, Any]  # marginal_analysis at the best split, pooled over markets and seeds


def compare_uncertainty(
    markets: Sequence[Scenario],
    total_budget: float | None = None,
    levers: Sequence[str] = LEVERS,
    base_mix: dict[str, float] | None = None,
    acquisition_steps: int = 5,
    seeds: int = 1,
    sample_customers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cluster: Any = None,
    workers: int | None = None,
) -> UncertaintyResult:
    """Evaluate every allocation in every calibrated market, on common random numbers.

    Within a market and seed every allocation is a fork of one initial base, so the
    differences between allocations are their effect, not noise; the spread across
    markets is the calibration uncertainty. Per allocation: the distribution of
    customer equity over (market, seed), the probability that it beats the current
    allocation in the same (market, seed), and its expected loss E[max_b CE_b − CE_a]
    (the equity given up, on average, by choosing it; Berger 1985, the Bayes choice
    minimises it).

    ``sample_customers`` simulates each market with that many initial customers
    (:meth:`Scenario.scaled`: market size and budgets scale with it, as the dynamics
    depend on spend per customer and per prospect), and scales equity back to the
    market's size. ``progress(done, total)`` is called first with 0 and the number of
    runs, then after every run; ``cluster`` and ``workers`` are as in :func:`compare`.
    """
    if not markets:
        raise InputError("no calibrated markets")
    first = markets[0]
    cur = current_budgets(first)
    total = _checked_sweep(cur, total_budget, acquisition_steps, seeds, int(first["run"]["seed"]))
    full = int(first["run"]["customers"])
    n = full if sample_customers is None else int(sample_customers)
    if n < 100:
        raise InputError(f"--customers: at least 100 customers per simulated market, got {sample_customers}")
    with _connected(cluster) as client:
        return _decide(markets, cur, total, levers, base_mix, acquisition_steps, seeds, n, progress, client,
                       workers)


def _decide(markets: Sequence[Scenario], cur: dict[str, float], total: float, levers: Sequence[str],
            base_mix: dict[str, float] | None, acquisition_steps: int, seeds: int, n: int,
            progress: Callable[[int, int], None] | None, client: Any, workers: int | None = None
            ) -> UncertaintyResult:
    first = markets[0]
    full = int(first["run"]["customers"])
    factor = n / full
    mix0 = base_mix or _mix_of(cur)
    mixes = retention_mixes(mix0, levers)
    shares = np.linspace(0.0, 1.0, acquisition_steps)
    grid = [Allocation(float(a), name, m) for a in shares for name, m in mixes]
    current_alloc = _current_allocation(cur, mix0)
    seed0 = int(first["run"]["seed"])
    count = _Counter(len(markets) * seeds * (len(grid) + 1 + DECIDE_MARGINAL_RUNS), progress)
    rows = []
    group = 1 if client is not None else max(2 * (workers or default_workers()), 2)  # markets whose runs share a pool
    for g0 in range(0, len(markets), group):
        evs = []
        for sc in markets[g0:g0 + group]:
            if n != full:
                sc = sc.scaled(n, "--customers")
            evs.append(Evaluator(sc, [seed0 + k for k in range(seeds)], total * factor, count, client, workers))
        if client is None:
            _prefetch_here([(ev, list(ev.todo([(a.budgets(ev.total_budget), s) for a in (*grid, current_alloc)
                                                for s in ev.seeds]).items())) for ev in evs], workers)
        for m, ev in enumerate(evs, g0):
            for label, allocs in (("grid", grid), ("current", [current_alloc])):
                df = ev.evaluate(allocs, label)
                rows.append(df.with_columns(pl.lit(m).alias("market"),
                                            (pl.col("customer_equity") / factor).alias("customer_equity"),
                                            (pl.col("profit") / factor).alias("profit"),
                                            (pl.col("customers_end") / factor).alias("customers_end")))
    runs = pl.concat(rows, how="diagonal")
    points = uncertainty_points(runs)
    best = points.sort("expected_loss").row(0, named=True)
    best_alloc = next(a for a in grid if a.acquisition_share == best["acquisition_share"] and a.mix_name == best["mix"])
    best["budgets"] = best_alloc.budgets(total)
    scaled = (sc.scaled(n, "--customers") if n != full else sc for sc in markets)
    marginal = marginal_analysis((Evaluator(sc, [seed0 + k for k in range(seeds)], total * factor, count, client,
                                            workers) for sc in scaled), best_alloc, MARGINAL_STEP, levers=False)
    cur_runs = runs.filter(pl.col("stage") == "current")
    current = {"acquisition_share": current_alloc.acquisition_share, "mix": "current",
               "customer_equity": float(cur_runs["customer_equity"].mean()),
               "customer_equity_q05": float(cur_runs["customer_equity"].quantile(0.05, "linear")),
               "customer_equity_q95": float(cur_runs["customer_equity"].quantile(0.95, "linear")),
               "budgets": current_alloc.budgets(total)}
    settings = {
        "scenario": first.name, "markets": len(markets), "seeds": [seed0 + k for k in range(seeds)],
        "customers": full, "sample_customers": n, "periods": first["run"]["periods"],
        "total_budget_per_period": total, "levers_swept": list(levers), "acquisition_steps": acquisition_steps,
        "retention_mixes": {name: dict(zip(LEVERS, mx, strict=True)) for name, mx in mixes},
        "allocations": len(grid),
    }
    settings["marginal_step"] = MARGINAL_STEP
    return UncertaintyResult(runs, points, best, current, settings, marginal)


def uncertainty_points(runs: pl.DataFrame) -> pl.DataFrame:
    """Per allocation: equity distribution, P(beats current) and expected loss, paired by (market, seed)."""
    keys = ["market", "seed"]
    grid = runs.filter(pl.col("stage") == "grid").select(
        ["acquisition_share", "mix", *keys, "customer_equity", "customers_end", "churn_rate"])
    cur = runs.filter(pl.col("stage") == "current").select([*keys, pl.col("customer_equity").alias("_current")])
    top = grid.group_by(keys).agg(pl.col("customer_equity").max().alias("_top"))
    d = grid.join(cur, on=keys).join(top, on=keys).with_columns(
        gain=pl.col("customer_equity") - pl.col("_current"), loss=pl.col("_top") - pl.col("customer_equity"))
    ce = pl.col("customer_equity")
    return d.group_by(["acquisition_share", "mix"], maintain_order=True).agg(
        ce.mean().alias("customer_equity"), ce.quantile(0.05, "linear").alias("customer_equity_q05"),
        ce.quantile(0.95, "linear").alias("customer_equity_q95"),
        pl.col("gain").mean().alias("gain_vs_current"),
        pl.col("gain").quantile(0.05, "linear").alias("gain_vs_current_q05"),
        pl.col("gain").quantile(0.95, "linear").alias("gain_vs_current_q95"),
        (pl.col("gain") > 0).mean().alias("p_beats_current"),
        pl.col("loss").mean().alias("expected_loss"),
        (pl.col("loss") == 0).mean().alias("p_best"),
        pl.col("customers_end").mean().alias("customers_end"), pl.col("churn_rate").mean().alias("churn_rate"),
    ).sort(["acquisition_share", "mix"])
